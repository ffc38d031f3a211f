package deployagent_test

import (
	"context"
	"encoding/json"
	"errors"
	"github.com/evergreen-edge/evergreen/services/kit/bustest"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/evergreen-edge/evergreen/deployagent"
	deployv1 "github.com/evergreen-edge/evergreen/proto/evergreen/deploy/v1"
	"github.com/evergreen-edge/evergreen/services/kit/config"
	"github.com/evergreen-edge/evergreen/services/kit/deployment"
	"github.com/evergreen-edge/evergreen/services/kit/errdefs"
	"github.com/evergreen-edge/evergreen/services/kit/groupdef"
	"github.com/evergreen-edge/evergreen/services/kit/layout"
	"github.com/nats-io/nats.go"
)

func canonical(t *testing.T, file []byte) []byte {
	t.Helper()
	g, err := groupdef.Parse(file)
	if err != nil {
		t.Fatal(err)
	}
	b, err := groupdef.Marshal(g)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func (s *suite) stopAll() {
	s.t.Helper()
	stopDaemon(s.t, s.agent)
	for _, n := range s.names {
		stopDaemon(s.t, runningOf(s.t, s, n))
	}
}

// A power cut in the middle of a deployment leaves a torn temp file of
// current.json and the staged deployment. The next start must keep the
// group that was in force and record the interrupted deployment.
func TestStartIgnoresTornTempFileAndDiscardsStagedDeployment(t *testing.T) {
	alpha := &consumer{name: "alpha"}
	s := newSuite(t, []*consumer{alpha})
	first, _ := mustDeploy(t, s.client, &deployv1.DeployRequest{GroupJson: groupJSON("one")})
	if first.GetStatus() != success {
		t.Fatal(first.GetMessage())
	}
	id := first.GetDeploymentId()
	s.stopAll()

	dir := layout.Root(s.root).DeploymentsDir()
	next := &deployment.Record{DeploymentID: "interrupted-1", DeployedAt: time.Now().UTC(), GroupSHA256: strings.Repeat("ab", 32), Group: canonical(t, groupJSON("two"))}
	full, _ := json.Marshal(next)
	torn := filepath.Join(dir, ".current.json.tmp-4242")
	if err := os.WriteFile(torn, full[:len(full)/2], 0o600); err != nil {
		t.Fatal(err)
	}
	if err := deployment.WriteRecord(filepath.Join(dir, deployment.StagedFile), next); err != nil {
		t.Fatal(err)
	}

	s.start()
	if g, lid := alpha.inForce(); lid != id || !reflect.DeepEqual(functionIDs(g), []string{"one"}) {
		t.Fatalf("alpha loaded %v of %q; want [one] of %s", functionIDs(g), lid, id)
	}
	if fns, gid := currentGroupFunctions(t, s.client); gid != id || !reflect.DeepEqual(fns, []string{"one"}) {
		t.Fatalf("GetCurrentGroup = %v of %s; want [one] of %s", fns, gid, id)
	}
	for _, p := range []string{torn, filepath.Join(dir, deployment.StagedFile)} {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("%s still there after start: %v", filepath.Base(p), err)
		}
	}
	d, err := s.client.GetDeployment(context.Background(), &deployv1.GetDeploymentRequest{DeploymentId: "interrupted-1"})
	if err != nil || d.GetStatus() != failure || !strings.Contains(d.GetError(), "interrupted") || d.GetCurrent() {
		t.Fatalf("interrupted deployment recorded as %v, %v", d, err)
	}
	if got := alpha.received(); len(got) != 0 {
		t.Fatalf("alpha received %+v on start; the deployagent must not push", got)
	}
	// Deployments work again.
	if last, _ := mustDeploy(t, s.client, &deployv1.DeployRequest{GroupJson: groupJSON("three")}); last.GetStatus() != success {
		t.Fatal(last.GetMessage())
	}
}

func TestStartDiscardsTornStagedFile(t *testing.T) {
	root := newRoot(t)
	dir := layout.Root(root).DeploymentsDir()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, deployment.StagedFile), []byte(`{"deploymentId": "x", "gro`), 0o600); err != nil {
		t.Fatal(err)
	}
	bus := bustest.Start(t)
	startDaemon(t, root, bus, deployagent.Spec(nil))
	if _, err := os.Stat(filepath.Join(dir, deployment.StagedFile)); !os.IsNotExist(err) {
		t.Fatalf("torn staged.json kept: %v", err)
	}
	if _, _, err := deployment.LoadCurrent(layout.Root(root)); err != nil {
		t.Fatal(err)
	}
}

// Stopped after current.json was renamed into place but before the history
// was written: the deployment is in force and is recorded as such.
func TestStartRecordsDeploymentCommittedJustBeforeStop(t *testing.T) {
	root := newRoot(t)
	r := layout.Root(root)
	if err := r.Create(); err != nil {
		t.Fatal(err)
	}
	rec := &deployment.Record{DeploymentID: "c-1", DeployedAt: time.Now().UTC(), GroupSHA256: strings.Repeat("cd", 32), Group: canonical(t, groupJSON("one"))}
	if err := deployment.WriteRecord(deployment.Path(r, deployment.StagedFile), rec); err != nil {
		t.Fatal(err)
	}
	if err := deployment.Commit(r, rec); err != nil {
		t.Fatal(err)
	}
	alpha := &consumer{name: "alpha"}
	s := &suite{t: t, root: root, bus: bustest.Start(t), names: []string{"alpha"}, consumers: map[string]*consumer{"alpha": alpha}}
	s.start()
	d, err := s.client.GetDeployment(context.Background(), &deployv1.GetDeploymentRequest{})
	if err != nil || d.GetDeploymentId() != "c-1" || d.GetStatus() != success || !d.GetCurrent() {
		t.Fatalf("GetDeployment(current) = %v, %v; want c-1 SUCCESS", d, err)
	}
	if _, lid := alpha.inForce(); lid != "c-1" {
		t.Fatalf("alpha loaded %q, want c-1", lid)
	}
}

// The service object is usable in process through the same client
// interface as over gRPC.
func TestLocalServiceInProcess(t *testing.T) {
	root := newRoot(t)
	bus := bustest.Start(t)
	startDaemon(t, root, bus, (&consumer{name: "alpha"}).spec())
	nc, err := nats.Connect(bus)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	l, err := deployagent.NewLocal(deployagent.Config{Root: layout.Root(root), Bus: nc, Log: slog.New(slog.DiscardHandler), Consumers: []string{"alpha", "alpha"}})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close(context.Background())
	var c deployv1.DeployerClient = l

	_, err = c.Deploy(context.Background(), &deployv1.DeployRequest{})
	if !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Fatalf("empty request = %v; want an invalid-argument error", err)
	}
	stream, err := c.Deploy(context.Background(), &deployv1.DeployRequest{GroupJson: groupJSON("hello")})
	if err != nil {
		t.Fatal(err)
	}
	var last *deployv1.DeployEvent
	var msgs, stages []string
	for {
		ev := &deployv1.DeployEvent{}
		err := stream.RecvMsg(ev)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		last = ev
		msgs, stages = append(msgs, ev.GetMessage()), append(stages, ev.GetStage())
	}
	wantMsgs := []string{"validated", "artifacts ready", "alpha prepared", "prepared", "committed: current.json names " + last.GetDeploymentId(), "alpha applied", "applied", "deployment succeeded"}
	wantStages := []string{"validated", "artifacts", "artifacts", "prepared", "committed", "committed", "applied", "done"}
	if last.GetStatus() != success || !reflect.DeepEqual(msgs, wantMsgs) || !reflect.DeepEqual(stages, wantStages) || len(last.GetResults()) != 1 {
		t.Fatalf("events %q stages %q, last %v; want %q in stages %q, SUCCESS with alpha's result only", msgs, stages, last, wantMsgs, wantStages)
	}
	resp, err := c.GetCurrentGroup(context.Background(), &deployv1.GetCurrentGroupRequest{})
	if err != nil || !reflect.DeepEqual(resp.GetGroupJson(), canonical(t, groupJSON("hello"))) {
		t.Fatalf("GetCurrentGroup = %s, %v; want the canonical group", resp.GetGroupJson(), err)
	}
}

// A group built for another core thing is refused before any daemon sees
// it, when config.json names this core's thing.
func TestGroupForAnotherCoreIsInvalid(t *testing.T) {
	root := newRoot(t)
	bus := bustest.Start(t)
	alpha := &consumer{name: "alpha"}
	startDaemon(t, root, bus, alpha.spec())
	nc, err := nats.Connect(bus)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	cfg := config.Default()
	cfg.CoreThing.ThingArn = "arn:aws:iot:eu-west-1:123456789012:thing/other-core"
	l, err := deployagent.NewLocal(deployagent.Config{Root: layout.Root(root), Bus: nc, Log: slog.New(slog.DiscardHandler), Consumers: []string{"alpha"}, CoreConfig: cfg})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close(context.Background())
	_, err = l.Deploy(context.Background(), &deployv1.DeployRequest{GroupJson: groupJSON("hello")})
	if !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), "Core.Cores[0].ThingArn") || !strings.Contains(err.Error(), "other-core") {
		t.Fatalf("Deploy of a group for line7-core on other-core = %v; want invalid argument naming Core.Cores[0].ThingArn", err)
	}
	if got := alpha.received(); len(got) != 0 {
		t.Fatalf("alpha received %+v", got)
	}
}
