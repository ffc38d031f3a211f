package broker

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/evergreen-edge/evergreen/broker/cloud"
	"github.com/evergreen-edge/evergreen/broker/router"
	brokerv1 "github.com/evergreen-edge/evergreen/proto/evergreen/broker/v1"
	"github.com/evergreen-edge/evergreen/services/kit/clouddeploy"
	"github.com/evergreen-edge/evergreen/services/kit/cloudota"
	"github.com/evergreen-edge/evergreen/services/kit/groupdef"
	"github.com/evergreen-edge/evergreen/services/kit/subjects"
	"github.com/evergreen-edge/evergreen/services/kit/topic"
	"github.com/nats-io/nats.go"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// The cloud connection (package cloud) exists only when coreThing.iotHost
// is set. The router hands it what the table sends to `cloud`; what arrives
// on the upstream subscriptions (the Subjects of cloud-source
// subscriptions) is routed with the cloud as its source.

// startCloud opens the cloud connection with the spooler settings and the
// cloud subscriptions of the group in force.
func (s *Service) startCloud(ctx context.Context, g *groupdef.Group) error {
	settings, err := cloud.SettingsFromGroup(g)
	if err != nil {
		s.log.Error("spooler settings of the group in force; using the defaults", "err", err)
		settings = cloud.DefaultSpoolerSettings()
	}
	c, err := cloud.New(cloud.Options{
		Config:    s.env.Config,
		Root:      s.env.Root,
		Settings:  settings,
		Log:       s.log.With("component", "cloud"),
		OnMessage: s.fromCloud,
		OnReady:   s.cloudReady,
	})
	if err != nil {
		return fmt.Errorf("cloud connection: %w", err)
	}
	if err := c.SetSubscriptions(s.cloudSubjects(s.router.Table())); err != nil {
		c.Stop(ctx)
		return fmt.Errorf("cloud subscriptions: %w", err)
	}
	if err := c.Start(ctx); err != nil {
		c.Stop(ctx)
		return fmt.Errorf("cloud connection: %w", err)
	}
	s.cloud = c
	return nil
}

// applyCloud checks a group's spooler settings and puts them in force; an
// error refuses the deployment.
func (s *Service) applyCloud(g *groupdef.Group) error {
	settings, err := cloud.SettingsFromGroup(g)
	if err != nil {
		return err
	}
	if s.cloud == nil {
		return nil
	}
	if err := s.cloud.Reconfigure(settings); err != nil {
		return fmt.Errorf("cloud spooler: %w", err)
	}
	return nil
}

// fromCloud routes a message that arrived on a cloud subscription, and
// hands the shadow service what the cloud says about synced shadows.
func (s *Service) fromCloud(topic string, payload []byte) {
	if err := checkMessage(topic, payload, 0); err != nil {
		s.reject("cloud", err.Error())
		return
	}
	thing := s.env.Config.CoreThingName()
	if thing != "" && (topic == clouddeploy.StatusTopic(thing) || topic == cloudota.StatusTopic(thing)) {
		return // our own status, back through a wide cloud subscription
	}
	if thing != "" && topic == cloudota.RequestTopic(thing) {
		// An update job: for the ota daemon, never routed.
		s.publishBus(subjects.BrokerCloudOTA, &brokerv1.RoutedMessage{
			Topic:   topic,
			Payload: payload,
			Source:  &brokerv1.Endpoint{Kind: brokerv1.EndpointKind_ENDPOINT_KIND_CLOUD},
			Time:    timestamppb.Now(),
		})
		return
	}
	if thing != "" && topic == clouddeploy.RequestTopic(thing) {
		// The core's own traffic: for the deployagent, never routed.
		s.publishBus(subjects.BrokerCloudDeploy, &brokerv1.RoutedMessage{
			Topic:   topic,
			Payload: payload,
			Source:  &brokerv1.Endpoint{Kind: brokerv1.EndpointKind_ENDPOINT_KIND_CLOUD},
			Time:    timestamppb.Now(),
		})
		return
	}
	if sh, ok := shadowTopic(topic); ok && sh.Result != "" && s.isSynced(sh.Thing) {
		s.publishBus(subjects.BrokerCloudShadow, &brokerv1.RoutedMessage{
			Topic:   topic,
			Payload: payload,
			Source:  &brokerv1.Endpoint{Kind: brokerv1.EndpointKind_ENDPOINT_KIND_CLOUD},
			Time:    timestamppb.Now(),
		})
	}
	s.route(message{src: router.Cloud, topic: topic, payload: payload, time: time.Now()}, false)
}

// toCloud queues a message for the cloud. With FileSystem storage this
// returns once the message is on disk, which paces the sender.
func (s *Service) toCloud(m *message) {
	if s.cloud == nil {
		s.stats.cloudDropped.Add(1)
		s.log.Debug("no cloud connection (coreThing.iotHost is not set); message for the cloud dropped", "source", m.src.String(), "topic", m.topic)
		return
	}
	if err := s.cloud.Publish(m.topic, m.payload); err != nil {
		n := s.stats.cloudDropped.Add(1)
		if s.stats.cloudLog.allow(n) {
			s.log.Warn("cloud spooler refused a message; dropped", "source", m.src.String(), "topic", m.topic, "err", err, "dropped_so_far", n)
		}
	}
}

// Shadow sync (SyncShadow: true). The broker subscribes upstream to
// $aws/things/<thing>/shadow/# for each synced thing, ahead of the table's
// cloud subjects so that they share the primary connection when they fit;
// what arrives on the response topics goes to the shadow service on
// evergreen.broker.cloud.shadow (and through the table like anything from
// the cloud). The shadow service's requests for the cloud arrive on
// evergreen.shadow.cloud and go to the spooler; only request topics of
// synced things are accepted there.

func shadowTopic(t string) (topic.Shadow, bool) { return topic.ParseShadow(t) }

func (s *Service) isSynced(thing string) bool {
	m := s.synced.Load()
	return m != nil && (*m)[thing]
}

// cloudSubjects lists the upstream subscriptions: the core's deployment
// and update requests, the synced shadows', then the table's.
func (s *Service) cloudSubjects(t *router.Table) []string {
	var list []string
	if thing := s.env.Config.CoreThingName(); thing != "" {
		list = append(list, clouddeploy.RequestTopic(thing), cloudota.RequestTopic(thing))
	}
	if m := s.synced.Load(); m != nil {
		for _, name := range slices.Sorted(maps.Keys(*m)) {
			list = append(list, topic.ShadowPrefix+name+"/shadow/#")
		}
	}
	return append(list, t.CloudSubjects()...)
}

// onShadowCloud queues a shadow request of the shadow service for the
// cloud.
func (s *Service) onShadowCloud(msg *nats.Msg) {
	rm := &brokerv1.RoutedMessage{}
	if err := proto.Unmarshal(msg.Data, rm); err != nil {
		s.reject(msg.Subject, "malformed RoutedMessage: "+err.Error())
		return
	}
	if err := checkMessage(rm.GetTopic(), rm.GetPayload(), 1); err != nil {
		s.reject(msg.Subject, err.Error())
		return
	}
	sh, ok := shadowTopic(rm.GetTopic())
	if !ok || sh.Result != "" {
		s.reject(msg.Subject, fmt.Sprintf("topic %q is not a shadow request", rm.GetTopic()))
		return
	}
	if !s.isSynced(sh.Thing) {
		s.reject(msg.Subject, fmt.Sprintf("thing %q does not sync its shadow (SyncShadow is not true in the group in force)", sh.Thing))
		return
	}
	s.toCloud(&message{src: router.Shadow, topic: rm.GetTopic(), payload: rm.GetPayload(), qos: 1, time: time.Now()})
}

// onDeployCloud queues a deployment status of the deployagent for the
// cloud; only the core's status topic is accepted.
func (s *Service) onDeployCloud(msg *nats.Msg) {
	rm := &brokerv1.RoutedMessage{}
	if err := proto.Unmarshal(msg.Data, rm); err != nil {
		s.reject(msg.Subject, "malformed RoutedMessage: "+err.Error())
		return
	}
	if err := checkMessage(rm.GetTopic(), rm.GetPayload(), 1); err != nil {
		s.reject(msg.Subject, err.Error())
		return
	}
	if thing := s.env.Config.CoreThingName(); thing == "" || rm.GetTopic() != clouddeploy.StatusTopic(thing) {
		s.reject(msg.Subject, fmt.Sprintf("topic %q is not this core's deployment status topic", rm.GetTopic()))
		return
	}
	s.toCloud(&message{src: router.Cloud, topic: rm.GetTopic(), payload: rm.GetPayload(), qos: 1, time: time.Now()})
}

// onOTACloud queues an update job status of the ota daemon for the cloud;
// only the core's update status topic is accepted.
func (s *Service) onOTACloud(msg *nats.Msg) {
	rm := &brokerv1.RoutedMessage{}
	if err := proto.Unmarshal(msg.Data, rm); err != nil {
		s.reject(msg.Subject, "malformed RoutedMessage: "+err.Error())
		return
	}
	if err := checkMessage(rm.GetTopic(), rm.GetPayload(), 1); err != nil {
		s.reject(msg.Subject, err.Error())
		return
	}
	if thing := s.env.Config.CoreThingName(); thing == "" || rm.GetTopic() != cloudota.StatusTopic(thing) {
		s.reject(msg.Subject, fmt.Sprintf("topic %q is not this core's update status topic", rm.GetTopic()))
		return
	}
	s.toCloud(&message{src: router.Cloud, topic: rm.GetTopic(), payload: rm.GetPayload(), qos: 1, time: time.Now()})
}

// cloudReady tells the shadow service (it resyncs) and the deployagent (it
// publishes its last status again) that a cloud connection has made its
// subscriptions; before the broker follows the bus it is held back (see
// readyMu). It runs on the connection's goroutine and must not block: a
// NATS publish only buffers.
func (s *Service) cloudReady(st *brokerv1.CloudStatus) {
	s.readyMu.Lock()
	if !s.following {
		s.readyHeld = st
		s.readyMu.Unlock()
		return
	}
	s.readyMu.Unlock()
	s.publishBus(subjects.BrokerCloudReady, st)
}

// publishBus publishes a protobuf message on the bus; a failure is logged
// (the bus client buffers while it reconnects).
func (s *Service) publishBus(subject string, m proto.Message) {
	b, err := proto.Marshal(m)
	if err == nil {
		err = s.env.Bus.Publish(subject, b)
	}
	if err != nil {
		s.log.Warn("bus publish", "subject", subject, "err", err)
	}
}
