package main

import (
	"bytes"
	"strings"
	"testing"
)

// run is what the binary executes: exit codes and the one-line error
// contract hold at this level too.
func TestRun(t *testing.T) {
	root := t.TempDir()
	for _, tc := range []struct {
		args   []string
		code   int
		stdout string
		stderr string
	}{
		{[]string{"--root", root, "version"}, 0, "ggctl ", ""},
		{[]string{"help"}, 0, "Exit codes:", ""},
		{[]string{"--root", root, "launch"}, 2, "", "ggctl: unknown command \"launch\""},
		{[]string{"--root", root, "device", "list"}, 3, "", "ggctl: cannot reach certmgr: no socket at " + root + "/run/certmgr.sock"},
		{[]string{"--root", root, "status"}, 3, "", "is the suite running? (ggd --root " + root + ")"},
	} {
		var out, errb bytes.Buffer
		code := run(tc.args, &out, &errb)
		if code != tc.code || !strings.Contains(out.String(), tc.stdout) || !strings.Contains(errb.String(), tc.stderr) {
			t.Fatalf("%v: exit %d\nstdout %q\nstderr %q", tc.args, code, out.String(), errb.String())
		}
		if code != 0 && strings.Count(errb.String(), "\n") != 1 {
			t.Fatalf("%v: stderr is not one line: %q", tc.args, errb.String())
		}
	}
}
