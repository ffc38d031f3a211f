package broker

import (
	"context"
	"fmt"

	"github.com/evergreen-edge/evergreen/broker/admission"
	"github.com/evergreen-edge/evergreen/broker/router"
	"github.com/evergreen-edge/evergreen/services/kit/deployment"
	"github.com/evergreen-edge/evergreen/services/kit/groupdef"
)

// The broker's part of a group is its subscription table and its device
// list. A deployment compiles the new table off to the side and swaps it in
// with one atomic store: a message is routed wholly by the old table or
// wholly by the new one, and no connection is dropped. A connected device
// stays connected after a deployment as long as it is still admissible:
// registered with certmgr, or in the new group with the same certificate.
// One that is neither is disconnected (see readmit).

// inForce describes the deployment whose table is in force.
type inForce struct {
	id       string
	hasGroup bool
}

// loadGroup puts the group recorded in DIR/deployments/current.json in
// force at start, and returns it.
func (s *Service) loadGroup() (*groupdef.Group, error) {
	g, id, err := deployment.LoadCurrent(s.env.Root)
	if err != nil {
		return nil, fmt.Errorf("group in force: %w", err)
	}
	t, err := router.Compile(g)
	if err != nil {
		// It compiled when it was deployed; refusing to start would only
		// leave the devices without a broker. Route nothing until the
		// next deployment.
		s.log.Error("the group in force does not compile; routing nothing until the next deployment", "deployment", id, "err", err)
		t, g = nil, nil
	}
	s.install(t, g, id)
	return g, nil
}

func followDeployments(s *Service) (func(), error) {
	return deployment.Serve(s.env, s.apply, deployment.WithPrepare(s.prepareGroup))
}

// apply is the broker's answer to the deployagent's ApplyGroup: it refuses
// what PREPARE refuses (checkGroup) and a spooler that cannot take the new
// settings, and must take a rollback.
func (s *Service) apply(_ context.Context, g *groupdef.Group, rollback bool) error {
	t, err := s.checkGroup(g)
	if err == nil {
		err = s.applyCloud(g)
	}
	if err != nil {
		if !rollback {
			return err
		}
		// A rollback puts back what was in force; it cannot be refused.
		s.log.Error("the group rolled back to does not apply cleanly", "err", err)
		if t == nil { // it does not compile: route nothing
			g = nil
		}
	}
	s.install(t, g, s.applyingID(rollback))
	s.bg.Add(1)
	go func() {
		defer s.bg.Done()
		s.readmit()
	}()
	return nil
}

// applyingID finds the id of the deployment being applied: ApplyFunc does
// not carry it, but the deployagent stages the deployment before asking,
// and a rollback puts back the one in force.
func (s *Service) applyingID(rollback bool) string {
	var rec *deployment.Record
	var err error
	if rollback {
		rec, err = deployment.ReadCurrent(s.env.Root)
	} else {
		rec, err = deployment.ReadRecord(deployment.Path(s.env.Root, deployment.StagedFile))
	}
	if err != nil || rec == nil {
		return ""
	}
	return rec.DeploymentID
}

// install puts t in force (nil: the empty table), with the group's devices
// for admission and its cloud subscriptions for the cloud connection.
func (s *Service) install(t *router.Table, g *groupdef.Group, id string) {
	if t == nil {
		t, _ = router.Compile(nil)
	}
	s.admit.SetGroupDevices(t.Devices())
	synced := map[string]bool{}
	for _, name := range g.SyncShadowThings() {
		synced[name] = true
	}
	s.synced.Store(&synced)
	s.router.Swap(t)
	s.deployed.Store(&inForce{id: id, hasGroup: g != nil})
	if s.cloud != nil {
		if err := s.cloud.SetSubscriptions(s.cloudSubjects(t)); err != nil {
			s.log.Error("cloud subscriptions", "err", err)
		}
	}
	s.log.Info("subscription table in force", "deployment", id, "group", g != nil, "subscriptions", t.Len(), "devices", len(t.Devices()))
}

// readmit checks the devices the previous group admitted against the new
// one; those neither in it with the same certificate nor registered with
// certmgr are disconnected.
func (s *Service) readmit() {
	s.recheck.Lock()
	defer s.recheck.Unlock()
	if s.mqtt == nil {
		return
	}
	for _, c := range s.mqtt.Clients() {
		if c.Via != admission.ViaGroup || c.Cert == nil {
			continue
		}
		if name, ok := s.admit.GroupDevice(admission.Fingerprint(c.Cert)); ok && name == c.ClientID {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), s.opts.Limits.AdmitTimeout)
		res := s.admit.Admit(ctx, c.Cert, c.ClientID)
		cancel()
		if res.Refused && !res.Unavailable {
			s.mqtt.Disconnect(c.ClientID, "no longer admitted after the deployment: "+res.Reason, false)
		}
	}
}
