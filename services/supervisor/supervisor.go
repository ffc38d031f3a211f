// Package supervisor is `ggd --root DIR`, v1's greengrassd: it starts the bus
// and then every daemon as its own child process in dependency order, waits
// for each to report gRPC health SERVING before starting what depends on it,
// restarts crashed daemons with capped exponential backoff, stops a crash
// loop instead of spinning, and stops everything in reverse order.
package supervisor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"time"

	supervisorv1 "github.com/evergreen-edge/evergreen/proto/evergreen/supervisor/v1"
	"github.com/evergreen-edge/evergreen/services/bus"
	"github.com/evergreen-edge/evergreen/services/kit/config"
	"github.com/evergreen-edge/evergreen/services/kit/daemon"
	"github.com/evergreen-edge/evergreen/services/kit/endpoints"
	"github.com/evergreen-edge/evergreen/services/kit/errdefs"
	"github.com/evergreen-edge/evergreen/services/kit/layout"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// Name is the supervisor's socket name (DIR/run/supervisor.sock).
const Name = "supervisor"

// Options configure a Supervisor.
type Options struct {
	Root   layout.Root
	Config *config.Config
	// Specs in start order; the first must be the bus.
	Specs []daemon.Spec
	// Exe is the multi-call ggd binary; children run `Exe <daemon> --root DIR`.
	Exe string
	Log *slog.Logger
	// Version is reported by ListDaemons.
	Version string
	// ChildEnv is added to every daemon's environment (the OTA launcher's
	// marker: a daemon runs the supervisor's binary, never another one).
	ChildEnv []string
}

// RestartExitCode is the supervisor's exit code when it restarts the core
// without managedRespawn: the systemd unit restarts on it
// (RestartForceExitStatus=100), as GGv2's nucleus does.
const RestartExitCode = 100

// Restart is a granted RequestRestart: the host stops the suite, then
// re-executes (Exec) or exits with RestartExitCode.
type Restart struct {
	Reason string
	Exec   bool
}

// Supervisor manages the suite's child processes.
type Supervisor struct {
	o         Options
	log       *slog.Logger
	eps       endpoints.Endpoints
	procs     []*proc
	byName    map[string]*proc
	grpc      *grpc.Server
	http      *http.Server
	httpAddr  string
	wg        sync.WaitGroup
	stopping  chan struct{}
	stopOnce  sync.Once
	startedAt time.Time
	lock      *layout.Lock
	// restart carries the one granted restart request to the host.
	restart     chan Restart
	restartOnce sync.Once
}

// New prepares the layout, resolves listen addresses into
// DIR/run/endpoints.json and writes bus credentials for every daemon.
func New(o Options) (*Supervisor, error) {
	if len(o.Specs) == 0 || o.Specs[0].Name != bus.Name {
		return nil, errors.New("supervisor: the bus must be the first daemon")
	}
	if err := o.Root.Create(); err != nil {
		return nil, err
	}
	// One supervisor per root: a second one would rewrite endpoints.json
	// under the first one's daemons.
	lock, err := o.Root.TryLock(Name)
	if err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			lock.Unlock()
		}
	}()
	eps, err := endpoints.Resolve(o.Config.Evergreen.Listen)
	if err != nil {
		return nil, err
	}
	if err := endpoints.Write(o.Root.EndpointsFile(), eps); err != nil {
		return nil, err
	}
	var users []string
	for _, s := range o.Specs {
		if s.Bus != nil {
			users = append(users, s.Name)
		}
	}
	if err := bus.EnsureCredentials(o.Root, users); err != nil {
		return nil, err
	}
	s := &Supervisor{o: o, log: o.Log, eps: eps, lock: lock, byName: map[string]*proc{}, stopping: make(chan struct{}), startedAt: time.Now(),
		restart: make(chan Restart, 1)}
	allowed := map[string]bool{}
	for _, n := range o.Config.Evergreen.Daemons {
		allowed[n] = true
	}
	for _, spec := range o.Specs {
		if len(allowed) > 0 && !allowed[spec.Name] && spec.Name != bus.Name {
			continue
		}
		p := &proc{s: s, spec: spec, state: supervisorv1.DaemonState_DAEMON_STATE_STOPPED, want: make(chan bool, 1)}
		s.procs = append(s.procs, p)
		s.byName[spec.Name] = p
	}
	for _, p := range s.procs {
		for _, r := range p.spec.Requires {
			if s.byName[r] == nil {
				return nil, fmt.Errorf("daemon %s requires %s, which is not enabled (evergreen.daemons)", p.spec.Name, r)
			}
		}
	}
	if err := s.serveAPI(); err != nil {
		return nil, err
	}
	ok = true
	return s, nil
}

// RestartRequested delivers a granted RequestRestart once. The host (ggd's
// main) then calls Shutdown and re-executes or exits with RestartExitCode.
func (s *Supervisor) RestartRequested() <-chan Restart { return s.restart }

// RequestRestart grants the first restart request (the API's, or the
// host's own); later ones get the same answer and change nothing.
func (s *Supervisor) RequestRestart(reason string) Restart {
	r := Restart{Reason: reason, Exec: s.o.Config.ManagedRespawn}
	s.restartOnce.Do(func() {
		s.log.Info("restart of the core requested", "reason", reason, "managed_respawn", r.Exec)
		s.restart <- r
	})
	return r
}

// Endpoints are the resolved listen addresses.
func (s *Supervisor) Endpoints() endpoints.Endpoints { return s.eps }

// Start starts every daemon. It returns once all are healthy or ctx ends
// (the daemons keep being supervised either way).
func (s *Supervisor) Start(ctx context.Context) error {
	for _, p := range s.procs {
		s.wg.Add(1)
		go p.run()
		p.requestRun(true)
	}
	for _, p := range s.procs {
		if err := p.waitHealthy(ctx); err != nil {
			return err
		}
	}
	s.log.Info("suite ready", "daemons", len(s.procs), "took", time.Since(s.startedAt).Round(time.Millisecond))
	return nil
}

func (s *Supervisor) serveAPI() error {
	g, h := daemon.NewGRPCServer(s.log)
	supervisorv1.RegisterSupervisorServer(g, &api{s: s})
	ln, err := daemon.ListenUnix(s.o.Root.Socket(Name))
	if err != nil {
		return err
	}

	h.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	s.grpc = g
	go g.Serve(ln)

	if s.eps.HTTP != "" {
		hl, err := net.Listen("tcp", s.eps.HTTP)
		if err != nil {
			ln.Close()
			return fmt.Errorf("evergreen.listen.http %s: %w", s.eps.HTTP, err)
		}
		s.httpAddr = hl.Addr().String()
		s.http = &http.Server{Handler: s.httpHandler(), ReadHeaderTimeout: 5 * time.Second}
		go s.http.Serve(hl)
	}
	os.WriteFile(s.o.Root.PidFile(Name), []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644)
	return nil
}

// Shutdown stops daemons in reverse start order, each with the configured
// stop timeout before SIGKILL, then the API.
func (s *Supervisor) Shutdown(ctx context.Context) error {
	for i := len(s.procs) - 1; i >= 0; i-- {
		p := s.procs[i]
		p.requestRun(false)
		p.waitStopped(ctx)
	}
	// Only now release the loops: closing stopping first would stop every
	// daemon at once instead of in reverse order.
	s.stopOnce.Do(func() { close(s.stopping) })
	s.wg.Wait()
	if s.http != nil {
		s.http.Shutdown(ctx)
	}
	if s.grpc != nil {
		s.grpc.Stop()
	}
	os.Remove(s.o.Root.Socket(Name))
	os.Remove(s.o.Root.PidFile(Name))
	s.lock.Unlock()
	s.log.Info("suite stopped")
	return nil
}

func (s *Supervisor) get(name string) (*proc, error) {
	if name == "" {
		return nil, errdefs.InvalidArgument("name", "must not be empty")
	}
	p := s.byName[name]
	if p == nil {
		return nil, errdefs.NotFound("daemon", name)
	}
	return p, nil
}

func (s *Supervisor) timeouts() (start, stop time.Duration) {
	sv := s.o.Config.Evergreen.Supervisor
	return time.Duration(sv.StartTimeoutMs) * time.Millisecond, time.Duration(sv.StopTimeoutMs) * time.Millisecond
}

// checkHealth asks a daemon's gRPC health endpoint once.
func checkHealth(ctx context.Context, socket string) bool {
	conn, err := grpc.NewClient("unix://"+socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return false
	}
	defer conn.Close()
	resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
	return err == nil && resp.Status == healthpb.HealthCheckResponse_SERVING
}

// CheckHealth is `ggd health`: true when the daemon's socket answers SERVING.
func CheckHealth(root layout.Root, daemonName string, timeout time.Duration) bool {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return checkHealth(ctx, root.Socket(daemonName))
}

func (s *Supervisor) command(p *proc) *exec.Cmd {
	cmd := exec.Command(s.o.Exe, p.spec.Name, "--root", s.o.Root.Dir())
	cmd.Stdout = os.Stderr
	cmd.Stderr = os.Stderr
	env := append([]string{"EVERGREEN_SUPERVISED=1"}, s.o.ChildEnv...)
	for _, kv := range os.Environ() {
		// The children must not talk to systemd in the supervisor's name.
		if !hasPrefix(kv, "NOTIFY_SOCKET=") && !hasPrefix(kv, "WATCHDOG_") && !hasPrefix(kv, "EVERGREEN_GRPC_LISTEN=") {
			env = append(env, kv)
		}
	}
	cmd.Env = env
	// A killed supervisor takes its children with it: no orphans.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	return cmd
}

func hasPrefix(s, p string) bool { return len(s) >= len(p) && s[:len(p)] == p }
