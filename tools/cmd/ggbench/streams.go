package main

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/evergreen-edge/evergreen/streammgr/protocol"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// streamsBench measures appends of 1 KiB messages from 4 clients, each
// keeping a window of requests in flight, against the stream manager over
// the v1 protocol, with flushOnWrite off and on; and against NATS
// JetStream's file store embedded in this process with the same sync
// settings (sync every second / sync always). Then the stream manager's
// PSS with what was stored.
func streamsBench(ggd string, dur time.Duration) {
	const clients, window, size = 4, 32, 1024
	root := tempRoot()
	defer os.RemoveAll(root)
	cfg := `{"evergreen":{"listen":{"mqtt":"127.0.0.1:0","ipc":"127.0.0.1:0","streams":"127.0.0.1:0","bus":"127.0.0.1:0","http":"127.0.0.1:0","discovery":"127.0.0.1:0"},"streams":{"authenticateClient":false}}}`
	must(os.WriteFile(filepath.Join(root, "config", "config.json"), []byte(cfg), 0o600))
	_, stop := startSuite(ggd, root)
	defer stop()
	addr := readEndpoints(root)["streams"]
	fmt.Printf("stream appends of 1 KiB messages, %d clients with %d in flight each, %v per run\n", clients, window, dur)
	var ours [2]float64
	for i, flush := range []bool{false, true} {
		ours[i] = smAppendRate(addr, fmt.Sprintf("bench-%v", flush), flush, clients, window, size, dur)
	}
	var peer [2]float64
	for i, always := range []bool{false, true} {
		peer[i] = jsAppendRate(always, clients, window, size, dur)
	}
	for i, name := range []string{"flushOnWrite off (fsync ≤1 s)", "flushOnWrite on (fsync per ack)"} {
		ratio := 0.0
		if peer[i] > 0 {
			ratio = ours[i] / peer[i]
		}
		fmt.Printf("  %-32s %9.0f msg/s   peer JetStream file store %9.0f msg/s   ratio %.2fx\n", name, ours[i], peer[i], ratio)
	}
	pid := suitePids(root)["streammgr"]
	fmt.Printf("  %-32s %9.1f MB PSS with %s stored\n\n", "stream manager", mb(pss(pid)), duSize(filepath.Join(root, "data", "streammgr")))
}

func duSize(dir string) string {
	out, err := exec.Command("du", "-sh", dir).Output()
	if err != nil {
		return "?"
	}
	return strings.Fields(string(out))[0]
}

// smAppendRate appends for dur through the v1 protocol and returns acks/s.
func smAppendRate(addr, stream string, flush bool, clients, window, size int, dur time.Duration) float64 {
	c, err := smDial(addr)
	must(err)
	must(c.call(protocol.OpCreateMessageStream, map[string]any{"requestId": "create", "definition": map[string]any{
		"name": stream, "maxSize": int64(1) << 40, "streamSegmentSize": 64 << 20, "strategyOnFull": 1, "persistence": 0, "flushOnWrite": flush}}))
	c.conn.Close()
	var acked atomic.Int64
	payload := make([]byte, size)
	deadline := time.Now().Add(dur)
	var wg sync.WaitGroup
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := smDial(addr)
			must(err)
			defer c.conn.Close()
			sem := make(chan struct{}, window)
			done := make(chan struct{})
			go func() { // reader: one ack frees one slot
				defer close(done)
				for {
					if _, _, err := protocol.ReadFrame(c.r, 0); err != nil {
						return
					}
					acked.Add(1)
					<-sem
				}
			}()
			n := 0
			for time.Now().Before(deadline) {
				sem <- struct{}{}
				n++
				if err := c.send(protocol.OpAppendMessage, map[string]any{"requestId": fmt.Sprintf("a%d", n), "name": stream, "payload": payload}); err != nil {
					break
				}
			}
			for len(sem) > 0 && time.Since(deadline) < 5*time.Second {
				time.Sleep(time.Millisecond)
			}
			c.conn.Close()
			<-done
		}()
	}
	start := time.Now()
	wg.Wait()
	return float64(acked.Load()) / max(dur.Seconds(), time.Since(start).Seconds())
}

type smConn struct {
	conn net.Conn
	r    *bufio.Reader
	mu   sync.Mutex
}

func smDial(addr string) (*smConn, error) {
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	c := &smConn{conn: conn, r: bufio.NewReaderSize(conn, 64<<10)}
	conn.Write([]byte{protocol.ConnectVersion})
	if err := c.send(protocol.OpConnect, protocol.ConnectRequest{RequestID: "c", ProtocolVersion: "1.1.0"}); err != nil {
		return nil, err
	}
	if _, err := c.r.ReadByte(); err != nil {
		return nil, err
	}
	_, b, err := protocol.ReadFrame(c.r, 0)
	if err != nil {
		return nil, err
	}
	var cr protocol.ConnectResponse
	if err := protocol.Decode(b, &cr); err != nil || cr.Status != protocol.Success {
		return nil, fmt.Errorf("connect: status %d %s %v", cr.Status, cr.ErrorMessage, err)
	}
	return c, nil
}

func (c *smConn) send(op protocol.Op, v any) error {
	b, err := protocol.Encode(v)
	if err != nil {
		return err
	}
	buf := make([]byte, 5, 5+len(b))
	binary.BigEndian.PutUint32(buf[:4], uint32(len(b)+1))
	buf[4] = byte(op)
	c.mu.Lock()
	defer c.mu.Unlock()
	_, err = c.conn.Write(append(buf, b...))
	return err
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

// jsAppendRate publishes to an embedded JetStream file store for dur and
// returns acks/s.
func jsAppendRate(syncAlways bool, clients, window, size int, dur time.Duration) float64 {
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
	_, err = js.CreateStream(ctx, jetstream.StreamConfig{Name: "BENCH", Subjects: []string{"bench"}, Storage: jetstream.FileStorage})
	cancel()
	must(err)
	var acked atomic.Int64
	payload := make([]byte, size)
	deadline := time.Now().Add(dur)
	var wg sync.WaitGroup
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := nats.Connect(s.ClientURL())
			must(err)
			defer c.Close()
			cjs, err := jetstream.New(c, jetstream.WithPublishAsyncMaxPending(window))
			must(err)
			for time.Now().Before(deadline) {
				f, err := cjs.PublishAsync("bench", payload)
				if err != nil {
					continue
				}
				go func() {
					select {
					case <-f.Ok():
						acked.Add(1)
					case <-f.Err():
					}
				}()
			}
			select {
			case <-cjs.PublishAsyncComplete():
			case <-time.After(5 * time.Second):
			}
		}()
	}
	wg.Wait()
	return float64(acked.Load()) / dur.Seconds()
}
