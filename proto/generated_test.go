package proto_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestGeneratedCodeIsFresh regenerates the Go code with buf and the pinned
// plugins into a temp dir and fails when it differs from what is committed:
// run `make proto` after editing a .proto file.
func TestGeneratedCodeIsFresh(t *testing.T) {
	for _, tool := range []string{"buf", "protoc-gen-go", "protoc-gen-go-grpc"} {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("EVERGREEN_REQUIRE_ALL") != "" {
				t.Fatalf("%s not on PATH (make tools installs it)", tool)
			}
			t.Skipf("%s not on PATH; run through `make test`, which installs it", tool)
		}
	}
	out := t.TempDir()
	cmd := exec.Command("buf", "generate", "--output", out)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("buf generate: %v\n%s", err, b)
	}
	var committed []string
	filepath.WalkDir("evergreen", func(p string, d os.DirEntry, err error) error {
		if err == nil && strings.HasSuffix(p, ".pb.go") {
			committed = append(committed, p)
		}
		return nil
	})
	if len(committed) == 0 {
		t.Fatal("no generated files committed under evergreen/")
	}
	fresh := 0
	filepath.WalkDir(out, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(out, p)
		want, _ := os.ReadFile(p)
		got, err := os.ReadFile(rel)
		if err != nil {
			t.Errorf("%s is generated but not committed; run make proto", rel)
			return nil
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s is stale; run make proto", rel)
		}
		fresh++
		return nil
	})
	if fresh != len(committed) {
		t.Errorf("%d generated files committed, buf generates %d; run make proto", len(committed), fresh)
	}
}
