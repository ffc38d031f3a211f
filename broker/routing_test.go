package broker

import (
	"bytes"
	"context"
	"fmt"
	"github.com/evergreen-edge/evergreen/services/kit/bustest"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	brokerv1 "github.com/evergreen-edge/evergreen/proto/evergreen/broker/v1"
	"github.com/evergreen-edge/evergreen/services/kit/arn"
	"github.com/evergreen-edge/evergreen/services/kit/groupdef"
	"github.com/evergreen-edge/evergreen/services/kit/subjects"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// A device-to-device subscription delivers over MQTT, here to a real
// mosquitto_sub, on the same topic.
func TestDeviceToDeviceMosquittoSub(t *testing.T) {
	s := newSuite(t)
	sensor, actuator := s.createDevice("sensor"), s.createDevice("actuator")
	s.deploy(group([]*device{sensor, actuator}, nil, sub{thingARN("sensor"), "hall/+/set", thingARN("actuator")}))

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out bytes.Buffer
	cmd := s.mosquitto(ctx, "mosquitto_sub", actuator, "actuator", "-V", "mqttv311", "-t", "hall/#", "-C", "1", "-v")
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s.waitSubscribed("actuator", "hall/#")

	pub := s.mustV3(sensor)
	pub.publish(t, "hall/a/set", 0, "on")
	if err := cmd.Wait(); err != nil {
		t.Fatalf("mosquitto_sub: %v: %s", err, out.String())
	}
	if got := strings.TrimSpace(out.String()); got != "hall/a/set on" {
		t.Fatalf("mosquitto_sub printed %q, want %q", got, "hall/a/set on")
	}
}

// Default deny: with no subscription nothing moves, and a device
// subscribed to '#' receives exactly what the table sends it. Every
// publish comes from one connection, so the broker handles them in order:
// the first message a receiver gets proves nothing before it was
// delivered.
func TestOnlyTheTableDelivers(t *testing.T) {
	s := newSuite(t)
	sensor, watcher, bystander := s.createDevice("sensor"), s.createDevice("watcher"), s.createDevice("bystander")
	s.deploy(group([]*device{sensor, watcher, bystander}, []string{"fn"},
		sub{thingARN("sensor"), "allowed/#", thingARN("watcher")},
		sub{thingARN("sensor"), "sentinel/bystander", thingARN("bystander")},
		sub{thingARN("sensor"), "sentinel/fn", functionARN("fn")},
	))
	fnBus := s.busInbox(subjects.BrokerDeliverFunction)
	w := s.mustV5(watcher)
	w.subscribe(t, 1, "#")
	b := s.mustV3(bystander)
	b.subscribe(t, 1, "#")
	p := s.mustV3(sensor)

	for _, topic := range []string{"denied/x", "other", "allowed", "sentinel/elsewhere"} {
		p.publish(t, topic, 1, "nope-"+topic)
	}
	p.publish(t, "allowed/1", 1, "yes")
	p.publish(t, "sentinel/bystander", 1, "end")
	p.publish(t, "sentinel/fn", 1, "end")

	// "allowed" itself matches allowed/# (zero levels), so it is the
	// first thing the watcher may get.
	w.in.expect(t, "allowed", "nope-allowed")
	w.in.expect(t, "allowed/1", "yes")
	b.in.expect(t, "sentinel/bystander", "end")
	if rm := nextRouted(t, fnBus); rm.GetTopic() != "sentinel/fn" {
		t.Fatalf("function got %q first, want only sentinel/fn", rm.GetTopic())
	}
	w.in.empty(t)
	b.in.empty(t)
}

// A message reaches a target once, however many subscriptions of the table
// and filters of the device match it.
func TestOverlappingSubscriptionsDeliverOnce(t *testing.T) {
	s := newSuite(t)
	sensor, watcher := s.createDevice("sensor"), s.createDevice("watcher")
	s.deploy(group([]*device{sensor, watcher}, []string{"fn"},
		sub{thingARN("sensor"), "x/#", thingARN("watcher")},
		sub{thingARN("sensor"), "x/+/y", thingARN("watcher")},
		sub{thingARN("sensor"), "x/1/y", thingARN("watcher")},
		sub{thingARN("sensor"), "x/#", functionARN("fn")},
		sub{thingARN("sensor"), "+/1/y", functionARN("fn")},
		sub{thingARN("sensor"), "end", thingARN("watcher")},
		sub{thingARN("sensor"), "end", functionARN("fn")},
	))
	fnBus := s.busInbox(subjects.BrokerDeliverFunction)
	w := s.mustV5(watcher)
	w.subscribe(t, 1, "x/#", "x/1/y", "#", "+/+/y")
	p := s.mustV5(sensor)
	p.publish(t, &paho.Publish{Topic: "x/1/y", QoS: 1, Payload: []byte("once")})
	p.publish(t, &paho.Publish{Topic: "end", QoS: 1, Payload: []byte("end")})

	w.in.expect(t, "x/1/y", "once")
	w.in.expect(t, "end", "end")
	if rm := nextRouted(t, fnBus); rm.GetTopic() != "x/1/y" {
		t.Fatalf("function got %q, want x/1/y", rm.GetTopic())
	}
	if rm := nextRouted(t, fnBus); rm.GetTopic() != "end" {
		t.Fatalf("function got %q after x/1/y, want end (x/1/y once)", rm.GetTopic())
	}
}

// A device's message to a function travels on the bus as a RoutedMessage
// naming the device as its source and the function as its target.
func TestDeviceToFunctionOnTheBus(t *testing.T) {
	s := newSuite(t)
	sensor := s.createDevice("sensor")
	s.deploy(group([]*device{sensor}, []string{"filter"},
		sub{thingARN("sensor"), "telemetry/#", functionARN("filter")},
		sub{thingARN("sensor"), "$aws/things/sensor/shadow/update", arn.ShadowService},
	))
	fnBus := s.busInbox(subjects.BrokerDeliverFunction)
	shadowBus := s.busInbox(subjects.BrokerDeliverShadow)
	p := s.mustV5(sensor)
	p.publish(t, &paho.Publish{Topic: "telemetry/temp", QoS: 1, Payload: []byte(`{"t":21}`)})
	p.publish(t, &paho.Publish{Topic: "$aws/things/sensor/shadow/update", QoS: 0, Payload: []byte(`{"state":{}}`)})

	rm := nextRouted(t, fnBus)
	if rm.GetTopic() != "telemetry/temp" || string(rm.GetPayload()) != `{"t":21}` || rm.GetQos() != 1 {
		t.Fatalf("routed %q %q qos %d", rm.GetTopic(), rm.GetPayload(), rm.GetQos())
	}
	if src := rm.GetSource(); src.GetKind() != brokerv1.EndpointKind_ENDPOINT_KIND_DEVICE || src.GetName() != "sensor" {
		t.Fatalf("source %v, want device sensor", src)
	}
	if len(rm.GetTargets()) != 1 || rm.GetTargets()[0].GetKind() != brokerv1.EndpointKind_ENDPOINT_KIND_FUNCTION || rm.GetTargets()[0].GetName() != functionARN("filter") {
		t.Fatalf("targets %v, want the function alone", rm.GetTargets())
	}
	if rm.GetTime() == nil || time.Since(rm.GetTime().AsTime()) > time.Minute {
		t.Fatalf("time %v", rm.GetTime())
	}
	sh := nextRouted(t, shadowBus)
	if sh.GetTopic() != "$aws/things/sensor/shadow/update" || sh.GetTargets()[0].GetKind() != brokerv1.EndpointKind_ENDPOINT_KIND_SHADOW {
		t.Fatalf("shadow got %q for %v", sh.GetTopic(), sh.GetTargets())
	}
}

// Messages from functions (runtime.publish) and from the shadow service
// (shadow.publish) reach devices through the table; the source the runtime
// names must be a function or connector, and the shadow service's messages
// are the shadow service's whatever they claim.
func TestRuntimeAndShadowToDevice(t *testing.T) {
	s := newSuite(t)
	sensor, actuator := s.createDevice("sensor"), s.createDevice("actuator")
	s.deploy(group([]*device{sensor, actuator}, []string{"ctl"},
		sub{functionARN("ctl"), "cmd/#", thingARN("actuator")},
		sub{thingARN("sensor"), "cmd/#", thingARN("actuator")},
		sub{arn.ShadowService, "$aws/things/actuator/shadow/#", thingARN("actuator")},
	))
	a := s.mustV3(actuator)
	a.subscribe(t, 0, "cmd/#", "$aws/things/actuator/shadow/update/accepted")

	// The runtime may not speak for a device.
	s.busPublish(subjects.RuntimePublish, &brokerv1.RoutedMessage{Topic: "cmd/spoofed", Payload: []byte("x"),
		Source: &brokerv1.Endpoint{Kind: brokerv1.EndpointKind_ENDPOINT_KIND_DEVICE, Name: "sensor"}})
	s.busPublish(subjects.RuntimePublish, &brokerv1.RoutedMessage{Topic: "cmd/open", Payload: []byte("valve"),
		Source: &brokerv1.Endpoint{Kind: brokerv1.EndpointKind_ENDPOINT_KIND_FUNCTION, Name: functionARN("ctl")}})
	a.in.expect(t, "cmd/open", "valve")
	s.logs.waitFor(t, "message refused", "from="+subjects.RuntimePublish, "source kind ENDPOINT_KIND_DEVICE")

	// A message on shadow.publish claiming to be the function is the
	// shadow service's, which has no route for cmd/#.
	s.busPublish(subjects.ShadowPublish, &brokerv1.RoutedMessage{Topic: "cmd/close", Payload: []byte("valve"),
		Source: &brokerv1.Endpoint{Kind: brokerv1.EndpointKind_ENDPOINT_KIND_FUNCTION, Name: functionARN("ctl")}})
	s.busPublish(subjects.ShadowPublish, &brokerv1.RoutedMessage{Topic: "$aws/things/actuator/shadow/update/accepted", Payload: []byte(`{"version":2}`)})
	a.in.expect(t, "$aws/things/actuator/shadow/update/accepted", `{"version":2}`)
	a.in.empty(t)
}

// A deployment swaps the table without dropping connections.
func TestDeploymentSwapsTableKeepingConnections(t *testing.T) {
	s := newSuite(t)
	sensor, watcher := s.createDevice("sensor"), s.createDevice("watcher")
	s.deploy(group([]*device{sensor, watcher}, nil, sub{thingARN("sensor"), "t/1", thingARN("watcher")}))
	w := s.mustV5(watcher)
	w.subscribe(t, 1, "t/#")
	p := s.mustV3(sensor)
	p.publish(t, "t/1", 1, "before")
	w.in.expect(t, "t/1", "before")

	s.deploy(group([]*device{sensor, watcher}, nil, sub{thingARN("sensor"), "t/2", thingARN("watcher")}))
	p.publish(t, "t/1", 1, "old route")
	p.publish(t, "t/2", 1, "after")
	w.in.expect(t, "t/2", "after")

	select {
	case <-w.c.Done():
		t.Fatal("the MQTT 5 client was disconnected by the deployment")
	case err := <-p.lost:
		t.Fatalf("the MQTT 3.1.1 client was disconnected by the deployment: %v", err)
	default:
	}
	resp, err := s.api.ListSubscriptions(context.Background(), &brokerv1.ListSubscriptionsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetDeploymentId() != "deploy-2" || len(resp.GetSubscriptions()) != 1 || resp.GetSubscriptions()[0].GetSubject() != "t/2" {
		t.Fatalf("ListSubscriptions = %v", resp)
	}
	// A reset routes nothing, still without dropping anyone.
	s.deployReset()
	p.publish(t, "t/2", 1, "during reset")
	if _, err := s.api.Publish(context.Background(), &brokerv1.PublishRequest{
		Source: &brokerv1.Endpoint{Kind: brokerv1.EndpointKind_ENDPOINT_KIND_DEVICE, Name: "sensor"}, Topic: "t/2"}); status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("Publish with no group deployed: %v, want FailedPrecondition", err)
	}
	s.deploy(group([]*device{sensor, watcher}, nil, sub{thingARN("sensor"), "t/3", thingARN("watcher")}))
	p.publish(t, "t/3", 1, "redeployed")
	w.in.expect(t, "t/3", "redeployed")
	if !p.c.IsConnected() {
		t.Fatal("the deployments disconnected the publisher")
	}
}

// QoS 1 from and to devices, kept for a persistent session while the
// device is away, with MQTT 5 properties carried end to end.
func TestQoS1PersistentSessionAndProperties(t *testing.T) {
	s := newSuite(t)
	sensor, watcher := s.createDevice("sensor"), s.createDevice("watcher")
	s.deploy(group([]*device{sensor, watcher}, nil, sub{thingARN("sensor"), "q/#", thingARN("watcher")}))
	expiry := uint32(300)
	persistent := func() *paho.Connect {
		return &paho.Connect{KeepAlive: 30, CleanStart: false, Properties: &paho.ConnectProperties{SessionExpiryInterval: &expiry}}
	}
	w, _, err := s.connectV5(watcher, "watcher", persistent())
	if err != nil {
		t.Fatal(err)
	}
	w.subscribe(t, 1, "q/#")
	if err := w.c.Disconnect(&paho.Disconnect{}); err != nil {
		t.Fatal(err)
	}
	bustest.CheckFor(t, within, 20*time.Millisecond, func() error {
		resp, err := s.api.ListClients(context.Background(), &brokerv1.ListClientsRequest{})
		if err != nil || len(resp.GetClients()) != 0 {
			return fmt.Errorf("clients %v (err %v)", resp.GetClients(), err)
		}
		return nil
	})

	p := s.mustV5(sensor)
	for _, n := range []string{"1", "2", "3"} {
		p.publish(t, &paho.Publish{Topic: "q/" + n, QoS: 1, Payload: []byte(n), Properties: &paho.PublishProperties{
			ContentType: "text/plain", CorrelationData: []byte("c" + n), User: paho.UserProperties{{Key: "k", Value: n}},
		}})
	}
	w2, ack, err := s.connectV5(watcher, "watcher", persistent())
	if err != nil {
		t.Fatal(err)
	}
	if !ack.SessionPresent {
		t.Fatal("session not present on reconnect")
	}
	// mochi resends a session's queued messages ordered by their creation
	// second only (see README.md), so the order within a second is open.
	got := map[string]received{}
	for range 3 {
		m := w2.in.next(t)
		got[m.topic] = m
	}
	for _, n := range []string{"1", "2", "3"} {
		m, ok := got["q/"+n]
		if !ok || m.payload != n || m.qos != 1 {
			t.Fatalf("q/%s: got %+v (ok %v), want payload %s at QoS 1", n, m, ok, n)
		}
		if m.props == nil || m.props.ContentType != "text/plain" || string(m.props.CorrelationData) != "c"+n || m.props.User.Get("k") != n {
			t.Fatalf("q/%s properties %+v", n, m.props)
		}
	}
}

// A will is routed like any publish of the device that set it.
func TestWillIsRouted(t *testing.T) {
	s := newSuite(t)
	dying, watcher := s.createDevice("dying"), s.createDevice("watcher")
	s.deploy(group([]*device{dying, watcher}, nil, sub{thingARN("dying"), "status/#", thingARN("watcher")}))
	w := s.mustV3(watcher)
	w.subscribe(t, 1, "status/#")
	d, _, err := s.connectV5(dying, "dying", &paho.Connect{KeepAlive: 30, CleanStart: true,
		WillMessage: &paho.WillMessage{Topic: "status/dying", Payload: []byte("gone"), QoS: 1, Retain: true}})
	if err != nil {
		t.Fatal(err)
	}
	d.raw.Close() // no DISCONNECT: the will is due
	w.in.expect(t, "status/dying", "gone")
}

// A group the broker cannot apply is refused with a reason naming the
// field, and the table in force stays.
func TestRefusedDeploymentKeepsTable(t *testing.T) {
	s := newSuite(t)
	sensor, watcher := s.createDevice("sensor"), s.createDevice("watcher")
	s.deploy(group([]*device{sensor, watcher}, nil, sub{thingARN("sensor"), "t", thingARN("watcher")}))
	w := s.mustV3(watcher)
	w.subscribe(t, 0, "t")
	p := s.mustV3(sensor)

	bad := group([]*device{sensor, watcher}, nil)
	bad.Functions.Functions = append(bad.Functions.Functions, groupdef.Function{
		Id: "spooler", FunctionArn: "arn:aws:lambda:::function:GGCloudSpooler:1",
		FunctionConfiguration: &groupdef.FunctionConfiguration{Environment: &groupdef.FunctionConfigurationEnvironment{
			Variables: map[string]string{"GG_CONFIG_MAX_SIZE_BYTES": "1000"},
		}},
	})
	res := s.tryDeploy(bad)
	if res.GetOk() || !strings.Contains(res.GetReason(), "GG_CONFIG_MAX_SIZE_BYTES") {
		t.Fatalf("deployment with a 1000-byte spooler: ok=%v reason %q", res.GetOk(), res.GetReason())
	}
	p.publish(t, "t", 0, "still routed")
	w.in.expect(t, "t", "still routed")
}
