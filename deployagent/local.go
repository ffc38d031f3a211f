package deployagent

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	deployv1 "github.com/evergreen-edge/evergreen/proto/evergreen/deploy/v1"
	"github.com/evergreen-edge/evergreen/services/kit/atomicfile"
	"github.com/evergreen-edge/evergreen/services/kit/config"
	"github.com/evergreen-edge/evergreen/services/kit/deployment"
	"github.com/evergreen-edge/evergreen/services/kit/errdefs"
	"github.com/evergreen-edge/evergreen/services/kit/groupdef"
	"github.com/evergreen-edge/evergreen/services/kit/layout"
	"github.com/evergreen-edge/evergreen/services/kit/subjects"
	"github.com/nats-io/nats.go"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// Config is what the deployment service needs.
type Config struct {
	Root layout.Root
	// Bus carries ApplyGroup requests and DeploymentFinished events.
	Bus *nats.Conn
	Log *slog.Logger
	// Consumers are the daemons asked to apply every deployment.
	Consumers []string
	// ApplyTimeout is per daemon; DefaultApplyTimeout when zero.
	ApplyTimeout time.Duration
	// CoreConfig, when it names the core's thing (coreThing.thingArn), makes
	// groups built for another core invalid. Optional.
	CoreConfig *config.Config
}

// Local is the deployment service. It implements deployv1.DeployerClient,
// so in-process callers use it exactly as they would the gRPC API; NewServer
// adapts it to the gRPC server.
//
// Lock order: a deployment holds busy (never blocking) for its whole run and
// takes mu only for short, non-blocking sections. Nothing is called on the
// bus while mu is held.
type Local struct {
	root      layout.Root
	bus       *nats.Conn
	log       *slog.Logger
	consumers []string
	timeout   time.Duration
	coreThing string

	// busy is set while a deployment runs: one at a time.
	busy atomic.Bool
	// runCtx ends in-flight bus requests when Close runs out of time.
	runCtx    context.Context
	cancelRun context.CancelFunc
	running   sync.WaitGroup

	mu sync.Mutex
	// current is the record in force (nil: nothing ever deployed) and
	// currentGroup its canonical group JSON (nil: no group).
	current      *deployment.Record
	currentGroup []byte
	// history holds finished deployments, newest first, at most
	// deployment.HistoryLimit; inflight is the running one.
	history  []*deployv1.Deployment
	inflight *deployv1.Deployment
	// closed refuses new deployments once Close has begun.
	closed bool
}

var _ deployv1.DeployerClient = (*Local)(nil)

// NewLocal recovers the on-disk state and returns the service. Recovery
// never re-applies anything: the group in force is what current.json says,
// and each consuming daemon loads it itself when it starts.
func NewLocal(c Config) (*Local, error) {
	if c.Bus == nil {
		return nil, errors.New("deployagent: no bus connection")
	}
	if c.Log == nil {
		c.Log = slog.Default()
	}
	if c.ApplyTimeout <= 0 {
		c.ApplyTimeout = DefaultApplyTimeout
	}
	consumers := slices.Clone(c.Consumers)
	slices.Sort(consumers)
	consumers = slices.Compact(consumers)
	for _, n := range consumers {
		if n == "" || strings.ContainsAny(n, ".*> \t") {
			return nil, fmt.Errorf("deployagent: consumer name %q is not a single bus subject token", n)
		}
	}
	l := &Local{
		root:      c.Root,
		bus:       c.Bus,
		log:       c.Log,
		consumers: consumers,
		timeout:   c.ApplyTimeout,
	}
	if c.CoreConfig != nil && c.CoreConfig.CoreThing.ThingArn != "" {
		l.coreThing = c.CoreConfig.CoreThingName()
	}
	l.runCtx, l.cancelRun = context.WithCancel(context.Background())
	if err := l.restore(); err != nil {
		l.cancelRun()
		return nil, err
	}
	return l, nil
}

// restore makes memory match the disk after any kind of stop, including a
// power cut in the middle of a deployment.
func (l *Local) restore() error {
	removed, err := deployment.RemoveStaleTemps(l.root)
	for _, p := range removed {
		l.log.Warn("discarded a temp file left by an interrupted write", "file", p)
	}
	if err != nil {
		return fmt.Errorf("deployagent: %w", err)
	}
	cur, err := deployment.ReadCurrent(l.root)
	if err != nil {
		return fmt.Errorf("deployagent: %w (restore it from previous.json or remove it to start with no group)", err)
	}
	l.setCurrent(cur)
	if l.history, err = deployment.ReadHistory(l.root); err != nil {
		l.log.Error("deployment history unreadable; starting a new one", "err", err)
		l.history = nil
	}

	stagedPath := deployment.Path(l.root, deployment.StagedFile)
	staged, err := deployment.ReadRecord(stagedPath)
	if err != nil {
		l.log.Error("discarding an unreadable staged deployment", "err", err)
	}
	if err != nil || staged != nil {
		if err := removeDurably(stagedPath); err != nil {
			return fmt.Errorf("deployagent: discard staged deployment: %w", err)
		}
	}
	if staged == nil || l.find(staged.DeploymentID) != nil {
		return nil
	}
	d := &deployv1.Deployment{
		DeploymentId: staged.DeploymentID,
		Type:         deployv1.DeploymentType_DEPLOYMENT_TYPE_NEW,
		CreatedAt:    timestamppb.New(staged.DeployedAt),
		FinishedAt:   timestamppb.Now(),
		GroupSha256:  staged.GroupSHA256,
	}
	if staged.Reset {
		d.Type = deployv1.DeploymentType_DEPLOYMENT_TYPE_RESET
	}
	if cur != nil && cur.DeploymentID == staged.DeploymentID {
		// Stopped after current.json was written: it is in force.
		d.Status = deployv1.DeploymentStatus_DEPLOYMENT_STATUS_SUCCESS
		l.log.Info("recorded a deployment that completed just before the last stop", "deployment", d.DeploymentId)
	} else {
		d.Status = deployv1.DeploymentStatus_DEPLOYMENT_STATUS_FAILURE
		d.Error = "interrupted: the deployagent stopped before every daemon acknowledged; the previous group stays in force"
		l.log.Warn("discarded a deployment interrupted by the last stop; the previous group stays in force",
			"deployment", d.DeploymentId, "in_force", currentID(cur))
	}
	l.history = append([]*deployv1.Deployment{d}, l.history...)
	if len(l.history) > deployment.HistoryLimit {
		l.history = l.history[:deployment.HistoryLimit]
	}
	if err := deployment.WriteHistory(l.root, l.history); err != nil {
		l.log.Error("write deployment history", "err", err)
	}
	return nil
}

// setCurrent installs the record in force. A stored group that no longer
// parses (written by another version) is still served as stored, so the
// user can see it and deploy a fixed one.
func (l *Local) setCurrent(r *deployment.Record) {
	l.current, l.currentGroup = r, nil
	if !r.HasGroup() {
		return
	}
	if g, err := r.Decode(); err != nil {
		l.log.Error("the group in force does not validate", "deployment", r.DeploymentID, "err", err)
	} else if canon, err := groupdef.Marshal(g); err == nil {
		l.currentGroup = canon
		return
	}
	var buf bytes.Buffer
	if json.Compact(&buf, r.Group) == nil {
		l.currentGroup = buf.Bytes()
	} else {
		l.currentGroup = slices.Clone([]byte(r.Group))
	}
}

// Close waits for a deployment in progress to finish; when ctx ends first,
// its bus requests are cut short and it ends as a failure.
func (l *Local) Close(ctx context.Context) error {
	l.mu.Lock()
	l.closed = true
	l.mu.Unlock()
	done := make(chan struct{})
	go func() { l.running.Wait(); close(done) }()
	select {
	case <-done:
		l.cancelRun()
		return nil
	case <-ctx.Done():
	}
	l.log.Warn("stopping during a deployment; cutting it short")
	l.cancelRun()
	<-done
	return nil
}

// applyOverhead is room for ApplyGroup's other fields around the group.
const applyOverhead = 1024

// validID is ^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$, by hand: a compiled
// regexp with a counted repetition costs ~120 KB of heap in every process
// of the multi-call ggd (package init runs in all of them).
func validID(id string) bool {
	if len(id) == 0 || len(id) > 128 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		alnum := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
		if !alnum && (i == 0 || (c != '.' && c != '_' && c != ':' && c != '-')) {
			return false
		}
	}
	return true
}

// Deploy validates the request, starts the deployment and returns its
// progress events. The deployment runs to the end even when the caller
// stops reading.
func (l *Local) Deploy(ctx context.Context, req *deployv1.DeployRequest, _ ...grpc.CallOption) (grpc.ServerStreamingClient[deployv1.DeployEvent], error) {
	next, err := l.validate(req)
	if err != nil {
		return nil, err
	}
	if !l.busy.CompareAndSwap(false, true) {
		return nil, fmt.Errorf("another deployment is in progress: %w", errdefs.ErrAborted)
	}
	d := &deployv1.Deployment{
		DeploymentId: req.GetDeploymentId(),
		Type:         deployv1.DeploymentType_DEPLOYMENT_TYPE_NEW,
		Status:       deployv1.DeploymentStatus_DEPLOYMENT_STATUS_IN_PROGRESS,
		CreatedAt:    timestamppb.New(next.DeployedAt),
		GroupSha256:  next.GroupSHA256,
	}
	if next.Reset {
		d.Type = deployv1.DeploymentType_DEPLOYMENT_TYPE_RESET
	}
	l.mu.Lock()
	switch {
	case l.closed:
		l.mu.Unlock()
		l.busy.Store(false)
		return nil, fmt.Errorf("the deployagent is stopping: %w", errdefs.ErrUnavailable)
	case d.DeploymentId == "":
		d.DeploymentId = newID(next.DeployedAt)
	case l.find(d.DeploymentId) != nil || (l.current != nil && l.current.DeploymentID == d.DeploymentId):
		l.mu.Unlock()
		l.busy.Store(false)
		return nil, errdefs.InvalidArgument("deployment_id", "%q was used before", d.DeploymentId)
	}
	next.DeploymentID = d.DeploymentId
	l.inflight = d
	// Added under mu, so never concurrently with Close's Wait.
	l.running.Add(1)
	l.mu.Unlock()

	events := newEventStream(ctx)
	go func() {
		defer l.running.Done()
		l.run(d, next, events)
	}()
	return events, nil
}

// validate checks the request and builds the record the deployment would
// put in force (without its id).
func (l *Local) validate(req *deployv1.DeployRequest) (*deployment.Record, error) {
	if id := req.GetDeploymentId(); id != "" && !validID(id) {
		return nil, errdefs.InvalidArgument("deployment_id", "%q must be 1 to 128 of [A-Za-z0-9._:-], starting with a letter or digit", clip(id))
	}
	data := req.GetGroupJson()
	switch {
	case req.GetReset_() && len(data) > 0:
		return nil, errdefs.InvalidArgument("group_json", "must be empty when reset is set")
	case req.GetReset_():
		return &deployment.Record{DeployedAt: time.Now().UTC(), Reset: true}, nil
	case len(data) == 0:
		return nil, errdefs.InvalidArgument("group_json", "required unless reset is set")
	}
	g, err := groupdef.Parse(data)
	if err != nil {
		return nil, errdefs.InvalidArgument("group_json", "%s", describe(err))
	}
	if l.coreThing != "" {
		if name := g.CoreThingName(); name != l.coreThing {
			return nil, errdefs.InvalidArgument("group_json", "Core.Cores[0].ThingArn: the group is for core thing %q, but this core is %q (coreThing.thingArn in config.json)", name, l.coreThing)
		}
	}
	canon, err := groupdef.Marshal(g)
	if err != nil {
		return nil, fmt.Errorf("encode group: %v: %w", err, errdefs.ErrInternal)
	}
	// The group travels whole in one bus message.
	if limit := l.bus.MaxPayload() - applyOverhead; limit > 0 && int64(len(canon)) > limit {
		return nil, errdefs.InvalidArgument("group_json", "the group is %d bytes in canonical form; the internal bus carries at most %d", len(canon), limit)
	}
	sum := sha256.Sum256(data)
	return &deployment.Record{DeployedAt: time.Now().UTC(), GroupSHA256: hex.EncodeToString(sum[:]), Group: canon}, nil
}

// describe lists every validation error on one line.
func describe(err error) string {
	var ve *groupdef.ValidationError
	if !errors.As(err, &ve) || len(ve.Errors) == 0 {
		return oneLine(err.Error())
	}
	parts := make([]string, 0, len(ve.Errors))
	for _, fe := range ve.Errors {
		if fe.Path == "" {
			parts = append(parts, oneLine(fe.Message))
		} else {
			parts = append(parts, fe.Path+": "+oneLine(fe.Message))
		}
	}
	return strings.Join(parts, "; ")
}

// GetDeployment returns one deployment, or the one in force when the id is
// empty.
func (l *Local) GetDeployment(_ context.Context, req *deployv1.GetDeploymentRequest, _ ...grpc.CallOption) (*deployv1.Deployment, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	id := req.GetDeploymentId()
	if id == "" {
		if l.current == nil {
			return nil, fmt.Errorf("nothing was ever deployed: %w", errdefs.ErrNotFound)
		}
		id = l.current.DeploymentID
	}
	if d := l.find(id); d != nil {
		return l.view(d), nil
	}
	if l.current != nil && l.current.DeploymentID == id {
		// In force for longer than the history remembers.
		return l.view(recordedDeployment(l.current)), nil
	}
	return nil, errdefs.NotFound("deployment", id)
}

// ListDeployments returns the history, newest first, the running
// deployment included.
func (l *Local) ListDeployments(context.Context, *deployv1.ListDeploymentsRequest, ...grpc.CallOption) (*deployv1.ListDeploymentsResponse, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	resp := &deployv1.ListDeploymentsResponse{}
	if l.inflight != nil {
		resp.Deployments = append(resp.Deployments, l.view(l.inflight))
	}
	for _, d := range l.history {
		if len(resp.Deployments) == deployment.HistoryLimit {
			break
		}
		resp.Deployments = append(resp.Deployments, l.view(d))
	}
	return resp, nil
}

// GetCurrentGroup returns the group in force, as canonical JSON.
func (l *Local) GetCurrentGroup(context.Context, *deployv1.GetCurrentGroupRequest, ...grpc.CallOption) (*deployv1.GetCurrentGroupResponse, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.currentGroup == nil {
		if l.current != nil {
			return nil, fmt.Errorf("no group is deployed (reset by deployment %s): %w", l.current.DeploymentID, errdefs.ErrNotFound)
		}
		return nil, fmt.Errorf("no group is deployed: %w", errdefs.ErrNotFound)
	}
	return &deployv1.GetCurrentGroupResponse{DeploymentId: l.current.DeploymentID, GroupJson: slices.Clone(l.currentGroup)}, nil
}

// find returns the deployment with that id; l.mu held.
func (l *Local) find(id string) *deployv1.Deployment {
	if l.inflight != nil && l.inflight.DeploymentId == id {
		return l.inflight
	}
	for _, d := range l.history {
		if d.DeploymentId == id {
			return d
		}
	}
	return nil
}

// view is what callers get: a copy with the current flag set; l.mu held.
func (l *Local) view(d *deployv1.Deployment) *deployv1.Deployment {
	c := proto.Clone(d).(*deployv1.Deployment)
	c.Current = l.current != nil && l.current.DeploymentID == d.DeploymentId
	return c
}

// recordedDeployment describes the deployment of a record in force.
func recordedDeployment(r *deployment.Record) *deployv1.Deployment {
	d := &deployv1.Deployment{
		DeploymentId: r.DeploymentID,
		Type:         deployv1.DeploymentType_DEPLOYMENT_TYPE_NEW,
		Status:       deployv1.DeploymentStatus_DEPLOYMENT_STATUS_SUCCESS,
		CreatedAt:    timestamppb.New(r.DeployedAt),
		FinishedAt:   timestamppb.New(r.DeployedAt),
		GroupSha256:  r.GroupSHA256,
	}
	if r.Reset {
		d.Type = deployv1.DeploymentType_DEPLOYMENT_TYPE_RESET
	}
	return d
}

func currentID(r *deployment.Record) string {
	if r == nil {
		return ""
	}
	return r.DeploymentID
}

// newID is sortable by time and unique enough for one core.
func newID(t time.Time) string {
	var b [4]byte
	rand.Read(b[:])
	return t.UTC().Format("20060102T150405.000Z") + "-" + hex.EncodeToString(b[:])
}

func removeDurably(path string) error {
	err := os.Remove(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	return atomicfile.SyncDir(filepath.Dir(path))
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

func clip(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}

// publishFinished tells the bus a deployment ended.
func (l *Local) publishFinished(d *deployv1.Deployment) {
	b, err := proto.Marshal(&deployv1.DeploymentFinished{Deployment: d})
	if err == nil {
		err = l.bus.Publish(subjects.DeployEvents, b)
	}
	if err != nil {
		l.log.Error("publish DeploymentFinished", "deployment", d.DeploymentId, "err", err)
	}
}
