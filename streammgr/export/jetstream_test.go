package export_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"path/filepath"
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
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// natsd is a real nats-server with JetStream, embedded in the test, its
// file store in a directory that outlives a restart.
type natsd struct {
	t    *testing.T
	dir  string
	port int
	srv  *server.Server
}

func newNATS(t *testing.T) *natsd {
	n := &natsd{t: t, dir: t.TempDir(), port: -1}
	n.up()
	t.Cleanup(n.down)
	return n
}

// up starts the server, on the same port and store as before if it ran.
func (n *natsd) up() {
	n.t.Helper()
	var err error
	for range 100 {
		var s *server.Server
		s, err = server.NewServer(&server.Options{Host: "127.0.0.1", Port: n.port, JetStream: true, StoreDir: n.dir,
			NoLog: true, NoSigs: true})
		if err != nil {
			n.t.Fatal(err)
		}
		s.Start()
		if s.ReadyForConnections(10 * time.Second) {
			n.srv, n.port = s, s.Addr().(*net.TCPAddr).Port
			return
		}
		// The port may not be free again yet.
		s.Shutdown()
		s.WaitForShutdown()
		err = fmt.Errorf("nats-server not ready on port %d", n.port)
		time.Sleep(50 * time.Millisecond)
	}
	n.t.Fatal(err)
}

func (n *natsd) down() {
	if n.srv != nil {
		n.srv.Shutdown()
		n.srv.WaitForShutdown()
		n.srv = nil
	}
}

func (n *natsd) url() string { return "nats://127.0.0.1:" + strconv.Itoa(n.port) }

// client is the test's own connection, to look at what arrived.
func (n *natsd) client() (*nats.Conn, jetstream.JetStream) {
	n.t.Helper()
	nc, err := nats.Connect(n.url(), nats.MaxReconnects(-1), nats.ReconnectWait(20*time.Millisecond))
	if err != nil {
		n.t.Fatal(err)
	}
	n.t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		n.t.Fatal(err)
	}
	return nc, js
}

// stored is every message of a JetStream stream, in its order.
func stored(t *testing.T, js jetstream.JetStream, name string) ([]*jetstream.RawStreamMsg, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := js.Stream(ctx, name)
	if err != nil {
		return nil, err
	}
	info, err := st.Info(ctx)
	if err != nil {
		return nil, err
	}
	var out []*jetstream.RawStreamMsg
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := st.GetMsg(ctx, seq)
		if err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	return out, nil
}

func seqsOf(t *testing.T, msgs []*jetstream.RawStreamMsg) []int64 {
	var out []int64
	for _, m := range msgs {
		n, err := strconv.ParseInt(m.Header.Get("X-Evergreen-Sequence-Number"), 10, 64)
		if err != nil {
			t.Fatalf("message %d: sequence number header %q", m.Sequence, m.Header.Get("X-Evergreen-Sequence-Number"))
		}
		out = append(out, n)
	}
	return out
}

// waitStored waits until the JetStream stream holds exactly want (by
// Evergreen sequence number, in order).
func waitStored(t *testing.T, js jetstream.JetStream, name string, want []int64) []*jetstream.RawStreamMsg {
	t.Helper()
	var msgs []*jetstream.RawStreamMsg
	checkFor(t, wait, func() error {
		var err error
		if msgs, err = stored(t, js, name); err != nil {
			return err
		}
		if got := seqsOf(t, msgs); !slices.Equal(got, want) {
			return fmt.Errorf("JetStream stream %s holds %v, want %v", name, got, want)
		}
		return nil
	})
	return msgs
}

// published counts every publish on subject, duplicates included (the
// JetStream stream drops those; a core subscription sees them).
type published struct {
	mu   sync.Mutex
	seqs []int64
}

func watch(t *testing.T, nc *nats.Conn, subject string) *published {
	p := &published{}
	sub, err := nc.Subscribe(subject, func(m *nats.Msg) {
		n, _ := strconv.ParseInt(m.Header.Get("X-Evergreen-Sequence-Number"), 10, 64)
		p.mu.Lock()
		p.seqs = append(p.seqs, n)
		p.mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sub.Unsubscribe() })
	return p
}

func (p *published) get() []int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.seqs)
}

func jsDef(t *testing.T, cfgs ...map[string]any) []byte {
	b, err := cbor.Marshal(map[string]any{"jetstream": cfgs})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func jsCfg(n *natsd, extra map[string]any) map[string]any {
	c := map[string]any{"identifier": "js", "url": n.url(), "subject": "evergreen.s", "stream": "EXPORT"}
	for k, v := range extra {
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
	}
	return c
}

func (r *rig) createJS(cfgs ...map[string]any) {
	r.t.Helper()
	if err := r.st.Create(store.Definition{Name: "s", Export: jsDef(r.t, cfgs...)}); err != nil {
		r.t.Fatal(err)
	}
	if err := r.m.Sync("s"); err != nil {
		r.t.Fatal(err)
	}
}

func (r *rig) updateJS(cfgs ...map[string]any) {
	r.t.Helper()
	in, err := r.st.Describe("s")
	if err != nil {
		r.t.Fatal(err)
	}
	in.Definition.Export = jsDef(r.t, cfgs...)
	if err := r.st.Update(in.Definition); err != nil {
		r.t.Fatal(err)
	}
	if err := r.m.Sync("s"); err != nil {
		r.t.Fatal(err)
	}
}

func (r *rig) waitStatus(last, count int64) {
	r.t.Helper()
	checkFor(r.t, wait, func() error {
		if s := r.status(); s.LastExportedSequenceNumber != last || s.ExportedMessagesCount != count || s.ErrorMessage != "" {
			return fmt.Errorf("status %+v, want last %d count %d", s, last, count)
		}
		return nil
	})
}

func seqRange(from, to int64) []int64 {
	var out []int64
	for i := from; i <= to; i++ {
		out = append(out, i)
	}
	return out
}

// TestJetStreamDeliversInOrderWithHeaders: the named JetStream stream is
// created (file storage, the subject); every message arrives once, in
// order, with its headers and Msg-Id, and the status counts them.
func TestJetStreamDeliversInOrderWithHeaders(t *testing.T) {
	n := newNATS(t)
	_, js := n.client()
	r := newRig(t)
	r.createJS(jsCfg(n, map[string]any{"batchSize": 3}))
	r.append(0, 9)
	msgs := waitStored(t, js, "EXPORT", seqRange(0, 9))
	var bytes int64
	for i, m := range msgs {
		seq := int64(i)
		if m.Subject != "evergreen.s" || string(m.Data) != string(payload(seq)) || m.Header.Get("X-Evergreen-Stream") != "s" ||
			m.Header.Get(jetstream.MsgIDHeader) != "s-"+strconv.FormatInt(seq, 10) || m.Header.Get("X-Evergreen-Ingest-Time") == "" {
			t.Fatalf("message %d: %s %q %v", i, m.Subject, m.Data, m.Header)
		}
		bytes += int64(len(m.Data))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := js.Stream(ctx, "EXPORT")
	if err != nil {
		t.Fatal(err)
	}
	if c := st.CachedInfo().Config; c.Storage != jetstream.FileStorage || !slices.Equal(c.Subjects, []string{"evergreen.s"}) {
		t.Fatalf("created stream %+v", c)
	}
	r.waitStatus(9, 10)
	if s := r.status(); s.Identifier != "js" || s.ExportedBytesFromStream != bytes || s.LastExportTime == 0 {
		t.Fatalf("status %+v", s)
	}
}

// TestJetStreamStartSequenceNumberIntoExistingStream: without "stream",
// the subject's existing stream takes the messages from
// startSequenceNumber on.
func TestJetStreamStartSequenceNumberIntoExistingStream(t *testing.T) {
	n := newNATS(t)
	_, js := n.client()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "OPS", Subjects: []string{"ops.>"}}); err != nil {
		t.Fatal(err)
	}
	r := newRig(t)
	r.createJS(jsCfg(n, map[string]any{"stream": nil, "subject": "ops.telemetry", "startSequenceNumber": 5}))
	r.append(0, 9)
	waitStored(t, js, "OPS", seqRange(5, 9))
	r.waitStatus(9, 5)
}

// TestJetStreamServerDownThenRestarted: the server stops, messages keep
// coming, the status says why nothing is exported; the server comes back
// on the same port and store: nothing is lost, nothing stored twice.
func TestJetStreamServerDownThenRestarted(t *testing.T) {
	n := newNATS(t)
	_, js := n.client()
	r := newRig(t)
	r.createJS(jsCfg(n, map[string]any{"batchSize": 2}))
	r.append(0, 4)
	waitStored(t, js, "EXPORT", seqRange(0, 4))
	r.waitStatus(4, 5)

	n.down()
	r.append(5, 14)
	checkFor(t, wait, func() error {
		if s := r.status(); !strings.Contains(s.ErrorMessage, "retrying in") {
			return fmt.Errorf("status %+v", s)
		}
		return nil
	})
	if s := r.status(); s.LastExportedSequenceNumber != 4 || s.ExportedMessagesCount != 5 {
		t.Fatalf("progress moved while the server was down: %+v", s)
	}
	n.up()
	waitStored(t, js, "EXPORT", seqRange(0, 14))
	r.waitStatus(14, 15)
}

// TestJetStreamResendsDroppedByMsgID: an export whose progress lags what
// JetStream acknowledged (a crash before the progress was saved) sends
// those messages again; JetStream's duplicate window drops them.
func TestJetStreamResendsDroppedByMsgID(t *testing.T) {
	n := newNATS(t)
	nc, js := n.client()
	pub := watch(t, nc, "evergreen.s")
	r := newRig(t)
	r.createJS(jsCfg(n, nil))
	r.append(0, 9)
	waitStored(t, js, "EXPORT", seqRange(0, 9))
	r.waitStatus(9, 10)
	r.close()

	stale, _ := json.Marshal(map[string]int64{"lastExportedSequenceNumber": 2, "exportedMessagesCount": 3})
	st, err := store.Open(store.Options{Dir: r.dir})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.WriteExportState("s", "js", stale); err != nil {
		t.Fatal(err)
	}
	st.Close()
	r.open()
	r.waitStatus(9, 10)
	checkFor(t, wait, func() error {
		if got := pub.get(); !slices.Equal(got, append(seqRange(0, 9), seqRange(3, 9)...)) {
			return fmt.Errorf("published %v", got)
		}
		return nil
	})
	waitStored(t, js, "EXPORT", seqRange(0, 9))
}

// TestJetStreamRestartResumesFromProgress: stopped mid-stream and opened
// again, the export publishes only what follows its progress.
func TestJetStreamRestartResumesFromProgress(t *testing.T) {
	n := newNATS(t)
	nc, js := n.client()
	pub := watch(t, nc, "evergreen.s")
	r := newRig(t)
	r.createJS(jsCfg(n, nil))
	r.append(0, 4)
	r.waitStatus(4, 5)
	r.close()
	r.open()
	r.append(5, 9)
	waitStored(t, js, "EXPORT", seqRange(0, 9))
	r.waitStatus(9, 10)
	// Every message published once: nothing was sent again after the
	// restart (the subscription may see the publishes after the stream).
	checkFor(t, wait, func() error {
		if got := pub.get(); !slices.Equal(got, seqRange(0, 9)) {
			return fmt.Errorf("published %v", got)
		}
		return nil
	})
}

// TestJetStreamDisabledPauses: disabled publishes nothing; enabled, it
// publishes everything.
func TestJetStreamDisabledPauses(t *testing.T) {
	n := newNATS(t)
	nc, js := n.client()
	pub := watch(t, nc, "evergreen.s")
	r := newRig(t)
	r.createJS(jsCfg(n, map[string]any{"disabled": true}))
	r.append(0, 2)
	time.Sleep(100 * time.Millisecond) // a paused export would have published by now
	if got := pub.get(); len(got) != 0 {
		t.Fatalf("disabled export published %v", got)
	}
	if s := r.status(); s.LastExportedSequenceNumber != -1 || s.ExportedMessagesCount != 0 {
		t.Fatalf("status %+v", s)
	}
	r.updateJS(jsCfg(n, map[string]any{"disabled": false}))
	waitStored(t, js, "EXPORT", seqRange(0, 2))
	r.waitStatus(2, 3)
}

// TestJetStreamBadCredsFileShowsInStatus: a connection that cannot be
// made is retried, and the status names the cause.
func TestJetStreamBadCredsFileShowsInStatus(t *testing.T) {
	n := newNATS(t)
	r := newRig(t)
	missing := filepath.Join(t.TempDir(), "none.creds")
	r.createJS(jsCfg(n, map[string]any{"credsFile": missing}))
	r.append(0, 0)
	checkFor(t, wait, func() error {
		if s := r.status(); !strings.Contains(s.ErrorMessage, "none.creds") || !strings.Contains(s.ErrorMessage, "retrying in") {
			return fmt.Errorf("status %+v", s)
		}
		return nil
	})
}

func TestParseJetStreamRefusesBadConfigsNamingTheField(t *testing.T) {
	ok := map[string]any{"identifier": "a", "url": "nats://127.0.0.1:4222", "subject": "x.y"}
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
		raw   []byte
	}{
		{"jetstream[0].identifier", jsDef(t, with("identifier", nil))},
		{"jetstream[1].identifier", jsDef(t, ok, ok)},
		{"jetstream[0].url", jsDef(t, with("url", nil))},
		{"jetstream[0].url", jsDef(t, with("url", "http://127.0.0.1:4222"))},
		{"jetstream[0].url", jsDef(t, with("url", "nats://a:4222,nats://"))},
		{"jetstream[0].subject", jsDef(t, with("subject", nil))},
		{"jetstream[0].subject", jsDef(t, with("subject", "x.*"))},
		{"jetstream[0].subject", jsDef(t, with("subject", "x..y"))},
		{"jetstream[0].stream", jsDef(t, with("stream", "a.b"))},
		{"jetstream[0].batchSize", jsDef(t, with("batchSize", 0))},
		{"jetstream[0].batchSize", jsDef(t, with("batchSize", 501))},
		{"jetstream[0].batchIntervalMillis", jsDef(t, with("batchIntervalMillis", -1))},
		{"jetstream[0].priority", jsDef(t, with("priority", 0))},
		{"jetstream[0].startSequenceNumber", jsDef(t, with("startSequenceNumber", -1))},
		{"jetstream[0].credsFile", jsDef(t, with("credsFile", ""))},
		// One identifier names one progress file, whatever the kind.
		{"jetstream[0].identifier", func() []byte {
			b, _ := cbor.Marshal(map[string]any{"http": []any{map[string]any{"identifier": "a", "uri": "http://127.0.0.1:1/x"}},
				"jetstream": []any{ok}})
			return b
		}()},
	} {
		_, err := export.Parse(tc.raw)
		if err == nil || !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), tc.field) {
			t.Errorf("%s: err %v", tc.field, err)
		}
	}
	d, err := export.Parse(jsDef(t, with("url", "nats://a:4222, nats://b:4222")))
	if err != nil {
		t.Fatal(err)
	}
	want := export.JetStreamConfig{Identifier: "a", URLs: "nats://a:4222, nats://b:4222", Subject: "x.y", BatchSize: 500, Priority: 10}
	if len(d.JetStream) != 1 || d.JetStream[0] != want {
		t.Fatalf("defaults %+v", d.JetStream)
	}
}
