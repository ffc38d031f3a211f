package streammgr_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	streammgrv1 "github.com/evergreen-edge/evergreen/proto/evergreen/streammgr/v1"
	"github.com/evergreen-edge/evergreen/streammgr"
	"github.com/evergreen-edge/evergreen/streammgr/protocol"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// TestHTTPExportThroughTheProtocol: an exportDefinition given to
// CreateMessageStream runs, bad ones are refused naming the field, its
// status shows in DescribeMessageStream and in the gRPC DescribeStream,
// an update pauses it, and the progress outlives a restart.
func TestHTTPExportThroughTheProtocol(t *testing.T) {
	var mu sync.Mutex
	var got []float64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		var msgs []map[string]any
		if err := json.Unmarshal(b, &msgs); err != nil {
			t.Errorf("body %q: %v", b, err)
		}
		mu.Lock()
		for _, m := range msgs {
			got = append(got, m["sequenceNumber"].(float64))
		}
		mu.Unlock()
	}))
	t.Cleanup(srv.Close)

	e := newEnv(t)
	e.start(t, false)
	c, _ := connect(t, e.addr, "")
	httpCfg := func(extra map[string]any) map[string]any {
		h := map[string]any{"identifier": "web", "uri": srv.URL, "batchSize": 2, "exportFormat": 1}
		for k, v := range extra {
			h[k] = v
		}
		return map[string]any{"definition": def("s", map[string]any{"exportDefinition": map[string]any{"http": []any{h}}})}
	}
	for _, bad := range []struct{ key, field string }{{"batchSize", "batchSize"}, {"priority", "priority"}} {
		f := c.call(protocol.OpCreateMessageStream, httpCfg(map[string]any{bad.key: 0}))
		if status(f) != int(protocol.InvalidRequest) || !strings.Contains(fmt.Sprint(f.body["errorMessage"]), bad.field) {
			t.Fatalf("bad %s: %v", bad.key, f.body)
		}
	}
	if f := c.call(protocol.OpCreateMessageStream, httpCfg(nil)); status(f) != 0 {
		t.Fatalf("create: %v", f.body)
	}
	for i := range 3 {
		if f := c.call(protocol.OpAppendMessage, map[string]any{"name": "s", "payload": []byte{byte(i)}}); status(f) != 0 {
			t.Fatalf("append: %v", f.body)
		}
	}
	exportStatus := func() map[any]any {
		f := c.call(protocol.OpDescribeMessageStream, map[string]any{"name": "s"})
		st, _ := f.body["messageStreamInfo"].(map[any]any)["exportStatuses"].([]any)
		if len(st) != 1 {
			t.Fatalf("exportStatuses %v", f.body)
		}
		return st[0].(map[any]any)
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		s := exportStatus()
		if s["exportConfigIdentifier"] == "web" && s["lastExportedSequenceNumber"] == uint64(2) && s["exportedMessagesCount"] == uint64(3) &&
			s["exportedBytesFromStream"] == uint64(3) && s["lastExportTime"].(uint64) > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("export status %v", s)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if f := c.call(protocol.OpUpdateMessageStream, httpCfg(map[string]any{"priority": 11})); status(f) != int(protocol.InvalidRequest) ||
		!strings.Contains(fmt.Sprint(f.body["errorMessage"]), "priority") {
		t.Fatalf("update with a bad priority: %v", f.body)
	}
	if f := c.call(protocol.OpUpdateMessageStream, httpCfg(map[string]any{"disabled": true})); status(f) != 0 {
		t.Fatalf("update: %v", f.body)
	}
	c.nc.Close()

	e.stop()
	e.start(t, false)
	conn, err := grpc.NewClient("unix://"+e.root.Socket(streammgr.Name), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	info, err := streammgrv1.NewStreamManagerClient(conn).DescribeStream(ctx, &streammgrv1.DescribeStreamRequest{Name: "s"})
	if err != nil {
		t.Fatal(err)
	}
	if s := info.GetExportStatuses(); len(s) != 1 || s[0].GetExportConfigIdentifier() != "web" || s[0].GetLastExportedSequenceNumber() != 2 ||
		s[0].GetExportedMessagesCount() != 3 || s[0].GetLastExportTimeMillis() == 0 {
		t.Fatalf("gRPC export statuses after a restart %v", s)
	}
	mu.Lock()
	defer mu.Unlock()
	if fmt.Sprint(got) != "[0 1 2]" {
		t.Fatalf("exported %v", got)
	}
}

// TestKill9DuringExport kills the daemon (SIGKILL) in the middle of an
// HTTP export and starts it again: every message reaches the destination,
// and the only duplicates are the one batch whose acknowledgement the
// kill kept from being recorded.
func TestKill9DuringExport(t *testing.T) {
	const n, batch = 200, 5
	var mu sync.Mutex
	count := map[int]int{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(2 * time.Millisecond) // keep the export busy while the test kills it
		b, _ := io.ReadAll(r.Body)
		var msgs []map[string]any
		if err := json.Unmarshal(b, &msgs); err != nil {
			t.Errorf("body %q: %v", b, err)
		}
		mu.Lock()
		for _, m := range msgs {
			count[int(m["sequenceNumber"].(float64))]++
		}
		mu.Unlock()
	}))
	t.Cleanup(srv.Close)
	received := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(count)
	}

	e := newEnv(t)
	cmd, addr := startChild(t, e)
	c, _ := connect(t, addr, "")
	h := map[string]any{"identifier": "web", "uri": srv.URL, "batchSize": batch, "exportFormat": 1, "disabled": true}
	d := def("k", map[string]any{"flushOnWrite": true, "exportDefinition": map[string]any{"http": []any{h}}})
	if f := c.call(protocol.OpCreateMessageStream, map[string]any{"definition": d}); status(f) != 0 {
		t.Fatal(f.body)
	}
	for i := range n {
		if f := c.call(protocol.OpAppendMessage, map[string]any{"name": "k", "payload": []byte(fmt.Sprint(i))}); status(f) != 0 {
			t.Fatal(f.body)
		}
	}
	h["disabled"] = false
	if f := c.call(protocol.OpUpdateMessageStream, map[string]any{"definition": d}); status(f) != 0 {
		t.Fatal(f.body)
	}
	deadline := time.Now().Add(15 * time.Second)
	for received() < 4*batch {
		if time.Now().After(deadline) {
			t.Fatalf("export did not start: %d received", received())
		}
		time.Sleep(time.Millisecond)
	}
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	// (Should the export have finished before the kill, the restart must
	// still send nothing twice beyond the batch in flight.)
	e.start(t, false)
	deadline = time.Now().Add(30 * time.Second)
	for received() < n {
		if time.Now().After(deadline) {
			t.Fatalf("after the restart %d of %d exported", received(), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	dups := 0
	for s := range n {
		switch count[s] {
		case 1:
		case 2:
			dups++
		default:
			t.Fatalf("message %d exported %d times", s, count[s])
		}
	}
	if dups > batch {
		t.Fatalf("%d messages exported twice; at most the batch in flight (%d) may be", dups, batch)
	}
}
