package store

import (
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/evergreen-edge/evergreen/services/kit/errdefs"
)

// Strategy is what an append does when the stream is full.
type Strategy int

// Strategies (v1's StrategyOnFull values).
const (
	RejectNewData       Strategy = 0
	OverwriteOldestData Strategy = 1
)

// Persistence is where a stream's messages live.
type Persistence int

// Persistence values (v1's).
const (
	File   Persistence = 0
	Memory Persistence = 1
)

// Defaults and limits of v1's MessageStreamDefinition.
const (
	DefaultMaxSize     = 256 << 20
	DefaultSegmentSize = 16 << 20
	MinMaxSize         = 1024
	MinSegmentSize     = 1024
	MaxSegmentSize     = math.MaxInt32
	MinTTLMillis       = 60000
	MaxTTLMillis       = 9223372036854
)

// Definition is a stream's MessageStreamDefinition.
type Definition struct {
	Name        string `json:"name"`
	MaxSize     int64  `json:"maxSize"`
	SegmentSize int64  `json:"streamSegmentSize"`
	// TTLMillis 0 means no time to live.
	TTLMillis    int64       `json:"timeToLiveMillis,omitempty"`
	Strategy     Strategy    `json:"strategyOnFull"`
	Persistence  Persistence `json:"persistence"`
	FlushOnWrite bool        `json:"flushOnWrite"`
	// Export is the ExportDefinition as the client sent it (CBOR), kept
	// and returned by Describe; package export decodes and runs it.
	Export []byte `json:"exportDefinition,omitempty"`
}

// TTL is the time to live, 0 for none.
func (d Definition) TTL() time.Duration { return time.Duration(d.TTLMillis) * time.Millisecond }

// Store errors; each wraps an errdefs kind (gRPC codes at the adapter) and
// the server maps them to protocol status codes.
var (
	ErrNotFound         = fmt.Errorf("stream not found: %w", errdefs.ErrNotFound)
	ErrExists           = fmt.Errorf("stream already exists: %w", errdefs.ErrAlreadyExists)
	ErrFull             = fmt.Errorf("stream is full and its strategyOnFull is RejectNewData: %w", errdefs.ErrResourceExhausted)
	ErrNotEnough        = fmt.Errorf("not enough messages: %w", errdefs.ErrDeadlineExceeded)
	ErrUpdateNotAllowed = fmt.Errorf("update not allowed: %w", errdefs.ErrFailedPrecondition)
	ErrClosed           = fmt.Errorf("store closed: %w", errdefs.ErrUnavailable)
	ErrTooLarge         = fmt.Errorf("response too large: %w", errdefs.ErrResourceExhausted)
)

// Validate checks d and fills v1's defaults for sizes left at 0.
func (d *Definition) Validate() error {
	if d.MaxSize == 0 {
		d.MaxSize = DefaultMaxSize
	}
	if d.SegmentSize == 0 {
		d.SegmentSize = DefaultSegmentSize
	}
	switch {
	case d.MaxSize < MinMaxSize:
		return errdefs.InvalidArgument("maxSize", "%d is below %d", d.MaxSize, MinMaxSize)
	case d.SegmentSize < MinSegmentSize || d.SegmentSize > MaxSegmentSize:
		return errdefs.InvalidArgument("streamSegmentSize", "%d is outside %d..%d", d.SegmentSize, MinSegmentSize, MaxSegmentSize)
	case d.TTLMillis != 0 && (d.TTLMillis < MinTTLMillis || d.TTLMillis > MaxTTLMillis):
		return errdefs.InvalidArgument("timeToLiveMillis", "%d is outside %d..%d", d.TTLMillis, MinTTLMillis, MaxTTLMillis)
	case d.Strategy != RejectNewData && d.Strategy != OverwriteOldestData:
		return errdefs.InvalidArgument("strategyOnFull", "%d is neither RejectNewData (0) nor OverwriteOldestData (1)", d.Strategy)
	case d.Persistence != File && d.Persistence != Memory:
		return errdefs.InvalidArgument("persistence", "%d is neither File (0) nor Memory (1)", d.Persistence)
	}
	return nil
}

// checkUpdate applies v1's rules for UpdateMessageStream (GGDG
// work-with-streams, "Update message stream"): persistence cannot change;
// maxSize must stay at least the stored bytes and the segment size; the
// segment size may change and applies to new segments; TTL, strategy,
// flushOnWrite and the export definition may change and apply from the
// next append (a shorter TTL or OverwriteOldestData also trims at once).
func checkUpdate(old, nu Definition, stored int64) error {
	if nu.Persistence != old.Persistence {
		return fmt.Errorf("persistence cannot change (delete the stream and create it again): %w", ErrUpdateNotAllowed)
	}
	if nu.MaxSize < stored {
		return fmt.Errorf("maxSize %d is below the %d bytes stored: %w", nu.MaxSize, stored, ErrUpdateNotAllowed)
	}
	if nu.MaxSize < nu.SegmentSize {
		return fmt.Errorf("maxSize %d is below streamSegmentSize %d: %w", nu.MaxSize, nu.SegmentSize, ErrUpdateNotAllowed)
	}
	return nil
}

// IsUpdateNotAllowed reports an update refused by v1's rules.
func IsUpdateNotAllowed(err error) bool { return errors.Is(err, ErrUpdateNotAllowed) }
