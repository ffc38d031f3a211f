// Package ipdetector is `ggd ipdetector` (v1's GGIPDetector plus the cloud's
// discovery API, served locally): it detects the core's addresses, publishes
// the connectivity info devices use to reach the MQTT server, and answers
// GET /greengrass/discover/thing/<thing> over HTTPS with mutual TLS.
//
// Service is the local object: it implements ipdetectorv1.IPDetectorClient,
// so in-process callers and the gRPC adapter on the daemon's socket share
// one implementation.
package ipdetector

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"time"

	certmgrv1 "github.com/evergreen-edge/evergreen/proto/evergreen/certmgr/v1"
	ipdetectorv1 "github.com/evergreen-edge/evergreen/proto/evergreen/ipdetector/v1"
	"github.com/evergreen-edge/evergreen/services/kit/daemon"
	"github.com/evergreen-edge/evergreen/services/kit/deployment"
	"github.com/evergreen-edge/evergreen/services/kit/groupdef"
	"github.com/evergreen-edge/evergreen/services/kit/subjects"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"
)

// Name is the daemon's name.
const Name = "ipdetector"

// DefaultPollInterval is how often the interface addresses are read. One
// read is a netlink dump of a few hundred bytes; polling keeps the daemon
// free of a netlink subscription and its goroutine-per-socket plumbing.
const DefaultPollInterval = 10 * time.Second

// Options tune the daemon beyond config.json (tests).
type Options struct {
	// PollInterval replaces DefaultPollInterval when positive.
	PollInterval time.Duration
	// Addrs lists the candidate addresses of the host; nil reads the
	// interfaces (InterfaceAddrs). Tests use it to change addresses.
	Addrs func() ([]netip.Addr, error)
}

// Spec declares the ipdetector daemon with default options.
func Spec() daemon.Spec { return SpecWithOptions(Options{}) }

// SpecWithOptions declares the ipdetector daemon with o.
func SpecWithOptions(o Options) daemon.Spec {
	return daemon.Spec{
		Name:     Name,
		Requires: []string{"bus", "certmgr"},
		Bus: &daemon.BusRole{
			Publish:        []string{"evergreen.ipdetector.>"},
			Subscribe:      []string{subjects.DeployApply(Name)},
			AllowResponses: true,
		},
		// It needs the group's core thing, devices and id; it accepts
		// every group.
		ConsumesGroup: true,
		New:           func() daemon.Service { return New(o) },
	}
}

var _ ipdetectorv1.IPDetectorClient = (*Service)(nil)

// Service is the ipdetector daemon and its local API.
type Service struct {
	opts Options
	env  *daemon.Env
	// mqttHost and mqttPort are the MQTT server's resolved listen address.
	mqttHost string
	mqttPort uint32

	// mu guards conn and the group; it is never held across I/O.
	mu      sync.Mutex
	conn    *ipdetectorv1.Connectivity
	group   *groupdef.Group
	stopped bool

	certmgrConn   *grpc.ClientConn
	certmgr       certmgrv1.CertManagerClient
	discovery     *discoveryServer
	stopFollowing func()
	stopPoll      chan struct{}
	pollDone      chan struct{}
}

// New returns a service that does nothing until Start.
func New(o Options) *Service {
	if o.PollInterval <= 0 {
		o.PollInterval = DefaultPollInterval
	}
	if o.Addrs == nil {
		o.Addrs = InterfaceAddrs
	}
	return &Service{opts: o}
}

// Start detects the addresses and publishes the connectivity info, loads
// the group in force, starts the discovery server and registers the gRPC
// API. Nothing here waits for certmgr: its socket is dialled lazily and
// the server certificate is read at each handshake.
func (s *Service) Start(ctx context.Context, env *daemon.Env) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.env = env
	host, port, err := net.SplitHostPort(env.Endpoints.MQTT)
	if err != nil {
		return fmt.Errorf("MQTT endpoint %q: %w", env.Endpoints.MQTT, err)
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil || p == 0 {
		return fmt.Errorf("MQTT endpoint %q: port is not 1..65535", env.Endpoints.MQTT)
	}
	s.mqttHost, s.mqttPort = host, uint32(p)
	if env.Endpoints.Discovery == "" {
		return errors.New("no discovery endpoint (evergreen.listen.discovery)")
	}

	g, id, err := deployment.LoadCurrent(env.Root)
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.group = g
	s.mu.Unlock()

	if s.certmgrConn, err = grpc.NewClient("unix://"+env.Root.Socket("certmgr"),
		grpc.WithTransportCredentials(insecure.NewCredentials())); err != nil {
		return fmt.Errorf("certmgr client: %w", err)
	}
	s.certmgr = certmgrv1.NewCertManagerClient(s.certmgrConn)

	s.refresh(true)
	if s.discovery, err = startDiscovery(s, env.Endpoints.Discovery); err != nil {
		return err
	}
	ipdetectorv1.RegisterIPDetectorServer(env.GRPC, &grpcServer{local: s})
	if s.stopFollowing, err = deployment.Serve(env, s.applyGroup); err != nil {
		return err
	}
	s.stopPoll, s.pollDone = make(chan struct{}), make(chan struct{})
	go s.poll(s.opts.PollInterval)

	s.mu.Lock()
	n := len(s.conn.GetInfo())
	s.mu.Unlock()
	env.Log.Info("discovery ready", "listen", s.discovery.addr(), "mqtt_port", s.mqttPort,
		"connectivity_entries", n, "group", g != nil, "deployment", id)
	return nil
}

// Stop ends the poller, the deployment follower and the discovery server;
// a discovery request in flight gets until ctx's deadline.
func (s *Service) Stop(ctx context.Context) error {
	s.mu.Lock()
	s.stopped = true
	s.mu.Unlock()
	if s.stopPoll != nil {
		close(s.stopPoll)
		<-s.pollDone
	}
	if s.stopFollowing != nil {
		s.stopFollowing()
	}
	var errs []error
	if s.discovery != nil {
		errs = append(errs, s.discovery.shutdown(ctx))
	}
	if s.certmgrConn != nil {
		errs = append(errs, s.certmgrConn.Close())
	}
	return errors.Join(errs...)
}

func (s *Service) poll(every time.Duration) {
	defer close(s.pollDone)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-s.stopPoll:
			return
		case <-t.C:
			s.refresh(false)
		}
	}
}

// refresh recomputes the connectivity info and publishes it when it
// changed, or always when first.
func (s *Service) refresh(first bool) {
	var detected []netip.Addr
	if s.env.Config.Evergreen.IPDetector.AutoDetect {
		addrs, err := s.opts.Addrs()
		if err != nil {
			// Keep what was detected before rather than telling devices
			// the core has no address.
			s.env.Log.Warn("list interface addresses", "err", err)
			if !first {
				return
			}
		}
		detected = advertised(addrs, s.mqttHost)
	}
	next := buildConnectivity(s.env.Config.Evergreen.Connectivity, detected, s.mqttPort)
	s.mu.Lock()
	if s.stopped || (!first && sameConnectivity(next, s.conn)) {
		s.mu.Unlock()
		return
	}
	s.conn = next
	s.mu.Unlock()
	if !first {
		s.env.Log.Info("connectivity changed", "hosts", hostAddresses(next))
	}
	s.publish(next)
}

// publish announces c on the bus. A lost connection is logged, not fatal:
// the bus client buffers while it reconnects.
func (s *Service) publish(c *ipdetectorv1.Connectivity) {
	b, err := proto.Marshal(c)
	if err == nil {
		err = s.env.Bus.Publish(subjects.IPConnectivity, b)
	}
	if err != nil {
		s.env.Log.Error("publish connectivity", "subject", subjects.IPConnectivity, "err", err)
	}
}

// GetConnectivity returns the connectivity info as devices see it in
// discovery.
func (s *Service) GetConnectivity(context.Context, *ipdetectorv1.GetConnectivityRequest, ...grpc.CallOption) (*ipdetectorv1.Connectivity, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return proto.Clone(s.conn).(*ipdetectorv1.Connectivity), nil
}

// applyGroup follows deployments: the ipdetector has nothing to refuse, it
// serves whatever group is in force (nil after a reset). For the same
// reason it has no PrepareFunc: the kit accepts PREPARE once the group
// parses, which is all the ipdetector would check, and the group in force
// is served until APPLY.
func (s *Service) applyGroup(_ context.Context, g *groupdef.Group, _ bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.group = g
	return nil
}

// current returns the group in force and the connectivity info.
func (s *Service) current() (*groupdef.Group, *ipdetectorv1.Connectivity) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.group, s.conn
}

// grpcServer is the thin adapter from the gRPC server interface to the
// local service.
type grpcServer struct {
	ipdetectorv1.UnimplementedIPDetectorServer
	local ipdetectorv1.IPDetectorClient
}

func (g *grpcServer) GetConnectivity(ctx context.Context, in *ipdetectorv1.GetConnectivityRequest) (*ipdetectorv1.Connectivity, error) {
	return g.local.GetConnectivity(ctx, in)
}
