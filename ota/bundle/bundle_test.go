package bundle

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// fixture is a set of files to bundle, a signing key, and where things go.
type fixture struct {
	t     *testing.T
	dir   string
	files map[string]string
	pub   ed25519.PublicKey
	priv  ed25519.PrivateKey
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	dir := t.TempDir()
	fx := &fixture{t: t, dir: dir, files: map[string]string{}}
	for name, body := range map[string]string{
		"ggd":            "#!/bin/sh\necho ggd v1.2.3\n" + strings.Repeat("daemon code ", 5000),
		"ggctl":          "#!/bin/sh\necho ggctl\n",
		"ggd-containerd": "#!/bin/sh\necho shim\n",
		"NOTICE.txt":     "not a program\n",
	} {
		p := filepath.Join(dir, "in", name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		mode := fs.FileMode(0o700) // odd on purpose: the bundle says 0755
		if strings.HasSuffix(name, ".txt") {
			mode = 0o600
		}
		if err := os.WriteFile(p, []byte(body), mode); err != nil {
			t.Fatal(err)
		}
		fx.files[name] = p
	}
	var err error
	fx.pub, fx.priv, err = GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	return fx
}

// build writes a bundle of the fixture's files and its signature, and
// returns the bundle's path.
func (fx *fixture) build(version, arch string) (string, Manifest) {
	fx.t.Helper()
	var buf bytes.Buffer
	m, err := Build(&buf, version, "linux", arch, fx.files)
	if err != nil {
		fx.t.Fatal(err)
	}
	p := filepath.Join(fx.dir, "evergreen-"+version+"-linux-"+arch+".tar.gz")
	fx.write(p, buf.Bytes())
	return p, m
}

// write puts b at p and signs it with the fixture's key into p.sig.
func (fx *fixture) write(p string, b []byte) Signature {
	fx.t.Helper()
	if err := os.WriteFile(p, b, 0o644); err != nil {
		fx.t.Fatal(err)
	}
	return fx.sign(p, fx.priv)
}

func (fx *fixture) sign(p string, priv ed25519.PrivateKey) Signature {
	fx.t.Helper()
	f, err := os.Open(p)
	if err != nil {
		fx.t.Fatal(err)
	}
	defer f.Close()
	sj, err := Sign(priv, f)
	if err != nil {
		fx.t.Fatal(err)
	}
	if err := os.WriteFile(p+".sig", sj, 0o644); err != nil {
		fx.t.Fatal(err)
	}
	sig, err := ParseSignature(sj)
	if err != nil {
		fx.t.Fatal(err)
	}
	return sig
}

func (fx *fixture) sig(p string) Signature {
	fx.t.Helper()
	b, err := os.ReadFile(p + ".sig")
	if err != nil {
		fx.t.Fatal(err)
	}
	sig, err := ParseSignature(b)
	if err != nil {
		fx.t.Fatal(err)
	}
	return sig
}

func (fx *fixture) trusted() []ed25519.PublicKey { return []ed25519.PublicKey{fx.pub} }

func wantErr(t *testing.T, err, kind error, contains string) {
	t.Helper()
	if !errors.Is(err, kind) {
		t.Fatalf("want %v, got %v", kind, err)
	}
	for _, k := range []error{ErrBadSignature, ErrUnknownKey, ErrHashMismatch, ErrTruncated, ErrWrongArch, ErrBadManifest} {
		if k != kind && errors.Is(err, k) {
			t.Fatalf("%v is also %v", err, k)
		}
	}
	if !strings.Contains(err.Error(), contains) {
		t.Fatalf("error %q lacks %q", err, contains)
	}
}

func TestBuildOpenExtract(t *testing.T) {
	fx := newFixture(t)
	p, built := fx.build("v1.2.3", "arm64")

	m, err := Open(p, fx.sig(p), fx.trusted())
	if err != nil {
		t.Fatal(err)
	}
	if !m.Equal(built) || m.Version != "v1.2.3" || m.OS != "linux" || m.Arch != "arm64" || m.Format != 1 {
		t.Fatalf("Open returned %+v, Build %+v", m, built)
	}
	var names []string
	for _, f := range m.Files {
		names = append(names, f.Path)
		want := uint32(0o755)
		if f.Path == "NOTICE.txt" {
			want = 0o644
		}
		if f.Mode != want {
			t.Fatalf("%s: mode %#o, want %#o", f.Path, f.Mode, want)
		}
	}
	if strings.Join(names, ",") != "NOTICE.txt,ggctl,ggd,ggd-containerd" {
		t.Fatalf("files not in name order: %v", names)
	}
	if err := CheckPlatform(m, "linux", "arm64"); err != nil {
		t.Fatal(err)
	}

	// The first entry is the manifest, every mtime the creation time.
	entries := readEntries(t, p)
	if entries[0].hdr.Name != ManifestName {
		t.Fatalf("first entry %s", entries[0].hdr.Name)
	}
	for _, e := range entries {
		if !e.hdr.ModTime.Equal(m.Created) {
			t.Fatalf("%s: mtime %v, created %v", e.hdr.Name, e.hdr.ModTime, m.Created)
		}
	}

	old := syscall.Umask(0o077) // Extract's modes do not depend on the umask
	defer syscall.Umask(old)
	dir := filepath.Join(fx.dir, "versions", "v1.2.3")
	if err := Extract(p, dir, m); err != nil {
		t.Fatal(err)
	}
	for _, f := range m.Files {
		got, err := os.ReadFile(filepath.Join(dir, f.Path))
		want, _ := os.ReadFile(fx.files[f.Path])
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("%s extracted wrong: %v", f.Path, err)
		}
		fi, _ := os.Stat(filepath.Join(dir, f.Path))
		if uint32(fi.Mode().Perm()) != f.Mode {
			t.Fatalf("%s: mode %v, want %#o", f.Path, fi.Mode(), f.Mode)
		}
	}
	im, err := Installed(dir)
	if err != nil || !im.Equal(m) {
		t.Fatalf("Installed: %v, %+v", err, im)
	}
}

func TestBuildIsDeterministic(t *testing.T) {
	fx := newFixture(t)
	at := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	var a, b bytes.Buffer
	if _, err := BuildAt(&a, "1.0.0", "linux", "amd64", fx.files, at); err != nil {
		t.Fatal(err)
	}
	// A touched file changes nothing: the mtimes are the creation time.
	later := time.Now().Add(time.Hour)
	os.Chtimes(fx.files["ggd"], later, later)
	if _, err := BuildAt(&b, "1.0.0", "linux", "amd64", fx.files, at); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a.Bytes(), b.Bytes()) {
		t.Fatal("the same files and time made different bundles")
	}
}

func TestBuildRefuses(t *testing.T) {
	fx := newFixture(t)
	dev := filepath.Join(fx.dir, "in")
	for _, tc := range []struct {
		name    string
		version string
		files   map[string]string
		kind    error
		want    string
	}{
		{"path name", "1.0.0", map[string]string{"bin/ggd": fx.files["ggd"]}, ErrBadManifest, "path escape"},
		{"dot-dot", "1.0.0", map[string]string{"..": fx.files["ggd"]}, ErrBadManifest, "path escape"},
		{"hidden name", "1.0.0", map[string]string{".ggd": fx.files["ggd"]}, ErrBadManifest, "not a file name"},
		{"manifest name", "1.0.0", map[string]string{ManifestName: fx.files["ggd"]}, ErrBadManifest, "names the manifest"},
		{"directory", "1.0.0", map[string]string{"ggd": dev}, ErrBadManifest, "not a regular file"},
		{"no files", "1.0.0", map[string]string{}, ErrBadManifest, "no files"},
		{"path as version", "../1.0.0", map[string]string{"ggd": fx.files["ggd"]}, ErrBadManifest, "version"},
		{"missing file", "1.0.0", map[string]string{"ggd": filepath.Join(dev, "nope")}, fs.ErrNotExist, "nope"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Build(io.Discard, tc.version, "linux", "amd64", tc.files)
			if !errors.Is(err, tc.kind) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("want %v containing %q, got %v", tc.kind, tc.want, err)
			}
		})
	}
}

// Each way a bundle or its signature can be wrong is refused with its own
// error, before anything is extracted.
func TestOpenRefusesBadBundles(t *testing.T) {
	fx := newFixture(t)
	good, _ := fx.build("v1.2.3", "amd64")
	goodBytes, _ := os.ReadFile(good)
	goodSig := fx.sig(good)
	otherPub, otherPriv, _ := GenerateKey()

	t.Run("good", func(t *testing.T) {
		if _, err := Open(good, goodSig, []ed25519.PublicKey{otherPub, fx.pub}); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("bad signature: altered signature bytes", func(t *testing.T) {
		sig := goodSig
		raw := []byte(sig.Signature)
		raw[5] ^= 'A' ^ 'B'
		if raw[5] == sig.Signature[5] {
			raw[5] = 'C'
		}
		sig.Signature = string(raw)
		_, err := Open(good, sig, fx.trusted())
		wantErr(t, err, ErrBadSignature, "")
	})
	t.Run("bad signature: sha256 edited to match a tampered bundle", func(t *testing.T) {
		p := filepath.Join(fx.dir, "tampered.tar.gz")
		b := bytes.Clone(goodBytes)
		b[len(b)/2] ^= 1
		os.WriteFile(p, b, 0o644)
		sig := goodSig
		sum := sha256.Sum256(b)
		sig.SHA256 = hex.EncodeToString(sum[:])
		_, err := Open(p, sig, fx.trusted())
		wantErr(t, err, ErrBadSignature, "does not verify under key "+KeyID(fx.pub))
	})
	t.Run("bad signature: another key posing as the trusted one", func(t *testing.T) {
		p := filepath.Join(fx.dir, "forged.tar.gz")
		os.WriteFile(p, goodBytes, 0o644)
		sig := fx.sign(p, otherPriv)
		sig.KeyID = KeyID(fx.pub)
		_, err := Open(p, sig, fx.trusted())
		wantErr(t, err, ErrBadSignature, "does not verify")
	})
	t.Run("unknown key", func(t *testing.T) {
		p := filepath.Join(fx.dir, "other.tar.gz")
		os.WriteFile(p, goodBytes, 0o644)
		sig := fx.sign(p, otherPriv)
		_, err := Open(p, sig, fx.trusted())
		wantErr(t, err, ErrUnknownKey, "signed by key "+KeyID(otherPub)+", which is not among the trusted keys ("+KeyID(fx.pub)+")")
		_, err = Open(p, sig, nil)
		wantErr(t, err, ErrUnknownKey, "no key is trusted")
	})
	t.Run("hash mismatch: a flipped byte", func(t *testing.T) {
		p := filepath.Join(fx.dir, "flipped.tar.gz")
		b := bytes.Clone(goodBytes)
		b[len(b)-10] ^= 0x40
		os.WriteFile(p, b, 0o644)
		_, err := Open(p, goodSig, fx.trusted())
		wantErr(t, err, ErrHashMismatch, "the signature's "+goodSig.SHA256)
	})
	t.Run("hash mismatch: longer than signed", func(t *testing.T) {
		p := filepath.Join(fx.dir, "longer.tar.gz")
		os.WriteFile(p, append(bytes.Clone(goodBytes), 0), 0o644)
		_, err := Open(p, goodSig, fx.trusted())
		wantErr(t, err, ErrHashMismatch, "the signature covers")
	})
	t.Run("truncated download", func(t *testing.T) {
		p := filepath.Join(fx.dir, "partial.tar.gz")
		os.WriteFile(p, goodBytes[:len(goodBytes)/3], 0o644)
		_, err := Open(p, goodSig, fx.trusted())
		wantErr(t, err, ErrTruncated, "the signature covers")
	})
	t.Run("truncated gzip, signed as it is", func(t *testing.T) {
		p := filepath.Join(fx.dir, "cut.tar.gz")
		sig := fx.write(p, goodBytes[:len(goodBytes)-20])
		_, err := Open(p, sig, fx.trusted())
		wantErr(t, err, ErrTruncated, "ends early")
	})
	t.Run("not a signature file", func(t *testing.T) {
		for _, s := range []string{`hello`, `{"format":2}`, `{"format":1,"keyId":"x"}`, `{"format":1,"extra":true}`} {
			_, err := ParseSignature([]byte(s))
			wantErr(t, err, ErrBadSignature, "")
		}
	})
}

// rawEntry is one tar entry of a hand-made bundle.
type rawEntry struct {
	hdr  tar.Header
	body string
}

func reg(name, body string) rawEntry {
	return rawEntry{tar.Header{Typeflag: tar.TypeReg, Name: name, Size: int64(len(body)), Mode: 0o755}, body}
}

func manifestEntry(t *testing.T, m Manifest) rawEntry {
	t.Helper()
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return reg(ManifestName, string(b))
}

func fileOf(name, body string) File {
	sum := sha256.Sum256([]byte(body))
	return File{Path: name, Size: int64(len(body)), SHA256: hex.EncodeToString(sum[:]), Mode: 0o755}
}

func craft(t *testing.T, entries []rawEntry, trailing []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	for _, e := range entries {
		h := e.hdr
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatal(err)
		}
		if _, err := io.WriteString(tw, e.body); err != nil {
			t.Fatal(err)
		}
	}
	tw.Close()
	gz.Close()
	return append(buf.Bytes(), trailing...)
}

type readEntry struct {
	hdr  *tar.Header
	body []byte
}

func readEntries(t *testing.T, p string) []readEntry {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	gz, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(gz)
	var out []readEntry
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(tr)
		out = append(out, readEntry{h, b})
	}
}

// Bundles that are properly signed by a trusted key but made wrong: the
// manifest and the entries are still checked, each with its error.
func TestOpenRefusesBadContents(t *testing.T) {
	fx := newFixture(t)
	ggd := "ggd program"
	m := Manifest{Format: 1, Version: "1.0.0", OS: "linux", Arch: "amd64", Created: time.Unix(1700000000, 0).UTC(),
		Files: []File{fileOf("ggd", ggd)}}
	with := func(edit func(*Manifest)) Manifest {
		c := m
		c.Files = append([]File(nil), m.Files...)
		edit(&c)
		return c
	}
	link := reg("ggd", "")
	link.hdr.Typeflag, link.hdr.Linkname = tar.TypeSymlink, "/usr/bin/ggd"
	hard := reg("ggd", "")
	hard.hdr.Typeflag, hard.hdr.Linkname = tar.TypeLink, ManifestName
	device := reg("ggd", "")
	device.hdr.Typeflag, device.hdr.Devmajor, device.hdr.Devminor = tar.TypeChar, 1, 3
	dir := reg("ggd", "")
	dir.hdr.Typeflag = tar.TypeDir
	notJSON := reg(ManifestName, "{")

	for _, tc := range []struct {
		name     string
		entries  []rawEntry
		trailing []byte
		kind     error
		want     string
	}{
		{"control: well made", []rawEntry{manifestEntry(t, m), reg("ggd", ggd)}, nil, nil, ""},
		{"path escape", []rawEntry{manifestEntry(t, m), reg("../ggd", ggd)}, nil, ErrBadManifest, "path escape"},
		{"absolute path", []rawEntry{manifestEntry(t, m), reg("/usr/bin/ggd", ggd)}, nil, ErrBadManifest, "path escape"},
		{"path escape in the manifest", []rawEntry{manifestEntry(t, with(func(m *Manifest) { m.Files[0].Path = "../../bin/ggd" })), reg("ggd", ggd)}, nil, ErrBadManifest, "path escape"},
		{"symbolic link", []rawEntry{manifestEntry(t, m), link}, nil, ErrBadManifest, "is a link"},
		{"hard link", []rawEntry{manifestEntry(t, m), hard}, nil, ErrBadManifest, "is a link"},
		{"device", []rawEntry{manifestEntry(t, m), device}, nil, ErrBadManifest, "device"},
		{"directory", []rawEntry{manifestEntry(t, m), dir}, nil, ErrBadManifest, "directory"},
		{"duplicate entry", []rawEntry{manifestEntry(t, m), reg("ggd", ggd), reg("ggd", ggd)}, nil, ErrBadManifest, "duplicate"},
		{"second manifest", []rawEntry{manifestEntry(t, m), reg("ggd", ggd), manifestEntry(t, m)}, nil, ErrBadManifest, "duplicate"},
		{"duplicate in the manifest", []rawEntry{manifestEntry(t, with(func(m *Manifest) { m.Files = append(m.Files, m.Files[0]) })), reg("ggd", ggd)}, nil, ErrBadManifest, "duplicate"},
		{"extra file", []rawEntry{manifestEntry(t, m), reg("ggd", ggd), reg("backdoor", "x")}, nil, ErrBadManifest, "backdoor is not in the manifest (extra file)"},
		{"missing file", []rawEntry{manifestEntry(t, with(func(m *Manifest) { m.Files = append(m.Files, fileOf("ggctl", "c")) })), reg("ggd", ggd)}, nil, ErrBadManifest, "lists ggctl, the bundle lacks it"},
		{"file differs from manifest", []rawEntry{manifestEntry(t, m), reg("ggd", "ggd PROGRAM")}, nil, ErrHashMismatch, "ggd has sha256"},
		{"size differs from manifest", []rawEntry{manifestEntry(t, m), reg("ggd", ggd+"!")}, nil, ErrHashMismatch, "the manifest says 11"},
		{"file over the size cap", []rawEntry{manifestEntry(t, with(func(m *Manifest) { m.Files[0].Size = MaxFileSize + 1 })), reg("ggd", ggd)}, nil, ErrBadManifest, "size cap"},
		{"manifest not first", []rawEntry{reg("ggd", ggd), manifestEntry(t, m)}, nil, ErrBadManifest, "the first entry is \"ggd\""},
		{"no manifest", nil, nil, ErrBadManifest, "no manifest.json"},
		{"manifest not JSON", []rawEntry{notJSON}, nil, ErrBadManifest, "not JSON"},
		{"unknown format", []rawEntry{manifestEntry(t, with(func(m *Manifest) { m.Format = 2 })), reg("ggd", ggd)}, nil, ErrBadManifest, "format 2"},
		{"missing format", []rawEntry{reg(ManifestName, `{"version":"1.0.0"}`)}, nil, ErrBadManifest, "format 0"},
		{"unknown manifest field", []rawEntry{reg(ManifestName, `{"format":1,"postInstall":"rm -rf /"}`)}, nil, ErrBadManifest, "postInstall"},
		{"setuid mode", []rawEntry{manifestEntry(t, with(func(m *Manifest) { m.Files[0].Mode = 0o4755 })), reg("ggd", ggd)}, nil, ErrBadManifest, "mode"},
		{"version that is a path", []rawEntry{manifestEntry(t, with(func(m *Manifest) { m.Version = "../../etc" })), reg("ggd", ggd)}, nil, ErrBadManifest, "version"},
		{"data after the last entry", []rawEntry{manifestEntry(t, m), reg("ggd", ggd)}, []byte("MZ"), ErrBadManifest, "data after the end of the gzip stream"},
		{"zeros after the last entry", []rawEntry{manifestEntry(t, m), reg("ggd", ggd)}, make([]byte, 512), ErrBadManifest, "data after the end"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(fx.dir, strings.ReplaceAll(tc.name, " ", "-")+".tar.gz")
			sig := fx.write(p, craft(t, tc.entries, tc.trailing))
			_, err := Open(p, sig, fx.trusted())
			if tc.kind == nil {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			wantErr(t, err, tc.kind, tc.want)
			// Inspect, which trusts no signature, finds the same.
			_, err = Inspect(p)
			wantErr(t, err, tc.kind, tc.want)
		})
	}
	t.Run("not gzip", func(t *testing.T) {
		p := filepath.Join(fx.dir, "plain.tar")
		sig := fx.write(p, []byte("this is not a gzip stream at all"))
		_, err := Open(p, sig, fx.trusted())
		wantErr(t, err, ErrBadManifest, "not a tar.gz")
	})
}

func TestCheckPlatform(t *testing.T) {
	m := Manifest{OS: "linux", Arch: "arm64"}
	if err := CheckPlatform(m, "linux", "arm64"); err != nil {
		t.Fatal(err)
	}
	wantErr(t, CheckPlatform(m, "linux", "amd64"), ErrWrongArch, "the bundle is for linux/arm64, this core is linux/amd64")
	wantErr(t, CheckPlatform(m, "darwin", "arm64"), ErrWrongArch, "this core is darwin/arm64")
}

func TestExtractRefusesAndCleansUp(t *testing.T) {
	fx := newFixture(t)
	p, _ := fx.build("1.0.0", "amd64")
	m, err := Open(p, fx.sig(p), fx.trusted())
	if err != nil {
		t.Fatal(err)
	}

	t.Run("into a directory that holds files", func(t *testing.T) {
		dir := filepath.Join(fx.dir, "full")
		os.MkdirAll(dir, 0o755)
		os.WriteFile(filepath.Join(dir, "keep"), []byte("mine"), 0o644)
		if err := Extract(p, dir, m); err == nil || !strings.Contains(err.Error(), "not empty") {
			t.Fatalf("want a not-empty error, got %v", err)
		}
		if b, err := os.ReadFile(filepath.Join(dir, "keep")); err != nil || string(b) != "mine" {
			t.Fatal("a refused extraction touched the directory")
		}
	})
	t.Run("into an empty directory", func(t *testing.T) {
		dir := filepath.Join(fx.dir, "empty")
		os.MkdirAll(dir, 0o755)
		if err := Extract(p, dir, m); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("the bundle changed after Open", func(t *testing.T) {
		// Same manifest, one file different: caught while writing.
		q := filepath.Join(fx.dir, "swapped.tar.gz")
		entries := readEntries(t, p)
		var raw []rawEntry
		for _, e := range entries {
			body := string(e.body)
			if e.hdr.Name == "ggd" {
				body = strings.Replace(body, "v1.2.3", "v6.6.6", 1)
			}
			h := *e.hdr
			raw = append(raw, rawEntry{h, body})
		}
		os.WriteFile(q, craft(t, raw, nil), 0o644)
		dir := filepath.Join(fx.dir, "swapped")
		err := Extract(q, dir, m)
		wantErr(t, err, ErrHashMismatch, "ggd has sha256")
		if _, err := os.Stat(dir); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("a failed extraction left %s: %v", dir, err)
		}
		// Another manifest altogether.
		other := m
		other.Version = "1.0.1"
		err = Extract(p, dir, other)
		wantErr(t, err, ErrHashMismatch, "not the one that was verified")
		if _, err := os.Stat(dir); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("a failed extraction left %s: %v", dir, err)
		}
	})
	t.Run("a truncated bundle", func(t *testing.T) {
		b, _ := os.ReadFile(p)
		q := filepath.Join(fx.dir, "short.tar.gz")
		os.WriteFile(q, b[:len(b)*2/3], 0o644)
		dir := filepath.Join(fx.dir, "short")
		wantErr(t, Extract(q, dir, m), ErrTruncated, "ends early")
		if _, err := os.Stat(dir); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("a failed extraction left %s: %v", dir, err)
		}
	})
}

func TestInstalledFindsDamage(t *testing.T) {
	fx := newFixture(t)
	p, m := fx.build("1.0.0", "amd64")
	extract := func(name string) string {
		dir := filepath.Join(fx.dir, name)
		if err := Extract(p, dir, m); err != nil {
			t.Fatal(err)
		}
		return dir
	}
	dir := extract("changed")
	os.WriteFile(filepath.Join(dir, "ggctl"), []byte("#!/bin/sh\necho evil\n"), 0o755)
	_, err := Installed(dir)
	wantErr(t, err, ErrHashMismatch, "ggctl")

	dir = extract("chmod")
	os.Chmod(filepath.Join(dir, "ggd"), 0o644)
	_, err = Installed(dir)
	wantErr(t, err, ErrHashMismatch, "mode")

	dir = extract("unfinished")
	os.Remove(filepath.Join(dir, ManifestName))
	_, err = Installed(dir)
	wantErr(t, err, ErrTruncated, "did not finish")

	dir = extract("missing")
	os.Remove(filepath.Join(dir, "ggd"))
	_, err = Installed(dir)
	wantErr(t, err, ErrTruncated, "lacks ggd")

	dir = extract("extra")
	os.WriteFile(filepath.Join(dir, "ggd.bak"), nil, 0o644)
	_, err = Installed(dir)
	wantErr(t, err, ErrBadManifest, "extra file")
}
