package runtime

import (
	"log/slog"
	"testing"
)

// The SDKs' log sink lines carry v1 level names; a Lambda AWSCloudWatch
// logger filters by them.
func TestFunctionLineLevel(t *testing.T) {
	for line, want := range map[string]slog.Level{
		"[DEBUG]-main.py:3,x":    slog.LevelDebug,
		"[INFO]-main.py:3,x":     slog.LevelInfo,
		"[WARN]-main.py:3,x":     slog.LevelWarn,
		"[ERROR]-main.py:3,x":    slog.LevelError,
		"[FATAL]-main.py:3,x":    slog.LevelError,
		"no level, from print()": slog.LevelInfo,
		"[unclosed":              slog.LevelInfo,
	} {
		if got := lineLevel(line); got != want {
			t.Errorf("lineLevel(%q) = %v, want %v", line, got, want)
		}
	}
}
