package agent

import (
	"fmt"

	"github.com/evergreen-edge/evergreen/ota/install"
)

// Jobs across a restart of the core (kill -9, power cut, a clean stop)
// before their install: DIR/ota/job.json holds the job from the moment
// its signature is checked until it is refused, fails or is installed
// (then state.json's pending carries it). At the next start the ota
// daemon picks a cloud job up again, ahead of any new request: it runs
// from the top (the signature is checked against the keys trusted now,
// the download resumes with a Range request) and reports its statuses
// again; one that can no longer proceed ends as a Failure with the
// reason. A local job (ggctl ota apply) belongs to the ggctl call that
// asked for it: it is not run again but recorded as a Failure
// "interrupted by a restart", which `ggctl ota status` shows.

// interruptedLocal is the outcome of a local job cut by a restart.
const interruptedLocal = "interrupted by a restart of the core; run ggctl ota apply again (a download resumes where it stopped)"

// dropJob forgets the record of job id (it ended) and tidies DIR/ota.
func (a *Agent) dropJob(id string) {
	if j, err := a.l.LoadJob(); err != nil || (j != nil && j.JobID == id) {
		if err := a.l.RemoveJob(); err != nil {
			a.log.Warn("forget the job record", "job", id, "err", err)
		}
	}
	a.tidyDownloads()
}

// pickUpJob settles the job record a restart left, at start: it returns
// the cloud job to resume (nil when none), and records the others'
// outcomes (reported to the cloud by startCloudJobs).
func (a *Agent) pickUpJob(cloud bool) *install.Job {
	if !a.l.Exists() {
		return nil
	}
	j, err := a.l.LoadJob()
	if err != nil {
		a.log.Error("job record unreadable: dropped", "err", err)
		a.l.RemoveJob()
		return nil
	}
	if j == nil {
		return nil
	}
	unlock, err := a.l.Lock()
	if err != nil {
		a.log.Error("settle the interrupted job", "job", j.JobID, "err", err)
		return nil
	}
	defer unlock()
	s, err := a.l.LoadState()
	if err != nil {
		a.log.Error("settle the interrupted job: state.json unreadable", "job", j.JobID, "err", err)
		return nil
	}
	if (s.Pending != nil && s.Pending.JobID == j.JobID) || (s.Last != nil && s.Last.JobID == j.JobID) {
		// Installed (or settled) before the record was removed.
		a.l.RemoveJob()
		return nil
	}
	var why string
	switch {
	case j.Source != install.SourceCloud:
		why = interruptedLocal
	case j.Resumes >= install.MaxResumes:
		why = fmt.Sprintf("interrupted by %d restarts of the core in a row: not resumed again", j.Resumes+1)
	case !cloud:
		why = "interrupted by a restart of the core, which has no cloud connection configured any more: not resumed"
	default:
		j.Resumes++
		if err := a.l.SaveJob(j); err != nil {
			a.log.Error("count the resume of the job", "job", j.JobID, "err", err)
		}
		a.log.Info("update job interrupted by a restart: resumed", "job", j.JobID, "resumes", j.Resumes)
		return j
	}
	a.log.Warn("update job interrupted by a restart", "job", j.JobID, "source", j.Source, "reason", why)
	s.Last = &install.Outcome{JobID: j.JobID, Source: j.Source, Version: j.TargetVersion, Status: install.Failure,
		Reason: why, StartedAt: j.StartedAt, FinishedAt: a.o.Now()}
	if err := a.l.SaveState(s); err != nil {
		a.log.Error("record the interrupted job", "job", j.JobID, "err", err)
		return nil
	}
	if err := a.l.RemoveJob(); err != nil {
		a.log.Warn("forget the job record", "job", j.JobID, "err", err)
	}
	return nil
}
