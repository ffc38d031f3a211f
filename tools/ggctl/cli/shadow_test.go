package cli

import (
	"context"
	"encoding/json"
	"io"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/evergreen-edge/evergreen/services/kit/bustest"
	"github.com/evergreen-edge/evergreen/services/kit/config"
	"github.com/evergreen-edge/evergreen/services/kit/daemon"
	"github.com/evergreen-edge/evergreen/services/kit/deployment"
	"github.com/evergreen-edge/evergreen/services/kit/layout"
	"github.com/evergreen-edge/evergreen/shadow"
)

// shadowDaemon runs the real shadow daemon on the suite's root, with a
// group of the core and device lamp.
func (s *suite) shadowDaemon() {
	s.t.Helper()
	root := layout.Root(s.root)
	bus := bustest.Start(s.t)
	bustest.WriteCreds(s.t, root, shadow.Name)
	os.MkdirAll(root.DeploymentsDir(), 0o700)
	g := `{"Core":{"Cores":[{"Id":"c","ThingArn":"arn:aws:iot:us-east-1:123456789012:thing/core-1","CertificateArn":"arn:aws:iot:us-east-1:123456789012:cert/` + strings.Repeat("a", 64) + `"}]},` +
		`"Devices":{"Devices":[{"Id":"l","ThingArn":"arn:aws:iot:us-east-1:123456789012:thing/lamp","CertificateArn":"arn:aws:iot:us-east-1:123456789012:cert/` + strings.Repeat("b", 64) + `"}]}}`
	if err := deployment.Commit(root, &deployment.Record{DeploymentID: "d-1", DeployedAt: time.Now().UTC(), Group: []byte(g)}); err != nil {
		s.t.Fatal(err)
	}
	cfg := config.Default()
	cfg.CoreThing.ThingArn = "arn:aws:iot:us-east-1:123456789012:thing/core-1"
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	run, err := daemon.Start(ctx, shadow.Spec(), daemon.Options{Root: s.root, BusURL: bus, Config: cfg, LogStderr: io.Discard})
	if err != nil {
		s.t.Fatal(err)
	}
	s.t.Cleanup(func() { run.Shutdown(context.Background()) })
}

func TestShadowCommands(t *testing.T) {
	s := newSuite(t)
	s.shadowDaemon()

	r := s.ggctl("shadow", "get", "lamp")
	wantExit(t, r, ExitNotFound)
	if r.stderr != "ggctl: 404 No shadow exists with name: 'lamp'\n" {
		t.Fatalf("stderr %q", r.stderr)
	}

	r = s.ggctl("shadow", "update", "lamp", `{"state":{"desired":{"on":true}},"clientToken":"cli"}`)
	wantExit(t, r, ExitOK)
	var acc map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &acc); err != nil || acc["version"] != float64(1) || acc["clientToken"] != "cli" {
		t.Fatalf("update printed %s (%v)", r.stdout, err)
	}
	r = s.ggctlStdin(`{"state":{"reported":{"on":false}}}`, "shadow", "update", "lamp", "--name", "cfg", "-")
	wantExit(t, r, ExitOK)

	r = s.ggctl("shadow", "get", "lamp")
	wantExit(t, r, ExitOK)
	var doc struct {
		State struct {
			Delta map[string]any `json:"delta"`
		} `json:"state"`
		Version int `json:"version"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &doc); err != nil || doc.State.Delta["on"] != true || doc.Version != 1 {
		t.Fatalf("get printed %s (%v)", r.stdout, err)
	}

	r = s.ggctl("shadow", "list")
	wantExit(t, r, ExitOK)
	for _, re := range []string{`(?m)^THING +NAME +VERSION +STATE-BYTES +SYNC$`, `(?m)^lamp +\(classic\) +1 +\d+ +-$`, `(?m)^lamp +cfg +1 +\d+ +-$`} {
		if !regexp.MustCompile(re).MatchString(r.stdout) {
			t.Fatalf("list lacks %s:\n%s", re, r.stdout)
		}
	}
	r = s.ggctl("shadow", "list", "--json")
	wantExit(t, r, ExitOK)
	if !strings.Contains(r.stdout, `"name": "cfg"`) {
		t.Fatalf("list --json: %s", r.stdout)
	}

	// Errors: one line, the shadow service's code and message, exit codes.
	for _, tc := range []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"shadow", "update", "lamp", `{"state":`}, ExitUsage, "400 Invalid JSON"},
		{[]string{"shadow", "update", "lamp", `{"state":{"desired":{"on":1}},"version":9}`}, ExitFailed, "409 Version conflict"},
		{[]string{"shadow", "get", "stranger"}, ExitNotFound, "404 Thing not found"},
		{[]string{"shadow", "get", "bad/thing"}, ExitUsage, "thing:"},
		{[]string{"shadow", "get", "lamp", "--name", "no spaces"}, ExitUsage, "name:"},
		{[]string{"shadow", "update", "lamp"}, ExitUsage, "missing argument: usage: ggctl shadow update THING DOCUMENT"},
		{[]string{"shadow", "get"}, ExitUsage, "missing argument"},
	} {
		r := s.ggctl(tc.args...)
		wantExit(t, r, tc.code)
		wantOneErrorLine(t, r, tc.msg)
	}

	r = s.ggctl("shadow", "delete", "lamp")
	wantExit(t, r, ExitOK)
	if r.stdout != "deleted the shadow of lamp (version 1; the next update continues the numbering)\n" {
		t.Fatalf("delete printed %q", r.stdout)
	}
	r = s.ggctl("shadow", "update", "lamp", `{"state":{"reported":{"x":1}}}`)
	wantExit(t, r, ExitOK)
	if !strings.Contains(r.stdout, `"version": 2`) {
		t.Fatalf("update after delete: %s", r.stdout)
	}
}

func TestShadowUnreachable(t *testing.T) {
	s := newSuite(t)
	r := s.ggctl("shadow", "list")
	wantExit(t, r, ExitUnreachable)
	wantOneErrorLine(t, r, "cannot reach shadow: no socket at "+s.socket("shadow"))
}
