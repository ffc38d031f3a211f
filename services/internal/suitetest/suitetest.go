// Package suitetest runs the real `ggd` binary as a suite for end-to-end
// tests: real processes, real sockets, real signals.
package suitetest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	supervisorv1 "github.com/evergreen-edge/evergreen/proto/evergreen/supervisor/v1"
	"github.com/evergreen-edge/evergreen/services/kit/endpoints"
	"github.com/evergreen-edge/evergreen/services/kit/layout"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

var (
	buildOnce sync.Once
	built     string
	buildErr  error
)

// RepoRoot finds the folder holding go.work.
func RepoRoot() (string, error) {
	dir, _ := os.Getwd()
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.work")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("go.work not found above the test's directory")
		}
		dir = parent
	}
}

// Binary returns the path of a program of the repo: $EVERGREEN_BIN/<name>
// when set (make test), otherwise it is built once into a temp dir.
func Binary(t testing.TB, name string) string {
	t.Helper()
	if dir := os.Getenv("EVERGREEN_BIN"); dir != "" {
		p := filepath.Join(dir, name)
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("EVERGREEN_BIN=%s has no %s (run make build): %v", dir, name, err)
		}
		return p
	}
	buildOnce.Do(func() {
		repo, err := RepoRoot()
		if err != nil {
			buildErr = err
			return
		}
		out, err := os.MkdirTemp("", "evergreen-bin-")
		if err != nil {
			buildErr = err
			return
		}
		for pkg, bin := range map[string]string{"./services/cmd/ggd": "ggd", "./tools/cmd/ggctl": "ggctl"} {
			cmd := exec.Command("go", "build", "-o", filepath.Join(out, bin), pkg)
			cmd.Dir = repo
			cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
			if b, err := cmd.CombinedOutput(); err != nil {
				buildErr = fmt.Errorf("go build %s: %v\n%s", pkg, err, b)
				return
			}
		}
		built = out
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return filepath.Join(built, name)
}

// TestConfig is a config.json for tests: every port picked free, fast
// restarts. mutate may change the decoded object before it is written.
func WriteConfig(t testing.TB, root layout.Root, mutate func(cfg map[string]any)) {
	t.Helper()
	cfg := map[string]any{
		"coreThing": map[string]any{"thingArn": "arn:aws:iot:us-east-1:123456789012:thing/test-core"},
		"evergreen": map[string]any{
			"listen": map[string]any{
				"mqtt": "127.0.0.1:0", "ipc": "127.0.0.1:0", "streams": "127.0.0.1:0", "bus": "127.0.0.1:0", "http": "127.0.0.1:0",
				"discovery": "127.0.0.1:0",
			},
			"supervisor": map[string]any{"restartBackoffInitialMs": 50, "restartBackoffMaxMs": 1000},
		},
	}
	if mutate != nil {
		mutate(cfg)
	}
	b, _ := json.MarshalIndent(cfg, "", "  ")
	if err := os.MkdirAll(root.ConfigDir(), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(root.ConfigFile(), b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// Suite is a running `ggd --root DIR`.
type Suite struct {
	t      testing.TB
	Root   layout.Root
	Cmd    *exec.Cmd
	Stderr *syncBuffer
	done   chan struct{}
	conn   *grpc.ClientConn
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Start launches the supervisor on root (a short temp dir when empty) and
// waits until every daemon is healthy.
func Start(t testing.TB, root layout.Root) *Suite {
	t.Helper()
	s := Launch(t, root)
	if err := s.WaitHealthy(20 * time.Second); err != nil {
		t.Fatalf("suite not healthy: %v\nstderr:\n%s", err, s.Stderr.String())
	}
	return s
}

// ShortRoot is a temp dir short enough for unix socket paths.
func ShortRoot(t testing.TB) layout.Root {
	t.Helper()
	dir, err := os.MkdirTemp("", "eg-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return layout.Root(dir)
}

// Launch starts the supervisor without waiting.
func Launch(t testing.TB, root layout.Root) *Suite {
	return launch(t, root, root.Dir(), "")
}

// LaunchRelative starts the supervisor from root's parent folder with
// `--root ./<name>`, as `make run` does.
func LaunchRelative(t testing.TB, root layout.Root) *Suite {
	return launch(t, root, "./"+filepath.Base(root.Dir()), filepath.Dir(root.Dir()))
}

func launch(t testing.TB, root layout.Root, arg, dir string) *Suite {
	t.Helper()
	s := &Suite{t: t, Root: root, Stderr: &syncBuffer{}, done: make(chan struct{})}
	s.Cmd = exec.Command(Binary(t, "ggd"), "--root", arg)
	s.Cmd.Dir = dir
	s.Cmd.Stderr = s.Stderr
	s.Cmd.Stdout = s.Stderr
	if err := s.Cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { s.Cmd.Wait(); close(s.done) }()
	t.Cleanup(func() {
		s.Stop(10 * time.Second)
		if s.conn != nil {
			s.conn.Close()
		}
		if t.Failed() {
			t.Logf("supervisor output:\n%s", s.Stderr.String())
		}
	})
	return s
}

// Done is closed when the supervisor process has exited.
func (s *Suite) Done() <-chan struct{} { return s.done }

// Client returns a Supervisor API client.
func (s *Suite) Client() supervisorv1.SupervisorClient {
	if s.conn == nil {
		c, err := grpc.NewClient("unix://"+s.Root.Socket("supervisor"), grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			s.t.Fatal(err)
		}
		s.conn = c
	}
	return supervisorv1.NewSupervisorClient(s.conn)
}

// Daemons lists the daemons, or nil when the supervisor does not answer.
func (s *Suite) Daemons() []*supervisorv1.Daemon {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	r, err := s.Client().ListDaemons(ctx, &supervisorv1.ListDaemonsRequest{})
	if err != nil {
		return nil
	}
	return r.Daemons
}

// Daemon returns one daemon's state.
func (s *Suite) Daemon(name string) *supervisorv1.Daemon {
	for _, d := range s.Daemons() {
		if d.Name == name {
			return d
		}
	}
	return nil
}

// WaitHealthy polls until every daemon is RUNNING and healthy.
func (s *Suite) WaitHealthy(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var last []*supervisorv1.Daemon
	for time.Now().Before(deadline) {
		select {
		case <-s.done:
			return fmt.Errorf("supervisor exited: %v", s.Cmd.ProcessState)
		default:
		}
		last = s.Daemons()
		ok := len(last) > 0
		for _, d := range last {
			ok = ok && d.Healthy
		}
		if ok {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	var b strings.Builder
	for _, d := range last {
		fmt.Fprintf(&b, "%s=%s(%s) ", d.Name, d.State, d.LastError)
	}
	return fmt.Errorf("timeout after %v: %s", timeout, b.String())
}

// Endpoints reads DIR/run/endpoints.json.
func (s *Suite) Endpoints() endpoints.Endpoints {
	e, err := endpoints.Read(s.Root.EndpointsFile())
	if err != nil {
		s.t.Fatal(err)
	}
	return e
}

// HTTPGet fetches a path from the supervisor's HTTP endpoint.
func (s *Suite) HTTPGet(path string) (int, string) {
	resp, err := http.Get("http://" + endpoints.Dialable(s.Endpoints().HTTP) + path)
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	b.ReadFrom(resp.Body)
	return resp.StatusCode, b.String()
}

// Signal sends sig to the supervisor.
func (s *Suite) Signal(sig syscall.Signal) { s.Cmd.Process.Signal(sig) }

// Stop sends SIGTERM and waits; SIGKILL after timeout.
func (s *Suite) Stop(timeout time.Duration) {
	select {
	case <-s.done:
		return
	default:
	}
	s.Cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(timeout):
		s.Cmd.Process.Kill()
		<-s.done
	}
}

// Alive says whether a pid still exists (and is not a zombie).
func Alive(pid int) bool {
	if pid <= 0 {
		return false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// Field 3 is the state; Z is a zombie.
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	return len(f) > 0 && f[0] != "Z"
}

// RequireAll reports whether every environment-dependent test must run
// (CI sets EVERGREEN_REQUIRE_ALL=1).
func RequireAll() bool { return os.Getenv("EVERGREEN_REQUIRE_ALL") != "" }

var (
	tagBuildsMu sync.Mutex
	tagBuilds   = map[string]string{}
)

// BinaryWithTags builds ggd (./services/cmd/ggd) with the given build tags
// once per test binary into a temp dir and returns its path; crash tests use
// it for `-tags failpoints`. Never $EVERGREEN_BIN: that one has no tags.
func BinaryWithTags(t testing.TB, tags string) string {
	t.Helper()
	tagBuildsMu.Lock()
	defer tagBuildsMu.Unlock()
	if p, ok := tagBuilds[tags]; ok {
		return p
	}
	repo, err := RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	out, err := os.MkdirTemp("", "evergreen-bin-"+strings.ReplaceAll(tags, ",", "-")+"-")
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(out, "ggd")
	cmd := exec.Command("go", "build", "-tags", tags, "-o", p, "./services/cmd/ggd")
	cmd.Dir = repo
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build -tags %s: %v\n%s", tags, err, b)
	}
	tagBuilds[tags] = p
	return p
}

// LaunchOptions tunes LaunchWith.
type LaunchOptions struct {
	// Binary is the ggd to run; Binary(t, "ggd") when empty.
	Binary string
	// Env is added to the test's environment.
	Env []string
}

// LaunchWith starts the supervisor in a process group of its own (so Kill
// can take it down with everything it started) without waiting.
func LaunchWith(t testing.TB, root layout.Root, o LaunchOptions) *Suite {
	t.Helper()
	bin := o.Binary
	if bin == "" {
		bin = Binary(t, "ggd")
	}
	s := &Suite{t: t, Root: root, Stderr: &syncBuffer{}, done: make(chan struct{})}
	s.Cmd = exec.Command(bin, "--root", root.Dir())
	s.Cmd.Env = append(os.Environ(), o.Env...)
	s.Cmd.Stderr = s.Stderr
	s.Cmd.Stdout = s.Stderr
	s.Cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := s.Cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { s.Cmd.Wait(); close(s.done) }()
	t.Cleanup(func() {
		s.Stop(10 * time.Second)
		if s.conn != nil {
			s.conn.Close()
		}
		if t.Failed() {
			t.Logf("supervisor output:\n%s", s.Stderr.String())
		}
	})
	return s
}

// Kill is a power cut for the suite: SIGKILL to the supervisor's process
// group and to every daemon's (the supervisor puts each in its own), with
// no chance to clean up. It returns when all of them are gone.
func (s *Suite) Kill() {
	s.t.Helper()
	var pids []int
	entries, _ := os.ReadDir(s.Root.RunDir())
	for _, e := range entries {
		name, ok := strings.CutSuffix(e.Name(), ".pid")
		if !ok {
			continue
		}
		b, err := os.ReadFile(s.Root.PidFile(name))
		if err != nil {
			continue
		}
		var pid int
		if _, err := fmt.Sscan(strings.TrimSpace(string(b)), &pid); err == nil && pid > 1 && pid != os.Getpid() {
			pids = append(pids, pid)
		}
	}
	if s.Cmd.Process != nil {
		syscall.Kill(-s.Cmd.Process.Pid, syscall.SIGKILL)
		syscall.Kill(s.Cmd.Process.Pid, syscall.SIGKILL)
	}
	for _, pid := range pids {
		if s.ownProcess(pid) {
			syscall.Kill(-pid, syscall.SIGKILL)
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	<-s.done
	deadline := time.Now().Add(10 * time.Second)
	for _, pid := range pids {
		for Alive(pid) && s.ownProcess(pid) && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// ownProcess says whether pid runs the suite's binary (a pid file may be
// stale): the one launched, or a version installed under DIR/ota, which
// the OTA launcher hands the process over to.
func (s *Suite) ownProcess(pid int) bool {
	exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
	if err != nil {
		return false
	}
	exe = strings.TrimSuffix(exe, " (deleted)")
	return exe == s.Cmd.Path || strings.HasPrefix(exe, filepath.Join(s.Root.Dir(), "ota", "versions")+"/")
}
