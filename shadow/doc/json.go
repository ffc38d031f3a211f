package doc

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"reflect"
	"strconv"
	"strings"
	"unicode/utf8"
)

var errTrailing = errors.New("data after the JSON value")

// decode parses exactly one JSON value, keeping numbers as json.Number so
// that large integers and spellings such as 1.50 survive unchanged.
func decode(b []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errTrailing
	}
	return v, nil
}

// encode writes compact JSON without HTML escaping: AWS IoT sends "<" as is,
// and the size limit must count the bytes the client sent.
func encode(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// looseClientToken returns the clientToken of a payload when the payload is
// valid UTF-8 JSON and the token is a string within max bytes, else "".
func looseClientToken(payload []byte, max int) string {
	if len(payload) == 0 || !utf8.Valid(payload) {
		return ""
	}
	v, err := decode(payload)
	if err != nil {
		return ""
	}
	obj, ok := v.(map[string]any)
	if !ok {
		return ""
	}
	tok, ok := obj["clientToken"].(string)
	if !ok || len(tok) > max {
		return ""
	}
	return tok
}

func deepCopy(v any) any {
	switch t := v.(type) {
	case map[string]any:
		return copyMap(t)
	case []any:
		out := make([]any, len(t))
		for i, e := range t {
			out[i] = deepCopy(e)
		}
		return out
	default:
		return v
	}
}

func copyMap(m map[string]any) map[string]any {
	if m == nil {
		return nil
	}
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = deepCopy(v)
	}
	return out
}

// equalValues is JSON equality: numbers compare by value (1.50 equals 1.5),
// arrays element by element, objects key by key.
func equalValues(a, b any) bool {
	switch x := a.(type) {
	case map[string]any:
		y, ok := b.(map[string]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for k, xv := range x {
			yv, ok := y[k]
			if !ok || !equalValues(xv, yv) {
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
			if !equalValues(x[i], y[i]) {
				return false
			}
		}
		return true
	case string:
		y, ok := b.(string)
		return ok && x == y
	case bool:
		y, ok := b.(bool)
		return ok && x == y
	case nil:
		return b == nil
	}
	if sa, ok := numberText(a); ok {
		sb, ok := numberText(b)
		if !ok {
			return false
		}
		if sa == sb {
			return true
		}
		ca, okA := canonicalNumber(sa)
		cb, okB := canonicalNumber(sb)
		return okA && okB && ca == cb
	}
	// A type a caller put in a Shadow by hand; no JSON meaning to apply.
	return reflect.DeepEqual(a, b)
}

// numberText is the JSON spelling of a numeric value.
func numberText(v any) (string, bool) {
	switch n := v.(type) {
	case json.Number:
		return string(n), true
	case float64:
		return strconv.FormatFloat(n, 'g', -1, 64), true
	case float32:
		return strconv.FormatFloat(float64(n), 'g', -1, 32), true
	case int:
		return strconv.FormatInt(int64(n), 10), true
	case int8:
		return strconv.FormatInt(int64(n), 10), true
	case int16:
		return strconv.FormatInt(int64(n), 10), true
	case int32:
		return strconv.FormatInt(int64(n), 10), true
	case int64:
		return strconv.FormatInt(n, 10), true
	case uint:
		return strconv.FormatUint(uint64(n), 10), true
	case uint8:
		return strconv.FormatUint(uint64(n), 10), true
	case uint16:
		return strconv.FormatUint(uint64(n), 10), true
	case uint32:
		return strconv.FormatUint(uint64(n), 10), true
	case uint64:
		return strconv.FormatUint(n, 10), true
	}
	return "", false
}

// canonicalNumber reduces a JSON number to sign, significant digits and
// exponent, exactly and without big arithmetic (so "1e999999999" costs
// nothing). ok is false for text that is not a JSON number or whose exponent
// does not fit; callers then fall back to comparing the text.
func canonicalNumber(s string) (string, bool) {
	neg := false
	if strings.HasPrefix(s, "-") {
		neg = true
		s = s[1:]
	}
	mant, exp := s, ""
	if i := strings.IndexAny(s, "eE"); i >= 0 {
		mant, exp = s[:i], s[i+1:]
	}
	intPart, frac := mant, ""
	if i := strings.IndexByte(mant, '.'); i >= 0 {
		intPart, frac = mant[:i], mant[i+1:]
	}
	if intPart == "" || !allDigits(intPart) || !allDigits(frac) {
		return "", false
	}
	var e int64
	if exp != "" {
		if len(exp) > 15 {
			return "", false
		}
		v, err := strconv.ParseInt(exp, 10, 64)
		if err != nil {
			return "", false
		}
		e = v
	}
	digits := strings.TrimLeft(intPart+frac, "0")
	e -= int64(len(frac))
	if digits == "" {
		return "0", true
	}
	trimmed := strings.TrimRight(digits, "0")
	e += int64(len(digits) - len(trimmed))
	sign := ""
	if neg {
		sign = "-"
	}
	return sign + trimmed + "e" + strconv.FormatInt(e, 10), true
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
