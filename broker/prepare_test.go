package broker

import (
	"strings"
	"testing"

	deployv1 "github.com/evergreen-edge/evergreen/proto/evergreen/deploy/v1"
	"github.com/evergreen-edge/evergreen/services/kit/groupdef"
	"github.com/evergreen-edge/evergreen/services/kit/subjects"
	"google.golang.org/protobuf/proto"
)

// ask sends the broker an ApplyGroup of phase for g (nil: no group, as for
// QUERY) as the deployagent does, without touching the deployment files.
func (s *suite) ask(phase deployv1.ApplyPhase, id string, g *groupdef.Group) *deployv1.ApplyResult {
	s.t.Helper()
	req := &deployv1.ApplyGroup{DeploymentId: id, Phase: phase}
	if g != nil {
		b, err := groupdef.Marshal(g)
		if err != nil {
			s.t.Fatal(err)
		}
		if _, err := groupdef.Parse(b); err != nil {
			s.t.Fatalf("test group does not validate: %v", err)
		}
		req.GroupJson = b
	}
	data, _ := proto.Marshal(req)
	msg, err := s.bus.Request(subjects.DeployApply(Name), data, within)
	if err != nil {
		s.t.Fatalf("ApplyGroup %s: %v", phase, err)
	}
	res := &deployv1.ApplyResult{}
	if err := proto.Unmarshal(msg.Data, res); err != nil {
		s.t.Fatal(err)
	}
	return res
}

// prepare sends PREPARE of g, as the deployagent does before it commits.
func (s *suite) prepare(id string, g *groupdef.Group) *deployv1.ApplyResult {
	s.t.Helper()
	return s.ask(deployv1.ApplyPhase_APPLY_PHASE_PREPARE, id, g)
}

// What apply refuses is refused at PREPARE, before the deployagent
// commits: a table that does not compile and invalid spooler settings. A
// PREPARE, refused or not, switches nothing: the table in force keeps
// routing and the broker still reports the deployment it applied.
func TestPrepareRefusesWhatApplyRefuses(t *testing.T) {
	s := newSuite(t)
	sensor, watcher := s.createDevice("sensor"), s.createDevice("watcher")
	s.deploy(group([]*device{sensor, watcher}, nil, sub{thingARN("sensor"), "t", thingARN("watcher")}))
	applied := s.ask(deployv1.ApplyPhase_APPLY_PHASE_QUERY, "", nil).GetAppliedDeploymentId()
	if applied == "" {
		t.Fatal("the broker reports no deployment after the first one")
	}
	w := s.mustV3(watcher)
	w.subscribe(t, 0, "t", "u")
	p := s.mustV3(sensor)

	spooler := group([]*device{sensor, watcher}, nil)
	spooler.Functions.Functions = append(spooler.Functions.Functions, groupdef.Function{
		Id: "spooler", FunctionArn: "arn:aws:lambda:::function:GGCloudSpooler:1",
		FunctionConfiguration: &groupdef.FunctionConfiguration{Environment: &groupdef.FunctionConfigurationEnvironment{
			Variables: map[string]string{"GG_CONFIG_MAX_SIZE_BYTES": "1000"},
		}},
	})
	// Two things of one name in two regions: the broker knows a device by
	// its thing name only, so the table cannot hold both.
	twins := group([]*device{sensor, watcher}, nil)
	twins.Devices.Devices = append(twins.Devices.Devices, groupdef.Device{
		Id: "twin", ThingArn: "arn:aws:iot:eu-west-1:" + account + ":thing/sensor", CertificateArn: certARN(strings.Repeat("c", 64)),
	})
	for _, tc := range []struct {
		name string
		g    *groupdef.Group
		want string
	}{
		{"a 1000-byte spooler", spooler, "GG_CONFIG_MAX_SIZE_BYTES"},
		{"two things named sensor", twins, `same name`},
	} {
		res := s.prepare("bad", tc.g)
		if res.GetOk() || !strings.Contains(res.GetReason(), tc.want) {
			t.Errorf("PREPARE of %s: ok=%v reason %q, want a refusal naming %q", tc.name, res.GetOk(), res.GetReason(), tc.want)
		}
		if got := res.GetAppliedDeploymentId(); got != applied {
			t.Errorf("after the PREPARE of %s the broker reports deployment %q, want %q", tc.name, got, applied)
		}
	}

	// A good group moving the route from t to u prepares, but until APPLY
	// t is routed and u is not.
	next := group([]*device{sensor, watcher}, nil, sub{thingARN("sensor"), "u", thingARN("watcher")})
	if res := s.prepare("next", next); !res.GetOk() {
		t.Fatalf("PREPARE of a good group refused: %s", res.GetReason())
	}
	p.publish(t, "u", 0, "not yet")
	p.publish(t, "t", 0, "still routed")
	w.in.expect(t, "t", "still routed")
	w.in.empty(t)
	if got := s.ask(deployv1.ApplyPhase_APPLY_PHASE_QUERY, "", nil).GetAppliedDeploymentId(); got != applied {
		t.Fatalf("after PREPAREs the broker reports deployment %q, want %q", got, applied)
	}
}
