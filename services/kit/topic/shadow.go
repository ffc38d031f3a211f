package topic

import "strings"

// ShadowPrefix starts every AWS IoT shadow topic.
const ShadowPrefix = "$aws/things/"

// Shadow is a parsed shadow topic:
// $aws/things/<Thing>/shadow[/name/<Name>]/<Op>[/<Result>].
type Shadow struct {
	Thing string
	// Name is "" for the classic shadow.
	Name string
	// Op is get, update or delete.
	Op string
	// Result is "" for a request, else accepted, rejected, delta (update
	// only) or documents (update only).
	Result string
}

// ParseShadow parses t as a shadow request or response topic.
func ParseShadow(t string) (Shadow, bool) {
	rest, ok := strings.CutPrefix(t, ShadowPrefix)
	if !ok {
		return Shadow{}, false
	}
	parts := strings.Split(rest, "/")
	if len(parts) < 3 || parts[0] == "" || parts[1] != "shadow" {
		return Shadow{}, false
	}
	s := Shadow{Thing: parts[0]}
	parts = parts[2:]
	if len(parts) > 0 && parts[0] == "name" {
		if len(parts) < 3 || parts[1] == "" {
			return Shadow{}, false
		}
		s.Name = parts[1]
		parts = parts[2:]
	}
	switch len(parts) {
	case 1:
	case 2:
		s.Result = parts[1]
	default:
		return Shadow{}, false
	}
	s.Op = parts[0]
	switch s.Op {
	case "get", "delete":
		if s.Result != "" && s.Result != "accepted" && s.Result != "rejected" {
			return Shadow{}, false
		}
	case "update":
		switch s.Result {
		case "", "accepted", "rejected", "delta", "documents":
		default:
			return Shadow{}, false
		}
	default:
		return Shadow{}, false
	}
	if strings.ContainsAny(s.Thing+s.Name, "+#") {
		return Shadow{}, false
	}
	return s, true
}

// Prefix is the topic prefix of the shadow: $aws/things/<Thing>/shadow or
// $aws/things/<Thing>/shadow/name/<Name>.
func (s Shadow) Prefix() string {
	if s.Name == "" {
		return ShadowPrefix + s.Thing + "/shadow"
	}
	return ShadowPrefix + s.Thing + "/shadow/name/" + s.Name
}

// Topic is the topic of op and result ("" for a request) of this shadow.
func (s Shadow) Topic(op, result string) string {
	t := s.Prefix() + "/" + op
	if result != "" {
		t += "/" + result
	}
	return t
}
