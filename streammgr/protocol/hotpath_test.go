package protocol

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"reflect"
	"testing"

	"github.com/fxamacker/cbor/v2"
)

// TestDecodeAppendAgreesWithTheGeneralDecoder: every shape a client may
// send decodes (or fails) as the general decoder has it.
func TestDecodeAppendAgreesWithTheGeneralDecoder(t *testing.T) {
	long := bytes.Repeat([]byte("p"), 70000)
	cases := []any{
		map[string]any{"requestId": "r1", "name": "s", "payload": []byte("x")},
		map[string]any{"requestId": "r1", "name": "s", "payload": long},
		map[string]any{"name": "s", "payload": []byte{}},
		map[string]any{"requestId": "r1"},
		map[string]any{},
		map[string]any{"requestId": "r1", "name": "s", "payload": "text"},
		map[string]any{"requestId": 5, "name": "s", "payload": []byte("x")},
		map[string]any{"requestId": "r1", "name": "s", "payload": nil},
		map[string]any{"requestId": "r1", "name": "s", "payload": []any{1, 2}},
		map[string]any{"requestId": "r1", "name": "s", "payload": []any{}},
		map[string]any{"requestId": "r1", "name": "s", "payload": []byte("x"), "extra": 1},
		map[string]any{"RequestId": "r1", "NAME": "s", "payload": []byte("x")},
		map[string]any{"requestId": "r\xff", "name": "s", "payload": []byte("x")},
		[]any{"requestId", "r1"},
		"text",
	}
	var raws [][]byte
	for _, c := range cases {
		b, err := cbor.Marshal(c)
		if err != nil {
			t.Fatal(err)
		}
		raws = append(raws, b)
	}
	// Indefinite-length map and payload (Jackson may send them), a
	// duplicate key, trailing bytes, truncations.
	raws = append(raws,
		[]byte{0xbf, 0x69, 'r', 'e', 'q', 'u', 'e', 's', 't', 'I', 'd', 0x61, 'a', 0x67, 'p', 'a', 'y', 'l', 'o', 'a', 'd', 0x5f, 0x41, 1, 0x41, 2, 0xff, 0xff},
		[]byte{0xa2, 0x64, 'n', 'a', 'm', 'e', 0x61, 'a', 0x64, 'n', 'a', 'm', 'e', 0x61, 'b'},
		append(append([]byte{}, raws[0]...), 0x00),
		raws[0][:len(raws[0])-1],
		raws[0][:3],
		nil,
	)
	for i, b := range raws {
		var fast, slow AppendMessageRequest
		ferr := DecodeAppend(b, &fast)
		serr := Decode(b, &slow)
		if (ferr == nil) != (serr == nil) || (ferr != nil && ferr.Error() != serr.Error()) {
			t.Errorf("case %d: errors differ: %v vs %v", i, ferr, serr)
		}
		if serr == nil && (fast.RequestID != slow.RequestID || fast.Name != slow.Name || !bytes.Equal(fast.Payload, slow.Payload) || (fast.Payload == nil) != (slow.Payload == nil)) {
			t.Errorf("case %d: decoded %+v vs %+v", i, fast, slow)
		}
	}
}

// TestPayloadOnlyFromAByteString: spec §2.1, byte payloads travel as
// CBOR byte strings; the library alone would take text, and an array of
// small integers as the bytes they name.
func TestPayloadOnlyFromAByteString(t *testing.T) {
	good := map[string][]byte{
		"definite":              {0x42, 1, 2},
		"indefinite":            {0x5f, 0x41, 1, 0x41, 2, 0xff},
		"tagged":                {0xd8, 0x40, 0x42, 1, 2}, // tag 64 (uint8 array) of a byte string
		"self-described CBOR":   {0xd9, 0xd9, 0xf7, 0x42, 1, 2},
		"tag inside a tag":      {0xd8, 0x40, 0xd8, 0x40, 0x42, 1, 2},
		"empty (checked later)": {0x40},
	}
	bad := map[string][]byte{
		"array":            {0x82, 0x01, 0x02},
		"indefinite array": {0x9f, 0x01, 0x02, 0xff},
		"tagged array":     {0xd8, 0x40, 0x82, 0x01, 0x02},
		"text":             {0x62, 'h', 'i'},
		"integer":          {0x05},
		"map":              {0xa1, 0x61, 'a', 0x01},
		"true":             {0xf5},
	}
	frame := func(p []byte) []byte {
		b := []byte{0xa3, 0x69}
		b = append(b, "requestId"...)
		b = append(b, 0x61, 'r', 0x64)
		b = append(b, "name"...)
		b = append(b, 0x61, 's', 0x67)
		b = append(b, "payload"...)
		return append(b, p...)
	}
	for what, p := range good {
		var req AppendMessageRequest
		if err := DecodeAppend(frame(p), &req); err != nil {
			t.Errorf("%s: %v", what, err)
		} else if want := []byte{1, 2}; what != "empty (checked later)" && !bytes.Equal(req.Payload, want) {
			t.Errorf("%s: payload % x", what, req.Payload)
		}
	}
	for what, p := range bad {
		var req AppendMessageRequest
		if err := DecodeAppend(frame(p), &req); err == nil {
			t.Errorf("%s: decoded as payload % x, want InvalidRequest", what, req.Payload)
		} else if st, _ := StatusOf(err); st != InvalidRequest {
			t.Errorf("%s: %v, want InvalidRequest", what, err)
		}
	}
	var req AppendMessageRequest
	if err := DecodeAppend(frame([]byte{0xf6}), &req); err != nil || req.Payload != nil {
		t.Errorf("null payload: %v % x, want nil (refused later as missing)", err, req.Payload)
	}
}

func TestHandEncodedResponsesAreTheGeneralEncodersBytes(t *testing.T) {
	for _, seq := range []int64{0, 1, 23, 24, 255, 256, 65535, 65536, 1 << 32, 1<<63 - 1} {
		want, _ := Encode(&AppendMessageResponse{RequestID: "abc-123", Status: Success, SequenceNumber: seq})
		got := AppendAppendResponseFrame([]byte("prefix"), "abc-123", seq)
		if !bytes.Equal(got[:6], []byte("prefix")) || !bytes.Equal(got[6:], AppendFrame(nil, OpAppendMessageResponse, want)) {
			t.Errorf("seq %d: % x, want % x", seq, got[6:], want)
		}
	}
	for i, r := range []*ReadMessagesResponse{
		{RequestID: "r", Messages: []Message{{StreamName: "s", SequenceNumber: 7, IngestTime: 1700000000000, Payload: []byte("hello")},
			{StreamName: "s", SequenceNumber: 8, IngestTime: 1700000000001, Payload: bytes.Repeat([]byte("x"), 70000)}}},
		{RequestID: "r", Messages: []Message{}, Status: NotEnoughMessages, ErrorMessage: "fewer"},
		{RequestID: "", Status: InvalidRequest, ErrorMessage: "bad"},
		{RequestID: "r", Messages: []Message{{StreamName: "s", Payload: []byte{}}}},
	} {
		want, _ := Encode(r)
		var buf bytes.Buffer
		w := bufio.NewWriterSize(&buf, 4096)
		if err := WriteReadMessagesResponse(w, r); err != nil {
			t.Fatal(err)
		}
		w.Flush()
		if !bytes.Equal(buf.Bytes(), AppendFrame(nil, OpReadMessagesResponse, want)) {
			t.Errorf("read response %d differs", i)
		}
	}
}

func TestAppendRequestFrameIsTheGeneralEncodersBytes(t *testing.T) {
	for _, n := range []int{1, 23, 24, 1024, 70000} {
		p := bytes.Repeat([]byte("x"), n)
		want, _ := Encode(&AppendMessageRequest{RequestID: "id-1", Name: "stream one", Payload: p})
		if got := AppendAppendRequestFrame(nil, "id-1", "stream one", p); !bytes.Equal(got, AppendFrame(nil, OpAppendMessage, want)) {
			t.Errorf("payload of %d bytes: frames differ", n)
		}
	}
}

func TestReadFrameIntoReusesTheBuffer(t *testing.T) {
	var in bytes.Buffer
	in.Write(AppendFrame(nil, OpAppendMessage, []byte("small")))
	in.Write(AppendFrame(nil, OpReadMessages, bytes.Repeat([]byte("b"), 100)))
	in.Write(binary.BigEndian.AppendUint32(nil, 0))
	r := bufio.NewReader(&in)
	buf := make([]byte, 0, 16)
	op, p, err := ReadFrameInto(r, 0, buf)
	if err != nil || op != OpAppendMessage || string(p) != "small" || &p[:1][0] != &buf[:1][0] {
		t.Fatalf("small frame: %v %q %v", op, p, err)
	}
	if !FrameBuffered(r) {
		t.Fatal("a whole frame is buffered")
	}
	op, p, err = ReadFrameInto(r, 0, buf)
	if err != nil || op != OpReadMessages || !reflect.DeepEqual(p, bytes.Repeat([]byte("b"), 100)) {
		t.Fatalf("large frame: %v %v", op, err)
	}
	if _, _, err := ReadFrameInto(r, 0, buf); err != ErrFrameLength {
		t.Fatalf("zero length: %v", err)
	}
}
