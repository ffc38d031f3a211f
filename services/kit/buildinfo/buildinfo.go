// Package buildinfo carries the version and commit stamped in by the
// Makefile's -ldflags.
package buildinfo

import "runtime"

var (
	Version = "dev"
	Commit  = "unknown"
)

// String is "VERSION (COMMIT, goX.Y)".
func String() string { return Version + " (" + Commit + ", " + runtime.Version() + ")" }
