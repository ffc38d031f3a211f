package shadow_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	brokerv1 "github.com/evergreen-edge/evergreen/proto/evergreen/broker/v1"
	shadowv1 "github.com/evergreen-edge/evergreen/proto/evergreen/shadow/v1"
	"github.com/evergreen-edge/evergreen/services/kit/bustest"
	"github.com/evergreen-edge/evergreen/services/kit/subjects"
	"github.com/evergreen-edge/evergreen/shadow"
	"github.com/evergreen-edge/evergreen/shadow/store"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), within)
	t.Cleanup(cancel)
	return c
}

func TestAPIUpdateGetDeleteList(t *testing.T) {
	s := newSuite(t, testGroup())
	s.start()
	bt := s.tap(subjects.ShadowPublish)
	c := ctx(t)

	d, err := s.api.Update(c, &shadowv1.UpdateRequest{Thing: "lamp", Document: []byte(`{"state":{"desired":{"color":"red","level":3}},"clientToken":"t1"}`)})
	if err != nil {
		t.Fatal(err)
	}
	acc := decode(t, d.GetDocument())
	if d.GetVersion() != 1 || at(acc, "version") != json.Number("1") || at(acc, "clientToken") != "t1" || at(acc, "state", "desired", "color") != "red" {
		t.Fatalf("update accepted = %s (version %d)", d.GetDocument(), d.GetVersion())
	}
	// An accepted API update is published for the group too.
	s.waitTopic(bt, "$aws/things/lamp/shadow/update/accepted", 1)
	delta := s.waitTopic(bt, "$aws/things/lamp/shadow/update/delta", 1)
	if got := decode(t, delta[0].GetPayload()); at(got, "state", "color") != "red" || at(got, "state", "level") != json.Number("3") {
		t.Fatalf("delta = %s", delta[0].GetPayload())
	}
	s.waitTopic(bt, "$aws/things/lamp/shadow/update/documents", 1)

	d, err = s.api.Get(c, &shadowv1.GetRequest{Thing: "lamp"})
	if err != nil {
		t.Fatal(err)
	}
	got := decode(t, d.GetDocument())
	if at(got, "state", "delta", "level") != json.Number("3") || at(got, "metadata", "desired", "color", "timestamp") == nil {
		t.Fatalf("get = %s", d.GetDocument())
	}

	// Reported catches up: no delta left.
	if _, err := s.api.Update(c, &shadowv1.UpdateRequest{Thing: "lamp", Document: []byte(`{"state":{"reported":{"color":"red","level":3}}}`)}); err != nil {
		t.Fatal(err)
	}
	d, _ = s.api.Get(c, &shadowv1.GetRequest{Thing: "lamp"})
	if got := decode(t, d.GetDocument()); at(got, "state", "delta") != nil || d.GetVersion() != 2 {
		t.Fatalf("after reported: %s", d.GetDocument())
	}

	// A named shadow of the same thing is separate.
	if _, err := s.api.Update(c, &shadowv1.UpdateRequest{Thing: "lamp", Name: "config", Document: []byte(`{"state":{"reported":{"fw":"1.2"}}}`)}); err != nil {
		t.Fatal(err)
	}
	s.waitTopic(bt, "$aws/things/lamp/shadow/name/config/update/accepted", 1)
	l, err := s.api.List(c, &shadowv1.ListRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(l.GetShadows()) != 2 || l.GetShadows()[0].GetName() != "" || l.GetShadows()[1].GetName() != "config" || l.GetShadows()[0].GetVersion() != 2 {
		t.Fatalf("list = %v", l)
	}

	// Delete keeps the numbering.
	d, err = s.api.Delete(c, &shadowv1.DeleteRequest{Thing: "lamp"})
	if err != nil {
		t.Fatal(err)
	}
	if d.GetVersion() != 2 {
		t.Fatalf("delete accepted = %s", d.GetDocument())
	}
	s.waitTopic(bt, "$aws/things/lamp/shadow/delete/accepted", 1)
	_, err = s.api.Get(c, &shadowv1.GetRequest{Thing: "lamp"})
	if status.Code(err) != codes.NotFound || !strings.Contains(status.Convert(err).Message(), "404 No shadow exists with name: 'lamp'") {
		t.Fatalf("get after delete: %v", err)
	}
	d, err = s.api.Update(c, &shadowv1.UpdateRequest{Thing: "lamp", Document: []byte(`{"state":{"reported":{"on":true}}}`)})
	if err != nil || d.GetVersion() != 3 {
		t.Fatalf("update after delete: version %d, %v", d.GetVersion(), err)
	}
	l, _ = s.api.List(c, &shadowv1.ListRequest{Thing: "sensor"})
	if len(l.GetShadows()) != 0 {
		t.Fatalf("list sensor = %v", l)
	}
}

func TestAPIErrors(t *testing.T) {
	s := newSuite(t, testGroup())
	s.start()
	c := ctx(t)
	if _, err := s.api.Update(c, &shadowv1.UpdateRequest{Thing: "lamp", Document: []byte(`{"state":{"reported":{"a":1}}}`)}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		call func() error
		code codes.Code
		msg  string
	}{
		{"thing not in the group", func() error {
			_, err := s.api.Get(c, &shadowv1.GetRequest{Thing: "stranger"})
			return err
		}, codes.NotFound, "404 Thing not found"},
		{"missing shadow", func() error {
			_, err := s.api.Get(c, &shadowv1.GetRequest{Thing: "sensor"})
			return err
		}, codes.NotFound, "404 No shadow exists with name: 'sensor'"},
		{"missing named shadow", func() error {
			_, err := s.api.Get(c, &shadowv1.GetRequest{Thing: "lamp", Name: "nope"})
			return err
		}, codes.NotFound, "404 No shadow exists with name: 'nope'"},
		{"invalid JSON", func() error {
			_, err := s.api.Update(c, &shadowv1.UpdateRequest{Thing: "lamp", Document: []byte(`{"state":`)})
			return err
		}, codes.InvalidArgument, "400 Invalid JSON"},
		{"missing state", func() error {
			_, err := s.api.Update(c, &shadowv1.UpdateRequest{Thing: "lamp", Document: []byte(`{"clientToken":"x"}`)})
			return err
		}, codes.InvalidArgument, "400 Missing required node: state"},
		{"version conflict", func() error {
			_, err := s.api.Update(c, &shadowv1.UpdateRequest{Thing: "lamp", Document: []byte(`{"state":{"reported":{"a":2}},"version":7}`)})
			return err
		}, codes.Aborted, "409 Version conflict"},
		{"too large", func() error {
			_, err := s.api.Update(c, &shadowv1.UpdateRequest{Thing: "lamp", Document: []byte(`{"state":{"reported":{"a":"` + strings.Repeat("x", 9000) + `"}}}`)})
			return err
		}, codes.InvalidArgument, "413 The payload exceeds the maximum size allowed"},
		{"bad thing name", func() error {
			_, err := s.api.Get(c, &shadowv1.GetRequest{Thing: "a/b"})
			return err
		}, codes.InvalidArgument, "thing:"},
		{"bad shadow name", func() error {
			_, err := s.api.Get(c, &shadowv1.GetRequest{Thing: "lamp", Name: "no spaces"})
			return err
		}, codes.InvalidArgument, "name:"},
		{"delete missing", func() error {
			_, err := s.api.Delete(c, &shadowv1.DeleteRequest{Thing: "sensor"})
			return err
		}, codes.NotFound, "404 No shadow exists with name: 'sensor'"},
	} {
		err := tc.call()
		if status.Code(err) != tc.code || !strings.HasPrefix(status.Convert(err).Message(), tc.msg) {
			t.Errorf("%s: got %v, want %s %q", tc.name, err, tc.code, tc.msg)
		}
	}
	// Nothing refused changed the shadow.
	d, err := s.api.Get(c, &shadowv1.GetRequest{Thing: "lamp"})
	if err != nil || d.GetVersion() != 1 {
		t.Fatalf("after refusals: version %d, %v", d.GetVersion(), err)
	}
}

func TestRoutedRequests(t *testing.T) {
	s := newSuite(t, testGroup())
	s.start()
	bt := s.tap(subjects.ShadowPublish)

	s.deliver(device("lamp"), "$aws/things/lamp/shadow/update", `{"state":{"desired":{"on":true}},"clientToken":"c1"}`)
	acc := s.waitTopic(bt, "$aws/things/lamp/shadow/update/accepted", 1)
	if got := decode(t, acc[0].GetPayload()); at(got, "clientToken") != "c1" || at(got, "version") != json.Number("1") {
		t.Fatalf("accepted = %s", acc[0].GetPayload())
	}
	if acc[0].GetSource().GetKind() != brokerv1.EndpointKind_ENDPOINT_KIND_SHADOW {
		t.Fatalf("source = %v", acc[0].GetSource())
	}
	s.waitTopic(bt, "$aws/things/lamp/shadow/update/delta", 1)
	s.waitTopic(bt, "$aws/things/lamp/shadow/update/documents", 1)
	// accepted, then delta, then documents.
	var order []string
	for _, m := range bt.snapshot() {
		order = append(order, m.GetTopic()[strings.LastIndex(m.GetTopic()[:strings.LastIndex(m.GetTopic(), "/")], "/")+1:])
	}
	if strings.Join(order, ",") != "update/accepted,update/delta,update/documents" {
		t.Fatalf("order = %v", order)
	}

	s.deliver(device("sensor"), "$aws/things/lamp/shadow/update", `{"state":{"desired":{"on":`)
	rej := s.waitTopic(bt, "$aws/things/lamp/shadow/update/rejected", 1)
	if got := decode(t, rej[0].GetPayload()); at(got, "code") != json.Number("400") || at(got, "message") != "Invalid JSON" {
		t.Fatalf("rejected = %s", rej[0].GetPayload())
	}

	s.deliver(device("lamp"), "$aws/things/lamp/shadow/get", `{"clientToken":"g1"}`)
	get := s.waitTopic(bt, "$aws/things/lamp/shadow/get/accepted", 1)
	if got := decode(t, get[0].GetPayload()); at(got, "state", "delta", "on") != true || at(got, "clientToken") != "g1" {
		t.Fatalf("get accepted = %s", get[0].GetPayload())
	}
	s.deliver(device("lamp"), "$aws/things/sensor/shadow/get", ``)
	s.waitTopic(bt, "$aws/things/sensor/shadow/get/rejected", 1)
	s.deliver(device("lamp"), "$aws/things/stranger/shadow/update", `{"state":{}}`)
	rej = s.waitTopic(bt, "$aws/things/stranger/shadow/update/rejected", 1)
	if got := decode(t, rej[0].GetPayload()); at(got, "code") != json.Number("404") || at(got, "message") != "Thing not found" {
		t.Fatalf("stranger rejected = %s", rej[0].GetPayload())
	}

	// Named shadows on their topics.
	s.deliver(device("lamp"), "$aws/things/lamp/shadow/name/cfg/update", `{"state":{"reported":{"v":1}}}`)
	s.waitTopic(bt, "$aws/things/lamp/shadow/name/cfg/update/accepted", 1)
	s.deliver(device("lamp"), "$aws/things/lamp/shadow/name/cfg/delete", ``)
	del := s.waitTopic(bt, "$aws/things/lamp/shadow/name/cfg/delete/accepted", 1)
	if got := decode(t, del[0].GetPayload()); at(got, "version") != json.Number("1") {
		t.Fatalf("delete accepted = %s", del[0].GetPayload())
	}

	// Topics that are no request are dropped, nothing answers them.
	n := len(bt.snapshot())
	s.deliver(device("lamp"), "$aws/things/lamp/shadow/update/accepted", `{}`)
	s.deliver(device("lamp"), "$aws/things/lamp/shadow/list", `{}`)
	s.deliver(device("lamp"), "hello/world", `{}`)
	s.deliver(device("lamp"), "$aws/things/lamp/shadow/get", ``) // a marker after them
	s.waitTopic(bt, "$aws/things/lamp/shadow/get/accepted", 2)
	if got := len(bt.snapshot()); got != n+1 {
		t.Fatalf("%d answers to non-requests: %v", got-n-1, topics(bt.snapshot()[n:]))
	}
}

// TestInFlightLimit sends 60 updates at once from one device: those beyond
// 10 in flight get 429, the others are applied in order with contiguous
// versions; another device is not held back.
func TestInFlightLimit(t *testing.T) {
	s := newSuite(t, testGroup())
	s.start()
	bt := s.tap(subjects.ShadowPublish)
	const n = 60
	for i := 1; i <= n; i++ {
		s.deliver(device("lamp"), "$aws/things/lamp/shadow/update", fmt.Sprintf(`{"state":{"reported":{"i":%d}},"clientToken":"t%d"}`, i, i))
	}
	s.deliver(device("sensor"), "$aws/things/sensor/shadow/update", `{"state":{"reported":{"ok":true}}}`)
	var accepted, tooMany int
	bustest.CheckFor(t, within, 20*time.Millisecond, func() error {
		accepted, tooMany = 0, 0
		for _, m := range bt.snapshot() {
			switch m.GetTopic() {
			case "$aws/things/lamp/shadow/update/accepted":
				accepted++
			case "$aws/things/lamp/shadow/update/rejected":
				got := decode(t, m.GetPayload())
				if at(got, "code") != json.Number("429") || at(got, "message") != "Too Many Requests" || !strings.HasPrefix(at(got, "clientToken").(string), "t") {
					return fmt.Errorf("unexpected rejection %s", m.GetPayload())
				}
				tooMany++
			}
		}
		if accepted+tooMany < n {
			return fmt.Errorf("%d accepted + %d refused of %d", accepted, tooMany, n)
		}
		return nil
	})
	if tooMany == 0 || accepted < MaxInFlight {
		t.Fatalf("%d accepted, %d refused with 429: the limit did not apply", accepted, tooMany)
	}
	s.waitTopic(bt, "$aws/things/sensor/shadow/update/accepted", 1)
	d, err := s.api.Get(ctx(t), &shadowv1.GetRequest{Thing: "lamp"})
	if err != nil || d.GetVersion() != int64(accepted) {
		t.Fatalf("version %d after %d accepted updates (%v)", d.GetVersion(), accepted, err)
	}
}

const MaxInFlight = 10

// TestKill9DuringUpdates SIGKILLs the daemon during a stream of updates:
// every acknowledged update is there after the restart, and the version
// and the data agree (no gap, no lost or half write).
func TestKill9DuringUpdates(t *testing.T) {
	s := newSuite(t, testGroup())
	var lastAcked int64
	for round := 0; round < 3; round++ {
		s.startChild()
		c := ctx(t)
		// What is stored must match its version: reported.n == version.
		d, err := s.api.Get(c, &shadowv1.GetRequest{Thing: "lamp"})
		if round > 0 {
			if err != nil {
				t.Fatalf("round %d: get after kill: %v", round, err)
			}
			got := decode(t, d.GetDocument())
			if d.GetVersion() < lastAcked {
				t.Fatalf("round %d: version %d after restart, %d was acknowledged", round, d.GetVersion(), lastAcked)
			}
			if at(got, "state", "reported", "n") != json.Number(fmt.Sprint(d.GetVersion())) {
				t.Fatalf("round %d: version %d holds %s", round, d.GetVersion(), d.GetDocument())
			}
			lastAcked = d.GetVersion()
		}
		var wg sync.WaitGroup
		stop := make(chan struct{})
		wg.Add(1)
		go func() {
			defer wg.Done()
			for v := lastAcked + 1; ; v++ {
				select {
				case <-stop:
					return
				default:
				}
				doc := fmt.Sprintf(`{"state":{"reported":{"n":%d}},"version":%d}`, v, v-1)
				d, err := s.api.Update(context.Background(), &shadowv1.UpdateRequest{Thing: "lamp", Document: []byte(doc)})
				if err != nil {
					return // the daemon died under us
				}
				if d.GetVersion() != v {
					t.Errorf("update %d got version %d", v, d.GetVersion())
					return
				}
				lastAcked = v
			}
		}()
		time.Sleep(time.Duration(150+100*round) * time.Millisecond)
		s.killChild()
		close(stop)
		wg.Wait()
		if lastAcked == 0 {
			t.Fatalf("round %d: no update acknowledged before the kill", round)
		}
		t.Logf("round %d: killed after %d acknowledged updates", round, lastAcked)
	}
}

// TestAPIClientLimit: API callers naming a client (the runtime names the
// function) are limited per client; different clients are not.
func TestAPIClientLimit(t *testing.T) {
	s := newSuite(t, testGroup())
	s.start()
	var wg sync.WaitGroup
	var mu sync.Mutex
	codesSeen := map[string]map[codes.Code]int{}
	for _, client := range []string{"fn-a", "fn-b"} {
		codesSeen[client] = map[codes.Code]int{}
		for i := 0; i < 40; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				thing := map[string]string{"fn-a": "lamp", "fn-b": "sensor"}[client]
				_, err := s.api.Update(context.Background(), &shadowv1.UpdateRequest{Thing: thing, Client: client, Document: []byte(`{"state":{"reported":{"x":1}}}`)})
				mu.Lock()
				codesSeen[client][status.Code(err)]++
				mu.Unlock()
				if err != nil && (status.Code(err) != codes.ResourceExhausted || status.Convert(err).Message() != "429 Too Many Requests") {
					t.Errorf("%s: %v", client, err)
				}
			}()
		}
	}
	wg.Wait()
	for client, seen := range codesSeen {
		if seen[codes.OK] < MaxInFlight || seen[codes.OK]+seen[codes.ResourceExhausted] != 40 {
			t.Errorf("%s: %v", client, seen)
		}
	}
	t.Logf("outcomes: %v", codesSeen)
}

// A record that does not decode (a damaged write) does not stop start-up:
// that shadow answers as missing and the next update recreates it; the
// others are intact.
func TestDamagedRecordAtStart(t *testing.T) {
	s := newSuite(t, testGroup())
	s.start()
	if _, err := s.api.Update(ctx(t), &shadowv1.UpdateRequest{Thing: "sensor", Document: []byte(`{"state":{"reported":{"ok":1}}}`)}); err != nil {
		t.Fatal(err)
	}
	s.stop()
	db, _, err := store.Open(store.Options{Dir: s.root.DataDir(shadow.Name) + "/db"})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Put(store.Key{Thing: "lamp"}, []byte(`{"v":1,"shadow":{"format":1,"desi`)); err != nil {
		t.Fatal(err)
	}
	db.Close()
	s.start()
	c := ctx(t)
	if _, err := s.api.Get(c, &shadowv1.GetRequest{Thing: "lamp"}); status.Code(err) != codes.NotFound {
		t.Fatalf("damaged shadow: %v, want NotFound", err)
	}
	d, err := s.api.Update(c, &shadowv1.UpdateRequest{Thing: "lamp", Document: []byte(`{"state":{"reported":{"on":true}}}`)})
	if err != nil || d.GetVersion() != 1 {
		t.Fatalf("update of the damaged shadow: %v %v", d, err)
	}
	if d, err := s.api.Get(c, &shadowv1.GetRequest{Thing: "sensor"}); err != nil || d.GetVersion() != 1 {
		t.Fatalf("intact shadow: %v %v", d, err)
	}
}
