//go:build !failpoints

package daemon

// failsHealthForTest is false without the failpoints build tag.
func failsHealthForTest(string) bool { return false }
