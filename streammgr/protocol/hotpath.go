package protocol

import (
	"bufio"
	"encoding/binary"
	"io"
	"math"
	"unicode/utf8"
)

// The hot path: AppendMessage requests, their responses and
// ReadMessagesResponse are coded by hand, without reflection or copies.
// The decoder takes only the plain shape every v1 SDK sends (a definite
// map of the three keys, definite strings); anything else goes to the
// general decoder, so that the answers (errors included) stay its own.
// The encoders write the bytes the general encoder writes for the same
// struct (tests compare them).

// DecodeAppend decodes an AppendMessageRequest. req.Payload aliases
// payload: the caller copies it before payload is reused.
func DecodeAppend(payload []byte, req *AppendMessageRequest) error {
	if decodeAppendPlain(payload, req) {
		return nil
	}
	*req = AppendMessageRequest{}
	return Decode(payload, req)
}

func decodeAppendPlain(b []byte, req *AppendMessageRequest) bool {
	n, b, ok := head(b, 5)
	if !ok || n > 3 {
		return false
	}
	var seen [3]bool
	for range n {
		var key []byte
		if key, b, ok = str(b, 3); !ok {
			return false
		}
		var k int
		switch string(key) {
		case "requestId":
			k = 0
		case "name":
			k = 1
		case "payload":
			k = 2
		default:
			return false
		}
		if seen[k] {
			return false
		}
		seen[k] = true
		var v []byte
		if k == 2 {
			if v, b, ok = str(b, 2); !ok {
				return false
			}
			req.Payload = v
			continue
		}
		if v, b, ok = str(b, 3); !ok || !utf8.Valid(v) {
			return false
		}
		if k == 0 {
			req.RequestID = string(v)
		} else {
			req.Name = string(v)
		}
	}
	return len(b) == 0
}

// head reads a definite-length head of the given major type.
func head(b []byte, major byte) (uint64, []byte, bool) {
	if len(b) == 0 || b[0]>>5 != major {
		return 0, b, false
	}
	ai := b[0] & 31
	switch {
	case ai < 24:
		return uint64(ai), b[1:], true
	case ai == 24 && len(b) >= 2:
		return uint64(b[1]), b[2:], true
	case ai == 25 && len(b) >= 3:
		return uint64(binary.BigEndian.Uint16(b[1:])), b[3:], true
	case ai == 26 && len(b) >= 5:
		return uint64(binary.BigEndian.Uint32(b[1:])), b[5:], true
	case ai == 27 && len(b) >= 9:
		return binary.BigEndian.Uint64(b[1:]), b[9:], true
	}
	return 0, b, false
}

// str reads a definite byte (major 2) or text (major 3) string.
func str(b []byte, major byte) ([]byte, []byte, bool) {
	n, rest, ok := head(b, major)
	if !ok || n > uint64(len(rest)) {
		return nil, b, false
	}
	return rest[:n], rest[n:], true
}

func appendHead(dst []byte, major byte, n uint64) []byte {
	m := major << 5
	switch {
	case n < 24:
		return append(dst, m|byte(n))
	case n <= math.MaxUint8:
		return append(dst, m|24, byte(n))
	case n <= math.MaxUint16:
		return binary.BigEndian.AppendUint16(append(dst, m|25), uint16(n))
	case n <= math.MaxUint32:
		return binary.BigEndian.AppendUint32(append(dst, m|26), uint32(n))
	}
	return binary.BigEndian.AppendUint64(append(dst, m|27), n)
}

func appendText(dst []byte, s string) []byte {
	return append(appendHead(dst, 3, uint64(len(s))), s...)
}

func appendInt(dst []byte, v int64) []byte {
	if v < 0 {
		return appendHead(dst, 1, uint64(-(v + 1)))
	}
	return appendHead(dst, 0, uint64(v))
}

// AppendAppendResponseFrame appends the frame of a successful
// AppendMessageResponse.
func AppendAppendResponseFrame(dst []byte, requestID string, seq int64) []byte {
	start := len(dst)
	dst = append(dst, 0, 0, 0, 0, byte(OpAppendMessageResponse), 0xa3)
	dst = appendText(dst, "requestId")
	dst = appendText(dst, requestID)
	dst = appendText(dst, "status")
	dst = appendInt(dst, int64(Success))
	dst = appendText(dst, "sequenceNumber")
	dst = appendInt(dst, seq)
	binary.BigEndian.PutUint32(dst[start:], uint32(len(dst)-start-4))
	return dst
}

// AppendAppendRequestFrame appends the frame of an AppendMessageRequest
// (clients: the Go client, benchmarks).
func AppendAppendRequestFrame(dst []byte, requestID, stream string, payload []byte) []byte {
	start := len(dst)
	dst = append(dst, 0, 0, 0, 0, byte(OpAppendMessage), 0xa3)
	dst = appendText(dst, "requestId")
	dst = appendText(dst, requestID)
	dst = appendText(dst, "name")
	dst = appendText(dst, stream)
	dst = appendText(dst, "payload")
	dst = appendHead(dst, 2, uint64(len(payload)))
	dst = append(dst, payload...)
	binary.BigEndian.PutUint32(dst[start:], uint32(len(dst)-start-4))
	return dst
}

// WriteReadMessagesResponse writes the frame of r to w piece by piece:
// payloads go out as they are, never copied into one big buffer.
func WriteReadMessagesResponse(w *bufio.Writer, r *ReadMessagesResponse) error {
	var scratch [64]byte
	size := 1 + len(readHead(scratch[:0], r)) + len(readTail(scratch[:0], r))
	for i := range r.Messages {
		size += len(messageHead(scratch[:0], &r.Messages[i])) + len(r.Messages[i].Payload)
	}
	if size > MaxFrame {
		return ErrFrameTooLarge
	}
	b := w.AvailableBuffer()
	b = binary.BigEndian.AppendUint32(b, uint32(size))
	b = append(b, byte(OpReadMessagesResponse))
	b = readHead(b, r)
	if _, err := w.Write(b); err != nil {
		return err
	}
	for i := range r.Messages {
		m := &r.Messages[i]
		if _, err := w.Write(messageHead(w.AvailableBuffer(), m)); err != nil {
			return err
		}
		if _, err := w.Write(m.Payload); err != nil {
			return err
		}
	}
	_, err := w.Write(readTail(w.AvailableBuffer(), r))
	return err
}

// readHead: the map head, requestId and the messages array head. The
// general encoder writes the struct's fields in order, leaving out an
// empty errorMessage; a nil Messages is CBOR null.
func readHead(dst []byte, r *ReadMessagesResponse) []byte {
	n := uint64(3)
	if r.ErrorMessage != "" {
		n = 4
	}
	dst = appendHead(dst, 5, n)
	dst = appendText(dst, "requestId")
	dst = appendText(dst, r.RequestID)
	dst = appendText(dst, "messages")
	if r.Messages == nil {
		return append(dst, 0xf6)
	}
	return appendHead(dst, 4, uint64(len(r.Messages)))
}

func readTail(dst []byte, r *ReadMessagesResponse) []byte {
	dst = appendText(dst, "status")
	dst = appendInt(dst, int64(r.Status))
	if r.ErrorMessage != "" {
		dst = appendText(dst, "errorMessage")
		dst = appendText(dst, r.ErrorMessage)
	}
	return dst
}

func messageHead(dst []byte, m *Message) []byte {
	dst = append(dst, 0xa4)
	dst = appendText(dst, "streamName")
	dst = appendText(dst, m.StreamName)
	dst = appendText(dst, "sequenceNumber")
	dst = appendInt(dst, m.SequenceNumber)
	dst = appendText(dst, "ingestTime")
	dst = appendInt(dst, m.IngestTime)
	dst = appendText(dst, "payload")
	if m.Payload == nil {
		return append(dst, 0xf6)
	}
	return appendHead(dst, 2, uint64(len(m.Payload)))
}

// ReadFrameInto is ReadFrame reading the payload into buf when it fits
// (buf's capacity), so that a connection reuses one buffer for its small
// frames.
func ReadFrameInto(r *bufio.Reader, limit int, buf []byte) (Op, []byte, error) {
	if limit <= 0 || limit > MaxFrame {
		limit = MaxFrame
	}
	h, err := r.Peek(4)
	if err != nil {
		return ReadFrame(r, limit)
	}
	n := int64(int32(binary.BigEndian.Uint32(h)))
	if n < 1 || n-1 > int64(cap(buf)) || n > int64(limit) {
		return ReadFrame(r, limit) // a large frame, or a bad length it refuses
	}
	r.Discard(4)
	op, err := r.ReadByte()
	if err != nil {
		return 0, nil, unexpected(err)
	}
	buf = buf[:n-1]
	if _, err := io.ReadFull(r, buf); err != nil {
		return 0, nil, unexpected(err)
	}
	return Op(op), buf, nil
}

// FrameBuffered reports whether r holds a whole frame, so that reading it
// will not block.
func FrameBuffered(r *bufio.Reader) bool {
	k := r.Buffered()
	if k < 4 {
		return false
	}
	h, _ := r.Peek(4)
	n := int64(int32(binary.BigEndian.Uint32(h)))
	return n < 1 || int64(k) >= 4+n
}
