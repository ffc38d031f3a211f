package cloudsync

import (
	"testing"
	"time"

	"github.com/evergreen-edge/evergreen/shadow/doc"
)

// TestArrayMetadataFromDoc builds both sides with package doc, whose
// metadata for an array is a list with one timestamp per element, and
// checks that the later array write wins either way.
func TestArrayMetadataFromDoc(t *testing.T) {
	write := func(payload string, at int64) State {
		t.Helper()
		res, err := doc.Update(doc.Shadow{}, []byte(payload), time.Unix(at, 0), doc.DefaultLimits())
		if err != nil {
			t.Fatal(err)
		}
		return FromShadow(res.Next)
	}
	base := write(`{"state":{"desired":{"rgb":[1,2,3]}}}`, 10)
	for _, c := range []struct {
		name         string
		localAt      int64
		cloudAt      int64
		local, cloud string
		wantLocal    bool
	}{
		{"local later", 40, 30, `{"state":{"desired":{"rgb":[9,9,9]}}}`, `{"state":{"desired":{"rgb":[5,5,5]}}}`, true},
		{"cloud later", 20, 30, `{"state":{"desired":{"rgb":[9,9,9]}}}`, `{"state":{"desired":{"rgb":[5,5,5]}}}`, false},
	} {
		p := Reconcile(base, write(c.local, c.localAt), write(c.cloud, c.cloudAt))
		if c.wantLocal && (p.CloudPatch == nil || p.LocalPatch != nil) {
			t.Errorf("%s: local patch %s, cloud patch %s; want the local array sent to the cloud", c.name, p.LocalPatch, p.CloudPatch)
		}
		if !c.wantLocal && (p.LocalPatch == nil || p.CloudPatch != nil) {
			t.Errorf("%s: local patch %s, cloud patch %s; want the cloud array applied locally", c.name, p.LocalPatch, p.CloudPatch)
		}
	}
}
