package admission

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	certmgrv1 "github.com/evergreen-edge/evergreen/proto/evergreen/certmgr/v1"
	"google.golang.org/grpc"
)

// registry answers VerifyDevice like certmgr does, from a fixed table, and
// counts the calls: what these tests measure is how often the broker asks.
// The end-to-end tests in package broker run against the real certmgr.
type registry struct {
	mu      sync.Mutex
	answers map[string]*certmgrv1.VerifyDeviceResponse // by certificate PEM
	down    bool
	calls   atomic.Int64
	// gate, when set, holds every call until closed.
	gate chan struct{}
}

func (r *registry) VerifyDevice(ctx context.Context, in *certmgrv1.VerifyDeviceRequest, _ ...grpc.CallOption) (*certmgrv1.VerifyDeviceResponse, error) {
	r.calls.Add(1)
	if r.gate != nil {
		<-r.gate
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.down {
		return nil, errors.New("connection refused")
	}
	if a, ok := r.answers[in.GetCertificatePem()]; ok {
		return a, nil
	}
	return &certmgrv1.VerifyDeviceResponse{Reason: ReasonUnknown}, nil
}

func (r *registry) set(c *x509.Certificate, a *certmgrv1.VerifyDeviceResponse) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.answers == nil {
		r.answers = map[string]*certmgrv1.VerifyDeviceResponse{}
	}
	r.answers[encodePEM(c)] = a
}

// clock is a settable clock.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

type keyPair struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

func newCert(t *testing.T, cn string, issuer *keyPair, notBefore, notAfter time.Time, ca bool) *keyPair {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{SerialNumber: serial, Subject: pkix.Name{CommonName: cn}, NotBefore: notBefore, NotAfter: notAfter,
		IsCA: ca, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign}
	parent, signer := tmpl, key
	if issuer != nil {
		parent, signer = issuer.cert, issuer.key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, signer)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &keyPair{cert: c, key: key}
}

type fixture struct {
	t     *testing.T
	reg   *registry
	clock *clock
	a     *Admission
	ca    *keyPair
}

func newFixture(t *testing.T) *fixture {
	now := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	f := &fixture{t: t, reg: &registry{}, clock: &clock{now: now}}
	f.ca = newCert(t, "Device CA", nil, now.Add(-time.Hour), now.Add(365*24*time.Hour), true)
	f.a = New(f.reg, Options{Now: f.clock.Now, Reserved: []string{"inline"}})
	f.a.SetDeviceCA(f.ca.cert)
	return f
}

// device makes a certificate signed by the device CA, valid for a day.
func (f *fixture) device(cn string) *x509.Certificate {
	now := f.clock.Now()
	return newCert(f.t, cn, f.ca, now.Add(-time.Minute), now.Add(24*time.Hour), false).cert
}

func (f *fixture) registered(cn string) *x509.Certificate {
	c := f.device(cn)
	f.reg.set(c, &certmgrv1.VerifyDeviceResponse{Allowed: true, DeviceName: cn})
	return c
}

func (f *fixture) admit(c *x509.Certificate, clientID string) Result {
	return f.a.Admit(context.Background(), c, clientID)
}

func TestAdmitsRegisteredDevice(t *testing.T) {
	f := newFixture(t)
	c := f.registered("sensor")
	r := f.admit(c, "sensor")
	if r.Refused || r.Device != "sensor" || r.Via != ViaRegistry || r.Fingerprint != Fingerprint(c) {
		t.Fatalf("Admit = %+v", r)
	}
}

func TestRefusalReasons(t *testing.T) {
	f := newFixture(t)
	now := f.clock.Now()
	foreignCA := newCert(t, "Foreign CA", nil, now.Add(-time.Hour), now.Add(time.Hour), true)
	sensor := f.registered("sensor")
	revoked := f.device("gone")
	f.reg.set(revoked, &certmgrv1.VerifyDeviceResponse{DeviceName: "gone", Reason: ReasonRevoked})
	for _, tc := range []struct {
		name     string
		cert     *x509.Certificate
		clientID string
		reason   string
	}{
		{"no certificate", nil, "x", ReasonNoCertificate},
		{"expired", newCert(t, "old", f.ca, now.Add(-48*time.Hour), now.Add(-24*time.Hour), false).cert, "old", "expired (not after 2030-01-01T03:04:05Z)"},
		{"not yet valid", newCert(t, "new", f.ca, now.Add(time.Hour), now.Add(48*time.Hour), false).cert, "new", "not yet valid"},
		{"unknown, right CA", f.device("stranger"), "stranger", "unknown certificate (signed by the device CA but not registered)"},
		{"unknown, wrong CA", newCert(t, "sensor", foreignCA, now.Add(-time.Hour), now.Add(time.Hour), false).cert, "sensor", `unknown certificate: not signed by the device CA (issuer "CN=Foreign CA")`},
		{"revoked", revoked, "gone", ReasonRevoked},
		{"client id mismatch", sensor, "actuator", `client id mismatch (client id "actuator", certificate of device "sensor")`},
		{"empty client id", sensor, "", `client id mismatch (client id "", certificate of device "sensor")`},
	} {
		r := f.admit(tc.cert, tc.clientID)
		if !r.Refused || r.Unavailable || !strings.HasPrefix(r.Reason, tc.reason) {
			t.Errorf("%s: %+v, want refused with %q", tc.name, r, tc.reason)
		}
	}
	reserved := f.registered("inline")
	if r := f.admit(reserved, "inline"); !r.Refused || !strings.Contains(r.Reason, ReasonReserved) {
		t.Errorf("reserved client id: %+v", r)
	}
}

// A device in the group is admitted by its certificate id; revocation in
// certmgr still wins; certmgr being down locks out only who depends on it.
func TestGroupDevices(t *testing.T) {
	f := newFixture(t)
	cloudMade := f.device("field-unit") // unknown to certmgr
	registered := f.registered("sensor")
	revoked := f.device("gone")
	f.reg.set(revoked, &certmgrv1.VerifyDeviceResponse{DeviceName: "gone", Reason: ReasonRevoked})
	f.a.SetGroupDevices(map[string]string{"field-unit": Fingerprint(cloudMade), "gone": Fingerprint(revoked), "no-id": ""})

	if r := f.admit(cloudMade, "field-unit"); r.Refused || r.Via != ViaGroup || r.Device != "field-unit" {
		t.Fatalf("group device: %+v", r)
	}
	if r := f.admit(cloudMade, "other"); !r.Refused || !strings.Contains(r.Reason, ReasonMismatch) {
		t.Fatalf("group device under another client id: %+v", r)
	}
	if r := f.admit(revoked, "gone"); !r.Refused || r.Reason != ReasonRevoked {
		t.Fatalf("revoked group device: %+v", r)
	}

	f.reg.mu.Lock()
	f.reg.down = true
	f.reg.mu.Unlock()
	f.clock.advance(time.Hour) // past every cached answer
	if r := f.admit(cloudMade, "field-unit"); r.Refused || r.Via != ViaGroup {
		t.Fatalf("group device with certmgr down: %+v", r)
	}
	r := f.admit(registered, "sensor")
	if !r.Refused || !r.Unavailable || !strings.HasPrefix(r.Reason, ReasonUnavailable) {
		t.Fatalf("registered device with certmgr down: %+v", r)
	}

	f.a.SetGroupDevices(nil)
	if _, ok := f.a.GroupDevice(Fingerprint(cloudMade)); ok {
		t.Fatal("a new group without the device still admits it")
	}
}

// A reconnect storm costs certmgr one call per certificate and TTL.
func TestCacheSparesCertmgr(t *testing.T) {
	f := newFixture(t)
	c := f.registered("sensor")
	f.reg.gate = make(chan struct{})
	var wg sync.WaitGroup
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if r := f.admit(c, "sensor"); r.Refused {
				t.Errorf("concurrent admit: %+v", r)
			}
		}()
	}
	// Let the callers pile up on the one call in flight.
	for f.reg.calls.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(20 * time.Millisecond)
	close(f.reg.gate)
	wg.Wait()
	if n := f.reg.calls.Load(); n != 1 {
		t.Fatalf("%d VerifyDevice calls for 50 concurrent connects, want 1", n)
	}
	for range 100 {
		f.admit(c, "sensor")
	}
	if n := f.reg.calls.Load(); n != 1 {
		t.Fatalf("%d calls after 100 more connects within the TTL, want 1", n)
	}
	f.clock.advance(31 * time.Second)
	f.admit(c, "sensor")
	if n := f.reg.calls.Load(); n != 2 {
		t.Fatalf("%d calls after the TTL, want 2", n)
	}

	// Refusals are remembered for less time.
	stranger := f.device("stranger")
	f.admit(stranger, "stranger")
	f.admit(stranger, "stranger")
	if n := f.reg.calls.Load(); n != 3 {
		t.Fatalf("%d calls, want 3", n)
	}
	f.clock.advance(6 * time.Second)
	f.admit(stranger, "stranger")
	if n := f.reg.calls.Load(); n != 4 {
		t.Fatalf("%d calls after the negative TTL, want 4", n)
	}
}

// Removing a device forgets what certmgr said about it at once.
func TestEvict(t *testing.T) {
	f := newFixture(t)
	c := f.registered("sensor")
	other := f.registered("other")
	f.admit(c, "sensor")
	f.admit(other, "other")
	f.reg.set(c, &certmgrv1.VerifyDeviceResponse{DeviceName: "sensor", Reason: ReasonRevoked})
	if r := f.admit(c, "sensor"); r.Refused {
		t.Fatal("the cached answer was not used")
	}
	f.a.Evict("sensor")
	if r := f.admit(c, "sensor"); !r.Refused || r.Reason != ReasonRevoked {
		t.Fatalf("after Evict: %+v", r)
	}
	if f.a.CacheLen() != 2 {
		t.Fatalf("cache holds %d answers, want 2 (other's kept, sensor's refreshed)", f.a.CacheLen())
	}
}

func TestCacheIsBounded(t *testing.T) {
	reg := &registry{}
	a := New(reg, Options{MaxEntries: 8})
	now := time.Now()
	ca := newCert(t, "CA", nil, now.Add(-time.Hour), now.Add(time.Hour), true)
	for i := range 50 {
		a.Admit(context.Background(), newCert(t, "d", ca, now.Add(-time.Minute), now.Add(time.Hour), false).cert, "d")
		if n := a.CacheLen(); n > 8 {
			t.Fatalf("after %d certificates the cache holds %d answers, limit 8", i+1, n)
		}
	}
}
