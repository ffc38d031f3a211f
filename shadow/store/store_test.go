package store

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"
)

func TestPutGetDeleteList(t *testing.T) {
	s, rep := mustOpen(t, t.TempDir())
	defer s.Close()
	if len(rep.Corrupt) != 0 {
		t.Fatalf("fresh store reports damage: %v", rep.Corrupt)
	}

	classic := Key{Thing: "lamp"}
	named := Key{Thing: "lamp", Name: "firmware"}
	other := Key{Thing: "lamp2"}
	mustPut(t, s, classic, []byte(`{"state":{"reported":{"on":true}}}`))
	mustPut(t, s, named, testValue(1)) // value log
	mustPut(t, s, other, testValue(3)) // kept in the tree
	mustPut(t, s, Key{Thing: "empty"}, nil)

	mustGet(t, s, classic, []byte(`{"state":{"reported":{"on":true}}}`))
	mustGet(t, s, named, testValue(1))
	mustGet(t, s, Key{Thing: "empty"}, []byte{})
	if _, ok, err := s.Get(Key{Thing: "lamp", Name: "nope"}); ok || err != nil {
		t.Fatalf("Get(missing) = ok %v, err %v", ok, err)
	}

	mustPut(t, s, classic, []byte(`{"v":2}`))
	mustGet(t, s, classic, []byte(`{"v":2}`))

	var got []Key
	if err := s.List("lamp", func(k Key, v []byte) error {
		got = append(got, k)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if want := []Key{classic, named}; !slices.Equal(got, want) {
		t.Fatalf("List(lamp) = %v, want %v", got, want)
	}

	if err := s.Delete(named); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(named); err != nil {
		t.Fatalf("deleting a missing key: %v", err)
	}
	if _, ok, _ := s.Get(named); ok {
		t.Fatal("deleted key still there")
	}

	stop := errors.New("stop")
	calls := 0
	if err := s.List("", func(Key, []byte) error { calls++; return stop }); err != stop || calls != 1 {
		t.Fatalf("List stopped by fn: err %v after %d calls", err, calls)
	}

	if err := s.Put(Key{Thing: "big"}, make([]byte, MaxValueSize+1)); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("oversized Put: %v", err)
	}
	if err := s.Put(Key{Thing: string(make([]byte, 2000))}, nil); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("oversized key: %v", err)
	}

	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Get(classic); !errors.Is(err, ErrClosed) {
		t.Fatalf("Get after Close: %v", err)
	}
	if err := s.Put(classic, nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("Put after Close: %v", err)
	}
	if err := s.Close(); !errors.Is(err, ErrClosed) {
		t.Fatalf("second Close: %v", err)
	}
}

// Thing and shadow names are opaque bytes: zero bytes, the escape bytes and
// prefixes of one another must neither collide nor leak into another
// thing's List, and List must order by thing, then name.
func TestKeysWithAnyBytes(t *testing.T) {
	dir := t.TempDir()
	s, _ := mustOpen(t, dir)
	alphabet := []string{"", "\x00", "\x01", "\xff", "a", "a\x00", "a\x00\x01", "a\x01", "\x00\xff"}
	var keys []Key
	for _, th := range alphabet {
		for _, n := range alphabet {
			keys = append(keys, Key{Thing: th, Name: n})
		}
	}
	var wg sync.WaitGroup
	for i, k := range keys {
		wg.Go(func() {
			if err := s.Put(k, []byte(fmt.Sprintf("%d", i))); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	s.Close()
	s, _ = mustOpen(t, dir)
	defer s.Close()

	for i, k := range keys {
		mustGet(t, s, k, []byte(fmt.Sprintf("%d", i)))
	}
	want := slices.Clone(keys)
	slices.SortFunc(want, func(a, b Key) int {
		return cmp.Or(cmp.Compare(a.Thing, b.Thing), cmp.Compare(a.Name, b.Name))
	})
	var all []Key
	if err := s.List("", func(k Key, _ []byte) error { all = append(all, k); return nil }); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(all, want) {
		t.Fatalf("List(\"\") order:\n got %q\nwant %q", all, want)
	}
	for _, th := range alphabet[1:] {
		var got []Key
		if err := s.List(th, func(k Key, _ []byte) error { got = append(got, k); return nil }); err != nil {
			t.Fatal(err)
		}
		if len(got) != len(alphabet) || slices.ContainsFunc(got, func(k Key) bool { return k.Thing != th }) {
			t.Fatalf("List(%q) = %q", th, got)
		}
	}
}

func TestReopenKeepsEverything(t *testing.T) {
	dir := t.TempDir()
	s, _ := mustOpen(t, dir)
	for i := range 60 {
		mustPut(t, s, seqKey(uint64(i)), testValue(uint64(i)))
	}
	for i := range 10 {
		if err := s.Delete(seqKey(uint64(i))); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	for round := range 3 {
		s, rep := mustOpen(t, dir)
		if len(rep.Corrupt) != 0 {
			t.Fatalf("round %d: clean reopen reports %v", round, rep.Corrupt)
		}
		for i := range 60 {
			_, ok, err := s.Get(seqKey(uint64(i)))
			if err != nil || ok != (i >= 10) {
				t.Fatalf("round %d: Get(%d) = ok %v, err %v", round, i, ok, err)
			}
		}
		for i := 10; i < 60; i++ {
			mustGet(t, s, seqKey(uint64(i)), testValue(uint64(i)))
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// Concurrent writers share commits: the number of badger commits (each one
// value-log sync and one WAL sync) stays well under the number of writes.
func TestConcurrentPutsShareCommits(t *testing.T) {
	s, _ := mustOpen(t, t.TempDir())
	defer s.Close()
	const writers, each = 16, 25
	var wg sync.WaitGroup
	for g := range writers {
		wg.Go(func() {
			for i := range each {
				seq := uint64(g*each + i)
				if err := s.Put(seqKey(seq), testValue(seq)); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	commits := s.commits.Load()
	t.Logf("%d puts from %d writers took %d commits", writers*each, writers, commits)
	if commits > writers*each/2 {
		t.Fatalf("%d puts took %d commits; concurrent puts do not share syncs", writers*each, commits)
	}
	for seq := range uint64(writers * each) {
		mustGet(t, s, seqKey(seq), testValue(seq))
	}
}

// Close during writes: every Put either lands (and survives reopen) or
// reports ErrClosed; none hangs.
func TestCloseDuringWrites(t *testing.T) {
	dir := t.TempDir()
	s, _ := mustOpen(t, dir)
	var mu sync.Mutex
	landed := map[uint64]bool{}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := 0; ; i++ {
				seq := uint64(g*1_000_000 + i)
				err := s.Put(seqKey(seq), testValue(seq))
				if errors.Is(err, ErrClosed) {
					return
				}
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				landed[seq] = true
				mu.Unlock()
			}
		})
	}
	time.Sleep(100 * time.Millisecond)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	s, _ = mustOpen(t, dir)
	defer s.Close()
	for seq := range landed {
		mustGet(t, s, seqKey(seq), testValue(seq))
	}
	t.Logf("%d puts landed before Close", len(landed))
}

// vlogBytes is the disk space the value log takes (its files are sparse).
func vlogBytes(dir string) int64 {
	matches, _ := filepath.Glob(filepath.Join(dir, "*.vlog"))
	var n int64
	for _, m := range matches {
		var st syscall.Stat_t
		if err := syscall.Stat(m, &st); err == nil {
			n += st.Blocks * 512
		}
	}
	return n
}

// Overwritten values are reclaimed from the value log by GC. GC learns what
// is garbage from compaction, which runs after memtable flushes, so the
// overwrites still in the memtable (~1,000 writes) are not reclaimable yet;
// at least half of what was written must be.
func TestOverwritesAreReclaimed(t *testing.T) {
	dir := t.TempDir()
	s, _ := mustOpen(t, dir)
	defer s.Close()
	const keys, rounds = 100, 30
	value := func(k, round int) []byte { return bytes.Repeat([]byte{byte(k), byte(round)}, 2048) }
	var wg sync.WaitGroup
	for g := range 16 { // each key has one writer, so its last value is known
		wg.Go(func() {
			for round := range rounds {
				for k := g; k < keys; k += 16 {
					if err := s.Put(Key{Thing: "t", Name: fmt.Sprint(k)}, value(k, round)); err != nil {
						t.Error(err)
						return
					}
				}
			}
		})
	}
	wg.Wait()
	before := vlogBytes(dir)
	checkFor(t, 10*time.Second, func() error {
		s.collectGarbage()
		if now := vlogBytes(dir); now > before/2 {
			return fmt.Errorf("value log takes %d bytes after GC, %d before, for %d live", now, before, keys*4096)
		}
		return nil
	})
	t.Logf("value log: %d bytes before GC, %d after, %d live", before, vlogBytes(dir), keys*4096)
	for k := range keys {
		mustGet(t, s, Key{Thing: "t", Name: fmt.Sprint(k)}, value(k, rounds-1))
	}
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rand.Uint32())
	}
	return b
}
