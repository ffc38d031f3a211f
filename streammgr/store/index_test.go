package store

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestStartupTrustsIndexFilesOnlyForUnchangedSegments: a cleanly closed
// store starts from its segments' index files without reading the
// segments (damage planted behind an index is found only on read), and
// a segment changed since its index was written is scanned again.
func TestStartupTrustsIndexFilesOnlyForUnchangedSegments(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, nil)
	s.Create(Definition{Name: "i", SegmentSize: 1024})
	mustAppend(t, s, "i", 40, 100) // 5 segments of 8
	s.Close()
	segs, _ := filepath.Glob(filepath.Join(dir, "*", "*.seg"))
	idx, _ := filepath.Glob(filepath.Join(dir, "*", "*.idx"))
	if len(segs) != 5 || len(idx) != 5 {
		t.Fatalf("%d segments, %d index files after a clean stop", len(segs), len(idx))
	}
	// Flip a payload byte of the second segment and keep its size and
	// modification time: only a start-up that reads it could tell.
	fi, _ := os.Stat(segs[1])
	b, _ := os.ReadFile(segs[1])
	b[2*124+30] ^= 0xff
	os.WriteFile(segs[1], b, 0o640)
	os.Chtimes(segs[1], fi.ModTime(), fi.ModTime())

	s = open(t, dir, nil)
	in, err := s.Describe("i")
	if err != nil || in.Count != 40 || len(in.Damage) != 0 {
		t.Fatalf("start-up from index files: %+v %v", in, err)
	}
	st, _ := s.get("i")
	st.mu.Lock()
	for _, g := range st.segs[:len(st.segs)-1] {
		if g.index != nil || !g.indexed {
			t.Errorf("sealed segment %d holds its index in memory", g.first)
		}
	}
	st.mu.Unlock()
	// A read from the middle of an indexed segment, and over the damage.
	if ms := readAll(t, s, "i", 20); len(ms) != 20 || ms[0].Seq != 20 {
		t.Fatalf("read from 20: %v", seqsOf(ms))
	}
	if ms := readAll(t, s, "i", 0); len(ms) != 34 {
		t.Fatalf("read over the damage: %v", seqsOf(ms))
	}
	if in, _ := s.Describe("i"); len(in.Damage) == 0 {
		t.Fatal("damage found on read not reported")
	}
	s.Close()

	// The segment's modification time moves: start-up scans it.
	later := time.Now().Add(time.Minute)
	os.Chtimes(segs[1], later, later)
	s = open(t, dir, nil)
	defer s.Close()
	if in, _ := s.Describe("i"); len(in.Damage) == 0 {
		t.Fatal("a changed segment was not scanned at start-up")
	}
	if q := mustAppend(t, s, "i", 1, 10)[0]; q != 40 {
		t.Fatalf("next sequence number %d, want 40", q)
	}
}

// TestIndexFilesFollowTheirSegments: dropped segments take their index
// files with them; an index file left by a crash between the two removals
// is removed at start-up; the segment appended to has none.
func TestIndexFilesFollowTheirSegments(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, nil)
	s.Create(Definition{Name: "o", MaxSize: 4096, SegmentSize: 1024, Strategy: OverwriteOldestData})
	mustAppend(t, s, "o", 60, 100)
	s.Sweep()
	st, _ := s.get("o")
	st.sync(-1, -1) // seals and indexes what rolled over
	s.Close()
	segs, _ := filepath.Glob(filepath.Join(dir, "*", "*.seg"))
	idx, _ := filepath.Glob(filepath.Join(dir, "*", "*.idx"))
	if len(segs) != len(idx) {
		t.Fatalf("%d segments, %d index files", len(segs), len(idx))
	}
	orphan := filepath.Join(filepath.Dir(segs[0]), indexName(0))
	os.WriteFile(orphan, []byte("left by a crash"), 0o640)
	s = open(t, dir, nil)
	defer s.Close()
	if _, err := os.Stat(orphan); !os.IsNotExist(err) {
		t.Fatalf("orphan index file kept: %v", err)
	}
	if _, err := os.Stat(indexPath(segs[len(segs)-1])); !os.IsNotExist(err) {
		t.Fatalf("the segment appended to keeps an index file: %v", err)
	}
	if in, _ := s.Describe("o"); in.Newest != 59 || len(in.Damage) != 0 {
		t.Fatalf("after restart: %+v", in)
	}
}

// TestReadPastDamageFoundOnRead: a read plans only the segments it needs
// (and one more); damage found on the way that makes it short sends it on
// through the rest of the stream.
func TestReadPastDamageFoundOnRead(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, nil)
	s.Create(Definition{Name: "p", SegmentSize: 1024})
	mustAppend(t, s, "p", 40, 100) // 5 segments of 8
	s.Close()
	segs, _ := filepath.Glob(filepath.Join(dir, "*", "*.seg"))
	// Damage the first record of the first two segments behind their
	// index files' backs (found only on read).
	for _, p := range segs[:2] {
		fi, _ := os.Stat(p)
		b, _ := os.ReadFile(p)
		b[30] ^= 0xff
		os.WriteFile(p, b, 0o640)
		os.Chtimes(p, fi.ModTime(), fi.ModTime())
	}
	s = open(t, dir, nil)
	defer s.Close()
	ms, err := s.Read(context.Background(), "p", ReadOptions{Start: 0, Min: 1, Max: 1})
	if err != nil || len(ms) != 1 || ms[0].Seq != 16 {
		t.Fatalf("read from 0 past two damaged segments: %v %v", seqsOf(ms), err)
	}
}
