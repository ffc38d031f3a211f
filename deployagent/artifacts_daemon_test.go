package deployagent_test

import (
	"archive/zip"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/evergreen-edge/evergreen/deployagent"
	"github.com/evergreen-edge/evergreen/deployagent/artifact"
	deployv1 "github.com/evergreen-edge/evergreen/proto/evergreen/deploy/v1"
	"github.com/evergreen-edge/evergreen/services/kit/deployment"
)

// The artifacts stage inside a deployment: code named by https:// reaches
// the daemons as a verified file in the cache and the stage shows
// progress; a model is linked at its DestinationPath after the commit and
// unlinked by the next group; a bad artifact fails the deployment before
// any daemon is asked.
func TestDeploymentFetchesArtifacts(t *testing.T) {
	var zb bytes.Buffer
	zw := zip.NewWriter(&zb)
	f, _ := zw.Create("app.py")
	f.Write([]byte("def handler(e, c):\n    return e\n"))
	zw.Close()
	code := zb.Bytes()
	sum := sha256.Sum256(code)
	codeSha := hex.EncodeToString(sum[:])
	var fetches int
	ts := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fetches++
		if r.URL.Path != "/code.zip" {
			http.NotFound(w, r)
			return
		}
		http.ServeContent(w, r, "code.zip", time.Time{}, bytes.NewReader(code))
	}))
	defer ts.Close()
	modelDir := t.TempDir()
	model := filepath.Join(modelDir, "model.zip")
	var mb bytes.Buffer
	mw := zip.NewWriter(&mb)
	mf, _ := mw.Create("weights.bin")
	mf.Write([]byte("weights"))
	mw.Close()
	os.WriteFile(model, mb.Bytes(), 0o644)
	msum := sha256.Sum256(mb.Bytes())
	dest := filepath.Join(t.TempDir(), "ml")

	alpha := &consumer{name: "alpha"}
	s := newSuite(t, []*consumer{alpha}, deployagent.WithArtifactOptions(artifact.WithHTTPClient(ts.Client())))
	group := func(sha string) []byte {
		return []byte(fmt.Sprintf(`{"Core": {"Cores": [{"Id": "core", "ThingArn": "arn:aws:iot:eu-west-1:123456789012:thing/line7-core",
	"CertificateArn": "arn:aws:iot:eu-west-1:123456789012:cert/0d45f5fd462b8c70bffb10021ac1bcff3f58f29b1faf7568595095427d42812c"}]},
"Functions": {"Functions": [{"Id": "hello", "FunctionArn": "arn:aws:lambda:eu-west-1:123456789012:function:hello:1",
	"FunctionConfiguration": {"Environment": {"ResourceAccessPolicies": [{"ResourceId": "m", "Permission": "ro"}]}},
	"Evergreen": {"Runtime": "python3.8", "Handler": "app.handler", "CodeUri": "%s/code.zip", "CodeSha256": %q}}]},
"Resources": {"Resources": [{"Id": "m", "Name": "m", "ResourceDataContainer": {"S3MachineLearningModelResourceData": {
	"DestinationPath": %q, "S3Uri": "s3://models/m.zip", "Evergreen": {"Url": "file://%s", "Sha256": %q}}}}]}}`,
			ts.URL, sha, dest, model, hex.EncodeToString(msum[:])))
	}

	last, evs := mustDeploy(t, s.client, &deployv1.DeployRequest{GroupJson: group(codeSha)})
	if last.GetStatus() != success {
		t.Fatalf("deployment: %v\n%q", last, messages(evs))
	}
	if !strings.Contains(strings.Join(messages(evs), "\n"), "code.zip: ") {
		t.Errorf("no artifact progress in %q", messages(evs))
	}
	cur := readRecord(t, s.root, deployment.CurrentFile)
	g, err := cur.Decode()
	if err != nil {
		t.Fatal(err)
	}
	uri := g.Functions.Functions[0].Evergreen.CodeUri
	if b, err := os.ReadFile(strings.TrimPrefix(uri, "file://")); err != nil || !bytes.Equal(b, code) {
		t.Fatalf("the daemons' CodeUri %q: %v", uri, err)
	}
	if b, err := os.ReadFile(filepath.Join(dest, "weights.bin")); err != nil || string(b) != "weights" {
		t.Fatalf("model at %s: %q %v", dest, b, err)
	}

	// A wrong sha256: FAILURE at the artifacts stage, nobody asked.
	before := alpha.received()
	last, evs = mustDeploy(t, s.client, &deployv1.DeployRequest{GroupJson: group(strings.Repeat("0", 64))})
	if last.GetStatus() != failure || !strings.Contains(last.GetMessage(), "artifacts: Functions[0]") || !strings.Contains(last.GetMessage(), "sha256") {
		t.Fatalf("bad artifact: %v\n%q", last, messages(evs))
	}
	if got := alpha.received(); !reflect.DeepEqual(got, before) {
		t.Fatalf("a daemon was asked about a deployment whose artifact failed: %+v", got[len(before):])
	}

	// A group without the model takes its link away.
	last, _ = mustDeploy(t, s.client, &deployv1.DeployRequest{GroupJson: groupJSON("other")})
	if last.GetStatus() != success {
		t.Fatal(last)
	}
	if _, err := os.Lstat(dest); !os.IsNotExist(err) {
		t.Fatalf("model link after a group without the model: %v", err)
	}
}
