package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	certmgrv1 "github.com/evergreen-edge/evergreen/proto/evergreen/certmgr/v1"
	deployv1 "github.com/evergreen-edge/evergreen/proto/evergreen/deploy/v1"
	runtimev1 "github.com/evergreen-edge/evergreen/proto/evergreen/runtime/v1"
	"github.com/evergreen-edge/evergreen/runtime/container/containerdtest"
	"github.com/evergreen-edge/evergreen/tools/loadgen"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// pyEcho is a pinned Python function written against the v1 SDK: it
// publishes what it gets on rt/out/py.
const pyEcho = `import greengrasssdk
iot = greengrasssdk.client('iot-data')
def handler(event, context):
    iot.publish(topic='rt/out/py', payload=json_dumps(event))
import json
json_dumps = json.dumps
`

// runtimeBench measures the runtime: device -> function -> device round
// trips through MQTT for a pinned Go executable and a pinned Python
// function; the cold start of an on-demand function (NoContainer, and
// GreengrassContainer when containerd is there) against a bare spawn of
// the same binary in the same run; invocations per second with 25
// on-demand workers.
func runtimeBench(ggd string, dur time.Duration) {
	// A containerd for the GreengrassContainer scenario: the one the
	// environment names, or one of our own (root, runc and containerd
	// needed; without them that scenario is skipped).
	var containerdErr error
	if os.Getenv("EVERGREEN_CONTAINERD_SOCKET") == "" {
		socket, stopContainerd, err := containerdtest.Start()
		if err == nil {
			os.Setenv("EVERGREEN_CONTAINERD_SOCKET", socket)
			defer stopContainerd()
		}
		containerdErr = err
	}
	root := tempRoot()
	defer os.RemoveAll(root)
	_, stop := startSuite(ggd, root)
	defer stop()
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	conn := func(daemon string) *grpc.ClientConn {
		c, err := grpc.NewClient("unix://"+filepath.Join(root, "run", daemon+".sock"), grpc.WithTransportCredentials(insecure.NewCredentials()))
		must(err)
		return c
	}
	codeDir := filepath.Join(root, "bench-code")
	goDir, pyDir := filepath.Join(codeDir, "go"), filepath.Join(codeDir, "py")
	must(os.MkdirAll(pyDir, 0o755))
	build := exec.Command("go", "build", "-o", filepath.Join(goDir, "echo"), "./runtime/testdata/echo")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		fail("build the Go echo function: %v\n%s", err, out)
	}
	must(os.WriteFile(filepath.Join(pyDir, "echo.py"), []byte(pyEcho), 0o644))
	os.Chmod(root, 0o755)
	filepath.Walk(codeDir, func(p string, _ os.FileInfo, _ error) error { os.Chmod(p, 0o755); return nil })

	cm := certmgrv1.NewCertManagerClient(conn("certmgr"))
	devDir := filepath.Join(root, "bench-devices")
	must(os.MkdirAll(devDir, 0o700))
	r, err := cm.CreateDevice(ctx, &certmgrv1.CreateDeviceRequest{Name: "dev"})
	must(err)
	must(os.WriteFile(filepath.Join(devDir, "dev.cert.pem"), []byte(r.Device.CertificatePem), 0o600))
	must(os.WriteFile(filepath.Join(devDir, "dev.key.pem"), []byte(r.KeyPem), 0o600))
	caFile := filepath.Join(devDir, "ca.pem")
	must(os.WriteFile(caFile, []byte(r.ServerCaPem), 0o600))
	blk, _ := pem.Decode([]byte(r.Device.CertificatePem))
	sum := sha256.Sum256(blk.Bytes)

	arn := func(n string) string { return "arn:aws:lambda:us-east-1:123456789012:function:" + n + ":1" }
	thing := "arn:aws:iot:us-east-1:123456789012:thing/dev"
	fn := func(name, runtime, handler, dir string, pinned bool, isolation string) map[string]any {
		cfg := map[string]any{"Pinned": pinned, "Timeout": 10, "EncodingType": "json",
			"Environment": map[string]any{"Execution": map[string]any{"IsolationMode": isolation}}}
		if runtime == "go" {
			cfg["EncodingType"] = "binary"
		}
		return map[string]any{"Id": name, "FunctionArn": arn(name), "FunctionConfiguration": cfg,
			"Evergreen": map[string]any{"Runtime": runtime, "Handler": handler, "CodeUri": dir}}
	}
	fns := []any{
		fn("goecho", "go", "echo", goDir, true, "NoContainer"),
		fn("pyecho", "python3.8", "echo.handler", pyDir, true, "NoContainer"),
		fn("cold", "go", "echo", goDir, false, "NoContainer"),
		fn("pool", "go", "echo", goDir, false, "NoContainer"),
	}
	if containerdErr == nil {
		fns = append(fns, fn("coldc", "go", "echo", goDir, false, "GreengrassContainer"))
	}
	group := map[string]any{
		"Core":      map[string]any{"Cores": []any{map[string]any{"Id": "core", "ThingArn": "arn:aws:iot:us-east-1:123456789012:thing/evergreen-core", "CertificateArn": "arn:aws:iot:us-east-1:123456789012:cert/" + strings.Repeat("0", 64)}}},
		"Devices":   map[string]any{"Devices": []any{map[string]any{"Id": "dev", "ThingArn": thing, "CertificateArn": "arn:aws:iot:us-east-1:123456789012:cert/" + hex.EncodeToString(sum[:])}}},
		"Functions": map[string]any{"Functions": fns},
		"Subscriptions": map[string]any{"Subscriptions": []any{
			map[string]any{"Id": "a", "Source": thing, "Subject": "rt/in/go", "Target": arn("goecho")},
			map[string]any{"Id": "b", "Source": arn("goecho"), "Subject": "echo/out", "Target": thing},
			map[string]any{"Id": "c", "Source": thing, "Subject": "rt/in/py", "Target": arn("pyecho")},
			map[string]any{"Id": "d", "Source": arn("pyecho"), "Subject": "rt/out/py", "Target": thing},
		}},
	}
	gj, _ := json.Marshal(group)
	st, err := deployv1.NewDeployerClient(conn("deployagent")).Deploy(ctx, &deployv1.DeployRequest{GroupJson: gj})
	must(err)
	for {
		ev, err := st.Recv()
		if err != nil {
			break
		}
		if ev.Status == deployv1.DeploymentStatus_DEPLOYMENT_STATUS_FAILURE {
			fail("bench group refused: %s", ev.Message)
		}
	}
	api := runtimev1.NewRuntimeClient(conn("runtime"))
	addr := strings.Replace(readEndpoints(root)["mqtt"], "0.0.0.0", "127.0.0.1", 1)

	// 1. Round trips device -> function -> device.
	d, err := loadgen.LoadDevice(devDir, "dev", caFile)
	must(err)
	got := make(chan struct{}, 1)
	c := mqtt.NewClient(mqtt.NewClientOptions().AddBroker("ssl://" + addr).SetClientID("dev").SetTLSConfig(d.TLS).SetAutoReconnect(false))
	if t := c.Connect(); !t.WaitTimeout(15*time.Second) || t.Error() != nil {
		fail("connect: %v", t.Error())
	}
	defer c.Disconnect(0)
	for _, f := range []string{"echo/out", "rt/out/py"} {
		if t := c.Subscribe(f, 0, func(mqtt.Client, mqtt.Message) {
			select {
			case got <- struct{}{}:
			default:
			}
		}); !t.WaitTimeout(15*time.Second) || t.Error() != nil {
			fail("subscribe: %v", t.Error())
		}
	}
	time.Sleep(time.Second) // pinned workers up
	roundTrip := func(topic, payload string) (int, time.Duration, time.Duration) {
		var lat []time.Duration
		deadline := time.Now().Add(dur)
		for time.Now().Before(deadline) {
			t0 := time.Now()
			c.Publish(topic, 0, false, payload)
			select {
			case <-got:
				lat = append(lat, time.Since(t0))
			case <-time.After(5 * time.Second):
			}
		}
		return len(lat), percentile(lat, 50), percentile(lat, 99)
	}
	fmt.Printf("function round trip: device publishes, the function publishes back, the device receives (MQTT over mutual TLS), %v each\n", dur)
	n, p50, p99 := roundTrip("rt/in/go", "ping")
	fmt.Printf("  %-40s %6d trips  p50 %9s  p99 %9s  (aim p50 < 1 ms)\n", "pinned Go executable (ggsdk)", n, p50.Round(time.Microsecond), p99.Round(time.Microsecond))
	n, p50, p99 = roundTrip("rt/in/py", `{"ping":1}`)
	fmt.Printf("  %-40s %6d trips  p50 %9s  p99 %9s  (aim p50 < 2 ms)\n\n", "pinned Python 3 (greengrasssdk)", n, p50.Round(time.Microsecond), p99.Round(time.Microsecond))

	// 2. Cold starts of an on-demand function vs a bare spawn.
	const coldRuns = 15
	cold := func(name string) time.Duration {
		var ds []time.Duration
		for i := 0; i < coldRuns; i++ {
			api.RestartFunction(ctx, &runtimev1.RestartFunctionRequest{Function: name})
			// A cold start is one without a worker: wait until the old
			// ones are gone (a container takes a while to die).
			for end := time.Now().Add(10 * time.Second); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
				ws, err := api.ListWorkers(ctx, &runtimev1.ListWorkersRequest{Function: name})
				if err == nil && len(ws.GetWorkers()) == 0 {
					break
				}
			}
			time.Sleep(50 * time.Millisecond)
			t0 := time.Now()
			res, err := api.Invoke(ctx, &runtimev1.InvokeRequest{Function: name, Payload: []byte("x")})
			if err != nil || res.GetFunctionError() != "" {
				fail("invoke %s: %v %v", name, err, res)
			}
			ds = append(ds, time.Since(t0))
		}
		return median(ds)
	}
	warm := func(name string) time.Duration {
		var ds []time.Duration
		for i := 0; i < coldRuns; i++ {
			t0 := time.Now()
			if _, err := api.Invoke(ctx, &runtimev1.InvokeRequest{Function: name, Payload: []byte("x")}); err != nil {
				fail("invoke %s: %v", name, err)
			}
			ds = append(ds, time.Since(t0))
		}
		return median(ds)
	}
	var bare []time.Duration
	for i := 0; i < coldRuns; i++ {
		t0 := time.Now()
		exec.Command(filepath.Join(goDir, "echo")).Run() // exits at once: not under a core
		bare = append(bare, time.Since(t0))
	}
	fmt.Printf("cold start of an on-demand Go function (invoke until the result, median of %d) vs a bare spawn of the same binary\n", coldRuns)
	cNo, wNo := cold("cold"), warm("cold")
	fmt.Printf("  %-40s %9s  (warm invoke %s; bare spawn %s; overhead %s, aim < 20 ms)\n", "NoContainer", cNo.Round(time.Microsecond), wNo.Round(time.Microsecond), median(bare).Round(time.Microsecond), (cNo - median(bare)).Round(time.Microsecond))
	if containerdErr == nil {
		cC := cold("coldc")
		fmt.Printf("  %-40s %9s  (overhead over a bare spawn %s, aim < 80 ms)\n", "GreengrassContainer (containerd)", cC.Round(time.Microsecond), (cC - median(bare)).Round(time.Microsecond))
	} else {
		fmt.Printf("  %-40s skipped: %v\n", "GreengrassContainer", containerdErr)
	}
	fmt.Println()

	// 3. Invocations per second with 25 concurrent callers (25 on-demand workers).
	var done atomic.Int64
	var wg sync.WaitGroup
	deadline := time.Now().Add(dur)
	start := time.Now()
	for i := 0; i < 25; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) {
				if _, err := api.Invoke(ctx, &runtimev1.InvokeRequest{Function: "pool", Payload: []byte("x")}); err == nil {
					done.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	ws, _ := api.ListWorkers(ctx, &runtimev1.ListWorkersRequest{Function: "pool"})
	fmt.Printf("on-demand Go function, 25 concurrent RequestResponse invokes through the gRPC API: %.0f invocations/s (%d workers)\n\n",
		float64(done.Load())/time.Since(start).Seconds(), len(ws.GetWorkers()))
}
