package protocol

import (
	"fmt"
	"sync"

	"github.com/fxamacker/cbor/v2"
)

// The CBOR maps of spec §2.4 and §2.5, camelCase keys as on the wire.
// Optional numbers are pointers so that "absent" and "0" stay apart.

// ConnectRequest opens a session.
type ConnectRequest struct {
	RequestID                      string   `cbor:"requestId"`
	ProtocolVersion                string   `cbor:"protocolVersion"`
	OtherSupportedProtocolVersions []string `cbor:"otherSupportedProtocolVersions,omitempty"`
	SDKVersion                     string   `cbor:"sdkVersion,omitempty"`
	AuthToken                      string   `cbor:"authToken,omitempty"`
}

// ConnectResponse answers ConnectRequest.
type ConnectResponse struct {
	RequestID                 string   `cbor:"requestId,omitempty"`
	Status                    Status   `cbor:"status"`
	ErrorMessage              string   `cbor:"errorMessage,omitempty"`
	ProtocolVersion           string   `cbor:"protocolVersion,omitempty"`
	SupportedProtocolVersions []string `cbor:"supportedProtocolVersions,omitempty"`
	ServerVersion             string   `cbor:"serverVersion,omitempty"`
	ClientIdentifier          string   `cbor:"clientIdentifier,omitempty"`
}

// MessageStreamDefinition is a stream's definition (spec §2.5).
type MessageStreamDefinition struct {
	Name              string          `cbor:"name"`
	MaxSize           *int64          `cbor:"maxSize,omitempty"`
	StreamSegmentSize *int64          `cbor:"streamSegmentSize,omitempty"`
	TimeToLiveMillis  *int64          `cbor:"timeToLiveMillis,omitempty"`
	StrategyOnFull    *int64          `cbor:"strategyOnFull,omitempty"`
	Persistence       *int64          `cbor:"persistence,omitempty"`
	FlushOnWrite      *bool           `cbor:"flushOnWrite,omitempty"`
	ExportDefinition  cbor.RawMessage `cbor:"exportDefinition,omitempty"`
}

// StreamRequest is CreateMessageStreamRequest and UpdateMessageStreamRequest.
type StreamRequest struct {
	RequestID  string                   `cbor:"requestId"`
	Definition *MessageStreamDefinition `cbor:"definition"`
}

// NameRequest is DeleteMessageStreamRequest and DescribeMessageStreamRequest.
type NameRequest struct {
	RequestID string `cbor:"requestId"`
	Name      string `cbor:"name"`
}

// AppendMessageRequest appends one message.
type AppendMessageRequest struct {
	RequestID string     `cbor:"requestId"`
	Name      string     `cbor:"name"`
	Payload   ByteString `cbor:"payload"`
}

// ByteString is a []byte that decodes from a CBOR byte string only (null
// is nil). The library alone would also decode text and arrays of small
// integers into a []byte, storing as bytes what no v1 SDK sends as one.
// It encodes as a []byte does.
type ByteString []byte

// UnmarshalCBOR takes a byte string (definite or indefinite, behind any
// tags), or null or undefined.
func (b *ByteString) UnmarshalCBOR(data []byte) error {
	item := data
	for len(item) > 0 && item[0]>>5 == 6 {
		var ok bool
		if _, item, ok = head(item, 6); !ok {
			break
		}
	}
	switch {
	case len(item) == 1 && (item[0] == 0xf6 || item[0] == 0xf7):
		*b = nil
		return nil
	case len(item) > 0 && item[0]>>5 == 2:
		var v []byte
		if err := codec().dec.Unmarshal(data, &v); err != nil {
			return err
		}
		*b = v
		return nil
	case len(item) > 0:
		return fmt.Errorf("cbor: cannot unmarshal %s into a byte string", majorNames[item[0]>>5])
	}
	return fmt.Errorf("cbor: no data for a byte string")
}

var majorNames = [8]string{"unsigned integer", "negative integer", "byte string", "UTF-8 text string", "array", "map", "tag", "simple value or float"}

// ReadMessagesOptions tune a read (spec §2.5).
type ReadMessagesOptions struct {
	DesiredStartSequenceNumber *int64 `cbor:"desiredStartSequenceNumber,omitempty"`
	MinMessageCount            *int64 `cbor:"minMessageCount,omitempty"`
	MaxMessageCount            *int64 `cbor:"maxMessageCount,omitempty"`
	ReadTimeoutMillis          *int64 `cbor:"readTimeoutMillis,omitempty"`
}

// ReadMessagesRequest reads messages of a stream.
type ReadMessagesRequest struct {
	RequestID           string               `cbor:"requestId"`
	StreamName          string               `cbor:"streamName"`
	ReadMessagesOptions *ReadMessagesOptions `cbor:"readMessagesOptions,omitempty"`
}

// ListStreamsRequest lists the streams.
type ListStreamsRequest struct {
	RequestID string `cbor:"requestId"`
}

// Response is the response of Create, Update and Delete, and the payload
// of UnknownOperationError.
type Response struct {
	RequestID    string `cbor:"requestId"`
	Status       Status `cbor:"status"`
	ErrorMessage string `cbor:"errorMessage,omitempty"`
}

// AppendMessageResponse answers AppendMessageRequest.
type AppendMessageResponse struct {
	RequestID      string `cbor:"requestId"`
	Status         Status `cbor:"status"`
	ErrorMessage   string `cbor:"errorMessage,omitempty"`
	SequenceNumber int64  `cbor:"sequenceNumber"`
}

// Message is one stored message.
type Message struct {
	StreamName     string `cbor:"streamName"`
	SequenceNumber int64  `cbor:"sequenceNumber"`
	IngestTime     int64  `cbor:"ingestTime"`
	Payload        []byte `cbor:"payload"`
}

// ReadMessagesResponse answers ReadMessagesRequest.
type ReadMessagesResponse struct {
	RequestID    string    `cbor:"requestId"`
	Messages     []Message `cbor:"messages"`
	Status       Status    `cbor:"status"`
	ErrorMessage string    `cbor:"errorMessage,omitempty"`
}

// ListStreamsResponse answers ListStreamsRequest.
type ListStreamsResponse struct {
	RequestID    string   `cbor:"requestId"`
	Status       Status   `cbor:"status"`
	ErrorMessage string   `cbor:"errorMessage,omitempty"`
	Streams      []string `cbor:"streams"`
}

// StorageStatus is the stored range of a stream.
type StorageStatus struct {
	OldestSequenceNumber int64 `cbor:"oldestSequenceNumber"`
	NewestSequenceNumber int64 `cbor:"newestSequenceNumber"`
	TotalBytes           int64 `cbor:"totalBytes"`
}

// ExportStatus is the progress of one export (package export);
// lastExportedSequenceNumber is -1 until a message is exported.
type ExportStatus struct {
	ExportConfigIdentifier     string `cbor:"exportConfigIdentifier"`
	LastExportedSequenceNumber int64  `cbor:"lastExportedSequenceNumber"`
	LastExportTime             int64  `cbor:"lastExportTime,omitempty"`
	ErrorMessage               string `cbor:"errorMessage,omitempty"`
	ExportedBytesFromStream    int64  `cbor:"exportedBytesFromStream"`
	ExportedMessagesCount      int64  `cbor:"exportedMessagesCount"`
}

// MessageStreamInfo describes a stream.
type MessageStreamInfo struct {
	Definition     MessageStreamDefinition `cbor:"definition"`
	StorageStatus  StorageStatus           `cbor:"storageStatus"`
	ExportStatuses []ExportStatus          `cbor:"exportStatuses"`
}

// DescribeMessageStreamResponse answers DescribeMessageStreamRequest.
type DescribeMessageStreamResponse struct {
	RequestID         string             `cbor:"requestId"`
	Status            Status             `cbor:"status"`
	ErrorMessage      string             `cbor:"errorMessage,omitempty"`
	MessageStreamInfo *MessageStreamInfo `cbor:"messageStreamInfo,omitempty"`
}

// Decoding limits: requests are small maps; only payloads are large.
type modes struct {
	dec cbor.DecMode
	enc cbor.EncMode
}

// codec is built on first use, not at init: ggd is a multi-call binary and
// every package's init runs in every daemon.
var codec = sync.OnceValue(func() modes {
	dec, err := cbor.DecOptions{
		MaxNestedLevels:  16,
		MaxArrayElements: 1 << 16,
		MaxMapPairs:      1 << 10,
		IndefLength:      cbor.IndefLengthAllowed,
		DupMapKey:        cbor.DupMapKeyEnforcedAPF,
	}.DecMode()
	if err != nil {
		panic(err)
	}
	enc, err := cbor.EncOptions{}.EncMode()
	if err != nil {
		panic(err)
	}
	return modes{dec: dec, enc: enc}
})

// Decode decodes a request payload into v; a malformed map or a field of
// the wrong type is InvalidRequest.
func Decode(payload []byte, v any) error {
	if err := codec().dec.Unmarshal(payload, v); err != nil {
		return Errorf(InvalidRequest, "malformed request: %v", err)
	}
	return nil
}

// Encode encodes a response.
func Encode(v any) ([]byte, error) { return codec().enc.Marshal(v) }

// RequestIDOf digs the requestId out of a payload that did not decode as
// its request, so that the error can still be matched by the client.
func RequestIDOf(payload []byte) string {
	var m map[string]cbor.RawMessage
	if codec().dec.Unmarshal(payload, &m) != nil {
		return ""
	}
	var id string
	if codec().dec.Unmarshal(m["requestId"], &id) != nil || CheckName("requestId", id) != nil {
		return ""
	}
	return id
}

// MaxNameLen bounds names and identifiers.
const MaxNameLen = 255

// CheckName validates a stream name, identifier or requestId: 1..255
// characters of ^[\w ,.\-_]*$ (ASCII word characters, space, comma, dot,
// hyphen). Hand-written: no regexp is compiled in a multi-call binary's init.
func CheckName(field, s string) error {
	if len(s) == 0 {
		return Errorf(InvalidRequest, "%s is required", field)
	}
	if len(s) > MaxNameLen {
		return Errorf(InvalidRequest, "%s is %d characters long; at most %d are allowed", field, len(s), MaxNameLen)
	}
	for i := 0; i < len(s); i++ {
		if !nameByte(s[i]) {
			return Errorf(InvalidRequest, "%s %q has a character outside ^[\\w ,.\\-_]*$ at byte %d", field, s, i)
		}
	}
	return nil
}

func nameByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
		c == '_' || c == ' ' || c == ',' || c == '.' || c == '-'
}

// CheckRequestID validates a request's requestId.
func CheckRequestID(id string) error { return CheckName("requestId", id) }

// Describe names an op for logs.
func (o Op) String() string {
	names := [...]string{"Unknown", "Connect", "CreateMessageStream", "DeleteMessageStream", "AppendMessage",
		"ReadMessages", "ConnectResponse", "CreateMessageStreamResponse", "DeleteMessageStreamResponse",
		"AppendMessageResponse", "ReadMessagesResponse", "ListStreams", "ListStreamsResponse",
		"DescribeMessageStream", "DescribeMessageStreamResponse", "UpdateMessageStream",
		"UpdateMessageStreamResponse", "UnknownOperationError"}
	if int(o) < len(names) {
		return names[o]
	}
	return fmt.Sprintf("Op(%d)", byte(o))
}
