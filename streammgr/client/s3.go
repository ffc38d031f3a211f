package client

import "encoding/json"

// The S3 export (v1's S3ExportTaskExecutorConfig; AWS IoT Greengrass Core
// 1.11): a stream with one carries S3ExportTaskDefinition messages, JSON
// encoded (MarshalTask), each naming a local file the stream manager
// uploads to S3; its progress goes to an optional status stream as JSON
// StatusMessages (ParseStatusMessage).

// StatusLevel is a status stream's verbosity: statuses of a level up to
// it are written.
type StatusLevel int

// v1's StatusLevel values.
const (
	StatusLevelError StatusLevel = 0
	StatusLevelWarn  StatusLevel = 1
	StatusLevelInfo  StatusLevel = 2
	StatusLevelDebug StatusLevel = 3
	StatusLevelTrace StatusLevel = 4
)

// Level returns a pointer to l, for StatusConfig.StatusLevel.
func Level(l StatusLevel) *StatusLevel { return &l }

// StatusConfig names an S3 export's status stream (create it first) and
// its verbosity; a nil StatusLevel leaves the server's default, INFO.
type StatusConfig struct {
	StatusLevel      *StatusLevel `cbor:"statusLevel,omitempty"`
	StatusStreamName string       `cbor:"statusStreamName,omitempty"`
}

// S3ExportTaskExecutorConfig is v1's S3ExportTaskExecutorConfig; zero
// numbers leave the server's defaults (multipart above 5 MiB, priority
// 10, the lowest).
type S3ExportTaskExecutorConfig struct {
	Identifier                           string        `cbor:"identifier"`
	SizeThresholdForMultipartUploadBytes int64         `cbor:"sizeThresholdForMultipartUploadBytes,omitempty"`
	Priority                             int64         `cbor:"priority,omitempty"`
	Disabled                             bool          `cbor:"disabled,omitempty"`
	StatusConfig                         *StatusConfig `cbor:"statusConfig,omitempty"`
}

// S3ExportTaskDefinition is one upload: InputURL is a file:// URL of a
// local file, Key may hold !{timestamp:yyyy/MM/dd} expressions, and
// UserMetadata becomes the object's metadata (without "x-amz-meta-").
type S3ExportTaskDefinition struct {
	InputURL     string         `json:"inputUrl"`
	Bucket       string         `json:"bucket"`
	Key          string         `json:"key"`
	UserMetadata map[string]any `json:"userMetadata,omitempty"`
}

// MarshalTask encodes a task as the payload to append, as v1's
// Util.validate_and_serialize_to_json_bytes does.
func MarshalTask(t S3ExportTaskDefinition) ([]byte, error) { return json.Marshal(t) }

// EventType is what a StatusMessage is about.
type EventType int

// EventTypeS3Task is an S3 export task's status.
const EventTypeS3Task EventType = 0

// EventStatus is v1's Status of an event (named apart from the protocol's
// Status).
type EventStatus int

// v1's Status values.
const (
	EventSuccess    EventStatus = 0
	EventFailure    EventStatus = 1
	EventInProgress EventStatus = 2
	EventWarning    EventStatus = 3
	EventCanceled   EventStatus = 4
)

// StatusContext says which stream, export and message a status is about.
type StatusContext struct {
	S3ExportTaskDefinition *S3ExportTaskDefinition `json:"s3ExportTaskDefinition,omitempty"`
	ExportIdentifier       string                  `json:"exportIdentifier,omitempty"`
	StreamName             string                  `json:"streamName,omitempty"`
	SequenceNumber         int64                   `json:"sequenceNumber"`
}

// StatusMessage is one message of a status stream.
type StatusMessage struct {
	EventType        EventType      `json:"eventType"`
	StatusLevel      StatusLevel    `json:"statusLevel"`
	Status           EventStatus    `json:"status"`
	StatusContext    *StatusContext `json:"statusContext,omitempty"`
	Message          string         `json:"message,omitempty"`
	TimestampEpochMs int64          `json:"timestampEpochMs,omitempty"`
}

// ParseStatusMessage decodes a status stream message's payload.
func ParseStatusMessage(payload []byte) (StatusMessage, error) {
	var m StatusMessage
	err := json.Unmarshal(payload, &m)
	return m, err
}
