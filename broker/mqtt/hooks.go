package mqtt

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"strconv"
	"strings"
	"time"

	"github.com/evergreen-edge/evergreen/services/kit/topic"
	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
	"golang.org/x/time/rate"
)

// hook is the only hook on the server. mochi allows a connection or a
// topic if any hook allows it, so no other (allow-all) hook may be added.
type hook struct {
	mochi.HookBase
	s *Server
}

func (h *hook) ID() string { return "evergreen" }

func (h *hook) Provides(b byte) bool {
	return bytes.Contains([]byte{
		mochi.OnConnect,
		mochi.OnConnectAuthenticate,
		mochi.OnACLCheck,
		mochi.OnSessionEstablished,
		mochi.OnDisconnect,
		mochi.OnSubscribe,
		mochi.OnSubscribed,
		mochi.OnUnsubscribe,
		mochi.OnUnsubscribed,
		mochi.OnPublish,
		mochi.OnWill,
		mochi.OnPacketEncode,
		mochi.OnPacketSent,
	}, []byte{b})
}

// OnConnect admits or refuses the client. It runs before
// OnConnectAuthenticate, whose refusal mochi can only word as "bad user
// name or password"; here the CONNACK says "not authorized" (MQTT 5 0x87,
// MQTT 3.1.1 return code 5) or "server unavailable" when certmgr could not
// be asked.
func (h *hook) OnConnect(cl *mochi.Client, pk packets.Packet) error {
	s := h.s
	var leaf *x509.Certificate
	if tc, ok := cl.Net.Conn.(*tls.Conn); ok {
		if pc := tc.ConnectionState().PeerCertificates; len(pc) > 0 {
			leaf = pc[0]
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.Limits.AdmitTimeout)
	res := s.cfg.Admit(ctx, leaf, cl.ID)
	cancel()
	if res.Refused {
		s.refusedConns.Add(1)
		attrs := []any{"client_id", cl.ID, "remote", cl.Net.Remote, "reason", res.Reason}
		if res.Device != "" {
			attrs = append(attrs, "device", res.Device)
		}
		if res.Fingerprint != "" {
			attrs = append(attrs, "sha256", res.Fingerprint)
		}
		s.log.Warn("connection refused", attrs...)
		code := connackCode(cl.Properties.ProtocolVersion, res.Unavailable)
		s.mochi.SendConnack(cl, code, false, nil)
		return code
	}
	l := s.cfg.Limits
	c := &conn{device: res.Device, via: res.Via, cert: leaf, remote: cl.Net.Remote, connectedAt: time.Now()}
	if l.MessagesPerSecond > 0 {
		c.msgs = rate.NewLimiter(rate.Limit(l.MessagesPerSecond), max(1, int(l.MessagesPerSecond)))
	}
	if l.BytesPerSecond > 0 {
		c.bytes = rate.NewLimiter(rate.Limit(l.BytesPerSecond), max(int(l.BytesPerSecond), MaxPayload+8192))
	}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	s.conns.Store(cl.Net.Conn, c)
	return nil
}

// connackCode is "not authorized" in the client's protocol version. mochi
// maps "bad user name or password" to 3.1.1's return code 5 (not
// authorized) but sends 0x87 as is, which 3.1.1 does not define.
func connackCode(version byte, unavailable bool) packets.Code {
	switch {
	case unavailable:
		return packets.ErrServerUnavailable // 3.1.1: return code 3
	case version == 5:
		return packets.ErrNotAuthorized
	default:
		return packets.ErrBadUsernameOrPassword // 3.1.1: return code 5
	}
}

// OnConnectAuthenticate admits what OnConnect let through.
func (h *hook) OnConnectAuthenticate(*mochi.Client, packets.Packet) bool { return true }

func (h *hook) OnSessionEstablished(cl *mochi.Client, pk packets.Packet) {
	c := h.s.state(cl)
	if c == nil {
		return
	}
	h.s.log.Info("device connected", "device", c.device, "remote", c.remote, "protocol", protocolName(cl.Properties.ProtocolVersion),
		"clean", cl.Properties.Clean, "keepalive", cl.State.Keepalive, "admitted_by", string(c.via))
}

func (h *hook) OnDisconnect(cl *mochi.Client, err error, expire bool) {
	c := h.s.state(cl)
	if c == nil {
		return
	}
	c.cancel()
	if c.purge.Load() {
		h.s.dropSession(cl)
	}
	attrs := []any{"device", c.device, "remote", c.remote, "in", c.in.Load(), "out", c.out.Load()}
	// Why the server ended it, when it did, says more than the read
	// error that followed.
	if cause := cl.StopCause(); cause != nil {
		err = cause
	}
	if err != nil {
		attrs = append(attrs, "reason", err.Error())
	}
	h.s.log.Info("device disconnected", attrs...)
}

// OnACLCheck: publishes are checked in OnPublish (after mochi has resolved
// topic aliases); a device reads only its own namespace.
func (h *hook) OnACLCheck(cl *mochi.Client, t string, write bool) bool {
	if write || cl.Net.Inline {
		return true
	}
	return inNamespace(cl.ID, t)
}

// OnSubscribe moves each filter into the device's namespace. A filter
// breaking the v1 rules (over 256 bytes or 7 slashes, misplaced wildcard)
// is refused in the SUBACK (0x8F); a shared subscription ($share/...) is
// refused as not authorized (0x87), since deliveries are per device.
func (h *hook) OnSubscribe(cl *mochi.Client, pk packets.Packet) packets.Packet {
	if cl.Net.Inline {
		return pk
	}
	filters := make(packets.Subscriptions, len(pk.Filters))
	for i, sub := range pk.Filters {
		f := sub.Filter
		switch {
		case strings.HasPrefix(f, "$share/") || strings.HasPrefix(f, "$queue/"):
			h.s.log.Info("subscription refused", "device", cl.ID, "filter", clip(f), "reason", "shared subscriptions are not supported")
		case topic.ValidateFilter(f) != nil:
			h.s.log.Info("subscription refused", "device", cl.ID, "filter", clip(f), "reason", topic.ValidateFilter(f).Error())
			sub.Filter = invalidFilter
		default:
			sub.Filter = namespace + cl.ID + "/" + f
		}
		filters[i] = sub
	}
	pk.Filters = filters
	return pk
}

func (h *hook) OnUnsubscribe(cl *mochi.Client, pk packets.Packet) packets.Packet {
	if cl.Net.Inline {
		return pk
	}
	filters := make(packets.Subscriptions, len(pk.Filters))
	for i, sub := range pk.Filters {
		sub.Filter = namespace + cl.ID + "/" + sub.Filter
		filters[i] = sub
	}
	pk.Filters = filters
	return pk
}

// OnSubscribed and OnUnsubscribed follow mochi's changes to a client's
// subscriptions (SUBSCRIBE, UNSUBSCRIBE, a session ending or taken over),
// which outdate the copy Deliver matches against.
func (h *hook) OnSubscribed(cl *mochi.Client, _ packets.Packet, _ []byte) { h.subscriptionsChanged(cl) }
func (h *hook) OnUnsubscribed(cl *mochi.Client, _ packets.Packet)         { h.subscriptionsChanged(cl) }

func (h *hook) subscriptionsChanged(cl *mochi.Client) {
	if c := h.s.state(cl); c != nil {
		c.subsGen.Add(1)
	}
}

// OnPublish takes a device's publish out of mochi's fan-out and hands it
// to the broker. A publish breaking v1's limits is refused: never
// delivered, logged, and the device disconnected (MQTT 5 with the reason
// code; 3.1.1 has no negative acknowledgement, so the connection is
// closed, as AWS IoT Core does). The retain flag is accepted and ignored:
// messages are routed, never stored.
func (h *hook) OnPublish(cl *mochi.Client, pk packets.Packet) (packets.Packet, error) {
	if cl.Net.Inline {
		return pk, nil
	}
	s := h.s
	c := s.state(cl)
	if c == nil {
		return pk, packets.ErrRejectPacket
	}
	c.in.Add(1)
	if err := topic.ValidateTopic(pk.TopicName); err != nil {
		s.refusePublish(cl, c, packets.ErrTopicNameInvalid, pk.TopicName, err.Error())
		return pk, packets.ErrRejectPacket
	}
	if len(pk.Payload) > MaxPayload {
		s.refusePublish(cl, c, packets.ErrPacketTooLarge, pk.TopicName, "payload of "+strconv.Itoa(len(pk.Payload))+" bytes is over the 128 KB limit")
		return pk, packets.ErrRejectPacket
	}
	c.throttle(len(pk.Payload))
	s.cfg.Inbound(c.device, Message{Topic: pk.TopicName, Payload: pk.Payload, QoS: pk.FixedHeader.Qos, Props: forwardable(cl, &pk)})
	return pk, packets.CodeSuccessIgnore
}

// throttle waits while the connection is above its rates; reading from it
// stops meanwhile.
func (c *conn) throttle(n int) {
	if c.msgs != nil {
		c.msgs.Wait(c.ctx)
	}
	if c.bytes != nil && n > 0 {
		c.bytes.WaitN(c.ctx, n)
	}
}

func (s *Server) refusePublish(cl *mochi.Client, c *conn, code packets.Code, t, reason string) {
	s.refusedPubs.Add(1)
	n := c.refusals.Add(1)
	now := time.Now().UnixNano()
	last := c.lastRefusalLog.Load()
	if n == 1 || now-last > int64(10*time.Second) {
		c.lastRefusalLog.Store(now)
		s.log.Warn("publish refused; disconnecting", "device", c.device, "topic", clip(t), "reason", reason, "refused_so_far", n)
	}
	s.kick(cl, code)
}

// forwardable returns the MQTT 5 properties of a device's publish that
// travel with it to device targets.
func forwardable(cl *mochi.Client, pk *packets.Packet) *packets.Properties {
	if cl.Properties.ProtocolVersion != 5 {
		return nil
	}
	p := &pk.Properties
	if !p.PayloadFormatFlag && p.MessageExpiryInterval == 0 && p.ContentType == "" && p.ResponseTopic == "" &&
		len(p.CorrelationData) == 0 && len(p.User) == 0 {
		return nil
	}
	return &packets.Properties{
		PayloadFormat:         p.PayloadFormat,
		PayloadFormatFlag:     p.PayloadFormatFlag,
		MessageExpiryInterval: p.MessageExpiryInterval,
		ContentType:           p.ContentType,
		ResponseTopic:         p.ResponseTopic,
		CorrelationData:       p.CorrelationData,
		User:                  p.User,
	}
}

// OnWill renames a will so that it reaches the broker's inline
// subscription instead of mochi's fan-out. A will breaking the limits, or
// of a device that was removed, goes nowhere.
func (h *hook) OnWill(cl *mochi.Client, will mochi.Will) (mochi.Will, error) {
	c := h.s.state(cl)
	switch {
	case c == nil || c.purge.Load():
		will.TopicName = discardTopic
	case topic.ValidateTopic(will.TopicName) != nil || len(will.Payload) > MaxPayload:
		h.s.log.Warn("will refused", "device", cl.ID, "topic", clip(will.TopicName), "payload_bytes", len(will.Payload))
		will.TopicName = discardTopic
	default:
		will.TopicName = willPrefix + will.TopicName
	}
	will.Retain = false
	return will, nil
}

// OnPacketEncode restores the topic a device expects on the way out.
//
// It also keeps the user properties of a PUBLISH for a client that asked
// for no problem information: mochi drops them from every packet then, but
// MQTT 5 [MQTT-3.1.2-29] exempts PUBLISH, whose user properties are the
// sender's, not problem information.
func (h *hook) OnPacketEncode(cl *mochi.Client, pk packets.Packet) packets.Packet {
	if pk.FixedHeader.Type != packets.Publish {
		return pk
	}
	if inNamespace(cl.ID, pk.TopicName) {
		pk.TopicName = pk.TopicName[len(namespace)+len(cl.ID)+1:]
	}
	pk.Mods.DisallowProblemInfo = false
	return pk
}

func (h *hook) OnPacketSent(cl *mochi.Client, pk packets.Packet, _ []byte) {
	if pk.FixedHeader.Type != packets.Publish {
		return
	}
	if c := h.s.state(cl); c != nil {
		c.out.Add(1)
	}
}

func protocolName(v byte) string {
	switch v {
	case 5:
		return "MQTT 5"
	case 4:
		return "MQTT 3.1.1"
	}
	return "MQTT level " + strconv.Itoa(int(v))
}

// clip shortens what a device sent before it goes into a log line.
func clip(s string) string {
	if len(s) > 300 {
		return s[:300] + "..."
	}
	return s
}
