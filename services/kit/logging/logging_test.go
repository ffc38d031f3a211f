package logging

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestRotationKeepsFilesUnderCap(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "d.log")
	r, err := OpenRotating(path, 1000, 2)
	if err != nil {
		t.Fatal(err)
	}
	line := []byte(strings.Repeat("x", 99) + "\n")
	for i := 0; i < 100; i++ {
		if _, err := r.Write(line); err != nil {
			t.Fatal(err)
		}
	}
	r.Close()
	matches, _ := filepath.Glob(path + "*")
	if len(matches) != 3 {
		t.Fatalf("want d.log, d.log.1, d.log.2; got %v", matches)
	}
	for _, m := range matches {
		st, _ := os.Stat(m)
		if st.Size() > 1000 {
			t.Fatalf("%s is %d bytes, over the 1000 cap", m, st.Size())
		}
	}
}

func TestLoggerWritesBoth(t *testing.T) {
	dir := t.TempDir()
	var stderr bytes.Buffer
	log, c, err := New("certmgr", Options{File: filepath.Join(dir, "certmgr.log"), Stderr: &stderr, Level: "debug"})
	if err != nil {
		t.Fatal(err)
	}
	log.Debug("hello", "k", 1)
	c.Close()
	b, _ := os.ReadFile(filepath.Join(dir, "certmgr.log"))
	if !strings.Contains(string(b), "daemon=certmgr") || !strings.Contains(stderr.String(), "msg=hello") {
		t.Fatalf("file %q stderr %q", b, stderr.String())
	}
	if _, _, err := New("x", Options{Level: "loud"}); err == nil {
		t.Fatal("bad level accepted")
	}
}
