package runtime_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	deployv1 "github.com/evergreen-edge/evergreen/proto/evergreen/deploy/v1"
	runtimev1 "github.com/evergreen-edge/evergreen/proto/evergreen/runtime/v1"
	"github.com/evergreen-edge/evergreen/runtime"
	"github.com/evergreen-edge/evergreen/services/kit/bustest"
	"github.com/evergreen-edge/evergreen/services/kit/config"
	"github.com/evergreen-edge/evergreen/services/kit/subjects"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"
)

// ask sends the runtime an ApplyGroup of phase, as the deployagent does.
func (r *rt) ask(phase deployv1.ApplyPhase, id, group string) *deployv1.ApplyResult {
	r.t.Helper()
	data, _ := proto.Marshal(&deployv1.ApplyGroup{DeploymentId: id, GroupJson: []byte(group), Phase: phase})
	msg, err := r.nc.Request(subjects.DeployApply(runtime.Name), data, 30*time.Second)
	if err != nil {
		r.t.Fatalf("ApplyGroup %s: %v", phase, err)
	}
	res := &deployv1.ApplyResult{}
	if err := proto.Unmarshal(msg.Data, res); err != nil {
		r.t.Fatal(err)
	}
	return res
}

func (r *rt) api() runtimev1.RuntimeClient {
	r.t.Helper()
	cc, err := grpc.NewClient("unix://"+r.root.Socket(runtime.Name), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		r.t.Fatal(err)
	}
	r.t.Cleanup(func() { cc.Close() })
	return runtimev1.NewRuntimeClient(cc)
}

const (
	prepare = deployv1.ApplyPhase_APPLY_PHASE_PREPARE
	apply   = deployv1.ApplyPhase_APPLY_PHASE_APPLY
)

func coreOnlyGroup() string {
	return fmt.Sprintf(`{"Core":{"Cores":[{"Id":"c","ThingArn":"arn:aws:iot:us-east-1:123456789012:thing/core-1","CertificateArn":"arn:aws:iot:us-east-1:123456789012:cert/%s"}]}}`, strings.Repeat("a", 64))
}

// What APPLY refuses is refused at PREPARE, before the deployagent
// commits: code that does not install, a GreengrassContainer function
// without containerd. A PREPARE, refused or not, leaves the group in force
// running: the same pinned worker, the same functions.
func TestPrepareRefusesWhatApplyRefuses(t *testing.T) {
	t.Setenv("EVERGREEN_CONTAINERD_SOCKET", "/nonexistent/containerd.sock")
	code := buildEcho(t)
	r := startRuntime(t, echoGroup(code, true))
	api := r.api()
	ctx := context.Background()
	var pid int32
	bustest.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		ws, err := api.ListWorkers(ctx, &runtimev1.ListWorkersRequest{Function: "echo"})
		if err != nil || len(ws.GetWorkers()) != 1 || ws.GetWorkers()[0].GetPid() == 0 {
			return fmt.Errorf("workers: %v %v", ws, err)
		}
		pid = ws.GetWorkers()[0].GetPid()
		return nil
	})
	unchanged := func(after string) {
		t.Helper()
		ws, err := api.ListWorkers(ctx, &runtimev1.ListWorkersRequest{})
		if err != nil || len(ws.GetWorkers()) != 1 || ws.GetWorkers()[0].GetPid() != pid {
			t.Fatalf("workers after %s: %v %v, want the one worker of pid %d", after, ws, err, pid)
		}
		if res, err := api.Invoke(ctx, &runtimev1.InvokeRequest{Function: "echo", Payload: []byte("still")}); err != nil || string(res.GetPayload()) != "still" {
			t.Fatalf("invoke after %s: %v %v", after, res, err)
		}
	}

	for _, tc := range []struct{ name, group, want string }{
		{"missing code", echoGroup("/nonexistent/code", true), "Functions[0] (" + echoARN + "): CodeUri \"/nonexistent/code\""},
		{"no containerd", strings.Replace(echoGroup(code, false), `"IsolationMode":"NoContainer"`, `"IsolationMode":"GreengrassContainer"`, 1), "IsolationMode GreengrassContainer: containerd socket /nonexistent/containerd.sock"},
	} {
		res := r.ask(prepare, "d-bad", tc.group)
		if res.GetOk() || !strings.Contains(res.GetReason(), tc.want) {
			t.Errorf("PREPARE with %s: ok=%v reason %q, want %q", tc.name, res.GetOk(), res.GetReason(), tc.want)
		}
		if got := res.GetAppliedDeploymentId(); got != "d-1" {
			t.Errorf("after the PREPARE with %s the runtime reports deployment %q, want d-1", tc.name, got)
		}
		unchanged("PREPARE with " + tc.name)
	}

	// A good group without the function prepares; the function keeps
	// running until APPLY.
	if res := r.ask(prepare, "d-2", coreOnlyGroup()); !res.GetOk() {
		t.Fatalf("PREPARE of a group without functions refused: %s", res.GetReason())
	}
	unchanged("PREPARE of a group without functions")
	if res := r.ask(apply, "d-2", coreOnlyGroup()); !res.GetOk() {
		t.Fatalf("APPLY of a group without functions refused: %s", res.GetReason())
	}
	if fl, err := api.ListFunctions(ctx, &runtimev1.ListFunctionsRequest{}); err != nil || len(fl.GetFunctions()) != 0 {
		t.Fatalf("functions after APPLY of a group without them: %v %v", fl, err)
	}
}

// A function that would run as root while runtime.allowFunctionsToRunAsRoot
// is not "yes" is refused at PREPARE with v1's error, as APPLY refuses it.
func TestPrepareRefusesRoot(t *testing.T) {
	r := startRuntime(t, coreOnlyGroup(), func(c *config.Config) { c.Runtime.AllowFunctionsToRunAsRoot = "no" })
	group := echoGroup(buildEcho(t), true) // RunAs uid 0, gid 0
	for _, phase := range []deployv1.ApplyPhase{prepare, apply} {
		res := r.ask(phase, "d-root", group)
		if res.GetOk() || !strings.Contains(res.GetReason(), "lambda(s) ["+echoARN+"] are configured to run as root") {
			t.Errorf("%s of a root function: ok=%v reason %q", phase, res.GetOk(), res.GetReason())
		}
	}
}
