// Package streammgr is `ggd streammgr`: v1's stream manager. Functions
// speak the v1 stream manager protocol (package protocol) over TCP on
// evergreen.listen.streams; messages live in package store under
// DIR/data/streammgr/; operators use the StreamManager gRPC API on
// DIR/run/streammgr.sock. See README.md.
package streammgr

import (
	"context"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	streammgrv1 "github.com/evergreen-edge/evergreen/proto/evergreen/streammgr/v1"
	"github.com/evergreen-edge/evergreen/services/kit/daemon"
	"github.com/evergreen-edge/evergreen/services/kit/deployment"
	"github.com/evergreen-edge/evergreen/services/kit/groupdef"
	"github.com/evergreen-edge/evergreen/services/kit/subjects"
	"github.com/evergreen-edge/evergreen/streammgr/export"
	"github.com/evergreen-edge/evergreen/streammgr/store"
)

// Name is the daemon's name.
const Name = "streammgr"

// Options tune the daemon beyond config.json (tests, benchmarks).
type Options struct {
	// Now replaces time.Now in the store and the exports (tests).
	Now func() time.Time
	// ExportBackoffBase and ExportBackoffMax shape the exports' retry
	// delays (export.DefaultBackoffBase, export.DefaultBackoffMax: 1 s
	// doubling up to v1's 5 minutes).
	ExportBackoffBase, ExportBackoffMax time.Duration
}

// Spec declares the stream manager with default options.
func Spec() daemon.Spec { return SpecWithOptions(Options{}) }

// SpecWithOptions declares the stream manager with o.
func SpecWithOptions(o Options) daemon.Spec {
	return daemon.Spec{
		Name: Name,
		// Before the runtime, so that functions find it listening when
		// they start; it asks the runtime about tokens only when a client
		// connects (a client is a running function).
		Requires: []string{"bus"},
		// The group's GGStreamManager function configures it (spec §2.7).
		ConsumesGroup: true,
		// Only its log records for the cloud; exports will publish more.
		Bus: &daemon.BusRole{Publish: []string{"evergreen.streammgr.>"},
			Subscribe: []string{subjects.DeployApply(Name)}, AllowResponses: true},
		New: func() daemon.Service { return New(o) },
	}
}

// Service is the stream manager and its local API.
type Service struct {
	opts    Options
	env     *daemon.Env
	store   *store.Store
	exports *export.Manager
	ln      net.Listener
	auth    *tokenChecker
	// authOn is the AuthenticateClient setting in force (config.json, or
	// the group's GGStreamManager variable); read at each Connect.
	authOn atomic.Bool
	// stopFollowing ends the deployment subscription.
	stopFollowing func()

	// lifeMu serialises a stream's create, update and delete with its
	// exports' start and stop, so that an export never outlives its
	// stream nor runs against a stream created again under its name.
	// Lock order: lifeMu, then export.Manager's, then the store's.
	lifeMu sync.Mutex

	mu    sync.Mutex
	conns map[*conn]struct{}
	wg    sync.WaitGroup
	once  sync.Once
}

var _ streammgrv1.StreamManagerClient = (*Service)(nil)

// New returns a service that does nothing until Start.
func New(o Options) *Service { return &Service{opts: o, conns: map[*conn]struct{}{}} }

// Start opens the store (reporting damage), listens on
// evergreen.listen.streams and registers the gRPC API.
func (s *Service) Start(ctx context.Context, env *daemon.Env) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.env = env
	st, err := store.Open(store.Options{Dir: env.Root.DataDir(Name), Logger: env.Log.With("component", "store"), Now: s.opts.Now})
	if err != nil {
		return fmt.Errorf("stream store: %w", err)
	}
	s.store = st
	sc := env.Config.Evergreen.Streams
	s.exports = export.New(export.Options{Store: st, Log: env.Log.With("component", "export"), Now: s.opts.Now,
		BackoffBase: s.opts.ExportBackoffBase, BackoffMax: s.opts.ExportBackoffMax,
		// v1's exporter thread pool and bandwidth limit (kbit/s; kilo is 1000).
		ThreadPoolSize: sc.ExporterThreadPoolSize, MaxBandwidth: sc.ExporterMaxBandwidthKbps * 1000,
		S3MinPartSize: sc.S3MultipartMinPartSizeBytes,
		AWS: export.AWSOptions{Region: env.Config.StreamsRegion(), S3ForcePathStyle: sc.AWS.S3ForcePathStyle,
			Endpoints: map[string]string{
				export.ServiceS3: sc.AWS.S3Endpoint, export.ServiceKinesis: sc.AWS.KinesisEndpoint,
				export.ServiceIoTAnalytics: sc.AWS.IoTAnalyticsEndpoint, export.ServiceIoTSiteWise: sc.AWS.IoTSiteWiseEndpoint,
			}},
	})
	for _, n := range st.List() {
		if err := s.exports.Sync(n); err != nil {
			env.Log.Error("stream exports not started", "stream", n, "err", err)
		}
	}
	s.auth = newTokenChecker(env.Root.Socket("runtime"))
	g, id, err := deployment.LoadCurrent(env.Root)
	if err != nil {
		s.exports.Close()
		st.Close()
		return err
	}
	// The group in force was accepted when it was deployed; should its
	// settings be refused now (a config.json change), config.json's stand.
	if err := s.applySettings(g, false); err != nil {
		env.Log.Error("the group's GGStreamManager settings are not applied; config.json's stand", "err", err)
	}
	ln, err := net.Listen("tcp", env.Endpoints.Streams)
	if err != nil {
		s.exports.Close()
		st.Close()
		return fmt.Errorf("evergreen.listen.streams: %w", err)
	}
	s.ln = ln
	if s.stopFollowing, err = deployment.Serve(env, s.applyGroup, deployment.WithPrepare(s.prepareGroup)); err != nil {
		ln.Close()
		s.exports.Close()
		st.Close()
		return err
	}
	streammgrv1.RegisterStreamManagerServer(env.GRPC, &grpcServer{local: s})
	s.wg.Add(1)
	go s.accept()
	damaged := 0
	for _, n := range st.List() {
		if in, err := st.Describe(n); err == nil && len(in.Damage) > 0 {
			damaged++
		}
	}
	env.Log.Info("stream manager ready", "listen", ln.Addr().String(), "streams", len(st.List()),
		"damaged_streams", damaged, "authenticate_client", s.authOn.Load(), "deployment", id)
	return nil
}

// Stop closes the listener and every connection, then the store.
func (s *Service) Stop(ctx context.Context) error {
	var err error
	s.once.Do(func() {
		if s.stopFollowing != nil {
			s.stopFollowing()
		}
		if s.ln != nil {
			s.ln.Close()
		}
		s.mu.Lock()
		for c := range s.conns {
			c.nc.Close()
		}
		s.mu.Unlock()
		done := make(chan struct{})
		go func() { s.wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-ctx.Done():
		}
		if s.auth != nil {
			s.auth.close()
		}
		if s.exports != nil {
			s.exports.Close()
		}
		if s.store != nil {
			err = s.store.Close()
		}
	})
	return err
}

// Addr is the address the protocol listener is bound to.
func (s *Service) Addr() string { return s.ln.Addr().String() }

// settingsOf is the settings in force under g.
func (s *Service) settingsOf(g *groupdef.Group) (Settings, error) {
	return SettingsFromGroup(g, s.env.Config.Evergreen.Streams, s.env.Endpoints.Streams, s.env.Root.DataDir(Name))
}

// applySettings puts g's settings in force: config.json's with the group's
// GGStreamManager variables over them. On an error (only a rollback or
// start-up gets here with one) config.json's settings are put in force.
func (s *Service) applySettings(g *groupdef.Group, rollback bool) error {
	set, err := s.settingsOf(g)
	if err != nil {
		if !rollback && g != nil {
			return err
		}
		set, _ = s.settingsOf(nil)
	}
	s.authOn.Store(set.AuthenticateClient)
	s.exports.SetLimits(set.ThreadPoolSize, set.MaxBandwidthKbps*1000, set.S3MinPartSize)
	for _, msg := range set.Ignored {
		s.env.Log.Warn("GGStreamManager variable not applied", "variable", msg)
	}
	s.env.Log.Info("stream manager settings in force", "authenticate_client", set.AuthenticateClient,
		"exporter_thread_pool_size", set.ThreadPoolSize, "exporter_max_bandwidth_kbps", set.MaxBandwidthKbps,
		"s3_min_part_size", set.S3MinPartSize)
	return err
}

// prepareGroup checks a new group's GGStreamManager variables before the
// deployagent commits it.
func (s *Service) prepareGroup(_ context.Context, g *groupdef.Group, _ string) error {
	_, err := s.settingsOf(g)
	return err
}

// applyGroup puts a new group's settings in force; a rollback is taken
// whatever it holds.
func (s *Service) applyGroup(_ context.Context, g *groupdef.Group, rollback bool) error {
	return s.applySettings(g, rollback)
}
