package logging

import (
	"bytes"
	"log/slog"
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

// A Control changes the level and the space of a running logger, and
// Reset goes back to the configuration.
func TestControl(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "d.log")
	var stderr bytes.Buffer
	log, c, err := New("d", Options{File: file, MaxFileBytes: 1 << 20, MaxFiles: 3, Level: "info", Stderr: &stderr})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	log.Debug("hidden")
	lvl, _ := ParseGroupLevel("DEBUG")
	c.Set(lvl, 64<<10)
	log.Debug("shown")
	for i := 0; i < 2000; i++ {
		log.Info("filler", "i", i, "pad", strings.Repeat("x", 100))
	}
	var total int64
	matches, _ := filepath.Glob(file + "*")
	for _, m := range matches {
		st, _ := os.Stat(m)
		total += st.Size()
	}
	if total > 64<<10+4096 {
		t.Errorf("files hold %d bytes under a 64 KiB space", total)
	}
	if !strings.Contains(stderr.String(), "shown") || strings.Contains(stderr.String(), "hidden") {
		t.Errorf("levels: %q", stderr.String()[:200])
	}
	fatal, _ := ParseGroupLevel("FATAL")
	c.Set(fatal, 0)
	log.Warn("a warning under FATAL")
	log.Error("an error under FATAL")
	c.Reset()
	log.Info("back")
	if strings.Contains(stderr.String(), "a warning under FATAL") || !strings.Contains(stderr.String(), "an error under FATAL") ||
		!strings.Contains(stderr.String(), "back") || c.Level() != slog.LevelInfo {
		t.Errorf("FATAL then Reset: level %v", c.Level())
	}
	if _, err := ParseGroupLevel("info"); err == nil {
		t.Error("lower-case group level accepted")
	}
}
