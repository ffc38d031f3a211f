package layout

import (
	"fmt"
	"os"
	"strings"

	"golang.org/x/sys/unix"
)

// Lock is an exclusive advisory lock on DIR/run/<name>.lock, held while a
// daemon (or the supervisor) runs, so two copies never share a root: the
// second would otherwise clobber the first one's socket and files. The
// kernel drops the lock when the process dies, even by SIGKILL.
type Lock struct{ f *os.File }

// TryLock takes the lock of name or says who holds it.
func (r Root) TryLock(name string) (*Lock, error) {
	if err := os.MkdirAll(r.RunDir(), 0o750); err != nil {
		return nil, err
	}
	path := r.RunDir() + "/" + name + ".lock"
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o640)
	if err != nil {
		return nil, err
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		holder := ""
		if b, err := os.ReadFile(r.PidFile(name)); err == nil {
			holder = " (pid " + strings.TrimSpace(string(b)) + ")"
		}
		return nil, fmt.Errorf("%s is already running on %s%s", name, r.Dir(), holder)
	}
	return &Lock{f: f}, nil
}

// Unlock releases the lock.
func (l *Lock) Unlock() {
	if l != nil && l.f != nil {
		unix.Flock(int(l.f.Fd()), unix.LOCK_UN)
		l.f.Close()
		l.f = nil
	}
}
