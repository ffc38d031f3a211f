package cli

import (
	"encoding/json"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	supervisorv1 "github.com/evergreen-edge/evergreen/proto/evergreen/supervisor/v1"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

func TestStatusAllHealthy(t *testing.T) {
	s := newSuite(t)
	s.supervisor(newFakeSupervisor())
	s.certmgr(newFakeCertManager(t))

	r := s.ggctl("status")
	wantExit(t, r, ExitOK)
	if r.stderr != "" {
		t.Fatalf("healthy status wrote to stderr: %s", r)
	}
	lines := strings.Split(r.stdout, "\n")
	if !regexp.MustCompile(`^NAME +STATE +PID +RESTARTS +UPTIME +HEALTHY +LAST-ERROR$`).MatchString(lines[0]) {
		t.Fatalf("header: %q", lines[0])
	}
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`(?m)^bus +RUNNING +101 +0 +3h05m +yes +-$`),
		regexp.MustCompile(`(?m)^certmgr +RUNNING +102 +0 +3h00m +yes +-$`),
		regexp.MustCompile(`(?m)^deployagent +RUNNING +103 +0 +1m3\ds +yes +-$`),
		regexp.MustCompile(`(?m)^group CA: +expires in 3649d23h +\(not after `),
		regexp.MustCompile(`(?m)^device CA: +expires in 3649d23h`),
		regexp.MustCompile(`(?m)^core: +expires in 364d23h`),
		regexp.MustCompile(`(?m)^MQTT server cert: +expires in 6d23h`),
		regexp.MustCompile(`(?m)^supervisor: ggd v0.1.0-test$`),
	} {
		if !want.MatchString(r.stdout) {
			t.Fatalf("status lacks %s:\n%s", want, r.stdout)
		}
	}
	// Columns line up: STATE starts at the same offset on every row.
	col := strings.Index(lines[0], "STATE")
	for _, l := range lines[1:4] {
		if !strings.HasPrefix(l[col:], "RUNNING") {
			t.Fatalf("columns not aligned:\n%s", r.stdout)
		}
	}
}

func TestStatusUnhealthyExits1(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(d *supervisorv1.Daemon)
		want   string
	}{
		{"crash loop", func(d *supervisorv1.Daemon) {
			d.State, d.Healthy, d.Pid, d.StartedAt, d.Restarts, d.LastError = supervisorv1.DaemonState_DAEMON_STATE_CRASH_LOOP, false, 0, nil, 5, "exit status 2"
		}, `(?m)^deployagent +CRASH_LOOP +- +5 +- +no +exit status 2$`},
		{"running but not healthy", func(d *supervisorv1.Daemon) { d.Healthy = false }, `(?m)^deployagent +RUNNING +103 +0 +\S+ +no +-$`},
		{"backoff", func(d *supervisorv1.Daemon) {
			d.State, d.Healthy, d.StartedAt, d.LastError = supervisorv1.DaemonState_DAEMON_STATE_BACKOFF, false, nil, "signal: killed"
		}, `(?m)^deployagent +BACKOFF .* signal: killed$`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newSuite(t)
			sup := newFakeSupervisor()
			tc.change(sup.daemons[2])
			s.supervisor(sup)
			s.certmgr(newFakeCertManager(t))
			r := s.ggctl("status")
			wantExit(t, r, ExitFailed)
			wantOneErrorLine(t, r, "not healthy: deployagent")
			if !regexp.MustCompile(tc.want).MatchString(r.stdout) {
				t.Fatalf("table lacks %s:\n%s", tc.want, r.stdout)
			}
		})
	}
}

func TestStatusJSON(t *testing.T) {
	s := newSuite(t)
	sup := newFakeSupervisor()
	sup.daemons[1].Healthy = false
	s.supervisor(sup)
	s.certmgr(newFakeCertManager(t))

	r := s.ggctl("status", "--json")
	wantExit(t, r, ExitFailed)
	var rep statusReport
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatalf("status --json is not JSON: %v\n%s", err, r.stdout)
	}
	if rep.Healthy || rep.Source != "supervisor" || rep.SupervisorVersion != "v0.1.0-test" || len(rep.Daemons) != 3 {
		t.Fatalf("report: %+v", rep)
	}
	cm := rep.Daemons[1]
	if cm.Name != "certmgr" || cm.State != "RUNNING" || cm.Pid != 102 || cm.Healthy || cm.Restarts == nil || *cm.Restarts != 0 || cm.UptimeSeconds < 3*3600 {
		t.Fatalf("certmgr entry: %+v", cm)
	}
	if len(rep.Certificates) != 4 || rep.Certificates[3].Name != "MQTT server cert" || rep.Certificates[3].Expired {
		t.Fatalf("certificates: %+v", rep.Certificates)
	}
	if left := time.Duration(rep.Certificates[3].ExpiresInSeconds * float64(time.Second)); left < 6*24*time.Hour || left > 7*24*time.Hour {
		t.Fatalf("server cert expires in %v", left)
	}
}

// Without certmgr the daemons still show; the certificate line says why
// there are no expiry dates.
func TestStatusWithoutCertmgr(t *testing.T) {
	s := newSuite(t)
	s.supervisor(newFakeSupervisor())
	r := s.ggctl("status")
	wantExit(t, r, ExitOK)
	if !strings.Contains(r.stdout, "certificates: cannot reach certmgr: no socket at "+s.socket("certmgr")) {
		t.Fatalf("status without certmgr:\n%s", r)
	}

	cm := newFakeCertManager(t)
	cm.serverUnavailable = true
	s.certmgr(cm)
	r = s.ggctl("status")
	wantExit(t, r, ExitOK)
	if !strings.Contains(r.stdout, "group CA:") || !strings.Contains(r.stdout, "certificates: MQTT server cert: certmgr is not ready: no server certificate issued yet") {
		t.Fatalf("status with certmgr before its first server certificate:\n%s", r)
	}
}

// Daemons run by systemd: no supervisor socket, so status asks each
// daemon's socket for its health and says so.
func TestStatusFallsBackToHealthChecks(t *testing.T) {
	s := newSuite(t)
	s.certmgr(newFakeCertManager(t))
	deploy := s.serve("deployagent", nil)
	if err := os.WriteFile(s.root+"/run/deployagent.pid", []byte("4242\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	r := s.ggctl("status")
	wantExit(t, r, ExitOK)
	for _, want := range []string{
		"supervisor not running (no " + s.socket("supervisor") + "): health checked on each daemon's socket",
		"MQTT server cert:",
	} {
		if !strings.Contains(r.stdout, want) {
			t.Fatalf("status lacks %q:\n%s", want, r)
		}
	}
	for _, re := range []string{`(?m)^certmgr +RUNNING +- +- +- +yes +-$`, `(?m)^deployagent +RUNNING +4242 +- +\S+ +yes +-$`} {
		if !regexp.MustCompile(re).MatchString(r.stdout) {
			t.Fatalf("status lacks %s:\n%s", re, r.stdout)
		}
	}

	deploy.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
	r = s.ggctl("status")
	wantExit(t, r, ExitFailed)
	wantOneErrorLine(t, r, "not healthy: deployagent (not_serving)")

	// A daemon that died: its socket refuses, another left only a pid file.
	deploy.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	s.staleSocket("shadow")
	if err := os.WriteFile(s.root+"/run/broker.pid", []byte("77\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r = s.ggctl("status", "--json")
	wantExit(t, r, ExitFailed)
	var rep statusReport
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatalf("%v\n%s", err, r)
	}
	states := map[string]string{}
	for _, d := range rep.Daemons {
		states[d.Name] = d.State
		if d.Restarts != nil {
			t.Fatalf("%s: restarts known without a supervisor: %+v", d.Name, d)
		}
	}
	want := map[string]string{"broker": "DOWN", "certmgr": "RUNNING", "deployagent": "RUNNING", "shadow": "UNREACHABLE"}
	if rep.Source != "health-check" || len(states) != len(want) {
		t.Fatalf("report: %+v", rep)
	}
	for n, st := range want {
		if states[n] != st {
			t.Fatalf("%s: state %q, want %q (%+v)", n, states[n], st, rep)
		}
	}
}

func TestStatusUnreachable(t *testing.T) {
	s := newSuite(t)
	r := s.ggctl("status")
	wantExit(t, r, ExitUnreachable)
	wantOneErrorLine(t, r, "no supervisor socket and no daemon socket in "+s.root+"/run", "is the suite running? (ggd --root "+s.root+")")

	// A supervisor killed without cleaning up: its socket refuses.
	s.staleSocket("supervisor")
	r = s.ggctl("status")
	wantExit(t, r, ExitUnreachable)
	wantOneErrorLine(t, r, "cannot reach supervisor: connection refused", "is the suite running?")
}

func TestTimeoutBoundsUnaryCalls(t *testing.T) {
	s := newSuite(t)
	sup := newFakeSupervisor()
	sup.hold = make(chan struct{})
	defer close(sup.hold)
	s.supervisor(sup)
	start := time.Now()
	r := s.ggctl("--timeout", "200ms", "status")
	wantExit(t, r, ExitFailed)
	wantOneErrorLine(t, r, "supervisor did not answer within 200ms (raise --timeout)")
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("--timeout 200ms took %v", took)
	}
}
