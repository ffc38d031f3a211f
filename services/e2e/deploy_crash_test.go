package e2e

import (
	"archive/zip"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/evergreen-edge/evergreen/deployagent/artifact"
	"github.com/evergreen-edge/evergreen/services/internal/suitetest"
	"github.com/evergreen-edge/evergreen/services/kit/deployment"
	"github.com/evergreen-edge/evergreen/services/kit/deployment/failpoint"
	"github.com/evergreen-edge/evergreen/services/kit/groupdef"
	"github.com/evergreen-edge/evergreen/services/kit/layout"
)

// The crash table: for every failpoint of a deployment, in a deployment that
// would succeed and in one a daemon refuses at APPLY (after the commit), the
// whole suite is SIGKILLed at that exact point and started again. The core
// must come back healthy on exactly one whole group, the old one or the new
// one as the table says, with the deployment recorded SUCCESS or FAILURE
// and none left IN_PROGRESS. Both groups have a model (a file:// archive)
// at the same DestinationPath: the link there must name the model of the
// group in force.

const (
	oldID = "old-1"
	newID = "new-1"
	// refuser is the daemon made to refuse APPLY in the failing direction:
	// last in name order, so every other daemon has switched before it
	// refuses.
	refuser = "shadow"
)

// crashGroup is a group for the test config's core thing with one
// subscription per subject.
func crashGroup(subjects ...string) []byte {
	var subs []string
	for i, s := range subjects {
		subs = append(subs, fmt.Sprintf(`{"Id": "s%d", "Source": "cloud", "Subject": %q, "Target": "GGShadowService"}`, i, s))
	}
	return []byte(`{"Core": {"Cores": [{"Id": "core", "ThingArn": "arn:aws:iot:us-east-1:123456789012:thing/test-core",
	"CertificateArn": "arn:aws:iot:us-east-1:123456789012:cert/0d45f5fd462b8c70bffb10021ac1bcff3f58f29b1faf7568595095427d42812c"}]},
	"Subscriptions": {"Subscriptions": [` + strings.Join(subs, ",") + `]}}` + "\n")
}

// crashModelGroup is crashGroup with a model (S3MachineLearningModelResourceData
// with a file:// archive) linked at dest.
func crashModelGroup(dest, archive, sum string, subjects ...string) []byte {
	g := crashGroup(subjects...)
	res := fmt.Sprintf(`, "Resources": {"Resources": [{"Id": "model", "Name": "model", "ResourceDataContainer": {"S3MachineLearningModelResourceData": {
	"DestinationPath": %q, "S3Uri": "s3://models/model.zip", "Evergreen": {"Url": "file://%s", "Sha256": %q}}}}]}}`, dest, archive, sum)
	return append(bytes.TrimSuffix(bytes.TrimSpace(g), []byte("}")), []byte(res+"\n")...)
}

// crashModel writes a model archive whose version.txt says version.
func crashModel(t *testing.T, dir, version string) (string, string) {
	t.Helper()
	var b bytes.Buffer
	w := zip.NewWriter(&b)
	f, _ := w.Create("version.txt")
	f.Write([]byte(version))
	w.Close()
	p := filepath.Join(dir, version+".zip")
	if err := os.WriteFile(p, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return p, sha(b.Bytes())
}

// seedModel unpacks the seeded group's model where the deployagent keeps
// model trees (DIR/data/deployagent/models/<sha256>-default) and links it
// at dest, as the deployment that put the group in force would have.
func seedModel(t *testing.T, root layout.Root, archive, sum, dest string) {
	t.Helper()
	tree := filepath.Join(root.DataDir("deployagent"), "models", sum+"-default")
	if err := os.MkdirAll(filepath.Dir(tree), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := artifact.Unpack(context.Background(), archive, tree, artifact.UnpackOptions{}); err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(filepath.Dir(dest), 0o755)
	if err := os.Symlink(tree, dest); err != nil {
		t.Fatal(err)
	}
}

// checkModel checks that the model at dest is the one of version.
func checkModel(t *testing.T, dest, version string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dest, "version.txt"))
	if err != nil || string(b) != version {
		target, _ := os.Readlink(dest)
		t.Fatalf("the model at DestinationPath (-> %s) is %q (%v); want the %s group's", target, b, err, version)
	}
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// seedGroup puts file in force as deployment id before the suite's first
// start, as a finished deployment would have.
func seedGroup(t *testing.T, root layout.Root, id string, file []byte) {
	t.Helper()
	g, err := groupdef.Parse(file)
	if err != nil {
		t.Fatal(err)
	}
	canon, err := groupdef.Marshal(g)
	if err != nil {
		t.Fatal(err)
	}
	if err := root.Create(); err != nil {
		t.Fatal(err)
	}
	rec := &deployment.Record{DeploymentID: id, GroupSHA256: sha(file), DeployedAt: time.Now().UTC(), Group: canon}
	if err := deployment.WriteRecord(deployment.Path(root, deployment.CurrentFile), rec); err != nil {
		t.Fatal(err)
	}
}

type listedDeployment struct {
	DeploymentID string `json:"deploymentId"`
	Status       string `json:"status"`
	Stage        string `json:"stage"`
	Error        string `json:"error"`
}

func deploymentsOf(t *testing.T, root layout.Root) []listedDeployment {
	t.Helper()
	r := ggctl(t, root, "--json", "deployments")
	if r.code != 0 {
		return nil
	}
	var list struct {
		Deployments []listedDeployment `json:"deployments"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &list); err != nil {
		t.Fatalf("deployments --json: %v\n%s", err, r.stdout)
	}
	return list.Deployments
}

// waitOutcome waits until deployment id has a terminal status.
func waitOutcome(t *testing.T, root layout.Root, id string) listedDeployment {
	t.Helper()
	var last listedDeployment
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		for _, d := range deploymentsOf(t, root) {
			if d.DeploymentID == id {
				last = d
			}
		}
		if last.Status == "DEPLOYMENT_STATUS_SUCCESS" || last.Status == "DEPLOYMENT_STATUS_FAILURE" {
			return last
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("deployment %s never ended: last seen %+v", id, last)
	return last
}

// checkInForce checks current.json and what every daemon says it runs.
func checkInForce(t *testing.T, root layout.Root, id, groupSHA string) {
	t.Helper()
	cur, err := deployment.ReadCurrent(root)
	if err != nil || cur == nil || cur.DeploymentID != id || cur.GroupSHA256 != groupSHA {
		t.Fatalf("current.json = %+v, %v; want deployment %s", cur, err, id)
	}
	r := ggctl(t, root, "--json", "deployments", "applied")
	var resp struct {
		DeploymentID string `json:"deploymentId"`
		Daemons      []struct {
			Daemon       string `json:"daemon"`
			DeploymentID string `json:"deploymentId"`
			GroupSHA256  string `json:"groupSha256"`
			Error        string `json:"error"`
		} `json:"daemons"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &resp); err != nil {
		t.Fatalf("deployments applied: %d %v\n%s%s", r.code, err, r.stdout, r.stderr)
	}
	if len(resp.Daemons) < 5 {
		t.Fatalf("deployments applied lists %d daemons: %s", len(resp.Daemons), r.stdout)
	}
	for _, d := range resp.Daemons {
		if d.DeploymentID != id || d.GroupSHA256 != groupSHA || d.Error != "" {
			t.Fatalf("%s runs %s (%s, %q); want %s: a mix of groups\n%s", d.Daemon, d.DeploymentID, d.GroupSHA256, d.Error, id, r.stdout)
		}
	}
	if r.code != 0 || resp.DeploymentID != id {
		t.Fatalf("deployments applied: exit %d, current %s\n%s%s", r.code, resp.DeploymentID, r.stdout, r.stderr)
	}
}

func waitFile(path string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if _, err := os.Stat(path); err == nil {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return errors.New(path + " never appeared")
}

type crashCase struct {
	point string
	// refuse: shadow refuses APPLY, so the deployment fails after commit.
	refuse bool
	// wantNew: the new group is in force afterwards (and SUCCESS).
	wantNew bool
}

func crashTable() []crashCase {
	var cases []crashCase
	preCommit := []string{failpoint.Validated, failpoint.Artifacts, failpoint.Prepared, failpoint.CommitPreviousWritten, failpoint.CommitTempWritten}
	for _, p := range failpoint.All {
		pre := slices.Contains(preCommit, p)
		rollback := strings.HasPrefix(p, "roll")
		// Succeeding direction: reaches every point but the rollback ones.
		if !rollback {
			cases = append(cases, crashCase{point: p, wantNew: !pre})
		}
		// Failing direction: never reaches applied (every daemon confirmed).
		if p != failpoint.Applied {
			cases = append(cases, crashCase{point: p, refuse: true})
		}
	}
	return cases
}

func TestDeployCrashTable(t *testing.T) {
	if testing.Short() {
		t.Skip("builds ggd with -tags failpoints and kills the suite 20 times")
	}
	bin := suitetest.BinaryWithTags(t, "failpoints")
	models := t.TempDir()
	oldModel, oldModelSum := crashModel(t, models, "old")
	newModel, newModelSum := crashModel(t, models, "new")
	start := time.Now()
	for _, tc := range crashTable() {
		dir := "succeeding"
		if tc.refuse {
			dir = "failing"
		}
		t.Run(tc.point+"/"+dir, func(t *testing.T) {
			t.Parallel()
			root := suitetest.ShortRoot(t)
			suitetest.WriteConfig(t, root, nil)
			dest := filepath.Join(root.Dir(), "ml", "model")
			oldFile := crashModelGroup(dest, oldModel, oldModelSum, "old/a")
			newFile := crashModelGroup(dest, newModel, newModelSum, "old/a", "new/b")
			seedGroup(t, root, oldID, oldFile)
			seedModel(t, root, oldModel, oldModelSum, dest)
			gf := filepath.Join(root.Dir(), "new-group.json")
			if err := os.WriteFile(gf, newFile, 0o600); err != nil {
				t.Fatal(err)
			}
			var env []string
			if tc.refuse {
				env = append(env, failpoint.RefuseEnv+"="+refuser)
			}

			s := suitetest.LaunchWith(t, root, suitetest.LaunchOptions{Binary: bin, Env: append(env, failpoint.Env+"="+tc.point)})
			if err := s.WaitHealthy(60 * time.Second); err != nil {
				t.Fatalf("suite not healthy: %v", err)
			}
			deploy := exec.Command(suitetest.Binary(t, "ggctl"), "--root", root.Dir(), "deploy", gf, "--id", newID)
			if err := deploy.Start(); err != nil {
				t.Fatal(err)
			}
			marker := filepath.Join(root.RunDir(), failpoint.MarkerName(tc.point))
			if err := waitFile(marker, 60*time.Second); err != nil {
				deploy.Process.Kill()
				deploy.Wait()
				t.Fatal(err)
			}
			s.Kill()
			deploy.Wait()
			os.Remove(marker)

			s = suitetest.LaunchWith(t, root, suitetest.LaunchOptions{Binary: bin, Env: env})
			if err := s.WaitHealthy(60 * time.Second); err != nil {
				t.Fatalf("suite not healthy after the crash: %v", err)
			}
			d := waitOutcome(t, root, newID)
			wantID, wantSHA, wantStatus := oldID, sha(oldFile), "DEPLOYMENT_STATUS_FAILURE"
			if tc.wantNew {
				wantID, wantSHA, wantStatus = newID, sha(newFile), "DEPLOYMENT_STATUS_SUCCESS"
			}
			if d.Status != wantStatus || (wantStatus == "DEPLOYMENT_STATUS_FAILURE" && d.Error == "") {
				t.Fatalf("deployment recorded %+v; want %s with a reason", d, wantStatus)
			}
			if tc.refuse && !strings.Contains(d.Error, refuser) && slices.Contains([]string{failpoint.Committed, failpoint.AppliedOne, failpoint.RollbackStarted, failpoint.RollbackPointer, failpoint.RolledBack, failpoint.Recorded}, tc.point) {
				t.Fatalf("failure reason %q does not name %s", d.Error, refuser)
			}
			checkInForce(t, root, wantID, wantSHA)
			if tc.wantNew {
				checkModel(t, dest, "new")
			} else {
				checkModel(t, dest, "old")
			}
			for _, x := range deploymentsOf(t, root) {
				if x.Status == "DEPLOYMENT_STATUS_IN_PROGRESS" {
					t.Fatalf("deployment left in progress after recovery: %+v", x)
				}
			}
			if r := ggctl(t, root, "status"); r.code != 0 {
				t.Fatalf("status after recovery: %d\n%s%s", r.code, r.stdout, r.stderr)
			}
			if _, err := os.Stat(deployment.Path(root, deployment.StagedFile)); !os.IsNotExist(err) {
				t.Fatalf("staged.json left after recovery: %v", err)
			}
			t.Logf("%s/%s: %s, %s %q", tc.point, dir, wantID, d.Status, d.Error)
			s.Stop(15 * time.Second)
		})
	}
	t.Cleanup(func() {
		t.Logf("crash table: %d cases in %s", len(crashTable()), time.Since(start).Round(time.Millisecond))
	})
}

// A torn or corrupted last write of each deployment file: the core still
// starts, on the last good group.
func TestDeployStoreSurvivesTornLastWrite(t *testing.T) {
	root := suitetest.ShortRoot(t)
	suitetest.WriteConfig(t, root, nil)
	oldFile, newFile := crashGroup("old/a"), crashGroup("old/a", "new/b")
	seedGroup(t, root, oldID, oldFile)
	s := suitetest.Start(t, root)
	gf := filepath.Join(root.Dir(), "new-group.json")
	os.WriteFile(gf, newFile, 0o600)
	if r := ggctl(t, root, "deploy", gf, "--id", newID); r.code != 0 {
		t.Fatalf("deploy: %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	// A redeployment: the same group again under a new id.
	if r := ggctl(t, root, "deploy", "--redeploy", "--id", "new-2"); r.code != 0 {
		t.Fatalf("redeploy: %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	checkInForce(t, root, "new-2", sha(newFile))
	s.Stop(15 * time.Second)

	// current.json torn in half: previous.json (new-1) is the last good
	// record; every daemon and the deployagent agree on it.
	cur := deployment.Path(root, deployment.CurrentFile)
	b, _ := os.ReadFile(cur)
	if err := os.WriteFile(cur, b[:len(b)/2], 0o600); err != nil {
		t.Fatal(err)
	}
	s = suitetest.Start(t, root)
	checkInForce(t, root, newID, sha(newFile))
	if r := ggctl(t, root, "status"); r.code != 0 {
		t.Fatalf("status: %d\n%s", r.code, r.stdout)
	}
	s.Stop(15 * time.Second)

	// history.json garbage: the copy before its last write is read.
	hist := deployment.Path(root, deployment.HistoryFile)
	if err := os.WriteFile(hist, []byte("[{\"deploymentId\": \"new-2\", \"sta"), 0o600); err != nil {
		t.Fatal(err)
	}
	// staged.json torn: discarded.
	if err := os.WriteFile(deployment.Path(root, deployment.StagedFile), []byte(`{"deploymentId": "x-1", "stage": "prep`), 0o600); err != nil {
		t.Fatal(err)
	}
	s = suitetest.Start(t, root)
	checkInForce(t, root, newID, sha(newFile))
	found := false
	for _, d := range deploymentsOf(t, root) {
		found = found || (d.DeploymentID == newID && d.Status == "DEPLOYMENT_STATUS_SUCCESS")
	}
	if !found {
		t.Fatalf("history lost after history.json was corrupted: %+v", deploymentsOf(t, root))
	}
	gf = filepath.Join(root.Dir(), "old-group.json")
	os.WriteFile(gf, oldFile, 0o600)
	// Deployments work again.
	if r := ggctl(t, root, "deploy", gf, "--id", "new-3"); r.code != 0 {
		t.Fatalf("deploy after recovery: %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	checkInForce(t, root, "new-3", sha(oldFile))
	if _, err := os.Stat(deployment.Path(root, deployment.StagedFile)); !os.IsNotExist(err) {
		t.Fatalf("torn staged.json kept: %v", err)
	}
}
