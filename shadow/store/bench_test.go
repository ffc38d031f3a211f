package store

import (
	"bufio"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	badger "github.com/dgraph-io/badger/v4"
)

// The peer for the write benchmarks is raw badger with the same options and
// the same durability (SyncWrites), one db.Update per write: what a store
// without group commit would do. Compare BenchmarkPut with
// BenchmarkRawBadgerSyncWrite/writers=1, and BenchmarkPutParallel16 with
// BenchmarkRawBadgerSyncWrite/writers=16. syncs/op counts the store's badger
// commits (each one value-log and one WAL sync).

const benchThings = 2500

var benchValue = randomBytes(4 << 10)

func benchKey(i int) Key { return Key{Thing: fmt.Sprintf("thing-%04d", i%benchThings)} }

// runWriters runs b.N writes spread over writers goroutines.
func runWriters(b *testing.B, writers int, put func(i int) error) {
	var next atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
	for range writers {
		wg.Go(func() {
			for i := int(next.Add(1) - 1); i < b.N; i = int(next.Add(1) - 1) {
				if err := put(i); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	b.StopTimer()
}

func benchStore(b *testing.B, writers int) {
	s, _, err := Open(Options{Dir: b.TempDir(), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	b.SetBytes(int64(len(benchValue)))
	runWriters(b, writers, func(i int) error { return s.Put(benchKey(i), benchValue) })
	b.ReportMetric(float64(s.commits.Load())/float64(b.N), "syncs/op")
}

func BenchmarkPut(b *testing.B) { benchStore(b, 1) }

func BenchmarkPutParallel16(b *testing.B) { benchStore(b, 16) }

func BenchmarkRawBadgerSyncWrite(b *testing.B) {
	for _, writers := range []int{1, 16} {
		b.Run(fmt.Sprintf("writers=%d", writers), func(b *testing.B) {
			db, err := badger.Open(badgerOptions(b.TempDir(), &badgerLogger{log: slog.New(slog.DiscardHandler)}))
			if err != nil {
				b.Fatal(err)
			}
			defer db.Close()
			b.SetBytes(int64(len(benchValue)))
			runWriters(b, writers, func(i int) error {
				return db.Update(func(txn *badger.Txn) error {
					return txn.Set(encodeKey(benchKey(i)), benchValue)
				})
			})
		})
	}
}

// BenchmarkIdlePSS measures a helper process holding 2,500 values of 4 KB:
// bare (before Open), after writing them, and idle after a reopen (a
// restarted daemon, whose open-time check has read every value). Run it
// with -benchtime=1x. It reports kB of PSS from
// /proc/<pid>/smaps_rollup, split into anonymous memory and file pages (the
// binary's and badger's mapped files). A measurement, not an assertion.
func BenchmarkIdlePSS(b *testing.B) {
	for range b.N {
		dir := b.TempDir()
		cmd := helperCmd(b, "hold", dir)
		stdin, err := cmd.StdinPipe()
		if err != nil {
			b.Fatal(err)
		}
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			b.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		out := bufio.NewReader(stdout)
		measure := func(want, label string) {
			line, err := out.ReadString('\n')
			if err != nil || strings.TrimSpace(line) != want {
				_ = cmd.Process.Kill()
				b.Fatalf("helper said %q (%v), want %q", line, err, want)
			}
			p, err := pss(cmd.Process.Pid)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(p["Pss"]), label+"-PSS-kB")
			b.ReportMetric(float64(p["Pss_Anon"]), label+"-anon-kB")
			b.ReportMetric(float64(p["Pss_File"]), label+"-file-kB")
			if _, err := io.WriteString(stdin, "\n"); err != nil {
				b.Fatal(err)
			}
		}
		measure("started", "bare")
		measure("written", "written")
		measure("ready", "idle")
		_ = stdin.Close()
		if err := cmd.Wait(); err != nil {
			b.Fatal(err)
		}
		s, _ := mustOpen(b, dir)
		n := 0
		if err := s.List("", func(Key, []byte) error { n++; return nil }); err != nil || n != holdValues {
			b.Fatalf("the helper's store holds %d values (%v), want %d", n, err, holdValues)
		}
		s.Close()
	}
}
