package bundle

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/flate"
	"compress/gzip"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// Open checks the bundle at bundlePath and returns its manifest: the whole
// file's sha256 and size against sig, sig against the trusted keys, then
// the manifest and every file against it. Nothing of the file is parsed
// before the signature holds. The file is read twice (hash, then content)
// and refused when it changed in between.
func Open(bundlePath string, sig Signature, trusted []ed25519.PublicKey) (Manifest, error) {
	f, err := openRegular(bundlePath)
	if err != nil {
		return Manifest{}, err
	}
	defer f.Close()
	sum, n, err := hashAll(f)
	if err != nil {
		return Manifest{}, fmt.Errorf("read %s: %w", bundlePath, err)
	}
	if err := VerifySignature(sig, trusted, sum, n); err != nil {
		return Manifest{}, err
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return Manifest{}, err
	}
	h := &countingHash{Hash: sha256.New()}
	tee := io.TeeReader(f, h)
	m, err := walk(bufio.NewReaderSize(tee, 64<<10), nil, nil)
	if err != nil {
		return Manifest{}, err
	}
	if _, err := io.Copy(io.Discard, tee); err != nil {
		return Manifest{}, fmt.Errorf("read %s: %w", bundlePath, err)
	}
	if h.n != n || hex.EncodeToString(h.Sum(nil)) != sum {
		return Manifest{}, fmt.Errorf("%w: %s changed while it was being checked", ErrHashMismatch, bundlePath)
	}
	return m, nil
}

// Inspect checks a bundle's structure and every file against its own
// manifest, without any signature: for the tools that make and sign
// bundles, never to decide whether to install one (use Open).
func Inspect(bundlePath string) (Manifest, error) {
	f, err := openRegular(bundlePath)
	if err != nil {
		return Manifest{}, err
	}
	defer f.Close()
	return walk(bufio.NewReaderSize(f, 64<<10), nil, nil)
}

// Extract writes the files of the bundle at bundlePath into dir, as m (the
// manifest Open returned) describes them: each with its mode, its hash
// checked as it is written, fsynced; then a copy of the manifest
// (dir/manifest.json, written last: its presence says the extraction
// finished), then dir itself and its parent are fsynced. dir must not exist
// or be empty; its parent is created when missing. On any error dir is
// removed, unless it held files before (then Extract refuses and touches
// nothing). The bundle must still be the one Open checked: a manifest that
// differs is ErrHashMismatch, as is any file that does.
func Extract(bundlePath, dir string, m Manifest) (err error) {
	if err := m.Validate(); err != nil {
		return err
	}
	if err := prepareDir(dir); err != nil {
		return err
	}
	defer func() {
		if err != nil {
			os.RemoveAll(dir)
		}
	}()
	f, err := openRegular(bundlePath)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = walk(bufio.NewReaderSize(f, 64<<10), &m, func(file File, content io.Reader) error {
		return writeFile(filepath.Join(dir, file.Path), file.Mode, content)
	})
	if err != nil {
		return err
	}
	mj, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	tmp := filepath.Join(dir, "."+ManifestName+".tmp")
	if err := writeFile(tmp, 0o644, bytes.NewReader(append(mj, '\n'))); err != nil {
		return err
	}
	if err := os.Rename(tmp, filepath.Join(dir, ManifestName)); err != nil {
		return err
	}
	if err := syncDir(dir); err != nil {
		return err
	}
	return syncDir(filepath.Dir(dir))
}

// Installed reads the manifest Extract left in dir and checks every file
// against it (size, sha256, mode), and that dir holds nothing else: whether
// dir is a complete, intact extraction. A missing manifest or file is
// ErrTruncated (an extraction cut short), a changed file ErrHashMismatch,
// an extra entry ErrBadManifest.
func Installed(dir string) (Manifest, error) {
	b, err := os.ReadFile(filepath.Join(dir, ManifestName))
	if errors.Is(err, fs.ErrNotExist) {
		return Manifest{}, fmt.Errorf("%w: %s has no %s: its extraction did not finish", ErrTruncated, dir, ManifestName)
	}
	if err != nil {
		return Manifest{}, err
	}
	m, err := parseManifest(b)
	if err != nil {
		return Manifest{}, err
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return Manifest{}, err
	}
	for _, e := range entries {
		if _, ok := m.File(e.Name()); !ok && e.Name() != ManifestName {
			return Manifest{}, fmt.Errorf("%w: %s holds %s, which the manifest does not list (extra file)", ErrBadManifest, dir, e.Name())
		}
	}
	for _, want := range m.Files {
		p := filepath.Join(dir, want.Path)
		fi, err := os.Lstat(p)
		if errors.Is(err, fs.ErrNotExist) {
			return Manifest{}, fmt.Errorf("%w: %s lacks %s", ErrTruncated, dir, want.Path)
		}
		if err != nil {
			return Manifest{}, err
		}
		if !fi.Mode().IsRegular() {
			return Manifest{}, fmt.Errorf("%w: %s is not a regular file", ErrBadManifest, p)
		}
		if uint32(fi.Mode().Perm()) != want.Mode {
			return Manifest{}, fmt.Errorf("%w: %s has mode %#o, the manifest says %#o", ErrHashMismatch, p, fi.Mode().Perm(), want.Mode)
		}
		f, err := os.Open(p)
		if err != nil {
			return Manifest{}, err
		}
		sum, n, err := hashAll(f)
		f.Close()
		if err != nil {
			return Manifest{}, fmt.Errorf("read %s: %w", p, err)
		}
		if n != want.Size || sum != want.SHA256 {
			return Manifest{}, fmt.Errorf("%w: %s is %d bytes with sha256 %s, the manifest says %d bytes with %s", ErrHashMismatch, p, n, sum, want.Size, want.SHA256)
		}
	}
	return m, nil
}

// walk reads a bundle stream: the manifest first (which must equal *want
// when want is set), then every file, each checked against the manifest;
// content gets the bytes of each file as they are hashed. Every error
// wraps one of the package's errors, or is an I/O error of r or content.
func walk(r io.Reader, want *Manifest, content func(File, io.Reader) error) (Manifest, error) {
	// gzip reads no further than its stream's end from a ByteReader, so
	// what follows it can be told apart.
	br, ok := r.(*bufio.Reader)
	if !ok {
		br = bufio.NewReader(r)
	}
	gz, err := gzip.NewReader(br)
	if err != nil {
		return Manifest{}, streamError("gzip header", err)
	}
	gz.Multistream(false)
	tr := tar.NewReader(gz)
	hdr, err := tr.Next()
	if err == io.EOF {
		return Manifest{}, fmt.Errorf("%w: the bundle is empty: no %s", ErrBadManifest, ManifestName)
	}
	if err != nil {
		return Manifest{}, streamError("first entry", err)
	}
	if hdr.Name != ManifestName {
		return Manifest{}, fmt.Errorf("%w: the first entry is %q, not %s", ErrBadManifest, hdr.Name, ManifestName)
	}
	if err := checkEntryType(hdr); err != nil {
		return Manifest{}, err
	}
	if hdr.Size > MaxManifestSize {
		return Manifest{}, fmt.Errorf("%w: %s is %d bytes, the limit is %d", ErrBadManifest, ManifestName, hdr.Size, MaxManifestSize)
	}
	mj, err := io.ReadAll(tr)
	if err != nil {
		return Manifest{}, streamError(ManifestName, err)
	}
	m, err := parseManifest(mj)
	if err != nil {
		return Manifest{}, err
	}
	if want != nil && !m.Equal(*want) {
		return Manifest{}, fmt.Errorf("%w: the bundle's manifest is not the one that was verified (the file changed)", ErrHashMismatch)
	}
	seen := make(map[string]bool, len(m.Files))
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return Manifest{}, streamError("entry header", err)
		}
		f, err := checkEntry(m, hdr, seen)
		if err != nil {
			return Manifest{}, err
		}
		h := sha256.New()
		body := io.TeeReader(tr, h)
		if content != nil {
			if err := content(f, body); err != nil {
				return Manifest{}, streamOrIOError(f.Path, err)
			}
		}
		// Whatever content left unread is hashed too.
		if _, err := io.Copy(io.Discard, body); err != nil {
			return Manifest{}, streamError(f.Path, err)
		}
		if sum := hex.EncodeToString(h.Sum(nil)); sum != f.SHA256 {
			return Manifest{}, fmt.Errorf("%w: %s has sha256 %s, the manifest says %s", ErrHashMismatch, f.Path, sum, f.SHA256)
		}
	}
	for _, f := range m.Files {
		if !seen[f.Path] {
			return Manifest{}, fmt.Errorf("%w: the manifest lists %s, the bundle lacks it", ErrBadManifest, f.Path)
		}
	}
	// Read gzip to its end: that is where its checksum is checked. The
	// tar writer pads with zeros; anything else is smuggled data.
	var tail nonZero
	if _, err := io.Copy(&tail, gz); err != nil {
		return Manifest{}, streamError("end of the bundle", err)
	}
	if tail {
		return Manifest{}, fmt.Errorf("%w: data after the last entry", ErrBadManifest)
	}
	if _, err := br.ReadByte(); err != io.EOF {
		if err != nil {
			return Manifest{}, streamError("end of the bundle", err)
		}
		return Manifest{}, fmt.Errorf("%w: data after the end of the gzip stream", ErrBadManifest)
	}
	return m, nil
}

// checkEntry checks one tar entry after the manifest and returns the
// manifest's file for it.
func checkEntry(m Manifest, hdr *tar.Header, seen map[string]bool) (File, error) {
	if err := checkName(hdr.Name); err != nil {
		if hdr.Name == ManifestName {
			return File{}, fmt.Errorf("%w: a second %s (duplicate)", ErrBadManifest, ManifestName)
		}
		return File{}, fmt.Errorf("entry: %w", err)
	}
	if err := checkEntryType(hdr); err != nil {
		return File{}, err
	}
	if seen[hdr.Name] {
		return File{}, fmt.Errorf("%w: %s appears twice (duplicate)", ErrBadManifest, hdr.Name)
	}
	seen[hdr.Name] = true
	f, ok := m.File(hdr.Name)
	if !ok {
		return File{}, fmt.Errorf("%w: %s is not in the manifest (extra file)", ErrBadManifest, hdr.Name)
	}
	if hdr.Size != f.Size {
		return File{}, fmt.Errorf("%w: %s is %d bytes, the manifest says %d", ErrHashMismatch, hdr.Name, hdr.Size, f.Size)
	}
	return f, nil
}

func checkEntryType(hdr *tar.Header) error {
	switch hdr.Typeflag {
	case tar.TypeReg:
		return nil
	case tar.TypeSymlink, tar.TypeLink:
		return fmt.Errorf("%w: %s is a link (to %q)", ErrBadManifest, hdr.Name, hdr.Linkname)
	case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
		return fmt.Errorf("%w: %s is a device or a pipe", ErrBadManifest, hdr.Name)
	case tar.TypeDir:
		return fmt.Errorf("%w: %s is a directory", ErrBadManifest, hdr.Name)
	}
	return fmt.Errorf("%w: %s is a tar entry of type %q, not a regular file", ErrBadManifest, hdr.Name, hdr.Typeflag)
}

// parseManifest decodes and validates a manifest. The format is read
// first, so that a newer format is reported as such rather than as an
// unknown field.
func parseManifest(b []byte) (Manifest, error) {
	var probe struct {
		Format int `json:"format"`
	}
	if err := json.Unmarshal(b, &probe); err != nil {
		return Manifest{}, fmt.Errorf("%w: %s is not JSON: %v", ErrBadManifest, ManifestName, err)
	}
	if probe.Format != Format {
		return Manifest{}, fmt.Errorf("%w: format %d, this core reads format %d", ErrBadManifest, probe.Format, Format)
	}
	var m Manifest
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		return Manifest{}, fmt.Errorf("%w: %s: %v", ErrBadManifest, ManifestName, err)
	}
	if dec.More() {
		return Manifest{}, fmt.Errorf("%w: data after the JSON object of %s", ErrBadManifest, ManifestName)
	}
	return m, m.Validate()
}

// streamError names what a failed read of the gzip or tar stream means.
func streamError(what string, err error) error {
	var corrupt flate.CorruptInputError
	switch {
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return fmt.Errorf("%w: %s: the data ends early", ErrTruncated, what)
	case errors.Is(err, gzip.ErrChecksum):
		return fmt.Errorf("%w: %s: the gzip checksum does not match", ErrHashMismatch, what)
	case errors.Is(err, tar.ErrInsecurePath):
		return fmt.Errorf("%w: %s: an entry's name is a path (path escape)", ErrBadManifest, what)
	case errors.Is(err, gzip.ErrHeader), errors.Is(err, tar.ErrHeader), errors.As(err, &corrupt):
		return fmt.Errorf("%w: %s: not a tar.gz bundle: %v", ErrBadManifest, what, err)
	}
	return fmt.Errorf("%s: %w", what, err)
}

// streamOrIOError is streamError for the stream's errors and the write
// error itself otherwise (a full disk is not the bundle's fault).
func streamOrIOError(what string, err error) error {
	var corrupt flate.CorruptInputError
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, gzip.ErrChecksum) || errors.Is(err, tar.ErrHeader) ||
		errors.Is(err, gzip.ErrHeader) || errors.As(err, &corrupt) {
		return streamError(what, err)
	}
	return err
}

// nonZero is an io.Writer that remembers whether it saw a non-zero byte.
type nonZero bool

func (z *nonZero) Write(p []byte) (int, error) {
	for _, c := range p {
		if c != 0 {
			*z = true
			break
		}
	}
	return len(p), nil
}

type countingHash struct {
	hash.Hash
	n int64
}

func (c *countingHash) Write(p []byte) (int, error) {
	c.n += int64(len(p))
	return c.Hash.Write(p)
}

func hashAll(r io.Reader) (string, int64, error) {
	h := sha256.New()
	n, err := io.Copy(h, r)
	if err != nil {
		return "", 0, err
	}
	return hex.EncodeToString(h.Sum(nil)), n, nil
}

// openRegular opens a bundle, refusing what is not a regular file (a FIFO
// would hand out different bytes on each read).
func openRegular(path string) (*os.File, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", path)
	}
	return os.Open(path)
}

// prepareDir makes dir exist and be empty, or refuses.
func prepareDir(dir string) error {
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return err
	}
	err := os.Mkdir(dir, 0o755)
	if err == nil || !errors.Is(err, fs.ErrExist) {
		return err
	}
	fi, err := os.Lstat(dir)
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return fmt.Errorf("extract into %s: %w, and not as a directory", dir, fs.ErrExist)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	if len(entries) > 0 {
		return fmt.Errorf("extract into %s: the directory is not empty (it holds %s)", dir, entries[0].Name())
	}
	return nil
}

// writeFile creates path (which must not exist) with mode, whatever the
// umask, from r, and fsyncs it.
func writeFile(path string, mode uint32, r io.Reader) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	_, err = io.Copy(f, r)
	if err == nil {
		err = f.Chmod(fs.FileMode(mode))
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
