package shadow_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	brokerv1 "github.com/evergreen-edge/evergreen/proto/evergreen/broker/v1"
	shadowv1 "github.com/evergreen-edge/evergreen/proto/evergreen/shadow/v1"
	"github.com/evergreen-edge/evergreen/services/kit/bustest"
	"github.com/evergreen-edge/evergreen/services/kit/config"
	"github.com/evergreen-edge/evergreen/services/kit/daemon"
	"github.com/evergreen-edge/evergreen/services/kit/deployment"
	"github.com/evergreen-edge/evergreen/services/kit/groupdef"
	"github.com/evergreen-edge/evergreen/services/kit/layout"
	"github.com/evergreen-edge/evergreen/services/kit/subjects"
	"github.com/evergreen-edge/evergreen/shadow"
	"github.com/nats-io/nats.go"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"
)

const (
	coreArn  = "arn:aws:iot:us-east-1:123456789012:thing/test-core"
	thingArn = "arn:aws:iot:us-east-1:123456789012:thing/"
	within   = 10 * time.Second
)

// TestMain doubles as the shadow daemon in a child process (kill -9
// tests): SHADOW_TEST_CHILD=ROOT runs it on ROOT until killed.
func TestMain(m *testing.M) {
	if root := os.Getenv("SHADOW_TEST_CHILD"); root != "" {
		runChild(root, os.Getenv("SHADOW_TEST_BUS"))
		return
	}
	os.Exit(m.Run())
}

func runChild(root, bus string) {
	cfg := testConfig()
	run, err := daemon.Start(context.Background(), shadow.Spec(), daemon.Options{Root: root, BusURL: bus, Config: cfg, LogStderr: io.Discard})
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		os.Exit(1)
	}
	fmt.Println("ready")
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGTERM)
	<-ch
	run.Shutdown(context.Background())
}

func testConfig() *config.Config {
	cfg := config.Default()
	cfg.CoreThing.ThingArn = coreArn
	return cfg
}

// testGroup has the core and devices lamp and sensor; sync lists things
// with SyncShadow.
func testGroup(sync ...string) *groupdef.Group {
	synced := map[string]bool{}
	for _, s := range sync {
		synced[s] = true
	}
	g := &groupdef.Group{
		Core: &groupdef.CoreDefinitionVersion{Cores: []groupdef.Core{{
			Id: "core", ThingArn: coreArn, SyncShadow: synced["test-core"],
			CertificateArn: "arn:aws:iot:us-east-1:123456789012:cert/" + strings.Repeat("a", 64),
		}}},
		Devices: &groupdef.DeviceDefinitionVersion{},
	}
	for i, d := range []string{"lamp", "sensor"} {
		g.Devices.Devices = append(g.Devices.Devices, groupdef.Device{
			Id: d, ThingArn: thingArn + d, SyncShadow: synced[d],
			CertificateArn: fmt.Sprintf("arn:aws:iot:us-east-1:123456789012:cert/%064x", i+1),
		})
	}
	return g
}

type suite struct {
	t      *testing.T
	root   layout.Root
	busURL string
	run    *daemon.Running
	api    shadowv1.ShadowClient
	nc     *nats.Conn
	child  *exec.Cmd
}

func newSuite(t *testing.T, g *groupdef.Group) *suite {
	t.Helper()
	s := &suite{t: t, root: layout.Root(t.TempDir()), busURL: bustest.Start(t)}
	bustest.WriteCreds(t, s.root, shadow.Name)
	if err := os.MkdirAll(s.root.DeploymentsDir(), 0o700); err != nil {
		t.Fatal(err)
	}
	if g != nil {
		b, err := groupdef.Marshal(g)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := groupdef.Parse(b); err != nil {
			t.Fatalf("test group does not validate: %v", err)
		}
		if err := deployment.Commit(s.root, &deployment.Record{DeploymentID: "d-1", DeployedAt: time.Now().UTC(), Group: b}); err != nil {
			t.Fatal(err)
		}
	}
	nc, err := nats.Connect(s.busURL)
	if err != nil {
		t.Fatal(err)
	}
	s.nc = nc
	t.Cleanup(func() {
		s.stop()
		s.killChild()
		nc.Close()
		if t.Failed() {
			if b, err := os.ReadFile(s.root.LogFile(shadow.Name)); err == nil {
				t.Logf("shadow log:\n%s", b)
			}
		}
	})
	return s
}

func (s *suite) start() {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	run, err := daemon.Start(ctx, shadow.Spec(), daemon.Options{Root: s.root.Dir(), BusURL: s.busURL, Config: testConfig(), LogStderr: io.Discard})
	if err != nil {
		s.t.Fatalf("start shadow: %v", err)
	}
	s.run = run
	s.dial()
}

func (s *suite) dial() {
	cc, err := grpc.NewClient("unix://"+s.root.Socket(shadow.Name), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		s.t.Fatal(err)
	}
	s.t.Cleanup(func() { cc.Close() })
	s.api = shadowv1.NewShadowClient(cc)
}

func (s *suite) stop() {
	if s.run != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		s.run.Shutdown(ctx)
		s.run = nil
	}
}

// startChild runs the daemon in a child process (this test binary).
func (s *suite) startChild() {
	s.t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "SHADOW_TEST_CHILD="+s.root.Dir(), "SHADOW_TEST_BUS="+s.busURL)
	out, err := cmd.StdoutPipe()
	if err != nil {
		s.t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	ready := make(chan error, 1)
	go func() {
		buf := make([]byte, 64)
		n, err := out.Read(buf)
		if err == nil && !strings.Contains(string(buf[:n]), "ready") {
			err = fmt.Errorf("child said %q", buf[:n])
		}
		ready <- err
		io.Copy(io.Discard, out)
	}()
	select {
	case err := <-ready:
		if err != nil {
			s.t.Fatalf("child shadow daemon: %v", err)
		}
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		s.t.Fatal("child shadow daemon not ready in 30 s")
	}
	s.child = cmd
	s.dial()
}

func (s *suite) killChild() {
	if s.child != nil {
		s.child.Process.Signal(syscall.SIGKILL)
		s.child.Wait()
		s.child = nil
	}
}

// busTap collects what the shadow service publishes for the router.
type busTap struct {
	mu   sync.Mutex
	msgs []*brokerv1.RoutedMessage
}

func (s *suite) tap(subject string) *busTap {
	s.t.Helper()
	bt := &busTap{}
	sub, err := s.nc.Subscribe(subject, func(m *nats.Msg) {
		rm := &brokerv1.RoutedMessage{}
		if proto.Unmarshal(m.Data, rm) == nil {
			bt.mu.Lock()
			bt.msgs = append(bt.msgs, rm)
			bt.mu.Unlock()
		}
	})
	if err != nil {
		s.t.Fatal(err)
	}
	s.nc.Flush()
	s.t.Cleanup(func() { sub.Unsubscribe() })
	return bt
}

func (b *busTap) snapshot() []*brokerv1.RoutedMessage {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]*brokerv1.RoutedMessage(nil), b.msgs...)
}

// waitTopic waits for n messages on topic t and returns them.
func (s *suite) waitTopic(b *busTap, t string, n int) []*brokerv1.RoutedMessage {
	s.t.Helper()
	var got []*brokerv1.RoutedMessage
	bustest.CheckFor(s.t, within, 10*time.Millisecond, func() error {
		got = got[:0]
		for _, m := range b.snapshot() {
			if m.GetTopic() == t {
				got = append(got, m)
			}
		}
		if len(got) < n {
			return fmt.Errorf("%d messages on %s, want %d; all: %v", len(got), t, n, topics(b.snapshot()))
		}
		return nil
	})
	return got
}

func topics(ms []*brokerv1.RoutedMessage) []string {
	var out []string
	for _, m := range ms {
		out = append(out, m.GetTopic())
	}
	return out
}

// deliver sends a request to GGShadowService as the router does.
func (s *suite) deliver(from *brokerv1.Endpoint, topic string, payload string) {
	s.t.Helper()
	b, _ := proto.Marshal(&brokerv1.RoutedMessage{Topic: topic, Payload: []byte(payload), Source: from,
		Targets: []*brokerv1.Endpoint{{Kind: brokerv1.EndpointKind_ENDPOINT_KIND_SHADOW}}})
	if err := s.nc.Publish(subjects.BrokerDeliverShadow, b); err != nil {
		s.t.Fatal(err)
	}
}

func device(name string) *brokerv1.Endpoint {
	return &brokerv1.Endpoint{Kind: brokerv1.EndpointKind_ENDPOINT_KIND_DEVICE, Name: name}
}

// decode parses a JSON document into a map (numbers as json.Number).
func decode(t *testing.T, b []byte) map[string]any {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		t.Fatalf("not a JSON object: %q: %v", b, err)
	}
	return m
}

// at walks a decoded document along keys.
func at(m map[string]any, keys ...string) any {
	var v any = m
	for _, k := range keys {
		mm, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = mm[k]
	}
	return v
}
