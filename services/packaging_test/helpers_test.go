// Package packaging_test checks what ships the suite: the systemd units in
// deploy/systemd (they mirror the supervisor's daemons and start order, pass
// systemd-analyze verify, and run under a real systemd in a container) and
// the compose stack in docker-compose.yml (built from deploy/docker/Dockerfile
// and brought up on the real Docker engine until every service is healthy).
//
// Tools that are missing skip a test, unless EVERGREEN_REQUIRE_ALL=1 (CI),
// where they fail it.
package packaging_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"debug/elf"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/evergreen-edge/evergreen/services/suite"
)

// requireAll reports whether a missing tool must fail the test (CI).
func requireAll() bool { return os.Getenv("EVERGREEN_REQUIRE_ALL") == "1" }

// skipOrFail skips the test with msg, or fails it when EVERGREEN_REQUIRE_ALL=1.
func skipOrFail(t *testing.T, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if requireAll() {
		t.Fatalf("%s (EVERGREEN_REQUIRE_ALL=1: every tool must be present; .ci/run installs them)", msg)
	}
	t.Skipf("%s; skipping (set EVERGREEN_REQUIRE_ALL=1 to fail instead)", msg)
}

// requireTool returns the path of the executable name, or skips the test
// (fails it when EVERGREEN_REQUIRE_ALL=1) when it is not installed.
func requireTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		skipOrFail(t, "%s is not installed (not found in PATH)", name)
	}
	return p
}

// requireDocker checks for the docker and docker-compose CLIs and a reachable
// engine.
func requireDocker(t *testing.T) {
	t.Helper()
	requireTool(t, "docker")
	requireTool(t, "docker-compose")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "docker", "version", "--format", "{{.Server.Version}}").CombinedOutput()
	if err != nil {
		skipOrFail(t, "the Docker engine is not reachable: docker version: %v: %s", err, strings.TrimSpace(string(out)))
	}
	t.Logf("docker engine %s", strings.TrimSpace(string(out)))
}

// repoRoot is the repository root: the nearest parent holding go.work.
func repoRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.work")); err == nil {
			return d
		}
		if filepath.Dir(d) == d {
			t.Fatalf("no go.work above %s: cannot find the repository root", dir)
		}
	}
}

// ggdPath is the built bin/ggd: $EVERGREEN_BIN/ggd (the Makefile sets it),
// else <repo>/bin/ggd.
func ggdPath(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("EVERGREEN_BIN")
	if dir == "" {
		dir = filepath.Join(repoRoot(t), "bin")
	}
	p, err := filepath.Abs(filepath.Join(dir, "ggd"))
	if err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(p); err != nil || st.IsDir() || st.Mode()&0o111 == 0 {
		skipOrFail(t, "%s is not built (run `make build`, or `make test` which builds it)", p)
	}
	return p
}

// requireStatic fails unless path is a statically linked ELF executable: the
// FROM-scratch image has no dynamic loader or libc.
func requireStatic(t *testing.T, path string) {
	t.Helper()
	f, err := elf.Open(path)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Fatalf("%s is dynamically linked; the FROM-scratch image needs a static binary (build with CGO_ENABLED=0, as `make build` does)", path)
		}
	}
	if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
		t.Fatalf("%s needs shared libraries %v; the FROM-scratch image needs a static binary", path, libs)
	}
}

// daemon is one daemon of the suite as the supervisor runs it.
type daemon struct {
	Name     string
	Requires []string
}

// daemons lists every daemon in the supervisor's start order (the bus first),
// from the same registry the supervisor and `ggd <daemon>` use.
func daemons(t *testing.T) []daemon {
	t.Helper()
	var ds []daemon
	for _, s := range suite.Specs() {
		ds = append(ds, daemon{Name: s.Name, Requires: s.Requires})
	}
	if len(ds) == 0 || ds[0].Name != "bus" {
		t.Fatalf("suite.Specs() must list the bus first, got %v", ds)
	}
	return ds
}

// after is what d must start after: what it requires and, for every daemon
// but the bus, the bus (the supervisor always starts the bus first).
func (d daemon) after() []string {
	deps := append([]string(nil), d.Requires...)
	if d.Name != "bus" && !contains(deps, "bus") {
		deps = append([]string{"bus"}, deps...)
	}
	return deps
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// run runs name with args in dir, with a deadline, and returns its combined
// output.
func run(ctx context.Context, dir string, env []string, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	cmd.WaitDelay = 5 * time.Second
	err := cmd.Run()
	if err != nil && errors.Is(ctx.Err(), context.DeadlineExceeded) {
		err = fmt.Errorf("%w (timed out)", err)
	}
	return out.String(), err
}

func randomSuffix(t *testing.T) string {
	t.Helper()
	b := make([]byte, 4)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}
