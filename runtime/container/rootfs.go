package container

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// The container's root is a directory of ours (Options.RootDir) holding
// only mount points and the host root's top-level symlinks; each of the
// host's top-level directories and files is bound into it read-only.
// runc cannot pivot into "/" itself, and mounting the container's /tmp
// over the host's would hide the sources of later binds.

// syncRoot makes dir mirror the top level of the host's root: a mount
// point per directory or file, the same symlinks. It returns the binds.
func syncRoot(dir string) ([]specs.Mount, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("container root %s: %w", dir, err)
	}
	// It is the container's "/": every uid traverses it.
	if err := os.Chmod(dir, 0o755); err != nil {
		return nil, fmt.Errorf("container root %s: %w", dir, err)
	}
	entries, err := os.ReadDir("/")
	if err != nil {
		return nil, err
	}
	var binds []specs.Mount
	for _, e := range entries {
		name := e.Name()
		host, mp := "/"+name, filepath.Join(dir, name)
		if slices.Contains(ownTrees, host) {
			if err := ensureDir(mp); err != nil {
				return nil, err
			}
			continue
		}
		switch t := e.Type(); {
		case t&fs.ModeSymlink != 0:
			target, err := os.Readlink(host)
			if err != nil {
				continue
			}
			if cur, err := os.Readlink(mp); err == nil && cur == target {
				continue
			}
			os.Remove(mp)
			if err := os.Symlink(target, mp); err != nil && !errors.Is(err, fs.ErrExist) {
				return nil, fmt.Errorf("container root: %w", err)
			}
		case t.IsDir():
			if err := ensureDir(mp); err != nil {
				return nil, err
			}
			binds = append(binds, roBind(host))
		case t.IsRegular():
			if _, err := os.Lstat(mp); err != nil {
				f, err := os.OpenFile(mp, os.O_CREATE|os.O_WRONLY, 0o644)
				if err != nil {
					return nil, fmt.Errorf("container root: %w", err)
				}
				f.Close()
			}
			binds = append(binds, roBind(host))
		}
	}
	return binds, nil
}

func ensureDir(p string) error {
	if err := os.Mkdir(p, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("container root: %w", err)
	}
	return nil
}

// roBind binds a host path read-only at the same path. Not recursive:
// what is mounted below it is bound on its own (hostMounts), read-only
// too, where a recursive bind would leave it writable.
func roBind(p string) specs.Mount {
	return specs.Mount{Destination: p, Type: "bind", Source: p, Options: []string{"bind", "ro", "nosuid", "nodev"}}
}
