package export

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"

	"github.com/evergreen-edge/evergreen/streammgr/store"
)

// Kinesis PutRecords limits (Kinesis Data Streams API reference).
const (
	kinesisMaxRecords      = 500
	kinesisMaxRequestBytes = 5 << 20
	// kinesisMaxRecordBytes bounds one record's data and partition key.
	kinesisMaxRecordBytes = 1 << 20
)

func (c KinesisConfig) common() common {
	return common{Identifier: c.Identifier, BatchSize: c.BatchSize, BatchInterval: c.BatchInterval,
		Priority: c.Priority, StartSequenceNumber: c.StartSequenceNumber, Disabled: c.Disabled}
}

func (c KinesisConfig) newSender(e *exporter) sender { return &kinesisSender{e: e, cfg: c} }

// kinesisSender puts a batch with PutRecords, each message one record
// under a random UUID partition key (v1: "a unique, random UUID as a
// partition key for each record"), kept for the record's retries. Records
// that fail in an accepted request (FailedRecordCount) are retried alone.
// PutRecords is a JSON 1.1 call (Kinesis_20131202.PutRecords at / on
// kinesis.<region>.amazonaws.com).
type kinesisSender struct {
	e     *exporter
	cfg   KinesisConfig
	batch partial
	keys  map[int64]string
}

type putRecordsRequest struct {
	StreamName string            `json:"StreamName"`
	Records    []putRecordsEntry `json:"Records"`
}

type putRecordsEntry struct {
	Data         []byte `json:"Data"` // blob: standard base64
	PartitionKey string `json:"PartitionKey"`
}

type putRecordsResponse struct {
	FailedRecordCount int `json:"FailedRecordCount"`
	// Records answer the request's in order: a sequence number when
	// accepted, an error code when not.
	Records []struct {
		SequenceNumber string `json:"SequenceNumber"`
		ShardID        string `json:"ShardId"`
		ErrorCode      string `json:"ErrorCode"`
		ErrorMessage   string `json:"ErrorMessage"`
	} `json:"Records"`
}

func (*kinesisSender) close()         {}
func (*kinesisSender) chargesItself() {}

func (s *kinesisSender) send(ctx context.Context, msgs []store.Message) error {
	pending, fresh := s.batch.pending(msgs)
	if fresh {
		s.keys = map[int64]string{}
	}
	var todo []store.Message
	for _, m := range pending {
		key, ok := s.keys[m.Seq]
		if !ok {
			key = randomUUID()
			s.keys[m.Seq] = key
		}
		if len(m.Payload)+len(key) > kinesisMaxRecordBytes {
			s.batch.take(m.Seq)
			s.e.refuse(m.Seq, fmt.Sprintf("message %d (%d bytes) is larger than a Kinesis record (1 MiB): skipped", m.Seq, len(m.Payload)))
			continue
		}
		todo = append(todo, m)
	}
	for len(todo) > 0 {
		n, size := 0, 0
		for n < len(todo) && n < kinesisMaxRecords {
			if sz := len(todo[n].Payload) + len(s.keys[todo[n].Seq]); n == 0 || size+sz <= kinesisMaxRequestBytes {
				size += sz
				n++
				continue
			}
			break
		}
		chunk := todo[:n]
		todo = todo[n:]
		if err := s.put(ctx, chunk); err != nil {
			return err
		}
	}
	return nil
}

// put sends one PutRecords request and takes the records it accepted.
func (s *kinesisSender) put(ctx context.Context, chunk []store.Message) error {
	req := putRecordsRequest{StreamName: s.cfg.StreamName, Records: make([]putRecordsEntry, len(chunk))}
	for i, m := range chunk {
		req.Records[i] = putRecordsEntry{Data: m.Payload, PartitionKey: s.keys[m.Seq]}
	}
	var out putRecordsResponse
	op := awsOperation{service: ServiceKinesis, path: "/", name: "PutRecords", target: "Kinesis_20131202.PutRecords"}
	if err := s.e.callAWS(ctx, op, req, &out); err != nil {
		return fmt.Errorf("%w (stream %q)", err, s.cfg.StreamName)
	}
	if len(out.Records) != len(chunk) {
		return fmt.Errorf("kinesis PutRecords to %q: %d results for %d records", s.cfg.StreamName, len(out.Records), len(chunk))
	}
	failed, first := 0, ""
	for i, r := range out.Records {
		if r.ErrorCode == "" && r.SequenceNumber != "" {
			s.batch.take(chunk[i].Seq)
			continue
		}
		if failed++; first == "" {
			first = fmt.Sprintf("message %d: %s: %s", chunk[i].Seq, r.ErrorCode, r.ErrorMessage)
		}
	}
	if failed > 0 {
		return fmt.Errorf("kinesis PutRecords to %q: %d of %d records failed (first %s)", s.cfg.StreamName, failed, len(chunk), first)
	}
	return nil
}

// randomUUID is a random (version 4) UUID.
func randomUUID() string {
	var b [16]byte
	rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}
