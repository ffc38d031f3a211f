package export_test

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/evergreen-edge/evergreen/streammgr/export"
)

// tqv is one property value as a v1 SDK serialises it.
type tqv struct {
	value   map[string]any // {"doubleValue": 1.5}
	seconds int64
	nanos   int64
	quality string
}

func (v tqv) json() map[string]any {
	m := map[string]any{"value": v.value, "timestamp": map[string]any{"timeInSeconds": v.seconds, "offsetInNanos": v.nanos}}
	if v.quality != "" {
		m["quality"] = v.quality
	}
	return m
}

// entry is a PutAssetPropertyValueEntry message as a v1 SDK writes it
// (Util.validate_and_serialize_to_json_bytes): id is the function's
// entryId, target the identity fields.
func entry(id string, target map[string]any, values ...tqv) []byte {
	m := map[string]any{"entryId": id}
	for k, v := range target {
		m[k] = v
	}
	var vs []any
	for _, v := range values {
		vs = append(vs, v.json())
	}
	m["propertyValues"] = vs
	b, _ := json.Marshal(m)
	return b
}

func alias(a string) map[string]any { return map[string]any{"propertyAlias": a} }

// siteWiseValue is one TQV SiteWise stored.
type siteWiseValue struct {
	target  string // the alias or assetId/propertyId
	seconds int64
}

// siteWiseService answers BatchPutAssetPropertyValue like SiteWise: a
// value is stored unless its timestamp is in throttle (ThrottlingException
// once) or outOfRange (TimestampOutOfRangeException, always); a request
// with an entry for invalidAlias is refused whole with
// InvalidRequestException. Guarded by the fake's lock.
type siteWiseService struct {
	stored       []siteWiseValue
	throttle     map[int64]bool
	outOfRange   map[int64]bool
	invalidAlias string
	down         bool
}

func (s *siteWiseService) answer(c awsCall) awsAnswer {
	if s.down {
		return awsAnswer{status: 503, code: "ServiceUnavailableException"}
	}
	entries, _ := c.body["entries"].([]any)
	for _, x := range entries {
		if e, _ := x.(map[string]any); e["propertyAlias"] == s.invalidAlias && s.invalidAlias != "" {
			return awsAnswer{status: 400, code: "InvalidRequestException"}
		}
	}
	errEntries := []any{}
	for _, x := range entries {
		e, _ := x.(map[string]any)
		target, _ := e["propertyAlias"].(string)
		if target == "" {
			target = fmt.Sprintf("%v/%v", e["assetId"], e["propertyId"])
		}
		var errs []any
		vs, _ := e["propertyValues"].([]any)
		for _, v := range vs {
			ts, _ := v.(map[string]any)["timestamp"].(map[string]any)
			sec := int64(ts["timeInSeconds"].(float64))
			stamp := []any{map[string]any{"timeInSeconds": sec, "offsetInNanos": ts["offsetInNanos"]}}
			switch {
			case s.throttle[sec]:
				delete(s.throttle, sec)
				errs = append(errs, map[string]any{"errorCode": "ThrottlingException", "errorMessage": "Rate exceeded", "timestamps": stamp})
			case s.outOfRange[sec]:
				errs = append(errs, map[string]any{"errorCode": "TimestampOutOfRangeException", "errorMessage": "too old", "timestamps": stamp})
			default:
				s.stored = append(s.stored, siteWiseValue{target, sec})
			}
		}
		if errs != nil {
			errEntries = append(errEntries, map[string]any{"entryId": e["entryId"], "errors": errs})
		}
	}
	return awsAnswer{body: map[string]any{"errorEntries": errEntries}}
}

// jsonOf is v as the fake decoded it (numbers as float64).
func jsonOf(v any) any {
	b, _ := json.Marshal(v)
	var out any
	json.Unmarshal(b, &out)
	return out
}

// TestSiteWiseBatchPutAssetPropertyValueExactly: one entry per message,
// entryIds rewritten to the sequence numbers (the function's need not be
// unique in a batch), fields and values as written; a throttled value is
// retried alone, its entry's other value not resent.
func TestSiteWiseBatchPutAssetPropertyValueExactly(t *testing.T) {
	sw := &siteWiseService{throttle: map[int64]bool{1700000004: true}}
	f := newAWSFake(t, "iotsitewise", sw.answer)
	r := newAWSRig(t, export.Options{AWS: export.AWSOptions{Endpoints: map[string]string{export.ServiceIoTSiteWise: f.url()}}})
	r.stream("s")
	msgs := [][]byte{
		entry("e", alias("/plant/line1/temp"), tqv{map[string]any{"doubleValue": 21.5}, 1700000000, 0, "GOOD"},
			tqv{map[string]any{"integerValue": 7}, 1700000001, 250, ""}),
		entry("e", map[string]any{"assetId": "a1b2", "propertyId": "c3d4"}, tqv{map[string]any{"stringValue": "on"}, 1700000002, 5, "UNCERTAIN"}),
		entry("e", alias("/plant/line1/temp"), tqv{map[string]any{"booleanValue": true}, 1700000003, 0, "BAD"},
			tqv{map[string]any{"doubleValue": 1.25}, 1700000004, 0, "GOOD"}),
	}
	r.append("s", msgs...)
	release := f.holdFrom(1)
	r.export("s", map[string]any{"IotSitewise": []any{map[string]any{"identifier": "sw"}}})
	r.waitStatus("s", func(s export.Status) bool {
		return strings.Contains(s.ErrorMessage, "1 of 3 entries failed") && strings.Contains(s.ErrorMessage, "ThrottlingException") &&
			s.LastExportedSequenceNumber == -1
	})
	release()
	r.waitStatus("s", func(s export.Status) bool {
		return s.LastExportedSequenceNumber == 2 && s.ExportedMessagesCount == 3 && s.ErrorMessage == ""
	})

	calls := f.recorded()
	if len(calls) != 2 {
		t.Fatalf("%d calls, want 2: %+v", len(calls), calls)
	}
	var sent []map[string]any
	for i, m := range msgs {
		var e map[string]any
		json.Unmarshal(m, &e)
		e["entryId"] = fmt.Sprint(i)
		sent = append(sent, e)
	}
	retried := map[string]any{"entryId": "2", "propertyAlias": "/plant/line1/temp",
		"propertyValues": []any{tqv{map[string]any{"doubleValue": 1.25}, 1700000004, 0, "GOOD"}.json()}}
	want := []any{map[string]any{"entries": jsonOf(sent)}, map[string]any{"entries": jsonOf([]any{retried})}}
	for i, c := range calls {
		f.checkCall(c)
		if c.method != "POST" || c.path != "/properties" || c.ctype != "application/json" || c.host != strings.TrimPrefix(f.url(), "http://") {
			t.Errorf("call %d: %s %s host %s type %q", i, c.method, c.path, c.host, c.ctype)
		}
		if got := jsonOf(c.body); !reflect.DeepEqual(got, want[i]) {
			t.Errorf("call %d body\n got  %v\n want %v", i, got, want[i])
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(sw.stored) != 5 {
		t.Fatalf("SiteWise holds %+v: each value exactly once expected", sw.stored)
	}
}

// TestSiteWiseSkipsMalformedAndRefusedEntries: a message that is not a
// valid entry is skipped without a request, naming the field; an entry
// SiteWise refuses for good (TimestampOutOfRangeException) is not
// retried; neither blocks the stream or counts as exported.
func TestSiteWiseSkipsMalformedAndRefusedEntries(t *testing.T) {
	sw := &siteWiseService{outOfRange: map[int64]bool{1600000000: true}}
	f := newAWSFake(t, "iotsitewise", sw.answer)
	r := newAWSRig(t, export.Options{AWS: export.AWSOptions{Endpoints: map[string]string{export.ServiceIoTSiteWise: f.url()}}})
	r.stream("s")
	r.export("s", map[string]any{"IotSitewise": []any{map[string]any{"identifier": "sw", "batchSize": 5}}})
	r.append("s", []byte(`{"entryId":"e","propertyAlias":"/a","propertyValues":[{"value":{"doubleValue":1},"timestamp":{}}]}`))
	s := r.waitStatus("s", func(s export.Status) bool { return s.LastExportedSequenceNumber == 0 })
	if s.ExportedMessagesCount != 0 || !strings.Contains(s.ErrorMessage, "message 0") ||
		!strings.Contains(s.ErrorMessage, "propertyValues[0].timestamp.timeInSeconds") {
		t.Fatalf("status %+v", s)
	}
	if calls := f.recorded(); len(calls) != 0 {
		t.Fatalf("a malformed entry was sent: %+v", calls)
	}

	r.append("s", []byte("not json"),
		entry("e", alias("/old"), tqv{map[string]any{"doubleValue": 1}, 1600000000, 0, ""}),
		entry("e", alias("/half"), tqv{map[string]any{"doubleValue": 2}, 1600000000, 0, ""}, tqv{map[string]any{"doubleValue": 3}, 1700000000, 0, ""}),
		entry("e", alias("/fine"), tqv{map[string]any{"doubleValue": 4}, 1700000001, 0, ""}))
	s = r.waitStatus("s", func(s export.Status) bool { return s.LastExportedSequenceNumber == 4 })
	// Message 3 was half exported: it counts; 1 and 2 do not.
	if s.ExportedMessagesCount != 2 || !strings.Contains(s.ErrorMessage, "message 3") || !strings.Contains(s.ErrorMessage, "TimestampOutOfRangeException") {
		t.Fatalf("status %+v", s)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	want := []siteWiseValue{{"/half", 1700000000}, {"/fine", 1700000001}}
	if !reflect.DeepEqual(sw.stored, want) {
		t.Fatalf("SiteWise holds %+v, want %+v", sw.stored, want)
	}
	olds := 0
	for _, c := range f.calls {
		for _, e := range c.body["entries"].([]any) {
			if e.(map[string]any)["propertyAlias"] == "/old" {
				olds++
			}
		}
	}
	if olds != 1 {
		t.Fatalf("the entry refused for good was sent %d times", olds)
	}
}

// TestSiteWiseFindsTheEntrySpoilingABatch: SiteWise refuses a whole
// request for one invalid entry; each entry is then sent alone, the
// invalid one is skipped and the others go through.
func TestSiteWiseFindsTheEntrySpoilingABatch(t *testing.T) {
	sw := &siteWiseService{invalidAlias: "/bad"}
	f := newAWSFake(t, "iotsitewise", sw.answer)
	r := newAWSRig(t, export.Options{AWS: export.AWSOptions{Endpoints: map[string]string{export.ServiceIoTSiteWise: f.url()}}})
	r.stream("s")
	r.append("s", entry("e", alias("/ok1"), tqv{map[string]any{"doubleValue": 1}, 1700000000, 0, ""}),
		entry("e", alias("/bad"), tqv{map[string]any{"doubleValue": 2}, 1700000001, 0, ""}),
		entry("e", alias("/ok2"), tqv{map[string]any{"doubleValue": 3}, 1700000002, 0, ""}))
	r.export("s", map[string]any{"IotSitewise": []any{map[string]any{"identifier": "sw"}}})
	s := r.waitStatus("s", func(s export.Status) bool { return s.LastExportedSequenceNumber == 2 })
	if s.ExportedMessagesCount != 2 || !strings.Contains(s.ErrorMessage, "message 1") || !strings.Contains(s.ErrorMessage, "InvalidRequestException") {
		t.Fatalf("status %+v", s)
	}
	var sizes []int
	for _, c := range f.recorded() {
		sizes = append(sizes, len(c.body["entries"].([]any)))
	}
	if !reflect.DeepEqual(sizes, []int{3, 1, 1, 1}) {
		t.Fatalf("requests of %v entries, want the batch then each alone", sizes)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if want := []siteWiseValue{{"/ok1", 1700000000}, {"/ok2", 1700000002}}; !reflect.DeepEqual(sw.stored, want) {
		t.Fatalf("SiteWise holds %+v, want %+v", sw.stored, want)
	}
}
