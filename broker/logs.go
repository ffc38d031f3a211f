package broker

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/evergreen-edge/evergreen/broker/router"
	"github.com/evergreen-edge/evergreen/services/kit/logging"
	"github.com/nats-io/nats.go"
)

// The group's AWSCloudWatch loggers. Each daemon that may publish on the
// bus copies its records at or above the logger's level into a bounded
// ring and publishes them in JSON batches on evergreen.<x>.logs (package
// services/kit/logging and daemon); the runtime does the same for its
// functions' log lines (component Lambda/<function>). The broker queues
// each batch for the cloud on LogsTopic through the spooler, like any
// message for the cloud: when the spooler refuses, the batch is dropped and
// counted. Without a cloud no daemon keeps records, and the broker says
// once per deployment that the group's AWSCloudWatch loggers go nowhere.

// logsSubject is where the daemons publish their batches.
const logsSubject = "evergreen.*.logs"

// LogsTopic is the cloud topic of one component's log batches:
// evergreen/things/<thing>/logs/GreengrassSystem/<daemon> or
// evergreen/things/<thing>/logs/Lambda/<function>.
func LogsTopic(thing, component string) string {
	return "evergreen/things/" + thing + "/logs/" + component
}

// followLogs hears the group's AWSCloudWatch loggers (now and after every
// deployment) and returns the handler of the batches.
func (s *Service) followLogs() nats.MsgHandler {
	s.env.Logs.OnCloud(s.cloudLoggers)
	return s.onLogs
}

// cloudLoggers warns, once per group put in force, when the group asks
// for AWSCloudWatch loggers and there is no cloud to send them to.
func (s *Service) cloudLoggers(system, lambda logging.Cloud) {
	if s.env.Config.CloudEnabled() {
		return
	}
	var comps []string
	if system.On {
		comps = append(comps, logging.ComponentSystem)
	}
	if lambda.On {
		comps = append(comps, logging.ComponentLambda)
	}
	if len(comps) == 0 {
		return
	}
	s.log.Warn("group has an AWSCloudWatch logger for " + strings.Join(comps, " and ") +
		" but no cloud is configured (coreThing.iotHost); its records are not forwarded")
}

// onLogs queues one batch for the cloud. The component must be the
// publisher's: GreengrassSystem/<daemon> from any daemon, Lambda/<function>
// from the runtime only. Nothing here logs at message rate: these records
// would come back as the next batch.
func (s *Service) onLogs(msg *nats.Msg) {
	comp, err := batchComponent(msg.Data)
	if err == nil {
		err = checkComponent(comp, strings.TrimSuffix(strings.TrimPrefix(msg.Subject, "evergreen."), ".logs"))
	}
	if err != nil {
		s.reject(msg.Subject, "log batch: "+err.Error())
		return
	}
	m := &message{src: router.Cloud, topic: LogsTopic(s.env.Config.CoreThingName(), comp), payload: msg.Data, qos: 1, time: time.Now()}
	if err := checkMessage(m.topic, m.payload, 1); err != nil {
		s.reject(msg.Subject, "log batch: "+err.Error())
		return
	}
	if s.cloud == nil {
		s.stats.cloudDropped.Add(1)
		return
	}
	s.toCloud(m)
}

// batchComponent reads the first member of a batch, "component".
func batchComponent(data []byte) (string, error) {
	d := json.NewDecoder(bytes.NewReader(data))
	if t, err := d.Token(); err != nil || t != json.Delim('{') {
		return "", errors.New("not a JSON object")
	}
	if t, err := d.Token(); err != nil || t != "component" {
		return "", errors.New(`the first member is not "component"`)
	}
	t, err := d.Token()
	comp, ok := t.(string)
	if err != nil || !ok {
		return "", errors.New(`"component" is not a string`)
	}
	return comp, nil
}

// checkComponent accepts GreengrassSystem/<daemon name> and, from the
// runtime, Lambda/<function name>, each one topic level.
func checkComponent(comp, publisher string) error {
	kind, name, _ := strings.Cut(comp, "/")
	switch {
	case name == "" || len(name) > 128 || strings.ContainsAny(name, "/+#$\x00"):
		return fmt.Errorf("component %q: the name must be one topic level", comp)
	case kind == logging.ComponentSystem:
		for _, r := range name {
			if (r < 'a' || r > 'z') && (r < '0' || r > '9') {
				return fmt.Errorf("component %q: not a daemon name", comp)
			}
		}
		return nil
	case kind == logging.ComponentLambda && publisher == "runtime":
		return nil
	}
	return fmt.Errorf("component %q is not the publisher's (%s)", comp, publisher)
}
