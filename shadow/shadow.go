// Package shadow is `ggd shadow`: the local device shadow service (v1's
// GGShadowService and GGShadowSyncManager). It keeps the classic and named
// shadows of the core and of the group's devices in badger, answers the
// AWS IoT shadow topics routed to GGShadowService, serves the Shadow gRPC
// API, and syncs the shadows of things marked SyncShadow with the cloud
// through the broker's cloud connection. See README.md.
package shadow

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/evergreen-edge/evergreen/proto/evergreen/shadow/v1"
	"github.com/evergreen-edge/evergreen/services/kit/arn"
	"github.com/evergreen-edge/evergreen/services/kit/daemon"
	"github.com/evergreen-edge/evergreen/services/kit/deployment"
	"github.com/evergreen-edge/evergreen/services/kit/groupdef"
	"github.com/evergreen-edge/evergreen/services/kit/subjects"
	"github.com/evergreen-edge/evergreen/shadow/doc"
	"github.com/evergreen-edge/evergreen/shadow/store"
	"github.com/nats-io/nats.go"
)

// Name is the daemon's name.
const Name = "shadow"

// Limits of the service besides the document limits of package doc.
const (
	// MaxInFlightPerClient is AWS IoT's limit of requests in flight per
	// connection; the 11th gets 429.
	MaxInFlightPerClient = 10
	// MaxQueued bounds the requests waiting in all shadows' queues; beyond
	// it requests get 429 until the queues drain.
	MaxQueued = 4096
	// MaxNamedShadows bounds the named shadows of one thing (deleted ones
	// included, since they keep their version numbering). When a thing is
	// at the limit, creating another drops its oldest deleted one, whose
	// numbering then restarts; with none deleted the update gets 429.
	MaxNamedShadows = 100
	// DefaultMaxStoreBytes bounds the bytes of all stored records; an
	// update that would grow the store beyond it gets 413.
	DefaultMaxStoreBytes = 64 << 20
)

// Options tune the daemon beyond config.json (tests, benchmarks).
type Options struct {
	// Now replaces time.Now (tests).
	Now func() time.Time
	// MaxStoreBytes replaces DefaultMaxStoreBytes when positive.
	MaxStoreBytes int64
}

// Spec declares the shadow daemon with default options.
func Spec() daemon.Spec { return SpecWithOptions(Options{}) }

// SpecWithOptions declares the shadow daemon with o.
func SpecWithOptions(o Options) daemon.Spec {
	return daemon.Spec{
		Name: Name,
		// After the broker: the answers leave through it.
		Requires: []string{"bus", "broker"},
		Bus: &daemon.BusRole{
			Publish: []string{"evergreen.shadow.>"},
			Subscribe: []string{
				subjects.DeployApply(Name),
				subjects.BrokerDeliverShadow,
				subjects.BrokerCloudShadow,
				subjects.BrokerCloudReady,
			},
			AllowResponses: true,
		},
		// It needs the group's things and their SyncShadow flags.
		ConsumesGroup: true,
		New:           func() daemon.Service { return New(o) },
	}
}

var _ shadowv1.ShadowClient = (*Service)(nil)

// Service is the shadow daemon and its local API.
type Service struct {
	opts Options
	env  *daemon.Env
	log  *slog.Logger
	lim  doc.Limits
	db   *store.Store

	// things is the set of thing names that have shadows here (the core
	// and the group's devices); synced those whose shadows sync.
	things atomic.Pointer[thingSet]

	eng  *engine
	sync *syncer

	subs          []*nats.Subscription
	stopFollowing func()
	stopOnce      sync.Once
}

type thingSet struct {
	all    map[string]bool
	synced map[string]bool
}

// New returns a service that does nothing until Start.
func New(o Options) *Service {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.MaxStoreBytes <= 0 {
		o.MaxStoreBytes = DefaultMaxStoreBytes
	}
	return &Service{opts: o}
}

// Start opens the store (reporting damaged entries), loads the group in
// force, follows the bus and deployments, and registers the gRPC API.
func (s *Service) Start(ctx context.Context, env *daemon.Env) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.env, s.log = env, env.Log
	s.lim = doc.DefaultLimits()
	if n := env.Config.Evergreen.Shadow.MaxStateBytes; n > 0 {
		s.lim.MaxStateBytes = n
	}
	db, rep, err := store.Open(store.Options{Dir: env.Root.DataDir(Name) + "/db", Logger: s.log.With("component", "store")})
	if err != nil {
		return fmt.Errorf("shadow store: %w", err)
	}
	for _, c := range rep.Corrupt {
		s.log.Error("shadow store: damaged data skipped", "what", c)
	}
	if rep.Quarantined != "" {
		s.log.Error("shadow store: badger could not open its directory; it was moved aside and what could be read was salvaged",
			"quarantined", rep.Quarantined, "salvaged", len(rep.Salvaged))
	}
	for _, k := range rep.Damaged {
		s.log.Error("shadow store: damaged shadow (answers as missing until updated)", "thing", k.Thing, "name", k.Name)
	}
	s.db = db
	g, id, err := deployment.LoadCurrent(env.Root)
	if err != nil {
		db.Close()
		return err
	}
	s.setGroup(g)
	s.eng, err = newEngine(s)
	if err != nil {
		db.Close()
		return err
	}
	s.sync = newSyncer(s)

	shadowv1.RegisterShadowServer(env.GRPC, &grpcServer{local: s})
	for _, x := range []struct {
		subject string
		handle  nats.MsgHandler
	}{
		{subjects.BrokerDeliverShadow, s.onDeliver},
		{subjects.BrokerCloudShadow, s.sync.onCloudMessage},
		{subjects.BrokerCloudReady, s.sync.onCloudReady},
	} {
		sub, err := env.Bus.Subscribe(x.subject, x.handle)
		if err != nil {
			s.Stop(ctx)
			return fmt.Errorf("bus subscribe %s: %w", x.subject, err)
		}
		// The router never waits for us: a backlog beyond this is
		// dropped by the bus client (and counted in its stats).
		sub.SetPendingLimits(MaxQueued, 64<<20)
		s.subs = append(s.subs, sub)
	}
	if s.stopFollowing, err = deployment.Serve(env, s.applyGroup, deployment.WithPrepare(s.prepareGroup)); err != nil {
		s.Stop(ctx)
		return err
	}
	s.sync.resyncAll("start")
	n, bytes := s.eng.count()
	s.log.Info("shadow service ready", "shadows", n, "stored_bytes", bytes,
		"things", len(s.things.Load().all), "synced_things", len(s.things.Load().synced), "deployment", id,
		"max_state_bytes", s.lim.MaxStateBytes, "damaged", len(rep.Corrupt))
	return nil
}

// Stop stops taking requests, lets the queued ones finish within ctx, and
// closes the store.
func (s *Service) Stop(ctx context.Context) error {
	var err error
	s.stopOnce.Do(func() {
		for _, sub := range s.subs {
			sub.Unsubscribe()
		}
		if s.stopFollowing != nil {
			s.stopFollowing()
		}
		if s.eng != nil {
			s.eng.stop(ctx)
		}
		if s.db != nil {
			err = s.db.Close()
		}
	})
	return err
}

// prepareGroup checks the things of a new group before the deployagent
// commits it; the things in force stay until APPLY.
func (s *Service) prepareGroup(_ context.Context, g *groupdef.Group, _ string) error {
	_, err := s.thingsOf(g)
	return err
}

// applyGroup takes the things of a new group; it refuses what
// prepareGroup refuses, and takes a rollback whatever it holds. Shadows of
// things that left the group stay stored (a device that comes back finds
// its shadow) but are not served until it does.
func (s *Service) applyGroup(_ context.Context, g *groupdef.Group, rollback bool) error {
	ts, err := s.thingsOf(g)
	if err != nil && !rollback {
		return err
	}
	if err != nil {
		s.log.Error("the group rolled back to has things whose shadows cannot be told apart; serving them as one", "err", err)
	}
	s.things.Store(ts)
	if s.sync != nil {
		s.sync.resyncAll("deployment")
	}
	return nil
}

// setGroup puts the things of the group loaded at start in force: it was
// accepted when it was deployed.
func (s *Service) setGroup(g *groupdef.Group) {
	ts, err := s.thingsOf(g)
	if err != nil {
		s.log.Error("the group in force has things whose shadows cannot be told apart; serving them as one", "err", err)
	}
	s.things.Store(ts)
}

// thingsOf is the set of things with shadows under g, and an error naming
// every two things of g that have one thing name under different ARNs
// (another account or region): a shadow is known by its thing name alone
// ($aws/things/<name>/shadow), so both would read and write one shadow,
// and a SyncShadow flag on one would sync the other's. The set is complete
// even with the error.
func (s *Service) thingsOf(g *groupdef.Group) (*thingSet, error) {
	ts := &thingSet{all: map[string]bool{}, synced: map[string]bool{}}
	if core := s.env.Config.CoreThingName(); core != "" {
		ts.all[core] = true
	}
	var errs []error
	byName := map[string]string{} // thing name -> path of the first ARN
	arnOf := map[string]string{}
	add := func(path, thingARN string, sync bool) {
		name, err := arn.ThingName(thingARN)
		if err != nil {
			return // groupdef validation reports it
		}
		if first, ok := byName[name]; ok && arnOf[name] != thingARN {
			errs = append(errs, fmt.Errorf("%s.ThingArn: thing %q has the thing name of %s (%q); their shadows would be one", path, thingARN, first, arnOf[name]))
		} else if !ok {
			byName[name], arnOf[name] = path, thingARN
		}
		ts.all[name] = true
		if sync {
			ts.synced[name] = true
		}
	}
	if g != nil && g.Core != nil {
		for i, c := range g.Core.Cores {
			add(fmt.Sprintf("Core.Cores[%d]", i), c.ThingArn, c.SyncShadow)
		}
	}
	if g != nil && g.Devices != nil {
		for i, d := range g.Devices.Devices {
			add(fmt.Sprintf("Devices[%d]", i), d.ThingArn, d.SyncShadow)
		}
	}
	return ts, errors.Join(errs...)
}

func (s *Service) known(thing string) bool  { return s.things.Load().all[thing] }
func (s *Service) synced(thing string) bool { return s.things.Load().synced[thing] }
