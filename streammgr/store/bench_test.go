package store

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

// BenchmarkAppend1KB4Clients: appends of 1 KiB from 4 goroutines, with and
// without flushOnWrite (group commit). "each" waits for every append (as
// the gRPC API does: one write per append); "batch32" waits for 32 at a
// time (as the protocol server does for a pipelining client: one write,
// one fsync per batch). Compare with ggbench --streams for JetStream's
// file store measured in the same run.
func BenchmarkAppend1KB4Clients(b *testing.B) {
	for _, flush := range []bool{false, true} {
		for _, batch := range []int{1, 32} {
			name := fmt.Sprintf("flushOnWrite=%v/each", flush)
			if batch > 1 {
				name = fmt.Sprintf("flushOnWrite=%v/batch%d", flush, batch)
			}
			b.Run(name, func(b *testing.B) {
				s, err := Open(Options{Dir: b.TempDir()})
				if err != nil {
					b.Fatal(err)
				}
				defer s.Close()
				s.Create(Definition{Name: "b", FlushOnWrite: flush, MaxSize: 1 << 40, SegmentSize: DefaultSegmentSize, Strategy: OverwriteOldestData})
				p := make([]byte, 1024)
				b.SetBytes(1024)
				b.ResetTimer()
				var wg sync.WaitGroup
				per := b.N/4 + 1
				for range 4 {
					wg.Add(1)
					go func() {
						defer wg.Done()
						for i := 0; i < per; i += batch {
							var acks Ack
							for j := range min(batch, per-i) {
								_, a, err := s.AppendNoWait("b", p)
								if err != nil {
									b.Error(err)
									return
								}
								if j == 0 {
									acks = a
								} else {
									acks.Merge(a)
								}
							}
							if err := acks.Wait(); err != nil {
								b.Error(err)
								return
							}
						}
					}()
				}
				wg.Wait()
				b.ReportMetric(float64(per*4)/b.Elapsed().Seconds(), "appends/s")
			})
		}
	}
}

// BenchmarkRead1KB: reads of 100 messages of 1 KiB at a time, from 4
// goroutines each reading a 64 MiB stream from its start (over again when
// at its end), as consumers catching up do.
func BenchmarkRead1KB(b *testing.B) {
	s, err := Open(Options{Dir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	const n = 64 << 10
	fill(b, s, "r", n, 1024)
	b.SetBytes(100 * 1024)
	b.ResetTimer()
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			next := int64(0)
			for range b.N/4 + 1 {
				ms, err := s.Read(context.Background(), "r", ReadOptions{Start: next, Min: 1, Max: 100})
				if err != nil {
					b.Error(err)
					return
				}
				if next = ms[len(ms)-1].Seq + 1; next >= n {
					next = 0
				}
			}
		}()
	}
	wg.Wait()
	b.ReportMetric(float64((b.N/4+1)*4*100)/b.Elapsed().Seconds(), "msgs/s")
}

// BenchmarkOpen: start-up with 256 MiB stored across 4 streams of 16 MiB
// segments, cleanly closed ("indexed": the segments' index files are
// read) and without index files ("scan": every segment is read, as after
// an upgrade; start-up writes the index files again).
func BenchmarkOpen(b *testing.B) {
	dir := b.TempDir()
	s, err := Open(Options{Dir: dir})
	if err != nil {
		b.Fatal(err)
	}
	for i := range 4 {
		fill(b, s, fmt.Sprintf("o%d", i), 64<<10, 1000)
	}
	if err := s.Close(); err != nil {
		b.Fatal(err)
	}
	for _, scan := range []bool{false, true} {
		name := "indexed"
		if scan {
			name = "scan"
		}
		b.Run(name, func(b *testing.B) {
			for range b.N {
				if scan {
					b.StopTimer()
					idx, _ := filepath.Glob(filepath.Join(dir, "*", "*.idx"))
					for _, p := range idx {
						os.Remove(p)
					}
					b.StartTimer()
				}
				s, err := Open(Options{Dir: dir})
				if err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				if in, _ := s.Describe("o0"); in.Count != 64<<10 {
					b.Fatalf("%d messages after start-up", in.Count)
				}
				s.Close()
				b.StartTimer()
			}
		})
	}
}

// fill appends n messages of size bytes in batches.
func fill(b *testing.B, s *Store, name string, n, size int) {
	b.Helper()
	if err := s.Create(Definition{Name: name, MaxSize: 1 << 40, SegmentSize: DefaultSegmentSize}); err != nil {
		b.Fatal(err)
	}
	p := make([]byte, size)
	for i := 0; i < n; i += 64 {
		var acks Ack
		for j := range min(64, n-i) {
			_, a, err := s.AppendNoWait(name, p)
			if err != nil {
				b.Fatal(err)
			}
			if j == 0 {
				acks = a
			} else {
				acks.Merge(a)
			}
		}
		if err := acks.Wait(); err != nil {
			b.Fatal(err)
		}
	}
}
