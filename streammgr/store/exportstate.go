package store

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/evergreen-edge/evergreen/services/kit/atomicfile"
)

// Export progress lives beside the stream's data so that deleting the
// stream deletes it and a stream created again under the same name starts
// afresh. One small file per export identifier, replaced atomically and
// fsync'd on every write; the content belongs to package export.

const exportPrefix = "export-"

func exportFileName(id string) string {
	h := sha256.Sum256([]byte(id))
	return exportPrefix + hex.EncodeToString(h[:12]) + ".json"
}

func isExportFile(n string) bool {
	return strings.HasPrefix(n, exportPrefix) && strings.HasSuffix(n, ".json")
}

// ReadExportState returns the bytes last written by WriteExportState for
// the export id of stream name, nil when there are none.
func (s *Store) ReadExportState(name, id string) ([]byte, error) {
	st, err := s.get(name)
	if err != nil {
		return nil, err
	}
	st.exportMu.Lock()
	defer st.exportMu.Unlock()
	if st.isDeleted() {
		return nil, ErrNotFound
	}
	b, err := os.ReadFile(filepath.Join(st.dir, exportFileName(id)))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	return b, err
}

// WriteExportState replaces the export id's state of stream name durably
// (written, fsync'd, renamed, directory fsync'd).
func (s *Store) WriteExportState(name, id string, b []byte) error {
	st, err := s.get(name)
	if err != nil {
		return err
	}
	st.exportMu.Lock()
	defer st.exportMu.Unlock()
	if st.isDeleted() {
		return ErrNotFound
	}
	return atomicfile.WriteFile(filepath.Join(st.dir, exportFileName(id)), b, 0o640)
}

func (st *stream) isDeleted() bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.deleted
}
