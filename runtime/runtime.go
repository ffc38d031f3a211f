// Package runtime is `ggd runtime`: v1's Lambda runtime. It runs the
// group's functions as worker processes (package worker), queues their
// work (package dispatch), serves the v1 Core SDK IPC on
// evergreen.listen.ipc (package ipc), installs their code (package code),
// and connects them to the router (messages for functions arrive on
// evergreen.broker.deliver.function, what functions publish leaves on
// evergreen.runtime.publish) and to the shadow service. See README.md.
package runtime

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"time"

	runtimev1 "github.com/evergreen-edge/evergreen/proto/evergreen/runtime/v1"
	secretsv1 "github.com/evergreen-edge/evergreen/proto/evergreen/secrets/v1"
	shadowv1 "github.com/evergreen-edge/evergreen/proto/evergreen/shadow/v1"
	"github.com/evergreen-edge/evergreen/runtime/code"
	"github.com/evergreen-edge/evergreen/runtime/container/remote"
	"github.com/evergreen-edge/evergreen/runtime/containerapi"
	"github.com/evergreen-edge/evergreen/runtime/dispatch"
	"github.com/evergreen-edge/evergreen/runtime/ipc"
	"github.com/evergreen-edge/evergreen/runtime/worker"
	"github.com/evergreen-edge/evergreen/services/kit/daemon"
	"github.com/evergreen-edge/evergreen/services/kit/deployment"
	"github.com/evergreen-edge/evergreen/services/kit/groupdef"
	"github.com/evergreen-edge/evergreen/services/kit/subjects"
	"github.com/nats-io/nats.go"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// Name is the daemon's name.
const Name = "runtime"

// System function ARNs (spec 1.1).
const (
	RouterARN  = "arn:aws:lambda:::function:GGRouter"
	ShadowARN  = "arn:aws:lambda:::function:GGShadowService"
	SecretsARN = "arn:aws:lambda:::function:GGSecretManager:1"
)

// Options tune the daemon beyond config.json (tests).
type Options struct {
	// Python replaces the python3 interpreter looked up on PATH; Node
	// the node one.
	Python string
	Node   string
}

// Spec declares the runtime daemon with default options.
func Spec() daemon.Spec { return SpecWithOptions(Options{}) }

// SpecWithOptions declares the runtime daemon with o.
func SpecWithOptions(o Options) daemon.Spec {
	return daemon.Spec{
		Name: Name,
		// The shadow service answers GGShadowService calls; the broker
		// routes what functions publish.
		Requires: []string{"bus", "broker", "shadow"},
		Bus: &daemon.BusRole{
			Publish: []string{"evergreen.runtime.>"},
			Subscribe: []string{
				subjects.DeployApply(Name),
				subjects.BrokerDeliverFunction,
				subjects.BrokerDeliverConnector,
			},
			AllowResponses: true,
		},
		ConsumesGroup: true,
		New:           func() daemon.Service { return New(o) },
	}
}

// Service is the runtime daemon.
type Service struct {
	opts Options
	env  *daemon.Env
	log  *slog.Logger

	disp    *dispatch.Dispatcher
	workers *worker.Manager
	http    *http.Server
	ipcAddr string
	shims   string

	shadowConn *grpc.ClientConn
	shadow     shadowv1.ShadowClient
	// secretsConn reaches the secrets daemon (GGSecretManager).
	secretsConn *grpc.ClientConn
	secrets     secretsv1.SecretsClient

	// runner is the containerd connection, made when a GreengrassContainer
	// function first needs it (a core without such functions never talks
	// to containerd).
	runnerMu sync.Mutex
	runner   *remote.Client

	mu        sync.Mutex
	group     *groupdef.Group
	functions map[string]*function // by qualified ARN
	// deploymentID names the deployment whose group is in force ("" when
	// nothing was deployed or it is unknown).
	deploymentID string

	// ledger records the code each applied group used (code GC). It is
	// used only by Start and the deployment handlers, which never run at
	// the same time.
	ledger *code.Ledger

	subs          []*nats.Subscription
	stopFollowing func()
}

// New returns a service that does nothing until Start.
func New(o Options) *Service { return &Service{opts: o, functions: map[string]*function{}} }

// Start installs the language shims, starts the worker manager, the
// dispatcher and the IPC server, puts the group in force (starting pinned
// functions) and follows the bus.
func (s *Service) Start(ctx context.Context, env *daemon.Env) error {
	s.env, s.log = env, env.Log
	err := CheckIPCListen(env.Endpoints.IPC)
	if err != nil {
		return err
	}
	state := env.Root.DataDir(Name)
	if err := os.MkdirAll(state, 0o750); err != nil {
		return err
	}
	if err := s.openPaths(); err != nil {
		return err
	}
	if s.shims, err = installShims(filepath.Join(state, "shims")); err != nil {
		return fmt.Errorf("install the language runtimes: %w", err)
	}
	rt := env.Config.Runtime
	s.workers, err = worker.New(worker.Options{
		MaxConcurrent: rt.MaxConcurrentLimit,
		LRUSize:       rt.LruSize,
		AllowRoot:     rt.AllowFunctionsToRunAsRoot == "yes",
		StateDir:      filepath.Join(state, "workers"),
		OnExit: func(w dispatch.WorkerID, fn string, err error) {
			if errors.Is(err, worker.ErrOutOfMemory) {
				s.disp.OutOfMemory(fn)
			}
			s.disp.WorkerGone(w)
		},
		Containers: s.containers,
		Log:        s.log.With("component", "workers"),
	})
	if err != nil {
		return fmt.Errorf("worker manager: %w", err)
	}
	s.disp = dispatch.New(dispatch.Options{
		MaxWorkItems: rt.MaxWorkItemCount,
		Launcher:     s.workers,
		System: map[string]dispatch.SystemFunc{
			RouterARN:  s.routerCall,
			ShadowARN:  s.shadowCall,
			SecretsARN: s.secretsCall,
		},
		Log: s.log.With("component", "dispatch"),
	})
	if s.shadowConn, err = grpc.NewClient("unix://"+env.Root.Socket("shadow"), grpc.WithTransportCredentials(insecure.NewCredentials())); err != nil {
		return err
	}
	s.shadow = shadowv1.NewShadowClient(s.shadowConn)
	if s.secretsConn, err = grpc.NewClient("unix://"+env.Root.Socket("secrets"), grpc.WithTransportCredentials(insecure.NewCredentials())); err != nil {
		return err
	}
	s.secrets = secretsv1.NewSecretsClient(s.secretsConn)

	g, id, err := deployment.LoadCurrent(env.Root)
	if err != nil {
		return err
	}
	ledgerPath := filepath.Join(state, CodeLedgerFile)
	if s.ledger, err = code.OpenLedger(ledgerPath); err != nil {
		s.log.Warn("the record of installed code is unreadable; starting a new one", "err", err)
	}
	if err := s.applyGroup(ctx, g, true); err != nil {
		// It applied when it was deployed; run what can run.
		s.log.Error("the group in force does not apply cleanly", "deployment", id, "err", err)
	}
	s.applied(id)

	runtimev1.RegisterRuntimeServer(env.GRPC, &grpcServer{local: s})
	ln, err := net.Listen("tcp", env.Endpoints.IPC)
	if err != nil {
		return fmt.Errorf("IPC listener: %w", err)
	}
	s.ipcAddr = ln.Addr().String()
	s.http = &http.Server{
		Handler: ipc.NewHandler(ipc.Options{
			Dispatcher:  s.disp,
			Auth:        s.workers,
			Initialized: s.initialized,
			Logs:        s.functionLogs,
			Health:      s.health,
			State:       s.workers.SetState,
			Log:         s.log.With("component", "ipc"),
		}),
		ReadHeaderTimeout: 10 * time.Second,
	}
	go s.http.Serve(ln)

	for _, x := range []struct {
		subject string
		handle  nats.MsgHandler
	}{
		{subjects.BrokerDeliverFunction, s.onDeliver},
		{subjects.BrokerDeliverConnector, s.onDeliver},
	} {
		sub, err := env.Bus.Subscribe(x.subject, x.handle)
		if err != nil {
			return fmt.Errorf("bus subscribe %s: %w", x.subject, err)
		}
		s.subs = append(s.subs, sub)
	}
	if s.stopFollowing, err = deployment.Serve(env, s.applyDeployment, deployment.WithPrepare(s.prepareGroup)); err != nil {
		return err
	}
	s.mu.Lock()
	n := len(s.functions)
	s.mu.Unlock()
	s.log.Info("runtime ready", "ipc", s.ipcAddr, "functions", n, "deployment", id)
	return nil
}

// CheckIPCListen refuses an evergreen.listen.ipc that is not on loopback:
// the v1 IPC has no transport security, and its tokens would travel the
// network in clear. localhost, 127.0.0.0/8 and ::1 are loopback.
func CheckIPCListen(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("evergreen.listen.ipc %q: %w", addr, err)
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return fmt.Errorf("evergreen.listen.ipc %q: the v1 IPC has no transport security and must listen on loopback only (127.0.0.1, ::1 or localhost)", addr)
	}
	return nil
}

// CodeLedgerFile, in DIR/data/runtime, records the code the last applied
// groups used (code.Ledger).
const CodeLedgerFile = "code-ledger.json"

// applyDeployment is applyGroup followed, when the group is in force, by
// the bookkeeping of the deployment it belongs to (the ApplyGroup names it)
// and the removal of code no longer needed.
func (s *Service) applyDeployment(ctx context.Context, g *groupdef.Group, rollback bool) error {
	if err := s.applyGroup(ctx, g, rollback); err != nil {
		return err
	}
	s.applied(deployment.ID(ctx))
	return nil
}

// applied records that deployment id is in force: the id ListFunctions
// reports, and the code its functions run from. Then it removes every
// installed code directory that neither this group, nor the one a
// rollback would return to (previous.json), nor a live worker uses:
// older versions and what a refused deployment's PREPARE installed.
func (s *Service) applied(id string) {
	use := code.Use{Deployment: id, Dirs: map[string]string{}}
	s.mu.Lock()
	s.deploymentID = id
	for _, f := range s.functions {
		use.Dirs[f.pkg.Dir] = f.arn
	}
	s.mu.Unlock()
	if err := s.ledger.Record(use); err != nil {
		// Without the record, the code of the group before may not be
		// known after a restart: remove nothing.
		s.log.Warn("could not record the code in use; old code is kept", "err", err)
		return
	}
	previous := ""
	if r, err := deployment.ReadRecord(deployment.Path(s.env.Root, deployment.PreviousFile)); err == nil && r != nil {
		previous = r.DeploymentID
	}
	live := map[string]bool{}
	for _, w := range s.workers.Workers() {
		live[w.FuncArn] = true
	}
	removed, err := code.Collect(s.env.Root.FunctionsDir(), s.ledger.Keep(previous, live))
	if err != nil {
		s.log.Warn("removing unused function code", "err", err)
	}
	if len(removed) > 0 {
		s.log.Info("removed function code no longer used", "dirs", removed, "deployment", id)
	}
}

// Stop stops taking work, stops every worker (SIGTERM, then SIGKILL) and
// the IPC server.
func (s *Service) Stop(ctx context.Context) error {
	for _, sub := range s.subs {
		sub.Unsubscribe()
	}
	if s.stopFollowing != nil {
		s.stopFollowing()
	}
	var errs []error
	if s.disp != nil {
		s.disp.Close()
	}
	if s.workers != nil {
		errs = append(errs, s.workers.Stop(ctx))
	}
	s.runnerMu.Lock()
	if s.runner != nil {
		errs = append(errs, s.runner.Close())
		s.runner = nil
	}
	s.runnerMu.Unlock()
	if s.http != nil {
		errs = append(errs, s.http.Shutdown(ctx))
	}
	if s.shadowConn != nil {
		s.shadowConn.Close()
	}
	if s.secretsConn != nil {
		s.secretsConn.Close()
	}
	return errors.Join(errs...)
}

// openPaths lets functions that run as another user (the default when the
// daemon is root: ggc_user or nobody) reach their code and the language
// runtimes: DIR and DIR/data get search permission for others (not read:
// nothing can be listed), DIR/functions and DIR/data/runtime are readable.
// Certificates, config, deployments and the other daemons' data keep
// their modes.
func (s *Service) openPaths() error {
	if os.Geteuid() != 0 {
		return nil
	}
	root := s.env.Root.Dir()
	for _, p := range []struct {
		path string
		bits os.FileMode
	}{
		{root, 0o001},
		{filepath.Join(root, "data"), 0o001},
		{s.env.Root.DataDir(Name), 0o005},
		{s.env.Root.FunctionsDir(), 0o005},
	} {
		if err := os.MkdirAll(p.path, 0o750); err != nil {
			return err
		}
		st, err := os.Stat(p.path)
		if err != nil {
			return err
		}
		if st.Mode().Perm()&p.bits != p.bits {
			if err := os.Chmod(p.path, st.Mode().Perm()|p.bits); err != nil {
				return fmt.Errorf("let functions reach %s: %w", p.path, err)
			}
			s.log.Info("opened a directory to the functions' user", "path", p.path, "mode", fmt.Sprintf("%o", st.Mode().Perm()|p.bits))
		}
	}
	return nil
}

// containers returns the runner of GreengrassContainer processes: the
// ggd-containerd helper (next to ggd, or $EVERGREEN_CONTAINERD_HELPER),
// started on first use; it removes what a previous runtime of this DIR
// left in the namespace before it answers.
func (s *Service) containers() (containerapi.Runner, error) {
	s.runnerMu.Lock()
	defer s.runnerMu.Unlock()
	if s.runner != nil {
		return s.runner, nil
	}
	addr := s.env.Config.Evergreen.Runtime.ContainerdAddress
	if a := os.Getenv("EVERGREEN_CONTAINERD_SOCKET"); a != "" {
		addr = a
	}
	if _, err := os.Stat(addr); err != nil {
		return nil, fmt.Errorf("containerd socket %s: %w", addr, err)
	}
	helper, err := containerHelper()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	r, err := remote.Start(ctx, helper, []string{"--address", addr, "--owner", s.env.Root.Dir()}, s.log.With("component", "containers"))
	if err != nil {
		return nil, err
	}
	s.runner = r
	return r, nil
}

// HelperName is the GreengrassContainer helper binary, installed next to
// ggd.
const HelperName = "ggd-containerd"

func containerHelper() (string, error) {
	if p := os.Getenv("EVERGREEN_CONTAINERD_HELPER"); p != "" {
		return p, nil
	}
	if exe, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(exe), HelperName)
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	if p, err := exec.LookPath(HelperName); err == nil {
		return p, nil
	}
	return "", fmt.Errorf("the %s helper is not installed next to ggd (make build puts it in bin/)", HelperName)
}
