// Package agent is `ggd ota`: over-the-air updates of the core software
// itself (docs/ota.md). It verifies a signed bundle before touching
// anything, extracts it beside the running version under DIR/ota/versions,
// switches DIR/ota/current and asks the supervisor to restart the core;
// in the new version it commits the update once every daemon is healthy
// within runtime.postStartHealthCheckTimeout, or rolls back to the previous
// version and marks the new one broken. Jobs come from `ggctl ota apply`
// (gRPC on DIR/run/ota.sock) and from the cloud (services/kit/cloudota).
//
// Agent is the local object; the gRPC adapter (server.go) forwards to it.
package agent

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/evergreen-edge/evergreen/ota/bundle"
	"github.com/evergreen-edge/evergreen/ota/install"
	otav1 "github.com/evergreen-edge/evergreen/proto/evergreen/ota/v1"
	"github.com/evergreen-edge/evergreen/services/kit/buildinfo"
	"github.com/evergreen-edge/evergreen/services/kit/daemon"
	"github.com/evergreen-edge/evergreen/services/kit/deployment/failpoint"
	"github.com/evergreen-edge/evergreen/services/kit/subjects"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// Name is the daemon's name.
const Name = "ota"

// Options tune the agent beyond config.json (tests).
type Options struct {
	// HTTPClient fetches https bundles and signatures; nil is a client
	// with the system's roots ($SSL_CERT_FILE) and proxy settings.
	HTTPClient *http.Client
	// Restarter replaces the supervisor's RequestRestart.
	Restarter Restarter
	// Executable is the running ggd (default os.Executable, resolved).
	Executable string
	// Version is the running version (default buildinfo.Version).
	Version string
	// HealthPoll spaces the health check's looks (default 200 ms).
	HealthPoll time.Duration
	// Now replaces time.Now.
	Now func() time.Time
}

// Spec declares the ota daemon with default options.
func Spec() daemon.Spec { return SpecWithOptions(Options{}) }

// SpecWithOptions declares the ota daemon with o.
func SpecWithOptions(o Options) daemon.Spec {
	return daemon.Spec{
		Name: Name,
		// The broker carries the cloud's jobs and our statuses; a status
		// published before it listens would be lost.
		Requires: []string{"bus", "broker"},
		Bus: &daemon.BusRole{
			Publish:   []string{"evergreen.ota.>"},
			Subscribe: []string{subjects.BrokerCloudOTA},
		},
		New: func() daemon.Service { return New(o) },
	}
}

// Agent is the ota daemon and its local API.
type Agent struct {
	o       Options
	env     *daemon.Env
	log     *slog.Logger
	l       install.Layout
	trusted []ed25519.PublicKey
	// keyProblem says why no update can be verified ("" when keys are in).
	keyProblem string
	restarter  Restarter

	// busy is held by the one job that runs.
	busy sync.Mutex

	mu sync.Mutex
	// job is the job in flight in this process (nil when none).
	job *otav1.Job
	// rejected is the last refusal: refusals change nothing on disk, so
	// they are remembered here for GetStatus.
	rejected *install.Outcome

	cloud  *cloudJobs
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// New returns an agent to be started by the kit.
func New(o Options) *Agent {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.HealthPoll <= 0 {
		o.HealthPoll = 200 * time.Millisecond
	}
	if o.Version == "" {
		o.Version = buildinfo.Version
	}
	if o.HTTPClient == nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.ResponseHeaderTimeout = readTimeout
		o.HTTPClient = &http.Client{Transport: t}
	}
	return &Agent{o: o}
}

// Start loads the keys, settles the state and, when this process runs a
// version not yet committed, starts its health check.
func (a *Agent) Start(ctx context.Context, env *daemon.Env) error {
	a.env, a.log = env, env.Log
	a.l = install.New(env.Root.Dir())
	a.ctx, a.cancel = context.WithCancel(context.Background())
	if a.o.Executable == "" {
		exe, err := os.Executable()
		if err != nil {
			return err
		}
		if r, err := filepath.EvalSymlinks(exe); err == nil {
			exe = r
		}
		a.o.Executable = exe
	}
	a.restarter = a.o.Restarter
	if a.restarter == nil {
		a.restarter = defaultRestarter(env.Root)
	}
	for i, k := range env.Config.Evergreen.OTA.TrustedKeys {
		pub, err := bundle.ParsePublicKey(k)
		if err != nil {
			a.keyProblem = fmt.Sprintf("evergreen.ota.trustedKeys[%d]: %v", i, err)
			a.log.Error("trusted key unusable: every update is refused until it is fixed", "err", a.keyProblem)
			a.trusted = nil
			break
		}
		a.trusted = append(a.trusted, pub)
	}
	if a.keyProblem == "" && len(a.trusted) == 0 {
		a.keyProblem = "no key is trusted (evergreen.ota.trustedKeys is empty): every update is refused"
	}
	otav1.RegisterOTAServer(env.GRPC, &server{a: a})

	var pending *install.Pending
	if a.l.Exists() {
		s, err := a.l.LoadState()
		if err != nil {
			a.log.Error("state.json unreadable; updates are refused until it is fixed or removed", "err", err)
		} else {
			pending = s.Pending
			if pending == nil {
				a.collect(s)
			}
		}
	}
	thing := env.Config.CoreThingName()
	resume := a.pickUpJob(thing != "" && env.Bus != nil)
	if thing != "" && env.Bus != nil {
		c, err := startCloudJobs(a, thing, resume)
		if err != nil {
			return err
		}
		a.cloud = c
	}
	if pending != nil && !pending.RollingBack {
		if a.runs(pending) {
			a.wg.Add(1)
			go func() {
				defer a.wg.Done()
				a.checkHealth(*pending)
			}()
		} else {
			a.log.Warn("an update is pending, but this process does not run it (started without the OTA launcher?)",
				"pending", pending.Version, "dir", pending.Dir, "executable", a.o.Executable)
		}
	}
	return nil
}

// Stop ends the health check and the cloud jobs.
func (a *Agent) Stop(ctx context.Context) error {
	if a.cancel != nil {
		a.cancel()
	}
	if a.cloud != nil {
		a.cloud.close()
	}
	done := make(chan struct{})
	go func() { a.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
	}
	return nil
}

// runs says whether this process's binary is the pending version's.
func (a *Agent) runs(p *install.Pending) bool {
	return filepath.Dir(a.o.Executable) == a.l.VersionDir(p.Dir)
}

// hit is a failpoint (test builds only).
func (a *Agent) hit(point string) { failpoint.Hit(a.env.Root.RunDir(), point) }

// Status is GetStatus's answer.
func (a *Agent) Status() *otav1.Status {
	st := &otav1.Status{RunningVersion: a.o.Version}
	if a.l.Exists() {
		if d, err := a.l.ReadLink(install.CurrentLink); err == nil && d != "" {
			st.CurrentVersion = a.versionOf(d)
		}
		if d, err := a.l.ReadLink(install.PreviousLink); err == nil && d != "" {
			st.PreviousVersion = a.versionOf(d)
		}
		st.Installed, _ = a.l.Installed()
		if s, err := a.l.LoadState(); err == nil {
			if c := s.Committed; c != nil {
				st.CommittedVersion = c.Version
			}
			if p := s.Pending; p != nil {
				st.Pending = &otav1.Pending{Version: p.Version, LaunchAttempts: uint32(p.Attempts), JobId: p.JobID,
					RollingBack: p.RollingBack, Reason: p.Reason, PreviousVersion: p.PreviousVersion}
				if !p.SwitchedAt.IsZero() {
					st.Pending.SwitchedAt = timestamppb.New(p.SwitchedAt)
				}
			}
			for _, b := range s.Broken {
				st.Broken = append(st.Broken, &otav1.BrokenVersion{Version: b.Version, Reason: b.Reason, MarkedAt: timestamppb.New(b.At)})
			}
			if s.Last != nil {
				st.LastOutcome = outcomeProto(s.Last)
			}
		}
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.rejected != nil && (st.LastOutcome == nil || a.rejected.FinishedAt.After(st.LastOutcome.GetFinishedAt().AsTime())) {
		st.LastOutcome = outcomeProto(a.rejected)
	}
	if a.job != nil {
		st.Job = cloneJob(a.job)
	}
	return st
}

// versionOf is the version installed in versions/<dir> (its manifest's),
// or dir itself when the manifest is unreadable.
func (a *Agent) versionOf(dir string) string {
	if v := manifestVersion(a.l.VersionDir(dir)); v != "" {
		return v
	}
	return dir
}

func outcomeProto(o *install.Outcome) *otav1.Outcome {
	out := &otav1.Outcome{JobId: o.JobID, Source: o.Source, Version: o.Version, FromVersion: o.FromVersion,
		Status: statusProto(o.Status), Reason: o.Reason, FinishedAt: timestamppb.New(o.FinishedAt)}
	if !o.StartedAt.IsZero() {
		out.StartedAt = timestamppb.New(o.StartedAt)
	}
	return out
}

func statusProto(s string) otav1.JobStatus {
	switch s {
	case install.Success:
		return otav1.JobStatus_JOB_STATUS_SUCCESS
	case install.Failure:
		return otav1.JobStatus_JOB_STATUS_FAILURE
	case install.Rejected:
		return otav1.JobStatus_JOB_STATUS_REJECTED
	}
	return otav1.JobStatus_JOB_STATUS_UNSPECIFIED
}

// StatusName is the cloud's name of a job status ("Downloading").
func StatusName(s otav1.JobStatus) string {
	name := strings.TrimPrefix(s.String(), "JOB_STATUS_")
	var b strings.Builder
	for _, w := range strings.Split(name, "_") {
		if w == "" {
			continue
		}
		b.WriteString(w[:1] + strings.ToLower(w[1:]))
	}
	return b.String()
}

func cloneJob(j *otav1.Job) *otav1.Job { return proto.Clone(j).(*otav1.Job) }

// collect removes the versions neither link names and leftovers of
// interrupted installs: disk stays bounded to two versions (three during
// an update).
func (a *Agent) collect(s *install.State) {
	a.l.RemoveLeftovers()
	keep := map[string]bool{}
	for _, n := range []string{install.CurrentLink, install.PreviousLink} {
		if d, err := a.l.ReadLink(n); err == nil && d != "" {
			keep[d] = true
		}
	}
	if s.Pending != nil {
		keep[s.Pending.Dir], keep[s.Pending.PreviousDir] = true, true
	}
	if len(keep) == 0 {
		return
	}
	dirs, _ := a.l.Installed()
	for _, d := range dirs {
		if !keep[d] {
			if err := os.RemoveAll(a.l.VersionDir(d)); err != nil {
				a.log.Warn("remove an old version", "dir", d, "err", err)
			} else {
				a.log.Info("old version removed", "dir", d)
			}
		}
	}
}

// errBusy refuses a second job.
var errBusy = errors.New("another update runs")
