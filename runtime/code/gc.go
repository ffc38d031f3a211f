package code

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/evergreen-edge/evergreen/services/kit/atomicfile"
)

// Install leaves one directory per function and content under
// functionsDir, and nothing removes it when the group changes. The runtime
// keeps a Ledger of the code each group it applied used and, after each
// apply, removes with Collect what neither the group in force, nor the one
// a rollback returns to, nor a running worker uses. That includes code a
// PREPARE installed for a deployment that never applied.

// LedgerEntries bounds the groups a Ledger remembers.
const LedgerEntries = 4

// Use is the code one applied deployment used.
type Use struct {
	// Deployment is the deployment's id ("" when unknown).
	Deployment string `json:"deployment"`
	// Dirs maps each installed directory (Package.Dir) to the qualified
	// ARN of the function that ran from it.
	Dirs map[string]string `json:"dirs"`
}

// Ledger is the record of the code the last applied groups used, newest
// first, kept in a file (written atomically) so that it survives a
// restart.
type Ledger struct {
	path string
	uses []Use
}

// OpenLedger reads the ledger at path; a missing file is an empty ledger.
// An unreadable one is returned empty with the error: the caller may go on
// (the next Collect then keeps only what the group in force and the
// running workers use).
func OpenLedger(path string) (*Ledger, error) {
	l := &Ledger{path: path}
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return l, nil
	}
	if err != nil {
		return l, err
	}
	if err := json.Unmarshal(b, &l.uses); err != nil {
		l.uses = nil
		return l, fmt.Errorf("%s: corrupt: %w", path, err)
	}
	return l, nil
}

// Uses returns the recorded uses, newest first.
func (l *Ledger) Uses() []Use { return append([]Use(nil), l.uses...) }

// Record puts u first (replacing an older use of the same deployment),
// keeps LedgerEntries uses and writes the file.
func (l *Ledger) Record(u Use) error {
	uses := []Use{u}
	for _, x := range l.uses {
		if x.Deployment != u.Deployment && len(uses) < LedgerEntries {
			uses = append(uses, x)
		}
	}
	b, err := json.Marshal(uses)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(l.path), 0o750); err != nil {
		return err
	}
	if err := atomicfile.WriteFile(l.path, b, 0o600); err != nil {
		return err
	}
	l.uses = uses
	return nil
}

// Keep is the set of directories Collect must keep: those of the newest
// use (the group in force), those of the use of deployment previous (the
// group a rollback returns to; the second newest use when previous is ""
// or not recorded), and every recorded directory of a function in live
// (functions with a worker, which may run from the code of an older
// group while it stops).
func (l *Ledger) Keep(previous string, live map[string]bool) map[string]bool {
	keep := map[string]bool{}
	add := func(u Use) {
		for d := range u.Dirs {
			keep[filepath.Clean(d)] = true
		}
	}
	if len(l.uses) == 0 {
		return keep
	}
	add(l.uses[0])
	prev := -1
	for i, u := range l.uses[1:] {
		if previous != "" && u.Deployment == previous {
			prev = i + 1
			break
		}
	}
	if prev < 0 && len(l.uses) > 1 {
		prev = 1
	}
	if prev > 0 {
		add(l.uses[prev])
	}
	for _, u := range l.uses {
		for d, arn := range u.Dirs {
			if live[arn] {
				keep[filepath.Clean(d)] = true
			}
		}
	}
	return keep
}

// Collect removes every installed directory under functionsDir
// (<name>/<sha256>, and <name>/<sha256>.tmp left by an interrupted
// Install) that keep does not name, then the <name> directories left
// empty. Anything else under functionsDir is left alone. It must not run
// while an Install is in progress. It returns the directories removed.
func Collect(functionsDir string, keep map[string]bool) ([]string, error) {
	names, err := os.ReadDir(functionsDir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var removed []string
	var errs []error
	for _, n := range names {
		if !n.IsDir() {
			continue
		}
		fnDir := filepath.Join(functionsDir, n.Name())
		ents, err := os.ReadDir(fnDir)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		left := len(ents)
		for _, e := range ents {
			p := filepath.Join(fnDir, e.Name())
			if !e.IsDir() || !installName(e.Name()) || keep[filepath.Clean(p)] {
				continue
			}
			if err := os.RemoveAll(p); err != nil {
				errs = append(errs, err)
				continue
			}
			removed = append(removed, p)
			left--
		}
		if left == 0 {
			os.Remove(fnDir) // fails harmlessly if something appeared
		}
	}
	return removed, errors.Join(errs...)
}

// installName tells whether name is what Install creates: a hex sha256,
// or one with .tmp.
func installName(name string) bool {
	name = strings.TrimSuffix(name, ".tmp")
	if len(name) != 64 {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}
