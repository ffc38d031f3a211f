package runtime_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	brokerv1 "github.com/evergreen-edge/evergreen/proto/evergreen/broker/v1"
	deployv1 "github.com/evergreen-edge/evergreen/proto/evergreen/deploy/v1"
	runtimev1 "github.com/evergreen-edge/evergreen/proto/evergreen/runtime/v1"
	"github.com/evergreen-edge/evergreen/runtime"
	"github.com/evergreen-edge/evergreen/runtime/container/containerdtest"
	"github.com/evergreen-edge/evergreen/services/kit/bustest"
	"github.com/evergreen-edge/evergreen/services/kit/config"
	"github.com/evergreen-edge/evergreen/services/kit/daemon"
	"github.com/evergreen-edge/evergreen/services/kit/deployment"
	"github.com/evergreen-edge/evergreen/services/kit/layout"
	"github.com/evergreen-edge/evergreen/services/kit/subjects"
	"github.com/nats-io/nats.go"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

const echoARN = "arn:aws:lambda:us-east-1:123456789012:function:echo:1"

// buildEcho compiles testdata/echo (a Go function using ggsdk) into dir.
func buildEcho(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	cmd := exec.Command("go", "build", "-o", filepath.Join(dir, "echo"), "./testdata/echo")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build testdata/echo: %v\n%s", err, out)
	}
	os.Chmod(dir, 0o755)
	return dir
}

type rt struct {
	t    *testing.T
	root layout.Root
	nc   *nats.Conn
	run  *daemon.Running
	ipc  string

	mu  sync.Mutex
	out []*brokerv1.RoutedMessage
}

func startRuntime(t *testing.T, group string, tweak ...func(*config.Config)) *rt {
	t.Helper()
	r := &rt{t: t, root: layout.Root(t.TempDir())}
	bus := bustest.Start(t)
	bustest.WriteCreds(t, r.root, runtime.Name)
	os.MkdirAll(r.root.DeploymentsDir(), 0o700)
	if err := deployment.Commit(r.root, &deployment.Record{DeploymentID: "d-1", DeployedAt: time.Now().UTC(), Group: []byte(group)}); err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(bus)
	if err != nil {
		t.Fatal(err)
	}
	r.nc = nc
	nc.Subscribe(subjects.RuntimePublish, func(m *nats.Msg) {
		rm := &brokerv1.RoutedMessage{}
		if proto.Unmarshal(m.Data, rm) == nil {
			r.mu.Lock()
			r.out = append(r.out, rm)
			r.mu.Unlock()
		}
	})
	nc.Flush()
	cfg := config.Default()
	cfg.CoreThing.ThingArn = "arn:aws:iot:us-east-1:123456789012:thing/core-1"
	cfg.Evergreen.Listen.IPC = "127.0.0.1:0"
	cfg.Evergreen.Listen.Streams = "127.0.0.1:0"
	cfg.Runtime.AllowFunctionsToRunAsRoot = "yes"
	for _, f := range tweak {
		f(cfg)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	run, err := daemon.Start(ctx, runtime.Spec(), daemon.Options{Root: r.root.Dir(), BusURL: bus, Config: cfg, LogStderr: io.Discard})
	if err != nil {
		t.Fatalf("start runtime: %v", err)
	}
	r.run = run
	r.ipc = run.Env.Endpoints.IPC
	t.Cleanup(func() {
		run.Shutdown(context.Background())
		nc.Close()
		if t.Failed() {
			b, _ := os.ReadFile(r.root.LogFile(runtime.Name))
			t.Logf("runtime log:\n%s", b)
			ub, _ := os.ReadFile(filepath.Join(r.root.LogsDir(), "user", "echo.log"))
			t.Logf("echo log:\n%s", ub)
		}
	})
	return r
}

func echoGroup(codeDir string, pinned bool) string {
	return fmt.Sprintf(`{"Core":{"Cores":[{"Id":"c","ThingArn":"arn:aws:iot:us-east-1:123456789012:thing/core-1","CertificateArn":"arn:aws:iot:us-east-1:123456789012:cert/%s"}]},
"Devices":{"Devices":[{"Id":"s","ThingArn":"arn:aws:iot:us-east-1:123456789012:thing/sensor","CertificateArn":"arn:aws:iot:us-east-1:123456789012:cert/%s"}]},
"Functions":{"DefaultConfig":{"Execution":{"IsolationMode":"NoContainer","RunAs":{"Uid":0,"Gid":0}}},
"Functions":[{"Id":"echo","FunctionArn":%q,"FunctionConfiguration":{"Pinned":%v,"Timeout":3,"EncodingType":"binary"},
"Evergreen":{"Runtime":"go","Handler":"echo","CodeUri":%q}}]}}`, strings.Repeat("a", 64), strings.Repeat("b", 64), echoARN, pinned, codeDir)
}

func (r *rt) deliver(topic, payload string) {
	r.t.Helper()
	b, _ := proto.Marshal(&brokerv1.RoutedMessage{Topic: topic, Payload: []byte(payload),
		Source:  &brokerv1.Endpoint{Kind: brokerv1.EndpointKind_ENDPOINT_KIND_DEVICE, Name: "sensor"},
		Targets: []*brokerv1.Endpoint{{Kind: brokerv1.EndpointKind_ENDPOINT_KIND_FUNCTION, Name: echoARN}}})
	if err := r.nc.Publish(subjects.BrokerDeliverFunction, b); err != nil {
		r.t.Fatal(err)
	}
}

func (r *rt) published() []*brokerv1.RoutedMessage {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*brokerv1.RoutedMessage(nil), r.out...)
}

func (r *rt) health() []map[string]any {
	resp, err := http.Get("http://" + r.ipc + "/2016-11-01/health/workers")
	if err != nil {
		r.t.Fatal(err)
	}
	defer resp.Body.Close()
	var ws []map[string]any
	json.NewDecoder(resp.Body).Decode(&ws)
	return ws
}

// A routed message reaches a pinned Go function as a work item with
// custom.subject and custom.source; what it publishes goes to the router
// with the function as its source.
func TestRoutedMessageToGoFunction(t *testing.T) {
	r := startRuntime(t, echoGroup(buildEcho(t), true))
	bustest.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		ws := r.health()
		if len(ws) != 1 || ws[0]["FuncArn"] != echoARN {
			return fmt.Errorf("health: %v", ws)
		}
		return nil
	})
	r.deliver("sensors/temp", "21.5")
	bustest.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		for _, m := range r.published() {
			if m.GetTopic() == "echo/out" {
				if string(m.GetPayload()) != "sensors/temp|arn:aws:iot:us-east-1:123456789012:thing/sensor|21.5" {
					return fmt.Errorf("payload %q", m.GetPayload())
				}
				if m.GetSource().GetKind() != brokerv1.EndpointKind_ENDPOINT_KIND_FUNCTION || m.GetSource().GetName() != echoARN {
					return fmt.Errorf("source %v", m.GetSource())
				}
				return nil
			}
		}
		return fmt.Errorf("nothing published yet: %v", r.published())
	})
}

// A deployment with a function whose code is missing is refused with the
// function named; so is a GreengrassContainer function when containerd is
// not there, naming the socket.
func TestBadFunctionsRefused(t *testing.T) {
	t.Setenv("EVERGREEN_CONTAINERD_SOCKET", "/nonexistent/containerd.sock")
	r := startRuntime(t, fmt.Sprintf(`{"Core":{"Cores":[{"Id":"c","ThingArn":"arn:aws:iot:us-east-1:123456789012:thing/core-1","CertificateArn":"arn:aws:iot:us-east-1:123456789012:cert/%s"}]}}`, strings.Repeat("a", 64)))
	for _, tc := range []struct{ group, want string }{
		{echoGroup("/nonexistent/code", true), "Functions[0] (" + echoARN + "): CodeUri \"/nonexistent/code\""},
		{strings.Replace(echoGroup(buildEcho(t), true), `"IsolationMode":"NoContainer"`, `"IsolationMode":"GreengrassContainer"`, 1), "IsolationMode GreengrassContainer: containerd socket /nonexistent/containerd.sock"},
	} {
		res := r.apply(tc.group)
		if res == "" || !strings.Contains(res, tc.want) {
			t.Errorf("apply: %q, want %q", res, tc.want)
		}
	}
}

// apply sends a group to the runtime as the deployagent does and returns
// the refusal reason ("" when applied).
func (r *rt) apply(group string) string {
	r.t.Helper()
	data, _ := proto.Marshal(&deployv1.ApplyGroup{DeploymentId: "d-x", GroupJson: []byte(group)})
	msg, err := r.nc.Request(subjects.DeployApply(runtime.Name), data, 30*time.Second)
	if err != nil {
		r.t.Fatalf("ApplyGroup: %v", err)
	}
	res := &deployv1.ApplyResult{}
	if err := proto.Unmarshal(msg.Data, res); err != nil {
		r.t.Fatal(err)
	}
	if res.GetOk() {
		return ""
	}
	return res.GetReason()
}

const pyARN = "arn:aws:lambda:us-east-1:123456789012:function:pyfn:1"

// A Python function written against the v1 SDK (greengrasssdk publish and
// invoke) runs unmodified on the shipped runtime: a routed message in, a
// publish out, and a RequestResponse invoke of the Go function.
func TestPythonFunction(t *testing.T) {
	if _, err := exec.LookPath("python3"); err != nil {
		if os.Getenv("EVERGREEN_REQUIRE_ALL") != "" {
			t.Fatal("python3 is not installed (EVERGREEN_REQUIRE_ALL is set)")
		}
		t.Skip("python3 is not installed")
	}
	pyDir, _ := filepath.Abs("testdata/pyfn")
	code := t.TempDir()
	b, _ := os.ReadFile(filepath.Join(pyDir, "handler.py"))
	os.WriteFile(filepath.Join(code, "handler.py"), b, 0o644)
	os.Chmod(code, 0o755)
	g := strings.Replace(echoGroup(buildEcho(t), false), `"Functions":[`, fmt.Sprintf(`"Functions":[{"Id":"py","FunctionArn":%q,"FunctionConfiguration":{"Pinned":true,"Timeout":5,"EncodingType":"json"},
"Evergreen":{"Runtime":"python3.8","Handler":"handler.function_handler","CodeUri":%q}},`, pyARN, code), 1)
	r := startRuntime(t, g)
	b2, _ := proto.Marshal(&brokerv1.RoutedMessage{Topic: "sensors/hum", Payload: []byte(`{"h":40}`),
		Source:  &brokerv1.Endpoint{Kind: brokerv1.EndpointKind_ENDPOINT_KIND_DEVICE, Name: "sensor"},
		Targets: []*brokerv1.Endpoint{{Kind: brokerv1.EndpointKind_ENDPOINT_KIND_FUNCTION, Name: pyARN}}})
	r.nc.Publish(subjects.BrokerDeliverFunction, b2)
	var out map[string]any
	bustest.CheckFor(t, 15*time.Second, 50*time.Millisecond, func() error {
		for _, m := range r.published() {
			if m.GetTopic() == "py/out" {
				if m.GetSource().GetName() != pyARN {
					return fmt.Errorf("source %v", m.GetSource())
				}
				return json.Unmarshal(m.GetPayload(), &out)
			}
		}
		return fmt.Errorf("nothing on py/out yet")
	})
	if out["subject"] != "sensors/hum" || out["arn"] != pyARN || fmt.Sprint(out["event"]) != "map[h:40]" {
		t.Fatalf("py/out = %v", out)
	}
	// Invoke the (on-demand) Go function and publish what it answered.
	b3, _ := proto.Marshal(&brokerv1.RoutedMessage{Topic: "cmd", Payload: []byte(`{"invoke":"` + echoARN + `"}`),
		Source:  &brokerv1.Endpoint{Kind: brokerv1.EndpointKind_ENDPOINT_KIND_CLOUD},
		Targets: []*brokerv1.Endpoint{{Kind: brokerv1.EndpointKind_ENDPOINT_KIND_FUNCTION, Name: pyARN}}})
	r.nc.Publish(subjects.BrokerDeliverFunction, b3)
	bustest.CheckFor(t, 15*time.Second, 50*time.Millisecond, func() error {
		for _, m := range r.published() {
			if m.GetTopic() == "py/invoked" {
				if string(m.GetPayload()) != `{"ping": 1}` {
					return fmt.Errorf("py/invoked payload %q", m.GetPayload())
				}
				return nil
			}
		}
		return fmt.Errorf("nothing on py/invoked yet")
	})
}

// The gRPC API: functions, workers, invoke (result, handled error, event),
// restart of a pinned function.
func TestAPI(t *testing.T) {
	r := startRuntime(t, echoGroup(buildEcho(t), true))
	cc, err := grpc.NewClient("unix://"+r.root.Socket(runtime.Name), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	api := runtimev1.NewRuntimeClient(cc)
	ctx := context.Background()
	fl, err := api.ListFunctions(ctx, &runtimev1.ListFunctionsRequest{})
	if err != nil || len(fl.GetFunctions()) != 1 || fl.GetFunctions()[0].GetName() != "echo" || !fl.GetFunctions()[0].GetPinned() || fl.GetFunctions()[0].GetRuntime() != "go" {
		t.Fatalf("functions: %v %v", fl, err)
	}
	res, err := api.Invoke(ctx, &runtimev1.InvokeRequest{Function: "echo", Payload: []byte("hello")})
	if err != nil || string(res.GetPayload()) != "hello" || res.GetFunctionError() != "" {
		t.Fatalf("invoke: %v %v", res, err)
	}
	res, err = api.Invoke(ctx, &runtimev1.InvokeRequest{Function: echoARN, Payload: []byte("fail")})
	if err != nil || res.GetFunctionError() != "Handled" || !strings.Contains(string(res.GetPayload()), "asked to fail") {
		t.Fatalf("failing invoke: %v %v", res, err)
	}
	res, err = api.Invoke(ctx, &runtimev1.InvokeRequest{Function: "echo", Payload: []byte("x"), Event: true})
	if err != nil || res.GetInvocationId() == "" || res.GetPayload() != nil {
		t.Fatalf("event invoke: %v %v", res, err)
	}
	if _, err := api.Invoke(ctx, &runtimev1.InvokeRequest{Function: "nope"}); status.Code(err) != codes.NotFound {
		t.Fatalf("unknown function: %v", err)
	}
	ws, err := api.ListWorkers(ctx, &runtimev1.ListWorkersRequest{Function: "echo"})
	if err != nil || len(ws.GetWorkers()) != 1 {
		t.Fatalf("workers: %v %v", ws, err)
	}
	pid := ws.GetWorkers()[0].GetPid()
	rr, err := api.RestartFunction(ctx, &runtimev1.RestartFunctionRequest{Function: "echo"})
	if err != nil || rr.GetStoppedWorkers() != 1 {
		t.Fatalf("restart: %v %v", rr, err)
	}
	bustest.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		ws, err := api.ListWorkers(ctx, &runtimev1.ListWorkersRequest{})
		if err != nil || len(ws.GetWorkers()) != 1 || ws.GetWorkers()[0].GetPid() == pid || ws.GetWorkers()[0].GetPid() == 0 {
			return fmt.Errorf("workers after restart: %v %v (old pid %d)", ws, err, pid)
		}
		return nil
	})
	if res, err := api.Invoke(ctx, &runtimev1.InvokeRequest{Function: "echo", Payload: []byte("again")}); err != nil || string(res.GetPayload()) != "again" {
		t.Fatalf("invoke after restart: %v %v", res, err)
	}
}

const nodeARN = "arn:aws:lambda:us-east-1:123456789012:function:nodefn:1"

// A Node.js function written against the v1 core SDK runs on the shipped
// runtime: a routed message in, a publish out.
func TestNodeFunction(t *testing.T) {
	if _, err := exec.LookPath("node"); err != nil {
		if os.Getenv("EVERGREEN_REQUIRE_ALL") != "" {
			t.Fatal("node is not installed (EVERGREEN_REQUIRE_ALL is set)")
		}
		t.Skip("node is not installed")
	}
	src, _ := filepath.Abs("testdata/nodefn/index.js")
	code := t.TempDir()
	b, _ := os.ReadFile(src)
	os.WriteFile(filepath.Join(code, "index.js"), b, 0o644)
	os.Chmod(code, 0o755)
	g := strings.Replace(echoGroup(buildEcho(t), false), `"Functions":[`, fmt.Sprintf(`"Functions":[{"Id":"node","FunctionArn":%q,"FunctionConfiguration":{"Pinned":true,"Timeout":5,"EncodingType":"json"},
"Evergreen":{"Runtime":"nodejs12.x","Handler":"index.handler","CodeUri":%q}},`, nodeARN, code), 1)
	r := startRuntime(t, g)
	b2, _ := proto.Marshal(&brokerv1.RoutedMessage{Topic: "sensors/light", Payload: []byte(`{"lux":300}`),
		Source:  &brokerv1.Endpoint{Kind: brokerv1.EndpointKind_ENDPOINT_KIND_DEVICE, Name: "sensor"},
		Targets: []*brokerv1.Endpoint{{Kind: brokerv1.EndpointKind_ENDPOINT_KIND_FUNCTION, Name: nodeARN}}})
	r.nc.Publish(subjects.BrokerDeliverFunction, b2)
	var out map[string]any
	bustest.CheckFor(t, 15*time.Second, 50*time.Millisecond, func() error {
		for _, m := range r.published() {
			if m.GetTopic() == "node/out" {
				if m.GetSource().GetName() != nodeARN {
					return fmt.Errorf("source %v", m.GetSource())
				}
				return json.Unmarshal(m.GetPayload(), &out)
			}
		}
		return fmt.Errorf("nothing on node/out yet")
	})
	if out["subject"] != "sensors/light" || out["arn"] != nodeARN || fmt.Sprint(out["event"]) != "map[lux:300]" {
		t.Fatalf("node/out = %v", out)
	}
}

// GreengrassContainer: the Go function runs in a container through a real
// containerd (read-only host root, host network for the IPC, memory limit):
// a routed message in and a publish out work as for a process, the root
// filesystem is read-only, and going past MemorySize is an Unhandled
// error, after which the pinned worker comes back.
func TestContainerFunction(t *testing.T) {
	socket, stop, err := containerdtest.Start()
	if err != nil {
		if os.Getenv("EVERGREEN_REQUIRE_ALL") != "" {
			t.Fatalf("containerd: %v (EVERGREEN_REQUIRE_ALL is set)", err)
		}
		t.Skipf("containerd: %v", err)
	}
	t.Cleanup(stop)
	t.Setenv("EVERGREEN_CONTAINERD_SOCKET", socket)
	helper := filepath.Join(t.TempDir(), runtime.HelperName)
	build := exec.Command("go", "build", "-o", helper, "./cmd/ggd-containerd")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build %s: %v\n%s", runtime.HelperName, err, out)
	}
	t.Setenv("EVERGREEN_CONTAINERD_HELPER", helper)
	g := strings.Replace(echoGroup(buildEcho(t), true), `"IsolationMode":"NoContainer"`, `"IsolationMode":"GreengrassContainer"`, 1)
	g = strings.Replace(g, `"Timeout":3,`, `"Timeout":10,"MemorySize":65536,`, 1)
	r := startRuntime(t, g)
	r.deliver("sensors/temp", "22")
	bustest.CheckFor(t, 20*time.Second, 50*time.Millisecond, func() error {
		for _, m := range r.published() {
			if m.GetTopic() == "echo/out" && string(m.GetPayload()) == "sensors/temp|arn:aws:iot:us-east-1:123456789012:thing/sensor|22" {
				return nil
			}
		}
		return fmt.Errorf("nothing from the containerized function yet: %v", r.published())
	})
	cc, err := grpc.NewClient("unix://"+r.root.Socket(runtime.Name), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	api := runtimev1.NewRuntimeClient(cc)
	ctx := context.Background()
	res, err := api.Invoke(ctx, &runtimev1.InvokeRequest{Function: "echo", Payload: []byte("whoami")})
	if err != nil || string(res.GetPayload()) != "uid=0 rootfs=read-only" {
		t.Fatalf("whoami in the container: %q %v", res.GetPayload(), err)
	}
	res, err = api.Invoke(ctx, &runtimev1.InvokeRequest{Function: "echo", Payload: []byte("oom")})
	if err != nil || res.GetFunctionError() != "Unhandled" {
		t.Fatalf("past the memory limit: %v %v", res, err)
	}
	bustest.CheckFor(t, 20*time.Second, 100*time.Millisecond, func() error {
		res, err := api.Invoke(ctx, &runtimev1.InvokeRequest{Function: "echo", Payload: []byte("back")})
		if err != nil || string(res.GetPayload()) != "back" {
			return fmt.Errorf("after the OOM kill: %v %v", res, err)
		}
		return nil
	})
	if b, _ := os.ReadFile(r.root.LogFile(runtime.Name)); !strings.Contains(string(b), "out of memory") {
		t.Errorf("the runtime's log does not say the worker ran out of memory")
	}
	// The OOM kill is counted: once as out of memory, once as the death of
	// the worker that held the invocation.
	fl, err := api.ListFunctions(ctx, &runtimev1.ListFunctionsRequest{})
	if err != nil || len(fl.GetFunctions()) != 1 {
		t.Fatalf("functions: %v %v", fl, err)
	}
	if f := fl.GetFunctions()[0]; f.GetOutOfMemoryKills() != 1 || f.GetWorkerDeaths() != 1 || f.GetUnhandledErrors() < 1 {
		t.Errorf("counters after one OOM kill: oom=%d deaths=%d unhandled=%d",
			f.GetOutOfMemoryKills(), f.GetWorkerDeaths(), f.GetUnhandledErrors())
	}
}
