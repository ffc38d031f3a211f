package store

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	badger "github.com/dgraph-io/badger/v4"
)

// rawBadger opens dir with the store's badger options, bypassing the store.
func rawBadger(t testing.TB, dir string) *badger.DB {
	t.Helper()
	db, err := badger.Open(badgerOptions(dir, &badgerLogger{log: slog.New(slog.DiscardHandler)}))
	if err != nil {
		t.Fatal(err)
	}
	return db
}

// A damaged value is reported by Open, is an error naming its key on Get,
// is skipped (and reported) by List, and leaves every other key alone.
func TestCorruptValue(t *testing.T) {
	a, b, c := Key{Thing: "a"}, Key{Thing: "b", Name: "n"}, Key{Thing: "c"}
	cases := []struct {
		name    string
		damage  func(t *testing.T, dir string)
		damaged []Key
	}{
		{"flipped byte in an envelope", func(t *testing.T, dir string) {
			db := rawBadger(t, dir)
			defer db.Close()
			env := newEnvelope(encodeKey(b), testValue(7)).seal(1)
			env[len(env)/2] ^= 0x40
			if err := db.Update(func(txn *badger.Txn) error { return txn.Set(encodeKey(b), env) }); err != nil {
				t.Fatal(err)
			}
		}, []Key{b}},
		{"envelope of another key", func(t *testing.T, dir string) {
			db := rawBadger(t, dir)
			defer db.Close()
			env := newEnvelope(encodeKey(c), testValue(7)).seal(1)
			if err := db.Update(func(txn *badger.Txn) error { return txn.Set(encodeKey(b), env) }); err != nil {
				t.Fatal(err)
			}
		}, []Key{b}},
		{"bit rot in the value log", func(t *testing.T, dir string) {
			// b's value is the only copy of testValue(4) on disk.
			needle := testValue(4)[100:164]
			flipped := 0
			vlogs, _ := filepath.Glob(filepath.Join(dir, "*.vlog"))
			for _, path := range vlogs {
				data, err := os.ReadFile(path)
				if err != nil {
					t.Fatal(err)
				}
				if i := bytes.Index(data, needle); i >= 0 {
					data[i+10] ^= 0x01
					if err := os.WriteFile(path, data, 0o600); err != nil {
						t.Fatal(err)
					}
					flipped++
				}
			}
			if flipped != 1 {
				t.Fatalf("found b's value %d times in the value log", flipped)
			}
		}, []Key{b}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			s, _ := mustOpen(t, dir)
			mustPut(t, s, a, testValue(1))
			mustPut(t, s, b, testValue(4))
			mustPut(t, s, c, testValue(3))
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			// Reopen once, so that the damage is in an older value-log
			// file, not the newest one, whose tail is checked at open.
			s, _ = mustOpen(t, dir)
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			tc.damage(t, dir)

			s, rep := mustOpen(t, dir)
			defer s.Close()
			if !slices.Equal(rep.Damaged, tc.damaged) || len(rep.Corrupt) != 1 || !strings.Contains(rep.Corrupt[0], `"b"`) {
				t.Fatalf("report: damaged %v, corrupt %q", rep.Damaged, rep.Corrupt)
			}
			_, ok, err := s.Get(b)
			var ce *CorruptError
			if ok || !errors.Is(err, ErrCorrupt) || !errors.As(err, &ce) || ce.Key != b || !strings.Contains(err.Error(), `thing "b" shadow "n"`) {
				t.Fatalf("Get(damaged) = ok %v, err %v", ok, err)
			}
			mustGet(t, s, a, testValue(1))
			mustGet(t, s, c, testValue(3))

			var listed []Key
			err = s.List("", func(k Key, _ []byte) error { listed = append(listed, k); return nil })
			if err != nil || !slices.Equal(listed, []Key{a, c}) {
				t.Fatalf("List = %v, err %v; want a and c, b skipped", listed, err)
			}

			// Rewriting a damaged entry heals it.
			mustPut(t, s, b, []byte("fresh"))
			mustGet(t, s, b, []byte("fresh"))
		})
	}
}

// A directory badger will not open is moved aside, the intact values found
// in it are salvaged (newest copy of each key) into a fresh store, and Open
// succeeds. Quarantined copies are bounded.
func TestUnopenableDirectoryIsQuarantined(t *testing.T) {
	cases := []struct {
		name   string
		damage func(t *testing.T, dir string)
	}{
		{"garbage MANIFEST", overwrite("MANIFEST", 0, -1)},
		{"garbage KEYREGISTRY", overwrite("KEYREGISTRY", 0, -1)},
		{"garbage table footer", func(t *testing.T, dir string) {
			path := newestFile(t, dir, ".sst")
			fi, _ := os.Stat(path)
			overwrite(filepath.Base(path), fi.Size()-64, 64)(t, dir)
		}},
		{"value-log header names an unknown key", overwrite("000001.vlog", 0, 20)},
		{"MANIFEST missing", func(t *testing.T, dir string) {
			if err := os.Remove(filepath.Join(dir, "MANIFEST")); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "shadows")
			s, _ := mustOpen(t, dir)
			want := map[Key][]byte{}
			for round := range 3 { // several copies of each value; the newest must win
				for i := range 30 {
					seq := uint64(100*round + i)
					k := Key{Thing: fmt.Sprintf("thing-%d", i%10), Name: fmt.Sprint(i)}
					mustPut(t, s, k, testValue(seq))
					want[k] = testValue(seq)
				}
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			tc.damage(t, dir)

			s, rep := mustOpen(t, dir)
			if rep.Quarantined == "" || !strings.HasPrefix(rep.Quarantined, dir+".corrupt-") {
				t.Fatalf("not quarantined: %+v", rep)
			}
			if _, err := os.Stat(filepath.Join(rep.Quarantined, "KEYREGISTRY")); err != nil {
				t.Fatalf("quarantined copy: %v", err)
			}
			if !slices.ContainsFunc(rep.Corrupt, func(l string) bool { return strings.Contains(l, "moved aside") }) {
				t.Fatalf("report: %q", rep.Corrupt)
			}
			if len(rep.Salvaged) != len(want) {
				t.Fatalf("salvaged %d entries, want %d", len(rep.Salvaged), len(want))
			}
			for k, v := range want {
				mustGet(t, s, k, v)
			}
			mustPut(t, s, Key{Thing: "after"}, []byte("x"))
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			s, rep = mustOpen(t, dir)
			defer s.Close()
			if len(rep.Corrupt) != 0 {
				t.Fatalf("the fresh store reports %q", rep.Corrupt)
			}
			mustGet(t, s, Key{Thing: "after"}, []byte("x"))
		})
	}
}

func TestQuarantinesAreBounded(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "shadows")
	for i := range 4 {
		s, _ := mustOpen(t, dir)
		mustPut(t, s, Key{Thing: "x"}, []byte(fmt.Sprint(i)))
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		overwrite("MANIFEST", 0, -1)(t, dir)
	}
	s, rep := mustOpen(t, dir)
	defer s.Close()
	mustGet(t, s, Key{Thing: "x"}, []byte("3"))
	m, _ := filepath.Glob(dir + ".corrupt-*")
	if len(m) != 2 || !slices.Contains(m, rep.Quarantined) {
		t.Fatalf("quarantined copies %v, want the newest 2 (last %s)", m, rep.Quarantined)
	}
}

// overwrite fills n bytes (-1: to the end, at least 64) of name in dir with
// garbage from offset on.
func overwrite(name string, offset, n int64) func(t *testing.T, dir string) {
	return func(t *testing.T, dir string) {
		path := filepath.Join(dir, name)
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		f, err := os.OpenFile(path, os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if n < 0 {
			n = max(fi.Size()-offset, 64)
		}
		if _, err := f.WriteAt(randomBytes(int(n)), offset); err != nil {
			t.Fatal(err)
		}
	}
}

// A DISCARD file (value-log GC statistics) cut short would panic a badger
// compaction goroutine; it is dropped and reported instead.
func TestTruncatedDiscardStats(t *testing.T) {
	dir := t.TempDir()
	s, _ := mustOpen(t, dir)
	for i := range 20 {
		mustPut(t, s, seqKey(uint64(i)), testValue(uint64(i)))
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(filepath.Join(dir, "DISCARD"), 7); err != nil {
		t.Fatal(err)
	}
	s, rep := mustOpen(t, dir)
	defer s.Close()
	if !slices.ContainsFunc(rep.Corrupt, func(l string) bool { return strings.Contains(l, "DISCARD") }) {
		t.Fatalf("report %q does not mention DISCARD", rep.Corrupt)
	}
	// Enough overwrites to flush memtables and compact, which updates the
	// statistics.
	var wg sync.WaitGroup
	for g := range 20 {
		wg.Go(func() {
			for range 150 {
				if err := s.Put(seqKey(uint64(g)), testValue(uint64(g))); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	checkFor(t, 10*time.Second, func() error {
		if s.collectGarbage() == 0 {
			return errors.New("value-log GC rewrote nothing")
		}
		return nil
	})
	for i := range 20 {
		mustGet(t, s, seqKey(uint64(i)), testValue(uint64(i)))
	}
}

// A crash in the middle of a quarantine leaves either the damaged directory
// and a half-built <dir>.salvage (redone from scratch) or the finished
// <dir>.salvage alone (moved into place by the next Open).
func TestInterruptedQuarantine(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "shadows")
	s, _ := mustOpen(t, dir)
	mustPut(t, s, Key{Thing: "x"}, []byte("salvaged"))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	// Crash between moving the damaged directory aside and moving the
	// salvaged one into place.
	if err := os.Rename(dir, dir+salvageSuffix); err != nil {
		t.Fatal(err)
	}
	s, rep := mustOpen(t, dir)
	mustGet(t, s, Key{Thing: "x"}, []byte("salvaged"))
	if len(rep.Corrupt) != 1 || !strings.Contains(rep.Corrupt[0], "interrupted quarantine") {
		t.Fatalf("report %q", rep.Corrupt)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	// Crash while salvaging: the half-built store is dropped.
	if err := os.MkdirAll(dir+salvageSuffix, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir+salvageSuffix, "MANIFEST"), randomBytes(100), 0o600); err != nil {
		t.Fatal(err)
	}
	s, rep = mustOpen(t, dir)
	defer s.Close()
	mustGet(t, s, Key{Thing: "x"}, []byte("salvaged"))
	if len(rep.Corrupt) != 0 {
		t.Fatalf("report %q", rep.Corrupt)
	}
	if _, err := os.Stat(dir + salvageSuffix); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("half-built salvage left behind: %v", err)
	}
}
