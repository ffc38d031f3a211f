package streammgr_test

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/evergreen-edge/evergreen/services/kit/bustest"
	"github.com/evergreen-edge/evergreen/services/kit/config"
	"github.com/evergreen-edge/evergreen/services/kit/daemon"
	"github.com/evergreen-edge/evergreen/services/kit/layout"
	"github.com/evergreen-edge/evergreen/streammgr"
	"github.com/evergreen-edge/evergreen/streammgr/protocol"
	"github.com/fxamacker/cbor/v2"
)

// TestMain doubles as the daemon in a child process (kill -9 tests):
// STREAMMGR_TEST_CHILD=ROOT runs it on ROOT until killed.
func TestMain(m *testing.M) {
	if root := os.Getenv("STREAMMGR_TEST_CHILD"); root != "" {
		run, err := daemon.Start(context.Background(), streammgr.Spec(), daemon.Options{Root: root,
			BusURL: os.Getenv("STREAMMGR_TEST_BUS"), Config: testConfig(false), LogStderr: io.Discard})
		if err != nil {
			fmt.Fprintln(os.Stderr, "child:", err)
			os.Exit(1)
		}
		fmt.Println("ready", run.Env.Endpoints.Streams)
		ch := make(chan os.Signal, 1)
		signal.Notify(ch, syscall.SIGTERM)
		<-ch
		run.Shutdown(context.Background())
		return
	}
	os.Exit(m.Run())
}

func testConfig(auth bool) *config.Config {
	cfg := config.Default()
	cfg.Evergreen.Listen.Streams = "127.0.0.1:0"
	cfg.Evergreen.Listen.IPC = "127.0.0.1:0"
	cfg.Evergreen.Streams.AuthenticateClient = auth
	return cfg
}

type env struct {
	root layout.Root
	bus  string
	run  *daemon.Running
	addr string
}

func newEnv(t *testing.T) *env {
	e := &env{root: layout.Root(t.TempDir()), bus: bustest.Start(t)}
	bustest.WriteCreds(t, e.root, streammgr.Name)
	return e
}

func (e *env) start(t *testing.T, auth bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	run, err := daemon.Start(ctx, streammgr.Spec(), daemon.Options{Root: e.root.Dir(), BusURL: e.bus, Config: testConfig(auth), LogStderr: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	e.run, e.addr = run, run.Env.Endpoints.Streams
	t.Cleanup(func() { e.stop() })
}

func (e *env) stop() {
	if e.run != nil {
		e.run.Shutdown(context.Background())
		e.run = nil
	}
}

// client is a raw protocol client: frames and CBOR by hand.
type client struct {
	t  *testing.T
	nc net.Conn
	br *bufio.Reader

	wmu sync.Mutex
	mu  sync.Mutex
	// waiting by requestId
	waiting map[string]chan frame
	others  chan frame
	n       int
}

type frame struct {
	op   protocol.Op
	body map[string]any
}

func dialRaw(t *testing.T, addr string) (net.Conn, *bufio.Reader) {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, 3*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	return nc, bufio.NewReader(nc)
}

func writeFrame(t *testing.T, w io.Writer, op protocol.Op, body []byte) {
	t.Helper()
	if _, err := w.Write(protocol.AppendFrame(nil, op, body)); err != nil {
		t.Fatal(err)
	}
}

func readFrame(t *testing.T, br *bufio.Reader) frame {
	t.Helper()
	op, p, err := protocol.ReadFrame(br, 0)
	if err != nil {
		t.Fatalf("read frame: %v", err)
	}
	var m map[string]any
	if err := cbor.Unmarshal(p, &m); err != nil {
		t.Fatalf("response is not a CBOR map: %v", err)
	}
	return frame{op, m}
}

func enc(t *testing.T, v any) []byte {
	b, err := cbor.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// connect performs the handshake and returns the ConnectResponse.
func connect(t *testing.T, addr, token string) (*client, frame) {
	t.Helper()
	nc, br := dialRaw(t, addr)
	nc.Write([]byte{protocol.ConnectVersion})
	req := map[string]any{"requestId": "connect-1", "protocolVersion": "1.1.0", "otherSupportedProtocolVersions": []string{"1.0.0"}, "sdkVersion": "1.1.1"}
	if token != "" {
		req["authToken"] = token
	}
	writeFrame(t, nc, protocol.OpConnect, enc(t, req))
	nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	v, err := br.ReadByte()
	if err != nil || v != protocol.ConnectVersion {
		t.Fatalf("connect version byte: %v %v", v, err)
	}
	f := readFrame(t, br)
	nc.SetReadDeadline(time.Time{})
	c := &client{t: t, nc: nc, br: br, waiting: map[string]chan frame{}, others: make(chan frame, 16)}
	if f.body["status"] == uint64(0) {
		go c.loop()
	}
	return c, f
}

func (c *client) loop() {
	for {
		op, p, err := protocol.ReadFrame(c.br, 0)
		if err != nil {
			c.mu.Lock()
			for id, ch := range c.waiting {
				close(ch)
				delete(c.waiting, id)
			}
			c.mu.Unlock()
			close(c.others)
			return
		}
		var m map[string]any
		cbor.Unmarshal(p, &m)
		id, _ := m["requestId"].(string)
		c.mu.Lock()
		ch := c.waiting[id]
		delete(c.waiting, id)
		c.mu.Unlock()
		if ch != nil {
			ch <- frame{protocol.Op(op), m}
		} else {
			c.others <- frame{protocol.Op(op), m}
		}
	}
}

// send sends a request with a fresh requestId and returns a channel of
// its response.
func (c *client) send(op protocol.Op, req map[string]any) <-chan frame {
	c.mu.Lock()
	c.n++
	id := fmt.Sprintf("req-%d", c.n)
	ch := make(chan frame, 1)
	c.waiting[id] = ch
	c.mu.Unlock()
	req["requestId"] = id
	c.sendRaw(op, enc(c.t, req))
	return ch
}

func (c *client) sendRaw(op protocol.Op, body []byte) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.nc.Write(protocol.AppendFrame(nil, op, body))
}

func (c *client) call(op protocol.Op, req map[string]any) frame {
	c.t.Helper()
	select {
	case f := <-c.send(op, req):
		return f
	case <-time.After(15 * time.Second):
		c.t.Fatalf("no response to %v", op)
		return frame{}
	}
}

func status(f frame) int {
	s, _ := f.body["status"].(uint64)
	return int(s)
}

func bigEndianLen(n int32) []byte { return binary.BigEndian.AppendUint32(nil, uint32(n)) }
