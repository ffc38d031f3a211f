package worker

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"github.com/evergreen-edge/evergreen/runtime/containerapi"
	"golang.org/x/sys/unix"
)

// run starts w's process and follows it to its end. It must not be called
// from a goroutine locked to its OS thread: Pdeathsig fires when the thread
// that forked exits, and unlocked Go threads live as long as the process.
func (m *Manager) run(w *worker) {
	if w.spec.Container != nil {
		m.runContainer(w)
		return
	}
	cmd := exec.Command(w.spec.Argv[0], w.spec.Argv[1:]...)
	cmd.Dir = w.spec.Dir
	cmd.Env = workerEnv(w.spec.Env, w.token)
	attr := &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if w.spec.UID >= 0 || w.spec.GID >= 0 {
		uid, gid := effectiveIDs(w.spec)
		// Only the spec's groups: the daemon's own supplementary groups
		// are dropped.
		groups := make([]uint32, 0, len(w.spec.Groups))
		for _, g := range w.spec.Groups {
			groups = append(groups, uint32(g))
		}
		attr.Credential = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: groups}
	}
	cmd.SysProcAttr = attr

	var (
		sink   *logSink
		out    *os.File // our end of the worker's stdout+stderr
		in     *os.File // the worker's end
		cgDir  string
		setupE error
	)
	if w.spec.LogFile != "" {
		sink, setupE = m.acquireSink(w.spec.LogFile, w.spec.MaxLogBytes)
		if setupE == nil {
			if out, in, setupE = os.Pipe(); setupE == nil {
				cmd.Stdout, cmd.Stderr = in, in
			}
		}
	}
	if setupE == nil && w.spec.MemoryKB > 0 && m.cg != nil {
		var err error
		if cgDir, err = m.cg.create(string(w.id), int64(w.spec.MemoryKB)*1024); err != nil {
			m.log.Warn("memory limit not applied", "fn", w.arn, "worker", w.id, "err", err)
			cgDir = ""
		}
	}
	if setupE == nil {
		setupE = cmd.Start()
	}
	if in != nil {
		in.Close() // the worker holds its own copy now
	}
	if setupE != nil {
		if out != nil {
			out.Close()
		}
		if sink != nil {
			m.releaseSink(sink)
		}
		if cgDir != "" {
			m.cg.remove(cgDir)
		}
		m.mu.Lock()
		w.exited = true
		m.mu.Unlock()
		m.gone(w, fmt.Errorf("start worker of %s: %w", w.arn, setupE))
		return
	}
	pid := cmd.Process.Pid
	if cgDir != "" {
		if err := m.cg.add(cgDir, pid); err != nil {
			m.log.Warn("memory limit not applied", "fn", w.arn, "worker", w.id, "err", err)
		}
	}
	m.mu.Lock()
	w.pid = pid
	if w.stopping {
		// Stopped before it ran: nothing to be graceful about.
		signalGroup(pid, syscall.SIGKILL)
	}
	m.mu.Unlock()
	m.writePidFile(w, pid, cgDir)
	m.log.Debug("worker started", "fn", w.arn, "worker", w.id, "pid", pid)

	copied := make(chan struct{})
	if out != nil {
		go func() { copyLines(out, sink); close(copied) }()
	} else {
		close(copied)
	}

	// Wait for the exit without reaping, so that the pid still names the
	// group while we kill what the worker left behind in it.
	if err := waitExited(pid); err != nil {
		m.log.Error("waiting for worker", "worker", w.id, "pid", pid, "err", err)
	}
	m.mu.Lock()
	w.exited = true
	signalGroup(pid, syscall.SIGKILL)
	m.mu.Unlock()
	waitErr := cmd.Wait()

	oom := cgDir != "" && m.cg.oomKilled(cgDir)
	if cgDir != "" {
		m.cg.remove(cgDir)
	}
	m.removePidFile(w)
	if out != nil {
		select {
		case <-copied:
		case <-time.After(2 * time.Second):
			// Something outside the group still holds the pipe.
			out.Close()
			<-copied
		}
		out.Close()
		m.releaseSink(sink)
	}

	m.mu.Lock()
	err := exitError(w, cmd.ProcessState, waitErr, oom)
	m.mu.Unlock()
	m.gone(w, err)
}

// exitError says why w is gone; nil when nothing was lost.
func exitError(w *worker, ps *os.ProcessState, waitErr error, oom bool) error {
	status := "unknown status"
	if ps != nil {
		status = ps.String()
	} else if waitErr != nil {
		status = waitErr.Error()
	}
	switch {
	case oom:
		return fmt.Errorf("worker %s of %s killed: %w (memory limit %d KB)", w.id, w.arn, ErrOutOfMemory, w.spec.MemoryKB)
	case w.stopping && w.quiet:
		return nil
	case w.stopping:
		return fmt.Errorf("worker %s of %s stopped: %s (%s)", w.id, w.arn, w.why, status)
	case ps != nil && ps.Success():
		return nil
	default:
		return fmt.Errorf("worker %s of %s exited unexpectedly: %s", w.id, w.arn, status)
	}
}

// stopLocked starts stopping w: its token dies, its process group gets
// SIGTERM and, StopGrace later, SIGKILL (hard: SIGKILL at once).
func (m *Manager) stopLocked(w *worker, why string, hard bool) {
	if w.exited {
		return
	}
	switch {
	case !w.stopping:
		w.stopping = true
		w.why = why
		w.quiet = !hard && w.state == StateWaiting
		delete(m.tokens, w.token)
	case hard && !w.hard:
		w.why = why
	default:
		return
	}
	w.hard = w.hard || hard
	if w.pid == 0 {
		return // run kills it once it has a pid
	}
	if w.hard {
		signalWorker(w, syscall.SIGKILL)
		return
	}
	signalWorker(w, syscall.SIGTERM)
	w.killer = time.AfterFunc(m.o.StopGrace, func() {
		m.mu.Lock()
		defer m.mu.Unlock()
		if !w.exited {
			m.log.Info("worker ignored SIGTERM, killing it", "fn", w.arn, "worker", w.id, "pid", w.pid)
			signalWorker(w, syscall.SIGKILL)
		}
	})
}

// signalWorker signals a worker: its process group, or every process of
// its container (asynchronously: that is a call to containerd, and the
// manager's lock is held here).
func signalWorker(w *worker, sig syscall.Signal) {
	if p := w.proc; p != nil {
		go p.Signal(sig)
		return
	}
	signalGroup(w.pid, sig)
}

// signalGroup signals the process group led by pid. Callers make sure pid
// is not yet reaped, so the group cannot be someone else's.
func signalGroup(pid int, sig syscall.Signal) {
	if pid > 0 {
		syscall.Kill(-pid, sig)
	}
}

// waitExited blocks until pid has exited, leaving it a zombie.
func waitExited(pid int) error {
	for {
		var info unix.Siginfo
		err := unix.Waitid(unix.P_PID, pid, &info, unix.WEXITED|unix.WNOWAIT, nil)
		if !errors.Is(err, unix.EINTR) {
			return err
		}
	}
}

// workerEnv is env without any token, plus the worker's own.
func workerEnv(env []string, token string) []string {
	out := make([]string, 0, len(env)+1)
	for _, kv := range env {
		if !strings.HasPrefix(kv, TokenEnv+"=") {
			out = append(out, kv)
		}
	}
	return append(out, TokenEnv+"="+token)
}

// containerStartTimeout bounds the creation of a container (containerd
// and runc take tens of milliseconds; a stuck containerd must not hold a
// worker slot forever).
const containerStartTimeout = 60 * time.Second

// runContainer is run for a GreengrassContainer worker: the same life, in
// a container of its own. No pid file: the runner's Cleanup removes what a
// previous daemon left in the namespace, and no cgroup of ours: the
// container has its own.
func (m *Manager) runContainer(w *worker) {
	var (
		sink   *logSink
		out    *os.File
		in     *os.File
		setupE error
		r      containerapi.Runner
		p      containerapi.Process
	)
	if w.spec.LogFile != "" {
		if sink, setupE = m.acquireSink(w.spec.LogFile, w.spec.MaxLogBytes); setupE == nil {
			out, in, setupE = os.Pipe()
		}
	}
	if setupE == nil {
		if m.o.Containers == nil {
			setupE = errors.New("GreengrassContainer isolation needs containerd, and the runtime has none configured")
		} else {
			r, setupE = m.o.Containers()
		}
	}
	if setupE == nil {
		uid, gid := effectiveIDs(w.spec)
		cs := w.spec.Container
		spec := containerapi.Spec{
			ID: string(w.id), Argv: w.spec.Argv, Env: workerEnv(w.spec.Env, w.token), Cwd: w.spec.Dir,
			ReadOnlyBinds: cs.ReadOnlyBinds, UID: uid, GID: gid, Groups: cs.Groups, MemoryKB: w.spec.MemoryKB,
			AccessSysfs: cs.AccessSysfs, Volumes: cs.Volumes, Devices: cs.Devices,
		}
		if in != nil {
			spec.Stdout, spec.Stderr = in, in
		}
		ctx, cancel := context.WithTimeout(context.Background(), containerStartTimeout)
		p, setupE = r.Start(ctx, spec)
		cancel()
	}
	if setupE != nil {
		if in != nil {
			in.Close()
			out.Close()
		}
		if sink != nil {
			m.releaseSink(sink)
		}
		m.mu.Lock()
		w.exited = true
		m.mu.Unlock()
		m.gone(w, fmt.Errorf("start container worker of %s: %w", w.arn, setupE))
		return
	}
	copied := make(chan struct{})
	if out != nil {
		go func() { copyLines(out, sink); close(copied) }()
	} else {
		close(copied)
	}
	m.mu.Lock()
	w.pid, w.proc = p.Pid(), p
	if w.stopping {
		go p.Signal(syscall.SIGKILL)
	}
	m.mu.Unlock()
	m.log.Debug("container worker started", "fn", w.arn, "worker", w.id, "pid", w.pid)

	code, oom, waitErr := p.Wait()
	m.mu.Lock()
	w.exited = true
	m.mu.Unlock()
	if in != nil {
		in.Close()
		select {
		case <-copied:
		case <-time.After(2 * time.Second):
			out.Close()
			<-copied
		}
		out.Close()
		m.releaseSink(sink)
	}
	m.mu.Lock()
	err := containerExitError(w, code, oom, waitErr)
	m.mu.Unlock()
	m.gone(w, err)
}

// containerExitError is exitError for a container worker.
func containerExitError(w *worker, code int, oom bool, waitErr error) error {
	status := fmt.Sprintf("exit status %d", code)
	if waitErr != nil {
		status = waitErr.Error()
	}
	switch {
	case oom:
		return fmt.Errorf("worker %s of %s killed: %w (memory limit %d KB)", w.id, w.arn, ErrOutOfMemory, w.spec.MemoryKB)
	case w.stopping && w.quiet:
		return nil
	case w.stopping:
		return fmt.Errorf("worker %s of %s stopped: %s (%s)", w.id, w.arn, w.why, status)
	case code == 0 && waitErr == nil:
		return nil
	default:
		return fmt.Errorf("worker %s of %s exited unexpectedly: %s", w.id, w.arn, status)
	}
}
