package container

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// helper runs inside a container: the test binary in a helper mode.
func helper(mode string, args []string) int {
	switch mode {
	case "tcp": // connect to args[0] and say hello
		c, err := net.DialTimeout("tcp", args[0], 5*time.Second)
		if err != nil {
			fmt.Println(err)
			return 1
		}
		defer c.Close()
		fmt.Fprint(c, "hello from the container")
		return 0
	case "open": // open args[0] read-write ("rw") or read-only ("r")
		flag := os.O_RDWR
		if args[1] == "r" {
			flag = os.O_RDONLY
		}
		f, err := os.OpenFile(args[0], flag, 0)
		if err != nil {
			fmt.Println(err)
			if errors.Is(err, syscall.EPERM) {
				return 3 // the device cgroup
			}
			if errors.Is(err, syscall.EACCES) {
				return 4 // permissions, or a nodev mount
			}
			return 1
		}
		f.Close()
		fmt.Println("opened")
		return 0
	case "term": // exit 42 on SIGTERM
		ch := make(chan os.Signal, 1)
		signal.Notify(ch, syscall.SIGTERM)
		fmt.Println("ready")
		<-ch
		return 42
	}
	fmt.Println("unknown helper mode", mode)
	return 2
}

func needContainerd(t testing.TB) {
	t.Helper()
	if skipReason != "" {
		t.Skip("containerd tests skipped: " + skipReason)
	}
}

func newRunner(t testing.TB, ns string) *Runner {
	t.Helper()
	return newOwnedRunner(t, ns, "")
}

func newOwnedRunner(t testing.TB, ns, owner string) *Runner {
	t.Helper()
	needContainerd(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r, err := New(ctx, Options{Address: socket, Namespace: ns, Owner: owner, RootDir: rootDir, Log: quietLog()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// safeBuffer collects a container's output while the test reads it.
type safeBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *safeBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *safeBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

var idSeq struct {
	sync.Mutex
	n int
}

func newID(t testing.TB) string {
	idSeq.Lock()
	defer idSeq.Unlock()
	idSeq.n++
	return fmt.Sprintf("t%d-%d", os.Getpid(), idSeq.n)
}

type result struct {
	code   int
	oom    bool
	stdout string
	stderr string
}

// runSpec starts s, waits for it (at most 30 s) and returns what it did.
func runSpec(t *testing.T, r *Runner, s Spec) result {
	t.Helper()
	var out, errb safeBuffer
	if s.ID == "" {
		s.ID = newID(t)
	}
	s.Stdout, s.Stderr = &out, &errb
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p, err := r.Start(ctx, s)
	if err != nil {
		t.Fatalf("start %v: %v", s.Argv, err)
	}
	code, oom, err := waitFor(t, p, 30*time.Second)
	if err != nil {
		t.Fatalf("wait %v: %v", s.Argv, err)
	}
	res := result{code: code, oom: oom, stdout: out.String(), stderr: errb.String()}
	t.Logf("%v: exit %d oom %v\nstdout: %s\nstderr: %s", s.Argv, code, oom, res.stdout, res.stderr)
	return res
}

func waitFor(t testing.TB, p *Process, d time.Duration) (int, bool, error) {
	t.Helper()
	type w struct {
		code int
		oom  bool
		err  error
	}
	ch := make(chan w, 1)
	go func() {
		code, oom, err := p.Wait()
		ch <- w{code, oom, err}
	}()
	select {
	case r := <-ch:
		return r.code, r.oom, r.err
	case <-time.After(d):
		p.Signal(syscall.SIGKILL)
		t.Fatalf("container %s still running after %v", p.ID(), d)
		return 0, false, nil
	}
}

// hostDir makes a directory outside /tmp (private in a container), so the
// container sees it through the read-only host root.
func hostDir(t *testing.T) string {
	t.Helper()
	d, err := os.MkdirTemp("/var/tmp", "evergreen-container-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	if err := os.Chmod(d, 0o755); err != nil {
		t.Fatal(err)
	}
	return d
}

func TestNewWithoutContainerd(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "no-containerd.sock")
	_, err := New(context.Background(), Options{Address: missing})
	if err == nil || !strings.Contains(err.Error(), missing) {
		t.Fatalf("New on a missing socket: %v, want an error naming %s", err, missing)
	}
	// A socket nobody serves.
	l, err := net.Listen("unix", filepath.Join(t.TempDir(), "s"))
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if _, err := New(ctx, Options{Address: addr}); err == nil || !strings.Contains(err.Error(), addr) {
		t.Fatalf("New on a dead socket: %v, want an error naming %s", err, addr)
	}
}

func TestProcessRunsAsGiven(t *testing.T) {
	r := newRunner(t, testNS)
	res := runSpec(t, r, Spec{
		Argv: []string{"/bin/sh", "-c", `id -u; id -g; id -G; pwd; echo "$FOO"; echo "$PATH"`},
		Env:  []string{"FOO=bar baz"},
		Cwd:  "/usr",
		UID:  1234, GID: 2345, Groups: []int{3456},
		MemoryKB: 64 << 10,
	})
	want := "1234\n2345\n2345 3456\n/usr\nbar baz\n" + strings.TrimPrefix(defaultEnv, "PATH=") + "\n"
	if res.code != 0 || res.oom || res.stdout != want {
		t.Fatalf("got exit %d oom %v stdout %q, want 0 false %q", res.code, res.oom, res.stdout, want)
	}
	res = runSpec(t, r, Spec{Argv: []string{"/bin/sh", "-c", "exit 7"}, UID: 1000, GID: 1000})
	if res.code != 7 {
		t.Fatalf("exit code %d, want 7", res.code)
	}

	// A command that cannot start fails Start and leaves nothing behind.
	id := newID(t)
	var out safeBuffer
	if _, err := r.Start(context.Background(), Spec{ID: id, Argv: []string{"/nonexistent/fn"}, UID: 1000, GID: 1000, Stdout: &out}); err == nil {
		t.Fatal("Start of a missing command succeeded")
	} else {
		t.Log(err)
	}
	if _, err := r.client.LoadContainer(context.Background(), id); err == nil {
		t.Errorf("container %s left after a failed Start", id)
	}
}

func TestFilesystem(t *testing.T) {
	r := newRunner(t, testNS)
	host := hostDir(t)
	hostTmp, err := os.CreateTemp("", "evergreen-host-tmp-")
	if err != nil {
		t.Fatal(err)
	}
	hostTmp.Close()
	t.Cleanup(func() { os.Remove(hostTmp.Name()) })

	// As root, so that only the mounts refuse writes.
	script := `
w() { if (echo x > "$1") 2>/dev/null; then echo "$1 writable"; else echo "$1 refused"; fi; }
w /usr/evergreen-test
w /etc/evergreen-test
w ` + host + `/f
w /tmp/f
w /dev/shm/f
w /proc/sys/kernel/hostname
test -e ` + hostTmp.Name() + ` && echo "host tmp visible" || echo "host tmp hidden"
test -e /dev/fuse && echo "/dev/fuse visible" || echo "/dev/fuse hidden"
test -c /dev/null && echo "/dev/null present"
echo "sys entries: $(ls /sys | wc -l)"
cat /proc/1/cmdline | tr '\0' ' '; echo
`
	res := runSpec(t, r, Spec{Argv: []string{"/bin/sh", "-c", script}})
	for _, want := range []string{
		"/usr/evergreen-test refused", "/etc/evergreen-test refused", host + "/f refused",
		"/tmp/f writable", "/dev/shm/f writable", "/proc/sys/kernel/hostname refused",
		"host tmp hidden", "/dev/fuse hidden", "/dev/null present", "sys entries: 0",
		"/bin/sh -c", // pid 1 is the function: its own pid namespace
	} {
		if !strings.Contains(res.stdout, want) {
			t.Errorf("missing %q in:\n%s", want, res.stdout)
		}
	}
	if _, err := os.Stat(filepath.Join(host, "f")); err == nil {
		t.Errorf("the container wrote %s on the host", filepath.Join(host, "f"))
	}
	if _, err := os.Stat("/usr/evergreen-test"); err == nil {
		os.Remove("/usr/evergreen-test")
		t.Errorf("the container wrote /usr/evergreen-test on the host")
	}

	res = runSpec(t, r, Spec{Argv: []string{"/bin/sh", "-c", "test -d /sys/kernel && echo sysfs; echo x > /sys/kernel/evergreen 2>/dev/null || echo refused"}, AccessSysfs: true})
	if res.stdout != "sysfs\nrefused\n" {
		t.Errorf("AccessSysfs: got %q, want sysfs present and read-only", res.stdout)
	}
}

func TestHostNetwork(t *testing.T) {
	r := newRunner(t, testNS)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	got := make(chan string, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			got <- err.Error()
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		b, _ := io.ReadAll(c)
		got <- string(b)
	}()
	res := runSpec(t, r, Spec{
		Argv:          []string{helperBin, l.Addr().String()},
		Env:           []string{helperEnv + "=tcp"},
		ReadOnlyBinds: []string{helperDir},
		UID:           1000, GID: 1000,
	})
	if res.code != 0 {
		t.Fatalf("helper exit %d", res.code)
	}
	select {
	case s := <-got:
		if s != "hello from the container" {
			t.Fatalf("listener got %q", s)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no connection on the host's 127.0.0.1")
	}
}

func TestMemoryLimit(t *testing.T) {
	r := newRunner(t, testNS)
	if r.cg.dir == "" {
		t.Logf("no memory cgroup found: OOM kills seen through events only")
	}
	t.Run("cgroup", func(t *testing.T) { testOOM(t, r) })
	// Where the cgroup cannot be read, containerd's /tasks/oom event
	// tells alone.
	t.Run("events", func(t *testing.T) {
		r := newRunner(t, testNS)
		r.cg = cgroupLayout{}
		testOOM(t, r)
	})
}

func testOOM(t *testing.T, r *Runner) {
	// The shell doubles a string until the 16 MiB limit stops it.
	res := runSpec(t, r, Spec{
		Argv: []string{"/bin/sh", "-c", `x=0123456789abcdef; i=0; while [ $i -lt 40 ]; do x=$x$x; i=$((i+1)); done; echo survived`},
		UID:  1000, GID: 1000,
		MemoryKB: 16 << 10,
	})
	if !res.oom || res.code != 128+int(syscall.SIGKILL) || strings.Contains(res.stdout, "survived") {
		t.Fatalf("got exit %d oom %v stdout %q, want an OOM kill", res.code, res.oom, res.stdout)
	}
	// The same limit leaves a small process alone.
	res = runSpec(t, r, Spec{Argv: []string{"/bin/sh", "-c", "x=0123456789abcdef; x=$x$x$x$x; echo ok"}, UID: 1000, GID: 1000, MemoryKB: 16 << 10})
	if res.oom || res.code != 0 || res.stdout != "ok\n" {
		t.Fatalf("small process: exit %d oom %v stdout %q", res.code, res.oom, res.stdout)
	}
	// A SIGKILL is no OOM kill.
	p, err := r.Start(context.Background(), Spec{ID: newID(t), Argv: []string{"/bin/sleep", "1000"}, UID: 1000, GID: 1000, MemoryKB: 16 << 10})
	if err != nil {
		t.Fatal(err)
	}
	checkMemoryLimit(t, r, p.ID(), 16<<20)
	p.Signal(syscall.SIGKILL)
	if code, oom, err := waitFor(t, p, 20*time.Second); code != 137 || oom || err != nil {
		t.Fatalf("killed process: exit %d oom %v err %v", code, oom, err)
	}
}

// checkMemoryLimit reads the container's cgroup: memory limited to want
// bytes, and no swap beyond it.
func checkMemoryLimit(t *testing.T, r *Runner, id string, want int) {
	t.Helper()
	if r.cg.dir == "" {
		return
	}
	dir := filepath.Join(r.cg.dir, cgroupsPath(r.ns, id))
	read := func(name string) string {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			return "unreadable"
		}
		return strings.TrimSpace(string(b))
	}
	limits := map[string]string{}
	if r.cg.file == "memory.events" { // v2: swap.max is beyond memory.max
		limits["memory.max"], limits["memory.swap.max"] = fmt.Sprint(want), "0"
	} else {
		limits["memory.limit_in_bytes"] = fmt.Sprint(want)
		if _, err := os.Stat(filepath.Join(dir, "memory.memsw.limit_in_bytes")); err == nil {
			limits["memory.memsw.limit_in_bytes"] = fmt.Sprint(want)
		}
	}
	for name, v := range limits {
		if got := read(name); got != v {
			t.Errorf("%s/%s = %s, want %s", dir, name, got, v)
		}
	}
}

func TestVolumes(t *testing.T) {
	r := newRunner(t, testNS)
	base := hostDir(t)
	for _, d := range []string{"ro", "rw", "other"} {
		if err := os.Mkdir(filepath.Join(base, d), 0o777); err != nil {
			t.Fatal(err)
		}
		os.Chmod(filepath.Join(base, d), 0o777)
	}
	if err := os.WriteFile(filepath.Join(base, "ro", "seed"), []byte("seeded\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	script := `
w() { if (echo "$2" > "$1") 2>/dev/null; then echo "$1 writable"; else echo "$1 refused"; fi; }
cat /tmp/vol-ro/seed
w /tmp/vol-ro/f ro
w ` + base + `/rw/f rw
w ` + base + `/other/f other
w ` + base + `/f parent
`
	res := runSpec(t, r, Spec{
		Argv: []string{"/bin/sh", "-c", script},
		UID:  1000, GID: 1000,
		Volumes: []Mount{
			{Source: filepath.Join(base, "ro"), Dest: "/tmp/vol-ro", ReadOnly: true},
			{Source: filepath.Join(base, "rw"), Dest: filepath.Join(base, "rw")},
		},
	})
	want := "seeded\n/tmp/vol-ro/f refused\n" + base + "/rw/f writable\n" + base + "/other/f refused\n" + base + "/f refused\n"
	if res.stdout != want {
		t.Fatalf("got:\n%s\nwant:\n%s", res.stdout, want)
	}
	if b, err := os.ReadFile(filepath.Join(base, "rw", "f")); err != nil || string(b) != "rw\n" {
		t.Errorf("rw volume on the host: %q %v", b, err)
	}
	for _, f := range []string{"ro/f", "other/f", "f"} {
		if _, err := os.Stat(filepath.Join(base, f)); err == nil {
			t.Errorf("%s written on the host", f)
		}
	}

	// A destination under a top-level name the host lacks is made in the
	// container's own root directory, not on the host.
	top := fmt.Sprintf("/evergreen-test-%d", os.Getpid())
	res = runSpec(t, r, Spec{
		Argv:    []string{"/bin/sh", "-c", "cat " + top + "/vol/seed"},
		Volumes: []Mount{{Source: filepath.Join(base, "ro"), Dest: top + "/vol", ReadOnly: true}},
	})
	if res.stdout != "seeded\n" {
		t.Errorf("volume at %s/vol: %q", top, res.stdout)
	}
	if _, err := os.Lstat(top); err == nil {
		t.Errorf("%s made on the host", top)
	}

	// A destination that would have to be made inside the host's
	// read-only directories is refused before anything starts.
	for _, dest := range []string{filepath.Join(base, "missing"), "/proc/evergreen"} {
		_, err := r.Start(context.Background(), Spec{ID: newID(t), Argv: []string{"/bin/true"},
			Volumes: []Mount{{Source: base, Dest: dest}}})
		if err == nil {
			t.Errorf("volume at %s accepted", dest)
		} else {
			t.Log(err)
		}
	}
}

func TestDevices(t *testing.T) {
	r := newRunner(t, testNS)
	base := hostDir(t)
	// Two misc devices that runc does not allow by default: fuse (10:229)
	// is declared, loop-control (10:237) is not; both open for anyone.
	declared, undeclared := filepath.Join(base, "fuse"), filepath.Join(base, "loop-control")
	old := unix.Umask(0)
	for path, minor := range map[string]uint32{declared: 229, undeclared: 237} {
		if err := unix.Mknod(path, unix.S_IFCHR|0o666, int(unix.Mkdev(10, minor))); err != nil {
			unix.Umask(old)
			if os.Getenv("EVERGREEN_REQUIRE_ALL") != "" {
				t.Fatalf("mknod %s: %v (EVERGREEN_REQUIRE_ALL is set)", path, err)
			}
			t.Skipf("mknod %s: %v", path, err)
		}
	}
	unix.Umask(old)
	open := func(uid int, ro bool, argv ...string) result {
		return runSpec(t, r, Spec{
			Argv:          argv,
			Env:           []string{helperEnv + "=open"},
			ReadOnlyBinds: []string{helperDir},
			UID:           uid, GID: uid,
			Devices: []Device{{Path: declared, ReadOnly: ro}},
		})
	}
	if res := open(1000, false, helperBin, declared, "rw"); res.code != 0 {
		t.Errorf("declared device rw: exit %d %s", res.code, res.stdout)
	}
	if res := open(1000, true, helperBin, declared, "r"); res.code != 0 {
		t.Errorf("read-only device read: exit %d %s", res.code, res.stdout)
	}
	if res := open(1000, true, helperBin, declared, "rw"); res.code != 3 {
		t.Errorf("read-only device opened rw: exit %d %s, want EPERM (3)", res.code, res.stdout)
	}
	// An undeclared node on the host's disk: its mount is nodev.
	if res := open(1000, false, helperBin, undeclared, "r"); res.code != 4 {
		t.Errorf("undeclared device on the host's disk: exit %d %s, want EACCES (4)", res.code, res.stdout)
	}
	// A node root makes in the container's /dev: the device cgroup says no.
	if res := open(0, false, "/bin/sh", "-c", "mknod /dev/lc c 10 237 && exec "+helperBin+" /dev/lc r"); res.code != 3 {
		t.Errorf("undeclared device made in /dev: exit %d %s, want EPERM (3)", res.code, res.stdout)
	}
}

func TestSignal(t *testing.T) {
	r := newRunner(t, testNS)
	ctx := context.Background()

	// SIGTERM reaches a function that handles it.
	out := &lineWaiter{ch: make(chan string, 8)}
	p, err := r.Start(ctx, Spec{
		ID:            newID(t),
		Argv:          []string{helperBin},
		Env:           []string{helperEnv + "=term"},
		ReadOnlyBinds: []string{helperDir},
		UID:           1000, GID: 1000,
		Stdout: out,
	})
	if err != nil {
		t.Fatal(err)
	}
	if p.Pid() <= 0 {
		t.Errorf("pid %d", p.Pid())
	}
	select {
	case <-out.ch:
	case <-time.After(20 * time.Second):
		p.Signal(syscall.SIGKILL)
		t.Fatal("helper not ready")
	}
	if err := p.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code, oom, err := waitFor(t, p, 20*time.Second); code != 42 || oom || err != nil {
		t.Fatalf("after SIGTERM: exit %d oom %v err %v, want 42", code, oom, err)
	}
	if err := p.Signal(syscall.SIGTERM); !errors.Is(err, os.ErrProcessDone) {
		t.Errorf("signal after exit: %v, want os.ErrProcessDone", err)
	}

	// SIGKILL ends anything, children included.
	p, err = r.Start(ctx, Spec{ID: newID(t), Argv: []string{"/bin/sh", "-c", "sleep 1000 & sleep 1000"}, UID: 1000, GID: 1000})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if code, oom, err := waitFor(t, p, 20*time.Second); code != 137 || oom || err != nil {
		t.Fatalf("after SIGKILL: exit %d oom %v err %v, want 137", code, oom, err)
	}
}

// lineWaiter sends each line written to it on ch.
type lineWaiter struct {
	mu  sync.Mutex
	buf []byte
	ch  chan string
}

func (l *lineWaiter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf = append(l.buf, p...)
	for {
		i := bytes.IndexByte(l.buf, '\n')
		if i < 0 {
			return len(p), nil
		}
		select {
		case l.ch <- string(l.buf[:i]):
		default:
		}
		l.buf = l.buf[i+1:]
	}
}

// Cleanup removes what a previous runner of the same owner left, and
// leaves another owner's containers (another core on the same containerd)
// running.
func TestCleanup(t *testing.T) {
	ns := testNS + "-cleanup"
	old := newOwnedRunner(t, ns, "/var/lib/evergreen-a")
	ctx := context.Background()
	var ps []*Process
	for range 2 {
		p, err := old.Start(ctx, Spec{ID: newID(t), Argv: []string{"/bin/sleep", "1000"}, UID: 1000, GID: 1000})
		if err != nil {
			t.Fatal(err)
		}
		ps = append(ps, p)
	}
	pid := ps[0].Pid()
	other := newOwnedRunner(t, ns, "/var/lib/evergreen-b")
	theirs, err := other.Start(ctx, Spec{ID: newID(t), Argv: []string{"/bin/sleep", "1000"}, UID: 1000, GID: 1000})
	if err != nil {
		t.Fatal(err)
	}

	// A new daemon run of the same owner finds its own.
	r := newOwnedRunner(t, ns, "/var/lib/evergreen-a")
	n, err := r.Cleanup(ctx)
	if err != nil || n != 2 {
		t.Fatalf("Cleanup: %d, %v; want 2", n, err)
	}
	if cs, err := r.client.Containers(ctx); err != nil || len(cs) != 1 || cs[0].ID() != theirs.id {
		t.Fatalf("containers after Cleanup: %d %v; want only the other owner's", len(cs), err)
	}
	if err := unix.Kill(pid, 0); err == nil {
		t.Errorf("pid %d still alive after Cleanup", pid)
	}
	if err := unix.Kill(theirs.Pid(), 0); err != nil {
		t.Errorf("the other owner's container died: %v", err)
	}
	for _, p := range ps {
		waitFor(t, p, 20*time.Second)
	}
	if n, err := r.Cleanup(ctx); err != nil || n != 0 {
		t.Fatalf("second Cleanup: %d, %v; want 0", n, err)
	}
	if n, err := other.Cleanup(ctx); err != nil || n != 1 {
		t.Fatalf("the other owner's Cleanup: %d, %v; want 1", n, err)
	}
	waitFor(t, theirs, 20*time.Second)
}

// BenchmarkContainerStart and BenchmarkBareStart time the same /bin/true
// from start to reaped: in a container, and as a plain child process.
func BenchmarkContainerStart(b *testing.B) {
	r := newRunner(b, testNS)
	ctx := context.Background()
	var starting time.Duration
	for b.Loop() {
		t0 := time.Now()
		p, err := r.Start(ctx, Spec{ID: newID(b), Argv: []string{"/bin/true"}, UID: 1000, GID: 1000, MemoryKB: 16 << 10})
		if err != nil {
			b.Fatal(err)
		}
		starting += time.Since(t0)
		if code, _, err := p.Wait(); code != 0 || err != nil {
			b.Fatal(code, err)
		}
	}
	// Until Start returns: the process runs.
	b.ReportMetric(float64(starting.Nanoseconds())/float64(b.N), "start-ns/op")
}

func BenchmarkBareStart(b *testing.B) {
	for b.Loop() {
		cmd := exec.Command("/bin/true")
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 1000, Gid: 1000}}
		if err := cmd.Run(); err != nil {
			b.Fatal(err)
		}
	}
}
