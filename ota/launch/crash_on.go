//go:build failpoints

package launch

import (
	"fmt"
	"os"
)

// crashAtStart, set with -ldflags "-X .../ota/launch.crashAtStart=yes" in
// a build with -tags failpoints, makes `ggd --root DIR` exit at once: the
// version that crashes at start of the OTA tests.
var crashAtStart string

func crashForTest() {
	if crashAtStart != "" {
		fmt.Fprintln(os.Stderr, "ggd: built to crash at start (a failpoints test build)")
		os.Exit(3)
	}
}
