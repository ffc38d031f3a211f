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
	"strconv"
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

// pyCold is the on-demand Python function of the cold-start scenario, and
// pyBare the same work as a plain script, the bare spawn it is compared
// with.
const (
	pyCold = "def handler(event, context):\n    return event\n"
	pyBare = "import json\ndef handler(event, context):\n    return event\nprint(json.dumps(handler('x', None)))\n"
)

// runtimeBench measures the runtime: device -> function -> device round
// trips through MQTT for a pinned Go executable and a pinned Python
// function; the cold start of an on-demand Go and Python function
// (NoContainer, and GreengrassContainer when containerd is there) against
// a bare spawn of the same binary or interpreter in the same run;
// invocations per second with 25 on-demand workers.
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
	must(os.WriteFile(filepath.Join(pyDir, "cold.py"), []byte(pyCold), 0o644))
	bareScript := filepath.Join(codeDir, "bare.py")
	must(os.WriteFile(bareScript, []byte(pyBare), 0o644))
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
		fn("coldpy", "python3.8", "cold.handler", pyDir, false, "NoContainer"),
		fn("pool", "go", "echo", goDir, false, "NoContainer"),
	}
	if containerdErr == nil {
		fns = append(fns, fn("coldc", "go", "echo", goDir, false, "GreengrassContainer"),
			fn("coldpyc", "python3.8", "cold.handler", pyDir, false, "GreengrassContainer"))
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
			map[string]any{"Id": "e", "Source": thing, "Subject": "rt/loop", "Target": thing},
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

	// 1. Round trips device -> function -> device. Each trip carries a
	// sequence number that the reply echoes: a reply that comes after its
	// trip gave up is discarded, not credited to the next trip.
	d, err := loadgen.LoadDevice(devDir, "dev", caFile)
	must(err)
	got := make(chan string, 64)
	c := mqtt.NewClient(mqtt.NewClientOptions().AddBroker("ssl://" + addr).SetClientID("dev").SetTLSConfig(d.TLS).SetAutoReconnect(false))
	if t := c.Connect(); !t.WaitTimeout(15*time.Second) || t.Error() != nil {
		fail("connect: %v", t.Error())
	}
	defer c.Disconnect(0)
	for _, f := range []string{"echo/out", "rt/out/py", "rt/loop"} {
		if t := c.Subscribe(f, 0, func(_ mqtt.Client, m mqtt.Message) {
			select {
			case got <- string(m.Payload()):
			default:
			}
		}); !t.WaitTimeout(15*time.Second) || t.Error() != nil {
			fail("subscribe: %v", t.Error())
		}
	}
	time.Sleep(time.Second) // pinned workers up
	// roundTrip publishes payload(seq) and waits up to 5 s for the reply
	// that carries seq; it returns the trips, their p50 and p99, and how
	// many trips got no reply in time.
	roundTrip := func(topic string, payload func(seq int) string) (int, time.Duration, time.Duration, int) {
		var lat []time.Duration
		lost := 0
		deadline := time.Now().Add(dur)
		for seq := 1; time.Now().Before(deadline); seq++ {
			t0 := time.Now()
			c.Publish(topic, 0, false, payload(seq))
			timeout := time.NewTimer(5 * time.Second)
		wait:
			for {
				select {
				case reply := <-got:
					if replySeq(reply) == seq {
						lat = append(lat, time.Since(t0))
						break wait
					}
				case <-timeout.C:
					lost++
					break wait
				}
			}
			timeout.Stop()
		}
		return len(lat), percentile(lat, 50), percentile(lat, 99), lost
	}
	fmt.Printf("function round trip: device publishes, the function publishes back, the device receives (MQTT over mutual TLS), %v each\n", dur)
	// The peer: the same trip with no function, the device's message routed
	// straight back to it (what a function adds is the difference).
	n, p50, p99, lost := roundTrip("rt/loop", func(seq int) string { return fmt.Sprintf("ping seq=%d;", seq) })
	fmt.Printf("  %-40s %6d trips  p50 %9s  p99 %9s  (peer: no function)%s\n", "device -> router -> device", n, p50.Round(time.Microsecond), p99.Round(time.Microsecond), lostText(lost))
	n, p50, p99, lost = roundTrip("rt/in/go", func(seq int) string { return fmt.Sprintf("ping seq=%d;", seq) })
	fmt.Printf("  %-40s %6d trips  p50 %9s  p99 %9s  (aim p50 < 1 ms)%s\n", "pinned Go executable (ggsdk)", n, p50.Round(time.Microsecond), p99.Round(time.Microsecond), lostText(lost))
	n, p50, p99, lost = roundTrip("rt/in/py", func(seq int) string { return fmt.Sprintf(`{"ping":"seq=%d;"}`, seq) })
	fmt.Printf("  %-40s %6d trips  p50 %9s  p99 %9s  (aim p50 < 2 ms)%s\n\n", "pinned Python 3 (greengrasssdk)", n, p50.Round(time.Microsecond), p99.Round(time.Microsecond), lostText(lost))

	// 2. Cold starts of an on-demand function vs a bare spawn.
	const coldRuns = 15
	cold := func(name string, payload []byte) time.Duration {
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
			res, err := api.Invoke(ctx, &runtimev1.InvokeRequest{Function: name, Payload: payload})
			if err != nil || res.GetFunctionError() != "" {
				fail("invoke %s: %v %v", name, err, res)
			}
			ds = append(ds, time.Since(t0))
		}
		return median(ds)
	}
	warm := func(name string, payload []byte) time.Duration {
		var ds []time.Duration
		for i := 0; i < coldRuns; i++ {
			t0 := time.Now()
			if _, err := api.Invoke(ctx, &runtimev1.InvokeRequest{Function: name, Payload: payload}); err != nil {
				fail("invoke %s: %v", name, err)
			}
			ds = append(ds, time.Since(t0))
		}
		return median(ds)
	}
	bareSpawn := func(name string, args ...string) time.Duration {
		var bare []time.Duration
		for i := 0; i < coldRuns; i++ {
			t0 := time.Now()
			exec.Command(name, args...).Run()
			bare = append(bare, time.Since(t0))
		}
		return median(bare)
	}
	coldRows := func(lang, noName, containerName string, payload []byte, bare time.Duration, aimNo, aimC string) {
		cNo, wNo := cold(noName, payload), warm(noName, payload)
		fmt.Printf("  %-40s %9s  (warm invoke %s; bare spawn %s; overhead %s%s)\n", lang+" NoContainer", cNo.Round(time.Microsecond), wNo.Round(time.Microsecond), bare.Round(time.Microsecond), (cNo - bare).Round(time.Microsecond), aimText(aimNo))
		if containerdErr == nil {
			cC := cold(containerName, payload)
			fmt.Printf("  %-40s %9s  (overhead over a bare spawn %s%s)\n", lang+" GreengrassContainer (containerd)", cC.Round(time.Microsecond), (cC - bare).Round(time.Microsecond), aimText(aimC))
		} else {
			fmt.Printf("  %-40s skipped: %v\n", lang+" GreengrassContainer", containerdErr)
		}
	}
	fmt.Printf("cold start of an on-demand function (invoke until the result, median of %d) vs a bare spawn of the same binary or interpreter\n", coldRuns)
	// The Go binary exits at once when not under a core; python3 runs a
	// script doing the handler's work and printing its result.
	coldRows("Go", "cold", "coldc", []byte("x"), bareSpawn(filepath.Join(goDir, "echo")), "20 ms", "80 ms")
	coldRows("Python", "coldpy", "coldpyc", []byte(`"x"`), bareSpawn(workerExe(ctx, api, "pyecho"), bareScript), "", "")
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

// workerExe is the executable a worker of function fn runs (the python3
// the runtime chose, which need not be the first on PATH).
func workerExe(ctx context.Context, api runtimev1.RuntimeClient, fn string) string {
	ws, err := api.ListWorkers(ctx, &runtimev1.ListWorkersRequest{Function: fn})
	if err != nil || len(ws.GetWorkers()) == 0 {
		fail("no worker of %s to read its executable from: %v", fn, err)
	}
	exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", ws.GetWorkers()[0].GetPid()))
	if err != nil {
		fail("the executable of %s's worker: %v", fn, err)
	}
	return exe
}

// replySeq is the sequence number a round-trip reply carries
// ("seq=N;"), or -1.
func replySeq(s string) int {
	_, rest, ok := strings.Cut(s, "seq=")
	if !ok {
		return -1
	}
	num, _, ok := strings.Cut(rest, ";")
	if !ok {
		return -1
	}
	n, err := strconv.Atoi(num)
	if err != nil {
		return -1
	}
	return n
}

func aimText(aim string) string {
	if aim == "" {
		return ""
	}
	return ", aim < " + aim
}

func lostText(lost int) string {
	if lost == 0 {
		return ""
	}
	return fmt.Sprintf("  %d trips got no reply in 5 s", lost)
}
