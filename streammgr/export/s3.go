package export

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/evergreen-edge/evergreen/services/kit/errdefs"
	"github.com/evergreen-edge/evergreen/streammgr/protocol"
	"github.com/evergreen-edge/evergreen/streammgr/store"
)

// The S3 export (v1's S3ExportTaskExecutorConfig, key "s3TaskExecutor"):
// each message of the stream is a JSON S3ExportTaskDefinition naming a
// local file, a bucket and a key; the file is uploaded there, and each
// task's progress goes to an optional status stream as JSON
// StatusMessages (the shapes of v1's SDK data model: camelCase keys, enums
// as their integers).
//
// A task that cannot succeed as written (malformed JSON, a bad field, an
// unreadable file, a bucket S3 says does not exist) gets a Failure status
// and the export moves on; anything else (S3 or the network down, 5xx,
// credentials) is retried with the export's backoff and nothing is
// skipped. A multipart upload survives retries and restarts: its upload
// ID is kept beside the export's progress and the parts S3 already holds
// are not sent again; an upload the export gives up on is aborted.

// Limits and defaults of S3ExportTaskExecutorConfig and of S3.
const (
	// DefaultS3MinPartSize is S3's smallest part (but the last) and v1's
	// default and minimum for the multipart part size and threshold.
	DefaultS3MinPartSize = 5 << 20
	// DefaultS3MultipartThreshold is sizeThresholdForMultipartUploadBytes
	// when not given (v1's minimum).
	DefaultS3MultipartThreshold = 5 << 20
	// s3MaxParts and s3MaxObject are S3's limits on one object.
	s3MaxParts  = 10000
	s3MaxObject = 5 << 40
	// minUploadRate bounds how long one request carrying n bytes may
	// take: DefaultRequestTimeout plus n at this rate (bytes/s), so that a
	// connection S3 stopped answering on is noticed.
	minUploadRate = 16 << 10
)

// StatusLevel is a status stream's verbosity (v1's StatusLevel); a status
// is written when its level is at most the configured one.
type StatusLevel int

// Status levels (v1's values).
const (
	StatusLevelError StatusLevel = 0
	StatusLevelWarn  StatusLevel = 1
	StatusLevelInfo  StatusLevel = 2
	StatusLevelDebug StatusLevel = 3
	StatusLevelTrace StatusLevel = 4
)

// S3Config is one S3 export. v1's config has no batchSize,
// batchIntervalMillis or startSequenceNumber: every task is uploaded on
// its own, from the stream's start.
type S3Config struct {
	Identifier string
	// MultipartThreshold is sizeThresholdForMultipartUploadBytes: a file
	// larger than it (and than Options.S3MinPartSize) is uploaded in
	// parts.
	MultipartThreshold int64
	Priority           int64
	Disabled           bool
	// StatusStream is statusConfig.statusStreamName, "" for no statuses.
	StatusStream string
	// StatusLevel is statusConfig.statusLevel (INFO when not given, as in
	// v1's samples).
	StatusLevel StatusLevel
}

type wireStatusConfig struct {
	StatusLevel      *int64  `cbor:"statusLevel"`
	StatusStreamName *string `cbor:"statusStreamName"`
}

type wireS3 struct {
	Identifier                           *string           `cbor:"identifier"`
	SizeThresholdForMultipartUploadBytes *int64            `cbor:"sizeThresholdForMultipartUploadBytes"`
	Priority                             *int64            `cbor:"priority"`
	Disabled                             *bool             `cbor:"disabled"`
	StatusConfig                         *wireStatusConfig `cbor:"statusConfig"`
}

// parse checks the i-th s3TaskExecutor config.
func (w wireS3) parse(i int, seen map[string]bool) (S3Config, error) {
	field := func(f string) string { return fmt.Sprintf("definition.exportDefinition.s3TaskExecutor[%d].%s", i, f) }
	cm, err := wireCommon{Identifier: w.Identifier, Priority: w.Priority, Disabled: w.Disabled}.check(field, seen)
	if err != nil {
		return S3Config{}, err
	}
	c := S3Config{Identifier: cm.Identifier, MultipartThreshold: DefaultS3MultipartThreshold, Priority: cm.Priority,
		Disabled: cm.Disabled, StatusLevel: StatusLevelInfo}
	if p := w.SizeThresholdForMultipartUploadBytes; p != nil {
		if *p < DefaultS3MultipartThreshold {
			return c, errdefs.InvalidArgument(field("sizeThresholdForMultipartUploadBytes"), "%d is below %d", *p, DefaultS3MultipartThreshold)
		}
		c.MultipartThreshold = *p
	}
	if sc := w.StatusConfig; sc != nil {
		if p := sc.StatusLevel; p != nil {
			if *p < int64(StatusLevelError) || *p > int64(StatusLevelTrace) {
				return c, errdefs.InvalidArgument(field("statusConfig.statusLevel"), "%d is outside ERROR (0) .. TRACE (4)", *p)
			}
			c.StatusLevel = StatusLevel(*p)
		}
		if p := sc.StatusStreamName; p != nil {
			if err := protocol.CheckName(field("statusConfig.statusStreamName"), *p); err != nil {
				_, msg := protocol.StatusOf(err)
				return c, errdefs.InvalidArgument(field("statusConfig.statusStreamName"), "%s", msg)
			}
			c.StatusStream = *p
		}
	}
	return c, nil
}

func (c S3Config) common() common {
	// One task per batch: each is its own upload with its own status.
	return common{Identifier: c.Identifier, BatchSize: 1, Priority: c.Priority, Disabled: c.Disabled}
}

func (c S3Config) newSender(e *exporter) sender {
	s := &s3Sender{e: e, cfg: c, cur: -1}
	if c.StatusStream == e.stream {
		// Each status would be read back as a malformed task, whose
		// Failure status would be read back too, without end.
		e.log.Error("S3 export: statusStreamName is the exported stream itself; no statuses are written", "statusStream", c.StatusStream)
		s.cfg.StatusStream = ""
	}
	s.loadUpload()
	return s
}

// v1's EventType, Status values of a StatusMessage.
const (
	eventS3Task = 0

	statusSuccess    = 0
	statusFailure    = 1
	statusInProgress = 2
	statusWarning    = 3
)

// s3Task is an S3ExportTaskDefinition as the stream carries it; it is
// echoed in the statuses with the fields given (v1's SDK drops unset ones).
type s3Task struct {
	InputURL     *string         `json:"inputUrl,omitempty"`
	Bucket       *string         `json:"bucket,omitempty"`
	Key          *string         `json:"key,omitempty"`
	UserMetadata json.RawMessage `json:"userMetadata,omitempty"`
}

// statusMessage is v1's StatusMessage, keys in its SDK's order.
type statusMessage struct {
	EventType        int           `json:"eventType"`
	StatusLevel      StatusLevel   `json:"statusLevel"`
	Status           int           `json:"status"`
	StatusContext    statusContext `json:"statusContext"`
	Message          string        `json:"message"`
	TimestampEpochMs int64         `json:"timestampEpochMs"`
}

type statusContext struct {
	S3ExportTaskDefinition *s3Task `json:"s3ExportTaskDefinition,omitempty"`
	ExportIdentifier       string  `json:"exportIdentifier"`
	StreamName             string  `json:"streamName"`
	SequenceNumber         int64   `json:"sequenceNumber"`
}

// upload is a task checked and resolved.
type upload struct {
	path     string
	bucket   string
	key      string
	metadata map[string]string
}

func (u upload) dest() string { return "s3://" + u.bucket + "/" + u.key }

// taskError is a task that cannot succeed as written: it gets a Failure
// status and is skipped.
type taskError struct{ msg string }

func (e *taskError) Error() string { return e.msg }

func taskErrorf(format string, args ...any) error { return &taskError{fmt.Sprintf(format, args...)} }

// parseTask decodes and checks a task; placeholders in the key resolve
// with t.
func parseTask(payload []byte, t time.Time) (*s3Task, upload, error) {
	var u upload
	var task s3Task
	if err := json.Unmarshal(payload, &task); err != nil {
		return nil, u, taskErrorf("the message is not a JSON S3ExportTaskDefinition: %v", err)
	}
	if string(task.UserMetadata) == "null" {
		task.UserMetadata = nil
	}
	if task.InputURL == nil || *task.InputURL == "" {
		return &task, u, taskErrorf("inputUrl is required")
	}
	in, err := url.Parse(*task.InputURL)
	if err != nil || in.Scheme != "file" || (in.Host != "" && in.Host != "localhost") || !strings.HasPrefix(in.Path, "/") {
		return &task, u, taskErrorf("inputUrl %q is not a file URL of an absolute path (file:///path/to/file)", *task.InputURL)
	}
	u.path = in.Path
	if task.Bucket == nil {
		return &task, u, taskErrorf("bucket is required")
	}
	if err := checkBucket(*task.Bucket); err != nil {
		return &task, u, err
	}
	u.bucket = *task.Bucket
	if task.Key == nil {
		return &task, u, taskErrorf("key is required")
	}
	if u.key, err = resolveKey(*task.Key, t); err != nil {
		return &task, u, err
	}
	if task.UserMetadata != nil {
		var raw map[string]json.RawMessage
		if err := json.Unmarshal(task.UserMetadata, &raw); err != nil {
			return &task, u, taskErrorf("userMetadata is not a JSON object")
		}
		u.metadata = make(map[string]string, len(raw))
		for k, v := range raw {
			if !headerToken(k) {
				return &task, u, taskErrorf("userMetadata key %q is not an HTTP header name", k)
			}
			var s string
			switch {
			case json.Unmarshal(v, &s) == nil:
			case len(v) > 0 && (v[0] == '-' || v[0] >= '0' && v[0] <= '9' || v[0] == 't' || v[0] == 'f'):
				s = string(v) // a number or a boolean, as written
			default:
				return &task, u, taskErrorf("userMetadata.%s is not a string, number or boolean", k)
			}
			for i := 0; i < len(s); i++ {
				if s[i] < 0x20 || s[i] > 0x7e {
					// S3 takes US-ASCII only in metadata headers.
					return &task, u, taskErrorf("userMetadata.%s has a byte outside printable US-ASCII at %d", k, i)
				}
			}
			u.metadata[k] = s
		}
	}
	return &task, u, nil
}

// checkBucket applies v1's bucket rule: 3..63 characters, dot-separated
// labels of lower-case letters, digits and hyphens that start and end
// with a letter or digit, and not an IP address.
func checkBucket(b string) error {
	if len(b) < 3 || len(b) > 63 {
		return taskErrorf("bucket %q is not 3..63 characters long", b)
	}
	digits := true
	for _, l := range strings.Split(b, ".") {
		if l == "" || l[0] == '-' || l[len(l)-1] == '-' {
			return taskErrorf("bucket %q has an empty label or one starting or ending with '-'", b)
		}
		for i := 0; i < len(l); i++ {
			c := l[i]
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
				return taskErrorf("bucket %q has a character outside a-z, 0-9, '.', '-'", b)
			}
			if c < '0' || c > '9' {
				digits = false
			}
		}
	}
	if digits {
		return taskErrorf("bucket %q is formatted as an IP address", b)
	}
	return nil
}

// headerToken reports an HTTP header field name (RFC 9110 token).
func headerToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return false
		}
	}
	return true
}

// keyForbidden are the characters v1's key pattern refuses outside an
// expression.
const keyForbidden = "\\{} %`[]\"'><~#^?|"

// resolveKey checks a key against v1's pattern and replaces its
// !{timestamp:PATTERN} expressions (PATTERN: letters and '/', Java
// DateTimeFormatter letters) with t in UTC. v1 resolves at upload time;
// the task's ingest time is used here so that a task sent again after a
// failure or a restart lands on the same key instead of a second object.
func resolveKey(key string, t time.Time) (string, error) {
	if key == "" {
		return "", taskErrorf("key is empty")
	}
	var b strings.Builder
	for i := 0; i < len(key); {
		if strings.HasPrefix(key[i:], "!{") {
			end := strings.IndexByte(key[i:], '}')
			if end < 0 {
				return "", taskErrorf("key %q: the expression at byte %d has no '}'", key, i)
			}
			name, pattern, ok := strings.Cut(key[i+2:i+end], ":")
			if !ok || name != "timestamp" {
				return "", taskErrorf("key %q: %q is not a !{timestamp:PATTERN} expression", key, key[i:i+end+1])
			}
			s, err := formatJavaTime(pattern, t.UTC())
			if err != nil {
				return "", taskErrorf("key %q: %v", key, err)
			}
			b.WriteString(s)
			i += end + 1
			continue
		}
		if c := key[i]; strings.IndexByte(keyForbidden, c) >= 0 || c < 0x20 || c == 0x7f {
			return "", taskErrorf("key %q has the character %q at byte %d, which S3 export keys may not contain", key, rune(c), i)
		}
		b.WriteByte(key[i])
		i++
	}
	if b.Len() > 1024 {
		return "", taskErrorf("key %q is %d bytes long once resolved; S3 allows 1024", key, b.Len())
	}
	return b.String(), nil
}

// formatJavaTime formats t with the date and time letters of Java's
// DateTimeFormatter that v1's key expressions can hold (letters and '/').
func formatJavaTime(pattern string, t time.Time) (string, error) {
	if pattern == "" {
		return "", errors.New("empty timestamp pattern")
	}
	var b strings.Builder
	num := func(v, n int) { fmt.Fprintf(&b, "%0*d", n, v) }
	for i := 0; i < len(pattern); {
		c := pattern[i]
		n := 1
		for i+n < len(pattern) && pattern[i+n] == c {
			n++
		}
		i += n
		tooMany := func(limit int) error {
			if n > limit {
				return fmt.Errorf("too many pattern letters %q in %q", strings.Repeat(string(c), n), pattern)
			}
			return nil
		}
		var err error
		switch c {
		case '/':
			b.WriteString(strings.Repeat("/", n))
		case 'y', 'u':
			if n == 2 {
				num(t.Year()%100, 2)
			} else {
				num(t.Year(), n)
			}
		case 'M', 'L':
			switch n {
			case 1, 2:
				num(int(t.Month()), n)
			case 3:
				b.WriteString(t.Month().String()[:3])
			case 4:
				b.WriteString(t.Month().String())
			case 5:
				b.WriteString(t.Month().String()[:1])
			default:
				err = tooMany(5)
			}
		case 'd', 'H', 'm', 's', 'h', 'k', 'K':
			if err = tooMany(2); err == nil {
				num(clockField(c, t), n)
			}
		case 'D':
			if err = tooMany(3); err == nil {
				num(t.YearDay(), n)
			}
		case 'S':
			if err = tooMany(9); err == nil {
				b.WriteString(fmt.Sprintf("%09d", t.Nanosecond())[:n])
			}
		case 'E':
			switch {
			case n <= 3:
				b.WriteString(t.Weekday().String()[:3])
			case n == 4:
				b.WriteString(t.Weekday().String())
			case n == 5:
				b.WriteString(t.Weekday().String()[:1])
			default:
				err = tooMany(5)
			}
		case 'a':
			if err = tooMany(1); err == nil && t.Hour() < 12 {
				b.WriteString("AM")
			} else if err == nil {
				b.WriteString("PM")
			}
		default:
			err = fmt.Errorf("pattern letter %q in %q is not supported (y u M L d D H h k K m s S E a and '/' are)", c, pattern)
		}
		if err != nil {
			return "", err
		}
	}
	return b.String(), nil
}

// clockField is the value of a one- or two-digit pattern letter.
func clockField(c byte, t time.Time) int {
	switch c {
	case 'd':
		return t.Day()
	case 'H':
		return t.Hour()
	case 'h':
		return (t.Hour()+11)%12 + 1
	case 'k':
		return (t.Hour()+23)%24 + 1
	case 'K':
		return t.Hour() % 12
	case 'm':
		return t.Minute()
	default:
		return t.Second()
	}
}

// multipartState is the multipart upload in flight, kept in its own
// export state file so that a restart resumes it.
type multipartState struct {
	Seq      int64  `json:"sequenceNumber"`
	UploadID string `json:"uploadId"`
	Bucket   string `json:"bucket"`
	Key      string `json:"key"`
	Path     string `json:"path"`
	Size     int64  `json:"size"`
	ModTime  int64  `json:"modTimeNanos"`
	PartSize int64  `json:"partSize"`
}

// s3Sender uploads one task per send.
type s3Sender struct {
	e   *exporter
	cfg S3Config
	cl  *s3Client

	// The task being worked on: statuses once per task, not per attempt.
	cur       int64
	task      *s3Task
	up        upload
	taskErr   error
	announced bool
	warned    bool

	mp *multipartState // persisted while non-nil

	statusErr string // the last status append failure, logged once
}

// uploadStateID names the multipart state file: '/' cannot occur in an
// identifier, so it never names another export's progress.
func (s *s3Sender) uploadStateID() string { return s.cfg.Identifier + "/s3-multipart-upload" }

func (s *s3Sender) loadUpload() {
	b, err := s.e.m.o.Store.ReadExportState(s.e.stream, s.uploadStateID())
	if err != nil || len(b) == 0 {
		return
	}
	var st multipartState
	if err := json.Unmarshal(b, &st); err != nil || st.UploadID == "" {
		s.e.log.Warn("S3 multipart upload state unreadable; the upload starts afresh", "err", err)
		return
	}
	s.mp = &st
}

func (s *s3Sender) saveUpload(st *multipartState) {
	var b []byte
	if st != nil {
		b, _ = json.Marshal(st)
	}
	if st == nil && s.mp == nil {
		return
	}
	s.mp = st
	if err := s.e.m.o.Store.WriteExportState(s.e.stream, s.uploadStateID(), b); err != nil && !errors.Is(err, store.ErrNotFound) {
		// Only resumability is lost: a restart uploads the file again.
		s.e.log.Warn("S3 multipart upload state not saved", "err", err)
	}
}

func (s *s3Sender) close() {}

// chargesItself: the bandwidth limit is charged the file bytes uploaded,
// not the task's few.
func (*s3Sender) chargesItself() {}

func (s *s3Sender) client(ctx context.Context) (*s3Client, error) {
	if s.cl != nil {
		return s.cl, nil
	}
	m := s.e.m
	cfg, err := m.awsConfig(ctx)
	if err != nil {
		return nil, fmt.Errorf("AWS configuration: %w", err)
	}
	endpoint := ""
	if u := m.awsEndpoint(ServiceS3); u != nil {
		endpoint = *u
	}
	// Options.Client's transport without its overall timeout: an upload
	// may take longer than any fixed one, and each request's context has
	// a deadline scaled by its size (bodyTimeout). A redirect is S3
	// naming another region or endpoint: an error, not followed.
	hc := &http.Client{Transport: m.o.Client.Transport,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	cl, err := newS3Client(cfg, endpoint, m.o.AWS.S3ForcePathStyle, hc)
	if err != nil {
		return nil, fmt.Errorf("AWS configuration: %w", err)
	}
	s.cl = cl
	return cl, nil
}

func (s *s3Sender) send(ctx context.Context, msgs []store.Message) error {
	for _, m := range msgs {
		if err := s.sendOne(ctx, m); err != nil {
			return err
		}
	}
	return nil
}

func (s *s3Sender) sendOne(ctx context.Context, m store.Message) error {
	if s.cur != m.Seq {
		s.cur, s.announced, s.warned = m.Seq, false, false
		s.task, s.up, s.taskErr = parseTask(m.Payload, time.UnixMilli(m.Time))
	}
	if s.taskErr != nil {
		s.fail(ctx, m, s.taskErr)
		return nil
	}
	if !s.announced {
		s.announced = true
		s.status(m, StatusLevelInfo, statusInProgress, "Uploading "+*s.task.InputURL+" to "+s.up.dest())
	}
	size, parts, err := s.upload(ctx, m)
	if err == nil {
		msg := fmt.Sprintf("Uploaded %s to %s (%d bytes)", *s.task.InputURL, s.up.dest(), size)
		if parts > 0 {
			msg = fmt.Sprintf("Uploaded %s to %s (%d bytes in %d parts)", *s.task.InputURL, s.up.dest(), size, parts)
		}
		s.status(m, StatusLevelInfo, statusSuccess, msg)
		return nil
	}
	if ctx.Err() != nil {
		return err
	}
	var te *taskError
	if errors.As(err, &te) {
		s.fail(ctx, m, err)
		return nil
	}
	if !s.warned {
		s.warned = true
		s.status(m, StatusLevelWarn, statusWarning, fmt.Sprintf("Uploading to %s failed; retrying: %v", s.up.dest(), err))
	}
	return err
}

// fail reports a task that cannot succeed and drops any upload of it.
func (s *s3Sender) fail(ctx context.Context, m store.Message, err error) {
	if s.mp != nil && s.mp.Seq == m.Seq {
		s.abort(ctx)
	}
	msg := err.Error()
	s.e.refuse(m.Seq, fmt.Sprintf("the S3 task at sequence number %d failed and was skipped: %s", m.Seq, msg))
	s.status(m, StatusLevelError, statusFailure, msg)
}

// status appends a StatusMessage when the configured level asks for it.
// A status that cannot be written (no such stream, a full one) is logged,
// never retried: the export does not wait on its status stream.
func (s *s3Sender) status(m store.Message, level StatusLevel, status int, msg string) {
	if s.cfg.StatusStream == "" || level > s.cfg.StatusLevel {
		return
	}
	b, err := json.Marshal(statusMessage{EventType: eventS3Task, StatusLevel: level, Status: status,
		StatusContext: statusContext{S3ExportTaskDefinition: s.task, ExportIdentifier: s.cfg.Identifier,
			StreamName: s.e.stream, SequenceNumber: m.Seq},
		Message: msg, TimestampEpochMs: s.e.m.o.Now().UnixMilli()})
	if err == nil {
		_, err = s.e.m.o.Store.Append(s.cfg.StatusStream, b)
	}
	if err != nil {
		if err.Error() != s.statusErr {
			s.e.log.Warn("S3 export status not written", "statusStream", s.cfg.StatusStream, "err", err)
		}
		s.statusErr = err.Error()
		return
	}
	s.statusErr = ""
}

// upload sends the current task's file; parts is 0 for a single PUT.
func (s *s3Sender) upload(ctx context.Context, m store.Message) (size int64, parts int, err error) {
	cl, err := s.client(ctx)
	if err != nil {
		return 0, 0, err
	}
	f, err := os.Open(s.up.path)
	if err != nil {
		return 0, 0, taskErrorf("inputUrl %s: %v", *s.task.InputURL, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return 0, 0, taskErrorf("inputUrl %s: %v", *s.task.InputURL, err)
	}
	if !fi.Mode().IsRegular() {
		return 0, 0, taskErrorf("inputUrl %s is not a regular file", *s.task.InputURL)
	}
	size = fi.Size()
	if size > s3MaxObject {
		return size, 0, taskErrorf("inputUrl %s is %d bytes; an S3 object holds at most %d", *s.task.InputURL, size, int64(s3MaxObject))
	}
	if size <= max(s.cfg.MultipartThreshold, s.e.m.s3MinPart.Load()) {
		if s.mp != nil {
			s.abort(ctx) // left by an earlier task or configuration
		}
		return size, 0, s.put(ctx, cl, f, size)
	}
	parts, err = s.multipart(ctx, cl, m, f, fi)
	return size, parts, err
}

func (s *s3Sender) put(ctx context.Context, cl *s3Client, f *os.File, size int64) error {
	sums, err := sumSection(f, 0, size, cl.signsFiles())
	if err != nil {
		return taskErrorf("inputUrl %s: %v", *s.task.InputURL, err)
	}
	body := s.newFileSection(ctx, f, 0, size)
	ctx, cancel := context.WithTimeout(ctx, bodyTimeout(size))
	defer cancel()
	err = cl.putObject(ctx, s.up.bucket, s.up.key, s.up.metadata, body, size, sums)
	return s.classify("PutObject", err, body)
}

func (s *s3Sender) multipart(ctx context.Context, cl *s3Client, m store.Message, f *os.File, fi os.FileInfo) (int, error) {
	size := fi.Size()
	want := multipartState{Seq: m.Seq, Bucket: s.up.bucket, Key: s.up.key, Path: s.up.path, Size: size,
		ModTime: fi.ModTime().UnixNano()}
	done := map[int32]s3Part{}
	if st := s.mp; st != nil {
		resume := *st
		resume.UploadID, resume.PartSize = "", 0
		if resume != want {
			// Another task's, or this file changed since: it cannot be
			// completed as this upload.
			s.abort(ctx)
		} else if err := s.listParts(ctx, cl, done); err != nil {
			if !isCode(err, "NoSuchUpload") {
				return 0, s.classify("ListParts", err, nil)
			}
			s.e.log.Info("S3 multipart upload gone; starting again", "uploadId", st.UploadID)
			s.saveUpload(nil)
		}
	}
	if s.mp == nil {
		want.PartSize = max(s.e.m.s3MinPart.Load(), (size+s3MaxParts-1)/s3MaxParts)
		cctx, cancel := context.WithTimeout(ctx, DefaultRequestTimeout)
		id, err := cl.createMultipartUpload(cctx, s.up.bucket, s.up.key, s.up.metadata)
		cancel()
		if err != nil {
			return 0, s.classify("CreateMultipartUpload", err, nil)
		}
		want.UploadID = id
		s.saveUpload(&want)
	}
	st := s.mp
	n := int32((size + st.PartSize - 1) / st.PartSize)
	for i := int32(1); i <= n; i++ {
		off := int64(i-1) * st.PartSize
		ln := min(st.PartSize, size-off)
		if p, ok := done[i]; ok && p.Size == ln {
			continue
		}
		// The part is read twice: once for its digests, then as it is
		// sent; never held in memory whole.
		sums, err := sumSection(f, off, ln, cl.signsFiles())
		if err != nil {
			return 0, s.partFailed(ctx, "UploadPart", taskErrorf("inputUrl %s: %v", *s.task.InputURL, err), nil)
		}
		body := s.newFileSection(ctx, f, off, ln)
		cctx, cancel := context.WithTimeout(ctx, bodyTimeout(ln))
		etag, err := cl.uploadPart(cctx, st.Bucket, st.Key, st.UploadID, i, body, ln, sums)
		cancel()
		if err != nil {
			return 0, s.partFailed(ctx, "UploadPart", err, body)
		}
		done[i] = s3Part{PartNumber: i, Size: ln, ETag: etag, ChecksumCRC32: sums.crc32}
	}
	completed := make([]s3Part, 0, n)
	for i := int32(1); i <= n; i++ {
		p := done[i]
		p.PartNumber = i
		completed = append(completed, p)
	}
	cctx, cancel := context.WithTimeout(ctx, DefaultRequestTimeout)
	err := cl.completeMultipartUpload(cctx, st.Bucket, st.Key, st.UploadID, completed)
	cancel()
	if err != nil {
		if isCode(err, "InvalidPart") || isCode(err, "InvalidPartOrder") || isCode(err, "EntityTooSmall") {
			// The parts S3 holds do not make this object: start again.
			s.abort(ctx)
		}
		return 0, s.partFailed(ctx, "CompleteMultipartUpload", err, nil)
	}
	s.saveUpload(nil)
	return int(n), nil
}

// partFailed classifies a failure within a multipart upload: a task
// failure aborts the upload; a vanished upload is forgotten (the next
// attempt starts a new one); anything else keeps it for the retry.
func (s *s3Sender) partFailed(ctx context.Context, op string, err error, body *fileSection) error {
	err = s.classify(op, err, body)
	var te *taskError
	switch {
	case ctx.Err() != nil:
	case errors.As(err, &te):
		s.abort(ctx)
	case isCode(err, "NoSuchUpload"):
		s.saveUpload(nil)
	}
	return err
}

// listParts adds the parts S3 holds of the upload in flight to done, a
// page (up to 1000 parts) at a time.
func (s *s3Sender) listParts(ctx context.Context, cl *s3Client, done map[int32]s3Part) error {
	st := s.mp
	for marker := int32(0); ; {
		cctx, cancel := context.WithTimeout(ctx, DefaultRequestTimeout)
		parts, next, err := cl.listParts(cctx, st.Bucket, st.Key, st.UploadID, marker)
		cancel()
		if err != nil {
			return err
		}
		for _, p := range parts {
			done[p.PartNumber] = p
		}
		if next == 0 {
			return nil
		}
		marker = next
	}
}

// abort drops the multipart upload in flight, best effort: S3 keeps
// charging for the parts of an upload neither completed nor aborted (a
// bucket lifecycle rule AbortIncompleteMultipartUpload catches those this
// misses).
func (s *s3Sender) abort(ctx context.Context) {
	st := s.mp
	if st == nil {
		return
	}
	if cl, err := s.client(ctx); err == nil {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), DefaultRequestTimeout)
		err = cl.abortMultipartUpload(cctx, st.Bucket, st.Key, st.UploadID)
		cancel()
		if err != nil && !isCode(err, "NoSuchUpload") {
			s.e.log.Warn("S3 multipart upload not aborted", "bucket", st.Bucket, "key", st.Key, "uploadId", st.UploadID, "err", err)
		}
	}
	s.saveUpload(nil)
}

// classify turns a failed request into a task failure when it is the
// task's (the local file, or an S3 answer about this bucket, key or
// object), and leaves it a retryable error otherwise.
func (s *s3Sender) classify(op string, err error, body *fileSection) error {
	var te *taskError
	if err == nil || errors.As(err, &te) {
		return err
	}
	if body != nil {
		if lerr := body.localErr(); lerr != nil {
			return taskErrorf("inputUrl %s: %v", *s.task.InputURL, lerr)
		}
	}
	var se *s3Error
	if errors.As(err, &se) {
		switch se.Code {
		case "NoSuchBucket", "InvalidBucketName", "KeyTooLongError", "MetadataTooLarge", "EntityTooLarge", "InvalidArgument":
			return taskErrorf("%s %s: %s: %s", op, s.up.dest(), se.Code, se.Message)
		}
	}
	return fmt.Errorf("%s %s: %w", op, s.up.dest(), err)
}

func isCode(err error, code string) bool { return s3Code(err) == code }

func bodyTimeout(n int64) time.Duration {
	return DefaultRequestTimeout + time.Duration(n/minUploadRate)*time.Second
}

// fileSection is a part of the file as a request body. It tells a
// failure to read the file (the task's) from one to send it (S3's or the
// network's): the HTTP client reports both alike. It charges the
// bandwidth limit each byte once, as it is read to be sent (the digests'
// read before is local), however often it is read.
type fileSection struct {
	*io.SectionReader
	ctx     context.Context
	e       *exporter
	charged int64 // bytes from the section's start already charged

	mu  sync.Mutex
	err error
}

var errShrunk = errors.New("the file shrank while it was being uploaded")

func (s *s3Sender) newFileSection(ctx context.Context, f *os.File, off, n int64) *fileSection {
	return &fileSection{SectionReader: io.NewSectionReader(f, off, n), ctx: ctx, e: s.e}
}

func (f *fileSection) Read(p []byte) (int, error) {
	pos, _ := f.Seek(0, io.SeekCurrent)
	if end := pos + int64(len(p)); end > f.charged {
		// Charged before it is read: at most one buffer ahead of the wire.
		if n := min(end, f.Size()) - max(pos, f.charged); n > 0 {
			if err := f.e.charge(f.ctx, int(n)); err != nil {
				return 0, err
			}
		}
		f.charged = max(f.charged, min(end, f.Size()))
	}
	n, err := f.SectionReader.Read(p)
	if err != nil {
		var lerr error
		if err != io.EOF {
			lerr = err
		} else if pos, _ := f.Seek(0, io.SeekCurrent); pos < f.Size() {
			lerr = errShrunk
		}
		if lerr != nil && !errors.Is(lerr, os.ErrClosed) {
			f.mu.Lock()
			f.err = lerr
			f.mu.Unlock()
		}
	}
	return n, err
}

func (f *fileSection) localErr() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.err
}
