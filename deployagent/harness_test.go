package deployagent_test

import (
	"context"
	"errors"
	"fmt"
	"github.com/evergreen-edge/evergreen/services/kit/bustest"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/evergreen-edge/evergreen/deployagent"
	deployv1 "github.com/evergreen-edge/evergreen/proto/evergreen/deploy/v1"
	"github.com/evergreen-edge/evergreen/services/kit/daemon"
	"github.com/evergreen-edge/evergreen/services/kit/deployment"
	"github.com/evergreen-edge/evergreen/services/kit/groupdef"
	"github.com/evergreen-edge/evergreen/services/kit/layout"
	"github.com/evergreen-edge/evergreen/services/kit/subjects"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// refuseID makes the refusing test consumer refuse any group holding a
// function or subscription with this Id.
const refuseID = "refuse-me"

// newRoot is a short root: unix socket paths are limited to 107 bytes.
func newRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "dag")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

func startDaemon(t *testing.T, root, busURL string, spec daemon.Spec) *daemon.Running {
	t.Helper()
	bustest.WriteCreds(t, layout.Root(root), spec.Name)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r, err := daemon.Start(ctx, spec, daemon.Options{Root: root, BusURL: busURL, LogStderr: io.Discard})
	if err != nil {
		t.Fatalf("start %s: %v", spec.Name, err)
	}
	t.Cleanup(func() { stopDaemon(t, r) })
	return r
}

func stopDaemon(t *testing.T, r *daemon.Running) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := r.Shutdown(ctx); err != nil {
		t.Errorf("stop %s: %v", r.Env.Name, err)
	}
}

// applyCall is one ApplyGroup a test consumer received.
type applyCall struct {
	functions []string // nil for a reset
	reset     bool
	rollback  bool
}

// consumer is a stand-in for a daemon that consumes the group (runtime,
// broker...): a real daemon on the real bus, using the kit's deployment
// package exactly as those daemons do.
type consumer struct {
	name string
	// refuse: refuse groups holding refuseID.
	refuse bool
	// hang: never answer (until stopped).
	hang bool
	// gate, when set, holds every apply until it is closed.
	gate chan struct{}
	// prepareRefuse: a Prepare func that refuses groups holding refuseID.
	prepareRefuse bool

	mu       sync.Mutex
	loaded   *groupdef.Group
	loadedID string
	calls    []applyCall
	prepared []string
	stopServ func()
}

func (c *consumer) spec() daemon.Spec {
	return daemon.Spec{
		Name:          c.name,
		Bus:           &daemon.BusRole{Subscribe: []string{subjects.DeployApply(c.name)}, AllowResponses: true},
		ConsumesGroup: true,
		New:           func() daemon.Service { return c },
	}
}

func (c *consumer) Start(ctx context.Context, env *daemon.Env) error {
	g, id, err := deployment.LoadCurrent(env.Root)
	if err != nil {
		return err
	}
	c.mu.Lock()
	c.loaded, c.loadedID, c.calls = g, id, nil
	c.mu.Unlock()
	var opts []deployment.Option
	if c.prepareRefuse {
		opts = append(opts, deployment.WithPrepare(func(_ context.Context, g *groupdef.Group, id string) error {
			c.mu.Lock()
			c.prepared = append(c.prepared, id)
			c.mu.Unlock()
			if hasID(g, refuseID) {
				return fmt.Errorf("prepare: %q is not allowed on this core", refuseID)
			}
			return nil
		}))
	}
	c.stopServ, err = deployment.Serve(env, c.apply, opts...)
	return err
}

func (c *consumer) Stop(context.Context) error {
	if c.stopServ != nil {
		c.stopServ()
	}
	return nil
}

func (c *consumer) apply(ctx context.Context, g *groupdef.Group, rollback bool) error {
	c.mu.Lock()
	c.calls = append(c.calls, applyCall{functions: functionIDs(g), reset: g == nil, rollback: rollback})
	c.mu.Unlock()
	if c.hang {
		<-ctx.Done()
		return ctx.Err()
	}
	if c.gate != nil {
		select {
		case <-c.gate:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if c.refuse && !rollback && hasID(g, refuseID) {
		return fmt.Errorf("function or subscription %q is not allowed on this core", refuseID)
	}
	return nil
}

func (c *consumer) received() []applyCall {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]applyCall(nil), c.calls...)
}

func (c *consumer) inForce() (*groupdef.Group, string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.loaded, c.loadedID
}

func hasID(g *groupdef.Group, id string) bool {
	if g == nil {
		return false
	}
	if g.Functions != nil {
		for _, f := range g.Functions.Functions {
			if f.Id == id {
				return true
			}
		}
	}
	if g.Subscriptions != nil {
		for _, s := range g.Subscriptions.Subscriptions {
			if s.Id == id {
				return true
			}
		}
	}
	return false
}

func functionIDs(g *groupdef.Group) []string {
	if g == nil {
		return nil
	}
	ids := []string{}
	if g.Functions != nil {
		for _, f := range g.Functions.Functions {
			ids = append(ids, f.Id)
		}
	}
	return ids
}

// groupJSON is a valid group definition file with one user function per id.
func groupJSON(functionIDs ...string) []byte {
	var fns []string
	for _, id := range functionIDs {
		fns = append(fns, fmt.Sprintf(`{"Id": %q, "FunctionArn": "arn:aws:lambda:eu-west-1:123456789012:function:%s:1",
			"Evergreen": {"Runtime": "python3.8", "Handler": "app.handler", "CodeUri": "file:///opt/functions/%s.zip"}}`, id, id, id))
	}
	doc := `{"Core": {"Definition": {"Cores": [{"Id": "core", "ThingArn": "arn:aws:iot:eu-west-1:123456789012:thing/line7-core",
		"CertificateArn": "arn:aws:iot:eu-west-1:123456789012:cert/0d45f5fd462b8c70bffb10021ac1bcff3f58f29b1faf7568595095427d42812c"}]}}`
	if len(fns) > 0 {
		doc += `, "Functions": {"Functions": [` + strings.Join(fns, ",") + `]}`
	}
	return []byte(doc + "}\n")
}

// suite is a deployagent and its consumers on one root and one bus.
type suite struct {
	t         *testing.T
	root      string
	bus       string
	opts      []deployagent.Option
	names     []string
	consumers map[string]*consumer
	running   map[string]*daemon.Running
	agent     *daemon.Running
	client    deployv1.DeployerClient
}

func newSuite(t *testing.T, consumers []*consumer, opts ...deployagent.Option) *suite {
	s := &suite{t: t, root: newRoot(t), bus: bustest.Start(t), opts: opts, consumers: map[string]*consumer{}}
	for _, c := range consumers {
		s.names = append(s.names, c.name)
		s.consumers[c.name] = c
	}
	s.start()
	return s
}

// start starts the consumers, then the deployagent (the supervisor's
// order), and connects to the deployagent's socket.
func (s *suite) start() {
	s.t.Helper()
	s.running = map[string]*daemon.Running{}
	for _, n := range s.names {
		s.running[n] = startDaemon(s.t, s.root, s.bus, s.consumers[n].spec())
	}
	s.startAgent()
}

func (s *suite) startAgent() {
	s.t.Helper()
	s.agent = startDaemon(s.t, s.root, s.bus, deployagent.Spec(s.names, s.opts...))
	conn, err := grpc.NewClient("unix://"+layout.Root(s.root).Socket(deployagent.Name), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		s.t.Fatal(err)
	}
	s.t.Cleanup(func() { conn.Close() })
	s.client = deployv1.NewDeployerClient(conn)
}

func (s *suite) consumer(name string) *consumer { return s.consumers[name] }

func runningOf(t *testing.T, s *suite, name string) *daemon.Running {
	t.Helper()
	r := s.running[name]
	if r == nil {
		t.Fatalf("consumer %s is not running", name)
	}
	return r
}

// deploy runs one deployment to its end and returns every event.
func deploy(t *testing.T, c deployv1.DeployerClient, req *deployv1.DeployRequest) ([]*deployv1.DeployEvent, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	stream, err := c.Deploy(ctx, req)
	if err != nil {
		return nil, err
	}
	var evs []*deployv1.DeployEvent
	for {
		ev, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return evs, nil
		}
		if err != nil {
			return evs, err
		}
		evs = append(evs, ev)
	}
}

// mustDeploy deploys and returns the terminal event, failing the test on a
// gRPC error or a stream without a terminal event.
func mustDeploy(t *testing.T, c deployv1.DeployerClient, req *deployv1.DeployRequest) (*deployv1.DeployEvent, []*deployv1.DeployEvent) {
	t.Helper()
	evs, err := deploy(t, c, req)
	if err != nil {
		t.Fatalf("Deploy: %v", err)
	}
	if len(evs) == 0 {
		t.Fatal("Deploy: no events")
	}
	last := evs[len(evs)-1]
	if st := last.GetStatus(); st != deployv1.DeploymentStatus_DEPLOYMENT_STATUS_SUCCESS && st != deployv1.DeploymentStatus_DEPLOYMENT_STATUS_FAILURE {
		t.Fatalf("last event is not terminal: %v", last)
	}
	return last, evs
}

func messages(evs []*deployv1.DeployEvent) []string {
	var m []string
	for _, e := range evs {
		m = append(m, e.GetMessage())
	}
	return m
}

func readRecord(t *testing.T, root, file string) *deployment.Record {
	t.Helper()
	r, err := deployment.ReadRecord(filepath.Join(layout.Root(root).DeploymentsDir(), file))
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func recordFunctions(t *testing.T, r *deployment.Record) []string {
	t.Helper()
	g, err := r.Decode()
	if err != nil {
		t.Fatal(err)
	}
	return functionIDs(g)
}

func currentGroupFunctions(t *testing.T, c deployv1.DeployerClient) ([]string, string) {
	t.Helper()
	resp, err := c.GetCurrentGroup(context.Background(), &deployv1.GetCurrentGroupRequest{})
	if err != nil {
		t.Fatalf("GetCurrentGroup: %v", err)
	}
	g, err := groupdef.Parse(resp.GetGroupJson())
	if err != nil {
		t.Fatalf("GetCurrentGroup returned a group that does not parse: %v", err)
	}
	return functionIDs(g), resp.GetDeploymentId()
}
