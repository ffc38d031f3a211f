// Package install owns DIR/ota/: the versions installed side by side, the
// current and previous links, and state.json, the persisted state machine
// of an update (see docs/ota.md). The launcher (ota/launch) and the ota
// daemon (ota/agent) share it; every write is atomic and durable.
//
//	DIR/ota/versions/<dir>/   one extracted bundle (ggd, ggctl, ..., manifest.json)
//	DIR/ota/current           -> versions/<dir>: what ggd runs
//	DIR/ota/previous          -> versions/<dir>: what a rollback restores
//	DIR/ota/state.json        pending update, attempts, committed, broken, last outcome
//	DIR/ota/downloads/        bundles being downloaded (resumed with Range)
//	DIR/ota/job.json          the job in flight before its install (job.go)
//
// A link is switched by creating a symbolic link under a temp name and
// renaming it over the old one, then fsyncing DIR/ota: after a power cut
// the link names the old directory or the new one, never nothing.
package install

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/evergreen-edge/evergreen/services/kit/atomicfile"
	"golang.org/x/sys/unix"
)

// Names under DIR/ota.
const (
	DirName      = "ota"
	VersionsDir  = "versions"
	CurrentLink  = "current"
	PreviousLink = "previous"
	StateFile    = "state.json"
	DownloadsDir = "downloads"
	// Binary is the program the launcher runs out of the current version.
	Binary = "ggd"
	// ManifestFile is the bundle's manifest, kept in each version's folder.
	ManifestFile = "manifest.json"
)

// MaxLaunchAttempts is how many starts a pending version gets: the launch
// after the third start that did not lead to a commit rolls it back.
const MaxLaunchAttempts = 3

// Layout is DIR/ota of one root.
type Layout struct{ dir string }

// New returns the layout of the suite root root (DIR, not DIR/ota).
func New(root string) Layout { return Layout{dir: filepath.Join(root, DirName)} }

func (l Layout) Dir() string                { return l.dir }
func (l Layout) VersionsDir() string        { return filepath.Join(l.dir, VersionsDir) }
func (l Layout) VersionDir(d string) string { return filepath.Join(l.dir, VersionsDir, d) }
func (l Layout) Link(name string) string    { return filepath.Join(l.dir, name) }
func (l Layout) StateFile() string          { return filepath.Join(l.dir, StateFile) }
func (l Layout) DownloadsDir() string       { return filepath.Join(l.dir, DownloadsDir) }

// CurrentBinary is DIR/ota/current/ggd.
func (l Layout) CurrentBinary() string { return filepath.Join(l.dir, CurrentLink, Binary) }

// Exists reports whether DIR/ota exists: one stat, the launcher's whole
// cost on a core that was never updated.
func (l Layout) Exists() bool {
	_, err := os.Stat(l.dir)
	return err == nil
}

// Create makes DIR/ota and its folders.
func (l Layout) Create() error {
	for _, d := range []string{l.dir, l.VersionsDir(), l.DownloadsDir()} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("create %s: %w", d, err)
		}
	}
	if err := atomicfile.SyncDir(filepath.Dir(l.dir)); err != nil {
		return err
	}
	return atomicfile.SyncDir(l.dir)
}

// ReadLink returns the version folder a link names ("" when the link does
// not exist).
func (l Layout) ReadLink(name string) (string, error) {
	t, err := os.Readlink(l.Link(name))
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	d, ok := strings.CutPrefix(filepath.ToSlash(t), VersionsDir+"/")
	if !ok || !ValidDirName(d) {
		return "", fmt.Errorf("%s points at %q, not at a folder of %s", l.Link(name), t, l.VersionsDir())
	}
	return d, nil
}

// SwitchLink points link name at versions/dir atomically and durably. The
// link is relative, so the root may move.
func (l Layout) SwitchLink(name, dir string) error {
	if !ValidDirName(dir) {
		return fmt.Errorf("switch %s: %q is not a version folder name", name, dir)
	}
	tmp := l.Link("." + name + ".tmp")
	os.Remove(tmp)
	if err := os.Symlink(VersionsDir+"/"+dir, tmp); err != nil {
		return fmt.Errorf("switch %s: %w", name, err)
	}
	if err := os.Rename(tmp, l.Link(name)); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("switch %s: %w", name, err)
	}
	return atomicfile.SyncDir(l.dir)
}

// RemoveLink removes a link (nothing when it is absent).
func (l Layout) RemoveLink(name string) error {
	if err := os.Remove(l.Link(name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return atomicfile.SyncDir(l.dir)
}

// ValidDirName says whether d may name a folder under versions/: 1 to 64
// of A-Z a-z 0-9 . _ + -, starting with a letter or digit (a version
// string, possibly with a -N suffix).
func ValidDirName(d string) bool {
	if len(d) == 0 || len(d) > 64 {
		return false
	}
	for i := 0; i < len(d); i++ {
		c := d[i]
		alnum := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
		if !alnum && (i == 0 || (c != '.' && c != '_' && c != '+' && c != '-')) {
			return false
		}
	}
	return true
}

// Installed lists the folders under versions/ (temp folders excluded).
func (l Layout) Installed() ([]string, error) {
	es, err := os.ReadDir(l.VersionsDir())
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range es {
		if e.IsDir() && ValidDirName(e.Name()) {
			out = append(out, e.Name())
		}
	}
	return out, nil
}

// RemoveLeftovers deletes what an interrupted install leaves: temp
// folders under versions/ and temp links.
func (l Layout) RemoveLeftovers() {
	es, _ := os.ReadDir(l.VersionsDir())
	for _, e := range es {
		if strings.HasPrefix(e.Name(), ".") {
			os.RemoveAll(filepath.Join(l.VersionsDir(), e.Name()))
		}
	}
	for _, n := range []string{CurrentLink, PreviousLink} {
		os.Remove(l.Link("." + n + ".tmp"))
	}
}

// Lock serialises the writers of state.json and the links across processes
// (the launcher, the ota daemon, the supervisor's commit watchdog): an
// advisory lock on DIR/ota/lock, released by unlock or when the process
// dies.
func (l Layout) Lock() (unlock func(), err error) {
	f, err := os.OpenFile(filepath.Join(l.dir, "lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		f.Close()
		return nil, err
	}
	return func() {
		unix.Flock(int(f.Fd()), unix.LOCK_UN)
		f.Close()
	}, nil
}
