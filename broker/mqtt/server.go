// Package mqtt is the broker's MQTT server for client devices: mochi-mqtt
// (MQTT 3.1.1 and 5) behind a mutual-TLS listener, with hooks that admit
// devices, enforce the v1 limits and take every routing decision away from
// mochi's topic fan-out.
//
// # Target namespaces
//
// mochi delivers a publish to every subscriber whose filter matches its
// topic; Greengrass delivers it only where the group's subscription table
// says. So no device ever subscribes, or publishes, in the shared topic
// space:
//
//   - a device's filter F is stored as $gg/<client id>/F (OnSubscribe), so
//     its subscriptions only ever match topics addressed to it;
//   - a device's publish is taken out of mochi's fan-out (OnPublish answers
//     CodeSuccessIgnore, so mochi still completes the QoS exchange with the
//     publisher) and handed to the broker (Config.Inbound), which asks the
//     routing table for the targets;
//   - for each device target the broker calls Deliver, which hands mochi's
//     per-subscriber delivery a publish on $gg/<target>/T for that one
//     client (the target is known: mochi's topic index is skipped); mochi's
//     session, QoS 1, inflight and persistent-session machinery then work
//     as usual;
//   - OnPacketEncode strips $gg/<client id>/ just before the bytes leave, so
//     the device sees T;
//   - OnACLCheck lets a device read only inside its own namespace, a second
//     guard should anything else publish there.
//
// A will message is renamed $evergreen/will/T (OnWill) and reaches the
// broker through an inline subscription, so it is routed like any publish
// of that device, will delay included.
package mqtt

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	_ "unsafe" // go:linkname, see publishToClient

	"github.com/evergreen-edge/evergreen/broker/admission"
	"github.com/evergreen-edge/evergreen/services/kit/topic"
	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
	"golang.org/x/time/rate"
)

// MaxPayload is v1's limit on a message from a device: 128 KB.
const MaxPayload = 128 * 1024

// Topics the server uses for itself. Devices never reach them: their
// filters live under $gg/<id>/ and their publishes never enter mochi's
// fan-out.
const (
	namespace    = "$gg/"
	willPrefix   = "$evergreen/will/"
	discardTopic = "$evergreen/discard"
	// invalidFilter makes mochi answer a SUBACK failure for a filter the
	// hook refused.
	invalidFilter = "#/refused"
)

// readBuffer is mochi's buffered reader per connection (its default: 2 KB).
const readBuffer = 512

// Limits bound what one client may hold or do.
type Limits struct {
	// MaxClients bounds connected clients.
	MaxClients int64
	// MaxInflight bounds QoS 1 messages in flight to, or queued for, one
	// client (persistent sessions included); more are dropped.
	MaxInflight uint16
	// ReceiveMaximum bounds the QoS 1/2 publishes a client may have
	// unacknowledged towards the server.
	ReceiveMaximum uint16
	// MaxPendingWrites bounds the packets queued for writing to one
	// client; a publish to a full queue is dropped.
	MaxPendingWrites int32
	// SessionExpiry bounds (seconds) how long a disconnected persistent
	// session is kept.
	SessionExpiry uint32
	// MessageExpiry bounds (seconds) how long a queued message is kept.
	MessageExpiry int64
	// TopicAliases bounds a v5 client's inbound topic aliases.
	TopicAliases uint16
	// MessagesPerSecond and BytesPerSecond throttle what one client may
	// publish (bursts of one second). A client above them is not cut off:
	// the server stops reading from it until it is back under, so the
	// back-pressure lands on the flooding device's TCP connection and
	// never on other devices' messages.
	MessagesPerSecond float64
	BytesPerSecond    float64
	// MaxHandshakes bounds TLS handshakes in progress.
	MaxHandshakes int
	// HandshakeTimeout bounds one TLS handshake; ConnectTimeout the wait
	// for CONNECT after it.
	HandshakeTimeout time.Duration
	ConnectTimeout   time.Duration
	// AdmitTimeout bounds one admission decision.
	AdmitTimeout time.Duration
}

// DefaultLimits are the limits of a production core.
func DefaultLimits() Limits {
	return Limits{
		MaxClients: 10000,
		// 128 starved a fan-in sink at QoS 1 (make bench: 7.2k msg/s);
		// 1024 gave 16.7k msg/s in the same run. The map fills only
		// while messages are actually unacknowledged.
		MaxInflight:       1024,
		ReceiveMaximum:    1024,
		MaxPendingWrites:  512,
		SessionExpiry:     24 * 3600,
		MessageExpiry:     3600,
		TopicAliases:      64,
		MessagesPerSecond: 20000,
		BytesPerSecond:    32 << 20,
		MaxHandshakes:     64,
		HandshakeTimeout:  10 * time.Second,
		ConnectTimeout:    10 * time.Second,
		AdmitTimeout:      5 * time.Second,
	}
}

// Message is a publish the server hands to the broker or takes from it.
type Message struct {
	Topic   string
	Payload []byte
	QoS     byte
	// Props are the MQTT 5 properties that travel with the message to
	// device targets (content type, response topic, correlation data, user
	// properties, payload format, expiry); nil when there are none.
	Props *packets.Properties
}

// Config is what the server needs from the broker.
type Config struct {
	Address string
	Cert    *ServerCert
	// Admit decides on every CONNECT.
	Admit func(ctx context.Context, leaf *x509.Certificate, clientID string) admission.Result
	// Inbound routes a device's publish (or will); it must not block.
	Inbound func(device string, m Message)
	Log     *slog.Logger
	Limits  Limits
}

// Stats are the server's counters.
type Stats struct {
	RefusedConnections uint64
	RefusedPublishes   uint64
}

// Server is the MQTT server.
type Server struct {
	cfg    Config
	log    *slog.Logger
	mochi  *mochi.Server
	inline *mochi.Client
	ln     *tlsListener

	// conns holds the state of each admitted connection, keyed by its
	// net.Conn: a connection's entry lives exactly as long as mochi
	// serves it (the listener removes it), whatever path mochi takes out.
	conns sync.Map // net.Conn -> *conn

	refusedConns atomic.Uint64
	refusedPubs  atomic.Uint64
}

// conn is what the server knows of one admitted connection.
type conn struct {
	device      string
	via         admission.Via
	cert        *x509.Certificate
	remote      string
	connectedAt time.Time
	in, out     atomic.Uint64

	msgs, bytes *rate.Limiter
	ctx         context.Context
	cancel      context.CancelFunc

	// purge drops the session when the connection ends (device removed).
	purge atomic.Bool
	// refusals and lastRefusalLog rate-limit the refused-publish log.
	refusals       atomic.Uint64
	lastRefusalLog atomic.Int64

	// subs caches the client's subscriptions for Deliver; subsGen counts
	// their changes.
	subs    atomic.Pointer[subsSnapshot]
	subsGen atomic.Uint64
}

// New builds the server; Start opens the socket.
func New(cfg Config) (*Server, error) {
	if cfg.Cert == nil || cfg.Admit == nil || cfg.Inbound == nil || cfg.Log == nil {
		return nil, errors.New("mqtt: Cert, Admit, Inbound and Log are required")
	}
	l := cfg.Limits
	caps := mochi.NewDefaultServerCapabilities()
	caps.MaximumClients = l.MaxClients
	caps.MaximumInflight = l.MaxInflight
	caps.ReceiveMaximum = l.ReceiveMaximum
	caps.MaximumClientWritesPending = l.MaxPendingWrites
	caps.MaximumSessionExpiryInterval = l.SessionExpiry
	caps.MaximumMessageExpiryInterval = l.MessageExpiry
	caps.TopicAliasMaximum = l.TopicAliases
	// Room for the fixed header, a 256-byte topic, the packet id and some
	// MQTT 5 properties around a 128 KB payload; OnPublish checks the
	// payload itself. A larger packet is never read into memory.
	caps.MaximumPacketSize = MaxPayload + 4096
	// Shared subscriptions mean nothing when every device has its own
	// namespace; retained messages are not kept (see OnPublish).
	caps.SharedSubAvailable = 0
	caps.MinimumProtocolVersion = 4
	s := &Server{cfg: cfg, log: cfg.Log}
	s.mochi = mochi.New(&mochi.Options{
		Capabilities: caps,
		InlineClient: true,
		// mochi's own logging is per packet; the hooks log what matters.
		Logger: slog.New(levelFilter{h: cfg.Log.Handler(), min: slog.LevelError}).With("component", "mochi"),
		// $SYS topics are invisible to namespaced devices; publishing them
		// every second would only wake an idle core.
		SysTopicResendInterval: 24 * 3600,
		// tls.Conn already holds a whole record; mochi's reader on top of
		// it only saves calls, and every idle connection pays for it.
		ClientNetReadBufferSize: readBuffer,
		// While more packets wait for a client, mochi gathers them up to
		// this size before writing: up to one full TLS record per write
		// (its default, 2 KB, is some 25 small publishes). The buffer
		// exists only while packets wait. In-process fan-in doubled.
		ClientNetWriteBufferSize: 16 << 10,
	})
	inline, ok := s.mochi.Clients.Get(mochi.InlineClientId)
	if !ok {
		return nil, errors.New("mqtt: mochi has no inline client")
	}
	s.inline = inline
	if err := s.mochi.AddHook(&hook{s: s}, nil); err != nil {
		return nil, err
	}
	if err := s.mochi.Subscribe(willPrefix+"#", 1, s.onWill); err != nil {
		return nil, fmt.Errorf("mqtt: will subscription: %w", err)
	}
	return s, nil
}

// Start listens on the configured address and serves.
func (s *Server) Start() error {
	s.ln = &tlsListener{
		id: "mqtts", address: s.cfg.Address, cfg: TLSConfig(s.cfg.Cert), log: s.log, limits: s.cfg.Limits,
		refused: &s.refusedConns,
		closed:  func(c net.Conn) { s.conns.Delete(c) },
		disconnectAll: func(listener string) {
			for _, cl := range s.mochi.Clients.GetAll() {
				if cl.Net.Listener == listener && !cl.Closed() {
					_ = s.mochi.DisconnectClient(cl, packets.ErrServerShuttingDown)
				}
			}
		},
	}
	if err := s.mochi.AddListener(s.ln); err != nil {
		return fmt.Errorf("MQTT listener %s: %w", s.cfg.Address, err)
	}
	return s.mochi.Serve()
}

// Addr is the address the server listens on.
func (s *Server) Addr() string {
	if s.ln == nil {
		return s.cfg.Address
	}
	return s.ln.Address()
}

// Close disconnects every client and stops listening; it waits for the
// connections to end until ctx's deadline.
func (s *Server) Close(ctx context.Context) error {
	err := s.mochi.Close()
	if s.ln != nil {
		d := 2 * time.Second
		if dl, ok := ctx.Deadline(); ok {
			d = time.Until(dl)
		}
		if !s.ln.wait(d) {
			s.log.Warn("MQTT connections still open at stop")
		}
	}
	return err
}

// Stats returns the server's counters.
func (s *Server) Stats() Stats {
	return Stats{RefusedConnections: s.refusedConns.Load(), RefusedPublishes: s.refusedPubs.Load()}
}

// Deliver publishes m to one device, on m.Topic, through mochi's session
// for that client: nothing happens when the device has no subscription
// matching the topic, and a QoS 1 message waits in a persistent session of
// a disconnected device. Routed copies are at most QoS 1.
//
// The target is known, so Deliver skips mochi's topic index (which, per
// call, builds four maps and copies the subscription map of every node it
// visits: most of the cost of a routed message) and matches the device's
// own few filters instead; mochi's per-subscriber delivery then does the
// rest as for any publish (see publishToClient).
func (s *Server) Deliver(device string, m Message) error {
	cl, ok := s.mochi.Clients.Get(device)
	if !ok || cl.Net.Inline {
		return nil
	}
	full := namespace + device + "/" + m.Topic
	sub, ok := s.matchSubscription(cl, full)
	if !ok {
		return nil
	}
	// The packet as mochi's inline client would have published it
	// (processPublish), Created and Expiry included.
	pk := packets.Packet{
		FixedHeader:     packets.FixedHeader{Type: packets.Publish, Qos: min(m.QoS, 1)},
		TopicName:       full,
		Payload:         m.Payload,
		Origin:          mochi.InlineClientId,
		ProtocolVersion: s.inline.Properties.ProtocolVersion,
		Created:         time.Now().Unix(),
	}
	if m.Props != nil {
		// publishToClient copies the properties for the client.
		pk.Properties = *m.Props
	}
	if e := messageExpiry(s.mochi.Options.Capabilities.MaximumMessageExpiryInterval, int64(pk.Properties.MessageExpiryInterval)); e > 0 {
		pk.Expiry = pk.Created + e
	}
	_, err := publishToClient(s.mochi, cl, sub, pk)
	if err != nil && (errors.Is(err, packets.CodeDisconnect) || errors.Is(err, packets.ErrNotAuthorized)) {
		// Queued in the session, or not in its namespace: what mochi's
		// fan-out would have done without a word.
		return nil
	}
	return err
}

// ErrNoRoom is returned by Room for a device whose write queue is full.
var ErrNoRoom = errors.New("no room")

// Room reports whether Deliver of m to device would be queued now: nil
// also when the device is not connected or has no subscription matching
// m's topic (Deliver drops nothing then that a full queue would have
// kept). A QoS 0 message needs a slot in the client's write queue; a QoS
// 1 message also an inflight slot. It is a snapshot: other deliveries may
// take the room before this caller's.
func (s *Server) Room(device string, m Message) error {
	cl, ok := s.mochi.Clients.Get(device)
	if !ok || cl.Net.Inline || cl.Closed() {
		return nil
	}
	sub, ok := s.matchSubscription(cl, namespace+device+"/"+m.Topic)
	if !ok {
		return nil
	}
	if n, c := pendingWrites(cl); n >= c {
		return fmt.Errorf("device %s: %d messages waiting to be written: %w", device, n, ErrNoRoom)
	}
	if min(m.QoS, sub.Qos, 1) > 0 && cl.State.Inflight.Len() >= int(s.mochi.Options.Capabilities.MaximumInflight) {
		return fmt.Errorf("device %s: %d QoS 1 messages unacknowledged: %w", device, cl.State.Inflight.Len(), ErrNoRoom)
	}
	return nil
}

// pendingWrites is the length and capacity of cl's write queue. mochi
// keeps the queue unexported; reflect reads a channel's length and
// capacity without touching it (TestMochiVersion pins the field).
func pendingWrites(cl *mochi.Client) (int, int) {
	q := reflect.ValueOf(&cl.State).Elem().FieldByName("outbound")
	return q.Len(), q.Cap()
}

// matchSubscription merges the subscriptions of cl matching t as mochi's
// topic index does (highest QoS, every subscription identifier).
func (s *Server) matchSubscription(cl *mochi.Client, t string) (packets.Subscription, bool) {
	var sub packets.Subscription
	n := 0
	for _, x := range s.subscriptions(cl) {
		if !topic.Match(x.Filter, t) {
			continue
		}
		if n++; n == 1 {
			sub = x
			continue
		}
		if n == 2 {
			sub = sub.Merge(sub)
		}
		sub = sub.Merge(x)
	}
	if n == 1 && sub.Identifier > 0 {
		sub = sub.Merge(sub)
	}
	return sub, n > 0
}

// subscriptions returns the subscriptions of cl. mochi hands them out only
// as a fresh copy of its map; a connected client's copy is kept until its
// subscriptions change (OnSubscribed, OnUnsubscribed).
func (s *Server) subscriptions(cl *mochi.Client) []packets.Subscription {
	c := s.state(cl)
	if c == nil {
		return subscriptionList(cl)
	}
	gen := c.subsGen.Load()
	if sn := c.subs.Load(); sn != nil && sn.gen == gen {
		return sn.list
	}
	// A change after the load above bumps subsGen again, so this copy,
	// if already stale, is replaced at the next delivery.
	sn := &subsSnapshot{gen: gen, list: subscriptionList(cl)}
	c.subs.Store(sn)
	return sn.list
}

func subscriptionList(cl *mochi.Client) []packets.Subscription {
	all := cl.State.Subscriptions.GetAll()
	list := make([]packets.Subscription, 0, len(all))
	for _, x := range all {
		// Merge writes into Identifiers; the list is shared by concurrent
		// deliveries, so each merge must start from a map of its own.
		x.Identifiers = nil
		list = append(list, x)
	}
	return list
}

// subsSnapshot is a client's subscriptions as of generation gen.
type subsSnapshot struct {
	gen  uint64
	list []packets.Subscription
}

// messageExpiry is mochi's rule: the smaller of the server's cap and the
// message's own expiry, ignoring whichever is zero.
func messageExpiry(limit, msg int64) int64 {
	switch {
	case limit == 0:
		return msg
	case msg == 0 || msg > limit:
		return limit
	default:
		return msg
	}
}

// publishToClient is mochi's delivery of one publish to one subscriber
// (github.com/mochi-mqtt/server/v2 v2.7.9, server.go): the ACL check, QoS
// capping, topic alias, packet id and inflight record, the send quota,
// and the bounded queue of the client's writer. mochi only exports it
// behind its topic index, so it is linked by name. The linker catches its
// disappearance but not a change of signature: TestMochiVersion fails on
// any other mochi version until this declaration has been checked again.
//
//go:linkname publishToClient github.com/mochi-mqtt/server/v2.(*Server).publishToClient
func publishToClient(s *mochi.Server, cl *mochi.Client, sub packets.Subscription, pk packets.Packet) (packets.Packet, error)

// Disconnect ends the connection of device, if any, and says why in the
// log. With purge its session goes too (subscriptions, queued messages),
// and its will is not published.
func (s *Server) Disconnect(device, reason string, purge bool) bool {
	cl, ok := s.mochi.Clients.Get(device)
	if !ok || cl.Net.Inline {
		return false
	}
	c := s.state(cl)
	if c != nil && purge {
		c.purge.Store(true)
	}
	if c == nil || cl.Closed() {
		if purge {
			s.dropSession(cl)
		}
		return false
	}
	s.log.Info("disconnecting device", "device", device, "remote", c.remote, "reason", reason)
	s.kick(cl, packets.ErrNotAuthorized)
	return true
}

// kick ends a connection: MQTT 5 clients get a DISCONNECT with code; MQTT
// 3.1.1 has no server DISCONNECT, so the connection is just closed.
func (s *Server) kick(cl *mochi.Client, code packets.Code) {
	if cl.Properties.ProtocolVersion == 5 {
		s.mochi.DisconnectClient(cl, code)
		return
	}
	cl.Stop(code)
}

func (s *Server) dropSession(cl *mochi.Client) {
	s.mochi.UnsubscribeClient(cl)
	cl.ClearInflights()
	if cur, ok := s.mochi.Clients.Get(cl.ID); ok && cur == cl {
		s.mochi.Clients.Delete(cl.ID)
	}
}

// ClientInfo describes a connected device.
type ClientInfo struct {
	ClientID      string
	Remote        string
	Protocol      byte
	ConnectedAt   time.Time
	Clean         bool
	Subscriptions []string
	In, Out       uint64
	Via           admission.Via
	Cert          *x509.Certificate
}

// Clients returns the connected devices, sorted by client id.
func (s *Server) Clients() []ClientInfo {
	var out []ClientInfo
	for _, cl := range s.mochi.Clients.GetAll() {
		if cl.Net.Inline || cl.Closed() {
			continue
		}
		c := s.state(cl)
		if c == nil {
			continue
		}
		info := ClientInfo{
			ClientID: cl.ID, Remote: c.remote, Protocol: cl.Properties.ProtocolVersion,
			ConnectedAt: c.connectedAt, Clean: cl.Properties.Clean,
			In: c.in.Load(), Out: c.out.Load(), Via: c.via, Cert: c.cert,
		}
		prefix := namespace + cl.ID + "/"
		for f := range cl.State.Subscriptions.GetAll() {
			info.Subscriptions = append(info.Subscriptions, strings.TrimPrefix(f, prefix))
		}
		slices.Sort(info.Subscriptions)
		out = append(out, info)
	}
	slices.SortFunc(out, func(a, b ClientInfo) int { return strings.Compare(a.ClientID, b.ClientID) })
	return out
}

func (s *Server) state(cl *mochi.Client) *conn {
	if cl == nil || cl.Net.Conn == nil {
		return nil
	}
	v, ok := s.conns.Load(cl.Net.Conn)
	if !ok {
		return nil
	}
	return v.(*conn)
}

// onWill receives the wills OnWill renamed, once mochi decides to publish
// them (after the will delay, unless the device came back).
func (s *Server) onWill(_ *mochi.Client, _ packets.Subscription, pk packets.Packet) {
	t, ok := strings.CutPrefix(pk.TopicName, willPrefix)
	if !ok || pk.Origin == "" {
		return
	}
	m := Message{Topic: t, Payload: pk.Payload, QoS: pk.FixedHeader.Qos}
	if len(pk.Properties.User) > 0 {
		m.Props = &packets.Properties{User: pk.Properties.User}
	}
	s.cfg.Inbound(pk.Origin, m)
}

// inNamespace reports whether t is addressed to client id (under $gg/id/).
func inNamespace(id, t string) bool {
	return len(t) > len(namespace)+len(id)+1 && strings.HasPrefix(t, namespace) &&
		t[len(namespace):len(namespace)+len(id)] == id && t[len(namespace)+len(id)] == '/'
}

// levelFilter drops records below min.
type levelFilter struct {
	h   slog.Handler
	min slog.Level
}

func (f levelFilter) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= f.min && f.h.Enabled(ctx, l)
}
func (f levelFilter) Handle(ctx context.Context, r slog.Record) error { return f.h.Handle(ctx, r) }
func (f levelFilter) WithAttrs(a []slog.Attr) slog.Handler {
	return levelFilter{h: f.h.WithAttrs(a), min: f.min}
}
func (f levelFilter) WithGroup(n string) slog.Handler {
	return levelFilter{h: f.h.WithGroup(n), min: f.min}
}
