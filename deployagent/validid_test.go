package deployagent

import (
	"regexp"
	"strings"
	"testing"
)

// validID must accept exactly what the pattern it replaced accepts.
func TestValidIDMatchesPattern(t *testing.T) {
	re := regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$`)
	for _, id := range []string{"", "a", "A1", "-a", ".a", "a-b.c_d:e", "a b", "a/b", "é", strings.Repeat("x", 128), strings.Repeat("x", 129), "20261126T100731.026Z-140502cb", "_a", "a_"} {
		if got, want := validID(id), re.MatchString(id); got != want {
			t.Errorf("validID(%q) = %v, the pattern says %v", id, got, want)
		}
	}
}
