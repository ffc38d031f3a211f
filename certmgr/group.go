package certmgr

import (
	"context"
	"fmt"

	"github.com/evergreen-edge/evergreen/services/kit/deployment"
	"github.com/evergreen-edge/evergreen/services/kit/groupdef"
)

// certmgr's part of a group is its core: a group is deployed to one core
// (v1), so a group whose Core names another thing than this core's
// coreThing.thingArn is refused before anything is applied. With no
// thingArn configured (the embedded default) any core name is accepted.

// followGroup loads the group in force and answers later deployments.
func (s *Service) followGroup() error {
	g, id, err := deployment.LoadCurrent(s.env.Root)
	if err != nil {
		return err
	}
	if g != nil {
		s.env.Log.Info("group in force", "deployment", id, "core", g.CoreThingName())
	}
	stop, err := deployment.Serve(s.env, s.applyGroup)
	if err != nil {
		return err
	}
	s.stopFollowing = stop
	return nil
}

func (s *Service) applyGroup(ctx context.Context, g *groupdef.Group, rollback bool) error {
	if g == nil {
		return nil
	}
	want := ""
	if s.env.Config.CoreThing.ThingArn != "" {
		want = s.env.Config.CoreThingName()
	}
	if got := g.CoreThingName(); want != "" && got != want && !rollback {
		return fmt.Errorf("Core.Cores[0].ThingArn: the group is for core %q but this core is %q (coreThing.thingArn)", got, want)
	}
	return nil
}
