package packaging_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The boot test runs the host's own systemd as PID 1 of a throw-away
// container (host /usr mounted read-only, a minimal /etc of its own), installs
// deploy/systemd's units there as the README says, and drives them with
// systemctl: what `systemd-analyze verify` cannot tell (READY=1 really
// arrives, the sandbox lets the daemons work, the start and stop order, a
// crash restarting only the crashed daemon, the supervisor unit excluding
// the per-daemon units).
//
// It needs a local Docker engine, systemd installed on the host and a
// cgroup v1 host (the recipe for cgroup v2 differs); otherwise it skips.

const bootGGD = "/opt/evergreen/ggd"

// masked are host units that make no sense in the test container.
var masked = []string{
	"systemd-udevd.service", "systemd-udevd-control.socket", "systemd-udevd-kernel.socket",
	"systemd-logind.service", "systemd-timesyncd.service", "systemd-remount-fs.service",
	"systemd-firstboot.service", "systemd-journald-audit.socket", "getty@tty1.service",
	"console-getty.service", "getty.target", "sys-kernel-debug.mount", "sys-kernel-tracing.mount",
	"dev-hugepages.mount", "systemd-networkd.service", "systemd-resolved.service",
	"cron.service", "ssh.service", "mosquitto.service", "containerd.service", "docker.service",
	"postgresql.service", "e2scrub_reap.service", "apt-daily.timer", "apt-daily-upgrade.timer",
}

func TestSystemdUnitsBoot(t *testing.T) {
	if testing.Short() {
		t.Skip("boots systemd in a container; not in -short")
	}
	requireDocker(t)
	hostSystemd := "/usr/lib/systemd/systemd"
	if _, err := os.Stat(hostSystemd); err != nil {
		skipOrFail(t, "systemd is not installed on the host (%v)", err)
	}
	if _, err := os.Stat("/sys/fs/cgroup/systemd"); err != nil {
		skipOrFail(t, "not a cgroup v1 host (no /sys/fs/cgroup/systemd): this test's recipe for systemd in a container is for cgroup v1")
	}
	ggd := ggdPath(t)
	requireStatic(t, ggd)

	// Build the image: a minimal root with the units and the binary.
	ctxDir := t.TempDir()
	rootfs := filepath.Join(ctxDir, "rootfs")
	for _, d := range []string{"usr", "proc", "sys", "dev", "run", "tmp", "root", "var/lib", "var/log", "var/tmp", "opt/evergreen", "etc/systemd/system"} {
		if err := os.MkdirAll(filepath.Join(rootfs, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	write := func(rel, content string, mode os.FileMode) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(rootfs, rel), []byte(content), mode); err != nil {
			t.Fatal(err)
		}
	}
	link := func(target, rel string) {
		t.Helper()
		if err := os.Symlink(target, filepath.Join(rootfs, rel)); err != nil {
			t.Fatal(err)
		}
	}
	for _, l := range []string{"bin", "sbin", "lib", "lib64"} {
		link("usr/"+l, l)
	}
	write("etc/passwd", "root:x:0:0:root:/root:/bin/sh\n", 0o644)
	write("etc/group", "root:x:0:\n", 0o644)
	write("etc/machine-id", "", 0o444)
	write("etc/hostname", "evergreen-boot-test\n", 0o644)
	link("../usr/lib/os-release", "etc/os-release")
	link("/usr/lib/systemd/system/multi-user.target", "etc/systemd/system/default.target")
	for _, u := range masked {
		link("/dev/null", filepath.Join("etc/systemd/system", u))
	}
	b, err := os.ReadFile(ggd)
	if err != nil {
		t.Fatal(err)
	}
	write("opt/evergreen/ggd", string(b), 0o755)
	units, err := filepath.Glob(filepath.Join(repoRoot(t), "deploy", "systemd", "evergreen*"))
	if err != nil || len(units) == 0 {
		t.Fatalf("no units in deploy/systemd: %v", err)
	}
	for _, u := range units {
		b, err := os.ReadFile(u)
		if err != nil {
			t.Fatal(err)
		}
		write(filepath.Join("etc/systemd/system", filepath.Base(u)), strings.ReplaceAll(string(b), installedGGD, bootGGD), 0o644)
	}
	write("../Dockerfile", "FROM scratch\nCOPY rootfs/ /\nENV container=docker\nSTOPSIGNAL SIGRTMIN+3\nENTRYPOINT [\"/usr/lib/systemd/systemd\"]\n", 0o644)

	id := randomSuffix(t)
	image, name := "evergreen-systemd-test:"+id, "evergreen-systemd-test-"+id
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if out, err := run(ctx, ctxDir, nil, "docker", "build", "-q", "-t", image, "."); err != nil {
		t.Fatalf("docker build: %v\n%s", err, out)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if t.Failed() {
			out, _ := run(ctx, "", nil, "docker", "exec", name, "journalctl", "--no-pager", "-n", "200", "-u", "evergreen*")
			t.Logf("journal of the test container:\n%s", out)
		}
		run(ctx, "", nil, "docker", "rm", "-f", "-v", name)
		run(ctx, "", nil, "docker", "image", "rm", "-f", image)
	})
	if out, err := run(ctx, "", nil, "docker", "run", "-d", "--name", name,
		"--cap-add", "SYS_ADMIN", "--security-opt", "seccomp=unconfined", "--security-opt", "apparmor=unconfined",
		"--tmpfs", "/run", "--tmpfs", "/run/lock", "--tmpfs", "/tmp",
		"-v", "/sys/fs/cgroup:/sys/fs/cgroup:ro", "-v", "/usr:/usr:ro", image); err != nil {
		t.Fatalf("docker run: %v\n%s", err, out)
	}
	sx := func(args ...string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		return run(ctx, "", nil, "docker", append([]string{"exec", name}, args...)...)
	}
	must := func(args ...string) string {
		t.Helper()
		out, err := sx(args...)
		if err != nil {
			t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return out
	}
	waitFor := func(what string, timeout time.Duration, ok func() (bool, string)) {
		t.Helper()
		deadline := time.Now().Add(timeout)
		for {
			good, state := ok()
			if good {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: not within %v; last state: %s", what, timeout, state)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	waitFor("systemd booted", 60*time.Second, func() (bool, string) {
		out, _ := sx("systemctl", "is-system-running")
		s := strings.TrimSpace(out)
		return s == "running" || s == "degraded", s
	})

	ds := daemons(t)
	var all []string
	for _, d := range ds {
		all = append(all, unitName(d.Name))
	}
	show := func(units ...string) map[string]map[string]string {
		t.Helper()
		out := must(append([]string{"systemctl", "show", "-p", "Id,ActiveState,SubState,MainPID,NRestarts,ExecMainStartTimestampMonotonic,ActiveEnterTimestampMonotonic,InactiveEnterTimestampMonotonic"}, units...)...)
		res := map[string]map[string]string{}
		for _, block := range strings.Split(strings.TrimSpace(out), "\n\n") {
			m := map[string]string{}
			for _, line := range strings.Split(block, "\n") {
				k, v, _ := strings.Cut(line, "=")
				m[k] = v
			}
			res[m["Id"]] = m
		}
		return res
	}
	num := func(s string) int64 { n, _ := strconv.ParseInt(s, 10, 64); return n }
	allIn := func(state string, units ...string) func() (bool, string) {
		return func() (bool, string) {
			st := show(units...)
			var b strings.Builder
			ok := true
			for _, u := range units {
				fmt.Fprintf(&b, "%s=%s/%s ", u, st[u]["ActiveState"], st[u]["SubState"])
				if state == "active" && st[u]["ActiveState"] == "failed" {
					t.Fatalf("%s failed (gave up restarting): %s", u, b.String())
				}
				if st[u]["ActiveState"] != state {
					ok = false
				}
			}
			return ok, b.String()
		}
	}
	healthy := func(names ...string) func() (bool, string) {
		return func() (bool, string) {
			for _, n := range names {
				if out, err := sx(bootGGD, "health", "--root", "/var/lib/evergreen", n); err != nil {
					return false, strings.TrimSpace(out)
				}
			}
			return true, ""
		}
	}
	var names []string
	for _, d := range ds {
		names = append(names, d.Name)
	}

	// Install as the README says.
	must("systemctl", "enable", "--now", "evergreen.target")
	waitFor("every daemon unit active", 60*time.Second, allIn("active", all...))
	waitFor("every daemon healthy", 10*time.Second, healthy(names...))
	st := show(all...)
	for _, d := range ds {
		for _, dep := range d.after() {
			started, ready := num(st[unitName(d.Name)]["ExecMainStartTimestampMonotonic"]), num(st[unitName(dep)]["ActiveEnterTimestampMonotonic"])
			if started < ready {
				t.Errorf("%s started (%d µs) before %s was ready (%d µs)", d.Name, started, dep, ready)
			}
		}
	}

	// A crashed bus is restarted alone; the daemons ride through it.
	before := show(all...)
	must("systemctl", "kill", "--kill-who=main", "--signal=SIGKILL", unitName("bus"))
	waitFor("the bus restarted", 15*time.Second, func() (bool, string) {
		s := show(unitName("bus"))[unitName("bus")]
		return s["NRestarts"] == "1" && s["ActiveState"] == "active", fmt.Sprint(s)
	})
	waitFor("every daemon healthy after the bus restart", 10*time.Second, healthy(names...))
	after := show(all...)
	for _, d := range ds[1:] {
		u := unitName(d.Name)
		if after[u]["MainPID"] != before[u]["MainPID"] || after[u]["NRestarts"] != "0" {
			t.Errorf("%s was restarted when the bus crashed (pid %s -> %s, restarts %s)", d.Name, before[u]["MainPID"], after[u]["MainPID"], after[u]["NRestarts"])
		}
	}

	// Stop: reverse order.
	must("systemctl", "stop", "evergreen.target")
	waitFor("every daemon unit stopped", 60*time.Second, allIn("inactive", all...))
	st = show(all...)
	for _, d := range ds {
		for _, dep := range d.after() {
			if stopped, depStopped := num(st[unitName(d.Name)]["InactiveEnterTimestampMonotonic"]), num(st[unitName(dep)]["InactiveEnterTimestampMonotonic"]); stopped > depStopped {
				t.Errorf("%s stopped after %s (%d > %d µs); want reverse start order", d.Name, dep, stopped, depStopped)
			}
		}
	}

	// The supervisor unit excludes the per-daemon units, and the other way.
	must("systemctl", "start", "evergreen.target")
	waitFor("every daemon unit active again", 60*time.Second, allIn("active", all...))
	must("systemctl", "start", "evergreen.service")
	waitFor("evergreen.service active", 60*time.Second, allIn("active", "evergreen.service"))
	waitFor("the per-daemon units stopped by evergreen.service", 30*time.Second, allIn("inactive", append([]string{"evergreen.target"}, all...)...))
	waitFor("every daemon healthy under the supervisor", 30*time.Second, healthy(append([]string{"supervisor"}, names...)...))
	must("systemctl", "start", "evergreen.target")
	waitFor("evergreen.service stopped by evergreen.target", 30*time.Second, allIn("inactive", "evergreen.service"))
	waitFor("every daemon unit active after the switch back", 60*time.Second, allIn("active", all...))
	waitFor("every daemon healthy after the switch back", 10*time.Second, healthy(names...))
	if out, _ := sx("systemctl", "--failed", "--no-legend", "--plain"); strings.Contains(out, "evergreen") {
		t.Errorf("failed units: %s", out)
	}
}
