// Package bustest gives tests of bus-using daemons a real NATS server and
// the polling helper they all need, so no daemon's tests carry their own.
package bustest

import (
	"encoding/json"
	"os"
	"testing"
	"time"

	"github.com/evergreen-edge/evergreen/services/kit/busconn"
	"github.com/evergreen-edge/evergreen/services/kit/layout"
	"github.com/nats-io/nats-server/v2/server"
)

// Start runs a real NATS server on a free loopback port, without
// authentication (any credentials pass), stopped when the test ends. It
// returns the client URL.
func Start(t testing.TB) string {
	t.Helper()
	// MaxPayload as the suite's bus allows (group definitions travel whole).
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, NoLog: true, NoSigs: true, MaxPayload: 8 << 20})
	if err != nil {
		t.Fatal(err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats server not ready")
	}
	t.Cleanup(func() {
		ns.Shutdown()
		ns.WaitForShutdown()
	})
	return ns.ClientURL()
}

// WriteCreds writes DIR/run/bus/<name>.creds for each name, which
// daemon.Start reads before it connects.
func WriteCreds(t testing.TB, root layout.Root, names ...string) {
	t.Helper()
	if err := os.MkdirAll(root.BusDir(), 0o700); err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		b, _ := json.Marshal(busconn.Creds{User: n, Password: "x"})
		if err := os.WriteFile(root.BusCreds(n), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// CheckFor polls fn every `every` until it returns nil, failing the test
// with fn's last error once total has passed.
func CheckFor(t testing.TB, total, every time.Duration, fn func() error) {
	t.Helper()
	deadline := time.Now().Add(total)
	for {
		err := fn()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %v", total, err)
		}
		time.Sleep(every)
	}
}
