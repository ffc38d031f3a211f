package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/evergreen-edge/evergreen/ota/install"
	brokerv1 "github.com/evergreen-edge/evergreen/proto/evergreen/broker/v1"
	otav1 "github.com/evergreen-edge/evergreen/proto/evergreen/ota/v1"
	"github.com/evergreen-edge/evergreen/services/kit/cloudota"
	"github.com/evergreen-edge/evergreen/services/kit/errdefs"
	"github.com/evergreen-edge/evergreen/services/kit/subjects"
	"github.com/nats-io/nats.go"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// Cloud jobs (docs/cloud.md, services/kit/cloudota): the broker hands over
// what the cloud publishes on the core's update request topic; each job
// runs as `ggctl ota apply URL` would, one at a time, and its status goes
// back on the status topic through the broker's spooler. The job in flight
// across the restart is in state.json (pending, then the last outcome with
// a reported flag): the new version reports InProgress and then Success or
// Failure; after a rollback the previous version reports the Failure.

// cloudQueue bounds the jobs waiting behind the one running; more are
// refused.
const cloudQueue = 4

const cloudInProgress = cloudota.InProgress

type cloudJobs struct {
	a     *Agent
	thing string
	log   *slog.Logger
	queue chan []byte
	sub   *nats.Subscription
	wg    sync.WaitGroup
	// resume is the job a restart cut (pickUpJob), run before any request.
	resume *install.Job
}

func startCloudJobs(a *Agent, thing string, resume *install.Job) (*cloudJobs, error) {
	c := &cloudJobs{a: a, thing: thing, log: a.log.With("component", "cloud"), queue: make(chan []byte, cloudQueue), resume: resume}
	sub, err := a.env.Bus.Subscribe(subjects.BrokerCloudOTA, c.onRequest)
	if err != nil {
		return nil, fmt.Errorf("subscribe %s: %w", subjects.BrokerCloudOTA, err)
	}
	c.sub = sub
	// The server must hold the subscription before the daemon reports
	// ready, or a request sent right after start finds no one.
	if err := a.env.Bus.Flush(); err != nil {
		c.log.Warn("bus flush after subscribe", "err", err)
	}
	// The outcome of a job that ended before a restart (a rollback by the
	// launcher or by the new version) still has to reach the cloud.
	if a.l.Exists() {
		if unlock, err := a.l.Lock(); err == nil {
			if s, err := a.l.LoadState(); err == nil && s.Pending == nil {
				c.a.reportLastWith(c, s)
			}
			unlock()
		}
	}
	c.wg.Add(1)
	go c.loop()
	return c, nil
}

func (c *cloudJobs) close() {
	c.sub.Unsubscribe()
	c.wg.Wait()
}

func (c *cloudJobs) onRequest(m *nats.Msg) {
	rm := &brokerv1.RoutedMessage{}
	if err := proto.Unmarshal(m.Data, rm); err != nil {
		c.log.Warn("malformed RoutedMessage from the broker", "err", err)
		return
	}
	select {
	case c.queue <- rm.GetPayload():
	default:
		id := cloudota.JobID(rm.GetPayload())
		c.log.Warn("update job refused: too many waiting", "job", id)
		c.publish(cloudota.Status{JobID: id, Status: cloudota.Rejected, Reason: fmt.Sprintf("the core is busy: %d update jobs wait already", cloudQueue)})
	}
}

func (c *cloudJobs) loop() {
	defer c.wg.Done()
	if j := c.resume; j != nil {
		c.resume = nil
		r := &cloudota.Request{JobID: j.JobID, URL: j.Bundle, SHA256: j.SHA256, Size: j.Size, Signature: j.Signature,
			TargetVersion: j.TargetVersion, Force: j.Force}
		c.runJob(r, j)
	}
	for {
		select {
		case <-c.a.ctx.Done():
			return
		case b := <-c.queue:
			c.handle(b)
		}
	}
}

func (c *cloudJobs) handle(raw []byte) {
	r, err := cloudota.ParseRequest(raw)
	if err != nil {
		id := cloudota.JobID(raw)
		c.log.Warn("update job refused", "job", id, "err", err)
		c.publish(cloudota.Status{JobID: id, Status: cloudota.Rejected, Reason: reason(err)})
		return
	}
	// Seen before: a redelivery, or the job that brought this version.
	if s, err := c.a.state(); err == nil {
		if p := s.Pending; p != nil && p.JobID == r.JobID {
			c.publish(cloudota.Status{JobID: r.JobID, Status: cloudota.InProgress, Version: p.Version, Reason: "installed; health check running"})
			return
		}
		if l := s.Last; l != nil && l.JobID == r.JobID {
			c.publish(cloudota.Status{JobID: r.JobID, Status: l.Status, Version: l.Version, Reason: l.Reason})
			return
		}
	}
	c.runJob(r, nil)
}

// runJob runs a cloud job: a new one, or one a restart cut (resumed, its
// record). A resumed job that cannot proceed ends as a Failure.
func (c *cloudJobs) runJob(r *cloudota.Request, resumed *install.Job) {
	first := cloudota.Status{JobID: r.JobID, Status: cloudota.InProgress, Version: r.TargetVersion}
	spec := jobSpec{id: r.JobID, source: install.SourceCloud, target: r.TargetVersion}
	if resumed != nil {
		first.Reason = fmt.Sprintf("resumed after a restart of the core (%d)", resumed.Resumes)
		spec.started, spec.resumes = resumed.StartedAt, resumed.Resumes
	}
	c.publish(first)
	lastPct := -1
	send := func(ev *otav1.ApplyEvent) {
		st := cloudota.Status{JobID: r.JobID, Status: StatusName(ev.GetStatus()), Version: ev.GetVersion()}
		if st.Version == "" {
			st.Version = r.TargetVersion
		}
		if ev.GetStatus() == otav1.JobStatus_JOB_STATUS_DOWNLOADING {
			pct := 0
			if ev.GetBytesTotal() > 0 {
				pct = int(ev.GetBytesDone() * 100 / ev.GetBytesTotal())
			}
			// One report per 10 percent is plenty over a metered link.
			if pct/10 == lastPct/10 && pct != 100 && lastPct >= 0 {
				return
			}
			lastPct, st.Progress = pct, pct
		}
		c.publish(st)
	}
	spec.req = &otav1.ApplyRequest{Source: r.URL, Sha256: r.SHA256, Size: r.Size, Signature: r.Signature, Force: r.Force, JobId: r.JobID}
	err := c.a.run(c.a.ctx, spec, send)
	var ref *refusal
	switch {
	case err == nil:
		// Restarting: the new version reports the outcome.
	case c.a.ctx.Err() != nil:
		// Stopping: the job's record stays, the next start resumes it.
	case errors.As(err, &ref) && resumed == nil:
		c.publish(cloudota.Status{JobID: r.JobID, Status: cloudota.Rejected, Version: r.TargetVersion, Reason: reason(err)})
	default:
		c.publish(cloudota.Status{JobID: r.JobID, Status: cloudota.Failure, Version: r.TargetVersion, Reason: reason(err)})
	}
}

// publish sends a status to the cloud (through the broker's spooler).
func (c *cloudJobs) publish(st cloudota.Status) {
	st.Timestamp = time.Now().UnixMilli()
	b, _ := json.Marshal(st)
	m, _ := proto.Marshal(&brokerv1.RoutedMessage{Topic: cloudota.StatusTopic(c.thing), Payload: b, Qos: 1, Time: timestamppb.Now()})
	if err := c.a.env.Bus.Publish(subjects.OTACloud, m); err != nil {
		c.log.Warn("publish an update status", "job", st.JobID, "status", st.Status, "err", err)
	}
}

// publishCloud reports a status of a cloud job (nothing for local ones).
func (a *Agent) publishCloud(source, jobID, st, version, why string, progress int) {
	if source != install.SourceCloud || a.cloud == nil {
		return
	}
	a.cloud.publish(cloudota.Status{JobID: jobID, Status: st, Version: version, Reason: why, Progress: progress})
}

// reportLast reports the last outcome of a cloud job once.
func (a *Agent) reportLast(s *install.State) {
	if a.cloud != nil {
		a.reportLastWith(a.cloud, s)
	}
}

func (a *Agent) reportLastWith(c *cloudJobs, s *install.State) {
	l := s.Last
	if l == nil || l.Source != install.SourceCloud || l.Reported {
		return
	}
	c.publish(cloudota.Status{JobID: l.JobID, Status: l.Status, Version: l.Version, Reason: l.Reason})
	l.Reported = true
	if err := a.l.SaveState(s); err != nil {
		a.log.Warn("record the report of the last outcome", "err", err)
	}
}

// reason is an error's text without the code's word at its end.
func reason(err error) string {
	return status.Convert(errdefs.ToGRPC(err)).Message()
}
