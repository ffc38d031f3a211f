package topic

import (
	"strings"
	"testing"
)

func TestValidateTopic(t *testing.T) {
	tests := []struct {
		topic   string
		wantErr string // substring; "" means valid
	}{
		{"hello/world", ""},
		{"a", ""},
		{"/", ""},
		{"a//b", ""},
		{"$aws/things/sensor-1/shadow/update", ""},
		{"ünïcode/主题", ""},
		{"a/b/c/d/e/f/g/h", ""}, // exactly 7 slashes
		{strings.Repeat("x", 256), ""},
		{"", "topic is empty"},
		{"a/b/c/d/e/f/g/h/i", "topic has 8 slashes, the limit is 7"},
		{strings.Repeat("x", 257), "topic is 257 bytes, the limit is 256"},
		{"a/+/b", `topic contains wildcard '+' at byte 2`},
		{"a/#", `topic contains wildcard '#' at byte 2`},
		{"a\x00b", "topic contains a NUL character at byte 1"},
		{"a\xffb", "topic is not valid UTF-8"},
	}
	for _, tc := range tests {
		err := ValidateTopic(tc.topic)
		checkErr(t, "ValidateTopic", tc.topic, err, tc.wantErr)
	}
}

func TestValidateFilter(t *testing.T) {
	tests := []struct {
		filter  string
		wantErr string
	}{
		{"hello/world", ""},
		{"#", ""},
		{"+", ""},
		{"+/+", ""},
		{"a/+/c", ""},
		{"a/#", ""},
		{"+/#", ""},
		{"/#", ""},
		{"$aws/things/+/shadow/#", ""},
		{"a/b/c/d/e/f/g/#", ""},
		{"", "filter is empty"},
		{"a/b/c/d/e/f/g/h/#", "filter has 8 slashes, the limit is 7"},
		{strings.Repeat("y", 257), "filter is 257 bytes, the limit is 256"},
		{"a/#/b", "filter level 2 is '#', which is only allowed as the last level"},
		{"#/", "filter level 1 is '#', which is only allowed as the last level"},
		{"a/b#", `filter level 2 "b#": '#' must occupy the whole last level`},
		{"a+/b", `filter level 1 "a+": '+' must occupy a whole level`},
		{"a/++", `filter level 2 "++": '+' must occupy a whole level`},
		{"a\x00", "filter contains a NUL character at byte 1"},
		{"\xc3", "filter is not valid UTF-8"},
	}
	for _, tc := range tests {
		err := ValidateFilter(tc.filter)
		checkErr(t, "ValidateFilter", tc.filter, err, tc.wantErr)
	}
}

func checkErr(t *testing.T, fn, in string, err error, want string) {
	t.Helper()
	switch {
	case want == "" && err != nil:
		t.Errorf("%s(%q) = %v, want nil", fn, in, err)
	case want != "" && err == nil:
		t.Errorf("%s(%q) = nil, want error %q", fn, in, want)
	case want != "" && err.Error() != want && !strings.HasPrefix(err.Error(), want):
		t.Errorf("%s(%q) = %q, want %q", fn, in, err, want)
	}
}

func TestMatch(t *testing.T) {
	tests := []struct {
		filter, topic string
		want          bool
	}{
		{"a/b", "a/b", true},
		{"a/b", "a/c", false},
		{"a/b", "a/b/c", false},
		{"a/b/c", "a/b", false},
		{"a/b", "A/b", false},
		{"+", "a", true},
		{"+", "a/b", false},
		{"+", "/", false},
		{"+/+", "/", true},
		{"a/+", "a/", true}, // '+' matches an empty level
		{"a/+", "a", false},
		{"a/+/c", "a/b/c", true},
		{"a/+/c", "a/b/d", false},
		{"a/+/c", "a/b/x/c", false},
		{"#", "a", true},
		{"#", "a/b/c", true},
		{"#", "/", true},
		{"a/#", "a", true}, // '#' includes the parent level
		{"a/#", "a/", true},
		{"a/#", "a/b/c", true},
		{"a/#", "ab", false},
		{"a/#", "b/a", false},
		{"a/+/#", "a", false},
		{"a/+/#", "a/b", true},
		{"+/#", "a", true},
		{"/#", "/a", true},
		{"/#", "a", false},
		{"hello/world", "hello/world", true},
		// Reserved topics are not matched by a leading wildcard.
		{"#", "$aws/things/x/shadow/update", false},
		{"+/things/x/shadow/update", "$aws/things/x/shadow/update", false},
		{"$aws/#", "$aws/things/x/shadow/update", true},
		{"$aws/things/+/shadow/#", "$aws/things/x/shadow/update/accepted", true},
		{"a/$b", "a/$b", true},
		{"a/+", "a/$b", true}, // only the first character of the topic is special
		// Malformed input never matches.
		{"", "a", false},
		{"a", "", false},
		{"#", "a/+", false},
		{"+", "#", false},
		{"a/+", "a/+", false},
		{"a/#/b", "a/x/b", false},
		{"a+", "a+", false},
		{"a/b#", "a/b#", false},
		{"#/", "a/", false},
	}
	for _, tc := range tests {
		if got := Match(tc.filter, tc.topic); got != tc.want {
			t.Errorf("Match(%q, %q) = %v, want %v", tc.filter, tc.topic, got, tc.want)
		}
		if got := refMatch(tc.filter, tc.topic); got != tc.want {
			t.Errorf("refMatch(%q, %q) = %v, want %v (reference disagrees with the table)", tc.filter, tc.topic, got, tc.want)
		}
	}
}

// refMatch is the textbook definition of Match, written for clarity rather
// than speed: split both on '/', then walk the levels.
func refMatch(filter, topic string) bool {
	if filter == "" || topic == "" || strings.ContainsAny(topic, "+#") {
		return false
	}
	fl := strings.Split(filter, "/")
	tl := strings.Split(topic, "/")
	for i, l := range fl {
		if (l != "+" && l != "#" && strings.ContainsAny(l, "+#")) || (l == "#" && i != len(fl)-1) {
			return false
		}
	}
	if strings.HasPrefix(topic, "$") && (fl[0] == "+" || fl[0] == "#") {
		return false
	}
	for i, l := range fl {
		if l == "#" {
			return true
		}
		if i >= len(tl) {
			return false
		}
		if l != "+" && l != tl[i] {
			return false
		}
	}
	return len(fl) == len(tl)
}

func TestMatchAllocatesNothing(t *testing.T) {
	allocs := testing.AllocsPerRun(100, func() {
		Match("$aws/things/+/shadow/#", "$aws/things/sensor-1/shadow/update/accepted")
	})
	if allocs != 0 {
		t.Fatalf("Match allocates %v times per call, want 0", allocs)
	}
}

func FuzzMatch(f *testing.F) {
	seeds := [][2]string{
		{"a/b", "a/b"},
		{"a/+", "a/b"},
		{"a/#", "a"},
		{"#", "$aws/x"},
		{"+/+/#", "//"},
		{"a/#/b", "a/x/b"},
		{"$aws/things/+/shadow/#", "$aws/things/s/shadow/get"},
		{"", ""},
		{"+", "+"},
		{"a\x00", "a\x00"},
	}
	for _, s := range seeds {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, filter, topic string) {
		got := Match(filter, topic)
		if want := refMatch(filter, topic); got != want {
			t.Fatalf("Match(%q, %q) = %v, reference says %v", filter, topic, got, want)
		}
		topicOK := ValidateTopic(topic) == nil
		filterOK := ValidateFilter(filter) == nil
		if topicOK {
			// A valid topic is a valid filter that matches exactly itself.
			if ValidateFilter(topic) != nil {
				t.Fatalf("valid topic %q is not a valid filter", topic)
			}
			if !Match(topic, topic) {
				t.Fatalf("Match(%q, %q) = false for a topic against itself", topic, topic)
			}
			if want := topic[0] != '$'; Match("#", topic) != want {
				t.Fatalf("Match(\"#\", %q) = %v, want %v", topic, !want, want)
			}
		}
		if got && filterOK && !strings.ContainsAny(filter, "+#") && filter != topic {
			t.Fatalf("wildcard-free filter %q matched a different topic %q", filter, topic)
		}
		if got && !strings.ContainsAny(filter, "+#") && !topicOK && strings.ContainsAny(topic, "+#") {
			t.Fatalf("Match(%q, %q) matched a topic containing a wildcard", filter, topic)
		}
		if got && strings.Count(filter, "/") > strings.Count(topic, "/")+1 {
			t.Fatalf("filter %q with more levels than topic %q + 1 matched", filter, topic)
		}
	})
}

func BenchmarkMatch(b *testing.B) {
	cases := []struct {
		name, filter, topic string
	}{
		{"exact", "sensors/building-1/floor-2/temperature", "sensors/building-1/floor-2/temperature"},
		{"plus", "sensors/+/+/temperature", "sensors/building-1/floor-2/temperature"},
		{"hash", "sensors/#", "sensors/building-1/floor-2/temperature"},
		{"shadow", "$aws/things/+/shadow/#", "$aws/things/sensor-1/shadow/update/accepted"},
		{"miss-early", "alerts/#", "sensors/building-1/floor-2/temperature"},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				Match(c.filter, c.topic)
			}
		})
		b.Run(c.name+"/split-reference", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				refMatch(c.filter, c.topic)
			}
		})
	}
}
