package broker

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/evergreen-edge/evergreen/broker/admission"
	"github.com/evergreen-edge/evergreen/broker/cloud"
	"github.com/evergreen-edge/evergreen/broker/mqtt"
	"github.com/evergreen-edge/evergreen/broker/router"
	brokerv1 "github.com/evergreen-edge/evergreen/proto/evergreen/broker/v1"
	certmgrv1 "github.com/evergreen-edge/evergreen/proto/evergreen/certmgr/v1"
	"github.com/evergreen-edge/evergreen/services/kit/daemon"
	"github.com/evergreen-edge/evergreen/services/kit/subjects"
	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/nats-io/nats.go"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// Name is the daemon's name.
const Name = "broker"

// certmgrName is the daemon whose socket answers VerifyDevice.
const certmgrName = "certmgr"

// certCheckInterval is how often the server certificate files are checked
// for a renewal whose bus event was missed (the bus was down).
const certCheckInterval = time.Minute

// Options tune the daemon beyond config.json (tests, benchmarks).
type Options struct {
	// Limits replaces mqtt.DefaultLimits() when its MaxClients is set.
	Limits mqtt.Limits
	// Admission tunes the certificate cache.
	Admission admission.Options
}

// Spec declares the broker daemon with default options.
func Spec() daemon.Spec { return SpecWithOptions(Options{}) }

// SpecWithOptions declares the broker daemon with o.
func SpecWithOptions(o Options) daemon.Spec {
	return daemon.Spec{
		Name:     Name,
		Requires: []string{"bus", certmgrName},
		Bus: &daemon.BusRole{
			Publish: []string{"evergreen.broker.>"},
			Subscribe: []string{
				subjects.DeployApply(Name),
				"evergreen.certmgr.events.>",
				subjects.RuntimePublish,
				subjects.RuntimeRoutePlan,
				subjects.ShadowPublish,
				subjects.ShadowCloud,
				subjects.DeployCloud,
				subjects.OTACloud,
				logsSubject,
			},
			AllowResponses: true,
		},
		ConsumesGroup: true,
		New:           func() daemon.Service { return New(o) },
	}
}

// Service is the broker daemon.
type Service struct {
	opts Options

	env    *daemon.Env
	log    *slog.Logger
	router *router.Router
	// deployed describes the deployment in force.
	deployed atomic.Pointer[inForce]
	// synced is the set of things whose shadows sync with the cloud
	// (SyncShadow: true in the group in force).
	synced atomic.Pointer[map[string]bool]

	cert      *mqtt.ServerCert
	certmgrCC *grpc.ClientConn
	admit     *admission.Admission
	mqtt      *mqtt.Server
	cloud     *cloud.Cloud
	taps      taps

	// recheck serialises re-admissions after deployments; bg tracks them.
	recheck sync.Mutex
	bg      sync.WaitGroup

	subs []*nats.Subscription
	// readyMu holds back the cloud-ready events until the bus
	// subscriptions are made (following): a daemon that answers one by
	// publishing for the cloud (the deployagent's last status) must find
	// the broker listening. readyHeld is the latest event held back.
	readyMu    sync.Mutex
	following  bool
	readyHeld  *brokerv1.CloudStatus
	stopDeploy func()
	stopCerts  chan struct{}
	certsDone  chan struct{}

	stats stats
}

// stats are the router's counters.
type stats struct {
	routed       atomic.Uint64 // messages that reached at least one target
	unrouted     atomic.Uint64 // messages no subscription matched (v1: dropped)
	cloudDropped atomic.Uint64 // messages for the cloud with no cloud connection
	busDropped   atomic.Uint64 // bus publishes that failed
	rejected     atomic.Uint64 // bus or cloud messages refused (bad source, topic, size)
	rejectLog    logLimiter
	cloudLog     logLimiter
}

// New returns a service that does nothing until Start.
func New(o Options) *Service {
	if o.Limits.MaxClients == 0 {
		o.Limits = mqtt.DefaultLimits()
	}
	o.Admission.Reserved = append(o.Admission.Reserved, mochi.InlineClientId)
	s := &Service{opts: o, router: router.New()}
	s.deployed.Store(&inForce{})
	return s
}

// Start loads the server certificate and the group in force, opens the
// MQTT listener, follows the bus and registers the gRPC API.
func (s *Service) Start(ctx context.Context, env *daemon.Env) error {
	s.env, s.log = env, env.Log
	if env.Bus == nil {
		return errors.New("broker: no bus connection")
	}
	var err error
	if s.cert, err = mqtt.LoadServerCert(env.Root.ServerCert(), env.Root.ServerKey()); err != nil {
		return fmt.Errorf("MQTT server certificate (written by certmgr): %w", err)
	}
	s.certmgrCC, err = grpc.NewClient("unix://"+env.Root.Socket(certmgrName), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return fmt.Errorf("certmgr client: %w", err)
	}
	s.admit = admission.New(certmgrv1.NewCertManagerClient(s.certmgrCC), s.opts.Admission)
	s.loadDeviceCA()
	g, err := s.loadGroup()
	if err != nil {
		return err
	}
	if env.Config.CloudEnabled() {
		if err := s.startCloud(ctx, g); err != nil {
			return err
		}
	}
	s.mqtt, err = mqtt.New(mqtt.Config{
		Address: env.Endpoints.MQTT,
		Cert:    s.cert,
		Admit:   s.admit.Admit,
		Inbound: s.fromDevice,
		Log:     s.log.With("component", "mqtt"),
		Limits:  s.opts.Limits,
	})
	if err != nil {
		return err
	}
	if err := s.mqtt.Start(); err != nil {
		return err
	}
	if err := s.followBus(); err != nil {
		return err
	}
	s.readyMu.Lock()
	s.following = true
	held := s.readyHeld
	s.readyHeld = nil
	s.readyMu.Unlock()
	if held != nil {
		s.publishBus(subjects.BrokerCloudReady, held)
	}
	if s.stopDeploy, err = followDeployments(s); err != nil {
		return err
	}
	s.stopCerts, s.certsDone = make(chan struct{}), make(chan struct{})
	go s.watchCertFiles()
	brokerv1.RegisterBrokerServer(env.GRPC, &grpcServer{s: s})
	s.log.Info("MQTT server listening", "address", s.mqtt.Addr(), "server_serial", serial(s.cert.Leaf()),
		"deployment", s.deployed.Load().id, "subscriptions", s.router.Table().Len(), "cloud", s.cloud != nil)
	return nil
}

// Stop stops following deployments and the bus, disconnects every device
// and closes the taps.
func (s *Service) Stop(ctx context.Context) error {
	if s.stopDeploy != nil {
		s.stopDeploy()
	}
	for _, sub := range s.subs {
		sub.Unsubscribe()
	}
	if s.stopCerts != nil {
		close(s.stopCerts)
		<-s.certsDone
	}
	s.bg.Wait()
	var errs []error
	if s.mqtt != nil {
		errs = append(errs, s.mqtt.Close(ctx))
	}
	if s.cloud != nil {
		errs = append(errs, s.cloud.Stop(ctx))
	}
	s.taps.closeAll()
	if s.certmgrCC != nil {
		s.certmgrCC.Close()
	}
	return errors.Join(errs...)
}

// loadDeviceCA reads the device CA, which only sharpens refusal reasons
// ("not signed by the device CA"); a missing file is no error.
func (s *Service) loadDeviceCA() {
	b, err := os.ReadFile(s.env.Root.DeviceCACert())
	if err != nil {
		s.log.Debug("device CA not readable; refusals will not say whether it signed a certificate", "err", err)
		return
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		return
	}
	if c, err := x509.ParseCertificate(blk.Bytes); err == nil {
		s.admit.SetDeviceCA(c)
	}
}

// reloadServerCert puts a renewed server certificate in force for new
// connections; established ones keep theirs.
func (s *Service) reloadServerCert(why string) {
	changed, err := s.cert.Reload()
	switch {
	case err != nil:
		s.log.Error("reload MQTT server certificate; keeping the previous one", "err", err, "trigger", why)
	case changed:
		leaf := s.cert.Leaf()
		s.log.Info("MQTT server certificate reloaded", "serial", serial(leaf), "not_after", leaf.NotAfter, "trigger", why)
		s.loadDeviceCA()
	}
}

// watchCertFiles is the safety net for a renewal event lost while the bus
// was away: the files are the truth.
func (s *Service) watchCertFiles() {
	defer close(s.certsDone)
	t := time.NewTicker(certCheckInterval)
	defer t.Stop()
	for {
		select {
		case <-s.stopCerts:
			return
		case <-t.C:
			s.reloadServerCert("file check")
		}
	}
}

func serial(c *x509.Certificate) string {
	if c == nil || c.SerialNumber == nil {
		return ""
	}
	return c.SerialNumber.Text(16)
}
