package cloudsync

import (
	"encoding/json"
	"testing"

	"github.com/evergreen-edge/evergreen/shadow/doc"
)

// Timestamps used below: the base was written at 10, local edits at 20 and
// cloud edits at 30 unless a case says otherwise.
var gone = State{}

func TestReconcile(t *testing.T) {
	cases := []struct {
		name                  string
		base, local, cloud    State
		merged                State
		localPatch            string // "" = nil
		cloudPatch            string
		deleteLocal, delCloud bool
	}{
		{
			name:   "nothing changed",
			base:   shadow(`{"desired":{"a":1},"reported":{"a":1}}`, 10),
			local:  shadow(`{"desired":{"a":1},"reported":{"a":1}}`, 10),
			cloud:  shadow(`{"desired":{"a":1},"reported":{"a":1}}`, 10),
			merged: shadow(`{"desired":{"a":1},"reported":{"a":1}}`, 0),
		},
		{
			name:       "local changed a field",
			base:       shadow(`{"desired":{"a":1,"b":1}}`, 10),
			local:      shadow(`{"desired":{"a":2,"b":1}}`, 20),
			cloud:      shadow(`{"desired":{"a":1,"b":1}}`, 10),
			merged:     shadow(`{"desired":{"a":2,"b":1}}`, 0),
			cloudPatch: `{"state":{"desired":{"a":2}}}`,
		},
		{
			name:       "cloud changed a field",
			base:       shadow(`{"reported":{"a":1,"b":1}}`, 10),
			local:      shadow(`{"reported":{"a":1,"b":1}}`, 10),
			cloud:      shadow(`{"reported":{"a":1,"b":"x"}}`, 30),
			merged:     shadow(`{"reported":{"a":1,"b":"x"}}`, 0),
			localPatch: `{"state":{"reported":{"b":"x"}}}`,
		},
		{
			name:       "local added a field",
			base:       shadow(`{"reported":{"a":1}}`, 10),
			local:      shadow(`{"reported":{"a":1,"b":"on"}}`, 20),
			cloud:      shadow(`{"reported":{"a":1}}`, 10),
			merged:     shadow(`{"reported":{"a":1,"b":"on"}}`, 0),
			cloudPatch: `{"state":{"reported":{"b":"on"}}}`,
		},
		{
			name:       "cloud added a field",
			base:       shadow(`{"desired":{"a":1}}`, 10),
			local:      shadow(`{"desired":{"a":1}}`, 10),
			cloud:      shadow(`{"desired":{"a":1,"b":true}}`, 30),
			merged:     shadow(`{"desired":{"a":1,"b":true}}`, 0),
			localPatch: `{"state":{"desired":{"b":true}}}`,
		},
		{
			name:       "local removed a field",
			base:       shadow(`{"desired":{"a":1,"b":2}}`, 10),
			local:      shadow(`{"desired":{"a":1}}`, 20),
			cloud:      shadow(`{"desired":{"a":1,"b":2}}`, 10),
			merged:     shadow(`{"desired":{"a":1}}`, 0),
			cloudPatch: `{"state":{"desired":{"b":null}}}`,
		},
		{
			name:       "cloud removed a field",
			base:       shadow(`{"reported":{"a":1,"b":2}}`, 10),
			local:      shadow(`{"reported":{"a":1,"b":2}}`, 10),
			cloud:      shadow(`{"reported":{"b":2}}`, 30),
			merged:     shadow(`{"reported":{"b":2}}`, 0),
			localPatch: `{"state":{"reported":{"a":null}}}`,
		},
		{
			name:       "different fields changed on each side both survive",
			base:       shadow(`{"desired":{"a":1,"b":1}}`, 10),
			local:      shadow(`{"desired":{"a":2,"b":1}}`, 20),
			cloud:      shadow(`{"desired":{"a":1,"b":3}}`, 30),
			merged:     shadow(`{"desired":{"a":2,"b":3}}`, 0),
			localPatch: `{"state":{"desired":{"b":3}}}`,
			cloudPatch: `{"state":{"desired":{"a":2}}}`,
		},
		{
			name:       "desired and reported are merged separately",
			base:       shadow(`{"desired":{"a":1},"reported":{"a":1}}`, 10),
			local:      shadow(`{"desired":{"a":2},"reported":{"a":1}}`, 20),
			cloud:      shadow(`{"desired":{"a":1},"reported":{"a":3}}`, 30),
			merged:     shadow(`{"desired":{"a":2},"reported":{"a":3}}`, 0),
			localPatch: `{"state":{"reported":{"a":3}}}`,
			cloudPatch: `{"state":{"desired":{"a":2}}}`,
		},
		{
			name:   "both changed a field to the same value",
			base:   shadow(`{"desired":{"a":1}}`, 10),
			local:  shadow(`{"desired":{"a":5}}`, 20),
			cloud:  shadow(`{"desired":{"a":5}}`, 30),
			merged: shadow(`{"desired":{"a":5}}`, 0),
		},
		{
			name:   "both removed the same field",
			base:   shadow(`{"desired":{"a":1,"b":1}}`, 10),
			local:  shadow(`{"desired":{"b":1}}`, 20),
			cloud:  shadow(`{"desired":{"b":1}}`, 30),
			merged: shadow(`{"desired":{"b":1}}`, 0),
		},
		{
			name:       "both changed a field: local newer wins",
			base:       shadow(`{"desired":{"a":1}}`, 10),
			local:      shadow(`{"desired":{"a":2}}`, 40),
			cloud:      shadow(`{"desired":{"a":3}}`, 30),
			merged:     shadow(`{"desired":{"a":2}}`, 0),
			cloudPatch: `{"state":{"desired":{"a":2}}}`,
		},
		{
			name:       "both changed a field: cloud newer wins",
			base:       shadow(`{"reported":{"a":1}}`, 10),
			local:      shadow(`{"reported":{"a":2}}`, 20),
			cloud:      shadow(`{"reported":{"a":3}}`, 30),
			merged:     shadow(`{"reported":{"a":3}}`, 0),
			localPatch: `{"state":{"reported":{"a":3}}}`,
		},
		{
			name:       "both changed a field at the same second: cloud wins",
			base:       shadow(`{"desired":{"a":1}}`, 10),
			local:      shadow(`{"desired":{"a":2}}`, 30),
			cloud:      shadow(`{"desired":{"a":3}}`, 30),
			merged:     shadow(`{"desired":{"a":3}}`, 0),
			localPatch: `{"state":{"desired":{"a":3}}}`,
		},
		{
			name:       "rewriting the same value is not a change",
			base:       shadow(`{"desired":{"a":1}}`, 10),
			local:      shadow(`{"desired":{"a":1}}`, 50),
			cloud:      shadow(`{"desired":{"a":2}}`, 30),
			merged:     shadow(`{"desired":{"a":2}}`, 0),
			localPatch: `{"state":{"desired":{"a":2}}}`,
		},
		{
			name:       "removed locally, modified in the cloud: the newer local removal still loses",
			base:       shadow(`{"desired":{"a":1,"b":1}}`, 10),
			local:      shadow(`{"desired":{"b":1}}`, 40),
			cloud:      shadow(`{"desired":{"a":7,"b":1}}`, 30),
			merged:     shadow(`{"desired":{"a":7,"b":1}}`, 0),
			localPatch: `{"state":{"desired":{"a":7}}}`,
		},
		{
			name:       "removed in the cloud, modified locally: the local value survives",
			base:       shadow(`{"reported":{"a":1,"b":1}}`, 10),
			local:      shadow(`{"reported":{"a":"new","b":1}}`, 20),
			cloud:      shadow(`{"reported":{"b":1}}`, 30),
			merged:     shadow(`{"reported":{"a":"new","b":1}}`, 0),
			cloudPatch: `{"state":{"reported":{"a":"new"}}}`,
		},
		{
			name:       "nested: different leaves of one object",
			base:       shadow(`{"desired":{"light":{"color":"red","level":1}}}`, 10),
			local:      shadow(`{"desired":{"light":{"color":"red","level":2}}}`, 20),
			cloud:      shadow(`{"desired":{"light":{"color":"blue","level":1}}}`, 30),
			merged:     shadow(`{"desired":{"light":{"color":"blue","level":2}}}`, 0),
			localPatch: `{"state":{"desired":{"light":{"color":"blue"}}}}`,
			cloudPatch: `{"state":{"desired":{"light":{"level":2}}}}`,
		},
		{
			name:       "nested: object removed on one side, a leaf inside changed on the other",
			base:       shadow(`{"desired":{"light":{"color":"red","level":1},"x":1}}`, 10),
			local:      shadow(`{"desired":{"x":1}}`, 20),
			cloud:      shadow(`{"desired":{"light":{"color":"blue","level":1},"x":1}}`, 30),
			merged:     shadow(`{"desired":{"light":{"color":"blue"},"x":1}}`, 0),
			localPatch: `{"state":{"desired":{"light":{"color":"blue"}}}}`,
			cloudPatch: `{"state":{"desired":{"light":{"level":null}}}}`,
		},
		{
			name:       "nested: a new object arrives whole",
			base:       shadow(`{"reported":{"a":1}}`, 10),
			local:      shadow(`{"reported":{"a":1}}`, 10),
			cloud:      shadow(`{"reported":{"a":1,"net":{"ip":"10.0.0.2","up":{"v4":true}}}}`, 30),
			merged:     shadow(`{"reported":{"a":1,"net":{"ip":"10.0.0.2","up":{"v4":true}}}}`, 0),
			localPatch: `{"state":{"reported":{"net":{"ip":"10.0.0.2","up":{"v4":true}}}}}`,
		},
		{
			name:       "nested: emptied object stays as an empty object",
			base:       shadow(`{"desired":{"o":{"x":1}}}`, 10),
			local:      shadow(`{"desired":{"o":{}}}`, 20),
			cloud:      shadow(`{"desired":{"o":{"x":1}}}`, 10),
			merged:     shadow(`{"desired":{"o":{}}}`, 0),
			cloudPatch: `{"state":{"desired":{"o":{"x":null}}}}`,
		},
		{
			name:       "array changed on one side is sent whole",
			base:       shadow(`{"desired":{"list":[1,2,3]}}`, 10),
			local:      shadow(`{"desired":{"list":[1,2,4]}}`, 20),
			cloud:      shadow(`{"desired":{"list":[1,2,3]}}`, 10),
			merged:     shadow(`{"desired":{"list":[1,2,4]}}`, 0),
			cloudPatch: `{"state":{"desired":{"list":[1,2,4]}}}`,
		},
		{
			name:       "array changed on both sides: newer array wins whole, elements are not merged",
			base:       shadow(`{"desired":{"list":[1,2,3]}}`, 10),
			local:      shadow(`{"desired":{"list":[9,2,3]}}`, 20),
			cloud:      shadow(`{"desired":{"list":[1,2,9]}}`, 30),
			merged:     shadow(`{"desired":{"list":[1,2,9]}}`, 0),
			localPatch: `{"state":{"desired":{"list":[1,2,9]}}}`,
		},
		{
			name:       "objects inside arrays are part of the array value",
			base:       shadow(`{"reported":{"l":[{"a":1}]}}`, 10),
			local:      shadow(`{"reported":{"l":[{"a":1,"b":2}]}}`, 40),
			cloud:      shadow(`{"reported":{"l":[{"a":3}]}}`, 30),
			merged:     shadow(`{"reported":{"l":[{"a":1,"b":2}]}}`, 0),
			cloudPatch: `{"state":{"reported":{"l":[{"a":1,"b":2}]}}}`,
		},
		{
			name:       "type change object to leaf on one side",
			base:       shadow(`{"desired":{"a":{"x":1}}}`, 10),
			local:      shadow(`{"desired":{"a":"off"}}`, 20),
			cloud:      shadow(`{"desired":{"a":{"x":1}}}`, 10),
			merged:     shadow(`{"desired":{"a":"off"}}`, 0),
			cloudPatch: `{"state":{"desired":{"a":"off"}}}`,
		},
		{
			name:       "type change leaf to object on one side",
			base:       shadow(`{"reported":{"a":1}}`, 10),
			local:      shadow(`{"reported":{"a":1}}`, 10),
			cloud:      shadow(`{"reported":{"a":{"v":1}}}`, 30),
			merged:     shadow(`{"reported":{"a":{"v":1}}}`, 0),
			localPatch: `{"state":{"reported":{"a":{"v":1}}}}`,
		},
		{
			name:       "type change against an edit inside the object: newer object wins whole",
			base:       shadow(`{"desired":{"a":{"x":1,"y":1}}}`, 10),
			local:      shadow(`{"desired":{"a":5}}`, 20),
			cloud:      shadow(`{"desired":{"a":{"x":2,"y":1}}}`, 10).at("desired.a.x", 30),
			merged:     shadow(`{"desired":{"a":{"x":2,"y":1}}}`, 0),
			localPatch: `{"state":{"desired":{"a":{"x":2,"y":1}}}}`,
		},
		{
			name:       "type change against an edit inside the object: newer leaf wins",
			base:       shadow(`{"desired":{"a":{"x":1,"y":1}}}`, 10),
			local:      shadow(`{"desired":{"a":5}}`, 40),
			cloud:      shadow(`{"desired":{"a":{"x":2,"y":1}}}`, 10).at("desired.a.x", 30),
			merged:     shadow(`{"desired":{"a":5}}`, 0),
			cloudPatch: `{"state":{"desired":{"a":5}}}`,
		},
		{
			name:       "section removed locally",
			base:       shadow(`{"desired":{"a":1},"reported":{"a":1}}`, 10),
			local:      shadow(`{"reported":{"a":1}}`, 20),
			cloud:      shadow(`{"desired":{"a":1},"reported":{"a":1}}`, 10),
			merged:     shadow(`{"reported":{"a":1}}`, 0),
			cloudPatch: `{"state":{"desired":null}}`,
		},
		{
			name:       "section removed in the cloud while a field in it changed locally",
			base:       shadow(`{"desired":{"a":1,"b":1},"reported":{"a":1}}`, 10),
			local:      shadow(`{"desired":{"a":1,"b":2},"reported":{"a":1}}`, 20),
			cloud:      shadow(`{"reported":{"a":1}}`, 30),
			merged:     shadow(`{"desired":{"b":2},"reported":{"a":1}}`, 0),
			localPatch: `{"state":{"desired":{"a":null}}}`,
			cloudPatch: `{"state":{"desired":{"b":2}}}`,
		},
		{
			name:   "section removed on both sides",
			base:   shadow(`{"desired":{"a":1},"reported":{"a":1}}`, 10),
			local:  shadow(`{"reported":{"a":1}}`, 20),
			cloud:  shadow(`{"reported":{"a":1}}`, 30),
			merged: shadow(`{"reported":{"a":1}}`, 0),
		},
		{
			name:     "shadow deleted locally, unchanged in the cloud: deleted in the cloud",
			base:     shadow(`{"desired":{"a":1},"reported":{"a":1}}`, 10),
			local:    gone,
			cloud:    shadow(`{"desired":{"a":1},"reported":{"a":1}}`, 10),
			merged:   gone,
			delCloud: true,
		},
		{
			name:        "shadow deleted in the cloud, unchanged locally: deleted locally",
			base:        shadow(`{"reported":{"a":1}}`, 10),
			local:       shadow(`{"reported":{"a":1}}`, 10),
			cloud:       gone,
			merged:      gone,
			deleteLocal: true,
		},
		{
			name:     "shadow deleted locally, cloud only rewrote the same values: deleted in the cloud",
			base:     shadow(`{"desired":{"a":1}}`, 10),
			local:    gone,
			cloud:    shadow(`{"desired":{"a":1}}`, 30),
			merged:   gone,
			delCloud: true,
		},
		{
			name:       "shadow deleted locally, changed in the cloud: the cloud document is recreated locally",
			base:       shadow(`{"desired":{"a":1,"b":1}}`, 10),
			local:      gone,
			cloud:      shadow(`{"desired":{"a":2,"b":1}}`, 30),
			merged:     shadow(`{"desired":{"a":2,"b":1}}`, 0),
			localPatch: `{"state":{"desired":{"a":2,"b":1}}}`,
		},
		{
			name:       "shadow deleted in the cloud, changed locally: the local document is recreated in the cloud",
			base:       shadow(`{"desired":{"a":1},"reported":{"a":1}}`, 10),
			local:      shadow(`{"desired":{"a":1},"reported":{"a":2}}`, 20),
			cloud:      gone,
			merged:     shadow(`{"desired":{"a":1},"reported":{"a":2}}`, 0),
			cloudPatch: `{"state":{"desired":{"a":1},"reported":{"a":2}}}`,
		},
		{
			name:   "shadow deleted on both sides",
			base:   shadow(`{"desired":{"a":1}}`, 10),
			local:  gone,
			cloud:  gone,
			merged: gone,
		},
		{
			name:   "first sync, no shadow anywhere",
			base:   gone,
			local:  gone,
			cloud:  gone,
			merged: gone,
		},
		{
			name:       "first sync, only the local shadow exists",
			base:       gone,
			local:      shadow(`{"desired":{"a":1},"reported":{"b":[1,2]}}`, 20),
			cloud:      gone,
			merged:     shadow(`{"desired":{"a":1},"reported":{"b":[1,2]}}`, 0),
			cloudPatch: `{"state":{"desired":{"a":1},"reported":{"b":[1,2]}}}`,
		},
		{
			name:       "first sync, only the cloud shadow exists",
			base:       gone,
			local:      gone,
			cloud:      shadow(`{"reported":{"b":{"c":"d"}}}`, 30),
			merged:     shadow(`{"reported":{"b":{"c":"d"}}}`, 0),
			localPatch: `{"state":{"reported":{"b":{"c":"d"}}}}`,
		},
		{
			name:       "first sync, a local shadow with no sections is created in the cloud",
			base:       gone,
			local:      shadow(`{}`, 20),
			cloud:      gone,
			merged:     shadow(`{}`, 0),
			cloudPatch: `{"state":{}}`,
		},
		{
			name:       "first sync, both exist with different fields: union",
			base:       gone,
			local:      shadow(`{"desired":{"a":1}}`, 20),
			cloud:      shadow(`{"desired":{"b":2},"reported":{"c":3}}`, 30),
			merged:     shadow(`{"desired":{"a":1,"b":2},"reported":{"c":3}}`, 0),
			localPatch: `{"state":{"desired":{"b":2},"reported":{"c":3}}}`,
			cloudPatch: `{"state":{"desired":{"a":1}}}`,
		},
		{
			name:       "first sync, same field differs: newer local wins",
			base:       gone,
			local:      shadow(`{"desired":{"a":1,"same":true}}`, 40),
			cloud:      shadow(`{"desired":{"a":2,"same":true}}`, 30),
			merged:     shadow(`{"desired":{"a":1,"same":true}}`, 0),
			cloudPatch: `{"state":{"desired":{"a":1}}}`,
		},
		{
			name:       "first sync, same field differs at the same second: cloud wins",
			base:       gone,
			local:      shadow(`{"reported":{"a":{"x":1}}}`, 30),
			cloud:      shadow(`{"reported":{"a":{"x":2}}}`, 30),
			merged:     shadow(`{"reported":{"a":{"x":2}}}`, 0),
			localPatch: `{"state":{"reported":{"a":{"x":2}}}}`,
		},
		{
			name:       "RULE.md example: edits on both sides while offline",
			base:       shadow(`{"desired":{"light":{"color":"red","level":1},"fan":"off"}}`, 1),
			local:      shadow(`{"desired":{"light":{"color":"red","level":2},"fan":"on"}}`, 1).at("desired.light.level", 5).at("desired.fan", 5),
			cloud:      shadow(`{"desired":{"light":{"color":"blue","level":1},"fan":"auto"}}`, 1).at("desired.light.color", 9).at("desired.fan", 9),
			merged:     shadow(`{"desired":{"light":{"color":"blue","level":2},"fan":"auto"}}`, 0),
			localPatch: `{"state":{"desired":{"light":{"color":"blue"},"fan":"auto"}}}`,
			cloudPatch: `{"state":{"desired":{"light":{"level":2}}}}`,
		},
		{
			name:       "RULE.md example: a delete against an edit",
			base:       shadow(`{"reported":{"temp":20,"door":"closed"}}`, 1),
			local:      shadow(`{"reported":{"temp":23,"door":"closed"}}`, 1).at("reported.temp", 5),
			cloud:      gone,
			merged:     shadow(`{"reported":{"temp":23,"door":"closed"}}`, 0),
			cloudPatch: `{"state":{"reported":{"temp":23,"door":"closed"}}}`,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := Reconcile(tc.base, tc.local, tc.cloud)
			if !sameDoc(p.Merged, tc.merged) {
				t.Errorf("merged:\n got %s\nwant %s", show(p.Merged), show(tc.merged))
			}
			if !samePatch(p.LocalPatch, tc.localPatch) {
				t.Errorf("local patch:\n got %s\nwant %s", p.LocalPatch, tc.localPatch)
			}
			if !samePatch(p.CloudPatch, tc.cloudPatch) {
				t.Errorf("cloud patch:\n got %s\nwant %s", p.CloudPatch, tc.cloudPatch)
			}
			if p.DeleteLocal != tc.deleteLocal || p.DeleteCloud != tc.delCloud {
				t.Errorf("delete local/cloud = %v/%v, want %v/%v", p.DeleteLocal, p.DeleteCloud, tc.deleteLocal, tc.delCloud)
			}
			checkMeta(t, p.Merged)
			checkConverges(t, tc.local, tc.cloud, p)
		})
	}
}

// checkConverges applies the plan to both sides and fails unless each ends
// up holding Merged.
func checkConverges(t *testing.T, local, cloud State, p Plan) {
	t.Helper()
	if p.DeleteLocal && p.LocalPatch != nil || p.DeleteCloud && p.CloudPatch != nil {
		t.Fatalf("plan both deletes and patches a side: %+v", p)
	}
	checkRequest(t, "local patch", local, p.LocalPatch)
	checkRequest(t, "cloud patch", cloud, p.CloudPatch)
	for _, side := range []struct {
		name   string
		s      State
		patch  []byte
		delete bool
	}{{"local", local, p.LocalPatch, p.DeleteLocal}, {"cloud", cloud, p.CloudPatch, p.DeleteCloud}} {
		after := apply(t, side.s, side.patch)
		if side.delete {
			after = State{}
		}
		if !sameDoc(after, p.Merged) {
			t.Errorf("%s after the plan:\n got %s\nwant %s (merged)", side.name, show(after), show(p.Merged))
		}
	}
}

func TestMergedMetadataKeepsTheWinnersTimestamp(t *testing.T) {
	base := shadow(`{"desired":{"a":1,"b":1,"c":1,"d":1}}`, 10)
	local := shadow(`{"desired":{"a":2,"b":1,"c":5,"d":9}}`, 10).at("desired.a", 20).at("desired.c", 40).at("desired.d", 25)
	cloud := shadow(`{"desired":{"a":1,"b":3,"c":6,"d":9}}`, 10).at("desired.b", 30).at("desired.c", 35).at("desired.d", 22)
	p := Reconcile(base, local, cloud)
	// d was set to the same value on both sides: the later write counts.
	for field, want := range map[string]string{"a": "20", "b": "30", "c": "40", "d": "25"} {
		got := p.Merged.MetaDesired[field].(map[string]any)["timestamp"]
		if got != json.Number(want) {
			t.Errorf("metadata of %s = %v, want %s", field, got, want)
		}
	}
}

func TestNumbersCompareByValue(t *testing.T) {
	base := shadow(`{"reported":{"t":1.5,"n":100}}`, 10)
	local := shadow(`{"reported":{"t":1.5,"n":100}}`, 10)
	cloud := shadow(`{"reported":{"t":1.50,"n":1e2}}`, 30)
	p := Reconcile(base, local, cloud)
	if p.LocalPatch != nil || p.CloudPatch != nil {
		t.Errorf("a re-spelt number counted as a change: local %s, cloud %s", p.LocalPatch, p.CloudPatch)
	}
}

func TestNumbersKeepTheirDigits(t *testing.T) {
	got := Patch(shadow(`{"reported":{"n":1}}`, 10), shadow(`{"reported":{"n":12345678901234567890.125}}`, 10))
	if want := `{"state":{"reported":{"n":12345678901234567890.125}}}`; string(got) != want {
		t.Errorf("patch = %s, want %s", got, want)
	}
}

func TestPatch(t *testing.T) {
	cases := []struct {
		name     string
		from, to State
		want     string
	}{
		{"equal", shadow(`{"desired":{"a":[1]}}`, 10), shadow(`{"desired":{"a":[1]}}`, 20), ""},
		{"to a deleted shadow is a /delete, not an /update", shadow(`{"desired":{"a":1}}`, 10), gone, ""},
		{"from no shadow sends the whole document", gone, shadow(`{"desired":{"a":{"b":1}},"reported":{}}`, 10), `{"state":{"desired":{"a":{"b":1}},"reported":{}}}`},
		{"removed section", shadow(`{"desired":{"a":1},"reported":{"a":1}}`, 10), shadow(`{"reported":{"a":1}}`, 10), `{"state":{"desired":null}}`},
		{"new section", shadow(`{"reported":{"a":1}}`, 10), shadow(`{"desired":{"a":1},"reported":{"a":1}}`, 10), `{"state":{"desired":{"a":1}}}`},
		{"only changed leaves", shadow(`{"desired":{"o":{"x":1,"y":2,"z":3},"k":"v"}}`, 10), shadow(`{"desired":{"o":{"x":1,"y":4},"k":"v"}}`, 10), `{"state":{"desired":{"o":{"y":4,"z":null}}}}`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := Patch(tc.from, tc.to)
			if !samePatch(got, tc.want) {
				t.Errorf("got %s, want %s", got, tc.want)
			}
		})
	}
	// \u003c is valid JSON but unreadable in logs and on `mosquitto_sub`.
	got := Patch(shadow(`{"desired":{"s":"a"}}`, 10), shadow(`{"desired":{"s":"<&>"}}`, 10))
	if want := `{"state":{"desired":{"s":"<&>"}}}`; string(got) != want {
		t.Errorf("got %s, want %s", got, want)
	}
}

func TestFromShadow(t *testing.T) {
	s := doc.Shadow{
		Desired:     map[string]any{"a": map[string]any{"b": json.Number("1")}},
		MetaDesired: map[string]any{"a": map[string]any{"b": map[string]any{"timestamp": json.Number("10")}}},
		Version:     7,
		Exists:      true,
	}
	st := FromShadow(s)
	if !st.Exists || st.Reported != nil || st.MetaReported != nil {
		t.Fatalf("FromShadow = %+v", st)
	}
	s.Desired["a"].(map[string]any)["b"] = json.Number("2")
	if st.Desired["a"].(map[string]any)["b"] != json.Number("1") {
		t.Errorf("State shares its trees with the shadow it came from")
	}
	if got := FromShadow(doc.Shadow{Desired: s.Desired, Version: 9}); got.Exists || got.Desired != nil {
		t.Errorf("a deleted shadow became %+v, want the zero State", got)
	}
}
