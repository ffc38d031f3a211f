package install

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func newLayout(t *testing.T, dirs ...string) Layout {
	t.Helper()
	l := New(t.TempDir())
	if err := l.Create(); err != nil {
		t.Fatal(err)
	}
	for _, d := range dirs {
		if err := os.MkdirAll(l.VersionDir(d), 0o755); err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(l.VersionDir(d), Binary), []byte(d), 0o755)
	}
	return l
}

func TestLinksSwitchAtomicallyAndStayRelative(t *testing.T) {
	l := newLayout(t, "1.0.0", "1.1.0")
	if d, err := l.ReadLink(CurrentLink); err != nil || d != "" {
		t.Fatalf("no link yet: %q %v", d, err)
	}
	for _, d := range []string{"1.0.0", "1.1.0", "1.0.0"} {
		if err := l.SwitchLink(CurrentLink, d); err != nil {
			t.Fatal(err)
		}
		if got, err := l.ReadLink(CurrentLink); err != nil || got != d {
			t.Fatalf("current = %q %v, want %s", got, err, d)
		}
		b, err := os.ReadFile(l.CurrentBinary())
		if err != nil || string(b) != d {
			t.Fatalf("current/ggd = %q %v", b, err)
		}
	}
	target, _ := os.Readlink(l.Link(CurrentLink))
	if filepath.IsAbs(target) {
		t.Fatalf("link target %s is absolute: the root could not move", target)
	}
	// A crash between symlink and rename leaves a temp link: removed.
	os.Symlink("versions/1.1.0", l.Link(".current.tmp"))
	l.RemoveLeftovers()
	if _, err := os.Lstat(l.Link(".current.tmp")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("temp link left: %v", err)
	}
	if err := l.SwitchLink(CurrentLink, "../etc"); err == nil {
		t.Fatal("a link out of versions/ was accepted")
	}
	os.Remove(l.Link(PreviousLink))
	os.Symlink("/etc", l.Link(PreviousLink))
	if _, err := l.ReadLink(PreviousLink); err == nil {
		t.Fatal("a link pointing out of versions/ was read as a version")
	}
}

func TestValidDirName(t *testing.T) {
	for _, ok := range []string{"1.2.3", "v1.2.3-rc.1", "1.2.3+build", "base", "1.0.0-2"} {
		if !ValidDirName(ok) {
			t.Errorf("%q refused", ok)
		}
	}
	for _, bad := range []string{"", ".", "..", ".hidden", "a/b", "-x", strings.Repeat("a", 65), "a b"} {
		if ValidDirName(bad) {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestStateRoundTrip(t *testing.T) {
	l := newLayout(t)
	s, err := l.LoadState()
	if err != nil || s.Pending != nil || s.Last != nil {
		t.Fatalf("fresh state %+v %v", s, err)
	}
	now := time.Now().UTC().Truncate(time.Millisecond)
	s.Pending = &Pending{Version: "1.1.0", Dir: "1.1.0", PreviousVersion: "1.0.0", PreviousDir: "1.0.0", Attempts: 2, JobID: "j", Source: SourceCloud, StartedAt: now}
	s.MarkBroken("0.9.0", "crashed", now)
	if err := l.SaveState(s); err != nil {
		t.Fatal(err)
	}
	got, err := l.LoadState()
	if err != nil || got.Pending == nil || got.Pending.Attempts != 2 || !got.Pending.StartedAt.Equal(now) || got.IsBroken("0.9.0") == nil {
		t.Fatalf("reloaded %+v %v", got, err)
	}
	os.WriteFile(l.StateFile(), []byte(`{"pending": {"vers`), 0o600)
	if _, err := l.LoadState(); err == nil || !strings.Contains(err.Error(), "state.json") {
		t.Fatalf("a torn state.json: %v", err)
	}
}

func TestBrokenIsBounded(t *testing.T) {
	var s State
	for i := range MaxBroken + 5 {
		s.MarkBroken(strings.Repeat("1", i+1), "r", time.Now())
	}
	s.MarkBroken("1", "again", time.Now())
	if len(s.Broken) != MaxBroken || s.Broken[len(s.Broken)-1].Reason != "again" {
		t.Fatalf("broken list: %d entries, last %+v", len(s.Broken), s.Broken[len(s.Broken)-1])
	}
	s.Unbreak("1")
	if s.IsBroken("1") != nil {
		t.Fatal("Unbreak")
	}
}

// pendingUpdate is 1.1.0 switched in over 1.0.0, not committed.
func pendingUpdate(t *testing.T) (Layout, *State) {
	t.Helper()
	l := newLayout(t, "1.0.0", "1.1.0")
	l.SwitchLink(PreviousLink, "1.0.0")
	l.SwitchLink(CurrentLink, "1.1.0")
	s := &State{Pending: &Pending{Version: "1.1.0", Dir: "1.1.0", PreviousVersion: "1.0.0", PreviousDir: "1.0.0", JobID: "j-1", Source: SourceLocal}}
	if err := l.SaveState(s); err != nil {
		t.Fatal(err)
	}
	return l, s
}

func checkRolledBack(t *testing.T, l Layout, reason string) {
	t.Helper()
	s, err := l.LoadState()
	if err != nil {
		t.Fatal(err)
	}
	cur, _ := l.ReadLink(CurrentLink)
	if cur != "1.0.0" || s.Pending != nil || s.IsBroken("1.1.0") == nil || s.Last == nil || s.Last.Status != Failure ||
		s.Last.Reason != reason || s.Last.JobID != "j-1" || s.Last.FromVersion != "1.0.0" {
		t.Fatalf("after the rollback: current %s, state %+v last %+v", cur, s, s.Last)
	}
}

func TestRollBack(t *testing.T) {
	l, s := pendingUpdate(t)
	if err := l.RollBack(s, "health check failed", time.Now(), nil); err != nil {
		t.Fatal(err)
	}
	checkRolledBack(t, l, "health check failed")
	// Idempotent: nothing pending, nothing to do.
	if err := l.RollBack(s, "again", time.Now(), nil); err != nil {
		t.Fatal(err)
	}
	checkRolledBack(t, l, "health check failed")
}

// A rollback cut at each of its points is finished by Settle, with the
// first reason.
func TestRollBackInterruptedIsSettled(t *testing.T) {
	for _, point := range []string{FPRollbackDecided, FPRollbackSwitched} {
		t.Run(point, func(t *testing.T) {
			l, s := pendingUpdate(t)
			func() {
				defer func() {
					if r := recover(); r != "crash" {
						t.Fatalf("recovered %v", r)
					}
				}()
				l.RollBack(s, "health check failed", time.Now(), func(p string) {
					if p == point {
						panic("crash")
					}
				})
			}()
			fresh, err := l.LoadState()
			if err != nil || fresh.Pending == nil || !fresh.Pending.RollingBack {
				t.Fatalf("state after the crash: %+v %v", fresh, err)
			}
			did, err := l.Settle(fresh, time.Now(), nil)
			if err != nil || !strings.Contains(did, "rollback") {
				t.Fatalf("Settle: %q %v", did, err)
			}
			checkRolledBack(t, l, "health check failed")
		})
	}
}

func TestSettleDropsAnUpdateNeverSwitched(t *testing.T) {
	l := newLayout(t, "1.0.0", "1.1.0")
	l.SwitchLink(CurrentLink, "1.0.0")
	s := &State{Pending: &Pending{Version: "1.1.0", Dir: "1.1.0", PreviousVersion: "1.0.0", PreviousDir: "1.0.0", JobID: "j-2"}}
	l.SaveState(s)
	did, err := l.Settle(s, time.Now(), nil)
	if err != nil || !strings.Contains(did, "interrupted before the switch") {
		t.Fatalf("Settle: %q %v", did, err)
	}
	got, _ := l.LoadState()
	if got.Pending != nil || got.Last.Status != Failure || got.IsBroken("1.1.0") != nil {
		t.Fatalf("state %+v, last %+v: the version never ran, so it is not broken", got, got.Last)
	}
	// Switched: nothing to settle.
	l2, s2 := pendingUpdate(t)
	if did, err := l2.Settle(s2, time.Now(), nil); did != "" || err != nil || s2.Pending == nil {
		t.Fatalf("a switched update was settled: %q %v", did, err)
	}
}

func TestLockSerialises(t *testing.T) {
	l := newLayout(t)
	unlock, err := l.Lock()
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan struct{})
	go func() {
		u, err := l.Lock()
		if err == nil {
			u()
		}
		close(got)
	}()
	select {
	case <-got:
		t.Fatal("a second Lock did not wait")
	case <-time.After(100 * time.Millisecond):
	}
	unlock()
	select {
	case <-got:
	case <-time.After(5 * time.Second):
		t.Fatal("the second Lock never got it")
	}
}
