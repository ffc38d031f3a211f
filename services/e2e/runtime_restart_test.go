package e2e

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/evergreen-edge/evergreen/runtime/container/containerdtest"
	"github.com/evergreen-edge/evergreen/services/internal/suitetest"
	"github.com/evergreen-edge/evergreen/services/kit/bustest"
	"github.com/evergreen-edge/evergreen/services/kit/layout"
)

// inContainer makes f a GreengrassContainer function with memKB of memory.
func inContainer(f map[string]any, memKB int) map[string]any {
	cfg := f["FunctionConfiguration"].(map[string]any)
	env, _ := cfg["Environment"].(map[string]any)
	if env == nil {
		env = map[string]any{}
		cfg["Environment"] = env
	}
	env["Execution"] = map[string]any{"IsolationMode": "GreengrassContainer"}
	cfg["MemorySize"] = memKB
	return f
}

// withCode points f at the code of testdata/fns/dir.
func withCode(f map[string]any, dir string) map[string]any {
	abs, _ := filepath.Abs(filepath.Join("testdata/fns", dir))
	f["Evergreen"].(map[string]any)["CodeUri"] = abs
	return f
}

// optionalContainerd gives the suite a real containerd when there is one
// (failing under EVERGREEN_REQUIRE_ALL when there is none); it reports
// whether there is, and its socket.
func optionalContainerd(t *testing.T) (string, bool) {
	t.Helper()
	socket, stop, err := containerdtest.Start()
	if err != nil {
		if suitetest.RequireAll() {
			t.Fatalf("containerd: %v (EVERGREEN_REQUIRE_ALL is set)", err)
		}
		t.Logf("containerd: %v; only the NoContainer half of this test runs", err)
		return "", false
	}
	t.Cleanup(stop)
	t.Setenv("EVERGREEN_CONTAINERD_SOCKET", socket)
	return socket, true
}

// containerIDs lists the containers of the runtime's namespace.
func containerIDs(t *testing.T, socket string) []string {
	t.Helper()
	out, err := exec.Command("ctr", "--address", socket, "--namespace", "evergreen", "containers", "ls", "-q").CombinedOutput()
	if err != nil {
		t.Fatalf("ctr containers ls: %v\n%s", err, out)
	}
	return strings.Fields(string(out))
}

func invokeOK(t *testing.T, root layout.Root, name string) {
	t.Helper()
	if r := ggctl(t, root, "fn", "invoke", name, `{"sleep":0}`); r.code != 0 || !strings.Contains(r.stdout, `"pid"`) {
		t.Fatalf("fn invoke %s: %d %s%s", name, r.code, r.stdout, r.stderr)
	}
}

// SIGKILL of the runtime daemon while pinned functions run, one as a plain
// process and (with containerd) one in a GreengrassContainer: once the
// supervisor has restarted the runtime, the old workers' processes are
// gone, their containers too, and the functions answer again from new
// workers.
func TestRuntimeSIGKILLLeavesNoWorkers(t *testing.T) {
	needPython(t)
	socket, containers := optionalContainerd(t)
	if containers {
		if _, err := exec.LookPath("ctr"); err != nil {
			t.Fatal("ctr not found (it comes with containerd)")
		}
	}
	root := suitetest.ShortRoot(t)
	suitetest.WriteConfig(t, root, nil)
	s := suitetest.Start(t, root)
	fns := []map[string]any{pyFn("sleeper", true, 10, nil)}
	names := []string{"sleeper"}
	if containers {
		fns = append(fns, inContainer(withCode(pyFn("csleeper", true, 10, nil), "sleeper"), 32768))
		names = append(names, "csleeper")
	}
	deployFunctions(t, root, fns...)
	for _, n := range names {
		invokeOK(t, root, n)
	}
	// The workers as the v1 health API lists them: host pids, worker ids
	// (a container is named after its worker).
	old := map[string]healthWorker{}
	for _, n := range names {
		for _, w := range healthWorkers(t, s, lambdaARN(n)) {
			old[n] = w
		}
		if old[n].WorkerId == "" || !suitetest.Alive(pidOf(t, old[n])) {
			t.Fatalf("no live worker of %s on the health API: %+v", n, old)
		}
	}
	if containers {
		ids := containerIDs(t, socket)
		if !slices.Contains(ids, old["csleeper"].WorkerId) {
			t.Fatalf("no container %s of csleeper's worker; containers: %v", old["csleeper"].WorkerId, ids)
		}
	}

	d := s.Daemon("runtime")
	if d == nil || d.GetPid() <= 0 {
		t.Fatalf("the supervisor lists no runtime pid: %+v", d)
	}
	if err := syscall.Kill(int(d.GetPid()), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	bustest.CheckFor(t, 2*waitLimit, 50*time.Millisecond, func() error {
		n := s.Daemon("runtime")
		if n == nil || n.GetPid() == d.GetPid() || n.GetPid() <= 0 || !n.GetHealthy() {
			return fmt.Errorf("runtime not restarted and healthy yet: %+v", n)
		}
		return nil
	})
	bustest.CheckFor(t, 2*waitLimit, 50*time.Millisecond, func() error {
		for n, w := range old {
			if suitetest.Alive(pidOf(t, w)) {
				return fmt.Errorf("%s's old worker process %s still runs", n, w.ProcessId)
			}
		}
		if containers && slices.Contains(containerIDs(t, socket), old["csleeper"].WorkerId) {
			return fmt.Errorf("csleeper's old container %s is still there", old["csleeper"].WorkerId)
		}
		return nil
	})
	for _, n := range names {
		invokeOK(t, root, n)
		for _, w := range healthWorkers(t, s, lambdaARN(n)) {
			if w.WorkerId == old[n].WorkerId || w.ProcessId == old[n].ProcessId {
				t.Fatalf("%s answered from its old worker %+v", n, w)
			}
		}
	}
}

func pidOf(t *testing.T, w healthWorker) int {
	t.Helper()
	pid, err := w.ProcessId.Int64()
	if err != nil || pid <= 0 {
		t.Fatalf("worker %+v: ProcessId %q", w, w.ProcessId)
	}
	return int(pid)
}
