package streammgr_test

import (
	"bufio"
	"bytes"
	"fmt"
	"testing"
	"time"

	"github.com/evergreen-edge/evergreen/streammgr/protocol"
)

// TestPipelinedAppendsAnsweredByRequestID: a client writes many requests
// before reading (v1 SDKs match responses by requestId). Every append is
// answered, in order of sequence numbers, bad ones with their status, to
// flushOnWrite and plain streams alike, and a read and a delete behind
// them in the same burst see them all.
func TestPipelinedAppendsAnsweredByRequestID(t *testing.T) {
	e := newEnv(t)
	e.start(t, false)
	c, _ := connect(t, e.addr, "")
	for _, n := range []string{"plain", "synced"} {
		if f := c.call(protocol.OpCreateMessageStream, map[string]any{"definition": def(n, map[string]any{
			"flushOnWrite": n == "synced", "maxSize": 1 << 24, "streamSegmentSize": 1 << 16})}); status(f) != 0 {
			t.Fatal(f.body)
		}
	}
	nc, br := dialRaw(t, e.addr)
	bw := bufio.NewWriter(nc)
	bw.WriteByte(protocol.ConnectVersion)
	bw.Write(protocol.AppendFrame(nil, protocol.OpConnect, enc(t, map[string]any{"requestId": "c", "protocolVersion": "1.1.0"})))
	const n = 300
	for i := range n {
		name := []string{"plain", "synced"}[i%2]
		id := fmt.Sprintf("a%d", i)
		switch i {
		case 7:
			bw.Write(protocol.AppendFrame(nil, protocol.OpAppendMessage, enc(t, map[string]any{"requestId": id, "name": name, "payload": []byte{}})))
		case 8:
			bw.Write(protocol.AppendFrame(nil, protocol.OpAppendMessage, enc(t, map[string]any{"requestId": id, "name": "missing", "payload": []byte("x")})))
		default:
			bw.Write(protocol.AppendAppendRequestFrame(nil, id, name, bytes.Repeat([]byte{byte(i)}, 1+i)))
		}
	}
	bw.Write(protocol.AppendFrame(nil, protocol.OpReadMessages, enc(t, map[string]any{"requestId": "read", "streamName": "plain",
		"readMessagesOptions": map[string]any{"maxMessageCount": 1000}})))
	bw.Write(protocol.AppendFrame(nil, protocol.OpDeleteMessageStream, enc(t, map[string]any{"requestId": "delete", "name": "synced"})))
	if err := bw.Flush(); err != nil {
		t.Fatal(err)
	}
	nc.SetReadDeadline(time.Now().Add(15 * time.Second))
	if v, err := br.ReadByte(); err != nil || v != protocol.ConnectVersion {
		t.Fatalf("connect byte %v %v", v, err)
	}
	if f := readFrame(t, br); status(f) != 0 {
		t.Fatal(f.body)
	}
	got := map[string]frame{}
	for len(got) < n+2 {
		f := readFrame(t, br)
		got[f.body["requestId"].(string)] = f
	}
	next := map[string]uint64{}
	for i := range n {
		f := got[fmt.Sprintf("a%d", i)]
		name := []string{"plain", "synced"}[i%2]
		switch {
		case i == 7:
			if status(f) != int(protocol.InvalidRequest) {
				t.Fatalf("empty payload: %v", f.body)
			}
		case i == 8:
			if status(f) != int(protocol.ResourceNotFound) {
				t.Fatalf("missing stream: %v", f.body)
			}
		case f.op != protocol.OpAppendMessageResponse || status(f) != 0:
			t.Fatalf("append %d: %v %v", i, f.op, f.body)
		case f.body["sequenceNumber"] != next[name]:
			t.Fatalf("append %d to %s: sequence number %v, want %d", i, name, f.body["sequenceNumber"], next[name])
		default:
			next[name]++
		}
	}
	read := got["read"]
	if msgs, _ := read.body["messages"].([]any); status(read) != 0 || uint64(len(msgs)) != next["plain"] {
		t.Fatalf("read behind the appends: status %v, %d messages, want %d", read.body["status"], len(msgs), next["plain"])
	}
	if status(got["delete"]) != 0 {
		t.Fatalf("delete: %v", got["delete"].body)
	}
}
