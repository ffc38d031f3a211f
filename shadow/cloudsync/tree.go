package cloudsync

import (
	"encoding/json"
	"math/big"
	"reflect"
	"strconv"
)

// equalValue compares two state values. Numbers compare by value, not by
// spelling: a side that re-encodes 1.50 as 1.5 has not changed the field.
func equalValue(a, b any) bool {
	switch x := a.(type) {
	case map[string]any:
		y, ok := b.(map[string]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for k, xv := range x {
			yv, ok := y[k]
			if !ok || !equalValue(xv, yv) {
				return false
			}
		}
		return true
	case []any:
		y, ok := b.([]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for i := range x {
			if !equalValue(x[i], y[i]) {
				return false
			}
		}
		return true
	case json.Number:
		y, ok := b.(json.Number)
		if !ok {
			return false
		}
		if x == y {
			return true
		}
		rx, okx := new(big.Rat).SetString(string(x))
		ry, oky := new(big.Rat).SetString(string(y))
		return okx && oky && rx.Cmp(ry) == 0
	default:
		return reflect.DeepEqual(a, b)
	}
}

// number reads a metadata timestamp, which is a json.Number when it came
// from JSON but may be a Go number when a caller built the tree.
func number(v any) (float64, bool) {
	switch n := v.(type) {
	case json.Number:
		f, err := strconv.ParseFloat(string(n), 64)
		return f, err == nil
	case float64:
		return n, true
	case int64:
		return float64(n), true
	case int:
		return float64(n), true
	}
	return 0, false
}

func cloneState(s State) State {
	return State{
		Desired:      cloneObject(s.Desired),
		Reported:     cloneObject(s.Reported),
		MetaDesired:  cloneObject(s.MetaDesired),
		MetaReported: cloneObject(s.MetaReported),
		Exists:       s.Exists,
	}
}

// cloneObject keeps nil as nil: a nil section means the section is absent.
func cloneObject(m map[string]any) map[string]any {
	if m == nil {
		return nil
	}
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = cloneValue(v)
	}
	return out
}

func cloneValue(v any) any {
	switch x := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, v := range x {
			out[k] = cloneValue(v)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, v := range x {
			out[i] = cloneValue(v)
		}
		return out
	default:
		return v
	}
}
