// Package export runs a stream's exports (v1's ExportDefinition): one
// goroutine per export configuration reads the stream from the store,
// batches, sends, and records its progress beside the stream's data.
// Every kind runs: HTTP, JetStream (an Evergreen extension), S3, Kinesis,
// IoT Analytics and IoT SiteWise; their sends share one pool of
// Options.ThreadPoolSize slots, granted by priority, and one bandwidth
// limit (gate.go).
package export

import (
	"fmt"
	"net/url"
	"strings"
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

// JetStreamConfig is one NATS JetStream export (key "jetstream", an
// Evergreen extension: v1's SDKs never send it). URLs is nats.go's
// comma-separated server list (user:password@ in a URL, or CredsFile).
// Stream, when given, is created with Subject and file storage if it does
// not exist; when empty, Subject must belong to an existing stream.
type JetStreamConfig struct {
	Identifier          string
	URLs                string
	Subject             string
	Stream              string
	BatchSize           int
	BatchInterval       time.Duration
	Priority            int64
	StartSequenceNumber int64
	Disabled            bool
	CredsFile           string
}

// Definition is the part of an ExportDefinition that runs.
type Definition struct {
	HTTP      []HTTPConfig
	JetStream []JetStreamConfig
	S3        []S3Config
	// Kinesis, IoTAnalytics and IoTSiteWise: see awsconfig.go.
	Kinesis      []KinesisConfig
	IoTAnalytics []IoTAnalyticsConfig
	IoTSiteWise  []IoTSiteWiseConfig
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

type wireJetStream struct {
	Identifier          *string `cbor:"identifier"`
	URL                 *string `cbor:"url"`
	Subject             *string `cbor:"subject"`
	Stream              *string `cbor:"stream"`
	BatchSize           *int64  `cbor:"batchSize"`
	BatchIntervalMillis *int64  `cbor:"batchIntervalMillis"`
	Priority            *int64  `cbor:"priority"`
	StartSequenceNumber *int64  `cbor:"startSequenceNumber"`
	Disabled            *bool   `cbor:"disabled"`
	CredsFile           *string `cbor:"credsFile"`
}

type wireDefinition struct {
	HTTP      []wireHTTP      `cbor:"http"`
	JetStream []wireJetStream `cbor:"jetstream"`
	S3        []wireS3        `cbor:"s3TaskExecutor"`
	// IotSitewise is v1's capitalisation on the wire.
	Kinesis      []wireKinesis      `cbor:"kinesis"`
	IoTAnalytics []wireIoTAnalytics `cbor:"iotAnalytics"`
	IoTSiteWise  []wireIoTSiteWise  `cbor:"IotSitewise"`
}

// wireCommon is what every kind's configuration shares.
type wireCommon struct {
	Identifier          *string
	BatchSize           *int64
	BatchIntervalMillis *int64
	Priority            *int64
	StartSequenceNumber *int64
	Disabled            *bool
}

// common is wireCommon checked, with its defaults.
type common struct {
	Identifier          string
	BatchSize           int
	BatchInterval       time.Duration
	Priority            int64
	StartSequenceNumber int64
	Disabled            bool
}

// check validates the shared fields; seen holds the identifiers of every
// kind so far (an identifier names the export's progress file).
func (w wireCommon) check(field func(string) string, seen map[string]bool) (common, error) {
	c := common{BatchSize: DefaultBatchSize, Priority: 10}
	if w.Identifier == nil {
		return c, errdefs.InvalidArgument(field("identifier"), "is required")
	}
	if err := protocol.CheckName(field("identifier"), *w.Identifier); err != nil {
		_, msg := protocol.StatusOf(err)
		return c, errdefs.InvalidArgument(field("identifier"), "%s", msg)
	}
	c.Identifier = *w.Identifier
	if seen[c.Identifier] {
		return c, errdefs.InvalidArgument(field("identifier"), "%q is used by another export of this stream", c.Identifier)
	}
	seen[c.Identifier] = true
	if p := w.BatchSize; p != nil {
		if *p < 1 || *p > MaxBatchSize {
			return c, errdefs.InvalidArgument(field("batchSize"), "%d is outside 1..%d", *p, MaxBatchSize)
		}
		c.BatchSize = int(*p)
	}
	if p := w.BatchIntervalMillis; p != nil {
		if *p < 0 || *p > MaxIntervalMilli {
			return c, errdefs.InvalidArgument(field("batchIntervalMillis"), "%d is outside 0..%d", *p, int64(MaxIntervalMilli))
		}
		c.BatchInterval = time.Duration(*p) * time.Millisecond
	}
	if p := w.Priority; p != nil {
		if *p < 1 || *p > 10 {
			return c, errdefs.InvalidArgument(field("priority"), "%d is outside 1..10", *p)
		}
		c.Priority = *p
	}
	if p := w.StartSequenceNumber; p != nil {
		if *p < 0 {
			return c, errdefs.InvalidArgument(field("startSequenceNumber"), "%d is below 0", *p)
		}
		c.StartSequenceNumber = *p
	}
	if w.Disabled != nil {
		c.Disabled = *w.Disabled
	}
	return c, nil
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
	if raw[0]>>5 != 5 {
		// Null or any other item would decode as no exports, and be
		// stored and described back as it came.
		return d, errdefs.InvalidArgument("definition.exportDefinition", "is not a map")
	}
	var w wireDefinition
	if err := protocol.Decode(raw, &w); err != nil {
		_, msg := protocol.StatusOf(err)
		return d, errdefs.InvalidArgument("definition.exportDefinition", "%s", msg)
	}
	seen := map[string]bool{}
	for i, h := range w.HTTP {
		field := func(f string) string { return fmt.Sprintf("definition.exportDefinition.http[%d].%s", i, f) }
		cm, err := wireCommon{h.Identifier, h.BatchSize, h.BatchIntervalMillis, h.Priority, h.StartSequenceNumber, h.Disabled}.check(field, seen)
		if err != nil {
			return d, err
		}
		c := HTTPConfig{Identifier: cm.Identifier, BatchSize: cm.BatchSize, BatchInterval: cm.BatchInterval,
			Priority: cm.Priority, StartSequenceNumber: cm.StartSequenceNumber, Disabled: cm.Disabled}
		if h.URI == nil || *h.URI == "" {
			return d, errdefs.InvalidArgument(field("uri"), "is required")
		}
		u, err := url.Parse(*h.URI)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return d, errdefs.InvalidArgument(field("uri"), "%q is not an http or https URL", *h.URI)
		}
		c.URI = *h.URI
		if p := h.ExportFormat; p != nil {
			if *p != int64(RawNotBatched) && *p != int64(JSONBatched) {
				return d, errdefs.InvalidArgument(field("exportFormat"), "%d is neither RAW_NOT_BATCHED (0) nor JSON_BATCHED (1)", *p)
			}
			c.Format = Format(*p)
		}
		d.HTTP = append(d.HTTP, c)
	}
	for i, j := range w.JetStream {
		field := func(f string) string { return fmt.Sprintf("definition.exportDefinition.jetstream[%d].%s", i, f) }
		cm, err := wireCommon{j.Identifier, j.BatchSize, j.BatchIntervalMillis, j.Priority, j.StartSequenceNumber, j.Disabled}.check(field, seen)
		if err != nil {
			return d, err
		}
		c := JetStreamConfig{Identifier: cm.Identifier, BatchSize: cm.BatchSize, BatchInterval: cm.BatchInterval,
			Priority: cm.Priority, StartSequenceNumber: cm.StartSequenceNumber, Disabled: cm.Disabled}
		if j.URL == nil || strings.TrimSpace(*j.URL) == "" {
			return d, errdefs.InvalidArgument(field("url"), "is required")
		}
		for _, s := range strings.Split(*j.URL, ",") {
			u, err := url.Parse(strings.TrimSpace(s))
			if err != nil || (u.Scheme != "nats" && u.Scheme != "tls") || u.Host == "" {
				return d, errdefs.InvalidArgument(field("url"), "%q is not a nats:// or tls:// URL", strings.TrimSpace(s))
			}
		}
		c.URLs = *j.URL
		if j.Subject == nil || !validSubject(*j.Subject) {
			return d, errdefs.InvalidArgument(field("subject"), "is required: dot-separated tokens without spaces or wildcards")
		}
		c.Subject = *j.Subject
		if j.Stream != nil && *j.Stream != "" {
			if strings.ContainsAny(*j.Stream, " \t\r\n.*>/\\") || len(*j.Stream) > 255 {
				return d, errdefs.InvalidArgument(field("stream"), "%q is not a JetStream stream name (no spaces, '.', '*', '>', '/', '\\')", *j.Stream)
			}
			c.Stream = *j.Stream
		}
		if j.CredsFile != nil {
			if *j.CredsFile == "" {
				return d, errdefs.InvalidArgument(field("credsFile"), "is empty")
			}
			c.CredsFile = *j.CredsFile
		}
		d.JetStream = append(d.JetStream, c)
	}
	for i, s := range w.S3 {
		c, err := s.parse(i, seen)
		if err != nil {
			return d, err
		}
		d.S3 = append(d.S3, c)
	}
	if err := w.parseAWS(&d, seen); err != nil {
		return d, err
	}
	return d, nil
}

// validSubject accepts a subject one can publish to.
func validSubject(s string) bool {
	if s == "" || strings.ContainsAny(s, " \t\r\n") {
		return false
	}
	for _, tok := range strings.Split(s, ".") {
		if tok == "" || tok == "*" || tok == ">" {
			return false
		}
	}
	return true
}
