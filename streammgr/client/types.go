package client

import (
	"fmt"
	"time"

	"github.com/evergreen-edge/evergreen/streammgr/protocol"
	"github.com/fxamacker/cbor/v2"
)

// StrategyOnFull is what an append does to a full stream.
type StrategyOnFull int

const (
	// RejectNewData fails the append (the zero value, as on the wire).
	RejectNewData StrategyOnFull = 0
	// OverwriteOldestData drops the oldest segments.
	OverwriteOldestData StrategyOnFull = 1
)

// Persistence is where a stream's messages live.
type Persistence int

const (
	// File survives a restart (v1's default).
	File Persistence = 0
	// Memory does not.
	Memory Persistence = 1
)

// v1's SDK defaults.
const (
	DefaultMaxSize           int64 = 256 << 20
	DefaultStreamSegmentSize int64 = 16 << 20
	DefaultConnectTimeout          = 3 * time.Second
	DefaultRequestTimeout          = 60 * time.Second
	DefaultPort                    = 8088
)

// MessageStreamDefinition is v1's MessageStreamDefinition. Zero values
// take v1's SDK defaults: MaxSize 256 MiB, StreamSegmentSize 16 MiB, no
// TTL, RejectNewData, File, no flush on write.
type MessageStreamDefinition struct {
	Name              string
	MaxSize           int64
	StreamSegmentSize int64
	TimeToLiveMillis  int64
	StrategyOnFull    StrategyOnFull
	Persistence       Persistence
	FlushOnWrite      bool
	ExportDefinition  *ExportDefinition
}

// ExportDefinition is v1's ExportDefinition. The HTTP and S3 exports have
// types here; the other kinds a described stream holds are kept as they
// came, so that a definition read with DescribeMessageStream and written
// back with UpdateMessageStream keeps them.
type ExportDefinition struct {
	HTTP           []HTTPConfig
	S3TaskExecutor []S3ExportTaskExecutorConfig

	other map[string]cbor.RawMessage
}

// MarshalCBOR encodes the map of export kinds.
func (e ExportDefinition) MarshalCBOR() ([]byte, error) {
	m := make(map[string]any, len(e.other)+1)
	for k, v := range e.other {
		m[k] = v
	}
	if len(e.HTTP) > 0 {
		m["http"] = e.HTTP
	}
	if len(e.S3TaskExecutor) > 0 {
		m["s3TaskExecutor"] = e.S3TaskExecutor
	}
	return protocol.Encode(m)
}

// UnmarshalCBOR decodes the map of export kinds.
func (e *ExportDefinition) UnmarshalCBOR(b []byte) error {
	var m map[string]cbor.RawMessage
	if err := decode(b, &m); err != nil {
		return err
	}
	*e = ExportDefinition{}
	if h, ok := m["http"]; ok {
		if err := decode(h, &e.HTTP); err != nil {
			return fmt.Errorf("http: %w", err)
		}
		delete(m, "http")
	}
	if s, ok := m["s3TaskExecutor"]; ok {
		if err := decode(s, &e.S3TaskExecutor); err != nil {
			return fmt.Errorf("s3TaskExecutor: %w", err)
		}
		delete(m, "s3TaskExecutor")
	}
	if len(m) > 0 {
		e.other = m
	}
	return nil
}

// ExportFormat is an HTTP export's body format.
type ExportFormat int

const (
	// RawNotBatched posts each message's payload on its own.
	RawNotBatched ExportFormat = 0
	// JSONBatched posts a JSON array of messages per batch.
	JSONBatched ExportFormat = 1
)

// HTTPConfig is v1's HTTPConfig; zero numbers leave the server's
// defaults.
type HTTPConfig struct {
	Identifier          string       `cbor:"identifier"`
	URI                 string       `cbor:"uri"`
	BatchSize           int64        `cbor:"batchSize,omitempty"`
	BatchIntervalMillis int64        `cbor:"batchIntervalMillis,omitempty"`
	Priority            int64        `cbor:"priority,omitempty"`
	StartSequenceNumber int64        `cbor:"startSequenceNumber,omitempty"`
	Disabled            bool         `cbor:"disabled,omitempty"`
	ExportFormat        ExportFormat `cbor:"exportFormat"`
}

// Message is one stored message: StreamName, SequenceNumber,
// IngestTime (epoch milliseconds) and Payload, as in v1.
type Message = protocol.Message

// StorageStatus is a stream's stored range and size.
type StorageStatus = protocol.StorageStatus

// ExportStatus is one export's progress.
type ExportStatus = protocol.ExportStatus

// MessageStreamInfo is what DescribeMessageStream answers.
type MessageStreamInfo struct {
	Definition     MessageStreamDefinition
	StorageStatus  StorageStatus
	ExportStatuses []ExportStatus
}

// ReadMessagesOptions is v1's ReadMessagesOptions; zero values leave
// v1's defaults (start at the oldest message, min 1, max = min, answer
// at once: NotEnoughMessages if fewer than min are there).
type ReadMessagesOptions struct {
	DesiredStartSequenceNumber int64
	MinMessageCount            int64
	MaxMessageCount            int64
	// ReadTimeout is how long the server waits for MinMessageCount
	// messages (v1's readTimeoutMillis, in milliseconds on the wire); at
	// most the client's request timeout, as in v1.
	ReadTimeout time.Duration
}

func (d *MessageStreamDefinition) wire() (*protocol.MessageStreamDefinition, error) {
	maxSize, segment := d.MaxSize, d.StreamSegmentSize
	if maxSize == 0 {
		maxSize = DefaultMaxSize
	}
	if segment == 0 {
		segment = DefaultStreamSegmentSize
	}
	strategy, persistence, flush := int64(d.StrategyOnFull), int64(d.Persistence), d.FlushOnWrite
	w := &protocol.MessageStreamDefinition{Name: d.Name, MaxSize: &maxSize, StreamSegmentSize: &segment,
		StrategyOnFull: &strategy, Persistence: &persistence, FlushOnWrite: &flush}
	if d.TimeToLiveMillis != 0 {
		ttl := d.TimeToLiveMillis
		w.TimeToLiveMillis = &ttl
	}
	if d.ExportDefinition != nil {
		b, err := protocol.Encode(d.ExportDefinition)
		if err != nil {
			return nil, fmt.Errorf("%w: exportDefinition: %v", ErrValidation, err)
		}
		w.ExportDefinition = b
	}
	return w, nil
}

func definitionOf(w *protocol.MessageStreamDefinition) (MessageStreamDefinition, error) {
	d := MessageStreamDefinition{Name: w.Name}
	get := func(p *int64) int64 {
		if p == nil {
			return 0
		}
		return *p
	}
	d.MaxSize, d.StreamSegmentSize, d.TimeToLiveMillis = get(w.MaxSize), get(w.StreamSegmentSize), get(w.TimeToLiveMillis)
	d.StrategyOnFull, d.Persistence = StrategyOnFull(get(w.StrategyOnFull)), Persistence(get(w.Persistence))
	if w.FlushOnWrite != nil {
		d.FlushOnWrite = *w.FlushOnWrite
	}
	if len(w.ExportDefinition) > 0 {
		d.ExportDefinition = &ExportDefinition{}
		if err := decode(w.ExportDefinition, d.ExportDefinition); err != nil {
			return d, fmt.Errorf("exportDefinition: %w", err)
		}
	}
	return d, nil
}

func (o *ReadMessagesOptions) wire() *protocol.ReadMessagesOptions {
	if o == nil {
		return nil
	}
	opt := func(v int64) *int64 {
		if v == 0 {
			return nil
		}
		return &v
	}
	w := &protocol.ReadMessagesOptions{DesiredStartSequenceNumber: opt(o.DesiredStartSequenceNumber),
		MinMessageCount: opt(o.MinMessageCount), MaxMessageCount: opt(o.MaxMessageCount)}
	if o.ReadTimeout > 0 {
		w.ReadTimeoutMillis = opt(o.ReadTimeout.Milliseconds())
	}
	return w
}
