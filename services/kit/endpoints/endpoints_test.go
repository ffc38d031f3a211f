package endpoints_test

import (
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"testing"

	"github.com/evergreen-edge/evergreen/services/kit/config"
	"github.com/evergreen-edge/evergreen/services/kit/endpoints"
)

func port(t *testing.T, addr string) string {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("%q: %v", addr, err)
	}
	return p
}

// Port 0 becomes a free port; fixed ports and hosts are kept; the
// discovery listener is resolved like the others.
func TestResolve(t *testing.T) {
	l := config.Default().Evergreen.Listen
	l.Discovery = "127.0.0.1:0"
	l.HTTP = "0.0.0.0:0"
	e, err := endpoints.Resolve(l)
	if err != nil {
		t.Fatal(err)
	}
	if e.MQTT != "0.0.0.0:8883" || e.IPC != "127.0.0.1:8000" || e.GRPC != "" {
		t.Fatalf("fixed addresses changed: %+v", e)
	}
	for name, a := range map[string]string{"discovery": e.Discovery, "http": e.HTTP} {
		if p := port(t, a); p == "0" {
			t.Errorf("%s %s: port 0 was not resolved", name, a)
		}
	}
	if h, _, _ := net.SplitHostPort(e.Discovery); h != "127.0.0.1" {
		t.Errorf("discovery host %q, want 127.0.0.1", h)
	}
	if h, _, _ := net.SplitHostPort(e.HTTP); h != "0.0.0.0" {
		t.Errorf("http host %q, want 0.0.0.0", h)
	}
	if got := endpoints.Dialable(e.HTTP); got != "127.0.0.1:"+port(t, e.HTTP) {
		t.Errorf("Dialable(%s) = %s", e.HTTP, got)
	}
}

// Ensure writes the file once and then returns what it holds, so every
// daemon agrees on the ports picked; a file written before the discovery
// listener existed gets it added and keeps the rest.
func TestEnsure(t *testing.T) {
	path := filepath.Join(t.TempDir(), "endpoints.json")
	l := config.Default().Evergreen.Listen
	l.MQTT, l.Discovery = "127.0.0.1:0", "127.0.0.1:0"
	first, err := endpoints.Ensure(path, l)
	if err != nil {
		t.Fatal(err)
	}
	again, err := endpoints.Ensure(path, l)
	if err != nil || again != first {
		t.Fatalf("second Ensure = %+v, %v; want %+v", again, err, first)
	}
	var onDisk map[string]string
	b, _ := os.ReadFile(path)
	if err := json.Unmarshal(b, &onDisk); err != nil {
		t.Fatal(err)
	}
	if onDisk["discovery"] != first.Discovery || port(t, first.Discovery) == "0" {
		t.Fatalf("endpoints.json discovery %q, Ensure returned %q", onDisk["discovery"], first.Discovery)
	}

	old := first
	old.Discovery = ""
	if err := endpoints.Write(path, old); err != nil {
		t.Fatal(err)
	}
	upgraded, err := endpoints.Ensure(path, l)
	if err != nil {
		t.Fatal(err)
	}
	if upgraded.MQTT != first.MQTT || upgraded.Discovery == "" || port(t, upgraded.Discovery) == "0" {
		t.Fatalf("after upgrade %+v (before %+v)", upgraded, first)
	}
	if read, err := endpoints.Read(path); err != nil || read != upgraded {
		t.Fatalf("Read = %+v, %v; want the upgraded %+v", read, err, upgraded)
	}
}

// Every port-0 listener gets its own port. Closing each probe before the
// next one let the kernel pick the same port twice (CI saw streams and
// discovery collide); the probes are now held until all are picked.
func TestResolveNeverRepeatsAPort(t *testing.T) {
	l := config.Listen{
		MQTT: "127.0.0.1:0", IPC: "127.0.0.1:0", Streams: "127.0.0.1:0", Bus: "127.0.0.1:0",
		HTTP: "127.0.0.1:0", Discovery: "127.0.0.1:0", GRPC: "127.0.0.1:0",
	}
	for i := 0; i < 200; i++ {
		e, err := endpoints.Resolve(l)
		if err != nil {
			t.Fatal(err)
		}
		seen := map[string]string{}
		for name, a := range map[string]string{"mqtt": e.MQTT, "ipc": e.IPC, "streams": e.Streams, "bus": e.Bus, "http": e.HTTP, "discovery": e.Discovery, "grpc": e.GRPC} {
			p := port(t, a)
			if other, dup := seen[p]; dup {
				t.Fatalf("round %d: %s and %s both got port %s", i, name, other, p)
			}
			seen[p] = name
		}
	}
}
