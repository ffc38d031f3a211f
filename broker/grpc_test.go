package broker

import (
	"context"
	"fmt"
	"github.com/evergreen-edge/evergreen/services/kit/bustest"
	"slices"
	"strings"
	"testing"
	"time"

	brokerv1 "github.com/evergreen-edge/evergreen/proto/evergreen/broker/v1"
	"github.com/evergreen-edge/evergreen/services/kit/arn"
	"github.com/evergreen-edge/evergreen/services/kit/subjects"
	"github.com/nats-io/nats.go"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func deviceEP(name string) *brokerv1.Endpoint {
	return &brokerv1.Endpoint{Kind: brokerv1.EndpointKind_ENDPOINT_KIND_DEVICE, Name: name}
}

func TestPublishAPI(t *testing.T) {
	s := newSuite(t)
	ctx := context.Background()
	sensor, watcher := s.createDevice("sensor"), s.createDevice("watcher")
	if _, err := s.api.Publish(ctx, &brokerv1.PublishRequest{Source: deviceEP("sensor"), Topic: "a"}); status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("Publish before any deployment: %v, want FailedPrecondition", err)
	}
	s.deploy(group([]*device{sensor, watcher}, []string{"fn"},
		sub{thingARN("sensor"), "a/#", thingARN("watcher")},
		sub{thingARN("sensor"), "a/#", functionARN("fn")},
		sub{arn.Cloud, "cmd", thingARN("watcher")},
	))
	for _, tc := range []struct {
		name  string
		req   *brokerv1.PublishRequest
		field string
	}{
		{"no source", &brokerv1.PublishRequest{Topic: "a"}, "source.kind"},
		{"device without name", &brokerv1.PublishRequest{Source: deviceEP(""), Topic: "a"}, "source.name"},
		{"function without ARN", &brokerv1.PublishRequest{Source: &brokerv1.Endpoint{Kind: brokerv1.EndpointKind_ENDPOINT_KIND_FUNCTION}, Topic: "a"}, "source.name"},
		{"named cloud", &brokerv1.PublishRequest{Source: &brokerv1.Endpoint{Kind: brokerv1.EndpointKind_ENDPOINT_KIND_CLOUD, Name: "x"}, Topic: "a"}, "source.name"},
		{"empty topic", &brokerv1.PublishRequest{Source: deviceEP("sensor")}, "topic"},
		{"wildcard", &brokerv1.PublishRequest{Source: deviceEP("sensor"), Topic: "a/+"}, "topic"},
		{"257 bytes", &brokerv1.PublishRequest{Source: deviceEP("sensor"), Topic: strings.Repeat("a", 257)}, "topic"},
		{"8 slashes", &brokerv1.PublishRequest{Source: deviceEP("sensor"), Topic: "a/b/c/d/e/f/g/h/i"}, "topic"},
		{"128 KB + 1", &brokerv1.PublishRequest{Source: deviceEP("sensor"), Topic: "a", Payload: make([]byte, 128*1024+1)}, "payload"},
		{"qos 2", &brokerv1.PublishRequest{Source: deviceEP("sensor"), Topic: "a", Qos: 2}, "qos"},
	} {
		_, err := s.api.Publish(ctx, tc.req)
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(status.Convert(err).Message(), tc.field) {
			t.Errorf("%s: %v, want InvalidArgument naming %s", tc.name, err, tc.field)
		}
	}

	w := s.mustV3(watcher)
	w.subscribe(t, 1, "#")
	fnBus := s.busInbox(subjects.BrokerDeliverFunction)
	resp, err := s.api.Publish(ctx, &brokerv1.PublishRequest{Source: deviceEP("sensor"), Topic: "a/b", Payload: []byte("hi"), Qos: 1})
	if err != nil {
		t.Fatal(err)
	}
	if got := targetNames(resp.GetTargets()); !slices.Equal(got, []string{"device:watcher", "function:" + functionARN("fn")}) {
		t.Fatalf("targets %v", got)
	}
	w.in.expect(t, "a/b", "hi")
	if rm := nextRouted(t, fnBus); rm.GetTopic() != "a/b" || rm.GetSource().GetName() != "sensor" {
		t.Fatalf("function got %v", rm)
	}
	// As the cloud, which the table lets reach the watcher.
	resp, err = s.api.Publish(ctx, &brokerv1.PublishRequest{Source: &brokerv1.Endpoint{Kind: brokerv1.EndpointKind_ENDPOINT_KIND_CLOUD}, Topic: "cmd", Payload: []byte("go")})
	if err != nil || len(resp.GetTargets()) != 1 {
		t.Fatalf("Publish as cloud: %v %v", resp, err)
	}
	w.in.expect(t, "cmd", "go")
	// No route: OK with no targets.
	resp, err = s.api.Publish(ctx, &brokerv1.PublishRequest{Source: deviceEP("watcher"), Topic: "a/b"})
	if err != nil || len(resp.GetTargets()) != 0 {
		t.Fatalf("Publish with no route: %v %v", resp, err)
	}
}

func targetNames(es []*brokerv1.Endpoint) []string {
	var out []string
	for _, e := range es {
		k := strings.ToLower(strings.TrimPrefix(e.GetKind().String(), "ENDPOINT_KIND_"))
		out = append(out, k+":"+e.GetName())
	}
	return out
}

func TestTap(t *testing.T) {
	s := newSuite(t)
	sensor, watcher := s.createDevice("sensor"), s.createDevice("watcher")
	s.deploy(group([]*device{sensor, watcher}, []string{"fn"},
		sub{thingARN("sensor"), "t/#", thingARN("watcher")},
		sub{thingARN("sensor"), "t/#", functionARN("fn")},
	))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	bad, err := s.api.Subscribe(ctx, &brokerv1.SubscribeRequest{Filter: "a/#/b"})
	if err == nil {
		_, err = bad.Recv()
	}
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("tap on a/#/b: %v, want InvalidArgument", err)
	}

	tap, err := s.api.Subscribe(ctx, &brokerv1.SubscribeRequest{Filter: "t/#"})
	if err != nil {
		t.Fatal(err)
	}
	bustest.CheckFor(t, within, 10*time.Millisecond, func() error {
		if !s.svc.taps.active() {
			return status.Error(codes.Unavailable, "tap not open yet")
		}
		return nil
	})
	p := s.mustV3(sensor)
	p.publish(t, "other", 0, "not tapped")
	p.publish(t, "t/1", 1, "tapped")
	m, err := tap.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if m.GetTopic() != "t/1" || string(m.GetPayload()) != "tapped" || m.GetSource().GetName() != "sensor" {
		t.Fatalf("tap got %v", m)
	}
	if got := targetNames(m.GetTargets()); !slices.Equal(got, []string{"device:watcher", "function:" + functionARN("fn")}) {
		t.Fatalf("tap targets %v", got)
	}

	// At most 16 taps.
	var streams []context.CancelFunc
	defer func() {
		for _, c := range streams {
			c()
		}
	}()
	for i := 1; i < maxTaps; i++ {
		c, cc := context.WithCancel(ctx)
		streams = append(streams, cc)
		if _, err := s.api.Subscribe(c, &brokerv1.SubscribeRequest{Filter: "#"}); err != nil {
			t.Fatal(err)
		}
	}
	bustest.CheckFor(t, within, 10*time.Millisecond, func() error {
		if n := s.svc.taps.n.Load(); n != maxTaps {
			return status.Errorf(codes.Unavailable, "%d taps open", n)
		}
		return nil
	})
	extra, err := s.api.Subscribe(ctx, &brokerv1.SubscribeRequest{Filter: "#"})
	if err == nil {
		_, err = extra.Recv()
	}
	if status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("17th tap: %v, want ResourceExhausted", err)
	}
}

// A tap nobody reads drops messages (and says how many); routing goes on
// at full speed.
func TestSlowTapDoesNotBlockRouting(t *testing.T) {
	s := newSuite(t)
	sensor := s.createDevice("sensor")
	s.deploy(group([]*device{sensor}, []string{"fn"}, sub{thingARN("sensor"), "t/#", functionARN("fn")}))
	fnMsgs := make(chan *nats.Msg, 4096)
	if _, err := s.bus.ChanSubscribe(subjects.BrokerDeliverFunction, fnMsgs); err != nil {
		t.Fatal(err)
	}
	s.bus.Flush()

	ctx, cancel := context.WithCancel(context.Background())
	if _, err := s.api.Subscribe(ctx, &brokerv1.SubscribeRequest{Filter: "#"}); err != nil {
		t.Fatal(err)
	}
	bustest.CheckFor(t, within, 10*time.Millisecond, func() error {
		if !s.svc.taps.active() {
			return status.Error(codes.Unavailable, "tap not open yet")
		}
		return nil
	})
	const n = 2000
	payload := make([]byte, 1024)
	for range n {
		if _, err := s.api.Publish(context.Background(), &brokerv1.PublishRequest{Source: deviceEP("sensor"), Topic: "t/x", Payload: payload}); err != nil {
			t.Fatal(err)
		}
	}
	bustest.CheckFor(t, within, 10*time.Millisecond, func() error {
		if len(fnMsgs) < n {
			return status.Errorf(codes.Unavailable, "%d of %d messages delivered", len(fnMsgs), n)
		}
		return nil
	})
	cancel()
	s.logs.waitFor(t, "tap closed; it dropped messages", "filter=#")
}

func TestListClientsAndCloudStatus(t *testing.T) {
	s := newSuite(t)
	ctx := context.Background()
	sensor, watcher := s.createDevice("sensor"), s.createDevice("watcher")
	s.deploy(group([]*device{sensor, watcher}, nil, sub{thingARN("sensor"), "a/#", thingARN("watcher")}))
	w := s.mustV5(watcher)
	w.subscribe(t, 1, "a/#", "b")
	p := s.mustV3(sensor)
	p.publish(t, "a/1", 1, "x")
	w.in.expect(t, "a/1", "x")

	// The counters move once the bytes are written, which may be just
	// after the client has them.
	bustest.CheckFor(t, within, 10*time.Millisecond, func() error {
		resp, err := s.api.ListClients(ctx, &brokerv1.ListClientsRequest{})
		if err != nil {
			return err
		}
		byID := map[string]*brokerv1.Client{}
		for _, c := range resp.GetClients() {
			byID[c.GetClientId()] = c
		}
		ws, ss := byID["watcher"], byID["sensor"]
		if ws == nil || ss == nil || len(byID) != 2 {
			t.Fatalf("clients %v", resp.GetClients())
		}
		if ws.GetProtocolVersion() != 5 || ss.GetProtocolVersion() != 4 {
			t.Fatalf("protocol versions %d and %d, want 5 and 4", ws.GetProtocolVersion(), ss.GetProtocolVersion())
		}
		if !slices.Equal(ws.GetSubscriptions(), []string{"a/#", "b"}) {
			t.Fatalf("watcher subscriptions %v", ws.GetSubscriptions())
		}
		if ws.GetRemoteAddress() == "" || ws.GetConnectedAt() == nil || !ws.GetCleanSession() {
			t.Fatalf("watcher %v", ws)
		}
		if ss.GetMessagesIn() != 1 || ws.GetMessagesOut() != 1 {
			return fmt.Errorf("sensor in %d, watcher out %d; want 1 and 1", ss.GetMessagesIn(), ws.GetMessagesOut())
		}
		return nil
	})

	cs, err := s.api.GetCloudStatus(ctx, &brokerv1.GetCloudStatusRequest{})
	if err != nil || cs.GetState() != brokerv1.CloudState_CLOUD_STATE_DISABLED {
		t.Fatalf("GetCloudStatus = %v, %v; want DISABLED", cs, err)
	}
}
