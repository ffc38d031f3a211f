package cloudsync

import "testing"

// The answer to our last patch was lost: the next cloud document holds our
// values. Confirm makes them part of the base, so a field changed again
// locally since is a local change, not a conflict the cloud wins.
func TestConfirmLostAnswer(t *testing.T) {
	base := shadow(`{"reported":{"temp":19,"door":"closed"}}`, 10)
	sent := []byte(`{"state":{"reported":{"temp":20,"door":null}}}`)
	cloud := shadow(`{"reported":{"temp":20}}`, 30) // our patch, applied at 30
	local := shadow(`{"reported":{"temp":21}}`, 30) // changed again locally, same second
	plain := Reconcile(base, local, cloud)
	if plain.LocalPatch == nil {
		t.Fatalf("without Confirm the tie should go to the cloud (the false conflict this guards against)")
	}
	eff := Confirm(base, sent, false, cloud)
	p := Reconcile(eff, local, cloud)
	if p.LocalPatch != nil || string(p.CloudPatch) != `{"state":{"reported":{"temp":21}}}` {
		t.Fatalf("after Confirm: local patch %s, cloud patch %s", p.LocalPatch, p.CloudPatch)
	}
	if _, ok := eff.Reported["door"]; ok {
		t.Fatalf("a null the cloud applied stays in the base: %v", eff.Reported)
	}
}

// A value the cloud holds that differs from what we sent was written after
// us: it stays a cloud change.
func TestConfirmLaterCloudWrite(t *testing.T) {
	base := shadow(`{"desired":{"color":"red"}}`, 10)
	sent := []byte(`{"state":{"desired":{"color":"blue"}}}`)
	cloud := shadow(`{"desired":{"color":"green"}}`, 30)
	eff := Confirm(base, sent, false, cloud)
	if eff.Desired["color"] != "red" {
		t.Fatalf("base color %v, want red", eff.Desired["color"])
	}
	// A delete we sent that the cloud applied: base becomes no document.
	if got := Confirm(base, nil, true, State{}); got.Exists {
		t.Fatalf("confirmed delete: %+v", got)
	}
	if got := Confirm(base, nil, true, cloud); !got.Exists {
		t.Fatalf("unconfirmed delete changed the base")
	}
}
