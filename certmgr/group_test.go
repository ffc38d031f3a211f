package certmgr

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	certmgrv1 "github.com/evergreen-edge/evergreen/proto/evergreen/certmgr/v1"
	deployv1 "github.com/evergreen-edge/evergreen/proto/evergreen/deploy/v1"
	"github.com/evergreen-edge/evergreen/services/kit/config"
	"github.com/evergreen-edge/evergreen/services/kit/subjects"
	"github.com/nats-io/nats.go"
	"google.golang.org/protobuf/proto"
)

func groupJSON(core, device, certArn string) []byte {
	return []byte(fmt.Sprintf(`{
 "Core": {"Cores": [{"Id": "core", "ThingArn": "arn:aws:iot:us-east-1:123456789012:thing/%s", "CertificateArn": "arn:aws:iot:us-east-1:123456789012:cert/%s"}]},
 "Devices": {"Devices": [{"Id": "d1", "ThingArn": "arn:aws:iot:us-east-1:123456789012:thing/%s", "CertificateArn": "%s"}]}
}`, core, strings.Repeat("a", 64), device, certArn))
}

// apply sends an ApplyGroup over the real bus, as the deployagent does.
func apply(t *testing.T, busURL string, group []byte) *deployv1.ApplyResult {
	t.Helper()
	nc, err := nats.Connect(busURL)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	req, _ := proto.Marshal(&deployv1.ApplyGroup{DeploymentId: "d", GroupJson: group})
	msg, err := nc.Request(subjects.DeployApply(Name), req, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var res deployv1.ApplyResult
	if err := proto.Unmarshal(msg.Data, &res); err != nil {
		t.Fatal(err)
	}
	return &res
}

// certmgr refuses a group that names another certificate for a device
// registered here.
func TestGroupIdentitiesChecked(t *testing.T) {
	s := newSuite(t)
	s.cfg = config.Default()
	s.cfg.CoreThing.ThingArn = "arn:aws:iot:us-east-1:123456789012:thing/my-core"
	s.start()
	c := s.dial()
	dev, err := c.CreateDevice(context.Background(), &certmgrv1.CreateDeviceRequest{Name: "sensor-1"})
	if err != nil {
		t.Fatal(err)
	}
	fp := dev.Device.Certificate.Sha256Fingerprint
	good := "arn:aws:iot:us-east-1:123456789012:cert/" + fp
	other := "arn:aws:iot:us-east-1:123456789012:cert/" + strings.Repeat("b", 64)

	if r := apply(t, s.busURL, groupJSON("my-core", "sensor-1", good)); !r.Ok {
		t.Fatalf("matching group refused: %s", r.Reason)
	}
	// A device not registered here: nothing to compare, accepted.
	if r := apply(t, s.busURL, groupJSON("my-core", "elsewhere", other)); !r.Ok {
		t.Fatalf("unregistered device refused: %s", r.Reason)
	}
	r := apply(t, s.busURL, groupJSON("my-core", "sensor-1", other))
	if r.Ok || !strings.Contains(r.Reason, "Devices[0].CertificateArn") || !strings.Contains(r.Reason, fp) {
		t.Fatalf("certificate mismatch: ok=%v reason=%q", r.Ok, r.Reason)
	}
	// A rollback is always accepted: it restores what was in force.
	nc, _ := nats.Connect(s.busURL)
	defer nc.Close()
	req, _ := proto.Marshal(&deployv1.ApplyGroup{DeploymentId: "r", GroupJson: groupJSON("my-core", "sensor-1", other), Rollback: true})
	msg, err := nc.Request(subjects.DeployApply(Name), req, 5*time.Second)
	var rb deployv1.ApplyResult
	if err != nil || proto.Unmarshal(msg.Data, &rb) != nil || !rb.Ok {
		t.Fatalf("rollback refused: %v %v", err, rb.Reason)
	}
}

// send sends an ApplyGroup of the given phase over the bus, as the
// deployagent does.
func send(t *testing.T, busURL string, phase deployv1.ApplyPhase, id string, group []byte) *deployv1.ApplyResult {
	t.Helper()
	nc, err := nats.Connect(busURL)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	req, _ := proto.Marshal(&deployv1.ApplyGroup{DeploymentId: id, GroupJson: group, Phase: phase})
	msg, err := nc.Request(subjects.DeployApply(Name), req, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var res deployv1.ApplyResult
	if err := proto.Unmarshal(msg.Data, &res); err != nil {
		t.Fatal(err)
	}
	return &res
}

// A group naming another certificate for a registered device is refused
// at PREPARE, before the deployagent commits it, and certmgr still reports
// the deployment it applied before.
func TestGroupIdentitiesCheckedAtPrepare(t *testing.T) {
	s := newSuite(t)
	s.cfg = config.Default()
	s.cfg.CoreThing.ThingArn = "arn:aws:iot:us-east-1:123456789012:thing/my-core"
	s.start()
	dev, err := s.dial().CreateDevice(context.Background(), &certmgrv1.CreateDeviceRequest{Name: "sensor-1"})
	if err != nil {
		t.Fatal(err)
	}
	fp := dev.Device.Certificate.Sha256Fingerprint
	good := groupJSON("my-core", "sensor-1", "arn:aws:iot:us-east-1:123456789012:cert/"+fp)
	bad := groupJSON("my-core", "sensor-1", "arn:aws:iot:us-east-1:123456789012:cert/"+strings.Repeat("b", 64))

	if r := send(t, s.busURL, deployv1.ApplyPhase_APPLY_PHASE_APPLY, "old", good); !r.Ok {
		t.Fatalf("good group refused: %s", r.Reason)
	}
	r := send(t, s.busURL, deployv1.ApplyPhase_APPLY_PHASE_PREPARE, "new", bad)
	if r.Ok || !strings.Contains(r.Reason, "Devices[0].CertificateArn") || !strings.Contains(r.Reason, fp) {
		t.Fatalf("PREPARE of a certificate mismatch: ok=%v reason=%q", r.Ok, r.Reason)
	}
	if r.AppliedDeploymentId != "old" {
		t.Fatalf("after a refused PREPARE certmgr reports deployment %q, want old", r.AppliedDeploymentId)
	}
	if r := send(t, s.busURL, deployv1.ApplyPhase_APPLY_PHASE_PREPARE, "new2", good); !r.Ok || r.AppliedDeploymentId != "old" {
		t.Fatalf("PREPARE of a good group: ok=%v reason=%q applied=%q (want ok, still old)", r.Ok, r.Reason, r.AppliedDeploymentId)
	}
	if q := send(t, s.busURL, deployv1.ApplyPhase_APPLY_PHASE_QUERY, "", nil); q.AppliedDeploymentId != "old" {
		t.Fatalf("QUERY after PREPAREs: %q, want old", q.AppliedDeploymentId)
	}
}
