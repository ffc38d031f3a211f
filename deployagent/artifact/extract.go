package artifact

import (
	"archive/tar"
	"archive/zip"
	"bufio"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"github.com/evergreen-edge/evergreen/services/kit/errdefs"
)

// kind is what the extractor created at a path.
type kind uint8

const (
	kindDir kind = iota + 1
	kindFile
	kindExec // an executable file
	kindLink // a symbolic link
)

// extractor creates entries inside the staging root. It records every path
// it creates, so safety checks never depend on what the filesystem says.
type extractor struct {
	ctx     context.Context
	root    *os.Root
	dest    string
	opts    UnpackOptions
	entries int
	total   int64
	seen    map[string]kind   // relative path → what was created there
	links   map[string]string // symbolic link → its target
}

func (x *extractor) refuse(name, format string, args ...any) error {
	return fmt.Errorf("unpack to %s: entry %q: %s: %w", x.dest, name, fmt.Sprintf(format, args...), errdefs.ErrInvalidArgument)
}

func (x *extractor) exhausted(format string, args ...any) error {
	return fmt.Errorf("unpack to %s: %s: %w", x.dest, fmt.Sprintf(format, args...), errdefs.ErrResourceExhausted)
}

// corrupt describes a failure to read the archive (or the caller giving up).
func (x *extractor) corrupt(err error) error {
	if cerr := x.ctx.Err(); cerr != nil {
		return fmt.Errorf("unpack to %s: %w", x.dest, cerr)
	}
	return fmt.Errorf("unpack to %s: archive is truncated or corrupt: %v: %w", x.dest, err, errdefs.ErrInvalidArgument)
}

func (x *extractor) failed(name string, err error) error {
	return fmt.Errorf("unpack to %s: entry %q: %w", x.dest, name, err)
}

// entryPath turns an archive name into a clean relative path.
func entryPath(name string) (string, error) {
	if name == "" {
		return "", errors.New("empty name")
	}
	if path.IsAbs(name) {
		return "", errors.New("absolute path")
	}
	p := path.Clean(name)
	if !filepath.IsLocal(p) {
		return "", errors.New("path escapes the destination")
	}
	return p, nil
}

// begin counts an entry, checks its name and creates its missing parents.
// exists reports a directory entry for a directory already there.
func (x *extractor) begin(name string, dir bool) (rel string, exists bool, err error) {
	x.entries++
	if x.entries > x.opts.MaxEntries {
		return "", false, x.exhausted("archive has more than %d entries", x.opts.MaxEntries)
	}
	rel, err = entryPath(name)
	if err != nil {
		return "", false, x.refuse(name, "%v", err)
	}
	if k, ok := x.seen[rel]; ok {
		if dir && k == kindDir {
			return rel, true, nil
		}
		return "", false, x.refuse(name, "appears twice in the archive")
	}
	for i := range len(rel) {
		if rel[i] != '/' {
			continue
		}
		p := rel[:i]
		switch x.seen[p] {
		case kindDir:
		case 0:
			if err := x.root.Mkdir(p, 0o700); err != nil {
				return "", false, x.failed(name, err)
			}
			x.seen[p] = kindDir
		case kindLink:
			return "", false, x.refuse(name, "path goes through symbolic link %q", p)
		default:
			return "", false, x.refuse(name, "parent %q is a file", p)
		}
	}
	return rel, false, nil
}

func (x *extractor) dir(name string) error {
	rel, exists, err := x.begin(name, true)
	if err != nil || exists {
		return err
	}
	if err := x.root.Mkdir(rel, 0o700); err != nil {
		return x.failed(name, err)
	}
	x.seen[rel] = kindDir
	return nil
}

// file writes one regular file of at most size bytes (what the archive
// declares; the reader may still lie, so the copy is capped too).
func (x *extractor) file(name string, mode fs.FileMode, r io.Reader, size int64) error {
	rel, _, err := x.begin(name, false)
	if err != nil {
		return err
	}
	if rel == "." {
		return x.refuse(name, "not a file name")
	}
	limit := min(x.opts.MaxFileBytes, x.opts.MaxTotalBytes-x.total)
	if size > limit {
		return x.overLimit(name, size)
	}
	f, err := x.root.OpenFile(rel, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return x.failed(name, err)
	}
	defer f.Close()
	k := kindFile
	if mode&0o111 != 0 {
		k = kindExec
	}
	x.seen[rel] = k
	var n int64
	buf := make([]byte, 64<<10)
	for {
		m, rerr := r.Read(buf)
		if int64(m) > limit-n {
			return x.overLimit(name, n+int64(m))
		}
		if _, err := f.Write(buf[:m]); err != nil {
			return x.failed(name, err)
		}
		n += int64(m)
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return x.corrupt(fmt.Errorf("entry %q: %w", name, rerr))
		}
	}
	x.total += n
	if err := f.Sync(); err != nil {
		return x.failed(name, err)
	}
	if err := f.Close(); err != nil {
		return x.failed(name, err)
	}
	return nil
}

func (x *extractor) overLimit(name string, size int64) error {
	if size > x.opts.MaxFileBytes {
		return x.exhausted("entry %q is over the per-file limit of %d bytes", name, x.opts.MaxFileBytes)
	}
	return x.exhausted("archive unpacks to more than %d bytes", x.opts.MaxTotalBytes)
}

func (x *extractor) symlink(name, target string) error {
	rel, _, err := x.begin(name, false)
	if err != nil {
		return err
	}
	if rel == "." {
		return x.refuse(name, "not a file name")
	}
	if target == "" {
		return x.refuse(name, "symbolic link has no target")
	}
	if path.IsAbs(target) {
		return x.refuse(name, "symbolic link to absolute path %q", target)
	}
	// Told early when it is plain to see; checkLinks has the last word.
	if !filepath.IsLocal(path.Join(path.Dir(rel), target)) {
		return x.refuse(name, "symbolic link to %q points outside the destination", target)
	}
	if err := x.root.Symlink(target, rel); err != nil {
		return x.failed(name, err)
	}
	x.seen[rel] = kindLink
	x.links[rel] = target
	return nil
}

func (x *extractor) hardlink(name, target string) error {
	rel, _, err := x.begin(name, false)
	if err != nil {
		return err
	}
	if rel == "." {
		return x.refuse(name, "not a file name")
	}
	t, err := entryPath(target)
	if err != nil {
		return x.refuse(name, "hard link to %q: %v", target, err)
	}
	k := x.seen[t]
	if k != kindFile && k != kindExec {
		return x.refuse(name, "hard link to %q, which is not a regular file earlier in the archive", target)
	}
	if err := x.root.Link(t, rel); err != nil {
		return x.failed(name, err)
	}
	x.seen[rel] = k
	return nil
}

// refuseType refuses an entry that is neither a file, a directory nor a
// link: a device or FIFO in a model would reach the host's hardware.
func (x *extractor) refuseType(name, what string) error {
	return x.refuse(name, "%s entries are not allowed", what)
}

// checkLinks follows every symbolic link through the final tree: a link
// that looked inside when it was created may leave through a link created
// after it (a -> l/.. with l -> . created later).
func (x *extractor) checkLinks() error {
	names := make([]string, 0, len(x.links))
	for l := range x.links {
		names = append(names, l)
	}
	slices.Sort(names)
	for _, l := range names {
		if err := x.resolve(l); err != nil {
			return x.refuse(l, "symbolic link to %q %v", x.links[l], err)
		}
	}
	return nil
}

// resolve walks p through the links created, and fails when it leaves the
// root. Missing parts are taken as they read: nothing else will create them.
func (x *extractor) resolve(p string) error {
	var at []string // resolved components so far
	todo := strings.Split(p, "/")
	hops := 0
	for len(todo) > 0 {
		c := todo[0]
		todo = todo[1:]
		switch c {
		case "", ".":
			continue
		case "..":
			if len(at) == 0 {
				return errors.New("resolves outside the destination")
			}
			at = at[:len(at)-1]
			continue
		}
		if target, ok := x.links[strings.Join(append(at, c), "/")]; ok {
			if hops++; hops > 40 {
				return errors.New("has too many levels of symbolic links")
			}
			todo = append(strings.Split(target, "/"), todo...)
			continue
		}
		at = append(at, c)
	}
	return nil
}

// finish sets owner and modes (last, so that read-only directories do not
// stop the extraction) and makes the tree durable.
func (x *extractor) finish() error {
	dirMode, fileMode, execMode := x.opts.Owner.modes()
	paths := make([]string, 0, len(x.seen))
	for p := range x.seen {
		paths = append(paths, p)
	}
	slices.Sort(paths)
	for _, p := range paths {
		k := x.seen[p]
		if o := x.opts.Owner; o != nil {
			if err := x.root.Lchown(p, -1, o.GID); err != nil {
				if errors.Is(err, fs.ErrPermission) {
					return fmt.Errorf("unpack to %s: cannot give the files to group %d (ggd must run as root or be a member of the group): %w",
						x.dest, o.GID, errdefs.ErrPermissionDenied)
				}
				return x.failed(p, err)
			}
		}
		var err error
		switch k {
		case kindDir:
			err = x.root.Chmod(p, dirMode)
		case kindFile:
			err = x.root.Chmod(p, fileMode)
		case kindExec:
			err = x.root.Chmod(p, execMode)
		}
		if err != nil {
			return x.failed(p, err)
		}
	}
	// Files were synced as written; directories hold the names.
	for _, p := range paths {
		if x.seen[p] != kindDir {
			continue
		}
		d, err := x.root.Open(p)
		if err == nil {
			err = d.Sync()
			d.Close()
		}
		if err != nil {
			return x.failed(p, err)
		}
	}
	return nil
}

// maxTrailer is how much data may follow the end of a gzipped tar archive
// (tar pads to 10 KiB records; more than this is not padding).
const maxTrailer = 1 << 20

func (x *extractor) tarGz(r io.Reader) error {
	gz, err := gzip.NewReader(r)
	if err != nil {
		return x.corrupt(err)
	}
	br := bufio.NewReaderSize(gz, 4096)
	head, err := br.Peek(512)
	if err != nil && err != io.EOF {
		return x.corrupt(err)
	}
	if !isTar(head) {
		return fmt.Errorf("unpack to %s: gzip data is not a tar archive: %w", x.dest, errdefs.ErrInvalidArgument)
	}
	if err := x.tar(br); err != nil {
		return err
	}
	// Read to the gzip trailer: its checksum and length catch a truncated
	// or altered stream after the last entry.
	n, err := io.Copy(io.Discard, io.LimitReader(br, maxTrailer+1))
	if err != nil {
		return x.corrupt(err)
	}
	if n > maxTrailer {
		return fmt.Errorf("unpack to %s: more than %d bytes after the end of the tar archive: %w", x.dest, maxTrailer, errdefs.ErrInvalidArgument)
	}
	return nil
}

func (x *extractor) tar(r io.Reader) error {
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return x.corrupt(err)
		}
		switch h.Typeflag {
		case tar.TypeReg:
			err = x.file(h.Name, h.FileInfo().Mode(), tr, h.Size)
		case tar.TypeDir:
			err = x.dir(h.Name)
		case tar.TypeSymlink:
			err = x.symlink(h.Name, h.Linkname)
		case tar.TypeLink:
			err = x.hardlink(h.Name, h.Linkname)
		case tar.TypeXGlobalHeader:
			// pax comments (git archive writes the commit id): no file.
		case tar.TypeChar:
			err = x.refuseType(h.Name, "character device")
		case tar.TypeBlock:
			err = x.refuseType(h.Name, "block device")
		case tar.TypeFifo:
			err = x.refuseType(h.Name, "named pipe (FIFO)")
		default:
			err = x.refuseType(h.Name, fmt.Sprintf("tar type %q", h.Typeflag))
		}
		if err != nil {
			return err
		}
	}
}

// maxLinkTarget bounds a zip symbolic link's target, stored as its content.
const maxLinkTarget = 4096

func (x *extractor) zip(f *os.File) error {
	st, err := f.Stat()
	if err != nil {
		return x.corrupt(err)
	}
	zr, err := zip.NewReader(f, st.Size())
	if err != nil {
		return x.corrupt(err)
	}
	if len(zr.File) > x.opts.MaxEntries {
		return x.exhausted("archive has %d entries, over the limit of %d", len(zr.File), x.opts.MaxEntries)
	}
	for _, zf := range zr.File {
		if err := x.ctx.Err(); err != nil {
			return x.corrupt(err)
		}
		if err := x.zipEntry(zf); err != nil {
			return err
		}
	}
	return nil
}

func (x *extractor) zipEntry(zf *zip.File) error {
	m := zf.Mode()
	switch {
	case m.IsDir():
		return x.dir(zf.Name)
	case m&fs.ModeSymlink != 0, m.IsRegular():
	case m&fs.ModeCharDevice != 0:
		return x.refuseType(zf.Name, "character device")
	case m&fs.ModeDevice != 0:
		return x.refuseType(zf.Name, "block device")
	case m&fs.ModeNamedPipe != 0:
		return x.refuseType(zf.Name, "named pipe (FIFO)")
	case m&fs.ModeSocket != 0:
		return x.refuseType(zf.Name, "socket")
	default:
		return x.refuseType(zf.Name, "irregular file")
	}
	rc, err := zf.Open()
	if err != nil {
		return x.corrupt(fmt.Errorf("entry %q: %w", zf.Name, err))
	}
	defer rc.Close()
	r := &ctxReader{ctx: x.ctx, r: rc}
	if m&fs.ModeSymlink != 0 {
		target, err := io.ReadAll(io.LimitReader(r, maxLinkTarget+1))
		if err != nil {
			return x.corrupt(fmt.Errorf("entry %q: %w", zf.Name, err))
		}
		if len(target) > maxLinkTarget {
			return x.refuse(zf.Name, "symbolic link target is over %d bytes", maxLinkTarget)
		}
		return x.symlink(zf.Name, string(target))
	}
	size := int64(math.MaxInt64)
	if zf.UncompressedSize64 < math.MaxInt64 {
		size = int64(zf.UncompressedSize64)
	}
	return x.file(zf.Name, m, r, size)
}

// plain copies the artifact as one file.
func (x *extractor) plain(f *os.File, r io.Reader) error {
	st, err := f.Stat()
	if err != nil {
		return x.corrupt(err)
	}
	mode := fs.FileMode(0o644)
	if x.opts.Executable {
		mode = 0o755
	}
	return x.file(x.opts.Name, mode, r, st.Size())
}

// ctxReader stops a read when ctx ends.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (r *ctxReader) Read(p []byte) (int, error) {
	if err := r.ctx.Err(); err != nil {
		return 0, err
	}
	return r.r.Read(p)
}
