package broker

import (
	"context"
	"fmt"

	"github.com/evergreen-edge/evergreen/broker/cloud"
	"github.com/evergreen-edge/evergreen/broker/router"
	"github.com/evergreen-edge/evergreen/services/kit/groupdef"
)

// PREPARE runs every check of apply on the new group before the
// deployagent commits it, so a group the broker cannot route is refused
// while the old group is still the only one anywhere. It changes nothing:
// the table in force, the admitted devices and the spooler stay as they
// are. APPLY compiles the table again rather than keeping the prepared one:
// ApplyFunc is not told which deployment it applies, and a table swapped in
// for the wrong group would route silently wrong, while compiling twice
// only costs time.

// prepareGroup is the broker's PrepareFunc.
func (s *Service) prepareGroup(_ context.Context, g *groupdef.Group, _ string) error {
	_, err := s.checkGroup(g)
	return err
}

// checkGroup compiles g's subscription table and reads its spooler
// settings, returning the table (nil when it does not compile) and what
// apply would refuse. Nothing is put in force.
func (s *Service) checkGroup(g *groupdef.Group) (*router.Table, error) {
	t, err := router.Compile(g)
	if err != nil {
		return nil, err
	}
	settings, err := cloud.SettingsFromGroup(g)
	if err != nil {
		return t, err
	}
	// What Reconfigure checks before it touches the spool (applyCloud).
	if err := settings.Validate(); err != nil {
		return t, fmt.Errorf("cloud spooler: %w", err)
	}
	return t, nil
}
