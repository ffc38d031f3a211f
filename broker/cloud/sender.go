package cloud

import (
	"context"
	"errors"
	"fmt"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/evergreen-edge/evergreen/services/kit/errdefs"
)

// maxAttempts is how many times a message may fail on its own (sent alone,
// see send) before it is dropped and counted.
const maxAttempts = 5

// flight is a publish awaiting its PUBACK.
type flight struct {
	seq      uint64
	topic    string
	tok      mqtt.Token
	deadline time.Time
}

// send is the sender goroutine. It publishes the spool's messages in Seq
// order on the primary connection at QoS 1, with up to MaxInflight awaiting
// their PUBACK, and acks the spool as the PUBACKs come back, oldest first.
//
// Everything unacked is sent again, in order, on the next connection after
// a failure (connection lost, or no PUBACK within mqttOperationTimeout,
// which drops the connection since MQTT 3.1.1 resends only on reconnect).
// So order per topic holds, and a message is delivered at least once.
//
// A message the cloud refuses makes AWS IoT drop the connection. To find it
// without blaming its neighbours: the messages in flight at a failure are
// suspects; if a second failure comes before every suspect is acked, the
// suspects are sent one at a time, and each failure is then charged to the
// one message in flight. After maxAttempts the message is dropped, so it
// never blocks the queue behind it for good. A plain outage costs one
// failure and no serial phase.
func (c *Cloud) send(ctx context.Context) {
	defer c.wg.Done()
	var (
		sess     *session
		fl       []flight
		after    uint64 // the last Seq sent on this connection
		gen      uint64
		suspects uint64 // the last Seq in flight at an unresolved failure
		serial   bool
		attempts = map[uint64]int{}
	)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()

	forget := func() {
		fl, after = fl[:0], 0
		c.inflight.Store(0)
	}
	// failed handles the end of sess while fl was in flight.
	failed := func(sp *spool, why error) {
		sess.end(why)
		if len(fl) == 0 {
			return
		}
		if errors.Is(why, errReconfigured) || errors.Is(why, errStopping) {
			forget() // we closed it: nothing to blame
			return
		}
		last := fl[len(fl)-1].seq
		switch {
		case serial:
			head := fl[0]
			attempts[head.seq]++
			if n := attempts[head.seq]; n >= maxAttempts {
				delete(attempts, head.seq)
				if err := sp.Ack(head.seq); err == nil {
					c.failed.Add(1)
					c.log.Warn("dropped a cloud message after repeated failures", "topic", head.topic, "attempts", n, "err", describe(why))
				}
			}
		case suspects != 0:
			serial = true
		}
		suspects = max(suspects, last)
		forget()
	}

	for {
		sp, g, window := c.snapshot()
		if g != gen {
			// The spool was replaced: its messages have new Seqs.
			gen, suspects, serial = g, 0, false
			clear(attempts)
			forget()
		}
		if sess != nil && sess.ended() {
			if len(fl) > 0 {
				failed(sp, sess.reason())
			}
			sess = nil
			forget()
		}
		s := c.primary.Load()
		if s != nil && s.ended() {
			s = nil // the link is about to replace it, and will wake us
		}
		if s != sess {
			sess = s
			forget()
		}

		if sess != nil {
			if suspects != 0 && len(fl) == 0 {
				if head := sp.peekAfter(0, 1); len(head) == 0 || head[0].Seq > suspects {
					suspects, serial = 0, false // the suspects are gone (dropped for room)
				}
			}
			if serial {
				window = 1
			}
			for len(fl) < window {
				msgs := sp.peekAfter(after, min(window-len(fl), 64))
				if len(msgs) == 0 {
					break
				}
				for _, m := range msgs {
					tok := sess.client.Publish(m.Topic, 1, false, m.Payload)
					fl = append(fl, flight{seq: m.Seq, topic: m.Topic, tok: tok, deadline: time.Now().Add(c.opTimeout)})
					after = m.Seq
				}
			}
			c.inflight.Store(int64(len(fl)))
		}

		var headDone, ending <-chan struct{}
		if len(fl) > 0 {
			headDone = fl[0].tok.Done()
			timer.Reset(time.Until(fl[0].deadline))
		} else {
			timer.Stop()
		}
		if sess != nil {
			ending = sess.ending
		}
		select {
		case <-ctx.Done():
			return
		case <-c.wake:
		case <-ending:
		case <-timer.C:
			failed(sp, fmt.Errorf("no PUBACK for a message to %q within %s", fl[0].topic, c.opTimeout))
		case <-headDone:
			f := fl[0]
			if err := f.tok.Error(); err != nil {
				failed(sp, fmt.Errorf("publish to %q: %w", f.topic, err))
				continue
			}
			fl = fl[1:]
			sess.acked.Store(true)
			c.sent.Add(1)
			delete(attempts, f.seq)
			if suspects != 0 && f.seq >= suspects {
				suspects, serial = 0, false
			}
			// NotFound: dropped for room meanwhile; FailedPrecondition: the
			// spool was replaced and the message goes again from the new one.
			if err := sp.Ack(f.seq); err != nil && !errors.Is(err, errdefs.ErrNotFound) && !errors.Is(err, errdefs.ErrFailedPrecondition) {
				c.log.Warn("cloud spool ack failed", "err", err)
			}
			c.inflight.Store(int64(len(fl)))
		}
	}
}
