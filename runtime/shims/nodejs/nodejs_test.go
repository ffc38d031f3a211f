package nodejs

import (
	"io/fs"
	"os"
	"os/exec"
	"path"
	"strings"
	"testing"
)

// TestNodeSuite runs the Node.js tests of the shims (tests/*.test.js).
func TestNodeSuite(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		if os.Getenv("EVERGREEN_REQUIRE_ALL") != "" {
			t.Fatalf("node not on PATH and EVERGREEN_REQUIRE_ALL is set: %v", err)
		}
		t.Skip("node not on PATH: skipping the Node.js shim tests (set EVERGREEN_REQUIRE_ALL=1 to fail instead)")
	}
	cmd := exec.Command(node, "--test", "tests/")
	// The tests start runtimes with an environment of their own; keep the
	// developer's NODE_OPTIONS (a debugger, a require hook) out of them.
	cmd.Env = withoutVar(os.Environ(), "NODE_OPTIONS")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("node --test tests/: %v\n%s", err, out)
	}
	t.Logf("%s", summary(string(out)))
}

// TestFilesCarryEveryModule pins what the daemon installs: a missing
// file would make `require('aws-greengrass-core-sdk')` fail only on a device.
func TestFilesCarryEveryModule(t *testing.T) {
	want := []string{
		"lambda_nodejs_runtime.js",
		"node_modules/aws-greengrass-common-js/package.json",
		"node_modules/aws-greengrass-common-js/index.js",
		"node_modules/aws-greengrass-common-js/envVars.js",
		"node_modules/aws-greengrass-common-js/functionArnFields.js",
		"node_modules/aws-greengrass-common-js/retry.js",
		"node_modules/aws-greengrass-common-js/versionParser.js",
		"node_modules/aws-greengrass-common-js/encodingType.js",
		"node_modules/aws-greengrass-common-js/config.js",
		"node_modules/aws-greengrass-common-js/localWatchLogger.js",
		"node_modules/aws-greengrass-ipc-sdk-js/package.json",
		"node_modules/aws-greengrass-ipc-sdk-js/index.js",
		"node_modules/aws-greengrass-ipc-sdk-js/ipcclient.js",
		"node_modules/aws-greengrass-core-sdk/package.json",
		"node_modules/aws-greengrass-core-sdk/index.js",
		"node_modules/aws-greengrass-core-sdk/lambda.js",
		"node_modules/aws-greengrass-core-sdk/iotdata.js",
		"node_modules/aws-greengrass-core-sdk/secretsmanager.js",
		"node_modules/aws-greengrass-core-sdk/util.js",
	}
	wanted := map[string]bool{}
	for _, name := range want {
		wanted[name] = true
		if _, err := fs.Stat(Files, name); err != nil {
			t.Errorf("Files lacks %s: %v", name, err)
		}
	}
	// Nothing else: no tests, no Go, no dotfiles. A new module file must be
	// added to want on purpose.
	err := fs.WalkDir(Files, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			return nil
		}
		if !wanted[p] {
			t.Errorf("Files carries an unexpected file: %s", p)
		}
		if base := path.Base(p); strings.HasPrefix(base, ".") || strings.HasPrefix(base, "_") {
			t.Errorf("Files carries a hidden file: %s", p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestShippedFilesMatchTheTree guards against the embed patterns drifting
// from the folder: every .js and package.json under node_modules ships.
func TestShippedFilesMatchTheTree(t *testing.T) {
	err := fs.WalkDir(os.DirFS("."), "node_modules", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			return nil
		}
		if _, err := fs.Stat(Files, p); err != nil {
			t.Errorf("%s is in the tree but not in Files", p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func withoutVar(env []string, name string) []string {
	out := env[:0:0]
	for _, kv := range env {
		if !strings.HasPrefix(kv, name+"=") {
			out = append(out, kv)
		}
	}
	return out
}

// summary is the runner's closing counts ("# tests 80", "# pass 80", ...).
func summary(out string) string {
	var keep []string
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, "# ") && !strings.HasPrefix(line, "# Subtest") {
			keep = append(keep, line)
		}
	}
	return strings.Join(keep, "\n")
}
