package worker

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// pidRecord is the pid file of a live worker. A daemon killed with SIGKILL
// takes its workers along (Pdeathsig), but not what they started; the next
// daemon kills the recorded process groups.
type pidRecord struct {
	Worker string `json:"worker"`
	Fn     string `json:"fn"`
	Pid    int    `json:"pid"`
	// Start is the leader's start time (/proc/<pid>/stat field 22) and
	// Boot the kernel boot id: a pid of another boot, or a reused pid, is
	// not ours.
	Start  uint64 `json:"start"`
	Boot   string `json:"boot"`
	Cgroup string `json:"cgroup,omitempty"`
}

func (m *Manager) pidPath(w *worker) string {
	return filepath.Join(m.o.StateDir, "worker-"+string(w.id)+".pid")
}

func (m *Manager) writePidFile(w *worker, pid int, cgDir string) {
	if m.o.StateDir == "" {
		return
	}
	st, _ := readStat(pid)
	rec := pidRecord{Worker: string(w.id), Fn: w.arn, Pid: pid, Start: st.start, Boot: m.boot, Cgroup: cgDir}
	if err := writePidRecord(m.pidPath(w), rec); err != nil {
		m.log.Warn("worker pid file", "worker", w.id, "err", err)
	}
}

func writePidRecord(path string, rec pidRecord) error {
	b, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func (m *Manager) removePidFile(w *worker) {
	if m.o.StateDir != "" {
		os.Remove(m.pidPath(w))
	}
}

// reapOrphans kills the process groups recorded in StateDir and removes
// the records.
func (m *Manager) reapOrphans() {
	paths, _ := filepath.Glob(filepath.Join(m.o.StateDir, "worker-*.pid*"))
	for _, p := range paths {
		b, err := os.ReadFile(p)
		os.Remove(p)
		if err != nil || strings.HasSuffix(p, ".tmp") {
			continue
		}
		var rec pidRecord
		if err := json.Unmarshal(b, &rec); err != nil || rec.Pid <= 1 {
			m.log.Warn("unreadable worker pid file", "file", p, "err", err)
			continue
		}
		if rec.Boot != m.boot {
			continue // that boot's processes are long gone
		}
		if n := killOrphanGroup(rec); n > 0 {
			m.log.Warn("killed orphaned worker processes of a previous daemon", "fn", rec.Fn, "worker", rec.Worker, "pgid", rec.Pid, "processes", n)
		}
		if rec.Cgroup != "" {
			removeCgroupDir(rec.Cgroup, true)
		}
	}
}

// killOrphanGroup SIGKILLs the group rec.Pid leads, if its members are
// ours: the leader itself with its recorded start time, or, the leader
// being gone, members started after it. The kernel does not reuse a pid
// while a group still carries it as its id. It returns the processes hit.
func killOrphanGroup(rec pidRecord) int {
	n := 0
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		st, err := readStat(pid)
		if err != nil || st.pgrp != rec.Pid {
			continue
		}
		if pid == rec.Pid && st.start != rec.Start {
			return 0 // another process has the leader's pid
		}
		if st.start >= rec.Start {
			n++
		}
	}
	if n > 0 {
		syscall.Kill(-rec.Pid, syscall.SIGKILL)
	}
	return n
}

type procStat struct {
	pgrp  int
	start uint64
}

// readStat reads the process group and start time of pid.
func readStat(pid int) (procStat, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return procStat{}, err
	}
	// The command name may hold spaces and parentheses: fields start after
	// the last ')'. Field 3 (state) is f[0], so field N is f[N-3].
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return procStat{}, fmt.Errorf("bad /proc/%d/stat", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 20 {
		return procStat{}, fmt.Errorf("bad /proc/%d/stat", pid)
	}
	pgrp, err1 := strconv.Atoi(f[2])
	start, err2 := strconv.ParseUint(f[19], 10, 64)
	if err1 != nil || err2 != nil {
		return procStat{}, fmt.Errorf("bad /proc/%d/stat", pid)
	}
	return procStat{pgrp: pgrp, start: start}, nil
}

func bootID() string {
	b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}
