//go:build failpoints

package failpoint

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// Enabled reports whether failpoints are compiled in.
const Enabled = true

// Hit blocks forever when EVERGREEN_FAILPOINT names this point, after
// writing DIR/run/failpoint-<name> (runDir is DIR/run).
func Hit(runDir, name string) {
	if os.Getenv(Env) != name {
		return
	}
	os.MkdirAll(runDir, 0o700)
	os.WriteFile(filepath.Join(runDir, MarkerName(name)), []byte(name+"\n"), 0o600)
	select {}
}

// RefuseApply returns a refusal reason when EVERGREEN_FAILPOINT_REFUSE_APPLY
// names daemon.
func RefuseApply(daemon string) string {
	if slices.Contains(strings.Split(os.Getenv(RefuseEnv), ","), daemon) {
		return daemon + " refuses every APPLY (" + RefuseEnv + ")"
	}
	return ""
}
