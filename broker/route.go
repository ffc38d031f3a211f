package broker

import (
	"time"

	"github.com/evergreen-edge/evergreen/broker/mqtt"
	"github.com/evergreen-edge/evergreen/broker/router"
	brokerv1 "github.com/evergreen-edge/evergreen/proto/evergreen/broker/v1"
	"github.com/evergreen-edge/evergreen/services/kit/subjects"
	"github.com/mochi-mqtt/server/v2/packets"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// message is one message on its way through the router.
type message struct {
	src     router.Endpoint
	topic   string
	payload []byte
	qos     byte
	// props are MQTT 5 properties for device targets (nil: none).
	props *packets.Properties
	time  time.Time
}

// fromDevice is the MQTT server's Inbound: a device's publish or will.
func (s *Service) fromDevice(device string, m mqtt.Message) {
	s.route(message{src: router.Device(device), topic: m.Topic, payload: m.Payload, qos: m.QoS, props: m.Props, time: time.Now()}, false)
}

// route delivers m to every target the table in force names for its
// source and topic, each once, and shows it to the taps. It never blocks:
// device deliveries go into bounded per-client queues, bus publishes into
// the bus client's bounded buffer, cloud messages into the spooler. With
// collect (or taps open) it returns the targets reached.
func (s *Service) route(m message, collect bool) []router.Endpoint {
	tapping := s.taps.active()
	var targets []router.Endpoint
	n := 0
	s.router.Table().Route(m.src, m.topic, func(dst router.Endpoint) {
		n++
		s.deliver(dst, &m)
		if collect || tapping {
			targets = append(targets, dst)
		}
	})
	if n == 0 {
		s.stats.unrouted.Add(1)
		s.log.Debug("no subscription matches; message dropped", "source", m.src.String(), "topic", m.topic)
	} else {
		s.stats.routed.Add(1)
	}
	if tapping {
		s.taps.offer(&m, targets)
	}
	return targets
}

func (s *Service) deliver(dst router.Endpoint, m *message) {
	switch dst.Kind {
	case router.KindDevice:
		if err := s.mqtt.Deliver(dst.Name, mqtt.Message{Topic: m.topic, Payload: m.payload, QoS: m.qos, Props: m.props}); err != nil {
			s.log.Debug("deliver to device", "device", dst.Name, "topic", m.topic, "err", err)
		}
	case router.KindFunction:
		s.toBus(subjects.BrokerDeliverFunction, dst, m)
	case router.KindConnector:
		s.toBus(subjects.BrokerDeliverConnector, dst, m)
	case router.KindShadow:
		s.toBus(subjects.BrokerDeliverShadow, dst, m)
	case router.KindCloud:
		s.toCloud(m)
	}
}

// toBus hands one copy of m to the daemon that owns dst.
func (s *Service) toBus(subject string, dst router.Endpoint, m *message) {
	b, err := proto.Marshal(&brokerv1.RoutedMessage{
		Topic:   m.topic,
		Payload: m.payload,
		Source:  endpointProto(m.src),
		Targets: []*brokerv1.Endpoint{endpointProto(dst)},
		Qos:     uint32(min(m.qos, 1)),
		Time:    timestamppb.New(m.time),
	})
	if err == nil {
		err = s.env.Bus.Publish(subject, b)
	}
	if err != nil {
		s.stats.busDropped.Add(1)
		s.log.Warn("bus delivery failed; message dropped", "subject", subject, "target", dst.String(), "topic", m.topic, "err", err)
	}
}

func endpointProto(e router.Endpoint) *brokerv1.Endpoint {
	var k brokerv1.EndpointKind
	switch e.Kind {
	case router.KindDevice:
		k = brokerv1.EndpointKind_ENDPOINT_KIND_DEVICE
	case router.KindFunction:
		k = brokerv1.EndpointKind_ENDPOINT_KIND_FUNCTION
	case router.KindConnector:
		k = brokerv1.EndpointKind_ENDPOINT_KIND_CONNECTOR
	case router.KindCloud:
		k = brokerv1.EndpointKind_ENDPOINT_KIND_CLOUD
	case router.KindShadow:
		k = brokerv1.EndpointKind_ENDPOINT_KIND_SHADOW
	}
	return &brokerv1.Endpoint{Kind: k, Name: e.Name}
}

func endpointsProto(es []router.Endpoint) []*brokerv1.Endpoint {
	out := make([]*brokerv1.Endpoint, len(es))
	for i, e := range es {
		out[i] = endpointProto(e)
	}
	return out
}
