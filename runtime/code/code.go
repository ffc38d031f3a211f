// Package code installs a function's code under DIR/functions: a .zip
// deployment package or a directory named by the group's Evergreen block
// (CodeUri, CodeSha256), copied once per content into a directory of its
// own so that a later change of the source never reaches a running
// function, and checked for the handler the runtime will start.
package code

import (
	"archive/zip"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/evergreen-edge/evergreen/services/kit/groupdef"
)

// Limits of a function package (AWS Lambda's: 250 MB unzipped).
const (
	MaxUnpackedBytes = 250 << 20
	MaxFiles         = 20000
)

// Package is an installed function's code.
type Package struct {
	// Dir holds the unpacked code (read-only once installed).
	Dir string
	// Sha256 is the hash of the .zip, or of the directory's files (path,
	// mode and content, in order) for a directory.
	Sha256 string
}

// Source resolves CodeUri to a local path. base is the directory relative
// paths are taken from ("" = relative paths are refused).
func Source(codeURI, base string) (string, error) {
	p := codeURI
	if strings.HasPrefix(codeURI, "file:") {
		u, err := url.Parse(codeURI)
		if err != nil || (u.Host != "" && u.Host != "localhost") || !strings.HasPrefix(u.Path, "/") {
			return "", fmt.Errorf("CodeUri %q: want file:///absolute/path", codeURI)
		}
		p = u.Path
	}
	if !filepath.IsAbs(p) {
		if base == "" {
			return "", fmt.Errorf("CodeUri %q is relative; deploy with ggctl, which resolves it from the group file's directory", codeURI)
		}
		p = filepath.Join(base, p)
	}
	return filepath.Clean(p), nil
}

// Install puts the code of ext into functionsDir/<name>/<sha256> unless it
// is there already, and checks the handler. name is the function's name
// (no slashes).
func Install(functionsDir, name string, ext *groupdef.FunctionExtension, base string) (Package, error) {
	if ext == nil {
		return Package{}, errors.New("no Evergreen block: the runtime does not know the function's code")
	}
	src, err := Source(ext.CodeUri, base)
	if err != nil {
		return Package{}, err
	}
	st, err := os.Stat(src)
	if err != nil {
		return Package{}, fmt.Errorf("CodeUri %q: %w", ext.CodeUri, err)
	}
	var sum string
	if st.IsDir() {
		if sum, err = hashDir(src); err != nil {
			return Package{}, fmt.Errorf("CodeUri %q: %w", ext.CodeUri, err)
		}
	} else {
		if sum, err = hashFile(src); err != nil {
			return Package{}, fmt.Errorf("CodeUri %q: %w", ext.CodeUri, err)
		}
		if ext.CodeSha256 != "" && !strings.EqualFold(ext.CodeSha256, sum) {
			return Package{}, fmt.Errorf("CodeSha256: %s does not match the package (sha256 %s)", ext.CodeSha256, sum)
		}
	}
	dest := filepath.Join(functionsDir, name, sum)
	if _, err := os.Stat(filepath.Join(dest, ".installed")); err == nil {
		return Package{Dir: dest, Sha256: sum}, CheckHandler(dest, ext)
	}
	tmp := dest + ".tmp"
	os.RemoveAll(tmp)
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		return Package{}, err
	}
	if st.IsDir() {
		err = copyDir(src, tmp)
	} else {
		err = unzip(src, tmp)
	}
	if err == nil {
		err = CheckHandler(tmp, ext)
	}
	if err == nil {
		err = os.WriteFile(filepath.Join(tmp, ".installed"), []byte(sum+"\n"), 0o444)
	}
	if err == nil {
		os.RemoveAll(dest)
		err = os.Rename(tmp, dest)
	}
	if err != nil {
		os.RemoveAll(tmp)
		return Package{}, err
	}
	return Package{Dir: dest, Sha256: sum}, nil
}

// CheckHandler says whether dir holds what the runtime will start.
func CheckHandler(dir string, ext *groupdef.FunctionExtension) error {
	h := ext.Handler
	var want string
	switch {
	case strings.HasPrefix(ext.Runtime, "python"):
		i := strings.LastIndex(h, ".")
		if i <= 0 {
			return fmt.Errorf("Handler %q: want module.function", h)
		}
		mod := strings.ReplaceAll(h[:i], ".", "/")
		if _, err := os.Stat(filepath.Join(dir, mod+".py")); err == nil {
			return nil
		}
		if _, err := os.Stat(filepath.Join(dir, mod, "__init__.py")); err == nil {
			return nil
		}
		want = mod + ".py"
	case strings.HasPrefix(ext.Runtime, "nodejs"):
		i := strings.LastIndex(h, ".")
		if i <= 0 {
			return fmt.Errorf("Handler %q: want module.function", h)
		}
		want = h[:i] + ".js"
	case ext.Runtime == "executable" || ext.Runtime == "go":
		want = h
		st, err := os.Stat(filepath.Join(dir, want))
		if err != nil {
			return fmt.Errorf("Handler %q: the package has no such executable", h)
		}
		if st.Mode()&0o111 == 0 {
			return fmt.Errorf("Handler %q: the file is not executable", h)
		}
		return nil
	default:
		return nil
	}
	if _, err := os.Stat(filepath.Join(dir, want)); err != nil {
		return fmt.Errorf("Handler %q: the package has no %s", h, want)
	}
	return nil
}

func hashFile(p string) (string, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func hashDir(dir string) (string, error) {
	h := sha256.New()
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		info, err := d.Info()
		if err != nil {
			return err
		}
		fmt.Fprintf(h, "%s\x00%o\x00", rel, info.Mode())
		if info.Mode().IsRegular() {
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			_, err = io.Copy(h, f)
			f.Close()
			return err
		}
		return nil
	})
	return hex.EncodeToString(h.Sum(nil)), err
}

// copyDir copies regular files and directories; symlinks and other files
// are refused (they could reach outside the package).
func copyDir(src, dst string) error {
	var total int64
	n := 0
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		target := filepath.Join(dst, rel)
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			return os.MkdirAll(target, 0o755)
		case info.Mode().IsRegular():
			if n++; n > MaxFiles {
				return fmt.Errorf("the code has more than %d files", MaxFiles)
			}
			if total += info.Size(); total > MaxUnpackedBytes {
				return fmt.Errorf("the code is over %d MB", MaxUnpackedBytes>>20)
			}
			return copyFile(p, target, info.Mode().Perm())
		default:
			return fmt.Errorf("%s: only regular files and directories are allowed in function code (%s)", rel, info.Mode().Type())
		}
	})
}

func copyFile(src, dst string, perm fs.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	return writeFile(dst, in, perm, -1)
}

func writeFile(dst string, r io.Reader, perm fs.FileMode, limit int64) error {
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm&0o755|0o444)
	if err != nil {
		return err
	}
	if limit >= 0 {
		r = io.LimitReader(r, limit+1)
	}
	n, err := io.Copy(out, r)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err == nil && limit >= 0 && n > limit {
		err = fmt.Errorf("the code is over %d MB unzipped", MaxUnpackedBytes>>20)
	}
	return err
}

// unzip extracts a deployment package, refusing entries that would land
// outside dst (zip slip), symlinks, and packages over the limits.
func unzip(src, dst string) error {
	zr, err := zip.OpenReader(src)
	if err != nil {
		return fmt.Errorf("the code is not a valid .zip: %w", err)
	}
	defer zr.Close()
	if len(zr.File) > MaxFiles {
		return fmt.Errorf("the .zip has %d files, over %d", len(zr.File), MaxFiles)
	}
	var budget int64 = MaxUnpackedBytes
	for _, f := range zr.File {
		name := filepath.FromSlash(f.Name)
		if !filepath.IsLocal(name) {
			return fmt.Errorf("the .zip entry %q would be written outside the package (zip slip)", f.Name)
		}
		target := filepath.Join(dst, name)
		mode := f.Mode()
		switch {
		case mode.IsDir():
			if err := os.MkdirAll(target, 0o755); err != nil {
				return err
			}
			continue
		case mode&fs.ModeSymlink != 0:
			return fmt.Errorf("the .zip entry %q is a symlink; symlinks are not allowed in function code", f.Name)
		case !mode.IsRegular() && mode.Type() != 0:
			return fmt.Errorf("the .zip entry %q is not a regular file", f.Name)
		}
		if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
			return err
		}
		rc, err := f.Open()
		if err != nil {
			return fmt.Errorf("the .zip entry %q: %w", f.Name, err)
		}
		perm := mode.Perm()
		if perm == 0 {
			perm = 0o644
		}
		err = writeFile(target, rc, perm, budget)
		rc.Close()
		if err != nil {
			return fmt.Errorf("the .zip entry %q: %w", f.Name, err)
		}
		st, _ := os.Stat(target)
		budget -= st.Size()
	}
	return nil
}
