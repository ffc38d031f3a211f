package shadow_test

import (
	"strings"
	"testing"

	deployv1 "github.com/evergreen-edge/evergreen/proto/evergreen/deploy/v1"
	shadowv1 "github.com/evergreen-edge/evergreen/proto/evergreen/shadow/v1"
	"github.com/evergreen-edge/evergreen/services/kit/groupdef"
	"github.com/evergreen-edge/evergreen/services/kit/subjects"
	"github.com/evergreen-edge/evergreen/shadow"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// ask sends the shadow service an ApplyGroup of phase, as the deployagent
// does.
func (s *suite) ask(phase deployv1.ApplyPhase, id string, g *groupdef.Group) *deployv1.ApplyResult {
	s.t.Helper()
	b, err := groupdef.Marshal(g)
	if err != nil {
		s.t.Fatal(err)
	}
	if _, err := groupdef.Parse(b); err != nil {
		s.t.Fatalf("test group does not validate: %v", err)
	}
	data, _ := proto.Marshal(&deployv1.ApplyGroup{DeploymentId: id, GroupJson: b, Phase: phase, Rollback: phase == deployv1.ApplyPhase_APPLY_PHASE_ROLLBACK})
	msg, err := s.nc.Request(subjects.DeployApply(shadow.Name), data, within)
	if err != nil {
		s.t.Fatalf("ApplyGroup %s: %v", phase, err)
	}
	res := &deployv1.ApplyResult{}
	if err := proto.Unmarshal(msg.Data, res); err != nil {
		s.t.Fatal(err)
	}
	return res
}

// getError is the error of Get on thing's classic shadow ("" when found).
func (s *suite) getError(thing string) string {
	s.t.Helper()
	_, err := s.api.Get(ctx(s.t), &shadowv1.GetRequest{Thing: thing})
	if err == nil {
		return ""
	}
	return status.Convert(err).Message()
}

// Two things of one thing name (another region) would share a shadow: the
// group is refused at PREPARE, before the commit, and at APPLY; a
// rollback takes it. A PREPARE, refused or not, leaves the things of the
// group in force.
func TestPrepareRefusesThingsSharingAShadow(t *testing.T) {
	s := newSuite(t, testGroup())
	s.start()
	const unknown = "404 Thing not found"

	twins := testGroup()
	twins.Devices.Devices = append(twins.Devices.Devices, groupdef.Device{
		Id: "twin", ThingArn: "arn:aws:iot:eu-west-1:123456789012:thing/lamp", SyncShadow: true,
		CertificateArn: "arn:aws:iot:eu-west-1:123456789012:cert/" + strings.Repeat("c", 64),
	})
	res := s.ask(deployv1.ApplyPhase_APPLY_PHASE_PREPARE, "d-twins", twins)
	if res.GetOk() || !strings.Contains(res.GetReason(), "Devices[2].ThingArn") || !strings.Contains(res.GetReason(), "Devices[0]") {
		t.Fatalf("PREPARE of two things named lamp: ok=%v reason %q", res.GetOk(), res.GetReason())
	}
	if got := res.GetAppliedDeploymentId(); got != "d-1" {
		t.Fatalf("after a refused PREPARE the shadow service reports deployment %q, want d-1", got)
	}

	next := testGroup()
	next.Devices.Devices = append(next.Devices.Devices, groupdef.Device{
		Id: "newcomer", ThingArn: thingArn + "newcomer",
		CertificateArn: "arn:aws:iot:us-east-1:123456789012:cert/" + strings.Repeat("d", 64),
	})
	if res := s.ask(deployv1.ApplyPhase_APPLY_PHASE_PREPARE, "d-2", next); !res.GetOk() {
		t.Fatalf("PREPARE of a good group refused: %s", res.GetReason())
	}
	// Prepared, not applied: the group in force has no newcomer.
	if got := s.getError("newcomer"); got != unknown {
		t.Fatalf("newcomer after PREPARE: %q, want %q", got, unknown)
	}
	if got := s.getError("lamp"); strings.HasPrefix(got, unknown) {
		t.Fatalf("lamp after PREPAREs: %q", got)
	}
	if res := s.ask(deployv1.ApplyPhase_APPLY_PHASE_APPLY, "d-2", next); !res.GetOk() {
		t.Fatalf("APPLY of a good group refused: %s", res.GetReason())
	}
	if got := s.getError("newcomer"); strings.HasPrefix(got, unknown) {
		t.Fatalf("newcomer after APPLY: %q", got)
	}

	if res := s.ask(deployv1.ApplyPhase_APPLY_PHASE_APPLY, "d-twins", twins); res.GetOk() || res.GetAppliedDeploymentId() != "d-2" {
		t.Fatalf("APPLY of two things named lamp: ok=%v applied %q", res.GetOk(), res.GetAppliedDeploymentId())
	}
	if res := s.ask(deployv1.ApplyPhase_APPLY_PHASE_ROLLBACK, "d-twins", twins); !res.GetOk() {
		t.Fatalf("ROLLBACK refused: %s", res.GetReason())
	}
}
