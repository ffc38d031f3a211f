package artifact_test

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/evergreen-edge/evergreen/deployagent/artifact"
	"github.com/evergreen-edge/evergreen/services/kit/errdefs"
)

// ent is one tar entry; typ 0 is a regular file.
type ent struct {
	name string
	body string
	typ  byte
	link string
	mode int64
}

func tarBytes(t *testing.T, gz bool, ents ...ent) []byte {
	t.Helper()
	var buf bytes.Buffer
	var zw *gzip.Writer
	tw := tar.NewWriter(&buf)
	if gz {
		zw = gzip.NewWriter(&buf)
		tw = tar.NewWriter(zw)
	}
	for _, e := range ents {
		h := &tar.Header{Name: e.name, Typeflag: e.typ, Linkname: e.link, Mode: e.mode}
		if h.Mode == 0 {
			h.Mode = 0o644
		}
		switch e.typ {
		case 0:
			h.Typeflag = tar.TypeReg
			h.Size = int64(len(e.body))
		case tar.TypeXGlobalHeader:
			h = &tar.Header{Typeflag: e.typ, PAXRecords: map[string]string{"comment": e.body}}
		case tar.TypeChar, tar.TypeBlock:
			h.Devmajor, h.Devminor = 1, 3
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg {
			tw.Write([]byte(e.body))
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if zw != nil {
		zw.Close()
	}
	return buf.Bytes()
}

func tarGz(t *testing.T, ents ...ent) []byte { return tarBytes(t, true, ents...) }

// zent is one zip entry.
type zent struct {
	name  string
	body  string
	mode  fs.FileMode
	store bool // no compression, so that tests can alter the data
}

func zipBytes(t *testing.T, ents ...zent) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, e := range ents {
		h := &zip.FileHeader{Name: e.name, Method: zip.Deflate}
		if e.store {
			h.Method = zip.Store
		}
		if e.mode != 0 {
			h.SetMode(e.mode)
		}
		w, err := zw.CreateHeader(h)
		if err != nil {
			t.Fatal(err)
		}
		w.Write([]byte(e.body))
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// noise is content gzip cannot shrink.
func noise(n int) string {
	r := rand.New(rand.NewPCG(1, 2))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return string(b)
}

func writeArchive(t *testing.T, b []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "artifact")
	if err := os.WriteFile(p, b, 0o400); err != nil {
		t.Fatal(err)
	}
	return p
}

// tree describes everything under dir: "dir", "file:<body>" or
// "link:<target>" by relative path.
func tree(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if rel == "." {
			return nil
		}
		switch {
		case d.IsDir():
			out[rel] = "dir"
		case d.Type()&fs.ModeSymlink != 0:
			target, _ := os.Readlink(p)
			out[rel] = "link:" + target
		default:
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			out[rel] = "file:" + string(b)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func expectTree(t *testing.T, dir string, want map[string]string) {
	t.Helper()
	got := tree(t, dir)
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("tree of %s:\n got %v\nwant %v", dir, got, want)
	}
}

func mode(t *testing.T, p string) fs.FileMode {
	t.Helper()
	st, err := os.Lstat(p)
	if err != nil {
		t.Fatal(err)
	}
	return st.Mode().Perm()
}

func TestUnpackTarAndTarGz(t *testing.T) {
	for _, gz := range []bool{true, false} {
		t.Run(fmt.Sprintf("gzip=%v", gz), func(t *testing.T) {
			archive := writeArchive(t, tarBytes(t, gz,
				ent{typ: tar.TypeXGlobalHeader, body: "git commit id"},
				ent{name: "./", typ: tar.TypeDir, mode: 0o755},
				ent{name: "./bin/", typ: tar.TypeDir, mode: 0o700},
				ent{name: "./bin/run", body: "#!/bin/sh\n", mode: 0o755},
				ent{name: "./model/weights.bin", body: "weights"},
				ent{name: "./model/labels.txt", body: "cat\ndog\n", mode: 0o4777},
				ent{name: "./latest", typ: tar.TypeSymlink, link: "model/weights.bin"},
				ent{name: "./model/up", typ: tar.TypeSymlink, link: "../bin"},
				ent{name: "./model/copy.bin", typ: tar.TypeLink, link: "./model/weights.bin"},
			))
			base := t.TempDir()
			dest := filepath.Join(base, "resources", "model") // parents are created
			if err := artifact.Unpack(context.Background(), archive, dest, artifact.UnpackOptions{}); err != nil {
				t.Fatal(err)
			}
			expectTree(t, base, map[string]string{
				"resources":                         "dir",
				"resources/model":                   "dir",
				"resources/model/bin":               "dir",
				"resources/model/bin/run":           "file:#!/bin/sh\n",
				"resources/model/latest":            "link:model/weights.bin",
				"resources/model/model":             "dir",
				"resources/model/model/copy.bin":    "file:weights",
				"resources/model/model/labels.txt":  "file:cat\ndog\n",
				"resources/model/model/up":          "link:../bin",
				"resources/model/model/weights.bin": "file:weights",
			})
			for p, want := range map[string]fs.FileMode{
				".": 0o755, "bin": 0o755, "bin/run": 0o755, "model": 0o755,
				"model/weights.bin": 0o644, "model/labels.txt": 0o755,
			} {
				if got := mode(t, filepath.Join(dest, p)); got != want {
					t.Errorf("%s has mode %v, want %v", p, got, want)
				}
			}
			if st, _ := os.Stat(filepath.Join(dest, "model/labels.txt")); st.Mode()&(fs.ModeSetuid|fs.ModeSticky) != 0 {
				t.Errorf("labels.txt kept special bits: %v", st.Mode())
			}
			a, _ := os.Stat(filepath.Join(dest, "model/weights.bin"))
			b, _ := os.Stat(filepath.Join(dest, "model/copy.bin"))
			if !os.SameFile(a, b) {
				t.Error("copy.bin is not a hard link to weights.bin")
			}
		})
	}
}

func TestUnpackZip(t *testing.T) {
	archive := writeArchive(t, zipBytes(t,
		zent{name: "model/", mode: fs.ModeDir | 0o755},
		zent{name: "model/graph.pb", body: noise(10_000)},
		zent{name: "model/run.sh", body: "#!/bin/sh\n", mode: 0o755},
		zent{name: "current", body: "model", mode: fs.ModeSymlink | 0o777},
		zent{name: "top.txt", body: "top", store: true},
	))
	dest := filepath.Join(t.TempDir(), "model")
	if err := artifact.Unpack(context.Background(), archive, dest, artifact.UnpackOptions{}); err != nil {
		t.Fatal(err)
	}
	expectTree(t, dest, map[string]string{
		"current":        "link:model",
		"model":          "dir",
		"model/graph.pb": "file:" + noise(10_000),
		"model/run.sh":   "file:#!/bin/sh\n",
		"top.txt":        "file:top",
	})
	if got := mode(t, filepath.Join(dest, "model/run.sh")); got != 0o755 {
		t.Errorf("run.sh has mode %v", got)
	}
}

func TestUnpackPlainFile(t *testing.T) {
	archive := writeArchive(t, []byte("def handler(event, context): pass\n"))
	dest := filepath.Join(t.TempDir(), "fn")
	err := artifact.Unpack(context.Background(), archive, dest, artifact.UnpackOptions{Format: artifact.FormatPlain, Name: "handler.py"})
	if err != nil {
		t.Fatal(err)
	}
	expectTree(t, dest, map[string]string{"handler.py": "file:def handler(event, context): pass\n"})
	if got := mode(t, filepath.Join(dest, "handler.py")); got != 0o644 {
		t.Errorf("handler.py has mode %v", got)
	}

	err = artifact.Unpack(context.Background(), archive, dest, artifact.UnpackOptions{Format: artifact.FormatPlain, Name: "run", Executable: true})
	if err != nil {
		t.Fatal(err)
	}
	if got := mode(t, filepath.Join(dest, "run")); got != 0o755 {
		t.Errorf("run has mode %v", got)
	}

	err = artifact.Unpack(context.Background(), archive, dest, artifact.UnpackOptions{Format: artifact.FormatPlain, Name: "../x"})
	expectError(t, err, errdefs.ErrInvalidArgument, `plain file name "../x" must be one path element`)
}

func TestUnpackReplacesTheOldTree(t *testing.T) {
	base := t.TempDir()
	dest := filepath.Join(base, "model")
	for _, v := range []string{"v1", "v2"} {
		archive := writeArchive(t, tarGz(t, ent{name: v + ".txt", body: v}))
		if err := artifact.Unpack(context.Background(), archive, dest, artifact.UnpackOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	expectTree(t, base, map[string]string{"model": "dir", "model/v2.txt": "file:v2"})
}

func TestUnpackRemovesLeftoversOfAnUnpackCutShort(t *testing.T) {
	base := t.TempDir()
	leftover := filepath.Join(base, ".model.unpack-123", "half")
	os.MkdirAll(leftover, 0o700)
	archive := writeArchive(t, tarGz(t, ent{name: "a.txt", body: "a"}))
	if err := artifact.Unpack(context.Background(), archive, filepath.Join(base, "model"), artifact.UnpackOptions{}); err != nil {
		t.Fatal(err)
	}
	expectTree(t, base, map[string]string{"model": "dir", "model/a.txt": "file:a"})
}

func TestUnpackRefusesBadArchives(t *testing.T) {
	big := tarGz(t, ent{name: "weights.bin", body: noise(100_000)})
	zipped := zipBytes(t, zent{name: "a.txt", body: "hello, world", store: true})
	crc := bytes.Replace(bytes.Clone(zipped), []byte("hello, world"), []byte("hello, World"), 1)
	gzText := func() []byte {
		var b bytes.Buffer
		zw := gzip.NewWriter(&b)
		zw.Write([]byte("just text, no tar"))
		zw.Close()
		return b.Bytes()
	}()

	for _, tc := range []struct {
		name    string
		archive []byte
		opts    artifact.UnpackOptions
		kind    error
		want    string
	}{
		{"zip slip", zipBytes(t, zent{name: "../evil.txt", body: "x"}),
			artifact.UnpackOptions{}, errdefs.ErrInvalidArgument, `entry "../evil.txt": path escapes the destination`},
		{"tar slip", tarGz(t, ent{name: "ok/../../evil.txt", body: "x"}),
			artifact.UnpackOptions{}, errdefs.ErrInvalidArgument, `entry "ok/../../evil.txt": path escapes the destination`},
		{"tar absolute path", tarGz(t, ent{name: "/abs/evil.txt", body: "x"}),
			artifact.UnpackOptions{}, errdefs.ErrInvalidArgument, `entry "/abs/evil.txt": absolute path`},
		{"zip absolute path", zipBytes(t, zent{name: "/evil.txt", body: "x"}),
			artifact.UnpackOptions{}, errdefs.ErrInvalidArgument, `entry "/evil.txt": absolute path`},
		{"symlink outside", tarGz(t, ent{name: "l", typ: tar.TypeSymlink, link: "../../evil"}),
			artifact.UnpackOptions{}, errdefs.ErrInvalidArgument, `entry "l": symbolic link to "../../evil" points outside the destination`},
		{"symlink absolute", tarGz(t, ent{name: "l", typ: tar.TypeSymlink, link: "/etc"}),
			artifact.UnpackOptions{}, errdefs.ErrInvalidArgument, `entry "l": symbolic link to absolute path "/etc"`},
		{"zip symlink outside", zipBytes(t, zent{name: "l", body: "../../etc", mode: fs.ModeSymlink | 0o777}),
			artifact.UnpackOptions{}, errdefs.ErrInvalidArgument, `entry "l": symbolic link to "../../etc" points outside the destination`},
		{"write through a symlink", tarGz(t,
			ent{name: "sub/", typ: tar.TypeDir},
			ent{name: "l", typ: tar.TypeSymlink, link: "sub"},
			ent{name: "l/evil.txt", body: "x"}),
			artifact.UnpackOptions{}, errdefs.ErrInvalidArgument, `entry "l/evil.txt": path goes through symbolic link "l"`},
		{"link leaving through a later link", tarGz(t,
			ent{name: "a", typ: tar.TypeSymlink, link: "l/.."},
			ent{name: "l", typ: tar.TypeSymlink, link: "."}),
			artifact.UnpackOptions{}, errdefs.ErrInvalidArgument, `entry "a": symbolic link to "l/.." resolves outside the destination`},
		{"hard link outside", tarGz(t, ent{name: "h", typ: tar.TypeLink, link: "../../etc/passwd"}),
			artifact.UnpackOptions{}, errdefs.ErrInvalidArgument, `entry "h": hard link to "../../etc/passwd": path escapes the destination`},
		{"hard link to a symlink", tarGz(t,
			ent{name: "sub/l", typ: tar.TypeSymlink, link: "../x"},
			ent{name: "h", typ: tar.TypeLink, link: "sub/l"}),
			artifact.UnpackOptions{}, errdefs.ErrInvalidArgument, `entry "h": hard link to "sub/l", which is not a regular file earlier in the archive`},
		{"character device", tarGz(t, ent{name: "null", typ: tar.TypeChar}),
			artifact.UnpackOptions{}, errdefs.ErrInvalidArgument, `entry "null": character device entries are not allowed`},
		{"block device", tarGz(t, ent{name: "sda", typ: tar.TypeBlock}),
			artifact.UnpackOptions{}, errdefs.ErrInvalidArgument, `entry "sda": block device entries are not allowed`},
		{"fifo", tarGz(t, ent{name: "pipe", typ: tar.TypeFifo}),
			artifact.UnpackOptions{}, errdefs.ErrInvalidArgument, `entry "pipe": named pipe (FIFO) entries are not allowed`},
		{"zip device", zipBytes(t, zent{name: "null", mode: fs.ModeDevice | fs.ModeCharDevice | 0o666}),
			artifact.UnpackOptions{}, errdefs.ErrInvalidArgument, `entry "null": character device entries are not allowed`},
		{"truncated tar.gz", big[:len(big)/2],
			artifact.UnpackOptions{}, errdefs.ErrInvalidArgument, "archive is truncated or corrupt"},
		{"tar.gz without its trailer", big[:len(big)-4],
			artifact.UnpackOptions{}, errdefs.ErrInvalidArgument, "archive is truncated or corrupt"},
		{"truncated zip", zipped[:len(zipped)-10],
			artifact.UnpackOptions{}, errdefs.ErrInvalidArgument, "archive is truncated or corrupt"},
		{"zip checksum", crc,
			artifact.UnpackOptions{}, errdefs.ErrInvalidArgument, "archive is truncated or corrupt"},
		{"too many entries", tarGz(t, ent{name: "a"}, ent{name: "b"}, ent{name: "c"}),
			artifact.UnpackOptions{MaxEntries: 2}, errdefs.ErrResourceExhausted, "archive has more than 2 entries"},
		{"too many zip entries", zipBytes(t, zent{name: "a"}, zent{name: "b"}, zent{name: "c"}),
			artifact.UnpackOptions{MaxEntries: 2}, errdefs.ErrResourceExhausted, "archive has 3 entries, over the limit of 2"},
		{"file over limit", tarGz(t, ent{name: "big", body: "01234567890"}),
			artifact.UnpackOptions{MaxFileBytes: 10}, errdefs.ErrResourceExhausted, `entry "big" is over the per-file limit of 10 bytes`},
		{"zip file over limit", zipBytes(t, zent{name: "big", body: noise(1000)}),
			artifact.UnpackOptions{MaxFileBytes: 999}, errdefs.ErrResourceExhausted, `entry "big" is over the per-file limit of 999 bytes`},
		{"total over limit", tarGz(t, ent{name: "a", body: "0123456789"}, ent{name: "b", body: "0123456789"}),
			artifact.UnpackOptions{MaxTotalBytes: 15}, errdefs.ErrResourceExhausted, "archive unpacks to more than 15 bytes"},
		{"duplicate", tarGz(t, ent{name: "a.txt", body: "1"}, ent{name: "./a.txt", body: "2"}),
			artifact.UnpackOptions{}, errdefs.ErrInvalidArgument, `entry "./a.txt": appears twice in the archive`},
		{"file under a file", tarGz(t, ent{name: "a", body: "1"}, ent{name: "a/b", body: "2"}),
			artifact.UnpackOptions{}, errdefs.ErrInvalidArgument, `entry "a/b": parent "a" is a file`},
		{"not an archive", []byte("plain text"),
			artifact.UnpackOptions{}, errdefs.ErrInvalidArgument, "artifact is not a tar.gz, tar or zip archive"},
		{"gzip but not tar", gzText,
			artifact.UnpackOptions{}, errdefs.ErrInvalidArgument, "gzip data is not a tar archive"},
		{"other format than required", tarGz(t, ent{name: "a", body: "1"}),
			artifact.UnpackOptions{Format: artifact.FormatZip}, errdefs.ErrInvalidArgument, "artifact is a tar.gz archive, not zip"},
		{"bad permission", tarGz(t, ent{name: "a", body: "1"}),
			artifact.UnpackOptions{Owner: &artifact.Owner{GID: 0, Permission: "rwx"}}, errdefs.ErrInvalidArgument, `group permission "rwx" is neither ro nor rw`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			top := t.TempDir()
			base := filepath.Join(top, "a", "b")
			dest := filepath.Join(base, "model")
			os.MkdirAll(dest, 0o755)
			os.WriteFile(filepath.Join(dest, "old.txt"), []byte("old"), 0o644)
			before := tree(t, top)

			err := artifact.Unpack(context.Background(), writeArchive(t, tc.archive), dest, tc.opts)
			expectError(t, err, tc.kind, "unpack to "+dest+": ")
			expectError(t, err, tc.kind, tc.want)
			expectTree(t, top, before) // dest untouched, no staging, nothing outside
		})
	}
}

func TestUnpackRefusalRemovesTheParentsItCreated(t *testing.T) {
	base := t.TempDir()
	archive := writeArchive(t, tarGz(t, ent{name: "../evil", body: "x"}))
	err := artifact.Unpack(context.Background(), archive, filepath.Join(base, "new", "deeper", "model"), artifact.UnpackOptions{})
	expectError(t, err, errdefs.ErrInvalidArgument, "path escapes the destination")
	expectTree(t, base, map[string]string{})
}

func TestUnpackStopsWhenCancelled(t *testing.T) {
	base := t.TempDir()
	archive := writeArchive(t, tarGz(t, ent{name: "a", body: noise(100_000)}))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := artifact.Unpack(ctx, archive, filepath.Join(base, "model"), artifact.UnpackOptions{})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("error %v, want context.Canceled", err)
	}
	expectTree(t, base, map[string]string{})
}

func TestUnpackSetsGroupOwnerAndPermission(t *testing.T) {
	if os.Geteuid() != 0 {
		skipUnlessRequired(t, "giving files to another group takes root")
	}
	const gid = 4242
	archive := writeArchive(t, tarGz(t,
		ent{name: "bin/run", body: "#!/bin/sh\n", mode: 0o755},
		ent{name: "model.bin", body: "weights"},
		ent{name: "latest", typ: tar.TypeSymlink, link: "model.bin"},
	))
	for _, tc := range []struct {
		perm            artifact.Permission
		dir, file, exec fs.FileMode
	}{
		{artifact.ReadOnly, 0o550, 0o440, 0o550},
		{artifact.ReadWrite, 0o770, 0o660, 0o770},
	} {
		t.Run(string(tc.perm), func(t *testing.T) {
			dest := filepath.Join(t.TempDir(), "model")
			err := artifact.Unpack(context.Background(), archive, dest, artifact.UnpackOptions{Owner: &artifact.Owner{GID: gid, Permission: tc.perm}})
			if err != nil {
				t.Fatal(err)
			}
			for p, want := range map[string]fs.FileMode{".": tc.dir, "bin": tc.dir, "bin/run": tc.exec, "model.bin": tc.file} {
				if got := mode(t, filepath.Join(dest, p)); got != want {
					t.Errorf("%s has mode %v, want %v", p, got, want)
				}
			}
			for _, p := range []string{".", "bin", "bin/run", "model.bin", "latest"} {
				st, _ := os.Lstat(filepath.Join(dest, p))
				if g := st.Sys().(*syscall.Stat_t).Gid; g != gid {
					t.Errorf("%s has group %d, want %d", p, g, gid)
				}
			}
		})
	}
}

func TestLookupGroup(t *testing.T) {
	for in, want := range map[string]int{"0": 0, "4242": 4242, "root": 0} {
		if got, err := artifact.LookupGroup(in); err != nil || got != want {
			t.Errorf("LookupGroup(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	_, err := artifact.LookupGroup("no-such-group-here")
	expectError(t, err, errdefs.ErrInvalidArgument, `group owner "no-such-group-here"`)
}

// skipUnlessRequired skips a test this machine cannot run, or fails it
// when CI says every test must run (EVERGREEN_REQUIRE_ALL=1).
func skipUnlessRequired(t *testing.T, why string) {
	t.Helper()
	if os.Getenv("EVERGREEN_REQUIRE_ALL") != "" {
		t.Fatalf("%s, and EVERGREEN_REQUIRE_ALL is set", why)
	}
	t.Skip(why)
}
