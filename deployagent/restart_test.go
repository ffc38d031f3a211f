package deployagent_test

import (
	"archive/zip"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/evergreen-edge/evergreen/deployagent"
	"github.com/evergreen-edge/evergreen/deployagent/artifact"
	brokerv1 "github.com/evergreen-edge/evergreen/proto/evergreen/broker/v1"
	deployv1 "github.com/evergreen-edge/evergreen/proto/evergreen/deploy/v1"
	"github.com/evergreen-edge/evergreen/services/kit/bustest"
	"github.com/evergreen-edge/evergreen/services/kit/clouddeploy"
	"github.com/evergreen-edge/evergreen/services/kit/deployment"
	"github.com/evergreen-edge/evergreen/services/kit/layout"
	"github.com/evergreen-edge/evergreen/services/kit/subjects"
	"google.golang.org/protobuf/proto"
)

// modelZip writes a model archive holding version.txt = version and
// returns its path and sha256.
func modelZip(t *testing.T, version string) (string, string) {
	t.Helper()
	var b bytes.Buffer
	w := zip.NewWriter(&b)
	f, _ := w.Create("version.txt")
	f.Write([]byte(version))
	w.Close()
	p := filepath.Join(t.TempDir(), version+".zip")
	if err := os.WriteFile(p, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b.Bytes())
	return p, hex.EncodeToString(sum[:])
}

// modelGroup is a group whose one model (file:// archive) is linked at
// dest.
func modelGroup(fn, dest, archive, sum string) []byte {
	return []byte(fmt.Sprintf(`{"Core": {"Cores": [{"Id": "core", "ThingArn": "arn:aws:iot:eu-west-1:123456789012:thing/line7-core",
	"CertificateArn": "arn:aws:iot:eu-west-1:123456789012:cert/0d45f5fd462b8c70bffb10021ac1bcff3f58f29b1faf7568595095427d42812c"}]},
"Functions": {"Functions": [{"Id": %q, "FunctionArn": "arn:aws:lambda:eu-west-1:123456789012:function:%s:1",
	"Evergreen": {"Runtime": "python3.8", "Handler": "app.handler", "CodeUri": "file:///opt/functions/%s.zip"}}]},
"Resources": {"Resources": [{"Id": "m", "Name": "m", "ResourceDataContainer": {"S3MachineLearningModelResourceData": {
	"DestinationPath": %q, "S3Uri": "s3://models/m.zip", "Evergreen": {"Url": "file://%s", "Sha256": %q}}}}]}}`, fn, fn, fn, dest, archive, sum))
}

func linkVersion(t *testing.T, dest string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dest, "version.txt"))
	if err != nil {
		t.Fatalf("model at %s: %v", dest, err)
	}
	return string(b)
}

// Killed at the `committed` failpoint (current.json names the new
// deployment, staged.json says committed, no model link switched yet): the
// start-up recovery switches the model links before it asks the daemons
// to confirm, so DestinationPath ends on the new group's model.
func TestRecoveredCommitSwitchesModelLinks(t *testing.T) {
	oldZip, oldSum := modelZip(t, "old")
	newZip, newSum := modelZip(t, "new")
	dest := filepath.Join(t.TempDir(), "models", "m")
	alpha := &consumer{name: "alpha"}
	s := newSuite(t, []*consumer{alpha})
	for _, d := range []struct{ id, fn, zip, sum string }{{"m-old", "one", oldZip, oldSum}, {"m-new", "two", newZip, newSum}} {
		last, evs := mustDeploy(t, s.client, &deployv1.DeployRequest{DeploymentId: d.id, GroupJson: modelGroup(d.fn, dest, d.zip, d.sum)})
		if last.GetStatus() != success {
			t.Fatalf("%s: %v\n%q", d.id, last, messages(evs))
		}
	}
	if v := linkVersion(t, dest); v != "new" {
		t.Fatalf("model after m-new: %q", v)
	}
	newTarget, _ := os.Readlink(dest)
	s.stopAll()

	// The disk as the kill at `committed` leaves it.
	r := layout.Root(s.root)
	cur := readRecord(t, s.root, deployment.CurrentFile)
	prev := readRecord(t, s.root, deployment.PreviousFile)
	if cur.DeploymentID != "m-new" || prev.DeploymentID != "m-old" {
		t.Fatalf("current %s, previous %s", cur.DeploymentID, prev.DeploymentID)
	}
	hist, err := deployment.ReadHistory(r)
	if err != nil || len(hist) == 0 || hist[0].GetDeploymentId() != "m-new" {
		t.Fatalf("history %v %v", hist, err)
	}
	if err := deployment.WriteHistory(r, hist[1:]); err != nil {
		t.Fatal(err)
	}
	st := &deployment.State{DeploymentID: "m-new", Type: deployv1.DeploymentType_DEPLOYMENT_TYPE_NEW.String(), Stage: deployment.StageCommitted,
		CreatedAt: cur.DeployedAt, Next: cur, Previous: prev}
	if err := deployment.WriteState(r, st); err != nil {
		t.Fatal(err)
	}
	oldTarget := strings.Replace(newTarget, newSum, oldSum, 1)
	if _, err := os.Stat(oldTarget); err != nil {
		t.Fatalf("the old model's tree: %v", err)
	}
	os.Remove(dest)
	if err := os.Symlink(oldTarget, dest); err != nil {
		t.Fatal(err)
	}

	s.start()
	bustest.CheckFor(t, 20*time.Second, 20*time.Millisecond, func() error {
		d, err := s.client.GetDeployment(context.Background(), &deployv1.GetDeploymentRequest{DeploymentId: "m-new"})
		if err != nil || d.GetStatus() != success {
			return fmt.Errorf("m-new: %v %v", d, err)
		}
		return nil
	})
	if v := linkVersion(t, dest); v != "new" {
		t.Fatalf("DestinationPath holds the %q model after the recovery of the committed m-new; want new", v)
	}
}

// The last status of a cloud deployment is published again each time the
// broker reports a cloud connection, also after a restart of the
// deployagent (a status published before the broker listened, or lost
// with its Memory spool, still reaches the cloud).
func TestCloudStatusRepublishedOnCloudConnect(t *testing.T) {
	alpha := &consumer{name: "alpha"}
	s := newSuite(t, []*consumer{alpha})
	cloud := newCloudSide(t, s.bus)
	connected := func() {
		b, _ := proto.Marshal(&brokerv1.CloudStatus{State: brokerv1.CloudState_CLOUD_STATE_CONNECTED})
		if err := cloud.nc.Publish(subjects.BrokerCloudReady, b); err != nil {
			t.Fatal(err)
		}
		cloud.nc.Flush()
	}
	cloud.request(`{"deploymentId":"c-1","group":` + string(groupJSON("hello")) + `}`)
	if st := cloud.final("c-1"); st[len(st)-1].Status != clouddeploy.Success {
		t.Fatalf("c-1: %+v", st)
	}
	connected()
	if st := cloud.finals("c-1", 2); st[len(st)-1].Status != clouddeploy.Success {
		t.Fatalf("c-1 after a cloud connection: %+v", st)
	}
	stopDaemon(t, s.agent)
	s.startAgent()
	connected()
	if st := cloud.finals("c-1", 3); st[len(st)-1].Status != clouddeploy.Success {
		t.Fatalf("c-1 after a restart and a cloud connection: %+v", st)
	}
	// A later deployment supersedes it.
	cloud.request(`{"deploymentId":"c-2","group":` + string(groupJSON("again")) + `}`)
	cloud.final("c-2")
	connected()
	cloud.finals("c-2", 2)
	cloud.mu.Lock()
	defer cloud.mu.Unlock()
	if last := cloud.st[len(cloud.st)-1]; last.DeploymentID != "c-2" {
		t.Fatalf("the last status is %+v; want c-2's", last)
	}
}

// stallingServer serves body over https: the first request only up to
// half, then nothing until the client goes away; later ones whole (or
// from their Range). It records every Range header.
type stallingServer struct {
	*httptest.Server
	mu     sync.Mutex
	ranges []string
}

func newStallingServer(t *testing.T, body []byte) *stallingServer {
	s := &stallingServer{}
	release := make(chan struct{})
	s.Server = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.ranges = append(s.ranges, r.Header.Get("Range"))
		first := len(s.ranges) == 1
		s.mu.Unlock()
		if !first {
			http.ServeContent(w, r, "code.zip", time.Time{}, bytes.NewReader(body))
			return
		}
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		w.Write(body[:len(body)/2])
		w.(http.Flusher).Flush()
		select {
		case <-r.Context().Done():
		case <-release:
		}
		panic(http.ErrAbortHandler)
	}))
	t.Cleanup(func() {
		close(release)
		s.Close()
	})
	return s
}

func (s *stallingServer) seen() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.ranges...)
}

// A cloud deployment whose artifact download the deployagent's stop cut
// short (before the commit) is not a Failure: the next start runs its
// request again, the download resumes with a Range request, and the
// deployment ends Success under the same id.
func TestCloudDeploymentCutBeforeCommitRunsAgain(t *testing.T) {
	code := bytes.Repeat([]byte("evergreen artifact "), 64<<10)
	sum := sha256.Sum256(code)
	codeSha := hex.EncodeToString(sum[:])
	ts := newStallingServer(t, code)
	alpha := &consumer{name: "alpha"}
	s := newSuite(t, []*consumer{alpha}, deployagent.WithArtifactOptions(artifact.WithHTTPClient(ts.Client())))
	cloud := newCloudSide(t, s.bus)
	group := fmt.Sprintf(`{"Core": {"Cores": [{"Id": "core", "ThingArn": "arn:aws:iot:eu-west-1:123456789012:thing/line7-core",
	"CertificateArn": "arn:aws:iot:eu-west-1:123456789012:cert/0d45f5fd462b8c70bffb10021ac1bcff3f58f29b1faf7568595095427d42812c"}]},
"Functions": {"Functions": [{"Id": "fetched", "FunctionArn": "arn:aws:lambda:eu-west-1:123456789012:function:fetched:1",
	"Evergreen": {"Runtime": "python3.8", "Handler": "app.handler", "CodeUri": "%s/code.zip", "CodeSha256": %q}}]}}`, ts.URL, codeSha)
	cloud.request(`{"deploymentId":"c-art","group":` + group + `}`)

	part := filepath.Join(layout.Root(s.root).DataDir(deployagent.Name), "artifacts", "partial", codeSha+".part")
	bustest.CheckFor(t, 20*time.Second, 20*time.Millisecond, func() error {
		if fi, err := os.Stat(part); err != nil || fi.Size() < int64(len(code)/2) {
			return fmt.Errorf("download not at half yet: %v", err)
		}
		return nil
	})
	// A stop that does not wait for the stalled download.
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	s.agent.Shutdown(ctx)
	cancel()
	cloud.mu.Lock()
	before := len(cloud.st)
	cloud.mu.Unlock()

	s.startAgent()
	st := cloud.final("c-art")
	var after []string
	for _, x := range st {
		after = append(after, x.Status+"/"+x.Stage)
	}
	if last := st[len(st)-1]; last.Status != clouddeploy.Success {
		t.Fatalf("c-art after a stop mid-download: %v %+v", after, last)
	}
	cloud.mu.Lock()
	restarted := cloud.st[before:]
	cloud.mu.Unlock()
	var seen []string
	for _, x := range restarted {
		seen = append(seen, x.Status+"/"+x.Stage)
	}
	if j := strings.Join(seen, " "); !strings.HasPrefix(j, "InProgress/resumed") || !strings.Contains(j, "Building/artifacts") || !strings.HasSuffix(j, "Success/done") {
		t.Fatalf("statuses after the restart: %v", seen)
	}
	if rs := ts.seen(); len(rs) != 2 || rs[1] != fmt.Sprintf("bytes=%d-", len(code)/2) {
		t.Fatalf("Range headers %q: the second request must resume at %d", rs, len(code)/2)
	}
	d, err := s.client.GetDeployment(context.Background(), &deployv1.GetDeploymentRequest{DeploymentId: "c-art"})
	if err != nil || d.GetStatus() != success || !d.GetCurrent() {
		t.Fatalf("c-art recorded as %v, %v", d, err)
	}
	if got := recordFunctions(t, readRecord(t, s.root, deployment.CurrentFile)); len(got) != 1 || got[0] != "fetched" {
		t.Fatalf("group in force: %v", got)
	}
}

// A cloud request that a restart cuts short before its commit every time
// runs three times in all; the start after the third ends it Failure with
// the reason, runs it no more, and the group in force stays.
func TestCloudDeploymentCutShortTooOftenFails(t *testing.T) {
	var mu sync.Mutex
	hits := 0
	ts := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		hits++
		mu.Unlock()
		<-r.Context().Done() // never answers: every run is cut short mid-download
	}))
	t.Cleanup(ts.Close)
	count := func() int { mu.Lock(); defer mu.Unlock(); return hits }
	alpha := &consumer{name: "alpha"}
	s := newSuite(t, []*consumer{alpha}, deployagent.WithArtifactOptions(artifact.WithHTTPClient(ts.Client())))
	cloud := newCloudSide(t, s.bus)
	group := fmt.Sprintf(`{"Core": {"Cores": [{"Id": "core", "ThingArn": "arn:aws:iot:eu-west-1:123456789012:thing/line7-core",
	"CertificateArn": "arn:aws:iot:eu-west-1:123456789012:cert/0d45f5fd462b8c70bffb10021ac1bcff3f58f29b1faf7568595095427d42812c"}]},
"Functions": {"Functions": [{"Id": "fetched", "FunctionArn": "arn:aws:lambda:eu-west-1:123456789012:function:fetched:1",
	"Evergreen": {"Runtime": "python3.8", "Handler": "app.handler", "CodeUri": "%s/code.zip", "CodeSha256": %q}}]}}`, ts.URL, strings.Repeat("ab", 32))
	cloud.request(`{"deploymentId":"c-loop","group":` + group + `}`)
	for run := 1; run <= 3; run++ {
		bustest.CheckFor(t, 20*time.Second, 20*time.Millisecond, func() error {
			if n := count(); n != run {
				return fmt.Errorf("run %d: %d downloads started", run, n)
			}
			return nil
		})
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		s.agent.Shutdown(ctx)
		cancel()
		s.startAgent()
	}
	st := cloud.final("c-loop")
	last := st[len(st)-1]
	if last.Status != clouddeploy.Failure || !strings.Contains(strings.Join(last.Reasons, " "), "cut short by a restart of the core 3 times before its commit") {
		t.Fatalf("c-loop after three cut-short runs: %+v", last)
	}
	time.Sleep(300 * time.Millisecond)
	if n := count(); n != 3 {
		t.Fatalf("%d downloads: the request ran again after its third run", n)
	}
	if _, err := os.Stat(filepath.Join(layout.Root(s.root).DataDir(deployagent.Name), "cloud-runs")); !os.IsNotExist(err) {
		t.Errorf("cloud-runs left behind: %v", err)
	}
	if d, err := s.client.GetDeployment(context.Background(), &deployv1.GetDeploymentRequest{DeploymentId: "c-loop"}); err == nil && d.GetStatus() != failure {
		t.Errorf("c-loop recorded as %v", d)
	}
	if r := readRecord(t, s.root, deployment.CurrentFile); r != nil {
		t.Errorf("a group is in force after a deployment that never committed: %v", recordFunctions(t, r))
	}
}
