package bundle

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// ErrNotVersion: a version string that cannot be ordered ("dev", a bare
// git hash). Whether such an update is a downgrade cannot be decided.
var ErrNotVersion = errors.New("not an ordered version")

// version is a parsed semantic version, with git describe's distance from
// the tag it was built after.
type version struct {
	core     [3]uint64
	pre      []string // nil for a release
	distance uint64   // commits after the tag (git describe), 0 on the tag
	commit   string   // git describe's abbreviated commit, "" on the tag
}

// describeSuffix finds what `git describe --tags` adds after the tag when
// HEAD is past it, -<commits>-g<hash> (hash 4..40 lowercase hex digits),
// returning the whole suffix, the count and the hash. (No regexp: ggd
// runs this package's init in every daemon.)
func describeSuffix(s string) (whole, count, hash string, ok bool) {
	g := strings.LastIndex(s, "-g")
	if g < 0 {
		return "", "", "", false
	}
	hash = s[g+2:]
	if len(hash) < 4 || len(hash) > 40 || strings.Trim(hash, "0123456789abcdef") != "" {
		return "", "", "", false
	}
	d := strings.LastIndex(s[:g], "-")
	if d < 0 {
		return "", "", "", false
	}
	count = s[d+1 : g]
	if count == "" || strings.Trim(count, "0123456789") != "" {
		return "", "", "", false
	}
	return s[d:], count, hash, true
}

// CompareVersions orders two versions: -1 when a is older than b, 0 when
// they are the same, +1 when a is newer. It reads semantic versions with
// or without a leading "v" ("1.2.3", "v1.2.3", "1.2", "1.2.3-rc.1",
// "1.2.3+build"): a pre-release is older than its release, build metadata
// and a "-dirty" suffix are ignored; and what `git describe --tags` makes
// of a commit after a tag ("v1.2.3-4-gdeadbee"), which is newer than the
// tag and older than the next version. "dev", a bare git hash, or two
// builds the same distance past a tag from different commits cannot be
// ordered: the error wraps ErrNotVersion.
func CompareVersions(a, b string) (int, error) {
	va, err := parseVersion(a)
	if err != nil {
		return 0, err
	}
	vb, err := parseVersion(b)
	if err != nil {
		return 0, err
	}
	for i := range va.core {
		if c := cmpUint(va.core[i], vb.core[i]); c != 0 {
			return c, nil
		}
	}
	if c := comparePre(va.pre, vb.pre); c != 0 {
		return c, nil
	}
	if c := cmpUint(va.distance, vb.distance); c != 0 {
		return c, nil
	}
	if va.commit != vb.commit {
		return 0, fmt.Errorf("%w: %q and %q are different commits %d after the same tag", ErrNotVersion, a, b, va.distance)
	}
	return 0, nil
}

func parseVersion(s string) (version, error) {
	bad := func() (version, error) {
		return version{}, fmt.Errorf("%w: %q (want MAJOR.MINOR.PATCH, as in 1.2.3, v1.2.3 or 1.2.3-rc.1)", ErrNotVersion, s)
	}
	var v version
	rest := strings.TrimPrefix(s, "v")
	if i := strings.IndexByte(rest, '+'); i >= 0 {
		rest = rest[:i]
	}
	rest = strings.TrimSuffix(rest, "-dirty")
	if whole, count, hash, ok := describeSuffix(rest); ok {
		d, err := strconv.ParseUint(count, 10, 64)
		if err != nil {
			return bad()
		}
		v.distance, v.commit = d, hash
		rest = rest[:len(rest)-len(whole)]
	}
	core, pre, hasPre := strings.Cut(rest, "-")
	parts := strings.Split(core, ".")
	if len(parts) < 2 || len(parts) > 3 {
		return bad()
	}
	for i, p := range parts {
		n, ok := numeric(p)
		if !ok {
			return bad()
		}
		v.core[i] = n
	}
	if hasPre {
		for id := range strings.SplitSeq(pre, ".") {
			if id == "" || strings.Trim(id, "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-") != "" {
				return bad()
			}
			if isDigits(id) {
				if _, ok := numeric(id); !ok {
					return bad()
				}
			}
			v.pre = append(v.pre, id)
		}
	}
	return v, nil
}

// comparePre orders pre-release identifiers as semver does: none (a
// release) is newest; numeric identifiers compare as numbers and before
// alphanumeric ones; a shorter list that is a prefix is older.
func comparePre(a, b []string) int {
	switch {
	case a == nil && b == nil:
		return 0
	case a == nil:
		return 1
	case b == nil:
		return -1
	}
	for i := 0; i < len(a) && i < len(b); i++ {
		na, aNum := numeric(a[i])
		nb, bNum := numeric(b[i])
		switch {
		case aNum && bNum:
			if c := cmpUint(na, nb); c != 0 {
				return c
			}
		case aNum:
			return -1
		case bNum:
			return 1
		default:
			if c := strings.Compare(a[i], b[i]); c != 0 {
				return c
			}
		}
	}
	return cmpUint(uint64(len(a)), uint64(len(b)))
}

// numeric parses a number without leading zeros.
func numeric(s string) (uint64, bool) {
	if !isDigits(s) || (len(s) > 1 && s[0] == '0') {
		return 0, false
	}
	n, err := strconv.ParseUint(s, 10, 64)
	return n, err == nil
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

func cmpUint(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
