package runtime_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	brokerv1 "github.com/evergreen-edge/evergreen/proto/evergreen/broker/v1"
	runtimev1 "github.com/evergreen-edge/evergreen/proto/evergreen/runtime/v1"
	"github.com/evergreen-edge/evergreen/runtime"
	"github.com/evergreen-edge/evergreen/services/kit/bustest"
	"github.com/evergreen-edge/evergreen/services/kit/config"
	"github.com/evergreen-edge/evergreen/services/kit/subjects"
	"github.com/nats-io/nats.go"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"
)

const sinkARN = "arn:aws:lambda:us-east-1:123456789012:function:sink:1"

// queueFullPolicy AllOrError, the runtime's part (the test answers the
// route plans as the broker would; broker.TestRoutePlan checks the
// broker's): delivered to every target when all have room, to none when
// the broker names a full target or when the functions' queue cannot take
// them all, and 503 when no router answers.
func TestPublishAllOrError(t *testing.T) {
	code := buildEcho(t)
	group := strings.Replace(echoGroup(code, true), `}]}}`, fmt.Sprintf(`},
{"Id":"sink","FunctionArn":%q,"FunctionConfiguration":{"Pinned":true,"Timeout":5,"EncodingType":"binary"},"Evergreen":{"Runtime":"go","Handler":"echo","CodeUri":%q}}]}}`, sinkARN, code), 1)
	r := startRuntime(t, group, func(c *config.Config) { c.Runtime.MaxWorkItemCount = 2 })
	device := &brokerv1.Endpoint{Kind: brokerv1.EndpointKind_ENDPOINT_KIND_DEVICE, Name: "sensor"}
	fn := func(arn string) *brokerv1.Endpoint {
		return &brokerv1.Endpoint{Kind: brokerv1.EndpointKind_ENDPOINT_KIND_FUNCTION, Name: arn}
	}
	var mu sync.Mutex
	var plan *brokerv1.RoutePlan
	var asked []*brokerv1.RoutedMessage
	sub, err := r.nc.Subscribe(subjects.RuntimeRoutePlan, func(m *nats.Msg) {
		rm := &brokerv1.RoutedMessage{}
		proto.Unmarshal(m.Data, rm)
		mu.Lock()
		asked = append(asked, rm)
		b, _ := proto.Marshal(plan)
		mu.Unlock()
		m.Respond(b)
	})
	if err != nil {
		t.Fatal(err)
	}
	r.nc.Flush()
	setPlan := func(p *brokerv1.RoutePlan) { mu.Lock(); plan = p; mu.Unlock() }

	cc, err := grpc.NewClient("unix://"+r.root.Socket(runtime.Name), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	api := runtimev1.NewRuntimeClient(cc)
	invoke := func(fn, payload string) string {
		t.Helper()
		res, err := api.Invoke(context.Background(), &runtimev1.InvokeRequest{Function: fn, Payload: []byte(payload)})
		if err != nil {
			t.Fatalf("invoke %s %s: %v", fn, payload, err)
		}
		return string(res.GetPayload())
	}
	// sinkGot counts what sink republished (echo/out) for topic.
	sinkGot := func(topic string) int {
		n := 0
		for _, m := range r.published() {
			if m.GetTopic() == "echo/out" && m.GetSource().GetName() == sinkARN && strings.HasPrefix(string(m.GetPayload()), topic+"|") {
				n++
			}
		}
		return n
	}
	committed := func(topic string) *brokerv1.RoutedMessage {
		for _, m := range r.published() {
			if m.GetTopic() == topic {
				return m
			}
		}
		return nil
	}

	// Room everywhere: the runtime queues sink itself and hands the
	// broker the message with the plan's targets.
	setPlan(&brokerv1.RoutePlan{Targets: []*brokerv1.Endpoint{device, fn(sinkARN)}})
	if got := invoke("echo", "publish-all:cmd/1"); got != "ok" {
		t.Fatalf("publish with room everywhere: %q", got)
	}
	bustest.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		m := committed("cmd/1")
		if m == nil || len(m.GetTargets()) != 2 || m.GetSource().GetName() != echoARN || sinkGot("cmd/1") != 1 {
			return fmt.Errorf("to the broker %v, sink got %d", m, sinkGot("cmd/1"))
		}
		return nil
	})
	mu.Lock()
	if len(asked) != 1 || asked[0].GetSource().GetName() != echoARN || asked[0].GetTopic() != "cmd/1" || len(asked[0].GetTargets()) != 0 {
		t.Errorf("plan requests: %v", asked)
	}
	mu.Unlock()

	// The broker names a full device: none gets it, the caller hears 429.
	setPlan(&brokerv1.RoutePlan{Targets: []*brokerv1.Endpoint{device, fn(sinkARN)},
		Full: []*brokerv1.FullTarget{{Target: device, Reason: "device sensor: 512 messages waiting to be written"}}})
	if got := invoke("echo", "publish-all:cmd/2"); !strings.HasPrefix(got, "again: ") || !strings.Contains(got, "429") || !strings.Contains(got, "device sensor: 512 messages waiting") {
		t.Fatalf("publish with a full device: %q", got)
	}

	// The functions' queue (maxWorkItemCount 2) cannot take both: sink
	// sleeps on one item with one more queued, so sink's copy would fit
	// and echo's would not; neither is queued.
	if _, err := api.Invoke(context.Background(), &runtimev1.InvokeRequest{Function: "sink", Payload: []byte("sleep:1500"), Event: true}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond) // sink holds it
	if _, err := api.Invoke(context.Background(), &runtimev1.InvokeRequest{Function: "sink", Payload: []byte("sleep:1"), Event: true}); err != nil {
		t.Fatal(err)
	}
	setPlan(&brokerv1.RoutePlan{Targets: []*brokerv1.Endpoint{fn(sinkARN), fn(echoARN), device}})
	if got := invoke("echo", "publish-all:cmd/3"); !strings.HasPrefix(got, "again: ") || !strings.Contains(got, "work queue is full") {
		t.Fatalf("publish with the queue full: %q", got)
	}
	time.Sleep(2 * time.Second) // sink is free again and would have run it
	if n := sinkGot("cmd/3"); n != 0 || committed("cmd/2") != nil || committed("cmd/3") != nil {
		t.Fatalf("refused publishes delivered: sink got %d, broker got %v %v", n, committed("cmd/2"), committed("cmd/3"))
	}

	// No router: 503, nothing delivered.
	sub.Unsubscribe()
	r.nc.Flush()
	if got := invoke("echo", "publish-all:cmd/4"); !strings.HasPrefix(got, "error: ") || !strings.Contains(got, "503") || !strings.Contains(got, "the router did not answer") {
		t.Fatalf("publish without a router: %q", got)
	}
}
