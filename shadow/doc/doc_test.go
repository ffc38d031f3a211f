package doc

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

func TestBinaryRoundTrip(t *testing.T) {
	s := mustUpdate(t, Shadow{Version: 41}, `{"state":{"desired":{"big":12345678901234567890123,"t":1.50,"list":[{"a":"<b>"},[1,2]],"o":{"p":true}},"reported":{"e":-0.0e-7}}}`, 1000).Next
	s = mustUpdate(t, s, `{"state":{"reported":{"o":{"q":"x"}}}}`, 2000).Next

	b, err := s.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	var back Shadow
	if err := back.UnmarshalBinary(b); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back, s) {
		t.Fatalf("round trip changed the shadow\n got: %#v\nwant: %#v", back, s)
	}
	again, err := back.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(again, b) {
		t.Fatalf("stored form is not stable\n%s\n%s", b, again)
	}
	if !bytes.Contains(b, []byte(`12345678901234567890123`)) || !bytes.Contains(b, []byte(`1.50`)) {
		t.Fatalf("numbers not kept as sent: %s", b)
	}
	var probe map[string]any
	if err := json.Unmarshal(b, &probe); err != nil || probe["format"] != float64(1) {
		t.Fatalf("stored form lacks format 1: %s", b)
	}
}

func TestBinaryRoundTripDeletedShadow(t *testing.T) {
	s := mustUpdate(t, Shadow{}, `{"state":{"reported":{"a":1}}}`, 1000).Next
	s, _, e := Delete(s, thing, nil, at(2000))
	if e != nil {
		t.Fatal(e)
	}
	b, err := s.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	var back Shadow
	if err := back.UnmarshalBinary(b); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back, Shadow{Version: 1}) {
		t.Fatalf("got %#v", back)
	}
}

func TestUnmarshalBinaryRefusesUnknownForms(t *testing.T) {
	for _, in := range []string{
		``, `[]`, `{"format":2,"exists":true,"version":1}`, `{"exists":true,"version":1}`,
		`{"format":1,"version":1}`, `{"format":1,"exists":true,"version":-1}`,
		`{"format":1,"exists":true,"version":1,"desired":[1]}`, `{"format":1,"exists":true,"version":1} x`,
	} {
		var s Shadow
		if err := s.UnmarshalBinary([]byte(in)); err == nil {
			t.Errorf("UnmarshalBinary(%q) accepted", in)
		}
	}
}

func TestUpdateDoesNotModifyItsInput(t *testing.T) {
	cur := mustUpdate(t, Shadow{}, `{"state":{"desired":{"a":{"b":1},"l":[1]},"reported":{"a":{"b":2}}}}`, 1000).Next
	before, _ := cur.MarshalBinary()
	mustUpdate(t, cur, `{"state":{"desired":{"a":{"b":null,"c":3},"l":[2]},"reported":null}}`, 2000)
	Get(cur, thing, nil, at(3000))
	Delete(cur, thing, nil, at(3000))
	after, _ := cur.MarshalBinary()
	if !bytes.Equal(before, after) {
		t.Fatalf("input shadow changed\nbefore %s\nafter  %s", before, after)
	}
}

func TestOutputsDoNotEscapeHTML(t *testing.T) {
	res := mustUpdate(t, Shadow{}, `{"state":{"desired":{"html":"<b>&"}}}`, 1000)
	for name, b := range map[string][]byte{"accepted": res.Accepted, "delta": res.Delta, "documents": res.Documents} {
		if !bytes.Contains(b, []byte(`"<b>&"`)) {
			t.Errorf("%s escaped the string: %s", name, b)
		}
	}
}

func TestSizeCountsRawBytesNotEscapes(t *testing.T) {
	// 8184 "<" make {"k":"<<<..."} exactly 8192 bytes; escaped as \u003c it
	// would be six times larger.
	p := `{"state":{"reported":{"k":"` + strings.Repeat("<", 8184) + `"}}}`
	if _, e := Update(Shadow{}, []byte(p), at(1), DefaultLimits()); e != nil {
		t.Fatalf("rejected: %v", e)
	}
}

func TestZeroLimitsMeanDefaults(t *testing.T) {
	p := `{"state":{"desired":` + nested(7, `1`) + `}}`
	_, e := Update(Shadow{}, []byte(p), at(1), Limits{})
	if e == nil || e.Message != "JSON contains too many levels of nesting; maximum is 6" {
		t.Fatalf("got %v", e)
	}
}

func TestConfiguredDepthAppearsInMessage(t *testing.T) {
	_, e := Update(Shadow{}, []byte(`{"state":{"desired":{"a":{"b":1}}}}`), at(1), Limits{MaxDepth: 1})
	if e == nil || e.Code != 400 || e.Message != "JSON contains too many levels of nesting; maximum is 1" {
		t.Fatalf("got %v", e)
	}
}

func TestErrorFor(t *testing.T) {
	cases := []struct {
		code    int
		msg     string
		payload string
		want    string
	}{
		{429, "", `{"clientToken":"abc","state":{}}`, `{"code":429,"message":"Too Many Requests","timestamp":7,"clientToken":"abc"}`},
		{500, "", `not json`, `{"code":500,"message":"Internal service failure","timestamp":7}`},
		{401, "", ``, `{"code":401,"message":"Unauthorized","timestamp":7}`},
		{403, "", `{"clientToken":5}`, `{"code":403,"message":"Forbidden","timestamp":7}`},
		{404, "Thing not found", `{"clientToken":"` + strings.Repeat("x", 65) + `"}`, `{"code":404,"message":"Thing not found","timestamp":7}`},
	}
	for _, c := range cases {
		e := ErrorFor(c.code, c.msg, []byte(c.payload))
		assertJSON(t, "ErrorFor", e.Document(at(7)), c.want)
	}
	if got := ErrorFor(409, "", nil).Error(); got != "shadow: 409 Version conflict" {
		t.Errorf("Error() = %q", got)
	}
}

func TestDocumentOfMissingShadowIsNil(t *testing.T) {
	if Document(Shadow{Version: 3}, at(1)) != nil {
		t.Fatal("document for a deleted shadow")
	}
}

func TestCanonicalNumber(t *testing.T) {
	same := [][2]string{{"1.50", "1.5"}, {"100", "1e2"}, {"0.001", "1E-3"}, {"-0", "0"}, {"0.0", "0e10"}, {"12.3400e1", "123.4"}}
	for _, p := range same {
		if !equalValues(json.Number(p[0]), json.Number(p[1])) {
			t.Errorf("%s != %s", p[0], p[1])
		}
	}
	differ := [][2]string{{"1.5", "1.51"}, {"-1", "1"}, {"1e999999999", "1e999999998"}, {"10", "1"}}
	for _, p := range differ {
		if equalValues(json.Number(p[0]), json.Number(p[1])) {
			t.Errorf("%s == %s", p[0], p[1])
		}
	}
}
