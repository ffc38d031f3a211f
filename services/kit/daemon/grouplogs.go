package daemon

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/evergreen-edge/evergreen/services/kit/groupdef"
	"github.com/evergreen-edge/evergreen/services/kit/layout"
	"github.com/evergreen-edge/evergreen/services/kit/logging"
	"github.com/nats-io/nats.go"
)

// The group's loggers apply to every daemon's own log (see
// logging.Control.ApplyGroup): Start puts those of the group in force
// before the service starts, deployment.Serve after each deployment it
// applies, and the deployagent after each deployment it finishes.

// LogFlushInterval is how long forwarded records wait for their batch
// (unless BatchBytes of them wait already).
const LogFlushInterval = 5 * time.Second

// LogsSubject is where a daemon publishes its forwarded log batches:
// evergreen.<x>.logs under the first evergreen.<x>.> its role may publish
// ("" when it may publish none: that daemon's records are not forwarded).
// The broker follows evergreen.*.logs.
func LogsSubject(role *BusRole) string {
	if role == nil {
		return ""
	}
	for _, p := range role.Publish {
		if x, ok := strings.CutSuffix(p, ".>"); ok && strings.Count(x, ".") == 1 && strings.HasPrefix(x, "evergreen.") && !strings.ContainsAny(x, "*>") {
			return x + ".logs"
		}
	}
	return ""
}

// ApplyGroupLoggers puts the loggers of g (nil: no group) in force on the
// daemon's log and says so (at info: not seen under WARN and above).
func (e *Env) ApplyGroupLoggers(g *groupdef.Group) {
	var ls *groupdef.LoggerDefinitionVersion
	if g != nil {
		ls = g.Loggers
	}
	e.Log.Info("group loggers in force", "loggers", e.Logs.ApplyGroup(ls))
}

// LoggersInForce reads the loggers of the group in force from
// DIR/deployments/current.json, or previous.json (the last good copy)
// when current.json is unreadable: deployment.LoadCurrent's rule, which
// this package cannot import. Only the loggers are decoded; the group was
// validated when it was deployed. nil: no group, or it has no loggers.
func LoggersInForce(root layout.Root) (*groupdef.LoggerDefinitionVersion, error) {
	ls, err := readLoggers(filepath.Join(root.DeploymentsDir(), "current.json"))
	if err == nil {
		return ls, nil
	}
	if prev, perr := readLoggers(filepath.Join(root.DeploymentsDir(), "previous.json")); perr == nil {
		return prev, nil
	}
	return nil, err
}

func readLoggers(path string) (*groupdef.LoggerDefinitionVersion, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var rec struct {
		DeploymentID string `json:"deploymentId"`
		Reset        bool   `json:"reset"`
		Group        json.RawMessage
	}
	if err := json.Unmarshal(b, &rec); err != nil || rec.DeploymentID == "" {
		return nil, fmt.Errorf("%s: corrupt", path)
	}
	if rec.Reset || len(rec.Group) == 0 || bytes.Equal(bytes.TrimSpace(rec.Group), []byte("null")) {
		return nil, nil
	}
	var g struct {
		Loggers *groupdef.LoggerDefinitionVersion
	}
	if err := json.Unmarshal(rec.Group, &g); err != nil {
		return nil, fmt.Errorf("%s: group: %w", path, err)
	}
	return g.Loggers, nil
}

// logForwarder publishes the batches of records the group's AWSCloudWatch
// loggers ask for; it runs only when a cloud is configured.
type logForwarder struct {
	stop chan struct{}
	done chan struct{}
}

func startLogForwarder(bus *nats.Conn, subject string, c *logging.Control) *logForwarder {
	f := &logForwarder{stop: make(chan struct{}), done: make(chan struct{})}
	wake := c.AllowForward()
	go f.run(bus, subject, c, wake)
	return f
}

func (f *logForwarder) run(bus *nats.Conn, subject string, c *logging.Control, wake <-chan struct{}) {
	defer close(f.done)
	for {
		select {
		case <-f.stop:
			publishLogs(bus, subject, c)
			return
		case <-wake:
		}
		t := time.NewTimer(LogFlushInterval)
		select {
		case <-f.stop:
		case <-t.C:
		case <-wake: // a whole batch waits
		}
		t.Stop()
		publishLogs(bus, subject, c)
	}
}

// publishLogs must not log: its records would feed the next batch.
// Losses are counted into the next batch's "dropped" instead.
func publishLogs(bus *nats.Conn, subject string, c *logging.Control) {
	for _, b := range c.Batches() {
		if err := bus.Publish(subject, b.Data); err != nil {
			c.CountDropped(b.Records)
		}
	}
}

// close publishes what waits and stops; the bus must still be open.
func (f *logForwarder) close() {
	if f == nil {
		return
	}
	close(f.stop)
	<-f.done
}
