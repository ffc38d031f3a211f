package mqtt

import (
	"errors"
	"strings"
	"testing"
	"time"

	mochi "github.com/mochi-mqtt/server/v2"
)

// Deliver matches the device's own filters (not mochi's topic index), so
// these pin what the index used to decide: overlapping filters give one
// copy at the highest QoS, and subscription changes take effect at once.
func TestDeliverFollowsSubscriptions(t *testing.T) {
	pki := newBenchPKI(t)
	s := benchServer(t, pki, func(*Server, string, Message) {})
	rc := dialRaw(t, pki, s.Addr(), "dev")
	defer rc.c.Close()
	deliver := func(topic string) {
		t.Helper()
		if err := s.Deliver("dev", Message{Topic: topic, Payload: []byte("x"), QoS: 1}); err != nil {
			t.Fatalf("Deliver %s: %v", topic, err)
		}
	}
	// want reads packets until the next publish and checks it; a marker
	// publish on "mark" proves that nothing came before it.
	want := func(topic string, qos byte) {
		t.Helper()
		rc.c.SetReadDeadline(time.Now().Add(within))
		for {
			h, body, err := rc.next()
			if err != nil {
				t.Fatalf("waiting for %s: %v", topic, err)
			}
			if h&0xf0 != 0x30 {
				continue
			}
			tl := int(body[0])<<8 | int(body[1])
			gotTopic, gotQoS := string(body[2:2+tl]), (h>>1)&3
			if gotQoS > 0 {
				rc.send(0x40, body[2+tl:4+tl])
			}
			if gotTopic != topic || gotQoS != qos {
				t.Fatalf("received %s QoS %d, want %s QoS %d", gotTopic, gotQoS, topic, qos)
			}
			return
		}
	}
	rc.subscribe(t, "mark", 0)
	deliver("a/b")
	deliver("mark")
	want("mark", 0) // nothing before the subscription

	rc.subscribe(t, "a/#", 0)
	deliver("a/b")
	want("a/b", 0) // QoS capped by the subscription

	rc.subscribe(t, "a/+", 1)
	deliver("a/b")
	deliver("mark")
	want("a/b", 1) // one copy, the highest QoS
	want("mark", 0)

	rc.send(0xa2, append([]byte{0, 9}, append(mqttString("a/#"), mqttString("a/+")...)...))
	if h, _, err := rc.next(); err != nil || h != 0xb0 {
		t.Fatalf("UNSUBACK: %x %v", h, err)
	}
	deliver("a/b")
	deliver("mark")
	want("mark", 0) // unsubscribed: nothing before the marker
}

const within = 10 * time.Second

// publishToClient is linked by name to mochi's unexported method of the
// same name; its signature was checked against this version only.
func TestMochiVersion(t *testing.T) {
	const checked = "2.7.9"
	if mochi.Version != checked {
		t.Fatalf("mochi %s: check publishToClient (server.go) against its source, then update this test (checked: %s)", mochi.Version, checked)
	}
}

// Room says no once a device that stopped reading has a full write queue,
// and yes for a device that is not connected or not subscribed.
func TestRoom(t *testing.T) {
	pki := newBenchPKI(t)
	s := benchServer(t, pki, func(*Server, string, Message) {})
	rc := dialRaw(t, pki, s.Addr(), "slow")
	defer rc.c.Close()
	rc.subscribe(t, "big/#", 0)
	m := Message{Topic: "big/x", Payload: make([]byte, 256<<10)}
	if err := s.Room("nobody", m); err != nil {
		t.Fatalf("Room of a device not connected: %v", err)
	}
	if err := s.Room("slow", Message{Topic: "other"}); err != nil {
		t.Fatalf("Room for a topic the device did not subscribe to: %v", err)
	}
	// The device reads nothing: the socket buffers fill, then the queue.
	deadline := time.Now().Add(within)
	for n := 0; ; n++ {
		err := s.Room("slow", m)
		if errors.Is(err, ErrNoRoom) {
			if !strings.Contains(err.Error(), "device slow: ") {
				t.Fatalf("Room: %v", err)
			}
			if other := s.Room("slow", Message{Topic: "other"}); other != nil {
				t.Fatalf("Room for an unsubscribed topic of a full device: %v", other)
			}
			return
		}
		if err != nil || time.Now().After(deadline) {
			t.Fatalf("after %d deliveries: Room %v", n, err)
		}
		if err := s.Deliver("slow", m); err != nil {
			t.Fatalf("Deliver %d with room: %v", n, err)
		}
	}
}
