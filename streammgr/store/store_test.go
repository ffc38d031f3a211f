package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func open(t *testing.T, dir string, c *clock) *Store {
	t.Helper()
	o := Options{Dir: dir}
	if c != nil {
		o.Now = c.now
	}
	s, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func mustAppend(t *testing.T, s *Store, name string, n, size int) []int64 {
	t.Helper()
	var seqs []int64
	for i := range n {
		p := bytes.Repeat([]byte{byte('a' + i%26)}, size)
		seq, err := s.Append(name, p)
		if err != nil {
			t.Fatalf("append %d: %v", i, err)
		}
		seqs = append(seqs, seq)
	}
	return seqs
}

func readAll(t *testing.T, s *Store, name string, from int64) []Message {
	t.Helper()
	var out []Message
	for {
		ms, err := s.Read(context.Background(), name, ReadOptions{Start: from, Min: 1, Max: 1000})
		if errors.Is(err, ErrNotEnough) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, ms...)
		from = ms[len(ms)-1].Seq + 1
	}
}

func TestAppendReadAcrossSegmentsAndRestart(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, nil)
	// A name with ".log" and a space and comma (v1 1.11.6 fixed names with .log).
	name := "my.log stream, v1"
	if err := s.Create(Definition{Name: name, SegmentSize: 4096, MaxSize: 1 << 20}); err != nil {
		t.Fatal(err)
	}
	seqs := mustAppend(t, s, name, 200, 100)
	for i, q := range seqs {
		if q != int64(i) {
			t.Fatalf("seq %d = %d", i, q)
		}
	}
	ms := readAll(t, s, name, 0)
	if len(ms) != 200 || ms[150].Seq != 150 || ms[150].Payload[0] != byte('a'+150%26) {
		t.Fatalf("read %d messages", len(ms))
	}
	// Reading from the middle of a segment.
	got, err := s.Read(context.Background(), name, ReadOptions{Start: 77, Min: 3, Max: 3})
	if err != nil || len(got) != 3 || got[0].Seq != 77 {
		t.Fatalf("read from 77: %v %v", got, err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = open(t, dir, nil)
	defer s.Close()
	in, err := s.Describe(name)
	if err != nil || in.Count != 200 || in.Oldest != 0 || in.Newest != 199 || len(in.Damage) != 0 {
		t.Fatalf("after restart: %+v %v", in, err)
	}
	if q := mustAppend(t, s, name, 1, 10)[0]; q != 200 {
		t.Fatalf("after a clean restart the next sequence number is %d, want 200", q)
	}
}

func TestRejectNewDataWhenFull(t *testing.T) {
	s := open(t, t.TempDir(), nil)
	defer s.Close()
	s.Create(Definition{Name: "r", MaxSize: 4096, SegmentSize: 1024, Strategy: RejectNewData})
	n := 0
	for ; ; n++ {
		if _, err := s.Append("r", make([]byte, 100)); err != nil {
			if !errors.Is(err, ErrFull) {
				t.Fatalf("append when full: %v", err)
			}
			break
		}
	}
	if want := 4096 / 124; n != want {
		t.Fatalf("%d appends fit, want %d", n, want)
	}
	if ms := readAll(t, s, "r", 0); len(ms) != n || ms[0].Seq != 0 {
		t.Fatalf("stored data changed: %d messages", len(ms))
	}
}

func TestOverwriteOldestDropsWholeSegments(t *testing.T) {
	s := open(t, t.TempDir(), nil)
	defer s.Close()
	// 8 records of 124 bytes per 1024-byte segment; 4 segments fit.
	s.Create(Definition{Name: "o", MaxSize: 4096, SegmentSize: 1024, Strategy: OverwriteOldestData})
	mustAppend(t, s, "o", 34, 100)
	in, _ := s.Describe("o")
	// 34 records of 124 bytes need 4216 bytes: the oldest whole segment (0..7) went.
	if in.Oldest != 8 || in.Newest != 33 || in.Count != 26 {
		t.Fatalf("after overwrite: oldest %d newest %d count %d", in.Oldest, in.Newest, in.Count)
	}
	if in.TotalBytes > 4096 {
		t.Fatalf("%d bytes stored over maxSize", in.TotalBytes)
	}
	// A read below the oldest starts at the oldest.
	ms, err := s.Read(context.Background(), "o", ReadOptions{Start: 0, Min: 1, Max: 2})
	if err != nil || ms[0].Seq != 8 {
		t.Fatalf("read below oldest: %v %v", ms, err)
	}
}

func TestTTLExpiryAndSequenceAfterExpiryWhileStopped(t *testing.T) {
	dir := t.TempDir()
	c := &clock{t: time.Unix(1_700_000_000, 0)}
	s := open(t, dir, c)
	s.Create(Definition{Name: "ttl", SegmentSize: 1024, TTLMillis: 60000})
	mustAppend(t, s, "ttl", 20, 100) // segments 0..7, 8..15, 16..19
	c.add(30 * time.Second)
	mustAppend(t, s, "ttl", 4, 100) // 20..23: segment 16..23
	c.add(31 * time.Second)         // the first two segments are past the TTL
	s.Sweep()
	in, _ := s.Describe("ttl")
	if in.Oldest != 16 || in.Newest != 23 {
		t.Fatalf("after TTL: oldest %d newest %d", in.Oldest, in.Newest)
	}
	s.Close()
	// Stopped longer than the TTL (a power-off): everything expires, the
	// sequence numbers continue.
	c.add(time.Hour)
	s = open(t, dir, c)
	defer s.Close()
	in, _ = s.Describe("ttl")
	if in.Count != 0 {
		t.Fatalf("after expiry while stopped %d messages remain", in.Count)
	}
	if q := mustAppend(t, s, "ttl", 1, 10)[0]; q != 24 {
		t.Fatalf("next sequence number after expiry while stopped = %d, want 24", q)
	}
}

func TestSequenceAfterCrashNeverGoesBack(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, nil)
	s.Create(Definition{Name: "c", SegmentSize: 1024, Strategy: OverwriteOldestData, MaxSize: 2048})
	mustAppend(t, s, "c", 100, 100)
	// No Close: a crash. Drop every segment file too (as if all expired).
	s.mu.Lock()
	st := s.streams["c"]
	s.mu.Unlock()
	st.mu.Lock()
	st.closeFilesLocked()
	st.mu.Unlock()
	files, _ := filepath.Glob(filepath.Join(st.dir, "*.seg"))
	for _, f := range files {
		os.Remove(f)
	}
	s2 := open(t, dir, nil)
	defer s2.Close()
	if q := mustAppend(t, s2, "c", 1, 10)[0]; q < 100 {
		t.Fatalf("sequence number went back to %d after a crash", q)
	}
}

func TestMemoryPersistence(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, nil)
	s.Create(Definition{Name: "m", Persistence: Memory, SegmentSize: 1024, MaxSize: 2048, Strategy: OverwriteOldestData})
	mustAppend(t, s, "m", 50, 100)
	if files, _ := filepath.Glob(filepath.Join(dir, "*", "*.seg")); len(files) != 0 {
		t.Fatalf("memory stream wrote segment files %v", files)
	}
	ms := readAll(t, s, "m", 0)
	if len(ms) == 0 || ms[len(ms)-1].Seq != 49 {
		t.Fatalf("memory read: %d", len(ms))
	}
	s.Close()
	s = open(t, dir, nil)
	defer s.Close()
	in, err := s.Describe("m")
	if err != nil || in.Count != 0 {
		t.Fatalf("memory stream after restart: %+v %v", in, err)
	}
	if q := mustAppend(t, s, "m", 1, 1)[0]; q != 50 {
		t.Fatalf("memory stream continues at %d, want 50", q)
	}
}

func TestLongPollRead(t *testing.T) {
	s := open(t, t.TempDir(), nil)
	defer s.Close()
	s.Create(Definition{Name: "p"})
	_, err := s.Read(context.Background(), "p", ReadOptions{Min: 1})
	if !errors.Is(err, ErrNotEnough) {
		t.Fatalf("immediate read of an empty stream: %v", err)
	}
	done := make(chan []Message)
	go func() {
		ms, err := s.Read(context.Background(), "p", ReadOptions{Min: 2, Max: 5, Timeout: 5 * time.Second})
		if err != nil {
			t.Error(err)
		}
		done <- ms
	}()
	time.Sleep(50 * time.Millisecond)
	mustAppend(t, s, "p", 1, 10)
	time.Sleep(20 * time.Millisecond)
	mustAppend(t, s, "p", 1, 10)
	if ms := <-done; len(ms) != 2 {
		t.Fatalf("long poll got %d messages", len(ms))
	}
	start := time.Now()
	_, err = s.Read(context.Background(), "p", ReadOptions{Start: 10, Min: 1, Timeout: 100 * time.Millisecond})
	if !errors.Is(err, ErrNotEnough) || time.Since(start) < 100*time.Millisecond {
		t.Fatalf("timed-out read: %v after %v", err, time.Since(start))
	}
}

func TestUpdateRules(t *testing.T) {
	s := open(t, t.TempDir(), nil)
	defer s.Close()
	s.Create(Definition{Name: "u", MaxSize: 1 << 20, SegmentSize: 4096})
	mustAppend(t, s, "u", 100, 100)
	for _, c := range []struct {
		d  Definition
		ok bool
	}{
		{Definition{Name: "u", MaxSize: 1 << 20, SegmentSize: 4096, Persistence: Memory}, false},
		{Definition{Name: "u", MaxSize: 2048, SegmentSize: 1024}, false}, // below stored bytes
		{Definition{Name: "u", MaxSize: 1 << 21, SegmentSize: 8192, TTLMillis: 60000, Strategy: OverwriteOldestData, FlushOnWrite: true}, true},
	} {
		err := s.Update(c.d)
		if c.ok != (err == nil) || (!c.ok && !IsUpdateNotAllowed(err)) {
			t.Errorf("update %+v: %v", c.d, err)
		}
	}
	if err := s.Update(Definition{Name: "nope"}); !errors.Is(err, ErrNotFound) {
		t.Errorf("update of a missing stream: %v", err)
	}
	in, _ := s.Describe("u")
	if !in.Definition.FlushOnWrite || in.Definition.SegmentSize != 8192 {
		t.Fatalf("update not in force: %+v", in.Definition)
	}
}

func TestCorruptSegmentStartupSucceedsDamageReported(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, nil)
	s.Create(Definition{Name: "d", SegmentSize: 1024})
	mustAppend(t, s, "d", 40, 100) // 5 segments of 8
	s.Close()
	files, _ := filepath.Glob(filepath.Join(dir, "*", "*.seg"))
	if len(files) != 5 {
		t.Fatalf("%d segment files", len(files))
	}
	// Flip a byte in the payload of the 3rd record of the second segment,
	// and tear the tail of the last one.
	b, _ := os.ReadFile(files[1])
	b[2*124+30] ^= 0xff
	os.WriteFile(files[1], b, 0o640)
	f, _ := os.OpenFile(files[4], os.O_WRONLY|os.O_APPEND, 0)
	f.Write([]byte{1, 2, 3, 4, 5, 6, 7})
	f.Close()
	// And a garbage file.
	os.WriteFile(filepath.Join(filepath.Dir(files[0]), "junk"), []byte("x"), 0o640)

	s = open(t, dir, nil)
	defer s.Close()
	in, err := s.Describe("d")
	if err != nil {
		t.Fatal(err)
	}
	if len(in.Damage) < 2 {
		t.Fatalf("damage not reported: %q", in.Damage)
	}
	ms := readAll(t, s, "d", 0)
	// 0..9 readable, 10..15 lost with the bad record, 16..39 readable.
	if len(ms) != 34 || ms[9].Seq != 9 || ms[10].Seq != 16 {
		t.Fatalf("read %d messages after damage (%v)", len(ms), seqsOf(ms))
	}
	if q := mustAppend(t, s, "d", 1, 10)[0]; q != 40 {
		t.Fatalf("append after a torn tail = %d, want 40", q)
	}
}

func seqsOf(ms []Message) []int64 {
	var out []int64
	for _, m := range ms {
		out = append(out, m.Seq)
	}
	return out
}

func TestGroupCommitConcurrentFlushOnWrite(t *testing.T) {
	s := open(t, t.TempDir(), nil)
	defer s.Close()
	s.Create(Definition{Name: "g", FlushOnWrite: true})
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 50 {
				if _, err := s.Append("g", []byte(fmt.Sprintf("%d-%d", w, i))); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if ms := readAll(t, s, "g", 0); len(ms) != 200 {
		t.Fatalf("%d messages", len(ms))
	}
}

func TestDeleteAndValidate(t *testing.T) {
	s := open(t, t.TempDir(), nil)
	defer s.Close()
	for _, d := range []Definition{
		{Name: "x", MaxSize: 10},
		{Name: "x", SegmentSize: 10},
		{Name: "x", TTLMillis: 5},
		{Name: "x", Strategy: 3},
		{Name: "x", Persistence: 7},
	} {
		if err := s.Create(d); err == nil {
			t.Errorf("create %+v accepted", d)
		}
	}
	s.Create(Definition{Name: "x"})
	if err := s.Create(Definition{Name: "x"}); !errors.Is(err, ErrExists) {
		t.Fatalf("second create: %v", err)
	}
	mustAppend(t, s, "x", 3, 3)
	if err := s.Delete("x"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Append("x", []byte("a")); !errors.Is(err, ErrNotFound) {
		t.Fatalf("append after delete: %v", err)
	}
	if len(s.List()) != 0 {
		t.Fatal(s.List())
	}
}

// TestAppendIsTheOSsWhenAcknowledged: records wait in the stream's buffer
// only until their ack is waited for (a kill -9 after an ack keeps the
// message), and readers see them before that.
func TestAppendIsTheOSsWhenAcknowledged(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, nil)
	defer s.Close()
	s.Create(Definition{Name: "w"})
	seg := func() int64 {
		files, _ := filepath.Glob(filepath.Join(dir, "*", "*.seg"))
		if len(files) != 1 {
			t.Fatalf("segments %v", files)
		}
		fi, _ := os.Stat(files[0])
		return fi.Size()
	}
	mustAppend(t, s, "w", 1, 100)
	if n := seg(); n != 124 {
		t.Fatalf("after Append returned the file holds %d bytes, want 124", n)
	}
	var acks Ack
	for i := range 10 {
		_, a, err := s.AppendNoWait("w", []byte("pending"))
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			acks = a
		} else if !acks.Merge(a) {
			t.Fatal("acks of one stream do not merge")
		}
	}
	if ms := readAll(t, s, "w", 0); len(ms) != 11 {
		t.Fatalf("a reader sees %d messages, want 11", len(ms))
	}
	if err := acks.Wait(); err != nil {
		t.Fatal(err)
	}
	if n := seg(); n != 124+10*31 {
		t.Fatalf("after the acks the file holds %d bytes", n)
	}
}

// TestFailedWriteFailsItsAcksAndAppendsContinue: when the write of the
// buffered records fails, their acks fail, nothing of them is read, and
// appends continue in a new segment with sequence numbers never reused.
func TestFailedWriteFailsItsAcksAndAppendsContinue(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, nil)
	s.Create(Definition{Name: "f"})
	mustAppend(t, s, "f", 2, 10)
	var acks []Ack
	for range 3 {
		_, a, err := s.AppendNoWait("f", []byte("lost"))
		if err != nil {
			t.Fatal(err)
		}
		acks = append(acks, a)
	}
	st, _ := s.get("f")
	st.mu.Lock()
	st.segs[len(st.segs)-1].f.Close() // the next write fails
	st.mu.Unlock()
	for i, a := range acks {
		if err := a.Wait(); err == nil {
			t.Fatalf("ack %d of a failed write succeeded", i)
		}
	}
	if q := mustAppend(t, s, "f", 1, 10)[0]; q != 5 {
		t.Fatalf("append after a failed write got %d, want 5", q)
	}
	if ms := readAll(t, s, "f", 0); len(seqsOf(ms)) != 3 || ms[1].Seq != 1 || ms[2].Seq != 5 {
		t.Fatalf("read %v", seqsOf(ms))
	}
	if in, _ := s.Describe("f"); len(in.Damage) == 0 {
		t.Fatal("failed write not reported")
	}
	s.Close()
	s = open(t, dir, nil)
	defer s.Close()
	if ms := readAll(t, s, "f", 0); len(ms) != 3 || ms[2].Seq != 5 {
		t.Fatalf("after restart read %v", seqsOf(ms))
	}
}

// crash leaves s as a kill -9 would: what was written stays, nothing is
// closed cleanly (no exact seq file, no index of the newest segment).
func crash(t *testing.T, s *Store) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, st := range s.streams {
		st.mu.Lock()
		st.writeOutLocked()
		st.closeFilesLocked()
		st.deleted = true
		st.mu.Unlock()
	}
	s.closed = true
}

// TestAppendsAfterAnUncleanStopSurviveTheNext: a start-up after an
// unclean stop continues at the seq file's floor, ahead of the newest
// message; what is appended then starts a segment of its own, so that it
// survives a second unclean stop (it once went into the newest segment
// after a jump in numbering, and the next start-up cut it as damage). The
// jump is recorded: no start-up reports it as lost.
func TestAppendsAfterAnUncleanStopSurviveTheNext(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, nil)
	s.Create(Definition{Name: "c", SegmentSize: 1024})
	mustAppend(t, s, "c", 3, 100)
	crash(t, s)
	s = open(t, dir, nil)
	after := mustAppend(t, s, "c", 10, 100) // 8 a segment: the jump, then one more segment
	if after[0] <= 2 {
		t.Fatalf("after an unclean stop appends continue at %d", after[0])
	}
	crash(t, s)
	want := append([]int64{0, 1, 2}, after...)
	for _, clean := range []bool{false, true} {
		s = open(t, dir, nil)
		in, _ := s.Describe("c")
		if got := seqsOf(readAll(t, s, "c", 0)); fmt.Sprint(got) != fmt.Sprint(want) || len(in.Damage) != 0 {
			t.Fatalf("start-up (clean stop before: %v): read %v, damage %q; want %v and none", clean, got, in.Damage, want)
		}
		s.Close()
	}
	// A segment lost after the jump is still reported.
	files, _ := filepath.Glob(filepath.Join(dir, "*", "*.seg"))
	if len(files) != 3 {
		t.Fatalf("segments %v", files)
	}
	os.Remove(files[1])
	s = open(t, dir, nil)
	defer s.Close()
	in, _ := s.Describe("c")
	if len(in.Damage) != 1 || !strings.Contains(in.Damage[0], fmt.Sprintf("messages %d..%d lost", after[0], after[7])) {
		t.Fatalf("damage %q, want messages %d..%d lost", in.Damage, after[0], after[7])
	}
}
