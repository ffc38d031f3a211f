package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/evergreen-edge/evergreen/runtime"
	"github.com/evergreen-edge/evergreen/services/kit/bustest"
	"github.com/evergreen-edge/evergreen/services/kit/config"
	"github.com/evergreen-edge/evergreen/services/kit/daemon"
	"github.com/evergreen-edge/evergreen/services/kit/deployment"
	"github.com/evergreen-edge/evergreen/services/kit/layout"
)

const fnEchoARN = "arn:aws:lambda:us-east-1:123456789012:function:echo:1"

// runtimeDaemon runs the real runtime daemon on the suite's root with the
// Go test function echo (runtime/testdata/echo), pinned.
func (s *suite) runtimeDaemon() {
	s.t.Helper()
	code := s.t.TempDir()
	cmd := exec.Command("go", "build", "-o", filepath.Join(code, "echo"), "./testdata/echo")
	cmd.Dir = "../../../runtime"
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		s.t.Fatalf("build echo: %v\n%s", err, out)
	}
	os.Chmod(code, 0o755)
	root := layout.Root(s.root)
	bus := bustest.Start(s.t)
	bustest.WriteCreds(s.t, root, runtime.Name)
	os.MkdirAll(root.DeploymentsDir(), 0o700)
	g := fmt.Sprintf(`{"Core":{"Cores":[{"Id":"c","ThingArn":"arn:aws:iot:us-east-1:123456789012:thing/core-1","CertificateArn":"arn:aws:iot:us-east-1:123456789012:cert/%s"}]},
"Functions":{"DefaultConfig":{"Execution":{"IsolationMode":"NoContainer","RunAs":{"Uid":0,"Gid":0}}},
"Functions":[{"Id":"echo","FunctionArn":%q,"FunctionConfiguration":{"Pinned":true,"Timeout":3,"EncodingType":"binary"},
"Evergreen":{"Runtime":"go","Handler":"echo","CodeUri":%q}}]}}`, strings.Repeat("a", 64), fnEchoARN, code)
	if err := deployment.Commit(root, &deployment.Record{DeploymentID: "d-1", DeployedAt: time.Now().UTC(), Group: []byte(g)}); err != nil {
		s.t.Fatal(err)
	}
	cfg := config.Default()
	cfg.CoreThing.ThingArn = "arn:aws:iot:us-east-1:123456789012:thing/core-1"
	cfg.Evergreen.Listen.IPC = "127.0.0.1:0"
	cfg.Evergreen.Listen.Streams = "127.0.0.1:0"
	cfg.Runtime.AllowFunctionsToRunAsRoot = "yes"
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	run, err := daemon.Start(ctx, runtime.Spec(), daemon.Options{Root: s.root, BusURL: bus, Config: cfg, LogStderr: io.Discard})
	if err != nil {
		s.t.Fatal(err)
	}
	s.t.Cleanup(func() { run.Shutdown(context.Background()) })
}

func TestFnCommands(t *testing.T) {
	s := newSuite(t)
	s.runtimeDaemon()

	r := s.ggctl("fn", "list")
	wantExit(t, r, ExitOK)
	if !regexp.MustCompile(`(?m)^echo +go +echo +pinned +NoContainer +3s +\d +` + regexp.QuoteMeta(fnEchoARN) + `$`).MatchString(r.stdout) {
		t.Fatalf("fn list:\n%s", r.stdout)
	}
	bustest.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		r := s.ggctl("fn", "workers", "echo")
		if !regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(fnEchoARN) + ` +\S+ +\d+ +(Waiting|Initialized)$`).MatchString(r.stdout) {
			return fmt.Errorf("fn workers:\n%s%s", r.stdout, r.stderr)
		}
		return nil
	})
	r = s.ggctl("fn", "invoke", "echo", `{"a":1}`)
	wantExit(t, r, ExitOK)
	if r.stdout != "{\n  \"a\": 1\n}\n" {
		t.Fatalf("fn invoke printed %q", r.stdout)
	}
	r = s.ggctl("fn", "invoke", "echo", "fail")
	wantExit(t, r, ExitFailed)
	wantOneErrorLine(t, r, "function error (Handled)")
	if !strings.Contains(r.stdout, "asked to fail") {
		t.Fatalf("handled error body: %q", r.stdout)
	}
	r = s.ggctl("fn", "invoke", "echo", "x", "--event")
	wantExit(t, r, ExitOK)
	if !strings.HasPrefix(r.stdout, "queued (invocation ") {
		t.Fatalf("event: %q", r.stdout)
	}
	r = s.ggctl("fn", "invoke", "nope", "x")
	wantExit(t, r, ExitNotFound)
	r = s.ggctl("fn", "restart", "echo")
	wantExit(t, r, ExitOK)
	if r.stdout != "stopped 1 worker(s) of echo\n" {
		t.Fatalf("restart: %q", r.stdout)
	}
	r = s.ggctl("fn", "logs", "nope")
	wantExit(t, r, ExitNotFound)
	wantOneErrorLine(t, r, "no log for function nope")
	r = s.ggctl("fn", "logs", "echo")
	wantExit(t, r, ExitOK)
}

func TestFnUnreachable(t *testing.T) {
	s := newSuite(t)
	r := s.ggctl("fn", "list")
	wantExit(t, r, ExitUnreachable)
	wantOneErrorLine(t, r, "cannot reach runtime: no socket at "+s.socket("runtime"))
}
