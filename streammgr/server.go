package streammgr

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/evergreen-edge/evergreen/services/kit/errdefs"
	"github.com/evergreen-edge/evergreen/streammgr/export"
	"github.com/evergreen-edge/evergreen/streammgr/protocol"
	"github.com/evergreen-edge/evergreen/streammgr/store"
)

const (
	// handshakeTimeout bounds the connect byte and the Connect frame.
	handshakeTimeout = 10 * time.Second
	// maxInFlight bounds the requests of one connection waiting (long-poll
	// reads, appends waiting for their fsync); beyond it the connection's
	// next frame is not read until one finishes.
	maxInFlight = 64
	// maxReadTimeout bounds readTimeoutMillis (v1's limit).
	maxReadTimeout = 9223372036854
	// maxBatch bounds the appends of one connection answered together.
	maxBatch = 256
	// reuseFrame: frames up to this size are read into the connection's
	// one buffer.
	reuseFrame = 64 << 10
)

var clientSeq atomic.Int64

type conn struct {
	s      *Service
	nc     net.Conn
	ctx    context.Context
	cancel context.CancelFunc
	wmu    sync.Mutex
	bw     *bufio.Writer
	sem    chan struct{}
	wg     sync.WaitGroup
	client string

	// The serve goroutine's: the appends read since the connection last
	// had no whole frame buffered, answered together (batch), and the
	// buffer small frames are read into.
	batch, syncBatch batch
	frame            []byte
	syncing          sync.WaitGroup // batches waiting for their fsync
}

// batch is appends waiting for their acks: one write (and with
// flushOnWrite one fsync) per stream, one socket write for the answers.
type batch struct {
	acks  []store.Ack // merged, one per stream
	items []pendingAppend
}

type pendingAppend struct {
	id  string
	seq int64
	ack store.Ack
}

func (b *batch) add(p pendingAppend) {
	b.items = append(b.items, p)
	for i := range b.acks {
		if b.acks[i].Merge(p.ack) {
			return
		}
	}
	b.acks = append(b.acks, p.ack)
}

func (s *Service) accept() {
	defer s.wg.Done()
	for {
		nc, err := s.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			s.env.Log.Warn("stream manager: accept failed", "err", err)
			time.Sleep(50 * time.Millisecond)
			continue
		}
		ctx, cancel := context.WithCancel(context.Background())
		c := &conn{s: s, nc: nc, ctx: ctx, cancel: cancel, bw: bufio.NewWriterSize(nc, 32<<10), sem: make(chan struct{}, maxInFlight),
			frame: make([]byte, 0, 8<<10)}
		s.mu.Lock()
		s.conns[c] = struct{}{}
		s.mu.Unlock()
		s.wg.Add(1)
		go c.serve()
	}
}

func (c *conn) serve() {
	defer func() {
		c.cancel()
		c.nc.Close()
		c.wg.Wait()
		c.s.mu.Lock()
		delete(c.s.conns, c)
		c.s.mu.Unlock()
		c.s.wg.Done()
	}()
	log := c.s.env.Log
	br := bufio.NewReaderSize(c.nc, 64<<10)
	if !c.handshake(br) {
		return
	}
	for {
		// Answer the batch before waiting for more: a pipelining client
		// gets its acks in one write, a lone request at once.
		if n := len(c.batch.items) + len(c.syncBatch.items); n > 0 && (n >= maxBatch || !protocol.FrameBuffered(br)) {
			c.answerBatch()
		}
		op, payload, err := protocol.ReadFrameInto(br, protocol.MaxFrame, c.frame)
		if err != nil {
			c.answerBatch()
			if c.ctx.Err() == nil && !errors.Is(err, net.ErrClosed) && err.Error() != "EOF" {
				log.Debug("stream manager: connection closed on a bad frame", "client", c.client, "err", err)
			}
			return
		}
		if op != protocol.OpAppendMessage {
			// Every other request sees the appends before it answered,
			// a Delete their fsyncs too (it would fail them); and it may
			// outlive this loop's turn (reads wait).
			c.answerBatch()
			if op == protocol.OpDeleteMessageStream {
				c.syncing.Wait()
			}
			payload = bytes.Clone(payload)
		} else if cap(payload) > cap(c.frame) && cap(payload) <= reuseFrame {
			c.frame = payload[:0]
		}
		c.dispatch(op, payload)
	}
}

// answerBatch waits for the acks of the batched appends and answers
// them; appends to flushOnWrite streams wait for their fsync in a
// goroutine of their own, so that the next batch meanwhile gathers.
func (c *conn) answerBatch() {
	if len(c.batch.items) > 0 {
		c.answer(&c.batch)
		c.batch.items, c.batch.acks = c.batch.items[:0], c.batch.acks[:0]
	}
	if len(c.syncBatch.items) > 0 {
		b := c.syncBatch
		c.syncBatch = batch{}
		c.syncing.Add(1)
		if !c.async(func() { defer c.syncing.Done(); c.answer(&b) }) {
			c.syncing.Done()
		}
	}
}

func (c *conn) answer(b *batch) {
	failed := false
	for _, a := range b.acks {
		if a.Wait() != nil {
			failed = true
		}
	}
	var errs []error
	if failed {
		errs = make([]error, len(b.items))
		for i, p := range b.items {
			errs[i] = p.ack.Wait()
		}
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	for i, p := range b.items {
		if errs != nil && errs[i] != nil {
			c.writeLocked(protocol.OpAppendMessageResponse, appendFailure(p.id, errs[i]))
			continue
		}
		c.bw.Write(protocol.AppendAppendResponseFrame(c.bw.AvailableBuffer(), p.id, p.seq))
	}
	c.bw.Flush()
}

func appendFailure(id string, err error) *protocol.AppendMessageResponse {
	resp := &protocol.AppendMessageResponse{RequestID: id}
	resp.Status, resp.ErrorMessage = statusOf(err)
	return resp
}

// handshake reads the connect byte and the Connect frame and answers them;
// false closes the connection.
func (c *conn) handshake(br *bufio.Reader) bool {
	c.nc.SetReadDeadline(time.Now().Add(handshakeTimeout))
	defer c.nc.SetReadDeadline(time.Time{})
	v, err := br.ReadByte()
	if err != nil {
		return false
	}
	c.bw.WriteByte(protocol.ConnectVersion)
	if v != protocol.ConnectVersion {
		c.write(protocol.OpConnectResponse, &protocol.ConnectResponse{Status: protocol.UnsupportedConnectVersion,
			ErrorMessage: fmt.Sprintf("connect version %d is not supported; this server speaks %d", v, protocol.ConnectVersion)})
		return false
	}
	op, payload, err := protocol.ReadFrame(br, 1<<20)
	if err != nil {
		return false
	}
	if op != protocol.OpConnect {
		c.write(protocol.OpConnectResponse, &protocol.ConnectResponse{RequestID: protocol.RequestIDOf(payload), Status: protocol.UnexpectedOperation,
			ErrorMessage: fmt.Sprintf("the first request must be Connect, not %v", op)})
		return false
	}
	var req protocol.ConnectRequest
	resp := &protocol.ConnectResponse{ProtocolVersion: protocol.ProtocolVersion,
		SupportedProtocolVersions: protocol.SupportedProtocolVersions, ServerVersion: protocol.ServerVersion}
	fail := func(err error) bool {
		resp.Status, resp.ErrorMessage = protocol.StatusOf(err)
		c.write(protocol.OpConnectResponse, resp)
		return false
	}
	if err := protocol.Decode(payload, &req); err != nil {
		resp.RequestID = protocol.RequestIDOf(payload)
		return fail(err)
	}
	resp.RequestID = req.RequestID
	if err := protocol.CheckRequestID(req.RequestID); err != nil {
		return fail(err)
	}
	if err := checkProtocolVersion(req.ProtocolVersion); err != nil {
		return fail(err)
	}
	c.client = "client-" + strconv.FormatInt(clientSeq.Add(1), 10)
	if a := c.s.auth; c.s.authOn.Load() {
		fn, err := a.check(c.ctx, req.AuthToken)
		if err != nil {
			c.s.env.Log.Warn("stream manager: client refused", "err", err, "remote", c.nc.RemoteAddr().String())
			return fail(err)
		}
		c.client = fn
	}
	resp.ClientIdentifier = c.client
	resp.Status = protocol.Success
	return c.write(protocol.OpConnectResponse, resp) == nil
}

// checkProtocolVersion accepts any 1.x.y: v1 clients only warn on a
// difference and the 1.x protocols differ only by added operations.
func checkProtocolVersion(v string) error {
	parts := strings.Split(v, ".")
	if len(parts) != 3 {
		return protocol.Errorf(protocol.InvalidProtocolVersion, "protocolVersion %q is not MAJOR.MINOR.PATCH", v)
	}
	for _, p := range parts {
		if _, err := strconv.ParseUint(p, 10, 16); err != nil {
			return protocol.Errorf(protocol.InvalidProtocolVersion, "protocolVersion %q is not MAJOR.MINOR.PATCH", v)
		}
	}
	if parts[0] != "1" {
		return protocol.Errorf(protocol.UnsupportedProtocolVersion, "protocolVersion %s is not supported; this server speaks %s", v, protocol.ProtocolVersion)
	}
	return nil
}

func (c *conn) write(op protocol.Op, v any) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if err := c.writeLocked(op, v); err != nil {
		return err
	}
	return c.bw.Flush()
}

// writeLocked writes a response frame (under wmu) without flushing.
func (c *conn) writeLocked(op protocol.Op, v any) error {
	b, err := protocol.Encode(v)
	if err != nil {
		return err
	}
	_, err = c.bw.Write(protocol.AppendFrame(c.bw.AvailableBuffer(), op, b))
	return err
}

// dispatch answers one request. Appends are stored in arrival order (the
// sequence numbers follow the requests of a connection) and answered by
// batch; reads and appends waiting for an fsync finish in their own
// goroutine, so a long-poll never holds up the requests behind it.
func (c *conn) dispatch(op protocol.Op, payload []byte) {
	respOp, ok := protocol.ResponseOf(op)
	if !ok {
		st := protocol.UnknownOperation
		msg := fmt.Sprintf("operation code %d is unknown", byte(op))
		if protocol.Known(op) && op != protocol.OpUnknownOperationError {
			st, msg = protocol.UnexpectedOperation, fmt.Sprintf("%v is not a request this server takes now", op)
		}
		c.write(protocol.OpUnknownOperationError, &protocol.Response{RequestID: protocol.RequestIDOf(payload), Status: st, ErrorMessage: msg})
		return
	}
	switch op {
	case protocol.OpAppendMessage:
		c.append(payload)
	case protocol.OpReadMessages:
		c.async(func() { c.read(payload) })
	default:
		c.write(respOp, c.s.handleSimple(op, payload))
	}
}

// async runs f in a goroutine of its own once fewer than maxInFlight
// run; false when the connection closed first.
func (c *conn) async(f func()) bool {
	select {
	case c.sem <- struct{}{}:
	case <-c.ctx.Done():
		return false
	}
	c.wg.Add(1)
	go func() {
		defer func() { <-c.sem; c.wg.Done() }()
		f()
	}()
	return true
}

// append stores a message (the store copies the payload, which aliases
// the connection's frame buffer) and adds it to the batch to be answered.
func (c *conn) append(payload []byte) {
	var req protocol.AppendMessageRequest
	fail := func(id string, err error) { c.write(protocol.OpAppendMessageResponse, appendFailure(id, err)) }
	if err := protocol.DecodeAppend(payload, &req); err != nil {
		fail(protocol.RequestIDOf(payload), err)
		return
	}
	if err := firstErr(protocol.CheckRequestID(req.RequestID), protocol.CheckName("name", req.Name)); err != nil {
		fail(req.RequestID, err)
		return
	}
	if len(req.Payload) == 0 {
		fail(req.RequestID, protocol.Errorf(protocol.InvalidRequest, "payload is required (at least 1 byte)"))
		return
	}
	seq, ack, err := c.s.store.AppendNoWait(req.Name, req.Payload)
	if err != nil {
		fail(req.RequestID, err)
		return
	}
	p := pendingAppend{id: req.RequestID, seq: seq, ack: ack}
	if ack.Sync {
		c.syncBatch.add(p)
	} else {
		c.batch.add(p)
	}
}

func (c *conn) read(payload []byte) {
	var req protocol.ReadMessagesRequest
	resp := &protocol.ReadMessagesResponse{}
	fail := func(err error) {
		resp.Messages = nil
		resp.Status, resp.ErrorMessage = statusOf(err)
		c.write(protocol.OpReadMessagesResponse, resp)
	}
	if err := protocol.Decode(payload, &req); err != nil {
		resp.RequestID = protocol.RequestIDOf(payload)
		fail(err)
		return
	}
	resp.RequestID = req.RequestID
	if err := firstErr(protocol.CheckRequestID(req.RequestID), protocol.CheckName("streamName", req.StreamName)); err != nil {
		fail(err)
		return
	}
	o, err := readOptions(req.ReadMessagesOptions)
	if err != nil {
		fail(err)
		return
	}
	msgs, err := c.s.store.Read(c.ctx, req.StreamName, o)
	if err != nil {
		if c.ctx.Err() != nil {
			return // the connection is gone
		}
		fail(err)
		return
	}
	resp.Messages = make([]protocol.Message, len(msgs))
	for i, m := range msgs {
		resp.Messages[i] = protocol.Message{StreamName: req.StreamName, SequenceNumber: m.Seq, IngestTime: m.Time, Payload: m.Payload}
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if err := protocol.WriteReadMessagesResponse(c.bw, resp); errors.Is(err, protocol.ErrFrameTooLarge) {
		resp.Messages = nil
		resp.Status, resp.ErrorMessage = protocol.ResponsePayloadTooLarge, "the messages read do not fit in one response; read fewer"
		c.writeLocked(protocol.OpReadMessagesResponse, resp)
	}
	c.bw.Flush()
}

// readOptions applies v1's ranges and defaults (min 1; max min, i.e. 1
// when neither is given; no wait).
func readOptions(in *protocol.ReadMessagesOptions) (store.ReadOptions, error) {
	o := store.ReadOptions{Min: 1}
	if in == nil {
		o.Max = 1
		return o, nil
	}
	const maxCount = 1<<31 - 1
	if p := in.DesiredStartSequenceNumber; p != nil {
		if *p < 0 {
			return o, protocol.Errorf(protocol.InvalidRequest, "desiredStartSequenceNumber %d is below 0", *p)
		}
		o.Start = *p
	}
	if p := in.MinMessageCount; p != nil {
		if *p < 1 || *p > maxCount {
			return o, protocol.Errorf(protocol.InvalidRequest, "minMessageCount %d is outside 1..%d", *p, maxCount)
		}
		o.Min = *p
	}
	o.Max = o.Min
	if p := in.MaxMessageCount; p != nil {
		if *p < 1 || *p > maxCount {
			return o, protocol.Errorf(protocol.InvalidRequest, "maxMessageCount %d is outside 1..%d", *p, maxCount)
		}
		o.Max = *p
	}
	if o.Min > o.Max {
		return o, protocol.Errorf(protocol.InvalidRequest, "minMessageCount %d is above maxMessageCount %d", o.Min, o.Max)
	}
	if p := in.ReadTimeoutMillis; p != nil {
		if *p < 0 || *p > maxReadTimeout {
			return o, protocol.Errorf(protocol.InvalidRequest, "readTimeoutMillis %d is outside 0..%d", *p, int64(maxReadTimeout))
		}
		o.Timeout = time.Duration(*p) * time.Millisecond
	}
	return o, nil
}

// handleSimple answers Create, Update, Delete, Describe and List.
func (s *Service) handleSimple(op protocol.Op, payload []byte) any {
	switch op {
	case protocol.OpListStreams:
		var req protocol.ListStreamsRequest
		resp := &protocol.ListStreamsResponse{Streams: []string{}}
		if err := protocol.Decode(payload, &req); err != nil {
			resp.RequestID = protocol.RequestIDOf(payload)
			resp.Status, resp.ErrorMessage = statusOf(err)
			return resp
		}
		resp.RequestID = req.RequestID
		if err := protocol.CheckRequestID(req.RequestID); err != nil {
			resp.Status, resp.ErrorMessage = statusOf(err)
			return resp
		}
		resp.Streams = s.store.List()
		return resp
	case protocol.OpDescribeMessageStream:
		var req protocol.NameRequest
		resp := &protocol.DescribeMessageStreamResponse{}
		if err := protocol.Decode(payload, &req); err != nil {
			resp.RequestID = protocol.RequestIDOf(payload)
			resp.Status, resp.ErrorMessage = statusOf(err)
			return resp
		}
		resp.RequestID = req.RequestID
		if err := firstErr(protocol.CheckRequestID(req.RequestID), protocol.CheckName("name", req.Name)); err != nil {
			resp.Status, resp.ErrorMessage = statusOf(err)
			return resp
		}
		in, err := s.store.Describe(req.Name)
		if err != nil {
			resp.Status, resp.ErrorMessage = statusOf(err)
			return resp
		}
		resp.MessageStreamInfo = streamInfo(in, s.exports.Statuses(req.Name))
		return resp
	}
	resp := &protocol.Response{}
	var err error
	switch op {
	case protocol.OpCreateMessageStream, protocol.OpUpdateMessageStream:
		var req protocol.StreamRequest
		if err = protocol.Decode(payload, &req); err != nil {
			resp.RequestID = protocol.RequestIDOf(payload)
			break
		}
		resp.RequestID = req.RequestID
		var d store.Definition
		if d, err = definitionOf(req.RequestID, req.Definition); err != nil {
			break
		}
		s.lifeMu.Lock()
		if op == protocol.OpCreateMessageStream {
			err = s.store.Create(d)
		} else if err = s.update(d); err != nil && !store.IsUpdateNotAllowed(err) &&
			!errors.Is(err, store.ErrNotFound) && !errors.Is(err, errdefs.ErrInvalidArgument) {
			err = protocol.Errorf(protocol.UpdateFailed, "%v", err)
		}
		if err == nil {
			s.syncExports(d.Name)
		}
		s.lifeMu.Unlock()
	case protocol.OpDeleteMessageStream:
		var req protocol.NameRequest
		if err = protocol.Decode(payload, &req); err != nil {
			resp.RequestID = protocol.RequestIDOf(payload)
			break
		}
		resp.RequestID = req.RequestID
		if err = firstErr(protocol.CheckRequestID(req.RequestID), protocol.CheckName("name", req.Name)); err == nil {
			err = s.deleteStream(req.Name)
		}
	}
	if err != nil {
		resp.Status, resp.ErrorMessage = statusOf(err)
	}
	return resp
}

// definitionOf checks a wire definition and applies v1's defaults.
func definitionOf(requestID string, in *protocol.MessageStreamDefinition) (store.Definition, error) {
	if err := protocol.CheckRequestID(requestID); err != nil {
		return store.Definition{}, err
	}
	if in == nil {
		return store.Definition{}, protocol.Errorf(protocol.InvalidRequest, "definition is required")
	}
	if err := protocol.CheckName("definition.name", in.Name); err != nil {
		return store.Definition{}, err
	}
	if in.StrategyOnFull == nil {
		return store.Definition{}, protocol.Errorf(protocol.InvalidRequest, "definition.strategyOnFull is required")
	}
	d := store.Definition{Name: in.Name, MaxSize: store.DefaultMaxSize, SegmentSize: store.DefaultSegmentSize,
		Strategy: store.Strategy(*in.StrategyOnFull), Export: in.ExportDefinition}
	if *in.StrategyOnFull < 0 || *in.StrategyOnFull > 1 {
		return d, protocol.Errorf(protocol.InvalidRequest, "definition.strategyOnFull %d is neither RejectNewData (0) nor OverwriteOldestData (1)", *in.StrategyOnFull)
	}
	if p := in.MaxSize; p != nil {
		if *p < store.MinMaxSize {
			return d, protocol.Errorf(protocol.InvalidRequest, "definition.maxSize %d is below %d", *p, store.MinMaxSize)
		}
		d.MaxSize = *p
	}
	if p := in.StreamSegmentSize; p != nil {
		if *p < store.MinSegmentSize || *p > store.MaxSegmentSize {
			return d, protocol.Errorf(protocol.InvalidRequest, "definition.streamSegmentSize %d is outside %d..%d", *p, store.MinSegmentSize, store.MaxSegmentSize)
		}
		d.SegmentSize = *p
	}
	if p := in.TimeToLiveMillis; p != nil {
		if *p < store.MinTTLMillis || *p > store.MaxTTLMillis {
			return d, protocol.Errorf(protocol.InvalidRequest, "definition.timeToLiveMillis %d is outside %d..%d", *p, store.MinTTLMillis, int64(store.MaxTTLMillis))
		}
		d.TTLMillis = *p
	}
	if p := in.Persistence; p != nil {
		if *p != 0 && *p != 1 {
			return d, protocol.Errorf(protocol.InvalidRequest, "definition.persistence %d is neither File (0) nor Memory (1)", *p)
		}
		d.Persistence = store.Persistence(*p)
	}
	if in.FlushOnWrite != nil {
		d.FlushOnWrite = *in.FlushOnWrite
	}
	if len(in.ExportDefinition) > 0 && in.ExportDefinition[0]>>5 != 5 {
		return d, protocol.Errorf(protocol.InvalidRequest, "definition.exportDefinition is not a map")
	}
	if _, err := export.Parse(in.ExportDefinition); err != nil {
		return d, err
	}
	return d, nil
}

// deleteStream stops the stream's exports, then deletes it.
func (s *Service) deleteStream(name string) error {
	s.lifeMu.Lock()
	defer s.lifeMu.Unlock()
	s.exports.Remove(name)
	return s.store.Delete(name)
}

// syncExports restarts, pauses or starts a stream's exports after its
// definition changed; the definition was checked before it was stored.
func (s *Service) syncExports(name string) {
	if err := s.exports.Sync(name); err != nil && !errors.Is(err, store.ErrNotFound) {
		s.env.Log.Error("stream exports not started", "stream", name, "err", err)
	}
}

func streamInfo(in store.Info, exports []export.Status) *protocol.MessageStreamInfo {
	d := in.Definition
	def := protocol.MessageStreamDefinition{Name: d.Name, MaxSize: &d.MaxSize, StreamSegmentSize: &d.SegmentSize,
		ExportDefinition: d.Export}
	strategy, persistence, flush := int64(d.Strategy), int64(d.Persistence), d.FlushOnWrite
	def.StrategyOnFull, def.Persistence, def.FlushOnWrite = &strategy, &persistence, &flush
	if d.TTLMillis > 0 {
		ttl := d.TTLMillis
		def.TimeToLiveMillis = &ttl
	}
	oldest, newest := in.Oldest, in.Newest
	if in.Count == 0 {
		// Nothing stored: v1 reports the next sequence number for both
		// (0, 0 for a fresh stream).
		newest = oldest
	}
	return &protocol.MessageStreamInfo{Definition: def,
		StorageStatus:  protocol.StorageStatus{OldestSequenceNumber: oldest, NewestSequenceNumber: newest, TotalBytes: in.TotalBytes},
		ExportStatuses: exportStatuses(exports)}
}

func exportStatuses(in []export.Status) []protocol.ExportStatus {
	out := make([]protocol.ExportStatus, len(in))
	for i, x := range in {
		out[i] = protocol.ExportStatus{ExportConfigIdentifier: x.Identifier, LastExportedSequenceNumber: x.LastExportedSequenceNumber,
			LastExportTime: x.LastExportTime, ErrorMessage: x.ErrorMessage, ExportedBytesFromStream: x.ExportedBytesFromStream,
			ExportedMessagesCount: x.ExportedMessagesCount}
	}
	return out
}

// statusOf maps store and protocol errors to status codes.
func statusOf(err error) (protocol.Status, string) {
	var pe *protocol.Error
	switch {
	case errors.As(err, &pe):
		return pe.Status, pe.Message
	case errors.Is(err, store.ErrNotFound):
		return protocol.ResourceNotFound, err.Error()
	case errors.Is(err, store.ErrNotEnough):
		return protocol.NotEnoughMessages, "fewer messages than minMessageCount are available"
	case errors.Is(err, store.ErrUpdateNotAllowed):
		return protocol.UpdateNotAllowed, err.Error()
	case errors.Is(err, store.ErrExists), errors.Is(err, store.ErrFull),
		store.IsInvalid(err), errors.Is(err, errdefs.ErrInvalidArgument):
		return protocol.InvalidRequest, err.Error()
	}
	return protocol.UnknownFailure, err.Error()
}

func firstErr(errs ...error) error {
	for _, e := range errs {
		if e != nil {
			return e
		}
	}
	return nil
}
