package agent

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/evergreen-edge/evergreen/ota/bundle"
	"github.com/evergreen-edge/evergreen/ota/install"
	otav1 "github.com/evergreen-edge/evergreen/proto/evergreen/ota/v1"
	supervisorv1 "github.com/evergreen-edge/evergreen/proto/evergreen/supervisor/v1"
	"github.com/evergreen-edge/evergreen/services/kit/bustest"
	"github.com/evergreen-edge/evergreen/services/kit/config"
	"github.com/evergreen-edge/evergreen/services/kit/daemon"
	"github.com/evergreen-edge/evergreen/services/kit/errdefs"
	"github.com/evergreen-edge/evergreen/services/kit/layout"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// The agent runs in-process on a temp root with a real bus and gRPC
// socket; the supervisor is a fake on DIR/run/supervisor.sock that
// records restart requests and answers ListDaemons as the test says.

type harness struct {
	t       *testing.T
	root    layout.Root
	bus     string
	pub     ed25519.PublicKey
	priv    ed25519.PrivateKey
	sup     *fakeSupervisor
	exe     string // the running "ggd"
	running *daemon.Running
	agent   *Agent
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	t.Setenv("EVERGREEN_SUPERVISED", "1")
	dir, err := os.MkdirTemp("", "ota-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	h := &harness{t: t, root: layout.Root(dir), bus: bustest.Start(t), sup: &fakeSupervisor{healthy: true}}
	h.pub, h.priv, _ = bundle.GenerateKey()
	if err := h.root.Create(); err != nil {
		t.Fatal(err)
	}
	bustest.WriteCreds(t, h.root, Name)
	// The running ggd of a core never updated: somewhere outside DIR.
	h.exe = filepath.Join(t.TempDir(), "bin", "ggd")
	os.MkdirAll(filepath.Dir(h.exe), 0o755)
	os.WriteFile(h.exe, []byte("ggd 1.0.0"), 0o755)
	os.WriteFile(filepath.Join(filepath.Dir(h.exe), "ggctl"), []byte("ggctl 1.0.0"), 0o755)
	h.serveSupervisor()
	return h
}

func (h *harness) config(mutate func(*config.Config)) *config.Config {
	cfg := config.Default()
	cfg.CoreThing.ThingArn = "arn:aws:iot:us-east-1:123456789012:thing/core-1"
	cfg.Evergreen.OTA.TrustedKeys = []string{bundle.MarshalPublicKey(h.pub)}
	cfg.Runtime.PostStartHealthCheckTimeout = 2000
	if mutate != nil {
		mutate(cfg)
	}
	return cfg
}

// start runs the agent as version with exe as its binary.
func (h *harness) start(version string, cfg *config.Config, o Options) {
	h.t.Helper()
	if h.running != nil {
		h.stop()
	}
	o.Version, o.Executable, o.HealthPoll = version, h.exe, 20*time.Millisecond
	if o.Restarter == nil {
		o.Restarter = h.sup
	}
	spec := SpecWithOptions(o)
	var a *Agent
	newFn := spec.New
	spec.New = func() daemon.Service {
		s := newFn()
		a = s.(*Agent)
		return s
	}
	if cfg == nil {
		cfg = h.config(nil)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r, err := daemon.Start(ctx, spec, daemon.Options{Root: h.root.Dir(), BusURL: h.bus, Config: cfg, LogStderr: io.Discard})
	if err != nil {
		h.t.Fatal(err)
	}
	h.running, h.agent = r, a
	h.t.Cleanup(h.stop)
}

func (h *harness) stop() {
	if h.running != nil {
		h.running.Shutdown(context.Background())
		h.running = nil
	}
}

func (h *harness) client() otav1.OTAClient {
	cc, err := grpc.NewClient("unix://"+h.root.Socket(Name), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(func() { cc.Close() })
	return otav1.NewOTAClient(cc)
}

// apply calls Apply over gRPC and returns the events and the error.
func (h *harness) apply(r *otav1.ApplyRequest) ([]*otav1.ApplyEvent, error) {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := h.client().Apply(ctx, r)
	if err != nil {
		return nil, errdefs.FromGRPC(err)
	}
	var evs []*otav1.ApplyEvent
	for {
		ev, err := st.Recv()
		if errors.Is(err, io.EOF) {
			return evs, nil
		}
		if err != nil {
			return evs, errdefs.FromGRPC(err)
		}
		evs = append(evs, ev)
	}
}

func (h *harness) status() *otav1.Status {
	h.t.Helper()
	st, err := h.client().GetStatus(context.Background(), &otav1.GetStatusRequest{})
	if err != nil {
		h.t.Fatal(err)
	}
	return st
}

// bundleOf builds a signed bundle of version for goos/goarch holding a
// "ggd" that says its version; it returns the bundle's path and signature.
func (h *harness) bundleOf(version, goarch string) (string, []byte) {
	h.t.Helper()
	dir := h.t.TempDir()
	ggd := filepath.Join(dir, "ggd")
	os.WriteFile(ggd, []byte("ggd "+version), 0o755)
	path := filepath.Join(dir, "evergreen-"+version+".tar.gz")
	f, err := os.Create(path)
	if err != nil {
		h.t.Fatal(err)
	}
	if _, err := bundle.Build(f, version, runtime.GOOS, goarch, map[string]string{"ggd": ggd}); err != nil {
		h.t.Fatal(err)
	}
	f.Close()
	return path, h.sign(path, h.priv)
}

func (h *harness) sign(path string, priv ed25519.PrivateKey) []byte {
	h.t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		h.t.Fatal(err)
	}
	sig, err := bundle.Sign(priv, bytes.NewReader(b))
	if err != nil {
		h.t.Fatal(err)
	}
	return sig
}

// tree lists what is under DIR/ota (nil when it does not exist).
func (h *harness) tree() []string {
	var out []string
	filepath.WalkDir(filepath.Join(h.root.Dir(), install.DirName), func(p string, d os.DirEntry, err error) error {
		if err == nil {
			out = append(out, p)
		}
		return nil
	})
	return out
}

// fakeSupervisor records restart requests and answers ListDaemons.
type fakeSupervisor struct {
	supervisorv1.UnimplementedSupervisorServer
	mu        sync.Mutex
	healthy   bool
	restarts  []string
	onRestart func()
}

func (h *harness) serveSupervisor() {
	g := grpc.NewServer()
	supervisorv1.RegisterSupervisorServer(g, h.sup)
	ln, err := net.Listen("unix", h.root.Socket("supervisor"))
	if err != nil {
		h.t.Fatal(err)
	}
	go g.Serve(ln)
	h.t.Cleanup(g.Stop)
}

func (f *fakeSupervisor) setHealthy(b bool) {
	f.mu.Lock()
	f.healthy = b
	f.mu.Unlock()
}

func (f *fakeSupervisor) ListDaemons(context.Context, *supervisorv1.ListDaemonsRequest) (*supervisorv1.ListDaemonsResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	resp := &supervisorv1.ListDaemonsResponse{Daemons: []*supervisorv1.Daemon{{Name: "bus", Healthy: true, State: supervisorv1.DaemonState_DAEMON_STATE_RUNNING}}}
	sm := &supervisorv1.Daemon{Name: "streammgr", Healthy: f.healthy, State: supervisorv1.DaemonState_DAEMON_STATE_RUNNING}
	if !f.healthy {
		sm.State, sm.LastError = supervisorv1.DaemonState_DAEMON_STATE_STARTING, "signal: killed"
	}
	resp.Daemons = append(resp.Daemons, sm)
	return resp, nil
}

// Available and Restart make it the agent's Restarter too.
func (f *fakeSupervisor) Available() error { return nil }

func (f *fakeSupervisor) Restart(_ context.Context, reason string) error {
	f.mu.Lock()
	f.restarts = append(f.restarts, reason)
	cb := f.onRestart
	f.mu.Unlock()
	if cb != nil {
		cb()
	}
	return nil
}

func (f *fakeSupervisor) restartCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.restarts)
}
