// Package bundle is the over-the-air update bundle of an Evergreen core: a
// tar.gz of the core's programs (ggd, ggctl, ggd-containerd) led by a
// manifest that names the version, the platform, and the size, sha256 and
// mode of every file; and its detached ed25519 signature (BUNDLE.sig), which
// signs the whole file's sha256 and size.
//
// Nothing in a bundle is believed before its signature is. Open hashes the
// file, checks the signature against the trusted keys, and only then reads
// the manifest and checks every file against it; Extract checks every file
// again as it writes it. Each way a bundle can be wrong has its own error
// (ErrBadSignature, ErrUnknownKey, ErrHashMismatch, ErrTruncated,
// ErrWrongArch, ErrBadManifest) for errors.Is. docs/ota.md describes the
// format.
package bundle

import (
	"archive/tar"
	"bufio"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"
)

// ManifestName is the bundle's first entry, and the copy Extract leaves in
// the directory it fills.
const ManifestName = "manifest.json"

// Format is the manifest and signature format this package writes and the
// only one it reads.
const Format = 1

// Bounds on what a bundle may hold, checked before anything is written:
// a bundle is read on a small gateway, and a hostile one must not fill its
// disk or memory.
const (
	MaxFiles         = 32
	MaxFileSize      = 512 << 20 // bytes of one file
	MaxManifestSize  = 64 << 10
	MaxSignatureSize = 4 << 10
	maxNameLen       = 64
)

// The ways a bundle is refused. Every error of Open, Extract, Installed,
// VerifySignature, ParseSignature and CheckPlatform about the bundle itself
// wraps exactly one of them; the text after it says what was found.
var (
	// ErrBadSignature: the signature file is malformed, or its signature
	// does not verify under the key it names.
	ErrBadSignature = errors.New("bad signature")
	// ErrUnknownKey: the signature names a key that is not trusted.
	ErrUnknownKey = errors.New("unknown signing key")
	// ErrHashMismatch: the bundle's sha256 or size is not the signed one,
	// or a file is not the one its manifest describes.
	ErrHashMismatch = errors.New("hash mismatch")
	// ErrTruncated: the bundle is shorter than the signed size, or its
	// gzip or tar stream ends early (an interrupted download).
	ErrTruncated = errors.New("truncated bundle")
	// ErrWrongArch: the bundle is for another OS or architecture.
	ErrWrongArch = errors.New("wrong architecture")
	// ErrBadManifest: the manifest is missing, of an unknown format, or
	// invalid; or an entry escapes the bundle, is a link, a device or a
	// directory, appears twice, is not in the manifest, or is too large.
	ErrBadManifest = errors.New("bad manifest")
)

// File is one file of a bundle as its manifest describes it.
type File struct {
	// Path is a plain file name ("ggd"): bundles are flat.
	Path string `json:"path"`
	Size int64  `json:"size"`
	// SHA256 is the hex of the file's sha256, lower case.
	SHA256 string `json:"sha256"`
	// Mode holds the permission bits Extract gives the file: 0755 for a
	// program, 0644 otherwise.
	Mode uint32 `json:"mode"`
}

// Manifest is a bundle's first entry, manifest.json.
type Manifest struct {
	Format  int       `json:"format"`
	Version string    `json:"version"`
	OS      string    `json:"os"`
	Arch    string    `json:"arch"`
	Created time.Time `json:"created"`
	Files   []File    `json:"files"`
}

// File returns the manifest's entry for path.
func (m Manifest) File(path string) (File, bool) {
	for _, f := range m.Files {
		if f.Path == path {
			return f, true
		}
	}
	return File{}, false
}

// Equal says whether m and o describe the same bundle.
func (m Manifest) Equal(o Manifest) bool {
	return m.Format == o.Format && m.Version == o.Version && m.OS == o.OS && m.Arch == o.Arch &&
		m.Created.Equal(o.Created) && slices.Equal(m.Files, o.Files)
}

// Validate checks what Open and Extract rely on: format 1, a version that
// is safe as a directory name, a platform, and between 1 and MaxFiles
// files with plain, distinct names, sizes within MaxFileSize, a sha256 and
// permission bits only. The error wraps ErrBadManifest.
func (m Manifest) Validate() error {
	if m.Format != Format {
		return fmt.Errorf("%w: format %d, this core reads format %d", ErrBadManifest, m.Format, Format)
	}
	if err := ValidVersionName(m.Version); err != nil {
		return fmt.Errorf("%w: %v", ErrBadManifest, err)
	}
	if !validToken(m.OS) || !validToken(m.Arch) {
		return fmt.Errorf("%w: platform %q/%q is not an OS/architecture pair like linux/arm64", ErrBadManifest, m.OS, m.Arch)
	}
	if len(m.Files) == 0 {
		return fmt.Errorf("%w: it lists no files", ErrBadManifest)
	}
	if len(m.Files) > MaxFiles {
		return fmt.Errorf("%w: it lists %d files, the limit is %d", ErrBadManifest, len(m.Files), MaxFiles)
	}
	seen := make(map[string]bool, len(m.Files))
	for _, f := range m.Files {
		if err := checkName(f.Path); err != nil {
			return err
		}
		if seen[f.Path] {
			return fmt.Errorf("%w: %s is listed twice (duplicate)", ErrBadManifest, f.Path)
		}
		seen[f.Path] = true
		if f.Size < 0 || f.Size > MaxFileSize {
			return fmt.Errorf("%w: %s is %d bytes, the limit is %d (size cap)", ErrBadManifest, f.Path, f.Size, MaxFileSize)
		}
		if !isHex(f.SHA256, sha256.Size*2) {
			return fmt.Errorf("%w: %s: sha256 %q is not 64 lower-case hex digits", ErrBadManifest, f.Path, f.SHA256)
		}
		if f.Mode&^0o777 != 0 || f.Mode&0o400 == 0 {
			return fmt.Errorf("%w: %s: mode %#o is not permission bits readable by the owner", ErrBadManifest, f.Path, f.Mode)
		}
	}
	return nil
}

// ValidVersionName checks that v can name a version: 1 to 64 letters,
// digits, '.', '_', '+' or '-', starting with a letter or digit. It need not
// be ordered (see CompareVersions); it must be safe as a directory name.
func ValidVersionName(v string) error {
	if !validName(v) {
		return fmt.Errorf("version %q is not 1 to %d letters, digits, '.', '_', '+' or '-' starting with a letter or digit", v, maxNameLen)
	}
	return nil
}

// validName: what a version or a file may be called. No '/' and no leading
// '.', so never "..", a path or a hidden file.
func validName(s string) bool {
	if s == "" || len(s) > maxNameLen || !isAlnum(s[0]) {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !isAlnum(c) && c != '.' && c != '_' && c != '+' && c != '-' {
			return false
		}
	}
	return true
}

// checkName explains why name cannot be a bundle's file, in the words of
// the threat: a path escape is worse than an odd name.
func checkName(name string) error {
	switch {
	case name == ManifestName:
		return fmt.Errorf("%w: %s names the manifest itself", ErrBadManifest, name)
	case strings.ContainsAny(name, `/\`) || name == "." || name == "..":
		return fmt.Errorf("%w: %q is a path, not a file name (path escape)", ErrBadManifest, name)
	case !validName(name):
		return fmt.Errorf("%w: %q is not a file name of 1 to %d letters, digits, '.', '_', '+' or '-' starting with a letter or digit", ErrBadManifest, name, maxNameLen)
	}
	return nil
}

func isAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

// validToken: a GOOS or GOARCH value.
func validToken(s string) bool {
	if s == "" || len(s) > 16 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

func isHex(s string, n int) bool {
	if len(s) != n {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// CheckPlatform refuses a bundle made for another machine.
func CheckPlatform(m Manifest, goos, goarch string) error {
	if m.OS != goos || m.Arch != goarch {
		return fmt.Errorf("%w: the bundle is for %s/%s, this core is %s/%s", ErrWrongArch, m.OS, m.Arch, goos, goarch)
	}
	return nil
}

// Build writes a bundle of files (name in the bundle -> path on this host)
// to w: manifest.json first, then the files in name order, every entry
// stamped with the manifest's creation time, so that the same files make
// the same bundle. See BuildAt.
func Build(w io.Writer, version, goos, goarch string, files map[string]string) (Manifest, error) {
	return BuildAt(w, version, goos, goarch, files, time.Now())
}

// BuildAt is Build with the creation time given (reproducible builds pass
// the commit's time, SOURCE_DATE_EPOCH). Names must be plain file names;
// paths must be regular files of at most MaxFileSize bytes. A file with any
// execute bit is 0755 in the bundle, any other 0644. Input errors (a name,
// version or platform that is not valid, too many or too large files) wrap
// ErrBadManifest; a file that cannot be read returns the os error.
func BuildAt(w io.Writer, version, goos, goarch string, files map[string]string, created time.Time) (Manifest, error) {
	m := Manifest{Format: Format, Version: version, OS: goos, Arch: goarch, Created: created.UTC().Truncate(time.Second)}
	names := make([]string, 0, len(files))
	for name := range files {
		if err := checkName(name); err != nil {
			return Manifest{}, err
		}
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		f, err := describeFile(name, files[name])
		if err != nil {
			return Manifest{}, err
		}
		m.Files = append(m.Files, f)
	}
	if err := m.Validate(); err != nil {
		return Manifest{}, err
	}
	mj, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return Manifest{}, err
	}
	mj = append(mj, '\n')

	gz, err := gzip.NewWriterLevel(w, gzip.DefaultCompression) // level 9 saves 0.3% of a release bundle at 4 times the time
	if err != nil {
		return Manifest{}, err
	}
	tw := tar.NewWriter(gz)
	header := func(name string, size int64, mode uint32) *tar.Header {
		return &tar.Header{Typeflag: tar.TypeReg, Name: name, Size: size, Mode: int64(mode), ModTime: m.Created, Format: tar.FormatUSTAR}
	}
	if err := tw.WriteHeader(header(ManifestName, int64(len(mj)), 0o644)); err != nil {
		return Manifest{}, err
	}
	if _, err := tw.Write(mj); err != nil {
		return Manifest{}, err
	}
	for _, f := range m.Files {
		if err := tw.WriteHeader(header(f.Path, f.Size, f.Mode)); err != nil {
			return Manifest{}, err
		}
		if err := copyUnchanged(tw, files[f.Path], f); err != nil {
			return Manifest{}, err
		}
	}
	if err := tw.Close(); err != nil {
		return Manifest{}, err
	}
	if err := gz.Close(); err != nil {
		return Manifest{}, err
	}
	return m, nil
}

// describeFile is the manifest entry of host file path.
func describeFile(name, path string) (File, error) {
	// Stat before opening: opening a FIFO would block.
	fi, err := os.Stat(path)
	if err != nil {
		return File{}, err
	}
	if !fi.Mode().IsRegular() {
		return File{}, fmt.Errorf("%w: %s (%s) is not a regular file", ErrBadManifest, name, path)
	}
	if fi.Size() > MaxFileSize {
		return File{}, fmt.Errorf("%w: %s (%s) is %d bytes, the limit is %d (size cap)", ErrBadManifest, name, path, fi.Size(), MaxFileSize)
	}
	f, err := os.Open(path)
	if err != nil {
		return File{}, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return File{}, fmt.Errorf("read %s: %w", path, err)
	}
	mode := uint32(0o644)
	if fi.Mode()&0o111 != 0 {
		mode = 0o755
	}
	return File{Path: name, Size: n, SHA256: hex.EncodeToString(h.Sum(nil)), Mode: mode}, nil
}

// copyUnchanged copies path into w, failing when it is no longer the file
// the manifest describes (rebuilt while bundling).
func copyUnchanged(w io.Writer, path string, want File) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(w, h), io.LimitReader(bufio.NewReader(f), want.Size))
	if err != nil {
		return fmt.Errorf("read %s: %w", path, err)
	}
	if n != want.Size || hex.EncodeToString(h.Sum(nil)) != want.SHA256 {
		return fmt.Errorf("%s changed while it was being bundled", path)
	}
	return nil
}
