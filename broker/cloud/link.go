package cloud

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/url"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	brokerv1 "github.com/evergreen-edge/evergreen/proto/evergreen/broker/v1"
)

// healthyAfter is how long a connection must last, if nothing was acked on
// it, for its loss to restart the backoff from the beginning. A cloud that
// accepts and then drops us at once keeps backing off.
const healthyAfter = 30 * time.Second

var (
	errReconfigured = errors.New("subscription quality changed")
	errStopping     = errors.New("stopping")
)

// link is one MQTT connection to the cloud: the primary (n = 0), which
// also publishes, or an extra one for subscriptions beyond the first 50. It
// owns its reconnect loop; every connection is a fresh paho client, so no
// state of a dead connection leaks into the next.
type link struct {
	c        *Cloud
	n        int
	clientID string
	cancel   context.CancelFunc
	retired  atomic.Bool

	changed chan struct{} // the desired subscriptions changed
	renew   chan struct{} // reconnect with the current settings

	mu         sync.Mutex
	subs       []string
	state      brokerv1.CloudState
	lastErr    string
	connects   uint64
	reconnects uint64
}

func (c *Cloud) newLink(n int) *link {
	return &link{
		c: c, n: n, clientID: c.clientID(n),
		changed: make(chan struct{}, 1),
		renew:   make(chan struct{}, 1),
		state:   brokerv1.CloudState_CLOUD_STATE_DISCONNECTED,
	}
}

func (l *link) setSubscriptions(subs []string) {
	l.mu.Lock()
	same := slices.Equal(l.subs, subs)
	l.subs = slices.Clone(subs)
	l.mu.Unlock()
	if !same {
		signal(l.changed)
	}
}

func (l *link) subscriptions() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.subs
}

// retire ends the link: it unsubscribes (so that a persistent session
// forgets its filters) and disconnects.
func (l *link) retire() {
	l.retired.Store(true)
	l.setSubscriptions(nil)
	if l.cancel != nil {
		l.cancel()
	}
}

// reconnect drops the connection so that the next one takes the new
// session settings.
func (l *link) reconnect() {
	signal(l.renew)
}

func (l *link) status() (brokerv1.CloudState, string, uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.state, l.lastErr, l.reconnects
}

func (l *link) setState(s brokerv1.CloudState, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.state = s
	if err != nil {
		l.lastErr = fmt.Sprintf("%s: %s", l.clientID, describe(err))
	}
}

func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// backoff is the wait before the attempt after `failures` failed ones:
// exponential from base, capped, with jitter over its upper half so that a
// fleet of cores does not reconnect in step.
func backoff(failures int, base, limit time.Duration) time.Duration {
	d := base
	for i := 1; i < failures && d < limit; i++ {
		d *= 2
	}
	d = min(d, limit)
	return d/2 + rand.N(d/2+1)
}

func (l *link) run(ctx context.Context) {
	c := l.c
	failures := 0
	for ctx.Err() == nil {
		select {
		case <-l.renew: // the connection about to be made has the new settings
		default:
		}
		l.setState(brokerv1.CloudState_CLOUD_STATE_CONNECTING, nil)
		sess, err := l.connect(ctx)
		if err == nil {
			healthy := l.serve(ctx, sess)
			if ctx.Err() != nil {
				break
			}
			err = sess.reason()
			if healthy {
				failures = 0
			}
			if errors.Is(err, errReconfigured) {
				continue
			}
		}
		if ctx.Err() != nil {
			break
		}
		failures++
		wait := backoff(failures, c.retryBase, c.retryMax)
		l.setState(brokerv1.CloudState_CLOUD_STATE_DISCONNECTED, err)
		c.log.Warn("cloud connection down", "client_id", l.clientID, "endpoint", c.endpoint, "err", describe(err), "retry_in", wait.Round(time.Millisecond))
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
		case <-t.C:
		}
		t.Stop()
	}
	l.setState(brokerv1.CloudState_CLOUD_STATE_DISCONNECTED, nil)
}

// session is one live connection.
type session struct {
	client mqtt.Client
	start  time.Time
	acked  atomic.Bool // a PUBACK arrived: the connection works
	// ending is closed, with why, once the connection must go.
	ending  chan struct{}
	endOnce sync.Once
	why     error
}

func newSession() *session {
	return &session{start: time.Now(), ending: make(chan struct{})}
}

func (s *session) end(why error) {
	s.endOnce.Do(func() {
		s.why = why
		close(s.ending)
	})
}

func (s *session) ended() bool {
	select {
	case <-s.ending:
		return true
	default:
		return false
	}
}

func (s *session) reason() error {
	<-s.ending
	return s.why
}

func (l *link) connect(ctx context.Context) (*session, error) {
	c := l.c
	sess := newSession()
	opts := mqtt.NewClientOptions().
		AddBroker("tls://" + c.endpoint).
		SetClientID(l.clientID).
		SetCleanSession(!c.persistent()).
		SetKeepAlive(c.keepAlive).
		SetPingTimeout(c.opTimeout).
		SetConnectTimeout(c.opTimeout).
		SetWriteTimeout(c.opTimeout).
		SetAutoReconnect(false).
		SetConnectRetry(false).
		SetResumeSubs(false).
		SetOrderMatters(true).
		SetDefaultPublishHandler(func(_ mqtt.Client, m mqtt.Message) { c.deliver(m.Topic(), m.Payload()) }).
		SetConnectionLostHandler(func(_ mqtt.Client, err error) { sess.end(fmt.Errorf("connection lost: %w", err)) }).
		SetCustomOpenConnectionFn(func(*url.URL, mqtt.ClientOptions) (net.Conn, error) { return c.open(ctx) })
	client := mqtt.NewClient(opts)
	tok := client.Connect()
	select {
	case <-tok.Done():
	case <-ctx.Done():
		// The dial gives up with ctx; a CONNACK still on its way is
		// bounded by the connect timeout. Either way, leave nothing open.
		tok.WaitTimeout(c.opTimeout)
		client.Disconnect(0)
		return nil, ctx.Err()
	}
	if err := tok.Error(); err != nil {
		return nil, err
	}
	sess.client = client
	return sess, nil
}

// open dials the cloud (through the proxy, if any) and does the TLS
// handshake within the operation timeout.
func (c *Cloud) open(ctx context.Context) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, c.opTimeout)
	defer cancel()
	raw, err := c.dialer.dial(ctx, c.endpoint)
	if err != nil {
		return nil, err
	}
	conn := tls.Client(raw, c.tls)
	if err := conn.HandshakeContext(ctx); err != nil {
		raw.Close()
		return nil, fmt.Errorf("TLS handshake with %s: %w", c.endpoint, err)
	}
	return conn, nil
}

// serve runs one connection until it ends, keeping its subscriptions in
// step with the desired ones. It reports whether the connection proved
// healthy.
func (l *link) serve(ctx context.Context, sess *session) bool {
	c := l.c
	l.mu.Lock()
	l.state = brokerv1.CloudState_CLOUD_STATE_CONNECTED
	l.lastErr = ""
	l.connects++
	if l.connects > 1 {
		l.reconnects++
	}
	l.mu.Unlock()
	c.log.Info("cloud connected", "client_id", l.clientID, "endpoint", c.endpoint)
	if l.n == 0 {
		c.primary.Store(sess)
		c.poke()
	}
	applied := map[string]byte{}
	defer func() {
		if l.n == 0 {
			c.primary.CompareAndSwap(sess, nil)
			c.poke()
		}
		// Say goodbye (DISCONNECT) unless the connection is already
		// broken.
		quiesce := uint(250)
		if sess.ended() && !errors.Is(sess.why, errReconfigured) {
			quiesce = 0
		}
		sess.end(errStopping)
		sess.client.Disconnect(quiesce)
	}()
	if err := l.subscribe(sess, applied); err != nil {
		sess.end(err)
		return false
	}
	c.ready()
	for {
		select {
		case <-ctx.Done():
			if l.retired.Load() && len(applied) > 0 && c.persistent() {
				// A persistent session outlives the connection: empty it.
				l.subscribe(sess, applied)
			}
			return false
		case <-sess.ending:
			return sess.acked.Load() || time.Since(sess.start) >= healthyAfter
		case <-l.renew:
			sess.end(errReconfigured)
			return true
		case <-l.changed:
			if err := l.subscribe(sess, applied); err != nil {
				sess.end(err)
				return false
			}
			c.ready()
		}
	}
}

// subscribe brings the connection's subscriptions to the desired ones.
// A filter the cloud refuses (return code 0x80, as AWS IoT answers one its
// policy denies) is logged and tried again on the next change or connection;
// a SUBSCRIBE that gets no answer ends the connection.
func (l *link) subscribe(sess *session, applied map[string]byte) error {
	c := l.c
	qos := byte(0)
	if c.persistent() {
		qos = 1
	}
	want := map[string]bool{}
	for _, s := range l.subscriptions() {
		want[s] = true
	}
	var drop, add []string
	for f, q := range applied {
		if !want[f] || q != qos {
			drop = append(drop, f)
		}
	}
	for _, f := range l.subscriptions() {
		if q, ok := applied[f]; !ok || q != qos {
			add = append(add, f)
		}
	}
	slices.Sort(drop)
	for len(drop) > 0 {
		batch := drop[:min(subscribeBatch, len(drop))]
		drop = drop[len(batch):]
		if err := l.wait(sess.client.Unsubscribe(batch...), "UNSUBSCRIBE"); err != nil {
			return err
		}
		for _, f := range batch {
			delete(applied, f)
		}
	}
	for len(add) > 0 {
		batch := add[:min(subscribeBatch, len(add))]
		add = add[len(batch):]
		filters := make(map[string]byte, len(batch))
		for _, f := range batch {
			filters[f] = qos
		}
		tok := sess.client.SubscribeMultiple(filters, nil)
		if err := l.wait(tok, "SUBSCRIBE"); err != nil {
			return err
		}
		granted := tok.(*mqtt.SubscribeToken).Result()
		for _, f := range batch {
			if g, ok := granted[f]; !ok || g > 2 {
				err := fmt.Errorf("the cloud refused the subscription to %q", f)
				l.setState(brokerv1.CloudState_CLOUD_STATE_CONNECTED, err)
				c.log.Warn("cloud subscription refused", "client_id", l.clientID, "filter", f)
				continue
			}
			applied[f] = qos
		}
	}
	return nil
}

func (l *link) wait(tok mqtt.Token, what string) error {
	if !tok.WaitTimeout(l.c.opTimeout) {
		return fmt.Errorf("no answer to %s within %s", what, l.c.opTimeout)
	}
	if err := tok.Error(); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return nil
}
