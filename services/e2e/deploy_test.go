package e2e

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/evergreen-edge/evergreen/runtime/container/containerdtest"
	"github.com/evergreen-edge/evergreen/services/internal/suitetest"
	"github.com/evergreen-edge/evergreen/services/kit/groupdef"
	"github.com/evergreen-edge/evergreen/services/kit/layout"
)

type result struct {
	code           int
	stdout, stderr string
}

func ggctl(t *testing.T, root layout.Root, args ...string) result {
	t.Helper()
	cmd := exec.Command(suitetest.Binary(t, "ggctl"), append([]string{"--root", root.Dir()}, args...)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return result{code, out.String(), errb.String()}
}

func exampleGroup(t *testing.T) []byte {
	t.Helper()
	repo, err := suitetest.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(repo, "examples", "hello-world", "group.json"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func mustMarshal(t *testing.T, g *groupdef.Group) []byte {
	t.Helper()
	b, err := groupdef.Marshal(g)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func currentDeployment(t *testing.T, root layout.Root) string {
	t.Helper()
	r := ggctl(t, root, "--json", "deployments", "show")
	if r.code != 0 {
		t.Fatalf("deployments show: %d %s", r.code, r.stderr)
	}
	var d struct {
		DeploymentId string `json:"deploymentId"`
		Status       string `json:"status"`
		Current      bool   `json:"current"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &d); err != nil {
		t.Fatalf("deployments show --json: %v\n%s", err, r.stdout)
	}
	if !d.Current {
		t.Fatalf("deployments show did not return the current deployment: %s", r.stdout)
	}
	return d.DeploymentId
}

// The whole deploy path with real processes: deploy with ggctl, restart the
// suite, the group is still in force; a deployment certmgr refuses leaves
// the previous group in force; reset removes it.
// needContainerd gives the suite a real containerd for the example's
// GreengrassContainer function ($EVERGREEN_CONTAINERD_SOCKET, inherited
// by ggd and its runtime).
func needContainerd(t *testing.T) {
	t.Helper()
	socket, stop, err := containerdtest.Start()
	if err != nil {
		if suitetest.RequireAll() {
			t.Fatalf("containerd: %v (EVERGREEN_REQUIRE_ALL is set)", err)
		}
		t.Skipf("containerd: %v", err)
	}
	t.Cleanup(stop)
	t.Setenv("EVERGREEN_CONTAINERD_SOCKET", socket)
}

func TestDeploySurvivesRestartAndRefusalKeepsPrevious(t *testing.T) {
	needContainerd(t)
	root := suitetest.ShortRoot(t)
	suitetest.WriteConfig(t, root, func(cfg map[string]any) {
		cfg["coreThing"] = map[string]any{"thingArn": "arn:aws:iot:us-east-1:123456789012:thing/evergreen-core"}
	})
	s := suitetest.Start(t, root)
	if r := ggctl(t, root, "status"); r.code != 0 || !strings.Contains(r.stdout, "certmgr") {
		t.Fatalf("status: %d\n%s%s", r.code, r.stdout, r.stderr)
	}

	group := exampleGroup(t)
	// A copy elsewhere: its relative CodeUri must still find the code.
	repo, _ := suitetest.RepoRoot()
	group = bytes.Replace(group, []byte(`"CodeUri": "function"`), []byte(`"CodeUri": "`+filepath.Join(repo, "examples", "hello-world", "function")+`"`), 1)
	gf := filepath.Join(t.TempDir(), "group.json")
	os.WriteFile(gf, group, 0o600)
	r := ggctl(t, root, "deploy", gf)
	if r.code != 0 {
		t.Fatalf("deploy: %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	first := currentDeployment(t, root)
	// The group in force, indented for a reader, is the deployed group.
	r = ggctl(t, root, "deployments", "group")
	if r.code != 0 || !strings.HasPrefix(r.stdout, "{\n  \"") || !strings.Contains(r.stdout, "\n  \"Core\": {\n    \"Cores\": [\n") || !strings.Contains(r.stdout, "hello/world") {
		t.Fatalf("deployments group: %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	shown, err := groupdef.Parse([]byte(r.stdout))
	if err != nil {
		t.Fatalf("deployments group printed a group that does not parse: %v", err)
	}
	deployed, _ := groupdef.Parse(group)
	if a, b := mustMarshal(t, shown), mustMarshal(t, deployed); !bytes.Equal(a, b) {
		t.Fatalf("deployments group differs from the deployed file:\n%s\n%s", a, b)
	}

	// Restart the whole suite: the same group is in force.
	s.Stop(15 * time.Second)
	s = suitetest.Start(t, root)
	if got := currentDeployment(t, root); got != first {
		t.Fatalf("after restart the deployment in force is %s, want %s", got, first)
	}

	// Register sensor-1 here; the example names another certificate for it,
	// so certmgr refuses the next deployment and the first stays in force.
	out := t.TempDir()
	if r := ggctl(t, root, "device", "create", "sensor-1", "--out", out); r.code != 0 {
		t.Fatalf("device create: %d %s", r.code, r.stderr)
	}
	for _, f := range []string{"sensor-1.cert.pem", "sensor-1.key.pem", "ca.pem"} {
		if _, err := os.Stat(filepath.Join(out, f)); err != nil {
			t.Fatal(err)
		}
	}
	r = ggctl(t, root, "deploy", gf)
	if r.code != 1 || !strings.Contains(r.stdout+r.stderr, "Devices[") || !strings.Contains(r.stdout+r.stderr, "certmgr") {
		t.Fatalf("refused deploy: want exit 1 naming certmgr's reason, got %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if got := currentDeployment(t, root); got != first {
		t.Fatalf("a refused deployment replaced the group in force (%s, want %s)", got, first)
	}

	// With the device's real certificate id the same group deploys.
	pemBytes, _ := os.ReadFile(filepath.Join(out, "sensor-1.cert.pem"))
	blk, _ := pem.Decode(pemBytes)
	cert, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(cert.Raw)
	fixed := strings.Replace(string(group), "75fcce4506e2b49c935ad64e43250abe43de607c55200dc94f52c7bf2e180e4d", hex.EncodeToString(sum[:]), 1)
	os.WriteFile(gf, []byte(fixed), 0o600)
	if r := ggctl(t, root, "deploy", gf); r.code != 0 {
		t.Fatalf("deploy with the registered certificate: %d\n%s%s", r.code, r.stdout, r.stderr)
	}

	// Invalid groups never reach the daemons: exit 2, every path named.
	os.WriteFile(gf, []byte(`{"Core":{"Cores":[]},"Subscriptions":{"Subscriptions":[{"Id":"s","Source":"cloud","Subject":"a/#/b","Target":"nowhere"}]}}`), 0o600)
	r = ggctl(t, root, "deploy", gf)
	if r.code != 2 || !strings.Contains(r.stderr, "Subscriptions[0].Target") || !strings.Contains(r.stderr, "Subscriptions[0].Subject") {
		t.Fatalf("invalid group: %d\n%s", r.code, r.stderr)
	}

	// Reset: no group in force, and that survives a restart too.
	if r := ggctl(t, root, "deploy", "--reset"); r.code != 0 {
		t.Fatalf("reset: %d %s", r.code, r.stderr)
	}
	if r := ggctl(t, root, "deployments", "group"); r.code != 4 || !strings.Contains(r.stderr, "no group is in force") {
		t.Fatalf("deployments group after a reset: want exit 4, got %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	s.Stop(15 * time.Second)
	suitetest.Start(t, root)
	cur, err := os.ReadFile(filepath.Join(root.DeploymentsDir(), "current.json"))
	if err != nil || !strings.Contains(string(cur), `"reset": true`) && !strings.Contains(string(cur), `"reset":true`) {
		t.Fatalf("current.json after reset: %s %v", cur, err)
	}
	if r := ggctl(t, root, "deployments"); r.code != 0 || strings.Count(r.stdout, "\n") < 5 {
		t.Fatalf("deployments: %d\n%s", r.code, r.stdout)
	}
}
