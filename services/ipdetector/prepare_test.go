package ipdetector_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	deployv1 "github.com/evergreen-edge/evergreen/proto/evergreen/deploy/v1"
	"github.com/evergreen-edge/evergreen/services/ipdetector"
	"github.com/evergreen-edge/evergreen/services/kit/subjects"
	"github.com/nats-io/nats.go"
	"google.golang.org/protobuf/proto"
)

// ask sends the ipdetector an ApplyGroup of phase, as the deployagent does.
func (s *suite) ask(phase deployv1.ApplyPhase, id string, group []byte) *deployv1.ApplyResult {
	s.t.Helper()
	nc, err := nats.Connect(s.busURL)
	if err != nil {
		s.t.Fatal(err)
	}
	defer nc.Close()
	req, _ := proto.Marshal(&deployv1.ApplyGroup{DeploymentId: id, GroupJson: group, Phase: phase})
	msg, err := nc.Request(subjects.DeployApply(ipdetector.Name), req, 5*time.Second)
	if err != nil {
		s.t.Fatal(err)
	}
	var res deployv1.ApplyResult
	if err := proto.Unmarshal(msg.Data, &res); err != nil {
		s.t.Fatal(err)
	}
	return &res
}

// A PREPARE switches nothing: discovery answers for the group in force
// (its group id, its devices) until APPLY.
func TestPrepareKeepsGroupInForce(t *testing.T) {
	s := newSuite(t)
	s.start()
	_, roots := s.groupCA()
	addr := s.discoveryAddr()
	sensor1, sensor2 := s.createDevice("sensor-1"), s.createDevice("sensor-2")
	const oldID, newID = "11111111-1111-4111-8111-111111111111", "22222222-2222-4222-8222-222222222222"
	old := groupJSON(oldID, groupDevice{"sensor-1", certID(sensor1)})
	next := groupJSON(newID, groupDevice{"sensor-2", certID(sensor2)})
	if r := s.ask(deployv1.ApplyPhase_APPLY_PHASE_APPLY, "d-old", old); !r.Ok {
		t.Fatalf("APPLY refused: %s", r.Reason)
	}
	if r := s.ask(deployv1.ApplyPhase_APPLY_PHASE_PREPARE, "d-new", next); !r.Ok || r.AppliedDeploymentId != "d-old" {
		t.Fatalf("PREPARE: ok=%v reason %q applied %q (want ok, still d-old)", r.Ok, r.Reason, r.AppliedDeploymentId)
	}
	if r := request(t, addr, "", roots, &sensor1.pair, discoverReq("sensor-1")); r.status != http.StatusOK || !strings.Contains(r.body, oldID) {
		t.Fatalf("sensor-1 after PREPARE of a group without it: %d %s", r.status, r.body)
	}
	if r := request(t, addr, "", roots, &sensor2.pair, discoverReq("sensor-2")); r.status != http.StatusNotFound {
		t.Fatalf("sensor-2 after PREPARE, before APPLY: %d %s", r.status, r.body)
	}
	if r := s.ask(deployv1.ApplyPhase_APPLY_PHASE_APPLY, "d-new", next); !r.Ok {
		t.Fatalf("APPLY refused: %s", r.Reason)
	}
	if r := request(t, addr, "", roots, &sensor2.pair, discoverReq("sensor-2")); r.status != http.StatusOK || !strings.Contains(r.body, newID) {
		t.Fatalf("sensor-2 after APPLY: %d %s", r.status, r.body)
	}
}
