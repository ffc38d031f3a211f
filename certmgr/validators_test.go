package certmgr

import (
	"regexp"
	"strings"
	"testing"
)

// The hand-written checks must agree with the patterns they replaced.
func TestValidatorsMatchPatterns(t *testing.T) {
	dns := regexp.MustCompile(`^[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?$`)
	for _, s := range []string{"", "a", "a-b", "-a", "a-", "core_1", "Core1", strings.Repeat("a", 63), strings.Repeat("a", 64), "a.b"} {
		if got, want := isDNSLabel(s), dns.MatchString(s); got != want {
			t.Errorf("isDNSLabel(%q) = %v, the pattern says %v", s, got, want)
		}
	}
	cert := regexp.MustCompile(`^arn:aws[a-z-]*:iot:[^:]*:[^:]*:cert/([0-9a-f]{64})$`)
	hex := strings.Repeat("ab", 32)
	for _, s := range []string{
		"arn:aws:iot:us-east-1:123456789012:cert/" + hex,
		"arn:aws-cn:iot:cn-north-1:123456789012:cert/" + hex,
		"arn:aws-us-gov:iot::123:cert/" + hex,
		"arn:aws:iot:us-east-1:123456789012:cert/" + hex[:63],
		"arn:aws:iot:us-east-1:123456789012:cert/" + hex + "0",
		"arn:aws:iot:us-east-1:123456789012:cert/" + strings.Repeat("g", 64),
		"arn:aws:lambda:us-east-1:123456789012:cert/" + hex,
		"arn:aws1:iot:us-east-1:123456789012:cert/" + hex,
		"arn:aws:iot:us-east-1:123456789012:thing/x",
		"arn:aws:iot:us-east-1:1:2:cert/" + hex,
	} {
		want := ""
		if m := cert.FindStringSubmatch(s); m != nil {
			want = m[1]
		}
		if got := certIDOf(s); got != want {
			t.Errorf("certIDOf(%q) = %q, the pattern says %q", s, got, want)
		}
	}
}
