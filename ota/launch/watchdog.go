package launch

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/evergreen-edge/evergreen/ota/install"
	"github.com/evergreen-edge/evergreen/services/kit/deployment/failpoint"
	"github.com/evergreen-edge/evergreen/services/kit/layout"
)

// WatchdogGrace is how long after its own deadline the supervisor waits
// for the ota daemon's verdict before it decides itself.
const WatchdogGrace = 15 * time.Second

// CommitWatchdog is the supervisor's backstop for a version that cannot
// judge itself: when this process runs a pending version and neither a
// commit nor a rollback is recorded within healthTimeout + WatchdogGrace
// of its launch (the new ota daemon crash-loops, or never starts), it
// rolls the version back and calls restart. It returns at once when
// nothing is pending, and when ctx ends.
func CommitWatchdog(ctx context.Context, root string, healthTimeout time.Duration, log *slog.Logger, restart func(reason string)) {
	l := install.New(root)
	if !l.Exists() {
		return
	}
	s, err := l.LoadState()
	if err != nil || s.Pending == nil || !runsDir(l, s.Pending.Dir) {
		return
	}
	p := *s.Pending
	start := p.LaunchedAt
	if start.IsZero() {
		start = time.Now()
	}
	wait := time.Until(start.Add(healthTimeout + WatchdogGrace))
	select {
	case <-ctx.Done():
		return
	case <-time.After(wait):
	}
	unlock, err := l.Lock()
	if err != nil {
		log.Error("ota watchdog: lock", "err", err)
		return
	}
	defer unlock()
	s, err = l.LoadState()
	if err != nil || s.Pending == nil || s.Pending.Dir != p.Dir || s.Pending.Attempts != p.Attempts {
		return // committed, rolled back, or launched again meanwhile
	}
	reason := fmt.Sprintf("no verdict from the ota daemon within %v of the launch (runtime.postStartHealthCheckTimeout plus %v): rolled back by the supervisor", healthTimeout+WatchdogGrace, WatchdogGrace)
	log.Error("ota watchdog: rolling back", "version", p.Version, "to", p.PreviousVersion, "reason", reason)
	if err := l.RollBack(s, reason, time.Now(), func(pt string) { failpoint.Hit(layout.Root(root).RunDir(), pt) }); err != nil {
		log.Error("ota watchdog: rollback", "err", err)
		return
	}
	restart("rollback of " + p.Version + " by the supervisor's watchdog")
}

// executable is os.Executable (tests replace it).
var executable = os.Executable

// runsDir says whether this process's binary is versions/<dir>/ggd.
func runsDir(l install.Layout, dir string) bool {
	exe, err := executable()
	if err != nil {
		return false
	}
	if r, err := filepath.EvalSymlinks(exe); err == nil {
		exe = r
	}
	return filepath.Dir(exe) == l.VersionDir(dir)
}
