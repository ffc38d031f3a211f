package cli

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	deployv1 "github.com/evergreen-edge/evergreen/proto/evergreen/deploy/v1"
	"github.com/evergreen-edge/evergreen/services/kit/errdefs"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

const groupFile = `{"Core": {"Cores": [{"Id": "core", "ThingArn": "arn:aws:iot:eu-west-1:123456789012:thing/core", "CertificateArn": "arn:aws:iot:eu-west-1:123456789012:cert/abc"}]}}`

func writeGroup(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "group.json")
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

var progressLine = regexp.MustCompile(`^ +\d+\.\d\ds  [A-Z_]+ +\S`)

func TestDeploySuccess(t *testing.T) {
	s := newSuite(t)
	d := s.deployer(newFakeDeployer())
	file := writeGroup(t, groupFile)

	r := s.ggctl("deploy", file)
	wantExit(t, r, ExitOK)
	if got := d.lastRequest(); got == nil || string(got.GroupJson) != groupFile || got.Reset_ {
		t.Fatalf("deployagent received %v", got)
	}
	// Progress: one line per event on stderr, each with the elapsed time.
	lines := strings.Split(strings.TrimRight(r.stderr, "\n"), "\n")
	if len(lines) != 3 {
		t.Fatalf("want 3 progress lines, got %s", r)
	}
	for i, want := range []string{"IN_PROGRESS  validated", "BUILDING     certmgr applied", "SUCCESS      deployed"} {
		if !progressLine.MatchString(lines[i]) || !strings.HasSuffix(lines[i], want) {
			t.Fatalf("progress line %d %q, want elapsed time then %q", i, lines[i], want)
		}
	}
	for _, re := range []string{`^deployment dep-new: SUCCESS in \d`, `(?m)^DAEMON +RESULT +REASON$`, `(?m)^certmgr +ok +-$`, `(?m)^broker +ok +-$`} {
		if !regexp.MustCompile(re).MatchString(r.stdout) {
			t.Fatalf("result lacks %s:\n%s", re, r.stdout)
		}
	}

	r = s.ggctl("deploy", file, "--id", "mine", "--json")
	wantExit(t, r, ExitOK)
	var ev struct {
		DeploymentID string `json:"deploymentId"`
		Status       string `json:"status"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &ev); err != nil || ev.DeploymentID != "mine" || ev.Status != "DEPLOYMENT_STATUS_SUCCESS" {
		t.Fatalf("deploy --json: %v %s", err, r)
	}
}

func TestDeployFailureShowsEveryReason(t *testing.T) {
	s := newSuite(t)
	d := newFakeDeployer()
	d.deploy = func(_ *deployv1.DeployRequest, send func(deployv1.DeploymentStatus, string, ...*deployv1.DaemonResult)) error {
		send(deployv1.DeploymentStatus_DEPLOYMENT_STATUS_IN_PROGRESS, "validated")
		send(deployv1.DeploymentStatus_DEPLOYMENT_STATUS_FAILURE, "2 daemons refused the group; rolled back",
			&deployv1.DaemonResult{Daemon: "certmgr", Ok: true},
			&deployv1.DaemonResult{Daemon: "broker", Reason: "port 8883 in use"},
			&deployv1.DaemonResult{Daemon: "runtime", Reason: "function hello: runtime python3.7 not installed"})
		return nil
	}
	s.deployer(d)

	r := s.ggctl("deploy", writeGroup(t, groupFile))
	wantExit(t, r, ExitFailed)
	for _, re := range []string{
		`^deployment dep-new: FAILURE after \S+; the previous group stays in force\n`,
		`(?m)^certmgr +ok +-$`,
		`(?m)^broker +FAILED +port 8883 in use$`,
		`(?m)^runtime +FAILED +function hello: runtime python3.7 not installed$`,
	} {
		if !regexp.MustCompile(re).MatchString(r.stdout) {
			t.Fatalf("stdout lacks %s:\n%s", re, r)
		}
	}
	lines := strings.Split(strings.TrimRight(r.stderr, "\n"), "\n")
	if len(lines) != 3 || !strings.HasSuffix(lines[1], "FAILURE      2 daemons refused the group; rolled back") ||
		lines[2] != "ggctl: deployment dep-new failed: 2 of 3 daemons refused it" {
		t.Fatalf("stderr:\n%s", r.stderr)
	}
}

func TestDeployInvalidListsEveryError(t *testing.T) {
	s := newSuite(t)
	d := newFakeDeployer()
	d.deploy = func(*deployv1.DeployRequest, func(deployv1.DeploymentStatus, string, ...*deployv1.DaemonResult)) error {
		return errdefs.ToGRPC(errdefs.InvalidArgument("group definition", "3 errors:\nSubscriptions[3].Target: unknown target \"fn:nope\"\nFunctions[0].Id: duplicate id \"f1\"\nDevices[2].ThingArn: not an ARN"))
	}
	s.deployer(d)
	file := writeGroup(t, `{"Subscriptions": {}}`)

	r := s.ggctl("deploy", file)
	wantExit(t, r, ExitUsage)
	want := "ggctl: " + file + " is not a valid group definition (3 errors):\n" +
		"  Subscriptions[3].Target: unknown target \"fn:nope\"\n" +
		"  Functions[0].Id: duplicate id \"f1\"\n" +
		"  Devices[2].ThingArn: not an ARN\n"
	if r.stderr != want || r.stdout != "" {
		t.Fatalf("stderr %q\nwant   %q\n%s", r.stderr, want, r)
	}

	r = s.ggctl("--json", "deploy", file)
	wantExit(t, r, ExitUsage)
	var inv invalidDefinition
	if err := json.Unmarshal([]byte(r.stdout), &inv); err != nil || inv.Code != "InvalidArgument" || len(inv.Errors) != 3 || inv.File != file {
		t.Fatalf("deploy --json invalid: %v %s", err, r)
	}
}

func TestDeployReset(t *testing.T) {
	s := newSuite(t)
	d := s.deployer(newFakeDeployer())
	r := s.ggctl("deploy", "--reset")
	wantExit(t, r, ExitOK)
	if got := d.lastRequest(); got == nil || !got.Reset_ || len(got.GroupJson) != 0 {
		t.Fatalf("deployagent received %v", got)
	}
	if !strings.HasPrefix(r.stdout, "reset dep-new: SUCCESS in ") || !strings.Contains(r.stdout, "no group is deployed") {
		t.Fatalf("reset output:\n%s", r)
	}
}

func TestDeployBusyAndUnreachable(t *testing.T) {
	s := newSuite(t)
	file := writeGroup(t, groupFile)
	r := s.ggctl("deploy", file)
	wantExit(t, r, ExitUnreachable)
	wantOneErrorLine(t, r, "cannot reach deployagent: no socket at "+s.socket("deployagent"), "is the suite running?")

	d := newFakeDeployer()
	d.deploy = func(*deployv1.DeployRequest, func(deployv1.DeploymentStatus, string, ...*deployv1.DaemonResult)) error {
		return status.Error(codes.Aborted, "deployment dep-9 is in progress")
	}
	s.deployer(d)
	r = s.ggctl("deploy", file)
	wantExit(t, r, ExitFailed)
	wantOneErrorLine(t, r, "another deployment is in progress", "dep-9")

	// A stream that ends without a terminal event is a failure, not success.
	d.deploy = func(_ *deployv1.DeployRequest, send func(deployv1.DeploymentStatus, string, ...*deployv1.DaemonResult)) error {
		send(deployv1.DeploymentStatus_DEPLOYMENT_STATUS_IN_PROGRESS, "validated")
		return nil
	}
	r = s.ggctl("deploy", file)
	wantExit(t, r, ExitFailed)
	if !strings.Contains(r.stderr, "ggctl: deployment dep-new: the deployagent ended the stream without a result") {
		t.Fatalf("%s", r)
	}
}

func TestDeployments(t *testing.T) {
	s := newSuite(t)
	s.deployer(newFakeDeployer())
	r := s.ggctl("deployments")
	wantExit(t, r, ExitOK)
	for _, re := range []string{
		`^ID +TYPE +STATUS +STAGE +CREATED +FINISHED +CURRENT +ERROR\n`,
		`(?m)^dep-2 +NEW +FAILURE +- +\d{4}-\d\d-\d\d \d\d:\d\d:\d\d +\d{4}-\d\d-\d\d \d\d:\d\d:\d\d +- +certmgr refused: subscription target unknown$`,
		`(?m)^dep-1 +NEW +SUCCESS +- +\S+ \S+ +\S+ \S+ +yes +-$`,
	} {
		if !regexp.MustCompile(re).MatchString(r.stdout) {
			t.Fatalf("deployments lacks %s:\n%s", re, r.stdout)
		}
	}
	if strings.Index(r.stdout, "dep-2") > strings.Index(r.stdout, "dep-1") {
		t.Fatal("deployments not newest first")
	}

	r = s.ggctl("deployments", "--json")
	wantExit(t, r, ExitOK)
	var list struct {
		Deployments []struct {
			DeploymentID string `json:"deploymentId"`
			Current      bool   `json:"current"`
		} `json:"deployments"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &list); err != nil || len(list.Deployments) != 2 || !list.Deployments[1].Current {
		t.Fatalf("deployments --json: %v %s", err, r)
	}

	r = s.ggctl("deployments", "show", "dep-2")
	wantExit(t, r, ExitOK)
	for _, re := range []string{`(?m)^ID: +dep-2$`, `(?m)^Status: +FAILURE$`, `(?m)^Current: +no$`, `(?m)^certmgr +FAILED +subscription target unknown$`, `(?m)^broker +ok +-$`} {
		if !regexp.MustCompile(re).MatchString(r.stdout) {
			t.Fatalf("show lacks %s:\n%s", re, r.stdout)
		}
	}
	r = s.ggctl("deployments", "show")
	wantExit(t, r, ExitOK)
	if !regexp.MustCompile(`(?m)^ID: +dep-1$`).MatchString(r.stdout) || !strings.Contains(r.stdout, "abc123") {
		t.Fatalf("show current:\n%s", r)
	}

	r = s.ggctl("deployments", "show", "dep-404")
	wantExit(t, r, ExitNotFound)
	wantOneErrorLine(t, r, `deployment "dep-404": not found`)
}

func TestResolveCodeURIs(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "group.json")
	in := []byte(`{"Name":"g","Functions":{"DefaultConfig":{"Execution":{"IsolationMode":"NoContainer"}},"Functions":[` +
		`{"Id":"a","Evergreen":{"Runtime":"python3.8","Handler":"m.f","CodeUri":"function"}},` +
		`{"Id":"b","Evergreen":{"Runtime":"go","Handler":"echo","CodeUri":"/abs/echo.zip"}},` +
		`{"Id":"c","Evergreen":{"Runtime":"go","Handler":"echo","CodeUri":"file:///abs/x"}},` +
		`{"Id":"sys","FunctionArn":"arn:aws:lambda:::function:GGCloudSpooler:1"}]}}`)
	out, err := resolveCodeURIs(in, file)
	if err != nil {
		t.Fatal(err)
	}
	var g struct {
		Name      string
		Functions struct {
			DefaultConfig map[string]any
			Functions     []struct {
				Id        string
				Evergreen *struct{ CodeUri string }
			}
		}
	}
	if err := json.Unmarshal(out, &g); err != nil {
		t.Fatal(err)
	}
	if g.Name != "g" || g.Functions.DefaultConfig == nil || len(g.Functions.Functions) != 4 {
		t.Fatalf("group changed beyond CodeUri: %s", out)
	}
	for i, want := range []string{filepath.Join(dir, "function"), "/abs/echo.zip", "file:///abs/x"} {
		if got := g.Functions.Functions[i].Evergreen.CodeUri; got != want {
			t.Errorf("function %d CodeUri %q, want %q", i, got, want)
		}
	}
	// A group without relative paths is sent byte for byte.
	same := []byte(`{"Functions":{"Functions":[{"Id":"b","Evergreen":{"CodeUri":"/abs"}}]}}`)
	if out, _ := resolveCodeURIs(same, file); string(out) != string(same) {
		t.Fatalf("rewrote %s", out)
	}
}

// The v1 deployment types map onto the request, and the stages show in the
// progress lines.
func TestDeployTypesAndStages(t *testing.T) {
	s := newSuite(t)
	d := &stagedDeployer{fakeDeployer: newFakeDeployer()}
	s.serve(deployagentDaemon, func(g *grpc.Server) { deployv1.RegisterDeployerServer(g, d) })
	for _, tc := range []struct {
		args []string
		typ  deployv1.DeploymentType
		of   string
	}{
		{[]string{"--reset"}, deployv1.DeploymentType_DEPLOYMENT_TYPE_UNSPECIFIED, ""},
		{[]string{"--reset", "--force"}, deployv1.DeploymentType_DEPLOYMENT_TYPE_FORCE_RESET, ""},
		{[]string{"--redeploy"}, deployv1.DeploymentType_DEPLOYMENT_TYPE_REDEPLOY, ""},
		{[]string{"--redeploy", "--of", "dep-1"}, deployv1.DeploymentType_DEPLOYMENT_TYPE_REDEPLOY, "dep-1"},
	} {
		r := s.ggctl(append([]string{"deploy"}, tc.args...)...)
		wantExit(t, r, ExitOK)
		if got := d.last; got.GetType() != tc.typ || got.GetRedeployOf() != tc.of || len(got.GetGroupJson()) != 0 {
			t.Fatalf("deploy %v sent %v", tc.args, got)
		}
	}
	for _, bad := range [][]string{{"--force"}, {"--of", "x"}, {"--redeploy", "--reset"}, {"--redeploy", writeGroup(t, groupFile)}} {
		wantExit(t, s.ggctl(append([]string{"deploy"}, bad...)...), ExitUsage)
	}
}

func TestDeployProgressShowsStages(t *testing.T) {
	srv := &stagedDeployer{fakeDeployer: newFakeDeployer()}
	s := newSuite(t)
	s.serve(deployagentDaemon, func(g *grpc.Server) { deployv1.RegisterDeployerServer(g, srv) })
	r := s.ggctl("deploy", writeGroup(t, groupFile))
	wantExit(t, r, ExitOK)
	lines := strings.Split(strings.TrimRight(r.stderr, "\n"), "\n")
	want := []string{"IN_PROGRESS  validated    validated", "IN_PROGRESS  committed    committed: current.json names dep-new", "SUCCESS      done         deployment succeeded"}
	if len(lines) != len(want) {
		t.Fatalf("progress:\n%s", r.stderr)
	}
	for i, w := range want {
		if !progressLine.MatchString(lines[i]) || !strings.HasSuffix(lines[i], w) {
			t.Fatalf("line %d %q, want suffix %q", i, lines[i], w)
		}
	}

	r = s.ggctl("deployments", "applied")
	wantExit(t, r, ExitFailed)
	for _, re := range []string{`(?m)^current.json: deployment dep-1 aa$`, `(?m)^broker +dep-1 +aa +-$`, `(?m)^runtime +- +- +no reply within 10s$`, `ggctl: 1 of 2 daemons do not run deployment dep-1`} {
		if !regexp.MustCompile(re).MatchString(r.stdout + r.stderr) {
			t.Fatalf("deployments applied lacks %s:\n%s", re, r)
		}
	}
	r = s.ggctl("--json", "deployments", "applied")
	var resp struct {
		DeploymentID string `json:"deploymentId"`
		Daemons      []struct {
			Daemon string `json:"daemon"`
		} `json:"daemons"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &resp); err != nil || resp.DeploymentID != "dep-1" || len(resp.Daemons) != 2 {
		t.Fatalf("deployments applied --json: %v %s", err, r)
	}
}

// stagedDeployer sends stages and answers GetApplied.
type stagedDeployer struct {
	*fakeDeployer
	last *deployv1.DeployRequest
}

func (f *stagedDeployer) Deploy(r *deployv1.DeployRequest, stream grpc.ServerStreamingServer[deployv1.DeployEvent]) error {
	f.last = r
	for _, ev := range []*deployv1.DeployEvent{
		{Status: deployv1.DeploymentStatus_DEPLOYMENT_STATUS_IN_PROGRESS, Stage: "validated", Message: "validated"},
		{Status: deployv1.DeploymentStatus_DEPLOYMENT_STATUS_IN_PROGRESS, Stage: "committed", Message: "committed: current.json names dep-new"},
		{Status: deployv1.DeploymentStatus_DEPLOYMENT_STATUS_SUCCESS, Stage: "done", Message: "deployment succeeded"},
	} {
		ev.DeploymentId = "dep-new"
		if err := stream.Send(ev); err != nil {
			return err
		}
	}
	return nil
}

func (f *stagedDeployer) GetApplied(context.Context, *deployv1.GetAppliedRequest) (*deployv1.GetAppliedResponse, error) {
	return &deployv1.GetAppliedResponse{DeploymentId: "dep-1", GroupSha256: "aa", Daemons: []*deployv1.DaemonApplied{
		{Daemon: "broker", DeploymentId: "dep-1", GroupSha256: "aa"},
		{Daemon: "runtime", Error: "no reply within 10s"},
	}}, nil
}

// On a terminal a download's progress events draw one filling line.
func TestProgressBar(t *testing.T) {
	var b strings.Builder
	bar := &progressBar{w: &b, on: true}
	if !bar.draw("artifact https://example.com/m.zip: 5.0 MiB of 10.0 MiB") || bar.draw("validated") {
		t.Fatal("draw")
	}
	bar.draw("artifact https://example.com/m.zip: 10.0 MiB of 10.0 MiB")
	bar.end()
	got := b.String()
	if !strings.Contains(got, "[###############...............]  50%") || !strings.Contains(got, "100%") || !strings.HasSuffix(got, "\n") {
		t.Fatalf("bar: %q", got)
	}
	if (&progressBar{w: &b}).draw("artifact x: 1 B of 2 B") {
		t.Fatal("drew a bar off a terminal")
	}
	if parseSize("1.5 KiB") != 1536 || parseSize("x") != -1 {
		t.Fatal("parseSize")
	}
}
