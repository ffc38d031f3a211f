package export

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/evergreen-edge/evergreen/streammgr/store"
)

// Defaults of Options.
const (
	// DefaultBackoffBase is the first retry delay; it doubles per failure.
	DefaultBackoffBase = time.Second
	// DefaultBackoffMax bounds the retry delay (v1 retried at up to
	// 5-minute intervals).
	DefaultBackoffMax = 5 * time.Minute
	// DefaultRequestTimeout bounds one POST, and the wait for a JetStream
	// batch's publish acks.
	DefaultRequestTimeout = time.Minute
	// maxBatchBytes stops collecting a batch early: with the store's own
	// bound on one read, a batch holds at most about twice this plus one
	// message.
	maxBatchBytes = 16 << 20
	// longPoll is how long one wait for new messages lasts before it is
	// renewed (a cancel ends it at once).
	longPoll = time.Hour
)

// Options configure a Manager.
type Options struct {
	Store *store.Store
	Log   *slog.Logger
	// Client sends the HTTP exports' POSTs and the AWS exports' requests
	// (DefaultRequestTimeout when nil).
	Client *http.Client
	// AckTimeout bounds the wait for a JetStream batch's publish acks
	// (DefaultRequestTimeout when 0).
	AckTimeout time.Duration
	// BackoffBase and BackoffMax shape the retry delays (defaults above),
	// JetStream's reconnects included.
	BackoffBase, BackoffMax time.Duration
	// Now replaces time.Now (the store's clock, for the batch interval and
	// lastExportTime).
	Now func() time.Time
	// AWS configures the S3, Kinesis, IoT Analytics and SiteWise exports.
	AWS AWSOptions
	// S3MinPartSize is the smallest part of an S3 multipart upload and the
	// smallest multipart threshold (v1's
	// STREAM_MANAGER_EXPORTER_S3_DESTINATION_MULTIPART_UPLOAD_MIN_PART_SIZE_BYTES;
	// DefaultS3MinPartSize when 0).
	S3MinPartSize int64
	// ThreadPoolSize bounds the sends running at once across every export
	// of every stream (v1's STREAM_MANAGER_EXPORTER_THREAD_POOL_SIZE;
	// DefaultThreadPoolSize when 0); waiting exports get a slot by
	// priority, 1 first.
	ThreadPoolSize int
	// MaxBandwidth bounds the upload rate of all exports together, in
	// bits per second (v1's STREAM_MANAGER_EXPORTER_MAX_BANDWIDTH, which
	// is in kbit/s); 0 is unlimited.
	MaxBandwidth int64
}

// Manager runs the exports of every stream. Lock order: Manager.mu, then
// exporter.mu; an exporter's goroutine never takes Manager.mu.
type Manager struct {
	o Options

	mu      sync.Mutex
	streams map[string][]*exporter // in the definition's order
	closed  bool

	aws  awsState
	gate *gate // the thread pool and bandwidth limit
	// s3MinPart is Options.S3MinPartSize as SetLimits last set it.
	s3MinPart atomic.Int64
}

// Status is one export's ExportStatus.
type Status struct {
	Identifier string
	// LastExportedSequenceNumber is -1 until a message is exported.
	LastExportedSequenceNumber int64
	LastExportTime             int64 // epoch ms, 0 for never
	ErrorMessage               string
	ExportedBytesFromStream    int64
	ExportedMessagesCount      int64
}

// New returns a manager running nothing until Sync.
func New(o Options) *Manager {
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Client == nil {
		// A redirect is a failure, not a success: Go would follow a 302
		// for a POST with a GET and call its 200 an export.
		o.Client = &http.Client{Timeout: DefaultRequestTimeout,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	}
	if o.AckTimeout <= 0 {
		o.AckTimeout = DefaultRequestTimeout
	}
	if o.BackoffBase <= 0 {
		o.BackoffBase = DefaultBackoffBase
	}
	if o.BackoffMax <= 0 {
		o.BackoffMax = DefaultBackoffMax
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.S3MinPartSize <= 0 {
		o.S3MinPartSize = DefaultS3MinPartSize
	}
	m := &Manager{o: o, streams: map[string][]*exporter{}, gate: newGate(o.ThreadPoolSize, o.MaxBandwidth)}
	m.s3MinPart.Store(o.S3MinPartSize)
	return m
}

// SetLimits changes the thread pool size, the bandwidth limit (bits per
// second, 0 unlimited) and the S3 minimum part size of running exports (a
// deployment changed the group's GGStreamManager settings); 0 restores a
// default. A smaller pool takes effect as sends end; a new bandwidth limit
// applies from the next send.
func (m *Manager) SetLimits(threadPoolSize int, bitsPerSecond, s3MinPartSize int64) {
	m.gate.resize(threadPoolSize)
	m.gate.setBandwidth(bitsPerSecond)
	if s3MinPartSize <= 0 {
		s3MinPartSize = DefaultS3MinPartSize
	}
	m.s3MinPart.Store(s3MinPartSize)
}

// Sync makes the running exports of stream match its stored definition:
// new ones start, removed ones stop, changed ones restart with their
// progress, disabled ones stop but keep their status. Call it after a
// create, an update and at start-up.
func (m *Manager) Sync(stream string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return store.ErrClosed
	}
	info, err := m.o.Store.Describe(stream)
	if err != nil {
		m.removeLocked(stream)
		return err
	}
	def, err := Parse(info.Definition.Export)
	if err != nil {
		m.removeLocked(stream)
		return err
	}
	old := map[string]*exporter{}
	for _, e := range m.streams[stream] {
		old[e.id] = e
	}
	var cfgs []config
	for _, c := range def.HTTP {
		cfgs = append(cfgs, c)
	}
	for _, c := range def.JetStream {
		cfgs = append(cfgs, c)
	}
	for _, c := range def.S3 {
		cfgs = append(cfgs, c)
	}
	for _, c := range def.Kinesis {
		cfgs = append(cfgs, c)
	}
	for _, c := range def.IoTAnalytics {
		cfgs = append(cfgs, c)
	}
	for _, c := range def.IoTSiteWise {
		cfgs = append(cfgs, c)
	}
	var now []*exporter
	for _, c := range cfgs {
		id := c.common().Identifier
		var was *int64
		if e := old[id]; e != nil {
			delete(old, id)
			// An exporter that ended by itself saw its stream deleted: one
			// created again under the name starts afresh.
			if e.cfg == c && !e.exited() {
				now = append(now, e)
				continue
			}
			e.stop()
			start := e.batch.StartSequenceNumber
			was = &start
		}
		e := m.newExporter(stream, c, was)
		if !c.common().Disabled {
			e.start()
		}
		now = append(now, e)
	}
	for _, e := range old {
		e.stop()
	}
	if len(now) == 0 {
		delete(m.streams, stream)
	} else {
		m.streams[stream] = now
	}
	return nil
}

// Remove stops the exports of stream; call it before deleting the stream
// (an export started by an update in between ends by itself when the
// stream goes).
func (m *Manager) Remove(stream string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.removeLocked(stream)
}

func (m *Manager) removeLocked(stream string) {
	for _, e := range m.streams[stream] {
		e.stop()
	}
	delete(m.streams, stream)
}

// Statuses returns the status of each export of stream that runs here, in
// the definition's order.
func (m *Manager) Statuses(stream string) []Status {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]Status, 0, len(m.streams[stream]))
	for _, e := range m.streams[stream] {
		out = append(out, e.status())
	}
	return out
}

// Close stops every export and waits for them.
func (m *Manager) Close() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.closed = true
	for s := range m.streams {
		m.removeLocked(s)
	}
}

// progress is the export state file's content (JSON).
type progress struct {
	// Last is the last sequence number a destination acknowledged; -1 none.
	Last     int64 `json:"lastExportedSequenceNumber"`
	Time     int64 `json:"lastExportTime"`
	Bytes    int64 `json:"exportedBytesFromStream"`
	Messages int64 `json:"exportedMessagesCount"`
	// Start is the startSequenceNumber in force when Last was recorded
	// (absent in files written before it was kept): a different one in
	// the configuration is a change, which may move the export back.
	Start *int64 `json:"startSequenceNumber,omitempty"`
}

// config is one export configuration of any kind (HTTPConfig,
// JetStreamConfig); comparable, so an unchanged one keeps running.
type config interface {
	common() common
	// newSender is called on the exporter's goroutine.
	newSender(e *exporter) sender
}

// sender delivers batches to one destination.
type sender interface {
	// send returns nil once the destination acknowledged every message.
	send(ctx context.Context, msgs []store.Message) error
	close()
}

func (c HTTPConfig) common() common {
	return common{Identifier: c.Identifier, BatchSize: c.BatchSize, BatchInterval: c.BatchInterval,
		Priority: c.Priority, StartSequenceNumber: c.StartSequenceNumber, Disabled: c.Disabled}
}

func (c HTTPConfig) newSender(e *exporter) sender { return httpSender{e: e, cfg: c} }

type exporter struct {
	m      *Manager
	stream string
	cfg    config
	id     string
	batch  common // cfg.common()
	log    *slog.Logger
	cancel context.CancelFunc
	done   chan struct{}

	mu      sync.Mutex
	p       progress
	failure string // the last send or read failure, "" after a success
	skipped string // the last data lost: to the stream's limits, or refused for good by the destination

	// refused holds the messages of the batch being delivered that the
	// destination refused for good (refuse); only the goroutine uses it.
	refused map[int64]bool

	// rewind: startSequenceNumber was changed to at most the progress;
	// the export goes back to it (see newExporter).
	rewind bool
}

// newExporter makes the exporter of configuration c, resuming from its
// progress. A startSequenceNumber changed by an update (compared with
// the one its progress was recorded under, or, in a progress file that
// does not say, with was, the one the exporter it replaces had) moves the
// export: ahead when the new start is past the progress, back to it when
// at or below (v1 leaves this open; a user who moves the start back wants
// those messages exported again). The progress keeps its place until the
// first batch from the new start is acknowledged, so a restart before
// that goes back again.
func (m *Manager) newExporter(stream string, c config, was *int64) *exporter {
	cm := c.common()
	e := &exporter{m: m, stream: stream, cfg: c, id: cm.Identifier, batch: cm, p: progress{Last: -1},
		log: m.o.Log.With("stream", stream, "export", cm.Identifier)}
	b, err := m.o.Store.ReadExportState(stream, cm.Identifier)
	if err != nil {
		e.log.Error("export progress unreadable; exporting from startSequenceNumber", "err", err)
	} else if b != nil {
		if err := json.Unmarshal(b, &e.p); err != nil {
			// Written atomically, so only outside damage gets here; resending
			// is the at-least-once side of the choice.
			e.log.Error("export progress damaged; exporting from startSequenceNumber", "err", err)
			e.p = progress{Last: -1}
		}
	}
	if e.p.Start != nil {
		was = e.p.Start
	}
	if was != nil && *was != cm.StartSequenceNumber && cm.StartSequenceNumber <= e.p.Last {
		e.rewind = true
		e.log.Info("startSequenceNumber moved back: exporting again from it", "from", cm.StartSequenceNumber, "exported", e.p.Last)
	}
	return e
}

func (e *exporter) start() {
	ctx, cancel := context.WithCancel(context.Background())
	e.cancel, e.done = cancel, make(chan struct{})
	go e.run(ctx)
}

// stop cancels the goroutine (an in-flight POST included: its batch is
// sent again later) and waits for it.
func (e *exporter) stop() {
	if e.cancel != nil {
		e.cancel()
		<-e.done
		e.cancel = nil
	}
}

func (e *exporter) exited() bool {
	if e.done == nil {
		return false
	}
	select {
	case <-e.done:
		return true
	default:
		return false
	}
}

func (e *exporter) status() Status {
	e.mu.Lock()
	defer e.mu.Unlock()
	msg := e.failure
	if msg == "" {
		msg = e.skipped
	}
	return Status{Identifier: e.id, LastExportedSequenceNumber: e.p.Last, LastExportTime: e.p.Time,
		ErrorMessage: msg, ExportedBytesFromStream: e.p.Bytes, ExportedMessagesCount: e.p.Messages}
}

func (e *exporter) setFailure(msg string) {
	e.mu.Lock()
	e.failure = msg
	e.mu.Unlock()
}

func (e *exporter) run(ctx context.Context) {
	defer close(e.done)
	snd := e.cfg.newSender(e)
	defer snd.close()
	perMessage := false
	if h, ok := e.cfg.(HTTPConfig); ok {
		perMessage = h.Format == RawNotBatched
	}
	e.mu.Lock()
	next := max(e.batch.StartSequenceNumber, e.p.Last+1)
	// Messages up to exported were exported before a rewind: not lost
	// to the stream's limits if they are gone now.
	exported := e.p.Last
	if e.rewind {
		next = e.batch.StartSequenceNumber
	}
	e.mu.Unlock()
	delay := e.m.o.BackoffBase
	for ctx.Err() == nil {
		batch, err := e.collect(ctx, next)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrClosed) {
				return
			}
			e.setFailure(fmt.Sprintf("reading the stream: %v (retrying in %v)", err, delay))
			if !sleep(ctx, delay) {
				return
			}
			delay = min(delay*2, e.m.o.BackoffMax)
			continue
		}
		delay = e.m.o.BackoffBase
		if first, from := batch[0].Seq, max(next, exported+1); first > from {
			// OverwriteOldestData or the time to live removed them first:
			// at-least-once cannot hold for these.
			msg := fmt.Sprintf("messages %d..%d were removed from the stream (strategyOnFull OverwriteOldestData or timeToLiveMillis) before they were exported", from, first-1)
			e.log.Warn("export skipped messages", "from", from, "to", first-1)
			e.mu.Lock()
			e.skipped = msg
			e.mu.Unlock()
		}
		if perMessage {
			for i := range batch {
				if !e.deliver(ctx, snd, batch[i:i+1]) {
					return
				}
			}
		} else if !e.deliver(ctx, snd, batch) {
			return
		}
		next = batch[len(batch)-1].Seq + 1
	}
}

// collect reads the next batch from next on: it waits for a first
// message, then for more until BatchSize messages or until BatchInterval
// after the first message's ingest time, whichever comes first.
func (e *exporter) collect(ctx context.Context, next int64) ([]store.Message, error) {
	st := e.m.o.Store
	var batch []store.Message
	for {
		msgs, err := st.Read(ctx, e.stream, store.ReadOptions{Start: next, Min: 1, Max: int64(e.batch.BatchSize), Timeout: longPoll})
		if errors.Is(err, store.ErrNotEnough) {
			continue
		}
		if err != nil {
			return nil, err
		}
		batch = msgs
		break
	}
	if e.batch.BatchInterval <= 0 {
		return batch, nil
	}
	deadline := time.UnixMilli(batch[0].Time).Add(e.batch.BatchInterval)
	size := 0
	for _, m := range batch {
		size += len(m.Payload)
	}
	for len(batch) < e.batch.BatchSize && size < maxBatchBytes {
		wait := deadline.Sub(e.m.o.Now())
		if wait <= 0 {
			break
		}
		msgs, err := st.Read(ctx, e.stream, store.ReadOptions{Start: batch[len(batch)-1].Seq + 1, Min: 1,
			Max: int64(e.batch.BatchSize - len(batch)), Timeout: wait})
		if errors.Is(err, store.ErrNotEnough) {
			break
		}
		if err != nil {
			return nil, err
		}
		for _, m := range msgs {
			size += len(m.Payload)
		}
		batch = append(batch, msgs...)
	}
	return batch, nil
}

// deliver sends msgs until a destination acknowledges them (true) or ctx
// ends (false), then records the progress.
func (e *exporter) deliver(ctx context.Context, snd sender, msgs []store.Message) bool {
	delay := e.m.o.BackoffBase
	for attempt := 1; ; attempt++ {
		err := e.sendGated(ctx, snd, msgs)
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return false
		}
		e.setFailure(fmt.Sprintf("%v (attempt %d for messages %d..%d; retrying in %v)",
			err, attempt, msgs[0].Seq, msgs[len(msgs)-1].Seq, delay))
		if attempt == 1 {
			e.log.Warn("export failed; retrying with backoff", "err", err, "first", msgs[0].Seq)
		}
		if !sleep(ctx, delay) {
			return false
		}
		delay = min(delay*2, e.m.o.BackoffMax)
	}
	e.mu.Lock()
	e.p.Last = msgs[len(msgs)-1].Seq
	e.p.Time = e.m.o.Now().UnixMilli()
	start := e.batch.StartSequenceNumber
	e.p.Start = &start
	for _, m := range msgs {
		if !e.refused[m.Seq] {
			e.p.Bytes += int64(len(m.Payload))
			e.p.Messages++
		}
	}
	e.refused = nil
	e.failure = ""
	b, _ := json.Marshal(e.p)
	e.mu.Unlock()
	if err := e.m.o.Store.WriteExportState(e.stream, e.id, b); err != nil && !errors.Is(err, store.ErrNotFound) {
		// The destination has the messages; a restart sends them again.
		e.log.Error("export progress not saved", "err", err)
		e.setFailure(fmt.Sprintf("progress not saved (messages up to %d may be sent again after a restart): %v", msgs[len(msgs)-1].Seq, err))
	}
	return true
}

// jsonMessage is one element of a JSON_BATCHED body: v1's Message as the
// SDKs serialise it to JSON (payload in standard base64).
type jsonMessage struct {
	StreamName     string `json:"streamName"`
	SequenceNumber int64  `json:"sequenceNumber"`
	IngestTime     int64  `json:"ingestTime"`
	Payload        []byte `json:"payload"`
}

type httpSender struct {
	e   *exporter
	cfg HTTPConfig
}

func (httpSender) close() {}

// chargesItself: the body, not the payloads, is what a POST uploads.
func (httpSender) chargesItself() {}

func (h httpSender) send(ctx context.Context, msgs []store.Message) error {
	e := h.e
	var body []byte
	ctype := "application/octet-stream"
	if h.cfg.Format == RawNotBatched {
		body = msgs[0].Payload
	} else {
		out := make([]jsonMessage, len(msgs))
		for i, m := range msgs {
			out[i] = jsonMessage{StreamName: e.stream, SequenceNumber: m.Seq, IngestTime: m.Time, Payload: m.Payload}
		}
		var err error
		if body, err = json.Marshal(out); err != nil {
			return err
		}
		ctype = "application/json"
	}
	if err := e.charge(ctx, len(body)); err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.cfg.URI, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", ctype)
	// Let a destination drop the duplicates that at-least-once allows.
	req.Header.Set("X-Evergreen-Stream", e.stream)
	req.Header.Set("X-Evergreen-First-Sequence-Number", strconv.FormatInt(msgs[0].Seq, 10))
	req.Header.Set("X-Evergreen-Last-Sequence-Number", strconv.FormatInt(msgs[len(msgs)-1].Seq, 10))
	resp, err := e.m.o.Client.Do(req)
	if err != nil {
		return err
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("POST %s: HTTP %s", h.cfg.URI, resp.Status)
	}
	return nil
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
