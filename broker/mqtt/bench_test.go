package mqtt

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/evergreen-edge/evergreen/broker/admission"
)

// The benchmarks run the server in process behind real mutual TLS, with
// minimal MQTT 3.1.1 clients so that the profile is the server's: the
// Inbound callback stands in for the router and delivers every publish to
// each subscriber (fan-out) or to the one sink (fan-in), as the bench
// group of `make bench` does.
//
//	go test -run - -bench 'Fan|Idle' -cpuprofile cpu.out ./mqtt

// benchPKI is a CA, a server certificate and client certificates made on
// the fly (ECDSA P-256, as certmgr issues).
type benchPKI struct {
	ca    *x509.Certificate
	caKey *ecdsa.PrivateKey
	dir   string
}

func newBenchPKI(tb testing.TB) *benchPKI {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "bench CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		tb.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(der)
	return &benchPKI{ca: ca, caKey: key, dir: tb.TempDir()}
}

func (p *benchPKI) issue(tb testing.TB, cn string, server bool) tls.Certificate {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.DNSNames = []string{"localhost"}
		tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.ca, &key.PublicKey, p.caKey)
	if err != nil {
		tb.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
}

func (p *benchPKI) serverCert(tb testing.TB) *ServerCert {
	c := p.issue(tb, "localhost", true)
	kb, err := x509.MarshalECPrivateKey(c.PrivateKey.(*ecdsa.PrivateKey))
	if err != nil {
		tb.Fatal(err)
	}
	cf, kf := filepath.Join(p.dir, "server.cert.pem"), filepath.Join(p.dir, "server.key.pem")
	os.WriteFile(cf, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Certificate[0]}), 0o600)
	os.WriteFile(kf, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600)
	sc, err := LoadServerCert(cf, kf)
	if err != nil {
		tb.Fatal(err)
	}
	return sc
}

// benchServer starts a server that admits every client as the device its
// client id names and hands each publish to route.
func benchServer(tb testing.TB, pki *benchPKI, route func(s *Server, device string, m Message)) *Server {
	var s *Server
	l := DefaultLimits()
	l.MessagesPerSecond, l.BytesPerSecond = 0, 0
	s, err := New(Config{
		Address: "127.0.0.1:0",
		Cert:    pki.serverCert(tb),
		Admit: func(_ context.Context, _ *x509.Certificate, id string) admission.Result {
			return admission.Result{Device: id, Via: admission.ViaRegistry}
		},
		Inbound: func(device string, m Message) { route(s, device, m) },
		Log:     slog.New(slog.NewTextHandler(io.Discard, nil)),
		Limits:  l,
	})
	if err != nil {
		tb.Fatal(err)
	}
	if err := s.Start(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s.Close(ctx)
	})
	return s
}

// rawClient is just enough MQTT 3.1.1 for the benchmarks.
type rawClient struct {
	c  *tls.Conn
	r  *bufio.Reader
	mu sync.Mutex
}

func dialRaw(tb testing.TB, pki *benchPKI, addr, id string) *rawClient {
	cert := pki.issue(tb, id, false)
	pool := x509.NewCertPool()
	pool.AddCert(pki.ca)
	c, err := tls.Dial("tcp", addr, &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: pool, ServerName: "localhost"})
	if err != nil {
		tb.Fatal(err)
	}
	rc := &rawClient{c: c, r: bufio.NewReader(c)}
	// CONNECT: protocol MQTT level 4, clean session, keepalive 60 s.
	vh := append(mqttString("MQTT"), 4, 0x02, 0, 60)
	rc.send(0x10, append(vh, mqttString(id)...))
	if typ, _, err := rc.next(); err != nil || typ != 0x20 {
		tb.Fatalf("%s: no CONNACK (%x, %v)", id, typ, err)
	}
	return rc
}

func mqttString(s string) []byte {
	return append(binary.BigEndian.AppendUint16(nil, uint16(len(s))), s...)
}

func (rc *rawClient) send(first byte, body []byte) error {
	b := []byte{first}
	n := len(body)
	for {
		d := byte(n % 128)
		n /= 128
		if n > 0 {
			d |= 0x80
		}
		b = append(b, d)
		if n == 0 {
			break
		}
	}
	rc.mu.Lock()
	defer rc.mu.Unlock()
	_, err := rc.c.Write(append(b, body...))
	return err
}

func (rc *rawClient) subscribe(tb testing.TB, filter string, qos byte) {
	rc.send(0x82, append(append([]byte{0, 1}, mqttString(filter)...), qos))
	if typ, body, err := rc.next(); err != nil || typ != 0x90 || body[len(body)-1] > 2 {
		tb.Fatalf("SUBACK %x %x %v", typ, body, err)
	}
}

func (rc *rawClient) publish(topic string, qos byte, id uint16, payload []byte) error {
	body := mqttString(topic)
	if qos > 0 {
		body = binary.BigEndian.AppendUint16(body, id)
	}
	return rc.send(0x30|qos<<1, append(body, payload...))
}

// next reads one packet: its type nibble (shifted) and body.
func (rc *rawClient) next() (byte, []byte, error) {
	h, err := rc.r.ReadByte()
	if err != nil {
		return 0, nil, err
	}
	n, mul := 0, 1
	for {
		d, err := rc.r.ReadByte()
		if err != nil {
			return 0, nil, err
		}
		n += int(d&0x7f) * mul
		mul *= 128
		if d&0x80 == 0 {
			break
		}
	}
	body := make([]byte, n)
	_, err = io.ReadFull(rc.r, body)
	return h, body, err
}

// receive counts the publishes that arrive, acknowledging QoS 1 ones,
// and gives a credit back for each.
func (rc *rawClient) receive(got *atomic.Int64, credits chan struct{}) {
	for {
		h, body, err := rc.next()
		if err != nil {
			return
		}
		if h&0xf0 != 0x30 {
			continue
		}
		if (h>>1)&3 > 0 {
			tl := int(binary.BigEndian.Uint16(body))
			rc.send(0x40, body[2+tl:4+tl])
		}
		got.Add(1)
		select {
		case credits <- struct{}{}:
		default:
		}
	}
}

// benchLoad publishes b.N messages from the publishers, keeping at most
// window per publisher in flight end to end, and reports delivered msg/s.
// Fan-in keeps fewer in flight than make bench does (64 each), so that
// the sink's write queue (Limits.MaxPendingWrites) never drops.
func benchLoad(b *testing.B, nPub, nSub int, qos byte, fanOut bool, window int) {
	pki := newBenchPKI(b)
	var subs []string
	for i := range nSub {
		subs = append(subs, fmt.Sprintf("sub-%02d", i))
	}
	s := benchServer(b, pki, func(s *Server, _ string, m Message) {
		for _, d := range subs {
			s.Deliver(d, m)
		}
	})
	perMsg := nSub
	if !fanOut {
		perMsg = 1
	}
	// One credit per delivery in flight.
	credits := make(chan struct{}, window*nPub*perMsg)
	for range cap(credits) {
		credits <- struct{}{}
	}
	var got atomic.Int64
	for _, id := range subs {
		rc := dialRaw(b, pki, s.Addr(), id)
		rc.subscribe(b, "load/#", qos)
		go rc.receive(&got, credits)
		b.Cleanup(func() { rc.c.Close() })
	}
	var pubs []*rawClient
	for i := range nPub {
		rc := dialRaw(b, pki, s.Addr(), fmt.Sprintf("pub-%02d", i))
		// Drain PUBACKs.
		go func() {
			for {
				if _, _, err := rc.next(); err != nil {
					return
				}
			}
		}()
		b.Cleanup(func() { rc.c.Close() })
		pubs = append(pubs, rc)
	}
	payload := make([]byte, 64)
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for i, p := range pubs {
		n := b.N / nPub
		if i == 0 {
			n += b.N % nPub
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range n {
				for range perMsg {
					<-credits
				}
				if err := p.publish("load/x", qos, uint16(j%65535+1), payload); err != nil {
					return
				}
			}
		}()
	}
	wg.Wait()
	want := int64(b.N * perMsg)
	deadline := time.Now().Add(10 * time.Second)
	for got.Load() < want && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	el := time.Since(start)
	b.StopTimer()
	if got.Load() < want {
		b.Logf("delivered %d of %d", got.Load(), want)
	}
	b.ReportMetric(float64(got.Load())/el.Seconds(), "delivered/s")
}

func BenchmarkFanOut50QoS0(b *testing.B) { benchLoad(b, 1, 50, 0, true, 64) }
func BenchmarkFanOut50QoS1(b *testing.B) { benchLoad(b, 1, 50, 1, true, 64) }
func BenchmarkFanIn50QoS0(b *testing.B)  { benchLoad(b, 50, 1, 0, false, 8) }
func BenchmarkFanIn50QoS1(b *testing.B)  { benchLoad(b, 50, 1, 1, false, 8) }

// BenchmarkIdleConnections reports the heap and stacks one idle mutual-TLS
// connection holds in the server.
func BenchmarkIdleConnections(b *testing.B) {
	const n = 300
	pki := newBenchPKI(b)
	s := benchServer(b, pki, func(*Server, string, Message) {})
	certs := make([]tls.Certificate, n)
	for i := range certs {
		certs[i] = pki.issue(b, fmt.Sprintf("idle-%04d", i), false)
	}
	pool := x509.NewCertPool()
	pool.AddCert(pki.ca)
	gcs := 2
	if v, err := strconv.Atoi(os.Getenv("IDLE_GCS")); err == nil {
		gcs = v
	}
	measure := func() (heap, stack uint64) {
		for range gcs {
			runtime.GC()
		}
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapInuse, ms.StackInuse
	}
	for range b.N {
		heap0, stack0 := measure()
		g0 := runtime.NumGoroutine()
		var conns []*tls.Conn
		for i := range n {
			id := fmt.Sprintf("idle-%04d", i)
			c, err := tls.Dial("tcp", s.Addr(), &tls.Config{Certificates: certs[i : i+1], RootCAs: pool, ServerName: "localhost"})
			if err != nil {
				b.Fatal(err)
			}
			rc := &rawClient{c: c, r: bufio.NewReaderSize(c, 64)}
			rc.send(0x10, append(append(mqttString("MQTT"), 4, 0x02, 0, 60), mqttString(id)...))
			if typ, _, err := rc.next(); err != nil || typ != 0x20 {
				b.Fatal(errors.Join(err, fmt.Errorf("no CONNACK")))
			}
			rc.subscribe(b, "a/b", 1)
			conns = append(conns, c)
		}
		time.Sleep(200 * time.Millisecond)
		heap1, stack1 := measure()
		if f := os.Getenv("IDLE_HEAP_PROFILE"); f != "" {
			// The heap while the connections are open, for pprof.
			w, err := os.Create(f)
			if err != nil {
				b.Fatal(err)
			}
			pprof.Lookup("heap").WriteTo(w, 0)
			w.Close()
		}
		// The clients live in this process too; a heap profile
		// (-memprofile, inuse_space) tells the two sides apart.
		b.ReportMetric(float64(heap1-heap0)/n, "heapB/conn")
		b.ReportMetric(float64(stack1-stack0)/n, "stackB/conn")
		b.ReportMetric(float64(runtime.NumGoroutine()-g0)/n, "goroutines/conn")
		for _, c := range conns {
			c.Close()
		}
		time.Sleep(200 * time.Millisecond)
	}
}
