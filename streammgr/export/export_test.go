package export_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/evergreen-edge/evergreen/services/kit/errdefs"
	"github.com/evergreen-edge/evergreen/streammgr/export"
	"github.com/evergreen-edge/evergreen/streammgr/store"
	"github.com/fxamacker/cbor/v2"
)

// checkFor polls fn until it returns nil or total passes (generous: CI
// runs on a loaded machine).
func checkFor(t *testing.T, total time.Duration, fn func() error) {
	t.Helper()
	deadline := time.Now().Add(total)
	for {
		err := fn()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

const wait = 15 * time.Second

// post is one request the destination received.
type post struct {
	ctype string
	seqs  []int64
	raw   []byte
	json  []map[string]any
}

// dest is an HTTP destination in the test: it records the requests it
// acknowledges and answers the others with fail's status.
type dest struct {
	t    *testing.T
	srv  *httptest.Server
	addr string

	mu    sync.Mutex
	posts []post
	fail  func(first int64) int // status for a request starting at first; 0 = 200
}

func newDest(t *testing.T) *dest {
	d := &dest{t: t}
	d.serve(nil)
	return d
}

func (d *dest) serve(ln net.Listener) {
	s := httptest.NewUnstartedServer(http.HandlerFunc(d.handle))
	if ln != nil {
		s.Listener.Close()
		s.Listener = ln
	}
	s.Start()
	d.srv, d.addr = s, s.Listener.Addr().String()
	d.t.Cleanup(s.Close)
}

func (d *dest) url() string { return "http://" + d.addr + "/in" }

// down closes the listener: connections are refused.
func (d *dest) down() { d.srv.Close() }

// up listens again on the same address.
func (d *dest) up() {
	var ln net.Listener
	var err error
	for range 100 {
		if ln, err = net.Listen("tcp", d.addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		d.t.Fatalf("listen again on %s: %v", d.addr, err)
	}
	d.serve(ln)
}

func (d *dest) setFail(f func(first int64) int) {
	d.mu.Lock()
	d.fail = f
	d.mu.Unlock()
}

func (d *dest) handle(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	first, _ := strconv.ParseInt(r.Header.Get("X-Evergreen-First-Sequence-Number"), 10, 64)
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.fail != nil {
		if code := d.fail(first); code != 0 {
			w.WriteHeader(code)
			return
		}
	}
	p := post{ctype: r.Header.Get("Content-Type")}
	if r.Method != http.MethodPost || r.URL.Path != "/in" {
		d.t.Errorf("request %s %s", r.Method, r.URL.Path)
	}
	if p.ctype == "application/json" {
		if err := json.Unmarshal(body, &p.json); err != nil {
			d.t.Errorf("JSON_BATCHED body: %v: %q", err, body)
		}
		for _, m := range p.json {
			p.seqs = append(p.seqs, int64(m["sequenceNumber"].(float64)))
		}
	} else {
		p.raw = body
		p.seqs = []int64{first}
	}
	d.posts = append(d.posts, p)
}

func (d *dest) received() []post {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.posts)
}

// seqs is every sequence number acknowledged, in arrival order.
func (d *dest) seqs() []int64 {
	var out []int64
	for _, p := range d.received() {
		out = append(out, p.seqs...)
	}
	return out
}

// waitAll waits until every sequence number in from..to was acknowledged.
func (d *dest) waitAll(from, to int64) {
	d.t.Helper()
	checkFor(d.t, wait, func() error {
		got := d.seqs()
		for s := from; s <= to; s++ {
			if !slices.Contains(got, s) {
				return fmt.Errorf("sequence number %d not exported; got %v", s, got)
			}
		}
		return nil
	})
}

type rig struct {
	t   *testing.T
	dir string
	st  *store.Store
	m   *export.Manager
}

func newRig(t *testing.T) *rig {
	r := &rig{t: t, dir: t.TempDir()}
	r.open()
	t.Cleanup(r.close)
	return r
}

func (r *rig) open() {
	st, err := store.Open(store.Options{Dir: r.dir})
	if err != nil {
		r.t.Fatal(err)
	}
	r.st = st
	r.m = export.New(export.Options{Store: st, BackoffBase: 5 * time.Millisecond, BackoffMax: 40 * time.Millisecond, AckTimeout: 5 * time.Second})
	for _, n := range st.List() {
		if err := r.m.Sync(n); err != nil {
			r.t.Fatal(err)
		}
	}
}

// close stops like the daemon: exports first, then the store.
func (r *rig) close() {
	if r.m != nil {
		r.m.Close()
		r.st.Close()
		r.m = nil
	}
}

func exportDef(t *testing.T, http ...map[string]any) []byte {
	b, err := cbor.Marshal(map[string]any{"http": http})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func (r *rig) create(d store.Definition, http ...map[string]any) {
	r.t.Helper()
	if d.Name == "" {
		d.Name = "s"
	}
	d.Export = exportDef(r.t, http...)
	if err := r.st.Create(d); err != nil {
		r.t.Fatal(err)
	}
	if err := r.m.Sync(d.Name); err != nil {
		r.t.Fatal(err)
	}
}

func (r *rig) update(http ...map[string]any) {
	r.t.Helper()
	in, err := r.st.Describe("s")
	if err != nil {
		r.t.Fatal(err)
	}
	in.Definition.Export = exportDef(r.t, http...)
	if err := r.st.Update(in.Definition); err != nil {
		r.t.Fatal(err)
	}
	if err := r.m.Sync("s"); err != nil {
		r.t.Fatal(err)
	}
}

func (r *rig) append(from, to int64) {
	r.t.Helper()
	for i := from; i <= to; i++ {
		seq, err := r.st.Append("s", payload(i))
		if err != nil || seq != i {
			r.t.Fatalf("append %d: seq %d, %v", i, seq, err)
		}
	}
}

func payload(i int64) []byte { return []byte(fmt.Sprintf("message %d", i)) }

func (r *rig) status() export.Status {
	r.t.Helper()
	s := r.m.Statuses("s")
	if len(s) != 1 {
		r.t.Fatalf("statuses %+v", s)
	}
	return s[0]
}

func httpCfg(d *dest, extra map[string]any) map[string]any {
	c := map[string]any{"identifier": "web", "uri": d.url()}
	for k, v := range extra {
		c[k] = v
	}
	return c
}

func TestParseRefusesBadConfigsNamingTheField(t *testing.T) {
	ok := map[string]any{"identifier": "a", "uri": "http://127.0.0.1:1/x"}
	with := func(k string, v any) map[string]any {
		c := map[string]any{}
		for k, v := range ok {
			c[k] = v
		}
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
		{"http[0].identifier", []map[string]any{with("identifier", nil)}},
		{"http[0].identifier", []map[string]any{with("identifier", "a/b")}},
		{"http[1].identifier", []map[string]any{ok, ok}},
		{"http[0].uri", []map[string]any{with("uri", nil)}},
		{"http[0].uri", []map[string]any{with("uri", "ftp://x/y")}},
		{"http[0].batchSize", []map[string]any{with("batchSize", 0)}},
		{"http[0].batchSize", []map[string]any{with("batchSize", 501)}},
		{"http[0].batchIntervalMillis", []map[string]any{with("batchIntervalMillis", -1)}},
		{"http[0].priority", []map[string]any{with("priority", 11)}},
		{"http[0].startSequenceNumber", []map[string]any{with("startSequenceNumber", -1)}},
		{"http[0].exportFormat", []map[string]any{with("exportFormat", 2)}},
		{"definition.exportDefinition", []map[string]any{with("batchSize", "ten")}},
	} {
		_, err := export.Parse(exportDef(t, tc.cfgs...))
		if err == nil || !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), tc.field) {
			t.Errorf("%s %v: err %v", tc.field, tc.cfgs, err)
		}
	}
	// As the Python SDK sends it: every kind's list, unset fields as null.
	sdk, _ := cbor.Marshal(map[string]any{"http": []any{map[string]any{"identifier": "a", "uri": "http://127.0.0.1:1/x",
		"batchSize": nil, "batchIntervalMillis": nil, "priority": nil, "startSequenceNumber": nil, "disabled": nil, "exportFormat": nil}},
		"kinesis": []any{}, "iotAnalytics": []any{}, "IotSitewise": []any{}, "s3TaskExecutor": []any{}})
	d, err := export.Parse(sdk)
	if err != nil {
		t.Fatal(err)
	}
	want := export.HTTPConfig{Identifier: "a", URI: "http://127.0.0.1:1/x", BatchSize: 500, Priority: 10, Format: export.RawNotBatched}
	if len(d.HTTP) != 1 || d.HTTP[0] != want {
		t.Fatalf("defaults %+v", d.HTTP)
	}
}

func TestRawNotBatchedOnePostPerMessage(t *testing.T) {
	r, d := newRig(t), newDest(t)
	r.create(store.Definition{}, httpCfg(d, map[string]any{"batchSize": 3, "exportFormat": 0}))
	r.append(0, 6)
	d.waitAll(0, 6)
	var bytes int64
	for i, p := range d.received() {
		if p.ctype != "application/octet-stream" || string(p.raw) != string(payload(int64(i))) {
			t.Fatalf("post %d: %q %q", i, p.ctype, p.raw)
		}
		bytes += int64(len(p.raw))
	}
	checkFor(t, wait, func() error {
		s := r.status()
		if s.Identifier != "web" || s.LastExportedSequenceNumber != 6 || s.ExportedMessagesCount != 7 ||
			s.ExportedBytesFromStream != bytes || s.LastExportTime < time.Now().Add(-time.Hour).UnixMilli() || s.ErrorMessage != "" {
			return fmt.Errorf("status %+v", s)
		}
		return nil
	})
}

func TestJSONBatchedBySize(t *testing.T) {
	r, d := newRig(t), newDest(t)
	// An interval far beyond the test: only the size closes a batch.
	r.create(store.Definition{}, httpCfg(d, map[string]any{"batchSize": 4, "batchIntervalMillis": 3600000, "exportFormat": 1}))
	before := time.Now().UnixMilli()
	r.append(0, 7)
	d.waitAll(0, 7)
	posts := d.received()
	if len(posts) != 2 {
		t.Fatalf("%d posts, want 2 of 4", len(posts))
	}
	for i, p := range posts {
		if p.ctype != "application/json" || len(p.json) != 4 {
			t.Fatalf("post %d: %q %v", i, p.ctype, p.json)
		}
		for j, m := range p.json {
			seq := int64(i*4 + j)
			// payload is standard base64 ([]byte in encoding/json).
			if m["streamName"] != "s" || int64(m["sequenceNumber"].(float64)) != seq || int64(m["ingestTime"].(float64)) < before ||
				m["payload"] != base64(payload(seq)) || len(m) != 4 {
				t.Fatalf("post %d message %d: %v", i, j, m)
			}
		}
	}
}

func base64(b []byte) string {
	s, _ := json.Marshal(b)
	return strings.Trim(string(s), `"`)
}

func TestJSONBatchedByInterval(t *testing.T) {
	r, d := newRig(t), newDest(t)
	// Far fewer messages than batchSize: the interval sends them.
	r.create(store.Definition{}, httpCfg(d, map[string]any{"batchSize": 500, "batchIntervalMillis": 50, "exportFormat": 1}))
	r.append(0, 2)
	d.waitAll(0, 2)
	r.append(3, 3)
	d.waitAll(3, 3)
	for _, p := range d.received() {
		if len(p.json) == 0 || len(p.json) > 3 {
			t.Fatalf("batch of %d", len(p.json))
		}
	}
}

func TestStartSequenceNumber(t *testing.T) {
	r, d := newRig(t), newDest(t)
	r.create(store.Definition{}, httpCfg(d, map[string]any{"startSequenceNumber": 5, "exportFormat": 1}))
	r.append(0, 9)
	d.waitAll(5, 9)
	if got := d.seqs(); slices.Min(got) != 5 {
		t.Fatalf("exported %v, want from 5", got)
	}
}

// TestDestinationDownThenRecovers: 503s, then a closed port, then the
// destination back on the same address: nothing is lost, the order holds
// and the retries show in errorMessage.
func TestDestinationDownThenRecovers(t *testing.T) {
	r, d := newRig(t), newDest(t)
	r.create(store.Definition{}, httpCfg(d, map[string]any{"batchSize": 2, "exportFormat": 1}))
	r.append(0, 4)
	d.waitAll(0, 4)

	d.setFail(func(int64) int { return http.StatusServiceUnavailable })
	r.append(5, 9)
	checkFor(t, wait, func() error {
		if s := r.status(); !strings.Contains(s.ErrorMessage, "503") || !strings.Contains(s.ErrorMessage, "retrying in") {
			return fmt.Errorf("status %+v", s)
		}
		return nil
	})
	// The backoff grows up to its cap (40ms here): later attempts say so.
	checkFor(t, wait, func() error {
		if s := r.status(); !strings.Contains(s.ErrorMessage, "retrying in 40ms") {
			return fmt.Errorf("status %+v", s)
		}
		return nil
	})
	d.down()
	r.append(10, 14)
	checkFor(t, wait, func() error {
		if s := r.status(); !strings.Contains(s.ErrorMessage, "connection refused") {
			return fmt.Errorf("status %+v", s)
		}
		return nil
	})
	if s := r.status(); s.LastExportedSequenceNumber != 4 || s.ExportedMessagesCount != 5 {
		t.Fatalf("progress moved while the destination was down: %+v", s)
	}
	d.setFail(nil)
	d.up()
	d.waitAll(0, 14)
	checkFor(t, wait, func() error {
		if s := r.status(); s.LastExportedSequenceNumber != 14 || s.ErrorMessage != "" {
			return fmt.Errorf("status %+v", s)
		}
		return nil
	})
	// Every batch was acknowledged once: in order, no gap, no duplicate
	// (a duplicate is allowed only for a batch whose answer was lost).
	if got := d.seqs(); !slices.Equal(got, []int64{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14}) {
		t.Fatalf("exported %v", got)
	}
}

// TestRestartResumesFromPersistedProgress stops the exports and the store
// mid-export and opens them again: the export continues after the last
// acknowledged message.
func TestRestartResumesFromPersistedProgress(t *testing.T) {
	r, d := newRig(t), newDest(t)
	d.setFail(func(first int64) int {
		if first >= 5 {
			return http.StatusServiceUnavailable
		}
		return 0
	})
	r.create(store.Definition{}, httpCfg(d, map[string]any{"batchSize": 1, "exportFormat": 0}))
	r.append(0, 9)
	checkFor(t, wait, func() error {
		if s := r.status(); s.LastExportedSequenceNumber != 4 || s.ErrorMessage == "" {
			return fmt.Errorf("status %+v", s)
		}
		return nil
	})
	r.close()
	d.setFail(nil)
	r.open()
	d.waitAll(0, 9)
	if got := d.seqs(); !slices.Equal(got, []int64{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}) {
		t.Fatalf("exported %v", got)
	}
	checkFor(t, wait, func() error {
		if s := r.status(); s.LastExportedSequenceNumber != 9 || s.ExportedMessagesCount != 10 || s.ErrorMessage != "" {
			return fmt.Errorf("status %+v", s)
		}
		return nil
	})
}

// TestDisabledPausesAndUpdateResumes: disabled exports nothing, an update
// enabling it exports, disabling again pauses, and a changed uri restarts
// after the progress made.
func TestDisabledPausesAndUpdateResumes(t *testing.T) {
	r, d, d2 := newRig(t), newDest(t), newDest(t)
	r.create(store.Definition{}, httpCfg(d, map[string]any{"disabled": true}))
	r.append(0, 2)
	time.Sleep(100 * time.Millisecond) // a paused export would have sent by now
	if got := d.seqs(); len(got) != 0 {
		t.Fatalf("disabled export sent %v", got)
	}
	if s := r.status(); s.LastExportedSequenceNumber != -1 || s.ExportedMessagesCount != 0 {
		t.Fatalf("status %+v", s)
	}
	r.update(httpCfg(d, map[string]any{"disabled": false}))
	d.waitAll(0, 2)

	r.update(httpCfg(d, map[string]any{"disabled": true}))
	r.append(3, 5)
	time.Sleep(100 * time.Millisecond)
	if got := d.seqs(); len(got) != 3 {
		t.Fatalf("paused export sent %v", got)
	}
	if s := r.status(); s.LastExportedSequenceNumber != 2 {
		t.Fatalf("status %+v", s)
	}
	r.update(httpCfg(d2, nil))
	d2.waitAll(3, 5)
	if got := d2.seqs(); !slices.Equal(got, []int64{3, 4, 5}) {
		t.Fatalf("new uri got %v", got)
	}
}

// TestOverwriteOldestDataSkipsForward: messages the stream dropped before
// they were exported are skipped and said so; the rest is exported.
func TestOverwriteOldestDataSkipsForward(t *testing.T) {
	r, d := newRig(t), newDest(t)
	r.create(store.Definition{MaxSize: 2048, SegmentSize: 1024, Strategy: store.OverwriteOldestData},
		httpCfg(d, map[string]any{"disabled": true, "exportFormat": 1}))
	big := make([]byte, 300)
	for range 20 {
		if _, err := r.st.Append("s", big); err != nil {
			t.Fatal(err)
		}
	}
	in, _ := r.st.Describe("s")
	if in.Oldest == 0 {
		t.Fatal("nothing was overwritten")
	}
	r.update(httpCfg(d, map[string]any{"exportFormat": 1}))
	d.waitAll(in.Oldest, 19)
	if got := d.seqs(); got[0] != in.Oldest {
		t.Fatalf("exported %v, want from %d", got, in.Oldest)
	}
	checkFor(t, wait, func() error {
		if s := r.status(); !strings.Contains(s.ErrorMessage, fmt.Sprintf("messages 0..%d were removed", in.Oldest-1)) {
			return fmt.Errorf("status %+v", s)
		}
		return nil
	})
}

// TestDeleteStopsExport: deleting the stream stops its exports and drops
// their progress with the stream's directory.
func TestDeleteStopsExport(t *testing.T) {
	r, d := newRig(t), newDest(t)
	r.create(store.Definition{}, httpCfg(d, nil))
	r.append(0, 1)
	d.waitAll(0, 1)
	r.m.Remove("s")
	if err := r.st.Delete("s"); err != nil {
		t.Fatal(err)
	}
	if s := r.m.Statuses("s"); len(s) != 0 {
		t.Fatalf("statuses %+v", s)
	}
	r.create(store.Definition{}, httpCfg(d, map[string]any{"disabled": true}))
	if s := r.status(); s.LastExportedSequenceNumber != -1 {
		t.Fatalf("a new stream inherited progress: %+v", s)
	}
}
