package export_test

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/evergreen-edge/evergreen/services/kit/errdefs"
	"github.com/evergreen-edge/evergreen/streammgr/export"
	"github.com/evergreen-edge/evergreen/streammgr/store"
	"github.com/fxamacker/cbor/v2"
	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"
)

// fakeS3 is gofakes3 (an S3 server with an in-memory store) on a real
// listener, behind a handler that counts the operations it answered with a
// 2xx and can fail requests or go away altogether.
type fakeS3 struct {
	t       *testing.T
	s3      http.Handler
	backend *s3mem.Backend
	srv     *httptest.Server
	addr    string

	mu    sync.Mutex
	fail  func(op string, r *http.Request) int // status to answer instead; 0 = serve
	ops   map[string]int
	parts map[string]int // UploadPart answered, by "uploadId/partNumber"
}

const testBucket = "evergreen-test"

func newFakeS3(t *testing.T) *fakeS3 {
	backend := s3mem.New()
	f := &fakeS3{t: t, s3: gofakes3.New(backend).Server(), backend: backend, ops: map[string]int{}, parts: map[string]int{}}
	f.serve(nil)
	t.Setenv("AWS_ACCESS_KEY_ID", "AKIDEVERGREENTEST")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "evergreen-test-secret")
	t.Setenv("AWS_SESSION_TOKEN", "")
	t.Setenv("AWS_PROFILE", "")
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(t.TempDir(), "none"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(t.TempDir(), "none"))
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	if err := backend.CreateBucket(testBucket); err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *fakeS3) serve(ln net.Listener) {
	s := httptest.NewUnstartedServer(f)
	if ln != nil {
		s.Listener.Close()
		s.Listener = ln
	}
	s.Start()
	f.srv, f.addr = s, s.Listener.Addr().String()
	f.t.Cleanup(s.Close)
}

func (f *fakeS3) url() string { return "http://" + f.addr }

// down closes the listener: connections are refused.
func (f *fakeS3) down() { f.srv.Close() }

// up listens again on the same address, with the same objects.
func (f *fakeS3) up() {
	var ln net.Listener
	var err error
	for range 100 {
		if ln, err = net.Listen("tcp", f.addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		f.t.Fatalf("listen again on %s: %v", f.addr, err)
	}
	f.serve(ln)
}

func (f *fakeS3) setFail(fn func(op string, r *http.Request) int) {
	f.mu.Lock()
	f.fail = fn
	f.mu.Unlock()
}

// opOf names the S3 operation of a path-style request.
func opOf(r *http.Request) string {
	q := r.URL.Query()
	_, uploads := q["uploads"]
	object := strings.Count(strings.Trim(r.URL.Path, "/"), "/") > 0
	switch {
	case r.Method == http.MethodPut && q.Has("uploadId"):
		return "UploadPart"
	case r.Method == http.MethodPost && uploads:
		return "CreateMultipartUpload"
	case r.Method == http.MethodPost && q.Has("uploadId"):
		return "CompleteMultipartUpload"
	case r.Method == http.MethodDelete && q.Has("uploadId"):
		return "AbortMultipartUpload"
	case r.Method == http.MethodGet && q.Has("uploadId"):
		return "ListParts"
	case r.Method == http.MethodPut && object:
		return "PutObject"
	}
	return r.Method + " " + r.URL.Path
}

type statusRecorder struct {
	http.ResponseWriter
	code int
}

func (s *statusRecorder) WriteHeader(code int) {
	s.code = code
	s.ResponseWriter.WriteHeader(code)
}

func (f *fakeS3) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	op := opOf(r)
	// Every request must be one S3 would take: signed, and its body the
	// one signed.
	check := checkS3Request(r)
	defer func() {
		if problem := check(); problem != "" {
			f.t.Errorf("%s %s: %s", op, r.RequestURI, problem)
		}
	}()
	f.mu.Lock()
	fail := f.fail
	f.mu.Unlock()
	if fail != nil {
		if code := fail(op, r); code != 0 {
			io.Copy(io.Discard, r.Body)
			w.Header().Set("Content-Type", "application/xml")
			w.WriteHeader(code)
			fmt.Fprint(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>ServiceUnavailable</Code><Message>test outage</Message></Error>`)
			return
		}
	}
	rec := &statusRecorder{ResponseWriter: w, code: http.StatusOK}
	f.s3.ServeHTTP(rec, r)
	if rec.code/100 != 2 {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ops[op]++
	if op == "UploadPart" {
		f.parts[r.URL.Query().Get("uploadId")+"/"+r.URL.Query().Get("partNumber")]++
	}
}

func (f *fakeS3) count(op string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.ops[op]
}

// partCounts is how often each part number was uploaded, over every upload.
func (f *fakeS3) partCounts() map[string]int {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := map[string]int{}
	for k, n := range f.parts {
		_, part, _ := strings.Cut(k, "/")
		out[part] += n
	}
	return out
}

// object is what the server stores as key: its bytes and its user
// metadata (the x-amz-meta-* names, lower-cased, without the prefix).
func (f *fakeS3) object(key string) ([]byte, map[string]string) {
	f.t.Helper()
	out, err := f.backend.GetObject(testBucket, key, nil)
	if err != nil {
		f.t.Fatalf("GetObject %s: %v", key, err)
	}
	defer out.Contents.Close()
	b, err := io.ReadAll(out.Contents)
	if err != nil {
		f.t.Fatal(err)
	}
	meta := map[string]string{}
	for k, v := range out.Metadata {
		if name, ok := strings.CutPrefix(strings.ToLower(k), "x-amz-meta-"); ok {
			meta[name] = v
		}
	}
	return b, meta
}

// pendingUploads lists the multipart uploads neither completed nor aborted.
func (f *fakeS3) pendingUploads() []string {
	f.t.Helper()
	rec := httptest.NewRecorder()
	f.s3.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/"+testBucket+"?uploads", nil))
	var out struct {
		Uploads []struct {
			Key      string
			UploadID string `xml:"UploadId"`
		} `xml:"Upload"`
	}
	if rec.Code != http.StatusOK {
		f.t.Fatalf("ListMultipartUploads: %d %s", rec.Code, rec.Body)
	}
	if err := xml.Unmarshal(rec.Body.Bytes(), &out); err != nil {
		f.t.Fatal(err)
	}
	var ids []string
	for _, u := range out.Uploads {
		ids = append(ids, u.Key+" "+u.UploadID)
	}
	return ids
}

// s3Epoch is every clock in these tests: ingest times (key expressions)
// and status timestamps are exact.
var s3Epoch = time.UnixMilli(1700000000000) // 2023-11-14T22:13:20Z

type s3rig struct {
	t     *testing.T
	dir   string
	files string // the tasks' files
	f     *fakeS3
	st    *store.Store
	m     *export.Manager
}

func newS3Rig(t *testing.T) *s3rig {
	r := &s3rig{t: t, dir: t.TempDir(), files: t.TempDir(), f: newFakeS3(t)}
	r.open()
	t.Cleanup(r.close)
	if err := r.st.Create(store.Definition{Name: "status"}); err != nil {
		t.Fatal(err)
	}
	return r
}

func (r *s3rig) open() {
	clock := func() time.Time { return s3Epoch }
	st, err := store.Open(store.Options{Dir: r.dir, Now: clock})
	if err != nil {
		r.t.Fatal(err)
	}
	r.st = st
	r.m = export.New(export.Options{Store: st, BackoffBase: 5 * time.Millisecond, BackoffMax: 40 * time.Millisecond, Now: clock,
		AWS: export.AWSOptions{Region: "us-east-1", Endpoints: map[string]string{export.ServiceS3: r.f.url()}, S3ForcePathStyle: true}})
	for _, n := range st.List() {
		if err := r.m.Sync(n); err != nil {
			r.t.Fatal(err)
		}
	}
}

func (r *s3rig) close() {
	if r.m != nil {
		r.m.Close()
		r.st.Close()
		r.m = nil
	}
}

func s3Def(t *testing.T, cfgs ...map[string]any) []byte {
	b, err := cbor.Marshal(map[string]any{"s3TaskExecutor": cfgs})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// create makes stream "s" with one S3 export "up" reporting to "status".
func (r *s3rig) create(extra map[string]any) {
	r.t.Helper()
	cfg := map[string]any{"identifier": "up", "statusConfig": map[string]any{"statusLevel": 2, "statusStreamName": "status"}}
	for k, v := range extra {
		cfg[k] = v
	}
	if err := r.st.Create(store.Definition{Name: "s", Export: s3Def(r.t, cfg)}); err != nil {
		r.t.Fatal(err)
	}
	if err := r.m.Sync("s"); err != nil {
		r.t.Fatal(err)
	}
}

// task appends a task and returns its sequence number.
func (r *s3rig) task(task any) int64 {
	r.t.Helper()
	b, ok := task.([]byte)
	if !ok {
		var err error
		if b, err = json.Marshal(task); err != nil {
			r.t.Fatal(err)
		}
	}
	seq, err := r.st.Append("s", b)
	if err != nil {
		r.t.Fatal(err)
	}
	return seq
}

func (r *s3rig) file(name string, data []byte) string {
	r.t.Helper()
	p := filepath.Join(r.files, name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		r.t.Fatal(err)
	}
	return p
}

// statuses is every message of the status stream, in order.
func (r *s3rig) statuses() []string {
	r.t.Helper()
	msgs, err := r.st.Read(context.Background(), "status", store.ReadOptions{Start: 0, Min: 1, Max: 1 << 20})
	if errors.Is(err, store.ErrNotEnough) {
		return nil
	}
	if err != nil {
		r.t.Fatal(err)
	}
	out := make([]string, len(msgs))
	for i, m := range msgs {
		out[i] = string(m.Payload)
	}
	return out
}

type statusView struct {
	Level, Status int
	Seq           int64
	Message       string
}

func (r *s3rig) statusViews() []statusView {
	var out []statusView
	for _, s := range r.statuses() {
		var m struct {
			StatusLevel, Status int
			Message             string
			StatusContext       struct{ SequenceNumber int64 }
		}
		if err := json.Unmarshal([]byte(s), &m); err != nil {
			r.t.Fatalf("status %s: %v", s, err)
		}
		out = append(out, statusView{m.StatusLevel, m.Status, m.StatusContext.SequenceNumber, m.Message})
	}
	return out
}

// waitStatus waits for a status of seq with status st (v1's Status value).
func (r *s3rig) waitStatus(seq int64, st int) statusView {
	r.t.Helper()
	var found statusView
	checkFor(r.t, wait, func() error {
		for _, v := range r.statusViews() {
			if v.Seq == seq && v.Status == st {
				found = v
				return nil
			}
		}
		return fmt.Errorf("no status %d for task %d; statuses %+v; export %+v", st, seq, r.statusViews(), r.m.Statuses("s"))
	})
	return found
}

func (r *s3rig) exportStatus() export.Status {
	r.t.Helper()
	s := r.m.Statuses("s")
	if len(s) != 1 {
		r.t.Fatalf("statuses %+v", s)
	}
	return s[0]
}

func fileURL(p string) string { return "file://" + p }

// pattern is n bytes that differ from one offset to the next, with seed.
func pattern(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*31+i>>9) ^ seed
	}
	return b
}

const (
	sSuccess    = 0
	sFailure    = 1
	sInProgress = 2
	sWarning    = 3
)

// TestS3SmallFilesPutObjectWithMetadata: files up to the threshold go up
// with one PutObject each, the user metadata as the object's, a key
// expression resolved with the task's ingest time, and InProgress then
// Success statuses in v1's JSON.
func TestS3SmallFilesPutObjectWithMetadata(t *testing.T) {
	r := newS3Rig(t)
	r.create(nil)
	small := r.file("small.bin", []byte("hello from the edge"))
	empty := r.file("empty.bin", nil)
	atThreshold := r.file("five.bin", pattern(export.DefaultS3MultipartThreshold, 7))

	r.task(map[string]any{"inputUrl": fileURL(small), "bucket": testBucket, "key": "a/small.bin",
		"userMetadata": map[string]any{"origin": "sensor-1", "count": 3}})
	r.task(map[string]any{"inputUrl": "file:" + empty, "bucket": testBucket, "key": "logs/!{timestamp:yyyy/MM/dd/HHmm}/empty.bin"})
	r.task(map[string]any{"inputUrl": fileURL(atThreshold), "bucket": testBucket, "key": "five.bin"})
	r.waitStatus(2, sSuccess)

	got, meta := r.f.object("a/small.bin")
	if string(got) != "hello from the edge" || len(meta) != 2 || meta["origin"] != "sensor-1" || meta["count"] != "3" {
		t.Fatalf("object %q metadata %v", got, meta)
	}
	if got, _ := r.f.object("logs/2023/11/14/2213/empty.bin"); len(got) != 0 {
		t.Fatalf("empty object holds %d bytes", len(got))
	}
	// Equal to the threshold is still one PUT (v1: "equal or smaller").
	if got, _ := r.f.object("five.bin"); !bytes.Equal(got, pattern(export.DefaultS3MultipartThreshold, 7)) {
		t.Fatal("five.bin differs")
	}
	if n, m := r.f.count("PutObject"), r.f.count("CreateMultipartUpload"); n != 3 || m != 0 {
		t.Fatalf("%d PutObject, %d CreateMultipartUpload", n, m)
	}

	def := fmt.Sprintf(`{"inputUrl":%q,"bucket":%q,"key":"a/small.bin","userMetadata":{"count":3,"origin":"sensor-1"}}`, fileURL(small), testBucket)
	want := []string{
		fmt.Sprintf(`{"eventType":0,"statusLevel":2,"status":2,"statusContext":{"s3ExportTaskDefinition":%s,"exportIdentifier":"up","streamName":"s","sequenceNumber":0},"message":"Uploading %s to s3://%s/a/small.bin","timestampEpochMs":1700000000000}`,
			def, fileURL(small), testBucket),
		fmt.Sprintf(`{"eventType":0,"statusLevel":2,"status":0,"statusContext":{"s3ExportTaskDefinition":%s,"exportIdentifier":"up","streamName":"s","sequenceNumber":0},"message":"Uploaded %s to s3://%s/a/small.bin (19 bytes)","timestampEpochMs":1700000000000}`,
			def, fileURL(small), testBucket),
	}
	got2 := r.statuses()
	if len(got2) != 6 || got2[0] != want[0] || got2[1] != want[1] {
		t.Fatalf("statuses:\n%s\nwant first:\n%s", strings.Join(got2, "\n"), strings.Join(want, "\n"))
	}
	checkFor(t, wait, func() error {
		if s := r.exportStatus(); s.Identifier != "up" || s.LastExportedSequenceNumber != 2 || s.ExportedMessagesCount != 3 || s.ErrorMessage != "" {
			return fmt.Errorf("export status %+v", s)
		}
		return nil
	})
}

// TestS3LargeFileMultipart: a file above the threshold goes up in parts of
// the minimum part size, the server assembles the same bytes, and no
// upload is left open.
func TestS3LargeFileMultipart(t *testing.T) {
	r := newS3Rig(t)
	r.create(map[string]any{"sizeThresholdForMultipartUploadBytes": export.DefaultS3MultipartThreshold})
	data := pattern(2*export.DefaultS3MinPartSize+12345, 1)
	big := r.file("big.bin", data)
	r.task(map[string]any{"inputUrl": fileURL(big), "bucket": testBucket, "key": "big.bin", "userMetadata": map[string]string{"kind": "video"}})
	v := r.waitStatus(0, sSuccess)
	if !strings.HasSuffix(v.Message, fmt.Sprintf("(%d bytes in 3 parts)", len(data))) {
		t.Fatalf("success message %q", v.Message)
	}
	got, meta := r.f.object("big.bin")
	if !bytes.Equal(got, data) || meta["kind"] != "video" {
		t.Fatalf("object of %d bytes (want %d), metadata %v", len(got), len(data), meta)
	}
	if c, p, put := r.f.count("CreateMultipartUpload"), r.f.count("UploadPart"), r.f.count("PutObject"); c != 1 || p != 3 || put != 0 {
		t.Fatalf("%d CreateMultipartUpload, %d UploadPart, %d PutObject", c, p, put)
	}
	if n := r.f.count("CompleteMultipartUpload"); n != 1 {
		t.Fatalf("%d CompleteMultipartUpload", n)
	}
	if p := r.f.pendingUploads(); len(p) != 0 {
		t.Fatalf("uploads left open: %v", p)
	}
}

// TestS3BadTasksFailAndLaterTasksUpload: tasks that cannot succeed get a
// Failure status each and are skipped; the good task after them uploads.
// statusLevel ERROR keeps only the failures.
func TestS3BadTasksFailAndLaterTasksUpload(t *testing.T) {
	r := newS3Rig(t)
	r.create(map[string]any{"statusConfig": map[string]any{"statusLevel": 0, "statusStreamName": "status"}})
	good := r.file("good.bin", []byte("good"))
	bad := []struct {
		task any
		msg  string
	}{
		{[]byte("not json"), "not a JSON S3ExportTaskDefinition"},
		{map[string]any{"inputUrl": fileURL(good), "key": "k"}, "bucket is required"},
		{map[string]any{"inputUrl": fileURL(good + ".missing"), "bucket": testBucket, "key": "k"}, "no such file or directory"},
		{map[string]any{"inputUrl": fileURL(good), "bucket": "no-such-bucket", "key": "k"}, "NoSuchBucket"},
		{map[string]any{"inputUrl": fileURL(good), "bucket": testBucket, "key": "a key"}, "may not contain"},
		{map[string]any{"inputUrl": fileURL(good), "bucket": testBucket, "key": "!{date:yyyy}"}, "not a !{timestamp:PATTERN} expression"},
		{map[string]any{"inputUrl": "https://example.com/x", "bucket": testBucket, "key": "k"}, "not a file URL"},
		{map[string]any{"inputUrl": fileURL(good), "bucket": "Bad_Bucket", "key": "k"}, "outside a-z"},
		{map[string]any{"inputUrl": fileURL(good), "bucket": testBucket, "key": "k", "userMetadata": map[string]any{"place": "Zürich"}}, "outside printable US-ASCII"},
		{map[string]any{"inputUrl": fileURL(r.files), "bucket": testBucket, "key": "k"}, "not a regular file"},
	}
	for _, b := range bad {
		r.task(b.task)
	}
	last := r.task(map[string]any{"inputUrl": fileURL(good), "bucket": testBucket, "key": "good.bin"})
	checkFor(t, wait, func() error {
		if s := r.exportStatus(); s.LastExportedSequenceNumber != last {
			return fmt.Errorf("export status %+v", s)
		}
		return nil
	})
	if got, _ := r.f.object("good.bin"); string(got) != "good" {
		t.Fatalf("good.bin %q", got)
	}
	views := r.statusViews()
	if len(views) != len(bad) {
		t.Fatalf("statuses %+v", views)
	}
	for i, v := range views {
		if v.Seq != int64(i) || v.Status != sFailure || v.Level != 0 || !strings.Contains(v.Message, bad[i].msg) {
			t.Errorf("status %d: %+v, want Failure containing %q", i, v, bad[i].msg)
		}
	}
	// Without a task definition to echo, the context has none.
	want := `{"eventType":0,"statusLevel":0,"status":1,"statusContext":{"exportIdentifier":"up","streamName":"s","sequenceNumber":0},"message":"the message is not a JSON S3ExportTaskDefinition: invalid character 'o' in literal null (expecting 'u')","timestampEpochMs":1700000000000}`
	if got := r.statuses()[0]; got != want {
		t.Errorf("status 0:\n%s\nwant\n%s", got, want)
	}
	// Skipped tasks are not counted as exported; errorMessage names the
	// last one.
	if s := r.exportStatus(); s.ExportedMessagesCount != 1 || !strings.Contains(s.ErrorMessage, fmt.Sprintf("sequence number %d failed", len(bad)-1)) {
		t.Errorf("export status %+v: want 1 message exported and the last skipped task named", s)
	}
	if n := r.f.count("PutObject"); n != 1 {
		t.Fatalf("%d PutObject", n)
	}
}

// TestS3ServerDownThenBack: 503s, then a closed port, then S3 back on the
// same address: nothing is skipped, every task uploads, a Warning status
// says once per task that it is retried, and no multipart upload is left.
func TestS3ServerDownThenBack(t *testing.T) {
	r := newS3Rig(t)
	r.create(map[string]any{"statusConfig": map[string]any{"statusLevel": 4, "statusStreamName": "status"}})
	r.f.setFail(func(string, *http.Request) int { return http.StatusServiceUnavailable })
	var want [][]byte
	for i := range 3 {
		want = append(want, pattern(100+i, byte(i)))
		p := r.file(fmt.Sprintf("f%d", i), want[i])
		r.task(map[string]any{"inputUrl": fileURL(p), "bucket": testBucket, "key": fmt.Sprintf("f%d", i)})
	}
	want = append(want, pattern(export.DefaultS3MinPartSize+1, 9))
	r.task(map[string]any{"inputUrl": fileURL(r.file("f3", want[3])), "bucket": testBucket, "key": "f3"})

	checkFor(t, wait, func() error {
		if s := r.exportStatus(); !strings.Contains(s.ErrorMessage, "503") || !strings.Contains(s.ErrorMessage, "retrying in 40ms") {
			return fmt.Errorf("export status %+v", s)
		}
		return nil
	})
	r.f.down()
	checkFor(t, wait, func() error {
		if s := r.exportStatus(); !strings.Contains(s.ErrorMessage, "connection refused") {
			return fmt.Errorf("export status %+v", s)
		}
		return nil
	})
	if s := r.exportStatus(); s.LastExportedSequenceNumber != -1 || s.ExportedMessagesCount != 0 {
		t.Fatalf("progress moved while S3 was down: %+v", s)
	}
	r.f.setFail(nil)
	r.f.up()
	r.waitStatus(3, sSuccess)
	for i, w := range want {
		if got, _ := r.f.object(fmt.Sprintf("f%d", i)); !bytes.Equal(got, w) {
			t.Fatalf("f%d: %d bytes, want %d", i, len(got), len(w))
		}
	}
	// Per task: InProgress, then one Warning for the retries of task 0
	// (the only one attempted while S3 was away), then Success.
	var got []string
	for _, v := range r.statusViews() {
		got = append(got, fmt.Sprintf("%d:%d", v.Seq, v.Status))
	}
	if w := []string{"0:2", "0:3", "0:0", "1:2", "1:0", "2:2", "2:0", "3:2", "3:0"}; !slices.Equal(got, w) {
		t.Fatalf("statuses %v, want %v", got, w)
	}
	checkFor(t, wait, func() error {
		if s := r.exportStatus(); s.LastExportedSequenceNumber != 3 || s.ErrorMessage != "" {
			return fmt.Errorf("export status %+v", s)
		}
		return nil
	})
	if p := r.f.pendingUploads(); len(p) != 0 {
		t.Fatalf("uploads left open: %v", p)
	}
}

// TestS3MultipartResumesAfterRestart: parts fail after the first; the
// daemon stops and starts again; the same upload continues without
// sending part 1 again, and completes.
func TestS3MultipartResumesAfterRestart(t *testing.T) {
	r := newS3Rig(t)
	r.create(nil)
	r.f.setFail(func(op string, req *http.Request) int {
		if op == "UploadPart" && req.URL.Query().Get("partNumber") != "1" {
			return http.StatusServiceUnavailable
		}
		return 0
	})
	data := pattern(2*export.DefaultS3MinPartSize+1, 3)
	r.task(map[string]any{"inputUrl": fileURL(r.file("big.bin", data)), "bucket": testBucket, "key": "big.bin"})
	r.waitStatus(0, sWarning)
	checkFor(t, wait, func() error {
		if n := r.f.partCounts()["1"]; n != 1 {
			return fmt.Errorf("part 1 uploaded %d times", n)
		}
		return nil
	})
	r.close()
	r.f.setFail(nil)
	r.open()
	r.waitStatus(0, sSuccess)
	if got, _ := r.f.object("big.bin"); !bytes.Equal(got, data) {
		t.Fatal("object differs")
	}
	if c, parts := r.f.count("CreateMultipartUpload"), r.f.partCounts(); c != 1 || parts["1"] != 1 || parts["2"] != 1 || parts["3"] != 1 {
		t.Fatalf("%d CreateMultipartUpload, parts uploaded %v", c, parts)
	}
	if p := r.f.pendingUploads(); len(p) != 0 {
		t.Fatalf("uploads left open: %v", p)
	}
}

// TestS3ChangedFileAbortsTheOldUpload: the file of an interrupted
// multipart upload changed before the restart: that upload is aborted, not
// left behind, and the new content is uploaded afresh.
func TestS3ChangedFileAbortsTheOldUpload(t *testing.T) {
	r := newS3Rig(t)
	r.create(nil)
	r.f.setFail(func(op string, req *http.Request) int {
		if op == "UploadPart" && req.URL.Query().Get("partNumber") != "1" {
			return http.StatusServiceUnavailable
		}
		return 0
	})
	p := r.file("big.bin", pattern(2*export.DefaultS3MinPartSize+1, 3))
	r.task(map[string]any{"inputUrl": fileURL(p), "bucket": testBucket, "key": "big.bin"})
	r.waitStatus(0, sWarning)
	r.close()
	if n := len(r.f.pendingUploads()); n != 1 {
		t.Fatalf("%d uploads open after the interruption, want 1", n)
	}
	data := pattern(export.DefaultS3MinPartSize+77, 4)
	r.file("big.bin", data)
	r.f.setFail(nil)
	r.open()
	r.waitStatus(0, sSuccess)
	if got, _ := r.f.object("big.bin"); !bytes.Equal(got, data) {
		t.Fatal("object is not the file's new content")
	}
	if a, c := r.f.count("AbortMultipartUpload"), r.f.count("CreateMultipartUpload"); a != 1 || c != 2 {
		t.Fatalf("%d AbortMultipartUpload, %d CreateMultipartUpload", a, c)
	}
	if p := r.f.pendingUploads(); len(p) != 0 {
		t.Fatalf("uploads left open: %v", p)
	}
}

// TestS3WithoutStatusStream: a status stream that does not exist (or none
// configured) holds up nothing.
func TestS3WithoutStatusStream(t *testing.T) {
	r := newS3Rig(t)
	r.create(map[string]any{"statusConfig": map[string]any{"statusStreamName": "absent"}})
	r.task(map[string]any{"inputUrl": fileURL(r.file("x", []byte("x"))), "bucket": testBucket, "key": "x"})
	checkFor(t, wait, func() error {
		if s := r.exportStatus(); s.LastExportedSequenceNumber != 0 || s.ErrorMessage != "" {
			return fmt.Errorf("export status %+v", s)
		}
		return nil
	})
	if got, _ := r.f.object("x"); string(got) != "x" {
		t.Fatalf("object %q", got)
	}
}

func TestS3ParseRefusesBadConfigsNamingTheField(t *testing.T) {
	ok := map[string]any{"identifier": "a"}
	with := func(k string, v any) map[string]any {
		c := map[string]any{"identifier": "a"}
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
		return c
	}
	for _, tc := range []struct {
		field string
		cfgs  []map[string]any
	}{
		{"s3TaskExecutor[0].identifier", []map[string]any{with("identifier", nil)}},
		{"s3TaskExecutor[0].identifier", []map[string]any{with("identifier", "a/b")}},
		{"s3TaskExecutor[1].identifier", []map[string]any{ok, ok}},
		{"s3TaskExecutor[0].sizeThresholdForMultipartUploadBytes", []map[string]any{with("sizeThresholdForMultipartUploadBytes", 5242879)}},
		{"s3TaskExecutor[0].priority", []map[string]any{with("priority", 0)}},
		{"s3TaskExecutor[0].priority", []map[string]any{with("priority", 11)}},
		{"s3TaskExecutor[0].statusConfig.statusLevel", []map[string]any{with("statusConfig", map[string]any{"statusLevel": 5})}},
		{"s3TaskExecutor[0].statusConfig.statusLevel", []map[string]any{with("statusConfig", map[string]any{"statusLevel": -1})}},
		{"s3TaskExecutor[0].statusConfig.statusStreamName", []map[string]any{with("statusConfig", map[string]any{"statusStreamName": ""})}},
		{"s3TaskExecutor[0].statusConfig.statusStreamName", []map[string]any{with("statusConfig", map[string]any{"statusStreamName": "a/b"})}},
		{"definition.exportDefinition", []map[string]any{with("sizeThresholdForMultipartUploadBytes", "big")}},
	} {
		field := tc.field
		if !strings.HasPrefix(field, "definition.") {
			field = "definition.exportDefinition." + field
		}
		_, err := export.Parse(s3Def(t, tc.cfgs...))
		if err == nil || !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), field) {
			t.Errorf("%s %v: err %v", tc.field, tc.cfgs, err)
		}
	}
	// An identifier is unique across kinds: it names the progress file.
	b, _ := cbor.Marshal(map[string]any{"http": []any{map[string]any{"identifier": "a", "uri": "http://127.0.0.1:1/"}}, "s3TaskExecutor": []any{ok}})
	if _, err := export.Parse(b); err == nil || !strings.Contains(err.Error(), "definition.exportDefinition.s3TaskExecutor[0].identifier") {
		t.Errorf("identifier shared with http: err %v", err)
	}
	// As the Python SDK sends it: unset fields as null.
	sdk, _ := cbor.Marshal(map[string]any{"s3TaskExecutor": []any{map[string]any{"identifier": "a",
		"sizeThresholdForMultipartUploadBytes": nil, "priority": nil, "disabled": nil, "statusConfig": nil}}})
	d, err := export.Parse(sdk)
	if err != nil {
		t.Fatal(err)
	}
	want := export.S3Config{Identifier: "a", MultipartThreshold: 5242880, Priority: 10, StatusLevel: export.StatusLevelInfo}
	if len(d.S3) != 1 || d.S3[0] != want {
		t.Fatalf("defaults %+v", d.S3)
	}
	full, _ := cbor.Marshal(map[string]any{"s3TaskExecutor": []any{map[string]any{"identifier": "b",
		"sizeThresholdForMultipartUploadBytes": 10 << 20, "priority": 1, "disabled": true,
		"statusConfig": map[string]any{"statusLevel": 3, "statusStreamName": "st"}}}})
	if d, err = export.Parse(full); err != nil {
		t.Fatal(err)
	}
	want = export.S3Config{Identifier: "b", MultipartThreshold: 10 << 20, Priority: 1, Disabled: true, StatusStream: "st", StatusLevel: export.StatusLevelDebug}
	if len(d.S3) != 1 || d.S3[0] != want {
		t.Fatalf("parsed %+v", d.S3)
	}
}
