package deployment

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	deployv1 "github.com/evergreen-edge/evergreen/proto/evergreen/deploy/v1"
	"github.com/evergreen-edge/evergreen/services/kit/daemon"
	"github.com/evergreen-edge/evergreen/services/kit/deployment/failpoint"
	"github.com/evergreen-edge/evergreen/services/kit/groupdef"
	"github.com/evergreen-edge/evergreen/services/kit/subjects"
	"github.com/nats-io/nats.go"
	"google.golang.org/protobuf/proto"
)

// ApplyFunc applies a daemon's part of a group. g is nil for a reset.
// rollback is true when the deployagent re-applies the group that was in
// force after another daemon refused a deployment; the daemon must accept
// it. A non-nil error refuses the group; its text is the reason the user
// sees, so it should name what is wrong ("Functions[2]: runtime python2.7
// is not installed").
type ApplyFunc func(ctx context.Context, g *groupdef.Group, rollback bool) error

// PrepareFunc checks a daemon's part of a group and stages it without
// switching anything: the group in force keeps running. It is called before
// the deployagent commits the deployment; a non-nil error refuses the group
// (the reason is shown to the user) and nothing changes anywhere. g is nil
// for a reset. A later Prepare (of another deployment) replaces whatever an
// earlier one staged; APPLY of the same deploymentID then switches to it.
type PrepareFunc func(ctx context.Context, g *groupdef.Group, deploymentID string) error

// Option tunes Serve.
type Option func(*server)

type idKey struct{}

func withID(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, idKey{}, id)
}

// ID is, in an ApplyFunc's context, the id of the deployment whose group g
// is: the one put in force by an APPLY, the one returned to by a ROLLBACK.
// It is "" when the deployagent did not say.
func ID(ctx context.Context) string {
	id, _ := ctx.Value(idKey{}).(string)
	return id
}

// WithPrepare gives the daemon a PREPARE step. Without one, PREPARE is
// accepted once the kit has parsed the group, and every check of the daemon
// happens at APPLY, after the commit, where a refusal rolls every daemon
// back.
func WithPrepare(p PrepareFunc) Option {
	return func(s *server) { s.prepare = p }
}

// Serve answers the deployagent's ApplyGroup requests on
// evergreen.deploy.apply.<env.Name>, one at a time in arrival order:
// PREPARE (WithPrepare's func, if any), APPLY (apply), ROLLBACK (apply with
// rollback set) and QUERY (which deployment the daemon runs: the one
// current.json named when Serve was called, which is what the daemon loaded
// with LoadCurrent just before, then the last one applied or rolled back to).
// After each APPLY or ROLLBACK the daemon accepts, the group's loggers
// apply to its own log (ApplyLoggers).
// The daemon's bus role must subscribe to that subject and allow responses.
// stop unsubscribes, cancels the context of an apply in progress and waits
// for it to return; apply is not called after stop returns.
func Serve(env *daemon.Env, apply ApplyFunc, opts ...Option) (stop func(), err error) {
	if env.Bus == nil {
		return nil, fmt.Errorf("deployment: %s has no bus connection", env.Name)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &server{env: env, apply: apply, ctx: ctx}
	for _, o := range opts {
		o(s)
	}
	if r, _, err := ReadInForce(env.Root); err == nil && r != nil {
		s.appliedID, s.appliedSHA = r.DeploymentID, r.GroupSHA256
	}
	sub, err := env.Bus.Subscribe(subjects.DeployApply(env.Name), s.handle)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("deployment: subscribe %s: %w", subjects.DeployApply(env.Name), err)
	}
	// Make sure the server has the subscription before the daemon reports
	// ready, or a deployment right after start would find no responder.
	if err := env.Bus.Flush(); err != nil {
		env.Log.Warn("bus flush after subscribe", "err", err)
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			sub.Unsubscribe()
			cancel()
			s.mu.Lock()
			s.stopped = true
			s.mu.Unlock()
		})
	}, nil
}

type server struct {
	env     *daemon.Env
	apply   ApplyFunc
	prepare PrepareFunc
	ctx     context.Context

	// mu is held while apply runs, so stop can wait for it.
	mu      sync.Mutex
	stopped bool
	// appliedID and appliedSHA name the deployment the daemon runs.
	appliedID, appliedSHA string
}

func (s *server) handle(m *nats.Msg) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return
	}
	res := &deployv1.ApplyResult{Daemon: s.env.Name}
	req := &deployv1.ApplyGroup{}
	phase := deployv1.ApplyPhase_APPLY_PHASE_UNSPECIFIED
	if err := proto.Unmarshal(m.Data, req); err != nil {
		res.Reason = "malformed ApplyGroup: " + err.Error()
	} else {
		phase = phaseOf(req)
		if err := s.handleOne(phase, req); err != nil {
			res.Reason = oneLine(err.Error())
		} else {
			res.Ok = true
		}
	}
	res.AppliedDeploymentId, res.AppliedGroupSha256 = s.appliedID, s.appliedSHA
	log := s.env.Log.With("deployment", req.GetDeploymentId(), "reset", req.GetReset_(), "phase", phaseName(phase))
	switch {
	case phase == deployv1.ApplyPhase_APPLY_PHASE_QUERY:
	case res.Ok:
		log.Info("deployment " + phaseDone(phase))
	default:
		log.Warn("deployment refused", "reason", res.Reason)
	}
	if m.Reply == "" {
		log.Warn("ApplyGroup without a reply subject; result not sent")
		return
	}
	b, err := proto.Marshal(res)
	if err == nil {
		err = m.Respond(b)
	}
	if err != nil {
		log.Error("reply to ApplyGroup", "err", err)
	}
}

// phaseOf reads the phase; a sender that predates phases means APPLY, or
// ROLLBACK with rollback set.
func phaseOf(req *deployv1.ApplyGroup) deployv1.ApplyPhase {
	switch p := req.GetPhase(); {
	case p != deployv1.ApplyPhase_APPLY_PHASE_UNSPECIFIED:
		return p
	case req.GetRollback():
		return deployv1.ApplyPhase_APPLY_PHASE_ROLLBACK
	default:
		return deployv1.ApplyPhase_APPLY_PHASE_APPLY
	}
}

func phaseName(p deployv1.ApplyPhase) string {
	return strings.ToLower(strings.TrimPrefix(p.String(), "APPLY_PHASE_"))
}

func phaseDone(p deployv1.ApplyPhase) string {
	switch p {
	case deployv1.ApplyPhase_APPLY_PHASE_PREPARE:
		return "prepared"
	case deployv1.ApplyPhase_APPLY_PHASE_ROLLBACK:
		return "rolled back"
	}
	return "applied"
}

func (s *server) handleOne(phase deployv1.ApplyPhase, req *deployv1.ApplyGroup) error {
	switch phase {
	case deployv1.ApplyPhase_APPLY_PHASE_QUERY:
		return nil
	case deployv1.ApplyPhase_APPLY_PHASE_PREPARE, deployv1.ApplyPhase_APPLY_PHASE_APPLY, deployv1.ApplyPhase_APPLY_PHASE_ROLLBACK:
	default:
		return fmt.Errorf("unknown ApplyGroup phase %d", phase)
	}
	if phase == deployv1.ApplyPhase_APPLY_PHASE_APPLY {
		if reason := failpoint.RefuseApply(s.env.Name); reason != "" {
			return errors.New(reason)
		}
	}
	if err := s.applyOne(phase, req); err != nil {
		return err
	}
	if phase != deployv1.ApplyPhase_APPLY_PHASE_PREPARE {
		s.appliedID, s.appliedSHA = req.GetDeploymentId(), req.GetGroupSha256()
	}
	return nil
}

func (s *server) applyOne(phase deployv1.ApplyPhase, req *deployv1.ApplyGroup) (err error) {
	var g *groupdef.Group
	switch {
	case req.GetReset_() && len(req.GetGroupJson()) > 0:
		return errors.New("ApplyGroup has both reset and a group")
	case !req.GetReset_():
		if len(req.GetGroupJson()) == 0 {
			return errors.New("ApplyGroup has neither reset nor a group")
		}
		if g, err = groupdef.Parse(req.GetGroupJson()); err != nil {
			return fmt.Errorf("group: %w", err)
		}
	}
	// A panicking apply must not take the daemon down with it.
	defer func() {
		if r := recover(); r != nil {
			s.env.Log.Error("panic while applying a deployment", "panic", r)
			err = fmt.Errorf("internal error while applying: %v", r)
		}
	}()
	switch phase {
	case deployv1.ApplyPhase_APPLY_PHASE_PREPARE:
		if s.prepare == nil {
			return nil
		}
		return s.prepare(s.ctx, g, req.GetDeploymentId())
	case deployv1.ApplyPhase_APPLY_PHASE_ROLLBACK:
		err = s.apply(withID(s.ctx, req.GetDeploymentId()), g, true)
	default:
		err = s.apply(withID(s.ctx, req.GetDeploymentId()), g, false)
	}
	if err == nil {
		// The daemon's own log follows the group it now runs.
		ApplyLoggers(s.env, g)
	}
	return err
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}
