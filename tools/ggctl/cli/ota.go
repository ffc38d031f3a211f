package cli

import (
	"crypto/ed25519"
	"crypto/sha256"
	"debug/buildinfo"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/evergreen-edge/evergreen/ota/bundle"
)

// The `ota` verbs that make and check update bundles (docs/ota.md) run
// offline: they read and write files and never dial a daemon.

// otaCommands are the `ota` verbs; cli.go appends them to the command
// table. Another file adds its verbs from a package-level variable, which
// Go initialises before any init function runs, whatever the file order:
//
//	var _ = addOtaCommands(command{"ota apply", "BUNDLE|URL ...", "...", cmdOtaApply})
//
// A verb appended later (from an init function) is still found by cmdOta,
// the "ota" group command, but is missing from `ggctl help`.
var otaCommands []command

func addOtaCommands(c ...command) bool {
	otaCommands = append(otaCommands, c...)
	return true
}

var _ = addOtaCommands(
	command{"ota keygen", "--out PREFIX", "Make an ed25519 key pair for signing update bundles: PREFIX.key, the private\nkey (PEM PKCS #8, mode 0600; keep it offline), and PREFIX.pub, the public key\n(one line, ed25519:BASE64) that cores list as trusted. Never overwrites a file.", cmdOtaKeygen},
	command{"ota bundle", "--version V --out FILE [--os OS] [--arch A] [--bin DIR | NAME=PATH...]", "Pack a core's programs into an update bundle (tar.gz; manifest.json first,\nwith the version, OS/architecture and every file's size, sha256 and mode).\nWithout NAME=PATH arguments it takes ggd, ggctl and ggd-containerd from --bin\nDIR. A Go program built for another OS or architecture is refused.\nSOURCE_DATE_EPOCH, when set, is the creation time (reproducible bundles).", cmdOtaBundle},
	command{"ota sign", "BUNDLE --key KEY [--out FILE]", "Sign a bundle with a private key from 'ota keygen': writes the detached\nsignature BUNDLE.sig (JSON: keyId, sha256 and size of the bundle, signature).\nA file that is not a well-made bundle is refused.", cmdOtaSign},
	command{"ota verify", "BUNDLE [--sig F] --pub FILE | --trusted KEY [--arch A]", "Check a bundle as a core does before installing it: its signature by a trusted\nkey (--pub FILE with one key a line, or --trusted ed25519:BASE64; both\nrepeatable), its sha256 and size, its manifest, and every file's hash; with\n--arch also its platform. Prints the version, platform and files; exits 1\nwith the reason (bad signature, unknown signing key, hash mismatch, truncated\nbundle, bad manifest, wrong architecture) when it would be refused.", cmdOtaVerify},
)

// cmdOta is the "ota" group command: `ggctl ota` alone, an unknown verb,
// and verbs registered after cli.go built the command table.
func cmdOta(a *app, args []string) error {
	var verbs []string
	for _, c := range otaCommands {
		verbs = append(verbs, strings.TrimPrefix(c.name, "ota "))
	}
	list := strings.Join(verbs, ", ")
	if len(args) == 0 {
		return usageErrorf("ota needs a subcommand: %s (see 'ggctl help')", list)
	}
	if args[0] == "-h" || args[0] == "--help" || args[0] == "-help" {
		var b strings.Builder
		fmt.Fprintf(&b, "Usage: ggctl ota SUBCOMMAND [ARGS]\n\n%s\n\nSubcommands:\n", a.cmd.summary)
		for _, c := range otaCommands {
			fmt.Fprintf(&b, "  %s %s\n", c.name, c.args)
		}
		b.WriteString("\n'ggctl help ota SUBCOMMAND' shows one subcommand's flags.\n")
		return &helpRequest{text: b.String()}
	}
	for i := range otaCommands {
		if otaCommands[i].name == "ota "+args[0] {
			a.cmd = &otaCommands[i]
			return a.cmd.run(a, args[1:])
		}
	}
	return usageErrorf("unknown command \"ota %s\" (want %s)", args[0], list)
}

func cmdOtaKeygen(a *app, args []string) error {
	fs := a.flags()
	out := fs.String("out", "", "write `PREFIX`.key and PREFIX.pub")
	if _, err := a.parse(fs, args, 0, 0); err != nil {
		return err
	}
	if *out == "" {
		return usageErrorf("ota keygen: --out PREFIX is required")
	}
	keyPath, pubPath := *out+".key", *out+".pub"
	for _, p := range []string{keyPath, pubPath} {
		if _, err := os.Lstat(p); err == nil {
			return failf("ota keygen: %s already exists; keygen never overwrites a key (choose another --out)", p)
		}
	}
	pub, priv, err := bundle.GenerateKey()
	if err != nil {
		return failf("ota keygen: %v", err)
	}
	defer clear(priv)
	keyPEM, err := bundle.MarshalPrivateKeyPEM(priv)
	if err != nil {
		return failf("ota keygen: %v", err)
	}
	defer clear(keyPEM)
	if err := writeNewFile(keyPath, keyPEM, 0o600); err != nil {
		return failf("ota keygen: %v", err)
	}
	text := bundle.MarshalPublicKey(pub)
	if err := writeNewFile(pubPath, []byte(text+"\n"), 0o644); err != nil {
		os.Remove(keyPath)
		return failf("ota keygen: %v", err)
	}
	if a.g.json {
		return a.printJSON(map[string]string{"privateKeyFile": keyPath, "publicKeyFile": pubPath, "publicKey": text, "keyId": bundle.KeyID(pub)})
	}
	_, err = fmt.Fprintf(a.stdout, "wrote %s (private key, 0600: keep it offline) and %s\npublic key %s (key id %s): list it in the cores' trusted keys\n",
		keyPath, pubPath, text, bundle.KeyID(pub))
	return err
}

// writeNewFile creates path, which must not exist, with exactly mode, and
// fsyncs it; a failed write leaves no file.
func writeNewFile(path string, b []byte, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Chmod(mode)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
	}
	return err
}

// writeStreamAtomic is writeFileAtomic for output too large to hold in
// memory: write fills a temp file beside path, which is fsynced and renamed
// over path, so a reader never sees half a bundle.
func writeStreamAtomic(path string, mode os.FileMode, write func(io.Writer) error) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	err = write(tmp)
	if err == nil {
		err = tmp.Chmod(mode)
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

// defaultBundleFiles are the programs a core runs; the language runtime
// shims are embedded in ggd.
var defaultBundleFiles = []string{"ggd", "ggctl", "ggd-containerd"}

type otaBundleJSON struct {
	Bundle   string          `json:"bundle"`
	Size     int64           `json:"size"`
	SHA256   string          `json:"sha256"`
	Manifest bundle.Manifest `json:"manifest"`
}

func cmdOtaBundle(a *app, args []string) error {
	fs := a.flags()
	version := fs.String("version", "", "the `VERSION` the programs were built as (v1.2.3)")
	goos := fs.String("os", "linux", "the `OS` the programs run on")
	arch := fs.String("arch", runtime.GOARCH, "the `ARCH`itecture the programs run on (GOARCH)")
	out := fs.String("out", "", "write the bundle to `FILE`")
	bin := fs.String("bin", "", "take "+strings.Join(defaultBundleFiles, ", ")+" from `DIR` (default: the directory of this ggctl)")
	pos, err := a.parse(fs, args, 0, -1)
	if err != nil {
		return err
	}
	switch {
	case *version == "":
		return usageErrorf("ota bundle: --version is required (as in --version v1.2.3)")
	case *out == "":
		return usageErrorf("ota bundle: --out FILE is required")
	case len(pos) > 0 && *bin != "":
		return usageErrorf("ota bundle: give NAME=PATH arguments or --bin DIR, not both")
	}
	if err := bundle.ValidVersionName(*version); err != nil {
		return usageErrorf("ota bundle: --version: %v", err)
	}
	files := map[string]string{}
	for _, p := range pos {
		name, path, ok := strings.Cut(p, "=")
		if !ok || name == "" || path == "" {
			return usageErrorf("ota bundle: %q is not NAME=PATH", p)
		}
		if _, dup := files[name]; dup {
			return usageErrorf("ota bundle: %s is given twice", name)
		}
		files[name] = path
	}
	if len(files) == 0 {
		dir := *bin
		if dir == "" {
			exe, err := os.Executable()
			if err != nil {
				return usageErrorf("ota bundle: --bin DIR is needed: %v", err)
			}
			dir = filepath.Dir(exe)
		}
		for _, name := range defaultBundleFiles {
			files[name] = filepath.Join(dir, name)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(files)) {
		if err := checkProgramPlatform(name, files[name], *goos, *arch); err != nil {
			return err
		}
	}

	created := time.Now()
	if s := os.Getenv("SOURCE_DATE_EPOCH"); s != "" {
		sec, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return usageErrorf("ota bundle: SOURCE_DATE_EPOCH=%q is not a number of seconds", s)
		}
		created = time.Unix(sec, 0)
	}
	if err := os.MkdirAll(filepath.Dir(*out), 0o755); err != nil {
		return usageErrorf("ota bundle: --out: %v", err)
	}
	h := sha256.New()
	var size int64
	var m bundle.Manifest
	err = writeStreamAtomic(*out, 0o644, func(w io.Writer) error {
		cw := &countWriter{w: io.MultiWriter(w, h)}
		var err error
		m, err = bundle.BuildAt(cw, *version, *goos, *arch, files, created)
		size = cw.n
		return err
	})
	switch {
	case errors.Is(err, bundle.ErrBadManifest), errors.Is(err, os.ErrNotExist), errors.Is(err, os.ErrPermission):
		return usageErrorf("ota bundle: %v", err)
	case err != nil:
		return failf("ota bundle: %v", err)
	}
	sum := hex.EncodeToString(h.Sum(nil))
	if a.g.json {
		return a.printJSON(otaBundleJSON{Bundle: *out, Size: size, SHA256: sum, Manifest: m})
	}
	fmt.Fprintf(a.stdout, "wrote %s: version %s for %s/%s, %d files, %s (%d bytes)\nsha256 %s\n",
		*out, m.Version, m.OS, m.Arch, len(m.Files), humanBytes(uint64(size)), size, sum)
	return printManifestFiles(a.stdout, m)
}

// checkProgramPlatform refuses a Go program built for another platform
// than the bundle's (an amd64 ggd in an arm64 bundle would brick the
// gateway). Files that are not Go programs pass.
func checkProgramPlatform(name, path, goos, goarch string) error {
	info, err := buildinfo.ReadFile(path)
	if err != nil {
		return nil
	}
	var os_, arch string
	for _, s := range info.Settings {
		switch s.Key {
		case "GOOS":
			os_ = s.Value
		case "GOARCH":
			arch = s.Value
		}
	}
	if (os_ != "" && os_ != goos) || (arch != "" && arch != goarch) {
		return usageErrorf("ota bundle: %s (%s) is a %s/%s program, the bundle is for %s/%s", name, path, os_, arch, goos, goarch)
	}
	return nil
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

func printManifestFiles(w io.Writer, m bundle.Manifest) error {
	t := newTable(w, "FILE", "SIZE", "MODE", "SHA256")
	for _, f := range m.Files {
		t.row(f.Path, strconv.FormatInt(f.Size, 10), fmt.Sprintf("%04o", f.Mode), f.SHA256)
	}
	return t.flush()
}

type otaSignJSON struct {
	SignatureFile string `json:"signatureFile"`
	bundle.Signature
}

func cmdOtaSign(a *app, args []string) error {
	fs := a.flags()
	keyFile := fs.String("key", "", "the private key `FILE` (PREFIX.key from 'ggctl ota keygen')")
	out := fs.String("out", "", "write the signature to `FILE` (default BUNDLE.sig)")
	pos, err := a.parse(fs, args, 1, 1)
	if err != nil {
		return err
	}
	if *keyFile == "" {
		return usageErrorf("ota sign: --key FILE is required")
	}
	path := pos[0]
	if *out == "" {
		*out = path + ".sig"
	}
	keyPEM, err := os.ReadFile(*keyFile)
	if err != nil {
		return usageErrorf("ota sign: --key: %v", err)
	}
	priv, err := bundle.ParsePrivateKeyPEM(keyPEM)
	clear(keyPEM)
	if err != nil {
		return usageErrorf("ota sign: --key %s: %v", *keyFile, err)
	}
	defer clear(priv)
	m, err := bundle.Inspect(path)
	if err != nil {
		return usageErrorf("ota sign: %s is not a bundle to sign: %v", path, err)
	}
	f, err := os.Open(path)
	if err != nil {
		return usageErrorf("ota sign: %v", err)
	}
	defer f.Close()
	sigJSON, err := bundle.Sign(priv, f)
	if err != nil {
		return failf("ota sign: %v", err)
	}
	if err := writeFileAtomic(*out, sigJSON, 0o644); err != nil {
		return failf("ota sign: %v", err)
	}
	sig, err := bundle.ParseSignature(sigJSON)
	if err != nil {
		return failf("ota sign: %v", err)
	}
	if a.g.json {
		return a.printJSON(otaSignJSON{SignatureFile: *out, Signature: sig})
	}
	_, err = fmt.Fprintf(a.stdout, "signed %s (version %s for %s/%s, %d bytes, sha256 %s) with key %s\nwrote %s\n",
		path, m.Version, m.OS, m.Arch, sig.Size, sig.SHA256, sig.KeyID, *out)
	return err
}

// repeated is a flag that may be given more than once.
type repeated []string

func (r *repeated) String() string     { return strings.Join(*r, " ") }
func (r *repeated) Set(v string) error { *r = append(*r, v); return nil }

type otaVerifyJSON struct {
	Bundle   string          `json:"bundle"`
	KeyID    string          `json:"keyId"`
	Size     int64           `json:"size"`
	SHA256   string          `json:"sha256"`
	Manifest bundle.Manifest `json:"manifest"`
}

func cmdOtaVerify(a *app, args []string) error {
	fs := a.flags()
	sigFile := fs.String("sig", "", "the signature `FILE` (default BUNDLE.sig)")
	var pubFiles, trustedKeys repeated
	fs.Var(&pubFiles, "pub", "trust the public keys in `FILE` (PREFIX.pub; one a line; repeatable)")
	fs.Var(&trustedKeys, "trusted", "trust public `KEY` ed25519:BASE64 (repeatable)")
	arch := fs.String("arch", "", "also require the bundle to be for `ARCH` (GOARCH, e.g. arm64)")
	goos := fs.String("os", "linux", "the `OS` --arch goes with")
	pos, err := a.parse(fs, args, 1, 1)
	if err != nil {
		return err
	}
	path := pos[0]
	if *sigFile == "" {
		*sigFile = path + ".sig"
	}
	var trusted []ed25519.PublicKey
	for _, p := range pubFiles {
		b, err := os.ReadFile(p)
		if err != nil {
			return usageErrorf("ota verify: --pub: %v", err)
		}
		keys, err := bundle.ParsePublicKeys(string(b))
		if err != nil {
			return usageErrorf("ota verify: --pub %s: %v", p, err)
		}
		trusted = append(trusted, keys...)
	}
	for _, s := range trustedKeys {
		k, err := bundle.ParsePublicKey(s)
		if err != nil {
			return usageErrorf("ota verify: --trusted: %v", err)
		}
		trusted = append(trusted, k)
	}
	if len(trusted) == 0 {
		return usageErrorf("ota verify: no trusted key: give --pub FILE or --trusted ed25519:BASE64")
	}
	if _, err := os.Stat(path); err != nil {
		return usageErrorf("ota verify: %v", err)
	}
	sigJSON, err := os.ReadFile(*sigFile)
	if err != nil {
		return usageErrorf("ota verify: signature: %v (give --sig FILE)", err)
	}
	sig, err := bundle.ParseSignature(sigJSON)
	if err != nil {
		return failf("ota verify: %s: %v", *sigFile, err)
	}
	m, err := bundle.Open(path, sig, trusted)
	if err != nil {
		return failf("ota verify: %s: %v", path, err)
	}
	if *arch != "" {
		if err := bundle.CheckPlatform(m, *goos, *arch); err != nil {
			return failf("ota verify: %s: %v", path, err)
		}
	}
	if a.g.json {
		return a.printJSON(otaVerifyJSON{Bundle: path, KeyID: sig.KeyID, Size: sig.Size, SHA256: sig.SHA256, Manifest: m})
	}
	fmt.Fprintf(a.stdout, "OK: %s is signed by trusted key %s\nversion:  %s\nplatform: %s/%s\ncreated:  %s\nsize:     %s (%d bytes), sha256 %s\n",
		path, sig.KeyID, m.Version, m.OS, m.Arch, m.Created.Format(time.RFC3339), humanBytes(uint64(sig.Size)), sig.Size, sig.SHA256)
	return printManifestFiles(a.stdout, m)
}
