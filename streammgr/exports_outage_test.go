package streammgr_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/evergreen-edge/evergreen/streammgr"
	"github.com/evergreen-edge/evergreen/streammgr/protocol"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Exports through the daemon, configured over the protocol, with their
// destination away for a while: nothing is lost, and the only duplicates
// are those at-least-once allows (a batch whose acknowledgement never
// arrived), which JetStream drops by Msg-Id.

var fastRetries = streammgr.Options{ExportBackoffBase: 5 * time.Millisecond, ExportBackoffMax: 50 * time.Millisecond}

// jsServer is a real nats-server with JetStream whose port and store
// outlive a restart.
type jsServer struct {
	t    *testing.T
	dir  string
	port int
	srv  *server.Server
}

func newJSServer(t *testing.T) *jsServer {
	n := &jsServer{t: t, dir: t.TempDir(), port: -1}
	n.up()
	t.Cleanup(n.down)
	return n
}

func (n *jsServer) up() {
	n.t.Helper()
	for range 100 {
		s, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: n.port, JetStream: true, StoreDir: n.dir, NoLog: true, NoSigs: true})
		if err != nil {
			n.t.Fatal(err)
		}
		s.Start()
		if s.ReadyForConnections(10 * time.Second) {
			n.srv, n.port = s, s.Addr().(*net.TCPAddr).Port
			return
		}
		s.Shutdown()
		s.WaitForShutdown()
		time.Sleep(50 * time.Millisecond) // the port may not be free yet
	}
	n.t.Fatalf("nats-server not ready on port %d", n.port)
}

func (n *jsServer) down() {
	if n.srv != nil {
		n.srv.Shutdown()
		n.srv.WaitForShutdown()
		n.srv = nil
	}
}

func (n *jsServer) url() string { return "nats://127.0.0.1:" + strconv.Itoa(n.port) }

// stored is the X-Evergreen-Sequence-Number of every message of the
// JetStream stream, in its order (nil while it cannot be read).
func (n *jsServer) stored(name string) []int64 {
	nc, err := nats.Connect(n.url(), nats.Timeout(2*time.Second))
	if err != nil {
		return nil
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := js.Stream(ctx, name)
	if err != nil {
		return nil
	}
	info, err := st.Info(ctx)
	if err != nil {
		return nil
	}
	out := []int64{}
	for seq := info.State.FirstSeq; info.State.Msgs > 0 && seq <= info.State.LastSeq; seq++ {
		m, err := st.GetMsg(ctx, seq)
		if err != nil {
			return nil
		}
		v, _ := strconv.ParseInt(m.Header.Get("X-Evergreen-Sequence-Number"), 10, 64)
		out = append(out, v)
	}
	return out
}

func (n *jsServer) waitStored(name string, want []int64) {
	n.t.Helper()
	var got []int64
	for end := time.Now().Add(30 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if got = n.stored(name); slices.Equal(got, want) {
			return
		}
		if time.Now().After(end) {
			n.t.Fatalf("JetStream stream %s holds %v, want %v", name, got, want)
		}
	}
}

func upTo(n int) []int64 {
	out := make([]int64, n)
	for i := range out {
		out[i] = int64(i)
	}
	return out
}

func exportStatusOf(t *testing.T, w *wire, stream string) map[any]any {
	t.Helper()
	f := must(t, "describe", w.call(protocol.OpDescribeMessageStream, map[string]any{"requestId": "d", "name": stream}),
		protocol.OpDescribeMessageStreamResponse, protocol.Success, "d")
	st := f.body["messageStreamInfo"].(map[any]any)["exportStatuses"].([]any)
	if len(st) != 1 {
		t.Fatalf("exportStatuses %v", st)
	}
	return st[0].(map[any]any)
}

func waitExportStatus(t *testing.T, w *wire, stream, what string, ok func(map[any]any) bool) map[any]any {
	t.Helper()
	for end := time.Now().Add(30 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		s := exportStatusOf(t, w, stream)
		if ok(s) {
			return s
		}
		if time.Now().After(end) {
			t.Fatalf("%s: export status %v", what, s)
		}
	}
}

func jetStreamDef(n *jsServer, extra map[string]any) map[string]any {
	c := map[string]any{"identifier": "js", "url": n.url(), "subject": "evergreen.telemetry", "stream": "TELEMETRY", "batchSize": 4}
	for k, v := range extra {
		c[k] = v
	}
	return def("telemetry", map[string]any{"exportDefinition": map[string]any{"jetstream": []any{c}}})
}

// TestJetStreamExportThroughTheDaemonOutage: a JetStream export created
// over the protocol (the Evergreen "jetstream" key); the server stops
// while messages keep coming and starts again on the same port and
// store: every message is in JetStream exactly once, in order, and a
// restart of the daemon sends nothing again.
func TestJetStreamExportThroughTheDaemonOutage(t *testing.T) {
	n := newJSServer(t)
	e := newEnv(t)
	e.startWith(t, fastRetries)
	w := dialWire(t, e.addr)
	must(t, "create", w.call(protocol.OpCreateMessageStream, map[string]any{"requestId": "c", "definition": jetStreamDef(n, nil)}),
		protocol.OpCreateMessageStreamResponse, protocol.Success, "c")
	for i := range 10 {
		mustAppend(t, w, "telemetry", numbered(i))
	}
	n.waitStored("TELEMETRY", upTo(10))

	n.down()
	for i := 10; i < 30; i++ {
		mustAppend(t, w, "telemetry", numbered(i))
	}
	s := waitExportStatus(t, w, "telemetry", "the outage shows", func(s map[any]any) bool { return s["errorMessage"] != nil })
	if s["lastExportedSequenceNumber"] != uint64(9) {
		t.Fatalf("progress moved while JetStream was down: %v", s)
	}
	time.Sleep(200 * time.Millisecond) // a few retries fail
	n.up()
	n.waitStored("TELEMETRY", upTo(30))
	waitExportStatus(t, w, "telemetry", "recovered", func(s map[any]any) bool {
		return s["lastExportedSequenceNumber"] == uint64(29) && s["exportedMessagesCount"] == uint64(30) && s["errorMessage"] == nil
	})

	e.stop()
	e.startWith(t, fastRetries)
	w = dialWire(t, e.addr)
	mustAppend(t, w, "telemetry", numbered(30))
	n.waitStored("TELEMETRY", upTo(31))
}

// TestJetStreamExportAcrossKill9: the daemon (a child process) is killed
// mid-export; started again, it resends what it had not recorded as
// acknowledged and JetStream's duplicate window drops the resends: every
// message stored once.
func TestJetStreamExportAcrossKill9(t *testing.T) {
	const total = 300
	n := newJSServer(t)
	e := newEnv(t)
	cmd, addr := startChild(t, e)
	w := dialWire(t, addr)
	d := jetStreamDef(n, map[string]any{"disabled": true, "batchSize": 1})
	d["flushOnWrite"] = true
	must(t, "create", w.call(protocol.OpCreateMessageStream, map[string]any{"requestId": "c", "definition": d}),
		protocol.OpCreateMessageStreamResponse, protocol.Success, "c")
	for i := range total {
		mustAppend(t, w, "telemetry", numbered(i))
	}
	d["exportDefinition"].(map[string]any)["jetstream"].([]any)[0].(map[string]any)["disabled"] = false
	must(t, "enable", w.call(protocol.OpUpdateMessageStream, map[string]any{"requestId": "u", "definition": d}),
		protocol.OpUpdateMessageStreamResponse, protocol.Success, "u")
	for end := time.Now().Add(30 * time.Second); len(n.stored("TELEMETRY")) < 20; time.Sleep(time.Millisecond) {
		if time.Now().After(end) {
			t.Fatal("the export did not start")
		}
	}
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	before := len(n.stored("TELEMETRY"))
	e.startWith(t, fastRetries)
	n.waitStored("TELEMETRY", upTo(total))
	t.Logf("%d of %d stored before the kill", before, total)
}

// TestHTTPExportAnswersLostThenDestinationDown: the destination first
// takes batches but its answers never arrive (the connection drops after
// the body was read), then refuses connections, then comes back. Every
// message arrives; a message arrives twice only in a batch whose answer
// was lost; the order of first arrivals is the stream's.
func TestHTTPExportAnswersLostThenDestinationDown(t *testing.T) {
	const total, batch = 60, 5
	var mu sync.Mutex
	var arrivals []int
	dropAnswers := 0        // answers still to be lost
	lostAnswers := 0        // answers lost
	inLost := map[int]int{} // sequence number -> times it was in a batch whose answer was lost
	handler := http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		var msgs []map[string]any
		if err := json.Unmarshal(b, &msgs); err != nil || len(msgs) == 0 {
			t.Errorf("body %q: %v", b, err)
			return
		}
		mu.Lock()
		lose := dropAnswers > 0
		if lose {
			dropAnswers--
			lostAnswers++
		}
		for _, m := range msgs {
			s := int(m["sequenceNumber"].(float64))
			arrivals = append(arrivals, s)
			if lose {
				inLost[s]++
			}
		}
		mu.Unlock()
		if lose {
			conn, _, err := rw.(http.Hijacker).Hijack()
			if err == nil {
				conn.Close()
			}
		}
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	srv := &http.Server{Handler: handler}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })

	e := newEnv(t)
	e.startWith(t, fastRetries)
	w := dialWire(t, e.addr)
	h := map[string]any{"identifier": "web", "uri": "http://" + addr + "/in", "batchSize": batch, "exportFormat": 1}
	must(t, "create", w.call(protocol.OpCreateMessageStream, map[string]any{"requestId": "c",
		"definition": def("h", map[string]any{"exportDefinition": map[string]any{"http": []any{h}}})}), protocol.OpCreateMessageStreamResponse, protocol.Success, "c")
	appendRange := func(from, to int) {
		var b []byte
		for i := from; i < to; i++ {
			b = protocol.AppendFrame(b, protocol.OpAppendMessage, enc(t, map[string]any{"requestId": fmt.Sprint("a", i), "name": "h", "payload": numbered(i)}))
		}
		w.write(b)
		for i := from; i < to; i++ {
			if f := w.next(); status(f) != 0 {
				t.Fatal(f.body)
			}
		}
	}
	waitExported := func(last int) {
		t.Helper()
		waitExportStatus(t, w, "h", fmt.Sprint("exported up to ", last), func(s map[any]any) bool {
			return s["lastExportedSequenceNumber"] == uint64(last)
		})
	}
	appendRange(0, 10)
	waitExported(9)

	// Answers lost: three in a row.
	mu.Lock()
	dropAnswers = 3
	mu.Unlock()
	appendRange(10, 30)
	waitExported(29)

	// The destination refuses connections for a while.
	srv.Close()
	appendRange(30, total)
	waitExportStatus(t, w, "h", "the outage shows", func(s map[any]any) bool { return s["errorMessage"] != nil })
	time.Sleep(150 * time.Millisecond)
	if s := exportStatusOf(t, w, "h"); s["lastExportedSequenceNumber"] != uint64(29) {
		t.Fatalf("progress moved while the destination was down: %v", s)
	}
	for end := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if ln, err = net.Listen("tcp", addr); err == nil {
			break
		}
		if time.Now().After(end) {
			t.Fatalf("listen again on %s: %v", addr, err)
		}
	}
	srv = &http.Server{Handler: handler}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	waitExported(total - 1)
	s := exportStatusOf(t, w, "h")
	if s["errorMessage"] != nil || s["exportedMessagesCount"] != uint64(total) {
		t.Fatalf("after the recovery: %v", s)
	}

	mu.Lock()
	defer mu.Unlock()
	count := map[int]int{}
	var firsts []int
	for _, a := range arrivals {
		if count[a] == 0 {
			firsts = append(firsts, a)
		}
		count[a]++
	}
	if !slices.Equal(firsts, slicesUpTo(total)) {
		t.Fatalf("first arrivals %v: a message lost or out of order", firsts)
	}
	if lostAnswers != 3 {
		t.Fatalf("%d answers lost, want 3", lostAnswers)
	}
	dups := 0
	for seq, n := range count {
		if n != 1+inLost[seq] {
			t.Fatalf("message %d arrived %d times; it was in %d batches whose answer was lost", seq, n, inLost[seq])
		}
		dups += inLost[seq]
	}
	if dups == 0 || len(arrivals) != total+dups {
		t.Fatalf("%d arrivals of %d messages, %d of them resends of unanswered batches", len(arrivals), total, dups)
	}
}

func slicesUpTo(n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = i
	}
	return out
}
