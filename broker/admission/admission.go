// Package admission decides whether a client certificate may connect to the
// MQTT server, and as which device. A certificate is admitted when certmgr
// says it belongs to a registered, unrevoked device (VerifyDevice), or when
// it is the certificate a device of the deployed group names in its
// CertificateArn (the AWS IoT certificate id is the SHA-256 of the DER). The
// MQTT client id must then equal that device's thing name, as v1 required.
//
// certmgr's answers are cached per certificate fingerprint for a short
// time, and concurrent connects with one certificate share one round trip,
// so a device stuck in a reconnect loop costs certmgr at most one call per
// TTL. Removing a device evicts its entries at once (Evict).
package admission

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	certmgrv1 "github.com/evergreen-edge/evergreen/proto/evergreen/certmgr/v1"
	"golang.org/x/sync/singleflight"
	"google.golang.org/grpc"
)

// Verifier is the part of certmgr's API admission uses.
type Verifier interface {
	VerifyDevice(ctx context.Context, in *certmgrv1.VerifyDeviceRequest, opts ...grpc.CallOption) (*certmgrv1.VerifyDeviceResponse, error)
}

// Via says which rule admitted a device.
type Via string

const (
	// ViaRegistry: certmgr knows the certificate as a registered device.
	ViaRegistry Via = "certmgr"
	// ViaGroup: the deployed group names the certificate for the device.
	ViaGroup Via = "group"
)

// Reasons for a refusal; the log line and the tests rely on these words.
const (
	ReasonNoCertificate = "no client certificate"
	ReasonExpired       = "expired"
	ReasonNotYetValid   = "not yet valid"
	ReasonRevoked       = "revoked"
	ReasonUnknown       = "unknown certificate"
	ReasonWrongCA       = "not signed by the device CA"
	ReasonMismatch      = "client id mismatch"
	ReasonReserved      = "client id is reserved"
	ReasonUnavailable   = "certificate manager unavailable"
)

// Result is the decision on one connection.
type Result struct {
	// Device is the thing name the client is admitted as (or, on a
	// refusal, the device the certificate belongs to when known).
	Device string
	Via    Via
	// Fingerprint is the certificate's SHA-256, lowercase hex.
	Fingerprint string
	Refused     bool
	// Unavailable marks a refusal because certmgr could not be asked: the
	// client should try again (CONNACK "server unavailable").
	Unavailable bool
	Reason      string
}

// Options tune an Admission.
type Options struct {
	// PositiveTTL is how long certmgr's "allowed" is trusted (default 30 s).
	PositiveTTL time.Duration
	// NegativeTTL is how long a refusal is remembered (default 5 s).
	NegativeTTL time.Duration
	// MaxEntries bounds the cache (default 4096).
	MaxEntries int
	// Timeout bounds one VerifyDevice call (default 3 s).
	Timeout time.Duration
	// Reserved client ids no device may use (the MQTT server's own).
	Reserved []string
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Admission decides on connections. It is safe for concurrent use.
type Admission struct {
	v    Verifier
	opts Options

	deviceCA atomic.Pointer[x509.Certificate]
	// group maps a lowercase certificate id to the group device's name.
	group atomic.Pointer[map[string]string]

	flight singleflight.Group
	mu     sync.Mutex
	cache  map[string]entry
}

type entry struct {
	resp    *certmgrv1.VerifyDeviceResponse
	expires time.Time
}

// New returns an Admission asking v.
func New(v Verifier, o Options) *Admission {
	if o.PositiveTTL <= 0 {
		o.PositiveTTL = 30 * time.Second
	}
	if o.NegativeTTL <= 0 {
		o.NegativeTTL = 5 * time.Second
	}
	if o.MaxEntries <= 0 {
		o.MaxEntries = 4096
	}
	if o.Timeout <= 0 {
		o.Timeout = 3 * time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	a := &Admission{v: v, opts: o, cache: map[string]entry{}}
	empty := map[string]string{}
	a.group.Store(&empty)
	return a
}

// Fingerprint returns the SHA-256 of the certificate's DER, lowercase hex:
// the AWS IoT certificate id.
func Fingerprint(c *x509.Certificate) string {
	sum := sha256.Sum256(c.Raw)
	return hex.EncodeToString(sum[:])
}

// SetDeviceCA sets the CA that signs the devices certmgr creates; it only
// makes refusals say precisely why (a foreign CA's certificate).
func (a *Admission) SetDeviceCA(c *x509.Certificate) { a.deviceCA.Store(c) }

// SetGroupDevices sets the deployed group's devices, thing name ->
// lowercase certificate id ("" when the group names none).
func (a *Admission) SetGroupDevices(byName map[string]string) {
	byID := make(map[string]string, len(byName))
	for name, id := range byName {
		if id != "" {
			byID[id] = name
		}
	}
	a.group.Store(&byID)
}

// GroupDevice returns the group device whose certificate id is fp.
func (a *Admission) GroupDevice(fp string) (string, bool) {
	name, ok := (*a.group.Load())[fp]
	return name, ok
}

// Evict forgets every cached answer about device, so its next connect asks
// certmgr again (called when certmgr removes the device).
func (a *Admission) Evict(device string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for fp, e := range a.cache {
		if e.resp.GetDeviceName() == device {
			delete(a.cache, fp)
		}
	}
}

// Admit decides on a client presenting leaf with clientID.
func (a *Admission) Admit(ctx context.Context, leaf *x509.Certificate, clientID string) Result {
	if leaf == nil {
		return Result{Refused: true, Reason: ReasonNoCertificate}
	}
	fp := Fingerprint(leaf)
	r := Result{Fingerprint: fp}
	refuse := func(device, reason string) Result {
		r.Refused, r.Device, r.Reason = true, device, reason
		return r
	}
	now := a.opts.Now()
	switch {
	case now.After(leaf.NotAfter):
		return refuse("", fmt.Sprintf("%s (not after %s)", ReasonExpired, leaf.NotAfter.UTC().Format(time.RFC3339)))
	case now.Before(leaf.NotBefore):
		return refuse("", fmt.Sprintf("%s (not before %s)", ReasonNotYetValid, leaf.NotBefore.UTC().Format(time.RFC3339)))
	}

	groupName, inGroup := a.GroupDevice(fp)
	resp, err := a.verify(ctx, fp, leaf)
	switch {
	case err != nil && inGroup:
		// The group vouches for this certificate by itself; a certmgr
		// restart must not lock group devices out.
		r.Device, r.Via = groupName, ViaGroup
	case err != nil:
		r.Unavailable = true
		return refuse("", fmt.Sprintf("%s: %v", ReasonUnavailable, err))
	case resp.GetAllowed():
		r.Device, r.Via = resp.GetDeviceName(), ViaRegistry
	case resp.GetReason() == ReasonRevoked:
		// A revocation is final, whatever the group says.
		return refuse(resp.GetDeviceName(), ReasonRevoked)
	case inGroup:
		r.Device, r.Via = groupName, ViaGroup
	default:
		return refuse(resp.GetDeviceName(), a.explain(resp, leaf))
	}
	for _, id := range a.opts.Reserved {
		if clientID == id {
			return refuse(r.Device, fmt.Sprintf("%s (client id %q is the MQTT server's own)", ReasonReserved, clientID))
		}
	}
	if clientID != r.Device {
		return refuse(r.Device, fmt.Sprintf("%s (client id %q, certificate of device %q)", ReasonMismatch, clientID, r.Device))
	}
	return r
}

// explain words certmgr's refusal, adding what the broker can tell on its
// own: whether the device CA signed the certificate at all.
func (a *Admission) explain(resp *certmgrv1.VerifyDeviceResponse, leaf *x509.Certificate) string {
	reason := resp.GetReason()
	if reason == "" {
		reason = ReasonUnknown
	}
	if reason != ReasonUnknown {
		return reason
	}
	ca := a.deviceCA.Load()
	if ca == nil {
		return reason
	}
	if leaf.CheckSignatureFrom(ca) != nil {
		return fmt.Sprintf("%s: %s (issuer %q)", reason, ReasonWrongCA, leaf.Issuer.String())
	}
	return reason + " (signed by the device CA but not registered)"
}

// verify asks certmgr, through the cache; concurrent calls for one
// certificate share one round trip.
func (a *Admission) verify(ctx context.Context, fp string, leaf *x509.Certificate) (*certmgrv1.VerifyDeviceResponse, error) {
	now := a.opts.Now()
	a.mu.Lock()
	e, ok := a.cache[fp]
	a.mu.Unlock()
	if ok && now.Before(e.expires) {
		return e.resp, nil
	}
	v, err, _ := a.flight.Do(fp, func() (any, error) {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), a.opts.Timeout)
		defer cancel()
		pemBytes := encodePEM(leaf)
		resp, err := a.v.VerifyDevice(cctx, &certmgrv1.VerifyDeviceRequest{CertificatePem: pemBytes})
		if err != nil {
			return nil, err
		}
		ttl := a.opts.NegativeTTL
		if resp.GetAllowed() {
			ttl = a.opts.PositiveTTL
		}
		a.store(fp, entry{resp: resp, expires: a.opts.Now().Add(ttl)})
		return resp, nil
	})
	if err != nil {
		return nil, err
	}
	return v.(*certmgrv1.VerifyDeviceResponse), nil
}

func (a *Admission) store(fp string, e entry) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.cache) >= a.opts.MaxEntries {
		now := a.opts.Now()
		for k, old := range a.cache {
			if !now.Before(old.expires) {
				delete(a.cache, k)
			}
		}
		if len(a.cache) >= a.opts.MaxEntries {
			// Still full of live answers (a flood of distinct
			// certificates): start over rather than grow.
			clear(a.cache)
		}
	}
	a.cache[fp] = e
}

// CacheLen returns the number of cached answers.
func (a *Admission) CacheLen() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.cache)
}

func encodePEM(c *x509.Certificate) string {
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw}))
}
