package e2e

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/evergreen-edge/evergreen/ota/bundle"
	supervisorv1 "github.com/evergreen-edge/evergreen/proto/evergreen/supervisor/v1"
	"github.com/evergreen-edge/evergreen/services/internal/suitetest"
	"github.com/evergreen-edge/evergreen/services/kit/layout"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// The OTA tests need ggd at several versions, some built to misbehave
// (only in a -tags failpoints build do the ldflags variables mean
// anything). Each flavour is built once per test binary; bundles are
// built and signed once with a key made for the run.

type otaFlavour struct {
	version string
	tags    string
	ldflags string
}

const (
	buildinfoPkg = "github.com/evergreen-edge/evergreen/services/kit/buildinfo"
	daemonPkg    = "github.com/evergreen-edge/evergreen/services/kit/daemon"
	launchPkg    = "github.com/evergreen-edge/evergreen/ota/launch"
)

var otaFlavours = map[string]otaFlavour{
	"1.0.0": {version: "1.0.0"},
	"1.1.0": {version: "1.1.0"},
	// The crash table needs the failpoints in the old and the new version.
	"1.0.0-fp": {version: "1.0.0", tags: "failpoints"},
	"1.1.0-fp": {version: "1.1.0", tags: "failpoints"},
	// A version whose stream manager never reports healthy.
	"1.2.0-unhealthy": {version: "1.2.0", tags: "failpoints", ldflags: "-X " + daemonPkg + ".neverHealthy=streammgr"},
	// A version whose ggd exits at once.
	"1.3.0-crash": {version: "1.3.0", tags: "failpoints", ldflags: "-X " + launchPkg + ".crashAtStart=yes"},
}

var (
	otaMu      sync.Mutex
	otaDir     string
	otaBuilt   = map[string]string{}
	otaBundled = map[string]otaBundleFile{}
	otaPub     ed25519.PublicKey
	otaPriv    ed25519.PrivateKey
)

type otaBundleFile struct {
	path string
	sig  []byte
	size int64
}

func otaWorkDir(t testing.TB) string {
	if otaDir == "" {
		d, err := os.MkdirTemp("", "evergreen-ota-")
		if err != nil {
			t.Fatal(err)
		}
		otaDir = d
		if otaPub, otaPriv, err = bundle.GenerateKey(); err != nil {
			t.Fatal(err)
		}
	}
	return otaDir
}

// otaGgd builds ggd as flavour name (once per test binary).
func otaGgd(t testing.TB, name string) string {
	t.Helper()
	otaMu.Lock()
	defer otaMu.Unlock()
	if p, ok := otaBuilt[name]; ok {
		return p
	}
	f, ok := otaFlavours[name]
	if !ok {
		t.Fatalf("no ggd flavour %s", name)
	}
	repo, err := suitetest.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(otaWorkDir(t), "build-"+name, "ggd")
	args := []string{"build", "-trimpath", "-ldflags", "-s -w -X " + buildinfoPkg + ".Version=" + f.version + " " + f.ldflags, "-o", out}
	if f.tags != "" {
		args = append(args, "-tags", f.tags)
	}
	cmd := exec.Command("go", append(args, "./services/cmd/ggd")...)
	cmd.Dir = repo
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	start := time.Now()
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ggd %s: %v\n%s", name, err, b)
	}
	t.Logf("built ggd %s in %s", name, time.Since(start).Round(time.Millisecond))
	otaBuilt[name] = out
	return out
}

// otaBundleOpts vary a bundle.
type otaBundleOpts struct {
	// version overrides the flavour's in the manifest (a downgrade).
	version string
	// arch overrides runtime.GOARCH in the manifest.
	arch string
	// ggctl adds the ggctl of the run.
	ggctl bool
}

// otaBundle builds and signs a bundle of flavour name (once per options),
// with `ggctl ota bundle` (the test binary may run with -race, which makes
// compressing 40 MB in-process take half a minute). A bundle whose version
// or architecture is overridden is only ever refused: it holds a small
// stand-in for ggd, made in-process.
func otaBundle(t testing.TB, name string, o otaBundleOpts) otaBundleFile {
	t.Helper()
	ggd := otaGgd(t, name)
	ctl := suitetest.Binary(t, "ggctl")
	otaMu.Lock()
	defer otaMu.Unlock()
	fake := o.version != "" || o.arch != ""
	if o.version == "" {
		o.version = otaFlavours[name].version
	}
	if o.arch == "" {
		o.arch = runtime.GOARCH
	}
	key := fmt.Sprintf("%s|%s|%s|%v", name, o.version, o.arch, o.ggctl)
	if b, ok := otaBundled[key]; ok {
		return b
	}
	path := filepath.Join(otaWorkDir(t), fmt.Sprintf("evergreen-%s-%s-%s-%d.tar.gz", o.version, name, o.arch, len(otaBundled)))
	start := time.Now()
	if fake {
		stand := filepath.Join(otaWorkDir(t), "stand-in-ggd")
		os.WriteFile(stand, []byte("#!/bin/sh\nexit 3\n"), 0o755)
		f, err := os.Create(path)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := bundle.Build(f, o.version, runtime.GOOS, o.arch, map[string]string{"ggd": stand}); err != nil {
			t.Fatal(err)
		}
		f.Close()
	} else {
		args := []string{"ota", "bundle", "--version", o.version, "--out", path, "ggd=" + ggd}
		if o.ggctl {
			args = append(args, "ggctl="+ctl)
		}
		if out, err := exec.Command(ctl, args...).CombinedOutput(); err != nil {
			t.Fatalf("ggctl %v: %v\n%s", args, err, out)
		}
	}
	b := otaBundleFile{path: path, sig: otaSign(t, path, otaPriv)}
	fi, _ := os.Stat(path)
	b.size = fi.Size()
	t.Logf("bundle %s (%s): %.1f MiB, built in %s", o.version, name, float64(b.size)/(1<<20), time.Since(start).Round(time.Millisecond))
	os.WriteFile(path+".sig", b.sig, 0o644)
	otaBundled[key] = b
	return b
}

func otaSign(t testing.TB, path string, priv ed25519.PrivateKey) []byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sig, err := bundle.Sign(priv, f)
	if err != nil {
		t.Fatal(err)
	}
	return sig
}

// otaConfig adds the OTA settings to root's config.json (written by
// suitetest.WriteConfig first when absent).
func otaConfig(t testing.TB, root layout.Root, managedRespawn bool, healthMs int) {
	t.Helper()
	otaMu.Lock()
	otaWorkDir(t)
	pub := bundle.MarshalPublicKey(otaPub)
	otaMu.Unlock()
	if _, err := os.Stat(root.ConfigFile()); err != nil {
		suitetest.WriteConfig(t, root, nil)
	}
	b, err := os.ReadFile(root.ConfigFile())
	if err != nil {
		t.Fatal(err)
	}
	var cfg map[string]any
	if err := json.Unmarshal(b, &cfg); err != nil {
		t.Fatal(err)
	}
	cfg["managedRespawn"] = managedRespawn
	cfg["runtime"] = map[string]any{"postStartHealthCheckTimeout": healthMs}
	eg := cfg["evergreen"].(map[string]any)
	eg["ota"] = map[string]any{"trustedKeys": []any{pub}}
	b, _ = json.MarshalIndent(cfg, "", "  ")
	if err := os.WriteFile(root.ConfigFile(), b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// listDaemons asks the supervisor on a fresh connection (the process
// behind the socket changes across restarts).
func listDaemons(root layout.Root) (*supervisorv1.ListDaemonsResponse, error) {
	conn, err := grpc.NewClient("unix://"+root.Socket("supervisor"), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	return supervisorv1.NewSupervisorClient(conn).ListDaemons(ctx, &supervisorv1.ListDaemonsRequest{})
}

// waitVersion waits until the supervisor of root runs version with every
// daemon healthy.
func waitVersion(root layout.Root, version string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var last string
	for time.Now().Before(deadline) {
		resp, err := listDaemons(root)
		if err != nil {
			last = err.Error()
		} else {
			ok := len(resp.GetDaemons()) >= 10 && strings.HasPrefix(resp.GetVersion(), version+" ")
			var bad []string
			for _, d := range resp.GetDaemons() {
				if !d.GetHealthy() {
					ok = false
					bad = append(bad, d.GetName()+"="+d.GetState().String())
				}
			}
			if ok {
				return nil
			}
			last = fmt.Sprintf("version %q, not healthy: %v", resp.GetVersion(), bad)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("not %s with every daemon healthy within %v: %s", version, timeout, last)
}

// checkRunsDir checks that the supervisor and every daemon run
// DIR/ota/versions/<dir>/ggd: one whole version, no mix.
func checkRunsDir(t *testing.T, root layout.Root, dir string) {
	t.Helper()
	resp, err := listDaemons(root)
	if err != nil {
		t.Fatal(err)
	}
	want := filepath.Join(root.Dir(), "ota", "versions", dir, "ggd")
	pids := map[string]int{}
	for _, d := range resp.GetDaemons() {
		pids[d.GetName()] = int(d.GetPid())
	}
	if b, err := os.ReadFile(root.PidFile("supervisor")); err == nil {
		var pid int
		fmt.Sscan(strings.TrimSpace(string(b)), &pid)
		pids["supervisor"] = pid
	}
	for name, pid := range pids {
		exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
		if err != nil || exe != want {
			t.Fatalf("%s (pid %d) runs %q (%v), want %s", name, pid, exe, err, want)
		}
	}
}

// otaStatusJSON is `ggctl --json ota status`.
type otaStatusJSON struct {
	RunningVersion   string `json:"runningVersion"`
	CurrentVersion   string `json:"currentVersion"`
	PreviousVersion  string `json:"previousVersion"`
	CommittedVersion string `json:"committedVersion"`
	Pending          *struct {
		Version        string `json:"version"`
		LaunchAttempts int    `json:"launchAttempts"`
		JobID          string `json:"jobId"`
		RollingBack    bool   `json:"rollingBack"`
	} `json:"pending"`
	Broken []struct {
		Version string `json:"version"`
		Reason  string `json:"reason"`
	} `json:"broken"`
	LastOutcome *struct {
		JobID       string    `json:"jobId"`
		Source      string    `json:"source"`
		Version     string    `json:"version"`
		FromVersion string    `json:"fromVersion"`
		Status      string    `json:"status"`
		Reason      string    `json:"reason"`
		FinishedAt  time.Time `json:"finishedAt"`
	} `json:"lastOutcome"`
	Installed []string `json:"installed"`
}

func otaStatus(t *testing.T, root layout.Root) otaStatusJSON {
	t.Helper()
	r := ggctl(t, root, "--json", "ota", "status")
	var st otaStatusJSON
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &st) != nil {
		t.Fatalf("ota status: %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	return st
}

// waitOTAOutcome waits until the last outcome is job's, and returns the
// status then.
func waitOTAOutcome(t *testing.T, root layout.Root, job string, timeout time.Duration) otaStatusJSON {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var last string
	for time.Now().Before(deadline) {
		r := ggctl(t, root, "--json", "ota", "status")
		var st otaStatusJSON
		if r.code == 0 && json.Unmarshal([]byte(r.stdout), &st) == nil {
			if st.LastOutcome != nil && st.LastOutcome.JobID == job && st.Pending == nil {
				return st
			}
			last = r.stdout
		} else {
			last = r.stderr
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("job %s: no outcome within %v: %s", job, timeout, last)
	return otaStatusJSON{}
}

// otaTree fingerprints DIR/ota (names, link targets, file hashes).
func otaTree(t *testing.T, root layout.Root) string {
	t.Helper()
	var b strings.Builder
	filepath.WalkDir(filepath.Join(root.Dir(), "ota"), func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		rel, _ := filepath.Rel(root.Dir(), p)
		switch {
		case d.Type()&fs.ModeSymlink != 0:
			tgt, _ := os.Readlink(p)
			fmt.Fprintf(&b, "%s -> %s\n", rel, tgt)
		case d.Type().IsRegular():
			fmt.Fprintf(&b, "%s %s\n", rel, fileSHA(p))
		default:
			fmt.Fprintf(&b, "%s/\n", rel)
		}
		return nil
	})
	return b.String()
}

func fileSHA(p string) string {
	b, err := os.ReadFile(p)
	if err != nil {
		return "unreadable"
	}
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:8])
}

// service runs `ggd --root DIR` as systemd's Restart=always does: started
// again 100 ms after every exit, whatever the code, until stopped.
type service struct {
	t    *testing.T
	root layout.Root
	bin  string
	env  []string
	out  *bytes.Buffer

	mu    sync.Mutex
	cmd   *exec.Cmd
	exits []int
	stop  bool
	done  chan struct{}
}

func runService(t *testing.T, root layout.Root, bin string, env ...string) *service {
	s := &service{t: t, root: root, bin: bin, env: env, out: &bytes.Buffer{}, done: make(chan struct{})}
	go s.loop()
	t.Cleanup(func() {
		s.shutdown()
		if t.Failed() {
			s.mu.Lock()
			t.Logf("ggd output:\n%s", s.out.String())
			s.mu.Unlock()
		}
	})
	return s
}

func (s *service) loop() {
	defer close(s.done)
	for {
		s.mu.Lock()
		if s.stop {
			s.mu.Unlock()
			return
		}
		cmd := exec.Command(s.bin, "--root", s.root.Dir())
		cmd.Env = append(os.Environ(), s.env...)
		cmd.Stdout, cmd.Stderr = lockedWriter{s}, lockedWriter{s}
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		if err := cmd.Start(); err != nil {
			s.mu.Unlock()
			return
		}
		s.cmd = cmd
		s.mu.Unlock()
		cmd.Wait()
		s.mu.Lock()
		s.exits = append(s.exits, cmd.ProcessState.ExitCode())
		s.mu.Unlock()
		time.Sleep(100 * time.Millisecond)
	}
}

type lockedWriter struct{ s *service }

func (w lockedWriter) Write(p []byte) (int, error) {
	w.s.mu.Lock()
	defer w.s.mu.Unlock()
	return w.s.out.Write(p)
}

// exitCodes are the codes of the runs so far.
func (s *service) exitCodes() []int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]int(nil), s.exits...)
}

// shutdown stops the service as `systemctl stop` would.
func (s *service) shutdown() {
	s.mu.Lock()
	s.stop = true
	cmd := s.cmd
	s.mu.Unlock()
	if cmd != nil && cmd.Process != nil {
		cmd.Process.Signal(syscall.SIGTERM)
	}
	select {
	case <-s.done:
	case <-time.After(20 * time.Second):
		if cmd != nil && cmd.Process != nil {
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		}
		<-s.done
	}
}

// TestMain removes the OTA builds and bundles (hundreds of MB) after the
// run.
func TestMain(m *testing.M) {
	code := m.Run()
	if otaDir != "" {
		os.RemoveAll(otaDir)
	}
	os.Exit(code)
}
