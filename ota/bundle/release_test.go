package bundle

import (
	"context"
	"crypto/ed25519"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"
)

// `make release` as a fleet owner runs it: the bundle it prints is signed
// by OTA_SIGNING_KEY, opens under that key's public half, is for this
// machine, and holds the three programs stamped with the bundle's version.
// It builds the suite (from the Go build cache after `make build`), so
// -short skips it.
func TestMakeRelease(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the suite's programs")
	}
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "Makefile")); err != nil {
		t.Skip("no Makefile above the module")
	}
	for _, tool := range []string{"make", "go"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed", tool)
		}
	}
	dist := t.TempDir()
	pub, priv, _ := GenerateKey()
	keyPEM, _ := MarshalPrivateKeyPEM(priv)
	keyFile := filepath.Join(dist, "release.key")
	os.WriteFile(keyFile, keyPEM, 0o600)

	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "make", "-C", root, "release", "DIST="+dist, "OTA_SIGNING_KEY="+keyFile)
	// Not the make that may run this test: its flags and jobserver.
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); k != "MAKEFLAGS" && k != "MFLAGS" && k != "MAKELEVEL" && k != "GOARCH" && k != "GOOS" {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("make release: %v\n%s", err, out)
	}
	bundles, _ := filepath.Glob(filepath.Join(dist, "evergreen-*-linux-"+runtime.GOARCH+".tar.gz"))
	if len(bundles) != 1 {
		t.Fatalf("want one bundle in %s, found %v\n%s", dist, bundles, out)
	}
	p := bundles[0]
	if !strings.Contains(string(out), "bundle "+p+": ") {
		t.Fatalf("make release did not print the bundle's size:\n%s", out)
	}
	sigJSON, err := os.ReadFile(p + ".sig")
	if err != nil {
		t.Fatalf("not signed: %v\n%s", err, out)
	}
	sig, err := ParseSignature(sigJSON)
	if err != nil {
		t.Fatal(err)
	}
	m, err := Open(p, sig, []ed25519.PublicKey{pub})
	if err != nil {
		t.Fatal(err)
	}
	if err := CheckPlatform(m, "linux", runtime.GOARCH); err != nil {
		t.Fatal(err)
	}
	version := strings.TrimSuffix(strings.TrimPrefix(filepath.Base(p), "evergreen-"), "-linux-"+runtime.GOARCH+".tar.gz")
	var names []string
	for _, f := range m.Files {
		names = append(names, f.Path)
	}
	if m.Version != version || !slices.Equal(names, []string{"ggctl", "ggd", "ggd-containerd"}) {
		t.Fatalf("manifest %+v, bundle named for %s", m, version)
	}
	fi, _ := os.Stat(p)
	t.Logf("release bundle %s: %d bytes", filepath.Base(p), fi.Size())

	dir := filepath.Join(dist, "installed")
	if err := Extract(p, dir, m); err != nil {
		t.Fatal(err)
	}
	v, err := exec.CommandContext(ctx, filepath.Join(dir, "ggctl"), "--root", dist, "version").CombinedOutput()
	if err != nil || !strings.Contains(string(v), version) {
		t.Fatalf("the bundled ggctl says %q (%v), the bundle %s", v, err, version)
	}
}
