package bundle

import (
	"errors"
	"testing"
)

func TestCompareVersions(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want int
	}{
		{"1.2.3", "1.2.3", 0},
		{"v1.2.3", "1.2.3", 0},
		{"1.2.3", "1.2.4", -1},
		{"1.2.10", "1.2.9", 1},
		{"1.10.0", "1.9.9", 1},
		{"2.0.0", "1.99.99", 1},
		{"1.2", "1.2.0", 0},
		{"1.2.3-rc.1", "1.2.3", -1},
		{"1.2.3", "1.2.3-rc.1", 1},
		{"1.2.3-rc.1", "1.2.3-rc.2", -1},
		{"1.2.3-rc.2", "1.2.3-rc.10", -1},
		{"1.2.3-alpha", "1.2.3-beta", -1},
		{"1.2.3-alpha", "1.2.3-alpha.1", -1},
		{"1.2.3-1", "1.2.3-alpha", -1},
		{"1.2.3-rc.1", "1.2.2", 1},
		{"1.2.3+build.7", "1.2.3+build.8", 0},
		{"v1.2.3-dirty", "v1.2.3", 0},
		// git describe: commits past a tag are newer than it, older than
		// the next release.
		{"v1.2.3-4-gdeadbee", "v1.2.3", 1},
		{"v1.2.3-4-gdeadbee", "v1.2.4", -1},
		{"v1.2.3-4-gdeadbee", "v1.2.3-12-gcafe123", -1},
		{"v1.2.3-4-gdeadbee-dirty", "v1.2.3-4-gdeadbee", 0},
		{"v1.2.3-rc.1-2-gabcdef0", "v1.2.3-rc.1", 1},
		{"v1.2.3-rc.1-2-gabcdef0", "v1.2.3", -1},
		{"18446744073709551615.0.0", "1.0.0", 1},
	} {
		got, err := CompareVersions(tc.a, tc.b)
		if err != nil || got != tc.want {
			t.Errorf("CompareVersions(%q, %q) = %d, %v; want %d", tc.a, tc.b, got, err, tc.want)
		}
		if back, err := CompareVersions(tc.b, tc.a); err != nil || back != -tc.want {
			t.Errorf("CompareVersions(%q, %q) = %d, %v; want %d", tc.b, tc.a, back, err, -tc.want)
		}
	}
	for _, bad := range [][2]string{
		{"dev", "1.0.0"},
		{"1.0.0", "891e969"},
		{"891e969-dirty", "1.0.0"},
		{"1", "1.0.0"},
		{"1.2.3.4", "1.0.0"},
		{"01.2.3", "1.2.3"},
		{"1.2.3-rc.01", "1.2.3"},
		{"1.2.3-", "1.2.3"},
		{"1.2.3-rc..1", "1.2.3"},
		{"", "1.2.3"},
		{"latest", "v1.2.3"},
		{"v1.2.3-4-gdeadbee", "v1.2.3-4-gcafe123"},
		{"18446744073709551616.0.0", "1.0.0"},
	} {
		if got, err := CompareVersions(bad[0], bad[1]); !errors.Is(err, ErrNotVersion) {
			t.Errorf("CompareVersions(%q, %q) = %d, %v; want ErrNotVersion", bad[0], bad[1], got, err)
		}
	}
}
