// Package export runs a stream's exports (v1's ExportDefinition): one
// goroutine per export configuration reads the stream from the store,
// batches, sends, and records its progress beside the stream's data.
// Only HTTP runs so far; the other kinds are stored and returned but not
// run (their statuses are absent).
package export

import (
	"fmt"
	"net/url"
	"time"

	"github.com/evergreen-edge/evergreen/services/kit/errdefs"
	"github.com/evergreen-edge/evergreen/streammgr/protocol"
)

// Format is HTTPConfig.exportFormat.
type Format int

// Formats (v1's ExportFormat values).
const (
	// RawNotBatched POSTs each message alone, its payload as the body.
	RawNotBatched Format = 0
	// JSONBatched POSTs a batch as a JSON array of v1 Message objects.
	JSONBatched Format = 1
)

// Limits and defaults of HTTPConfig (GGDG and the SDK's docs: batchSize
// 1..500, default 500; priority 1..10).
const (
	MaxBatchSize     = 500
	DefaultBatchSize = 500
	MaxIntervalMilli = 9223372036854
)

// HTTPConfig is one HTTP export. BatchInterval 0 (batchIntervalMillis not
// given) sends whatever is available, up to BatchSize, at once: v1's
// default is not documented and waiting for a full batch with no time
// bound would strand a slow stream's data.
type HTTPConfig struct {
	Identifier          string
	URI                 string
	BatchSize           int
	BatchInterval       time.Duration
	Priority            int64
	StartSequenceNumber int64
	Disabled            bool
	Format              Format
}

// Definition is the part of an ExportDefinition that runs.
type Definition struct {
	HTTP []HTTPConfig
}

type wireHTTP struct {
	Identifier          *string `cbor:"identifier"`
	URI                 *string `cbor:"uri"`
	BatchSize           *int64  `cbor:"batchSize"`
	BatchIntervalMillis *int64  `cbor:"batchIntervalMillis"`
	Priority            *int64  `cbor:"priority"`
	StartSequenceNumber *int64  `cbor:"startSequenceNumber"`
	Disabled            *bool   `cbor:"disabled"`
	ExportFormat        *int64  `cbor:"exportFormat"`
}

type wireDefinition struct {
	HTTP []wireHTTP `cbor:"http"`
}

// Parse decodes a stream's ExportDefinition (CBOR, as the client sent it)
// and checks it; an error names the offending field
// (definition.exportDefinition.http[i].batchSize) and is an invalid
// argument.
func Parse(raw []byte) (Definition, error) {
	var d Definition
	if len(raw) == 0 {
		return d, nil
	}
	var w wireDefinition
	if err := protocol.Decode(raw, &w); err != nil {
		_, msg := protocol.StatusOf(err)
		return d, errdefs.InvalidArgument("definition.exportDefinition", "%s", msg)
	}
	seen := map[string]bool{}
	for i, h := range w.HTTP {
		field := func(f string) string { return fmt.Sprintf("definition.exportDefinition.http[%d].%s", i, f) }
		c := HTTPConfig{BatchSize: DefaultBatchSize, Priority: 10}
		if h.Identifier == nil {
			return d, errdefs.InvalidArgument(field("identifier"), "is required")
		}
		if err := protocol.CheckName(field("identifier"), *h.Identifier); err != nil {
			_, msg := protocol.StatusOf(err)
			return d, errdefs.InvalidArgument(field("identifier"), "%s", msg)
		}
		c.Identifier = *h.Identifier
		if seen[c.Identifier] {
			return d, errdefs.InvalidArgument(field("identifier"), "%q is used by another export of this stream", c.Identifier)
		}
		seen[c.Identifier] = true
		if h.URI == nil || *h.URI == "" {
			return d, errdefs.InvalidArgument(field("uri"), "is required")
		}
		u, err := url.Parse(*h.URI)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return d, errdefs.InvalidArgument(field("uri"), "%q is not an http or https URL", *h.URI)
		}
		c.URI = *h.URI
		if p := h.BatchSize; p != nil {
			if *p < 1 || *p > MaxBatchSize {
				return d, errdefs.InvalidArgument(field("batchSize"), "%d is outside 1..%d", *p, MaxBatchSize)
			}
			c.BatchSize = int(*p)
		}
		if p := h.BatchIntervalMillis; p != nil {
			if *p < 0 || *p > MaxIntervalMilli {
				return d, errdefs.InvalidArgument(field("batchIntervalMillis"), "%d is outside 0..%d", *p, int64(MaxIntervalMilli))
			}
			c.BatchInterval = time.Duration(*p) * time.Millisecond
		}
		if p := h.Priority; p != nil {
			if *p < 1 || *p > 10 {
				return d, errdefs.InvalidArgument(field("priority"), "%d is outside 1..10", *p)
			}
			c.Priority = *p
		}
		if p := h.StartSequenceNumber; p != nil {
			if *p < 0 {
				return d, errdefs.InvalidArgument(field("startSequenceNumber"), "%d is below 0", *p)
			}
			c.StartSequenceNumber = *p
		}
		if h.Disabled != nil {
			c.Disabled = *h.Disabled
		}
		if p := h.ExportFormat; p != nil {
			if *p != int64(RawNotBatched) && *p != int64(JSONBatched) {
				return d, errdefs.InvalidArgument(field("exportFormat"), "%d is neither RAW_NOT_BATCHED (0) nor JSON_BATCHED (1)", *p)
			}
			c.Format = Format(*p)
		}
		d.HTTP = append(d.HTTP, c)
	}
	return d, nil
}
