// Package atomicfile writes files so that a power cut leaves either the old
// content or the new one, never a torn mix: temp file in the same directory,
// fsync, rename over the target, fsync the directory.
package atomicfile

import (
	"fmt"
	"os"
	"path/filepath"
)

// WriteFile replaces path with data atomically and durably.
func WriteFile(path string, data []byte, perm os.FileMode) error {
	return WriteFileHook(path, data, perm, nil)
}

// WriteFileHook is WriteFile calling beforeRename (when not nil) once the
// temp file is synced and before the rename: where crash tests stop a
// write half-way.
func WriteFileHook(path string, data []byte, perm os.FileMode, beforeRename func()) error {
	return WritePartsHook(path, [][]byte{data}, perm, beforeRename)
}

// WritePartsHook is WriteFileHook with the content given in parts, written
// one after the other: a caller whose content embeds large slices it
// already holds writes them without joining them into one copy first.
func WritePartsHook(path string, parts [][]byte, perm os.FileMode, beforeRename func()) error {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	name := tmp.Name()
	ok := false
	defer func() {
		if !ok {
			tmp.Close()
			os.Remove(name)
		}
	}()
	if err := tmp.Chmod(perm); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	for _, data := range parts {
		if _, err := tmp.Write(data); err != nil {
			return fmt.Errorf("write %s: %w", path, err)
		}
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("write %s: fsync: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if beforeRename != nil {
		beforeRename()
	}
	if err := os.Rename(name, path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	ok = true
	return SyncDir(dir)
}

// SyncDir fsyncs a directory so that a rename or create inside it survives a
// power cut.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync dir %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync dir %s: %w", dir, err)
	}
	return nil
}
