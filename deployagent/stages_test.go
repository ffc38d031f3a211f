package deployagent_test

import (
	"context"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/evergreen-edge/evergreen/deployagent"
	deployv1 "github.com/evergreen-edge/evergreen/proto/evergreen/deploy/v1"
	"github.com/evergreen-edge/evergreen/services/kit/bustest"
	"github.com/evergreen-edge/evergreen/services/kit/deployment"
	"github.com/evergreen-edge/evergreen/services/kit/layout"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// A daemon with a Prepare func refuses before the commit: nobody applies
// anything, current.json is untouched, and every reason is reported.
func TestPrepareRefusalChangesNothing(t *testing.T) {
	alpha, beta := &consumer{name: "alpha"}, &consumer{name: "beta", prepareRefuse: true}
	s := newSuite(t, []*consumer{alpha, beta})
	first, _ := mustDeploy(t, s.client, &deployv1.DeployRequest{GroupJson: groupJSON("hello")})
	if first.GetStatus() != success {
		t.Fatal(first.GetMessage())
	}
	last, evs := mustDeploy(t, s.client, &deployv1.DeployRequest{GroupJson: groupJSON("hello", refuseID), DeploymentId: "bad-1"})
	if last.GetStatus() != failure || !strings.Contains(last.GetMessage(), "beta: prepare:") || last.GetStage() != deployment.StageArtifacts {
		t.Fatalf("terminal %v; want FAILURE naming beta's prepare refusal, before the prepared stage", last)
	}
	for _, m := range messages(evs) {
		if strings.HasPrefix(m, "committed") || strings.HasSuffix(m, " applied") {
			t.Fatalf("events %q: a refused prepare went on to commit or apply", messages(evs))
		}
	}
	want := []applyCall{{functions: []string{"hello"}}}
	for _, c := range []*consumer{alpha, beta} {
		if got := c.received(); !reflect.DeepEqual(got, want) {
			t.Fatalf("%s received %+v, want %+v (no apply, no rollback)", c.name, got, want)
		}
	}
	if cur := readRecord(t, s.root, deployment.CurrentFile); cur.DeploymentID != first.GetDeploymentId() {
		t.Fatalf("current.json names %s", cur.DeploymentID)
	}
	if beta.prepared[len(beta.prepared)-1] != "bad-1" {
		t.Fatalf("beta prepared %v", beta.prepared)
	}
}

// Redeployment re-applies the group in force under a new id; reset needs
// a group; a force reset goes through a daemon that does not answer.
func TestDeploymentTypes(t *testing.T) {
	alpha, mute := &consumer{name: "alpha"}, &consumer{name: "mute"}
	s := newSuite(t, []*consumer{alpha, mute}, deployagent.WithApplyTimeout(300*time.Millisecond))

	_, err := deploy(t, s.client, &deployv1.DeployRequest{Type: deployv1.DeploymentType_DEPLOYMENT_TYPE_REDEPLOY})
	if status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("redeploy with nothing in force = %v; want FailedPrecondition", err)
	}
	_, err = deploy(t, s.client, &deployv1.DeployRequest{Reset_: true})
	if status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("reset with nothing in force = %v; want FailedPrecondition", err)
	}
	first, _ := mustDeploy(t, s.client, &deployv1.DeployRequest{GroupJson: groupJSON("one"), DeploymentId: "d-1"})
	if first.GetStatus() != success {
		t.Fatal(first.GetMessage())
	}
	re, _ := mustDeploy(t, s.client, &deployv1.DeployRequest{Type: deployv1.DeploymentType_DEPLOYMENT_TYPE_REDEPLOY, DeploymentId: "d-2"})
	if re.GetStatus() != success {
		t.Fatal(re.GetMessage())
	}
	cur := readRecord(t, s.root, deployment.CurrentFile)
	prev := readRecord(t, s.root, deployment.PreviousFile)
	if cur.DeploymentID != "d-2" || cur.GroupSHA256 != prev.GroupSHA256 || !reflect.DeepEqual(recordFunctions(t, cur), []string{"one"}) {
		t.Fatalf("after redeploy current.json = %+v, previous %+v", cur, prev)
	}
	d, err := s.client.GetDeployment(context.Background(), &deployv1.GetDeploymentRequest{DeploymentId: "d-2"})
	if err != nil || d.GetType() != deployv1.DeploymentType_DEPLOYMENT_TYPE_REDEPLOY || d.GetRedeployOf() != "d-1" || d.GetStage() != deployment.StageDone {
		t.Fatalf("GetDeployment(d-2) = %v, %v", d, err)
	}
	if got := alpha.received(); len(got) != 2 || !reflect.DeepEqual(got[1].functions, []string{"one"}) {
		t.Fatalf("alpha received %+v; want the group twice", got)
	}
	// Redeploying a deployment whose group is not in force is refused.
	_, err = deploy(t, s.client, &deployv1.DeployRequest{Type: deployv1.DeploymentType_DEPLOYMENT_TYPE_REDEPLOY, RedeployOf: "nope"})
	if status.Code(err) != codes.NotFound {
		t.Fatalf("redeploy of an unknown deployment = %v", err)
	}

	// Every daemon knows what it runs.
	applied, err := s.client.GetApplied(context.Background(), &deployv1.GetAppliedRequest{})
	if err != nil || applied.GetDeploymentId() != "d-2" || len(applied.GetDaemons()) != 2 {
		t.Fatalf("GetApplied = %v, %v", applied, err)
	}
	for _, a := range applied.GetDaemons() {
		if a.GetDeploymentId() != "d-2" || a.GetGroupSha256() != cur.GroupSHA256 || a.GetError() != "" {
			t.Fatalf("GetApplied: %v", a)
		}
	}

	// mute stops answering: a reset fails and keeps the group, a force
	// reset goes through.
	mute.hang = true
	last, _ := mustDeploy(t, s.client, &deployv1.DeployRequest{Reset_: true})
	if last.GetStatus() != failure || !strings.Contains(last.GetMessage(), "mute: no reply") {
		t.Fatalf("reset with a silent daemon: %v", last)
	}
	if cur := readRecord(t, s.root, deployment.CurrentFile); cur.DeploymentID != "d-2" {
		t.Fatalf("a failed reset left current.json = %s", cur.DeploymentID)
	}
	last, _ = mustDeploy(t, s.client, &deployv1.DeployRequest{Type: deployv1.DeploymentType_DEPLOYMENT_TYPE_FORCE_RESET, DeploymentId: "r-1"})
	if last.GetStatus() != success || !strings.Contains(last.GetMessage(), "forced") || !strings.Contains(last.GetMessage(), "mute") {
		t.Fatalf("force reset with a silent daemon: %v", last)
	}
	if cur := readRecord(t, s.root, deployment.CurrentFile); cur.DeploymentID != "r-1" || !cur.Reset {
		t.Fatalf("after force reset current.json = %+v", cur)
	}
}

// Stopped after the commit, before every daemon confirmed: on start the
// deployagent asks every daemon to apply the group in force again and
// records the outcome.
func TestStartConfirmsACommittedDeployment(t *testing.T) {
	for _, tc := range []struct {
		name   string
		refuse bool
	}{{"every daemon confirms", false}, {"one refuses: rollback", true}} {
		t.Run(tc.name, func(t *testing.T) {
			root := newRoot(t)
			r := layout.Root(root)
			if err := r.Create(); err != nil {
				t.Fatal(err)
			}
			old := &deployment.Record{DeploymentID: "o-1", DeployedAt: time.Now().UTC(), GroupSHA256: strings.Repeat("aa", 32), Group: canonical(t, groupJSON("one"))}
			next := &deployment.Record{DeploymentID: "n-1", DeployedAt: time.Now().UTC(), GroupSHA256: strings.Repeat("bb", 32), Group: canonical(t, groupJSON("two", refuseID))}
			if tc.refuse == false {
				next.Group = canonical(t, groupJSON("two"))
			}
			if err := deployment.Commit(r, old); err != nil {
				t.Fatal(err)
			}
			st := &deployment.State{DeploymentID: "n-1", Type: "DEPLOYMENT_TYPE_NEW", Stage: deployment.StagePrepared, CreatedAt: time.Now().UTC(), Next: next, Previous: old}
			if err := deployment.WriteState(r, st); err != nil {
				t.Fatal(err)
			}
			if err := deployment.Commit(r, next); err != nil {
				t.Fatal(err)
			}
			alpha, beta := &consumer{name: "alpha"}, &consumer{name: "beta", refuse: true}
			s := &suite{t: t, root: root, bus: bustest.Start(t), names: []string{"alpha", "beta"}, consumers: map[string]*consumer{"alpha": alpha, "beta": beta}}
			s.start()
			var d *deployv1.Deployment
			deadline := time.Now().Add(10 * time.Second)
			for time.Now().Before(deadline) {
				var err error
				d, err = s.client.GetDeployment(context.Background(), &deployv1.GetDeploymentRequest{DeploymentId: "n-1"})
				if err == nil && d.GetStatus() != deployv1.DeploymentStatus_DEPLOYMENT_STATUS_IN_PROGRESS {
					break
				}
				time.Sleep(20 * time.Millisecond)
			}
			cur := readRecord(t, root, deployment.CurrentFile)
			if !tc.refuse {
				if d.GetStatus() != success || cur.DeploymentID != "n-1" {
					t.Fatalf("recovered %v; current.json %s", d, cur.DeploymentID)
				}
				for _, c := range []*consumer{alpha, beta} {
					if got := c.received(); len(got) != 1 || !reflect.DeepEqual(got[0].functions, []string{"two"}) {
						t.Fatalf("%s received %+v; want the group in force once", c.name, got)
					}
				}
			} else {
				if d.GetStatus() != failure || !strings.Contains(d.GetError(), "beta") || cur.DeploymentID != "o-1" {
					t.Fatalf("recovered %v; current.json %s", d, cur.DeploymentID)
				}
				// Both had loaded the new group on start: both roll back.
				for _, c := range []*consumer{alpha, beta} {
					got := c.received()
					if len(got) != 2 || !got[1].rollback || !reflect.DeepEqual(got[1].functions, []string{"one"}) {
						t.Fatalf("%s received %+v; want apply then rollback to [one]", c.name, got)
					}
				}
			}
			if _, err := os.Stat(deployment.Path(r, deployment.StagedFile)); !os.IsNotExist(err) {
				t.Fatalf("staged.json left: %v", err)
			}
		})
	}
}
