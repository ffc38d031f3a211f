package broker

import (
	"context"
	"fmt"
	"github.com/evergreen-edge/evergreen/services/kit/bustest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/evergreen-edge/evergreen/broker/mqtt"
)

// Reason codes of a refused publish (MQTT 5 DISCONNECT).
const (
	v5TopicNameInvalid = 0x90
	v5PacketTooLarge   = 0x95
	v5ProtocolError    = 0x82
)

// expectKicked waits for the server to end c's connection with code.
func expectKicked(t *testing.T, c *v5, code byte) {
	t.Helper()
	select {
	case d := <-c.disconnected:
		if d.ReasonCode != code {
			t.Fatalf("DISCONNECT reason 0x%x, want 0x%x", d.ReasonCode, code)
		}
	case <-time.After(within):
		t.Fatalf("no DISCONNECT 0x%x from the server", code)
	}
}

// publishNoWait sends a QoS 0 publish; the server may drop the connection
// right after.
func publishNoWait(c *v5, topic string, payload []byte) {
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	c.c.Publish(ctx, &paho.Publish{Topic: topic, QoS: 0, Payload: payload})
}

func TestPayloadLimit(t *testing.T) {
	s := newSuite(t)
	sensor, watcher := s.createDevice("sensor"), s.createDevice("watcher")
	s.deploy(group([]*device{sensor, watcher}, nil, sub{thingARN("sensor"), "#", thingARN("watcher")}))
	w := s.mustV3(watcher)
	w.subscribe(t, 0, "#")

	p := s.mustV5(sensor)
	atLimit := strings.Repeat("a", mqtt.MaxPayload)
	p.publish(t, &paho.Publish{Topic: "big", QoS: 1, Payload: []byte(atLimit)})
	if m := w.in.next(t); m.topic != "big" || len(m.payload) != mqtt.MaxPayload {
		t.Fatalf("got %q with %d bytes, want big with %d", m.topic, len(m.payload), mqtt.MaxPayload)
	}
	publishNoWait(p, "too-big", []byte(atLimit+"a"))
	expectKicked(t, p, v5PacketTooLarge)
	s.logs.waitFor(t, "publish refused", "device=sensor", "131073 bytes is over the 128 KB limit")

	// MQTT 3.1.1 has no DISCONNECT from the server: the connection ends.
	p3 := s.mustV3(sensor)
	p3.c.Publish("too-big", 0, false, atLimit+"a")
	select {
	case <-p3.lost:
	case <-time.After(within):
		t.Fatal("an MQTT 3.1.1 client that sent 128 KB + 1 is still connected")
	}
	// Far over the limit the packet is refused before it is read.
	p3 = s.mustV3(sensor)
	p3.c.Publish("huge", 0, false, strings.Repeat("h", 4*mqtt.MaxPayload))
	select {
	case <-p3.lost:
	case <-time.After(within):
		t.Fatal("an MQTT 3.1.1 client that sent 512 KB is still connected")
	}
	p = s.mustV5(sensor)
	p.publish(t, &paho.Publish{Topic: "after", QoS: 1, Payload: []byte("small")})
	w.in.expect(t, "after", "small")
}

func TestWildcardPublishRefused(t *testing.T) {
	s := newSuite(t)
	sensor, watcher := s.createDevice("sensor"), s.createDevice("watcher")
	s.deploy(group([]*device{sensor, watcher}, nil, sub{thingARN("sensor"), "#", thingARN("watcher")}))
	w := s.mustV5(watcher)
	w.subscribe(t, 0, "#")

	p3 := s.mustV3(sensor)
	p3.c.Publish("a/+", 0, false, "wild")
	select {
	case <-p3.lost:
	case <-time.After(within):
		t.Fatal("an MQTT 3.1.1 client publishing to a/+ is still connected")
	}
	p := s.mustV5(sensor)
	publishNoWait(p, "a/#", []byte("wild"))
	expectKicked(t, p, v5ProtocolError)

	p = s.mustV5(sensor)
	p.publish(t, &paho.Publish{Topic: "a/b", QoS: 1, Payload: []byte("tame")})
	w.in.expect(t, "a/b", "tame")
}

func TestTopicLimits(t *testing.T) {
	s := newSuite(t)
	sensor, watcher := s.createDevice("sensor"), s.createDevice("watcher")
	s.deploy(group([]*device{sensor, watcher}, nil, sub{thingARN("sensor"), "#", thingARN("watcher")}))
	w := s.mustV5(watcher)
	w.subscribe(t, 0, "#")

	long256 := "t/" + strings.Repeat("x", 254)
	slashes7 := "a/b/c/d/e/f/g/h"
	for _, tc := range []struct {
		name, topic string
		ok          bool
	}{
		{"256 bytes", long256, true},
		{"257 bytes", long256 + "x", false},
		{"7 slashes", slashes7, true},
		{"8 slashes", slashes7 + "/i", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := s.mustV5(sensor)
			if tc.ok {
				p.publish(t, &paho.Publish{Topic: tc.topic, QoS: 1, Payload: []byte("ok")})
				w.in.expect(t, tc.topic, "ok")
				return
			}
			publishNoWait(p, tc.topic, []byte("refused"))
			expectKicked(t, p, v5TopicNameInvalid)
			// Nothing of it reached the watcher: the next message it gets
			// is the one sent after.
			p = s.mustV5(sensor)
			p.publish(t, &paho.Publish{Topic: "after/" + strings.ReplaceAll(tc.name, " ", "-"), QoS: 1, Payload: []byte("next")})
			w.in.expect(t, "after/"+strings.ReplaceAll(tc.name, " ", "-"), "next")
		})
	}
	s.logs.waitFor(t, "publish refused", "topic is 257 bytes, the limit is 256")
	s.logs.waitFor(t, "publish refused", "topic has 8 slashes, the limit is 7")
}

// A device publishing QoS 0 in a tight loop does not keep another
// device's messages from arriving promptly.
func TestFloodingDeviceDoesNotStarveOthers(t *testing.T) {
	s := newSuite(t)
	flooder, sink, sensor, watcher := s.createDevice("flooder"), s.createDevice("sink"), s.createDevice("sensor"), s.createDevice("watcher")
	s.deploy(group([]*device{flooder, sink, sensor, watcher}, nil,
		sub{thingARN("flooder"), "flood/#", thingARN("sink")},
		sub{thingARN("sensor"), "ok/#", thingARN("watcher")},
	))
	var sunk atomic.Int64
	sk := s.mustV5(sink)
	sk.c.AddOnPublishReceived(func(paho.PublishReceived) (bool, error) { sunk.Add(1); return true, nil })
	sk.subscribe(t, 0, "flood/#")
	// The watcher subscribes to the flood's topics too; the table sends it
	// only the sensor's.
	w := s.mustV5(watcher)
	okMsgs := make(chan received, 64)
	w.c.AddOnPublishReceived(func(pr paho.PublishReceived) (bool, error) {
		if strings.HasPrefix(pr.Packet.Topic, "ok/") {
			okMsgs <- received{topic: pr.Packet.Topic, payload: string(pr.Packet.Payload)}
		}
		return true, nil
	})
	w.subscribe(t, 0, "flood/#", "ok/#")

	f := s.mustV3(flooder)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		payload := strings.Repeat("f", 512)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			f.c.Publish(fmt.Sprintf("flood/%d", i%16), 0, false, payload)
		}
	}()
	defer func() { close(stop); wg.Wait() }()
	bustest.CheckFor(t, within, 10*time.Millisecond, func() error {
		if n := sunk.Load(); n < 1000 {
			return fmt.Errorf("the flood has not started (%d messages sunk)", n)
		}
		return nil
	})

	p := s.mustV5(sensor)
	const bound = 3 * time.Second
	for i := range 20 {
		want := fmt.Sprintf("ok/%d", i)
		p.publish(t, &paho.Publish{Topic: want, QoS: 1, Payload: []byte("fine")})
		select {
		case m := <-okMsgs:
			if m.topic != want || m.payload != "fine" {
				t.Fatalf("got %s, want %s", m.topic, want)
			}
		case <-time.After(bound):
			t.Fatalf("%s took more than %v during the flood (%d flood messages sunk so far)", want, bound, sunk.Load())
		}
	}
	if !f.c.IsConnected() {
		t.Fatal("the flooder was disconnected; it should only be slowed down")
	}
}
