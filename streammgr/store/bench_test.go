package store

import (
	"fmt"
	"sync"
	"testing"
)

// BenchmarkAppend1KB4Clients: appends of 1 KiB from 4 goroutines, with and
// without flushOnWrite (group commit). Compare with ggbench --streams for
// JetStream's file store measured in the same run.
func BenchmarkAppend1KB4Clients(b *testing.B) {
	for _, flush := range []bool{false, true} {
		b.Run(fmt.Sprintf("flushOnWrite=%v", flush), func(b *testing.B) {
			s, err := Open(Options{Dir: b.TempDir()})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			s.Create(Definition{Name: "b", FlushOnWrite: flush, MaxSize: 1 << 40, Strategy: OverwriteOldestData})
			p := make([]byte, 1024)
			b.SetBytes(1024)
			b.ResetTimer()
			var wg sync.WaitGroup
			per := b.N/4 + 1
			for range 4 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for range per {
						if _, err := s.Append("b", p); err != nil {
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
