package deployment

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"
)

// staged.json and the record files are written by hand (recordParts,
// stateParts); what they write must read back as encoding/json's own
// encoding would, field for field, whatever the group's whitespace.
func TestHandEncodingReadsBackAsEncodingJSON(t *testing.T) {
	if n := reflect.TypeOf(State{}).NumField(); n != 10 {
		t.Fatalf("State has %d fields: teach stateParts the new ones, then this test", n)
	}
	if n := reflect.TypeOf(Record{}).NumField(); n != 5 {
		t.Fatalf("Record has %d fields: teach recordParts the new ones, then this test", n)
	}
	at := time.Date(2026, 11, 27, 3, 4, 5, 600, time.UTC)
	indented := json.RawMessage("{\n  \"Core\": {\"Cores\": []},\n  \"Note\": \"<a & b>\"\n}\n")
	st := &State{
		DeploymentID: "d-2", Type: "DEPLOYMENT_TYPE_REDEPLOY", Stage: StageRollingBack, CreatedAt: at, RedeployOf: "d-1",
		Next:         &Record{DeploymentID: "d-2", GroupSHA256: "ab", DeployedAt: at, Group: json.RawMessage(testGroupCompact)},
		Previous:     &Record{DeploymentID: "d-1", DeployedAt: at, Group: indented},
		PreviousFile: nil,
		Reason:       `broker: "x" refused`,
		Results:      []DaemonResult{{Daemon: "broker", Reason: "no"}, {Daemon: "shadow", Ok: true}},
	}
	parts, err := stateParts(st)
	if err != nil {
		t.Fatal(err)
	}
	got := bytes.Join(parts, nil)
	// One line and its newline, bar the newlines inside the indented group.
	if !bytes.HasSuffix(got, []byte("}\n")) || bytes.Count(got, []byte("\n")) != bytes.Count(bytes.TrimSpace(indented), []byte("\n"))+1 {
		t.Fatalf("stateParts: want one line (bar the group's own newlines) and a newline:\n%s", got)
	}
	var back, want State
	if err := json.Unmarshal(got, &back); err != nil {
		t.Fatalf("stateParts wrote invalid JSON: %v\n%s", err, got)
	}
	std, _ := json.Marshal(st)
	json.Unmarshal(std, &want)
	// RawMessage keeps the bytes it read: compare groups as values.
	for _, p := range [][2]*Record{{back.Next, want.Next}, {back.Previous, want.Previous}} {
		var a, b any
		json.Unmarshal(p[0].Group, &a)
		json.Unmarshal(p[1].Group, &b)
		if !reflect.DeepEqual(a, b) {
			t.Fatalf("group %s reads back as %s", p[1].Group, p[0].Group)
		}
		p[0].Group, p[1].Group = nil, nil
	}
	if !reflect.DeepEqual(back, want) {
		t.Fatalf("stateParts reads back as\n%+v\nwant\n%+v", back, want)
	}

	// A reset record and a record whose group is not JSON.
	if p, err := recordParts(nil, &Record{DeploymentID: "r", Reset: true}); err != nil || !strings.HasSuffix(string(bytes.Join(p, nil)), `"reset":true,"group":null}`) {
		t.Fatalf("reset record: %s %v", p, err)
	}
	if _, err := recordParts(nil, &Record{DeploymentID: "bad", Group: json.RawMessage(`{"Core":`)}); err == nil || !strings.Contains(err.Error(), "not valid JSON") {
		t.Fatalf("a group that is not JSON: %v", err)
	}
	if _, err := stateParts(&State{DeploymentID: "bad", Next: &Record{DeploymentID: "bad", Group: json.RawMessage(`[}`)}}); err == nil {
		t.Fatal("stateParts took a group that is not JSON")
	}
}

const testGroupCompact = `{"Core":{"Cores":[{"Id":"core","ThingArn":"arn:aws:iot:eu-west-1:123456789012:thing/c","CertificateArn":"arn:aws:iot:eu-west-1:123456789012:cert/ab"}]}}`
