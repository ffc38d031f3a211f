package deployagent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/evergreen-edge/evergreen/deployagent/artifact"
	brokerv1 "github.com/evergreen-edge/evergreen/proto/evergreen/broker/v1"
	deployv1 "github.com/evergreen-edge/evergreen/proto/evergreen/deploy/v1"
	secretsv1 "github.com/evergreen-edge/evergreen/proto/evergreen/secrets/v1"
	"github.com/evergreen-edge/evergreen/services/kit/atomicfile"
	"github.com/evergreen-edge/evergreen/services/kit/clouddeploy"
	"github.com/evergreen-edge/evergreen/services/kit/errdefs"
	"github.com/evergreen-edge/evergreen/services/kit/subjects"
	"github.com/nats-io/nats.go"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// Cloud deployments (docs/cloud.md, services/kit/clouddeploy): the broker
// hands over what the cloud publishes on the core's request topic; each
// request runs as a local deployment would, one at a time, and its status
// goes back on the status topic through the broker's spooler: InProgress
// at each stage, Building while the group or its artifacts download, then
// Success or Failure with every reason.
//
// DIR/data/deployagent/cloud.json holds the request being handled until
// its final status is out. After a restart the deployagent publishes the
// outcome of a deployment that was committed when it stopped (the
// start-up recovery settles it), and runs the request again from the
// start when it had not been committed (Config.Rerun: the recovery
// discards its staged.json; a group or artifact download resumes where it
// stopped, with an HTTP Range request).
//
// The status published last (cloud-status.json keeps the last final one
// across restarts) is published again each time the broker reports a
// cloud connection ready (evergreen.broker.events.cloud), until a later
// status supersedes it: a status published while the broker was not yet
// listening, or lost with the broker's Memory spool, reaches the cloud at
// its next connection. The cloud may so see a status twice; it is the
// same status.

// cloudQueue bounds the requests waiting behind the one running; more are
// refused with a Failure status ("busy").
const cloudQueue = 16

type cloudDeploys struct {
	l     *Local
	bus   *nats.Conn
	thing string
	fetch *artifact.Fetcher
	// secretsSock is the secrets daemon's socket; brokerSock the
	// broker's ("" when the broker is not a daemon of this suite).
	secretsSock, brokerSock string
	file                    string
	log                     *slog.Logger

	queue chan []byte
	sub   *nats.Subscription
	ready *nats.Subscription
	// statusFile keeps the last final status across restarts.
	statusFile string

	// mu orders publishes: last is the status published last (a Status
	// JSON), sent again on every cloud connection.
	mu   sync.Mutex
	last []byte
	ctx  context.Context
	stop context.CancelFunc
	wg   sync.WaitGroup
}

func startCloudDeploys(l *Local, bus *nats.Conn, thing string, fetch *artifact.Fetcher, dir, secretsSock, brokerSock string, log *slog.Logger) (*cloudDeploys, error) {
	c := &cloudDeploys{l: l, bus: bus, thing: thing, fetch: fetch, file: filepath.Join(dir, cloudFile), statusFile: filepath.Join(dir, cloudStatusFile),
		secretsSock: secretsSock, brokerSock: brokerSock, log: log.With("component", "cloud"), queue: make(chan []byte, cloudQueue)}
	c.ctx, c.stop = context.WithCancel(context.Background())
	// cloud.json is the request as the cloud sent it.
	pending, err := os.ReadFile(c.file)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		c.log.Warn("cloud.json unreadable; the request it held is dropped", "err", err)
	}
	if b, err := os.ReadFile(c.statusFile); err == nil && json.Valid(b) {
		c.last = b
	}
	if c.ready, err = bus.Subscribe(subjects.BrokerCloudReady, c.onCloudReady); err != nil {
		return nil, fmt.Errorf("subscribe %s: %w", subjects.BrokerCloudReady, err)
	}
	if c.sub, err = bus.Subscribe(subjects.BrokerCloudDeploy, c.onRequest); err != nil {
		c.ready.Unsubscribe()
		return nil, fmt.Errorf("subscribe %s: %w", subjects.BrokerCloudDeploy, err)
	}
	// The server must hold the subscription before the daemon reports
	// ready, or a request relayed right after start finds no one.
	if err := bus.Flush(); err != nil {
		c.log.Warn("bus flush after subscribe", "err", err)
	}
	c.wg.Add(1)
	go c.loop(pending)
	return c, nil
}

// The files of cloud deployments, in DIR/data/deployagent.
const (
	cloudFile       = "cloud.json"
	cloudStatusFile = "cloud-status.json"
	// cloudRunsFile counts the runs of cloud.json's request (decimal).
	cloudRunsFile = "cloud-runs"
)

// maxCloudRuns bounds the runs of one cloud request that restarts cut
// short before its commit: a request that crashes the core (or a core
// that loses power every time) ends Failure instead of running forever.
const maxCloudRuns = 3

// cutShortReason is the Failure reason of a request cut short runs times.
func cutShortReason(runs int) string {
	return fmt.Sprintf("cut short by a restart of the core %d times before its commit; not run again: the previous group stays in force, deploy it again", runs)
}

// cloudRuns is how many times cloud.json's request has started (0: no
// count, or an unreadable one).
func cloudRuns(dir string) int {
	b, err := os.ReadFile(filepath.Join(dir, cloudRunsFile))
	if err != nil {
		return 0
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || n < 0 {
		return 0
	}
	return n
}

// pendingCloudID is the deploymentId of the request cloud.json holds ("":
// none), read before the start-up recovery (Config.Rerun).
func pendingCloudID(dir string) string {
	b, err := os.ReadFile(filepath.Join(dir, cloudFile))
	if err != nil {
		return ""
	}
	return requestID(b)
}

func (c *cloudDeploys) close() {
	c.ready.Unsubscribe()
	c.sub.Unsubscribe()
	c.stop()
	c.wg.Wait()
}

func (c *cloudDeploys) onRequest(m *nats.Msg) {
	rm := &brokerv1.RoutedMessage{}
	if err := proto.Unmarshal(m.Data, rm); err != nil {
		c.log.Warn("malformed RoutedMessage from the broker", "err", err)
		return
	}
	select {
	case c.queue <- rm.GetPayload():
	default:
		id := requestID(rm.GetPayload())
		c.log.Warn("cloud deployment refused: too many waiting", "deployment", id, "waiting", cloudQueue)
		c.send(c.status(id, clouddeploy.Failure, "", fmt.Sprintf("the core is busy: %d deployments wait already", cloudQueue)))
	}
}

// onCloudReady publishes the last status again: the broker has just
// (re)connected to the cloud.
func (c *cloudDeploys) onCloudReady(*nats.Msg) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.last != nil {
		c.log.Debug("cloud connected: publishing the last deployment status again")
		c.send(c.last)
	}
}

// loop handles requests one at a time, the pending one of cloud.json first.
func (c *cloudDeploys) loop(pending []byte) {
	defer c.wg.Done()
	if len(pending) > 0 {
		c.waitBroker()
		c.handle(pending, true)
	}
	for {
		select {
		case <-c.ctx.Done():
			return
		case b := <-c.queue:
			c.handle(b, false)
		}
	}
}

func (c *cloudDeploys) handle(raw []byte, resumed bool) {
	r, err := clouddeploy.ParseRequest(raw)
	if err != nil {
		id := requestID(raw)
		c.log.Warn("cloud deployment request refused", "deployment", id, "err", err)
		c.publish(id, clouddeploy.Failure, "", err.Error())
		return
	}
	log := c.log.With("deployment", r.DeploymentID, "type", r.DeploymentType)
	// Seen before (a redelivery, or in flight when the core stopped):
	// report its outcome once it has one.
	if d := c.settled(r.DeploymentID); d != nil {
		log.Info("cloud deployment known; reporting its outcome", "status", d.GetStatus().String())
		c.final(d)
		c.forget()
		return
	}
	first, runs := "received", 1
	if resumed {
		runs = cloudRuns(filepath.Dir(c.file)) + 1
		if runs > maxCloudRuns {
			log.Warn("cloud deployment cut short by a restart too many times; not run again", "runs", runs-1)
			c.publish(r.DeploymentID, clouddeploy.Failure, "", cutShortReason(runs-1))
			c.forget()
			return
		}
		log.Info("cloud deployment runs again after a restart", "run", runs)
		first = "resumed"
	}
	if err := atomicfile.WriteFile(c.file, raw, 0o600); err != nil {
		log.Error("record the cloud request", "err", err)
	}
	if err := atomicfile.WriteFile(filepath.Join(filepath.Dir(c.file), cloudRunsFile), []byte(strconv.Itoa(runs)), 0o600); err != nil {
		log.Error("record the runs of the cloud request", "err", err)
	}
	defer c.forget()
	c.publish(r.DeploymentID, clouddeploy.InProgress, first, "")

	if len(r.Secrets) > 0 {
		c.publish(r.DeploymentID, clouddeploy.InProgress, "secrets", "")
		if err := c.putSecrets(r.Secrets); err != nil {
			log.Warn("cloud deployment: secrets refused", "err", err)
			c.publish(r.DeploymentID, clouddeploy.Failure, "secrets", err.Error())
			return
		}
	}
	req := &deployv1.DeployRequest{DeploymentId: r.DeploymentID, GroupJson: r.Group}
	switch r.DeploymentType {
	case clouddeploy.Redeployment:
		req.Type = deployv1.DeploymentType_DEPLOYMENT_TYPE_REDEPLOY
		req.GroupJson = nil
	case clouddeploy.ResetDeployment:
		req.Type = deployv1.DeploymentType_DEPLOYMENT_TYPE_RESET
	case clouddeploy.ForceResetDeployment:
		req.Type = deployv1.DeploymentType_DEPLOYMENT_TYPE_FORCE_RESET
	default:
		req.Type = deployv1.DeploymentType_DEPLOYMENT_TYPE_NEW
	}
	if r.GroupURL != "" {
		c.publish(r.DeploymentID, clouddeploy.Building, "group", "")
		path, err := c.fetch.Fetch(c.ctx, artifact.Spec{URL: r.GroupURL, SHA256: r.SHA256, Size: r.Size, MaxBytes: clouddeploy.MaxGroupBytes}, nil)
		if err == nil {
			req.GroupJson, err = os.ReadFile(path)
		}
		if err != nil {
			if c.ctx.Err() != nil {
				return // stopping: cloud.json stays, the download resumes at the next start
			}
			log.Warn("cloud deployment: group download failed", "err", err)
			c.publish(r.DeploymentID, clouddeploy.Failure, "", "groupUrl: "+err.Error())
			return
		}
	}
	// A request run again at start waits for daemons still starting.
	events, err := c.l.deploy(c.ctx, req, resumed)
	for errors.Is(err, errdefs.ErrAborted) && c.ctx.Err() == nil {
		// Another deployment (local, or the start-up recovery) runs.
		time.Sleep(200 * time.Millisecond)
		events, err = c.l.deploy(c.ctx, req, resumed)
	}
	if err != nil {
		if c.ctx.Err() != nil {
			return
		}
		log.Warn("cloud deployment refused", "err", err)
		c.publish(r.DeploymentID, clouddeploy.Failure, "", err.Error())
		return
	}
	stage := ""
	for {
		ev, err := events.Recv()
		if err != nil {
			break
		}
		switch {
		case ev.GetStatus() != inProgress:
			d, _ := c.l.GetDeployment(context.Background(), &deployv1.GetDeploymentRequest{DeploymentId: r.DeploymentID})
			if d == nil {
				d = &deployv1.Deployment{DeploymentId: r.DeploymentID, Status: ev.GetStatus(), Error: ev.GetMessage()}
			}
			c.final(d)
			return
		case strings.HasPrefix(ev.GetMessage(), "artifact "):
			if stage != "artifacts" {
				stage = "artifacts"
				c.publish(r.DeploymentID, clouddeploy.Building, stage, "")
			}
		case ev.GetStage() != "" && ev.GetStage() != stage:
			stage = ev.GetStage()
			c.publish(r.DeploymentID, clouddeploy.InProgress, stage, "")
		}
	}
	// The stream ended without an outcome: the deployagent is stopping and
	// the start-up recovery settles it; cloud.json stays for the report.
	if c.ctx.Err() != nil {
		return
	}
}

// brokerWait bounds how long the request found at start waits for the
// broker.
const brokerWait = 30 * time.Second

// waitBroker waits, at most brokerWait, until the broker answers on its
// socket: started in parallel after a restart, it may not follow the bus
// yet, and a status published before it does is lost (but for the last
// one, see onCloudReady). Once it answers, it queues every status for the
// cloud, connected or not.
func (c *cloudDeploys) waitBroker() {
	if c.brokerSock == "" {
		return
	}
	conn, err := grpc.NewClient("unix://"+c.brokerSock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return
	}
	defer conn.Close()
	api := brokerv1.NewBrokerClient(conn)
	deadline := time.Now().Add(brokerWait)
	for {
		ctx, cancel := context.WithTimeout(c.ctx, time.Second)
		_, err := api.GetCloudStatus(ctx, &brokerv1.GetCloudStatusRequest{})
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			c.log.Warn("the broker does not answer; publishing the statuses of the resumed deployment anyway", "err", err)
			return
		}
		select {
		case <-c.ctx.Done():
			return
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// putSecrets stores a request's sealed secrets through the secrets
// daemon, which opens them with the core's key; they are in the store
// before any daemon prepares the group that names them.
func (c *cloudDeploys) putSecrets(list []clouddeploy.Secret) error {
	conn, err := grpc.NewClient("unix://"+c.secretsSock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	api := secretsv1.NewSecretsClient(conn)
	for i, sec := range list {
		ctx, cancel := context.WithTimeout(c.ctx, 10*time.Second)
		_, err := api.PutSecret(ctx, &secretsv1.PutSecretRequest{Name: sec.Name, Source: &secretsv1.PutSecretRequest_SealedValue{SealedValue: sec.SealedValue},
			Binary: sec.Binary, Labels: sec.Labels, VersionId: sec.VersionID})
		cancel()
		if err != nil {
			return fmt.Errorf("secrets[%d] (%s): %s", i, sec.Name, status.Convert(err).Message())
		}
	}
	return nil
}

// settled returns the deployment id names once it is over (waiting while
// it runs); nil when no deployment has that id.
func (c *cloudDeploys) settled(id string) *deployv1.Deployment {
	for {
		d, err := c.l.GetDeployment(context.Background(), &deployv1.GetDeploymentRequest{DeploymentId: id})
		if err != nil || d.GetStatus() != inProgress {
			return d
		}
		select {
		case <-c.ctx.Done():
			return nil
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// final publishes a deployment's outcome with every reason.
func (c *cloudDeploys) final(d *deployv1.Deployment) {
	if d.GetStatus() == succeeded {
		c.publish(d.GetDeploymentId(), clouddeploy.Success, "done", "")
		return
	}
	var reasons []string
	if d.GetError() != "" {
		reasons = append(reasons, d.GetError())
	}
	for _, r := range d.GetResults() {
		if !r.GetOk() && r.GetReason() != "" && !strings.Contains(d.GetError(), r.GetReason()) {
			reasons = append(reasons, r.GetDaemon()+": "+r.GetReason())
		}
	}
	c.publish(d.GetDeploymentId(), clouddeploy.Failure, d.GetStage(), reasons...)
}

func (c *cloudDeploys) forget() {
	if c.ctx.Err() != nil {
		return // keep cloud.json for the next start
	}
	if err := os.Remove(c.file); err != nil && !errors.Is(err, os.ErrNotExist) {
		c.log.Warn("remove cloud.json", "err", err)
	}
	if err := os.Remove(filepath.Join(filepath.Dir(c.file), cloudRunsFile)); err != nil && !errors.Is(err, os.ErrNotExist) {
		c.log.Warn("remove "+cloudRunsFile, "err", err)
	}
}

// publish sends a status of the deployment being handled to the cloud
// (through the broker's spooler) and keeps it as the last one; a final
// status is kept on disk too.
func (c *cloudDeploys) publish(id, status, stage string, reasons ...string) {
	b := c.status(id, status, stage, reasons...)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.last = b
	if status == clouddeploy.Success || status == clouddeploy.Failure {
		if err := atomicfile.WriteFile(c.statusFile, b, 0o600); err != nil {
			c.log.Warn("record the last deployment status", "err", err)
		}
	}
	c.send(b)
}

// status encodes a status.
func (c *cloudDeploys) status(id, status, stage string, reasons ...string) []byte {
	var rs []string
	for _, r := range reasons {
		if r != "" {
			rs = append(rs, r)
		}
	}
	b, _ := json.Marshal(clouddeploy.Status{DeploymentID: id, Status: status, Stage: stage, Reasons: rs, Timestamp: time.Now().UnixMilli()})
	return b
}

// send publishes an encoded status for the broker to queue for the cloud.
func (c *cloudDeploys) send(b []byte) {
	m, _ := proto.Marshal(&brokerv1.RoutedMessage{Topic: clouddeploy.StatusTopic(c.thing), Payload: b, Qos: 1, Time: timestamppb.Now()})
	if err := c.bus.Publish(subjects.DeployCloud, m); err != nil {
		c.log.Warn("publish a deployment status", "err", err)
	}
}

// requestID is the deploymentId of a request that may not parse.
func requestID(b []byte) string {
	var r struct {
		DeploymentID string `json:"deploymentId"`
	}
	json.Unmarshal(b, &r)
	if !clouddeploy.ValidID(r.DeploymentID) {
		return ""
	}
	return r.DeploymentID
}
