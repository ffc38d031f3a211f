// Package worker runs the processes of NoContainer functions: one
// long-lived worker per pinned function, on-demand workers within
// runtime.maxConcurrentLimit, each in its own process group, under its
// RunAs identity, optionally in a memory cgroup, with an IPC token of its
// own. It implements dispatch.Launcher.
package worker

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"github.com/evergreen-edge/evergreen/runtime/containerapi"
	"log/slog"
	"os"
	"reflect"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/evergreen-edge/evergreen/runtime/dispatch"
)

// Worker states of the health API (spec 8.1).
const (
	StateStarting             = "Starting"
	StateInitialized          = "Initialized"
	StateWaiting              = "Waiting"
	StateWorking              = "Working"
	StateFailedInitialization = "FailedInitialization"
	StateTerminated           = "Terminated"
	StateNotStarted           = "NotStarted"
)

// TokenEnv is the variable that carries a worker's IPC token.
const TokenEnv = "AWS_CONTAINER_AUTHORIZATION_TOKEN"

// Spec is how to run the workers of one function.
type Spec struct {
	ARN    string
	Pinned bool
	// Argv is the command line; Argv[0] is looked up in the daemon's PATH
	// when it has no slash.
	Argv []string
	// Dir is the working directory (the function's unpacked code).
	Dir string
	// Env is the whole environment except TokenEnv, which the manager adds
	// per worker (a TokenEnv entry here is dropped).
	Env []string
	// UID and GID are RunAs; -1 = the daemon's own.
	UID, GID int
	// Groups are a NoContainer worker's supplementary groups (the owner
	// groups of the machine-learning models it may read); a container's
	// are ContainerSpec.Groups. Applied only with a UID or GID.
	Groups []int
	// MemoryKB is the memory limit; 0 = none.
	MemoryKB int
	// LogFile receives stdout and stderr; "" = discarded.
	LogFile string
	// MaxLogBytes caps LogFile (one rotation to LogFile.1); 0 = the
	// manager's Options.MaxLogBytes.
	MaxLogBytes int64
	// Container runs the worker in a container (GreengrassContainer);
	// nil runs it as a plain process (NoContainer).
	Container *ContainerSpec
}

// ContainerSpec is what a GreengrassContainer worker gets besides a
// process's settings (see package container).
type ContainerSpec struct {
	ReadOnlyBinds []string
	AccessSysfs   bool
	Volumes       []containerapi.Mount
	Devices       []containerapi.Device
	// Groups are the supplementary groups (GroupOwnerSetting).
	Groups []int
}

// Options configure a Manager. Zero values take the defaults noted.
type Options struct {
	// MaxConcurrent is runtime.maxConcurrentLimit: unpinned workers in
	// total (25; raised to LRUSize when smaller, as v1 requires).
	MaxConcurrent int
	// LRUSize is runtime.lruSize: idle unpinned workers kept (25).
	LRUSize int
	// IdleTimeout stops an unpinned worker idle (Waiting) this long (1 min).
	IdleTimeout time.Duration
	// AllowRoot is runtime.allowFunctionsToRunAsRoot == "yes".
	AllowRoot bool
	// StateDir holds one pid file per live worker ("" = none).
	StateDir string
	// StopGrace is the time between SIGTERM and SIGKILL (5 s).
	StopGrace time.Duration
	// MaxLogBytes caps each log file; the previous one is kept as .1 (1 MiB).
	MaxLogBytes int64
	// RestartBackoff is the first delay before a crashed pinned worker is
	// restarted, doubled per crash in a row (500 ms).
	RestartBackoff time.Duration
	// MaxRestartBackoff caps that delay; a worker that lived this long
	// resets it (30 s).
	MaxRestartBackoff time.Duration
	// OnExit is told of every worker that is gone (the dispatcher's
	// WorkerGone). err is nil when the worker exited with status 0 or was
	// stopped while idle; it wraps ErrOutOfMemory after an OOM kill.
	// Never called with the manager's lock held.
	OnExit func(w dispatch.WorkerID, fn string, err error)
	// Containers returns the containerd runner for GreengrassContainer
	// workers (nil: such workers fail to start with a clear error).
	Containers func() (containerapi.Runner, error)
	Log        *slog.Logger
}

// Info is one worker as the health API shows it.
type Info struct {
	FuncArn     string            `json:"FuncArn"`
	WorkerID    dispatch.WorkerID `json:"WorkerId"`
	ProcessID   int               `json:"ProcessId"`
	WorkerState string            `json:"WorkerState"`
}

// ErrOutOfMemory is wrapped by the OnExit error of a worker the kernel
// killed for exceeding its memory limit.
var ErrOutOfMemory = errors.New("out of memory")

// ErrStopped is returned by SetFunctions after Stop.
var ErrStopped = errors.New("worker manager stopped")

// RootError refuses functions whose RunAs identity is root while
// runtime.allowFunctionsToRunAsRoot is not "yes". Its text is v1's
// deployment error (GGDG lambda-group-config.md, spec section 3).
type RootError struct{ ARNs []string }

func (e *RootError) Error() string {
	return fmt.Sprintf("lambda(s) [%s] are configured to run as root while Greengrass is not configured to run lambdas with root permissions",
		strings.Join(e.ARNs, " "))
}

// function is the current spec of one ARN and its live workers (including
// workers of a previous spec that are still stopping).
type function struct {
	spec    Spec
	workers map[*worker]struct{}
	// Pinned only.
	restart  *time.Timer
	failures int
	last     dispatch.WorkerID
	// lastFailedInit: the last worker exited after reporting
	// FailedInitialization; the health API keeps saying so until the
	// next worker starts (an import error is what a user looks for).
	lastFailedInit bool
}

type worker struct {
	id      dispatch.WorkerID
	arn     string
	spec    Spec
	token   string
	pid     int // 0 until started
	state   string
	started time.Time
	idle    time.Time // when it last became Waiting

	stopping bool
	hard     bool   // SIGKILL rather than SIGTERM
	why      string // why the manager stopped it
	quiet    bool   // stopped while idle: its exit is no error
	retired  bool   // its spec was replaced or removed
	exited   bool   // reaped or about to be: never signal its pid again
	killer   *time.Timer
	proc     containerapi.Process // a GreengrassContainer worker's container
}

// Manager runs the workers. Its methods are safe for concurrent use and
// none blocks on a process.
type Manager struct {
	o     Options
	log   *slog.Logger
	cg    cgroup // nil: memory limits not enforced
	cgWhy string
	boot  string

	mu      sync.Mutex
	closed  bool
	funcs   map[string]*function
	workers map[dispatch.WorkerID]*worker
	tokens  map[string]*worker
	pending []string // ARNs of unpinned functions waiting for a slot, oldest first
	sinks   map[string]*logSink
	warned  map[string]bool // ARNs told their memory limit is not enforced

	procs   sync.WaitGroup // one per worker until its exit is handled
	janitor chan struct{}
	jdone   chan struct{}
}

// New reaps the workers a previous daemon left behind (pid files in
// StateDir), detects cgroup support and starts the idle reaper.
func New(o Options) (*Manager, error) {
	if o.LRUSize <= 0 {
		o.LRUSize = 25
	}
	if o.MaxConcurrent <= 0 {
		o.MaxConcurrent = 25
	}
	if o.MaxConcurrent < o.LRUSize {
		o.MaxConcurrent = o.LRUSize
	}
	if o.IdleTimeout <= 0 {
		o.IdleTimeout = time.Minute
	}
	if o.StopGrace <= 0 {
		o.StopGrace = 5 * time.Second
	}
	if o.MaxLogBytes <= 0 {
		o.MaxLogBytes = 1 << 20
	}
	if o.RestartBackoff <= 0 {
		o.RestartBackoff = 500 * time.Millisecond
	}
	if o.MaxRestartBackoff < o.RestartBackoff {
		o.MaxRestartBackoff = max(30*time.Second, o.RestartBackoff)
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	m := &Manager{
		o:       o,
		log:     o.Log.With("component", "worker"),
		boot:    bootID(),
		funcs:   map[string]*function{},
		workers: map[dispatch.WorkerID]*worker{},
		tokens:  map[string]*worker{},
		sinks:   map[string]*logSink{},
		warned:  map[string]bool{},
		janitor: make(chan struct{}),
		jdone:   make(chan struct{}),
	}
	if o.StateDir != "" {
		if err := os.MkdirAll(o.StateDir, 0o700); err != nil {
			return nil, fmt.Errorf("worker state dir: %w", err)
		}
		m.reapOrphans()
	}
	m.cg, m.cgWhy = detectCgroup()
	if m.cg != nil {
		m.log.Info("memory limits enforced", "cgroup", m.cg.String())
	} else {
		m.log.Warn("memory limits not enforced: no usable memory cgroup", "reason", m.cgWhy)
	}
	go m.reapIdle()
	return m, nil
}

// MemoryLimits tells whether MemoryKB is enforced, and how or why not.
func (m *Manager) MemoryLimits() (enforced bool, detail string) {
	if m.cg != nil {
		return true, m.cg.String()
	}
	return false, m.cgWhy
}

// SetFunctions makes specs the set of functions: it refuses the whole set
// when one is invalid or runs as root without AllowRoot, stops the workers
// of removed or changed functions and starts the pinned ones.
func (m *Manager) SetFunctions(specs []Spec) error {
	seen := map[string]bool{}
	var root []string
	for _, s := range specs {
		switch {
		case s.ARN == "":
			return errors.New("worker: function without ARN")
		case seen[s.ARN]:
			return fmt.Errorf("worker: function %s listed twice", s.ARN)
		case len(s.Argv) == 0 || s.Argv[0] == "":
			return fmt.Errorf("worker: function %s has no command", s.ARN)
		case s.MemoryKB < 0:
			return fmt.Errorf("worker: function %s has a negative memory size", s.ARN)
		}
		seen[s.ARN] = true
		if uid, gid := effectiveIDs(s); (uid == 0 || gid == 0) && !m.o.AllowRoot {
			root = append(root, s.ARN)
		}
	}
	if len(root) > 0 {
		return &RootError{ARNs: root}
	}

	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return ErrStopped
	}
	for arn, f := range m.funcs {
		if !seen[arn] {
			m.retireLocked(f, "function removed")
			delete(m.funcs, arn)
			m.dropPendingLocked(arn, -1)
		}
	}
	for _, s := range specs {
		s.Argv = slices.Clone(s.Argv)
		s.Env = slices.Clone(s.Env)
		old := m.funcs[s.ARN]
		if old != nil && reflect.DeepEqual(old.spec, s) {
			continue
		}
		f := &function{spec: s, workers: map[*worker]struct{}{}}
		if old != nil {
			m.retireLocked(old, "function configuration changed")
			f.workers = old.workers
			m.dropPendingLocked(s.ARN, -1)
		} else {
			// Workers of an earlier removal may still be stopping.
			for _, w := range m.workers {
				if w.arn == s.ARN {
					f.workers[w] = struct{}{}
				}
			}
		}
		m.funcs[s.ARN] = f
		if s.MemoryKB > 0 && m.cg == nil && !m.warned[s.ARN] {
			m.warned[s.ARN] = true
			m.log.Warn("memory limit not enforced", "fn", s.ARN, "memoryKB", s.MemoryKB, "reason", m.cgWhy)
		}
		if s.Pinned && len(f.workers) == 0 {
			m.spawnLocked(f)
		}
		// A pinned function whose old worker is still stopping starts when
		// that worker is gone: never two at once.
	}
	return nil
}

// retireLocked stops every worker of f and cancels its pending restart.
func (m *Manager) retireLocked(f *function, why string) {
	if f.restart != nil {
		f.restart.Stop()
		f.restart = nil
	}
	for w := range f.workers {
		w.retired = true
		m.stopLocked(w, why, false)
	}
}

// Demand asks for a worker of fn (dispatch.Launcher). A pinned function
// gets its one worker unless it runs or waits for a restart; an unpinned
// one gets a new worker unless one of its workers is Waiting, evicting the
// least recently used idle worker of another function at the limit, or
// waiting for a free slot.
func (m *Manager) Demand(fn string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	f := m.funcs[fn]
	if m.closed || f == nil {
		m.log.Debug("demand for unknown function", "fn", fn)
		return
	}
	if f.spec.Pinned {
		if len(f.workers) == 0 && f.restart == nil {
			m.spawnLocked(f)
		}
		return
	}
	for w := range f.workers {
		if !w.stopping && w.state == StateWaiting {
			return
		}
	}
	if m.slotLocked(fn) {
		m.spawnLocked(f)
		return
	}
	if n := m.countPendingLocked(fn); n < m.o.MaxConcurrent {
		m.pending = append(m.pending, fn)
	}
}

// slotLocked makes room for one more unpinned worker of fn: true when
// below the limit, or after evicting the least recently used idle worker
// of another function.
func (m *Manager) slotLocked(fn string) bool {
	if m.unpinnedLocked() < m.o.MaxConcurrent {
		return true
	}
	var lru *worker
	for _, w := range m.workers {
		if w.stopping || w.spec.Pinned || w.arn == fn || w.state != StateWaiting {
			continue
		}
		if lru == nil || w.idle.Before(lru.idle) {
			lru = w
		}
	}
	if lru == nil {
		return false
	}
	m.stopLocked(lru, "evicted to make room for "+fn, false)
	return true
}

// unpinnedLocked counts the unpinned workers that hold a slot; a stopping
// worker gives its slot back at once.
func (m *Manager) unpinnedLocked() int {
	n := 0
	for _, w := range m.workers {
		if !w.spec.Pinned && !w.stopping {
			n++
		}
	}
	return n
}

func (m *Manager) countPendingLocked(fn string) int {
	n := 0
	for _, p := range m.pending {
		if p == fn {
			n++
		}
	}
	return n
}

// dropPendingLocked forgets up to n (-1 = all) pending demands of fn.
func (m *Manager) dropPendingLocked(fn string, n int) {
	m.pending = slices.DeleteFunc(m.pending, func(p string) bool {
		if p != fn || n == 0 {
			return false
		}
		n--
		return true
	})
}

// servePendingLocked starts workers for pending demands while slots can be
// had.
func (m *Manager) servePendingLocked() {
	for len(m.pending) > 0 && !m.closed {
		fn := m.pending[0]
		f := m.funcs[fn]
		if f == nil || f.spec.Pinned {
			m.pending = m.pending[1:]
			continue
		}
		if !m.slotLocked(fn) {
			return
		}
		m.pending = m.pending[1:]
		m.spawnLocked(f)
	}
}

// Kill stops worker w at once (SIGKILL to its process group); a pinned
// function gets a new worker without backoff. It does not block.
func (m *Manager) Kill(id dispatch.WorkerID, reason string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	w := m.workers[id]
	if w == nil {
		return
	}
	m.stopLocked(w, reason, true)
}

// Lookup resolves the IPC token of a live worker. A worker's token dies
// as soon as the manager starts stopping it.
func (m *Manager) Lookup(token string) (fn string, id dispatch.WorkerID, ok bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	w := m.tokens[token]
	if w == nil {
		return "", "", false
	}
	return w.arn, w.id, true
}

// SetState records what the IPC side saw worker w do: Waiting (long-polling
// for work), Working, Initialized or FailedInitialization.
func (m *Manager) SetState(id dispatch.WorkerID, state string) {
	switch state {
	case StateWaiting, StateWorking, StateInitialized, StateFailedInitialization:
	default:
		m.log.Warn("unknown worker state", "worker", id, "state", state)
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	w := m.workers[id]
	if w == nil || w.stopping {
		return
	}
	w.state = state
	if state != StateWaiting || w.spec.Pinned {
		return
	}
	w.idle = time.Now()
	if m.countPendingLocked(w.arn) > 0 {
		// This worker serves the demand.
		m.dropPendingLocked(w.arn, 1)
	} else {
		m.servePendingLocked()
	}
	m.trimIdleLocked()
}

// trimIdleLocked stops the least recently used idle unpinned workers
// beyond LRUSize.
func (m *Manager) trimIdleLocked() {
	var idle []*worker
	for _, w := range m.workers {
		if !w.stopping && !w.spec.Pinned && w.state == StateWaiting {
			idle = append(idle, w)
		}
	}
	if len(idle) <= m.o.LRUSize {
		return
	}
	slices.SortFunc(idle, func(a, b *worker) int { return a.idle.Compare(b.idle) })
	for _, w := range idle[:len(idle)-m.o.LRUSize] {
		m.stopLocked(w, "idle beyond lruSize", false)
	}
}

// reapIdle stops unpinned workers idle longer than IdleTimeout.
func (m *Manager) reapIdle() {
	defer close(m.jdone)
	every := min(max(m.o.IdleTimeout/4, 10*time.Millisecond), time.Second)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-m.janitor:
			return
		case now := <-t.C:
			m.mu.Lock()
			for _, w := range m.workers {
				if !w.stopping && !w.spec.Pinned && w.state == StateWaiting && now.Sub(w.idle) >= m.o.IdleTimeout {
					m.stopLocked(w, "idle timeout", false)
				}
			}
			m.mu.Unlock()
		}
	}
}

// Workers lists the live workers, and pinned functions without one
// (NotStarted before their first worker, Terminated while waiting for a
// restart), sorted by function.
func (m *Manager) Workers() []Info {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []Info
	for _, w := range m.workers {
		state := w.state
		if w.stopping {
			state = StateTerminated
		}
		out = append(out, Info{FuncArn: w.arn, WorkerID: w.id, ProcessID: w.pid, WorkerState: state})
	}
	for arn, f := range m.funcs {
		if !f.spec.Pinned || len(f.workers) > 0 {
			continue
		}
		info := Info{FuncArn: arn, WorkerID: f.last, WorkerState: StateNotStarted}
		switch {
		case f.lastFailedInit:
			info.WorkerState = StateFailedInitialization
		case f.last != "":
			info.WorkerState = StateTerminated
		}
		out = append(out, info)
	}
	slices.SortFunc(out, func(a, b Info) int {
		if c := strings.Compare(a.FuncArn, b.FuncArn); c != 0 {
			return c
		}
		return strings.Compare(string(a.WorkerID), string(b.WorkerID))
	})
	return out
}

// Stop stops every worker (SIGTERM, SIGKILL after StopGrace) and waits for
// them. When ctx ends first, the rest are SIGKILLed and ctx.Err() returned
// once they are gone. The manager starts no worker afterwards.
func (m *Manager) Stop(ctx context.Context) error {
	m.mu.Lock()
	if !m.closed {
		m.closed = true
		close(m.janitor)
		m.pending = nil
		for _, f := range m.funcs {
			if f.restart != nil {
				f.restart.Stop()
				f.restart = nil
			}
		}
		for _, w := range m.workers {
			m.stopLocked(w, "runtime stopping", false)
		}
	}
	m.mu.Unlock()
	<-m.jdone

	done := make(chan struct{})
	go func() { m.procs.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		m.mu.Lock()
		for _, w := range m.workers {
			m.stopLocked(w, "runtime stopping", true)
		}
		m.mu.Unlock()
		<-done
		return ctx.Err()
	}
}

// spawnLocked registers a new worker of f and starts its process in the
// background.
func (m *Manager) spawnLocked(f *function) {
	w := &worker{
		id:      newWorkerID(),
		arn:     f.spec.ARN,
		spec:    f.spec,
		token:   newToken(),
		state:   StateStarting,
		started: time.Now(),
	}
	m.workers[w.id] = w
	m.tokens[w.token] = w
	f.workers[w] = struct{}{}
	f.last = w.id
	m.procs.Add(1)
	go m.run(w)
}

// gone forgets an exited worker, restarts a pinned function and serves
// pending demands; then tells OnExit.
func (m *Manager) gone(w *worker, err error) {
	m.mu.Lock()
	delete(m.workers, w.id)
	delete(m.tokens, w.token)
	failedInit := w.state == StateFailedInitialization
	w.state = StateTerminated
	if w.killer != nil {
		w.killer.Stop()
	}
	if f := m.funcs[w.arn]; f != nil {
		f.lastFailedInit = failedInit
		delete(f.workers, w)
		if f.spec.Pinned && len(f.workers) == 0 && f.restart == nil && !m.closed {
			m.restartLocked(f, w)
		}
	}
	m.servePendingLocked()
	m.mu.Unlock()

	if err != nil {
		m.log.Info("worker gone", "fn", w.arn, "worker", w.id, "pid", w.pid, "err", err)
	} else {
		m.log.Debug("worker gone", "fn", w.arn, "worker", w.id, "pid", w.pid)
	}
	if m.o.OnExit != nil {
		m.o.OnExit(w.id, w.arn, err)
	}
	m.procs.Done()
}

// restartLocked schedules the next worker of pinned f after w exited:
// at once when w was replaced or killed on purpose, after a backoff that
// doubles per crash in a row otherwise.
func (m *Manager) restartLocked(f *function, w *worker) {
	var delay time.Duration
	if !w.retired && !(w.stopping && w.hard) {
		if w.pid != 0 && time.Since(w.started) >= m.o.MaxRestartBackoff {
			f.failures = 0
		}
		delay = m.o.RestartBackoff << min(f.failures, 20)
		if delay > m.o.MaxRestartBackoff || delay <= 0 {
			delay = m.o.MaxRestartBackoff
		}
		f.failures++
		m.log.Info("restarting pinned function", "fn", f.spec.ARN, "in", delay)
	}
	f.restart = time.AfterFunc(delay, func() {
		m.mu.Lock()
		defer m.mu.Unlock()
		if m.closed || m.funcs[f.spec.ARN] != f || f.restart == nil {
			return
		}
		f.restart = nil
		if len(f.workers) == 0 {
			m.spawnLocked(f)
		}
	})
}

func newToken() string {
	b := make([]byte, 32)
	rand.Read(b)
	return base64.StdEncoding.EncodeToString(b)
}

// newWorkerID returns a random UUID, the form v1's health API shows.
func newWorkerID() dispatch.WorkerID {
	b := make([]byte, 16)
	rand.Read(b)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b)
	return dispatch.WorkerID(h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:])
}

// effectiveIDs is the identity a worker of s gets: -1 means the daemon's.
func effectiveIDs(s Spec) (uid, gid int) {
	uid, gid = s.UID, s.GID
	if uid < 0 {
		uid = os.Geteuid()
	}
	if gid < 0 {
		gid = os.Getegid()
	}
	return uid, gid
}
