package broker

import (
	"fmt"
	"sync/atomic"
	"time"

	"github.com/evergreen-edge/evergreen/broker/mqtt"
	"github.com/evergreen-edge/evergreen/broker/router"
	brokerv1 "github.com/evergreen-edge/evergreen/proto/evergreen/broker/v1"
	certmgrv1 "github.com/evergreen-edge/evergreen/proto/evergreen/certmgr/v1"
	"github.com/evergreen-edge/evergreen/services/kit/arn"
	"github.com/evergreen-edge/evergreen/services/kit/errdefs"
	"github.com/evergreen-edge/evergreen/services/kit/subjects"
	"github.com/evergreen-edge/evergreen/services/kit/topic"
	"github.com/nats-io/nats.go"
	"google.golang.org/protobuf/proto"
)

// followBus subscribes to what other daemons send the broker: messages
// from functions and connectors (runtime), from the shadow service, and
// certmgr's events.
func (s *Service) followBus() error {
	for _, x := range []struct {
		subject string
		handle  nats.MsgHandler
	}{
		{subjects.RuntimePublish, s.onRuntimePublish},
		{subjects.RuntimeRoutePlan, s.onRoutePlan},
		{subjects.ShadowPublish, s.onShadowPublish},
		{subjects.ShadowCloud, s.onShadowCloud},
		{subjects.DeployCloud, s.onDeployCloud},
		{subjects.OTACloud, s.onOTACloud},
		{"evergreen.certmgr.events.>", s.onCertmgrEvent},
		{logsSubject, s.followLogs()},
	} {
		sub, err := s.env.Bus.Subscribe(x.subject, x.handle)
		if err != nil {
			return fmt.Errorf("bus subscribe %s: %w", x.subject, err)
		}
		s.subs = append(s.subs, sub)
	}
	if err := s.env.Bus.Flush(); err != nil {
		s.log.Warn("bus flush after subscribe", "err", err)
	}
	return nil
}

// onRuntimePublish routes a message a function or connector published. The
// bus lets only the runtime publish here, and the runtime knows which
// function published, so the source it names is trusted; anything but a
// function or connector is refused.
func (s *Service) onRuntimePublish(msg *nats.Msg) {
	rm := &brokerv1.RoutedMessage{}
	src, err := s.runtimeSource(rm, msg.Data)
	if err != nil {
		s.reject(msg.Subject, err.Error())
		return
	}
	if len(rm.GetTargets()) > 0 {
		s.committed(msg.Subject, src, rm)
		return
	}
	s.fromBus(msg.Subject, src, rm)
}

// onRoutePlan answers the runtime's plan request for a publish with
// queueFullPolicy AllOrError: every target of the table and those whose
// queue has no room now (a device's write queue, the cloud spool under
// RefuseNew). The runtime's own targets (functions, connectors) are its to
// check, and the shadow service's bus subject is never full. Nothing is
// delivered here; see committed.
func (s *Service) onRoutePlan(msg *nats.Msg) {
	rm := &brokerv1.RoutedMessage{}
	plan := &brokerv1.RoutePlan{}
	src, err := s.runtimeSource(rm, msg.Data)
	if err == nil {
		err = checkMessage(rm.GetTopic(), rm.GetPayload(), rm.GetQos())
	}
	if err != nil {
		// No responder error for the runtime would hide the reason: a
		// plan naming no target has nothing to refuse, so the runtime
		// would go on; say why through a full target without a name.
		s.reject(msg.Subject, err.Error())
		plan.Full = append(plan.Full, &brokerv1.FullTarget{Reason: err.Error()})
	} else {
		m := message{src: src, topic: rm.GetTopic(), payload: rm.GetPayload(), qos: byte(rm.GetQos())}
		s.router.Table().Route(src, m.topic, func(dst router.Endpoint) {
			plan.Targets = append(plan.Targets, endpointProto(dst))
			if err := s.room(dst, &m); err != nil {
				plan.Full = append(plan.Full, &brokerv1.FullTarget{Target: endpointProto(dst), Reason: err.Error()})
			}
		})
	}
	b, _ := proto.Marshal(plan)
	if err := msg.Respond(b); err != nil {
		s.log.Warn("route plan: reply failed", "err", err)
	}
}

// room reports whether deliver would queue m for dst now.
func (s *Service) room(dst router.Endpoint, m *message) error {
	switch dst.Kind {
	case router.KindDevice:
		return s.mqtt.Room(dst.Name, mqtt.Message{Topic: m.topic, Payload: m.payload, QoS: m.qos})
	case router.KindCloud:
		if s.cloud == nil {
			return nil // dropped without a cloud whatever the policy: no queue to be full
		}
		return s.cloud.Room(m.topic, len(m.payload))
	}
	return nil
}

// committed delivers a message whose targets the runtime took from a
// RoutePlan: to each of them but the runtime's own (functions and
// connectors, which the runtime has queued already). The taps see every
// target.
func (s *Service) committed(subject string, src router.Endpoint, rm *brokerv1.RoutedMessage) {
	if err := checkMessage(rm.GetTopic(), rm.GetPayload(), rm.GetQos()); err != nil {
		s.reject(subject, fmt.Sprintf("from %s: %v", src, err))
		return
	}
	m := message{src: src, topic: rm.GetTopic(), payload: rm.GetPayload(), qos: byte(rm.GetQos()), time: time.Now()}
	targets := make([]router.Endpoint, 0, len(rm.GetTargets()))
	for _, t := range rm.GetTargets() {
		dst, err := endpointFromProto(t)
		if err != nil {
			s.reject(subject, fmt.Sprintf("from %s: target: %v", src, err))
			return
		}
		targets = append(targets, dst)
	}
	for _, dst := range targets {
		if dst.Kind != router.KindFunction && dst.Kind != router.KindConnector {
			s.deliver(dst, &m)
		}
	}
	s.stats.routed.Add(1)
	if s.taps.active() {
		s.taps.offer(&m, targets)
	}
}

// runtimeSource unmarshals a RoutedMessage of the runtime into rm and
// returns its source, which must be a function or a connector.
func (s *Service) runtimeSource(rm *brokerv1.RoutedMessage, data []byte) (router.Endpoint, error) {
	if err := proto.Unmarshal(data, rm); err != nil {
		return router.Endpoint{}, fmt.Errorf("malformed RoutedMessage: %w", err)
	}
	src, err := endpointFromProto(rm.GetSource())
	if err == nil && src.Kind != router.KindFunction && src.Kind != router.KindConnector {
		err = fmt.Errorf("source kind %s: the runtime publishes for functions and connectors only", rm.GetSource().GetKind())
	}
	return src, err
}

// onShadowPublish routes a message of the shadow service; its source is
// the shadow service whatever the message says.
func (s *Service) onShadowPublish(msg *nats.Msg) {
	rm := &brokerv1.RoutedMessage{}
	if err := proto.Unmarshal(msg.Data, rm); err != nil {
		s.reject(msg.Subject, "malformed RoutedMessage: "+err.Error())
		return
	}
	s.fromBus(msg.Subject, router.Shadow, rm)
}

func (s *Service) fromBus(subject string, src router.Endpoint, rm *brokerv1.RoutedMessage) {
	if err := checkMessage(rm.GetTopic(), rm.GetPayload(), rm.GetQos()); err != nil {
		s.reject(subject, fmt.Sprintf("from %s: %v", src, err))
		return
	}
	s.route(message{src: src, topic: rm.GetTopic(), payload: rm.GetPayload(), qos: byte(rm.GetQos()), time: time.Now()}, false)
}

// logEvery rate-limits the logs of what can repeat at message rate: a
// runtime or a cloud gone wrong must not fill the disk.
const logEvery = 10 * time.Second

// logLimiter lets one log line through per logEvery (and the first).
type logLimiter struct{ last atomic.Int64 }

func (l *logLimiter) allow(n uint64) bool {
	now := time.Now().UnixNano()
	if last := l.last.Load(); n == 1 || now-last > int64(logEvery) {
		l.last.Store(now)
		return true
	}
	return false
}

func (s *Service) reject(from, reason string) {
	n := s.stats.rejected.Add(1)
	if s.stats.rejectLog.allow(n) {
		s.log.Warn("message refused", "from", from, "reason", reason, "refused_so_far", n)
	}
}

func (s *Service) onCertmgrEvent(msg *nats.Msg) {
	switch msg.Subject {
	case subjects.CertServerRenewed:
		s.reloadServerCert("certmgr renewed it")
	case subjects.CertDeviceRemoved:
		ev := &certmgrv1.DeviceRemoved{}
		if err := proto.Unmarshal(msg.Data, ev); err != nil || ev.GetName() == "" {
			s.log.Warn("malformed DeviceRemoved event", "err", err)
			return
		}
		s.admit.Evict(ev.GetName())
		s.mqtt.Disconnect(ev.GetName(), "removed from certmgr (certificate serial "+ev.GetSerial()+" revoked)", true)
	}
}

// checkMessage applies the v1 limits every routed message obeys.
func checkMessage(t string, payload []byte, qos uint32) error {
	if err := topic.ValidateTopic(t); err != nil {
		return errdefs.InvalidArgument("topic", "%v", err)
	}
	if len(payload) > mqtt.MaxPayload {
		return errdefs.InvalidArgument("payload", "%d bytes is over the 128 KB limit", len(payload))
	}
	if qos > 1 {
		return errdefs.InvalidArgument("qos", "%d: must be 0 or 1", qos)
	}
	return nil
}

// endpointFromProto checks an endpoint from the API or the bus.
func endpointFromProto(p *brokerv1.Endpoint) (router.Endpoint, error) {
	name := p.GetName()
	switch p.GetKind() {
	case brokerv1.EndpointKind_ENDPOINT_KIND_DEVICE:
		if err := arn.ValidThingName(name); err != nil {
			return router.Endpoint{}, errdefs.InvalidArgument("source.name", "%v", err)
		}
		return router.Device(name), nil
	case brokerv1.EndpointKind_ENDPOINT_KIND_FUNCTION:
		if name == "" {
			return router.Endpoint{}, errdefs.InvalidArgument("source.name", "the function ARN is missing")
		}
		return router.Function(name), nil
	case brokerv1.EndpointKind_ENDPOINT_KIND_CONNECTOR:
		if name == "" {
			return router.Endpoint{}, errdefs.InvalidArgument("source.name", "the connector ARN is missing")
		}
		return router.Connector(name), nil
	case brokerv1.EndpointKind_ENDPOINT_KIND_CLOUD, brokerv1.EndpointKind_ENDPOINT_KIND_SHADOW:
		if name != "" {
			return router.Endpoint{}, errdefs.InvalidArgument("source.name", "must be empty for %s, got %q", p.GetKind(), name)
		}
		if p.GetKind() == brokerv1.EndpointKind_ENDPOINT_KIND_CLOUD {
			return router.Cloud, nil
		}
		return router.Shadow, nil
	}
	return router.Endpoint{}, errdefs.InvalidArgument("source.kind", "%s is not an endpoint kind", p.GetKind())
}
