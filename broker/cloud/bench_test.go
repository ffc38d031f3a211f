package cloud

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkSpoolPutFileSystem is the cost of a durable Put (write and
// fsync) of a 256-byte message: one producer, then 32 producers sharing
// fsyncs (group commit).
func BenchmarkSpoolPutFileSystem(b *testing.B) {
	payload := make([]byte, 256)
	s := spoolSettings(StorageFileSystem)
	s.MaxBytes = 1 << 30
	b.Run("producers=1", func(b *testing.B) {
		sp := mustOpen(b, b.TempDir(), s)
		b.SetBytes(int64(len(payload)))
		for b.Loop() {
			if err := sp.Put("bench/t", payload); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("producers=32", func(b *testing.B) {
		sp := mustOpen(b, b.TempDir(), s)
		b.SetBytes(int64(len(payload)))
		b.SetParallelism(32)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if err := sp.Put("bench/t", payload); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}

// BenchmarkCloudThroughput50msRTT pushes messages through the spooler to
// mosquitto behind a proxy that adds 25 ms each way (50 ms round trip) and
// reports messages/s acked by the cloud. The named peer is v1's one message
// in flight (window=1), measured in the same run; x-v1 is the ratio.
func BenchmarkCloudThroughput50msRTT(b *testing.B) {
	p := newPKI(b)
	m := startMosquitto(b, p, mosquittoOptions{})
	far := startLatencyProxy(b, m.addr(), 25*time.Millisecond)
	var v1 float64
	for _, bc := range []struct {
		name     string
		storage  string
		window   int
		parallel int
	}{
		{"v1-window=1/Memory", StorageMemory, 1, 1},
		{"window=100/Memory", StorageMemory, 100, 1},
		{"window=100/FileSystem", StorageFileSystem, 100, 32},
	} {
		b.Run(bc.name, func(b *testing.B) {
			core := newTestCore(b, p, m.port)
			s := DefaultSpoolerSettings()
			s.Storage, s.MaxInflight, s.MaxBytes = bc.storage, bc.window, 1<<30
			c := newCloud(b, core, s, func(o *Options) { o.Endpoint = far.addr(); o.Log = nil })
			startCloud(b, c)
			waitConnected(b, c)
			payload := make([]byte, 200)
			b.ResetTimer()
			start := time.Now()
			var next atomic.Int64
			var wg sync.WaitGroup
			for range bc.parallel {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for next.Add(1) <= int64(b.N) {
						if err := c.Publish("bench/t", payload); err != nil {
							b.Error(err)
							return
						}
					}
				}()
			}
			wg.Wait()
			for c.Status().Sent < uint64(b.N) {
				time.Sleep(time.Millisecond)
			}
			elapsed := time.Since(start)
			b.StopTimer()
			rate := float64(b.N) / elapsed.Seconds()
			b.ReportMetric(rate, "msgs/s")
			if bc.window == 1 {
				v1 = rate
			} else if v1 > 0 {
				b.ReportMetric(rate/v1, "x-v1")
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := c.Stop(ctx); err != nil {
				b.Fatal(fmt.Errorf("stop: %w", err))
			}
		})
	}
}
