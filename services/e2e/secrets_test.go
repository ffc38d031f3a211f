package e2e

import (
	"bytes"
	"encoding/json"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/evergreen-edge/evergreen/services/internal/suitetest"
)

// Secrets end to end: a value put with ggctl reaches a Python function
// whose ResourceAccessPolicies name the secret resource, through the v1
// SDK's secretsmanager client; another function is refused; and no file
// under DIR holds the value in clear.
func TestSecretsThroughPythonSDK(t *testing.T) {
	needPython(t)
	root := suitetest.ShortRoot(t)
	suitetest.WriteConfig(t, root, nil)
	s := suitetest.Start(t, root)
	dev := createDevice(t, root, "dev")
	const value = "s3cr3t-value-7f1d0c9a-never-on-disk"
	vf := filepath.Join(t.TempDir(), "value")
	os.WriteFile(vf, []byte(value), 0o600)
	if r := ggctl(t, root, "secret", "put", "plant/db", "--file", vf); r.code != 0 {
		t.Fatalf("secret put: %d %s%s", r.code, r.stdout, r.stderr)
	}
	fnDir, _ := filepath.Abs("testdata/fns")
	fnARN := func(n string) string { return "arn:aws:lambda:us-east-1:123456789012:function:" + n + ":1" }
	fn := func(name string, policies []any) map[string]any {
		return map[string]any{"Id": name, "FunctionArn": fnARN(name),
			"FunctionConfiguration": map[string]any{"Pinned": false, "Timeout": 10, "EncodingType": "json",
				"Environment": map[string]any{"ResourceAccessPolicies": policies}},
			"Evergreen": map[string]any{"Runtime": "python3.8", "Handler": "main.handler", "CodeUri": filepath.Join(fnDir, "secretreader")}}
	}
	g := map[string]any{
		"Core":    map[string]any{"Cores": []any{map[string]any{"Id": "core", "ThingArn": thing("test-core"), "CertificateArn": acct + "cert/" + strings.Repeat("ab", 32)}}},
		"Devices": map[string]any{"Devices": []any{map[string]any{"Id": "dev", "ThingArn": thing("dev"), "CertificateArn": acct + "cert/" + dev.certID}}},
		"Resources": map[string]any{"Resources": []any{map[string]any{"Id": "db", "Name": "db", "ResourceDataContainer": map[string]any{
			"SecretsManagerSecretResourceData": map[string]any{"ARN": "arn:aws:secretsmanager:us-east-1:123456789012:secret:plant/db-AbCdEf"}}}}},
		"Functions": map[string]any{
			"DefaultConfig": map[string]any{"Execution": map[string]any{"IsolationMode": "NoContainer"}},
			"Functions": []any{
				fn("reader", []any{map[string]any{"ResourceId": "db", "Permission": "ro"}}),
				fn("stranger", []any{}),
			}},
		"Subscriptions": map[string]any{"Subscriptions": []any{
			map[string]any{"Id": "1", "Source": thing("dev"), "Subject": "read/reader", "Target": fnARN("reader")},
			map[string]any{"Id": "2", "Source": thing("dev"), "Subject": "read/stranger", "Target": fnARN("stranger")},
			map[string]any{"Id": "3", "Source": fnARN("reader"), "Subject": "secret/out", "Target": thing("dev")},
			map[string]any{"Id": "4", "Source": fnARN("stranger"), "Subject": "secret/out", "Target": thing("dev")},
		}},
	}
	b, _ := json.Marshal(g)
	gf := filepath.Join(t.TempDir(), "group.json")
	os.WriteFile(gf, b, 0o600)
	if r := ggctl(t, root, "deploy", gf); r.code != 0 {
		t.Fatalf("deploy: %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	c, in := pahoDevice(t, s.Endpoints().MQTT, dev, "#")
	pahoPublish(t, c, "read/reader", `{"id":"plant/db"}`)
	out := in.wait(t, "secret/out", 1)
	if jsonAt(t, out[0], "value") != value || jsonAt(t, out[0], "name") != "plant/db" {
		t.Fatalf("reader got %s", out[0])
	}
	pahoPublish(t, c, "read/stranger", `{"id":"plant/db"}`)
	out = in.wait(t, "secret/out", 2)
	if e, _ := jsonAt(t, out[1], "error").(string); !strings.Contains(e, "error code 403") {
		t.Fatalf("stranger got %s", out[1])
	}

	// No plaintext anywhere under DIR (the store, logs, deployments).
	filepath.WalkDir(root.Dir(), func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return nil
		}
		if b, err := os.ReadFile(p); err == nil && bytes.Contains(b, []byte(value)) {
			t.Errorf("%s holds the secret in clear", p)
		}
		return nil
	})
}
