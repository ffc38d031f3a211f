// Package bus is `ggd bus`: the suite's embedded NATS server. Every daemon
// connects with its own user (credentials generated under DIR/run/bus, mode
// 0600) and may publish and subscribe only to the subjects its role names;
// the server, not the clients, enforces that.
package bus

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"sort"
	"strconv"
	"time"

	"github.com/evergreen-edge/evergreen/services/kit/atomicfile"
	"github.com/evergreen-edge/evergreen/services/kit/busconn"
	"github.com/evergreen-edge/evergreen/services/kit/daemon"
	"github.com/evergreen-edge/evergreen/services/kit/layout"
	"github.com/nats-io/nats-server/v2/server"
)

// Name is the bus daemon's name.
const Name = "bus"

// MaxPayload bounds one bus message. Device messages are at most 128 KB
// (v1); group definitions travel whole, so allow 8 MiB.
const MaxPayload = 8 << 20

// EnsureCredentials writes DIR/run/bus/<user>.creds for every user that has
// none yet. Existing files are kept so running daemons stay valid.
func EnsureCredentials(root layout.Root, users []string) error {
	for _, u := range users {
		path := root.BusCreds(u)
		if _, err := busconn.ReadCreds(path); err == nil {
			continue
		} else if !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		secret := make([]byte, 24)
		if _, err := rand.Read(secret); err != nil {
			return err
		}
		b, _ := json.Marshal(busconn.Creds{User: u, Password: hex.EncodeToString(secret)})
		if err := atomicfile.WriteFile(path, b, 0o600); err != nil {
			return err
		}
	}
	return nil
}

// Permissions turns a daemon's role into the server's permission set. Every
// user may also subscribe to its own reply inbox.
func Permissions(user string, r *daemon.BusRole) *server.Permissions {
	sub := append([]string{busconn.InboxPrefix(user) + ".>"}, r.Subscribe...)
	p := &server.Permissions{
		Publish:   &server.SubjectPermission{Allow: append([]string(nil), r.Publish...)},
		Subscribe: &server.SubjectPermission{Allow: sub},
	}
	if len(p.Publish.Allow) == 0 {
		// An empty allow list means "everything" to nats-server; deny all.
		p.Publish = &server.SubjectPermission{Deny: []string{">"}}
	}
	if r.AllowResponses {
		p.Response = &server.ResponsePermission{MaxMsgs: 1, Expires: time.Minute}
	}
	return p
}

// Spec returns the bus daemon for the given roles (daemon name -> role).
func Spec(roles map[string]*daemon.BusRole) daemon.Spec {
	return daemon.Spec{Name: Name, New: func() daemon.Service { return &service{roles: roles} }}
}

type service struct {
	roles map[string]*daemon.BusRole
	ns    *server.Server
}

// Server exposes the running NATS server (tests).
func (s *service) Server() *server.Server { return s.ns }

func (s *service) Start(ctx context.Context, env *daemon.Env) error {
	names := make([]string, 0, len(s.roles))
	for n := range s.roles {
		names = append(names, n)
	}
	sort.Strings(names)
	if err := EnsureCredentials(env.Root, names); err != nil {
		return err
	}
	var users []*server.User
	for _, n := range names {
		c, err := busconn.ReadCreds(env.Root.BusCreds(n))
		if err != nil {
			return err
		}
		users = append(users, &server.User{Username: c.User, Password: c.Password, Permissions: Permissions(n, s.roles[n])})
	}
	host, portStr, err := net.SplitHostPort(env.Endpoints.Bus)
	if err != nil {
		return fmt.Errorf("bus address %q: %w", env.Endpoints.Bus, err)
	}
	port, _ := strconv.Atoi(portStr)
	opts := &server.Options{
		ServerName: "evergreen-bus",
		Host:       host,
		Port:       port,
		Users:      users,
		NoSigs:     true,
		NoLog:      true,
		MaxPayload: MaxPayload,
		// Bound what one slow consumer can hold in the server's memory.
		MaxPending:      64 << 20,
		WriteDeadline:   5 * time.Second,
		HTTPPort:        0,
		NoSystemAccount: true,
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		return fmt.Errorf("bus: %w", err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		ns.Shutdown()
		return fmt.Errorf("bus: not ready to accept connections on %s", env.Endpoints.Bus)
	}
	s.ns = ns
	env.Log.Info("bus listening", "addr", env.Endpoints.Bus, "users", len(users))
	return nil
}

func (s *service) Stop(ctx context.Context) error {
	if s.ns == nil {
		return nil
	}
	s.ns.Shutdown()
	done := make(chan struct{})
	go func() { s.ns.WaitForShutdown(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
