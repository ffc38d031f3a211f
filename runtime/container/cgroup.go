package container

import (
	"bufio"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// cgroupLayout tells where this host keeps the memory cgroup of a
// container, so that its OOM kill count can be read after the exit.
type cgroupLayout struct {
	dir  string // memory hierarchy mount; "" = unknown
	file string // memory.events (v2) or memory.oom_control (v1)
}

func (c cgroupLayout) String() string {
	if c.dir == "" {
		return "unknown (OOM kills seen through containerd's events only)"
	}
	return filepath.Join(c.dir, c.file)
}

// detectCgroups finds the memory controller: cgroup v2 when
// /sys/fs/cgroup is the unified hierarchy, else the v1 memory mount
// (hybrid hosts keep memory on v1).
func detectCgroups() cgroupLayout {
	const root = "/sys/fs/cgroup"
	if _, err := os.Stat(filepath.Join(root, "cgroup.controllers")); err == nil {
		return cgroupLayout{dir: root, file: "memory.events"}
	}
	if _, err := os.Stat(filepath.Join(root, "memory", "memory.oom_control")); err == nil {
		return cgroupLayout{dir: filepath.Join(root, "memory"), file: "memory.oom_control"}
	}
	return cgroupLayout{}
}

// oomKills is the number of processes the kernel killed in the
// container's memory cgroup; ok is false when it cannot be read (no
// memory controller, a kernel before 4.13, another cgroup namespace).
func (c cgroupLayout) oomKills(ns, id string) (n int, ok bool) {
	if c.dir == "" {
		return 0, false
	}
	f, err := os.Open(filepath.Join(c.dir, cgroupsPath(ns, id), c.file))
	if err != nil {
		return 0, false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, found := strings.Cut(sc.Text(), " ")
		if found && k == "oom_kill" {
			n, err := strconv.Atoi(strings.TrimSpace(v))
			return n, err == nil
		}
	}
	return 0, false
}
