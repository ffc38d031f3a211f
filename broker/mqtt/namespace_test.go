package mqtt

import "testing"

func TestInNamespace(t *testing.T) {
	for _, tc := range []struct {
		id, topic string
		want      bool
	}{
		{"dev", "$gg/dev/a", true},
		{"dev", "$gg/dev/a/b", true},
		{"dev", "$gg/dev/", false},
		{"dev", "$gg/dev", false},
		{"dev", "$gg/device/a", false},
		{"dev", "$gg/de/a", false},
		{"dev", "$gg/other/a", false},
		{"dev", "dev/a", false},
		{"dev", "$evergreen/will/a", false},
		{"a:b-c_d", "$gg/a:b-c_d/x", true},
	} {
		if got := inNamespace(tc.id, tc.topic); got != tc.want {
			t.Errorf("inNamespace(%q, %q) = %v, want %v", tc.id, tc.topic, got, tc.want)
		}
	}
}
