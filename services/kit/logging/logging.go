// Package logging sets up a daemon's log/slog logger: text to stderr and the
// same records to DIR/logs/system/<daemon>.log, rotated by size with a cap on
// the number of files kept, so logs never grow without bound. A Control
// changes a running logger: the group's loggers set its level and space
// and ask for records to be forwarded to the cloud (forward.go).
package logging

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
)

// Options configure New.
type Options struct {
	// File is the log file; empty logs to Stderr only.
	File string
	// MaxFileBytes rotates the file when a write would pass it.
	MaxFileBytes int64
	// MaxFiles is how many rotated files (<file>.1 .. <file>.N) are kept.
	MaxFiles int
	// Level is debug, info, warn or error.
	Level string
	// Stderr receives a copy of every record; nil means os.Stderr.
	Stderr io.Writer
}

// ParseLevel maps a config level name to a slog level.
func ParseLevel(s string) (slog.Level, error) {
	switch strings.ToLower(s) {
	case "debug":
		return slog.LevelDebug, nil
	case "", "info":
		return slog.LevelInfo, nil
	case "warn":
		return slog.LevelWarn, nil
	case "error":
		return slog.LevelError, nil
	}
	return 0, fmt.Errorf("unknown log level %q (want debug, info, warn or error)", s)
}

// New returns a logger with the daemon name attached and its Control,
// which also closes the file.
func New(daemon string, o Options) (*slog.Logger, *Control, error) {
	lvl, err := ParseLevel(o.Level)
	if err != nil {
		return nil, nil, err
	}
	var w io.Writer = o.Stderr
	if w == nil {
		w = os.Stderr
	}
	c := &Control{name: daemon, level: new(slog.LevelVar), def: lvl}
	c.level.Set(lvl)
	if o.File != "" {
		if c.file, err = OpenRotating(o.File, o.MaxFileBytes, o.MaxFiles); err != nil {
			return nil, nil, err
		}
		c.defMax = c.file.max
		w = io.MultiWriter(w, c.file)
	}
	h := &handler{inner: slog.NewTextHandler(w, &slog.HandlerOptions{Level: c.level}), c: c}
	return slog.New(h).With("daemon", daemon), c, nil
}

// Control changes a running logger made by New: the group's
// GreengrassSystem logger sets its level and the space of its files.
type Control struct {
	name   string
	level  *slog.LevelVar
	def    slog.Level
	file   *Rotating
	defMax int64
	// fwd holds what the group's AWSCloudWatch loggers ask (forward.go).
	fwd forwarding
}

// Level is the level in force.
func (c *Control) Level() slog.Level { return c.level.Level() }

// Set puts a level and a space in force: space bounds the bytes of the
// file and its rotated copies together (at least 64 KiB); space <= 0
// keeps the configured size.
func (c *Control) Set(level slog.Level, space int64) {
	c.level.Set(level)
	if c.file == nil {
		return
	}
	if space <= 0 {
		c.file.setMax(c.defMax)
		return
	}
	c.file.setMax(max(space, 64<<10) / int64(c.file.keep+1))
}

// Reset returns to the configured level and size.
func (c *Control) Reset() {
	c.level.Set(c.def)
	if c.file != nil {
		c.file.setMax(c.defMax)
	}
}

// Close closes the file.
func (c *Control) Close() error {
	if c.file == nil {
		return nil
	}
	return c.file.Close()
}

// Rotating is an io.WriteCloser over a file that rotates by size.
type Rotating struct {
	mu   sync.Mutex
	path string
	max  int64
	keep int
	f    *os.File
	size int64
}

// OpenRotating opens (appending) path. maxBytes <= 0 means 1 MiB; keep <= 0
// means 3.
func OpenRotating(path string, maxBytes int64, keep int) (*Rotating, error) {
	if maxBytes <= 0 {
		maxBytes = 1 << 20
	}
	if keep <= 0 {
		keep = 3
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, err
	}
	r := &Rotating{path: path, max: maxBytes, keep: keep}
	if err := r.open(); err != nil {
		return nil, err
	}
	return r, nil
}

func (r *Rotating) open() error {
	f, err := os.OpenFile(r.path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		return err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return err
	}
	r.f, r.size = f, st.Size()
	return nil
}

func (r *Rotating) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.f == nil {
		return 0, os.ErrClosed
	}
	if r.size > 0 && r.size+int64(len(p)) > r.max {
		if err := r.rotate(); err != nil {
			return 0, err
		}
	}
	n, err := r.f.Write(p)
	r.size += int64(n)
	return n, err
}

func (r *Rotating) rotate() error {
	r.f.Close()
	r.f = nil
	os.Remove(fmt.Sprintf("%s.%d", r.path, r.keep))
	for i := r.keep - 1; i >= 1; i-- {
		os.Rename(fmt.Sprintf("%s.%d", r.path, i), fmt.Sprintf("%s.%d", r.path, i+1))
	}
	if err := os.Rename(r.path, r.path+".1"); err != nil && !os.IsNotExist(err) {
		return err
	}
	return r.open()
}

func (r *Rotating) setMax(n int64) {
	r.mu.Lock()
	r.max = n
	r.mu.Unlock()
}

// Close closes the file.
func (r *Rotating) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.f == nil {
		return nil
	}
	err := r.f.Close()
	r.f = nil
	return err
}

// ParseGroupLevel maps a group logger's Level (DEBUG, INFO, WARN, ERROR,
// FATAL) to a slog level. slog has no fatal, and a daemon's fatal
// conditions are logged as errors before it exits, so FATAL keeps errors
// only, as ERROR does.
func ParseGroupLevel(s string) (slog.Level, error) {
	if s == "FATAL" {
		return slog.LevelError, nil
	}
	switch s {
	case "DEBUG", "INFO", "WARN", "ERROR":
		return ParseLevel(strings.ToLower(s))
	}
	return 0, fmt.Errorf("unknown logger level %q (want DEBUG, INFO, WARN, ERROR or FATAL)", s)
}
