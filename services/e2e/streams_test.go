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
}
