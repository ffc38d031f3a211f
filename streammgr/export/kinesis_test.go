package export_test

import (
	stdbase64 "encoding/base64"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/evergreen-edge/evergreen/streammgr/export"
)

// kinesisRecord is one record PutRecords carried.
type kinesisRecord struct{ data, key string }

// kinesisService answers PutRecords like Kinesis: each record is accepted
// (a sequence number and shard) unless fail names its data, which fails it
// with ProvisionedThroughputExceededException once. Guarded by the fake's
// lock.
type kinesisService struct {
	accepted []kinesisRecord
	fail     map[string]bool
	down     bool // answer 503 to every request
	seq      int
}

func (k *kinesisService) answer(c awsCall) awsAnswer {
	if k.down {
		return awsAnswer{status: 503, code: "ServiceUnavailableException"}
	}
	var out []any
	failed := 0
	for _, r := range records(c) {
		if k.fail[r.data] {
			delete(k.fail, r.data)
			failed++
			out = append(out, map[string]any{"ErrorCode": "ProvisionedThroughputExceededException",
				"ErrorMessage": "Rate exceeded for shard shardId-000000000000 in stream cloud-stream under account 123456789012."})
			continue
		}
		k.accepted = append(k.accepted, r)
		k.seq++
		out = append(out, map[string]any{"SequenceNumber": fmt.Sprintf("4959%032d", k.seq), "ShardId": "shardId-000000000000"})
	}
	return awsAnswer{body: map[string]any{"FailedRecordCount": failed, "Records": out}}
}

// records decodes a PutRecords body's records.
func records(c awsCall) []kinesisRecord {
	var out []kinesisRecord
	rs, _ := c.body["Records"].([]any)
	for _, x := range rs {
		r, _ := x.(map[string]any)
		s, _ := r["Data"].(string)
		data, err := stdbase64.StdEncoding.DecodeString(s)
		if err != nil {
			panic(fmt.Sprintf("record data %q is not base64: %v", s, err))
		}
		key, _ := r["PartitionKey"].(string)
		out = append(out, kinesisRecord{string(data), key})
	}
	return out
}

func isUUIDv4(s string) bool {
	if len(s) != 36 || s[14] != '4' || !strings.ContainsRune("89ab", rune(s[19])) {
		return false
	}
	for i, c := range s {
		if i == 8 || i == 13 || i == 18 || i == 23 {
			if c != '-' {
				return false
			}
		} else if !strings.ContainsRune("0123456789abcdef", c) {
			return false
		}
	}
	return true
}

// TestKinesisPutRecordsRetriesOnlyFailedRecords: a batch of four, two of
// which Kinesis throttles: the retry carries exactly those two, under the
// same partition keys; nothing is exported twice and the progress moves
// only once every record is in.
func TestKinesisPutRecordsRetriesOnlyFailedRecords(t *testing.T) {
	k := &kinesisService{fail: map[string]bool{"message 1": true, "message 3": true}}
	f := newAWSFake(t, "kinesis", k.answer)
	r := newAWSRig(t, export.Options{AWS: export.AWSOptions{Endpoints: map[string]string{export.ServiceKinesis: f.url()}}})
	r.stream("s")
	r.append("s", payloads(0, 5)...)
	release := f.holdFrom(1)
	r.export("s", map[string]any{"kinesis": []any{map[string]any{"identifier": "k", "kinesisStreamName": "cloud-stream", "batchSize": 4}}})

	// The retry is held: the status tells of the partial failure and the
	// progress has not moved.
	r.waitStatus("s", func(s export.Status) bool {
		return strings.Contains(s.ErrorMessage, "2 of 4 records failed") &&
			strings.Contains(s.ErrorMessage, "ProvisionedThroughputExceededException") && s.LastExportedSequenceNumber == -1
	})
	release()
	var size int64
	for _, p := range payloads(0, 5) {
		size += int64(len(p))
	}
	r.waitStatus("s", func(s export.Status) bool {
		return s.LastExportedSequenceNumber == 5 && s.ExportedMessagesCount == 6 && s.ExportedBytesFromStream == size && s.ErrorMessage == ""
	})

	calls := f.recorded()
	if len(calls) != 3 {
		t.Fatalf("%d PutRecords calls, want 3: %+v", len(calls), calls)
	}
	for i, c := range calls {
		f.checkCall(c)
		if c.method != "POST" || c.path != "/" || c.target != "Kinesis_20131202.PutRecords" ||
			c.ctype != "application/x-amz-json-1.1" || c.body["StreamName"] != "cloud-stream" {
			t.Errorf("call %d: %s %s target %q type %q stream %v", i, c.method, c.path, c.target, c.ctype, c.body["StreamName"])
		}
	}
	first, retry, last := records(calls[0]), records(calls[1]), records(calls[2])
	dataOf := func(rs []kinesisRecord) []string {
		var out []string
		for _, r := range rs {
			out = append(out, r.data)
		}
		return out
	}
	if got := dataOf(first); !slices.Equal(got, []string{"message 0", "message 1", "message 2", "message 3"}) {
		t.Fatalf("first PutRecords carried %q", got)
	}
	if got := dataOf(retry); !slices.Equal(got, []string{"message 1", "message 3"}) {
		t.Fatalf("the retry carried %q, want only the failed records", got)
	}
	if got := dataOf(last); !slices.Equal(got, []string{"message 4", "message 5"}) {
		t.Fatalf("the next batch carried %q", got)
	}
	keys := map[string]bool{}
	for _, rec := range append(first, last...) {
		if !isUUIDv4(rec.key) || keys[rec.key] {
			t.Fatalf("partition key %q: not a fresh random UUID", rec.key)
		}
		keys[rec.key] = true
	}
	if retry[0].key != first[1].key || retry[1].key != first[3].key {
		t.Fatalf("a retried record changed its partition key: %+v then %+v", first, retry)
	}
	f.mu.Lock()
	got := dataOf(k.accepted)
	f.mu.Unlock()
	slices.Sort(got)
	if !slices.Equal(got, []string{"message 0", "message 1", "message 2", "message 3", "message 4", "message 5"}) {
		t.Fatalf("Kinesis holds %q: each message exactly once expected", got)
	}
}

// TestKinesisSkipsRecordsTooLargeForKinesis: a message above Kinesis's
// 1 MiB record limit would fail its batch forever; it is skipped, said so,
// and not counted.
func TestKinesisSkipsRecordsTooLargeForKinesis(t *testing.T) {
	k := &kinesisService{}
	f := newAWSFake(t, "kinesis", k.answer)
	r := newAWSRig(t, export.Options{AWS: export.AWSOptions{Endpoints: map[string]string{export.ServiceKinesis: f.url()}}})
	r.stream("s")
	r.append("s", payload(0), make([]byte, 1<<20), payload(2))
	r.export("s", map[string]any{"kinesis": []any{map[string]any{"identifier": "k", "kinesisStreamName": "cloud-stream"}}})
	s := r.waitStatus("s", func(s export.Status) bool { return s.LastExportedSequenceNumber == 2 })
	if s.ExportedMessagesCount != 2 || !strings.Contains(s.ErrorMessage, "message 1") || !strings.Contains(s.ErrorMessage, "skipped") {
		t.Fatalf("status %+v", s)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(k.accepted) != 2 || k.accepted[0].data != "message 0" || k.accepted[1].data != "message 2" {
		t.Fatalf("Kinesis holds %+v", k.accepted)
	}
}
