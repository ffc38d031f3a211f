package worker

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/evergreen-edge/evergreen/runtime/dispatch"
)

// skipOrFail skips the test with msg, or fails it when CI says every
// test must run (EVERGREEN_REQUIRE_ALL set).
func skipOrFail(t *testing.T, msg string) {
	t.Helper()
	if os.Getenv("EVERGREEN_REQUIRE_ALL") != "" {
		t.Fatal(msg + " (EVERGREEN_REQUIRE_ALL is set)")
	}
	t.Skip(msg)
}

// checkFor polls fn every `every` until it returns nil or total passes.
func checkFor(t *testing.T, total, every time.Duration, fn func() error) {
	t.Helper()
	deadline := time.Now().Add(total)
	for {
		err := fn()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal(err)
		}
		time.Sleep(every)
	}
}

type exitEvent struct {
	id  dispatch.WorkerID
	fn  string
	err error
	at  time.Time
}

type recorder struct {
	mu    sync.Mutex
	exits []exitEvent
}

func (r *recorder) onExit(id dispatch.WorkerID, fn string, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.exits = append(r.exits, exitEvent{id, fn, err, time.Now()})
}

// waitExit returns the exit event of worker id.
func (r *recorder) waitExit(t *testing.T, id dispatch.WorkerID) exitEvent {
	t.Helper()
	var ev exitEvent
	checkFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		r.mu.Lock()
		defer r.mu.Unlock()
		for _, e := range r.exits {
			if e.id == id {
				ev = e
				return nil
			}
		}
		return fmt.Errorf("worker %s did not exit", id)
	})
	return ev
}

func (r *recorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.exits)
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func newManager(t *testing.T, o Options) (*Manager, *recorder, *lockedBuffer) {
	t.Helper()
	rec := &recorder{}
	logs := &lockedBuffer{}
	if o.StateDir == "" {
		o.StateDir = t.TempDir()
	}
	o.OnExit = rec.onExit
	o.Log = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	m, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := m.Stop(ctx); err != nil {
			t.Errorf("Stop: %v", err)
		}
		if t.Failed() {
			t.Logf("manager log:\n%s", logs.String())
		}
	})
	return m, rec, logs
}

func shSpec(arn, script string) Spec {
	return Spec{ARN: arn, Argv: []string{"/bin/sh", "-c", script}, Dir: "/", Env: []string{"PATH=/usr/bin:/bin"}, UID: -1, GID: -1}
}

// live returns the workers of fn that have a process and are not
// stopping.
func live(m *Manager, fn string) []Info {
	var out []Info
	for _, w := range m.Workers() {
		if w.FuncArn == fn && w.ProcessID != 0 && w.WorkerState != StateTerminated {
			out = append(out, w)
		}
	}
	return out
}

// waitNew waits for a started worker of fn other than the ones in old.
func waitNew(t *testing.T, m *Manager, fn string, old ...dispatch.WorkerID) Info {
	t.Helper()
	var got Info
	checkFor(t, 10*time.Second, 5*time.Millisecond, func() error {
		ws := live(m, fn)
		for _, w := range ws {
			known := false
			for _, o := range old {
				known = known || w.WorkerID == o
			}
			if !known {
				got = w
				return nil
			}
		}
		return fmt.Errorf("no new worker of %s (have %v)", fn, ws)
	})
	return got
}

func alive(pid int) bool {
	st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	i := bytes.LastIndexByte(st, ')')
	return i < 0 || len(st) < i+3 || st[i+2] != 'Z'
}

func TestPinnedRestartsWithBackoffAndStaysSingle(t *testing.T) {
	m, rec, _ := newManager(t, Options{AllowRoot: true, RestartBackoff: 150 * time.Millisecond, MaxRestartBackoff: 5 * time.Second})
	const fn = "arn:aws:lambda:us-east-1:123456789012:function:pinned:1"
	spec := shSpec(fn, "exec sleep 1000")
	spec.Pinned = true
	if err := m.SetFunctions([]Spec{spec}); err != nil {
		t.Fatal(err)
	}
	w1 := waitNew(t, m, fn)
	for range 5 {
		m.Demand(fn)
	}

	var delays []time.Duration
	prev := w1
	for range 2 {
		killed := time.Now()
		syscall.Kill(prev.ProcessID, syscall.SIGKILL)
		ev := rec.waitExit(t, prev.WorkerID)
		if ev.err == nil || !strings.Contains(ev.err.Error(), "signal: killed") || ev.fn != fn {
			t.Fatalf("OnExit(%s, %v), want the SIGKILL reported", ev.fn, ev.err)
		}
		// During the backoff the health API shows the function Terminated,
		// and Demand does not cut the backoff short.
		m.Demand(fn)
		ws := m.Workers()
		if len(ws) != 1 || ws[0].WorkerState != StateTerminated || ws[0].ProcessID != 0 {
			t.Fatalf("during backoff Workers() = %+v", ws)
		}
		next := waitNew(t, m, fn, prev.WorkerID)
		delays = append(delays, time.Since(killed))
		prev = next
	}
	if delays[0] < 150*time.Millisecond || delays[1] < 300*time.Millisecond {
		t.Fatalf("restart delays %v, want >= 150ms then >= 300ms", delays)
	}
	if n := len(m.Workers()); n != 1 {
		t.Fatalf("%d workers for a pinned function", n)
	}
}

func TestOnDemandReuseLimitPendingAndEviction(t *testing.T) {
	m, rec, _ := newManager(t, Options{AllowRoot: true, MaxConcurrent: 2, LRUSize: 2})
	specs := []Spec{shSpec("A", "exec sleep 1000"), shSpec("B", "exec sleep 1000"), shSpec("C", "exec sleep 1000")}
	if err := m.SetFunctions(specs); err != nil {
		t.Fatal(err)
	}
	running := func() int {
		n := 0
		for _, w := range m.Workers() {
			if w.WorkerState != StateTerminated {
				n++
			}
		}
		return n
	}

	m.Demand("A")
	a1 := waitNew(t, m, "A")
	m.SetState(a1.WorkerID, StateWaiting)
	m.Demand("A") // an idle worker of A exists: reuse it
	time.Sleep(100 * time.Millisecond)
	if n := len(m.Workers()); n != 1 {
		t.Fatalf("Demand with an idle worker started another: %+v", m.Workers())
	}

	m.SetState(a1.WorkerID, StateWorking)
	m.Demand("A")
	a2 := waitNew(t, m, "A", a1.WorkerID)
	m.SetState(a2.WorkerID, StateWorking)

	// At the limit with nobody idle, B waits for a slot.
	m.Demand("B")
	time.Sleep(100 * time.Millisecond)
	if got := live(m, "B"); len(got) != 0 || running() != 2 {
		t.Fatalf("started beyond maxConcurrentLimit: %+v", m.Workers())
	}
	// A1 going idle gives its slot to B.
	m.SetState(a1.WorkerID, StateWaiting)
	if ev := rec.waitExit(t, a1.WorkerID); ev.err != nil {
		t.Fatalf("evicted idle worker reported %v, want nil", ev.err)
	}
	b1 := waitNew(t, m, "B")
	if running() > 2 {
		t.Fatalf("more than 2 workers: %+v", m.Workers())
	}

	// Both idle; C evicts the least recently used one (A2).
	m.SetState(a2.WorkerID, StateWaiting)
	time.Sleep(5 * time.Millisecond)
	m.SetState(b1.WorkerID, StateWaiting)
	m.Demand("C")
	rec.waitExit(t, a2.WorkerID)
	waitNew(t, m, "C")
	if got := live(m, "B"); len(got) != 1 || got[0].WorkerID != b1.WorkerID {
		t.Fatalf("B's worker should have stayed: %+v", m.Workers())
	}
	if running() > 2 {
		t.Fatalf("more than 2 workers: %+v", m.Workers())
	}
}

func TestIdleWorkersReapedAfterTimeoutAndBeyondLRUSize(t *testing.T) {
	t.Run("timeout", func(t *testing.T) {
		m, rec, _ := newManager(t, Options{AllowRoot: true, IdleTimeout: 200 * time.Millisecond})
		m.SetFunctions([]Spec{shSpec("A", "exec sleep 1000")})
		m.Demand("A")
		idle := waitNew(t, m, "A")
		m.Demand("A")
		busy := waitNew(t, m, "A", idle.WorkerID)
		m.SetState(busy.WorkerID, StateWorking)
		m.SetState(idle.WorkerID, StateWaiting)
		start := time.Now()
		if ev := rec.waitExit(t, idle.WorkerID); ev.err != nil {
			t.Fatalf("idle reap reported %v", ev.err)
		}
		if d := time.Since(start); d < 200*time.Millisecond {
			t.Fatalf("reaped after %v, before the idle timeout", d)
		}
		time.Sleep(300 * time.Millisecond)
		if got := live(m, "A"); len(got) != 1 || got[0].WorkerID != busy.WorkerID {
			t.Fatalf("a Working worker was reaped: %+v", m.Workers())
		}
	})
	t.Run("lruSize", func(t *testing.T) {
		m, rec, _ := newManager(t, Options{AllowRoot: true, LRUSize: 1, MaxConcurrent: 3})
		m.SetFunctions([]Spec{shSpec("A", "exec sleep 1000")})
		m.Demand("A")
		w1 := waitNew(t, m, "A")
		m.Demand("A")
		w2 := waitNew(t, m, "A", w1.WorkerID)
		m.SetState(w1.WorkerID, StateWaiting)
		time.Sleep(5 * time.Millisecond)
		m.SetState(w2.WorkerID, StateWaiting)
		rec.waitExit(t, w1.WorkerID)
		if got := live(m, "A"); len(got) != 1 || got[0].WorkerID != w2.WorkerID {
			t.Fatalf("want only the most recently idle worker kept: %+v", m.Workers())
		}
	})
}

func TestTokensAreOwnAndDieWithKill(t *testing.T) {
	dir := t.TempDir()
	m, rec, _ := newManager(t, Options{AllowRoot: true})
	spec := shSpec("A", `printf %s "$AWS_CONTAINER_AUTHORIZATION_TOKEN" > `+dir+`/token-$$; exec sleep 1000`)
	m.SetFunctions([]Spec{spec})
	m.Demand("A")
	w1 := waitNew(t, m, "A")
	m.Demand("A")
	w2 := waitNew(t, m, "A", w1.WorkerID)

	token := func(w Info) string {
		var tok []byte
		checkFor(t, 5*time.Second, 10*time.Millisecond, func() (err error) {
			tok, err = os.ReadFile(fmt.Sprintf("%s/token-%d", dir, w.ProcessID))
			if err == nil && len(tok) == 0 {
				err = errors.New("empty token")
			}
			return err
		})
		return string(tok)
	}
	t1, t2 := token(w1), token(w2)
	if t1 == t2 {
		t.Fatal("two workers share a token")
	}
	if raw, err := base64.StdEncoding.DecodeString(t1); err != nil || len(raw) != 32 {
		t.Fatalf("token %q is not base64 of 32 bytes", t1)
	}
	for _, c := range []struct {
		tok string
		w   Info
	}{{t1, w1}, {t2, w2}} {
		fn, id, ok := m.Lookup(c.tok)
		if !ok || fn != "A" || id != c.w.WorkerID {
			t.Fatalf("Lookup = %q %q %v, want A %s", fn, id, ok, c.w.WorkerID)
		}
	}

	m.Kill(w1.WorkerID, "invocation timed out")
	if _, _, ok := m.Lookup(t1); ok {
		t.Fatal("a killed worker's token still resolves")
	}
	ev := rec.waitExit(t, w1.WorkerID)
	if ev.err == nil || !strings.Contains(ev.err.Error(), "invocation timed out") || !strings.Contains(ev.err.Error(), "signal: killed") {
		t.Fatalf("Kill reported %v", ev.err)
	}
	if alive(w1.ProcessID) {
		t.Fatal("killed worker still runs")
	}
	if _, _, ok := m.Lookup(t2); !ok {
		t.Fatal("the other worker's token died too")
	}
	if _, _, ok := m.Lookup("bm90IGEgdG9rZW4="); ok {
		t.Fatal("unknown token resolved")
	}
}

func TestEnvironmentAndDirectory(t *testing.T) {
	t.Setenv("EVERGREEN_DAEMON_ONLY", "leak")
	dir, out := t.TempDir(), filepath.Join(t.TempDir(), "env")
	m, _, _ := newManager(t, Options{AllowRoot: true})
	spec := shSpec("A", `env > `+out+`.tmp; echo "PWD_IS=$(pwd)" >> `+out+`.tmp; mv `+out+`.tmp `+out+`; exec sleep 1000`)
	spec.Dir = dir
	spec.Env = append(spec.Env, "MY_FUNCTION_ARN=A", "FOO=bar baz", TokenEnv+"=stale")
	m.SetFunctions([]Spec{spec})
	m.Demand("A")
	var env string
	checkFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		b, err := os.ReadFile(out)
		env = string(b)
		return err
	})
	lines := strings.Split(env, "\n")
	var tokens []string
	for _, l := range lines {
		if strings.HasPrefix(l, TokenEnv+"=") {
			tokens = append(tokens, l)
		}
	}
	if len(tokens) != 1 || tokens[0] == TokenEnv+"=stale" {
		t.Fatalf("token lines %q, want exactly the worker's own", tokens)
	}
	for _, want := range []string{"FOO=bar baz", "MY_FUNCTION_ARN=A", "PWD_IS=" + dir} {
		if !strings.Contains(env, want+"\n") {
			t.Errorf("worker env lacks %q:\n%s", want, env)
		}
	}
	if strings.Contains(env, "EVERGREEN_DAEMON_ONLY") {
		t.Error("the daemon's environment leaked into the worker")
	}
}

func TestStopSendsSIGTERMThenSIGKILL(t *testing.T) {
	logDir := t.TempDir()
	rec := &recorder{}
	m, err := New(Options{AllowRoot: true, StopGrace: 400 * time.Millisecond, StateDir: t.TempDir(), OnExit: rec.onExit,
		Log: slog.New(slog.NewTextHandler(&lockedBuffer{}, nil))})
	if err != nil {
		t.Fatal(err)
	}
	stubborn := shSpec("stubborn", `trap "" TERM; echo ready; while :; do sleep 0.05; done`)
	stubborn.Pinned, stubborn.LogFile = true, filepath.Join(logDir, "stubborn.log")
	polite := shSpec("polite", "exec sleep 1000")
	polite.Pinned = true
	if err := m.SetFunctions([]Spec{stubborn, polite}); err != nil {
		t.Fatal(err)
	}
	s, p := waitNew(t, m, "stubborn"), waitNew(t, m, "polite")
	checkFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		b, _ := os.ReadFile(stubborn.LogFile)
		if !strings.Contains(string(b), "ready") {
			return errors.New("stubborn worker not ready")
		}
		return nil
	})

	start := time.Now()
	if err := m.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	if took < 400*time.Millisecond {
		t.Fatalf("Stop took %v, less than StopGrace", took)
	}
	if ev := rec.waitExit(t, s.WorkerID); ev.err == nil || !strings.Contains(ev.err.Error(), "signal: killed") {
		t.Fatalf("stubborn worker: %v, want SIGKILL", ev.err)
	}
	if ev := rec.waitExit(t, p.WorkerID); ev.err == nil || !strings.Contains(ev.err.Error(), "signal: terminated") {
		t.Fatalf("polite worker: %v, want SIGTERM", ev.err)
	}
	if alive(s.ProcessID) || alive(p.ProcessID) {
		t.Fatal("a worker outlived Stop")
	}
	for _, w := range m.Workers() {
		if w.WorkerState != StateTerminated || w.ProcessID != 0 {
			t.Fatalf("workers after Stop: %+v", m.Workers())
		}
	}
	if err := m.SetFunctions([]Spec{polite}); !errors.Is(err, ErrStopped) {
		t.Fatalf("SetFunctions after Stop = %v", err)
	}
	m.Demand("polite")
	time.Sleep(50 * time.Millisecond)
	if len(live(m, "polite")) != 0 || rec.count() != 2 {
		t.Fatal("a worker started after Stop")
	}
}

func TestRunAsNonRootUser(t *testing.T) {
	if os.Geteuid() != 0 {
		skipOrFail(t, "needs root to switch to uid 65534")
	}
	m, _, _ := newManager(t, Options{})
	spec := shSpec("A", `echo "uid=$(id -u) gid=$(id -g) groups=$(id -G)"; exec sleep 1000`)
	spec.UID, spec.GID = 65534, 65534
	spec.LogFile = filepath.Join(t.TempDir(), "fn.log")
	if err := m.SetFunctions([]Spec{spec}); err != nil {
		t.Fatal(err)
	}
	m.Demand("A")
	checkFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		b, _ := os.ReadFile(spec.LogFile)
		if !strings.Contains(string(b), "uid=65534 gid=65534 groups=65534\n") {
			return fmt.Errorf("worker identity %q, want uid, gid and only group 65534", b)
		}
		return nil
	})
}

// A NoContainer worker gets exactly the spec's supplementary groups (a
// model's OwnerSetting group) and reads a file only that group may read.
func TestRunAsWithSupplementaryGroups(t *testing.T) {
	if os.Geteuid() != 0 {
		skipOrFail(t, "needs root to switch to uid 65534 with other groups")
	}
	dir := t.TempDir()
	os.Chmod(filepath.Dir(dir), 0o755) // TempDir's parent is 0700
	os.Chmod(dir, 0o755)
	secret := filepath.Join(dir, "model.bin")
	if err := os.WriteFile(secret, []byte("weights"), 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(secret, 0, 4242); err != nil {
		t.Fatal(err)
	}
	m, _, _ := newManager(t, Options{})
	spec := shSpec("A", `echo "groups=$(id -G) model=$(cat `+secret+` 2>&1)"; exec sleep 1000`)
	spec.UID, spec.GID, spec.Groups = 65534, 65534, []int{4242}
	spec.LogFile = filepath.Join(t.TempDir(), "fn.log")
	other := shSpec("B", `echo "model=$(cat `+secret+` 2>/dev/null || echo denied)"; exec sleep 1000`)
	other.UID, other.GID = 65534, 65534
	other.LogFile = filepath.Join(t.TempDir(), "other.log")
	if err := m.SetFunctions([]Spec{spec, other}); err != nil {
		t.Fatal(err)
	}
	m.Demand("A")
	m.Demand("B")
	checkFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		a, _ := os.ReadFile(spec.LogFile)
		b, _ := os.ReadFile(other.LogFile)
		if !strings.Contains(string(a), "groups=65534 4242 model=weights\n") || !strings.Contains(string(b), "model=denied\n") {
			return fmt.Errorf("with the group: %q; without: %q", a, b)
		}
		return nil
	})
}

func TestRunAsRootRefusedWithV1Text(t *testing.T) {
	if os.Geteuid() != 0 {
		skipOrFail(t, "the daemon's own identity counts as root only when it is root")
	}
	m, _, _ := newManager(t, Options{})
	uid0, gid0, own, nobody := shSpec("U", "exec sleep 1000"), shSpec("G", "exec sleep 1000"), shSpec("D", "exec sleep 1000"), shSpec("N", "exec sleep 1000")
	uid0.UID, uid0.GID = 0, 65534
	gid0.UID, gid0.GID = 65534, 0
	nobody.UID, nobody.GID, nobody.Pinned = 65534, 65534, true
	err := m.SetFunctions([]Spec{uid0, gid0, own, nobody})
	var re *RootError
	if !errors.As(err, &re) {
		t.Fatalf("SetFunctions = %v, want a RootError", err)
	}
	const want = "lambda(s) [U G D] are configured to run as root while Greengrass is not configured to run lambdas with root permissions"
	if err.Error() != want {
		t.Fatalf("error text\n%s\nwant\n%s", err, want)
	}
	time.Sleep(50 * time.Millisecond)
	if len(m.Workers()) != 0 {
		t.Fatalf("a refused set started workers: %+v", m.Workers())
	}

	allowed, _, _ := newManager(t, Options{AllowRoot: true})
	if err := allowed.SetFunctions([]Spec{uid0, gid0, own, nobody}); err != nil {
		t.Fatalf("with allowFunctionsToRunAsRoot: %v", err)
	}
}

func TestSetFunctionsReplacesAndRemoves(t *testing.T) {
	m, rec, _ := newManager(t, Options{AllowRoot: true, StopGrace: 2 * time.Second})
	out := filepath.Join(t.TempDir(), "v")
	// The old worker takes its time to stop: the new one must wait for it.
	spec := shSpec("P", `trap 'sleep 0.3; exit 0' TERM; echo "$V" >> `+out+`; while :; do sleep 0.05; done`)
	spec.Pinned = true
	spec.Env = append(spec.Env, "V=one")
	m.SetFunctions([]Spec{spec})
	w1 := waitNew(t, m, "P")
	checkFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		if b, _ := os.ReadFile(out); string(b) != "one\n" {
			return fmt.Errorf("got %q", b)
		}
		return nil
	})

	spec.Env = append(spec.Env[:len(spec.Env)-1], "V=two")
	if err := m.SetFunctions([]Spec{spec}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) {
		procs := 0
		for _, w := range m.Workers() {
			if w.ProcessID != 0 {
				procs++
			}
		}
		if procs > 1 {
			t.Fatalf("two processes for a pinned function: %+v", m.Workers())
		}
		if rec.count() > 0 && len(live(m, "P")) == 1 {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	if ev := rec.waitExit(t, w1.WorkerID); ev.err != nil && !strings.Contains(ev.err.Error(), "configuration changed") {
		t.Fatalf("replaced worker: %v", ev.err)
	}
	w2 := waitNew(t, m, "P", w1.WorkerID)
	checkFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		if b, _ := os.ReadFile(out); string(b) != "one\ntwo\n" {
			return fmt.Errorf("got %q", b)
		}
		return nil
	})

	// Same spec again: nothing restarts.
	m.SetFunctions([]Spec{spec})
	time.Sleep(100 * time.Millisecond)
	if got := live(m, "P"); len(got) != 1 || got[0].WorkerID != w2.WorkerID {
		t.Fatalf("an unchanged spec restarted the worker: %+v", m.Workers())
	}

	m.SetFunctions(nil)
	rec.waitExit(t, w2.WorkerID)
	if len(m.Workers()) != 0 {
		t.Fatalf("workers of a removed function: %+v", m.Workers())
	}
}

func TestStartFailureIsReported(t *testing.T) {
	m, rec, _ := newManager(t, Options{AllowRoot: true, RestartBackoff: 50 * time.Millisecond, MaxRestartBackoff: 100 * time.Millisecond})
	bad := Spec{ARN: "bad", Argv: []string{"/nonexistent/runtime"}, UID: -1, GID: -1}
	if err := m.SetFunctions([]Spec{bad}); err != nil {
		t.Fatal(err)
	}
	m.Demand("bad")
	checkFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		if rec.count() == 0 {
			return errors.New("no OnExit for a worker that could not start")
		}
		return nil
	})
	rec.mu.Lock()
	ev := rec.exits[0]
	rec.mu.Unlock()
	if ev.fn != "bad" || ev.err == nil || !strings.Contains(ev.err.Error(), "start worker") {
		t.Fatalf("OnExit(%s, %v)", ev.fn, ev.err)
	}
	if len(m.Workers()) != 0 {
		t.Fatalf("a failed start left a worker: %+v", m.Workers())
	}

	// A pinned function that cannot start keeps being retried.
	bad.Pinned = true
	m.SetFunctions([]Spec{bad})
	checkFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		if n := rec.count(); n < 4 {
			return fmt.Errorf("%d start attempts", n)
		}
		return nil
	})
}

func TestOrphansOfAPreviousDaemonAreReaped(t *testing.T) {
	stateDir := t.TempDir()
	boot := bootID()
	if boot == "" {
		skipOrFail(t, "no boot id in /proc/sys/kernel/random/boot_id")
	}
	// A group whose leader still runs.
	leader := exec.Command("/bin/sh", "-c", "sleep 1000 & exec sleep 1000")
	leader.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := leader.Start(); err != nil {
		t.Fatal(err)
	}
	// A group whose leader is gone, leaving a child behind.
	var childOut bytes.Buffer
	headless := exec.Command("/bin/sh", "-c", "sleep 1000 </dev/null >/dev/null 2>&1 & echo $!")
	headless.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	headless.Stdout = &childOut
	if err := headless.Start(); err != nil {
		t.Fatal(err)
	}
	headlessPid := headless.Process.Pid
	headlessStart, err := readStat(headlessPid)
	if err != nil {
		t.Fatal(err)
	}
	headless.Wait()
	var child int
	fmt.Sscan(childOut.String(), &child)
	// A process of an earlier boot's record, and one whose pid was reused
	// (start time differs): both must survive.
	other := exec.Command("/bin/sh", "-c", "exec sleep 1000")
	other.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := other.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, pid := range []int{leader.Process.Pid, headlessPid, other.Process.Pid} {
			syscall.Kill(-pid, syscall.SIGKILL)
		}
		other.Wait()
	})
	leaderStat, _ := readStat(leader.Process.Pid)
	otherStat, _ := readStat(other.Process.Pid)
	records := map[string]pidRecord{
		"worker-a.pid": {Worker: "a", Fn: "A", Pid: leader.Process.Pid, Start: leaderStat.start, Boot: boot},
		"worker-b.pid": {Worker: "b", Fn: "B", Pid: headlessPid, Start: headlessStart.start, Boot: boot},
		"worker-c.pid": {Worker: "c", Fn: "C", Pid: other.Process.Pid, Start: otherStat.start, Boot: "an-earlier-boot"},
		"worker-d.pid": {Worker: "d", Fn: "D", Pid: other.Process.Pid, Start: otherStat.start + 1, Boot: boot},
	}
	for name, rec := range records {
		if err := writePidRecord(filepath.Join(stateDir, name), rec); err != nil {
			t.Fatal(err)
		}
	}
	checkFor(t, 2*time.Second, 10*time.Millisecond, func() error {
		if !alive(child) {
			return fmt.Errorf("child %d not running yet", child)
		}
		return nil
	})

	newManager(t, Options{AllowRoot: true, StateDir: stateDir})

	waited := make(chan error, 1)
	go func() { waited <- leader.Wait() }()
	select {
	case err := <-waited:
		if err == nil || !strings.Contains(err.Error(), "signal: killed") {
			t.Fatalf("orphan leader ended with %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("orphan leader not killed")
	}
	checkFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		if alive(child) {
			return fmt.Errorf("orphan %d of a dead leader still runs", child)
		}
		return nil
	})
	if !alive(other.Process.Pid) {
		t.Fatal("a process not proven ours was killed")
	}
	if left, _ := filepath.Glob(filepath.Join(stateDir, "*.pid")); len(left) != 0 {
		t.Fatalf("pid files left: %v", left)
	}
}

func TestPidFileWhileRunning(t *testing.T) {
	stateDir := t.TempDir()
	m, rec, _ := newManager(t, Options{AllowRoot: true, StateDir: stateDir})
	m.SetFunctions([]Spec{shSpec("A", "exec sleep 1000")})
	m.Demand("A")
	w := waitNew(t, m, "A")
	var got pidRecord
	checkFor(t, 2*time.Second, 10*time.Millisecond, func() error {
		files, _ := filepath.Glob(filepath.Join(stateDir, "*.pid"))
		if len(files) != 1 {
			return fmt.Errorf("pid files %v", files)
		}
		b, err := os.ReadFile(files[0])
		if err == nil {
			err = json.Unmarshal(b, &got)
		}
		return err
	})
	st, _ := readStat(w.ProcessID)
	if got.Pid != w.ProcessID || got.Worker != string(w.WorkerID) || got.Start != st.start || got.Boot != bootID() {
		t.Fatalf("pid file %+v for worker %+v", got, w)
	}
	m.Kill(w.WorkerID, "test")
	rec.waitExit(t, w.WorkerID)
	if files, _ := filepath.Glob(filepath.Join(stateDir, "*.pid")); len(files) != 0 {
		t.Fatalf("pid file outlived its worker: %v", files)
	}
}

func TestLogFileCappedWithOneRotation(t *testing.T) {
	dir := t.TempDir()
	logFile := filepath.Join(dir, "user", "fn.log")
	m, _, _ := newManager(t, Options{AllowRoot: true, MaxLogBytes: 2000})
	// 60 lines of 99 bytes (98 + newline), half of them on stderr.
	spec := shSpec("A", `i=10; while [ $i -lt 70 ]; do printf 'line %02d %090d\n' $i 0; printf 'line %02d %090d\n' $((i+1)) 0 >&2; i=$((i+2)); done; echo done; exec sleep 1000`)
	spec.LogFile = logFile
	m.SetFunctions([]Spec{spec})
	m.Demand("A")
	checkFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		b, _ := os.ReadFile(logFile)
		if !strings.HasSuffix(string(b), "done\n") {
			return errors.New("worker output not all written yet")
		}
		return nil
	})
	cur, _ := os.ReadFile(logFile)
	old, err := os.ReadFile(logFile + ".1")
	if err != nil {
		t.Fatal("no rotated file:", err)
	}
	if len(cur) > 2000 || len(old) > 2000 {
		t.Fatalf("log sizes %d and %d exceed the 2000 byte cap", len(cur), len(old))
	}
	if !strings.Contains(string(cur), "line 69 ") {
		t.Fatal("newest output missing from the current file")
	}
	for _, l := range strings.Split(strings.TrimSuffix(string(old)+string(cur), "\n"), "\n") {
		if l != "done" && (len(l) != 98 || !strings.HasPrefix(l, "line ")) {
			t.Fatalf("torn line %q", l)
		}
	}
	if _, err := os.Stat(logFile + ".2"); err == nil {
		t.Fatal("more than one rotation kept")
	}
}

func TestLogSinkKeepsTailOfOversizedWrite(t *testing.T) {
	path := filepath.Join(t.TempDir(), "f.log")
	s, err := openSink(path, 10)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.Write([]byte("abc\n"))
	if n, err := s.Write([]byte("0123456789ABCDEF\n")); err != nil || n != 17 {
		t.Fatalf("Write = %d, %v", n, err)
	}
	cur, _ := os.ReadFile(path)
	old, _ := os.ReadFile(path + ".1")
	if string(cur) != "789ABCDEF\n" || string(old) != "abc\n" {
		t.Fatalf("current %q, rotated %q", cur, old)
	}
}

func TestMemoryLimit(t *testing.T) {
	m, rec, _ := newManager(t, Options{AllowRoot: true})
	enforced, detail := m.MemoryLimits()
	if !enforced {
		skipOrFail(t, "memory limits not testable here: "+detail)
	}
	t.Log("memory limits via", detail)
	sleeper := shSpec("S", "exec sleep 1000")
	sleeper.MemoryKB = 32768
	hog := shSpec("H", `x=$(head -c 300000000 /dev/zero | tr '\0' a); echo survived`)
	hog.MemoryKB = 16384
	hog.LogFile = filepath.Join(t.TempDir(), "hog.log")
	if err := m.SetFunctions([]Spec{sleeper, hog}); err != nil {
		t.Fatal(err)
	}
	m.Demand("S")
	w := waitNew(t, m, "S")
	var cgDir string
	checkFor(t, 2*time.Second, 10*time.Millisecond, func() error {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", w.ProcessID))
		if err != nil {
			return err
		}
		for _, line := range strings.Split(string(b), "\n") {
			parts := strings.SplitN(line, ":", 3)
			if len(parts) == 3 && strings.HasSuffix(parts[2], "/"+cgroupDirName+"/"+string(w.WorkerID)) {
				cgDir = filepath.Join(m.cg.(*cgroupFS).parent, string(w.WorkerID))
				return nil
			}
		}
		return fmt.Errorf("worker not in its cgroup:\n%s", b)
	})
	limitFile := "memory.max"
	if !m.cg.(*cgroupFS).v2 {
		limitFile = "memory.limit_in_bytes"
	}
	if b, _ := os.ReadFile(filepath.Join(cgDir, limitFile)); strings.TrimSpace(string(b)) != "33554432" {
		t.Fatalf("%s = %q, want 33554432", limitFile, b)
	}
	m.Kill(w.WorkerID, "test")
	rec.waitExit(t, w.WorkerID)
	checkFor(t, 2*time.Second, 10*time.Millisecond, func() error {
		if _, err := os.Stat(cgDir); err == nil {
			return errors.New("worker cgroup left behind")
		}
		return nil
	})

	m.Demand("H")
	h := waitNew(t, m, "H")
	ev := rec.waitExit(t, h.WorkerID)
	if !errors.Is(ev.err, ErrOutOfMemory) {
		b, _ := os.ReadFile(hog.LogFile)
		t.Fatalf("memory hog ended with %v, want ErrOutOfMemory (output %q)", ev.err, b)
	}
}

func TestKilledPinnedWorkerRestartsWithoutBackoff(t *testing.T) {
	m, rec, _ := newManager(t, Options{AllowRoot: true, RestartBackoff: 20 * time.Second})
	spec := shSpec("P", "exec sleep 1000")
	spec.Pinned = true
	m.SetFunctions([]Spec{spec})
	w1 := waitNew(t, m, "P")
	m.Kill(w1.WorkerID, "invocation timed out")
	rec.waitExit(t, w1.WorkerID)
	start := time.Now()
	w2 := waitNew(t, m, "P", w1.WorkerID)
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("restart after Kill took %v: the crash backoff was applied", d)
	}
	// A crash, by contrast, waits for the backoff.
	syscall.Kill(w2.ProcessID, syscall.SIGKILL)
	rec.waitExit(t, w2.WorkerID)
	time.Sleep(200 * time.Millisecond)
	if got := live(m, "P"); len(got) != 0 {
		t.Fatalf("crashed pinned worker restarted before its backoff: %+v", got)
	}
}

// A pinned worker that reported FailedInitialization and exited (an import
// error) stays FailedInitialization in the health API while it waits for
// its restart, not Terminated: that is what a user looks for.
func TestFailedInitializationVisibleDuringBackoff(t *testing.T) {
	m, rec, _ := newManager(t, Options{AllowRoot: true, RestartBackoff: 2 * time.Second, MaxRestartBackoff: 5 * time.Second})
	const fn = "arn:aws:lambda:us-east-1:123456789012:function:broken:1"
	spec := shSpec(fn, "exec sleep 1000")
	spec.Pinned = true
	if err := m.SetFunctions([]Spec{spec}); err != nil {
		t.Fatal(err)
	}
	w := waitNew(t, m, fn)
	m.SetState(w.WorkerID, StateFailedInitialization)
	syscall.Kill(w.ProcessID, syscall.SIGKILL)
	rec.waitExit(t, w.WorkerID)
	ws := m.Workers()
	if len(ws) != 1 || ws[0].WorkerState != StateFailedInitialization || ws[0].ProcessID != 0 {
		t.Fatalf("during the backoff Workers() = %+v, want FailedInitialization", ws)
	}
}
