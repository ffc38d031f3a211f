// Package protocol is the v1 stream manager wire protocol (spec §2): the
// connect-version byte, length-prefixed frames with an operation code, and
// the CBOR maps of every request and response. It holds no state; the
// server in package streammgr drives it.
package protocol

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// ConnectVersion is the single byte each side sends first.
const ConnectVersion = 1

// MaxFrame is the largest frame length (the op byte included) a client
// may send (v1 clients refuse to send larger ones).
const MaxFrame = 1 << 30

// Protocol versions: the server speaks 1.1.0 and accepts 1.0.0 clients.
const (
	ProtocolVersion = "1.1.0"
	ServerVersion   = "1.1.0"
)

// SupportedProtocolVersions are announced in ConnectResponse.
var SupportedProtocolVersions = []string{"1.0.0", "1.1.0"}

// Op is an operation code (spec §2.3).
type Op byte

// Operation codes.
const (
	OpUnknown                       Op = 0
	OpConnect                       Op = 1
	OpCreateMessageStream           Op = 2
	OpDeleteMessageStream           Op = 3
	OpAppendMessage                 Op = 4
	OpReadMessages                  Op = 5
	OpConnectResponse               Op = 6
	OpCreateMessageStreamResponse   Op = 7
	OpDeleteMessageStreamResponse   Op = 8
	OpAppendMessageResponse         Op = 9
	OpReadMessagesResponse          Op = 10
	OpListStreams                   Op = 11
	OpListStreamsResponse           Op = 12
	OpDescribeMessageStream         Op = 13
	OpDescribeMessageStreamResponse Op = 14
	OpUpdateMessageStream           Op = 15
	OpUpdateMessageStreamResponse   Op = 16
	OpUnknownOperationError         Op = 17
)

// ResponseOf is the response op of a request op; ok is false for ops that
// are not requests a client may send after Connect.
func ResponseOf(op Op) (Op, bool) {
	switch op {
	case OpCreateMessageStream:
		return OpCreateMessageStreamResponse, true
	case OpDeleteMessageStream:
		return OpDeleteMessageStreamResponse, true
	case OpAppendMessage:
		return OpAppendMessageResponse, true
	case OpReadMessages:
		return OpReadMessagesResponse, true
	case OpListStreams:
		return OpListStreamsResponse, true
	case OpDescribeMessageStream:
		return OpDescribeMessageStreamResponse, true
	case OpUpdateMessageStream:
		return OpUpdateMessageStreamResponse, true
	}
	return 0, false
}

// Known reports whether op is one of the codes of spec §2.3 (requests and
// responses alike).
func Known(op Op) bool { return op >= OpConnect && op <= OpUnknownOperationError }

// Status is a response status code (spec §2.6).
type Status int

// Status codes.
const (
	Success                    Status = 0
	UnknownFailure             Status = 1
	Unauthorized               Status = 2
	InvalidRequest             Status = 3
	RequestPayloadTooLarge     Status = 4
	ResourceNotFound           Status = 5
	ServerTimeout              Status = 6
	ResponsePayloadTooLarge    Status = 7
	UnsupportedConnectVersion  Status = 8
	UnexpectedOperation        Status = 9
	UnsupportedProtocolVersion Status = 10
	InvalidProtocolVersion     Status = 11
	FailedToConnect            Status = 12
	NotEnoughMessages          Status = 13
	MessageStoreReadError      Status = 14
	OutOfMemoryError           Status = 15
	UpdateFailed               Status = 16
	UpdateNotAllowed           Status = 17
	UnknownOperation           Status = 18
)

// Error is a failure with the status code a response carries.
type Error struct {
	Status  Status
	Message string
}

func (e *Error) Error() string { return fmt.Sprintf("status %d: %s", e.Status, e.Message) }

// Errorf builds an *Error.
func Errorf(s Status, format string, args ...any) *Error {
	return &Error{Status: s, Message: fmt.Sprintf(format, args...)}
}

// StatusOf extracts the status of err (UnknownFailure for other errors).
func StatusOf(err error) (Status, string) {
	var pe *Error
	if errors.As(err, &pe) {
		return pe.Status, pe.Message
	}
	return UnknownFailure, err.Error()
}

// Frame errors. A reader that gets one cannot find the next frame: the
// connection must be closed.
var (
	ErrFrameTooLarge = errors.New("frame length over 2^30")
	ErrFrameLength   = errors.New("frame length below 1 (no operation code)")
)

// readChunk bounds each allocation while a frame is read, so that a length
// prefix promising a gigabyte costs memory only as the bytes arrive.
const readChunk = 1 << 20

// ReadFrame reads one frame: the 4-byte big-endian signed length L (the op
// byte included), the op, and L-1 payload bytes. max bounds L (at most
// MaxFrame). A truncated frame returns io.ErrUnexpectedEOF.
func ReadFrame(r *bufio.Reader, limit int) (Op, []byte, error) {
	var hdr [5]byte
	if _, err := io.ReadFull(r, hdr[:4]); err != nil {
		return 0, nil, err
	}
	n := int64(int32(binary.BigEndian.Uint32(hdr[:4])))
	if limit <= 0 || limit > MaxFrame {
		limit = MaxFrame
	}
	switch {
	case n < 1:
		return 0, nil, ErrFrameLength
	case n > int64(limit):
		return 0, nil, fmt.Errorf("%w (%d bytes, limit %d)", ErrFrameTooLarge, n, limit)
	}
	op, err := r.ReadByte()
	if err != nil {
		return 0, nil, unexpected(err)
	}
	left := int(n - 1)
	buf := make([]byte, 0, min(left, readChunk))
	for left > 0 {
		k := min(left, readChunk)
		if cap(buf)-len(buf) < k {
			nb := make([]byte, len(buf), len(buf)+max(k, len(buf)))
			copy(nb, buf)
			buf = nb
		}
		m, err := io.ReadFull(r, buf[len(buf):len(buf)+k])
		buf = buf[:len(buf)+m]
		if err != nil {
			return 0, nil, unexpected(err)
		}
		left -= k
	}
	return Op(op), buf, nil
}

func unexpected(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// AppendFrame appends the frame of op and payload to dst.
func AppendFrame(dst []byte, op Op, payload []byte) []byte {
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(payload)+1))
	dst = append(dst, byte(op))
	return append(dst, payload...)
}
