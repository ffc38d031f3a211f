// Package containerdtest gives tests a real containerd: the one
// $EVERGREEN_CONTAINERD_SOCKET names (CI starts one), or one of their own
// with its root, state and socket in a temporary directory.
package containerdtest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/containerd/containerd/v2/client"
)

// Start returns the socket of a running containerd and a function that
// stops it (a no-op for the one the environment names). It fails with a
// reason a test can print when containers cannot run here (not root, no
// runc, no containerd).
func Start() (socket string, stop func(), err error) {
	stop = func() {}
	if os.Geteuid() != 0 {
		return "", stop, fmt.Errorf("containers need root (euid %d)", os.Geteuid())
	}
	if _, err := exec.LookPath("runc"); err != nil {
		return "", stop, fmt.Errorf("runc not found (apt-get install -y containerd runc): %w", err)
	}
	if s := os.Getenv("EVERGREEN_CONTAINERD_SOCKET"); s != "" {
		return s, stop, nil
	}
	bin, err := exec.LookPath("containerd")
	if err != nil {
		return "", stop, fmt.Errorf("containerd not found (apt-get install -y containerd runc): %w", err)
	}
	// Unix socket paths are short: a short directory under /tmp.
	dir, err := os.MkdirTemp("/tmp", "egc")
	if err != nil {
		return "", stop, err
	}
	socket = filepath.Join(dir, "c.sock")
	conf := fmt.Sprintf(`version = 2
root = %q
state = %q
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = %q
[ttrpc]
  address = %q
[debug]
  address = ""
[metrics]
  address = ""
`, filepath.Join(dir, "root"), filepath.Join(dir, "state"), socket, socket+".ttrpc")
	if err := os.WriteFile(filepath.Join(dir, "config.toml"), []byte(conf), 0o600); err != nil {
		os.RemoveAll(dir)
		return "", stop, err
	}
	logPath := filepath.Join(dir, "containerd.log")
	logf, err := os.Create(logPath)
	if err != nil {
		os.RemoveAll(dir)
		return "", stop, err
	}
	cmd := exec.Command(bin, "--config", filepath.Join(dir, "config.toml"))
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		os.RemoveAll(dir)
		return "", stop, fmt.Errorf("start containerd: %w", err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); logf.Close(); close(exited) }()
	stop = func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
		os.RemoveAll(dir)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		select {
		case <-exited:
			stop()
			return "", func() {}, fmt.Errorf("containerd exited at start: %s", tail(logPath))
		default:
		}
		if _, err := os.Stat(socket); err == nil {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			c, err := client.New(socket, client.WithTimeout(2*time.Second))
			if err == nil {
				_, err = c.Version(ctx)
				c.Close()
			}
			cancel()
			if err == nil {
				return socket, stop, nil
			}
		}
		if time.Now().After(deadline) {
			t := tail(logPath)
			stop()
			return "", func() {}, fmt.Errorf("containerd did not come up: %s", t)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func tail(path string) string {
	b, _ := os.ReadFile(path)
	s := strings.TrimSpace(string(b))
	if len(s) > 2000 {
		s = s[len(s)-2000:]
	}
	return s
}
