package cloudsync

import (
	"bytes"
	"encoding/json"
)

// Confirm folds into base what the cloud shows of our own last request.
//
// The base is the cloud document last reconciled. After we send the cloud
// a patch (or a delete), the answer that would move the base forward can
// be lost: the cloud's responses travel at QoS 0, and the shadow daemon
// may restart before it reads them. The next cloud document then carries
// our own values as if someone in the cloud had written them, and a field
// we changed again locally meanwhile would face a false conflict. So every
// leaf of the sent patch that the cloud now holds with the value we sent
// (or, for a null, no longer holds) counts as agreed: it joins the base.
// A leaf the cloud holds with another value was written there after us, or
// our patch was refused, and goes through the rule as usual.
func Confirm(base State, sent []byte, sentDelete bool, cloud State) State {
	if sentDelete {
		if !cloud.Exists {
			return State{}
		}
		return base
	}
	if len(sent) == 0 || !cloud.Exists {
		return base
	}
	var req struct {
		State map[string]any `json:"state"`
	}
	dec := json.NewDecoder(bytes.NewReader(sent))
	dec.UseNumber()
	if dec.Decode(&req) != nil {
		return base
	}
	out := cloneState(normalize(base))
	out.Exists = true
	out.Desired = confirmSection(out.Desired, req.State, "desired", cloud.Desired)
	out.Reported = confirmSection(out.Reported, req.State, "reported", cloud.Reported)
	return out
}

func confirmSection(base map[string]any, state map[string]any, name string, cloud map[string]any) map[string]any {
	v, ok := state[name]
	if !ok {
		return base
	}
	if v == nil { // the whole section removed
		if cloud == nil {
			return nil
		}
		return base
	}
	patch, ok := v.(map[string]any)
	if !ok {
		return base
	}
	if base == nil {
		base = map[string]any{}
	}
	confirmObject(base, patch, cloud)
	return base
}

// confirmObject walks patch; base is changed in place.
func confirmObject(base, patch, cloud map[string]any) {
	for k, pv := range patch {
		cv, inCloud := cloud[k]
		switch p := pv.(type) {
		case nil:
			if !inCloud {
				delete(base, k)
			}
		case map[string]any:
			cobj, ok := cv.(map[string]any)
			if !ok {
				continue
			}
			bobj, ok := base[k].(map[string]any)
			if !ok {
				bobj = map[string]any{}
				base[k] = bobj
			}
			confirmObject(bobj, p, cobj)
		default:
			if inCloud && equalValue(cv, pv) {
				base[k] = cloneValue(pv)
			}
		}
	}
}
