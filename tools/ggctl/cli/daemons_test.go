package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/evergreen-edge/evergreen/services/kit/buildinfo"
)

func TestRestartStartStop(t *testing.T) {
	s := newSuite(t)
	sup := s.supervisor(newFakeSupervisor())

	r := s.ggctl("restart", "certmgr")
	wantExit(t, r, ExitOK)
	if r.stdout != "certmgr restarted: pid 1102 (RUNNING, healthy: yes)\n" {
		t.Fatalf("restart: %s", r)
	}
	if sup.daemons[1].Restarts != 1 {
		t.Fatal("the supervisor was not asked to restart")
	}

	r = s.ggctl("stop", "deployagent")
	wantExit(t, r, ExitOK)
	if r.stdout != "deployagent stopped (STOPPED)\n" {
		t.Fatalf("stop: %s", r)
	}
	r = s.ggctl("status")
	wantExit(t, r, ExitFailed)
	wantOneErrorLine(t, r, "not healthy: deployagent (stopped)")

	r = s.ggctl("start", "deployagent", "--json")
	wantExit(t, r, ExitOK)
	var d struct {
		Name    string `json:"name"`
		State   string `json:"state"`
		Pid     int    `json:"pid"`
		Healthy bool   `json:"healthy"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &d); err != nil || d.State != "DAEMON_STATE_RUNNING" || d.Pid != 1000 || !d.Healthy {
		t.Fatalf("start --json: %v %s", err, r)
	}
	wantExit(t, s.ggctl("status"), ExitOK)

	r = s.ggctl("restart", "nosuchd")
	wantExit(t, r, ExitNotFound)
	wantOneErrorLine(t, r, `daemon "nosuchd": not found`)

	r = s.ggctl("stop", "bus")
	wantExit(t, r, ExitFailed)
	wantOneErrorLine(t, r, `daemon "bus" cannot be stopped: every daemon needs it: failed precondition`)
}

func TestControlWithoutSupervisor(t *testing.T) {
	s := newSuite(t)
	for _, args := range [][]string{{"restart", "broker"}, {"start", "broker"}, {"stop", "broker"}, {"logs", "broker"}} {
		r := s.ggctl(args...)
		wantExit(t, r, ExitUnreachable)
		wantOneErrorLine(t, r, "cannot reach the supervisor: no socket at "+s.socket("supervisor"), "is the suite running? (ggd --root "+s.root+")", "evergreen-broker.service")
	}
}

func TestLogsTail(t *testing.T) {
	s := newSuite(t)
	s.supervisor(newFakeSupervisor())

	r := s.ggctl("logs", "certmgr")
	wantExit(t, r, ExitOK)
	if r.stdout != "line 1\nline 2\nline 3\nline 4\n" {
		t.Fatalf("logs: %s", r)
	}
	r = s.ggctl("logs", "-n", "2", "certmgr")
	wantExit(t, r, ExitOK)
	if r.stdout != "line 3\nline 4\n" {
		t.Fatalf("logs -n 2: %s", r)
	}
	r = s.ggctl("logs", "certmgr", "-n", "1", "--json")
	wantExit(t, r, ExitOK)
	if r.stdout != "{\"line\":\"line 4\"}\n" {
		t.Fatalf("logs --json: %q", r.stdout)
	}

	r = s.ggctl("logs", "nosuchd")
	wantExit(t, r, ExitNotFound)
	wantOneErrorLine(t, r, `daemon "nosuchd": not found`)
	r = s.ggctl("logs", "bus")
	wantExit(t, r, ExitNotFound)
	wantOneErrorLine(t, r, `no log written yet for daemon "bus"`)
}

// logs -f prints the tail, then new lines as they come, and ends cleanly
// (exit 0) on Ctrl-C, here the cancelled context.
func TestLogsFollowUntilInterrupted(t *testing.T) {
	s := newSuite(t)
	sup := s.supervisor(newFakeSupervisor())

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var stdout, stderr syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- RunContext(ctx, []string{"--root", s.root, "logs", "-f", "-n", "1", "certmgr"}, &stdout, &stderr)
	}()

	checkFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		if stdout.String() != "line 4\n" {
			return fmt.Errorf("tail not printed yet: %q", stdout.String())
		}
		return nil
	})
	sup.follow <- "line 5"
	sup.follow <- "line 6"
	checkFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		if stdout.String() != "line 4\nline 5\nline 6\n" {
			return fmt.Errorf("followed lines not printed: %q", stdout.String())
		}
		return nil
	})
	select {
	case code := <-done:
		t.Fatalf("logs -f ended by itself with exit %d", code)
	default:
	}
	cancel()
	select {
	case code := <-done:
		if code != ExitOK || stderr.String() != "" {
			t.Fatalf("logs -f interrupted: exit %d, stderr %q", code, stderr.String())
		}
	case <-time.After(5 * time.Second):
		t.Fatal("logs -f did not stop on interrupt")
	}
}

func TestVersion(t *testing.T) {
	s := newSuite(t)
	r := s.ggctl("version")
	wantExit(t, r, ExitOK)
	if !strings.HasPrefix(r.stdout, "ggctl "+buildinfo.String()+"\n") || !strings.Contains(r.stdout, "ggd (supervisor): not reachable: cannot reach supervisor: no socket") {
		t.Fatalf("version without supervisor: %s", r)
	}

	s.supervisor(newFakeSupervisor())
	r = s.ggctl("version")
	wantExit(t, r, ExitOK)
	if r.stdout != "ggctl "+buildinfo.String()+"\nggd (supervisor) v0.1.0-test\n" {
		t.Fatalf("version: %s", r)
	}
	r = s.ggctl("version", "--json")
	wantExit(t, r, ExitOK)
	var v versionReport
	if err := json.Unmarshal([]byte(r.stdout), &v); err != nil || v.Ggctl.Version != buildinfo.Version || v.Supervisor == nil || v.Supervisor.Version != "v0.1.0-test" {
		t.Fatalf("version --json: %v %s", err, r)
	}
}

// Every command's --json output is one JSON document on stdout, with
// nothing else there.
func TestEveryCommandSpeaksJSON(t *testing.T) {
	s := newSuite(t)
	s.supervisor(newFakeSupervisor())
	s.certmgr(newFakeCertManager(t))
	s.deployer(newFakeDeployer())
	s.broker(newFakeBroker())
	out := t.TempDir()
	file := writeGroup(t, groupFile)
	_, certPEM, _ := issue(t, "ext", selfSigned(t, "other CA", time.Now().Add(48*time.Hour)), time.Now().Add(24*time.Hour))
	certFile := out + "/ext.pem"
	if err := writeFileAtomic(certFile, []byte(certPEM), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"status"},
		{"device", "create", "j1", "--out", out},
		{"device", "register", "ext", "--cert", certFile},
		{"device", "list"},
		{"device", "remove", "j1"},
		{"deploy", file},
		{"deploy", "--reset"},
		{"deployments"},
		{"deployments", "show", "dep-1"},
		{"restart", "certmgr"},
		{"stop", "deployagent"},
		{"start", "deployagent"},
		{"pub", "commands/sensor-1/reboot", "now"},
		{"pub", "nothing/here", "x"},
		{"subscriptions"},
		{"clients"},
		{"cloud"},
		{"version"},
		{"help"},
	} {
		r := s.ggctl(append([]string{"--json"}, args...)...)
		wantExit(t, r, ExitOK)
		dec := json.NewDecoder(bytes.NewReader([]byte(r.stdout)))
		var v any
		if err := dec.Decode(&v); err != nil {
			t.Fatalf("%v --json: %v\n%s", args, err, r)
		}
		if dec.More() {
			t.Fatalf("%v --json: more than one document on stdout:\n%s", args, r.stdout)
		}
	}
	// logs --json is JSON lines: one object per log line.
	r := s.ggctl("--json", "logs", "certmgr", "-n", "3")
	wantExit(t, r, ExitOK)
	for _, l := range strings.Split(strings.TrimRight(r.stdout, "\n"), "\n") {
		var v map[string]string
		if err := json.Unmarshal([]byte(l), &v); err != nil || v["line"] == "" {
			t.Fatalf("logs --json line %q: %v", l, err)
		}
	}
}
