package export

import (
	"fmt"
	"time"

	"github.com/evergreen-edge/evergreen/services/kit/errdefs"
)

// v1's limits of the AWS kinds (the SDKs' KinesisConfig,
// IoTAnalyticsConfig and IoTSiteWiseConfig): batchSize 1..500, 1..100 and
// 1..10, each defaulting to its maximum; batchIntervalMillis, when given,
// 60000..9223372036854 (unset sends whatever is available at once).
const (
	MaxKinesisBatchSize      = 500
	MaxIoTAnalyticsBatchSize = 100
	MaxIoTSiteWiseBatchSize  = 10
	MinAWSIntervalMilli      = 60000
	// MaxIoTAnalyticsMsgIDPrefix bounds iotMsgIdPrefix.
	MaxIoTAnalyticsMsgIDPrefix = 32
)

// KinesisConfig is one Kinesis Data Streams export (wire key "kinesis"):
// PutRecords, each message one record under a random UUID partition key
// (as v1's stream manager documents).
type KinesisConfig struct {
	Identifier          string
	StreamName          string
	BatchSize           int
	BatchInterval       time.Duration
	Priority            int64
	StartSequenceNumber int64
	Disabled            bool
}

// IoTAnalyticsConfig is one AWS IoT Analytics export (wire key
// "iotAnalytics"): BatchPutMessage to Channel, each message's messageId
// MsgIDPrefix followed by its sequence number.
type IoTAnalyticsConfig struct {
	Identifier          string
	Channel             string
	MsgIDPrefix         string
	BatchSize           int
	BatchInterval       time.Duration
	Priority            int64
	StartSequenceNumber int64
	Disabled            bool
}

// IoTSiteWiseConfig is one AWS IoT SiteWise export (wire key
// "IotSitewise"): the stream's messages are JSON PutAssetPropertyValueEntry
// objects, sent with BatchPutAssetPropertyValue.
type IoTSiteWiseConfig struct {
	Identifier          string
	BatchSize           int
	BatchInterval       time.Duration
	Priority            int64
	StartSequenceNumber int64
	Disabled            bool
}

type wireKinesis struct {
	Identifier          *string `cbor:"identifier"`
	StreamName          *string `cbor:"kinesisStreamName"`
	BatchSize           *int64  `cbor:"batchSize"`
	BatchIntervalMillis *int64  `cbor:"batchIntervalMillis"`
	Priority            *int64  `cbor:"priority"`
	StartSequenceNumber *int64  `cbor:"startSequenceNumber"`
	Disabled            *bool   `cbor:"disabled"`
}

type wireIoTAnalytics struct {
	Identifier          *string `cbor:"identifier"`
	Channel             *string `cbor:"iotChannel"`
	MsgIDPrefix         *string `cbor:"iotMsgIdPrefix"`
	BatchSize           *int64  `cbor:"batchSize"`
	BatchIntervalMillis *int64  `cbor:"batchIntervalMillis"`
	Priority            *int64  `cbor:"priority"`
	StartSequenceNumber *int64  `cbor:"startSequenceNumber"`
	Disabled            *bool   `cbor:"disabled"`
}

type wireIoTSiteWise struct {
	Identifier          *string `cbor:"identifier"`
	BatchSize           *int64  `cbor:"batchSize"`
	BatchIntervalMillis *int64  `cbor:"batchIntervalMillis"`
	Priority            *int64  `cbor:"priority"`
	StartSequenceNumber *int64  `cbor:"startSequenceNumber"`
	Disabled            *bool   `cbor:"disabled"`
}

// checkAWS validates the shared fields with an AWS kind's own batch size
// bound and default and v1's minimum batch interval.
func (w wireCommon) checkAWS(field func(string) string, seen map[string]bool, maxBatch int) (common, error) {
	if p := w.BatchSize; p != nil && (*p < 1 || *p > int64(maxBatch)) {
		return common{}, errdefs.InvalidArgument(field("batchSize"), "%d is outside 1..%d", *p, maxBatch)
	}
	if p := w.BatchIntervalMillis; p != nil && (*p < MinAWSIntervalMilli || *p > MaxIntervalMilli) {
		return common{}, errdefs.InvalidArgument(field("batchIntervalMillis"), "%d is outside %d..%d", *p, MinAWSIntervalMilli, int64(MaxIntervalMilli))
	}
	c, err := w.check(field, seen)
	if err != nil {
		return c, err
	}
	if w.BatchSize == nil {
		c.BatchSize = maxBatch
	}
	return c, nil
}

// parseAWS checks the Kinesis, IoT Analytics and SiteWise configurations
// into d.
func (w wireDefinition) parseAWS(d *Definition, seen map[string]bool) error {
	for i, k := range w.Kinesis {
		field := func(f string) string { return fmt.Sprintf("definition.exportDefinition.kinesis[%d].%s", i, f) }
		cm, err := wireCommon{k.Identifier, k.BatchSize, k.BatchIntervalMillis, k.Priority, k.StartSequenceNumber, k.Disabled}.checkAWS(field, seen, MaxKinesisBatchSize)
		if err != nil {
			return err
		}
		// Kinesis's StreamName: 1..128 of [a-zA-Z0-9_.-].
		if k.StreamName == nil || *k.StreamName == "" {
			return errdefs.InvalidArgument(field("kinesisStreamName"), "is required")
		}
		if !nameOf(*k.StreamName, 128, "_.-") {
			return errdefs.InvalidArgument(field("kinesisStreamName"), "%q is not a Kinesis stream name (1..128 of a-z, A-Z, 0-9, '_', '.', '-')", *k.StreamName)
		}
		d.Kinesis = append(d.Kinesis, KinesisConfig{Identifier: cm.Identifier, StreamName: *k.StreamName, BatchSize: cm.BatchSize,
			BatchInterval: cm.BatchInterval, Priority: cm.Priority, StartSequenceNumber: cm.StartSequenceNumber, Disabled: cm.Disabled})
	}
	for i, a := range w.IoTAnalytics {
		field := func(f string) string { return fmt.Sprintf("definition.exportDefinition.iotAnalytics[%d].%s", i, f) }
		cm, err := wireCommon{a.Identifier, a.BatchSize, a.BatchIntervalMillis, a.Priority, a.StartSequenceNumber, a.Disabled}.checkAWS(field, seen, MaxIoTAnalyticsBatchSize)
		if err != nil {
			return err
		}
		// IoT Analytics's channelName: 1..128 of [a-zA-Z0-9_], not
		// starting with "__".
		if a.Channel == nil || *a.Channel == "" {
			return errdefs.InvalidArgument(field("iotChannel"), "is required")
		}
		if ch := *a.Channel; !nameOf(ch, 128, "_") || (len(ch) >= 2 && ch[:2] == "__") {
			return errdefs.InvalidArgument(field("iotChannel"), "%q is not an IoT Analytics channel name (1..128 of a-z, A-Z, 0-9, '_', not starting with \"__\")", ch)
		}
		c := IoTAnalyticsConfig{Identifier: cm.Identifier, Channel: *a.Channel, BatchSize: cm.BatchSize, BatchInterval: cm.BatchInterval,
			Priority: cm.Priority, StartSequenceNumber: cm.StartSequenceNumber, Disabled: cm.Disabled}
		if p := a.MsgIDPrefix; p != nil {
			if len(*p) > MaxIoTAnalyticsMsgIDPrefix {
				return errdefs.InvalidArgument(field("iotMsgIdPrefix"), "%d characters, more than %d", len(*p), MaxIoTAnalyticsMsgIDPrefix)
			}
			for _, r := range *p {
				if r > 0x7f {
					return errdefs.InvalidArgument(field("iotMsgIdPrefix"), "%q is not ASCII (IoT Analytics message ids are)", *p)
				}
			}
			c.MsgIDPrefix = *p
		}
		d.IoTAnalytics = append(d.IoTAnalytics, c)
	}
	for i, s := range w.IoTSiteWise {
		field := func(f string) string { return fmt.Sprintf("definition.exportDefinition.IotSitewise[%d].%s", i, f) }
		cm, err := wireCommon{s.Identifier, s.BatchSize, s.BatchIntervalMillis, s.Priority, s.StartSequenceNumber, s.Disabled}.checkAWS(field, seen, MaxIoTSiteWiseBatchSize)
		if err != nil {
			return err
		}
		d.IoTSiteWise = append(d.IoTSiteWise, IoTSiteWiseConfig{Identifier: cm.Identifier, BatchSize: cm.BatchSize, BatchInterval: cm.BatchInterval,
			Priority: cm.Priority, StartSequenceNumber: cm.StartSequenceNumber, Disabled: cm.Disabled})
	}
	return nil
}

// nameOf reports whether s is 1..maxLen ASCII letters, digits and extra.
func nameOf(s string, maxLen int, extra string) bool {
	if s == "" || len(s) > maxLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
		for j := 0; !ok && j < len(extra); j++ {
			ok = c == extra[j]
		}
		if !ok {
			return false
		}
	}
	return true
}
