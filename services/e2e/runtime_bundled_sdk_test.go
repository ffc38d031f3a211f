package e2e

import (
	"archive/zip"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/evergreen-edge/evergreen/services/internal/suitetest"
)

// zipPackage writes a deployment package: every file of each src folder
// under its name in the zip (a prefix of "" is the zip's root), as a user
// packs a v1 function. Bytecode caches are left out.
func zipPackage(t *testing.T, dst string, dirs map[string]string) {
	t.Helper()
	f, err := os.Create(dst)
	if err != nil {
		t.Fatal(err)
	}
	zw := zip.NewWriter(f)
	for prefix, src := range dirs {
		err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() && d.Name() == "__pycache__" {
				return filepath.SkipDir
			}
			if d.IsDir() {
				return nil
			}
			rel, _ := filepath.Rel(src, p)
			h := &zip.FileHeader{Name: filepath.ToSlash(filepath.Join(prefix, rel)), Method: zip.Deflate}
			h.SetMode(0o644)
			w, err := zw.CreateHeader(h)
			if err != nil {
				return err
			}
			in, err := os.Open(p)
			if err != nil {
				return err
			}
			defer in.Close()
			_, err = io.Copy(w, in)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// Python and Node.js functions that bundle the v1 SDK the way users bundle
// theirs (greengrasssdk at the zip's root next to the handler;
// node_modules/aws-greengrass-core-sdk), deployed from .zip packages: a
// device triggers each through routing; each loads its own copy of the SDK
// (not the core's), updates, gets and deletes a shadow, gets the shadow
// service's error documents as the SDK's errors, invokes another function
// (RequestResponse) and publishes all of it back to the device.
func TestBundledSDKFunctions(t *testing.T) {
	needPython(t)
	needNode(t)
	root := suitetest.ShortRoot(t)
	suitetest.WriteConfig(t, root, nil)
	s := suitetest.Start(t, root)
	dev := createDevice(t, root, "dev")
	repo, err := suitetest.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	fnDir, _ := filepath.Abs("testdata/fns")
	pkgs := t.TempDir()
	pyZip, nodeZip := filepath.Join(pkgs, "pybundled.zip"), filepath.Join(pkgs, "nodebundled.zip")
	zipPackage(t, pyZip, map[string]string{
		"":              filepath.Join(fnDir, "pybundled"),
		"greengrasssdk": filepath.Join(repo, "runtime", "shims", "python", "greengrasssdk"),
	})
	zipPackage(t, nodeZip, map[string]string{
		"":                                     filepath.Join(fnDir, "nodebundled"),
		"node_modules/aws-greengrass-core-sdk": filepath.Join(repo, "runtime", "shims", "nodejs", "node_modules", "aws-greengrass-core-sdk"),
	})

	fnARN := func(n string) string { return "arn:aws:lambda:us-east-1:123456789012:function:" + n + ":1" }
	fn := func(name, runtime, handler, code string) map[string]any {
		return map[string]any{"Id": name, "FunctionArn": fnARN(name),
			"FunctionConfiguration": map[string]any{"Pinned": false, "Timeout": 15, "EncodingType": "json"},
			"Evergreen":             map[string]any{"Runtime": runtime, "Handler": handler, "CodeUri": code}}
	}
	g := map[string]any{
		"Core":    map[string]any{"Cores": []any{map[string]any{"Id": "core", "ThingArn": thing("test-core"), "CertificateArn": acct + "cert/" + strings.Repeat("ab", 32)}}},
		"Devices": map[string]any{"Devices": []any{map[string]any{"Id": "dev", "ThingArn": thing("dev"), "CertificateArn": acct + "cert/" + dev.certID}}},
		"Functions": map[string]any{
			"DefaultConfig": map[string]any{"Execution": map[string]any{"IsolationMode": "NoContainer"}},
			"Functions": []any{
				fn("pybundled", "python3.8", "main.handler", pyZip),
				fn("nodebundled", "nodejs12.x", "index.handler", nodeZip),
				fn("answer", "python3.8", "main.handler", filepath.Join(fnDir, "answer")),
			}},
		"Subscriptions": map[string]any{"Subscriptions": []any{
			map[string]any{"Id": "1", "Source": thing("dev"), "Subject": "bundled/py/in", "Target": fnARN("pybundled")},
			map[string]any{"Id": "2", "Source": fnARN("pybundled"), "Subject": "bundled/py/out", "Target": thing("dev")},
			map[string]any{"Id": "3", "Source": thing("dev"), "Subject": "bundled/node/in", "Target": fnARN("nodebundled")},
			map[string]any{"Id": "4", "Source": fnARN("nodebundled"), "Subject": "bundled/node/out", "Target": thing("dev")},
		}},
	}
	b, _ := json.Marshal(g)
	gf := filepath.Join(t.TempDir(), "group.json")
	os.WriteFile(gf, b, 0o600)
	if r := ggctl(t, root, "deploy", gf); r.code != 0 {
		t.Fatalf("deploy: %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	c, in := pahoDevice(t, s.Endpoints().MQTT, dev, "bundled/#")

	type report struct {
		SDK            any            `json:"sdk"`
		Resolved       string         `json:"resolved"`
		Cwd            string         `json:"cwd"`
		Reported       map[string]any `json:"reported"`
		Deleted        bool           `json:"deleted"`
		GetAfterDelete string         `json:"getAfterDelete"`
		BadUpdate      string         `json:"badUpdate"`
		Answer         map[string]any `json:"answer"`
	}
	trigger := func(lang string) report {
		t.Helper()
		pahoPublish(t, c, "bundled/"+lang+"/in", fmt.Sprintf(`{"thing":"dev","answer":%q}`, fnARN("answer")))
		out := in.wait(t, "bundled/"+lang+"/out", 1)
		var r report
		if err := json.Unmarshal([]byte(out[0]), &r); err != nil {
			t.Fatalf("%s: %v\n%s", lang, err, out[0])
		}
		t.Logf("%s reported %s", lang, out[0])
		if r.Cwd == "" || r.Reported["by"] != lang || !r.Deleted {
			t.Fatalf("%s: shadow update, get and delete: %s", lang, out[0])
		}
		if got := fmt.Sprint(r.Answer["answer"]); got != "map[from:"+lang+"]" || r.Answer["fn"] != "answer" {
			t.Fatalf("%s: the invoked function's answer %v", lang, r.Answer)
		}
		return r
	}

	py := trigger("py")
	if py.SDK != filepath.Join(py.Cwd, "greengrasssdk", "__init__.py") {
		t.Fatalf("the Python function imported greengrasssdk from %v, want the copy in its code folder %s", py.SDK, py.Cwd)
	}
	if !strings.HasPrefix(py.GetAfterDelete, "ShadowError: ") || !strings.Contains(py.GetAfterDelete, "error code 404") ||
		!strings.Contains(py.GetAfterDelete, "No shadow exists with name: 'dev'") {
		t.Fatalf("py: get after delete = %q, want a ShadowError with code 404", py.GetAfterDelete)
	}
	if !strings.HasPrefix(py.BadUpdate, "ShadowError: ") || !strings.Contains(py.BadUpdate, "error code 400") {
		t.Fatalf("py: update with a bad document = %q, want a ShadowError with code 400", py.BadUpdate)
	}

	node := trigger("node")
	want := filepath.Join(node.Cwd, "node_modules", "aws-greengrass-core-sdk", "index.js")
	loaded, _ := node.SDK.([]any)
	if node.Resolved != want || len(loaded) == 0 {
		t.Fatalf("the Node.js function resolved the SDK to %s (loaded %v), want %s", node.Resolved, node.SDK, want)
	}
	for _, p := range loaded {
		if !strings.HasPrefix(fmt.Sprint(p), node.Cwd+"/") {
			t.Fatalf("the Node.js function loaded SDK file %v from outside its code folder %s", p, node.Cwd)
		}
	}
	if !strings.HasPrefix(node.GetAfterDelete, "404: ") || !strings.Contains(node.GetAfterDelete, "No shadow exists with name: 'dev'") {
		t.Fatalf("node: get after delete = %q, want the error with code 404", node.GetAfterDelete)
	}
	if !strings.HasPrefix(node.BadUpdate, "400: ") {
		t.Fatalf("node: update with a bad document = %q, want the error with code 400", node.BadUpdate)
	}
}
