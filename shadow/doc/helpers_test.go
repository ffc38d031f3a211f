package doc

import (
	"bytes"
	"encoding/json"
	"io"
	"reflect"
	"testing"
	"time"
)

// parseJSON decodes one JSON value keeping numbers as written.
func parseJSON(t *testing.T, what string, b []byte) any {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("%s: not JSON: %v\n%s", what, err, b)
	}
	if _, err := dec.Token(); err != io.EOF {
		t.Fatalf("%s: data after the JSON value\n%s", what, b)
	}
	return v
}

// assertJSON compares two documents semantically: key order is free,
// numbers must be spelled the same.
func assertJSON(t *testing.T, what string, got []byte, want string) {
	t.Helper()
	g := parseJSON(t, what+" (got)", got)
	w := parseJSON(t, what+" (want)", []byte(want))
	if !reflect.DeepEqual(g, w) {
		t.Errorf("%s mismatch\n got: %s\nwant: %s", what, got, compact(t, want))
	}
}

func compact(t *testing.T, s string) string {
	var buf bytes.Buffer
	if err := json.Compact(&buf, []byte(s)); err != nil {
		t.Fatalf("bad expected JSON: %v\n%s", err, s)
	}
	return buf.String()
}

func at(sec int64) time.Time { return time.Unix(sec, 0) }

// mustUpdate applies a payload that must be accepted.
func mustUpdate(t *testing.T, s Shadow, payload string, sec int64) UpdateResult {
	t.Helper()
	res, e := Update(s, []byte(payload), at(sec), DefaultLimits())
	if e != nil {
		t.Fatalf("update %s rejected: %v", payload, e)
	}
	return res
}
