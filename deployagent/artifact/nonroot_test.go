//go:build linux

package artifact_test

import (
	"context"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/evergreen-edge/evergreen/deployagent/artifact"
	"github.com/evergreen-edge/evergreen/services/kit/errdefs"
)

// nobody runs the non-root half of TestUnpackAsNonRoot.
const nobody = 65534

// TestUnpackAsNonRoot runs this test binary again as nobody: ggd may run
// unprivileged, and then only groups it is a member of can own the files.
func TestUnpackAsNonRoot(t *testing.T) {
	if dir := os.Getenv("ARTIFACT_TEST_NONROOT_DIR"); dir != "" {
		unpackAsNonRoot(t, dir)
		return
	}
	if os.Geteuid() != 0 {
		skipUnlessRequired(t, "starting a process as nobody takes root")
	}
	dir, err := os.MkdirTemp("", "artifact-nonroot-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(dir, nobody, nobody); err != nil {
		t.Fatal(err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	testBin := filepath.Join(dir, "artifact.test")
	if err := os.WriteFile(testBin, bin, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(testBin, "-test.run=^TestUnpackAsNonRoot$", "-test.v", "-test.count=1")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "ARTIFACT_TEST_NONROOT_DIR="+dir)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody}}
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--- PASS: TestUnpackAsNonRoot") {
		t.Fatalf("as nobody: %v\n%s", err, out)
	}
}

func unpackAsNonRoot(t *testing.T, dir string) {
	if os.Geteuid() == 0 {
		t.Fatal("the non-root half runs as root")
	}
	archive := writeArchive(t, tarGz(t,
		ent{name: "sub/model.bin", body: "weights"},
		ent{name: "run", body: "#!/bin/sh\n", mode: 0o755},
	))
	base := filepath.Join(dir, "resources")
	dest := filepath.Join(base, "model")

	err := artifact.Unpack(context.Background(), archive, dest, artifact.UnpackOptions{Owner: &artifact.Owner{GID: 0, Permission: artifact.ReadOnly}})
	expectError(t, err, errdefs.ErrPermissionDenied,
		"unpack to "+dest+": cannot give the files to group 0 (ggd must run as root or be a member of the group)")
	if _, err := os.Lstat(base); !os.IsNotExist(err) {
		t.Fatalf("left behind: %v", tree(t, dir))
	}

	// Its own group is fine, and a read-only tree can be replaced.
	own := &artifact.Owner{GID: os.Getegid(), Permission: artifact.ReadOnly}
	for range 2 {
		if err := artifact.Unpack(context.Background(), archive, dest, artifact.UnpackOptions{Owner: own}); err != nil {
			t.Fatal(err)
		}
	}
	if got := mode(t, filepath.Join(dest, "sub")); got != 0o550 {
		t.Fatalf("sub has mode %v", got)
	}
	if got := mode(t, filepath.Join(dest, "sub/model.bin")); got != fs.FileMode(0o440) {
		t.Fatalf("model.bin has mode %v", got)
	}
	expectTree(t, base, map[string]string{
		"model": "dir", "model/sub": "dir", "model/sub/model.bin": "file:weights", "model/run": "file:#!/bin/sh\n",
	})
}
