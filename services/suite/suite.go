// Package suite is the composition root's list of daemons: which exist, in
// which order they start, and who may say what on the bus. Adding a daemon
// is one line here (and its systemd unit and compose service).
package suite

import (
	"github.com/evergreen-edge/evergreen/broker"
	"github.com/evergreen-edge/evergreen/certmgr"
	"github.com/evergreen-edge/evergreen/deployagent"
	"github.com/evergreen-edge/evergreen/ota/agent"
	"github.com/evergreen-edge/evergreen/runtime"
	"github.com/evergreen-edge/evergreen/services/bus"
	"github.com/evergreen-edge/evergreen/services/ipdetector"
	"github.com/evergreen-edge/evergreen/services/kit/daemon"
	"github.com/evergreen-edge/evergreen/services/secrets"
	"github.com/evergreen-edge/evergreen/shadow"
	"github.com/evergreen-edge/evergreen/streammgr"
)

// Specs returns every daemon in start order, the bus first.
func Specs() []daemon.Spec {
	members := []daemon.Spec{
		certmgr.Spec(),
		broker.Spec(),
		ipdetector.Spec(),
		shadow.Spec(),
		// Before the runtime, which asks it for its functions' secrets.
		secrets.Spec(),
		// Before the runtime, so that functions find it listening; it asks
		// the runtime about a client's token only when the client connects.
		streammgr.Spec(),
		runtime.Spec(),
	}
	var consumers []string
	for _, s := range members {
		if s.ConsumesGroup {
			consumers = append(consumers, s.Name)
		}
	}
	members = append(members, deployagent.Spec(consumers))
	// Last: it commits an update only once everything before it is healthy.
	members = append(members, agent.Spec())
	return append([]daemon.Spec{bus.Spec(Roles(members))}, members...)
}

// Roles maps each daemon that uses the bus to its role.
func Roles(specs []daemon.Spec) map[string]*daemon.BusRole {
	roles := map[string]*daemon.BusRole{}
	for _, s := range specs {
		if s.Bus != nil {
			roles[s.Name] = s.Bus
		}
	}
	return roles
}

// Lookup returns the spec of a daemon by name.
func Lookup(name string) (daemon.Spec, bool) {
	for _, s := range Specs() {
		if s.Name == name {
			return s, true
		}
	}
	return daemon.Spec{}, false
}
