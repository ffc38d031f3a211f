package streammgr_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/evergreen-edge/evergreen/streammgr"
	"github.com/evergreen-edge/evergreen/streammgr/protocol"
)

// UpdateMessageStream under v1's rules (GGDG "Update message stream"):
// persistence never changes; maxSize stays at least the stored bytes and
// the segment size; a new segment size applies to new segments; TTL,
// strategyOnFull and flushOnWrite apply from the next append; export
// configurations are matched by identifier, and those left out are
// removed; an export's startSequenceNumber may not move past the newest
// message, and moved back it exports again from there.

func update(t *testing.T, w *wire, name string, extra map[string]any) frame {
	t.Helper()
	return w.call(protocol.OpUpdateMessageStream, map[string]any{"requestId": "u", "definition": def(name, extra)})
}

func mustUpdate(t *testing.T, w *wire, name string, extra map[string]any) {
	t.Helper()
	must(t, "update "+name, update(t, w, name, extra), protocol.OpUpdateMessageStreamResponse, protocol.Success, "u")
}

func describeDefinition(t *testing.T, w *wire, name string) map[any]any {
	t.Helper()
	f := must(t, "describe "+name, w.call(protocol.OpDescribeMessageStream, map[string]any{"requestId": "d", "name": name}),
		protocol.OpDescribeMessageStreamResponse, protocol.Success, "d")
	return f.body["messageStreamInfo"].(map[any]any)["definition"].(map[any]any)
}

func TestUpdateRefusedByV1Rules(t *testing.T) {
	e := newEnv(t)
	e.start(t, false)
	w := dialWire(t, e.addr)
	rec := recordBytes(t, w)
	createStream(t, w, "f", map[string]any{"maxSize": 1 << 20, "streamSegmentSize": 1024})
	createStream(t, w, "m", map[string]any{"maxSize": 1 << 20, "streamSegmentSize": 1024, "persistence": 1})
	for i := range 20 {
		mustAppend(t, w, "f", numbered(i))
	}
	stored := 20 * rec
	for _, c := range []struct {
		what, name string
		extra      map[string]any
	}{
		{"File to Memory", "f", map[string]any{"maxSize": 1 << 20, "streamSegmentSize": 1024, "persistence": 1}},
		{"Memory to File", "m", map[string]any{"maxSize": 1 << 20, "streamSegmentSize": 1024, "persistence": 0}},
		{"maxSize below the stored bytes", "f", map[string]any{"maxSize": stored - 1, "streamSegmentSize": 1024}},
		{"maxSize below the segment size", "m", map[string]any{"maxSize": 4096, "streamSegmentSize": 8192, "persistence": 1}},
		{"segment size raised above maxSize", "f", map[string]any{"maxSize": 1 << 20, "streamSegmentSize": 2 << 20}},
	} {
		must(t, c.what, update(t, w, c.name, c.extra), protocol.OpUpdateMessageStreamResponse, protocol.UpdateNotAllowed, "u")
	}
	// Refused updates changed nothing.
	for name, want := range map[string]map[string]any{"f": {"persistence": uint64(0), "maxSize": uint64(1 << 20), "streamSegmentSize": uint64(1024)},
		"m": {"persistence": uint64(1), "maxSize": uint64(1 << 20), "streamSegmentSize": uint64(1024)}} {
		d := describeDefinition(t, w, name)
		for k, v := range want {
			if d[k] != v {
				t.Fatalf("%s after refused updates: %s = %v, want %v", name, k, d[k], v)
			}
		}
	}
	// maxSize exactly the stored bytes is allowed (at least the stored
	// size and the segment size); the stream is then full.
	mustUpdate(t, w, "f", map[string]any{"maxSize": stored, "streamSegmentSize": 1024})
	must(t, "append to a stream updated to full", appendOne(t, w, "f", numbered(20)), protocol.OpAppendMessageResponse, protocol.InvalidRequest, "a")
	if got := readAllWire(t, w, "f", 0); len(got) != 20 {
		t.Fatalf("%d messages after the updates, want 20", len(got))
	}
	// Every field allowed to change, changed at once, reads back as sent.
	mustUpdate(t, w, "f", map[string]any{"maxSize": 1 << 21, "streamSegmentSize": 2048, "strategyOnFull": 1, "flushOnWrite": true, "timeToLiveMillis": 120000})
	d := describeDefinition(t, w, "f")
	if d["maxSize"] != uint64(1<<21) || d["streamSegmentSize"] != uint64(2048) || d["strategyOnFull"] != uint64(1) || d["flushOnWrite"] != true ||
		d["timeToLiveMillis"] != uint64(120000) || d["persistence"] != uint64(0) {
		t.Fatalf("definition after the update %v", d)
	}
	// And outlives a restart.
	e.stop()
	e.start(t, false)
	w = dialWire(t, e.addr)
	if d2 := describeDefinition(t, w, "f"); fmt.Sprint(d2) != fmt.Sprint(d) {
		t.Fatalf("definition after a restart %v, want %v", d2, d)
	}
}

// TestUpdatedSegmentSizeAppliesToNewSegments: the segments written
// before the update keep their size; those started after it have the new
// one. Seen from outside: OverwriteOldestData drops a segment at a time,
// so the oldest sequence number moves by the old segment's message count,
// then by the new one's.
func TestUpdatedSegmentSizeAppliesToNewSegments(t *testing.T) {
	e := newEnv(t)
	e.start(t, false)
	w := dialWire(t, e.addr)
	rec := recordBytes(t, w)
	createStream(t, w, "g", map[string]any{"maxSize": 8192, "streamSegmentSize": 1024, "strategyOnFull": 1})
	old := 1024 / rec
	n := 3*old + 1 // three full segments and one begun
	for i := range int(n) {
		mustAppend(t, w, "g", numbered(i))
	}
	mustUpdate(t, w, "g", map[string]any{"maxSize": 8192, "streamSegmentSize": 4096, "strategyOnFull": 1})
	var oldest []uint64
	for i := int(n); i < 400; i++ {
		mustAppend(t, w, "g", numbered(i))
		s := describeStorage(t, w, "g")
		if s.bytes > 8192 {
			t.Fatalf("%d bytes stored over maxSize 8192", s.bytes)
		}
		if len(oldest) == 0 || oldest[len(oldest)-1] != s.oldest {
			oldest = append(oldest, s.oldest)
		}
	}
	var steps []uint64
	for i := 1; i < len(oldest); i++ {
		steps = append(steps, oldest[i]-oldest[i-1])
	}
	t.Logf("oldest steps %v", steps)
	neu := 4096 / rec
	if len(steps) < 6 || steps[0] != old || steps[1] != old || steps[2] != old {
		t.Fatalf("oldest went %v (steps %v): the three segments written before the update must go %d messages at a time", oldest, steps, old)
	}
	for _, s := range steps[len(steps)-3:] {
		if s != neu {
			t.Fatalf("oldest went %v (steps %v): segments started after the update must go %d messages at a time", oldest, steps, neu)
		}
	}
}

// TestUpdatedStrategyAppliesToNextAppend: a full RejectNewData stream
// updated to OverwriteOldestData takes the next append by dropping its
// oldest segment; updated back, it refuses again.
func TestUpdatedStrategyAppliesToNextAppend(t *testing.T) {
	e := newEnv(t)
	e.start(t, false)
	w := dialWire(t, e.addr)
	rec := recordBytes(t, w)
	createStream(t, w, "s", map[string]any{"maxSize": 4096, "streamSegmentSize": 1024, "strategyOnFull": 0})
	n := int(4096 / rec)
	for i := range n {
		mustAppend(t, w, "s", numbered(i))
	}
	must(t, "full", appendOne(t, w, "s", numbered(n)), protocol.OpAppendMessageResponse, protocol.InvalidRequest, "a")
	mustUpdate(t, w, "s", map[string]any{"maxSize": 4096, "streamSegmentSize": 1024, "strategyOnFull": 1})
	if seq := mustAppend(t, w, "s", numbered(n)); seq != uint64(n) {
		t.Fatalf("append after the strategy update numbered %d, want %d", seq, n)
	}
	if s := describeStorage(t, w, "s"); s.oldest != 1024/rec || s.newest != uint64(n) {
		t.Fatalf("after overwriting: %+v, want the first segment (%d messages) gone", s, 1024/rec)
	}
	// Fill it up again, then back to RejectNewData.
	for i := n + 1; describeStorage(t, w, "s").bytes+rec <= 4096; i++ {
		mustAppend(t, w, "s", numbered(i))
	}
	before := describeStorage(t, w, "s")
	mustUpdate(t, w, "s", map[string]any{"maxSize": 4096, "streamSegmentSize": 1024, "strategyOnFull": 0})
	must(t, "full again", appendOne(t, w, "s", []byte("x")), protocol.OpAppendMessageResponse, protocol.InvalidRequest, "a")
	if after := describeStorage(t, w, "s"); after != before {
		t.Fatalf("a refused append changed the stream: %+v -> %+v", before, after)
	}
}

// TestUpdatedTTL: a longer TTL keeps what the old one would have dropped;
// a shorter one applies to what is stored (v1: "might also delete
// existing segments that exceed the TTL") and to new appends.
func TestUpdatedTTL(t *testing.T) {
	clk := newFakeClock()
	e := newEnv(t)
	e.startWith(t, streammgr.Options{Now: clk.now})
	w := dialWire(t, e.addr)
	rec := recordBytes(t, w)
	per := int(1024 / rec)
	createStream(t, w, "t", map[string]any{"streamSegmentSize": 1024, "timeToLiveMillis": 60000})
	for i := range 2 * per {
		mustAppend(t, w, "t", numbered(i))
	}
	clk.add(30 * time.Second)
	mustUpdate(t, w, "t", map[string]any{"streamSegmentSize": 1024, "timeToLiveMillis": 3600000})
	clk.add(10 * time.Minute)
	if s := describeStorage(t, w, "t"); s.oldest != 0 || s.newest != uint64(2*per-1) {
		t.Fatalf("TTL raised to an hour, 10 minutes on: %+v, want everything kept", s)
	}
	// Down to a minute: the two old segments are past it.
	mustUpdate(t, w, "t", map[string]any{"streamSegmentSize": 1024, "timeToLiveMillis": 60000})
	if s := describeStorage(t, w, "t"); s.bytes != 0 {
		t.Fatalf("TTL lowered to a minute, data 10 minutes old kept: %+v", s)
	}
	mustAppend(t, w, "t", numbered(2*per))
	clk.add(59 * time.Second)
	if s := describeStorage(t, w, "t"); s.bytes == 0 {
		t.Fatal("a message younger than the TTL was dropped")
	}
	clk.add(2 * time.Second)
	if s := describeStorage(t, w, "t"); s.bytes != 0 || s.oldest != uint64(2*per+1) {
		t.Fatalf("a message appended after the TTL update, 61 s on: %+v, want it expired", s)
	}
}

// TestUpdatedExportsMatchedByIdentifier: an update's export
// configurations replace the running ones by identifier: one kept with
// changes continues from its progress (nothing sent twice), one left out
// stops and leaves exportStatuses, a new one starts from its
// startSequenceNumber.
func TestUpdatedExportsMatchedByIdentifier(t *testing.T) {
	var mu sync.Mutex
	got := map[string][]int{} // path -> sequence numbers received
	srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		var msgs []map[string]any
		if err := json.Unmarshal(b, &msgs); err != nil {
			t.Errorf("body %q: %v", b, err)
		}
		mu.Lock()
		for _, m := range msgs {
			got[r.URL.Path] = append(got[r.URL.Path], int(m["sequenceNumber"].(float64)))
		}
		mu.Unlock()
	}))
	t.Cleanup(srv.Close)
	received := func(path string) []int {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(got[path])
	}
	waitFor := func(what string, fn func() bool) {
		t.Helper()
		for end := time.Now().Add(15 * time.Second); !fn(); time.Sleep(5 * time.Millisecond) {
			if time.Now().After(end) {
				t.Fatalf("%s: a=%v b=%v c=%v", what, received("/a"), received("/b"), received("/c"))
			}
		}
	}
	cfg := func(id string, extra map[string]any) map[string]any {
		c := map[string]any{"identifier": id, "uri": srv.URL + "/" + id, "exportFormat": 1, "batchSize": 1}
		for k, v := range extra {
			c[k] = v
		}
		return c
	}
	exports := func(cfgs ...map[string]any) map[string]any {
		l := make([]any, len(cfgs))
		for i, c := range cfgs {
			l[i] = c
		}
		return map[string]any{"exportDefinition": map[string]any{"http": l}}
	}
	statuses := func(w *wire) map[string]map[any]any {
		f := must(t, "describe", w.call(protocol.OpDescribeMessageStream, map[string]any{"requestId": "d", "name": "x"}),
			protocol.OpDescribeMessageStreamResponse, protocol.Success, "d")
		out := map[string]map[any]any{}
		for _, s := range f.body["messageStreamInfo"].(map[any]any)["exportStatuses"].([]any) {
			out[s.(map[any]any)["exportConfigIdentifier"].(string)] = s.(map[any]any)
		}
		return out
	}

	e := newEnv(t)
	e.start(t, false)
	w := dialWire(t, e.addr)
	createStream(t, w, "x", exports(cfg("a", nil), cfg("b", nil)))
	for i := range 3 {
		mustAppend(t, w, "x", numbered(i))
	}
	waitFor("a and b export 0..2", func() bool { return len(received("/a")) == 3 && len(received("/b")) == 3 })
	// Received is not yet recorded: an update that restarts an export
	// between the POST's answer and its progress write resends that batch
	// (at-least-once). Wait for the progress, so that "each once" below
	// tests the identifier matching and nothing else.
	waitFor("a and b record 2 as exported", func() bool {
		s := statuses(w)
		return fmt.Sprint(s["a"]["lastExportedSequenceNumber"]) == "2" && fmt.Sprint(s["b"]["lastExportedSequenceNumber"]) == "2"
	})

	// a kept (batchSize changed), b left out, c added from 1.
	mustUpdate(t, w, "x", exports(cfg("a", map[string]any{"batchSize": 5}), cfg("c", map[string]any{"startSequenceNumber": 1})))
	for i := 3; i < 6; i++ {
		mustAppend(t, w, "x", numbered(i))
	}
	waitFor("a exports 3..5, c 1..5", func() bool { return len(received("/a")) >= 6 && len(received("/c")) >= 5 })
	if s := statuses(w); len(s) != 2 || s["a"] == nil || s["c"] == nil {
		t.Fatalf("exportStatuses after the update: %v", s)
	}
	// Give a removed or restarted export the time to misbehave.
	time.Sleep(100 * time.Millisecond)
	if a := received("/a"); fmt.Sprint(a) != "[0 1 2 3 4 5]" {
		t.Fatalf("export a, kept by its identifier, sent %v (want each once: it continues from its progress)", a)
	}
	if b := received("/b"); fmt.Sprint(b) != "[0 1 2]" {
		t.Fatalf("export b, left out of the update, sent %v", b)
	}
	if c := received("/c"); fmt.Sprint(c) != "[1 2 3 4 5]" {
		t.Fatalf("export c, added by the update from 1, sent %v", c)
	}
	s := statuses(w)
	if s["a"]["lastExportedSequenceNumber"] != uint64(5) || s["a"]["exportedMessagesCount"] != uint64(6) ||
		s["c"]["lastExportedSequenceNumber"] != uint64(5) || s["c"]["exportedMessagesCount"] != uint64(5) {
		t.Fatalf("export statuses %v", s)
	}
	// An update without exportDefinition removes them all.
	mustUpdate(t, w, "x", nil)
	if s := statuses(w); len(s) != 0 {
		t.Fatalf("exportStatuses after an update without exports: %v", s)
	}
	mustAppend(t, w, "x", numbered(6))
	time.Sleep(100 * time.Millisecond)
	for _, p := range []string{"/a", "/b", "/c"} {
		if slices.Contains(received(p), 6) {
			t.Fatalf("%s got message 6 after its export was removed", strings.TrimPrefix(p, "/"))
		}
	}
}

// TestExportStartSequenceNumberNotBeyondNewest: GGDG "Update message
// stream": to update the start sequence number of an export
// configuration, the value must not be beyond the latest sequence number
// of the stream. An update that moves it past the newest message is
// UpdateNotAllowed (v1's UpdateNotAllowedException, an
// InvalidRequestException) naming the field, and changes nothing; moving
// it within the stored range, or leaving it as it was, is allowed; so is
// any start of a new export configuration.
func TestExportStartSequenceNumberNotBeyondNewest(t *testing.T) {
	e := newEnv(t)
	e.start(t, false)
	w := dialWire(t, e.addr)
	withExport := func(start int, more ...map[string]any) map[string]any {
		l := []any{map[string]any{"identifier": "web", "uri": "http://127.0.0.1:9/in", "disabled": true, "startSequenceNumber": start}}
		for _, m := range more {
			l = append(l, m)
		}
		return map[string]any{"exportDefinition": map[string]any{"http": l}}
	}
	// Created with a start ahead of an empty stream: a create is no update.
	createStream(t, w, "s", withExport(10))
	for i := range 5 {
		mustAppend(t, w, "s", numbered(i)) // newest is 4
	}
	// Unchanged (10, beyond 4): allowed, the export is not being moved.
	mustUpdate(t, w, "s", withExport(10))
	// Moved within the stream: allowed.
	mustUpdate(t, w, "s", withExport(3))
	mustUpdate(t, w, "s", withExport(4))
	// Moved beyond the newest: refused.
	for _, start := range []int{5, 6, 100, 1 << 40} {
		f := must(t, "startSequenceNumber beyond the newest", update(t, w, "s", withExport(start)),
			protocol.OpUpdateMessageStreamResponse, protocol.UpdateNotAllowed, "u")
		if msg := fmt.Sprint(f.body["errorMessage"]); !strings.Contains(msg, "definition.exportDefinition.http[0].startSequenceNumber") {
			t.Fatalf("refusal %q does not name the field", msg)
		}
	}
	// The same identifier under another kind is the same export.
	js := map[string]any{"exportDefinition": map[string]any{"jetstream": []any{map[string]any{
		"identifier": "web", "url": "nats://127.0.0.1:9", "subject": "s.in", "disabled": true, "startSequenceNumber": 7}}}}
	if f := must(t, "moved beyond the newest as another kind", update(t, w, "s", js),
		protocol.OpUpdateMessageStreamResponse, protocol.UpdateNotAllowed, "u"); !strings.Contains(fmt.Sprint(f.body["errorMessage"]), "jetstream[0]") {
		t.Fatalf("refusal %v does not name the field", f.body["errorMessage"])
	}
	ed := describeDefinition(t, w, "s")["exportDefinition"].(map[any]any)
	if got := ed["http"].([]any)[0].(map[any]any)["startSequenceNumber"]; got != uint64(4) {
		t.Fatalf("a refused update changed startSequenceNumber to %v", got)
	}
	// A new export configuration may start anywhere, beside one kept.
	mustUpdate(t, w, "s", withExport(4, map[string]any{"identifier": "new", "uri": "http://127.0.0.1:9/new", "disabled": true, "startSequenceNumber": 100}))
}

// TestChangedStartSequenceNumberMovesTheExport: v1 leaves open what a
// changed startSequenceNumber does to an export that ran; here it moves
// the export there: back (at or below what was exported) exports those
// messages again, once, also across a restart; an update that leaves it
// alone continues from the progress.
func TestChangedStartSequenceNumberMovesTheExport(t *testing.T) {
	var mu sync.Mutex
	var got []int
	srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		var msgs []map[string]any
		if err := json.Unmarshal(b, &msgs); err != nil {
			t.Errorf("body %q: %v", b, err)
		}
		mu.Lock()
		for _, m := range msgs {
			got = append(got, int(m["sequenceNumber"].(float64)))
		}
		mu.Unlock()
	}))
	t.Cleanup(srv.Close)
	received := func() string {
		mu.Lock()
		defer mu.Unlock()
		return fmt.Sprint(got)
	}
	withExport := func(start, batch int) map[string]any {
		return map[string]any{"exportDefinition": map[string]any{"http": []any{map[string]any{
			"identifier": "web", "uri": srv.URL, "exportFormat": 1, "batchSize": batch, "startSequenceNumber": start}}}}
	}
	exportStatus := func(w *wire) map[any]any {
		f := must(t, "describe", w.call(protocol.OpDescribeMessageStream, map[string]any{"requestId": "d", "name": "x"}),
			protocol.OpDescribeMessageStreamResponse, protocol.Success, "d")
		return f.body["messageStreamInfo"].(map[any]any)["exportStatuses"].([]any)[0].(map[any]any)
	}
	var w *wire
	// waitFor waits until the destination received want and the export
	// recorded its last message as exported: an update or a stop between
	// the POST's answer and the progress write would resend that batch
	// (at-least-once), which is not what this test is about.
	waitFor := func(want string) {
		t.Helper()
		for end := time.Now().Add(15 * time.Second); received() != want; time.Sleep(5 * time.Millisecond) {
			if time.Now().After(end) {
				t.Fatalf("exported %s, want %s", received(), want)
			}
		}
		last := want[strings.LastIndex(want, " ")+1 : len(want)-1]
		for end := time.Now().Add(15 * time.Second); fmt.Sprint(exportStatus(w)["lastExportedSequenceNumber"]) != last; time.Sleep(5 * time.Millisecond) {
			if time.Now().After(end) {
				t.Fatalf("exported %s, but the export status says %v", received(), exportStatus(w))
			}
		}
		time.Sleep(100 * time.Millisecond) // time to send more than it should
		if r := received(); r != want {
			t.Fatalf("exported %s, want %s", r, want)
		}
	}

	e := newEnv(t)
	e.start(t, false)
	w = dialWire(t, e.addr)
	createStream(t, w, "x", withExport(0, 1))
	for i := range 6 {
		mustAppend(t, w, "x", numbered(i))
	}
	waitFor("[0 1 2 3 4 5]")
	// Back to 2: 2..5 again.
	mustUpdate(t, w, "x", withExport(2, 1))
	waitFor("[0 1 2 3 4 5 2 3 4 5]")
	if s := exportStatus(w); s["lastExportedSequenceNumber"] != uint64(5) || s["exportedMessagesCount"] != uint64(10) {
		t.Fatalf("export status after exporting again %v", s)
	}
	// Unchanged start, another batch size: continues, sends nothing again.
	mustUpdate(t, w, "x", withExport(2, 2))
	mustAppend(t, w, "x", numbered(6))
	waitFor("[0 1 2 3 4 5 2 3 4 5 6]")
	// Nor does a restart.
	e.stop()
	e.start(t, false)
	w = dialWire(t, e.addr)
	mustAppend(t, w, "x", numbered(7))
	waitFor("[0 1 2 3 4 5 2 3 4 5 6 7]")
	// Back to the newest (allowed): it alone again.
	mustUpdate(t, w, "x", withExport(7, 2))
	waitFor("[0 1 2 3 4 5 2 3 4 5 6 7 7]")
}
