package packaging_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// probeComposeBus checks, from the host, what healthchecks cannot see: that
// the bus of a compose project listens on the stack's network (not only on
// its container's loopback, where the other containers could not reach it),
// refuses clients without credentials, and accepts a daemon's credentials
// from the shared volume. It speaks the NATS text protocol directly.
//
// When the host cannot reach the container network (a remote engine, Docker
// Desktop) or read the volume, it logs why and checks what it can.
func probeComposeBus(t *testing.T, compose func(context.Context, ...string) (string, error), project string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := compose(ctx, "ps", "-q", "bus")
	if err != nil || strings.TrimSpace(out) == "" {
		t.Fatalf("docker-compose ps -q bus: %v: %s", err, out)
	}
	out, err = run(ctx, "", nil, "docker", "inspect", strings.TrimSpace(out))
	if err != nil {
		t.Fatalf("docker inspect bus: %v: %s", err, out)
	}
	var cs []struct {
		NetworkSettings struct {
			Networks map[string]struct{ IPAddress string }
		}
	}
	if err := json.Unmarshal([]byte(out), &cs); err != nil || len(cs) != 1 {
		t.Fatalf("docker inspect bus: %v", err)
	}
	var ip string
	for _, n := range cs[0].NetworkSettings.Networks {
		if n.IPAddress != "" {
			ip = n.IPAddress
		}
	}
	if ip == "" {
		t.Fatalf("the bus container has no address on the stack network")
	}
	addr := net.JoinHostPort(ip, "4222")
	if c, err := net.DialTimeout("tcp", addr, 3*time.Second); err != nil {
		t.Logf("bus probe skipped: the host cannot reach the container network (%v)", err)
		return
	} else {
		c.Close()
	}

	info, reply, err := natsHandshake(addr, map[string]any{"verbose": false, "pedantic": false})
	if err != nil {
		t.Fatalf("bus at %s: %v", addr, err)
	}
	if info["auth_required"] != true {
		t.Errorf("bus at %s does not require authentication: INFO %v", addr, info)
	}
	if !strings.HasPrefix(reply, "-ERR") {
		t.Errorf("bus at %s answered a client without credentials with %q, want -ERR", addr, reply)
	}
	// Client ids count connections since the bus started: the daemons that
	// use the bus connected before this probe.
	t.Logf("bus at %s: server %v, this probe is client %v; anonymous client: %s", addr, info["version"], info["client_id"], reply)

	mp, err := run(ctx, "", nil, "docker", "volume", "inspect", "--format", "{{.Mountpoint}}", project+"_evergreen")
	if err != nil {
		t.Logf("credential probe skipped: docker volume inspect: %v: %s", err, mp)
		return
	}
	for _, d := range daemons(t)[1:] {
		credsFile := filepath.Join(strings.TrimSpace(mp), "run", "bus", d.Name+".creds")
		b, err := os.ReadFile(credsFile)
		if os.IsNotExist(err) {
			continue // a daemon that does not use the bus
		}
		if err != nil {
			t.Logf("credential probe skipped: the host cannot read the volume: %v", err)
			return
		}
		var creds struct{ User, Password string }
		if err := json.Unmarshal(b, &creds); err != nil {
			t.Fatalf("%s: %v", credsFile, err)
		}
		_, reply, err := natsHandshake(addr, map[string]any{"verbose": false, "pedantic": false, "user": creds.User, "pass": creds.Password, "name": "packaging-test"})
		if err != nil {
			t.Fatalf("bus at %s as %s: %v", addr, d.Name, err)
		}
		if reply != "PONG" {
			t.Errorf("bus at %s refused %s's credentials: %q", addr, d.Name, reply)
		}
	}
}

// natsHandshake reads the server's INFO, sends CONNECT and PING, and returns
// the INFO fields and the first line of the answer (PONG, or -ERR ...).
func natsHandshake(addr string, connect map[string]any) (map[string]any, string, error) {
	c, err := net.DialTimeout("tcp", addr, 3*time.Second)
	if err != nil {
		return nil, "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	r := bufio.NewReader(c)
	line, err := r.ReadString('\n')
	if err != nil {
		return nil, "", fmt.Errorf("read INFO: %w", err)
	}
	payload, ok := strings.CutPrefix(strings.TrimSpace(line), "INFO ")
	if !ok {
		return nil, "", fmt.Errorf("expected INFO, got %q", line)
	}
	var info map[string]any
	if err := json.Unmarshal([]byte(payload), &info); err != nil {
		return nil, "", fmt.Errorf("INFO: %w", err)
	}
	b, _ := json.Marshal(connect)
	if _, err := fmt.Fprintf(c, "CONNECT %s\r\nPING\r\n", b); err != nil {
		return info, "", err
	}
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return info, "", fmt.Errorf("read reply: %w", err)
		}
		if line = strings.TrimSpace(line); line != "+OK" && !strings.HasPrefix(line, "INFO ") {
			return info, line, nil
		}
	}
}
