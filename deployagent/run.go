package deployagent

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	deployv1 "github.com/evergreen-edge/evergreen/proto/evergreen/deploy/v1"
	"github.com/evergreen-edge/evergreen/services/kit/deployment"
	"github.com/evergreen-edge/evergreen/services/kit/subjects"
	"github.com/nats-io/nats.go"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

const (
	inProgress = deployv1.DeploymentStatus_DEPLOYMENT_STATUS_IN_PROGRESS
	succeeded  = deployv1.DeploymentStatus_DEPLOYMENT_STATUS_SUCCESS
	failed     = deployv1.DeploymentStatus_DEPLOYMENT_STATUS_FAILURE
)

// outcome is one daemon's answer to an ApplyGroup.
type outcome struct {
	daemon string
	ok     bool
	reason string
	// unknown is set when the daemon did not answer, so it may have
	// applied the group anyway (late, or its reply was lost).
	unknown bool
}

// run is one deployment, from staging to the terminal event. It owns
// l.busy and releases it before the terminal event, so a caller that saw
// the end can deploy again at once.
func (l *Local) run(d *deployv1.Deployment, next *deployment.Record, events *eventStream) {
	id := d.DeploymentId
	log := l.log.With("deployment", id, "reset", next.Reset)
	events.push(event(id, inProgress, "validated", nil))
	log.Info("deployment started", "consumers", l.consumers)

	// The staged file marks a deployment in flight; if the deployagent
	// stops before the end, the next start finds it and records the
	// deployment as interrupted.
	if err := deployment.WriteRecord(deployment.Path(l.root, deployment.StagedFile), next); err != nil {
		l.finish(d, failed, "stage the deployment: "+oneLine(err.Error()), nil, events)
		return
	}
	l.mu.Lock()
	prev, prevGroup := l.current, l.currentGroup
	l.mu.Unlock()

	apply := &deployv1.ApplyGroup{DeploymentId: id, GroupJson: next.Group, Reset_: next.Reset}
	outs := l.askAll(l.consumers, apply, func(o outcome) {
		if o.ok {
			events.push(event(id, inProgress, o.daemon+" applied", nil))
		} else {
			events.push(event(id, inProgress, o.daemon+" refused: "+o.reason, nil))
		}
	})
	results := make([]*deployv1.DaemonResult, 0, len(outs))
	var problems []string
	for _, o := range outs {
		results = append(results, &deployv1.DaemonResult{Daemon: o.daemon, Ok: o.ok, Reason: o.reason})
		if !o.ok {
			problems = append(problems, o.daemon+": "+o.reason)
		}
	}
	if len(problems) == 0 {
		next.DeployedAt = time.Now().UTC()
		err := l.commit(next)
		if err == nil {
			l.finish(d, succeeded, "", results, events)
			return
		}
		log.Error("store the deployed group", "err", err)
		problems = append(problems, "store the group: "+oneLine(err.Error()))
	}

	// Put the group in force back on every daemon that may hold the new
	// one. Those that refused, or were not running, still have it.
	var back []string
	for _, o := range outs {
		if o.ok || o.unknown {
			back = append(back, o.daemon)
		}
	}
	if len(back) > 0 {
		to := "the group of deployment " + currentID(prev)
		if prevGroup == nil {
			to = "no group"
		}
		events.push(event(id, inProgress, fmt.Sprintf("rolling back %s to %s", strings.Join(back, ", "), to), nil))
		rollback := &deployv1.ApplyGroup{DeploymentId: currentID(prev), GroupJson: prevGroup, Reset_: prevGroup == nil, Rollback: true}
		for _, o := range l.askAll(back, rollback, func(o outcome) {
			if o.ok {
				events.push(event(id, inProgress, o.daemon+" rolled back", nil))
			} else {
				events.push(event(id, inProgress, o.daemon+" rollback failed: "+o.reason, nil))
			}
		}) {
			if !o.ok {
				log.Error("rollback failed; the daemon may run a group that is not in force until it restarts", "daemon", o.daemon, "reason", o.reason)
				problems = append(problems, "rollback on "+o.daemon+" failed: "+o.reason)
			}
		}
	}
	l.finish(d, failed, strings.Join(problems, "; "), results, events)
}

// commit puts next in force on disk, then in memory.
func (l *Local) commit(next *deployment.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := deployment.Commit(l.root, next); err != nil {
		return err
	}
	l.current, l.currentGroup = next, nil
	if next.HasGroup() {
		l.currentGroup = next.Group
	}
	return nil
}

// finish records the end of a deployment, releases busy and sends the
// terminal event.
func (l *Local) finish(d *deployv1.Deployment, status deployv1.DeploymentStatus, reason string, results []*deployv1.DaemonResult, events *eventStream) {
	l.mu.Lock()
	d.Status = status
	d.FinishedAt = timestamppb.Now()
	d.Results = results
	d.Error = reason
	l.inflight = nil
	l.history = append([]*deployv1.Deployment{d}, l.history...)
	if len(l.history) > deployment.HistoryLimit {
		l.history = l.history[:deployment.HistoryLimit]
	}
	herr := deployment.WriteHistory(l.root, l.history)
	view := l.view(d)
	l.mu.Unlock()

	log := l.log.With("deployment", d.DeploymentId)
	if herr != nil {
		log.Error("write deployment history", "err", herr)
	}
	if err := removeDurably(deployment.Path(l.root, deployment.StagedFile)); err != nil {
		log.Error("remove staged deployment", "err", err)
	}
	l.publishFinished(view)

	var msg string
	switch {
	case status == succeeded && d.Type == deployv1.DeploymentType_DEPLOYMENT_TYPE_RESET:
		msg = "reset succeeded: no group in force"
		log.Info(msg)
	case status == succeeded:
		msg = "deployment succeeded"
		log.Info(msg, "sha256", d.GroupSha256)
	default:
		msg = "deployment failed: " + reason
		log.Warn("deployment failed; the previous group stays in force", "reason", reason)
	}
	l.busy.Store(false)
	events.push(event(d.DeploymentId, status, msg, view.Results))
	events.close()
}

// askAll sends req to every daemon in parallel and returns their outcomes
// in the order of daemons; each is also handed to seen as it arrives.
func (l *Local) askAll(daemons []string, req *deployv1.ApplyGroup, seen func(outcome)) []outcome {
	data, err := proto.Marshal(req)
	if err != nil {
		out := make([]outcome, len(daemons))
		for i, n := range daemons {
			out[i] = outcome{daemon: n, reason: "encode ApplyGroup: " + err.Error()}
			seen(out[i])
		}
		return out
	}
	type indexed struct {
		i int
		o outcome
	}
	ch := make(chan indexed, len(daemons))
	for i, n := range daemons {
		go func() { ch <- indexed{i, l.ask(n, data)} }()
	}
	out := make([]outcome, len(daemons))
	for range daemons {
		r := <-ch
		out[r.i] = r.o
		seen(r.o)
	}
	return out
}

func (l *Local) ask(daemon string, data []byte) outcome {
	subject := subjects.DeployApply(daemon)
	ctx, cancel := context.WithTimeout(l.runCtx, l.timeout)
	defer cancel()
	m, err := l.bus.RequestWithContext(ctx, subject, data)
	switch {
	case err == nil:
	case errors.Is(err, nats.ErrNoResponders):
		return outcome{daemon: daemon, reason: "not running (nothing answers on " + subject + ")"}
	case l.runCtx.Err() != nil:
		return outcome{daemon: daemon, reason: "no reply: the deployagent is stopping", unknown: true}
	case errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout):
		return outcome{daemon: daemon, reason: "no reply within " + l.timeout.String(), unknown: true}
	default:
		return outcome{daemon: daemon, reason: "no reply: " + oneLine(err.Error()), unknown: true}
	}
	res := &deployv1.ApplyResult{}
	if err := proto.Unmarshal(m.Data, res); err != nil {
		return outcome{daemon: daemon, reason: "malformed reply: " + err.Error(), unknown: true}
	}
	if res.GetOk() {
		return outcome{daemon: daemon, ok: true}
	}
	reason := oneLine(res.GetReason())
	if reason == "" {
		reason = "refused without a reason"
	}
	return outcome{daemon: daemon, reason: reason}
}

func event(id string, status deployv1.DeploymentStatus, msg string, results []*deployv1.DaemonResult) *deployv1.DeployEvent {
	return &deployv1.DeployEvent{DeploymentId: id, Status: status, Message: msg, Results: results, Time: timestamppb.Now()}
}
