package supervisor_test

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	supervisorv1 "github.com/evergreen-edge/evergreen/proto/evergreen/supervisor/v1"
	"github.com/evergreen-edge/evergreen/services/internal/suitetest"
	"github.com/evergreen-edge/evergreen/services/kit/layout"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func startSuite(t *testing.T, mutate func(map[string]any)) *suitetest.Suite {
	root := suitetest.ShortRoot(t)
	suitetest.WriteConfig(t, root, mutate)
	return suitetest.Start(t, root)
}

func waitFor(t *testing.T, timeout time.Duration, what string, f func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !f() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Every daemon killed with SIGKILL comes back healthy within 2 s, and the
// others keep running meanwhile.
func TestSIGKILLedDaemonIsRestarted(t *testing.T) {
	s := startSuite(t, nil)
	daemons := s.Daemons()
	if len(daemons) < 3 || daemons[0].Name != "bus" {
		t.Fatalf("want bus first and at least 3 daemons, got %v", daemons)
	}
	code, body := s.HTTPGet("/healthz")
	if code != 200 || !strings.Contains(body, `"healthy":true`) {
		t.Fatalf("/healthz %d %s", code, body)
	}
	for _, d := range daemons {
		old := s.Daemon(d.Name)
		others := map[string]int32{}
		for _, o := range s.Daemons() {
			if o.Name != d.Name {
				others[o.Name] = o.Pid
			}
		}
		killed := time.Now()
		if err := syscall.Kill(int(old.Pid), syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		var back time.Duration
		waitFor(t, 2*time.Second, d.Name+" healthy again with a new pid", func() bool {
			n := s.Daemon(d.Name)
			if n != nil && n.Healthy && n.Pid != old.Pid {
				back = time.Since(killed)
				return true
			}
			return false
		})
		now := s.Daemon(d.Name)
		if now.Restarts != old.Restarts+1 || !strings.Contains(now.LastError, "killed") {
			t.Fatalf("%s: restarts %d->%d, last error %q", d.Name, old.Restarts, now.Restarts, now.LastError)
		}
		for name, pid := range others {
			if got := s.Daemon(name); got.Pid != pid {
				t.Fatalf("killing %s restarted %s too (pid %d -> %d)", d.Name, name, pid, got.Pid)
			}
		}
		t.Logf("%s back in %v", d.Name, back.Round(time.Millisecond))
		// Let the suite settle (daemons reconnect to a restarted bus).
		if err := s.WaitHealthy(5 * time.Second); err != nil {
			t.Fatal(err)
		}
	}
	_, metrics := s.HTTPGet("/metrics")
	for _, want := range []string{`evergreen_daemon_up{daemon="certmgr"} 1`, `evergreen_daemon_restarts_total{daemon="certmgr"} 1`, "evergreen_daemon_pss_bytes{daemon=\"bus\"}", "evergreen_daemon_open_fds{daemon=\"deployagent\"}", `evergreen_certificate_expiry_seconds{certificate="mqtt-server"}`} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s:\n%s", want, metrics)
		}
	}
}

// A daemon that keeps dying is left stopped in CRASH_LOOP, reported on
// /healthz, and the rest of the suite keeps running; RestartDaemon revives it.
func TestCrashLoopIsReportedAndContained(t *testing.T) {
	s := startSuite(t, func(cfg map[string]any) {
		cfg["evergreen"].(map[string]any)["supervisor"] = map[string]any{
			"restartBackoffInitialMs": 10, "restartBackoffMaxMs": 100, "crashLoopRestarts": 2, "crashLoopWindowSeconds": 60,
		}
	})
	bus := s.Daemon("bus").Pid
	var prev int32
	for i := 0; i < 3; i++ {
		var d *supervisorv1.Daemon
		waitFor(t, 5*time.Second, "certmgr running", func() bool {
			d = s.Daemon("certmgr")
			return d.State == supervisorv1.DaemonState_DAEMON_STATE_RUNNING && d.Pid > 0 && d.Pid != prev
		})
		prev = d.Pid
		syscall.Kill(int(d.Pid), syscall.SIGKILL)
		waitFor(t, 5*time.Second, "certmgr gone", func() bool { return !suitetest.Alive(int(d.Pid)) })
	}
	waitFor(t, 5*time.Second, "CRASH_LOOP", func() bool {
		return s.Daemon("certmgr").State == supervisorv1.DaemonState_DAEMON_STATE_CRASH_LOOP
	})
	code, body := s.HTTPGet("/healthz")
	if code != 503 || !strings.Contains(body, `"CRASH_LOOP"`) {
		t.Fatalf("/healthz %d %s", code, body)
	}
	if s.Daemon("bus").Pid != bus || !s.Daemon("deployagent").Healthy {
		t.Fatal("the rest of the suite was disturbed by the crash loop")
	}
	if log, _ := os.ReadFile(s.Root.LogFile("supervisor")); !strings.Contains(string(log), "crash loop") {
		t.Fatal("crash loop not logged")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	d, err := s.Client().RestartDaemon(ctx, &supervisorv1.RestartDaemonRequest{Name: "certmgr"})
	if err != nil || !d.Healthy {
		t.Fatalf("restart after crash loop: %v %v", d, err)
	}
	_, err = s.Client().RestartDaemon(ctx, &supervisorv1.RestartDaemonRequest{Name: "nope"})
	if status.Code(err) != codes.NotFound {
		t.Fatalf("unknown daemon: %v", err)
	}
	_, err = s.Client().StopDaemon(ctx, &supervisorv1.StopDaemonRequest{Name: "bus"})
	if status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("stop bus: %v", err)
	}
}

// SIGTERM stops the daemons in reverse start order and leaves no process.
func TestSIGTERMStopsInReverseOrder(t *testing.T) {
	s := startSuite(t, nil)
	var pids []int
	var order []string
	for _, d := range s.Daemons() {
		pids = append(pids, int(d.Pid))
		order = append(order, d.Name)
	}
	s.Signal(syscall.SIGTERM)
	select {
	case <-s.Done():
	case <-time.After(15 * time.Second):
		t.Fatal("supervisor did not exit after SIGTERM")
	}
	if !s.Cmd.ProcessState.Success() {
		t.Fatalf("exit: %v", s.Cmd.ProcessState)
	}
	for i, pid := range pids {
		if suitetest.Alive(pid) {
			t.Errorf("%s (pid %d) still running after shutdown", order[i], pid)
		}
	}
	log, _ := os.ReadFile(s.Root.LogFile("supervisor"))
	var stopped []string
	for _, l := range strings.Split(string(log), "\n") {
		if strings.Contains(l, `msg="daemon stopped"`) {
			for _, n := range order {
				if strings.Contains(l, "name="+n+" ") {
					stopped = append(stopped, n)
				}
			}
		}
	}
	for i := range order {
		if i >= len(stopped) || stopped[i] != order[len(order)-1-i] {
			t.Fatalf("stop order %v, want reverse of %v", stopped, order)
		}
	}
	for _, n := range order {
		if _, err := os.Stat(s.Root.Socket(n)); err == nil {
			t.Errorf("socket of %s left behind", n)
		}
	}
}

// A supervisor killed with SIGKILL takes its children with it.
func TestKilledSupervisorLeavesNoOrphans(t *testing.T) {
	s := startSuite(t, nil)
	var pids []int
	for _, d := range s.Daemons() {
		pids = append(pids, int(d.Pid))
	}
	s.Signal(syscall.SIGKILL)
	<-s.Done()
	waitFor(t, 3*time.Second, "children to exit", func() bool {
		for _, p := range pids {
			if suitetest.Alive(p) {
				return false
			}
		}
		return true
	})
	// The next start on the same root recovers (stale sockets, pid files).
	s2 := suitetest.Start(t, s.Root)
	if len(s2.Daemons()) != len(pids) {
		t.Fatal("restart on the same root lost daemons")
	}
}

// ggd refuses a bad config.json with one line naming the key.
func TestBadConfigRefusesToStart(t *testing.T) {
	cases := []struct {
		name, json, want string
	}{
		{"unknown key", `{"evergreen":{"listen":{"mqt":"0.0.0.0:1"}}}`, "evergreen.listen.mqt"},
		{"wrong type", `{"coreThing":{"keepAlive":"600"}}`, "coreThing.keepAlive"},
		{"out of range", `{"coreThing":{"keepAlive":5}}`, "coreThing.keepAlive"},
		{"out of range evergreen", `{"evergreen":{"certmgr":{"serverCertValidityDays":31}}}`, "evergreen.certmgr.serverCertValidityDays"},
		{"missing file", `{"crypto":{"caPath":"file:///nonexistent/root.ca.pem"}}`, "crypto.caPath"},
		{"not json", `{"coreThing":`, "config.json"},
	}
	bin := suitetest.Binary(t, "ggd")
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			root := suitetest.ShortRoot(t)
			os.MkdirAll(layout.Root(root).ConfigDir(), 0o700)
			os.WriteFile(root.ConfigFile(), []byte(c.json), 0o600)
			cmd := exec.Command(bin, "--root", root.Dir())
			out, err := cmd.CombinedOutput()
			if err == nil {
				t.Fatalf("ggd started with a bad config; output %s", out)
			}
			lines := strings.Split(strings.TrimSpace(string(out)), "\n")
			if len(lines) != 1 || !strings.Contains(lines[0], c.want) {
				t.Fatalf("want one line naming %s, got %q", c.want, out)
			}
			if _, err := os.Stat(root.Socket("bus")); err == nil {
				t.Fatal("a daemon was started")
			}
		})
	}
}

// A second supervisor on the same root refuses to start and leaves the
// first one's suite alone.
func TestSecondSupervisorOnSameRootRefused(t *testing.T) {
	s := startSuite(t, nil)
	before := s.Daemons()
	out, err := exec.Command(suitetest.Binary(t, "ggd"), "--root", s.Root.Dir()).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "already running") {
		t.Fatalf("second supervisor: err=%v output=%s", err, out)
	}
	if err := s.WaitHealthy(2 * time.Second); err != nil {
		t.Fatal(err)
	}
	for i, d := range s.Daemons() {
		if d.Pid != before[i].Pid {
			t.Fatalf("%s was restarted by the second supervisor", d.Name)
		}
	}
	// A daemon started by hand next to the supervised one is refused too.
	out, err = exec.Command(suitetest.Binary(t, "ggd"), "certmgr", "--root", s.Root.Dir()).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "already running") {
		t.Fatalf("second certmgr: err=%v output=%s", err, out)
	}
	if _, err := os.Stat(s.Root.Socket("certmgr")); err != nil {
		t.Fatal("the refused certmgr removed the running one's socket")
	}
}

// `make run` passes a relative root; sockets and children must not depend
// on it being absolute.
func TestRelativeRoot(t *testing.T) {
	root := suitetest.ShortRoot(t)
	suitetest.WriteConfig(t, root, nil)
	s := suitetest.LaunchRelative(t, root)
	if err := s.WaitHealthy(20 * time.Second); err != nil {
		t.Fatalf("suite with a relative root: %v", err)
	}
}
