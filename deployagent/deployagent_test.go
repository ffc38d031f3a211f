package deployagent_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"github.com/evergreen-edge/evergreen/services/kit/bustest"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/evergreen-edge/evergreen/deployagent"
	deployv1 "github.com/evergreen-edge/evergreen/proto/evergreen/deploy/v1"
	"github.com/evergreen-edge/evergreen/services/kit/deployment"
	"github.com/evergreen-edge/evergreen/services/kit/layout"
	"github.com/evergreen-edge/evergreen/services/kit/subjects"
	"github.com/nats-io/nats.go"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

const (
	success = deployv1.DeploymentStatus_DEPLOYMENT_STATUS_SUCCESS
	failure = deployv1.DeploymentStatus_DEPLOYMENT_STATUS_FAILURE
)

func TestDeploySucceedsAndPutsTheGroupInForce(t *testing.T) {
	s := newSuite(t, []*consumer{{name: "alpha"}, {name: "beta", refuse: true}})

	// Listen for the end-of-deployment announcement as any daemon would.
	nc, err := nats.Connect(s.bus)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	finished, err := nc.SubscribeSync(subjects.DeployEvents)
	if err != nil {
		t.Fatal(err)
	}
	nc.Flush()

	file := groupJSON("hello")
	last, evs := mustDeploy(t, s.client, &deployv1.DeployRequest{GroupJson: file})
	if last.GetStatus() != success {
		t.Fatalf("deployment ended %v: %s", last.GetStatus(), last.GetMessage())
	}
	msgs := messages(evs)
	if msgs[0] != "validated" || !slices.Contains(msgs, "alpha applied") || !slices.Contains(msgs, "beta applied") {
		t.Fatalf("events %q; want validated, then alpha applied and beta applied", msgs)
	}
	for _, e := range evs[:len(evs)-1] {
		if e.GetStatus() != deployv1.DeploymentStatus_DEPLOYMENT_STATUS_IN_PROGRESS || e.GetDeploymentId() != last.GetDeploymentId() {
			t.Fatalf("progress event %v", e)
		}
	}
	if n := len(last.GetResults()); n != 2 {
		t.Fatalf("terminal event has %d results, want 2", n)
	}
	id := last.GetDeploymentId()

	// Each consumer applied the group once, not as a rollback.
	for _, n := range []string{"alpha", "beta"} {
		want := []applyCall{{functions: []string{"hello"}}}
		if got := s.consumer(n).received(); !reflect.DeepEqual(got, want) {
			t.Errorf("%s received %+v, want %+v", n, got, want)
		}
	}

	// On disk: current.json holds the group; nothing staged or left over.
	cur := readRecord(t, s.root, deployment.CurrentFile)
	sum := sha256.Sum256(file)
	if cur == nil || cur.DeploymentID != id || cur.Reset || cur.GroupSHA256 != hex.EncodeToString(sum[:]) {
		t.Fatalf("current.json = %+v; want deployment %s with the file's sha256", cur, id)
	}
	if got := recordFunctions(t, cur); !reflect.DeepEqual(got, []string{"hello"}) {
		t.Fatalf("current.json functions %v", got)
	}
	entries, _ := os.ReadDir(layout.Root(s.root).DeploymentsDir())
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if !reflect.DeepEqual(names, []string{"current.json", "history.json"}) {
		t.Fatalf("DIR/deployments holds %v; want current.json and history.json only", names)
	}

	// Through the API.
	fns, gid := currentGroupFunctions(t, s.client)
	if gid != id || !reflect.DeepEqual(fns, []string{"hello"}) {
		t.Fatalf("GetCurrentGroup = %v of %s", fns, gid)
	}
	d, err := s.client.GetDeployment(context.Background(), &deployv1.GetDeploymentRequest{})
	if err != nil || d.GetDeploymentId() != id || d.GetStatus() != success || !d.GetCurrent() || d.GetType() != deployv1.DeploymentType_DEPLOYMENT_TYPE_NEW {
		t.Fatalf("GetDeployment(current) = %v, %v", d, err)
	}
	list, err := s.client.ListDeployments(context.Background(), &deployv1.ListDeploymentsRequest{})
	if err != nil || len(list.GetDeployments()) != 1 {
		t.Fatalf("ListDeployments = %v, %v", list, err)
	}

	// The bus heard about it.
	m, err := finished.NextMsg(5 * time.Second)
	if err != nil {
		t.Fatalf("no DeploymentFinished on %s: %v", subjects.DeployEvents, err)
	}
	var df deployv1.DeploymentFinished
	if err := proto.Unmarshal(m.Data, &df); err != nil || df.GetDeployment().GetDeploymentId() != id || df.GetDeployment().GetStatus() != success {
		t.Fatalf("DeploymentFinished = %v, %v", &df, err)
	}

	// The consumers loading the group on start see it too.
	g, lid, err := deployment.LoadCurrent(layout.Root(s.root))
	if err != nil || lid != id || !reflect.DeepEqual(functionIDs(g), []string{"hello"}) {
		t.Fatalf("LoadCurrent = %v, %q, %v", functionIDs(g), lid, err)
	}
}

func TestRefusedDeploymentKeepsThePreviousGroupInForce(t *testing.T) {
	s := newSuite(t, []*consumer{{name: "alpha"}, {name: "beta", refuse: true}})
	first, _ := mustDeploy(t, s.client, &deployv1.DeployRequest{GroupJson: groupJSON("hello")})
	if first.GetStatus() != success {
		t.Fatalf("first deployment: %s", first.GetMessage())
	}
	goodID := first.GetDeploymentId()

	last, evs := mustDeploy(t, s.client, &deployv1.DeployRequest{GroupJson: groupJSON("hello", refuseID)})
	if last.GetStatus() != failure {
		t.Fatalf("deployment ended %v, want FAILURE: %s", last.GetStatus(), last.GetMessage())
	}
	badID := last.GetDeploymentId()
	msgs := messages(evs)
	if !slices.Contains(msgs, "alpha applied") || !slices.ContainsFunc(msgs, func(m string) bool {
		return strings.HasPrefix(m, "beta refused: ") && strings.Contains(m, refuseID)
	}) || !slices.Contains(msgs, "alpha rolled back") {
		t.Fatalf("events %q; want alpha applied, beta refused with its reason, alpha rolled back", msgs)
	}
	results := map[string]*deployv1.DaemonResult{}
	for _, r := range last.GetResults() {
		results[r.GetDaemon()] = r
	}
	if !results["alpha"].GetOk() || results["beta"].GetOk() || !strings.Contains(results["beta"].GetReason(), refuseID) {
		t.Fatalf("results %v; want alpha ok, beta refused naming %s", last.GetResults(), refuseID)
	}
	if !strings.Contains(last.GetMessage(), "beta: ") || !strings.Contains(last.GetMessage(), refuseID) {
		t.Fatalf("terminal message %q does not give beta's reason", last.GetMessage())
	}

	// alpha had applied it: it got the previous group back, as a rollback.
	wantAlpha := []applyCall{{functions: []string{"hello"}}, {functions: []string{"hello", refuseID}}, {functions: []string{"hello"}, rollback: true}}
	if got := s.consumer("alpha").received(); !reflect.DeepEqual(got, wantAlpha) {
		t.Fatalf("alpha received %+v, want %+v", got, wantAlpha)
	}
	// beta refused: nothing to undo.
	wantBeta := []applyCall{{functions: []string{"hello"}}, {functions: []string{"hello", refuseID}}}
	if got := s.consumer("beta").received(); !reflect.DeepEqual(got, wantBeta) {
		t.Fatalf("beta received %+v, want %+v", got, wantBeta)
	}

	// The previous group is still in force, on disk and through the API.
	if cur := readRecord(t, s.root, deployment.CurrentFile); cur.DeploymentID != goodID || !reflect.DeepEqual(recordFunctions(t, cur), []string{"hello"}) {
		t.Fatalf("current.json = %s %v; want %s [hello]", cur.DeploymentID, recordFunctions(t, cur), goodID)
	}
	if fns, gid := currentGroupFunctions(t, s.client); gid != goodID || !reflect.DeepEqual(fns, []string{"hello"}) {
		t.Fatalf("GetCurrentGroup = %v of %s; want [hello] of %s", fns, gid, goodID)
	}
	if _, err := os.Stat(filepath.Join(layout.Root(s.root).DeploymentsDir(), deployment.StagedFile)); !os.IsNotExist(err) {
		t.Fatalf("staged.json left behind: %v", err)
	}
	d, err := s.client.GetDeployment(context.Background(), &deployv1.GetDeploymentRequest{DeploymentId: badID})
	if err != nil || d.GetStatus() != failure || d.GetCurrent() || !strings.Contains(d.GetError(), "beta") {
		t.Fatalf("GetDeployment(%s) = %v, %v", badID, d, err)
	}
	cur, err := s.client.GetDeployment(context.Background(), &deployv1.GetDeploymentRequest{})
	if err != nil || cur.GetDeploymentId() != goodID || !cur.GetCurrent() {
		t.Fatalf("GetDeployment(current) = %v, %v; want %s", cur, err, goodID)
	}
}

func TestRefusedFirstDeploymentRollsBackToNoGroup(t *testing.T) {
	s := newSuite(t, []*consumer{{name: "alpha"}, {name: "beta", refuse: true}})
	last, _ := mustDeploy(t, s.client, &deployv1.DeployRequest{GroupJson: groupJSON(refuseID)})
	if last.GetStatus() != failure {
		t.Fatalf("deployment ended %v, want FAILURE", last.GetStatus())
	}
	want := []applyCall{{functions: []string{refuseID}}, {reset: true, rollback: true}}
	if got := s.consumer("alpha").received(); !reflect.DeepEqual(got, want) {
		t.Fatalf("alpha received %+v, want %+v", got, want)
	}
	if _, err := os.Stat(filepath.Join(layout.Root(s.root).DeploymentsDir(), deployment.CurrentFile)); !os.IsNotExist(err) {
		t.Fatalf("current.json exists after a failed first deployment: %v", err)
	}
	_, err := s.client.GetCurrentGroup(context.Background(), &deployv1.GetCurrentGroupRequest{})
	if status.Code(err) != codes.NotFound {
		t.Fatalf("GetCurrentGroup = %v; want NotFound", err)
	}
	_, err = s.client.GetDeployment(context.Background(), &deployv1.GetDeploymentRequest{})
	if status.Code(err) != codes.NotFound {
		t.Fatalf("GetDeployment(current) with nothing in force = %v; want NotFound", err)
	}
}

func TestRestartKeepsTheGroupInForce(t *testing.T) {
	alpha, beta := &consumer{name: "alpha"}, &consumer{name: "beta", refuse: true}
	s := newSuite(t, []*consumer{alpha, beta})
	if last, _ := mustDeploy(t, s.client, &deployv1.DeployRequest{GroupJson: groupJSON("one")}); last.GetStatus() != success {
		t.Fatal(last.GetMessage())
	}
	second, _ := mustDeploy(t, s.client, &deployv1.DeployRequest{GroupJson: groupJSON("two")})
	if second.GetStatus() != success {
		t.Fatal(second.GetMessage())
	}
	if last, _ := mustDeploy(t, s.client, &deployv1.DeployRequest{GroupJson: groupJSON(refuseID)}); last.GetStatus() != failure {
		t.Fatal("the refused deployment succeeded")
	}
	id := second.GetDeploymentId()

	// Stop everything the way the supervisor does: dependents first.
	stopDaemon(t, s.agent)
	for _, n := range s.names {
		stopDaemon(t, runningOf(t, s, n))
	}
	s.running = nil
	s.start()

	for _, c := range []*consumer{alpha, beta} {
		g, lid := c.inForce()
		if lid != id || !reflect.DeepEqual(functionIDs(g), []string{"two"}) {
			t.Fatalf("%s loaded %v of %q on start; want [two] of %s", c.name, functionIDs(g), lid, id)
		}
	}
	if fns, gid := currentGroupFunctions(t, s.client); gid != id || !reflect.DeepEqual(fns, []string{"two"}) {
		t.Fatalf("GetCurrentGroup after restart = %v of %s", fns, gid)
	}
	if prev := readRecord(t, s.root, deployment.PreviousFile); prev == nil || !reflect.DeepEqual(recordFunctions(t, prev), []string{"one"}) {
		t.Fatalf("previous.json = %+v; want the first group", prev)
	}
	list, err := s.client.ListDeployments(context.Background(), &deployv1.ListDeploymentsRequest{})
	if err != nil || len(list.GetDeployments()) != 3 || list.GetDeployments()[0].GetStatus() != failure || list.GetDeployments()[1].GetDeploymentId() != id || !list.GetDeployments()[1].GetCurrent() {
		t.Fatalf("ListDeployments after restart = %v, %v", list, err)
	}
	// The deployagent does not push anything on start: each daemon loaded
	// the group itself.
	for _, c := range []*consumer{alpha, beta} {
		if got := c.received(); len(got) != 0 {
			t.Fatalf("%s received %+v after the restart; want nothing", c.name, got)
		}
	}
}

func TestResetRemovesTheGroup(t *testing.T) {
	s := newSuite(t, []*consumer{{name: "alpha"}, {name: "beta", refuse: true}})
	first, _ := mustDeploy(t, s.client, &deployv1.DeployRequest{GroupJson: groupJSON("hello")})
	if first.GetStatus() != success {
		t.Fatal(first.GetMessage())
	}
	last, _ := mustDeploy(t, s.client, &deployv1.DeployRequest{Reset_: true})
	if last.GetStatus() != success {
		t.Fatalf("reset ended %v: %s", last.GetStatus(), last.GetMessage())
	}
	want := []applyCall{{functions: []string{"hello"}}, {reset: true}}
	for _, n := range []string{"alpha", "beta"} {
		if got := s.consumer(n).received(); !reflect.DeepEqual(got, want) {
			t.Fatalf("%s received %+v, want %+v", n, got, want)
		}
	}
	cur := readRecord(t, s.root, deployment.CurrentFile)
	if cur.DeploymentID != last.GetDeploymentId() || !cur.Reset || cur.HasGroup() || cur.GroupSHA256 != "" {
		t.Fatalf("current.json after reset = %+v", cur)
	}
	if prev := readRecord(t, s.root, deployment.PreviousFile); prev.DeploymentID != first.GetDeploymentId() {
		t.Fatalf("previous.json = %s, want %s", prev.DeploymentID, first.GetDeploymentId())
	}
	g, lid, err := deployment.LoadCurrent(layout.Root(s.root))
	if g != nil || lid != last.GetDeploymentId() || err != nil {
		t.Fatalf("LoadCurrent after reset = %v, %q, %v", g, lid, err)
	}
	_, err = s.client.GetCurrentGroup(context.Background(), &deployv1.GetCurrentGroupRequest{})
	if status.Code(err) != codes.NotFound {
		t.Fatalf("GetCurrentGroup after reset = %v; want NotFound", err)
	}
	d, err := s.client.GetDeployment(context.Background(), &deployv1.GetDeploymentRequest{})
	if err != nil || d.GetType() != deployv1.DeploymentType_DEPLOYMENT_TYPE_RESET || !d.GetCurrent() {
		t.Fatalf("GetDeployment(current) after reset = %v, %v", d, err)
	}
}

func TestInvalidRequestsNameTheField(t *testing.T) {
	s := newSuite(t, []*consumer{{name: "alpha"}})
	bad := []byte(`{"Core": {"Cores": [{"Id": "core", "ThingArn": "arn:aws:iot:eu-west-1:123456789012:thing/c",
		"CertificateArn": "arn:aws:iot:eu-west-1:123456789012:cert/0d45f5fd462b8c70bffb10021ac1bcff3f58f29b1faf7568595095427d42812c"}]},
		"Subscriptions": {"Subscriptions": [
			{"Id": "s1", "Source": "cloud", "Subject": "a/b", "Target": "arn:aws:iot:eu-west-1:123456789012:thing/nobody"},
			{"Id": "s1", "Source": "cloud", "Subject": "a/#/b", "Target": "GGShadowService"}]}}`)
	for _, tc := range []struct {
		name string
		req  *deployv1.DeployRequest
		want []string
	}{
		{"every validation error", &deployv1.DeployRequest{GroupJson: bad}, []string{"group_json: ", "Subscriptions[0].Target", "Subscriptions[1].Id", "Subscriptions[1].Subject"}},
		{"not JSON", &deployv1.DeployRequest{GroupJson: []byte("{")}, []string{"group_json"}},
		{"both", &deployv1.DeployRequest{GroupJson: groupJSON("x"), Reset_: true}, []string{"group_json", "reset"}},
		{"neither", &deployv1.DeployRequest{}, []string{"group_json", "reset"}},
		{"bad id", &deployv1.DeployRequest{GroupJson: groupJSON("x"), DeploymentId: "no spaces"}, []string{"deployment_id"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := deploy(t, s.client, tc.req)
			if status.Code(err) != codes.InvalidArgument {
				t.Fatalf("Deploy = %v; want InvalidArgument", err)
			}
			msg := status.Convert(err).Message()
			for _, w := range tc.want {
				if !strings.Contains(msg, w) {
					t.Errorf("message %q does not name %q", msg, w)
				}
			}
			if strings.ContainsAny(msg, "\n\r") {
				t.Errorf("message %q is not one line", msg)
			}
		})
	}
	if n := strings.Count(status.Convert(func() error { _, err := deploy(t, s.client, &deployv1.DeployRequest{GroupJson: bad}); return err }()).Message(), "; "); n < 2 {
		t.Errorf("the errors are not joined by \"; \" (%d separators)", n)
	}
	if got := s.consumer("alpha").received(); len(got) != 0 {
		t.Fatalf("alpha received %+v for invalid requests", got)
	}
	if _, err := os.Stat(filepath.Join(layout.Root(s.root).DeploymentsDir(), deployment.HistoryFile)); !os.IsNotExist(err) {
		t.Fatalf("an invalid request was recorded: %v", err)
	}
}

func TestConcurrentDeployIsAborted(t *testing.T) {
	gate := make(chan struct{})
	s := newSuite(t, []*consumer{{name: "slow", gate: gate}})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	stream, err := s.client.Deploy(ctx, &deployv1.DeployRequest{GroupJson: groupJSON("one")})
	if err != nil {
		t.Fatal(err)
	}
	if ev, err := stream.Recv(); err != nil || ev.GetMessage() != "validated" {
		t.Fatalf("first event %v, %v", ev, err)
	}
	// The first deployment is running: slow holds it.
	bustest.CheckFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		if len(s.consumer("slow").received()) == 0 {
			return fmt.Errorf("slow never received the first deployment")
		}
		return nil
	})
	_, err = deploy(t, s.client, &deployv1.DeployRequest{GroupJson: groupJSON("two")})
	if status.Code(err) != codes.Aborted {
		t.Fatalf("second Deploy = %v; want Aborted", err)
	}
	_, err = deploy(t, s.client, &deployv1.DeployRequest{Reset_: true})
	if status.Code(err) != codes.Aborted {
		t.Fatalf("reset during a deployment = %v; want Aborted", err)
	}
	list, err := s.client.ListDeployments(ctx, &deployv1.ListDeploymentsRequest{})
	if err != nil || len(list.GetDeployments()) != 1 || list.GetDeployments()[0].GetStatus() != deployv1.DeploymentStatus_DEPLOYMENT_STATUS_IN_PROGRESS {
		t.Fatalf("ListDeployments during the deployment = %v, %v", list, err)
	}

	close(gate)
	var last *deployv1.DeployEvent
	for {
		ev, err := stream.Recv()
		if err != nil {
			break
		}
		last = ev
	}
	if last.GetStatus() != success {
		t.Fatalf("first deployment ended %v: %s", last.GetStatus(), last.GetMessage())
	}
	// Not busy any more.
	if next, _ := mustDeploy(t, s.client, &deployv1.DeployRequest{GroupJson: groupJSON("two")}); next.GetStatus() != success {
		t.Fatalf("deployment after the first ended: %s", next.GetMessage())
	}
}

func TestSilentConsumerFailsTheDeployment(t *testing.T) {
	s := newSuite(t, []*consumer{{name: "alpha"}, {name: "mute", hang: true}}, deployagent.WithApplyTimeout(300*time.Millisecond))
	last, evs := mustDeploy(t, s.client, &deployv1.DeployRequest{GroupJson: groupJSON("hello")})
	if last.GetStatus() != failure {
		t.Fatalf("deployment ended %v, want FAILURE", last.GetStatus())
	}
	if !strings.Contains(last.GetMessage(), "mute: no reply within 300ms") {
		t.Fatalf("terminal message %q does not name mute's timeout", last.GetMessage())
	}
	if !slices.Contains(messages(evs), "mute refused: no reply within 300ms") {
		t.Fatalf("events %q", messages(evs))
	}
	for _, r := range last.GetResults() {
		if r.GetDaemon() == "mute" && (r.GetOk() || !strings.Contains(r.GetReason(), "no reply")) {
			t.Fatalf("mute's result %v", r)
		}
	}
	// alpha is put back to no group; mute may apply late, so it is told too.
	want := []applyCall{{functions: []string{"hello"}}, {reset: true, rollback: true}}
	if got := s.consumer("alpha").received(); !reflect.DeepEqual(got, want) {
		t.Fatalf("alpha received %+v, want %+v", got, want)
	}
	if _, err := os.Stat(filepath.Join(layout.Root(s.root).DeploymentsDir(), deployment.CurrentFile)); !os.IsNotExist(err) {
		t.Fatalf("current.json written by a failed deployment: %v", err)
	}
}

func TestConsumerNotRunningFailsTheDeployment(t *testing.T) {
	s := newSuite(t, []*consumer{{name: "alpha"}})
	stopDaemon(t, runningOf(t, s, "alpha"))
	last, _ := mustDeploy(t, s.client, &deployv1.DeployRequest{GroupJson: groupJSON("hello")})
	if last.GetStatus() != failure || !strings.Contains(last.GetMessage(), "alpha: not running") {
		t.Fatalf("deployment to a stopped daemon ended %v: %q", last.GetStatus(), last.GetMessage())
	}
}

func TestNoConsumersSucceedsAndHistoryIsBounded(t *testing.T) {
	s := newSuite(t, nil)
	const n = deployment.HistoryLimit + 5
	for i := range n {
		last, _ := mustDeploy(t, s.client, &deployv1.DeployRequest{GroupJson: groupJSON(fmt.Sprintf("f%d", i)), DeploymentId: fmt.Sprintf("h-%03d", i)})
		if last.GetStatus() != success || len(last.GetResults()) != 0 {
			t.Fatalf("deployment %d with no consumers: %v", i, last)
		}
	}
	list, err := s.client.ListDeployments(context.Background(), &deployv1.ListDeploymentsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	ds := list.GetDeployments()
	if len(ds) != deployment.HistoryLimit || ds[0].GetDeploymentId() != fmt.Sprintf("h-%03d", n-1) || ds[len(ds)-1].GetDeploymentId() != "h-005" {
		t.Fatalf("ListDeployments: %d, first %s, last %s; want 100 newest first", len(ds), ds[0].GetDeploymentId(), ds[len(ds)-1].GetDeploymentId())
	}
	onDisk, err := deployment.ReadHistory(layout.Root(s.root))
	if err != nil || len(onDisk) != deployment.HistoryLimit {
		t.Fatalf("history.json holds %d records, %v", len(onDisk), err)
	}
	_, err = s.client.GetDeployment(context.Background(), &deployv1.GetDeploymentRequest{DeploymentId: "h-000"})
	if status.Code(err) != codes.NotFound {
		t.Fatalf("GetDeployment of an evicted deployment = %v; want NotFound", err)
	}
	// A caller-chosen id names one deployment only.
	_, err = deploy(t, s.client, &deployv1.DeployRequest{GroupJson: groupJSON("x"), DeploymentId: "h-050"})
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(status.Convert(err).Message(), "deployment_id") {
		t.Fatalf("reused deployment id = %v; want InvalidArgument naming deployment_id", err)
	}
}
