package cli

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func appendFile(t *testing.T, path, s string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o640)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(s); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// rotateLog does what the runtime's log sink does (runtime/worker
// logfile.go): the file becomes path.1 and a new one is started.
func rotateLog(t *testing.T, path string) {
	t.Helper()
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
}

// TestFollowLogRotation drives the follow loop step by step: each time it
// has read everything and would wait, the next step changes the log.
func TestFollowLogRotation(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "fn.log")
	appendFile(t, path, "old1\nold2\n")
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out bytes.Buffer
	if err := printTail(&out, f, 1); err != nil {
		t.Fatal(err)
	}
	steps := []func(){
		func() { appendFile(t, path, "a1\na2\n") },
		// Written to the old file just before the rename, then the new
		// file gets lines before the follower looks again.
		func() {
			appendFile(t, path, "a3\n")
			rotateLog(t, path)
			appendFile(t, path, "b1\n")
		},
		func() { appendFile(t, path, "b2\nb3\n") },
		// The follower looks between the rename and the new file.
		func() { rotateLog(t, path) },
		func() { appendFile(t, path, "c1\n") },
		// A partial line, finished later.
		func() { appendFile(t, path, "c2-") },
		func() { appendFile(t, path, "end\n") },
		// Truncated in place: read again from the start.
		func() {
			if err := os.Truncate(path, 0); err != nil {
				t.Fatal(err)
			}
			appendFile(t, path, "d1\n")
		},
		// A second rotation replaces path.1.
		func() {
			rotateLog(t, path)
			appendFile(t, path, "e1\n")
		},
	}
	n := 0
	wait := func(context.Context) bool {
		if n == len(steps) {
			return false
		}
		steps[n]()
		n++
		return true
	}
	if err := followLog(context.Background(), &out, path, f, wait); err != nil {
		t.Fatal(err)
	}
	want := "old2\na1\na2\na3\nb1\nb2\nb3\nc1\nc2-end\nd1\ne1\n"
	if out.String() != want {
		t.Fatalf("followed:\n%s\nwant:\n%s", out.String(), want)
	}
	if n != len(steps) {
		t.Fatalf("stopped after %d of %d steps", n, len(steps))
	}
}

// TestFnLogsFollowCommand runs `ggctl fn logs NAME -f` itself across a
// rotation and stops it by cancelling its context (Ctrl-C).
func TestFnLogsFollowCommand(t *testing.T) {
	root := t.TempDir()
	path := filepath.Join(root, "logs", "user", "echo.log")
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	appendFile(t, path, "first\n")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out, errOut syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- RunIO(ctx, []string{"--root", root, "fn", "logs", "-f", "echo"}, strings.NewReader(""), &out, &errOut)
	}()
	waitFor := func(want string) {
		t.Helper()
		for end := time.Now().Add(30 * time.Second); !strings.HasSuffix(out.String(), want); {
			if time.Now().After(end) {
				t.Fatalf("output %q does not end with %q (stderr %q)", out.String(), want, errOut.String())
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	waitFor("first\n")
	appendFile(t, path, "before\n")
	rotateLog(t, path)
	appendFile(t, path, "after\n")
	waitFor("after\n")
	cancel()
	if code := <-done; code != 0 {
		t.Fatalf("exit %d, stderr %q", code, errOut.String())
	}
	if got, want := out.String(), "first\nbefore\nafter\n"; got != want {
		t.Fatalf("output %q, want %q", got, want)
	}
}
