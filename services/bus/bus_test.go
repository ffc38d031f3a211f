package bus_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/evergreen-edge/evergreen/services/bus"
	"github.com/evergreen-edge/evergreen/services/kit/busconn"
	"github.com/evergreen-edge/evergreen/services/kit/config"
	"github.com/evergreen-edge/evergreen/services/kit/daemon"
	"github.com/evergreen-edge/evergreen/services/kit/endpoints"
	"github.com/evergreen-edge/evergreen/services/kit/layout"
	"github.com/nats-io/nats.go"
)

var roles = map[string]*daemon.BusRole{
	"certmgr":     {Publish: []string{"evergreen.certmgr.>"}, Subscribe: []string{"evergreen.deploy.apply.certmgr"}, AllowResponses: true},
	"deployagent": {Publish: []string{"evergreen.deploy.>"}, Subscribe: []string{"evergreen.certmgr.events.>"}},
}

func startBus(t *testing.T) (layout.Root, string) {
	t.Helper()
	root := layout.Root(t.TempDir())
	cfg := config.Default()
	cfg.Evergreen.Listen = config.Listen{MQTT: "127.0.0.1:0", IPC: "127.0.0.1:0", Streams: "127.0.0.1:0", Bus: "127.0.0.1:0", HTTP: "127.0.0.1:0"}
	r, err := daemon.Start(context.Background(), bus.Spec(roles), daemon.Options{Root: root.Dir(), Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Shutdown(context.Background()) })
	return root, "nats://" + endpoints.Dialable(r.Env.Endpoints.Bus)
}

// permissionErrors collects the asynchronous permission violations the
// server reports to a connection.
type permissionErrors struct {
	mu   sync.Mutex
	errs []error
}

func (p *permissionErrors) handler(_ *nats.Conn, _ *nats.Subscription, err error) {
	p.mu.Lock()
	p.errs = append(p.errs, err)
	p.mu.Unlock()
}

func (p *permissionErrors) has(substr string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, e := range p.errs {
		if strings.Contains(e.Error(), substr) {
			return true
		}
	}
	return false
}

func connectAs(t *testing.T, root layout.Root, url, user string, pe *permissionErrors) *nats.Conn {
	t.Helper()
	c, err := busconn.ReadCreds(root.BusCreds(user))
	if err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(url, nats.UserInfo(c.User, c.Password), nats.CustomInboxPrefix(busconn.InboxPrefix(user)), nats.ErrorHandler(pe.handler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

func TestCredentialsAreOwnerOnly(t *testing.T) {
	root, _ := startBus(t)
	for u := range roles {
		c, err := busconn.ReadCreds(root.BusCreds(u))
		if err != nil {
			t.Fatal(err)
		}
		if len(c.Password) < 32 {
			t.Fatalf("%s: password too short", u)
		}
	}
	// A wrong password is refused by the real server.
	_, url := startBus(t)
	if _, err := nats.Connect(url, nats.UserInfo("certmgr", "wrong")); err == nil || !errors.Is(err, nats.ErrAuthorization) {
		t.Fatalf("wrong password: %v", err)
	}
}

func TestPermissionsEnforcedByServer(t *testing.T) {
	root, url := startBus(t)
	var cmErr, daErr permissionErrors
	cm := connectAs(t, root, url, "certmgr", &cmErr)
	da := connectAs(t, root, url, "deployagent", &daErr)

	// deployagent listens on certmgr's events: allowed.
	got := make(chan string, 4)
	if _, err := da.Subscribe("evergreen.certmgr.events.>", func(m *nats.Msg) { got <- m.Subject }); err != nil {
		t.Fatal(err)
	}
	da.Flush()
	// certmgr may publish its own events.
	cm.Publish("evergreen.certmgr.events.server", []byte("ok"))
	// certmgr may not publish on the deployagent's subjects, nor impersonate it.
	cm.Publish("evergreen.deploy.apply.certmgr", []byte("forged"))
	cm.Flush()
	select {
	case s := <-got:
		if s != "evergreen.certmgr.events.server" {
			t.Fatalf("unexpected %s", s)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("allowed publish not delivered")
	}
	waitFor(t, func() bool {
		return cmErr.has("Permissions Violation for Publish to \"evergreen.deploy.apply.certmgr\"")
	})

	// certmgr may not subscribe to another daemon's subjects nor its inbox.
	cm.Subscribe("evergreen.deploy.events.>", func(*nats.Msg) {})
	cm.Subscribe("_INBOX_deployagent.>", func(*nats.Msg) {})
	cm.Flush()
	waitFor(t, func() bool {
		return cmErr.has("Permissions Violation for Subscription to \"evergreen.deploy.events.>\"")
	})
	waitFor(t, func() bool { return cmErr.has("Permissions Violation for Subscription to \"_INBOX_deployagent.>\"") })

	// Request/reply: deployagent asks certmgr, certmgr may answer.
	if _, err := cm.Subscribe("evergreen.deploy.apply.certmgr", func(m *nats.Msg) { m.Respond([]byte("applied")) }); err != nil {
		t.Fatal(err)
	}
	cm.Flush()
	reply, err := da.Request("evergreen.deploy.apply.certmgr", []byte("group"), 2*time.Second)
	if err != nil || string(reply.Data) != "applied" {
		t.Fatalf("request/reply: %v %v", reply, err)
	}
	// deployagent may not publish certmgr's events.
	da.Publish("evergreen.certmgr.events.device", []byte("forged"))
	da.Flush()
	waitFor(t, func() bool {
		return daErr.has("Permissions Violation for Publish to \"evergreen.certmgr.events.device\"")
	})
}

func waitFor(t *testing.T, f func() bool) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for !f() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in 3s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
