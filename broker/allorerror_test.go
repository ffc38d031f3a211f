package broker

import (
	"crypto/tls"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/evergreen-edge/evergreen/broker/mqtt"
	brokerv1 "github.com/evergreen-edge/evergreen/proto/evergreen/broker/v1"
	"github.com/evergreen-edge/evergreen/services/kit/subjects"
	"google.golang.org/protobuf/proto"
)

// stalled connects d with a bare MQTT 3.1.1 session subscribed to filter
// and then never reads again, so that its write queue fills.
func (s *suite) stalled(d *device, filter string) *tls.Conn {
	s.t.Helper()
	c, err := tls.Dial("tcp", s.mqttAddr, s.tlsConfig(d))
	if err != nil {
		s.t.Fatal(err)
	}
	s.t.Cleanup(func() { c.Close() })
	str := func(v string) []byte { return append([]byte{byte(len(v) >> 8), byte(len(v))}, v...) }
	connect := append(append(str("MQTT"), 4, 2, 0, 60), str(d.name)...)
	subscribe := append(append([]byte{0, 1}, str(filter)...), 0)
	for _, p := range []struct {
		h    byte
		body []byte
		ack  byte
	}{{0x10, connect, 0x20}, {0x82, subscribe, 0x90}} {
		if _, err := c.Write(append([]byte{p.h, byte(len(p.body))}, p.body...)); err != nil {
			s.t.Fatal(err)
		}
		c.SetReadDeadline(time.Now().Add(within))
		b := make([]byte, 5)
		if _, err := c.Read(b); err != nil || b[0] != p.ack {
			s.t.Fatalf("%s: ack %x, %v", d.name, b[0], err)
		}
	}
	s.waitSubscribed(d.name, filter)
	return c
}

// plan asks for a RoutePlan the way the runtime does.
func (s *suite) plan(rm *brokerv1.RoutedMessage) *brokerv1.RoutePlan {
	s.t.Helper()
	b, _ := proto.Marshal(rm)
	reply, err := s.bus.Request(subjects.RuntimeRoutePlan, b, within)
	if err != nil {
		s.t.Fatalf("route plan: %v", err)
	}
	p := &brokerv1.RoutePlan{}
	if err := proto.Unmarshal(reply.Data, p); err != nil {
		s.t.Fatal(err)
	}
	return p
}

// queueFullPolicy AllOrError, the broker's part: a plan names every
// target and the ones without room and delivers nothing; the runtime's
// message with the plan's targets reaches exactly the targets that are
// not the runtime's.
func TestRoutePlan(t *testing.T) {
	s := newSuite(t)
	fast, slow := s.createDevice("fast"), s.createDevice("slow")
	s.deploy(group([]*device{fast, slow}, []string{"ctl", "sink"},
		sub{functionARN("ctl"), "cmd/#", thingARN("fast")},
		sub{functionARN("ctl"), "cmd/#", thingARN("slow")},
		sub{functionARN("ctl"), "cmd/#", functionARN("sink")},
	))
	f := s.mustV3(fast)
	f.subscribe(t, 0, "cmd/#")
	s.stalled(slow, "cmd/#")
	toFunctions := s.busInbox(subjects.BrokerDeliverFunction)
	ctl := &brokerv1.Endpoint{Kind: brokerv1.EndpointKind_ENDPOINT_KIND_FUNCTION, Name: functionARN("ctl")}
	rm := &brokerv1.RoutedMessage{Topic: "cmd/go", Payload: []byte("1"), Source: ctl}

	p := s.plan(rm)
	if len(p.GetFull()) != 0 || len(p.GetTargets()) != 3 {
		t.Fatalf("plan with room everywhere: %v", p)
	}
	rm.Targets = p.GetTargets()
	s.busPublish(subjects.RuntimePublish, rm)
	f.in.expect(t, "cmd/go", "1")
	select {
	case m := <-toFunctions:
		t.Fatalf("the function target is the runtime's, yet the broker sent it %v", m)
	case <-time.After(100 * time.Millisecond):
	}

	// Fill slow's queue behind its back.
	big := mqtt.Message{Topic: "cmd/big", Payload: make([]byte, 100<<10)}
	for n := 0; ; n++ {
		if err := s.svc.mqtt.Room("slow", big); errors.Is(err, mqtt.ErrNoRoom) {
			break
		} else if err != nil || n > 100000 {
			t.Fatalf("after %d: %v", n, err)
		}
		s.svc.mqtt.Deliver("slow", big)
	}
	p = s.plan(&brokerv1.RoutedMessage{Topic: "cmd/go", Payload: []byte("2"), Source: ctl})
	if len(p.GetTargets()) != 3 || len(p.GetFull()) != 1 || p.GetFull()[0].GetTarget().GetName() != "slow" ||
		!strings.Contains(p.GetFull()[0].GetReason(), "device slow: ") {
		t.Fatalf("plan with slow full: %v", p)
	}
	// A plan delivers nothing.
	f.in.empty(t)

	// Only the runtime may ask, for a function, with a valid message.
	for _, bad := range []*brokerv1.RoutedMessage{
		{Topic: "cmd/go", Source: &brokerv1.Endpoint{Kind: brokerv1.EndpointKind_ENDPOINT_KIND_DEVICE, Name: "fast"}},
		{Topic: "cmd/#", Source: ctl},
	} {
		if p := s.plan(bad); len(p.GetFull()) != 1 || p.GetFull()[0].GetReason() == "" {
			t.Errorf("plan of %v: %v, want a refusal", bad, p)
		}
	}
}
