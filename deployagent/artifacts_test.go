package deployagent

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/evergreen-edge/evergreen/deployagent/artifact"
	"github.com/evergreen-edge/evergreen/services/kit/groupdef"
	"github.com/evergreen-edge/evergreen/services/kit/layout"
)

func zipOf(t *testing.T, files map[string]string) []byte {
	var b bytes.Buffer
	w := zip.NewWriter(&b)
	for name, body := range files {
		f, _ := w.Create(name)
		f.Write([]byte(body))
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func tarGzOf(t *testing.T, files map[string]string) []byte {
	var b bytes.Buffer
	gz := gzip.NewWriter(&b)
	w := tar.NewWriter(gz)
	for name, body := range files {
		w.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(body)), Typeflag: tar.TypeReg})
		w.Write([]byte(body))
	}
	w.Close()
	gz.Close()
	return b.Bytes()
}

func shaOf(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }

// The artifacts stage: function code by https:// lands in the cache and
// the daemons' group names the cached file; a model is unpacked and, only
// at the switch, linked at its DestinationPath; a bad artifact fails with
// nothing left; what no group references is collected.
func TestArtifactsStage(t *testing.T) {
	code := zipOf(t, map[string]string{"app.py": "def handler(e, c):\n    return e\n"})
	model := tarGzOf(t, map[string]string{"model/weights.bin": "0123456789"})
	ts := httptest.NewTLSServer(http.FileServer(http.Dir(t.TempDir())))
	defer ts.Close()
	files := map[string][]byte{"/code.zip": code, "/model.tar.gz": model}
	ts.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, ok := files[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		http.ServeContent(w, r, r.URL.Path, time.Time{}, bytes.NewReader(b))
	})
	root := layout.Root(t.TempDir())
	a, err := newArtifacts(root, artifact.WithHTTPClient(ts.Client()))
	if err != nil {
		t.Fatal(err)
	}
	dest := filepath.Join(t.TempDir(), "ml", "model")
	groupJSON := func(codeSha, modelSha string) []byte {
		return []byte(fmt.Sprintf(`{
"Core":{"Cores":[{"Id":"c","ThingArn":"arn:aws:iot:us-east-1:123456789012:thing/core","CertificateArn":"arn:aws:iot:us-east-1:123456789012:cert/%s"}]},
"Functions":{"Functions":[{"Id":"f","FunctionArn":"arn:aws:lambda:us-east-1:123456789012:function:f:1",
  "FunctionConfiguration":{"Pinned":false,"Timeout":3,"Environment":{"ResourceAccessPolicies":[{"ResourceId":"m","Permission":"ro"}]}},
  "Evergreen":{"Runtime":"python3.8","Handler":"app.handler","CodeUri":"%s/code.zip","CodeSha256":"%s"}}]},
"Resources":{"Resources":[{"Id":"m","Name":"m","ResourceDataContainer":{"S3MachineLearningModelResourceData":{
  "DestinationPath":%q,"S3Uri":"s3://models/model.tar.gz","Evergreen":{"Url":"%s/model.tar.gz","Sha256":"%s"}}}}]}}`,
			strings.Repeat("a", 64), ts.URL, codeSha, dest, ts.URL, modelSha))
	}
	g, err := groupdef.Parse(groupJSON(shaOf(code), shaOf(model)))
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	staged, err := a.stage(context.Background(), g, func(s string) { lines = append(lines, s) })
	if err != nil {
		t.Fatal(err)
	}
	uri := staged.Functions.Functions[0].Evergreen.CodeUri
	if got, err := os.ReadFile(strings.TrimPrefix(uri, "file://")); err != nil || !bytes.Equal(got, code) {
		t.Fatalf("CodeUri for the daemons %q: %v", uri, err)
	}
	if g.Functions.Functions[0].Evergreen.CodeUri != ts.URL+"/code.zip" {
		t.Error("stage changed the group it was given")
	}
	if _, err := os.Lstat(dest); !os.IsNotExist(err) {
		t.Fatalf("DestinationPath exists before the switch: %v", err)
	}
	if len(lines) < 3 {
		t.Errorf("progress: %q", lines)
	}
	if err := a.switchModels(staged, nil); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(dest, "model", "weights.bin")); err != nil || string(b) != "0123456789" {
		t.Fatalf("model at its DestinationPath: %q %v", b, err)
	}

	// A user's directory at DestinationPath is never replaced.
	other := filepath.Join(t.TempDir(), "mine")
	os.MkdirAll(other, 0o755)
	g2, _ := groupdef.Parse(bytes.Replace(groupJSON(shaOf(code), shaOf(model)), []byte(dest), []byte(other), 1))
	if _, err := a.stage(context.Background(), g2, nil); err == nil || !strings.Contains(err.Error(), "exists and is not a model link of this core") {
		t.Fatalf("stage over a user's directory: %v", err)
	}

	// A wrong sha256 fails naming the function, with nothing left.
	bad := strings.Repeat("0", 64)
	g3, _ := groupdef.Parse(groupJSON(bad, shaOf(model)))
	before, _ := os.ReadDir(filepath.Join(root.DataDir(Name), "artifacts", "sha256"))
	if _, err := a.stage(context.Background(), g3, nil); err == nil || !strings.Contains(err.Error(), "Functions[0]") || !strings.Contains(err.Error(), "sha256") {
		t.Fatalf("stage with a wrong CodeSha256: %v", err)
	}
	after, _ := os.ReadDir(filepath.Join(root.DataDir(Name), "artifacts", "sha256"))
	if len(after) != len(before) {
		t.Errorf("a refused artifact left files: %v -> %v", before, after)
	}

	// A group without the model removes its link; collect then drops
	// what neither group references.
	none, _ := groupdef.Parse([]byte(fmt.Sprintf(`{"Core":{"Cores":[{"Id":"c","ThingArn":"arn:aws:iot:us-east-1:123456789012:thing/core","CertificateArn":"arn:aws:iot:us-east-1:123456789012:cert/%s"}]}}`, strings.Repeat("a", 64))))
	if err := a.switchModels(none, staged); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(dest); !os.IsNotExist(err) {
		t.Fatalf("model link after a group without it: %v", err)
	}
	removed, err := a.collect(none, staged)
	if err != nil || len(removed) != 0 {
		t.Fatalf("collect with the previous group still referencing: %v %v", removed, err)
	}
	removed, err = a.collect(none)
	if err != nil || len(removed) != 3 { // code, model archive, model tree
		t.Fatalf("collect: %v %v", removed, err)
	}
}
