package export

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strconv"

	"github.com/evergreen-edge/evergreen/streammgr/store"
)

// IoT SiteWise limits (API reference, BatchPutAssetPropertyValue and
// PutAssetPropertyValueEntry).
const (
	siteWiseMaxValues     = 10
	siteWiseMaxAlias      = 2048
	siteWiseMaxSeconds    = 31556889864403199
	siteWiseMaxNanos      = 999999999
	siteWiseInvalidEntry  = "InvalidRequestException"
	siteWiseDataHost      = "data."
	siteWisePath          = "/properties"
	siteWiseOperationName = "BatchPutAssetPropertyValue"
)

func (c IoTSiteWiseConfig) common() common {
	return common{Identifier: c.Identifier, BatchSize: c.BatchSize, BatchInterval: c.BatchInterval,
		Priority: c.Priority, StartSequenceNumber: c.StartSequenceNumber, Disabled: c.Disabled}
}

func (c IoTSiteWiseConfig) newSender(e *exporter) sender { return &siteWiseSender{e: e} }

// siteWiseEntry is v1's PutAssetPropertyValueEntry as the SDKs serialise
// it to JSON (Util.validate_and_serialize_to_json_bytes), which is also
// the API's shape.
type siteWiseEntry struct {
	EntryID        string          `json:"entryId"`
	AssetID        string          `json:"assetId,omitempty"`
	PropertyID     string          `json:"propertyId,omitempty"`
	PropertyAlias  string          `json:"propertyAlias,omitempty"`
	PropertyValues []siteWiseValue `json:"propertyValues"`
}

type siteWiseValue struct {
	Value     siteWiseVariant `json:"value"`
	Timestamp siteWiseTime    `json:"timestamp"`
	Quality   string          `json:"quality,omitempty"`
}

type siteWiseVariant struct {
	StringValue  *string  `json:"stringValue,omitempty"`
	IntegerValue *int64   `json:"integerValue,omitempty"`
	DoubleValue  *float64 `json:"doubleValue,omitempty"`
	BooleanValue *bool    `json:"booleanValue,omitempty"`
}

type siteWiseTime struct {
	TimeInSeconds *int64 `json:"timeInSeconds"`
	OffsetInNanos *int64 `json:"offsetInNanos,omitempty"`
}

func (t siteWiseTime) key() [2]int64 {
	var k [2]int64
	if t.TimeInSeconds != nil {
		k[0] = *t.TimeInSeconds
	}
	if t.OffsetInNanos != nil {
		k[1] = *t.OffsetInNanos
	}
	return k
}

// parseSiteWiseEntry decodes and checks one message; an error names the
// offending field.
func parseSiteWiseEntry(b []byte) (siteWiseEntry, error) {
	var e siteWiseEntry
	if err := json.Unmarshal(b, &e); err != nil {
		return e, fmt.Errorf("not JSON of the expected shape: %v", err)
	}
	if e.PropertyAlias == "" && (e.AssetID == "" || e.PropertyID == "") {
		return e, errors.New("propertyAlias, or assetId and propertyId, are required")
	}
	if len(e.PropertyAlias) > siteWiseMaxAlias {
		return e, fmt.Errorf("propertyAlias: %d characters, more than %d", len(e.PropertyAlias), siteWiseMaxAlias)
	}
	if n := len(e.PropertyValues); n < 1 || n > siteWiseMaxValues {
		return e, fmt.Errorf("propertyValues: %d values, not 1..%d", n, siteWiseMaxValues)
	}
	for i, v := range e.PropertyValues {
		field := func(f string) string { return fmt.Sprintf("propertyValues[%d].%s", i, f) }
		kinds := 0
		for _, set := range []bool{v.Value.StringValue != nil, v.Value.IntegerValue != nil, v.Value.DoubleValue != nil, v.Value.BooleanValue != nil} {
			if set {
				kinds++
			}
		}
		if kinds != 1 {
			return e, fmt.Errorf("%s: exactly one of stringValue, integerValue, doubleValue, booleanValue is required", field("value"))
		}
		if p := v.Value.IntegerValue; p != nil && (*p < math.MinInt32 || *p > math.MaxInt32) {
			return e, fmt.Errorf("%s: %d is not a 32-bit integer", field("value.integerValue"), *p)
		}
		if p := v.Timestamp.TimeInSeconds; p == nil || *p < 1 || *p > siteWiseMaxSeconds {
			return e, fmt.Errorf("%s: required, 1..%d", field("timestamp.timeInSeconds"), int64(siteWiseMaxSeconds))
		}
		if p := v.Timestamp.OffsetInNanos; p != nil && (*p < 0 || *p > siteWiseMaxNanos) {
			return e, fmt.Errorf("%s: %d is outside 0..%d", field("timestamp.offsetInNanos"), *p, siteWiseMaxNanos)
		}
		switch v.Quality {
		case "", "GOOD", "BAD", "UNCERTAIN":
		default:
			return e, fmt.Errorf("%s: %q is not GOOD, BAD or UNCERTAIN", field("quality"), v.Quality)
		}
	}
	return e, nil
}

// siteWiseRetryable reports whether an entry's errorCode may pass later:
// throttling, quotas, the service's own failures and permissions (the
// group role can be fixed) are retried; InvalidRequestException,
// ConflictingOperationException, TimestampOutOfRangeException (never
// younger on a retry) and ResourceNotFoundException (no such asset,
// property or alias) are final. An unknown code is retried: data is lost
// only for a known reason.
func siteWiseRetryable(code string) bool {
	switch code {
	case "InvalidRequestException", "ConflictingOperationException", "TimestampOutOfRangeException", "ResourceNotFoundException":
		return false
	}
	return true
}

// siteWiseSender sends a batch with BatchPutAssetPropertyValue (POST
// /properties on data.iotsitewise.<region>.amazonaws.com), one entry per
// message, its entryId the message's sequence number (unique in a batch,
// whatever the function wrote). A message that is not a valid entry, an
// entry refused for good, and values refused for good are skipped with an
// errorMessage; values that fail with a retryable code are sent again,
// alone.
type siteWiseSender struct {
	e     *exporter
	batch partial
	// rest holds, per sequence number, the values of an entry still to
	// send after SiteWise accepted the others.
	rest map[int64][]siteWiseValue
}

func (*siteWiseSender) close()         {}
func (*siteWiseSender) chargesItself() {}

type siteWiseError struct {
	ErrorCode    string         `json:"errorCode"`
	ErrorMessage string         `json:"errorMessage"`
	Timestamps   []siteWiseTime `json:"timestamps"`
}

type batchPutAssetPropertyValueResponse struct {
	ErrorEntries []struct {
		EntryID string          `json:"entryId"`
		Errors  []siteWiseError `json:"errors"`
	} `json:"errorEntries"`
}

func (s *siteWiseSender) send(ctx context.Context, msgs []store.Message) error {
	pending, fresh := s.batch.pending(msgs)
	if fresh {
		s.rest = map[int64][]siteWiseValue{}
	}
	var entries []siteWiseEntry
	var seqs []int64
	for _, m := range pending {
		ent, err := parseSiteWiseEntry(m.Payload)
		if err != nil {
			s.batch.take(m.Seq)
			s.e.refuse(m.Seq, fmt.Sprintf("message %d is not a valid PutAssetPropertyValueEntry (%v): skipped", m.Seq, err))
			continue
		}
		if v, ok := s.rest[m.Seq]; ok {
			ent.PropertyValues = v
		}
		ent.EntryID = strconv.FormatInt(m.Seq, 10)
		entries = append(entries, ent)
		seqs = append(seqs, m.Seq)
	}
	if len(entries) == 0 {
		return nil
	}
	failed, first, err := s.put(ctx, entries, seqs)
	if invalidRequest(err) && len(entries) > 1 {
		// One entry can spoil the whole request: sending each alone finds
		// it and lets the others through.
		failed, first, err = 0, "", nil
		for i := range entries {
			f, fi, err := s.put(ctx, entries[i:i+1], seqs[i:i+1])
			if invalidRequest(err) {
				s.batch.take(seqs[i])
				s.e.refuse(seqs[i], fmt.Sprintf("message %d refused by IoT SiteWise (%v): skipped", seqs[i], err))
				continue
			}
			if err != nil {
				return err
			}
			if failed += f; first == "" {
				first = fi
			}
		}
	} else if invalidRequest(err) {
		s.batch.take(seqs[0])
		s.e.refuse(seqs[0], fmt.Sprintf("message %d refused by IoT SiteWise (%v): skipped", seqs[0], err))
		return nil
	}
	if err != nil {
		return err
	}
	if failed > 0 {
		return fmt.Errorf("iotsitewise %s: %d of %d entries failed (first %s)", siteWiseOperationName, failed, len(entries), first)
	}
	return nil
}

// invalidRequest is a whole request refused as invalid.
func invalidRequest(err error) bool {
	status, code, ok := apiCode(err)
	return ok && status == http.StatusBadRequest && code == siteWiseInvalidEntry
}

// put sends entries in one request. It takes the entries SiteWise took
// whole, keeps in s.rest the values of the others to retry, and returns
// how many entries have values to retry and the first such failure.
func (s *siteWiseSender) put(ctx context.Context, entries []siteWiseEntry, seqs []int64) (failed int, first string, err error) {
	var resp batchPutAssetPropertyValueResponse
	req := struct {
		Entries []siteWiseEntry `json:"entries"`
	}{entries}
	if err := s.e.postAWSJSON(ctx, ServiceIoTSiteWise, siteWiseDataHost, siteWisePath, siteWiseOperationName, req, &resp); err != nil {
		return 0, "", err
	}
	errs := map[string][]siteWiseError{}
	for _, ee := range resp.ErrorEntries {
		errs[ee.EntryID] = append(errs[ee.EntryID], ee.Errors...)
	}
	for i, ent := range entries {
		seq := seqs[i]
		_, partly := s.rest[seq] // some of its values already accepted
		retry, dropped, why := classifySiteWise(ent.PropertyValues, errs[ent.EntryID])
		if len(retry) > 0 {
			s.rest[seq] = retry
			if failed++; first == "" {
				first = fmt.Sprintf("message %d: %s", seq, retryReason(errs[ent.EntryID]))
			}
		} else {
			s.batch.take(seq)
			delete(s.rest, seq)
		}
		switch {
		case dropped == 0:
		case dropped == len(ent.PropertyValues) && !partly:
			s.e.refuse(seq, fmt.Sprintf("message %d refused by IoT SiteWise (%s): skipped", seq, why))
		default:
			s.e.noteSkipped(fmt.Sprintf("message %d: IoT SiteWise refused %d of its values (%s): skipped", seq, dropped, why))
		}
	}
	return failed, first, nil
}

// classifySiteWise splits an entry's values by its errors: those to send
// again, how many were refused for good (and the first reason), the rest
// accepted. An error without timestamps, or with timestamps matching none
// of the values, is about them all.
func classifySiteWise(values []siteWiseValue, errs []siteWiseError) (retry []siteWiseValue, dropped int, why string) {
	if len(errs) == 0 {
		return nil, 0, ""
	}
	sent := map[[2]int64]bool{}
	for _, v := range values {
		sent[v.Timestamp.key()] = true
	}
	covers := func(e siteWiseError, v siteWiseValue) bool {
		any := false
		for _, t := range e.Timestamps {
			if t.key() == v.Timestamp.key() {
				return true
			}
			any = any || sent[t.key()]
		}
		return !any
	}
	for _, v := range values {
		again, final := false, ""
		for _, e := range errs {
			if !covers(e, v) {
				continue
			}
			if siteWiseRetryable(e.ErrorCode) {
				again = true
			} else if final == "" {
				final = e.ErrorCode + ": " + e.ErrorMessage
			}
		}
		switch {
		case again:
			retry = append(retry, v)
		case final != "":
			if dropped++; why == "" {
				why = final
			}
		}
	}
	return retry, dropped, why
}

func retryReason(errs []siteWiseError) string {
	for _, e := range errs {
		if siteWiseRetryable(e.ErrorCode) {
			return e.ErrorCode + ": " + e.ErrorMessage
		}
	}
	return ""
}
