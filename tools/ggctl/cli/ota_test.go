package cli

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"

	"github.com/evergreen-edge/evergreen/ota/bundle"
)

// otaBin makes a --bin DIR holding the three programs a bundle carries
// (scripts: they are not Go programs, so any platform takes them).
func otaBin(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "bin")
	os.MkdirAll(dir, 0o755)
	for _, name := range []string{"ggd", "ggctl", "ggd-containerd"} {
		body := "#!/bin/sh\necho " + name + " v1.2.3\n" + strings.Repeat("# padding\n", 100)
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestOTAKeygen(t *testing.T) {
	dir := t.TempDir()
	prefix := filepath.Join(dir, "fleet")
	r := runGgctl(t.Context(), "ota", "keygen", "--out", prefix)
	wantExit(t, r, ExitOK)
	if !regexp.MustCompile(`(?m)^public key ed25519:[A-Za-z0-9+/]{43}= \(key id [0-9a-f]{16}\)`).MatchString(r.stdout) {
		t.Fatalf("keygen printed:\n%s", r.stdout)
	}
	fi, err := os.Stat(prefix + ".key")
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("private key: %v %v", fi, err)
	}
	keyPEM, _ := os.ReadFile(prefix + ".key")
	priv, err := bundle.ParsePrivateKeyPEM(keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	pubText, _ := os.ReadFile(prefix + ".pub")
	pub, err := bundle.ParsePublicKey(string(pubText))
	if err != nil || !pub.Equal(priv.Public()) {
		t.Fatalf("PREFIX.pub is not PREFIX.key's public key: %v", err)
	}
	if !strings.Contains(r.stdout, strings.TrimSpace(string(pubText))) {
		t.Fatalf("keygen did not print the public key:\n%s", r.stdout)
	}

	// Never overwrites, not even the public half alone.
	r = runGgctl(t.Context(), "ota", "keygen", "--out", prefix)
	wantExit(t, r, ExitFailed)
	wantOneErrorLine(t, r, prefix+".key already exists")
	if again, _ := os.ReadFile(prefix + ".key"); !bytes.Equal(again, keyPEM) {
		t.Fatal("keygen overwrote a private key")
	}
	os.WriteFile(filepath.Join(dir, "other.pub"), []byte("mine\n"), 0o644)
	r = runGgctl(t.Context(), "ota", "keygen", "--out", filepath.Join(dir, "other"))
	wantExit(t, r, ExitFailed)
	wantOneErrorLine(t, r, "other.pub already exists")
	if _, err := os.Stat(filepath.Join(dir, "other.key")); !os.IsNotExist(err) {
		t.Fatal("a refused keygen wrote a private key")
	}

	r = runGgctl(t.Context(), "--json", "ota", "keygen", "--out", filepath.Join(dir, "j"))
	wantExit(t, r, ExitOK)
	var out map[string]string
	if err := json.Unmarshal([]byte(r.stdout), &out); err != nil || out["keyId"] == "" || !strings.HasPrefix(out["publicKey"], "ed25519:") {
		t.Fatalf("keygen --json: %v\n%s", err, r.stdout)
	}
}

// The release path, as `make release` runs it: keygen, bundle from a bin
// directory, sign, verify.
func TestOTABundleSignVerify(t *testing.T) {
	dir := t.TempDir()
	bin := otaBin(t)
	key := filepath.Join(dir, "release")
	wantExit(t, runGgctl(t.Context(), "ota", "keygen", "--out", key), ExitOK)
	out := filepath.Join(dir, "evergreen-v1.2.3-linux-arm64.tar.gz")

	r := runGgctl(t.Context(), "ota", "bundle", "--version", "v1.2.3", "--arch", "arm64", "--bin", bin, "--out", out)
	wantExit(t, r, ExitOK)
	for _, re := range []string{
		`^wrote .*evergreen-v1.2.3-linux-arm64.tar.gz: version v1.2.3 for linux/arm64, 3 files, [0-9.]+ (B|KiB) \(\d+ bytes\)\nsha256 [0-9a-f]{64}\n`,
		`(?m)^FILE +SIZE +MODE +SHA256$`,
		`(?m)^ggd +\d+ +0755 +[0-9a-f]{64}$`,
		`(?m)^ggd-containerd +\d+ +0755 `,
		`(?m)^ggctl +\d+ +0755 `,
	} {
		if !regexp.MustCompile(re).MatchString(r.stdout) {
			t.Fatalf("bundle output lacks %s:\n%s", re, r.stdout)
		}
	}
	if m, err := bundle.Inspect(out); err != nil || m.Version != "v1.2.3" || m.Arch != "arm64" || len(m.Files) != 3 {
		t.Fatalf("the bundle: %+v, %v", m, err)
	}

	r = runGgctl(t.Context(), "ota", "sign", out, "--key", key+".key")
	wantExit(t, r, ExitOK)
	if !regexp.MustCompile(`^signed .* \(version v1.2.3 for linux/arm64, \d+ bytes, sha256 [0-9a-f]{64}\) with key [0-9a-f]{16}\nwrote .*\.tar\.gz\.sig\n$`).MatchString(r.stdout) {
		t.Fatalf("sign printed:\n%s", r.stdout)
	}
	if _, err := os.Stat(out + ".sig"); err != nil {
		t.Fatal(err)
	}

	r = runGgctl(t.Context(), "ota", "verify", out, "--pub", key+".pub")
	wantExit(t, r, ExitOK)
	for _, want := range []string{"OK: " + out + " is signed by trusted key ", "version:  v1.2.3\n", "platform: linux/arm64\n", "ggd-containerd"} {
		if !strings.Contains(r.stdout, want) {
			t.Fatalf("verify output lacks %q:\n%s", want, r.stdout)
		}
	}
	// The key given inline, the platform checked, JSON out.
	pubText, _ := os.ReadFile(key + ".pub")
	r = runGgctl(t.Context(), "--json", "ota", "verify", out, "--trusted", strings.TrimSpace(string(pubText)), "--arch", "arm64")
	wantExit(t, r, ExitOK)
	var v otaVerifyJSON
	if err := json.Unmarshal([]byte(r.stdout), &v); err != nil || v.Manifest.Version != "v1.2.3" || len(v.Manifest.Files) != 3 || len(v.SHA256) != 64 {
		t.Fatalf("verify --json: %v\n%s", err, r.stdout)
	}

	// JSON from bundle and sign too; an explicit file list.
	extra := filepath.Join(dir, "NOTICE")
	os.WriteFile(extra, []byte("licences\n"), 0o644)
	out2 := filepath.Join(dir, "two.tar.gz")
	r = runGgctl(t.Context(), "--json", "ota", "bundle", "--version", "1.3.0-rc.1", "--out", out2, "ggd="+filepath.Join(bin, "ggd"), "NOTICE="+extra)
	wantExit(t, r, ExitOK)
	var b otaBundleJSON
	if err := json.Unmarshal([]byte(r.stdout), &b); err != nil || b.Manifest.Arch != runtime.GOARCH || len(b.Manifest.Files) != 2 || b.Manifest.Files[0].Mode != 0o644 {
		t.Fatalf("bundle --json: %v\n%s", err, r.stdout)
	}
	raw, _ := os.ReadFile(out2)
	if sum := sha256.Sum256(raw); hex.EncodeToString(sum[:]) != b.SHA256 || int64(len(raw)) != b.Size {
		t.Fatalf("bundle --json reports sha256 %s size %d for a file of %d bytes", b.SHA256, b.Size, len(raw))
	}
	sigOut := filepath.Join(dir, "detached.json")
	r = runGgctl(t.Context(), "--json", "ota", "sign", out2, "--key", key+".key", "--out", sigOut)
	wantExit(t, r, ExitOK)
	var s otaSignJSON
	if err := json.Unmarshal([]byte(r.stdout), &s); err != nil || s.SignatureFile != sigOut || s.SHA256 != b.SHA256 {
		t.Fatalf("sign --json: %v\n%s", err, r.stdout)
	}
	wantExit(t, runGgctl(t.Context(), "ota", "verify", out2, "--sig", sigOut, "--pub", key+".pub"), ExitOK)
}

// Every reason a core would refuse a bundle: exit 1, one line naming it.
func TestOTAVerifyRefuses(t *testing.T) {
	dir := t.TempDir()
	bin := otaBin(t)
	key, other := filepath.Join(dir, "release"), filepath.Join(dir, "other")
	wantExit(t, runGgctl(t.Context(), "ota", "keygen", "--out", key), ExitOK)
	wantExit(t, runGgctl(t.Context(), "ota", "keygen", "--out", other), ExitOK)
	good := filepath.Join(dir, "good.tar.gz")
	wantExit(t, runGgctl(t.Context(), "ota", "bundle", "--version", "v2.0.0", "--arch", "arm64", "--bin", bin, "--out", good), ExitOK)
	wantExit(t, runGgctl(t.Context(), "ota", "sign", good, "--key", key+".key"), ExitOK)
	goodBytes, _ := os.ReadFile(good)
	goodSig, _ := os.ReadFile(good + ".sig")

	// variant writes a bundle and its signature under a new name.
	variant := func(name string, b, sig []byte) string {
		p := filepath.Join(dir, name+".tar.gz")
		os.WriteFile(p, b, 0o644)
		os.WriteFile(p+".sig", sig, 0o644)
		return p
	}
	signed := func(name string, b []byte, keyFile string) string {
		p := variant(name, b, nil)
		wantExit(t, runGgctl(t.Context(), "ota", "sign", p, "--key", keyFile), ExitOK)
		return p
	}
	var sig map[string]any
	json.Unmarshal(goodSig, &sig)
	sig["size"] = sig["size"].(float64) + 1
	forgedSize, _ := json.Marshal(sig)
	flipped := bytes.Clone(goodBytes)
	flipped[len(flipped)-12] ^= 0x20

	// A bundle made wrong on purpose, signed by the trusted key: sign
	// refuses it, so the signature is made with the package.
	evil := craftBundle(t, "v2.0.0", map[string]string{"ggd": "ggd", "../../etc/cron.d/evil": "* * * * * root sh"})
	evilPath := variant("evil", evil, signWith(t, key+".key", evil))

	for _, tc := range []struct {
		name string
		args []string
		want []string
	}{
		{"bad signature", []string{variant("forged", goodBytes, forgedSize)}, []string{"bad signature: the signature does not verify under key"}},
		{"malformed signature", []string{variant("garbled", goodBytes, []byte("{not json"))}, []string{"garbled.tar.gz.sig: bad signature: not a signature file"}},
		{"unknown key", []string{signed("stranger", goodBytes, other+".key")}, []string{"unknown signing key: signed by key", "which is not among the trusted keys"}},
		{"hash mismatch", []string{variant("flipped", flipped, goodSig)}, []string{"hash mismatch: the bundle's sha256 is"}},
		{"truncated", []string{variant("partial", goodBytes[:len(goodBytes)/2], goodSig)}, []string{"truncated bundle: the bundle is", "the signature covers"}},
		{"wrong architecture", []string{good, "--arch", "amd64"}, []string{"wrong architecture: the bundle is for linux/arm64, this core is linux/amd64"}},
		{"path escape", []string{evilPath}, []string{"bad manifest:", "path escape"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := runGgctl(t.Context(), append([]string{"ota", "verify", "--pub", key + ".pub"}, tc.args...)...)
			wantExit(t, r, ExitFailed)
			wantOneErrorLine(t, r, append([]string{"ota verify: "}, tc.want...)...)
			if r.stdout != "" {
				t.Fatalf("a refused bundle printed on stdout: %s", r)
			}
		})
	}
	t.Run("sign refuses a bundle that is not well made", func(t *testing.T) {
		r := runGgctl(t.Context(), "ota", "sign", evilPath, "--key", key+".key")
		wantExit(t, r, ExitUsage)
		wantOneErrorLine(t, r, "is not a bundle to sign", "path escape")
	})
}

func craftBundle(t *testing.T, version string, files map[string]string) []byte {
	t.Helper()
	m := bundle.Manifest{Format: 1, Version: version, OS: "linux", Arch: "arm64"}
	for name, body := range files {
		sum := sha256.Sum256([]byte(body))
		m.Files = append(m.Files, bundle.File{Path: name, Size: int64(len(body)), SHA256: hex.EncodeToString(sum[:]), Mode: 0o755})
	}
	mj, _ := json.Marshal(m)
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: bundle.ManifestName, Size: int64(len(mj)), Mode: 0o644})
	tw.Write(mj)
	for name, body := range files {
		tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Size: int64(len(body)), Mode: 0o755})
		tw.Write([]byte(body))
	}
	tw.Close()
	gz.Close()
	return buf.Bytes()
}

func signWith(t *testing.T, keyFile string, b []byte) []byte {
	t.Helper()
	keyPEM, _ := os.ReadFile(keyFile)
	priv, err := bundle.ParsePrivateKeyPEM(keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	sig, err := bundle.Sign(priv, bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	return sig
}

// A Go program for another platform is not packed into a bundle: the test
// binary is one for this machine.
func TestOTABundleRefusesForeignPrograms(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	other := "arm64"
	if runtime.GOARCH == "arm64" {
		other = "amd64"
	}
	out := filepath.Join(t.TempDir(), "b.tar.gz")
	r := runGgctl(t.Context(), "ota", "bundle", "--version", "1.0.0", "--arch", other, "--out", out, "ggd="+exe)
	wantExit(t, r, ExitUsage)
	wantOneErrorLine(t, r, "is a "+runtime.GOOS+"/"+runtime.GOARCH+" program, the bundle is for linux/"+other)
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Fatal("a refused bundle was written")
	}
}

func TestOTAUsageErrors(t *testing.T) {
	dir := t.TempDir()
	bin := otaBin(t)
	notBundle := filepath.Join(dir, "notes.txt")
	os.WriteFile(notBundle, []byte("hello"), 0o644)
	key := filepath.Join(dir, "k")
	wantExit(t, runGgctl(t.Context(), "ota", "keygen", "--out", key), ExitOK)
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"ota alone", []string{"ota"}, "ota needs a subcommand: keygen, bundle, sign, verify"},
		{"unknown ota verb", []string{"ota", "frobnicate"}, `unknown command "ota frobnicate" (want keygen, bundle, sign, verify`},
		{"keygen without --out", []string{"ota", "keygen"}, "--out PREFIX is required"},
		{"keygen argument", []string{"ota", "keygen", "x", "--out", key + "2"}, `unexpected argument "x"`},
		{"bundle without version", []string{"ota", "bundle", "--out", filepath.Join(dir, "b.tgz"), "--bin", bin}, "--version is required"},
		{"bundle without --out", []string{"ota", "bundle", "--version", "1.0.0", "--bin", bin}, "--out FILE is required"},
		{"bundle version as a path", []string{"ota", "bundle", "--version", "../1", "--out", filepath.Join(dir, "b.tgz"), "--bin", bin}, `version "../1" is not`},
		{"bundle missing program", []string{"ota", "bundle", "--version", "1.0.0", "--out", filepath.Join(dir, "b.tgz"), "--bin", dir}, "no such file"},
		{"bundle path as name", []string{"ota", "bundle", "--version", "1.0.0", "--out", filepath.Join(dir, "b.tgz"), "bin/ggd=" + filepath.Join(bin, "ggd")}, "path escape"},
		{"bundle not NAME=PATH", []string{"ota", "bundle", "--version", "1.0.0", "--out", filepath.Join(dir, "b.tgz"), filepath.Join(bin, "ggd")}, "is not NAME=PATH"},
		{"bundle files and --bin", []string{"ota", "bundle", "--version", "1.0.0", "--out", filepath.Join(dir, "b.tgz"), "--bin", bin, "ggd=" + filepath.Join(bin, "ggd")}, "not both"},
		{"bundle a directory", []string{"ota", "bundle", "--version", "1.0.0", "--out", filepath.Join(dir, "b.tgz"), "ggd=" + bin}, "not a regular file"},
		{"sign without --key", []string{"ota", "sign", notBundle}, "--key FILE is required"},
		{"sign with a public key", []string{"ota", "sign", notBundle, "--key", key + ".pub"}, "no PEM block"},
		{"sign something else", []string{"ota", "sign", notBundle, "--key", key + ".key"}, "is not a bundle to sign"},
		{"sign without bundle", []string{"ota", "sign", "--key", key + ".key"}, "missing argument"},
		{"verify without keys", []string{"ota", "verify", notBundle}, "no trusted key"},
		{"verify bad --trusted", []string{"ota", "verify", notBundle, "--trusted", "AAAA"}, `does not start with "ed25519:"`},
		{"verify missing --pub", []string{"ota", "verify", notBundle, "--pub", filepath.Join(dir, "nope.pub")}, "no such file"},
		{"verify without signature", []string{"ota", "verify", notBundle, "--pub", key + ".pub"}, "notes.txt.sig: no such file"},
		{"verify missing bundle", []string{"ota", "verify", filepath.Join(dir, "nope.tgz"), "--pub", key + ".pub"}, "no such file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := runGgctl(t.Context(), tc.args...)
			wantExit(t, r, ExitUsage)
			wantOneErrorLine(t, r, tc.want)
			if r.stdout != "" {
				t.Fatalf("usage error wrote to stdout: %s", r)
			}
		})
	}
	if _, err := os.Stat(filepath.Join(dir, "b.tgz")); !os.IsNotExist(err) {
		t.Fatal("a refused bundle command left its output")
	}
}

func TestOTAHelp(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"help"}, []string{"ota keygen --out PREFIX", "ota bundle --version V --out FILE", "ota sign BUNDLE --key KEY", "ota verify BUNDLE --pub FILE"}},
		{[]string{"help", "ota", "sign"}, []string{"Usage: ggctl ota sign BUNDLE --key KEY [--out FILE]", "--key FILE", "--out FILE"}},
		{[]string{"ota", "bundle", "-h"}, []string{"Usage: ggctl ota bundle", "--version VERSION", "--arch ARCH", "--bin DIR", "(default linux)", "SOURCE_DATE_EPOCH"}},
		{[]string{"help", "ota", "verify"}, []string{"--pub FILE", "--trusted KEY", "--sig FILE", "wrong architecture"}},
		{[]string{"ota", "-h"}, []string{"Usage: ggctl ota SUBCOMMAND", "ota keygen --out PREFIX", "ota verify BUNDLE"}},
		{[]string{"help", "ota"}, []string{"Usage: ggctl ota SUBCOMMAND", "ota sign BUNDLE"}},
	} {
		r := runGgctl(t.Context(), tc.args...)
		wantExit(t, r, ExitOK)
		for _, w := range tc.want {
			if !strings.Contains(r.stdout, w) {
				t.Fatalf("%v: lacks %q:\n%s", tc.args, w, r.stdout)
			}
		}
	}
}
