package streammgr_test

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/evergreen-edge/evergreen/streammgr/protocol"
	"github.com/fxamacker/cbor/v2"
)

// Protocol conformance beyond protocol_test.go, through a raw socket:
// the handshake's details, every operation code a client may send,
// framing cut and glued in every way TCP allows, both CBOR length forms
// and the non-minimal heads a hand-rolled encoder may write, wrong
// types, stream names, many clients and answers out of request order.

func TestConnectHandshakeDetails(t *testing.T) {
	e := newEnv(t)
	e.start(t, false)

	// An SDK of protocol 1.0.0 is let in; the answer names what the
	// server speaks and who the client is.
	nc, br := dialRaw(t, e.addr)
	nc.Write([]byte{1})
	writeFrame(t, nc, protocol.OpConnect, enc(t, map[string]any{"requestId": "v100", "protocolVersion": "1.0.0", "sdkVersion": "1.0.0"}))
	br.ReadByte()
	f := must(t, "connect 1.0.0", readFrame(t, br), protocol.OpConnectResponse, protocol.Success, "v100")
	vs, _ := f.body["supportedProtocolVersions"].([]any)
	if f.body["protocolVersion"] != protocol.ProtocolVersion || !slices.Contains(vs, any("1.0.0")) || !slices.Contains(vs, any("1.1.0")) ||
		f.body["serverVersion"] == nil || f.body["clientIdentifier"] == nil || f.body["clientIdentifier"] == "" {
		t.Fatalf("ConnectResponse %v", f.body)
	}

	// Two clients get two identifiers.
	nc2, br2 := dialRaw(t, e.addr)
	nc2.Write([]byte{1})
	writeFrame(t, nc2, protocol.OpConnect, enc(t, map[string]any{"requestId": "second", "protocolVersion": "1.1.0"}))
	br2.ReadByte()
	if g := readFrame(t, br2); status(g) != 0 || g.body["clientIdentifier"] == f.body["clientIdentifier"] {
		t.Fatalf("two clients, one identifier: %v %v", f.body, g.body)
	}

	// Refusals: the version byte, then a ConnectResponse with the status,
	// then the server hangs up.
	for _, c := range []struct {
		what       string
		versionOut byte
		body       []byte
		st         protocol.Status
		id         any
	}{
		{"connect version 0", 0, enc(t, map[string]any{"requestId": "x", "protocolVersion": "1.1.0"}), protocol.UnsupportedConnectVersion, nil},
		{"connect version 255", 255, enc(t, map[string]any{"requestId": "x", "protocolVersion": "1.1.0"}), protocol.UnsupportedConnectVersion, nil},
		{"no protocolVersion", 1, enc(t, map[string]any{"requestId": "x"}), protocol.InvalidProtocolVersion, "x"},
		{"protocolVersion 1.1", 1, enc(t, map[string]any{"requestId": "x", "protocolVersion": "1.1"}), protocol.InvalidProtocolVersion, "x"},
		{"protocolVersion 0.9.0", 1, enc(t, map[string]any{"requestId": "x", "protocolVersion": "0.9.0"}), protocol.UnsupportedProtocolVersion, "x"},
		{"protocolVersion a number", 1, enc(t, map[string]any{"requestId": "x", "protocolVersion": 110}), protocol.InvalidRequest, "x"},
		{"bad requestId", 1, enc(t, map[string]any{"requestId": "a/b", "protocolVersion": "1.1.0"}), protocol.InvalidRequest, nil},
		{"not CBOR", 1, []byte{0xff, 0xfe}, protocol.InvalidRequest, nil},
	} {
		nc, br := dialRaw(t, e.addr)
		nc.Write([]byte{c.versionOut})
		if c.versionOut == 1 {
			writeFrame(t, nc, protocol.OpConnect, c.body)
		}
		nc.SetReadDeadline(time.Now().Add(10 * time.Second))
		if v, err := br.ReadByte(); err != nil || v != protocol.ConnectVersion {
			t.Fatalf("%s: version byte %d %v", c.what, v, err)
		}
		f := readFrame(t, br)
		if f.op != protocol.OpConnectResponse || status(f) != int(c.st) || (c.id != nil && f.body["requestId"] != c.id) || f.body["errorMessage"] == nil {
			t.Fatalf("%s: %v %v, want status %d", c.what, f.op, f.body, c.st)
		}
		w := &wire{t: t, nc: nc, br: br}
		if !w.closedByServer() {
			t.Fatalf("%s: the connection stays open after a refused Connect", c.what)
		}
	}

	// Connect split across writes, version byte and frame in pieces.
	nc3, br3 := dialRaw(t, e.addr)
	b := append([]byte{1}, protocol.AppendFrame(nil, protocol.OpConnect, enc(t, map[string]any{"requestId": "slow", "protocolVersion": "1.1.0"}))...)
	for i := range b {
		nc3.Write(b[i : i+1])
		time.Sleep(time.Millisecond)
	}
	nc3.SetReadDeadline(time.Now().Add(10 * time.Second))
	br3.ReadByte()
	must(t, "connect byte by byte", readFrame(t, br3), protocol.OpConnectResponse, protocol.Success, "slow")
}

// TestEveryNonRequestOperationCode: op codes that are not requests a
// client sends after Connect are answered with UnknownOperationError
// (17) carrying the requestId, and the connection keeps serving.
func TestEveryNonRequestOperationCode(t *testing.T) {
	e := newEnv(t)
	e.start(t, false)
	w := dialWire(t, e.addr)
	for _, op := range []protocol.Op{0, 1, 6, 7, 8, 9, 10, 12, 14, 16, 17, 18, 19, 100, 127, 128, 255} {
		id := fmt.Sprintf("op-%d", op)
		f := w.callRaw(op, enc(t, map[string]any{"requestId": id}))
		if f.op != protocol.OpUnknownOperationError || f.body["requestId"] != id || f.body["errorMessage"] == nil {
			t.Fatalf("op %d: answered %v %v", op, f.op, f.body)
		}
		st := protocol.Status(status(f))
		switch {
		case !protocol.Known(op) || op == protocol.OpUnknownOperationError:
			if st != protocol.UnknownOperation {
				t.Fatalf("unknown op %d: status %d, want UnknownOperation (18)", op, st)
			}
		case st != protocol.UnknownOperation && st != protocol.UnexpectedOperation:
			t.Fatalf("op %d (%v) sent as a request: status %d", op, op, st)
		}
	}
	// An unknown op with a body that is no CBOR map: still answered.
	if f := w.callRaw(200, []byte{0x01, 0x02}); f.op != protocol.OpUnknownOperationError || status(f) != int(protocol.UnknownOperation) {
		t.Fatalf("unknown op with garbage: %v %v", f.op, f.body)
	}
	// And every request op still works on this connection, each answered
	// by its response op.
	createStream(t, w, "after", nil)
	for _, c := range []struct {
		op, resp protocol.Op
		req      map[string]any
	}{
		{protocol.OpAppendMessage, protocol.OpAppendMessageResponse, map[string]any{"name": "after", "payload": []byte("x")}},
		{protocol.OpReadMessages, protocol.OpReadMessagesResponse, map[string]any{"streamName": "after"}},
		{protocol.OpListStreams, protocol.OpListStreamsResponse, map[string]any{}},
		{protocol.OpDescribeMessageStream, protocol.OpDescribeMessageStreamResponse, map[string]any{"name": "after"}},
		{protocol.OpUpdateMessageStream, protocol.OpUpdateMessageStreamResponse, map[string]any{"definition": def("after", nil)}},
		{protocol.OpDeleteMessageStream, protocol.OpDeleteMessageStreamResponse, map[string]any{"name": "after"}},
	} {
		c.req["requestId"] = "r" + c.op.String()
		must(t, c.op.String(), w.call(c.op, c.req), c.resp, protocol.Success, "r"+c.op.String())
	}
}

// TestFramesSplitAndCoalesced: TCP may deliver a frame in pieces or many
// frames in one segment; each request is answered once, whatever the cut.
func TestFramesSplitAndCoalesced(t *testing.T) {
	e := newEnv(t)
	e.start(t, false)
	w := dialWire(t, e.addr)
	createStream(t, w, "s", nil)

	// Five requests of four kinds in one write: five answers, in order
	// (none of them waits).
	var b []byte
	ids := []string{"a0", "a1", "l", "a2", "d"}
	b = protocol.AppendFrame(b, protocol.OpAppendMessage, enc(t, map[string]any{"requestId": "a0", "name": "s", "payload": []byte("0")}))
	b = protocol.AppendFrame(b, protocol.OpAppendMessage, enc(t, map[string]any{"requestId": "a1", "name": "s", "payload": []byte("1")}))
	b = protocol.AppendFrame(b, protocol.OpListStreams, enc(t, map[string]any{"requestId": "l"}))
	b = protocol.AppendFrame(b, protocol.OpAppendMessage, enc(t, map[string]any{"requestId": "a2", "name": "s", "payload": []byte("2")}))
	b = protocol.AppendFrame(b, protocol.OpDescribeMessageStream, enc(t, map[string]any{"requestId": "d", "name": "s"}))
	w.write(b)
	got := map[string]frame{}
	for range ids {
		f := w.next()
		got[f.body["requestId"].(string)] = f
	}
	for i, id := range []string{"a0", "a1", "a2"} {
		if f := got[id]; status(f) != 0 || f.op != protocol.OpAppendMessageResponse || f.body["sequenceNumber"] != uint64(i) {
			t.Fatalf("%s: %v %v", id, f.op, f.body)
		}
	}
	if f := got["d"]; status(f) != 0 || f.body["messageStreamInfo"].(map[any]any)["storageStatus"].(map[any]any)["newestSequenceNumber"] != uint64(2) {
		t.Fatalf("describe after the appends in the same write: %v", f.body)
	}

	// One append byte by byte (the length prefix too), then one cut
	// inside the length prefix, then one cut right after it.
	one := protocol.AppendFrame(nil, protocol.OpAppendMessage, enc(t, map[string]any{"requestId": "slow", "name": "s", "payload": []byte("3")}))
	for i := range one {
		w.write(one[i : i+1])
		time.Sleep(time.Millisecond)
	}
	if f := must(t, "byte by byte", w.next(), protocol.OpAppendMessageResponse, protocol.Success, "slow"); f.body["sequenceNumber"] != uint64(3) {
		t.Fatalf("byte by byte: %v", f.body)
	}
	for i, cut := range []int{2, 4, 5} {
		id := fmt.Sprintf("cut%d", cut)
		fr := protocol.AppendFrame(nil, protocol.OpAppendMessage, enc(t, map[string]any{"requestId": id, "name": "s", "payload": []byte{byte(i)}}))
		w.write(fr[:cut])
		time.Sleep(20 * time.Millisecond)
		w.write(fr[cut:])
		must(t, id, w.next(), protocol.OpAppendMessageResponse, protocol.Success, id)
	}
	// A whole frame glued to the first half of the next.
	f1 := protocol.AppendFrame(nil, protocol.OpAppendMessage, enc(t, map[string]any{"requestId": "g1", "name": "s", "payload": []byte("g1")}))
	f2 := protocol.AppendFrame(nil, protocol.OpAppendMessage, enc(t, map[string]any{"requestId": "g2", "name": "s", "payload": []byte("g2")}))
	w.write(append(slices.Clone(f1), f2[:len(f2)/2]...))
	must(t, "glued, first", w.next(), protocol.OpAppendMessageResponse, protocol.Success, "g1")
	w.write(f2[len(f2)/2:])
	must(t, "glued, second", w.next(), protocol.OpAppendMessageResponse, protocol.Success, "g2")

	// Length 1: an op and no payload at all is a request without a body:
	// InvalidRequest, and the connection goes on.
	w.write(append(bigEndianLen(1), byte(protocol.OpListStreams)))
	if f := w.next(); f.op != protocol.OpListStreamsResponse || status(f) != int(protocol.InvalidRequest) {
		t.Fatalf("empty body: %v %v", f.op, f.body)
	}
	w.write(append(bigEndianLen(1), byte(protocol.OpAppendMessage)))
	if f := w.next(); f.op != protocol.OpAppendMessageResponse || status(f) != int(protocol.InvalidRequest) {
		t.Fatalf("empty append body: %v %v", f.op, f.body)
	}
	must(t, "after empty bodies", w.call(protocol.OpListStreams, map[string]any{"requestId": "l2"}), protocol.OpListStreamsResponse, protocol.Success, "l2")

	// Hang-ups mid-frame: inside the length prefix, and after a length
	// of 2^30 (the largest allowed) with a few bytes. The server neither
	// answers nor falls over.
	for _, tail := range [][]byte{{0, 0}, append(bigEndianLen(protocol.MaxFrame), byte(protocol.OpAppendMessage), 0xa3)} {
		x := dialWire(t, e.addr)
		x.write(tail)
		x.nc.(*net.TCPConn).CloseWrite()
		if !x.closedByServer() {
			t.Fatalf("hang-up after % x: connection not closed", tail)
		}
	}
	// Two bad lengths glued behind a good request: the good one is
	// answered, then the connection closes.
	x := dialWire(t, e.addr)
	x.write(append(protocol.AppendFrame(nil, protocol.OpListStreams, enc(t, map[string]any{"requestId": "ok"})), bigEndianLen(0)...))
	must(t, "before a bad length", x.next(), protocol.OpListStreamsResponse, protocol.Success, "ok")
	if !x.closedByServer() {
		t.Fatal("length 0 after a good frame: connection not closed")
	}
	// Everything this test sent is stored once, in order.
	msgs := readAllWire(t, w, "s", 0)
	if len(msgs) != 9 || string(msgs[0]) != "0" || string(msgs[3]) != "3" || string(msgs[7]) != "g1" || string(msgs[8]) != "g2" {
		t.Fatalf("stored %v", msgs)
	}
}

// TestPayloadSizesRoundTrip: payloads around the server's buffer sizes
// and beyond the frame reader's chunk, pipelined in one write, come back
// byte for byte (a reused read buffer must never leak into a stored
// message).
func TestPayloadSizesRoundTrip(t *testing.T) {
	e := newEnv(t)
	e.start(t, false)
	w := dialWire(t, e.addr)
	createStream(t, w, "big", map[string]any{"maxSize": 64 << 20, "streamSegmentSize": 8 << 20})
	createStream(t, w, "mem", map[string]any{"maxSize": 64 << 20, "streamSegmentSize": 8 << 20, "persistence": 1})
	sizes := []int{1, 23, 24, 255, 256, 8<<10 - 40, 8 << 10, 8<<10 + 1, 64<<10 - 40, 64 << 10, 64<<10 + 1, 1<<20 + 7, 3<<20 + 1, 100}
	pattern := func(i, n int) []byte {
		b := make([]byte, n)
		for j := range b {
			b[j] = byte(i*31 + j*7)
		}
		return b
	}
	for _, stream := range []string{"big", "mem"} {
		var all []byte
		for i, n := range sizes {
			all = protocol.AppendFrame(all, protocol.OpAppendMessage, enc(t, map[string]any{"requestId": fmt.Sprint("p", i), "name": stream, "payload": pattern(i, n)}))
		}
		w.write(all)
		for range sizes {
			if f := w.next(); status(f) != 0 {
				t.Fatalf("%s: %v", stream, f.body)
			}
		}
		msgs := readAllWire(t, w, stream, 0)
		for i, n := range sizes {
			if !bytes.Equal(msgs[uint64(i)], pattern(i, n)) {
				t.Fatalf("%s: message %d (%d bytes) came back as %d different bytes", stream, i, n, len(msgs[uint64(i)]))
			}
		}
	}
	// A payload that does not fit in the stream at all is refused.
	createStream(t, w, "small", map[string]any{"maxSize": 1024, "streamSegmentSize": 1024})
	f := w.call(protocol.OpAppendMessage, map[string]any{"requestId": "huge", "name": "small", "payload": make([]byte, 2048)})
	if f.body["requestId"] != "huge" || (status(f) != int(protocol.InvalidRequest) && status(f) != int(protocol.RequestPayloadTooLarge)) {
		t.Fatalf("payload over maxSize: %v", f.body)
	}
}

// TestCBORLengthFormsAndHeads: requests in definite and indefinite
// lengths (maps, arrays, text and byte strings), with heads longer than
// needed, keys in any order, unknown keys: all mean the same request.
// Duplicate keys and trailing bytes are InvalidRequest.
func TestCBORLengthFormsAndHeads(t *testing.T) {
	e := newEnv(t)
	e.start(t, false)
	w := dialWire(t, e.addr)

	// CreateMessageStream: indefinite definition map, indefinite
	// exportDefinition with an indefinite array of an indefinite map,
	// integers with 8-byte heads, chunked text.
	httpCfg := cmapIndef(ctext("identifier"), ctextIndef("we", "b"), ctext("uri"), ctext("http://127.0.0.1:9/x"),
		ctext("batchSize"), cborHd(0, 10, 8), ctext("disabled"), []byte{0xf5})
	defn := cmapIndef(
		ctextIndef("na", "me"), ctextIndef("s.", "log"),
		ctext("maxSize"), cborHd(0, 1<<20, 8),
		ctext("streamSegmentSize"), cborHd(0, 4096, 4),
		ctext("strategyOnFull"), cborHd(0, 1, 1),
		ctext("persistence"), cborHd(0, 0, 2),
		ctext("flushOnWrite"), []byte{0xf4},
		ctext("timeToLiveMillis"), cborHd(0, 3600000, 8),
		ctext("exportDefinition"), cmapIndef(ctext("http"), carrayIndef(httpCfg)))
	must(t, "create, indefinite", w.callRaw(protocol.OpCreateMessageStream, cmapIndef(ctext("requestId"), ctext("c1"), ctext("definition"), defn)),
		protocol.OpCreateMessageStreamResponse, protocol.Success, "c1")
	f := must(t, "describe", w.call(protocol.OpDescribeMessageStream, map[string]any{"requestId": "d1", "name": "s.log"}),
		protocol.OpDescribeMessageStreamResponse, protocol.Success, "d1")
	d := f.body["messageStreamInfo"].(map[any]any)["definition"].(map[any]any)
	if d["name"] != "s.log" || d["maxSize"] != uint64(1<<20) || d["streamSegmentSize"] != uint64(4096) || d["strategyOnFull"] != uint64(1) ||
		d["timeToLiveMillis"] != uint64(3600000) || d["flushOnWrite"] != false {
		t.Fatalf("definition as stored: %v", d)
	}
	es := f.body["messageStreamInfo"].(map[any]any)["exportStatuses"].([]any)
	if len(es) != 1 || es[0].(map[any]any)["exportConfigIdentifier"] != "web" {
		t.Fatalf("export of the indefinite-length definition: %v", es)
	}

	payload := []byte("payload-in-chunks")
	k := func(s string) []byte { return ctext(s) }
	for i, c := range []struct {
		what string
		body []byte
	}{
		{"definite, shortest heads", cmap(k("requestId"), ctext("f0"), k("name"), ctext("s.log"), k("payload"), cbytes(payload))},
		{"definite, 1-byte map head", cat(cborHd(5, 3, 1), k("requestId"), ctext("f1"), k("name"), ctext("s.log"), k("payload"), cbytes(payload))},
		{"definite, wide string heads", cat(cborHd(5, 3, 8), cborHd(3, 9, 2), []byte("requestId"), cborHd(3, 2, 4), []byte("f2"),
			cborHd(3, 4, 8), []byte("name"), cborHd(3, 5, 1), []byte("s.log"), cborHd(3, 7, 2), []byte("payload"),
			cborHd(2, uint64(len(payload)), 8), payload)},
		{"payload first", cmap(k("payload"), cbytes(payload), k("name"), ctext("s.log"), k("requestId"), ctext("f3"))},
		{"indefinite map", cmapIndef(k("requestId"), ctext("f4"), k("name"), ctext("s.log"), k("payload"), cbytes(payload))},
		{"indefinite byte string", cmap(k("requestId"), ctext("f5"), k("name"), ctext("s.log"), k("payload"), cbytesIndef(payload[:7], nil, payload[7:]))},
		{"indefinite text strings", cmap(ctextIndef("reque", "stId"), ctextIndef("f", "6"), ctextIndef("name"), ctextIndef("s", ".", "log"),
			k("payload"), cbytes(payload))},
		{"all indefinite", cmapIndef(ctextIndef("requestId"), ctextIndef("f7"), ctextIndef("na", "me"), ctextIndef("s.log"),
			ctextIndef("payload"), cbytesIndef(payload))},
		{"an unknown key", cmap(k("requestId"), ctext("f8"), k("name"), ctext("s.log"), k("payload"), cbytes(payload), k("future"), cuint(1))},
	} {
		id := fmt.Sprint("f", i)
		f := must(t, c.what, w.callRaw(protocol.OpAppendMessage, c.body), protocol.OpAppendMessageResponse, protocol.Success, id)
		if f.body["sequenceNumber"] != uint64(i) {
			t.Fatalf("%s: sequenceNumber %v, want %d", c.what, f.body["sequenceNumber"], i)
		}
	}
	for seq, p := range readAllWire(t, w, "s.log", 0) {
		if !bytes.Equal(p, payload) {
			t.Fatalf("message %d stored as %q", seq, p)
		}
	}

	// ReadMessages with an indefinite options map and wide integer heads;
	// ListStreams as an empty indefinite map with chunked requestId.
	f = must(t, "read, indefinite options", w.callRaw(protocol.OpReadMessages, cmapIndef(k("requestId"), ctext("r1"), k("streamName"), ctextIndef("s.l", "og"),
		k("readMessagesOptions"), cmapIndef(k("desiredStartSequenceNumber"), cborHd(0, 2, 8), k("minMessageCount"), cborHd(0, 3, 4),
			k("maxMessageCount"), cborHd(0, 3, 2), k("readTimeoutMillis"), cborHd(0, 0, 1)))),
		protocol.OpReadMessagesResponse, protocol.Success, "r1")
	if ms := f.body["messages"].([]any); len(ms) != 3 || ms[0].(map[any]any)["sequenceNumber"] != uint64(2) {
		t.Fatalf("read from 2, 3 messages: %v", ms)
	}
	f = must(t, "list, indefinite", w.callRaw(protocol.OpListStreams, cmapIndef(k("requestId"), ctextIndef("l", "1"))),
		protocol.OpListStreamsResponse, protocol.Success, "l1")
	if s := f.body["streams"].([]any); len(s) != 1 || s[0] != "s.log" {
		t.Fatalf("streams %v", s)
	}

	// Malformed CBOR: each InvalidRequest, the connection survives.
	for _, c := range []struct {
		what string
		op   protocol.Op
		body []byte
		resp protocol.Op
	}{
		{"duplicate key", protocol.OpAppendMessage, cmap(k("requestId"), ctext("x1"), k("name"), ctext("s.log"), k("name"), ctext("other"), k("payload"), cbytes(payload)), protocol.OpAppendMessageResponse},
		{"trailing bytes", protocol.OpAppendMessage, cat(cmap(k("requestId"), ctext("x2"), k("name"), ctext("s.log"), k("payload"), cbytes(payload)), []byte{0x00}), protocol.OpAppendMessageResponse},
		{"map shorter than its head", protocol.OpAppendMessage, cat(cborHd(5, 4, 0), k("requestId"), ctext("x3"), k("name"), ctext("s.log"), k("payload"), cbytes(payload)), protocol.OpAppendMessageResponse},
		{"string past the end", protocol.OpAppendMessage, cat(cmap(k("requestId"), ctext("x4"), k("name"), ctext("s.log"), k("payload")), cborHd(2, 1000, 0), payload), protocol.OpAppendMessageResponse},
		{"indefinite map never closed", protocol.OpListStreams, cat([]byte{0xbf}, k("requestId"), ctext("x5")), protocol.OpListStreamsResponse},
		{"break outside indefinite", protocol.OpListStreams, []byte{0xff}, protocol.OpListStreamsResponse},
		{"text chunk in a byte string", protocol.OpAppendMessage, cmap(k("requestId"), ctext("x6"), k("name"), ctext("s.log"), k("payload"), cat([]byte{0x5f}, ctext("no"), []byte{0xff})), protocol.OpAppendMessageResponse},
		{"invalid UTF-8 name", protocol.OpAppendMessage, cmap(k("requestId"), ctext("x7"), k("name"), cat(cborHd(3, 2, 0), []byte{0xc3, 0x28}), k("payload"), cbytes(payload)), protocol.OpAppendMessageResponse},
		{"nesting deeper than any request", protocol.OpListStreams, cat(bytes.Repeat([]byte{0x81}, 100), []byte{0x00}), protocol.OpListStreamsResponse},
		{"array, not a map", protocol.OpDescribeMessageStream, carrayIndef(ctext("s.log")), protocol.OpDescribeMessageStreamResponse},
	} {
		f := w.callRaw(c.op, c.body)
		if f.op != c.resp || status(f) != int(protocol.InvalidRequest) {
			t.Fatalf("%s: %v %v", c.what, f.op, f.body)
		}
	}
	must(t, "still serving", w.call(protocol.OpListStreams, map[string]any{"requestId": "l2"}), protocol.OpListStreamsResponse, protocol.Success, "l2")
	if n := len(readAllWire(t, w, "s.log", 0)); n != 9 {
		t.Fatalf("%d messages stored; a malformed append stored something", n)
	}
}

// TestWrongTypesAndRangesAreInvalidRequest: each field of the wrong CBOR
// type or out of v1's range is InvalidRequest, answered to its requestId,
// and stores nothing.
func TestWrongTypesAndRangesAreInvalidRequest(t *testing.T) {
	e := newEnv(t)
	e.start(t, false)
	w := dialWire(t, e.addr)
	createStream(t, w, "s", nil)
	must(t, "append", w.call(protocol.OpAppendMessage, map[string]any{"requestId": "a", "name": "s", "payload": []byte("x")}),
		protocol.OpAppendMessageResponse, protocol.Success, "a")
	opts := func(o map[string]any) map[string]any {
		return map[string]any{"streamName": "s", "readMessagesOptions": o}
	}
	create := func(extra map[string]any) map[string]any { return map[string]any{"definition": def("t", extra)} }
	big := uint64(1) << 63
	for _, c := range []struct {
		what string
		op   protocol.Op
		req  map[string]any
	}{
		{"append name int", protocol.OpAppendMessage, map[string]any{"name": 5, "payload": []byte("x")}},
		{"append name bytes", protocol.OpAppendMessage, map[string]any{"name": []byte("s"), "payload": []byte("x")}},
		{"append payload int", protocol.OpAppendMessage, map[string]any{"name": "s", "payload": 5}},
		{"append payload map", protocol.OpAppendMessage, map[string]any{"name": "s", "payload": map[string]any{"a": 1}}},
		{"append payload null", protocol.OpAppendMessage, map[string]any{"name": "s", "payload": nil}},
		{"append no payload", protocol.OpAppendMessage, map[string]any{"name": "s"}},
		{"append no name", protocol.OpAppendMessage, map[string]any{"payload": []byte("x")}},
		{"read streamName int", protocol.OpReadMessages, map[string]any{"streamName": 1}},
		{"read no streamName", protocol.OpReadMessages, map[string]any{}},
		{"read options a string", protocol.OpReadMessages, map[string]any{"streamName": "s", "readMessagesOptions": "all"}},
		{"read start a string", protocol.OpReadMessages, opts(map[string]any{"desiredStartSequenceNumber": "0"})},
		{"read start negative", protocol.OpReadMessages, opts(map[string]any{"desiredStartSequenceNumber": -1})},
		{"read start 2^63", protocol.OpReadMessages, opts(map[string]any{"desiredStartSequenceNumber": big})},
		{"read min 0", protocol.OpReadMessages, opts(map[string]any{"minMessageCount": 0})},
		{"read min 2^31", protocol.OpReadMessages, opts(map[string]any{"minMessageCount": 1 << 31, "maxMessageCount": 1 << 31})},
		{"read max 0", protocol.OpReadMessages, opts(map[string]any{"maxMessageCount": 0})},
		{"read max 2^31", protocol.OpReadMessages, opts(map[string]any{"maxMessageCount": 1 << 31})},
		{"read min a float", protocol.OpReadMessages, opts(map[string]any{"minMessageCount": 1.5})},
		{"read timeout negative", protocol.OpReadMessages, opts(map[string]any{"readTimeoutMillis": -1})},
		{"read timeout over v1's maximum", protocol.OpReadMessages, opts(map[string]any{"readTimeoutMillis": uint64(9223372036855)})},
		{"read timeout a bool", protocol.OpReadMessages, opts(map[string]any{"readTimeoutMillis": true})},
		{"create definition a string", protocol.OpCreateMessageStream, map[string]any{"definition": "t"}},
		{"create no definition", protocol.OpCreateMessageStream, map[string]any{}},
		{"create name int", protocol.OpCreateMessageStream, map[string]any{"definition": map[string]any{"name": 1, "strategyOnFull": 0}}},
		{"create strategy a string", protocol.OpCreateMessageStream, create(map[string]any{"strategyOnFull": "RejectNewData"})},
		{"create strategy 2", protocol.OpCreateMessageStream, create(map[string]any{"strategyOnFull": 2})},
		{"create strategy -1", protocol.OpCreateMessageStream, create(map[string]any{"strategyOnFull": -1})},
		{"create persistence 2", protocol.OpCreateMessageStream, create(map[string]any{"persistence": 2})},
		{"create flushOnWrite a string", protocol.OpCreateMessageStream, create(map[string]any{"flushOnWrite": "yes"})},
		{"create flushOnWrite 1", protocol.OpCreateMessageStream, create(map[string]any{"flushOnWrite": 1})},
		{"create maxSize 1023", protocol.OpCreateMessageStream, create(map[string]any{"maxSize": 1023})},
		{"create maxSize negative", protocol.OpCreateMessageStream, create(map[string]any{"maxSize": -1})},
		{"create maxSize 2^63", protocol.OpCreateMessageStream, create(map[string]any{"maxSize": big})},
		{"create segment 1023", protocol.OpCreateMessageStream, create(map[string]any{"streamSegmentSize": 1023})},
		{"create segment 2^31", protocol.OpCreateMessageStream, create(map[string]any{"streamSegmentSize": 1 << 31})},
		{"create ttl 59999", protocol.OpCreateMessageStream, create(map[string]any{"timeToLiveMillis": 59999})},
		{"create ttl over v1's maximum", protocol.OpCreateMessageStream, create(map[string]any{"timeToLiveMillis": uint64(9223372036855)})},
		{"create exportDefinition an array", protocol.OpCreateMessageStream, create(map[string]any{"exportDefinition": []any{}})},
		{"create exportDefinition a string", protocol.OpCreateMessageStream, create(map[string]any{"exportDefinition": "http"})},
		{"create http not a list", protocol.OpCreateMessageStream, create(map[string]any{"exportDefinition": map[string]any{"http": map[string]any{"identifier": "x", "uri": "http://x"}}})},
		{"create http without identifier", protocol.OpCreateMessageStream, create(map[string]any{"exportDefinition": map[string]any{"http": []any{map[string]any{"uri": "http://x"}}}})},
		{"create http bad identifier", protocol.OpCreateMessageStream, create(map[string]any{"exportDefinition": map[string]any{"http": []any{map[string]any{"identifier": "a/b", "uri": "http://x"}}}})},
		{"create two exports, one identifier", protocol.OpCreateMessageStream, create(map[string]any{"exportDefinition": map[string]any{"http": []any{
			map[string]any{"identifier": "x", "uri": "http://x"}, map[string]any{"identifier": "x", "uri": "http://y"}}}})},
		{"update definition a string", protocol.OpUpdateMessageStream, map[string]any{"definition": "s"}},
		{"update maxSize a string", protocol.OpUpdateMessageStream, map[string]any{"definition": def("s", map[string]any{"maxSize": "1"})}},
		{"update maxSize 1023", protocol.OpUpdateMessageStream, map[string]any{"definition": def("s", map[string]any{"maxSize": 1023})}},
		{"update no strategy", protocol.OpUpdateMessageStream, map[string]any{"definition": map[string]any{"name": "s"}}},
		{"describe name int", protocol.OpDescribeMessageStream, map[string]any{"name": 1}},
		{"describe no name", protocol.OpDescribeMessageStream, map[string]any{}},
		{"delete name array", protocol.OpDeleteMessageStream, map[string]any{"name": []any{"s"}}},
		{"delete no name", protocol.OpDeleteMessageStream, map[string]any{}},
	} {
		id := "w" + strings.NewReplacer(" ", "-", "^", "", "'", "").Replace(c.what)
		c.req["requestId"] = id
		resp, _ := protocol.ResponseOf(c.op)
		must(t, c.what, w.call(c.op, c.req), resp, protocol.InvalidRequest, id)
	}

	// A requestId that is missing, of the wrong type or off the pattern:
	// InvalidRequest all the same.
	for _, c := range []struct {
		what string
		id   any
	}{{"no requestId", nil}, {"requestId int", 7}, {"requestId bytes", []byte("r")}, {"requestId empty", ""},
		{"requestId with a slash", "a/b"}, {"requestId of 256", strings.Repeat("r", 256)}} {
		for _, op := range []protocol.Op{protocol.OpAppendMessage, protocol.OpListStreams, protocol.OpReadMessages, protocol.OpDescribeMessageStream} {
			req := map[string]any{"name": "s", "streamName": "s", "payload": []byte("x")}
			if c.id != nil {
				req["requestId"] = c.id
			}
			resp, _ := protocol.ResponseOf(op)
			if f := w.call(op, req); f.op != resp || status(f) != int(protocol.InvalidRequest) {
				t.Fatalf("%s on %v: %v %v", c.what, op, f.op, f.body)
			}
		}
	}
	// Nothing above stored or created anything.
	f := must(t, "describe", w.call(protocol.OpDescribeMessageStream, map[string]any{"requestId": "d", "name": "s"}),
		protocol.OpDescribeMessageStreamResponse, protocol.Success, "d")
	if ss := f.body["messageStreamInfo"].(map[any]any)["storageStatus"].(map[any]any); ss["newestSequenceNumber"] != uint64(0) {
		t.Fatalf("storage after refused requests: %v", ss)
	}
	f = must(t, "list", w.call(protocol.OpListStreams, map[string]any{"requestId": "l"}), protocol.OpListStreamsResponse, protocol.Success, "l")
	if s := f.body["streams"].([]any); len(s) != 1 {
		t.Fatalf("streams after refused creates: %v", s)
	}
}

// TestPayloadMustBeAByteString: spec §2.1, byte payloads travel as CBOR
// byte strings. An AppendMessage whose payload is a CBOR array of small
// integers is a wrong type (InvalidRequest), as a text payload is, and
// stores nothing (the CBOR library alone decodes such an array into
// bytes).
func TestPayloadMustBeAByteString(t *testing.T) {
	e := newEnv(t)
	e.start(t, false)
	w := dialWire(t, e.addr)
	createStream(t, w, "s", nil)
	for what, p := range map[string]any{"an array": []any{1, 2}, "an empty array": []any{}, "text": "hi",
		"an array of byte strings": []any{[]byte{1}, []byte{2}}} {
		must(t, "payload "+what, w.call(protocol.OpAppendMessage, map[string]any{"requestId": "a", "name": "s", "payload": p}),
			protocol.OpAppendMessageResponse, protocol.InvalidRequest, "a")
	}
	// An indefinite-length array, by hand.
	b := []byte{0xa3, 0x69}
	b = append(append(b, "requestId"...), 0x61, 'a', 0x64)
	b = append(append(b, "name"...), 0x61, 's', 0x67)
	b = append(append(b, "payload"...), 0x9f, 1, 2, 0xff)
	must(t, "payload an indefinite array", w.callRaw(protocol.OpAppendMessage, b),
		protocol.OpAppendMessageResponse, protocol.InvalidRequest, "a")
	if s := describeStorage(t, w, "s"); s.bytes != 0 {
		t.Fatalf("refused appends stored %+v", s)
	}
	if seq := mustAppend(t, w, "s", []byte{1, 2}); seq != 0 {
		t.Fatalf("the first good append numbered %d", seq)
	}
}

// TestStreamNames: every name v1's pattern allows works in every
// operation and survives a restart (".log" names included: v1 1.11.6),
// names that look like paths stay apart; every name outside the pattern
// is InvalidRequest in every operation, never ResourceNotFound.
func TestStreamNames(t *testing.T) {
	e := newEnv(t)
	e.start(t, false)
	w := dialWire(t, e.addr)
	valid := []string{"a.log", "a", "a.log.log", ".log", ".", "..", "...", "-", "_", " ", " leading and trailing ", "with, commas",
		"UPPER.Mixed-09_", strings.Repeat("n", 255), strings.Repeat(".", 255), "segment.seg", "stream.json", "seq", "00000000000000000000.seg"}
	for i, n := range valid {
		createStream(t, w, n, nil)
		f := must(t, "append "+n, w.call(protocol.OpAppendMessage, map[string]any{"requestId": "a", "name": n, "payload": []byte(fmt.Sprint(i))}),
			protocol.OpAppendMessageResponse, protocol.Success, "a")
		if f.body["sequenceNumber"] != uint64(0) {
			t.Fatalf("%q: first sequence number %v", n, f.body["sequenceNumber"])
		}
	}
	check := func() {
		t.Helper()
		f := must(t, "list", w.call(protocol.OpListStreams, map[string]any{"requestId": "l"}), protocol.OpListStreamsResponse, protocol.Success, "l")
		var got []string
		for _, s := range f.body["streams"].([]any) {
			got = append(got, s.(string))
		}
		want := slices.Clone(valid)
		slices.Sort(want)
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Fatalf("streams %q, want %q", got, want)
		}
		for i, n := range valid {
			f := must(t, "read "+n, w.call(protocol.OpReadMessages, map[string]any{"requestId": "r", "streamName": n}),
				protocol.OpReadMessagesResponse, protocol.Success, "r")
			m := f.body["messages"].([]any)[0].(map[any]any)
			if m["streamName"] != n || string(m["payload"].([]byte)) != fmt.Sprint(i) {
				t.Fatalf("%q holds %v", n, m)
			}
			f = must(t, "describe "+n, w.call(protocol.OpDescribeMessageStream, map[string]any{"requestId": "d", "name": n}),
				protocol.OpDescribeMessageStreamResponse, protocol.Success, "d")
			if f.body["messageStreamInfo"].(map[any]any)["definition"].(map[any]any)["name"] != n {
				t.Fatalf("%q described as %v", n, f.body)
			}
		}
	}
	check()
	e.stop()
	e.start(t, false)
	w = dialWire(t, e.addr)
	check()
	for _, n := range valid {
		must(t, "delete "+n, w.call(protocol.OpDeleteMessageStream, map[string]any{"requestId": "x", "name": n}),
			protocol.OpDeleteMessageStreamResponse, protocol.Success, "x")
	}

	createStream(t, w, "exists", nil)
	invalid := []string{"", strings.Repeat("n", 256), "a/b", "../exists", "/exists", "a\\b", "é", "a\x00b", "a\nb", "a\tb", "a:b", "a*b",
		"a?b", "a|b", "$aws", "name\u200b", "exists/"}
	for _, n := range invalid {
		for _, c := range []struct {
			op  protocol.Op
			req map[string]any
		}{
			{protocol.OpCreateMessageStream, map[string]any{"definition": def(n, nil)}},
			{protocol.OpUpdateMessageStream, map[string]any{"definition": def(n, nil)}},
			{protocol.OpAppendMessage, map[string]any{"name": n, "payload": []byte("x")}},
			{protocol.OpReadMessages, map[string]any{"streamName": n}},
			{protocol.OpDescribeMessageStream, map[string]any{"name": n}},
			{protocol.OpDeleteMessageStream, map[string]any{"name": n}},
		} {
			c.req["requestId"] = "bad"
			resp, _ := protocol.ResponseOf(c.op)
			must(t, fmt.Sprintf("%v %q", c.op, n), w.call(c.op, c.req), resp, protocol.InvalidRequest, "bad")
		}
	}
	f := must(t, "list", w.call(protocol.OpListStreams, map[string]any{"requestId": "l"}), protocol.OpListStreamsResponse, protocol.Success, "l")
	if s := f.body["streams"].([]any); len(s) != 1 || s[0] != "exists" {
		t.Fatalf("streams after invalid names: %v", s)
	}
	// Nothing escaped the data directory.
	if _, err := os.Stat(e.root.Dir() + "/data/exists"); err == nil {
		t.Fatal("a name made a path outside the stream manager's directory")
	}
}

// TestManyConcurrentClients: many connections at once, each pipelining
// appends to a shared stream and to its own while others read: the
// shared stream's sequence numbers are each handed out once, every
// connection's own appends are numbered in the order it sent them, and
// every message reads back as sent.
func TestManyConcurrentClients(t *testing.T) {
	e := newEnv(t)
	e.start(t, false)
	w := dialWire(t, e.addr)
	createStream(t, w, "shared", map[string]any{"maxSize": 64 << 20, "streamSegmentSize": 64 << 10})
	const clients, each = 32, 40
	type result struct {
		shared []uint64 // in the order sent
		err    error
	}
	results := make([]result, clients)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for c := range clients {
		wg.Go(func() {
			r := &results[c]
			fail := func(format string, args ...any) {
				r.err = fmt.Errorf("client %d: "+format, append([]any{c}, args...)...)
			}
			cw := dialWire(t, e.addr)
			own := fmt.Sprint("own-", c)
			cw.frame(protocol.OpCreateMessageStream, enc(t, map[string]any{"requestId": "c", "definition": def(own, map[string]any{"flushOnWrite": c%4 == 0})}))
			if f := cw.next(); status(f) != 0 {
				fail("create: %v", f.body)
				return
			}
			<-start
			var b []byte
			for i := range each {
				b = protocol.AppendFrame(b, protocol.OpAppendMessage, enc(t, map[string]any{"requestId": fmt.Sprint("s", i), "name": "shared", "payload": []byte(fmt.Sprintf("%d/%d", c, i))}))
				b = protocol.AppendFrame(b, protocol.OpAppendMessage, enc(t, map[string]any{"requestId": fmt.Sprint("o", i), "name": own, "payload": []byte(fmt.Sprintf("%d/%d", c, i))}))
				if i%10 == 0 {
					b = protocol.AppendFrame(b, protocol.OpReadMessages, enc(t, map[string]any{"requestId": fmt.Sprint("r", i), "streamName": "shared"}))
				}
			}
			if _, err := cw.nc.Write(b); err != nil {
				fail("write: %v", err)
				return
			}
			r.shared = make([]uint64, each)
			ownSeq := make([]uint64, each)
			for range 2*each + each/10 {
				cw.nc.SetReadDeadline(time.Now().Add(30 * time.Second))
				f := readFrame(t, cw.br)
				id, _ := f.body["requestId"].(string)
				if status(f) != 0 || id == "" {
					fail("%v %v", f.op, f.body)
					return
				}
				var i int
				fmt.Sscan(id[1:], &i)
				switch id[0] {
				case 's':
					r.shared[i] = f.body["sequenceNumber"].(uint64)
				case 'o':
					ownSeq[i] = f.body["sequenceNumber"].(uint64)
				}
			}
			for i, s := range ownSeq {
				if s != uint64(i) {
					fail("own stream numbered %v", ownSeq)
					return
				}
			}
			if !slices.IsSorted(r.shared) {
				fail("its appends to the shared stream numbered out of order: %v", r.shared)
			}
		})
	}
	close(start)
	wg.Wait()
	seen := map[uint64]string{}
	for c, r := range results {
		if r.err != nil {
			t.Fatal(r.err)
		}
		for i, s := range r.shared {
			if prev, dup := seen[s]; dup {
				t.Fatalf("sequence number %d given to %s and %d/%d", s, prev, c, i)
			}
			seen[s] = fmt.Sprintf("%d/%d", c, i)
		}
	}
	msgs := readAllWire(t, w, "shared", 0)
	if len(msgs) != clients*each {
		t.Fatalf("shared stream holds %d messages, want %d", len(msgs), clients*each)
	}
	for s, p := range msgs {
		if seen[s] != string(p) {
			t.Fatalf("message %d holds %q, acknowledged for %q", s, p, seen[s])
		}
	}
}

// TestAnswersOutOfOrderMatchedByRequestID: on one connection, requests
// are answered as they complete, not as they were sent; each answer
// carries its request's id.
func TestAnswersOutOfOrderMatchedByRequestID(t *testing.T) {
	e := newEnv(t)
	e.start(t, false)
	w := dialWire(t, e.addr)
	createStream(t, w, "s", nil)
	read := func(id string, min, timeout int) []byte {
		return protocol.AppendFrame(nil, protocol.OpReadMessages, enc(t, map[string]any{"requestId": id, "streamName": "s",
			"readMessagesOptions": map[string]any{"desiredStartSequenceNumber": 0, "minMessageCount": min, "maxMessageCount": 10, "readTimeoutMillis": timeout}}))
	}
	appendFrame := func(id, p string) []byte {
		return protocol.AppendFrame(nil, protocol.OpAppendMessage, enc(t, map[string]any{"requestId": id, "name": "s", "payload": []byte(p)}))
	}
	// A long poll for 2 messages, a short one for 5, then an append: the
	// append is answered first, then the short poll times out, then the
	// second append completes the long poll.
	w.write(cat(read("long", 2, 20000), read("short", 5, 1000), appendFrame("a0", "zero")))
	if f := w.next(); f.body["requestId"] != "a0" || status(f) != 0 {
		t.Fatalf("first answer %v, want the append's", f.body)
	}
	if f := w.next(); f.body["requestId"] != "short" || status(f) != int(protocol.NotEnoughMessages) {
		t.Fatalf("second answer %v, want the short poll's NotEnoughMessages", f.body)
	}
	w.write(appendFrame("a1", "one"))
	got := map[string]frame{}
	for range 2 {
		f := w.next()
		got[f.body["requestId"].(string)] = f
	}
	if f := got["a1"]; status(f) != 0 || f.body["sequenceNumber"] != uint64(1) {
		t.Fatalf("second append: %v", got)
	}
	f := got["long"]
	if status(f) != 0 || f.op != protocol.OpReadMessagesResponse {
		t.Fatalf("long poll: %v", got)
	}
	if ms := f.body["messages"].([]any); len(ms) != 2 || string(ms[1].(map[any]any)["payload"].([]byte)) != "one" {
		t.Fatalf("long poll read %v", ms)
	}

	// A poll whose start is ahead of the stream wakes for its own
	// message, not for the ones before it.
	w.write(protocol.AppendFrame(nil, protocol.OpReadMessages, enc(t, map[string]any{"requestId": "ahead", "streamName": "s",
		"readMessagesOptions": map[string]any{"desiredStartSequenceNumber": 4, "readTimeoutMillis": 20000}})))
	w.write(cat(appendFrame("a2", "two"), appendFrame("a3", "three")))
	for _, id := range []string{"a2", "a3"} {
		if f := w.next(); f.body["requestId"] != id {
			t.Fatalf("answer %v, want %s's (the poll for 4 must still wait)", f.body, id)
		}
	}
	w.write(appendFrame("a4", "four"))
	got = map[string]frame{}
	for range 2 {
		f := w.next()
		got[f.body["requestId"].(string)] = f
	}
	if ms, _ := got["ahead"].body["messages"].([]any); status(got["ahead"]) != 0 || len(ms) != 1 || ms[0].(map[any]any)["sequenceNumber"] != uint64(4) {
		t.Fatalf("poll from 4: %v", got)
	}

	// A poll answered when its stream is deleted meanwhile, by another
	// client: ResourceNotFound at once, not at its timeout.
	w.write(protocol.AppendFrame(nil, protocol.OpReadMessages, enc(t, map[string]any{"requestId": "orphan", "streamName": "s",
		"readMessagesOptions": map[string]any{"desiredStartSequenceNumber": 100, "readTimeoutMillis": 60000}})))
	time.Sleep(50 * time.Millisecond)
	other := dialWire(t, e.addr)
	must(t, "delete", other.call(protocol.OpDeleteMessageStream, map[string]any{"requestId": "del", "name": "s"}),
		protocol.OpDeleteMessageStreamResponse, protocol.Success, "del")
	began := time.Now()
	must(t, "poll of a deleted stream", w.next(), protocol.OpReadMessagesResponse, protocol.ResourceNotFound, "orphan")
	if d := time.Since(began); d > 10*time.Second {
		t.Fatalf("poll of a deleted stream answered after %v", d)
	}

	// A client that leaves with polls pending leaves nothing behind
	// that disturbs the others.
	createStream(t, w, "s2", nil)
	gone := dialWire(t, e.addr)
	for i := range 10 {
		gone.frame(protocol.OpReadMessages, enc(t, map[string]any{"requestId": fmt.Sprint("g", i), "streamName": "s2",
			"readMessagesOptions": map[string]any{"readTimeoutMillis": 60000}}))
	}
	time.Sleep(20 * time.Millisecond)
	gone.nc.Close()
	must(t, "append after a client left", w.call(protocol.OpAppendMessage, map[string]any{"requestId": "z", "name": "s2", "payload": []byte("z")}),
		protocol.OpAppendMessageResponse, protocol.Success, "z")
}

// TestUnauthorizedClientGetsNoFurther: with client authentication on, a
// client refused at Connect is disconnected; the requests it sends after
// are never served.
func TestUnauthorizedClientGetsNoFurther(t *testing.T) {
	e := newEnv(t)
	e.start(t, true)
	nc, br := dialRaw(t, e.addr)
	b := []byte{protocol.ConnectVersion}
	b = protocol.AppendFrame(b, protocol.OpConnect, enc(t, map[string]any{"requestId": "c", "protocolVersion": "1.1.0", "authToken": "bm90IGEgdG9rZW4="}))
	// Pipelined behind the Connect, as an impatient client might.
	b = protocol.AppendFrame(b, protocol.OpCreateMessageStream, enc(t, map[string]any{"requestId": "x", "definition": def("sneaky", nil)}))
	nc.Write(b)
	nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	br.ReadByte()
	must(t, "connect", readFrame(t, br), protocol.OpConnectResponse, protocol.Unauthorized, "c")
	w := &wire{t: t, nc: nc, br: br}
	if !w.closedByServer() {
		t.Fatal("an unauthorized client stays connected")
	}
	e.stop()
	e.start(t, false)
	f := must(t, "list", dialWire(t, e.addr).call(protocol.OpListStreams, map[string]any{"requestId": "l"}), protocol.OpListStreamsResponse, protocol.Success, "l")
	if s := f.body["streams"].([]any); len(s) != 0 {
		t.Fatalf("a request pipelined behind a refused Connect was served: streams %v", s)
	}
}

// TestMutatedRequestsNeverCrash: valid requests with bytes flipped, cut
// short or grown, on many connections: every answer is a well-formed
// frame holding a CBOR map, or the connection closes; the server goes on
// serving, and a stream no mutation can name is untouched.
func TestMutatedRequestsNeverCrash(t *testing.T) {
	e := newEnv(t)
	e.start(t, false)
	w := dialWire(t, e.addr)
	const guard = "guard-stream-0123456789-abcdefghij"
	createStream(t, w, guard, nil)
	for i := range 5 {
		mustAppend(t, w, guard, numbered(i))
	}
	seeds := [][2]any{
		{protocol.OpCreateMessageStream, map[string]any{"requestId": "r1", "definition": def("m1", map[string]any{"timeToLiveMillis": 60000,
			"exportDefinition": map[string]any{"http": []any{map[string]any{"identifier": "h", "uri": "http://127.0.0.1:9/", "disabled": true}}}})}},
		{protocol.OpAppendMessage, map[string]any{"requestId": "r2", "name": "m1", "payload": []byte("payload")}},
		{protocol.OpReadMessages, map[string]any{"requestId": "r3", "streamName": "m1", "readMessagesOptions": map[string]any{"desiredStartSequenceNumber": 0, "minMessageCount": 1, "maxMessageCount": 2, "readTimeoutMillis": 10}}},
		{protocol.OpDescribeMessageStream, map[string]any{"requestId": "r4", "name": "m1"}},
		{protocol.OpUpdateMessageStream, map[string]any{"requestId": "r5", "definition": def("m1", map[string]any{"strategyOnFull": 1})}},
		{protocol.OpListStreams, map[string]any{"requestId": "r6"}},
		{protocol.OpDeleteMessageStream, map[string]any{"requestId": "r7", "name": "m1"}},
	}
	rng := uint64(0x9e3779b97f4a7c15)
	rand := func(n int) int { // xorshift: the same mutations every run
		rng ^= rng << 13
		rng ^= rng >> 7
		rng ^= rng << 17
		return int(rng % uint64(n))
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var problems []string
	for c := range 8 {
		var frames [][]byte
		for range 60 {
			s := seeds[rand(len(seeds))]
			body := enc(t, s[1])
			switch rand(4) {
			case 0: // flip a few bytes
				for range 1 + rand(3) {
					body[rand(len(body))] ^= byte(1 + rand(255))
				}
			case 1: // cut short
				body = body[:rand(len(body))]
			case 2: // grow in the middle
				at := rand(len(body))
				body = cat(body[:at], []byte{byte(rand(256)), byte(rand(256))}, body[at:])
			case 3: // a wrong head byte
				body[0] = byte(rand(256))
			}
			frames = append(frames, protocol.AppendFrame(nil, s[0].(protocol.Op), body))
		}
		wg.Go(func() {
			cw := dialWire(t, e.addr)
			go func() {
				for _, f := range frames {
					if _, err := cw.nc.Write(f); err != nil {
						return
					}
				}
			}()
			for range frames {
				cw.nc.SetReadDeadline(time.Now().Add(10 * time.Second))
				op, p, err := protocol.ReadFrame(cw.br, 0)
				if err != nil {
					return // closed: allowed
				}
				var m map[string]any
				if err := cbor.Unmarshal(p, &m); err != nil || m["status"] == nil {
					mu.Lock()
					problems = append(problems, fmt.Sprintf("client %d: answer %v % x", c, protocol.Op(op), p))
					mu.Unlock()
					return
				}
			}
		})
	}
	wg.Wait()
	if len(problems) > 0 {
		t.Fatal(strings.Join(problems, "\n"))
	}
	w = dialWire(t, e.addr)
	got := readAllWire(t, w, guard, 0)
	if len(got) != 5 || string(got[4]) != string(numbered(4)) {
		t.Fatalf("guard stream after the mutations: %d messages", len(got))
	}
	mustAppend(t, w, guard, numbered(5))
}
