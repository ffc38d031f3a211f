package supervisor

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/evergreen-edge/evergreen/services/kit/daemon"

	supervisorv1 "github.com/evergreen-edge/evergreen/proto/evergreen/supervisor/v1"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// proc is one supervised daemon. Its run goroutine owns the child process;
// other goroutines only read the fields under mu and send on want.
type proc struct {
	s    *Supervisor
	spec daemon.Spec
	want chan bool // desired running state; buffered 1, latest wins

	mu        sync.Mutex
	state     supervisorv1.DaemonState
	pid       int
	restarts  uint32
	startedAt time.Time
	lastErr   string
	healthy   bool
	crashes   []time.Time
	changed   chan struct{} // closed and replaced on every state change
}

// revive clears a crash loop ahead of a start request, so waiters see the
// daemon starting rather than still looping.
func (p *proc) revive() {
	p.set(func() {
		if p.state == supervisorv1.DaemonState_DAEMON_STATE_CRASH_LOOP {
			p.state = supervisorv1.DaemonState_DAEMON_STATE_STARTING
			p.crashes = nil
		}
	})
}

func (p *proc) requestRun(run bool) {
	select {
	case <-p.want:
	default:
	}
	p.want <- run
}

func (p *proc) set(f func()) {
	p.mu.Lock()
	f()
	if p.changed != nil {
		close(p.changed)
	}
	p.changed = make(chan struct{})
	p.mu.Unlock()
}

// watch returns the current state and a channel closed on the next change.
func (p *proc) watch() (supervisorv1.DaemonState, bool, <-chan struct{}) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.changed == nil {
		p.changed = make(chan struct{})
	}
	return p.state, p.healthy, p.changed
}

func (p *proc) isHealthy() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.state == supervisorv1.DaemonState_DAEMON_STATE_RUNNING && p.healthy
}

// waitHealthy blocks until the daemon is running and healthy, it gives up
// (crash loop, stopped), or ctx ends.
func (p *proc) waitHealthy(ctx context.Context) error {
	for {
		st, healthy, ch := p.watch()
		switch {
		case st == supervisorv1.DaemonState_DAEMON_STATE_RUNNING && healthy:
			return nil
		case st == supervisorv1.DaemonState_DAEMON_STATE_CRASH_LOOP:
			return fmt.Errorf("daemon %s is in a crash loop: %s", p.spec.Name, p.lastError())
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("daemon %s not healthy: %w (state %s, last error %q)", p.spec.Name, ctx.Err(), st, p.lastError())
		}
	}
}

func (p *proc) waitStopped(ctx context.Context) {
	for {
		st, _, ch := p.watch()
		if st == supervisorv1.DaemonState_DAEMON_STATE_STOPPED || st == supervisorv1.DaemonState_DAEMON_STATE_CRASH_LOOP {
			return
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return
		}
	}
}

func (p *proc) lastError() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.lastErr
}

// run is the daemon's supervision loop.
func (p *proc) run() {
	defer p.s.wg.Done()
	sv := p.s.o.Config.Evergreen.Supervisor
	backoff := time.Duration(sv.RestartBackoffInitialMs) * time.Millisecond
	maxBackoff := time.Duration(sv.RestartBackoffMaxMs) * time.Millisecond
	window := time.Duration(sv.CrashLoopWindowSeconds) * time.Second
	wantRun := false
	for {
		if !wantRun {
			p.set(func() {
				if p.state != supervisorv1.DaemonState_DAEMON_STATE_CRASH_LOOP {
					p.state = supervisorv1.DaemonState_DAEMON_STATE_STOPPED
				}
			})
			select {
			case wantRun = <-p.want:
			case <-p.s.stopping:
				return
			}
			if !wantRun {
				continue
			}
			p.set(func() { p.crashes = nil })
			backoff = time.Duration(sv.RestartBackoffInitialMs) * time.Millisecond
		}
		if !p.waitRequires() {
			wantRun = false
			if p.stoppingNow() {
				return
			}
			continue
		}
		exitErr, stoppedOnRequest, ranFor := p.runOnce()
		if stoppedOnRequest {
			wantRun = false
			if p.stoppingNow() {
				p.set(func() { p.state = supervisorv1.DaemonState_DAEMON_STATE_STOPPED })
				return
			}
			// A restart request: want carries true again.
			select {
			case wantRun = <-p.want:
			default:
			}
			if wantRun {
				p.set(func() { p.restarts++ })
			}
			continue
		}
		// The process died on its own.
		now := time.Now()
		loop := false
		p.set(func() {
			p.lastErr = exitErr
			p.restarts++
			p.crashes = append(p.crashes, now)
			for len(p.crashes) > 0 && now.Sub(p.crashes[0]) > window {
				p.crashes = p.crashes[1:]
			}
			loop = len(p.crashes) > sv.CrashLoopRestarts
			if loop {
				p.state = supervisorv1.DaemonState_DAEMON_STATE_CRASH_LOOP
			} else {
				p.state = supervisorv1.DaemonState_DAEMON_STATE_BACKOFF
			}
		})
		if loop {
			p.s.log.Error("crash loop: daemon left stopped; `ggctl restart` starts it again", "name", p.spec.Name,
				"crashes", sv.CrashLoopRestarts+1, "window", window, "last_error", exitErr)
			wantRun = false
			continue
		}
		if ranFor > window {
			backoff = time.Duration(sv.RestartBackoffInitialMs) * time.Millisecond
		}
		p.s.log.Warn("daemon exited; restarting", "name", p.spec.Name, "err", exitErr, "backoff", backoff)
		select {
		case <-time.After(backoff):
		case w := <-p.want:
			wantRun = w
		case <-p.s.stopping:
			p.set(func() { p.state = supervisorv1.DaemonState_DAEMON_STATE_STOPPED })
			return
		}
		backoff *= 2
		if backoff > maxBackoff {
			backoff = maxBackoff
		}
	}
}

func (p *proc) stoppingNow() bool {
	select {
	case <-p.s.stopping:
		return true
	default:
		return false
	}
}

// waitRequires waits until every daemon this one requires is healthy. It
// returns false when asked to stop meanwhile.
func (p *proc) waitRequires() bool {
	for {
		ready := true
		var chans []<-chan struct{}
		for _, r := range p.spec.Requires {
			dep := p.s.byName[r]
			st, healthy, ch := dep.watch()
			if st != supervisorv1.DaemonState_DAEMON_STATE_RUNNING || !healthy {
				ready = false
				chans = append(chans, ch)
			}
		}
		if ready {
			return true
		}
		p.set(func() { p.state = supervisorv1.DaemonState_DAEMON_STATE_STARTING })
		select {
		case <-chans[0]:
		case w := <-p.want:
			if !w {
				return false
			}
		case <-p.s.stopping:
			return false
		}
	}
}

// runOnce starts the process and waits for it to end. It reports why it
// ended, whether it was stopped on request, and how long it ran.
func (p *proc) runOnce() (exitErr string, stoppedOnRequest bool, ranFor time.Duration) {
	startTimeout, stopTimeout := p.s.timeouts()
	cmd := p.s.command(p)
	if err := cmd.Start(); err != nil {
		return fmt.Sprintf("start: %v", err), false, 0
	}
	started := time.Now()
	p.set(func() {
		p.state = supervisorv1.DaemonState_DAEMON_STATE_STARTING
		p.pid = cmd.Process.Pid
		p.startedAt = started
		p.healthy = false
	})
	p.s.log.Info("daemon started", "name", p.spec.Name, "pid", cmd.Process.Pid)
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()

	healthCtx, cancelHealth := context.WithCancel(context.Background())
	defer cancelHealth()
	go p.probe(healthCtx, started, startTimeout, cmd.Process.Pid)

	var stopReq bool
	var err error
	select {
	case err = <-exited:
	case w := <-p.want:
		if w {
			// Restart: stop now, the loop starts it again.
			p.requestRun(true)
		}
		stopReq = true
	case <-p.s.stopping:
		stopReq = true
	}
	if stopReq {
		p.set(func() { p.state = supervisorv1.DaemonState_DAEMON_STATE_STOPPING; p.healthy = false })
		// Hang up the health stream first so the daemon's graceful stop
		// has no stream to wait for.
		cancelHealth()
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err = <-exited:
		case <-time.After(stopTimeout):
			p.s.log.Warn("daemon did not stop in time; killing", "name", p.spec.Name, "timeout", stopTimeout)
			cmd.Process.Kill()
			err = <-exited
		}
	}
	cancelHealth()
	msg := "exited"
	if err != nil {
		msg = err.Error()
	}
	p.set(func() {
		p.pid = 0
		p.healthy = false
		p.startedAt = time.Time{}
		if stopReq {
			p.state = supervisorv1.DaemonState_DAEMON_STATE_STOPPED
		}
	})
	if stopReq {
		p.s.log.Info("daemon stopped", "name", p.spec.Name, "err", msg)
	} else {
		p.s.log.Warn("daemon died", "name", p.spec.Name, "err", msg, "ran", time.Since(started).Round(time.Millisecond))
	}
	return msg, stopReq, time.Since(started)
}

// probe follows the daemon's health with one grpc.health.v1 Watch stream
// per process, so an idle suite exchanges no health traffic at all (polling
// would wake every daemon every second). A daemon not healthy within the
// start timeout is killed so the restart policy takes over.
func (p *proc) probe(ctx context.Context, started time.Time, startTimeout time.Duration, pid int) {
	var everHealthy atomic.Bool
	deadline := time.AfterFunc(startTimeout, func() {
		if !everHealthy.Load() && ctx.Err() == nil {
			p.s.log.Error("daemon not healthy within start timeout; killing it", "name", p.spec.Name, "timeout", startTimeout)
			syscall.Kill(pid, syscall.SIGKILL)
		}
	})
	defer deadline.Stop()
	conn, err := dialFast(p.s.o.Root.Socket(p.spec.Name))
	if err != nil {
		return
	}
	defer conn.Close()
	client := healthpb.NewHealthClient(conn)
	healthy := false
	set := func(ok bool) {
		if ok == healthy {
			return
		}
		healthy = ok
		p.set(func() {
			p.healthy = ok
			if ok {
				p.state = supervisorv1.DaemonState_DAEMON_STATE_RUNNING
			}
		})
		if ok {
			if !everHealthy.Swap(true) {
				p.s.log.Info("daemon healthy", "name", p.spec.Name, "pid", pid, "took", time.Since(started).Round(time.Millisecond))
			}
		} else if ctx.Err() == nil {
			p.s.log.Warn("daemon unhealthy", "name", p.spec.Name, "pid", pid)
		}
	}
	for ctx.Err() == nil {
		stream, err := client.Watch(ctx, &healthpb.HealthCheckRequest{}, grpc.WaitForReady(true))
		for err == nil {
			var resp *healthpb.HealthCheckResponse
			if resp, err = stream.Recv(); err == nil {
				set(resp.Status == healthpb.HealthCheckResponse_SERVING)
			}
		}
		set(false)
		select {
		case <-ctx.Done():
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// dialFast is a client for a daemon's socket that retries quickly while
// the daemon is still creating it (gRPC's default first backoff is 1 s).
func dialFast(socket string) (*grpc.ClientConn, error) {
	return grpc.NewClient("unix://"+socket,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 10 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 200 * time.Millisecond},
			MinConnectTimeout: time.Second,
		}))
}

func (p *proc) snapshot() *supervisorv1.Daemon {
	p.mu.Lock()
	defer p.mu.Unlock()
	d := &supervisorv1.Daemon{
		Name:      p.spec.Name,
		State:     p.state,
		Pid:       int32(p.pid),
		Restarts:  p.restarts,
		LastError: p.lastErr,
		Requires:  append([]string(nil), p.spec.Requires...),
		Socket:    p.s.o.Root.Socket(p.spec.Name),
		Healthy:   p.healthy && p.state == supervisorv1.DaemonState_DAEMON_STATE_RUNNING,
	}
	if !p.startedAt.IsZero() {
		d.StartedAt = timestamppb.New(p.startedAt)
		d.UptimeSeconds = time.Since(p.startedAt).Seconds()
	}
	return d
}
