// Package memtrim gives memory back to the system once a daemon is idle.
// An edge gateway runs the whole suite in a few tens of MB, and most of a
// Go daemon's resident memory after start-up is garbage from initialisation
// and clean pages of the shared binary mapped in by start-up code that never
// runs again.
package memtrim

import (
	"bufio"
	"os"
	"runtime/debug"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Trim returns freed heap to the OS and drops this process's mappings of
// clean, read-only pages of its own executable. Those pages stay in the page
// cache (shared with the other daemons); the next touch maps them again, so
// only code that actually runs while idle stays resident. It never touches
// writable or anonymous memory.
func Trim() {
	debug.FreeOSMemory()
	exe, err := os.Readlink("/proc/self/exe")
	if err != nil {
		return
	}
	f, err := os.Open("/proc/self/maps")
	if err != nil {
		return
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// 00400000-00f85000 r-xp 00000000 fe:00 9978636   /path/to/ggd
		fields := strings.Fields(sc.Text())
		if len(fields) < 6 || fields[5] != exe || strings.Contains(fields[1], "w") {
			continue
		}
		lo, hi, ok := strings.Cut(fields[0], "-")
		if !ok {
			continue
		}
		start, err1 := strconv.ParseUint(lo, 16, 64)
		end, err2 := strconv.ParseUint(hi, 16, 64)
		if err1 != nil || err2 != nil || end <= start {
			continue
		}
		// Raw syscall: these are addresses of mappings, not Go memory.
		unix.Syscall(unix.SYS_MADVISE, uintptr(start), uintptr(end-start), unix.MADV_DONTNEED)
	}
}
