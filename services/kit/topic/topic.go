// Package topic holds the MQTT topic rules of Greengrass v1: what a publish
// topic and a subscription filter may look like, and how a filter matches a
// topic. The broker, the router, the spooler and the group validator all use
// it, so a subject that deploys is exactly a subject that routes.
package topic

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// Limits that AWS IoT and the v1 core apply to topics and filters alike.
const (
	MaxBytes   = 256 // UTF-8 bytes in a topic or filter
	MaxSlashes = 7   // '/' separators in a topic or filter
)

// ValidateTopic reports whether t may be used as the topic of a PUBLISH:
// non-empty, valid UTF-8 without NUL, no wildcard characters, at most
// MaxBytes bytes and MaxSlashes slashes.
func ValidateTopic(t string) error {
	if err := checkCommon("topic", t); err != nil {
		return err
	}
	if i := strings.IndexAny(t, "+#"); i >= 0 {
		return fmt.Errorf("topic contains wildcard %q at byte %d; wildcards are only allowed in subscription filters", t[i], i)
	}
	return nil
}

// ValidateFilter reports whether f may be used as a subscription filter: the
// limits of ValidateTopic, except that '+' may stand for a whole level and
// '#' for the whole last level.
func ValidateFilter(f string) error {
	if err := checkCommon("filter", f); err != nil {
		return err
	}
	level := 0
	for rest := f; ; level++ {
		l, next, more := strings.Cut(rest, "/")
		switch {
		case l == "#" && more:
			return fmt.Errorf("filter level %d is '#', which is only allowed as the last level", level+1)
		case l == "+" || l == "#":
		case strings.ContainsRune(l, '+'):
			return fmt.Errorf("filter level %d %q: '+' must occupy a whole level", level+1, l)
		case strings.ContainsRune(l, '#'):
			return fmt.Errorf("filter level %d %q: '#' must occupy the whole last level", level+1, l)
		}
		if !more {
			return nil
		}
		rest = next
	}
}

func checkCommon(what, s string) error {
	if s == "" {
		return errors.New(what + " is empty")
	}
	if !utf8.ValidString(s) {
		return errors.New(what + " is not valid UTF-8")
	}
	if i := strings.IndexByte(s, 0); i >= 0 {
		return fmt.Errorf("%s contains a NUL character at byte %d", what, i)
	}
	if len(s) > MaxBytes {
		return fmt.Errorf("%s is %d bytes, the limit is %d", what, len(s), MaxBytes)
	}
	if n := strings.Count(s, "/"); n > MaxSlashes {
		return fmt.Errorf("%s has %d slashes, the limit is %d", what, n, MaxSlashes)
	}
	return nil
}

// Match reports whether topic matches filter with MQTT semantics: '+'
// matches exactly one level (possibly empty), '#' matches zero or more
// trailing levels, so "a/#" matches "a" itself. A filter that starts with a
// wildcard does not match a topic starting with '$' (reserved topics such as
// $aws/things/.../shadow must be named explicitly).
//
// Match does not check the byte and slash limits, but it never matches when
// the filter misplaces a wildcard or the topic contains one, so a malformed
// subject cannot widen a route. It does not allocate.
func Match(filter, topic string) bool {
	if filter == "" || topic == "" {
		return false
	}
	if topic[0] == '$' && (filter[0] == '+' || filter[0] == '#') {
		return false
	}
	f, t := filter, topic
	topicDone := false // every level of topic has been consumed
	for {
		fl, frest, fmore := strings.Cut(f, "/")
		if fl == "#" {
			return !fmore && !hasWildcard(t)
		}
		if topicDone {
			return false
		}
		tl, trest, tmore := strings.Cut(t, "/")
		// A literal level equal to the topic level holds a wildcard only if
		// the topic level does, so checking the topic covers both.
		if (fl != "+" && fl != tl) || hasWildcard(tl) {
			return false
		}
		if !fmore {
			return !tmore
		}
		f = frest
		if tmore {
			t = trest
		} else {
			t, topicDone = "", true
		}
	}
}

func hasWildcard(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] == '+' || s[i] == '#' {
			return true
		}
	}
	return false
}
