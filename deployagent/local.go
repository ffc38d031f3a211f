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

	"github.com/evergreen-edge/evergreen/deployagent/artifact"
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
	// Artifacts is the artifacts stage: fetch and verify what the group
	// needs before any daemon is asked. Nil: nothing to do (the stage is
	// still recorded). The daemon sets it to the artifact store's
	// (artifacts.go).
	Artifacts ArtifactsFunc
	// ArtifactOptions tune the daemon's artifact fetcher.
	ArtifactOptions []artifact.Option
	// Switch puts in force what the artifacts stage left beside the group
	// (models at their DestinationPath): after the commit with (next,
	// previous), and back with (previous, next) on a rollback. An error
	// after the commit fails the deployment and rolls it back. Nil:
	// nothing to switch.
	Switch func(next, prev *deployment.Record) error
	// Finished runs after every deployment with the records in force and
	// before it (the artifact store collects what neither references).
	Finished func(current, previous *deployment.Record)
	// RecoverWait is how long a start-up recovery waits for a consumer that
	// is not running yet; DefaultRecoverWait when zero.
	RecoverWait time.Duration
	// Rerun reports whether a deployment cut short before its commit will
	// run again from its recorded request (a cloud deployment: cloud.json
	// holds it). The start-up recovery then discards its staged.json
	// instead of recording a FAILURE, so the same id can run again. When
	// it will not, refused (if not "") is the FAILURE's reason. Nil: none
	// does.
	Rerun func(deploymentID string) (rerun bool, refused string)
}

// ArtifactsFunc fetches and verifies the artifacts of the group next puts
// in force, before any daemon prepares it. An error fails the deployment
// with nothing changed.
// It may rewrite next.Group (the group the daemons get, e.g. a function's
// code fetched into the cache) and reports each step through progress.
type ArtifactsFunc func(ctx context.Context, deploymentID string, next *deployment.Record, progress func(string)) error

// DefaultRecoverWait bounds how long a start-up recovery waits for each
// consuming daemon to come up.
const DefaultRecoverWait = 60 * time.Second

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
	artifacts ArtifactsFunc
	switchFn  func(next, prev *deployment.Record) error
	finished  func(current, previous *deployment.Record)
	rerun     func(deploymentID string) (bool, string)
	// recoverWait: see Config.RecoverWait.
	recoverWait time.Duration

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
	if c.RecoverWait <= 0 {
		c.RecoverWait = DefaultRecoverWait
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
		artifacts: c.Artifacts,
		switchFn:  c.Switch,
		finished:  c.Finished,
		rerun:     c.Rerun,

		recoverWait: c.RecoverWait,
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
// power cut in the middle of a deployment, and resumes what must go on:
// see "Crash safety" in README.md for every case.
func (l *Local) restore() error {
	removed, err := deployment.RemoveStaleTemps(l.root)
	for _, p := range removed {
		l.log.Warn("discarded a temp file left by an interrupted write", "file", p)
	}
	if err != nil {
		return fmt.Errorf("deployagent: %w", err)
	}
	cur, fallback, err := deployment.ReadInForce(l.root)
	if err != nil {
		return fmt.Errorf("deployagent: %w (remove both to start with no group)", err)
	}
	if fallback != "" {
		// The daemons did the same in LoadCurrent: the last good record
		// is in force. Make current.json say so again.
		l.log.Error("current.json is unreadable; the last good group (previous.json) is in force", "err", fallback, "in_force", currentID(cur))
		if err := deployment.Restore(l.root, cur, cur); err != nil {
			return fmt.Errorf("deployagent: repair current.json from previous.json: %w", err)
		}
	}
	l.setCurrent(cur)
	if l.history, err = deployment.ReadHistory(l.root); err != nil {
		l.log.Error("deployment history unreadable; starting a new one", "err", err)
		l.history = nil
	}

	st, err := deployment.ReadState(l.root)
	if err != nil {
		l.log.Error("discarding an unreadable staged deployment", "err", err)
		if err := deployment.RemoveState(l.root); err != nil {
			return fmt.Errorf("deployagent: discard staged deployment: %w", err)
		}
		// What it was is lost; if it had been committed, current.json
		// names a deployment that has no outcome yet: confirm it.
		if cur != nil && l.find(cur.DeploymentID) == nil {
			prev, _ := deployment.ReadRecord(deployment.Path(l.root, deployment.PreviousFile))
			st = &deployment.State{DeploymentID: cur.DeploymentID, Type: typeOf(cur).String(), Stage: deployment.StageCommitted,
				CreatedAt: cur.DeployedAt, Next: cur, Previous: prev, PreviousFile: prev}
		}
	}
	if st == nil {
		return nil
	}
	if d := l.find(st.DeploymentID); d != nil && d.Status != inProgress {
		// Stopped between recording the outcome and removing staged.json.
		return deployment.RemoveState(l.root)
	}

	d := &deployv1.Deployment{
		DeploymentId: st.DeploymentID,
		Type:         typeOf(st.Next),
		Status:       inProgress,
		CreatedAt:    timestamppb.New(st.CreatedAt),
		GroupSha256:  st.Next.GroupSHA256,
		Stage:        st.Stage,
		RedeployOf:   st.RedeployOf,
		Results:      protoResults(st.Results),
	}
	if v, ok := deployv1.DeploymentType_value[st.Type]; ok && v != 0 {
		d.Type = deployv1.DeploymentType(v)
	}
	committed := cur != nil && cur.DeploymentID == st.DeploymentID
	j := &job{d: d, st: st, events: newEventStream(context.Background()), force: d.Type == deployv1.DeploymentType_DEPLOYMENT_TYPE_FORCE_RESET,
		recovering: true, log: l.log.With("deployment", d.DeploymentId, "recovery", true)}
	switch {
	case st.Stage == "" && committed:
		// Written before stages existed: committed only once every
		// daemon had applied it.
		l.relink(j, st.Next, st.Previous)
		l.record(j, succeeded, "")
	case st.Stage == "":
		l.relink(j, cur, st.Next)
		l.record(j, failed, "interrupted: the deployagent stopped before every daemon acknowledged; the previous group stays in force")
	case st.Stage == deployment.StageRolledBack:
		if committed {
			if err := deployment.Restore(l.root, st.Previous, st.PreviousFile); err != nil {
				return fmt.Errorf("deployagent: put the previous group back: %w", err)
			}
			l.setCurrent(st.Previous)
		}
		l.relink(j, st.Previous, st.Next)
		l.record(j, failed, st.Reason)
	case st.Stage == deployment.StageRollingBack:
		j.log.Warn("resuming the rollback of a deployment cut short by the last stop")
		l.resume(j, func() { l.rollback(j, l.consumers, d.Results) })
	case !committed:
		rerun, refused := false, ""
		if l.rerun != nil {
			rerun, refused = l.rerun(st.DeploymentID)
		}
		l.relink(j, cur, st.Next)
		if rerun {
			// A cloud deployment: its request runs again from the start (an
			// artifact download resumes where it stopped), under the same id.
			j.log.Warn("a deployment cut short before its commit runs again from its recorded request", "stage", st.Stage)
			if err := deployment.RemoveState(l.root); err != nil {
				return fmt.Errorf("deployagent: discard staged deployment: %w", err)
			}
			break
		}
		if refused == "" {
			refused = "interrupted before commit by a restart (at stage " + st.Stage + "): the previous group stays in force; deploy it again (an artifact download resumes where it stopped)"
		}
		l.record(j, failed, refused)
	case st.Stage == deployment.StageApplied || st.Stage == deployment.StageDone:
		l.relink(j, st.Next, st.Previous)
		l.record(j, succeeded, "")
	default:
		// Committed, not confirmed by every daemon: the new group is in
		// force (each daemon loaded it when it started); its model links
		// may still name the previous group's models (the stop came
		// before the switch): switch them, then ask each daemon to
		// confirm, and roll back if one refuses.
		j.log.Warn("resuming a committed deployment cut short by the last stop: asking every daemon to confirm it")
		l.resume(j, func() { l.switchAndApply(j, d.Results) })
	}
	return nil
}

// relink makes the model links (Config.Switch) match inForce when a
// start-up recovery settles a deployment without running it further: the
// last stop may have come between a link's rename and its directory sync,
// or before the switch. It changes nothing when the links are right.
func (l *Local) relink(j *job, inForce, other *deployment.Record) {
	if l.switchFn == nil {
		return
	}
	if err := l.switchFn(inForce, other); err != nil {
		j.log.Error("model links of the group in force", "err", err)
	}
}

// record ends a deployment found on start without touching any daemon.
func (l *Local) record(j *job, status deployv1.DeploymentStatus, reason string) {
	if status == succeeded {
		j.log.Info("recorded a deployment that completed just before the last stop")
	} else {
		j.log.Warn("recorded a deployment interrupted by the last stop", "reason", reason, "in_force", currentID(l.current))
	}
	j.d.Status, j.d.Error, j.d.FinishedAt = status, reason, timestamppb.Now()
	l.history = append([]*deployv1.Deployment{j.d}, l.history...)
	if len(l.history) > deployment.HistoryLimit {
		l.history = l.history[:deployment.HistoryLimit]
	}
	if err := deployment.WriteHistory(l.root, l.history); err != nil {
		l.log.Error("write deployment history", "err", err)
	}
	if err := deployment.RemoveState(l.root); err != nil {
		l.log.Error("remove staged deployment", "err", err)
	}
}

// resume runs the rest of a deployment found on start in the background:
// the consumers may still be starting. It holds busy like any deployment.
func (l *Local) resume(j *job, rest func()) {
	l.busy.Store(true)
	l.inflight = j.d
	l.running.Add(1)
	go func() {
		defer l.running.Done()
		rest()
	}()
}

func typeOf(r *deployment.Record) deployv1.DeploymentType {
	if r != nil && r.Reset {
		return deployv1.DeploymentType_DEPLOYMENT_TYPE_RESET
	}
	return deployv1.DeploymentType_DEPLOYMENT_TYPE_NEW
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
	return l.deploy(ctx, req, false)
}

// deploy is Deploy; waitUp waits for daemons that are not running yet
// (a cloud request run again at start, see job.waitUp).
func (l *Local) deploy(ctx context.Context, req *deployv1.DeployRequest, waitUp bool) (grpc.ServerStreamingClient[deployv1.DeployEvent], error) {
	typ, next, err := l.validate(req)
	if err != nil {
		return nil, err
	}
	if !l.busy.CompareAndSwap(false, true) {
		return nil, fmt.Errorf("another deployment is in progress: %w", errdefs.ErrAborted)
	}
	d := &deployv1.Deployment{
		DeploymentId: req.GetDeploymentId(),
		Type:         typ,
		Status:       inProgress,
		CreatedAt:    timestamppb.New(next.DeployedAt),
		GroupSha256:  next.GroupSHA256,
		Stage:        deployment.StageReceived,
	}
	l.mu.Lock()
	fail := func(err error) (grpc.ServerStreamingClient[deployv1.DeployEvent], error) {
		l.mu.Unlock()
		l.busy.Store(false)
		return nil, err
	}
	switch {
	case l.closed:
		return fail(fmt.Errorf("the deployagent is stopping: %w", errdefs.ErrUnavailable))
	case d.DeploymentId == "":
		d.DeploymentId = newID(next.DeployedAt)
	case l.find(d.DeploymentId) != nil || (l.current != nil && l.current.DeploymentID == d.DeploymentId):
		return fail(errdefs.InvalidArgument("deployment_id", "%q was used before", d.DeploymentId))
	}
	switch typ {
	case deployv1.DeploymentType_DEPLOYMENT_TYPE_REDEPLOY:
		of := req.GetRedeployOf()
		if !l.current.HasGroup() || l.currentGroup == nil {
			return fail(fmt.Errorf("no group is deployed: nothing to redeploy: %w", errdefs.ErrFailedPrecondition))
		}
		if of == "" {
			of = l.current.DeploymentID
		}
		if of != l.current.DeploymentID {
			// v1 redeploys a deployment by id; here only the group in
			// force can be, whichever deployment put it there.
			past := l.find(of)
			if past == nil {
				return fail(errdefs.NotFound("deployment", of))
			}
			if past.GetGroupSha256() != l.current.GroupSHA256 || past.GetStatus() != succeeded {
				return fail(fmt.Errorf("deployment %s's group is not the group in force (deployment %s); only the group in force can be redeployed: deploy its file again: %w",
					of, l.current.DeploymentID, errdefs.ErrFailedPrecondition))
			}
		}
		next.Group, next.GroupSHA256 = slices.Clone(l.currentGroup), l.current.GroupSHA256
		d.GroupSha256, d.RedeployOf = next.GroupSHA256, of
	case deployv1.DeploymentType_DEPLOYMENT_TYPE_RESET:
		if !l.current.HasGroup() {
			return fail(fmt.Errorf("no group is deployed: nothing to reset (a force reset resets anyway): %w", errdefs.ErrFailedPrecondition))
		}
	}
	next.DeploymentID = d.DeploymentId
	l.inflight = d
	// Added under mu, so never concurrently with Close's Wait.
	l.running.Add(1)
	prevFile, perr := deployment.ReadRecord(deployment.Path(l.root, deployment.PreviousFile))
	if perr != nil {
		l.log.Warn("previous.json unreadable; a rollback will remove it", "err", perr)
	}
	st := &deployment.State{
		DeploymentID: d.DeploymentId, Type: typ.String(), Stage: deployment.StageReceived, CreatedAt: next.DeployedAt,
		RedeployOf: d.RedeployOf, Next: next, Previous: l.current, PreviousFile: prevFile,
	}
	l.mu.Unlock()

	j := &job{d: d, st: st, events: newEventStream(ctx), force: typ == deployv1.DeploymentType_DEPLOYMENT_TYPE_FORCE_RESET, waitUp: waitUp,
		log: l.log.With("deployment", d.DeploymentId, "type", typ.String())}
	go func() {
		defer l.running.Done()
		l.run(j)
	}()
	return j.events, nil
}

// validate checks the request and builds the record the deployment would
// put in force (without its id; a redeployment's group is filled in under
// l.mu).
func (l *Local) validate(req *deployv1.DeployRequest) (deployv1.DeploymentType, *deployment.Record, error) {
	const none = deployv1.DeploymentType_DEPLOYMENT_TYPE_UNSPECIFIED
	if id := req.GetDeploymentId(); id != "" && !validID(id) {
		return none, nil, errdefs.InvalidArgument("deployment_id", "%q must be 1 to 128 of [A-Za-z0-9._:-], starting with a letter or digit", clip(id))
	}
	typ := req.GetType()
	if typ == none {
		typ = deployv1.DeploymentType_DEPLOYMENT_TYPE_NEW
		if req.GetReset_() {
			typ = deployv1.DeploymentType_DEPLOYMENT_TYPE_RESET
		}
	}
	if req.GetRedeployOf() != "" && typ != deployv1.DeploymentType_DEPLOYMENT_TYPE_REDEPLOY {
		return none, nil, errdefs.InvalidArgument("redeploy_of", "only for type DEPLOYMENT_TYPE_REDEPLOY")
	}
	data := req.GetGroupJson()
	now := time.Now().UTC()
	switch typ {
	case deployv1.DeploymentType_DEPLOYMENT_TYPE_NEW:
		switch {
		case req.GetReset_() && len(data) > 0:
			return none, nil, errdefs.InvalidArgument("group_json", "must be empty when reset is set")
		case req.GetReset_():
			return none, nil, errdefs.InvalidArgument("reset", "a NEW deployment takes a group, not reset")
		case len(data) == 0:
			return none, nil, errdefs.InvalidArgument("group_json", "required unless reset is set")
		}
	case deployv1.DeploymentType_DEPLOYMENT_TYPE_RESET, deployv1.DeploymentType_DEPLOYMENT_TYPE_FORCE_RESET:
		if len(data) > 0 {
			return none, nil, errdefs.InvalidArgument("group_json", "must be empty when reset is set")
		}
		return typ, &deployment.Record{DeployedAt: now, Reset: true}, nil
	case deployv1.DeploymentType_DEPLOYMENT_TYPE_REDEPLOY:
		if len(data) > 0 || req.GetReset_() {
			return none, nil, errdefs.InvalidArgument("group_json", "must be empty for a redeployment (the group in force is deployed again), and reset unset")
		}
		return typ, &deployment.Record{DeployedAt: now}, nil
	default:
		return none, nil, errdefs.InvalidArgument("type", "unknown deployment type %d", typ)
	}
	g, err := groupdef.Parse(data)
	if err != nil {
		return none, nil, errdefs.InvalidArgument("group_json", "%s", describe(err))
	}
	if l.coreThing != "" {
		if name := g.CoreThingName(); name != l.coreThing {
			return none, nil, errdefs.InvalidArgument("group_json", "Core.Cores[0].ThingArn: the group is for core thing %q, but this core is %q (coreThing.thingArn in config.json)", name, l.coreThing)
		}
	}
	canon, err := groupdef.MarshalValid(g) // Parse validated it
	if err != nil {
		return none, nil, fmt.Errorf("encode group: %v: %w", err, errdefs.ErrInternal)
	}
	// The group travels whole in one bus message.
	if limit := l.bus.MaxPayload() - applyOverhead; limit > 0 && int64(len(canon)) > limit {
		return none, nil, errdefs.InvalidArgument("group_json", "the group is %d bytes in canonical form; the internal bus carries at most %d", len(canon), limit)
	}
	sum := sha256.Sum256(data)
	return typ, &deployment.Record{DeployedAt: now, GroupSHA256: hex.EncodeToString(sum[:]), Group: canon}, nil
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

// GetApplied asks every consuming daemon which deployment it runs.
func (l *Local) GetApplied(context.Context, *deployv1.GetAppliedRequest, ...grpc.CallOption) (*deployv1.GetAppliedResponse, error) {
	l.mu.Lock()
	resp := &deployv1.GetAppliedResponse{}
	if l.current != nil {
		resp.DeploymentId, resp.GroupSha256 = l.current.DeploymentID, l.current.GroupSHA256
	}
	l.mu.Unlock()
	for _, o := range l.askAll(l.consumers, &deployv1.ApplyGroup{Phase: phaseQuery}, func(outcome) {}) {
		a := &deployv1.DaemonApplied{Daemon: o.daemon, DeploymentId: o.appliedID, GroupSha256: o.appliedSHA}
		if !o.ok {
			a.Error = o.reason
		}
		resp.Daemons = append(resp.Daemons, a)
	}
	return resp, nil
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
		Stage:        deployment.StageDone,
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
