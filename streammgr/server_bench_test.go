package streammgr_test

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/evergreen-edge/evergreen/services/kit/bustest"
	"github.com/evergreen-edge/evergreen/services/kit/daemon"
	"github.com/evergreen-edge/evergreen/services/kit/layout"
	"github.com/evergreen-edge/evergreen/streammgr"
	"github.com/evergreen-edge/evergreen/streammgr/protocol"
	"github.com/fxamacker/cbor/v2"
)

// BenchmarkProtocolAppend1KB4Clients drives the daemon end to end over
// TCP: 4 connections, each keeping 32 AppendMessage requests of 1 KiB in
// flight (v1 clients pipeline by requestId), flushOnWrite off and on.
// Profile with -cpuprofile; ggbench --streams holds the JetStream figures.
func BenchmarkProtocolAppend1KB4Clients(b *testing.B) {
	const clients, window, size = 4, 32, 1024
	for _, flush := range []bool{false, true} {
		b.Run(fmt.Sprintf("flushOnWrite=%v", flush), func(b *testing.B) {
			addr := startForBench(b)
			if err := createForBench(addr, "b", flush); err != nil {
				b.Fatal(err)
			}
			payload := make([]byte, size)
			b.SetBytes(size)
			b.ResetTimer()
			var left atomic.Int64
			left.Store(int64(b.N))
			var wg sync.WaitGroup
			for range clients {
				wg.Add(1)
				go func() {
					defer wg.Done()
					if err := pipelineAppends(addr, "b", payload, window, &left); err != nil {
						b.Error(err)
					}
				}()
			}
			wg.Wait()
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "appends/s")
		})
	}
}

func startForBench(b *testing.B) string {
	root := layout.Root(b.TempDir())
	bus := bustest.Start(b)
	bustest.WriteCreds(b, root, streammgr.Name)
	run, err := daemon.Start(context.Background(), streammgr.Spec(), daemon.Options{Root: root.Dir(), BusURL: bus,
		Config: testConfig(false), LogStderr: io.Discard})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { run.Shutdown(context.Background()) })
	return run.Env.Endpoints.Streams
}

func createForBench(addr, stream string, flush bool) error {
	body, err := cbor.Marshal(map[string]any{"requestId": "create", "definition": def(stream, map[string]any{
		"flushOnWrite": flush, "maxSize": int64(1) << 40, "streamSegmentSize": 64 << 20, "strategyOnFull": 1})})
	if err != nil {
		return err
	}
	return withConn(addr, func(br *bufio.Reader, bw *bufio.Writer) error {
		bw.Write(protocol.AppendFrame(nil, protocol.OpCreateMessageStream, body))
		if err := bw.Flush(); err != nil {
			return err
		}
		_, p, err := protocol.ReadFrame(br, 0)
		if err != nil {
			return err
		}
		var r protocol.Response
		if err := protocol.Decode(p, &r); err != nil || r.Status != protocol.Success {
			return fmt.Errorf("create: %d %s %v", r.Status, r.ErrorMessage, err)
		}
		return nil
	})
}

// withConn connects and shakes hands, then runs f on the connection.
func withConn(addr string, f func(*bufio.Reader, *bufio.Writer) error) error {
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		return err
	}
	defer nc.Close()
	br := bufio.NewReaderSize(nc, 64<<10)
	bw := bufio.NewWriterSize(nc, 64<<10)
	bw.WriteByte(protocol.ConnectVersion)
	bw.Write(protocol.AppendFrame(nil, protocol.OpConnect, appendConnect(nil)))
	bw.Flush()
	if _, err := br.ReadByte(); err != nil {
		return err
	}
	if _, _, err := protocol.ReadFrame(br, 0); err != nil {
		return err
	}
	return f(br, bw)
}

// pipelineAppends sends appends until left runs out, writing while the
// window has room and flushing when it is full, as a buffered client does.
func pipelineAppends(addr, stream string, payload []byte, window int, left *atomic.Int64) error {
	return withConn(addr, func(br *bufio.Reader, bw *bufio.Writer) error {
		return pipeline(br, bw, stream, payload, window, left)
	})
}

func pipeline(br *bufio.Reader, bw *bufio.Writer, stream string, payload []byte, window int, left *atomic.Int64) error {
	sem := make(chan struct{}, window)
	errc := make(chan error, 1)
	go func() {
		for {
			op, p, err := protocol.ReadFrame(br, 0)
			if err != nil {
				errc <- err
				return
			}
			var r protocol.AppendMessageResponse
			if err := protocol.Decode(p, &r); err != nil || op != protocol.OpAppendMessageResponse || r.Status != protocol.Success {
				errc <- fmt.Errorf("append: op %v status %d %s %v", op, r.Status, r.ErrorMessage, err)
				return
			}
			<-sem
		}
	}()
	var frame []byte
	for i := 0; left.Add(-1) >= 0; i++ {
		select {
		case sem <- struct{}{}:
		default:
			if err := bw.Flush(); err != nil {
				return err
			}
			sem <- struct{}{}
		}
		frame = protocol.AppendAppendRequestFrame(frame[:0], "a"+strconv.Itoa(i), stream, payload)
		if _, err := bw.Write(frame); err != nil {
			return err
		}
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	for range window {
		select {
		case sem <- struct{}{}:
		case err := <-errc:
			return err
		}
	}
	return nil
}

func appendConnect(dst []byte) []byte {
	dst = append(dst, 0xa2)
	dst = cborText(dst, "requestId")
	dst = cborText(dst, "connect")
	dst = cborText(dst, "protocolVersion")
	return cborText(dst, protocol.ProtocolVersion)
}

func cborText(dst []byte, s string) []byte { return append(cborHead(dst, 3, len(s)), s...) }

func cborHead(dst []byte, major byte, n int) []byte {
	switch {
	case n < 24:
		return append(dst, major<<5|byte(n))
	case n < 1<<8:
		return append(dst, major<<5|24, byte(n))
	case n < 1<<16:
		return binary.BigEndian.AppendUint16(append(dst, major<<5|25), uint16(n))
	}
	return binary.BigEndian.AppendUint32(append(dst, major<<5|26), uint32(n))
}

// BenchmarkProtocolRead1KB4Clients: 4 connections each reading a stream
// of 1 KiB messages from its start, 100 messages a read, one read in
// flight (as a consumer catching up does); b.N counts messages.
func BenchmarkProtocolRead1KB4Clients(b *testing.B) {
	const clients, n = 4, 64 << 10
	addr := startForBench(b)
	if err := createForBench(addr, "r", false); err != nil {
		b.Fatal(err)
	}
	var left atomic.Int64
	left.Store(n)
	if err := pipelineAppends(addr, "r", make([]byte, 1024), 32, &left); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(1024)
	b.ResetTimer()
	left.Store(int64(b.N))
	var wg sync.WaitGroup
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := withConn(addr, func(br *bufio.Reader, bw *bufio.Writer) error {
				next := int64(0)
				for i := 0; left.Load() > 0; i++ {
					body, _ := cbor.Marshal(map[string]any{"requestId": "r" + strconv.Itoa(i), "streamName": "r",
						"readMessagesOptions": map[string]any{"desiredStartSequenceNumber": next, "maxMessageCount": 100}})
					bw.Write(protocol.AppendFrame(nil, protocol.OpReadMessages, body))
					if err := bw.Flush(); err != nil {
						return err
					}
					_, p, err := protocol.ReadFrame(br, 0)
					if err != nil {
						return err
					}
					var r struct {
						Messages []struct {
							SequenceNumber int64 `cbor:"sequenceNumber"`
						} `cbor:"messages"`
						Status protocol.Status `cbor:"status"`
					}
					if err := protocol.Decode(p, &r); err != nil || r.Status != protocol.Success {
						return fmt.Errorf("read: status %d %v", r.Status, err)
					}
					left.Add(-int64(len(r.Messages)))
					if next = r.Messages[len(r.Messages)-1].SequenceNumber + 1; next >= n {
						next = 0
					}
				}
				return nil
			})
			if err != nil {
				b.Error(err)
			}
		}()
	}
	wg.Wait()
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}
