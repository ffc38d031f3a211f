// Package daemon is the lifecycle every Evergreen daemon shares: prepare the
// root, load config, open the log, connect to the bus, serve gRPC (health,
// reflection) on DIR/run/<daemon>.sock, tell systemd, stop with a deadline.
//
// The same Start is the in-process entry point (tests, benchmarks) and, via
// Main, the body of `ggd <daemon> --root DIR`.
package daemon

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/evergreen-edge/evergreen/services/kit/busconn"
	"github.com/evergreen-edge/evergreen/services/kit/config"
	"github.com/evergreen-edge/evergreen/services/kit/endpoints"
	"github.com/evergreen-edge/evergreen/services/kit/layout"
	"github.com/evergreen-edge/evergreen/services/kit/logging"
	"github.com/evergreen-edge/evergreen/services/kit/memtrim"
	"github.com/evergreen-edge/evergreen/services/kit/sdnotify"
	"github.com/nats-io/nats.go"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// Service is what a daemon implements. Start registers its gRPC services on
// env.GRPC, subscribes on env.Bus, loads its state, and returns once it can
// serve; Stop releases everything before the deadline of ctx.
type Service interface {
	Start(ctx context.Context, env *Env) error
	Stop(ctx context.Context) error
}

// BusRole is what a daemon may do on the bus; the bus enforces it.
type BusRole struct {
	Publish   []string
	Subscribe []string
	// AllowResponses lets the daemon reply to requests it received.
	AllowResponses bool
}

// Spec declares a daemon: its name, what must run before it, and its bus
// role (nil: the daemon does not use the bus).
type Spec struct {
	Name     string
	Requires []string
	Bus      *BusRole
	// ConsumesGroup marks daemons that apply a part of the deployed group;
	// the deployagent waits for each of them.
	ConsumesGroup bool
	New           func() Service
}

// Env is what a running daemon gets from the kit.
type Env struct {
	Name      string
	Root      layout.Root
	Config    *config.Config
	Endpoints endpoints.Endpoints
	Log       *slog.Logger
	// Logs changes Log's level and file space while the daemon runs
	// (the group's GreengrassSystem logger).
	Logs   *logging.Control
	GRPC   *grpc.Server
	Health *health.Server
	// Bus is nil when the spec has no bus role.
	Bus *nats.Conn
}

// Options tune Start.
type Options struct {
	Root string
	// Config overrides DIR/config/config.json (tests).
	Config *config.Config
	// LogStderr receives log records besides the file; nil means os.Stderr.
	LogStderr io.Writer
	// BusURL overrides the bus address (also: $EVERGREEN_BUS_URL).
	BusURL string
	// GRPCListen, when set, adds a mutual-TLS TCP listener (also:
	// $EVERGREEN_GRPC_LISTEN).
	GRPCListen string
}

// Running is a started daemon.
type Running struct {
	Env      *Env
	spec     Spec
	svc      Service
	lns      []net.Listener
	closeLg  io.Closer
	done     chan struct{}
	serveErr chan error
	once     sync.Once
	stopErr  error
	trim     *time.Timer
	lock     *layout.Lock
	logs     *logForwarder
}

// TrimDelay is how long after ready a daemon gives start-up memory back
// (see package memtrim).
const TrimDelay = 2 * time.Second

// StreamGrace is how long a stopping daemon waits for RPCs in flight.
const StreamGrace = 500 * time.Millisecond

// PrepareRoot creates the layout and the default config on first start, then
// loads and validates config.json.
func PrepareRoot(root layout.Root) (*config.Config, error) {
	if err := root.Create(); err != nil {
		return nil, err
	}
	if err := config.WriteDefault(root.ConfigFile()); err != nil && !errors.Is(err, fs.ErrExist) {
		return nil, err
	}
	return config.Load(root.ConfigFile())
}

// Start runs spec in this process and returns once it is ready (health
// SERVING on its socket).
func Start(ctx context.Context, spec Spec, o Options) (*Running, error) {
	if o.Root == "" {
		return nil, errors.New("--root is required")
	}
	// Absolute, so that "unix://" targets and children never depend on the
	// working directory (`ggd --root ./var`).
	abs, err := filepath.Abs(o.Root)
	if err != nil {
		return nil, err
	}
	root := layout.Root(abs)
	cfg := o.Config
	if cfg == nil {
		if cfg, err = PrepareRoot(root); err != nil {
			return nil, err
		}
	} else if err := root.Create(); err != nil {
		return nil, err
	}
	lock, err := root.TryLock(spec.Name)
	if err != nil {
		return nil, err
	}
	ep, err := endpoints.Ensure(root.EndpointsFile(), cfg.Evergreen.Listen)
	if err != nil {
		lock.Unlock()
		return nil, err
	}
	lg := cfg.Evergreen.Logging
	log, closeLog, err := logging.New(spec.Name, logging.Options{
		File: root.LogFile(spec.Name), MaxFileBytes: lg.MaxFileBytes, MaxFiles: lg.MaxFiles, Level: lg.Level, Stderr: o.LogStderr,
	})
	if err != nil {
		lock.Unlock()
		return nil, err
	}
	r := &Running{spec: spec, lock: lock, closeLg: closeLog, done: make(chan struct{}), serveErr: make(chan error, 2)}
	env := &Env{Name: spec.Name, Root: root, Config: cfg, Endpoints: ep, Log: log, Logs: closeLog}
	r.Env = env
	// The group's loggers hold from the first record of the service.
	if ls, err := LoggersInForce(root); err != nil {
		log.Warn("the group's loggers are unreadable; config.json's evergreen.logging stays in force", "err", err)
	} else if ls != nil {
		log.Info("group loggers in force", "loggers", closeLog.ApplyGroup(ls))
	}
	fail := func(err error) (*Running, error) {
		r.teardown(context.Background())
		return nil, fmt.Errorf("%s: %w", spec.Name, err)
	}

	if spec.Bus != nil {
		url := o.BusURL
		if url == "" {
			url = os.Getenv("EVERGREEN_BUS_URL")
		}
		if url == "" {
			url = "nats://" + endpoints.Dialable(ep.Bus)
		}
		if env.Bus, err = busconn.Connect(url, root.BusCreds(spec.Name), spec.Name, log); err != nil {
			return fail(err)
		}
		// Records for the group's AWSCloudWatch loggers go to the broker,
		// which has the cloud connection; without a cloud none are kept.
		if subject := LogsSubject(spec.Bus); subject != "" && cfg.CloudEnabled() {
			r.logs = startLogForwarder(env.Bus, subject, closeLog)
		}
	}

	env.GRPC, env.Health = NewGRPCServer(log)
	ln, err := ListenUnix(root.Socket(spec.Name))
	if err != nil {
		return fail(err)
	}
	r.lns = append(r.lns, ln)
	tcp := o.GRPCListen
	if tcp == "" {
		tcp = os.Getenv("EVERGREEN_GRPC_LISTEN")
	}
	// evergreen.listen.grpc names one address, so it serves a daemon run
	// on its own (a unit, a container); under the supervisor every daemon
	// shares the host and only the unix sockets are served.
	if tcp == "" && os.Getenv("EVERGREEN_SUPERVISED") == "" {
		tcp = ep.GRPC
	}
	if tcp != "" {
		tl, err := mutualTLSFromRoot(root, tcp)
		if err != nil {
			return fail(fmt.Errorf("grpc listener %s: %w", tcp, err))
		}
		r.lns = append(r.lns, tl)
	}

	r.svc = spec.New()
	if err := r.svc.Start(ctx, env); err != nil {
		r.svc.Stop(context.Background())
		r.svc = nil
		return fail(err)
	}
	for _, l := range r.lns {
		go func(l net.Listener) { r.serveErr <- env.GRPC.Serve(l) }(l)
	}
	if failsHealthForTest(spec.Name) {
		log.Warn("built never to report healthy (a failpoints test build)")
	} else {
		env.Health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
		env.Health.SetServingStatus(spec.Name, healthpb.HealthCheckResponse_SERVING)
	}
	os.WriteFile(root.PidFile(spec.Name), []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644)
	log.Info("ready", "socket", root.Socket(spec.Name), "pid", os.Getpid())
	// Start-up garbage and start-up code are done with once the burst of
	// first requests has passed.
	r.trim = time.AfterFunc(TrimDelay, memtrim.Trim)
	return r, nil
}

func mutualTLSFromRoot(root layout.Root, addr string) (net.Listener, error) {
	cert, err := tls.LoadX509KeyPair(root.CoreCert(), root.CoreKey())
	if err != nil {
		return nil, err
	}
	ca, err := os.ReadFile(root.GroupCACert())
	if err != nil {
		return nil, err
	}
	return MutualTLSListener(addr, cert, ca)
}

// Done is closed when the daemon has stopped.
func (r *Running) Done() <-chan struct{} { return r.done }

// Shutdown stops the daemon: health NOT_SERVING, the service's Stop, then the
// gRPC server, the bus connection and the log, all before ctx's deadline.
func (r *Running) Shutdown(ctx context.Context) error {
	r.once.Do(func() {
		r.Env.Log.Info("stopping")
		r.stopErr = r.teardown(ctx)
		close(r.done)
	})
	return r.stopErr
}

func (r *Running) teardown(ctx context.Context) error {
	env := r.Env
	var errs []error
	if r.trim != nil {
		r.trim.Stop()
	}
	if env.Health != nil {
		env.Health.Shutdown()
	}
	if r.svc != nil {
		if err := r.svc.Stop(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	if env.GRPC != nil {
		// Let unary calls in flight finish, but do not wait for
		// long-lived streams (health Watch, log follow): they end only
		// when their clients hang up.
		grace := time.NewTimer(StreamGrace)
		defer grace.Stop()
		stopped := make(chan struct{})
		go func() { env.GRPC.GracefulStop(); close(stopped) }()
		select {
		case <-stopped:
		case <-grace.C:
			env.GRPC.Stop()
		case <-ctx.Done():
			env.GRPC.Stop()
		}
	}
	for _, l := range r.lns {
		l.Close()
	}
	r.logs.close()
	if env.Bus != nil {
		env.Bus.Drain()
		deadline := time.Now().Add(time.Second)
		for !env.Bus.IsClosed() && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		env.Bus.Close()
	}
	os.Remove(env.Root.Socket(r.spec.Name))
	os.Remove(env.Root.PidFile(r.spec.Name))
	if r.closeLg != nil {
		r.closeLg.Close()
	}
	r.lock.Unlock()
	return errors.Join(errs...)
}

// Main is `ggd <daemon> --root DIR`: start, notify systemd, wait for
// SIGTERM/SIGINT, stop with the configured deadline. It returns the exit
// code.
func Main(spec Spec, args []string) int {
	fs := flag.NewFlagSet("ggd "+spec.Name, flag.ContinueOnError)
	root := fs.String("root", defaultRoot(), "suite root directory")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer cancel()
	r, err := Start(ctx, spec, Options{Root: *root})
	if err != nil {
		fmt.Fprintf(os.Stderr, "ggd %s: %v\n", spec.Name, err)
		return 1
	}
	sdnotify.Ready()
	stopWatchdog := make(chan struct{})
	if iv := sdnotify.WatchdogInterval(); iv > 0 {
		go sdnotify.Watchdog(iv, stopWatchdog)
	}
	var exitErr error
	select {
	case <-ctx.Done():
	case exitErr = <-r.serveErr:
	}
	close(stopWatchdog)
	sdnotify.Stopping()
	stop := time.Duration(r.Env.Config.Evergreen.Supervisor.StopTimeoutMs) * time.Millisecond
	sctx, scancel := context.WithTimeout(context.Background(), stop)
	defer scancel()
	if err := r.Shutdown(sctx); err != nil {
		fmt.Fprintf(os.Stderr, "ggd %s: stop: %v\n", spec.Name, err)
		return 1
	}
	if exitErr != nil && !errors.Is(exitErr, grpc.ErrServerStopped) {
		fmt.Fprintf(os.Stderr, "ggd %s: serve: %v\n", spec.Name, exitErr)
		return 1
	}
	return 0
}

func defaultRoot() string {
	if r := os.Getenv("EVERGREEN_ROOT"); r != "" {
		return r
	}
	return "/var/lib/evergreen"
}
