package launch

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/evergreen-edge/evergreen/ota/install"
)

func TestRootOf(t *testing.T) {
	t.Setenv("EVERGREEN_ROOT", "")
	wd, _ := os.Getwd()
	for _, tc := range []struct {
		args []string
		want string
		ok   bool
	}{
		{[]string{"--root", "/r"}, "/r", true},
		{[]string{"-root=/r"}, "/r", true},
		{[]string{"--root=rel"}, filepath.Join(wd, "rel"), true},
		{[]string{"bus", "--root", "/x"}, "/x", true},
		{nil, "/var/lib/evergreen", true},
		{[]string{"--root"}, "", false},
		{[]string{"--", "--root", "/x"}, "/var/lib/evergreen", true},
	} {
		got, ok := RootOf(tc.args)
		if got != tc.want || ok != tc.ok {
			t.Errorf("RootOf(%q) = %q %v, want %q %v", tc.args, got, ok, tc.want, tc.ok)
		}
	}
	t.Setenv("EVERGREEN_ROOT", "/env")
	if got, _ := RootOf(nil); got != "/env" {
		t.Errorf("RootOf with $EVERGREEN_ROOT = %q", got)
	}
}

// fixture is a root with versions 1.0.0 (current) and 1.1.0, and a
// recording Exec.
type fixture struct {
	root  string
	l     install.Layout
	execs []string
	env   []string
	fail  map[string]error
	out   bytes.Buffer
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	t.Setenv(EnvLaunched, "")
	os.Unsetenv(EnvLaunched)
	t.Setenv("EVERGREEN_SUPERVISED", "")
	os.Unsetenv("EVERGREEN_SUPERVISED")
	f := &fixture{root: t.TempDir(), fail: map[string]error{}}
	f.l = install.New(f.root)
	if err := f.l.Create(); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"1.0.0", "1.1.0"} {
		os.MkdirAll(f.l.VersionDir(d), 0o755)
		os.WriteFile(filepath.Join(f.l.VersionDir(d), install.Binary), []byte("#!/bin/false\n"), 0o755)
	}
	f.l.SwitchLink(install.CurrentLink, "1.0.0")
	return f
}

func (f *fixture) run(daemon string) {
	f.execs = nil
	Run([]string{"ggd", "--root", f.root}, Options{Daemon: daemon, Stderr: &f.out, Exec: func(path string, argv, env []string) error {
		f.execs = append(f.execs, path)
		f.env = env
		if argv[0] != path || !slices.Equal(argv[1:], []string{"--root", f.root}) {
			return errors.New("bad argv")
		}
		return f.fail[path]
	}})
}

func (f *fixture) pend(t *testing.T, attempts int) {
	t.Helper()
	f.l.SwitchLink(install.PreviousLink, "1.0.0")
	f.l.SwitchLink(install.CurrentLink, "1.1.0")
	s := &install.State{Pending: &install.Pending{Version: "1.1.0", Dir: "1.1.0", PreviousVersion: "1.0.0", PreviousDir: "1.0.0", Attempts: attempts, JobID: "j"}}
	if err := f.l.SaveState(s); err != nil {
		t.Fatal(err)
	}
}

func (f *fixture) binary(d string) string {
	p, _ := filepath.EvalSymlinks(filepath.Join(f.l.VersionDir(d), install.Binary))
	return p
}

func TestNoOTADirIsOneStat(t *testing.T) {
	root := t.TempDir()
	called := false
	Run([]string{"ggd", "--root", root}, Options{Exec: func(string, []string, []string) error { called = true; return nil }})
	if called {
		t.Fatal("exec without DIR/ota")
	}
	if es, _ := os.ReadDir(root); len(es) != 0 {
		t.Fatalf("the launcher wrote %v into a root never updated", es)
	}
}

func TestHandsOverToCurrent(t *testing.T) {
	f := newFixture(t)
	f.run("")
	if len(f.execs) != 1 || f.execs[0] != f.binary("1.0.0") || !slices.Contains(f.env, EnvLaunched+"=1") {
		t.Fatalf("execs %v env has marker %v", f.execs, slices.Contains(f.env, EnvLaunched+"=1"))
	}
	// A daemon run on its own follows current too, but never counts.
	f.pend(t, 0)
	f.run("shadow")
	s, _ := f.l.LoadState()
	if len(f.execs) != 1 || f.execs[0] != f.binary("1.1.0") || s.Pending.Attempts != 0 {
		t.Fatalf("daemon: execs %v attempts %d", f.execs, s.Pending.Attempts)
	}
	t.Setenv(EnvLaunched, "1")
	f.run("")
	if len(f.execs) != 0 {
		t.Fatal("a launched process was launched again")
	}
}

func TestCountsLaunchesAndRollsBackAfterThree(t *testing.T) {
	f := newFixture(t)
	f.pend(t, 0)
	for i := 1; i <= install.MaxLaunchAttempts; i++ {
		f.run("")
		s, _ := f.l.LoadState()
		if s.Pending == nil || s.Pending.Attempts != i || s.Pending.LaunchedAt.IsZero() || f.execs[0] != f.binary("1.1.0") {
			t.Fatalf("launch %d: state %+v execs %v", i, s.Pending, f.execs)
		}
	}
	f.run("")
	s, _ := f.l.LoadState()
	cur, _ := f.l.ReadLink(install.CurrentLink)
	if s.Pending != nil || cur != "1.0.0" || s.IsBroken("1.1.0") == nil || s.Last.Reason != CrashReason || f.execs[0] != f.binary("1.0.0") {
		t.Fatalf("after the 4th launch: current %s state %+v last %+v execs %v", cur, s, s.Last, f.execs)
	}
	if !strings.Contains(f.out.String(), "rolling back 1.1.0 to 1.0.0") {
		t.Fatalf("launcher said: %s", f.out.String())
	}
}

func TestOtaUnitCountsOnlyWhenUnsupervised(t *testing.T) {
	f := newFixture(t)
	f.pend(t, 0)
	f.run("ota")
	if s, _ := f.l.LoadState(); s.Pending.Attempts != 1 {
		t.Fatalf("the ota unit did not count: %d", s.Pending.Attempts)
	}
	t.Setenv("EVERGREEN_SUPERVISED", "1")
	f.run("ota")
	if s, _ := f.l.LoadState(); s.Pending.Attempts != 1 {
		t.Fatalf("the supervised ota daemon counted: %d", s.Pending.Attempts)
	}
}

func TestAVersionThatCannotBeExecutedIsRolledBack(t *testing.T) {
	f := newFixture(t)
	f.pend(t, 0)
	f.fail[f.binary("1.1.0")] = errors.New("exec format error")
	f.run("")
	s, _ := f.l.LoadState()
	cur, _ := f.l.ReadLink(install.CurrentLink)
	if len(f.execs) != 2 || f.execs[1] != f.binary("1.0.0") || cur != "1.0.0" || s.IsBroken("1.1.0") == nil ||
		!strings.Contains(s.Last.Reason, "exec format error") {
		t.Fatalf("execs %v current %s last %+v", f.execs, cur, s.Last)
	}
}

func TestSettlesBeforeCounting(t *testing.T) {
	f := newFixture(t)
	f.pend(t, 1)
	// Crashed before the switch: current still 1.0.0.
	f.l.SwitchLink(install.CurrentLink, "1.0.0")
	f.run("")
	s, _ := f.l.LoadState()
	if s.Pending != nil || s.Last == nil || !strings.Contains(s.Last.Reason, "interrupted before the switch") || f.execs[0] != f.binary("1.0.0") {
		t.Fatalf("state %+v last %+v execs %v", s, s.Last, f.execs)
	}
}

func TestCommitWatchdog(t *testing.T) {
	f := newFixture(t)
	f.pend(t, 1)
	s, _ := f.l.LoadState()
	s.Pending.LaunchedAt = time.Now().Add(-WatchdogGrace)
	f.l.SaveState(s)
	self := filepath.Join(f.l.VersionDir("1.1.0"), install.Binary)
	executable = func() (string, error) { return self, nil }
	defer func() { executable = os.Executable }()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	var reason string
	CommitWatchdog(context.Background(), f.root, 100*time.Millisecond, log, func(r string) { reason = r })
	s, _ = f.l.LoadState()
	cur, _ := f.l.ReadLink(install.CurrentLink)
	if reason == "" || s.Pending != nil || cur != "1.0.0" || !strings.Contains(s.Last.Reason, "no verdict from the ota daemon") {
		t.Fatalf("restart %q, current %s, last %+v", reason, cur, s.Last)
	}
	// Committed meanwhile: nothing happens.
	f.pend(t, 1)
	s, _ = f.l.LoadState()
	s.Pending = nil
	f.l.SaveState(s)
	reason = ""
	CommitWatchdog(context.Background(), f.root, 100*time.Millisecond, log, func(r string) { reason = r })
	if reason != "" {
		t.Fatal("the watchdog acted with nothing pending")
	}
}
