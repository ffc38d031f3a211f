package cli

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/evergreen-edge/evergreen/ota/agent"
	"github.com/evergreen-edge/evergreen/ota/bundle"
	"github.com/evergreen-edge/evergreen/ota/install"
	"github.com/evergreen-edge/evergreen/services/kit/bustest"
	"github.com/evergreen-edge/evergreen/services/kit/config"
	"github.com/evergreen-edge/evergreen/services/kit/daemon"
	"github.com/evergreen-edge/evergreen/services/kit/layout"
)

// `ggctl ota apply|status` against the real ota daemon, in-process. Its
// restarter stands in for the supervisor and for the new version: on a
// restart request it records the commit the new version would make.

type commitOnRestart struct {
	root string
	mu   sync.Mutex
	n    int
}

func (c *commitOnRestart) Available() error { return nil }

func (c *commitOnRestart) Restart(context.Context, string) error {
	c.mu.Lock()
	c.n++
	c.mu.Unlock()
	go func() {
		time.Sleep(300 * time.Millisecond) // the core restarting
		l := install.New(c.root)
		unlock, err := l.Lock()
		if err != nil {
			return
		}
		defer unlock()
		s, err := l.LoadState()
		if err != nil || s.Pending == nil {
			return
		}
		p := s.Pending
		s.Committed = &install.Installed{Version: p.Version, Dir: p.Dir, At: time.Now()}
		s.Last = &install.Outcome{JobID: p.JobID, Source: p.Source, Version: p.Version, FromVersion: p.PreviousVersion, Status: install.Success,
			Reason: "every daemon healthy", StartedAt: p.StartedAt, FinishedAt: time.Now()}
		s.Pending = nil
		l.SaveState(s)
	}()
	return nil
}

func (s *suite) otaDaemon(pub ed25519.PublicKey) *commitOnRestart {
	s.t.Helper()
	root := layout.Root(s.root)
	if err := root.Create(); err != nil {
		s.t.Fatal(err)
	}
	bus := bustest.Start(s.t)
	bustest.WriteCreds(s.t, root, agent.Name)
	exe := filepath.Join(s.t.TempDir(), "ggd")
	os.WriteFile(exe, []byte("ggd 1.0.0"), 0o755)
	cfg := config.Default()
	cfg.CoreThing.ThingArn = "arn:aws:iot:us-east-1:123456789012:thing/core-1"
	cfg.Evergreen.OTA.TrustedKeys = []string{bundle.MarshalPublicKey(pub)}
	r := &commitOnRestart{root: s.root}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	run, err := daemon.Start(ctx, agent.SpecWithOptions(agent.Options{Restarter: r, Version: "1.0.0", Executable: exe}),
		daemon.Options{Root: s.root, BusURL: bus, Config: cfg, LogStderr: io.Discard})
	if err != nil {
		s.t.Fatal(err)
	}
	s.t.Cleanup(func() { run.Shutdown(context.Background()) })
	return r
}

// otaTestBundle writes a signed bundle of version into dir.
func otaTestBundle(t *testing.T, dir, version string, priv ed25519.PrivateKey) string {
	t.Helper()
	ggd := filepath.Join(dir, "ggd-"+version)
	os.WriteFile(ggd, []byte("ggd "+version), 0o755)
	path := filepath.Join(dir, "evergreen-"+version+".tar.gz")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bundle.Build(f, version, runtime.GOOS, runtime.GOARCH, map[string]string{"ggd": ggd}); err != nil {
		t.Fatal(err)
	}
	f.Close()
	b, _ := os.ReadFile(path)
	sig, err := bundle.Sign(priv, strings.NewReader(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(path+".sig", sig, 0o644)
	return path
}

func TestOtaApplyWaitsForTheCommit(t *testing.T) {
	s := newSuite(t)
	pub, priv, _ := bundle.GenerateKey()
	restarts := s.otaDaemon(pub)
	dir := t.TempDir()
	b := otaTestBundle(t, dir, "1.1.0", priv)

	r := s.ggctl("ota", "apply", b, "--wait", "--id", "job-1")
	wantExit(t, r, ExitOK)
	if !strings.Contains(r.stdout, "job job-1: SUCCESS") || !strings.Contains(r.stdout, "1.1.0 committed (previous: 1.0.0)") {
		t.Fatalf("stdout: %s", r)
	}
	// Not a terminal: one plain line per step, no carriage returns.
	for _, step := range []string{"VERIFYING", "INSTALLING", "RESTARTING"} {
		if !strings.Contains(r.stderr, step) {
			t.Fatalf("no %s line: %s", step, r)
		}
	}
	if strings.Contains(r.stderr, "\r") {
		t.Fatalf("progress redrawn on a non-terminal: %q", r.stderr)
	}
	restarts.mu.Lock()
	n := restarts.n
	restarts.mu.Unlock()
	if n != 1 {
		t.Fatalf("restart requests: %d", n)
	}

	r = s.ggctl("ota", "status")
	wantExit(t, r, ExitOK)
	for _, want := range []string{"running:    1.0.0", "current:    1.1.0", "previous:   1.0.0", "committed:  1.1.0", "pending:    -", "last:       job job-1 (local) SUCCESS 1.1.0 from 1.0.0"} {
		if !strings.Contains(r.stdout, want) {
			t.Fatalf("status lacks %q:\n%s", want, r.stdout)
		}
	}
	r = s.ggctl("--json", "ota", "status")
	var st struct {
		CurrentVersion string `json:"currentVersion"`
		LastOutcome    struct {
			Status string `json:"status"`
		} `json:"lastOutcome"`
		Pending any `json:"pending"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &st); err != nil || st.CurrentVersion != "1.1.0" || st.LastOutcome.Status != "JOB_STATUS_SUCCESS" || st.Pending != nil {
		t.Fatalf("status --json: %v %s", err, r)
	}

	// Without --wait it returns once the restart is asked for.
	b2 := otaTestBundle(t, dir, "1.2.0", priv)
	r = s.ggctl("--json", "ota", "apply", b2)
	wantExit(t, r, ExitOK)
	if !strings.Contains(r.stdout, `"status": "JOB_STATUS_RESTARTING"`) || !strings.Contains(r.stdout, `"version": "1.2.0"`) {
		t.Fatalf("apply --json: %s", r)
	}
}

func TestOtaApplyRefusals(t *testing.T) {
	s := newSuite(t)
	pub, priv, _ := bundle.GenerateKey()
	s.otaDaemon(pub)
	dir := t.TempDir()
	b := otaTestBundle(t, dir, "1.1.0", priv)
	_, other, _ := bundle.GenerateKey()
	foreign := otaTestBundle(t, t.TempDir(), "1.1.0", other)
	old := otaTestBundle(t, dir, "0.9.0", priv)

	r := s.ggctl("ota", "apply", foreign)
	wantExit(t, r, ExitFailed)
	wantOneErrorLineAfterProgress(t, r, "update refused: unknown signing key")
	r = s.ggctl("ota", "apply", old)
	wantExit(t, r, ExitFailed)
	wantOneErrorLineAfterProgress(t, r, "downgrade")
	r = s.ggctl("ota", "apply", b, "--sig", filepath.Join(dir, "missing.sig"))
	wantExit(t, r, ExitUsage)
	wantOneErrorLine(t, r, "signature", "--sig")
	r = s.ggctl("ota", "apply", filepath.Join(dir, "absent.tar.gz"))
	wantExit(t, r, ExitUsage)
	r = s.ggctl("ota", "apply")
	wantExit(t, r, ExitUsage)
	// The bundle's sha256, when given, must be the signed one.
	r = s.ggctl("ota", "apply", b, "--sha256", strings.Repeat("0", 64))
	wantExit(t, r, ExitUsage)
	wantOneErrorLineAfterProgress(t, r, "hash mismatch")
	if _, err := os.Stat(filepath.Join(s.root, "ota")); err == nil {
		t.Fatal("a refusal left DIR/ota")
	}
	r = s.ggctl("ota", "status")
	wantExit(t, r, ExitOK)
	if !strings.Contains(r.stdout, "REJECTED") || !strings.Contains(r.stdout, "current:    - (no update installed yet") {
		t.Fatalf("status after refusals:\n%s", r.stdout)
	}
}

func TestOtaUnreachable(t *testing.T) {
	s := newSuite(t)
	dir := t.TempDir()
	_, priv, _ := bundle.GenerateKey()
	b := otaTestBundle(t, dir, "1.1.0", priv)
	for _, args := range [][]string{{"ota", "status"}, {"ota", "apply", b}} {
		r := s.ggctl(args...)
		wantExit(t, r, ExitUnreachable)
		wantOneErrorLine(t, r, "cannot reach ota")
	}
}

// wantOneErrorLineAfterProgress: progress lines, then one "ggctl: " line.
func wantOneErrorLineAfterProgress(t *testing.T, r result, contains string) {
	t.Helper()
	lines := strings.Split(strings.TrimRight(r.stderr, "\n"), "\n")
	last := lines[len(lines)-1]
	if !strings.HasPrefix(last, "ggctl: ") || !strings.Contains(last, contains) || strings.Count(r.stderr, "ggctl: ") != 1 {
		t.Fatalf("want a last line \"ggctl: ...%s...\", got %s", contains, r)
	}
}
