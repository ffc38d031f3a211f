package e2e

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/evergreen-edge/evergreen/services/internal/suitetest"
)

// A group a daemon cannot take is refused at PREPARE, before the commit:
// with the whole suite, a good group is deployed, then one the runtime
// refuses (a function whose code does not exist) and one certmgr refuses (a
// registered device under another certificate). Each fails at the stage
// before "prepared", no daemon is asked to apply it, every daemon still
// runs the good group and current.json is the same file.
func TestDeployRefusedAtPrepare(t *testing.T) {
	root := suitetest.ShortRoot(t)
	suitetest.WriteConfig(t, root, nil)
	suitetest.Start(t, root)
	dev := createDevice(t, root, "sensor-1")

	group := func(certID string, fns ...any) string {
		g := map[string]any{
			"Core":    map[string]any{"Cores": []any{map[string]any{"Id": "core", "ThingArn": thing("test-core"), "CertificateArn": acct + "cert/" + strings.Repeat("ab", 32)}}},
			"Devices": map[string]any{"Devices": []any{map[string]any{"Id": "sensor-1", "ThingArn": thing("sensor-1"), "CertificateArn": acct + "cert/" + certID}}},
			"Subscriptions": map[string]any{"Subscriptions": []any{
				map[string]any{"Id": "1", "Source": thing("sensor-1"), "Subject": "$aws/things/sensor-1/shadow/#", "Target": "GGShadowService"},
			}},
		}
		if len(fns) > 0 {
			g["Functions"] = map[string]any{
				"DefaultConfig": map[string]any{"Execution": map[string]any{"IsolationMode": "NoContainer"}},
				"Functions":     fns,
			}
		}
		b, _ := json.MarshalIndent(g, "", " ")
		f := filepath.Join(t.TempDir(), "group.json")
		if err := os.WriteFile(f, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return f
	}
	if r := ggctl(t, root, "deploy", "--id", "good-1", group(dev.certID)); r.code != 0 {
		t.Fatalf("deploy the good group: %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	currentFile := filepath.Join(root.DeploymentsDir(), "current.json")
	before, err := os.ReadFile(currentFile)
	if err != nil {
		t.Fatal(err)
	}
	var cur struct {
		GroupSHA256 string `json:"groupSha256"`
	}
	if err := json.Unmarshal(before, &cur); err != nil || cur.GroupSHA256 == "" {
		t.Fatalf("current.json: %v\n%s", err, before)
	}
	checkInForce(t, root, "good-1", cur.GroupSHA256)

	missingCode := map[string]any{"Id": "gone", "FunctionArn": "arn:aws:lambda:us-east-1:123456789012:function:gone:1",
		"FunctionConfiguration": map[string]any{"Pinned": false, "Timeout": 3},
		"Evergreen":             map[string]any{"Runtime": "python3.8", "Handler": "main.handler", "CodeUri": "/nonexistent/evergreen-code/gone"}}
	for _, tc := range []struct {
		id, file, daemon, reason string
	}{
		{"bad-code", group(dev.certID, missingCode), "runtime", `CodeUri "/nonexistent/evergreen-code/gone"`},
		{"bad-cert", group(strings.Repeat("cd", 32)), "certmgr", "Devices[0].CertificateArn"},
	} {
		r := ggctl(t, root, "deploy", "--id", tc.id, tc.file)
		out := r.stdout + r.stderr
		if r.code != 1 || !strings.Contains(r.stdout, "deployment "+tc.id+": FAILURE") {
			t.Fatalf("%s: want exit 1 and FAILURE, got %d\n%s", tc.id, r.code, out)
		}
		// The progress lines: the refusal at the stage before "prepared",
		// and nothing after it.
		refusal, terminal := "", ""
		for _, l := range strings.Split(r.stderr, "\n") {
			f := strings.Fields(l)
			if len(f) < 4 {
				continue
			}
			status, stage, msg := f[1], f[2], strings.Join(f[3:], " ")
			switch {
			case strings.HasPrefix(msg, tc.daemon+" refused: "):
				refusal = stage
				if !strings.Contains(msg, tc.reason) {
					t.Errorf("%s: refusal %q does not name %q", tc.id, msg, tc.reason)
				}
			case status == "FAILURE":
				terminal = stage
			case strings.HasSuffix(msg, " applied"), strings.HasPrefix(msg, "committed"), msg == "prepared", msg == "applied":
				t.Errorf("%s: a refused deployment went on: %q\n%s", tc.id, l, r.stderr)
			}
		}
		if refusal != "artifacts" || terminal != "artifacts" {
			t.Fatalf("%s: refused at stage %q, ended at stage %q; want both before prepared (artifacts)\n%s", tc.id, refusal, terminal, out)
		}
		// The results table: the refusing daemon FAILED with its reason.
		row := ""
		for _, l := range strings.Split(r.stdout, "\n") {
			if f := strings.Fields(l); len(f) > 1 && f[0] == tc.daemon {
				row = l
			}
		}
		if !strings.Contains(row, "FAILED") || !strings.Contains(row, tc.reason) {
			t.Fatalf("%s: %s's result %q, want FAILED naming %q\n%s", tc.id, tc.daemon, row, tc.reason, r.stdout)
		}

		// What the deployagent recorded: failed at artifacts, so no daemon
		// was asked to apply it.
		show := ggctl(t, root, "--json", "deployments", "show", tc.id)
		var d listedDeployment
		if err := json.Unmarshal([]byte(show.stdout), &d); err != nil {
			t.Fatalf("deployments show %s: %v\n%s%s", tc.id, err, show.stdout, show.stderr)
		}
		if d.Status != "DEPLOYMENT_STATUS_FAILURE" || d.Stage != "artifacts" || !strings.Contains(d.Error, tc.reason) {
			t.Fatalf("%s recorded as %+v; want FAILURE at stage artifacts naming %q", tc.id, d, tc.reason)
		}

		after, err := os.ReadFile(currentFile)
		if err != nil || !bytes.Equal(after, before) {
			t.Fatalf("%s: current.json changed (%v):\n%s\nwas\n%s", tc.id, err, after, before)
		}
		checkInForce(t, root, "good-1", cur.GroupSHA256)
	}
}
