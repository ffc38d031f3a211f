package worker

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// cgroup places workers in memory-limited cgroups, one per worker.
type cgroup interface {
	String() string
	// create makes the cgroup of one worker with its limit in bytes.
	create(name string, limit int64) (dir string, err error)
	add(dir string, pid int) error
	// oomKilled tells whether the kernel OOM-killed a process in dir.
	oomKilled(dir string) bool
	remove(dir string)
}

// cgroupFS is a cgroup v2 hierarchy (<mount>/evergreen-runtime) or, on
// hosts whose memory controller is still bound to v1 (hybrid layouts of
// older distributions), the v1 memory hierarchy under the daemon's own
// cgroup (<mount>/<own>/evergreen-runtime).
type cgroupFS struct {
	v2     bool
	parent string
}

const cgroupDirName = "evergreen-runtime"

func (c *cgroupFS) String() string {
	if c.v2 {
		return "cgroup v2 " + c.parent
	}
	return "cgroup v1 memory " + c.parent
}

func (c *cgroupFS) create(name string, limit int64) (string, error) {
	dir := filepath.Join(c.parent, name)
	if err := os.Mkdir(dir, 0o755); err != nil {
		return "", err
	}
	limitFile, swapFile := "memory.max", "memory.swap.max"
	swap := "0"
	if !c.v2 {
		limitFile, swapFile = "memory.limit_in_bytes", "memory.memsw.limit_in_bytes"
		swap = strconv.FormatInt(limit, 10) // memory+swap: no swap on top
	}
	if err := writeFile(filepath.Join(dir, limitFile), strconv.FormatInt(limit, 10)); err != nil {
		os.Remove(dir)
		return "", err
	}
	// Without swap accounting the file is missing: the limit still holds
	// for memory, swap is what the host allows.
	writeFile(filepath.Join(dir, swapFile), swap)
	return dir, nil
}

func (c *cgroupFS) add(dir string, pid int) error {
	return writeFile(filepath.Join(dir, "cgroup.procs"), strconv.Itoa(pid))
}

func (c *cgroupFS) oomKilled(dir string) bool {
	file := "memory.events"
	if !c.v2 {
		file = "memory.oom_control"
	}
	return readKey(filepath.Join(dir, file), "oom_kill") > 0
}

func (c *cgroupFS) remove(dir string) { removeCgroupDir(dir, false) }

// removeCgroupDir removes a worker cgroup, first killing what is left in
// it when kill is set. The kernel refuses while the last member is still
// being torn down, so it retries for a while.
func removeCgroupDir(dir string, kill bool) {
	if kill {
		b, _ := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
		for _, f := range strings.Fields(string(b)) {
			if pid, err := strconv.Atoi(f); err == nil && pid > 1 {
				syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	}
	for range 40 {
		err := syscall.Rmdir(dir)
		if err == nil || errors.Is(err, syscall.ENOENT) {
			return
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// detectCgroup finds a cgroup hierarchy with a memory controller this
// process may use, or says why there is none.
func detectCgroup() (cgroup, string) {
	mounts, err := cgroupMounts()
	if err != nil {
		return nil, err.Error()
	}
	var why []string
	if mp, ok := mounts["cgroup2"]; ok {
		c, err := setupV2(mp.point)
		if err == nil {
			return c, ""
		}
		why = append(why, "cgroup v2: "+err.Error())
	} else {
		why = append(why, "cgroup v2 not mounted")
	}
	if mp, ok := mounts["memory"]; ok {
		c, err := setupV1(mp)
		if err == nil {
			return c, ""
		}
		why = append(why, "cgroup v1 memory: "+err.Error())
	} else {
		why = append(why, "no cgroup v1 memory hierarchy")
	}
	return nil, strings.Join(why, "; ")
}

func setupV2(mount string) (*cgroupFS, error) {
	ctrl, err := os.ReadFile(filepath.Join(mount, "cgroup.controllers"))
	if err != nil {
		return nil, err
	}
	if !slices.Contains(strings.Fields(string(ctrl)), "memory") {
		return nil, fmt.Errorf("memory controller not available at %s (bound to a v1 hierarchy or not delegated)", mount)
	}
	if err := enableMemory(mount); err != nil {
		return nil, err
	}
	parent := filepath.Join(mount, cgroupDirName)
	if err := os.Mkdir(parent, 0o755); err != nil && !os.IsExist(err) {
		return nil, err
	}
	if err := enableMemory(parent); err != nil {
		return nil, err
	}
	c := &cgroupFS{v2: true, parent: parent}
	return c, probe(c)
}

func enableMemory(dir string) error {
	sub, err := os.ReadFile(filepath.Join(dir, "cgroup.subtree_control"))
	if err != nil {
		return err
	}
	if slices.Contains(strings.Fields(string(sub)), "memory") {
		return nil
	}
	if err := writeFile(filepath.Join(dir, "cgroup.subtree_control"), "+memory"); err != nil {
		return fmt.Errorf("enable memory controller in %s: %w", dir, err)
	}
	return nil
}

func setupV1(mp cgroupMount) (*cgroupFS, error) {
	own, err := ownCgroup("memory")
	if err != nil {
		return nil, err
	}
	// A bind mount of a sub-tree shows that sub-tree's path as its root.
	own = strings.TrimPrefix(own, strings.TrimSuffix(mp.root, "/"))
	base := filepath.Join(mp.point, own)
	if _, err := os.Stat(base); err != nil {
		base = mp.point
	}
	parent := filepath.Join(base, cgroupDirName)
	if err := os.Mkdir(parent, 0o755); err != nil && !os.IsExist(err) {
		return nil, err
	}
	c := &cgroupFS{parent: parent}
	return c, probe(c)
}

// probe creates and removes a limited cgroup.
func probe(c *cgroupFS) error {
	dir, err := c.create(fmt.Sprintf("probe-%d", os.Getpid()), 64<<20)
	if err != nil {
		return err
	}
	return syscall.Rmdir(dir)
}

type cgroupMount struct{ point, root string }

// cgroupMounts maps "cgroup2", and each v1 controller, to its mount.
func cgroupMounts() (map[string]cgroupMount, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	out := map[string]cgroupMount{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// id parent maj:min root point opts [optional...] - fstype source superopts
		left, right, ok := strings.Cut(sc.Text(), " - ")
		if !ok {
			continue
		}
		l, r := strings.Fields(left), strings.Fields(right)
		if len(l) < 5 || len(r) < 3 {
			continue
		}
		m := cgroupMount{point: unescapeMount(l[4]), root: unescapeMount(l[3])}
		switch r[0] {
		case "cgroup2":
			if _, dup := out["cgroup2"]; !dup {
				out["cgroup2"] = m
			}
		case "cgroup":
			for _, opt := range strings.Split(r[2], ",") {
				if _, dup := out[opt]; !dup {
					out[opt] = m
				}
			}
		}
	}
	return out, sc.Err()
}

// unescapeMount undoes mountinfo's octal escapes (\040 for a space).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// ownCgroup is this process's cgroup path in the v1 hierarchy of ctrl.
func ownCgroup(ctrl string) (string, error) {
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return "", err
	}
	for _, line := range strings.Split(string(b), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) == 3 && slices.Contains(strings.Split(parts[1], ","), ctrl) {
			return parts[2], nil
		}
	}
	return "", fmt.Errorf("not in a %s cgroup", ctrl)
}

// readKey reads the value of key in a "key value" per line file; 0 when
// absent.
func readKey(path, key string) int64 {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, " "); ok && k == key {
			n, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			return n
		}
	}
	return 0
}

func writeFile(path, s string) error {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	_, err = f.WriteString(s)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
