package config

import (
	"encoding/base64"
	"net"
	"net/netip"
	"net/url"
	"path"
	"path/filepath"
	"strconv"
	"strings"
)

// Each rule returns what is wrong with a non-empty value, or "".

func absolutePath(s string) string {
	if !filepath.IsAbs(s) {
		return "is not an absolute path"
	}
	return ""
}

// credentialProblem accepts file:///absolute/path and, unchecked, RFC 7512
// pkcs11: URIs.
func credentialProblem(s string) string {
	if strings.HasPrefix(s, "pkcs11:") {
		return ""
	}
	if _, ok := parseFileURI(s); ok {
		return ""
	}
	return "is not " + credentialRule
}

func parseFileURI(s string) (string, bool) {
	if !strings.HasPrefix(s, "file://") {
		return "", false
	}
	u, err := url.Parse(s)
	if err != nil || u.Scheme != "file" || u.Opaque != "" || u.User != nil ||
		(u.Host != "" && u.Host != "localhost") || u.RawQuery != "" || u.Fragment != "" {
		return "", false
	}
	if !path.IsAbs(u.Path) || u.Path == "/" {
		return "", false
	}
	return u.Path, true
}

// thingName splits arn:<partition>:iot:<region>:<account>:thing/<name>.
func thingName(arn string) (string, bool) {
	parts := strings.SplitN(arn, ":", 6)
	if len(parts) != 6 || parts[0] != "arn" || parts[2] != "iot" {
		return "", false
	}
	if !validPartition(parts[1]) || !validRegion(parts[3]) || !validAccount(parts[4]) {
		return "", false
	}
	name, ok := strings.CutPrefix(parts[5], "thing/")
	if !ok || !validThingName(name) {
		return "", false
	}
	return name, true
}

func thingArnProblem(s string) string {
	name, ok := thingName(s)
	if !ok {
		return "is not a thing ARN (arn:aws:iot:<region>:<12-digit account>:thing/<name>, name of letters, digits, ':', '_' and '-')"
	}
	if len(name) > 124 {
		return "names a core thing longer than 124 bytes"
	}
	return ""
}

func validPartition(s string) bool {
	if s != "aws" && !strings.HasPrefix(s, "aws-") {
		return false
	}
	for _, part := range strings.Split(s, "-") {
		if part == "" || !allOf(part, isLowerOrDigit) {
			return false
		}
	}
	return true
}

func validRegion(s string) bool {
	return s != "" && s[0] != '-' && s[len(s)-1] != '-' &&
		allOf(s, func(r rune) bool { return isLowerOrDigit(r) || r == '-' })
}

func validAccount(s string) bool {
	return len(s) == 12 && allOf(s, func(r rune) bool { return r >= '0' && r <= '9' })
}

func validThingName(s string) bool {
	return s != "" && len(s) <= 128 && allOf(s, func(r rune) bool {
		return isLowerOrDigit(r) || r >= 'A' && r <= 'Z' || r == ':' || r == '_' || r == '-'
	})
}

func isLowerOrDigit(r rune) bool { return r >= 'a' && r <= 'z' || r >= '0' && r <= '9' }

func allOf(s string, ok func(rune) bool) bool {
	for _, r := range s {
		if !ok(r) {
			return false
		}
	}
	return true
}

// validDNSName accepts RFC 1123 host names (underscores allowed, as
// container names use them), with an optional trailing dot.
func validDNSName(s string) bool {
	s = strings.TrimSuffix(s, ".")
	if s == "" || len(s) > 253 {
		return false
	}
	labels := strings.Split(s, ".")
	for _, l := range labels {
		if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return false
		}
		if !allOf(l, func(r rune) bool {
			return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_'
		}) {
			return false
		}
	}
	// An all-numeric last label is a malformed IP address, not a name.
	last := labels[len(labels)-1]
	return !allOf(last, func(r rune) bool { return r >= '0' && r <= '9' })
}

func validIP(s string) bool {
	a, err := netip.ParseAddr(s)
	return err == nil && a.Zone() == ""
}

func hostProblem(s string) string {
	if validIP(s) || validDNSName(s) {
		return ""
	}
	return "is not a host name or IP address"
}

// certNameProblem checks a name for the server certificate: a DNS name
// (optionally with a leading "*." wildcard) or an IP address.
func certNameProblem(s string) string {
	if validIP(s) {
		return ""
	}
	if rest, ok := strings.CutPrefix(s, "*."); ok && validDNSName(rest) {
		return ""
	}
	if validDNSName(s) {
		return ""
	}
	return "is not a DNS name or IP address"
}

// connectivityIDProblem applies v1's Id rules (1..128 of [a-zA-Z0-9:_-])
// plus '.', which v1's own ids carry (AUTOIP_192.168.1.4_1, the documented
// manual localhost_127.0.0.1_0), and keeps the detected entries' prefix for
// them.
func connectivityIDProblem(s string) string {
	if len(s) > 128 || !validThingName(strings.ReplaceAll(s, ".", "_")) {
		return "is not " + connectivityIDRule
	}
	if strings.HasPrefix(s, AutoIPPrefix) {
		return "starts with " + AutoIPPrefix + ", which is kept for detected addresses"
	}
	return ""
}

func metadataProblem(s string) string {
	if len(s) > MaxConnectivityMetadata {
		return "is " + strconv.Itoa(len(s)) + " bytes long, more than " + strconv.Itoa(MaxConnectivityMetadata)
	}
	return ""
}

func proxyURLProblem(s string) string {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Opaque != "" {
		return "is not an http:// or https:// URL"
	}
	host := u.Hostname()
	if host == "" || !(validIP(host) || validDNSName(host)) {
		return "has no valid proxy host"
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return "has a port outside 1..65535"
		}
	}
	if (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
		return "must be scheme://[user@]host[:port] with no path or query"
	}
	return ""
}

// splitListen parses host:port; the host may be empty (every interface),
// an IP address or a host name; the port is 0..65535, 0 picking a free one.
func splitListen(s string) (host string, port int, problem string) {
	h, p, err := net.SplitHostPort(s)
	if err != nil {
		return "", 0, "is not host:port"
	}
	if h != "" && !validDNSName(h) {
		if _, err := netip.ParseAddr(h); err != nil {
			return "", 0, "has a host that is neither an IP address nor a host name"
		}
	}
	if p == "" || len(p) > 5 || !allOf(p, func(r rune) bool { return r >= '0' && r <= '9' }) {
		return "", 0, "has a port that is not a number in 0..65535"
	}
	n, _ := strconv.Atoi(p)
	if n > 65535 {
		return "", 0, "has port " + p + ", out of range 0..65535"
	}
	return h, n, ""
}

func listenProblem(s string) string {
	_, _, problem := splitListen(s)
	return problem
}

func wildcardHost(h string) bool { return h == "" || h == "0.0.0.0" || h == "::" }

// checkListenClash rejects two listeners on one port when their hosts
// overlap (equal, or either a wildcard); port 0 never clashes.
func checkListenClash(l *Listen, path string) error {
	type entry struct{ key, addr, host string }
	var seen []entry
	for _, e := range []struct{ key, addr string }{
		{"mqtt", l.MQTT}, {"ipc", l.IPC}, {"streams", l.Streams},
		{"bus", l.Bus}, {"http", l.HTTP}, {"discovery", l.Discovery}, {"grpc", l.GRPC},
	} {
		if e.addr == "" {
			continue
		}
		h, p, problem := splitListen(e.addr)
		if problem != "" || p == 0 {
			continue
		}
		for _, o := range seen {
			_, op, _ := splitListen(o.addr)
			if op == p && (o.host == h || wildcardHost(o.host) || wildcardHost(h)) {
				return errorf(keyPath(path, e.key), "%s uses the same port as %s (%s)",
					quote(e.addr), keyPath(path, o.key), quote(o.addr))
			}
		}
		seen = append(seen, entry{e.key, e.addr, h})
	}
	return nil
}

// regionProblem accepts an AWS region name such as us-east-1 or
// cn-north-1: lowercase letters, digits and dashes.
func regionProblem(s string) string {
	if len(s) > 32 || !allOf(s, func(r rune) bool { return r == '-' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9' }) ||
		!strings.Contains(s, "-") {
		return "is not an AWS region name (like us-east-1)"
	}
	return ""
}

// endpointURLProblem accepts an http:// or https:// URL with a host.
func endpointURLProblem(s string) string {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Opaque != "" {
		return "is not an http:// or https:// URL with a host"
	}
	return ""
}

// trustedKeyProblem accepts "ed25519:<base64 of 32 bytes>", the form
// `ggctl ota keygen` prints (ota/bundle.MarshalPublicKey).
func trustedKeyProblem(s string) string {
	const rule = `is not "ed25519:<base64 of a 32-byte public key>"`
	b64, ok := strings.CutPrefix(s, "ed25519:")
	if !ok {
		return rule
	}
	b, err := base64.StdEncoding.DecodeString(b64)
	if err != nil || len(b) != 32 {
		return rule
	}
	return ""
}
