//go:build !failpoints

package launch

// crashForTest does nothing without the failpoints build tag.
func crashForTest() {}
