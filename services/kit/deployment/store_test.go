package deployment

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	deployv1 "github.com/evergreen-edge/evergreen/proto/evergreen/deploy/v1"
	"github.com/evergreen-edge/evergreen/services/kit/daemon"
	"github.com/evergreen-edge/evergreen/services/kit/groupdef"
	"github.com/evergreen-edge/evergreen/services/kit/layout"
)

func newRoot(t *testing.T) layout.Root {
	t.Helper()
	root := layout.Root(t.TempDir())
	if err := root.Create(); err != nil {
		t.Fatal(err)
	}
	return root
}

// testGroup is a valid group with one user function per id.
func testGroup(t *testing.T, functionIDs ...string) []byte {
	t.Helper()
	var fns []string
	for _, id := range functionIDs {
		fns = append(fns, fmt.Sprintf(`{"Id": %q, "FunctionArn": "arn:aws:lambda:eu-west-1:123456789012:function:%s:1",
			"Evergreen": {"Runtime": "python3.8", "Handler": "app.handler", "CodeUri": "file:///opt/functions/%s.zip"}}`, id, id, id))
	}
	doc := `{"Core": {"Cores": [{"Id": "core", "ThingArn": "arn:aws:iot:eu-west-1:123456789012:thing/line7-core",
		"CertificateArn": "arn:aws:iot:eu-west-1:123456789012:cert/0d45f5fd462b8c70bffb10021ac1bcff3f58f29b1faf7568595095427d42812c"}]}`
	if len(fns) > 0 {
		doc += `, "Functions": {"Functions": [` + strings.Join(fns, ",") + `]}`
	}
	doc += "}"
	g, err := groupdef.Parse([]byte(doc))
	if err != nil {
		t.Fatalf("test group does not validate: %v", err)
	}
	canon, err := groupdef.Marshal(g)
	if err != nil {
		t.Fatal(err)
	}
	return canon
}

func functionIDs(g *groupdef.Group) []string {
	if g == nil || g.Functions == nil {
		return nil
	}
	var ids []string
	for _, f := range g.Functions.Functions {
		ids = append(ids, f.Id)
	}
	return ids
}

func TestLoadCurrentNothingDeployed(t *testing.T) {
	g, id, err := LoadCurrent(newRoot(t))
	if g != nil || id != "" || err != nil {
		t.Fatalf("LoadCurrent on a fresh root = %v, %q, %v; want nil, \"\", nil", g, id, err)
	}
}

func TestCommitKeepsPreviousAndLoadCurrentReadsIt(t *testing.T) {
	root := newRoot(t)
	first := &Record{DeploymentID: "d1", GroupSHA256: "aa", DeployedAt: time.Now().UTC(), Group: testGroup(t, "one")}
	second := &Record{DeploymentID: "d2", GroupSHA256: "bb", DeployedAt: time.Now().UTC(), Group: testGroup(t, "two")}
	if err := Commit(root, first); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(Path(root, PreviousFile)); !os.IsNotExist(err) {
		t.Fatalf("previous.json after the first deployment: %v; want none", err)
	}
	if err := Commit(root, second); err != nil {
		t.Fatal(err)
	}
	g, id, err := LoadCurrent(root)
	if err != nil || id != "d2" || strings.Join(functionIDs(g), ",") != "two" {
		t.Fatalf("LoadCurrent = functions %v, %q, %v; want [two], d2", functionIDs(g), id, err)
	}
	prev, err := ReadRecord(Path(root, PreviousFile))
	if err != nil || prev == nil || prev.DeploymentID != "d1" {
		t.Fatalf("previous.json = %+v, %v; want d1", prev, err)
	}
	pg, err := prev.Decode()
	if err != nil || strings.Join(functionIDs(pg), ",") != "one" {
		t.Fatalf("previous group = %v, %v", functionIDs(pg), err)
	}

	// The file is the documented shape, readable by any tool.
	var raw map[string]any
	b, _ := os.ReadFile(Path(root, CurrentFile))
	if err := json.Unmarshal(b, &raw); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"deploymentId", "groupSha256", "deployedAt", "reset", "group"} {
		if _, ok := raw[k]; !ok {
			t.Errorf("current.json lacks %q: %s", k, b)
		}
	}
	if st, _ := os.Stat(Path(root, CurrentFile)); st.Mode().Perm() != 0o600 {
		t.Errorf("current.json mode %v, want 0600", st.Mode().Perm())
	}
}

func TestLoadCurrentAfterReset(t *testing.T) {
	root := newRoot(t)
	if err := Commit(root, &Record{DeploymentID: "d1", DeployedAt: time.Now(), Group: testGroup(t, "one")}); err != nil {
		t.Fatal(err)
	}
	if err := Commit(root, &Record{DeploymentID: "r1", DeployedAt: time.Now(), Reset: true}); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(Path(root, CurrentFile))
	if !strings.Contains(string(b), `"group":null`) || !strings.Contains(string(b), `"reset":true`) {
		t.Fatalf("current.json after reset:\n%s", b)
	}
	g, id, err := LoadCurrent(root)
	if g != nil || id != "r1" || err != nil {
		t.Fatalf("LoadCurrent after reset = %v, %q, %v; want nil, r1, nil", g, id, err)
	}
}

func TestLoadCurrentCorruptNamesTheFile(t *testing.T) {
	root := newRoot(t)
	if err := os.WriteFile(Path(root, CurrentFile), []byte(`{"deploymentId": "d1", "group": {`), 0o600); err != nil {
		t.Fatal(err)
	}
	_, _, err := LoadCurrent(root)
	if err == nil || !strings.Contains(err.Error(), CurrentFile) {
		t.Fatalf("LoadCurrent on a corrupt file: %v; want an error naming %s", err, CurrentFile)
	}
}

func TestHistoryBoundedNewestFirst(t *testing.T) {
	root := newRoot(t)
	var ds []*deployv1.Deployment
	for i := 150; i > 0; i-- {
		ds = append(ds, &deployv1.Deployment{DeploymentId: fmt.Sprintf("d%03d", i), Status: deployv1.DeploymentStatus_DEPLOYMENT_STATUS_SUCCESS, Current: i == 150})
	}
	if err := WriteHistory(root, ds); err != nil {
		t.Fatal(err)
	}
	got, err := ReadHistory(root)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != HistoryLimit || got[0].DeploymentId != "d150" || got[HistoryLimit-1].DeploymentId != "d051" {
		t.Fatalf("history: %d records, first %s last %s; want 100, d150..d051", len(got), got[0].DeploymentId, got[len(got)-1].DeploymentId)
	}
	if got[0].Current {
		t.Errorf("the current flag was stored; it must follow current.json")
	}
	if got[0].Status != deployv1.DeploymentStatus_DEPLOYMENT_STATUS_SUCCESS {
		t.Errorf("status lost: %v", got[0].Status)
	}
}

func TestRemoveStaleTempsOnlyOurs(t *testing.T) {
	root := newRoot(t)
	dir := root.DeploymentsDir()
	for _, n := range []string{".current.json.tmp-123", ".history.json.tmp-9", ".staged.json.tmp-1", "current.json", "notes.txt", ".other.tmp-1"} {
		if err := os.WriteFile(filepath.Join(dir, n), []byte("{"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	removed, err := RemoveStaleTemps(root)
	if err != nil || len(removed) != 3 {
		t.Fatalf("removed %v, %v; want the 3 temp files", removed, err)
	}
	for _, n := range []string{"current.json", "notes.txt", ".other.tmp-1"} {
		if _, err := os.Stat(filepath.Join(dir, n)); err != nil {
			t.Errorf("%s was removed: %v", n, err)
		}
	}
}

func TestServeNeedsTheBus(t *testing.T) {
	env := &daemon.Env{Name: "runtime"}
	if _, err := Serve(env, nil); err == nil {
		t.Fatal("Serve without a bus connection succeeded")
	}
}

// A torn current.json falls back to previous.json, the last good record,
// for every reader; staged.json of either format reads back.
func TestTornCurrentFallsBackToPrevious(t *testing.T) {
	root := newRoot(t)
	g := []byte(`{"Core":{"Cores":[{"Id":"c","ThingArn":"arn:aws:iot:eu-west-1:123456789012:thing/c","CertificateArn":"arn:aws:iot:eu-west-1:123456789012:cert/0d45f5fd462b8c70bffb10021ac1bcff3f58f29b1faf7568595095427d42812c"}]}}`)
	if err := Commit(root, &Record{DeploymentID: "d1", DeployedAt: time.Now(), Group: g}); err != nil {
		t.Fatal(err)
	}
	if err := Commit(root, &Record{DeploymentID: "d2", DeployedAt: time.Now(), Reset: true}); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(Path(root, CurrentFile))
	os.WriteFile(Path(root, CurrentFile), b[:len(b)/2], 0o600)
	r, fallback, err := ReadInForce(root)
	if err != nil || r.DeploymentID != "d1" || !strings.Contains(fallback, CurrentFile) {
		t.Fatalf("ReadInForce = %+v, %q, %v; want d1 from previous.json", r, fallback, err)
	}
	if gr, id, err := LoadCurrent(root); err != nil || id != "d1" || gr == nil {
		t.Fatalf("LoadCurrent = %v, %q, %v", gr, id, err)
	}
	// Restore puts both files back; a nil record removes the file.
	if err := Restore(root, r, nil); err != nil {
		t.Fatal(err)
	}
	if cur, err := ReadCurrent(root); err != nil || cur.DeploymentID != "d1" {
		t.Fatalf("current.json after Restore = %+v, %v", cur, err)
	}
	if _, err := os.Stat(Path(root, PreviousFile)); !os.IsNotExist(err) {
		t.Fatalf("previous.json after Restore(nil): %v", err)
	}

	// Legacy staged.json (a bare Record) and the staged format.
	WriteRecord(Path(root, StagedFile), &Record{DeploymentID: "s1", DeployedAt: time.Now(), Group: g})
	if st, err := ReadState(root); err != nil || st.DeploymentID != "s1" || st.Stage != "" || !st.Next.HasGroup() {
		t.Fatalf("legacy staged.json = %+v, %v", st, err)
	}
	WriteState(root, &State{DeploymentID: "s2", Stage: StagePrepared, Next: &Record{DeploymentID: "s2", Reset: true}})
	if st, err := ReadState(root); err != nil || st.DeploymentID != "s2" || st.Stage != StagePrepared {
		t.Fatalf("staged.json = %+v, %v", st, err)
	}
	os.WriteFile(Path(root, StagedFile), []byte(`{"deploymentId": "s3", "stage": "pre`), 0o600)
	if _, err := ReadState(root); err == nil {
		t.Fatal("torn staged.json read without an error")
	}
}

// history.json unreadable or missing: the copy before its last write.
func TestHistoryFallsBackToBackup(t *testing.T) {
	root := newRoot(t)
	for _, id := range []string{"a", "b"} {
		ds, _ := ReadHistory(root)
		ds = append([]*deployv1.Deployment{{DeploymentId: id}}, ds...)
		if err := WriteHistory(root, ds); err != nil {
			t.Fatal(err)
		}
	}
	os.WriteFile(Path(root, HistoryFile), []byte(`[{"deploymentId": "b", "st`), 0o600)
	ds, err := ReadHistory(root)
	if err != nil || len(ds) != 1 || ds[0].DeploymentId != "a" {
		t.Fatalf("ReadHistory with a torn history.json = %v, %v; want [a] from the backup", ds, err)
	}
	os.Remove(Path(root, HistoryFile))
	if ds, err := ReadHistory(root); err != nil || len(ds) != 1 {
		t.Fatalf("ReadHistory with history.json missing = %v, %v", ds, err)
	}
}
