package mqtt

import (
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/evergreen-edge/evergreen/broker/admission"
	"github.com/mochi-mqtt/server/v2/listeners"
)

// tlsListener is mochi's listener for device connections. Unlike mochi's
// TCP listener it completes the TLS handshake itself, before mochi sees the
// connection, so that:
//   - a handshake is bounded in time and in number (a client that opens a
//     socket and sends nothing holds one slot for handshakeTimeout, never a
//     goroutine forever);
//   - a refused handshake gets one log line with its reason ("no client
//     certificate");
//   - the CONNECT packet must follow within connectTimeout.
type tlsListener struct {
	id, address string
	cfg         *tls.Config
	log         *slog.Logger
	limits      Limits
	// closed is called once mochi is done with a connection.
	closed func(net.Conn)
	// refused counts handshakes refused for want of a client certificate.
	refused *atomic.Uint64
	// disconnectAll, when set, replaces mochi's closeClients at Close (see
	// Close).
	disconnectAll func(listener string)

	ln   net.Listener
	sem  chan struct{}
	end  atomic.Bool
	wg   sync.WaitGroup
	once sync.Once
}

func (l *tlsListener) ID() string       { return l.id }
func (l *tlsListener) Protocol() string { return "tls" }

func (l *tlsListener) Address() string {
	if l.ln != nil {
		return l.ln.Addr().String()
	}
	return l.address
}

// Init opens the socket (mochi calls it from AddListener).
func (l *tlsListener) Init(*slog.Logger) error {
	ln, err := net.Listen("tcp", l.address)
	if err != nil {
		return err
	}
	l.ln = ln
	l.sem = make(chan struct{}, l.limits.MaxHandshakes)
	return nil
}

// Serve accepts until Close. A full handshake semaphore stops accepting,
// which leaves new connections in the kernel's backlog: back-pressure
// rather than refusal.
func (l *tlsListener) Serve(establish listeners.EstablishFn) {
	for {
		raw, err := l.ln.Accept()
		if err != nil {
			if l.end.Load() || errors.Is(err, net.ErrClosed) {
				return
			}
			// EMFILE and friends: wait for descriptors to come back.
			l.log.Warn("accept", "err", err)
			time.Sleep(50 * time.Millisecond)
			continue
		}
		l.sem <- struct{}{}
		l.wg.Add(1)
		go l.handle(raw, establish)
	}
}

func (l *tlsListener) handle(raw net.Conn, establish listeners.EstablishFn) {
	defer l.wg.Done()
	tc := tls.Server(raw, l.cfg)
	tc.SetDeadline(time.Now().Add(l.limits.HandshakeTimeout))
	err := tc.Handshake()
	<-l.sem
	if err != nil {
		l.handshakeFailed(raw.RemoteAddr().String(), err)
		tc.Close()
		return
	}
	if l.end.Load() {
		tc.Close()
		return
	}
	tc.SetDeadline(time.Time{})
	// mochi sets its keepalive deadline once CONNECT is read.
	tc.SetReadDeadline(time.Now().Add(l.limits.ConnectTimeout))
	err = establish(l.id, tc)
	l.closed(tc)
	if err != nil {
		l.log.Debug("connection ended", "remote", raw.RemoteAddr().String(), "err", err)
	}
}

func (l *tlsListener) handshakeFailed(remote string, err error) {
	msg := err.Error()
	switch {
	case strings.Contains(msg, "didn't provide a certificate"):
		l.refused.Add(1)
		l.log.Warn("connection refused", "remote", remote, "reason", admission.ReasonNoCertificate)
	case errors.Is(err, io.EOF):
		// A port probe or a client that gave up.
		l.log.Debug("TLS handshake abandoned", "remote", remote)
	default:
		l.log.Info("TLS handshake failed", "remote", remote, "err", msg)
	}
}

// Close stops accepting and closes every client of the listener (mochi
// passes closeClients).
func (l *tlsListener) Close(closeClients listeners.CloseFn) {
	l.once.Do(func() {
		l.end.Store(true)
		if l.ln != nil {
			l.ln.Close()
		}
		// mochi 2.7.9's closeClients takes its clients' read lock twice
		// (GetByListener calls Len under RLock): a client that disconnects
		// at that moment queues a writer between the two and both wait
		// forever (seen in CI: the broker's Stop hung). Our own walk takes
		// the lock once.
		if l.disconnectAll != nil {
			l.disconnectAll(l.id)
			return
		}
		closeClients(l.id)
	})
}

// wait waits for every connection of the listener to end, at most d.
func (l *tlsListener) wait(d time.Duration) bool {
	done := make(chan struct{})
	go func() { l.wg.Wait(); close(done) }()
	select {
	case <-done:
		return true
	case <-time.After(d):
		return false
	}
}
