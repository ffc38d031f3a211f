// Package secrets is `ggd secrets`: the core's local secret store (v1's
// GGSecretManager). It keeps secret values encrypted at rest under
// DIR/data/secrets/ (package store), takes values in clear over its socket
// or sealed to the core's key (package envelope), and hands a value only to
// a function or connector the deployed group grants it
// (ResourceAccessPolicies on a SecretsManagerSecretResourceData resource),
// in the JSON shape the v1 SDKs' get_secret_value expects. See README.md.
//
// Service is the local object: it implements secretsv1.SecretsClient, so
// in-process callers and the gRPC adapter share one implementation.
package secrets

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	secretsv1 "github.com/evergreen-edge/evergreen/proto/evergreen/secrets/v1"
	"github.com/evergreen-edge/evergreen/services/kit/daemon"
	"github.com/evergreen-edge/evergreen/services/kit/deployment"
	"github.com/evergreen-edge/evergreen/services/kit/groupdef"
	"github.com/evergreen-edge/evergreen/services/kit/subjects"
	"github.com/evergreen-edge/evergreen/services/secrets/store"
)

// Name is the daemon's name.
const Name = "secrets"

// DefaultKeyCheckInterval is how often the daemon looks whether the sealing
// key file changed (one stat), to reseal the data key to a new key while it
// can still open it with the old one.
const DefaultKeyCheckInterval = time.Minute

// Options tune the daemon beyond config.json (tests).
type Options struct {
	Now func() time.Time
	// Store limits; zero means the defaults of package store.
	MaxSecrets     int
	MaxStoredBytes int64
	// KeyCheckInterval replaces DefaultKeyCheckInterval when positive.
	KeyCheckInterval time.Duration
}

// Spec declares the secrets daemon with default options.
func Spec() daemon.Spec { return SpecWithOptions(Options{}) }

// SpecWithOptions declares the secrets daemon with o.
func SpecWithOptions(o Options) daemon.Spec {
	return daemon.Spec{
		Name: Name,
		// After certmgr: the core's key, which seals the store when
		// config.json names no SecretsManager key, is certmgr's.
		Requires: []string{"bus", "certmgr"},
		Bus: &daemon.BusRole{
			Subscribe:      []string{subjects.DeployApply(Name)},
			AllowResponses: true,
		},
		// The group's secret resources say which secrets are deployed and
		// who reads them; a group naming a secret the store lacks is
		// refused.
		ConsumesGroup: true,
		New:           func() daemon.Service { return New(o) },
	}
}

var _ secretsv1.SecretsClient = (*Service)(nil)

// Service is the secrets daemon and its local API.
type Service struct {
	opts Options
	log  *slog.Logger
	keys *keySource
	db   *store.Store
	view atomic.Pointer[groupView]

	stopFollowing func()
	mu            sync.Mutex // guards keyTimer and stopped
	keyTimer      *time.Timer
	stopped       bool
}

// New returns a service that does nothing until Start.
func New(o Options) *Service {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.KeyCheckInterval <= 0 {
		o.KeyCheckInterval = DefaultKeyCheckInterval
	}
	s := &Service{opts: o}
	s.view.Store(newGroupView(nil))
	return s
}

// Start opens the store (reporting damaged slots), unseals its data key
// when the sealing key is there, loads the group in force, follows
// deployments and registers the gRPC API. A missing sealing key is not
// fatal: the store opens and lists, and puts and reads wait for the key.
func (s *Service) Start(ctx context.Context, env *daemon.Env) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.log = env.Log
	s.keys = newKeySource(env.Config, env.Root)
	db, rep, err := store.Open(store.Options{
		Dir: env.Root.DataDir(Name), Key: s.keys.Key, Now: s.opts.Now, Log: s.log,
		MaxSecrets: s.opts.MaxSecrets, MaxStoredBytes: s.opts.MaxStoredBytes,
	})
	if err != nil {
		return err
	}
	for _, d := range rep.Damaged {
		s.log.Error("secret store: damaged slot skipped; the newest good generation is used", "slot", d)
	}
	s.db = db
	if err := db.Unlock(); err != nil {
		s.log.Error("secret store: cannot unseal the data key; secrets cannot be read or put until this is fixed", "err", err)
	}
	g, id, err := deployment.LoadCurrent(env.Root)
	if err != nil {
		return err
	}
	v := newGroupView(g)
	s.view.Store(v)
	if p := v.problems(db.List()); len(p) > 0 {
		s.log.Warn("the deployed group names secrets the store lacks; their readers get 404", "problems", strings.Join(p, "; "))
	}

	secretsv1.RegisterSecretsServer(env.GRPC, &grpcServer{local: s})
	prepare := deployment.WithPrepare(func(_ context.Context, g *groupdef.Group, _ string) error { return s.checkGroup(g) })
	if s.stopFollowing, err = deployment.Serve(env, s.applyGroup, prepare); err != nil {
		return err
	}
	s.armKeyCheck()
	n, bytes := db.Usage()
	maxN, maxBytes := db.Limits()
	ki := s.keys.describe()
	s.log.Info("secret store ready", "secrets", n, "stored_bytes", bytes, "max_secrets", maxN, "max_stored_bytes", maxBytes,
		"generation", rep.Generation, "sealing_key", ki.id, "key_source", ki.source, "key_error", ki.err,
		"deployment", id, "secret_resources", len(v.resources))
	return nil
}

// Stop stops following deployments and the key check.
func (s *Service) Stop(context.Context) error {
	s.mu.Lock()
	s.stopped = true
	if s.keyTimer != nil {
		s.keyTimer.Stop()
	}
	s.mu.Unlock()
	if s.stopFollowing != nil {
		s.stopFollowing()
	}
	return nil
}

func (s *Service) armKeyCheck() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return
	}
	s.keyTimer = time.AfterFunc(s.opts.KeyCheckInterval, func() {
		s.checkKey()
		s.armKeyCheck()
	})
}

// checkKey reseals the data key when the sealing key file has changed.
func (s *Service) checkKey() {
	if _, err := s.db.CheckKey(); err != nil {
		s.log.Warn("sealing key check", "err", err)
	}
}

// applyGroup takes a new group. It refuses one that names a secret the
// store lacks, or a staging label no stored version has (v1 failed such a
// deployment when it could not download the secret); a rollback or a
// reset is always accepted.
func (s *Service) applyGroup(_ context.Context, g *groupdef.Group, rollback bool) error {
	if !rollback {
		if err := s.checkGroup(g); err != nil {
			return err
		}
	}
	s.view.Store(newGroupView(g))
	return nil
}

// checkGroup says what the store lacks for g (nil g: a reset, nothing).
func (s *Service) checkGroup(g *groupdef.Group) error {
	if p := newGroupView(g).problems(s.db.List()); len(p) > 0 {
		return errors.New(strings.Join(p, "; "))
	}
	return nil
}
