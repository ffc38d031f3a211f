package client

import (
	"reflect"
	"testing"

	"github.com/evergreen-edge/evergreen/streammgr/protocol"
	"github.com/fxamacker/cbor/v2"
)

// An S3 export goes on the wire under v1's keys, unset fields absent (the
// server's defaults), and reads back the same.
func TestExportDefinitionS3(t *testing.T) {
	d := &MessageStreamDefinition{Name: "s", ExportDefinition: &ExportDefinition{S3TaskExecutor: []S3ExportTaskExecutorConfig{
		{Identifier: "up", StatusConfig: &StatusConfig{StatusLevel: Level(StatusLevelError), StatusStreamName: "st"}},
		{Identifier: "big", SizeThresholdForMultipartUploadBytes: 8 << 20, Priority: 2, Disabled: true},
	}}}
	w, err := d.wire()
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := cbor.Unmarshal(w.ExportDefinition, &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"s3TaskExecutor": []any{
		map[any]any{"identifier": "up", "statusConfig": map[any]any{"statusLevel": uint64(0), "statusStreamName": "st"}},
		map[any]any{"identifier": "big", "sizeThresholdForMultipartUploadBytes": uint64(8 << 20), "priority": uint64(2), "disabled": true},
	}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("wire %#v\nwant %#v", got, want)
	}
	back, err := definitionOf(&protocol.MessageStreamDefinition{Name: "s", ExportDefinition: w.ExportDefinition})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back.ExportDefinition.S3TaskExecutor, d.ExportDefinition.S3TaskExecutor) {
		t.Fatalf("read back %+v", back.ExportDefinition.S3TaskExecutor)
	}
}

func TestS3TaskAndStatusJSON(t *testing.T) {
	b, err := MarshalTask(S3ExportTaskDefinition{InputURL: "file:///data/a.bin", Bucket: "b-1", Key: "k/!{timestamp:yyyy}/a"})
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"inputUrl":"file:///data/a.bin","bucket":"b-1","key":"k/!{timestamp:yyyy}/a"}`; string(b) != want {
		t.Fatalf("task %s, want %s", b, want)
	}
	// As the server writes a status (v1's keys, enums as integers).
	m, err := ParseStatusMessage([]byte(`{"eventType":0,"statusLevel":0,"status":1,"statusContext":{"s3ExportTaskDefinition":{"inputUrl":"file:///x","bucket":"b-1","key":"k"},"exportIdentifier":"up","streamName":"s","sequenceNumber":7},"message":"bucket is required","timestampEpochMs":1700000000000}`))
	if err != nil {
		t.Fatal(err)
	}
	want := StatusMessage{EventType: EventTypeS3Task, StatusLevel: StatusLevelError, Status: EventFailure,
		StatusContext: &StatusContext{S3ExportTaskDefinition: &S3ExportTaskDefinition{InputURL: "file:///x", Bucket: "b-1", Key: "k"},
			ExportIdentifier: "up", StreamName: "s", SequenceNumber: 7},
		Message: "bucket is required", TimestampEpochMs: 1700000000000}
	if !reflect.DeepEqual(m, want) {
		t.Fatalf("status %+v", m)
	}
}
