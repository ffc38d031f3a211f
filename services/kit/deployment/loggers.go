package deployment

import (
	"log/slog"

	"github.com/evergreen-edge/evergreen/services/kit/daemon"
	"github.com/evergreen-edge/evergreen/services/kit/groupdef"
	"github.com/evergreen-edge/evergreen/services/kit/layout"
	"github.com/evergreen-edge/evergreen/services/kit/logging"
)

// ApplyLoggers puts the loggers of g (nil: a reset) in force on the
// daemon's own log: the GreengrassSystem FileSystem logger's level and
// space, or config.json's evergreen.logging when the group has none, and
// the AWSCloudWatch loggers (see logging.Control.ApplyGroup). Serve calls
// it after each group it applies or rolls back to; daemon.Start has put
// the group in force at start.
func ApplyLoggers(env *daemon.Env, g *groupdef.Group) {
	env.ApplyGroupLoggers(g)
}

// ApplyLoggersInForce is ApplyLoggers for a daemon that does not consume
// the group (the deployagent, after each deployment it finishes) and
// holds only its logger, made by daemon.Start: it reads the group in
// force (only its Loggers). An unreadable record changes nothing.
func ApplyLoggersInForce(log *slog.Logger, root layout.Root) {
	c := logging.ControlOf(log)
	if c == nil {
		return
	}
	// Only the loggers are decoded: a whole group at v1's limits costs
	// tens of MB to parse.
	ls, err := daemon.LoggersInForce(root)
	if err != nil {
		log.Warn("group loggers: the group in force is unreadable; logging unchanged", "err", err)
		return
	}
	log.Info("group loggers in force", "loggers", c.ApplyGroup(ls))
}
