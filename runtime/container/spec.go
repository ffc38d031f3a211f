package container

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

const (
	tmpSize    = "size=67108864" // the private /tmp: 64 MiB
	devSize    = "size=65536k"
	defaultEnv = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
)

// defaultCaps are what a function running as root keeps (Docker's and
// containerd's default set); a function running as another user has none.
var defaultCaps = []string{
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD",
	"CAP_NET_RAW", "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP",
	"CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
}

// ownTrees are the container's own filesystems: host mounts under them
// are hidden, not mirrored.
var ownTrees = []string{"/proc", "/sys", "/dev", "/tmp"}

// cgroupsPath is where runc puts the container's cgroup.
func cgroupsPath(ns, id string) string { return "/" + ns + "/" + id }

// buildSpec makes the OCI spec of s: root (made by syncRoot, whose binds
// tops are) read-only, the container's own /proc, /dev, /tmp and /sys,
// the host's top-level entries and every mount below them bound
// read-only, then the function's binds, volumes and devices.
func buildSpec(ns, root string, tops []specs.Mount, s Spec) (*specs.Spec, error) {
	if s.ID == "" {
		return nil, errors.New("container: spec without id")
	}
	if len(s.Argv) == 0 || s.Argv[0] == "" {
		return nil, fmt.Errorf("container %s: no command", s.ID)
	}
	if s.UID < 0 || s.GID < 0 {
		return nil, fmt.Errorf("container %s: uid and gid must be set", s.ID)
	}
	if s.MemoryKB < 0 {
		return nil, fmt.Errorf("container %s: negative memory size", s.ID)
	}
	cwd := s.Cwd
	if cwd == "" {
		cwd = "/"
	}
	if !filepath.IsAbs(cwd) {
		return nil, fmt.Errorf("container %s: cwd %q is not absolute", s.ID, cwd)
	}
	if err := creatable(filepath.Clean(cwd)); err != nil {
		return nil, fmt.Errorf("container %s: cwd: %w", s.ID, err)
	}
	env := slices.Clone(s.Env)
	if !slices.ContainsFunc(env, func(e string) bool { return strings.HasPrefix(e, "PATH=") }) {
		env = append(env, defaultEnv)
	}
	hostname, _ := os.Hostname()

	var groups []uint32
	for _, g := range s.Groups {
		if g < 0 {
			return nil, fmt.Errorf("container %s: negative group %d", s.ID, g)
		}
		groups = append(groups, uint32(g))
	}
	caps := &specs.LinuxCapabilities{Bounding: defaultCaps}
	if s.UID == 0 {
		caps.Effective, caps.Permitted = defaultCaps, defaultCaps
	}

	spec := &specs.Spec{
		Version:  specs.Version,
		Hostname: hostname,
		Root:     &specs.Root{Path: root, Readonly: true},
		Process: &specs.Process{
			User:            specs.User{UID: uint32(s.UID), GID: uint32(s.GID), AdditionalGids: groups},
			Args:            slices.Clone(s.Argv),
			Env:             env,
			Cwd:             cwd,
			Capabilities:    caps,
			NoNewPrivileges: true,
			Rlimits:         []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Hard: 4096, Soft: 1024}},
		},
		Linux: &specs.Linux{
			CgroupsPath: cgroupsPath(ns, s.ID),
			// No network namespace: the IPC server listens on localhost.
			Namespaces: []specs.LinuxNamespace{
				{Type: specs.PIDNamespace}, {Type: specs.IPCNamespace},
				{Type: specs.UTSNamespace}, {Type: specs.MountNamespace},
			},
			Resources: &specs.LinuxResources{
				Devices: []specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"}},
			},
			MaskedPaths: []string{
				"/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
				"/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi",
				"/sys/firmware", "/sys/devices/virtual/powercap",
			},
			ReadonlyPaths: []string{
				"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger",
			},
		},
	}
	if s.MemoryKB > 0 {
		limit := int64(s.MemoryKB) * 1024
		// Swap is memory+swap: equal to the limit, the function cannot
		// swap past it.
		swap := limit
		spec.Linux.Resources.Memory = &specs.LinuxMemory{Limit: &limit, Swap: &swap}
	}

	spec.Mounts = []specs.Mount{
		{Destination: "/proc", Type: "proc", Source: "proc", Options: []string{"nosuid", "noexec", "nodev"}},
		{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", devSize}},
		{Destination: "/dev/pts", Type: "devpts", Source: "devpts", Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"}},
		{Destination: "/dev/shm", Type: "tmpfs", Source: "shm", Options: []string{"nosuid", "noexec", "nodev", "mode=1777", devSize}},
		{Destination: "/dev/mqueue", Type: "mqueue", Source: "mqueue", Options: []string{"nosuid", "noexec", "nodev"}},
		{Destination: "/tmp", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "nodev", "mode=1777", tmpSize}},
	}
	if s.AccessSysfs {
		spec.Mounts = append(spec.Mounts, specs.Mount{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: []string{"nosuid", "noexec", "nodev", "ro"}})
	} else {
		// An empty read-only tmpfs hides the host's /sys.
		spec.Mounts = append(spec.Mounts, specs.Mount{Destination: "/sys", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "noexec", "nodev", "ro", "size=4k"}})
		spec.Linux.MaskedPaths = slices.DeleteFunc(spec.Linux.MaskedPaths, func(p string) bool { return strings.HasPrefix(p, "/sys/") })
	}

	// The function's own mounts, in an order where a parent comes before
	// what is mounted inside it.
	var own []specs.Mount
	for _, b := range s.ReadOnlyBinds {
		if !filepath.IsAbs(b) {
			return nil, fmt.Errorf("container %s: bind %q is not absolute", s.ID, b)
		}
		if _, err := os.Stat(b); err != nil {
			return nil, fmt.Errorf("container %s: bind: %w", s.ID, err)
		}
		b = filepath.Clean(b)
		own = append(own, specs.Mount{Destination: b, Type: "bind", Source: b, Options: []string{"bind", "ro", "nosuid", "nodev"}})
	}
	for _, v := range s.Volumes {
		if !filepath.IsAbs(v.Source) || !filepath.IsAbs(v.Dest) {
			return nil, fmt.Errorf("container %s: volume %s -> %s: paths must be absolute", s.ID, v.Source, v.Dest)
		}
		if _, err := os.Stat(v.Source); err != nil {
			return nil, fmt.Errorf("container %s: volume: %w", s.ID, err)
		}
		dest := filepath.Clean(v.Dest)
		if err := creatable(dest); err != nil {
			return nil, fmt.Errorf("container %s: volume %s: %w", s.ID, v.Source, err)
		}
		mode := "rw"
		if v.ReadOnly {
			mode = "ro"
		}
		own = append(own, specs.Mount{Destination: dest, Type: "bind", Source: filepath.Clean(v.Source), Options: []string{"bind", mode, "nosuid", "nodev"}})
	}
	for _, d := range s.Devices {
		if !filepath.IsAbs(d.Path) {
			return nil, fmt.Errorf("container %s: device %q is not absolute", s.ID, d.Path)
		}
		path := filepath.Clean(d.Path)
		var st unix.Stat_t
		if err := unix.Stat(path, &st); err != nil {
			return nil, fmt.Errorf("container %s: device %s: %w", s.ID, path, err)
		}
		var kind string
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFCHR:
			kind = "c"
		case unix.S_IFBLK:
			kind = "b"
		default:
			return nil, fmt.Errorf("container %s: %s is not a device", s.ID, path)
		}
		if err := creatable(path); err != nil {
			return nil, fmt.Errorf("container %s: device: %w", s.ID, err)
		}
		major, minor := int64(unix.Major(st.Rdev)), int64(unix.Minor(st.Rdev))
		access := "rw"
		if d.ReadOnly {
			access = "r"
		}
		spec.Linux.Resources.Devices = append(spec.Linux.Resources.Devices,
			specs.LinuxDeviceCgroup{Allow: true, Type: kind, Major: &major, Minor: &minor, Access: access})
		// A device node on a read-only mount can still be written: the
		// cgroup rule decides.
		own = append(own, specs.Mount{Destination: path, Type: "bind", Source: path, Options: []string{"bind", "nosuid"}})
	}
	slices.SortStableFunc(own, func(a, b specs.Mount) int { return depth(a.Destination) - depth(b.Destination) })

	mirrors, err := hostMounts(own, tops)
	if err != nil {
		return nil, fmt.Errorf("container %s: %w", s.ID, err)
	}
	spec.Mounts = append(spec.Mounts, tops...)
	spec.Mounts = append(spec.Mounts, mirrors...)
	spec.Mounts = append(spec.Mounts, own...)
	return spec, nil
}

// creatable refuses a mount destination (or working directory) that runc
// would have to make inside a read-only bind of the host: missing mount
// points are made before the binds turn read-only, so on the host's disk.
// Under /tmp and /dev, or under a top-level name the host lacks, they are
// made in the container's own tmpfs or root directory.
func creatable(dest string) error {
	for _, t := range []string{"/proc", "/sys"} {
		if under(dest, t) {
			return fmt.Errorf("destination %s: %s is the kernel's", dest, t)
		}
	}
	for _, t := range []string{"/tmp", "/dev"} {
		if under(dest, t) && dest != t {
			return nil
		}
	}
	top, _, _ := strings.Cut(strings.TrimPrefix(dest, "/"), "/")
	if _, err := os.Lstat("/" + top); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if _, err := os.Stat(dest); err != nil {
		return fmt.Errorf("destination %s must exist on the host (the host's %s is bound read-only): %w", dest, "/"+top, err)
	}
	return nil
}

// hostMounts lists the host's mounts below its top level as read-only
// binds of themselves. Mounts under the container's own trees or under one
// of own are left out, and so are the top-level ones (tops) and namespace
// files.
func hostMounts(own, tops []specs.Mount) ([]specs.Mount, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	seen := map[string]bool{}
	var out []specs.Mount
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		// id parent major:minor root mountpoint options [optional...] - fstype source superoptions
		fields := strings.Fields(sc.Text())
		sep := slices.Index(fields, "-")
		if len(fields) < 6 || sep < 0 || sep+1 >= len(fields) {
			continue
		}
		mp, fstype := unescape(fields[4]), fields[sep+1]
		if mp == "/" || seen[mp] || slices.ContainsFunc(tops, func(m specs.Mount) bool { return m.Destination == mp }) {
			continue
		}
		if slices.ContainsFunc(ownTrees, func(t string) bool { return under(mp, t) }) ||
			slices.ContainsFunc(own, func(m specs.Mount) bool { return under(mp, m.Destination) }) {
			continue
		}
		switch fstype {
		case "nsfs", "autofs", "binfmt_misc":
			continue
		}
		seen[mp] = true
		if _, err := os.Lstat(mp); err != nil {
			continue // overmounted since
		}
		out = append(out, roBind(mp))
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read mountinfo: %w", err)
	}
	slices.SortStableFunc(out, func(a, b specs.Mount) int { return depth(a.Destination) - depth(b.Destination) })
	return out, nil
}

// unescape decodes mountinfo's octal escapes (\040 for a space).
func unescape(s string) string {
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

// under tells whether path is dir or inside it.
func under(path, dir string) bool {
	return path == dir || dir == "/" || strings.HasPrefix(path, dir+"/")
}

func depth(p string) int { return strings.Count(filepath.Clean(p), "/") }
