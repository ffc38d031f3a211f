package cloudsync

import (
	"bytes"
	"encoding/json"
)

// Patch returns the minimal /update request turning `from` into `to` (nil
// when equal); used to push local changes made while online.
//
// The request names only the fields that differ, with null for removed
// fields and for a removed section. It carries no version, because the two
// sides number their updates independently, and no clientToken, which the
// caller adds. An /update cannot delete a shadow: when `to` does not exist
// Patch returns nil and the caller sends a /delete instead. When `from` does
// not exist the request is the whole of `to` ({"state":{}} for a shadow with
// no sections), which creates it.
func Patch(from, to State) []byte {
	from, to = normalize(from), normalize(to)
	if !to.Exists {
		return nil
	}
	state := map[string]any{}
	diffSection(state, "desired", from.Desired, to.Desired)
	diffSection(state, "reported", from.Reported, to.Reported)
	if len(state) == 0 && from.Exists {
		return nil
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(map[string]any{"state": state}); err != nil {
		// Only values encoding/json cannot represent get here, and the
		// trees come from encoding/json.
		panic("cloudsync: state tree is not JSON: " + err.Error())
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
}

func diffSection(state map[string]any, name string, from, to map[string]any) {
	switch {
	case from == nil && to == nil:
	case to == nil:
		state[name] = nil
	case from == nil:
		state[name] = cloneObject(to)
	default:
		if d := diffObject(from, to); len(d) > 0 {
			state[name] = d
		}
	}
}

// diffObject relies on the /update merge: objects merge key by key, null
// removes a key, anything else (arrays included) replaces the old value.
func diffObject(from, to map[string]any) map[string]any {
	d := map[string]any{}
	for k, fv := range from {
		if tv, ok := to[k]; (!ok || tv == nil) && fv != nil {
			d[k] = nil
		}
	}
	for k, tv := range to {
		if tv == nil {
			continue
		}
		fv, ok := from[k]
		if !ok || fv == nil {
			d[k] = cloneValue(tv)
			continue
		}
		fm, fIsObj := fv.(map[string]any)
		tm, tIsObj := tv.(map[string]any)
		if fIsObj && tIsObj {
			if sub := diffObject(fm, tm); len(sub) > 0 {
				d[k] = sub
			}
			continue
		}
		if !equalValue(fv, tv) {
			d[k] = cloneValue(tv)
		}
	}
	return d
}
