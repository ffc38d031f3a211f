package deployagent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	deployv1 "github.com/evergreen-edge/evergreen/proto/evergreen/deploy/v1"
	"github.com/evergreen-edge/evergreen/services/kit/deployment"
	"github.com/evergreen-edge/evergreen/services/kit/deployment/failpoint"
	"github.com/evergreen-edge/evergreen/services/kit/subjects"
	"github.com/nats-io/nats.go"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

const (
	inProgress = deployv1.DeploymentStatus_DEPLOYMENT_STATUS_IN_PROGRESS
	succeeded  = deployv1.DeploymentStatus_DEPLOYMENT_STATUS_SUCCESS
	failed     = deployv1.DeploymentStatus_DEPLOYMENT_STATUS_FAILURE

	phasePrepare  = deployv1.ApplyPhase_APPLY_PHASE_PREPARE
	phaseApply    = deployv1.ApplyPhase_APPLY_PHASE_APPLY
	phaseRollback = deployv1.ApplyPhase_APPLY_PHASE_ROLLBACK
	phaseQuery    = deployv1.ApplyPhase_APPLY_PHASE_QUERY
)

// outcome is one daemon's answer to an ApplyGroup.
type outcome struct {
	daemon string
	ok     bool
	reason string
	// unknown is set when the daemon did not answer, so it may have
	// applied the group anyway (late, or its reply was lost).
	unknown bool
	// notRunning is set when nothing answers on the daemon's subject.
	notRunning bool
	// applied* is what the daemon says it runs.
	appliedID, appliedSHA string
}

// job is one deployment on its way through the stages. The state is what
// staged.json holds; every stage is written there (fsync, rename) before
// the deployment moves on, so a start after any stop knows where it was.
type job struct {
	d      *deployv1.Deployment
	st     *deployment.State
	events *eventStream
	force  bool
	// recovering: resumed by a start after a stop. Every daemon may have
	// loaded current.json on its own since, so every daemon is told.
	recovering bool
	// waitUp: daemons not running yet are waited for (DefaultRecoverWait)
	// instead of failing the deployment: a recovery, or a cloud request
	// run again at start, while the supervisor may still be starting them.
	waitUp bool
	log    interface {
		Info(string, ...any)
		Warn(string, ...any)
		Error(string, ...any)
	}
}

// stage records the stage on disk, then tells the caller.
func (l *Local) stage(j *job, stage, msg string) error {
	j.st.Stage = stage
	l.mu.Lock()
	j.d.Stage = stage
	l.mu.Unlock()
	err := deployment.WriteState(l.root, j.st)
	if err != nil {
		j.log.Error("write staged.json", "stage", stage, "err", err)
	}
	if msg != "" {
		j.events.push(stageEvent(j.d.DeploymentId, stage, msg))
	}
	return err
}

func (l *Local) hit(name string) { failpoint.Hit(l.root.RunDir(), name) }

// run is one deployment, from received to the terminal event. It owns
// l.busy and releases it before the terminal event, so a caller that saw
// the end can deploy again at once.
func (l *Local) run(j *job) {
	id := j.d.DeploymentId
	j.log.Info("deployment started", "type", j.d.Type.String(), "consumers", l.consumers)

	// Received and validated in Deploy, before the caller got a stream, so
	// an invalid request never reaches the disk. From here on staged.json
	// marks a deployment in flight.
	if err := l.stage(j, deployment.StageValidated, "validated"); err != nil {
		l.finish(j, failed, "stage the deployment: "+oneLine(err.Error()), nil)
		return
	}
	l.hit(failpoint.Validated)

	// Artifacts: fetched and verified before any daemon is asked, so a
	// missing artifact fails the deployment with nothing touched.
	if l.artifacts != nil && j.st.Next.HasGroup() {
		progress := func(msg string) { j.events.push(stageEvent(id, deployment.StageValidated, msg)) }
		if err := l.artifacts(l.runCtx, id, j.st.Next, progress); err != nil {
			if l.runCtx.Err() != nil {
				l.abandon(j)
				return
			}
			l.finish(j, failed, "artifacts: "+oneLine(err.Error()), nil)
			return
		}
	}
	if err := l.stage(j, deployment.StageArtifacts, "artifacts ready"); err != nil {
		l.finish(j, failed, "stage the deployment: "+oneLine(err.Error()), nil)
		return
	}
	l.hit(failpoint.Artifacts)

	// Prepared: every daemon checks and stages its slice; nothing switches.
	prep := l.applyRequest(j.st.Next, id, phasePrepare)
	ask := l.askAll
	if j.waitUp {
		ask = l.askAllWhenUp
	}
	outs := ask(l.consumers, prep, func(o outcome) {
		if o.ok {
			j.events.push(stageEvent(id, deployment.StageArtifacts, o.daemon+" prepared"))
		} else {
			j.events.push(stageEvent(id, deployment.StageArtifacts, o.daemon+" refused: "+o.reason))
		}
	})
	results, problems := summarize(outs)
	if len(problems) > 0 && !j.force {
		l.finish(j, failed, strings.Join(problems, "; "), results)
		return
	}
	if err := l.stage(j, deployment.StagePrepared, "prepared"); err != nil {
		l.finish(j, failed, "stage the deployment: "+oneLine(err.Error()), results)
		return
	}
	l.hit(failpoint.Prepared)

	// Committed: one rename of current.json puts the deployment in force.
	j.st.Next.DeployedAt = time.Now().UTC()
	if err := deployment.Commit(l.root, j.st.Next); err != nil {
		// The rename is the commit: if current.json names the deployment
		// the commit happened (only the directory sync failed).
		if cur, rerr := deployment.ReadCurrent(l.root); rerr != nil || cur == nil || cur.DeploymentID != id {
			j.log.Error("commit the deployment", "err", err)
			l.finish(j, failed, "commit: "+oneLine(err.Error())+"; the previous group stays in force", results)
			return
		}
		j.log.Warn("commit: current.json is in place but not synced", "err", err)
	}
	l.setInForce(j.st.Next)
	l.stage(j, deployment.StageCommitted, "committed: current.json names "+id)
	l.hit(failpoint.Committed)
	l.switchAndApply(j, results)
}

// switchAndApply puts the committed group's models at their
// DestinationPath (Config.Switch), then asks every daemon to apply it. A
// start-up recovery of a committed deployment goes through here too: the
// stop may have come before the switch.
func (l *Local) switchAndApply(j *job, results []*deployv1.DaemonResult) {
	if l.switchFn != nil {
		if err := l.switchFn(j.st.Next, j.st.Previous); err != nil {
			j.st.Reason = "deployagent: " + oneLine(err.Error())
			l.rollback(j, l.consumers, results)
			return
		}
	}
	l.applyAll(j)
}

// applyAll asks every daemon to switch to the committed group, one after
// the other in name order, then ends the deployment: SUCCESS when all
// confirmed (or the deployment is a force reset), otherwise a rollback.
func (l *Local) applyAll(j *job) {
	id := j.d.DeploymentId
	req := l.applyRequest(j.st.Next, id, phaseApply)
	data, err := proto.Marshal(req)
	outs := make([]outcome, 0, len(l.consumers))
	for i, n := range l.consumers {
		var o outcome
		switch {
		case err != nil:
			o = outcome{daemon: n, reason: "encode ApplyGroup: " + err.Error()}
		case j.recovering || j.waitUp:
			o = l.askWhenUp(n, data)
		default:
			o = l.ask(n, data)
		}
		outs = append(outs, o)
		if o.ok {
			j.events.push(stageEvent(id, deployment.StageCommitted, o.daemon+" applied"))
		} else {
			j.events.push(stageEvent(id, deployment.StageCommitted, o.daemon+" refused: "+o.reason))
		}
		if i == 0 {
			l.hit(failpoint.AppliedOne)
		}
	}
	results, problems := summarize(outs)
	j.st.Results = stateResults(results)
	if len(problems) == 0 || j.force {
		l.stage(j, deployment.StageApplied, "applied")
		l.hit(failpoint.Applied)
		reason := ""
		if len(problems) > 0 {
			reason = "forced: " + strings.Join(problems, "; ") + " (each loads no group when it next starts)"
		}
		l.finishSuccess(j, reason, results)
		return
	}

	// Put every daemon that may hold the new group back on the previous
	// one. After a restart that is every daemon: each loaded current.json.
	var back []string
	for _, o := range outs {
		if o.ok || o.unknown || j.recovering {
			back = append(back, o.daemon)
		}
	}
	j.st.Reason = strings.Join(problems, "; ")
	l.rollback(j, back, results)
}

// rollback puts the previous group back in force: current.json first, then
// every daemon in back, then the outcome.
func (l *Local) rollback(j *job, back []string, results []*deployv1.DaemonResult) {
	id := j.d.DeploymentId
	problems := []string{j.st.Reason}
	prev := j.st.Previous
	to := "the group of deployment " + currentID(prev)
	if !prev.HasGroup() {
		to = "no group"
	}
	l.stage(j, deployment.StageRollingBack, fmt.Sprintf("rolling back to %s", to))
	l.hit(failpoint.RollbackStarted)

	if err := deployment.Restore(l.root, prev, j.st.PreviousFile); err != nil {
		j.log.Error("put the previous group back in current.json", "err", err)
		problems = append(problems, "restore current.json: "+oneLine(err.Error()))
	}
	l.setInForce(prev)
	l.hit(failpoint.RollbackPointer)
	if l.switchFn != nil {
		if err := l.switchFn(prev, j.st.Next); err != nil {
			problems = append(problems, "deployagent: switch back: "+oneLine(err.Error()))
		}
	}

	if len(back) > 0 {
		req := l.applyRequest(prev, currentID(prev), phaseRollback)
		ask := l.askAll
		if j.recovering || j.waitUp {
			ask = l.askAllWhenUp
		}
		for _, o := range ask(back, req, func(o outcome) {
			if o.ok {
				j.events.push(stageEvent(id, deployment.StageRollingBack, o.daemon+" rolled back"))
			} else {
				j.events.push(stageEvent(id, deployment.StageRollingBack, o.daemon+" rollback failed: "+o.reason))
			}
		}) {
			if !o.ok {
				j.log.Error("rollback failed; the daemon may run a group that is not in force until it restarts", "daemon", o.daemon, "reason", o.reason)
				problems = append(problems, "rollback on "+o.daemon+" failed: "+o.reason)
			}
		}
	}
	j.st.Reason = strings.Join(problems, "; ")
	l.stage(j, deployment.StageRolledBack, "rolled back to "+to)
	l.hit(failpoint.RolledBack)
	l.finish(j, failed, j.st.Reason, results)
}

// abandon leaves a deployment that the deployagent's stop cut short
// before its commit as staged.json says, for the next start to settle as
// it settles one cut by a power cut (README.md, "Crash safety"): a cloud
// deployment runs again, a local one is recorded FAILURE. busy stays set:
// the deployagent is stopping.
func (l *Local) abandon(j *job) {
	j.log.Warn("deployment interrupted by the deployagent's stop before its commit; the next start settles it", "stage", j.st.Stage)
	l.mu.Lock()
	l.inflight = nil
	l.mu.Unlock()
	j.events.push(stageEvent(j.d.DeploymentId, j.st.Stage, "interrupted: the deployagent is stopping; the next start settles this deployment"))
	j.events.close()
}

// setInForce makes memory follow current.json. r's group is canonical
// already: this deployagent validated and encoded it (a deployment), or it
// was in force before (a rollback).
func (l *Local) setInForce(r *deployment.Record) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.current, l.currentGroup = r, nil
	if r.HasGroup() {
		// Read back from a record file, the group lacks Marshal's newline.
		l.currentGroup = append(slices.Clip(bytes.TrimSpace(r.Group)), '\n')
	}
}

func (l *Local) finishSuccess(j *job, note string, results []*deployv1.DaemonResult) {
	l.finishStage(j, succeeded, note, results, deployment.StageDone)
}

// finish records a failed (or, through finishSuccess, successful)
// deployment.
func (l *Local) finish(j *job, status deployv1.DeploymentStatus, reason string, results []*deployv1.DaemonResult) {
	l.finishStage(j, status, reason, results, "")
}

// finishStage records the outcome in history.json, removes staged.json,
// releases busy and sends the terminal event.
func (l *Local) finishStage(j *job, status deployv1.DeploymentStatus, reason string, results []*deployv1.DaemonResult, stage string) {
	d := j.d
	l.mu.Lock()
	d.Status = status
	d.FinishedAt = timestamppb.Now()
	d.Results = results
	d.Error = reason
	if stage != "" {
		d.Stage = stage
	}
	l.inflight = nil
	l.history = append([]*deployv1.Deployment{d}, l.history...)
	if len(l.history) > deployment.HistoryLimit {
		l.history = l.history[:deployment.HistoryLimit]
	}
	herr := deployment.WriteHistory(l.root, l.history)
	view := l.view(d)
	l.mu.Unlock()

	log := j.log
	if herr != nil {
		log.Error("write deployment history", "err", herr)
	}
	l.hit(failpoint.Recorded)
	if err := deployment.RemoveState(l.root); err != nil {
		log.Error("remove staged deployment", "err", err)
	}
	if l.finished != nil {
		l.mu.Lock()
		cur := l.current
		l.mu.Unlock()
		prev, _ := deployment.ReadRecord(deployment.Path(l.root, deployment.PreviousFile))
		l.finished(cur, prev)
	}
	l.publishFinished(view)
	deployment.ApplyLoggersInForce(l.log, l.root)

	var msg string
	reset := d.Type == deployv1.DeploymentType_DEPLOYMENT_TYPE_RESET || d.Type == deployv1.DeploymentType_DEPLOYMENT_TYPE_FORCE_RESET
	switch {
	case status == succeeded && reset:
		msg = "reset succeeded: no group in force"
		if reason != "" {
			msg += "; " + reason
		}
		log.Info(msg)
	case status == succeeded:
		msg = "deployment succeeded"
		log.Info(msg, "sha256", d.GroupSha256)
	default:
		msg = "deployment failed: " + reason
		log.Warn("deployment failed; the previous group stays in force", "reason", reason)
	}
	l.busy.Store(false)
	ev := event(d.DeploymentId, status, msg, view.Results)
	ev.Stage = d.Stage
	j.events.push(ev)
	j.events.close()
}

// applyRequest is the ApplyGroup that puts r in force (a reset when r has
// no group).
func (l *Local) applyRequest(r *deployment.Record, id string, phase deployv1.ApplyPhase) *deployv1.ApplyGroup {
	req := &deployv1.ApplyGroup{DeploymentId: id, Phase: phase, Rollback: phase == phaseRollback}
	if r.HasGroup() {
		req.GroupJson = r.Group
		req.GroupSha256 = r.GroupSHA256
	} else {
		req.Reset_ = true
	}
	return req
}

func summarize(outs []outcome) ([]*deployv1.DaemonResult, []string) {
	results := make([]*deployv1.DaemonResult, 0, len(outs))
	var problems []string
	for _, o := range outs {
		results = append(results, &deployv1.DaemonResult{Daemon: o.daemon, Ok: o.ok, Reason: o.reason})
		if !o.ok {
			problems = append(problems, o.daemon+": "+o.reason)
		}
	}
	return results, problems
}

func stateResults(rs []*deployv1.DaemonResult) []deployment.DaemonResult {
	out := make([]deployment.DaemonResult, 0, len(rs))
	for _, r := range rs {
		out = append(out, deployment.DaemonResult{Daemon: r.GetDaemon(), Ok: r.GetOk(), Reason: r.GetReason()})
	}
	return out
}

func protoResults(rs []deployment.DaemonResult) []*deployv1.DaemonResult {
	var out []*deployv1.DaemonResult
	for _, r := range rs {
		out = append(out, &deployv1.DaemonResult{Daemon: r.Daemon, Ok: r.Ok, Reason: r.Reason})
	}
	return out
}

// askAll sends req to every daemon in parallel and returns their outcomes
// in the order of daemons; each is also handed to seen as it arrives.
func (l *Local) askAll(daemons []string, req *deployv1.ApplyGroup, seen func(outcome)) []outcome {
	return l.askAllWith(daemons, req, seen, l.ask)
}

// askAllWhenUp is askAll for a start-up recovery: daemons still starting
// are waited for.
func (l *Local) askAllWhenUp(daemons []string, req *deployv1.ApplyGroup, seen func(outcome)) []outcome {
	return l.askAllWith(daemons, req, seen, l.askWhenUp)
}

func (l *Local) askAllWith(daemons []string, req *deployv1.ApplyGroup, seen func(outcome), ask func(string, []byte) outcome) []outcome {
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
		go func() { ch <- indexed{i, ask(n, data)} }()
	}
	out := make([]outcome, len(daemons))
	for range daemons {
		r := <-ch
		out[r.i] = r.o
		seen(r.o)
	}
	return out
}

// askWhenUp asks like ask, but a daemon that is not running yet (the
// supervisor may start the deployagent before every consumer after a power
// cut) is asked again until it answers or the recovery wait runs out.
func (l *Local) askWhenUp(daemon string, data []byte) outcome {
	deadline := time.Now().Add(l.recoverWait)
	for {
		o := l.ask(daemon, data)
		if !o.notRunning || time.Now().After(deadline) {
			return o
		}
		select {
		case <-l.runCtx.Done():
			return o
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func (l *Local) ask(daemon string, data []byte) outcome {
	subject := subjects.DeployApply(daemon)
	ctx, cancel := context.WithTimeout(l.runCtx, l.timeout)
	defer cancel()
	m, err := l.bus.RequestWithContext(ctx, subject, data)
	switch {
	case err == nil:
	case errors.Is(err, nats.ErrNoResponders):
		return outcome{daemon: daemon, reason: "not running (nothing answers on " + subject + ")", notRunning: true}
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
	o := outcome{daemon: daemon, appliedID: res.GetAppliedDeploymentId(), appliedSHA: res.GetAppliedGroupSha256()}
	if res.GetOk() {
		o.ok = true
		return o
	}
	o.reason = oneLine(res.GetReason())
	if o.reason == "" {
		o.reason = "refused without a reason"
	}
	return o
}

func event(id string, status deployv1.DeploymentStatus, msg string, results []*deployv1.DaemonResult) *deployv1.DeployEvent {
	return &deployv1.DeployEvent{DeploymentId: id, Status: status, Message: msg, Results: results, Time: timestamppb.Now()}
}

func stageEvent(id, stage, msg string) *deployv1.DeployEvent {
	ev := event(id, inProgress, msg, nil)
	ev.Stage = stage
	return ev
}
