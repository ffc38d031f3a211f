// Package client is a Go stream manager client for functions: v1's
// StreamManagerClient (spec §2 of shared/spec/ggv1-compat.md) over the
// wire protocol of package protocol. One Client holds one TCP connection
// to 127.0.0.1:$STREAM_MANAGER_SERVER_PORT and multiplexes any number of
// concurrent calls on it by requestId, so that a long-poll ReadMessages
// holds up nothing else. When the connection drops, the calls in flight
// fail with ErrConnectionLost and the next call connects again.
//
//	c, err := client.New(ctx)
//	seq, err := c.AppendMessage(ctx, "s", []byte("hello"))
//	if errors.Is(err, client.ErrResourceNotFound) { ... }
package client

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"math"
	"net"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/evergreen-edge/evergreen/streammgr/protocol"
	"github.com/fxamacker/cbor/v2"
)

// sdkVersion is the v1 SDK release whose protocol this client speaks.
const sdkVersion = "1.1.1"

// Option tunes New.
type Option func(*options)

type options struct {
	host           string
	port           int
	token          string
	connectTimeout time.Duration
	requestTimeout time.Duration
	err            error
}

// WithHost replaces $STREAM_MANAGER_SERVER_HOST (default 127.0.0.1).
func WithHost(host string) Option { return func(o *options) { o.host = host } }

// WithPort replaces $STREAM_MANAGER_SERVER_PORT (default 8088).
func WithPort(port int) Option { return func(o *options) { o.port, o.err = port, nil } }

// WithAuthToken replaces $AWS_CONTAINER_AUTHORIZATION_TOKEN.
func WithAuthToken(token string) Option { return func(o *options) { o.token = token } }

// WithConnectTimeout bounds the TCP connect (default 3 s, as v1).
func WithConnectTimeout(d time.Duration) Option { return func(o *options) { o.connectTimeout = d } }

// WithRequestTimeout bounds the wait for each response, ConnectResponse
// included (default 60 s, as v1); a read waits its ReadTimeout on top.
func WithRequestTimeout(d time.Duration) Option { return func(o *options) { o.requestTimeout = d } }

// Client is a stream manager client; its methods are safe for concurrent
// use.
type Client struct {
	o    options
	addr string

	mu      sync.Mutex
	cur     *conn
	dialing chan struct{} // closed when the dial in progress ends
	closed  bool
}

// New connects and performs the handshake: the connect byte, Connect
// with the token, and a check of ConnectResponse. A refused Connect is a
// *StatusError (Unauthorized for a token the core did not issue); a
// failed TCP connect or handshake wraps ErrConnectFailed.
func New(ctx context.Context, opts ...Option) (*Client, error) {
	o := options{host: "127.0.0.1", port: DefaultPort, token: os.Getenv("AWS_CONTAINER_AUTHORIZATION_TOKEN"),
		connectTimeout: DefaultConnectTimeout, requestTimeout: DefaultRequestTimeout}
	if h := os.Getenv("STREAM_MANAGER_SERVER_HOST"); h != "" {
		o.host = h
	}
	if p := os.Getenv("STREAM_MANAGER_SERVER_PORT"); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil || n <= 0 || n > 65535 {
			o.err = fmt.Errorf("%w: STREAM_MANAGER_SERVER_PORT %q is not a port", ErrValidation, p)
		}
		o.port = n
	}
	for _, opt := range opts {
		opt(&o)
	}
	if o.err != nil {
		return nil, o.err
	}
	if o.connectTimeout <= 0 || o.requestTimeout <= 0 {
		return nil, fmt.Errorf("%w: timeouts must be positive", ErrValidation)
	}
	c := &Client{o: o, addr: net.JoinHostPort(o.host, strconv.Itoa(o.port))}
	if _, err := c.connection(ctx); err != nil {
		return nil, err
	}
	return c, nil
}

// Close closes the connection; calls in flight and later calls fail with
// ErrClosed.
func (c *Client) Close() error {
	c.mu.Lock()
	c.closed = true
	cn := c.cur
	c.cur = nil
	c.mu.Unlock()
	if cn != nil {
		cn.fail(ErrClosed)
	}
	return nil
}

// CreateMessageStream creates a stream (InvalidRequest if it exists).
func (c *Client) CreateMessageStream(ctx context.Context, def MessageStreamDefinition) error {
	return c.streamCall(ctx, protocol.OpCreateMessageStream, def)
}

// UpdateMessageStream replaces a stream's definition; UpdateNotAllowed
// for a change of persistence and the like.
func (c *Client) UpdateMessageStream(ctx context.Context, def MessageStreamDefinition) error {
	return c.streamCall(ctx, protocol.OpUpdateMessageStream, def)
}

func (c *Client) streamCall(ctx context.Context, op protocol.Op, def MessageStreamDefinition) error {
	w, err := def.wire()
	if err != nil {
		return err
	}
	var resp protocol.Response
	return c.call(ctx, op, func(id string) any { return &protocol.StreamRequest{RequestID: id, Definition: w} }, 0, &resp)
}

// AppendMessage appends payload (at least one byte) to the stream and
// returns its sequence number.
func (c *Client) AppendMessage(ctx context.Context, name string, payload []byte) (int64, error) {
	var resp protocol.AppendMessageResponse
	err := c.call(ctx, protocol.OpAppendMessage, func(id string) any {
		return &protocol.AppendMessageRequest{RequestID: id, Name: name, Payload: payload}
	}, 0, &resp)
	if err != nil {
		return 0, err
	}
	return resp.SequenceNumber, nil
}

// ReadMessages reads messages of a stream; opts may be nil (v1's
// defaults: one message from the oldest, no wait). A read that cannot
// be satisfied fails with NotEnoughMessages; with a ReadTimeout the
// server waits for the messages first, and other calls proceed meanwhile.
func (c *Client) ReadMessages(ctx context.Context, name string, opts *ReadMessagesOptions) ([]Message, error) {
	var extra time.Duration
	if opts != nil {
		if opts.ReadTimeout < 0 || opts.ReadTimeout > c.o.requestTimeout {
			return nil, fmt.Errorf("%w: ReadTimeout %v is outside 0..%v (the request timeout)", ErrValidation, opts.ReadTimeout, c.o.requestTimeout)
		}
		extra = opts.ReadTimeout
	}
	w := opts.wire()
	var resp protocol.ReadMessagesResponse
	err := c.call(ctx, protocol.OpReadMessages, func(id string) any {
		return &protocol.ReadMessagesRequest{RequestID: id, StreamName: name, ReadMessagesOptions: w}
	}, extra, &resp)
	if err != nil {
		return nil, err
	}
	return resp.Messages, nil
}

// ListStreams lists the streams' names.
func (c *Client) ListStreams(ctx context.Context) ([]string, error) {
	var resp protocol.ListStreamsResponse
	if err := c.call(ctx, protocol.OpListStreams, func(id string) any { return &protocol.ListStreamsRequest{RequestID: id} }, 0, &resp); err != nil {
		return nil, err
	}
	return resp.Streams, nil
}

// DescribeMessageStream describes a stream: its definition, stored range
// and exports' progress.
func (c *Client) DescribeMessageStream(ctx context.Context, name string) (*MessageStreamInfo, error) {
	var resp protocol.DescribeMessageStreamResponse
	if err := c.call(ctx, protocol.OpDescribeMessageStream, func(id string) any { return &protocol.NameRequest{RequestID: id, Name: name} }, 0, &resp); err != nil {
		return nil, err
	}
	if resp.MessageStreamInfo == nil {
		return nil, fmt.Errorf("stream manager: DescribeMessageStreamResponse without messageStreamInfo")
	}
	in := resp.MessageStreamInfo
	d, err := definitionOf(&in.Definition)
	if err != nil {
		return nil, fmt.Errorf("stream manager: DescribeMessageStreamResponse: %w", err)
	}
	return &MessageStreamInfo{Definition: d, StorageStatus: in.StorageStatus, ExportStatuses: in.ExportStatuses}, nil
}

// DeleteMessageStream deletes a stream and its messages.
func (c *Client) DeleteMessageStream(ctx context.Context, name string) error {
	var resp protocol.Response
	return c.call(ctx, protocol.OpDeleteMessageStream, func(id string) any { return &protocol.NameRequest{RequestID: id, Name: name} }, 0, &resp)
}

// call sends the request build makes with a fresh requestId and decodes
// its response into out (a protocol response type), waiting at most the
// request timeout plus extra. A status other than Success is a
// *StatusError.
func (c *Client) call(ctx context.Context, op protocol.Op, build func(id string) any, extra time.Duration, out any) error {
	respOp, _ := protocol.ResponseOf(op)
	id := newRequestID()
	body, err := protocol.Encode(build(id))
	if err != nil {
		return fmt.Errorf("stream manager: %v: %w: %v", op, ErrValidation, err)
	}
	if len(body)+1 > protocol.MaxFrame {
		return &StatusError{Status: protocol.RequestPayloadTooLarge,
			Message: fmt.Sprintf("the %v request is %d bytes; at most %d are allowed", op, len(body)+1, protocol.MaxFrame)}
	}
	cn, err := c.connection(ctx)
	if err != nil {
		return err
	}
	ch := make(chan frame, 1)
	if err := cn.register(id, ch); err != nil {
		return fmt.Errorf("%v: %w", op, err)
	}
	if err := cn.send(op, body, c.o.requestTimeout); err != nil {
		cn.unregister(id)
		return fmt.Errorf("%v: %w", op, err)
	}
	timer := time.NewTimer(c.o.requestTimeout + extra)
	defer timer.Stop()
	var f frame
	select {
	case f = <-ch:
	case <-cn.done:
		select {
		case f = <-ch: // answered just before the connection ended
		default:
			return fmt.Errorf("%v %s: %w", op, id, cn.cause())
		}
	case <-ctx.Done():
		cn.unregister(id)
		return fmt.Errorf("stream manager: %v %s: %w", op, id, ctx.Err())
	case <-timer.C:
		cn.unregister(id)
		return fmt.Errorf("stream manager: %v %s: no response within %v: %w", op, id, c.o.requestTimeout+extra, context.DeadlineExceeded)
	}
	switch f.op {
	case respOp:
	case protocol.OpUnknownOperationError:
		var r protocol.Response
		if err := decode(f.payload, &r); err != nil || r.Status == protocol.Success {
			r.Status = protocol.UnknownOperation
		}
		return &StatusError{Status: r.Status, Message: r.ErrorMessage}
	default:
		return fmt.Errorf("stream manager: %v %s: answered with %v", op, id, f.op)
	}
	if err := decode(f.payload, out); err != nil {
		return fmt.Errorf("stream manager: %v %s: %v: %w", op, id, f.op, err)
	}
	if st, msg := statusOf(out); st != protocol.Success {
		return &StatusError{Status: st, Message: msg}
	}
	return nil
}

func statusOf(resp any) (Status, string) {
	switch r := resp.(type) {
	case *protocol.Response:
		return r.Status, r.ErrorMessage
	case *protocol.AppendMessageResponse:
		return r.Status, r.ErrorMessage
	case *protocol.ReadMessagesResponse:
		return r.Status, r.ErrorMessage
	case *protocol.ListStreamsResponse:
		return r.Status, r.ErrorMessage
	case *protocol.DescribeMessageStreamResponse:
		return r.Status, r.ErrorMessage
	case *protocol.ConnectResponse:
		return r.Status, r.ErrorMessage
	}
	panic(fmt.Sprintf("stream manager client: no status in %T", resp))
}

// connection returns the live connection, connecting if there is none;
// one dial at a time, the other callers waiting for it (or their ctx).
func (c *Client) connection(ctx context.Context) (*conn, error) {
	for {
		c.mu.Lock()
		if c.closed {
			c.mu.Unlock()
			return nil, ErrClosed
		}
		if cn := c.cur; cn != nil && cn.alive() {
			c.mu.Unlock()
			return cn, nil
		}
		if wait := c.dialing; wait != nil {
			c.mu.Unlock()
			select {
			case <-wait:
				continue
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		wait := make(chan struct{})
		c.dialing = wait
		c.mu.Unlock()

		cn, err := c.dial(ctx)
		c.mu.Lock()
		c.dialing = nil
		close(wait)
		if err == nil {
			if c.closed {
				cn.fail(ErrClosed)
				cn, err = nil, ErrClosed
			} else {
				c.cur = cn
			}
		}
		c.mu.Unlock()
		return cn, err
	}
}

// dial connects and performs the handshake, then starts the reader.
func (c *Client) dial(ctx context.Context) (*conn, error) {
	d := net.Dialer{Timeout: c.o.connectTimeout}
	nc, err := d.DialContext(ctx, "tcp", c.addr)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrConnectFailed, err)
	}
	// The handshake answers within the request timeout or the ctx.
	nc.SetDeadline(time.Now().Add(c.o.requestTimeout))
	stop := context.AfterFunc(ctx, func() { nc.SetDeadline(time.Now()) })
	br := bufio.NewReaderSize(nc, 64<<10)
	cr, err := c.handshake(nc, br)
	interrupted := !stop()
	if err == nil && interrupted {
		err = ctx.Err()
	}
	if err != nil {
		nc.Close()
		if interrupted {
			return nil, fmt.Errorf("%w: %w", ErrConnectFailed, ctx.Err())
		}
		return nil, err
	}
	if cr.Status != protocol.Success {
		nc.Close()
		return nil, &StatusError{Status: cr.Status, Message: cr.ErrorMessage}
	}
	nc.SetDeadline(time.Time{})
	cn := &conn{nc: nc, waiting: map[string]chan frame{}, done: make(chan struct{})}
	go cn.readLoop(br)
	return cn, nil
}

func (c *Client) handshake(nc net.Conn, br *bufio.Reader) (*protocol.ConnectResponse, error) {
	req, err := protocol.Encode(&protocol.ConnectRequest{RequestID: newRequestID(), ProtocolVersion: protocol.ProtocolVersion,
		OtherSupportedProtocolVersions: []string{"1.0.0"}, SDKVersion: sdkVersion, AuthToken: c.o.token})
	if err != nil {
		return nil, err
	}
	if _, err := nc.Write(protocol.AppendFrame([]byte{protocol.ConnectVersion}, protocol.OpConnect, req)); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrConnectFailed, err)
	}
	v, err := br.ReadByte()
	if err != nil {
		return nil, fmt.Errorf("%w: no connect version byte: %v", ErrConnectFailed, err)
	}
	if v != protocol.ConnectVersion {
		return nil, &StatusError{Status: protocol.UnsupportedConnectVersion,
			Message: fmt.Sprintf("the server speaks connect version %d; this client speaks %d", v, protocol.ConnectVersion)}
	}
	op, p, err := protocol.ReadFrame(br, 1<<20)
	if err != nil {
		return nil, fmt.Errorf("%w: no ConnectResponse: %v", ErrConnectFailed, err)
	}
	if op != protocol.OpConnectResponse {
		return nil, fmt.Errorf("%w: answered Connect with %v", ErrConnectFailed, op)
	}
	var cr protocol.ConnectResponse
	if err := decode(p, &cr); err != nil {
		return nil, fmt.Errorf("%w: ConnectResponse: %v", ErrConnectFailed, err)
	}
	return &cr, nil
}

// conn is one connection and the calls waiting on it.
type conn struct {
	nc  net.Conn
	wmu sync.Mutex

	mu      sync.Mutex
	waiting map[string]chan frame
	err     error         // why the connection ended
	done    chan struct{} // closed with err set
}

type frame struct {
	op      protocol.Op
	payload []byte
}

func (cn *conn) alive() bool {
	select {
	case <-cn.done:
		return false
	default:
		return true
	}
}

func (cn *conn) cause() error {
	cn.mu.Lock()
	defer cn.mu.Unlock()
	return cn.err
}

func (cn *conn) register(id string, ch chan frame) error {
	cn.mu.Lock()
	defer cn.mu.Unlock()
	if cn.err != nil {
		return cn.err
	}
	cn.waiting[id] = ch
	return nil
}

func (cn *conn) unregister(id string) {
	cn.mu.Lock()
	delete(cn.waiting, id)
	cn.mu.Unlock()
}

// send writes one frame. A write that fails or times out leaves a
// partial frame behind, so it ends the connection.
func (cn *conn) send(op protocol.Op, body []byte, timeout time.Duration) error {
	b := protocol.AppendFrame(make([]byte, 0, len(body)+5), op, body)
	cn.wmu.Lock()
	defer cn.wmu.Unlock()
	cn.nc.SetWriteDeadline(time.Now().Add(timeout))
	if _, err := cn.nc.Write(b); err != nil {
		err = fmt.Errorf("%w: write: %v", ErrConnectionLost, err)
		cn.fail(err)
		return cn.cause()
	}
	return nil
}

// fail ends the connection once; the calls waiting see done.
func (cn *conn) fail(err error) {
	cn.mu.Lock()
	if cn.err == nil {
		cn.err = err
		cn.waiting = nil
		close(cn.done)
	}
	cn.mu.Unlock()
	cn.nc.Close()
}

// readLoop hands each response to the call waiting for its requestId;
// responses to calls that gave up are dropped.
func (cn *conn) readLoop(br *bufio.Reader) {
	for {
		op, p, err := protocol.ReadFrame(br, protocol.MaxFrame)
		if err != nil {
			cn.fail(fmt.Errorf("%w: %v", ErrConnectionLost, err))
			return
		}
		var h struct {
			RequestID string `cbor:"requestId"`
		}
		if decode(p, &h) != nil {
			continue
		}
		cn.mu.Lock()
		ch := cn.waiting[h.RequestID]
		delete(cn.waiting, h.RequestID)
		cn.mu.Unlock()
		if ch != nil {
			ch <- frame{op, p}
		}
	}
}

// decMode decodes responses. protocol's decoder bounds arrays for
// requests; a read may answer up to 2^31-1 messages.
var decMode = sync.OnceValue(func() cbor.DecMode {
	dm, err := cbor.DecOptions{MaxArrayElements: math.MaxInt32, MaxMapPairs: 1 << 16, IndefLength: cbor.IndefLengthAllowed}.DecMode()
	if err != nil {
		panic(err)
	}
	return dm
})

func decode(p []byte, v any) error { return decMode().Unmarshal(p, v) }

// newRequestID is a random (version 4) UUID, as the v1 SDKs send.
func newRequestID() string {
	var u [16]byte
	rand.Read(u[:])
	u[6] = u[6]&0x0f | 0x40
	u[8] = u[8]&0x3f | 0x80
	var b [36]byte
	hex.Encode(b[0:8], u[0:4])
	b[8] = '-'
	hex.Encode(b[9:13], u[4:6])
	b[13] = '-'
	hex.Encode(b[14:18], u[6:8])
	b[18] = '-'
	hex.Encode(b[19:23], u[8:10])
	b[23] = '-'
	hex.Encode(b[24:], u[10:])
	return string(b[:])
}
