package broker

import (
	"context"
	"fmt"
	"time"

	"github.com/evergreen-edge/evergreen/broker/cloud"
	"github.com/evergreen-edge/evergreen/broker/router"
	"github.com/evergreen-edge/evergreen/services/kit/groupdef"
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
	})
	if err != nil {
		return fmt.Errorf("cloud connection: %w", err)
	}
	if err := c.SetSubscriptions(s.router.Table().CloudSubjects()); err != nil {
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

// fromCloud routes a message that arrived on a cloud subscription.
func (s *Service) fromCloud(topic string, payload []byte) {
	if err := checkMessage(topic, payload, 0); err != nil {
		s.reject("cloud", err.Error())
		return
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
