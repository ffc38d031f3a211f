package topic

import "testing"

func TestParseShadow(t *testing.T) {
	for _, c := range []struct {
		in   string
		want Shadow
		ok   bool
	}{
		{"$aws/things/lamp/shadow/update", Shadow{Thing: "lamp", Op: "update"}, true},
		{"$aws/things/lamp/shadow/update/delta", Shadow{Thing: "lamp", Op: "update", Result: "delta"}, true},
		{"$aws/things/lamp/shadow/get/accepted", Shadow{Thing: "lamp", Op: "get", Result: "accepted"}, true},
		{"$aws/things/lamp/shadow/delete/rejected", Shadow{Thing: "lamp", Op: "delete", Result: "rejected"}, true},
		{"$aws/things/lamp/shadow/name/cfg/update/documents", Shadow{Thing: "lamp", Name: "cfg", Op: "update", Result: "documents"}, true},
		{"$aws/things/lamp/shadow/name/cfg/get", Shadow{Thing: "lamp", Name: "cfg", Op: "get"}, true},
		{"$aws/things/lamp/shadow/get/delta", Shadow{}, false},
		{"$aws/things/lamp/shadow/list", Shadow{}, false},
		{"$aws/things/lamp/shadow", Shadow{}, false},
		{"$aws/things//shadow/get", Shadow{}, false},
		{"$aws/things/lamp/shadow/name//get", Shadow{}, false},
		{"$aws/things/lamp/shadow/update/accepted/x", Shadow{}, false},
		{"$aws/things/+/shadow/get", Shadow{}, false},
		{"things/lamp/shadow/get", Shadow{}, false},
	} {
		got, ok := ParseShadow(c.in)
		if ok != c.ok || got != c.want {
			t.Errorf("ParseShadow(%q) = %+v, %v; want %+v, %v", c.in, got, ok, c.want, c.ok)
		}
		if ok && got.Topic(got.Op, got.Result) != c.in {
			t.Errorf("Topic round trip of %q = %q", c.in, got.Topic(got.Op, got.Result))
		}
	}
}
