package streammgr_test

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/evergreen-edge/evergreen/streammgr/protocol"
)

// wire is a raw connection read one frame at a time, in the order the
// server wrote them (client in harness_test.go matches by requestId).
type wire struct {
	t  *testing.T
	nc net.Conn
	br *bufio.Reader
}

// dialWire connects and completes the handshake.
func dialWire(t *testing.T, addr string) *wire {
	t.Helper()
	nc, br := dialRaw(t, addr)
	nc.Write([]byte{protocol.ConnectVersion})
	writeFrame(t, nc, protocol.OpConnect, enc(t, map[string]any{"requestId": "connect", "protocolVersion": "1.1.0"}))
	nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	if v, err := br.ReadByte(); err != nil || v != protocol.ConnectVersion {
		t.Fatalf("connect version byte %d %v", v, err)
	}
	if f := readFrame(t, br); f.op != protocol.OpConnectResponse || status(f) != 0 {
		t.Fatalf("connect: %v %v", f.op, f.body)
	}
	return &wire{t: t, nc: nc, br: br}
}

func (w *wire) write(b []byte) {
	w.t.Helper()
	if _, err := w.nc.Write(b); err != nil {
		w.t.Fatalf("write: %v", err)
	}
}

func (w *wire) frame(op protocol.Op, body []byte) { w.write(protocol.AppendFrame(nil, op, body)) }

// next reads the next frame the server wrote.
func (w *wire) next() frame {
	w.t.Helper()
	w.nc.SetReadDeadline(time.Now().Add(15 * time.Second))
	defer w.nc.SetReadDeadline(time.Time{})
	return readFrame(w.t, w.br)
}

// call sends one request and reads one frame: on a wire with nothing
// else in flight, its answer.
func (w *wire) call(op protocol.Op, req map[string]any) frame {
	w.t.Helper()
	w.frame(op, enc(w.t, req))
	return w.next()
}

// callRaw is call with a hand-made body.
func (w *wire) callRaw(op protocol.Op, body []byte) frame {
	w.t.Helper()
	w.frame(op, body)
	return w.next()
}

// closedByServer reports whether the server hung up (within 5 s) without
// writing anything more.
func (w *wire) closedByServer() bool {
	w.nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	defer w.nc.SetReadDeadline(time.Time{})
	var b [1]byte
	_, err := w.br.Read(b[:])
	var ne net.Error
	return err != nil && !(errors.As(err, &ne) && ne.Timeout())
}

// must checks a response's op, status and requestId.
func must(t *testing.T, what string, f frame, op protocol.Op, st protocol.Status, id string) frame {
	t.Helper()
	if f.op != op || status(f) != int(st) || f.body["requestId"] != id {
		t.Fatalf("%s: op %v status %v requestId %v (%v); want op %v status %d requestId %q",
			what, f.op, f.body["status"], f.body["requestId"], f.body["errorMessage"], op, st, id)
	}
	if st != protocol.Success && f.body["errorMessage"] == nil {
		t.Fatalf("%s: status %d without an errorMessage", what, st)
	}
	return f
}

// Hand-written CBOR, for the encodings a library encoder never writes.

// cborHd is a head of major type major and argument n; width 0 is the
// shortest form, 1, 2, 4 or 8 forces that many argument bytes.
func cborHd(major byte, n uint64, width int) []byte {
	m := major << 5
	if width == 0 {
		switch {
		case n < 24:
			return []byte{m | byte(n)}
		case n <= 0xff:
			width = 1
		case n <= 0xffff:
			width = 2
		case n <= 0xffffffff:
			width = 4
		default:
			width = 8
		}
	}
	switch width {
	case 1:
		return []byte{m | 24, byte(n)}
	case 2:
		return binary.BigEndian.AppendUint16([]byte{m | 25}, uint16(n))
	case 4:
		return binary.BigEndian.AppendUint32([]byte{m | 26}, uint32(n))
	}
	return binary.BigEndian.AppendUint64([]byte{m | 27}, n)
}

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

func ctext(s string) []byte  { return cat(cborHd(3, uint64(len(s)), 0), []byte(s)) }
func cbytes(b []byte) []byte { return cat(cborHd(2, uint64(len(b)), 0), b) }
func cuint(v uint64) []byte  { return cborHd(0, v, 0) }

// ctextIndef is an indefinite-length text string of the given chunks.
func ctextIndef(chunks ...string) []byte {
	out := []byte{0x7f}
	for _, c := range chunks {
		out = append(out, ctext(c)...)
	}
	return append(out, 0xff)
}

// cbytesIndef is an indefinite-length byte string of the given chunks.
func cbytesIndef(chunks ...[]byte) []byte {
	out := []byte{0x5f}
	for _, c := range chunks {
		out = append(out, cbytes(c)...)
	}
	return append(out, 0xff)
}

// cmap is a definite map of key, value pairs already encoded.
func cmap(kv ...[]byte) []byte { return cat(cborHd(5, uint64(len(kv)/2), 0), cat(kv...)) }

// cmapIndef is an indefinite-length map.
func cmapIndef(kv ...[]byte) []byte { return cat([]byte{0xbf}, cat(kv...), []byte{0xff}) }

// carrayIndef is an indefinite-length array.
func carrayIndef(items ...[]byte) []byte { return cat([]byte{0x9f}, cat(items...), []byte{0xff}) }

func createStream(t *testing.T, w *wire, name string, extra map[string]any) {
	t.Helper()
	must(t, "create "+name, w.call(protocol.OpCreateMessageStream, map[string]any{"requestId": "create", "definition": def(name, extra)}),
		protocol.OpCreateMessageStreamResponse, protocol.Success, "create")
}

// readAllWire reads a stream from start on, every message, by sequence
// number.
func readAllWire(t *testing.T, w *wire, name string, start uint64) map[uint64][]byte {
	t.Helper()
	out := map[uint64][]byte{}
	for {
		f := w.call(protocol.OpReadMessages, map[string]any{"requestId": "readall", "streamName": name,
			"readMessagesOptions": map[string]any{"desiredStartSequenceNumber": start, "minMessageCount": 1, "maxMessageCount": 1000}})
		if status(f) == int(protocol.NotEnoughMessages) {
			return out
		}
		must(t, "read all", f, protocol.OpReadMessagesResponse, protocol.Success, "readall")
		for _, m := range f.body["messages"].([]any) {
			mm := m.(map[any]any)
			seq := mm["sequenceNumber"].(uint64)
			out[seq] = mm["payload"].([]byte)
			start = seq + 1
		}
	}
}
