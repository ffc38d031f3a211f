package artifact

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/evergreen-edge/evergreen/services/kit/atomicfile"
	"github.com/evergreen-edge/evergreen/services/kit/errdefs"
)

// Unpack limits of UnpackOptions that set none.
const (
	DefaultMaxTotalBytes int64 = 4 << 30
	DefaultMaxFileBytes  int64 = 2 << 30
	DefaultMaxEntries          = 10000
)

// Format is an artifact's format.
type Format string

const (
	FormatDetect Format = ""       // tar.gz, tar or zip, told by magic bytes
	FormatTarGz  Format = "tar.gz" // also .tgz
	FormatTar    Format = "tar"
	FormatZip    Format = "zip"
	FormatPlain  Format = "plain" // one file copied as is, never detected
)

// Permission is ResourceDownloadOwnerSetting.GroupPermission.
type Permission string

const (
	ReadOnly  Permission = "ro"
	ReadWrite Permission = "rw"
)

// Owner is ResourceDownloadOwnerSetting: the group that owns the unpacked
// files and what it may do with them.
type Owner struct {
	GID        int
	Permission Permission
}

// UnpackOptions tune Unpack.
type UnpackOptions struct {
	// Format is what the artifact must be; FormatDetect accepts any archive.
	Format Format
	// Name is the file's name inside dest for FormatPlain (one path
	// element, e.g. the last one of the URL).
	Name string
	// Executable marks a FormatPlain file as a program. Archive entries
	// keep being executable when their mode says so.
	Executable bool
	// Owner sets the files' group and permissions; nil keeps the process's
	// group with world-readable modes.
	Owner *Owner

	MaxTotalBytes int64 // bytes of all files (0 = DefaultMaxTotalBytes)
	MaxFileBytes  int64 // bytes of one file (0 = DefaultMaxFileBytes)
	MaxEntries    int   // entries of any kind (0 = DefaultMaxEntries)
}

// modes returns the permission bits of directories, files and executable
// files. Without an owner everybody may read; with one, the process's user
// and the group share the permission and others get nothing.
func (o *Owner) modes() (dir, file, exec fs.FileMode) {
	switch {
	case o == nil:
		return 0o755, 0o644, 0o755
	case o.Permission == ReadWrite:
		return 0o770, 0o660, 0o770
	default:
		return 0o550, 0o440, 0o550
	}
}

// LookupGroup resolves a GroupOwner, a group name or a numeric GID.
func LookupGroup(name string) (int, error) {
	if gid, err := strconv.Atoi(name); err == nil && gid >= 0 {
		return gid, nil
	}
	g, err := user.LookupGroup(name)
	if err != nil {
		return 0, fmt.Errorf("group owner %q: %v: %w", name, err, errdefs.ErrInvalidArgument)
	}
	return strconv.Atoi(g.Gid)
}

// Unpack puts the artifact at archive into the directory dest, replacing
// what dest held. It builds the tree in a staging directory beside dest
// (same filesystem), fsyncs it and renames it into place, so dest holds
// either its old content or all of the new one. On any error the staging
// directory is removed and dest is untouched.
//
// Refused: absolute names, names that leave dest, entries created through a
// symbolic link, symbolic links that resolve outside dest (absolute ones
// included), hard links to anything but a regular file of the archive,
// devices, FIFOs, sockets, duplicate names, truncated or corrupt archives,
// and archives over the limits of opts. Errors name dest and the entry and
// wrap errdefs.ErrInvalidArgument (a bad artifact), ErrResourceExhausted (a
// limit) or ErrPermissionDenied (the group owner).
//
// One Unpack at a time per dest: leftovers of an earlier one cut short (a
// power cut) are removed first.
func Unpack(ctx context.Context, archive, dest string, opts UnpackOptions) (err error) {
	fail := func(kind error, format string, args ...any) error {
		return fmt.Errorf("unpack to %s: %s: %w", dest, fmt.Sprintf(format, args...), kind)
	}
	if !filepath.IsAbs(dest) || filepath.Clean(dest) != dest || dest == "/" {
		return fail(errdefs.ErrInvalidArgument, "destination must be a clean absolute path below /")
	}
	opts, err = opts.check()
	if err != nil {
		return fail(errdefs.ErrInvalidArgument, "%v", err)
	}
	in, err := os.Open(archive)
	if err != nil {
		return fail(errdefs.ErrInternal, "%v", err)
	}
	defer in.Close()
	format := opts.Format
	if format != FormatPlain {
		if format, err = detect(in, opts.Format); err != nil {
			return fail(errdefs.ErrInvalidArgument, "%v", err)
		}
	}

	parent, base := filepath.Dir(dest), filepath.Base(dest)
	created, err := mkdirParents(parent)
	if err != nil {
		return fail(errdefs.ErrInternal, "%v", err)
	}
	removeLeftovers(parent, "."+base+".unpack-")
	staging, err := os.MkdirTemp(parent, "."+base+".unpack-*")
	if err != nil {
		return fail(errdefs.ErrInternal, "%v", err)
	}
	placed := false
	defer func() {
		if err != nil && !placed {
			removeTree(staging)
			if created != "" {
				removeTree(created)
			}
		}
	}()
	root, err := os.OpenRoot(staging)
	if err != nil {
		return fail(errdefs.ErrInternal, "%v", err)
	}
	defer root.Close()

	x := &extractor{
		ctx:   ctx,
		root:  root,
		dest:  dest,
		opts:  opts,
		seen:  map[string]kind{".": kindDir},
		links: map[string]string{},
	}
	src := &ctxReader{ctx: ctx, r: in}
	switch format {
	case FormatTarGz:
		err = x.tarGz(src)
	case FormatTar:
		err = x.tar(src)
	case FormatZip:
		err = x.zip(in)
	case FormatPlain:
		err = x.plain(in, src)
	}
	if err == nil {
		err = x.checkLinks()
	}
	if err == nil {
		err = x.finish()
	}
	if err != nil {
		return err
	}
	root.Close()
	placed, err = place(staging, dest)
	if err != nil {
		return fail(errdefs.ErrInternal, "%v", err)
	}
	return nil
}

func (o UnpackOptions) check() (UnpackOptions, error) {
	switch o.Format {
	case FormatDetect, FormatTarGz, FormatTar, FormatZip:
	case FormatPlain:
		if o.Name == "" || strings.Contains(o.Name, "/") || !filepath.IsLocal(o.Name) {
			return o, fmt.Errorf("plain file name %q must be one path element", o.Name)
		}
	default:
		return o, fmt.Errorf("format %q is not tar.gz, tar, zip or plain", o.Format)
	}
	if o.Owner != nil {
		if o.Owner.GID < 0 {
			return o, fmt.Errorf("group owner %d is not a GID", o.Owner.GID)
		}
		if o.Owner.Permission != ReadOnly && o.Owner.Permission != ReadWrite {
			return o, fmt.Errorf("group permission %q is neither ro nor rw", o.Owner.Permission)
		}
	}
	if o.MaxTotalBytes <= 0 {
		o.MaxTotalBytes = DefaultMaxTotalBytes
	}
	if o.MaxFileBytes <= 0 {
		o.MaxFileBytes = DefaultMaxFileBytes
	}
	if o.MaxEntries <= 0 {
		o.MaxEntries = DefaultMaxEntries
	}
	return o, nil
}

// detect tells the format from the first bytes, whatever the file is named.
func detect(f *os.File, want Format) (Format, error) {
	head := make([]byte, 512)
	n, err := io.ReadFull(f, head)
	if err != nil && err != io.ErrUnexpectedEOF && err != io.EOF {
		return "", err
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return "", err
	}
	head = head[:n]
	var got Format
	switch {
	case bytes.HasPrefix(head, []byte{0x1f, 0x8b}):
		got = FormatTarGz
	case bytes.HasPrefix(head, []byte("PK\x03\x04")), bytes.HasPrefix(head, []byte("PK\x05\x06")):
		got = FormatZip
	case isTar(head):
		got = FormatTar
	default:
		return "", errors.New("artifact is not a tar.gz, tar or zip archive")
	}
	if want != FormatDetect && want != got {
		return "", fmt.Errorf("artifact is a %s archive, not %s", got, want)
	}
	return got, nil
}

// isTar looks for the ustar magic (POSIX, pax and GNU archives).
func isTar(head []byte) bool {
	return len(head) >= 262 && string(head[257:262]) == "ustar"
}

// mkdirParents creates dir and its missing parents and returns the topmost
// one it created ("" when dir existed), to remove on failure.
func mkdirParents(dir string) (string, error) {
	top := ""
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Lstat(d); err == nil {
			break
		} else if !errors.Is(err, fs.ErrNotExist) {
			return "", err
		}
		top = d
		if d == filepath.Dir(d) {
			break
		}
	}
	if top == "" {
		return "", nil
	}
	return top, os.MkdirAll(dir, 0o755)
}

// removeLeftovers removes the staging directories (and old trees set
// aside) of an Unpack cut short.
func removeLeftovers(dir, prefix string) {
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), prefix) {
			removeTree(filepath.Join(dir, e.Name()))
		}
	}
}

// place renames staging to dest. An existing dest is first renamed aside,
// and put back if the second rename fails. Linux renames a directory over
// another only when that one is empty, hence two renames: a power cut
// between them leaves no dest and the old tree in .<base>.unpack-*.old,
// which the next Unpack to dest removes.
func place(staging, dest string) (bool, error) {
	parent := filepath.Dir(dest)
	old := ""
	if _, err := os.Lstat(dest); err == nil {
		old = staging + ".old"
		if err := os.Rename(dest, old); err != nil {
			return false, err
		}
	}
	if err := os.Rename(staging, dest); err != nil {
		if old != "" {
			os.Rename(old, dest)
		}
		return false, err
	}
	if old != "" {
		removeTree(old)
	}
	return true, atomicfile.SyncDir(parent)
}

// removeTree removes p even when read-only directories (ro permission, not
// root) are in the way.
func removeTree(p string) {
	if os.RemoveAll(p) == nil {
		return
	}
	filepath.WalkDir(p, func(q string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			os.Chmod(q, 0o700)
		}
		return nil
	})
	os.RemoveAll(p)
}
