package deployment

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	deployv1 "github.com/evergreen-edge/evergreen/proto/evergreen/deploy/v1"
	"github.com/evergreen-edge/evergreen/services/kit/daemon"
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

// Serve answers the deployagent's ApplyGroup requests on
// evergreen.deploy.apply.<env.Name>, one at a time in arrival order. The
// daemon's bus role must subscribe to that subject and allow responses.
// stop unsubscribes, cancels the context of an apply in progress and waits
// for it to return; apply is not called after stop returns.
func Serve(env *daemon.Env, apply ApplyFunc) (stop func(), err error) {
	if env.Bus == nil {
		return nil, fmt.Errorf("deployment: %s has no bus connection", env.Name)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &server{env: env, apply: apply, ctx: ctx}
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
	env   *daemon.Env
	apply ApplyFunc
	ctx   context.Context

	// mu is held while apply runs, so stop can wait for it.
	mu      sync.Mutex
	stopped bool
}

func (s *server) handle(m *nats.Msg) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return
	}
	res := &deployv1.ApplyResult{Daemon: s.env.Name}
	req := &deployv1.ApplyGroup{}
	if err := proto.Unmarshal(m.Data, req); err != nil {
		res.Reason = "malformed ApplyGroup: " + err.Error()
	} else if err := s.applyOne(req); err != nil {
		res.Reason = oneLine(err.Error())
	} else {
		res.Ok = true
	}
	log := s.env.Log.With("deployment", req.GetDeploymentId(), "reset", req.GetReset_(), "rollback", req.GetRollback())
	if res.Ok {
		log.Info("deployment applied")
	} else {
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

func (s *server) applyOne(req *deployv1.ApplyGroup) (err error) {
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
	return s.apply(s.ctx, g, req.GetRollback())
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}
