package doc

import (
	"encoding/json"
	"reflect"
	"testing"
)

func FuzzUpdate(f *testing.F) {
	seeds := []string{
		`{"state":{"desired":{"color":"RED","sequence":["RED","GREEN","BLUE"]},"reported":{"color":"GREEN"}},"clientToken":"t","version":0}`,
		`{"state":{"desired":null,"reported":{"engine":null}}}`,
		`{"state":null}`,
		`{"state":{}}`,
		`{"state":{"reported":{"a":[[[[[1]]]]]}}}`,
		`{"state":{"desired":{"a":{"b":{"c":{"d":{"e":{"f":1}}}}}}}}`,
		`{"state":{"desired":{"colors":[null]}}}`,
		`{"state":{"delta":{}}}`,
		`{"state":{"desired":{"big":12345678901234567890123,"f":1.50,"e":1e400}}}`,
		`{"state":{"reported":{"x":{"y":null}}},"version":"1"}`,
		`{"state":5}`,
		`{"clientToken":7}`,
		"{\"state\":{\"desired\":{\"\xff\":1}}}",
		`[]`,
		``,
	}
	for _, s := range seeds {
		f.Add([]byte(s), []byte(`{"state":{"desired":{"a":1,"o":{"p":[1]}},"reported":{"a":2}}}`))
	}
	f.Fuzz(func(t *testing.T, payload, first []byte) {
		now := at(1_600_000_000)
		cur := Shadow{}
		if res, e := Update(cur, first, now, DefaultLimits()); e == nil {
			cur = res.Next
		}
		res, e := Update(cur, payload, now, DefaultLimits())
		if e != nil {
			if !json.Valid(e.Document(now)) {
				t.Fatalf("error document is not JSON: %s", e.Document(now))
			}
			return
		}
		for name, b := range map[string][]byte{"accepted": res.Accepted, "documents": res.Documents} {
			if !json.Valid(b) {
				t.Fatalf("%s is not JSON: %s", name, b)
			}
		}
		if res.Delta != nil && !json.Valid(res.Delta) {
			t.Fatalf("delta is not JSON: %s", res.Delta)
		}
		if res.Next.Version != cur.Version+1 || !res.Next.Exists {
			t.Fatalf("version %d after %d", res.Next.Version, cur.Version)
		}
		got, ge := Get(res.Next, "t", nil, now)
		if ge != nil || !json.Valid(got) {
			t.Fatalf("get after accepted update: %v %s", ge, got)
		}
		stored, err := res.Next.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		var back Shadow
		if err := back.UnmarshalBinary(stored); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(back, res.Next) {
			t.Fatalf("stored form does not round trip: %s", stored)
		}
	})
}
