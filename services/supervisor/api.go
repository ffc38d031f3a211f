package supervisor

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	supervisorv1 "github.com/evergreen-edge/evergreen/proto/evergreen/supervisor/v1"
	"github.com/evergreen-edge/evergreen/services/bus"
	"github.com/evergreen-edge/evergreen/services/kit/errdefs"
)

type api struct {
	supervisorv1.UnimplementedSupervisorServer
	s *Supervisor
}

func (a *api) ListDaemons(ctx context.Context, _ *supervisorv1.ListDaemonsRequest) (*supervisorv1.ListDaemonsResponse, error) {
	resp := &supervisorv1.ListDaemonsResponse{Version: a.s.o.Version}
	for _, p := range a.s.procs {
		resp.Daemons = append(resp.Daemons, p.snapshot())
	}
	return resp, nil
}

func (a *api) GetDaemon(ctx context.Context, r *supervisorv1.GetDaemonRequest) (*supervisorv1.Daemon, error) {
	p, err := a.s.get(r.GetName())
	if err != nil {
		return nil, err
	}
	return p.snapshot(), nil
}

func (a *api) StartDaemon(ctx context.Context, r *supervisorv1.StartDaemonRequest) (*supervisorv1.Daemon, error) {
	p, err := a.s.get(r.GetName())
	if err != nil {
		return nil, err
	}
	for _, dep := range p.spec.Requires {
		if d := a.s.byName[dep]; !d.isHealthy() {
			return nil, fmt.Errorf("daemon %s requires %s, which is not running: %w", p.spec.Name, dep, errdefs.ErrFailedPrecondition)
		}
	}
	if !p.isHealthy() {
		p.revive()
		p.requestRun(true)
	}
	return a.waitHealthy(ctx, p)
}

func (a *api) StopDaemon(ctx context.Context, r *supervisorv1.StopDaemonRequest) (*supervisorv1.Daemon, error) {
	p, err := a.s.get(r.GetName())
	if err != nil {
		return nil, err
	}
	if p.spec.Name == bus.Name {
		return nil, fmt.Errorf("the bus cannot be stopped on its own (every daemon needs it); stop the suite: %w", errdefs.ErrFailedPrecondition)
	}
	p.requestRun(false)
	p.waitStopped(ctx)
	return p.snapshot(), ctx.Err()
}

func (a *api) RestartDaemon(ctx context.Context, r *supervisorv1.RestartDaemonRequest) (*supervisorv1.Daemon, error) {
	p, err := a.s.get(r.GetName())
	if err != nil {
		return nil, err
	}
	before := p.snapshot()
	p.revive()
	p.requestRun(true)
	// Wait for the old process to go before waiting for health, so the
	// answer is about the new one.
	if before.Pid != 0 {
		for {
			st, _, ch := p.watch()
			if cur := p.snapshot(); cur.Pid != before.Pid || st == supervisorv1.DaemonState_DAEMON_STATE_STOPPED {
				break
			}
			select {
			case <-ch:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
	}
	return a.waitHealthy(ctx, p)
}

func (a *api) waitHealthy(ctx context.Context, p *proc) (*supervisorv1.Daemon, error) {
	if _, ok := ctx.Deadline(); !ok {
		start, _ := a.s.timeouts()
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, start)
		defer cancel()
	}
	if err := p.waitHealthy(ctx); err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return nil, fmt.Errorf("%v: %w", err, errdefs.ErrDeadlineExceeded)
		}
		return nil, fmt.Errorf("%v: %w", err, errdefs.ErrFailedPrecondition)
	}
	return p.snapshot(), nil
}

func (a *api) RequestRestart(ctx context.Context, r *supervisorv1.RequestRestartRequest) (*supervisorv1.RequestRestartResponse, error) {
	select {
	case <-a.s.stopping:
		return nil, fmt.Errorf("the suite is stopping: %w", errdefs.ErrFailedPrecondition)
	default:
	}
	reason := r.GetReason()
	if reason == "" {
		reason = "requested over the API"
	}
	got := a.s.RequestRestart(reason)
	if got.Exec {
		return &supervisorv1.RequestRestartResponse{Mode: supervisorv1.RestartMode_RESTART_MODE_EXEC}, nil
	}
	return &supervisorv1.RequestRestartResponse{Mode: supervisorv1.RestartMode_RESTART_MODE_EXIT, ExitCode: RestartExitCode}, nil
}

func (a *api) FollowLog(r *supervisorv1.FollowLogRequest, stream supervisorv1.Supervisor_FollowLogServer) error {
	p, err := a.s.get(r.GetName())
	if err != nil {
		return err
	}
	if r.GetTailLines() < 0 {
		return errdefs.InvalidArgument("tail_lines", "must not be negative, got %d", r.GetTailLines())
	}
	n := int(r.GetTailLines())
	if n == 0 {
		n = 10
	}
	path := a.s.o.Root.LogFile(p.spec.Name)
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return errdefs.NotFound("log of daemon", p.spec.Name)
	} else if err != nil {
		return err
	}
	defer f.Close()
	lines, off, err := tail(f, n)
	if err != nil {
		return err
	}
	for _, l := range lines {
		if err := stream.Send(&supervisorv1.LogLine{Line: l}); err != nil {
			return err
		}
	}
	if !r.GetFollow() {
		return nil
	}
	return follow(stream.Context(), path, off, func(l string) error { return stream.Send(&supervisorv1.LogLine{Line: l}) })
}

// tail returns the last n lines of f and the offset after them. It reads at
// most the last 1 MiB.
func tail(f *os.File, n int) ([]string, int64, error) {
	st, err := f.Stat()
	if err != nil {
		return nil, 0, err
	}
	start := st.Size() - 1<<20
	if start < 0 {
		start = 0
	}
	if _, err := f.Seek(start, io.SeekStart); err != nil {
		return nil, 0, err
	}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	var lines []string
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if len(lines) > n {
			lines = lines[1:]
		}
	}
	return lines, st.Size(), sc.Err()
}

// follow sends lines appended to path after off until ctx ends, reopening
// the file when it is rotated.
func follow(ctx context.Context, path string, off int64, send func(string) error) error {
	var partial []byte
	buf := make([]byte, 32<<10)
	for {
		f, err := os.Open(path)
		if err == nil {
			st, _ := f.Stat()
			if st != nil && st.Size() < off {
				off = 0 // rotated
			}
			f.Seek(off, io.SeekStart)
			for {
				k, rerr := f.Read(buf)
				off += int64(k)
				partial = append(partial, buf[:k]...)
				for {
					i := bytes.IndexByte(partial, '\n')
					if i < 0 {
						break
					}
					if err := send(string(partial[:i])); err != nil {
						f.Close()
						return err
					}
					partial = partial[i+1:]
				}
				if rerr != nil {
					break
				}
			}
			f.Close()
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(200 * time.Millisecond):
		}
	}
}
