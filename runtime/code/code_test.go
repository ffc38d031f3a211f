package code

import (
	"archive/zip"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/evergreen-edge/evergreen/services/kit/groupdef"
)

type entry struct {
	name, body string
	mode       os.FileMode
}

func makeZip(t *testing.T, entries ...entry) (string, string) {
	t.Helper()
	p := filepath.Join(t.TempDir(), "fn.zip")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	zw := zip.NewWriter(f)
	for _, e := range entries {
		h := &zip.FileHeader{Name: e.name, Method: zip.Deflate}
		if e.mode != 0 {
			h.SetMode(e.mode)
		}
		w, err := zw.CreateHeader(h)
		if err != nil {
			t.Fatal(err)
		}
		w.Write([]byte(e.body))
	}
	zw.Close()
	f.Close()
	b, _ := os.ReadFile(p)
	sum := sha256.Sum256(b)
	return p, hex.EncodeToString(sum[:])
}

func TestInstallZip(t *testing.T) {
	z, sum := makeZip(t, entry{name: "hello_world.py", body: "def function_handler(e, c):\n    return 1\n"}, entry{name: "lib/util.py", body: "x = 1\n"})
	dir := t.TempDir()
	ext := &groupdef.FunctionExtension{Runtime: "python3.8", Handler: "hello_world.function_handler", CodeUri: z, CodeSha256: sum}
	p, err := Install(dir, "hello", ext, "")
	if err != nil {
		t.Fatal(err)
	}
	if p.Sha256 != sum || p.Dir != filepath.Join(dir, "hello", sum) {
		t.Fatalf("package %+v", p)
	}
	if b, err := os.ReadFile(filepath.Join(p.Dir, "lib/util.py")); err != nil || string(b) != "x = 1\n" {
		t.Fatalf("unpacked lib/util.py: %q %v", b, err)
	}
	// Installing again finds it.
	if q, err := Install(dir, "hello", ext, ""); err != nil || q != p {
		t.Fatalf("reinstall: %+v %v", q, err)
	}
	// file:// URIs and relative paths.
	ext2 := *ext
	ext2.CodeUri = "file://" + z
	if _, err := Install(dir, "hello", &ext2, ""); err != nil {
		t.Fatal(err)
	}
	ext2.CodeUri = filepath.Base(z)
	if _, err := Install(dir, "hello", &ext2, filepath.Dir(z)); err != nil {
		t.Fatal(err)
	}
	if _, err := Install(dir, "hello", &ext2, ""); err == nil || !strings.Contains(err.Error(), "relative") {
		t.Fatalf("relative without a base: %v", err)
	}
}

func TestInstallRefusals(t *testing.T) {
	dir := t.TempDir()
	good, _ := makeZip(t, entry{name: "index.js", body: "exports.handler = () => {}"})
	for _, tc := range []struct {
		name string
		ext  func() *groupdef.FunctionExtension
		want string
	}{
		{"sha mismatch", func() *groupdef.FunctionExtension {
			return &groupdef.FunctionExtension{Runtime: "nodejs12.x", Handler: "index.handler", CodeUri: good, CodeSha256: strings.Repeat("0", 64)}
		}, "CodeSha256: " + strings.Repeat("0", 64) + " does not match the package"},
		{"zip slip", func() *groupdef.FunctionExtension {
			z, _ := makeZip(t, entry{name: "../../evil.py", body: "x"}, entry{name: "h.py", body: ""})
			return &groupdef.FunctionExtension{Runtime: "python3.8", Handler: "h.f", CodeUri: z}
		}, "zip slip"},
		{"absolute entry", func() *groupdef.FunctionExtension {
			z, _ := makeZip(t, entry{name: "/etc/evil", body: "x"})
			return &groupdef.FunctionExtension{Runtime: "python3.8", Handler: "h.f", CodeUri: z}
		}, "zip slip"},
		{"symlink", func() *groupdef.FunctionExtension {
			z, _ := makeZip(t, entry{name: "h.py", body: "/etc/passwd", mode: os.ModeSymlink | 0o777})
			return &groupdef.FunctionExtension{Runtime: "python3.8", Handler: "h.f", CodeUri: z}
		}, "symlink"},
		{"missing handler file", func() *groupdef.FunctionExtension {
			return &groupdef.FunctionExtension{Runtime: "nodejs12.x", Handler: "main.handler", CodeUri: good}
		}, "Handler \"main.handler\": the package has no main.js"},
		{"not a zip", func() *groupdef.FunctionExtension {
			p := filepath.Join(t.TempDir(), "x.zip")
			os.WriteFile(p, []byte("PK not really"), 0o644)
			return &groupdef.FunctionExtension{Runtime: "python3.8", Handler: "h.f", CodeUri: p}
		}, "not a valid .zip"},
		{"executable not executable", func() *groupdef.FunctionExtension {
			z, _ := makeZip(t, entry{name: "echo", body: "#!/bin/sh\n", mode: 0o644})
			return &groupdef.FunctionExtension{Runtime: "executable", Handler: "echo", CodeUri: z}
		}, "not executable"},
		{"missing code", func() *groupdef.FunctionExtension {
			return &groupdef.FunctionExtension{Runtime: "python3.8", Handler: "h.f", CodeUri: "/nonexistent/code.zip"}
		}, "no such file"},
	} {
		_, err := Install(dir, "f", tc.ext(), "")
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
	// Nothing half-installed is left behind.
	matches, _ := filepath.Glob(filepath.Join(dir, "f", "*"))
	if len(matches) != 0 {
		t.Fatalf("left behind: %v", matches)
	}
}

func TestInstallDirectory(t *testing.T) {
	src := t.TempDir()
	os.WriteFile(filepath.Join(src, "echo"), []byte("#!/bin/sh\necho hi\n"), 0o755)
	os.Mkdir(filepath.Join(src, "data"), 0o755)
	os.WriteFile(filepath.Join(src, "data", "x"), []byte("1"), 0o644)
	dir := t.TempDir()
	ext := &groupdef.FunctionExtension{Runtime: "executable", Handler: "echo", CodeUri: src}
	p, err := Install(dir, "echo", ext, "")
	if err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(filepath.Join(p.Dir, "echo")); err != nil || st.Mode()&0o111 == 0 {
		t.Fatalf("copied executable: %v %v", st, err)
	}
	// A change of the source is a new install; the old one stays for the
	// worker that runs it.
	os.WriteFile(filepath.Join(src, "data", "x"), []byte("2"), 0o644)
	q, err := Install(dir, "echo", ext, "")
	if err != nil || q.Dir == p.Dir {
		t.Fatalf("changed source: %+v %v", q, err)
	}
	if b, _ := os.ReadFile(filepath.Join(p.Dir, "data", "x")); string(b) != "1" {
		t.Fatalf("old install changed: %q", b)
	}
	os.Symlink("/etc/passwd", filepath.Join(src, "link"))
	if _, err := Install(dir, "echo", ext, ""); err == nil || !strings.Contains(err.Error(), "only regular files") {
		t.Fatalf("symlink in a directory: %v", err)
	}
}
