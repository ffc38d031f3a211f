package artifact

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// GC removes from the cache every artifact whose sha256 (hex) is not in
// keep, the digests of the deployment in force and of the previous one. A
// partial download not in keep goes too once it has not been written to for
// the partial max age. Digests being fetched are left alone. It returns the
// paths it removed; a failure to remove one does not stop the others.
func (f *Fetcher) GC(keep map[string]bool) ([]string, error) {
	kept := make(map[string]bool, len(keep))
	for sum, ok := range keep {
		if ok {
			kept[strings.ToLower(sum)] = true
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()

	var removed []string
	var errs []error
	remove := func(p string) {
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("artifact gc: %w", err))
			return
		}
		removed = append(removed, p)
	}
	stale := time.Now().Add(-f.partialMaxAge)
	for _, dir := range []string{f.storeDir(), f.partialDir()} {
		entries, err := os.ReadDir(dir)
		if err != nil {
			errs = append(errs, fmt.Errorf("artifact gc: %w", err))
			continue
		}
		for _, e := range entries {
			sum := strings.TrimSuffix(e.Name(), ".part")
			if kept[sum] || f.busy[sum] != nil {
				continue
			}
			if dir == f.partialDir() {
				info, err := e.Info()
				if err != nil || info.ModTime().After(stale) {
					continue
				}
			}
			remove(filepath.Join(dir, e.Name()))
		}
	}
	return removed, errors.Join(errs...)
}
