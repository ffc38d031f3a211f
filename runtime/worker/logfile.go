package worker

import (
	"bufio"
	"io"
	"os"
	"path/filepath"
	"sync"
)

// logSink appends to one function log file, shared by all its workers,
// keeping it under max bytes: when a write would pass the cap the file
// becomes path.1 (replacing the previous one) and a new file is started.
type logSink struct {
	path string
	max  int64
	refs int // guarded by Manager.mu

	mu   sync.Mutex
	f    *os.File
	size int64
}

func openSink(path string, max int64) (*logSink, error) {
	s := &logSink{path: path, max: max}
	if err := s.open(); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *logSink) open() error {
	if err := os.MkdirAll(filepath.Dir(s.path), 0o755); err != nil {
		return err
	}
	f, err := os.OpenFile(s.path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o640)
	if err != nil {
		return err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return err
	}
	s.f, s.size = f, st.Size()
	return nil
}

// Write writes p whole into the current file, rotating first when needed;
// a p longer than the cap keeps only its tail.
func (s *logSink) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := len(p)
	if int64(len(p)) > s.max {
		p = p[int64(len(p))-s.max:]
	}
	if s.f == nil || s.size+int64(len(p)) > s.max {
		if err := s.rotate(); err != nil {
			return 0, err
		}
	}
	w, err := s.f.Write(p)
	s.size += int64(w)
	if err != nil {
		return 0, err
	}
	return n, nil
}

func (s *logSink) rotate() error {
	if s.f != nil {
		s.f.Close()
		s.f = nil
		if err := os.Rename(s.path, s.path+".1"); err != nil && !os.IsNotExist(err) {
			return err
		}
	}
	return s.open()
}

func (s *logSink) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.f == nil {
		return nil
	}
	err := s.f.Close()
	s.f = nil
	return err
}

// copyLines copies r to w a line at a time (or a buffer's worth), so that
// workers sharing a file interleave whole lines.
func copyLines(r io.Reader, w io.Writer) {
	br := bufio.NewReaderSize(r, 64<<10)
	for {
		line, err := br.ReadSlice('\n')
		if len(line) > 0 {
			w.Write(line)
		}
		if err != nil && err != bufio.ErrBufferFull {
			return
		}
	}
}

func (m *Manager) acquireSink(path string, max int64) (*logSink, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if max <= 0 {
		max = m.o.MaxLogBytes
	}
	s := m.sinks[path]
	if s == nil {
		var err error
		if s, err = openSink(path, max); err != nil {
			return nil, err
		}
		m.sinks[path] = s
	}
	s.refs++
	return s, nil
}

func (m *Manager) releaseSink(s *logSink) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if s.refs--; s.refs == 0 {
		delete(m.sinks, s.path)
		s.Close()
	}
}
