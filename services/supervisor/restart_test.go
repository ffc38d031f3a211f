package supervisor_test

import (
	"context"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	supervisorv1 "github.com/evergreen-edge/evergreen/proto/evergreen/supervisor/v1"
	"github.com/evergreen-edge/evergreen/services/internal/suitetest"
)

// RequestRestart without managedRespawn: the daemons stop in reverse order,
// then the supervisor exits with code 100 for the service manager.
func TestRequestRestartExits100(t *testing.T) {
	s := startSuite(t, nil)
	var pids []int
	for _, d := range s.Daemons() {
		pids = append(pids, int(d.Pid))
	}
	resp, err := s.Client().RequestRestart(context.Background(), &supervisorv1.RequestRestartRequest{Reason: "test"})
	if err != nil || resp.GetMode() != supervisorv1.RestartMode_RESTART_MODE_EXIT || resp.GetExitCode() != 100 {
		t.Fatalf("RequestRestart = %v, %v", resp, err)
	}
	select {
	case <-s.Done():
	case <-time.After(20 * time.Second):
		t.Fatal("the supervisor did not exit")
	}
	if code := s.Cmd.ProcessState.ExitCode(); code != 100 {
		t.Fatalf("exit code %d, want 100", code)
	}
	for _, p := range pids {
		if suitetest.Alive(p) {
			t.Errorf("daemon pid %d left running", p)
		}
	}
	log, _ := os.ReadFile(s.Root.LogFile("supervisor"))
	if !strings.Contains(string(log), `msg="daemon stopped" daemon=supervisor name=bus`) || !strings.Contains(string(log), "code=100") {
		t.Fatalf("supervisor log:\n%s", log)
	}
}

// RequestRestart with managedRespawn: the supervisor stops the suite and
// re-executes itself in the same process, which starts every daemon again.
func TestRequestRestartReexecutesInPlace(t *testing.T) {
	s := startSuite(t, func(cfg map[string]any) { cfg["managedRespawn"] = true })
	before := map[string]int32{}
	for _, d := range s.Daemons() {
		before[d.Name] = d.Pid
	}
	resp, err := s.Client().RequestRestart(context.Background(), &supervisorv1.RequestRestartRequest{Reason: "test"})
	if err != nil || resp.GetMode() != supervisorv1.RestartMode_RESTART_MODE_EXEC {
		t.Fatalf("RequestRestart = %v, %v", resp, err)
	}
	// A second request while it restarts gets the same answer.
	s.Client().RequestRestart(context.Background(), &supervisorv1.RequestRestartRequest{})
	waitFor(t, 30*time.Second, "every daemon with a new pid, healthy", func() bool {
		ds := s.Daemons()
		if len(ds) != len(before) {
			return false
		}
		for _, d := range ds {
			if !d.Healthy || d.Pid == before[d.Name] {
				return false
			}
		}
		return true
	})
	select {
	case <-s.Done():
		t.Fatalf("the supervisor process exited: %v", s.Cmd.ProcessState)
	default:
	}
	b, _ := os.ReadFile(s.Root.PidFile("supervisor"))
	if strings.TrimSpace(string(b)) != strconv.Itoa(s.Cmd.Process.Pid) {
		t.Fatalf("supervisor pid file %q, process %d: not the same process", b, s.Cmd.Process.Pid)
	}
}
