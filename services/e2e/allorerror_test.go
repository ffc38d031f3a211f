package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/evergreen-edge/evergreen/services/internal/suitetest"
)

// queueFullPolicy through the whole suite with the v1 Python SDK: while the
// functions' queue (runtime.maxWorkItemCount 3) holds two items for a
// busy function, a publish to two functions and a device cannot reach
// them all: with AllOrException the SDK raises and nobody gets it; with
// BestEffort it returns and the device and one function get it.
func TestQueueFullPolicies(t *testing.T) {
	needPython(t)
	root := suitetest.ShortRoot(t)
	suitetest.WriteConfig(t, root, func(cfg map[string]any) {
		cfg["runtime"] = map[string]any{"maxWorkItemCount": 3}
	})
	s := suitetest.Start(t, root)
	dev := createDevice(t, root, "dev")
	fnDir, _ := filepath.Abs("testdata/fns")
	fnARN := func(n string) string { return "arn:aws:lambda:us-east-1:123456789012:function:" + n + ":1" }
	fn := func(name, code string) map[string]any {
		return map[string]any{"Id": name, "FunctionArn": fnARN(name),
			"FunctionConfiguration": map[string]any{"Pinned": true, "Timeout": 20, "EncodingType": "json"},
			"Evergreen":             map[string]any{"Runtime": "python3.8", "Handler": "main.handler", "CodeUri": filepath.Join(fnDir, code)}}
	}
	sub := func(id, src, subject, dst string) map[string]any {
		return map[string]any{"Id": id, "Source": src, "Subject": subject, "Target": dst}
	}
	g := map[string]any{
		"Core":    map[string]any{"Cores": []any{map[string]any{"Id": "core", "ThingArn": thing("test-core"), "CertificateArn": acct + "cert/" + strings.Repeat("ab", 32)}}},
		"Devices": map[string]any{"Devices": []any{map[string]any{"Id": "dev", "ThingArn": thing("dev"), "CertificateArn": acct + "cert/" + dev.certID}}},
		"Functions": map[string]any{
			"DefaultConfig": map[string]any{"Execution": map[string]any{"IsolationMode": "NoContainer"}},
			"Functions":     []any{fn("allpub", "allpub"), fn("slow", "slow"), fn("slow2", "slow")}},
		"Subscriptions": map[string]any{"Subscriptions": []any{
			sub("1", thing("dev"), "allpub/in", fnARN("allpub")),
			sub("2", thing("dev"), "slow/in", fnARN("slow")),
			sub("3", fnARN("allpub"), "all/out", fnARN("slow")),
			sub("4", fnARN("allpub"), "all/out", fnARN("slow2")),
			sub("5", fnARN("allpub"), "all/out", thing("dev")),
			sub("6", fnARN("allpub"), "allpub/result", thing("dev")),
			sub("7", fnARN("slow"), "slow/done", thing("dev")),
			sub("8", fnARN("slow2"), "slow/done", thing("dev")),
		}},
	}
	b, _ := json.Marshal(g)
	gf := filepath.Join(t.TempDir(), "group.json")
	os.WriteFile(gf, b, 0o600)
	if r := ggctl(t, root, "deploy", gf); r.code != 0 {
		t.Fatalf("deploy: %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	c, in := pahoDevice(t, s.Endpoints().MQTT, dev, "#")
	// Room everywhere.
	pahoPublish(t, c, "allpub/in", `{"policy":"AllOrException","n":1}`)
	if r := in.wait(t, "allpub/result", 1); !strings.Contains(r[0], `"result": "ok"`) {
		t.Fatalf("AllOrException with room: %s", r[0])
	}
	in.wait(t, "all/out", 1)
	in.wait(t, "slow/done", 2) // both have run it: their workers wait for more

	// slow takes one item, two wait: the queue has room for one more.
	for range 3 {
		pahoPublish(t, c, "slow/in", `{"sleep":4}`)
	}
	time.Sleep(time.Second)
	pahoPublish(t, c, "allpub/in", `{"policy":"AllOrException","n":2}`)
	r := in.wait(t, "allpub/result", 2)
	if !strings.Contains(r[1], `refused: `) || !strings.Contains(r[1], "429") || !strings.Contains(r[1], "work queue is full") {
		t.Fatalf("AllOrException with the queue full: %s", r[1])
	}
	pahoPublish(t, c, "allpub/in", `{"policy":"BestEffort","n":3}`)
	if r := in.wait(t, "allpub/result", 3); !strings.Contains(r[2], `"result": "ok"`) {
		t.Fatalf("BestEffort with the queue full: %s", r[2])
	}
	out := in.wait(t, "all/out", 2)
	if !strings.Contains(out[1], `"n": 3`) {
		t.Fatalf("all/out after the refusal: %q (n 2 must never arrive)", out)
	}
}
