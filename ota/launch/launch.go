// Package launch is the OTA launcher: the first thing `ggd --root DIR` and
// `ggd DAEMON --root DIR` do. When an update was ever installed (DIR/ota
// exists) it settles what a crash left half done, counts the launches of
// a version not yet committed (rolling it back after three), and hands the
// process over to DIR/ota/current/ggd with syscall.Exec when that is not
// the running binary. On a core never updated it costs one stat.
//
// The process it execs, and every daemon the supervisor starts, carries
// EVERGREEN_OTA_LAUNCHED=1 and skips the launcher: a daemon always runs
// its supervisor's binary, even when current switches under it.
package launch

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/evergreen-edge/evergreen/ota/install"
	"github.com/evergreen-edge/evergreen/services/kit/deployment/failpoint"
	"github.com/evergreen-edge/evergreen/services/kit/layout"
)

// EnvLaunched marks a process the launcher already handled.
const EnvLaunched = "EVERGREEN_OTA_LAUNCHED"

// CrashReason is the outcome of a version that never lived to its health
// check.
const CrashReason = "crashed at start 3 times: no start reached the health check's commit"

// ChildEnv is what the supervisor adds to its daemons' environment.
func ChildEnv() []string { return []string{EnvLaunched + "=1"} }

// Options tune Run (tests).
type Options struct {
	// Daemon is the daemon being run, "" for the supervisor.
	Daemon string
	// Stderr receives the launcher's lines (os.Stderr when nil).
	Stderr io.Writer
	// Exec replaces syscall.Exec (tests).
	Exec func(path string, argv, env []string) error
	// Now replaces time.Now (tests).
	Now func() time.Time
}

// Run is called with the process's whole argv at the very top of ggd. It
// returns when this process should go on; after a successful exec it never
// returns.
func Run(argv []string, o Options) {
	if o.Daemon == "" {
		crashForTest()
	}
	if os.Getenv(EnvLaunched) != "" {
		return
	}
	root, ok := RootOf(argv[1:])
	if !ok {
		return
	}
	l := install.New(root)
	if !l.Exists() {
		return
	}
	if o.Stderr == nil {
		o.Stderr = os.Stderr
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Exec == nil {
		o.Exec = syscall.Exec
	}
	log := func(format string, args ...any) {
		fmt.Fprintf(o.Stderr, "ggd: ota launcher: "+format+"\n", args...)
	}
	// The supervisor counts launches; so does the ota daemon when it runs
	// as its own unit (no supervisor). Other daemons only follow current.
	if o.Daemon == "" || (o.Daemon == "ota" && os.Getenv("EVERGREEN_SUPERVISED") == "") {
		lockName := "supervisor"
		if o.Daemon != "" {
			lockName = o.Daemon
		}
		lock, err := layout.Root(root).TryLock(lockName)
		if err != nil {
			return // another one runs on this root: the start fails on its own
		}
		if unlock, err := l.Lock(); err == nil {
			count(l, root, o.Now(), log)
			unlock()
		}
		lock.Unlock()
	}
	for range 2 {
		err := handOver(l, argv, o)
		if err == nil {
			return
		}
		log("%v", err)
		// The new version cannot even be executed: roll it back now and
		// try what current names then.
		lock, lerr := layout.Root(root).TryLock("supervisor")
		if lerr != nil {
			return
		}
		unlock, uerr := l.Lock()
		if uerr != nil {
			lock.Unlock()
			return
		}
		s, serr := l.LoadState()
		if serr != nil || s.Pending == nil {
			unlock()
			lock.Unlock()
			log("running %s as it is", argv[0])
			return
		}
		if rerr := l.RollBack(s, err.Error(), o.Now(), func(p string) { failpoint.Hit(layout.Root(root).RunDir(), p) }); rerr != nil {
			log("rollback: %v", rerr)
		}
		unlock()
		lock.Unlock()
	}
}

// count settles the state and counts one launch of a pending version.
func count(l install.Layout, root string, now time.Time, log func(string, ...any)) {
	s, err := l.LoadState()
	if err != nil {
		log("state unreadable, running current as it is: %v", err)
		return
	}
	hit := func(p string) { failpoint.Hit(layout.Root(root).RunDir(), p) }
	if did, err := l.Settle(s, now, hit); err != nil {
		log("settle: %v", err)
		return
	} else if did != "" {
		log("%s", did)
	}
	p := s.Pending
	if p == nil {
		return
	}
	p.Attempts++
	p.LaunchedAt = now
	if err := l.SaveState(s); err != nil {
		log("record the launch of %s: %v", p.Version, err)
		return
	}
	hit(install.FPLaunchCounted)
	if p.Attempts <= install.MaxLaunchAttempts {
		log("launch %d of %d of %s (not committed yet)", p.Attempts, install.MaxLaunchAttempts, p.Version)
		return
	}
	log("rolling back %s to %s: %s", p.Version, p.PreviousVersion, CrashReason)
	if err := l.RollBack(s, CrashReason, now, hit); err != nil {
		log("rollback: %v", err)
	}
}

// handOver execs DIR/ota/current/ggd unless it is the running binary.
func handOver(l install.Layout, argv []string, o Options) error {
	target, err := filepath.EvalSymlinks(l.CurrentBinary())
	if err != nil {
		return nil // no current version: the binary started runs
	}
	self, err := os.Executable()
	if err == nil {
		if r, err := filepath.EvalSymlinks(self); err == nil {
			self = r
		}
	}
	if self == target {
		return nil
	}
	env := append(os.Environ(), EnvLaunched+"=1")
	args := append([]string{target}, argv[1:]...)
	if err := o.Exec(target, args, env); err != nil {
		return fmt.Errorf("exec %s: %w", target, err)
	}
	return nil
}

// Reexec replaces the process with DIR/ota/current/ggd (or the running
// binary when there is none) with argv: the supervisor's restart with
// managedRespawn. The launch is counted here, by the binary that ran
// until now, so that a new version that dies before its own launcher
// runs is counted all the same.
func Reexec(argv []string) error {
	os.Unsetenv(EnvLaunched)
	Run(argv, Options{}) // returns only when current is this binary, or none
	self, err := os.Executable()
	if err != nil {
		return err
	}
	return syscall.Exec(self, append([]string{self}, argv[1:]...), append(os.Environ(), EnvLaunched+"=1"))
}

// RootOf finds --root DIR (or -root, --root=DIR) in a ggd command line;
// absent, $EVERGREEN_ROOT, else /var/lib/evergreen. The path is made
// absolute. ok is false for a command line that does not parse.
func RootOf(args []string) (string, bool) {
	root := ""
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			break
		}
		name, val, hasVal := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if !strings.HasPrefix(a, "-") || name != "root" {
			continue
		}
		if hasVal {
			root = val
			continue
		}
		if i+1 >= len(args) {
			return "", false
		}
		root = args[i+1]
		i++
	}
	if root == "" {
		root = os.Getenv("EVERGREEN_ROOT")
	}
	if root == "" {
		root = "/var/lib/evergreen"
	}
	abs, err := filepath.Abs(root)
	if err != nil {
		return "", false
	}
	return abs, true
}
