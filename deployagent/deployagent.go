// Package deployagent is `ggd deployagent`: it deploys group definitions.
//
// A deployment is validated, staged under DIR/deployments/, sent to every
// daemon that consumes the group (ApplyGroup over the bus, all in parallel)
// and put in force (current.json) only when every one of them acknowledged.
// When one refuses or stays silent, the daemons that may have applied it get
// the group that was in force again, and nothing changes on disk. The
// on-disk and bus contract lives in services/kit/deployment.
package deployagent

import (
	"context"
	"fmt"
	"os"
	"runtime/debug"
	"slices"
	"time"

	"github.com/evergreen-edge/evergreen/deployagent/artifact"
	deployv1 "github.com/evergreen-edge/evergreen/proto/evergreen/deploy/v1"
	"github.com/evergreen-edge/evergreen/services/kit/daemon"
	"github.com/evergreen-edge/evergreen/services/kit/subjects"
)

// Name is the daemon's name.
const Name = "deployagent"

// DefaultApplyTimeout is how long a consuming daemon has to answer an
// ApplyGroup before the deployment fails naming it.
const DefaultApplyTimeout = 10 * time.Second

// Option tunes the deployagent.
type Option func(*Config)

// WithApplyTimeout sets the per-daemon apply timeout (tests shorten it).
func WithApplyTimeout(d time.Duration) Option {
	return func(c *Config) { c.ApplyTimeout = d }
}

// WithArtifactOptions tunes the artifact fetcher (tests trust their own
// HTTPS server with artifact.WithHTTPClient).
func WithArtifactOptions(opts ...artifact.Option) Option {
	return func(c *Config) { c.ArtifactOptions = append(c.ArtifactOptions, opts...) }
}

// Spec declares the deployagent. consumers are the daemons that apply a part
// of the group (the specs marked ConsumesGroup); each is asked on
// evergreen.deploy.apply.<name>.
func Spec(consumers []string, opts ...Option) daemon.Spec {
	return daemon.Spec{
		Name:     Name,
		Requires: []string{"bus", "certmgr"},
		Bus: &daemon.BusRole{
			Publish:   []string{"evergreen.deploy.>"},
			Subscribe: []string{"evergreen.certmgr.events.>", subjects.BrokerCloudDeploy, subjects.BrokerCloudReady},
		},
		New: func() daemon.Service {
			return &service{consumers: append([]string(nil), consumers...), opts: opts}
		},
	}
}

type service struct {
	consumers []string
	opts      []Option
	local     *Local
	cloud     *cloudDeploys
}

// memoryLimit is the deployagent's soft heap limit (unless GOMEMLIMIT
// says otherwise), and gcPercent its GC pacing (unless GOGC does): a group
// at v1's limits is 2 MB of JSON but about 20 MB of live heap while it is
// parsed, validated, staged and sent, and with Go's default pacing (100)
// the heap grows to twice the live heap before a collection. At 50 it
// grows by half: the deployagent is idle between deployments, so the
// extra collections cost a few ms per deployment, not a steady tax. Past
// the limit the GC runs more often; it never fails an allocation.
const (
	memoryLimit = 64 << 20
	gcPercent   = 50
)

func (s *service) Start(ctx context.Context, env *daemon.Env) error {
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(memoryLimit)
	}
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(gcPercent)
	}
	c := Config{Root: env.Root, Bus: env.Bus, Log: env.Log, Consumers: s.consumers, CoreConfig: env.Config}
	for _, o := range s.opts {
		o(&c)
	}
	a, err := newArtifacts(env.Root, c.ArtifactOptions...)
	if err != nil {
		return fmt.Errorf("artifact store: %w", err)
	}
	c.Artifacts, c.Switch, c.Finished = a.stageRecord, a.switchRecords, a.collectRecords(env.Log)
	thing := env.Config.CoreThingName()
	cloud := thing != "" && env.Bus != nil
	if id := pendingCloudID(env.Root.DataDir(Name)); cloud && id != "" && c.Rerun == nil {
		// A cloud deployment cut short before its commit runs again from
		// its request (cloud.go), at most maxCloudRuns times in all.
		runs := cloudRuns(env.Root.DataDir(Name))
		c.Rerun = func(d string) (bool, string) {
			switch {
			case d != id:
				return false, ""
			case runs >= maxCloudRuns:
				return false, cutShortReason(runs)
			}
			return true, ""
		}
	}
	l, err := NewLocal(c)
	if err != nil {
		return err
	}
	s.local = l
	deployv1.RegisterDeployerServer(env.GRPC, NewServer(l))
	if cloud {
		brokerSock := ""
		if slices.Contains(s.consumers, "broker") {
			brokerSock = env.Root.Socket("broker")
		}
		if s.cloud, err = startCloudDeploys(l, env.Bus, thing, a.fetch, env.Root.DataDir(Name), env.Root.Socket("secrets"), brokerSock, env.Log); err != nil {
			return err
		}
	}
	return nil
}

func (s *service) Stop(ctx context.Context) error {
	if s.cloud != nil {
		s.cloud.close()
	}
	if s.local == nil {
		return nil
	}
	return s.local.Close(ctx)
}
