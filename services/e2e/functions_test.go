package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/evergreen-edge/evergreen/services/internal/suitetest"
	"github.com/evergreen-edge/evergreen/services/kit/bustest"
)

// Python and Node.js functions written against the v1 SDKs, run by the
// whole suite as plain processes (as nobody when the suite is root): a
// device triggers the Python one through routing; it updates and reads a
// shadow, invokes the Node.js one and publishes back to the device; the
// device also triggers the Node.js one. A function whose import fails
// shows FailedInitialization.
func TestFunctionsThroughRouting(t *testing.T) {
	needPython(t)
	needNode(t)
	root := suitetest.ShortRoot(t)
	suitetest.WriteConfig(t, root, nil)
	s := suitetest.Start(t, root)
	dev := createDevice(t, root, "dev")
	fnDir, _ := filepath.Abs("testdata/fns")
	fnARN := func(n string) string { return "arn:aws:lambda:us-east-1:123456789012:function:" + n + ":1" }
	fn := func(name, runtime, handler string, pinned bool) map[string]any {
		return map[string]any{"Id": name, "FunctionArn": fnARN(name),
			"FunctionConfiguration": map[string]any{"Pinned": pinned, "Timeout": 10, "EncodingType": "json"},
			"Evergreen":             map[string]any{"Runtime": runtime, "Handler": handler, "CodeUri": filepath.Join(fnDir, name)}}
	}
	g := map[string]any{
		"Core":    map[string]any{"Cores": []any{map[string]any{"Id": "core", "ThingArn": thing("test-core"), "CertificateArn": acct + "cert/" + strings.Repeat("ab", 32)}}},
		"Devices": map[string]any{"Devices": []any{map[string]any{"Id": "dev", "ThingArn": thing("dev"), "CertificateArn": acct + "cert/" + dev.certID}}},
		"Functions": map[string]any{
			"DefaultConfig": map[string]any{"Execution": map[string]any{"IsolationMode": "NoContainer"}},
			"Functions": []any{
				fn("py", "python3.8", "main.handler", false),
				fn("node", "nodejs12.x", "index.handler", true),
				fn("broken", "python3.8", "main.handler", true),
			}},
		"Subscriptions": map[string]any{"Subscriptions": []any{
			map[string]any{"Id": "1", "Source": thing("dev"), "Subject": "sensors/in", "Target": fnARN("py")},
			map[string]any{"Id": "2", "Source": fnARN("py"), "Subject": "py/out", "Target": thing("dev")},
			map[string]any{"Id": "3", "Source": thing("dev"), "Subject": "node/in", "Target": fnARN("node")},
			map[string]any{"Id": "4", "Source": fnARN("node"), "Subject": "node/out", "Target": thing("dev")},
		}},
	}
	b, _ := json.Marshal(g)
	gf := filepath.Join(t.TempDir(), "group.json")
	os.WriteFile(gf, b, 0o600)
	if r := ggctl(t, root, "deploy", gf); r.code != 0 {
		t.Fatalf("deploy: %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	c, in := pahoDevice(t, s.Endpoints().MQTT, dev, "#")

	pahoPublish(t, c, "node/in", `{"n":2}`)
	out := in.wait(t, "node/out", 1)
	if jsonAt(t, out[0], "subject") != "node/in" || fmt.Sprint(jsonAt(t, out[0], "event", "n")) != "2" {
		t.Fatalf("node/out = %s", out[0])
	}

	pahoPublish(t, c, "sensors/in", `{"t":21}`)
	out = in.wait(t, "py/out", 1)
	if jsonAt(t, out[0], "subject") != "sensors/in" || fmt.Sprint(jsonAt(t, out[0], "seen", "t")) != "21" ||
		jsonAt(t, out[0], "shadowVersion") != json.Number("1") || jsonAt(t, out[0], "node", "node") != true ||
		jsonAt(t, out[0], "node", "got", "from") != "py" {
		t.Fatalf("py/out = %s", out[0])
	}
	if r := ggctl(t, root, "shadow", "get", "dev"); r.code != 0 || fmt.Sprint(jsonAt(t, r.stdout, "state", "reported", "seen", "t")) != "21" {
		t.Fatalf("the function's shadow update: %d %s", r.code, r.stdout)
	}

	bustest.CheckFor(t, waitLimit, 100*time.Millisecond, func() error {
		r := ggctl(t, root, "fn", "workers", "broken")
		if !strings.Contains(r.stdout, "FailedInitialization") {
			return fmt.Errorf("fn workers broken: %s%s", r.stdout, r.stderr)
		}
		return nil
	})
	if r := ggctl(t, root, "fn", "logs", "broken", "-n", "50"); !strings.Contains(r.stdout, `Failed to import handler function "main.handler"`) {
		t.Fatalf("broken's log: %s%s", r.stdout, r.stderr)
	}

	// The supervisor's /metrics carries the runtime's counters per function.
	code, metrics := s.HTTPGet("/metrics")
	for _, want := range []string{`evergreen_function_invocations_total{function="py"} 1`,
		`evergreen_function_invocations_total{function="node"} 2`, `evergreen_function_workers{function="node"} 1`,
		`evergreen_function_unhandled_errors_total{function="py"} 0`, "# TYPE evergreen_function_out_of_memory_kills_total counter"} {
		if code != 200 || !strings.Contains(metrics, want) {
			t.Errorf("/metrics (%d) lacks %s:\n%s", code, want, metrics)
		}
	}
}
