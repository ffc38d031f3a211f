package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/evergreen-edge/evergreen/streammgr/protocol"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

var (
	streamsGB = flag.Float64("streams-gb", 0.25, "GiB the stream manager stores across 10 streams for the memory and restart figures "+
		"(--streams --streams-gb 1 gives the 1 GB reference figure)")
	streamsRuns = flag.Int("streams-runs", 3, "runs of each timed streams figure (medians are printed)")
)

const (
	smClients, smWindow, smSize = 4, 32, 1024
	// smReadBatch is maxMessageCount of a read and the batch of a
	// JetStream fetch.
	smReadBatch = 100
)

// streamsBench measures, against the stream manager over the v1 protocol
// and against NATS JetStream's file store embedded in this process with
// the same sync settings (sync every second / sync always):
//   - appends of 1 KiB messages from 4 clients, each keeping 32 requests in
//     flight (both clients buffer their writes), flushOnWrite off and on;
//   - reads of what was appended, from 4 clients each reading the stream
//     from its start in batches of 100 (ReadMessages / ordered consumer
//     Fetch), one batch in flight;
//
// medians of --streams-runs runs. Then the stream manager's PSS with
// --streams-gb GiB stored across 10 streams, its restart time on that
// data and its PSS after the restart and after reading it all.
func streamsBench(ggd string, dur time.Duration) {
	root := streamsRoot()
	defer os.RemoveAll(root)
	_, stop := startSuite(ggd, root)
	addr := readEndpoints(root)["streams"]
	runs := max(1, *streamsRuns)
	fmt.Printf("streams: 1 KiB messages, %d clients with %d appends in flight each, reads in batches of %d; %d runs of %v, medians (min..max)\n",
		smClients, smWindow, smReadBatch, runs, dur)
	var ours, peer [3][]float64 // appends off, appends on, reads
	for r := range runs {
		for i, flush := range []bool{false, true} {
			name := fmt.Sprintf("bench-%d-%v", r, flush)
			smCreate(addr, name, flush, 1<<40, 64<<20)
			ours[i] = append(ours[i], smAppendRate(addr, name, dur))
			if !flush {
				ours[2] = append(ours[2], smReadRate(addr, name, dur))
			}
			smDelete(addr, name)
			a, rd := jsRun(flush, dur)
			peer[i] = append(peer[i], a)
			if !flush {
				peer[2] = append(peer[2], rd)
			}
		}
	}
	for i, name := range []string{"appends, flushOnWrite off (fsync ≤1 s)", "appends, flushOnWrite on (fsync per ack)", "reads (consumer fetches)"} {
		o, p := medianF(ours[i]), medianF(peer[i])
		fmt.Printf("  %-40s %9.0f msg/s (%s)   peer JetStream file store %9.0f msg/s (%s)   ratio %.2fx\n",
			name, o, spread(ours[i]), p, spread(peer[i]), o/max(p, 1))
	}
	stop()
	streamsMemory(ggd, *streamsGB)
	fmt.Println()
}

// streamsMemory fills a fresh suite's stream manager with gb GiB across 10
// streams of 1 KiB messages in v1's default 16 MiB segments (maxSize
// large enough to keep it all), then reports its PSS,
// the restart time on that data (next to an empty store's), its PSS after
// the restart, and after reading everything once.
func streamsMemory(ggd string, gb float64) {
	const streams, size = 10, 1024
	total := int64(gb * (1 << 30))
	if total <= 0 {
		return
	}
	root := streamsRoot()
	defer os.RemoveAll(root)
	empty := smRestarts(ggd, root) // an empty store: the floor
	_, stop := startSuite(ggd, root)
	addr := readEndpoints(root)["streams"]
	names := make([]string, streams)
	for i := range names {
		names[i] = fmt.Sprintf("fill-%d", i)
		smCreate(addr, names[i], false, max(total, 1<<20), 16<<20)
	}
	// Records are 24 bytes of header and the payload.
	msgs := total / streams / (size + 24)
	start := time.Now()
	todo := make(chan string, len(names))
	for _, n := range names {
		todo <- n
	}
	close(todo)
	var wg sync.WaitGroup
	for range smClients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := range todo {
				c := smMustDial(addr)
				if got := c.appendN(n, size, smWindow, msgs); got != msgs {
					fail("fill %s: %d of %d appended", n, got, msgs)
				}
			}
		}()
	}
	wg.Wait()
	fill := time.Since(start)
	stored := duSize(filepath.Join(root, "data", "streammgr"))
	time.Sleep(2 * time.Second)
	pid := suitePids(root)["streammgr"]
	fmt.Printf("  %-40s %9.1f MB PSS with %s stored across %d streams (filled at %.0f MB/s)\n", "stream manager", mb(pss(pid)), stored,
		streams, float64(msgs*streams*size)/fill.Seconds()/(1<<20))
	stop()

	restart := smRestarts(ggd, root)
	restart.stop = smRestart(ggd, root).stop
	defer restart.stop()
	pidAfter := suitePids(root)["streammgr"]
	fmt.Printf("  %-40s %9.1f ms to answering with %s stored (an empty store: %.1f ms; ggd's start included; medians of 3)\n",
		"stream manager restart", float64(restart.d)/1e6, stored, float64(empty.d)/1e6)
	time.Sleep(3 * time.Second) // past the daemons' start-up trim, as in production
	fmt.Printf("  %-40s %9.1f MB PSS after the restart\n", "", mb(pss(pidAfter)))
	start = time.Now()
	read := smReadAll(readEndpoints(root)["streams"], names)
	fmt.Printf("  %-40s %9.1f MB PSS after reading all %d messages once (%.0f msg/s)\n", "", mb(pss(pidAfter)), read,
		float64(read)/time.Since(start).Seconds())
}

// smRestarts is the median of 3 smRestart times (each suite stopped).
func smRestarts(ggd, root string) started {
	var d []time.Duration
	for range 3 {
		s := smRestart(ggd, root)
		s.stop()
		d = append(d, s.d)
	}
	return started{d: median(d), stop: func() {}}
}

type started struct {
	d    time.Duration
	stop func()
}

// smRestart starts ggd on root and returns the time until the stream
// manager answered a ListStreams (its store is open before it listens),
// once the whole suite is healthy; it runs until stop.
func smRestart(ggd, root string) started {
	os.Remove(filepath.Join(root, "run", "endpoints.json"))
	cmd := exec.Command(ggd, "--root", root)
	t0 := time.Now()
	must(cmd.Start())
	stop := func() { cmd.Process.Signal(syscall.SIGTERM); cmd.Wait() }
	for time.Since(t0) < 60*time.Second {
		b, err := os.ReadFile(filepath.Join(root, "run", "endpoints.json"))
		if err == nil && strings.Contains(string(b), "streams") {
			if c, err := smDial(readEndpoints(root)["streams"]); err == nil {
				err := c.call(protocol.OpListStreams, map[string]any{"requestId": "l"})
				c.close()
				if err == nil {
					d := time.Since(t0)
					waitHealthy(root)
					return started{d, stop}
				}
			}
		}
		time.Sleep(time.Millisecond)
	}
	stop()
	fail("stream manager on %s not answering in 60s", root)
	return started{}
}

// waitHealthy waits until the suite's /healthz answers 200 (every daemon
// serving, pid files written).
func waitHealthy(root string) {
	client := &http.Client{Timeout: time.Second}
	for range 3000 {
		if resp, err := client.Get("http://" + httpAddr(root) + "/healthz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	fail("suite on %s not healthy in 30s", root)
}

func streamsRoot() string {
	root := tempRoot()
	cfg := `{"evergreen":{"listen":{"mqtt":"127.0.0.1:0","ipc":"127.0.0.1:0","streams":"127.0.0.1:0","bus":"127.0.0.1:0","http":"127.0.0.1:0","discovery":"127.0.0.1:0"},"streams":{"authenticateClient":false}}}`
	must(os.WriteFile(filepath.Join(root, "config", "config.json"), []byte(cfg), 0o600))
	return root
}

func medianF(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	return s[len(s)/2]
}

func spread(v []float64) string {
	if len(v) == 0 {
		return "-"
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	return fmt.Sprintf("%.0f..%.0f", s[0], s[len(s)-1])
}

func duSize(dir string) string {
	out, err := exec.Command("du", "-sh", dir).Output()
	if err != nil {
		return "?"
	}
	return strings.Fields(string(out))[0]
}

func smCreate(addr, stream string, flush bool, maxSize, segment int64) {
	c := smMustDial(addr)
	defer c.close()
	must(c.call(protocol.OpCreateMessageStream, map[string]any{"requestId": "create", "definition": map[string]any{
		"name": stream, "maxSize": maxSize, "streamSegmentSize": segment, "strategyOnFull": 1, "persistence": 0, "flushOnWrite": flush}}))
}

func smDelete(addr, stream string) {
	c := smMustDial(addr)
	defer c.close()
	must(c.call(protocol.OpDeleteMessageStream, map[string]any{"requestId": "delete", "name": stream}))
}

// smAppendRate appends from smClients connections for dur and returns
// acks/s.
func smAppendRate(addr, stream string, dur time.Duration) float64 {
	var acked atomic.Int64
	deadline := time.Now().Add(dur)
	start := time.Now()
	var wg sync.WaitGroup
	for range smClients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := smMustDial(addr)
			defer c.close()
			acked.Add(c.appendUntil(stream, smSize, smWindow, deadline))
		}()
	}
	wg.Wait()
	return float64(acked.Load()) / max(dur.Seconds(), time.Since(start).Seconds())
}

// smReadRate reads stream from its start with smClients connections, for
// dur or until each reached its end, and returns messages/s.
func smReadRate(addr, stream string, dur time.Duration) float64 {
	var read atomic.Int64
	deadline := time.Now().Add(dur)
	start := time.Now()
	var wg sync.WaitGroup
	for range smClients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := smMustDial(addr)
			defer c.close()
			read.Add(c.readUntil(stream, deadline))
		}()
	}
	wg.Wait()
	return float64(read.Load()) / time.Since(start).Seconds()
}

// smReadAll reads every stream once, smClients at a time.
func smReadAll(addr string, names []string) int64 {
	var read atomic.Int64
	var wg sync.WaitGroup
	todo := make(chan string, len(names))
	for _, n := range names {
		todo <- n
	}
	close(todo)
	for range smClients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := smMustDial(addr)
			defer c.close()
			for n := range todo {
				read.Add(c.readUntil(n, time.Now().Add(time.Hour)))
			}
		}()
	}
	wg.Wait()
	return read.Load()
}

// smConn is a v1 protocol client as a pipelining SDK would be: requests
// written to a buffer, flushed when the client would otherwise wait.
type smConn struct {
	conn net.Conn
	r    *bufio.Reader
	w    *bufio.Writer
}

func smMustDial(addr string) *smConn {
	c, err := smDial(addr)
	must(err)
	return c
}

func smDial(addr string) (*smConn, error) {
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	c := &smConn{conn: conn, r: bufio.NewReaderSize(conn, 64<<10), w: bufio.NewWriterSize(conn, 64<<10)}
	c.w.WriteByte(protocol.ConnectVersion)
	if err := c.send(protocol.OpConnect, protocol.ConnectRequest{RequestID: "c", ProtocolVersion: "1.1.0"}); err != nil {
		conn.Close()
		return nil, err
	}
	if _, err := c.r.ReadByte(); err != nil {
		conn.Close()
		return nil, err
	}
	_, b, err := protocol.ReadFrame(c.r, 0)
	if err != nil {
		conn.Close()
		return nil, err
	}
	var cr protocol.ConnectResponse
	if err := protocol.Decode(b, &cr); err != nil || cr.Status != protocol.Success {
		conn.Close()
		return nil, fmt.Errorf("connect: status %d %s %v", cr.Status, cr.ErrorMessage, err)
	}
	return c, nil
}

func (c *smConn) close() { c.conn.Close() }

func (c *smConn) send(op protocol.Op, v any) error {
	b, err := protocol.Encode(v)
	if err != nil {
		return err
	}
	if _, err := c.w.Write(protocol.AppendFrame(nil, op, b)); err != nil {
		return err
	}
	return c.w.Flush()
}

func (c *smConn) call(op protocol.Op, v any) error {
	if err := c.send(op, v); err != nil {
		return err
	}
	_, b, err := protocol.ReadFrame(c.r, 0)
	if err != nil {
		return err
	}
	var r protocol.Response
	if err := protocol.Decode(b, &r); err != nil {
		return err
	}
	if r.Status != protocol.Success {
		return fmt.Errorf("status %d: %s", r.Status, r.ErrorMessage)
	}
	return nil
}

// appendUntil appends messages of size bytes, window in flight, until
// deadline, and returns how many were acknowledged.
func (c *smConn) appendUntil(stream string, size, window int, deadline time.Time) int64 {
	return c.pipeline(stream, size, window, func(int64) bool { return time.Now().Before(deadline) })
}

// appendN appends n messages and returns how many were acknowledged.
func (c *smConn) appendN(stream string, size, window int, n int64) int64 {
	return c.pipeline(stream, size, window, func(i int64) bool { return i < n })
}

func (c *smConn) pipeline(stream string, size, window int, more func(sent int64) bool) int64 {
	sem := make(chan struct{}, window)
	var acked atomic.Int64
	done := make(chan struct{})
	go func() { // reader: one ack frees one slot
		defer close(done)
		for {
			_, b, err := protocol.ReadFrame(c.r, 0)
			if err != nil {
				return
			}
			var r protocol.AppendMessageResponse
			if protocol.Decode(b, &r) != nil || r.Status != protocol.Success {
				fmt.Fprintf(os.Stderr, "ggbench: append: status %d %s\n", r.Status, r.ErrorMessage)
				return
			}
			acked.Add(1)
			<-sem
		}
	}()
	payload := make([]byte, size)
	var frame []byte
	var sent int64
	for ; more(sent); sent++ {
		select {
		case sem <- struct{}{}:
		default:
			if c.w.Flush() != nil {
				break
			}
			sem <- struct{}{}
		}
		frame = protocol.AppendAppendRequestFrame(frame[:0], "a"+strconv.FormatInt(sent, 10), stream, payload)
		if _, err := c.w.Write(frame); err != nil {
			break
		}
	}
	c.w.Flush()
	for t := time.Now(); acked.Load() < sent && time.Since(t) < 30*time.Second; {
		time.Sleep(time.Millisecond)
	}
	c.conn.Close()
	<-done
	return acked.Load()
}

// readUntil reads stream from its start, one batch in flight, until its
// end or deadline, and returns the messages read.
func (c *smConn) readUntil(stream string, deadline time.Time) int64 {
	var n, next int64
	for i := 0; time.Now().Before(deadline); i++ {
		err := c.send(protocol.OpReadMessages, map[string]any{"requestId": "r" + strconv.Itoa(i), "streamName": stream,
			"readMessagesOptions": map[string]any{"desiredStartSequenceNumber": next, "minMessageCount": 1, "maxMessageCount": smReadBatch}})
		must(err)
		_, b, err := protocol.ReadFrame(c.r, 0)
		must(err)
		var r struct {
			Messages []struct {
				SequenceNumber int64 `cbor:"sequenceNumber"`
			} `cbor:"messages"`
			Status       protocol.Status `cbor:"status"`
			ErrorMessage string          `cbor:"errorMessage"`
		}
		must(protocol.Decode(b, &r))
		if r.Status == protocol.NotEnoughMessages {
			break
		}
		if r.Status != protocol.Success || len(r.Messages) == 0 {
			fail("read %s: status %d %s", stream, r.Status, r.ErrorMessage)
		}
		n += int64(len(r.Messages))
		next = r.Messages[len(r.Messages)-1].SequenceNumber + 1
	}
	return n
}

// jsRun starts JetStream's file store in this process, publishes for dur
// as smAppendRate does and returns acks/s; without syncAlways it then
// reads as smReadRate does and returns messages/s too.
func jsRun(syncAlways bool, dur time.Duration) (appends, reads float64) {
	dir, err := os.MkdirTemp("", "ggb-js-")
	must(err)
	defer os.RemoveAll(dir)
	opts := &server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: dir, NoLog: true, NoSigs: true,
		SyncInterval: time.Second, SyncAlways: syncAlways}
	s, err := server.NewServer(opts)
	must(err)
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		fail("JetStream server not ready")
	}
	defer s.Shutdown()
	nc, err := nats.Connect(s.ClientURL())
	must(err)
	defer nc.Close()
	js, err := jetstream.New(nc)
	must(err)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	stream, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "BENCH", Subjects: []string{"bench"}, Storage: jetstream.FileStorage})
	must(err)
	var acked atomic.Int64
	payload := make([]byte, smSize)
	deadline := time.Now().Add(dur)
	start := time.Now()
	var wg sync.WaitGroup
	for range smClients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := nats.Connect(s.ClientURL())
			must(err)
			defer c.Close()
			// Acks counted by the client's own ack handler: no goroutine
			// per message on JetStream's side either.
			cjs, err := jetstream.New(c, jetstream.WithPublishAsyncMaxPending(smWindow),
				jetstream.WithPublishAsyncAckHandler(func(jetstream.JetStream, *nats.Msg, *jetstream.PubAck) { acked.Add(1) }))
			must(err)
			for time.Now().Before(deadline) {
				cjs.PublishAsync("bench", payload)
			}
			select {
			case <-cjs.PublishAsyncComplete():
			case <-time.After(5 * time.Second):
			}
		}()
	}
	wg.Wait()
	appends = float64(acked.Load()) / max(dur.Seconds(), time.Since(start).Seconds())
	if syncAlways {
		return appends, 0
	}
	info, err := stream.Info(ctx)
	must(err)
	total := int64(info.State.Msgs)
	var read atomic.Int64
	deadline = time.Now().Add(dur)
	start = time.Now()
	for range smClients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := nats.Connect(s.ClientURL())
			must(err)
			defer c.Close()
			cjs, err := jetstream.New(c)
			must(err)
			cons, err := cjs.OrderedConsumer(context.Background(), "BENCH", jetstream.OrderedConsumerConfig{})
			must(err)
			var n int64
			for n < total && time.Now().Before(deadline) {
				b, err := cons.Fetch(smReadBatch, jetstream.FetchMaxWait(5*time.Second))
				must(err)
				for m := range b.Messages() {
					_ = m.Data()
					n++
				}
				if err := b.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) {
					fail("JetStream fetch: %v", err)
				}
			}
			read.Add(n)
		}()
	}
	wg.Wait()
	return appends, float64(read.Load()) / time.Since(start).Seconds()
}
