// Package certmgr is `ggd certmgr`: the group CA, the device CA, the core
// certificate, the local MQTT server certificate (issued and renewed on a
// timer) and the device registry (v1's GGDeviceCertificateManager).
//
// Service is the local object: it implements certmgrv1.CertManagerClient,
// so in-process callers and the gRPC adapter registered on the daemon's
// socket share one implementation (containerd's pattern).
package certmgr

import (
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/evergreen-edge/evergreen/certmgr/pki"
	"github.com/evergreen-edge/evergreen/certmgr/registry"
	certmgrv1 "github.com/evergreen-edge/evergreen/proto/evergreen/certmgr/v1"
	"github.com/evergreen-edge/evergreen/services/kit/daemon"
	"github.com/evergreen-edge/evergreen/services/kit/errdefs"
	"github.com/evergreen-edge/evergreen/services/kit/subjects"
	"github.com/nats-io/nats.go"
	"google.golang.org/protobuf/proto"
)

// Name is the daemon's name.
const Name = "certmgr"

// DefaultRenewFraction is the share of its life after which the MQTT server
// certificate is renewed.
const DefaultRenewFraction = 0.8

// maxTimerSleep bounds one sleep of the renewal timer. Timers run on the
// monotonic clock; waking now and then lets a wall-clock jump (an edge box
// that booted in 1970 and then met NTP) or a changed interface address
// still trigger a renewal in time.
const maxTimerSleep = 10 * time.Minute

// Options tune the daemon beyond config.json (tests).
type Options struct {
	// ServerValidity, when positive, replaces
	// evergreen.certmgr.serverCertValidityDays.
	ServerValidity time.Duration
	// RenewFraction is the share of the server certificate's life after
	// which it is renewed; 0 means DefaultRenewFraction.
	RenewFraction float64
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Spec declares the certmgr daemon with default options.
func Spec() daemon.Spec { return SpecWithOptions(Options{}) }

// SpecWithOptions declares the certmgr daemon with o.
func SpecWithOptions(o Options) daemon.Spec {
	return daemon.Spec{
		Name:     Name,
		Requires: []string{"bus"},
		Bus: &daemon.BusRole{
			Publish:        []string{"evergreen.certmgr.>"},
			Subscribe:      []string{subjects.DeployApply(Name), subjects.IPConnectivity},
			AllowResponses: true,
		},
		ConsumesGroup: true,
		New:           func() daemon.Service { return New(o) },
	}
}

var _ certmgrv1.CertManagerClient = (*Service)(nil)

// Service is the certmgr daemon and its local API. Every method holds mu;
// none of them blocks on anything but the disk.
type Service struct {
	opts Options

	mu       sync.Mutex
	env      *daemon.Env
	alg      pki.Algorithm
	groupCA  *pki.KeyPair
	deviceCA *pki.KeyPair
	groupPEM []byte
	devPEM   []byte
	// roots and intermediates verify device certificates issued here.
	roots         *x509.CertPool
	intermediates *x509.CertPool
	core          *x509.Certificate
	// serverKey is the customer's MQTTServerCertificate key; nil means a
	// new key with every certificate.
	serverKey     crypto.Signer
	server        *serverCert
	devices       *registry.Registry
	timer         *time.Timer
	stopped       bool
	stopFollowing func()
	// connHosts are the host addresses of the last connectivity info the
	// ipdetector published (normalised, sorted): names of the server
	// certificate besides the configured ones.
	connHosts []string
	connSub   *nats.Subscription
}

// New returns a service that does nothing until Start.
func New(o Options) *Service {
	if o.RenewFraction == 0 {
		o.RenewFraction = DefaultRenewFraction
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Service{opts: o}
}

// Start loads or creates the CAs and the core certificate, loads the
// device registry, makes sure a current MQTT server certificate is on disk,
// arms the renewal timer and registers the gRPC API.
func (s *Service) Start(ctx context.Context, env *daemon.Env) error {
	if f := s.opts.RenewFraction; f <= 0 || f >= 1 {
		return fmt.Errorf("renew fraction %v: want a value between 0 and 1", f)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	alg, err := pki.ParseAlgorithm(env.Config.Evergreen.Certmgr.KeyAlgorithm)
	if err != nil {
		return fmt.Errorf("evergreen.certmgr.keyAlgorithm: %w", err)
	}
	if err := os.MkdirAll(env.Root.CertsDir(), 0o700); err != nil {
		return err
	}
	if err := os.MkdirAll(env.Root.DataDir(Name), 0o750); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.env, s.alg, s.stopped = env, alg, false
	now := s.opts.Now()
	if err := s.loadAuthorities(now); err != nil {
		return err
	}
	if err := s.loadCore(now); err != nil {
		return err
	}
	s.reportCloudCA()
	if err := s.loadServerKey(); err != nil {
		return err
	}
	if s.devices, err = registry.Load(deviceRegistryFile(env)); err != nil {
		return err
	}
	s.loadConnectivityLocked()
	if err := s.startServerCert(now); err != nil {
		return err
	}
	if err := s.followConnectivity(); err != nil {
		return fmt.Errorf("subscribe %s: %w", subjects.IPConnectivity, err)
	}
	certmgrv1.RegisterCertManagerServer(env.GRPC, &grpcServer{local: s})
	s.mu.Unlock()
	err = s.followGroup()
	s.mu.Lock()
	if err != nil {
		return err
	}
	env.Log.Info("certificates ready",
		"group_ca_expires", s.groupCA.Cert.NotAfter, "device_ca_expires", s.deviceCA.Cert.NotAfter,
		"core", s.core.Subject.CommonName, "server_serial", pki.Serial(s.server.cert), "server_renew_at", s.server.renewAt,
		"devices", s.devices.Len())
	return nil
}

// Stop disarms the renewal timer. A renewal already running finishes
// first (it holds mu), so files and events stay consistent.
func (s *Service) Stop(context.Context) error {
	if s.stopFollowing != nil {
		s.stopFollowing()
	}
	if s.connSub != nil {
		s.connSub.Unsubscribe()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stopped = true
	if s.timer != nil {
		s.timer.Stop()
	}
	return nil
}

func deviceRegistryFile(env *daemon.Env) string {
	return filepath.Join(env.Root.DataDir(Name), "devices.json")
}

// readyLocked says whether the CAs are loaded.
func (s *Service) readyLocked() error {
	if s.groupCA == nil || s.deviceCA == nil {
		return fmt.Errorf("certificate authorities are not loaded yet: %w", errdefs.ErrUnavailable)
	}
	return nil
}

// publishLocked sends an event after the state it announces is on disk. A
// lost connection is logged, not returned: the files are the truth and the
// bus client buffers while it reconnects.
func (s *Service) publishLocked(subject string, m proto.Message) {
	if s.env.Bus == nil {
		return
	}
	b, err := proto.Marshal(m)
	if err == nil {
		err = s.env.Bus.Publish(subject, b)
	}
	if err != nil {
		s.env.Log.Error("publish event", "subject", subject, "err", err)
	}
}

// internal marks a failure to write state as the API's INTERNAL.
func internal(err error) error {
	if err == nil || errors.Is(err, errdefs.ErrInternal) {
		return err
	}
	return fmt.Errorf("%w: %w", err, errdefs.ErrInternal)
}
