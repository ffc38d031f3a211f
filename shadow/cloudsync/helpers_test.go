package cloudsync

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"
)

// shadow builds an existing State from {"desired":{..},"reported":{..}}
// (a missing key is a missing section) with every leaf written at ts.
func shadow(js string, ts int) State {
	var top map[string]any
	dec := json.NewDecoder(strings.NewReader(js))
	dec.UseNumber()
	if err := dec.Decode(&top); err != nil {
		panic(fmt.Sprintf("bad test document %s: %v", js, err))
	}
	s := State{Exists: true}
	if d, ok := top["desired"].(map[string]any); ok {
		s.Desired, s.MetaDesired = d, metaFor(d, ts)
	}
	if r, ok := top["reported"].(map[string]any); ok {
		s.Reported, s.MetaReported = r, metaFor(r, ts)
	}
	return s
}

func metaFor(obj map[string]any, ts int) map[string]any {
	m := map[string]any{}
	for k, v := range obj {
		if o, ok := v.(map[string]any); ok {
			m[k] = metaFor(o, ts)
		} else {
			m[k] = map[string]any{"timestamp": json.Number(fmt.Sprint(ts))}
		}
	}
	return m
}

// at returns s with the leaf at a dotted path ("desired.light.color")
// stamped ts instead.
func (s State) at(path string, ts int) State {
	s = cloneState(s)
	parts := strings.Split(path, ".")
	m := s.MetaDesired
	if parts[0] == "reported" {
		m = s.MetaReported
	}
	for _, p := range parts[1 : len(parts)-1] {
		m = m[p].(map[string]any)
	}
	m[parts[len(parts)-1]] = map[string]any{"timestamp": json.Number(fmt.Sprint(ts))}
	return s
}

// apply is the /update merge as the shadow services do it, written here
// independently of the package: objects merge key by key, null deletes a key
// (or a whole section), anything else replaces. Metadata is not modelled.
func apply(t *testing.T, s State, patch []byte) State {
	t.Helper()
	if patch == nil {
		return s
	}
	var req map[string]any
	dec := json.NewDecoder(bytes.NewReader(patch))
	dec.UseNumber()
	if err := dec.Decode(&req); err != nil {
		t.Fatalf("patch is not JSON: %v\n%s", err, patch)
	}
	state, ok := req["state"].(map[string]any)
	if !ok {
		t.Fatalf("patch has no state object: %s", patch)
	}
	out := State{Exists: true}
	if s.Exists {
		out.Desired, out.Reported = s.Desired, s.Reported
	}
	for name, sec := range map[string]*map[string]any{"desired": &out.Desired, "reported": &out.Reported} {
		v, ok := state[name]
		if !ok {
			continue
		}
		if v == nil {
			*sec = nil
			continue
		}
		obj, ok := v.(map[string]any)
		if !ok {
			t.Fatalf("section %s is not an object: %s", name, patch)
		}
		*sec = mergeInto(*sec, obj)
	}
	return out
}

func mergeInto(dst, patch map[string]any) map[string]any {
	out := map[string]any{}
	for k, v := range dst {
		out[k] = v
	}
	for k, v := range patch {
		switch pv := v.(type) {
		case nil:
			delete(out, k)
		case map[string]any:
			old, _ := out[k].(map[string]any)
			out[k] = mergeInto(old, pv)
		default:
			out[k] = v
		}
	}
	return out
}

// sameDoc compares what a user would read back: existence and the two
// sections (metadata is each side's own clock).
func sameDoc(a, b State) bool {
	if a.Exists != b.Exists {
		return false
	}
	if !a.Exists {
		return true
	}
	return reflect.DeepEqual(a.Desired, b.Desired) && reflect.DeepEqual(a.Reported, b.Reported)
}

func show(s State) string {
	if !s.Exists {
		return "<no shadow>"
	}
	b, _ := json.Marshal(map[string]any{"desired": s.Desired, "reported": s.Reported})
	return string(b)
}

// checkMeta fails unless each merged section has a metadata tree of exactly
// the same shape with a timestamp at every leaf.
func checkMeta(t *testing.T, s State) {
	t.Helper()
	if !s.Exists {
		return
	}
	for _, p := range []struct {
		name       string
		tree, meta map[string]any
	}{{"desired", s.Desired, s.MetaDesired}, {"reported", s.Reported, s.MetaReported}} {
		if p.tree == nil {
			continue
		}
		if err := mirrors(p.tree, p.meta); err != nil {
			t.Errorf("merged %s metadata: %v", p.name, err)
		}
	}
}

func mirrors(tree, meta map[string]any) error {
	if len(tree) != len(meta) {
		return fmt.Errorf("keys %v vs metadata %v", tree, meta)
	}
	for k, v := range tree {
		m, ok := meta[k].(map[string]any)
		if !ok {
			return fmt.Errorf("no metadata for %q", k)
		}
		if o, ok := v.(map[string]any); ok {
			if err := mirrors(o, m); err != nil {
				return fmt.Errorf("%s.%w", k, err)
			}
			continue
		}
		if _, ok := m["timestamp"].(json.Number); !ok || len(m) != 1 {
			return fmt.Errorf("leaf %q metadata %v", k, m)
		}
	}
	return nil
}

// checkRequest fails unless patch is an /update request with nothing but
// "state", and names only fields that really change from `from`.
func checkRequest(t *testing.T, which string, from State, patch []byte) {
	t.Helper()
	if patch == nil {
		return
	}
	var req map[string]any
	dec := json.NewDecoder(bytes.NewReader(patch))
	dec.UseNumber()
	if err := dec.Decode(&req); err != nil {
		t.Fatalf("%s: not JSON: %v", which, err)
	}
	if len(req) != 1 || req["state"] == nil {
		t.Errorf("%s: want only a state object (no version, no clientToken): %s", which, patch)
	}
	state, _ := req["state"].(map[string]any)
	for name, v := range state {
		var old map[string]any
		switch name {
		case "desired":
			old = from.Desired
		case "reported":
			old = from.Reported
		default:
			t.Errorf("%s: unknown section %q", which, name)
			continue
		}
		if v == nil {
			if old == nil {
				t.Errorf("%s: removes section %s that is not there", which, name)
			}
			continue
		}
		if old == nil || !from.Exists {
			continue // a new section is sent whole
		}
		if err := minimal(old, v.(map[string]any), name); err != nil {
			t.Errorf("%s: not minimal: %v: %s", which, err, patch)
		}
	}
}

func minimal(old, patch map[string]any, path string) error {
	if len(patch) == 0 {
		return fmt.Errorf("%s: empty object changes nothing", path)
	}
	for k, v := range patch {
		ov, had := old[k]
		switch pv := v.(type) {
		case nil:
			if !had {
				return fmt.Errorf("%s.%s: null for a field that is not there", path, k)
			}
		case map[string]any:
			if om, ok := ov.(map[string]any); ok {
				if err := minimal(om, pv, path+"."+k); err != nil {
					return err
				}
			}
		default:
			if had && reflect.DeepEqual(ov, v) {
				return fmt.Errorf("%s.%s: sends the value it already has", path, k)
			}
		}
	}
	return nil
}

func samePatch(got []byte, want string) bool {
	if want == "" || got == nil {
		return want == "" && got == nil
	}
	var g, w any
	dg := json.NewDecoder(bytes.NewReader(got))
	dg.UseNumber()
	dw := json.NewDecoder(strings.NewReader(want))
	dw.UseNumber()
	if dg.Decode(&g) != nil || dw.Decode(&w) != nil {
		return false
	}
	return reflect.DeepEqual(g, w)
}
