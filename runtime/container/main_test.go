package container

import (
	"context"
	"fmt"
	"github.com/evergreen-edge/evergreen/runtime/container/containerdtest"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// The tests need containerd and runc, and root. EVERGREEN_CONTAINERD_SOCKET
// names a running containerd (CI starts one); otherwise TestMain starts
// its own with root, state and socket in a temporary directory.
var (
	socket     string
	skipReason string
	helperDir  string // holds a copy of the test binary, for helper modes
	helperBin  string
	rootDir    string // Options.RootDir of every runner
	testNS     = fmt.Sprintf("evergreen-test-%d", os.Getpid())
)

// helperEnv selects a helper mode of the test binary inside a container.
const helperEnv = "EVERGREEN_CONTAINER_TEST_HELPER"

func TestMain(m *testing.M) {
	if mode := os.Getenv(helperEnv); mode != "" {
		os.Exit(helper(mode, os.Args[1:]))
	}
	os.Exit(run(m))
}

func run(m *testing.M) int {
	stop, err := setup()
	if err != nil {
		if os.Getenv("EVERGREEN_REQUIRE_ALL") != "" {
			fmt.Fprintf(os.Stderr, "container tests: %v (EVERGREEN_REQUIRE_ALL is set)\n", err)
			return 1
		}
		skipReason = err.Error()
	}
	code := m.Run()
	if skipReason == "" && socket != "" {
		dropNamespaces(testNS, testNS+"-cleanup")
	}
	if stop != nil {
		stop()
	}
	return code
}

// setup finds or starts containerd and copies the test binary where a
// container can run it.
func setup() (stop func(), err error) {
	if os.Geteuid() != 0 {
		return nil, fmt.Errorf("containers need root (euid %d)", os.Geteuid())
	}
	if _, err := exec.LookPath("runc"); err != nil {
		return nil, fmt.Errorf("runc not found (apt-get install -y containerd runc): %w", err)
	}
	var cleanups []func()
	stop = func() {
		for i := len(cleanups) - 1; i >= 0; i-- {
			cleanups[i]()
		}
	}
	defer func() {
		if err != nil {
			stop()
			stop = nil
		}
	}()

	// The test binary under a directory every uid can traverse; /tmp is
	// private in a container, so it gets bound in (ReadOnlyBinds).
	helperDir, err = os.MkdirTemp("", "egc-bin")
	if err != nil {
		return stop, err
	}
	cleanups = append(cleanups, func() { os.RemoveAll(helperDir) })
	if err := os.Chmod(helperDir, 0o755); err != nil {
		return stop, err
	}
	self, err := os.Executable()
	if err != nil {
		return stop, err
	}
	helperBin = filepath.Join(helperDir, "helper")
	if err := copyFile(self, helperBin, 0o755); err != nil {
		return stop, err
	}

	rootDir, err = os.MkdirTemp("", "egc-root")
	if err != nil {
		return stop, err
	}
	cleanups = append(cleanups, func() { os.RemoveAll(rootDir) })

	var stopContainerd func()
	socket, stopContainerd, err = containerdtest.Start()
	cleanups = append(cleanups, stopContainerd)
	return stop, err
}

func copyFile(src, dst string, mode os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

func quietLog() *slog.Logger {
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// dropNamespaces removes what the tests left in their namespaces, and
// the namespaces.
func dropNamespaces(names ...string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, ns := range names {
		r, err := New(ctx, Options{Address: socket, Namespace: ns, RootDir: rootDir, Log: quietLog()})
		if err != nil {
			fmt.Fprintln(os.Stderr, "container tests: cleanup:", err)
			return
		}
		if n, err := r.Cleanup(ctx); err != nil || n > 0 {
			fmt.Fprintf(os.Stderr, "container tests: %d containers left in %s (%v)\n", n, ns, err)
		}
		r.client.NamespaceService().Delete(ctx, ns)
		r.Close()
		// runc removes each container's cgroup, not their parent; empty
		// directories only go.
		dirs, _ := filepath.Glob(filepath.Join("/sys/fs/cgroup/*", ns))
		dirs = append(dirs, filepath.Join("/sys/fs/cgroup", ns))
		// The runc shim's state root of the namespace, empty by now.
		dirs = append(dirs, filepath.Join("/run/containerd/runc", ns))
		for _, d := range dirs {
			os.Remove(d)
		}
	}
}
