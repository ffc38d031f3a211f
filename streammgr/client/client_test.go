package client_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/evergreen-edge/evergreen/services/kit/bustest"
	"github.com/evergreen-edge/evergreen/services/kit/config"
	"github.com/evergreen-edge/evergreen/services/kit/daemon"
	"github.com/evergreen-edge/evergreen/services/kit/layout"
	"github.com/evergreen-edge/evergreen/streammgr"
	"github.com/evergreen-edge/evergreen/streammgr/client"
	"github.com/evergreen-edge/evergreen/streammgr/protocol"
)

// daemonEnv is a real stream manager, in process, on a port kept across
// restarts.
type daemonEnv struct {
	root layout.Root
	bus  string
	port int
	auth bool
	run  *daemon.Running
}

func startDaemon(t *testing.T, auth bool) *daemonEnv {
	t.Helper()
	e := &daemonEnv{root: layout.Root(t.TempDir()), bus: bustest.Start(t), auth: auth}
	bustest.WriteCreds(t, e.root, streammgr.Name)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e.port = ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	e.start(t)
	t.Cleanup(e.stop)
	return e
}

func (e *daemonEnv) start(t *testing.T) {
	t.Helper()
	cfg := config.Default()
	cfg.Evergreen.Listen.Streams = "127.0.0.1:" + strconv.Itoa(e.port)
	cfg.Evergreen.Listen.IPC = "127.0.0.1:0"
	cfg.Evergreen.Streams.AuthenticateClient = e.auth
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	run, err := daemon.Start(ctx, streammgr.Spec(), daemon.Options{Root: e.root.Dir(), BusURL: e.bus, Config: cfg, LogStderr: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	e.run = run
}

func (e *daemonEnv) stop() {
	if e.run != nil {
		e.run.Shutdown(context.Background())
		e.run = nil
	}
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// checkFor polls fn until it holds, failing the test after total.
func checkFor(t *testing.T, total time.Duration, fn func() bool) {
	t.Helper()
	for end := time.Now().Add(total); !fn(); time.Sleep(time.Millisecond) {
		if time.Now().After(end) {
			t.Fatal("condition not met in", total)
		}
	}
}

// waitInFlight waits until n calls of c wait for their responses.
func waitInFlight(t *testing.T, c *client.Client, n int) {
	t.Helper()
	checkFor(t, 10*time.Second, func() bool { return client.InFlight(c) == n })
}

func newClient(t *testing.T, e *daemonEnv, opts ...client.Option) *client.Client {
	t.Helper()
	c, err := client.New(ctxT(t), append([]client.Option{client.WithPort(e.port), client.WithAuthToken("")}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestRoundTrip(t *testing.T) {
	e := startDaemon(t, false)
	c := newClient(t, e)
	ctx := ctxT(t)

	if err := c.CreateMessageStream(ctx, client.MessageStreamDefinition{Name: "s1", StrategyOnFull: client.OverwriteOldestData}); err != nil {
		t.Fatal(err)
	}
	info, err := c.DescribeMessageStream(ctx, "s1")
	if err != nil {
		t.Fatal(err)
	}
	want := client.MessageStreamDefinition{Name: "s1", MaxSize: 256 << 20, StreamSegmentSize: 16 << 20, StrategyOnFull: client.OverwriteOldestData, Persistence: client.File}
	if info.Definition.ExportDefinition != nil || info.Definition != want {
		t.Fatalf("definition %+v, want v1's defaults %+v", info.Definition, want)
	}
	for i := range 3 {
		seq, err := c.AppendMessage(ctx, "s1", []byte{'m', byte('0' + i)})
		if err != nil || seq != int64(i) {
			t.Fatalf("append %d: seq %d, %v", i, seq, err)
		}
	}
	msgs, err := c.ReadMessages(ctx, "s1", &client.ReadMessagesOptions{DesiredStartSequenceNumber: 1, MinMessageCount: 1, MaxMessageCount: 5})
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != 2 || msgs[0].SequenceNumber != 1 || msgs[1].SequenceNumber != 2 || string(msgs[1].Payload) != "m2" ||
		msgs[0].StreamName != "s1" || msgs[0].IngestTime == 0 {
		t.Fatalf("read %+v", msgs)
	}
	if msgs, err := c.ReadMessages(ctx, "s1", nil); err != nil || len(msgs) != 1 || msgs[0].SequenceNumber != 0 {
		t.Fatalf("read with v1's defaults: %+v %v", msgs, err)
	}

	exp := &client.ExportDefinition{HTTP: []client.HTTPConfig{{Identifier: "h1", URI: "http://127.0.0.1:1/", Disabled: true, ExportFormat: client.JSONBatched}}}
	upd := client.MessageStreamDefinition{Name: "s1", StrategyOnFull: client.OverwriteOldestData, FlushOnWrite: true, TimeToLiveMillis: 60000, ExportDefinition: exp}
	if err := c.UpdateMessageStream(ctx, upd); err != nil {
		t.Fatal(err)
	}
	info, err = c.DescribeMessageStream(ctx, "s1")
	if err != nil {
		t.Fatal(err)
	}
	if d := info.Definition; !d.FlushOnWrite || d.TimeToLiveMillis != 60000 || d.ExportDefinition == nil || len(d.ExportDefinition.HTTP) != 1 ||
		d.ExportDefinition.HTTP[0] != exp.HTTP[0] {
		t.Fatalf("updated definition %+v", d)
	}
	if s := info.StorageStatus; s.OldestSequenceNumber != 0 || s.NewestSequenceNumber != 2 || s.TotalBytes == 0 {
		t.Fatalf("storage status %+v", s)
	}
	if len(info.ExportStatuses) != 1 || info.ExportStatuses[0].ExportConfigIdentifier != "h1" {
		t.Fatalf("export statuses %+v", info.ExportStatuses)
	}

	if err := c.CreateMessageStream(ctx, client.MessageStreamDefinition{Name: "s2", Persistence: client.Memory}); err != nil {
		t.Fatal(err)
	}
	names, err := c.ListStreams(ctx)
	if slices.Sort(names); err != nil || !slices.Equal(names, []string{"s1", "s2"}) {
		t.Fatalf("list %v %v", names, err)
	}
	if err := c.DeleteMessageStream(ctx, "s1"); err != nil {
		t.Fatal(err)
	}
	if names, err := c.ListStreams(ctx); err != nil || !slices.Equal(names, []string{"s2"}) {
		t.Fatalf("list after delete %v %v", names, err)
	}
}

// Each status comes back as a *StatusError matching its v1 exception's
// sentinel, and only that one.
func TestStatusErrors(t *testing.T) {
	e := startDaemon(t, false)
	c := newClient(t, e)
	ctx := ctxT(t)
	def := client.MessageStreamDefinition{Name: "s", MaxSize: 1 << 20, StreamSegmentSize: 4096}
	if err := c.CreateMessageStream(ctx, def); err != nil {
		t.Fatal(err)
	}
	check := func(what string, err error, sentinel error, st protocol.Status) {
		t.Helper()
		var se *client.StatusError
		if !errors.As(err, &se) || se.Status != st || se.Message == "" || !errors.Is(err, sentinel) {
			t.Fatalf("%s: %v, want status %d", what, err, st)
		}
	}
	_, err := c.ReadMessages(ctx, "s", nil)
	check("read empty", err, client.ErrNotEnoughMessages, protocol.NotEnoughMessages)
	if errors.Is(err, client.ErrResourceNotFound) {
		t.Fatal("NotEnoughMessages matches ErrResourceNotFound")
	}
	_, err = c.ReadMessages(ctx, "nope", nil)
	check("read missing", err, client.ErrResourceNotFound, protocol.ResourceNotFound)
	_, err = c.AppendMessage(ctx, "nope", []byte("x"))
	check("append missing", err, client.ErrResourceNotFound, protocol.ResourceNotFound)
	_, err = c.DescribeMessageStream(ctx, "nope")
	check("describe missing", err, client.ErrResourceNotFound, protocol.ResourceNotFound)
	check("delete missing", c.DeleteMessageStream(ctx, "nope"), client.ErrResourceNotFound, protocol.ResourceNotFound)
	check("create again", c.CreateMessageStream(ctx, def), client.ErrInvalidRequest, protocol.InvalidRequest)
	check("bad name", c.CreateMessageStream(ctx, client.MessageStreamDefinition{Name: "a/b"}), client.ErrInvalidRequest, protocol.InvalidRequest)
	_, err = c.AppendMessage(ctx, "s", nil)
	check("empty payload", err, client.ErrInvalidRequest, protocol.InvalidRequest)
	_, err = c.ReadMessages(ctx, "s", &client.ReadMessagesOptions{MinMessageCount: 3, MaxMessageCount: 2})
	check("min over max", err, client.ErrInvalidRequest, protocol.InvalidRequest)
	def.Persistence = client.Memory
	err = c.UpdateMessageStream(ctx, def)
	check("update persistence", err, client.ErrUpdateNotAllowed, protocol.UpdateNotAllowed)
	if !errors.Is(err, client.ErrInvalidRequest) {
		t.Fatal("UpdateNotAllowed is not an InvalidRequest, as v1's UpdateNotAllowedException is")
	}
	if _, err := c.ReadMessages(ctx, "s", &client.ReadMessagesOptions{ReadTimeout: 2 * time.Minute}); !errors.Is(err, client.ErrValidation) {
		t.Fatalf("read timeout over the request timeout: %v", err)
	}
	// The connection survives every refusal.
	if _, err := c.AppendMessage(ctx, "s", []byte("x")); err != nil {
		t.Fatal(err)
	}
}

func TestConcurrentAppends(t *testing.T) {
	e := startDaemon(t, false)
	c := newClient(t, e)
	ctx := ctxT(t)
	if err := c.CreateMessageStream(ctx, client.MessageStreamDefinition{Name: "s"}); err != nil {
		t.Fatal(err)
	}
	const workers, each = 16, 40
	seqs := make([][]int64, workers)
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				seq, err := c.AppendMessage(ctx, "s", fmt.Appendf(nil, "%d/%d", w, i))
				if err != nil {
					errs <- err
					return
				}
				seqs[w] = append(seqs[w], seq)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	var all []int64
	for _, s := range seqs {
		if !slices.IsSorted(s) {
			t.Fatalf("one goroutine's appends out of order: %v", s)
		}
		all = append(all, s...)
	}
	slices.Sort(all)
	for i, s := range all {
		if s != int64(i) {
			t.Fatalf("sequence numbers %v are not 0..%d each once", all, workers*each-1)
		}
	}
	msgs, err := c.ReadMessages(ctx, "s", &client.ReadMessagesOptions{MinMessageCount: workers * each, MaxMessageCount: workers * each})
	if err != nil || len(msgs) != workers*each {
		t.Fatalf("read back %d messages, %v", len(msgs), err)
	}
	for _, m := range msgs {
		var w, i int
		fmt.Sscanf(string(m.Payload), "%d/%d", &w, &i)
		if seqs[w][i] != m.SequenceNumber {
			t.Fatalf("message %d holds %q, appended as %d", m.SequenceNumber, m.Payload, seqs[w][i])
		}
	}
}

// A long-poll read waits on the server while the same client appends,
// lists and describes; it returns once its minimum has arrived.
func TestLongPollDoesNotBlockOtherCalls(t *testing.T) {
	e := startDaemon(t, false)
	c := newClient(t, e)
	ctx := ctxT(t)
	if err := c.CreateMessageStream(ctx, client.MessageStreamDefinition{Name: "s"}); err != nil {
		t.Fatal(err)
	}
	type result struct {
		msgs []client.Message
		err  error
	}
	done := make(chan result, 1)
	go func() {
		msgs, err := c.ReadMessages(ctx, "s", &client.ReadMessagesOptions{MinMessageCount: 3, MaxMessageCount: 10, ReadTimeout: 15 * time.Second})
		done <- result{msgs, err}
	}()
	waitInFlight(t, c, 1)
	for i := range 2 {
		if _, err := c.AppendMessage(ctx, "s", []byte{byte(i + 1)}); err != nil {
			t.Fatal(err)
		}
		if _, err := c.ListStreams(ctx); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case r := <-done:
		t.Fatalf("read returned with 2 of 3 messages: %+v", r)
	default:
	}
	if _, err := c.AppendMessage(ctx, "s", []byte{3}); err != nil {
		t.Fatal(err)
	}
	r := <-done
	if r.err != nil || len(r.msgs) != 3 || !bytes.Equal(r.msgs[2].Payload, []byte{3}) {
		t.Fatalf("long poll: %+v %v", r.msgs, r.err)
	}
}

// Cancelling a call's ctx abandons that call only.
func TestCancelledCallLeavesTheConnection(t *testing.T) {
	e := startDaemon(t, false)
	c := newClient(t, e)
	ctx := ctxT(t)
	if err := c.CreateMessageStream(ctx, client.MessageStreamDefinition{Name: "s"}); err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		_, err := c.ReadMessages(rctx, "s", &client.ReadMessagesOptions{ReadTimeout: 30 * time.Second})
		done <- err
	}()
	waitInFlight(t, c, 1)
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled read: %v", err)
	}
	if n := client.InFlight(c); n != 0 {
		t.Fatalf("%d calls still registered after the cancel", n)
	}
	if seq, err := c.AppendMessage(ctx, "s", []byte("x")); err != nil || seq != 0 {
		t.Fatalf("append after a cancelled read: %d %v", seq, err)
	}
}

func TestBadTokenRefused(t *testing.T) {
	e := startDaemon(t, true)
	for _, tok := range []string{"", "bm90IGEgdG9rZW4="} {
		c, err := client.New(ctxT(t), client.WithPort(e.port), client.WithAuthToken(tok))
		var se *client.StatusError
		if c != nil || !errors.As(err, &se) || se.Status != protocol.Unauthorized || !errors.Is(err, client.ErrUnauthorized) {
			t.Fatalf("token %q: %v %v", tok, c, err)
		}
	}
}

// New reads the port and the token from the function's environment.
func TestEnvironment(t *testing.T) {
	e := startDaemon(t, false)
	t.Setenv("STREAM_MANAGER_SERVER_PORT", strconv.Itoa(e.port))
	t.Setenv("AWS_CONTAINER_AUTHORIZATION_TOKEN", "ignored-without-authentication")
	c, err := client.New(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.ListStreams(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	t.Setenv("STREAM_MANAGER_SERVER_PORT", "http")
	if _, err := client.New(ctxT(t)); !errors.Is(err, client.ErrValidation) {
		t.Fatalf("bad port: %v", err)
	}
}

// A daemon restart fails the calls in flight with ErrConnectionLost;
// the next call connects again.
func TestReconnectAfterRestart(t *testing.T) {
	e := startDaemon(t, false)
	c := newClient(t, e)
	ctx := ctxT(t)
	if err := c.CreateMessageStream(ctx, client.MessageStreamDefinition{Name: "s"}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.AppendMessage(ctx, "s", []byte("before")); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := c.ReadMessages(ctx, "s", &client.ReadMessagesOptions{DesiredStartSequenceNumber: 1, ReadTimeout: 30 * time.Second})
		done <- err
	}()
	waitInFlight(t, c, 1)
	e.stop()
	if err := <-done; !errors.Is(err, client.ErrConnectionLost) {
		t.Fatalf("read in flight across the restart: %v", err)
	}
	if _, err := c.ListStreams(ctx); !errors.Is(err, client.ErrConnectFailed) {
		t.Fatalf("call while the daemon is down: %v", err)
	}
	e.start(t)
	seq, err := c.AppendMessage(ctx, "s", []byte("after"))
	if err != nil || seq != 1 {
		t.Fatalf("append after the restart: %d %v", seq, err)
	}
}

func TestClose(t *testing.T) {
	e := startDaemon(t, false)
	c := newClient(t, e)
	ctx := ctxT(t)
	if err := c.CreateMessageStream(ctx, client.MessageStreamDefinition{Name: "s"}); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := c.ReadMessages(ctx, "s", &client.ReadMessagesOptions{ReadTimeout: 30 * time.Second})
		done <- err
	}()
	waitInFlight(t, c, 1)
	c.Close()
	if err := <-done; !errors.Is(err, client.ErrClosed) {
		t.Fatalf("read in flight at Close: %v", err)
	}
	if _, err := c.ListStreams(ctx); !errors.Is(err, client.ErrClosed) {
		t.Fatalf("call after Close: %v", err)
	}
}
