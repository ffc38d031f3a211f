package streammgr_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	runtimev1 "github.com/evergreen-edge/evergreen/proto/evergreen/runtime/v1"
	streammgrv1 "github.com/evergreen-edge/evergreen/proto/evergreen/streammgr/v1"
	"github.com/evergreen-edge/evergreen/services/kit/layout"
	"github.com/evergreen-edge/evergreen/streammgr"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	grpcstatus "google.golang.org/grpc/status"
)

// pythonClientScript drives the Python shims' greengrasssdk.stream_manager
// (runtime/shims/python) as a v1 function would, and prints what it saw
// as one JSON object for the Go side to check.
const pythonClientScript = `
import json
import os
import threading
import time

import greengrasssdk.stream_manager as sm
from greengrasssdk.stream_manager import (
    ExportDefinition, ExportFormat, HTTPConfig, MessageStreamDefinition, Persistence, ReadMessagesOptions,
    StrategyOnFull, StreamManagerClient, Util, PutAssetPropertyValueEntry, AssetPropertyValue, Variant,
    TimeInNanos, Quality)
from greengrasssdk.stream_manager.exceptions import (
    ConnectFailedException, InvalidRequestException, StreamManagerException, ValidationException)

out = {'module': sm.__file__}


def failure(fn, *args):
    try:
        fn(*args)
    except StreamManagerException as e:
        st = e.status
        return {'type': type(e).__name__, 'status': getattr(st, 'name', st), 'message': str(e)}
    return {'type': None}


token = os.environ['AWS_CONTAINER_AUTHORIZATION_TOKEN']
os.environ['AWS_CONTAINER_AUTHORIZATION_TOKEN'] = 'not-a-token-the-core-issued'
out['unauthorized'] = failure(StreamManagerClient)
os.environ['AWS_CONTAINER_AUTHORIZATION_TOKEN'] = token

client = StreamManagerClient(request_timeout=20)
name = 'py-readings'
definition = MessageStreamDefinition(
    name=name, max_size=1 << 20, stream_segment_size=4096, strategy_on_full=StrategyOnFull.RejectNewData,
    persistence=Persistence.File, flush_on_write=False,
    export_definition=ExportDefinition(http=[HTTPConfig(
        identifier='web', uri=os.environ['EXPORT_URL'], batch_size=2, export_format=ExportFormat.JSON_BATCHED)]))
client.create_message_stream(definition)
out['create_again'] = failure(client.create_message_stream, definition)
out['seqs'] = [client.append_message(name, b'reading-%d' % i) for i in range(3)]

msgs = client.read_messages(name, ReadMessagesOptions(desired_start_sequence_number=1, max_message_count=5))
out['read'] = [[m.stream_name, m.sequence_number, m.payload.decode(), m.ingest_time > 0] for m in msgs]
out['read_default'] = [m.sequence_number for m in client.read_messages(name)]

# A long poll on one thread; the same client serves the main thread meanwhile.
polled = {}


def poll():
    start = time.monotonic()
    got = client.read_messages(name, ReadMessagesOptions(desired_start_sequence_number=3, read_timeout_millis=15000))
    polled['msgs'] = [[m.sequence_number, m.payload.decode()] for m in got]
    polled['seconds'] = time.monotonic() - start


poller = threading.Thread(target=poll)
poller.start()
time.sleep(0.3)
out['listed'] = client.list_streams()
out['poll_pending_while_listing'] = poller.is_alive()
client.append_message(name, b'late')
poller.join(20)
out['poll'] = polled

start = time.monotonic()
out['not_enough_after_wait'] = failure(
    client.read_messages, name, ReadMessagesOptions(desired_start_sequence_number=100, read_timeout_millis=300))
out['not_enough_waited'] = time.monotonic() - start
out['not_enough'] = failure(client.read_messages, name, ReadMessagesOptions(desired_start_sequence_number=100))

out['missing'] = [failure(client.append_message, 'nope', b'x'), failure(client.describe_message_stream, 'nope'),
                  failure(client.read_messages, 'nope'), failure(client.delete_message_stream, 'nope')]
out['refused_locally'] = [
    failure(client.read_messages, name, ReadMessagesOptions(min_message_count=3, max_message_count=2)),
    failure(client.read_messages, name, ReadMessagesOptions(read_timeout_millis=21000)),
    failure(client.append_message, 'a/b', b'x'),
    failure(client.append_message, name, b''),
    failure(client.create_message_stream, MessageStreamDefinition(name='no-strategy')),
]

# Several threads on one client at once.
seqs, lock = [], threading.Lock()


def appender(n):
    for i in range(10):
        s = client.append_message(name, b'thread-%d-%d' % (n, i))
        with lock:
            seqs.append(s)


threads = [threading.Thread(target=appender, args=(n,)) for n in range(8)]
for t in threads:
    t.start()
for t in threads:
    t.join(30)
out['concurrent_seqs'] = sorted(seqs)

info = client.describe_message_stream(name)
out['described'] = {
    'name': info.definition.name, 'max_size': info.definition.max_size,
    'strategy': info.definition.strategy_on_full.name, 'persistence': info.definition.persistence.name,
    'http': [[h.identifier, h.uri, h.batch_size, h.export_format.name] for h in info.definition.export_definition.http],
    'oldest': info.storage_status.oldest_sequence_number, 'newest': info.storage_status.newest_sequence_number,
    'total_bytes': info.storage_status.total_bytes,
    'exports': [e.export_config_identifier for e in (info.export_statuses or [])],
}

definition.time_to_live_millis = 60000
definition.flush_on_write = True
client.update_message_stream(definition)
out['updated_ttl'] = client.describe_message_stream(name).definition.time_to_live_millis
definition.persistence = Persistence.Memory
try:
    client.update_message_stream(definition)
    out['update_persistence'] = None
except InvalidRequestException as e:
    out['update_persistence'] = type(e).__name__

# A SiteWise entry travels as JSON bytes and comes back equal.
client.create_message_stream(MessageStreamDefinition(name='py-sitewise', strategy_on_full=StrategyOnFull.OverwriteOldestData))
entry = PutAssetPropertyValueEntry(entry_id='e-1', property_alias='/plant/1/temp', property_values=[AssetPropertyValue(
    value=Variant(double_value=21.5), timestamp=TimeInNanos(time_in_seconds=1700000000, offset_in_nanos=7),
    quality=Quality.GOOD)])
client.append_message('py-sitewise', Util.validate_and_serialize_to_json_bytes(entry))
back = Util.deserialize_json_bytes_to_obj(client.read_messages('py-sitewise')[0].payload, PutAssetPropertyValueEntry)
out['sitewise_round_trip'] = back.as_dict() == entry.as_dict()
client.delete_message_stream('py-sitewise')
out['deleted'] = failure(client.describe_message_stream, 'py-sitewise')
out['listed_after_delete'] = client.list_streams()

client.close()
out['after_close'] = failure(client.list_streams)
print(json.dumps(out))
`

// TestPythonStreamManagerClient runs the Python shims' stream manager
// client (what a v1 Python function without its own greengrasssdk
// imports) against the real server with authentication on: a token the
// runtime does not know is refused, and with the worker's token every
// operation, error and export behaves as v1 documents. The Go side checks
// the same stream through the operator API and the export's destination.
func TestPythonStreamManagerClient(t *testing.T) {
	py, err := exec.LookPath("python3")
	if err != nil {
		if os.Getenv("EVERGREEN_REQUIRE_ALL") != "" {
			t.Fatalf("python3 not on PATH and EVERGREEN_REQUIRE_ALL is set: %v", err)
		}
		t.Skip("python3 not on PATH: skipping the Python stream manager client test (set EVERGREEN_REQUIRE_ALL=1 to fail instead)")
	}
	shims, err := filepath.Abs(filepath.Join("..", "runtime", "shims", "python"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(shims, "greengrasssdk", "stream_manager", "__init__.py")); err != nil {
		t.Fatalf("the Python shims' stream manager package is missing: %v", err)
	}

	var mu sync.Mutex
	var exported []string
	dest := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		var msgs []struct {
			Payload []byte `json:"payload"`
		}
		if err := json.Unmarshal(b, &msgs); err != nil {
			t.Errorf("export body %q: %v", b, err)
		}
		mu.Lock()
		for _, m := range msgs {
			exported = append(exported, string(m.Payload))
		}
		mu.Unlock()
	}))
	t.Cleanup(dest.Close)

	const token = "cHl0aG9uLXdvcmtlci10b2tlbg=="
	e := newEnv(t)
	rt := startFakeRuntime(t, e.root, map[string]string{token: "arn:aws:lambda:us-east-1:123456789012:function:PyFn:1"})
	e.start(t, true)
	_, port, err := net.SplitHostPort(e.addr)
	if err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, py, "-")
	cmd.Stdin = strings.NewReader(pythonClientScript)
	cmd.Env = []string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + t.TempDir(),
		"PYTHONPATH=" + shims,
		"PYTHONDONTWRITEBYTECODE=1",
		"STREAM_MANAGER_SERVER_PORT=" + port,
		"AWS_CONTAINER_AUTHORIZATION_TOKEN=" + token,
		"EXPORT_URL=" + dest.URL,
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("the Python client script failed: %v\nstdout:\n%s\nstderr:\n%s", err, stdout.String(), stderr.String())
	}
	var out struct {
		Module                  string
		Unauthorized            failure
		CreateAgain             failure `json:"create_again"`
		Seqs                    []int64
		Read                    [][]any
		ReadDefault             []int64 `json:"read_default"`
		Listed                  []string
		PollPendingWhileListing bool `json:"poll_pending_while_listing"`
		Poll                    struct {
			Msgs    [][]any
			Seconds float64
		}
		NotEnoughAfterWait failure   `json:"not_enough_after_wait"`
		NotEnoughWaited    float64   `json:"not_enough_waited"`
		NotEnough          failure   `json:"not_enough"`
		Missing            []failure `json:"missing"`
		RefusedLocally     []failure `json:"refused_locally"`
		ConcurrentSeqs     []int64   `json:"concurrent_seqs"`
		Described          struct {
			Name        string
			MaxSize     int64 `json:"max_size"`
			Strategy    string
			Persistence string
			HTTP        [][]any
			Oldest      int64
			Newest      int64
			TotalBytes  int64 `json:"total_bytes"`
		}
		UpdatedTTL        int64   `json:"updated_ttl"`
		UpdatePersistence *string `json:"update_persistence"`
		SitewiseRoundTrip bool    `json:"sitewise_round_trip"`
		Deleted           failure
		ListedAfterDelete []string `json:"listed_after_delete"`
		AfterClose        failure  `json:"after_close"`
	}
	if err := json.Unmarshal(stdout.Bytes(), &out); err != nil {
		t.Fatalf("script output %q: %v\nstderr:\n%s", stdout.String(), err, stderr.String())
	}

	// The package came from the shims, not from an installed SDK.
	if !strings.HasPrefix(out.Module, shims+string(filepath.Separator)) {
		t.Errorf("greengrasssdk.stream_manager imported from %s, want under %s", out.Module, shims)
	}
	if out.Unauthorized.Type != "ConnectFailedException" || out.Unauthorized.Status != "Unauthorized" {
		t.Errorf("an unknown token: %+v, want ConnectFailedException with status Unauthorized", out.Unauthorized)
	}
	if calls := rt.checked(); !slices.Contains(calls, token) || !slices.Contains(calls, "not-a-token-the-core-issued") {
		t.Errorf("the runtime was asked about %q; want both tokens the client sent", calls)
	}
	if out.CreateAgain.Type != "InvalidRequestException" || out.CreateAgain.Status != "InvalidRequest" {
		t.Errorf("creating an existing stream: %+v", out.CreateAgain)
	}
	if fmt.Sprint(out.Seqs) != "[0 1 2]" {
		t.Errorf("append sequence numbers %v", out.Seqs)
	}
	if fmt.Sprint(out.Read) != "[[py-readings 1 reading-1 true] [py-readings 2 reading-2 true]]" {
		t.Errorf("read from 1 (max 5): %v", out.Read)
	}
	if fmt.Sprint(out.ReadDefault) != "[0]" {
		t.Errorf("read with v1's defaults: %v, want the oldest message only", out.ReadDefault)
	}
	if !slices.Contains(out.Listed, "py-readings") {
		t.Errorf("list_streams %v", out.Listed)
	}
	if !out.PollPendingWhileListing || fmt.Sprint(out.Poll.Msgs) != "[[3 late]]" || out.Poll.Seconds >= 15 {
		t.Errorf("long poll: pending while listing %v, got %v after %.1fs", out.PollPendingWhileListing, out.Poll.Msgs, out.Poll.Seconds)
	}
	if out.NotEnoughAfterWait.Type != "NotEnoughMessagesException" || out.NotEnoughWaited < 0.25 {
		t.Errorf("read past the end with a 300 ms timeout: %+v after %.2fs", out.NotEnoughAfterWait, out.NotEnoughWaited)
	}
	if out.NotEnough.Type != "NotEnoughMessagesException" || out.NotEnough.Status != "NotEnoughMessages" {
		t.Errorf("read past the end: %+v", out.NotEnough)
	}
	if len(out.Missing) != 4 {
		t.Fatalf("missing: %+v", out.Missing)
	}
	for i, f := range out.Missing {
		if f.Type != "ResourceNotFoundException" || f.Status != "ResourceNotFound" {
			t.Errorf("operation %d on a missing stream: %+v", i, f)
		}
	}
	for i, f := range out.RefusedLocally {
		// Refused before anything is sent: no status from a server.
		if f.Type != "ValidationException" || f.Status != nil {
			t.Errorf("invalid request %d: %+v, want a ValidationException from the client", i, f)
		}
	}
	// Sorted, the sequence numbers of 80 appends from 8 threads are 4..83:
	// each call got its own answer.
	if len(out.ConcurrentSeqs) != 80 {
		t.Errorf("80 appends from 8 threads returned %d sequence numbers", len(out.ConcurrentSeqs))
	}
	for i, s := range out.ConcurrentSeqs {
		if s != int64(4+i) {
			t.Errorf("80 appends from 8 threads got sequence numbers %v", out.ConcurrentSeqs)
			break
		}
	}
	d := out.Described
	if d.Name != "py-readings" || d.MaxSize != 1<<20 || d.Strategy != "RejectNewData" || d.Persistence != "File" ||
		fmt.Sprint(d.HTTP) != fmt.Sprintf("[[web %s 2 JSON_BATCHED]]", dest.URL) || d.Oldest != 0 || d.Newest != 83 || d.TotalBytes <= 0 {
		t.Errorf("describe_message_stream %+v", d)
	}
	if out.UpdatedTTL != 60000 {
		t.Errorf("time_to_live_millis after update_message_stream: %d", out.UpdatedTTL)
	}
	if out.UpdatePersistence == nil || *out.UpdatePersistence != "UpdateNotAllowedException" {
		t.Errorf("changing persistence raised %v, want UpdateNotAllowedException (an InvalidRequestException)", out.UpdatePersistence)
	}
	if !out.SitewiseRoundTrip {
		t.Error("a PutAssetPropertyValueEntry did not survive append and read")
	}
	if out.Deleted.Type != "ResourceNotFoundException" || slices.Contains(out.ListedAfterDelete, "py-sitewise") {
		t.Errorf("after delete_message_stream: describe %+v, list %v", out.Deleted, out.ListedAfterDelete)
	}
	if out.AfterClose.Type != "StreamManagerException" || !strings.Contains(out.AfterClose.Message, "closed") {
		t.Errorf("a call after close: %+v", out.AfterClose)
	}

	// The operator API sees what the Python function did.
	conn, err := grpc.NewClient("unix://"+e.root.Socket(streammgr.Name), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	api := streammgrv1.NewStreamManagerClient(conn)
	info, err := api.DescribeStream(ctx, &streammgrv1.DescribeStreamRequest{Name: "py-readings"})
	if err != nil {
		t.Fatal(err)
	}
	if def := info.GetDefinition(); def.GetTimeToLiveMillis() != 60000 || !def.GetFlushOnWrite() || def.GetPersistence() != streammgrv1.Persistence_PERSISTENCE_FILE ||
		info.GetNewestSequenceNumber() != 83 {
		t.Errorf("DescribeStream after the Python updates: %v", info)
	}
	read, err := api.ReadMessages(ctx, &streammgrv1.ReadMessagesRequest{Name: "py-readings", StartSequenceNumber: 0, MaxMessageCount: 4})
	if err != nil {
		t.Fatal(err)
	}
	var payloads []string
	for _, m := range read.GetMessages() {
		payloads = append(payloads, string(m.GetPayload()))
	}
	if fmt.Sprint(payloads) != "[reading-0 reading-1 reading-2 late]" {
		t.Errorf("payloads through the operator API: %q", payloads)
	}

	// The HTTP export the Python definition asked for delivers every message.
	deadline := time.Now().Add(20 * time.Second)
	for {
		mu.Lock()
		n := len(exported)
		got := slices.Clone(exported)
		mu.Unlock()
		if n >= 84 {
			if got[0] != "reading-0" || got[3] != "late" || !slices.Contains(got, "thread-7-9") {
				t.Errorf("exported %q", got)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the HTTP export delivered %d of 84 messages: %q", n, got)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// failure is what the script reports of a call that raised (Type "" or
// null when it did not).
type failure struct {
	Type    string
	Status  any
	Message string
}

// fakeRuntime answers CheckToken for the tokens it was given, as the
// runtime does for its workers' tokens.
type fakeRuntime struct {
	runtimev1.UnimplementedRuntimeServer
	tokens map[string]string

	mu   sync.Mutex
	seen []string
}

func (f *fakeRuntime) CheckToken(_ context.Context, in *runtimev1.CheckTokenRequest) (*runtimev1.CheckTokenResponse, error) {
	f.mu.Lock()
	f.seen = append(f.seen, in.GetToken())
	f.mu.Unlock()
	if fn, ok := f.tokens[in.GetToken()]; ok {
		return &runtimev1.CheckTokenResponse{FunctionArn: fn}, nil
	}
	return nil, grpcstatus.Error(codes.NotFound, "no running worker holds this token")
}

func (f *fakeRuntime) checked() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.seen)
}

// startFakeRuntime serves CheckToken on DIR/run/runtime.sock, where the
// stream manager asks.
func startFakeRuntime(t *testing.T, root layout.Root, tokens map[string]string) *fakeRuntime {
	t.Helper()
	if err := os.MkdirAll(root.RunDir(), 0o755); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("unix", root.Socket("runtime"))
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeRuntime{tokens: tokens}
	srv := grpc.NewServer()
	runtimev1.RegisterRuntimeServer(srv, f)
	go srv.Serve(ln)
	t.Cleanup(srv.Stop)
	return f
}
