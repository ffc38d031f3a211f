package agent

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/evergreen-edge/evergreen/ota/install"
)

// checkHealth is the new version's commit: once every daemon is healthy
// within runtime.postStartHealthCheckTimeout of the launch, the update is
// committed; otherwise it is rolled back and the core restarted into the
// previous version. The clock starts at the launch the launcher recorded,
// so a restarted ota daemon does not get a fresh timeout.
func (a *Agent) checkHealth(p install.Pending) {
	timeout := time.Duration(a.env.Config.Runtime.PostStartHealthCheckTimeout) * time.Millisecond
	start := p.LaunchedAt
	if start.IsZero() {
		start = a.o.Now()
	}
	deadline := start.Add(timeout)
	log := a.log.With("version", p.Version, "job", p.JobID)
	log.Info("health check of the new version", "timeout", timeout, "launch", p.Attempts)
	a.publishCloud(p.Source, p.JobID, cloudInProgress, p.Version, fmt.Sprintf("running %s; health check within %v", p.Version, timeout), 0)
	var last []daemonHealth
	for {
		ctx, cancel := context.WithTimeout(a.ctx, 2*time.Second)
		ds, err := a.listDaemons(ctx)
		cancel()
		if err == nil {
			last = ds
			if allHealthy(ds) {
				a.commit(p, a.o.Now().Sub(start))
				return
			}
		}
		if !a.o.Now().Before(deadline) {
			break
		}
		select {
		case <-a.ctx.Done():
			return
		case <-time.After(a.o.HealthPoll):
		}
	}
	reason := fmt.Sprintf("health check failed: not every daemon healthy within runtime.postStartHealthCheckTimeout (%v): %s", timeout, unhealthy(last))
	log.Error("rolling back", "reason", reason, "to", p.PreviousVersion)
	a.rollBack(p, reason)
}

func allHealthy(ds []daemonHealth) bool {
	for _, d := range ds {
		if !d.healthy {
			return false
		}
	}
	return len(ds) > 0
}

// unhealthy names the daemons that are not healthy, with what the
// supervisor says of them.
func unhealthy(ds []daemonHealth) string {
	if len(ds) == 0 {
		return "the supervisor did not answer"
	}
	var out []string
	for _, d := range ds {
		if d.healthy {
			continue
		}
		s := d.name + " (" + strings.TrimPrefix(d.state, "DAEMON_STATE_")
		if d.lastError != "" {
			s += ", " + d.lastError
		}
		out = append(out, s+")")
	}
	sort.Strings(out)
	return strings.Join(out, ", ")
}

// commit records the update as committed.
func (a *Agent) commit(p install.Pending, took time.Duration) {
	a.hit(install.FPBeforeCommit)
	unlock, err := a.l.Lock()
	if err != nil {
		a.log.Error("commit", "err", err)
		return
	}
	defer unlock()
	s, err := a.l.LoadState()
	if err != nil || s.Pending == nil || s.Pending.Dir != p.Dir {
		a.log.Error("commit: the state changed under the health check", "err", err)
		return
	}
	now := a.o.Now()
	reason := fmt.Sprintf("every daemon healthy %v after the launch", took.Round(time.Millisecond))
	s.Committed = &install.Installed{Version: p.Version, Dir: p.Dir, At: now}
	s.Unbreak(p.Version)
	s.Last = &install.Outcome{JobID: p.JobID, Source: p.Source, Version: p.Version, FromVersion: p.PreviousVersion,
		Status: install.Success, Reason: reason, StartedAt: p.StartedAt, FinishedAt: now}
	s.Pending = nil
	if err := a.l.SaveState(s); err != nil {
		a.log.Error("commit", "err", err)
		return
	}
	a.hit(install.FPCommitted)
	a.log.Info("update committed", "version", p.Version, "previous", p.PreviousVersion, "job", p.JobID, "healthy_after", took.Round(time.Millisecond))
	a.reportLast(s)
	a.collect(s)
	if err := removeDownloads(a.l); err != nil {
		a.log.Warn("clear downloads", "err", err)
	}
}

// rollBack restores the previous version and restarts the core into it.
func (a *Agent) rollBack(p install.Pending, reason string) {
	unlock, err := a.l.Lock()
	if err != nil {
		a.log.Error("rollback", "err", err)
		return
	}
	s, err := a.l.LoadState()
	if err != nil || s.Pending == nil || s.Pending.Dir != p.Dir {
		unlock()
		a.log.Error("rollback: the state changed under the health check", "err", err)
		return
	}
	err = a.l.RollBack(s, reason, a.o.Now(), a.hit)
	unlock()
	if err != nil {
		a.log.Error("rollback", "err", err)
		return
	}
	a.log.Warn("update rolled back; restarting into the previous version", "version", p.Version, "previous", p.PreviousVersion)
	if err := a.restarter.Restart(context.Background(), "rollback of "+p.Version+" to "+p.PreviousVersion); err != nil {
		a.log.Error("restart into the previous version failed: the next start of ggd runs it", "err", err)
	}
}
