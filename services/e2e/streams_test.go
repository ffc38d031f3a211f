package e2e

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/evergreen-edge/evergreen/services/internal/suitetest"
)

// A function reaches the stream manager on the port its environment
// names and is let in with the token the runtime gave it; a token the
// runtime did not issue is refused with Unauthorized (2).
func TestStreamManagerAuthenticatesFunctions(t *testing.T) {
	root := suitetest.ShortRoot(t)
	suitetest.WriteConfig(t, root, nil)
	suitetest.Start(t, root)
	repo, _ := suitetest.RepoRoot()
	code := t.TempDir()
	build := exec.Command("go", "build", "-o", filepath.Join(code, "streamfn"), "./services/e2e/testdata/streamfn")
	build.Dir = repo
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build streamfn: %v\n%s", err, out)
	}
	os.Chmod(code, 0o755)
	fnARN := "arn:aws:lambda:us-east-1:123456789012:function:streamfn:1"
	g := map[string]any{
		"Core": map[string]any{"Cores": []any{map[string]any{"Id": "core", "ThingArn": thing("test-core"), "CertificateArn": acct + "cert/" + strings.Repeat("ab", 32)}}},
		"Functions": map[string]any{
			"DefaultConfig": map[string]any{"Execution": map[string]any{"IsolationMode": "NoContainer"}},
			"Functions": []any{map[string]any{"Id": "streamfn", "FunctionArn": fnARN,
				"FunctionConfiguration": map[string]any{"Pinned": true, "Timeout": 15, "EncodingType": "binary"},
				"Evergreen":             map[string]any{"Runtime": "go", "Handler": "streamfn", "CodeUri": code}}}},
	}
	b, _ := json.Marshal(g)
	gf := filepath.Join(t.TempDir(), "group.json")
	os.WriteFile(gf, b, 0o600)
	if r := ggctl(t, root, "deploy", gf); r.code != 0 {
		t.Fatalf("deploy: %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if r := ggctl(t, root, "fn", "invoke", "streamfn", "x"); r.code != 0 || strings.TrimSpace(r.stdout) != "connect=0 append=0 seq=0" {
		t.Fatalf("with its token: %d %q %s", r.code, r.stdout, r.stderr)
	}
	if r := ggctl(t, root, "fn", "invoke", "streamfn", "x"); r.code != 0 || strings.TrimSpace(r.stdout) != "connect=0 append=0 seq=1" {
		t.Fatalf("second append: %d %q %s", r.code, r.stdout, r.stderr)
	}
	if r := ggctl(t, root, "fn", "invoke", "streamfn", "badtoken"); r.code != 0 || strings.TrimSpace(r.stdout) != "connect=2" {
		t.Fatalf("with a made-up token: %d %q %s", r.code, r.stdout, r.stderr)
	}

	// v1's GGStreamManager function configures the stream manager from the
	// group: STREAM_MANAGER_AUTHENTICATE_CLIENT=false lets any local
	// process in; a bad value fails the deployment naming the variable and
	// leaves the group in force.
	fns := g["Functions"].(map[string]any)
	withSM := func(env map[string]string) string {
		sm := map[string]any{"Id": "sm", "FunctionArn": "arn:aws:lambda:::function:GGStreamManager:1",
			"FunctionConfiguration": map[string]any{"Pinned": true, "MemorySize": 4194304, "Timeout": 3,
				"Environment": map[string]any{"Variables": env}}}
		fns["Functions"] = []any{fns["Functions"].([]any)[0], sm}
		b, _ := json.Marshal(g)
		f := filepath.Join(t.TempDir(), "group.json")
		os.WriteFile(f, b, 0o600)
		return f
	}
	if r := ggctl(t, root, "deploy", withSM(map[string]string{"STREAM_MANAGER_AUTHENTICATE_CLIENT": "false"})); r.code != 0 {
		t.Fatalf("deploy with GGStreamManager: %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if r := ggctl(t, root, "fn", "invoke", "streamfn", "badtoken"); r.code != 0 || strings.TrimSpace(r.stdout) != "connect=0 append=0 seq=2" {
		t.Fatalf("authentication off by the group: %d %q %s", r.code, r.stdout, r.stderr)
	}
	r := ggctl(t, root, "deploy", withSM(map[string]string{"STREAM_MANAGER_EXPORTER_THREAD_POOL_SIZE": "0"}))
	if r.code == 0 || !strings.Contains(r.stdout+r.stderr, "Functions[1].FunctionConfiguration.Environment.Variables.STREAM_MANAGER_EXPORTER_THREAD_POOL_SIZE") {
		t.Fatalf("a bad GGStreamManager value must fail the deployment naming it: %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if r := ggctl(t, root, "fn", "invoke", "streamfn", "badtoken"); r.code != 0 || strings.TrimSpace(r.stdout) != "connect=0 append=0 seq=3" {
		t.Fatalf("the refused group changed what is in force: %d %q %s", r.code, r.stdout, r.stderr)
	}
}
