package streammgr_test

import (
	"bytes"
	"testing"
	"time"

	"github.com/evergreen-edge/evergreen/streammgr/protocol"
)

func def(name string, extra map[string]any) map[string]any {
	d := map[string]any{"name": name, "strategyOnFull": 0, "maxSize": 1 << 20, "streamSegmentSize": 4096, "persistence": 0, "flushOnWrite": false}
	for k, v := range extra {
		d[k] = v
	}
	return d
}

// TestProtocolConformance drives every operation through a raw socket and
// checks the status codes the v1 clients map to exceptions.
func TestProtocolConformance(t *testing.T) {
	e := newEnv(t)
	e.start(t, false)
	c, cr := connect(t, e.addr, "")
	if cr.op != protocol.OpConnectResponse || status(cr) != 0 || cr.body["requestId"] != "connect-1" || cr.body["protocolVersion"] != "1.1.0" {
		t.Fatalf("ConnectResponse %v %v", cr.op, cr.body)
	}

	check := func(what string, f frame, op protocol.Op, st protocol.Status) frame {
		t.Helper()
		if f.op != op || status(f) != int(st) {
			t.Fatalf("%s: op %v status %v (%v), want op %v status %d", what, f.op, f.body["status"], f.body["errorMessage"], op, st)
		}
		return f
	}
	check("create", c.call(protocol.OpCreateMessageStream, map[string]any{"definition": def("s1.log", nil)}), protocol.OpCreateMessageStreamResponse, protocol.Success)
	check("create again", c.call(protocol.OpCreateMessageStream, map[string]any{"definition": def("s1.log", nil)}), protocol.OpCreateMessageStreamResponse, protocol.InvalidRequest)
	check("create bad name", c.call(protocol.OpCreateMessageStream, map[string]any{"definition": def("a/b", nil)}), protocol.OpCreateMessageStreamResponse, protocol.InvalidRequest)
	check("create no strategy", c.call(protocol.OpCreateMessageStream, map[string]any{"definition": map[string]any{"name": "x"}}), protocol.OpCreateMessageStreamResponse, protocol.InvalidRequest)
	check("create wrong type", c.call(protocol.OpCreateMessageStream, map[string]any{"definition": def("x", map[string]any{"maxSize": "big"})}), protocol.OpCreateMessageStreamResponse, protocol.InvalidRequest)
	check("create small maxSize", c.call(protocol.OpCreateMessageStream, map[string]any{"definition": def("x", map[string]any{"maxSize": 10})}), protocol.OpCreateMessageStreamResponse, protocol.InvalidRequest)
	long := string(bytes.Repeat([]byte("n"), 256))
	check("create long name", c.call(protocol.OpCreateMessageStream, map[string]any{"definition": def(long, nil)}), protocol.OpCreateMessageStreamResponse, protocol.InvalidRequest)

	for i := range 3 {
		f := check("append", c.call(protocol.OpAppendMessage, map[string]any{"name": "s1.log", "payload": []byte{byte(i), 1, 2}}), protocol.OpAppendMessageResponse, protocol.Success)
		if f.body["sequenceNumber"] != uint64(i) {
			t.Fatalf("sequenceNumber %v, want %d", f.body["sequenceNumber"], i)
		}
	}
	check("append empty", c.call(protocol.OpAppendMessage, map[string]any{"name": "s1.log", "payload": []byte{}}), protocol.OpAppendMessageResponse, protocol.InvalidRequest)
	check("append text payload", c.call(protocol.OpAppendMessage, map[string]any{"name": "s1.log", "payload": "text"}), protocol.OpAppendMessageResponse, protocol.InvalidRequest)
	check("append missing", c.call(protocol.OpAppendMessage, map[string]any{"name": "nope", "payload": []byte{1}}), protocol.OpAppendMessageResponse, protocol.ResourceNotFound)

	f := check("read", c.call(protocol.OpReadMessages, map[string]any{"streamName": "s1.log",
		"readMessagesOptions": map[string]any{"desiredStartSequenceNumber": 1, "minMessageCount": 1, "maxMessageCount": 5}}), protocol.OpReadMessagesResponse, protocol.Success)
	msgs := f.body["messages"].([]any)
	if len(msgs) != 2 {
		t.Fatalf("read %d messages", len(msgs))
	}
	m := msgs[0].(map[any]any)
	if m["sequenceNumber"] != uint64(1) || m["streamName"] != "s1.log" || !bytes.Equal(m["payload"].([]byte), []byte{1, 1, 2}) || m["ingestTime"] == nil {
		t.Fatalf("message %v", m)
	}
	check("read not enough", c.call(protocol.OpReadMessages, map[string]any{"streamName": "s1.log",
		"readMessagesOptions": map[string]any{"desiredStartSequenceNumber": 3}}), protocol.OpReadMessagesResponse, protocol.NotEnoughMessages)
	check("read min>max", c.call(protocol.OpReadMessages, map[string]any{"streamName": "s1.log",
		"readMessagesOptions": map[string]any{"minMessageCount": 3, "maxMessageCount": 2}}), protocol.OpReadMessagesResponse, protocol.InvalidRequest)
	check("read missing", c.call(protocol.OpReadMessages, map[string]any{"streamName": "nope"}), protocol.OpReadMessagesResponse, protocol.ResourceNotFound)

	// A long-poll read does not hold up the requests behind it on the same
	// connection; it is answered when the message arrives.
	poll := c.send(protocol.OpReadMessages, map[string]any{"streamName": "s1.log",
		"readMessagesOptions": map[string]any{"desiredStartSequenceNumber": 3, "readTimeoutMillis": 10000}})
	f = check("list", c.call(protocol.OpListStreams, map[string]any{}), protocol.OpListStreamsResponse, protocol.Success)
	if s := f.body["streams"].([]any); len(s) != 1 || s[0] != "s1.log" {
		t.Fatalf("streams %v", s)
	}
	check("append wakes poll", c.call(protocol.OpAppendMessage, map[string]any{"name": "s1.log", "payload": []byte("late")}), protocol.OpAppendMessageResponse, protocol.Success)
	select {
	case f := <-poll:
		check("long poll", f, protocol.OpReadMessagesResponse, protocol.Success)
	case <-time.After(5 * time.Second):
		t.Fatal("long poll not answered")
	}

	f = check("describe", c.call(protocol.OpDescribeMessageStream, map[string]any{"name": "s1.log"}), protocol.OpDescribeMessageStreamResponse, protocol.Success)
	info := f.body["messageStreamInfo"].(map[any]any)
	ss := info["storageStatus"].(map[any]any)
	if ss["oldestSequenceNumber"] != uint64(0) || ss["newestSequenceNumber"] != uint64(3) || info["definition"].(map[any]any)["name"] != "s1.log" {
		t.Fatalf("describe %v", info)
	}
	if es, ok := info["exportStatuses"].([]any); !ok || len(es) != 0 {
		t.Fatalf("exportStatuses %v", info["exportStatuses"])
	}
	check("describe missing", c.call(protocol.OpDescribeMessageStream, map[string]any{"name": "nope"}), protocol.OpDescribeMessageStreamResponse, protocol.ResourceNotFound)

	check("update", c.call(protocol.OpUpdateMessageStream, map[string]any{"definition": def("s1.log", map[string]any{"flushOnWrite": true, "timeToLiveMillis": 60000})}), protocol.OpUpdateMessageStreamResponse, protocol.Success)
	check("update persistence", c.call(protocol.OpUpdateMessageStream, map[string]any{"definition": def("s1.log", map[string]any{"persistence": 1})}), protocol.OpUpdateMessageStreamResponse, protocol.UpdateNotAllowed)
	check("update missing", c.call(protocol.OpUpdateMessageStream, map[string]any{"definition": def("nope", nil)}), protocol.OpUpdateMessageStreamResponse, protocol.ResourceNotFound)

	// Indefinite-length maps (as Jackson may send) decode like definite ones.
	indef := []byte{0xbf}
	for _, kv := range [][2]any{{"requestId", "indef-1"}, {"name", "s1.log"}, {"payload", []byte("indef")}} {
		indef = append(indef, enc(t, kv[0])...)
		indef = append(indef, enc(t, kv[1])...)
	}
	indef = append(indef, 0xff)
	ch := make(chan frame, 1)
	c.mu.Lock()
	c.waiting["indef-1"] = ch
	c.mu.Unlock()
	c.sendRaw(protocol.OpAppendMessage, indef)
	check("indefinite-length append", <-ch, protocol.OpAppendMessageResponse, protocol.Success)

	// Unknown op codes and response ops sent as requests: op 17.
	ch = make(chan frame, 1)
	c.mu.Lock()
	c.waiting["u-1"] = ch
	c.mu.Unlock()
	c.sendRaw(protocol.Op(99), enc(t, map[string]any{"requestId": "u-1"}))
	check("unknown op", <-ch, protocol.OpUnknownOperationError, protocol.UnknownOperation)
	ch = make(chan frame, 1)
	c.mu.Lock()
	c.waiting["u-2"] = ch
	c.mu.Unlock()
	c.sendRaw(protocol.OpConnect, enc(t, map[string]any{"requestId": "u-2"}))
	check("connect again", <-ch, protocol.OpUnknownOperationError, protocol.UnexpectedOperation)
	// Garbage that is no CBOR map: InvalidRequest without a requestId.
	c.sendRaw(protocol.OpListStreams, []byte{0xff, 0x00})
	select {
	case f := <-c.others:
		check("garbage", f, protocol.OpListStreamsResponse, protocol.InvalidRequest)
	case <-time.After(5 * time.Second):
		t.Fatal("garbage not answered")
	}

	check("delete", c.call(protocol.OpDeleteMessageStream, map[string]any{"name": "s1.log"}), protocol.OpDeleteMessageStreamResponse, protocol.Success)
	check("delete missing", c.call(protocol.OpDeleteMessageStream, map[string]any{"name": "s1.log"}), protocol.OpDeleteMessageStreamResponse, protocol.ResourceNotFound)
}

func TestHandshakeAndFramingEdges(t *testing.T) {
	e := newEnv(t)
	e.start(t, false)

	// Wrong connect version: version byte, UnsupportedConnectVersion, close.
	nc, br := dialRaw(t, e.addr)
	nc.Write([]byte{7})
	if v, _ := br.ReadByte(); v != protocol.ConnectVersion {
		t.Fatalf("version byte %d", v)
	}
	if f := readFrame(t, br); f.op != protocol.OpConnectResponse || status(f) != int(protocol.UnsupportedConnectVersion) {
		t.Fatalf("bad connect version: %v %v", f.op, f.body)
	}

	// A first frame that is not Connect: UnexpectedOperation.
	nc, br = dialRaw(t, e.addr)
	nc.Write([]byte{1})
	writeFrame(t, nc, protocol.OpListStreams, enc(t, map[string]any{"requestId": "x"}))
	br.ReadByte()
	if f := readFrame(t, br); status(f) != int(protocol.UnexpectedOperation) {
		t.Fatalf("non-connect first: %v", f.body)
	}

	// Unsupported and invalid protocol versions.
	for _, c := range []struct {
		v  string
		st protocol.Status
	}{{"2.0.0", protocol.UnsupportedProtocolVersion}, {"one", protocol.InvalidProtocolVersion}} {
		nc, br = dialRaw(t, e.addr)
		nc.Write([]byte{1})
		writeFrame(t, nc, protocol.OpConnect, enc(t, map[string]any{"requestId": "x", "protocolVersion": c.v}))
		br.ReadByte()
		if f := readFrame(t, br); status(f) != int(c.st) {
			t.Fatalf("protocol %s: %v", c.v, f.body)
		}
	}

	// Oversized, negative and zero lengths close the connection; the
	// server keeps serving others.
	for _, n := range []int32{1<<30 + 1, -5, 0} {
		c, _ := connect(t, e.addr, "")
		c.wmu.Lock()
		c.nc.Write(bigEndianLen(n))
		c.wmu.Unlock()
		select {
		case _, ok := <-c.others:
			if ok {
				t.Fatalf("length %d answered instead of closing", n)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("length %d: connection not closed", n)
		}
	}
	// A truncated frame followed by a hang-up.
	c, _ := connect(t, e.addr, "")
	c.wmu.Lock()
	c.nc.Write(append(bigEndianLen(100), byte(protocol.OpListStreams), 0xa0))
	c.wmu.Unlock()
	c.nc.(interface{ CloseWrite() error }).CloseWrite()
	// Still alive for everyone else.
	c2, cr := connect(t, e.addr, "")
	if status(cr) != 0 {
		t.Fatal(cr.body)
	}
	if f := c2.call(protocol.OpListStreams, map[string]any{}); status(f) != 0 {
		t.Fatal(f.body)
	}
}

func TestAuthenticationRefusesUnknownTokens(t *testing.T) {
	e := newEnv(t)
	e.start(t, true)
	for _, tok := range []string{"", "bm90IGEgdG9rZW4="} {
		_, cr := connect(t, e.addr, tok)
		if cr.op != protocol.OpConnectResponse || status(cr) != int(protocol.Unauthorized) {
			t.Fatalf("token %q: %v", tok, cr.body)
		}
	}
}
