package e2e

import (
	"os/exec"
	"testing"

	"github.com/evergreen-edge/evergreen/services/internal/suitetest"
)

// needTool skips the test when tool is not on PATH, or fails it when CI
// says every test must run (EVERGREEN_REQUIRE_ALL).
func needTool(t *testing.T, tool, install string) {
	t.Helper()
	if _, err := exec.LookPath(tool); err != nil {
		if suitetest.RequireAll() {
			t.Fatalf("%s not found (EVERGREEN_REQUIRE_ALL is set): %s", tool, install)
		}
		t.Skipf("%s not found: %s", tool, install)
	}
}

// needPython is for tests whose functions run on python3.x.
func needPython(t *testing.T) { t.Helper(); needTool(t, "python3", "apt-get install python3") }

// needNode is for tests whose functions run on nodejs.
func needNode(t *testing.T) { t.Helper(); needTool(t, "node", "apt-get install nodejs") }
