package streammgr_test

import (
	"context"
	"fmt"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/evergreen-edge/evergreen/services/kit/daemon"
	"github.com/evergreen-edge/evergreen/streammgr"
	"github.com/evergreen-edge/evergreen/streammgr/protocol"
)

// The stream limits through the daemon and the protocol: strategyOnFull,
// segments, the time to live on the server's clock, sequence numbers
// across restarts, and ReadMessagesOptions.

// fakeClock is the daemon's clock (streammgr.Options.Now).
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{t: time.Unix(1_700_000_000, 0)} }

func (c *fakeClock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }

func (c *fakeClock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// startWith starts the daemon on e's root with options.
func (e *env) startWith(t *testing.T, o streammgr.Options) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	run, err := daemon.Start(ctx, streammgr.SpecWithOptions(o), daemon.Options{Root: e.root.Dir(), BusURL: e.bus, Config: testConfig(false), LogStderr: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	e.run, e.addr = run, run.Env.Endpoints.Streams
	t.Cleanup(func() { e.stop() })
}

// storage is a stream's storageStatus.
type storage struct{ oldest, newest, bytes uint64 }

func describeStorage(t *testing.T, w *wire, name string) storage {
	t.Helper()
	f := must(t, "describe "+name, w.call(protocol.OpDescribeMessageStream, map[string]any{"requestId": "d", "name": name}),
		protocol.OpDescribeMessageStreamResponse, protocol.Success, "d")
	ss := f.body["messageStreamInfo"].(map[any]any)["storageStatus"].(map[any]any)
	return storage{ss["oldestSequenceNumber"].(uint64), ss["newestSequenceNumber"].(uint64), ss["totalBytes"].(uint64)}
}

func appendOne(t *testing.T, w *wire, name string, payload []byte) frame {
	t.Helper()
	return w.call(protocol.OpAppendMessage, map[string]any{"requestId": "a", "name": name, "payload": payload})
}

func mustAppend(t *testing.T, w *wire, name string, payload []byte) uint64 {
	t.Helper()
	f := must(t, "append to "+name, appendOne(t, w, name, payload), protocol.OpAppendMessageResponse, protocol.Success, "a")
	return f.body["sequenceNumber"].(uint64)
}

// numbered is the payload of message i: 100 bytes that name it.
func numbered(i int) []byte { return []byte(fmt.Sprintf("%-100d", i)) }

// recordBytes is what one 100-byte message costs a stream (its
// totalBytes), learned from a scratch stream.
func recordBytes(t *testing.T, w *wire) uint64 {
	t.Helper()
	createStream(t, w, "probe", nil)
	mustAppend(t, w, "probe", numbered(0))
	n := describeStorage(t, w, "probe").bytes
	must(t, "delete probe", w.call(protocol.OpDeleteMessageStream, map[string]any{"requestId": "x", "name": "probe"}),
		protocol.OpDeleteMessageStreamResponse, protocol.Success, "x")
	if n < 100 {
		t.Fatalf("a 100-byte message counts %d bytes", n)
	}
	return n
}

func readOpts(t *testing.T, w *wire, name string, o map[string]any) frame {
	t.Helper()
	return w.call(protocol.OpReadMessages, map[string]any{"requestId": "r", "streamName": name, "readMessagesOptions": o})
}

func seqsOf(t *testing.T, f frame) []uint64 {
	t.Helper()
	var out []uint64
	for _, m := range f.body["messages"].([]any) {
		mm := m.(map[any]any)
		s := mm["sequenceNumber"].(uint64)
		if string(mm["payload"].([]byte)) != string(numbered(int(s))) {
			t.Fatalf("message %d holds %q", s, mm["payload"])
		}
		out = append(out, s)
	}
	return out
}

// TestRejectNewDataRefusesWhenFull: a full RejectNewData stream refuses
// appends (InvalidRequest, no sequence number spent), keeps what it
// holds, and takes appends again once an update makes room.
func TestRejectNewDataRefusesWhenFull(t *testing.T) {
	e := newEnv(t)
	e.start(t, false)
	w := dialWire(t, e.addr)
	rec := recordBytes(t, w)
	createStream(t, w, "r", map[string]any{"maxSize": 4096, "streamSegmentSize": 1024, "strategyOnFull": 0})
	n := 0
	for ; n < 1000; n++ {
		f := appendOne(t, w, "r", numbered(n))
		if status(f) != 0 {
			must(t, "append to a full stream", f, protocol.OpAppendMessageResponse, protocol.InvalidRequest, "a")
			break
		}
		if f.body["sequenceNumber"] != uint64(n) {
			t.Fatalf("append %d numbered %v", n, f.body["sequenceNumber"])
		}
	}
	if want := int(4096 / rec); n != want {
		t.Fatalf("%d appends of %d bytes fit in maxSize 4096, want %d", n, rec, want)
	}
	for range 3 {
		must(t, "append to a full stream, again", appendOne(t, w, "r", []byte("x")), protocol.OpAppendMessageResponse, protocol.InvalidRequest, "a")
	}
	if s := describeStorage(t, w, "r"); s.oldest != 0 || s.newest != uint64(n-1) || s.bytes > 4096 {
		t.Fatalf("storage of the full stream %+v", s)
	}
	if got := readAllWire(t, w, "r", 0); len(got) != n || string(got[0]) != string(numbered(0)) {
		t.Fatalf("a full stream lost data: %d of %d messages", len(got), n)
	}
	must(t, "update maxSize", w.call(protocol.OpUpdateMessageStream, map[string]any{"requestId": "u",
		"definition": def("r", map[string]any{"maxSize": 8192, "streamSegmentSize": 1024, "strategyOnFull": 0})}),
		protocol.OpUpdateMessageStreamResponse, protocol.Success, "u")
	if seq := mustAppend(t, w, "r", numbered(n)); seq != uint64(n) {
		t.Fatalf("after the refusals the next append is %d, want %d (a refused append spends no number)", seq, n)
	}
}

// TestOverwriteOldestDataDropsWholeSegments: a full OverwriteOldestData
// stream drops its oldest segment, never part of one: the oldest
// sequence number advances by a segment's worth of messages at a time,
// the stream stays within maxSize, and a read from below the oldest
// starts at the oldest.
func TestOverwriteOldestDataDropsWholeSegments(t *testing.T) {
	e := newEnv(t)
	e.start(t, false)
	w := dialWire(t, e.addr)
	rec := recordBytes(t, w)
	perSegment := 1024 / rec
	createStream(t, w, "o", map[string]any{"maxSize": 4096, "streamSegmentSize": 1024, "strategyOnFull": 1})
	var oldest []uint64
	for i := range 100 {
		if seq := mustAppend(t, w, "o", numbered(i)); seq != uint64(i) {
			t.Fatalf("append %d numbered %d", i, seq)
		}
		s := describeStorage(t, w, "o")
		if s.bytes > 4096 || s.newest != uint64(i) {
			t.Fatalf("after append %d: %+v", i, s)
		}
		if len(oldest) == 0 || oldest[len(oldest)-1] != s.oldest {
			oldest = append(oldest, s.oldest)
		}
	}
	for i := 1; i < len(oldest); i++ {
		if oldest[i]-oldest[i-1] != perSegment {
			t.Fatalf("oldest went %v; want steps of one segment (%d messages)", oldest, perSegment)
		}
	}
	if len(oldest) < 5 {
		t.Fatalf("oldest went %v: nothing was overwritten", oldest)
	}
	last := oldest[len(oldest)-1]
	f := must(t, "read below the oldest", readOpts(t, w, "o", map[string]any{"desiredStartSequenceNumber": 0, "minMessageCount": 1, "maxMessageCount": 3}),
		protocol.OpReadMessagesResponse, protocol.Success, "r")
	if got := seqsOf(t, f); len(got) != 3 || got[0] != last || got[2] != last+2 {
		t.Fatalf("read from 0 got %v, want from the oldest %d", got, last)
	}
	if got := readAllWire(t, w, "o", 0); uint64(len(got)) != 100-last {
		t.Fatalf("%d messages readable, want %d..99", len(got), last)
	}
}

// TestTTLOnTheServersClock: messages younger than timeToLiveMillis stay;
// whole segments whose newest message is older go; a power-off longer
// than the TTL leaves an empty stream whose sequence numbers continue.
func TestTTLOnTheServersClock(t *testing.T) {
	clk := newFakeClock()
	e := newEnv(t)
	e.startWith(t, streammgr.Options{Now: clk.now})
	w := dialWire(t, e.addr)
	rec := recordBytes(t, w)
	perSegment := int(1024 / rec)
	createStream(t, w, "ttl.log", map[string]any{"streamSegmentSize": 1024, "timeToLiveMillis": 60000})
	for i := range 2 * perSegment { // two full segments at t0
		mustAppend(t, w, "ttl.log", numbered(i))
	}
	clk.add(30 * time.Second)
	for i := 2 * perSegment; i < 2*perSegment+4; i++ { // a third at t0+30s
		mustAppend(t, w, "ttl.log", numbered(i))
	}
	clk.add(29 * time.Second) // t0+59s: nothing is past the TTL
	if s := describeStorage(t, w, "ttl.log"); s.oldest != 0 {
		t.Fatalf("before the TTL: %+v", s)
	}
	clk.add(2 * time.Second) // t0+61s: the first two segments are
	s := describeStorage(t, w, "ttl.log")
	if s.oldest != uint64(2*perSegment) || s.newest != uint64(2*perSegment+3) {
		t.Fatalf("after the TTL of the first two segments: %+v, want %d..%d", s, 2*perSegment, 2*perSegment+3)
	}
	f := must(t, "read below the oldest", readOpts(t, w, "ttl.log", map[string]any{"desiredStartSequenceNumber": 0}),
		protocol.OpReadMessagesResponse, protocol.Success, "r")
	if got := seqsOf(t, f); len(got) != 1 || got[0] != uint64(2*perSegment) {
		t.Fatalf("read from 0 after expiry: %v", got)
	}
	// Stopped for an hour: everything expired while it was off.
	e.stop()
	clk.add(time.Hour)
	e.startWith(t, streammgr.Options{Now: clk.now})
	w = dialWire(t, e.addr)
	next := uint64(2*perSegment + 4)
	if s := describeStorage(t, w, "ttl.log"); s.bytes != 0 || s.oldest != next || s.newest != next {
		t.Fatalf("after a power-off past the TTL: %+v, want empty at %d", s, next)
	}
	must(t, "read an expired stream", readOpts(t, w, "ttl.log", map[string]any{"desiredStartSequenceNumber": 0}),
		protocol.OpReadMessagesResponse, protocol.NotEnoughMessages, "r")
	if seq := mustAppend(t, w, "ttl.log", numbered(int(next))); seq != next {
		t.Fatalf("after expiry while stopped the next sequence number is %d, want %d (never reset)", seq, next)
	}
	// And once more after a clean restart with the stream empty again.
	clk.add(2 * time.Minute)
	e.stop()
	e.startWith(t, streammgr.Options{Now: clk.now})
	w = dialWire(t, e.addr)
	if seq := mustAppend(t, w, "ttl.log", numbered(int(next+1))); seq != next+1 {
		t.Fatalf("second restart: next sequence number %d, want %d", seq, next+1)
	}
}

// TestSequenceNumbersAcrossRestarts: File and Memory streams continue
// their numbering after clean restarts; a Memory stream comes back empty.
func TestSequenceNumbersAcrossRestarts(t *testing.T) {
	e := newEnv(t)
	e.start(t, false)
	w := dialWire(t, e.addr)
	createStream(t, w, "file", nil)
	createStream(t, w, "mem", map[string]any{"persistence": 1})
	for i := range 10 {
		mustAppend(t, w, "file", numbered(i))
		mustAppend(t, w, "mem", numbered(i))
	}
	for round := range 3 {
		e.stop()
		e.start(t, false)
		w = dialWire(t, e.addr)
		next := uint64(10 + round)
		if s := describeStorage(t, w, "file"); s.oldest != 0 || s.newest != next-1 {
			t.Fatalf("round %d: file stream %+v", round, s)
		}
		if s := describeStorage(t, w, "mem"); s.bytes != 0 {
			t.Fatalf("round %d: memory stream kept %+v over a restart", round, s)
		}
		for _, n := range []string{"file", "mem"} {
			if seq := mustAppend(t, w, n, numbered(int(next))); seq != next {
				t.Fatalf("round %d: %s continues at %d, want %d", round, n, seq, next)
			}
		}
	}
	if got := readAllWire(t, w, "file", 0); len(got) != 13 {
		t.Fatalf("file stream holds %d messages after restarts", len(got))
	}
}

// TestReadMessagesOptions: v1's defaults and ranges of
// ReadMessagesOptions, and the long poll.
func TestReadMessagesOptions(t *testing.T) {
	e := newEnv(t)
	e.start(t, false)
	w := dialWire(t, e.addr)
	createStream(t, w, "r", nil)
	for i := range 10 {
		mustAppend(t, w, "r", numbered(i))
	}
	read := func(what string, o map[string]any) []uint64 {
		t.Helper()
		var f frame
		if o == nil {
			f = w.call(protocol.OpReadMessages, map[string]any{"requestId": "r", "streamName": "r"})
		} else {
			f = readOpts(t, w, "r", o)
		}
		return seqsOf(t, must(t, what, f, protocol.OpReadMessagesResponse, protocol.Success, "r"))
	}
	for _, c := range []struct {
		what string
		o    map[string]any
		want string
	}{
		{"no options: one message from the oldest", nil, "[0]"},
		{"empty options", map[string]any{}, "[0]"},
		{"start only", map[string]any{"desiredStartSequenceNumber": 7}, "[7]"},
		{"min only: exactly min", map[string]any{"minMessageCount": 3}, "[0 1 2]"},
		{"max only: up to max", map[string]any{"maxMessageCount": 4}, "[0 1 2 3]"},
		{"max beyond what is there", map[string]any{"desiredStartSequenceNumber": 8, "maxMessageCount": 100}, "[8 9]"},
		{"min below what is there, max above", map[string]any{"desiredStartSequenceNumber": 5, "minMessageCount": 2, "maxMessageCount": 1<<31 - 1}, "[5 6 7 8 9]"},
		{"min equals max", map[string]any{"desiredStartSequenceNumber": 3, "minMessageCount": 2, "maxMessageCount": 2}, "[3 4]"},
		{"the newest", map[string]any{"desiredStartSequenceNumber": 9}, "[9]"},
		{"timeout with enough there: at once", map[string]any{"desiredStartSequenceNumber": 1, "maxMessageCount": 2, "readTimeoutMillis": 60000}, "[1 2]"},
	} {
		if got := fmt.Sprint(read(c.what, c.o)); got != c.want {
			t.Fatalf("%s: read %s, want %s", c.what, got, c.want)
		}
	}
	for _, c := range []struct {
		what string
		o    map[string]any
	}{
		{"start past the newest", map[string]any{"desiredStartSequenceNumber": 10}},
		{"start far past the newest", map[string]any{"desiredStartSequenceNumber": uint64(1) << 62}},
		{"min more than there is", map[string]any{"desiredStartSequenceNumber": 8, "minMessageCount": 3, "maxMessageCount": 3}},
		{"timeout 0", map[string]any{"desiredStartSequenceNumber": 10, "readTimeoutMillis": 0}},
	} {
		began := time.Now()
		must(t, c.what, readOpts(t, w, "r", c.o), protocol.OpReadMessagesResponse, protocol.NotEnoughMessages, "r")
		if d := time.Since(began); d > 5*time.Second {
			t.Fatalf("%s: NotEnoughMessages after %v, want at once", c.what, d)
		}
	}
	// A long poll that times out answers NotEnoughMessages after its
	// timeout, not before.
	began := time.Now()
	must(t, "timed out poll", readOpts(t, w, "r", map[string]any{"desiredStartSequenceNumber": 10, "readTimeoutMillis": 300}),
		protocol.OpReadMessagesResponse, protocol.NotEnoughMessages, "r")
	if d := time.Since(began); d < 300*time.Millisecond || d > 10*time.Second {
		t.Fatalf("a 300 ms poll answered after %v", d)
	}
	// A long poll for 3 from the end: answered when the third arrives,
	// with min..max of them.
	w.frame(protocol.OpReadMessages, enc(t, map[string]any{"requestId": "poll", "streamName": "r",
		"readMessagesOptions": map[string]any{"desiredStartSequenceNumber": 10, "minMessageCount": 3, "maxMessageCount": 5, "readTimeoutMillis": 20000}}))
	for i := 10; i < 13; i++ {
		w.frame(protocol.OpAppendMessage, enc(t, map[string]any{"requestId": fmt.Sprint("a", i), "name": "r", "payload": numbered(i)}))
	}
	got := map[string]frame{}
	for range 4 {
		f := w.next()
		got[f.body["requestId"].(string)] = f
	}
	if f := got["poll"]; status(f) != 0 || fmt.Sprint(seqsOf(t, f)) != "[10 11 12]" {
		t.Fatalf("long poll: %v", got)
	}
}
