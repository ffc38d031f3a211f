package doc

import (
	"encoding/json"
	"strconv"
	"time"
)

func timestampOf(now time.Time) json.Number {
	return json.Number(strconv.FormatInt(now.Unix(), 10))
}

// metadataFor mirrors a value with timestamp leaves. A null becomes a leaf
// too: the /update/accepted echo of {"color":null} carries
// {"color":{"timestamp":T}}, and of "desired":null carries
// "desired":{"timestamp":T}.
func metadataFor(v any, ts json.Number) any {
	switch t := v.(type) {
	case map[string]any:
		m := make(map[string]any, len(t))
		for k, c := range t {
			m[k] = metadataFor(c, ts)
		}
		return m
	case []any:
		m := make([]any, len(t))
		for i, c := range t {
			m[i] = metadataFor(c, ts)
		}
		return m
	default:
		return map[string]any{"timestamp": ts}
	}
}

// merge applies one request section to a stored section and its metadata,
// in place: null deletes, objects merge recursively, anything else (arrays
// included) replaces the old value whole and gets a fresh timestamp. Objects
// left empty are dropped, the same rule AWS IoT applies to whole sections.
func merge(dst, meta, patch map[string]any, ts json.Number) {
	for k, pv := range patch {
		switch p := pv.(type) {
		case nil:
			delete(dst, k)
			delete(meta, k)
		case map[string]any:
			sub, wasObject := dst[k].(map[string]any)
			var subMeta map[string]any
			if wasObject {
				subMeta, _ = meta[k].(map[string]any)
			} else {
				sub = map[string]any{}
			}
			if subMeta == nil {
				subMeta = map[string]any{}
			}
			merge(sub, subMeta, p, ts)
			if len(sub) == 0 {
				delete(dst, k)
				delete(meta, k)
				continue
			}
			dst[k] = sub
			meta[k] = subMeta
		default:
			dst[k] = deepCopy(pv)
			meta[k] = metadataFor(pv, ts)
		}
	}
	// Metadata names only what the state holds, even if a caller handed us
	// a tree where the two drifted apart.
	for k := range meta {
		if _, ok := dst[k]; !ok {
			delete(meta, k)
		}
	}
}

// delta is every desired field whose value differs from reported, keeping
// the path from the root; objects are compared field by field, arrays and
// scalars as whole values. Fields only in reported never appear.
func delta(desired, reported map[string]any) map[string]any {
	out := map[string]any{}
	for k, dv := range desired {
		rv, ok := reported[k]
		if !ok {
			out[k] = deepCopy(dv)
			continue
		}
		dObj, dIsObj := dv.(map[string]any)
		rObj, rIsObj := rv.(map[string]any)
		if dIsObj && rIsObj {
			if sub := delta(dObj, rObj); len(sub) > 0 {
				out[k] = sub
			}
			continue
		}
		if !equalValues(dv, rv) {
			out[k] = deepCopy(dv)
		}
	}
	return out
}

// deltaMetadata is the desired metadata of the fields in a delta.
func deltaMetadata(d, metaDesired map[string]any) map[string]any {
	out := map[string]any{}
	for k, v := range d {
		m, ok := metaDesired[k]
		if !ok {
			continue
		}
		sub, isObj := v.(map[string]any)
		subMeta, metaIsObj := m.(map[string]any)
		if isObj && metaIsObj {
			out[k] = deltaMetadata(sub, subMeta)
			continue
		}
		out[k] = deepCopy(m)
	}
	return out
}

// computeDelta returns the delta and its metadata of a shadow, nil when
// desired and reported agree.
func computeDelta(s Shadow) (map[string]any, map[string]any) {
	if len(s.Desired) == 0 {
		return nil, nil
	}
	d := delta(s.Desired, s.Reported)
	if len(d) == 0 {
		return nil, nil
	}
	return d, deltaMetadata(d, s.MetaDesired)
}

// stateAndMetadata is {"desired","reported"} and the matching metadata,
// each section present only when it has content; withDelta adds the
// computed delta to both, as /get/accepted does.
func stateAndMetadata(s Shadow, withDelta bool) (map[string]any, map[string]any) {
	state := map[string]any{}
	meta := map[string]any{}
	if len(s.Desired) > 0 {
		state["desired"] = s.Desired
		meta["desired"] = orEmpty(s.MetaDesired)
	}
	if len(s.Reported) > 0 {
		state["reported"] = s.Reported
		meta["reported"] = orEmpty(s.MetaReported)
	}
	if withDelta {
		if d, dm := computeDelta(s); d != nil {
			state["delta"] = d
			meta["delta"] = dm
		}
	}
	return state, meta
}

func orEmpty(m map[string]any) map[string]any {
	if m == nil {
		return map[string]any{}
	}
	return m
}
