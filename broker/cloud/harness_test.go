package cloud

// The harness: a PKI made in the test, a real mosquitto with mutual TLS
// playing AWS IoT, an observer client on it, TCP proxies that add latency
// or speak HTTP CONNECT, and a Cloud configured the way config.json would.

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/evergreen-edge/evergreen/services/kit/config"
	"github.com/evergreen-edge/evergreen/services/kit/layout"
)

// requireAll reports whether a missing tool must fail the test (CI).
func requireAll() bool { return os.Getenv("EVERGREEN_REQUIRE_ALL") == "1" }

// mosquittoPath returns the mosquitto binary, or skips the test (fails it
// when EVERGREEN_REQUIRE_ALL=1).
func mosquittoPath(t testing.TB) string {
	t.Helper()
	if p, err := exec.LookPath("mosquitto"); err == nil {
		return p
	}
	if _, err := os.Stat("/usr/sbin/mosquitto"); err == nil {
		return "/usr/sbin/mosquitto"
	}
	msg := "mosquitto is not installed (not in PATH nor /usr/sbin/mosquitto); it plays the cloud in this test"
	if requireAll() {
		t.Fatalf("%s (EVERGREEN_REQUIRE_ALL=1: every tool must be present; .ci/run installs it)", msg)
	}
	t.Skipf("%s; skipping (set EVERGREEN_REQUIRE_ALL=1 to fail instead)", msg)
	return ""
}

// checkFor polls fn until it returns nil or total elapses.
func checkFor(t testing.TB, total, every time.Duration, fn func() error) {
	t.Helper()
	deadline := time.Now().Add(total)
	for {
		err := fn()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal(err)
		}
		time.Sleep(every)
	}
}

// pki is a CA, the cloud's server certificate and client certificates, as
// PEM files in dir.
type pki struct {
	dir    string
	ca     *x509.Certificate
	caKey  *ecdsa.PrivateKey
	caFile string
}

func newPKI(t testing.TB) *pki {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "test cloud CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(der)
	p := &pki{dir: t.TempDir(), ca: ca, caKey: key}
	p.caFile = filepath.Join(p.dir, "ca.pem")
	writePEM(t, p.caFile, "CERTIFICATE", der)
	return p
}

var serial struct {
	sync.Mutex
	n int64
}

// issue writes name.pem and name.key, a certificate for a server (with
// 127.0.0.1 and localhost) or a client.
func (p *pki) issue(t testing.TB, name string, server bool) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial.Lock()
	serial.n++
	sn := serial.n + 1
	serial.Unlock()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(sn),
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
		tmpl.DNSNames = []string{"localhost"}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.ca, &key.PublicKey, p.caKey)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(p.dir, name+".pem"), filepath.Join(p.dir, name+".key")
	writePEM(t, certFile, "CERTIFICATE", der)
	writePEM(t, keyFile, "EC PRIVATE KEY", kder)
	return certFile, keyFile
}

func writePEM(t testing.TB, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
}

// clientTLSFor is the TLS configuration of a test client.
func (p *pki) clientTLSFor(t testing.TB, name string) *tls.Config {
	t.Helper()
	cert, key := p.issue(t, name, false)
	kp, err := tls.LoadX509KeyPair(cert, key)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(p.ca)
	return &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{kp}, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}
}

// mosquitto is a broker playing the cloud.
type mosquitto struct {
	t       testing.TB
	bin     string
	dir     string
	conf    string
	logFile string
	port    int
	cmd     *exec.Cmd
	exited  chan struct{}
}

type mosquittoOptions struct {
	persistence bool   // keep sessions across a SIGTERM restart
	extra       string // more config lines
}

func startMosquitto(t testing.TB, p *pki, o mosquittoOptions) *mosquitto {
	t.Helper()
	m := &mosquitto{t: t, bin: mosquittoPath(t), dir: t.TempDir(), port: freePort(t)}
	cert, key := p.issue(t, "cloud-server", true)
	m.logFile = filepath.Join(m.dir, "mosquitto.log")
	m.conf = filepath.Join(m.dir, "mosquitto.conf")
	u, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "listener %d 127.0.0.1\n", m.port)
	fmt.Fprintf(&b, "cafile %s\ncertfile %s\nkeyfile %s\n", p.caFile, cert, key)
	b.WriteString("require_certificate true\nallow_anonymous true\n")
	if o.persistence {
		fmt.Fprintf(&b, "persistence true\npersistence_location %s/\n", m.dir)
	} else {
		b.WriteString("persistence false\n")
	}
	fmt.Fprintf(&b, "log_dest file %s\n", m.logFile)
	b.WriteString("log_type error\nlog_type warning\nlog_type notice\nlog_type information\n")
	b.WriteString("max_queued_messages 0\nmax_inflight_messages 0\n")
	// Running as root, mosquitto would switch to the user "mosquitto",
	// who cannot read the test's files.
	fmt.Fprintf(&b, "user %s\n", u.Username)
	b.WriteString(o.extra)
	if err := os.WriteFile(m.conf, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	m.start()
	t.Cleanup(m.kill)
	return m
}

func (m *mosquitto) start() {
	m.t.Helper()
	m.cmd = exec.Command(m.bin, "-c", m.conf)
	m.cmd.Stdout, m.cmd.Stderr = io.Discard, io.Discard
	if err := m.cmd.Start(); err != nil {
		m.t.Fatal(err)
	}
	m.exited = make(chan struct{})
	go func(cmd *exec.Cmd, exited chan struct{}) {
		cmd.Wait()
		close(exited)
	}(m.cmd, m.exited)
	checkFor(m.t, 10*time.Second, 20*time.Millisecond, func() error {
		select {
		case <-m.exited:
			log, _ := os.ReadFile(m.logFile)
			m.t.Fatalf("mosquitto exited at start:\n%s", log)
		default:
		}
		c, err := net.Dial("tcp", m.addr())
		if err != nil {
			return fmt.Errorf("mosquitto does not listen on %s: %w", m.addr(), err)
		}
		c.Close()
		return nil
	})
}

func (m *mosquitto) addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(m.port)) }

// stop ends mosquitto with SIGTERM (it saves its sessions when persistent).
func (m *mosquitto) stop() {
	if m.cmd == nil {
		return
	}
	m.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-m.exited:
	case <-time.After(10 * time.Second):
		m.cmd.Process.Kill()
		<-m.exited
	}
	m.cmd = nil
}

func (m *mosquitto) kill() {
	if m.cmd == nil {
		return
	}
	m.cmd.Process.Kill()
	<-m.exited
	m.cmd = nil
}

// clientsConnected returns the client ids mosquitto logged as connecting.
func (m *mosquitto) clientsConnected() map[string]string {
	data, _ := os.ReadFile(m.logFile)
	ids := map[string]string{}
	for _, line := range strings.Split(string(data), "\n") {
		_, rest, ok := strings.Cut(line, "New client connected from ")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) >= 4 && f[1] == "as" {
			ids[f[2]] = strings.Join(f[3:], " ")
		}
	}
	return ids
}

// lastEvent returns the last line mosquitto logged about client id.
func (m *mosquitto) lastEvent(id string) string {
	data, _ := os.ReadFile(m.logFile)
	last := ""
	for _, line := range strings.Split(string(data), "\n") {
		if strings.Contains(line, " as "+id+" (") || strings.Contains(line, "Client "+id+" ") {
			last = line
		}
	}
	return last
}

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// observer is a test client on the cloud that records what arrives.
type observer struct {
	t      testing.TB
	client mqtt.Client
	mu     sync.Mutex
	got    map[string][]string // topic -> payloads in arrival order
	count  int
}

// newObserver connects and subscribes to filter at QoS 1. With persistent,
// the session outlives the connection (clean session off).
func newObserver(t testing.TB, p *pki, addr, id, filter string, persistent bool) *observer {
	t.Helper()
	o := &observer{t: t, got: map[string][]string{}}
	o.connect(p.clientTLSFor(t, id), addr, id, filter, persistent)
	return o
}

func (o *observer) connect(tc *tls.Config, addr, id, filter string, persistent bool) {
	o.t.Helper()
	opts := mqtt.NewClientOptions().AddBroker("tls://" + addr).SetClientID(id).SetTLSConfig(tc).
		SetCleanSession(!persistent).SetAutoReconnect(false).SetOrderMatters(true).
		SetDefaultPublishHandler(func(_ mqtt.Client, m mqtt.Message) {
			o.mu.Lock()
			o.got[m.Topic()] = append(o.got[m.Topic()], string(m.Payload()))
			o.count++
			o.mu.Unlock()
		})
	o.client = mqtt.NewClient(opts)
	if tok := o.client.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		o.t.Fatalf("observer connect: %v", tok.Error())
	}
	if filter != "" {
		if tok := o.client.Subscribe(filter, 1, nil); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			o.t.Fatalf("observer subscribe: %v", tok.Error())
		}
	}
	o.t.Cleanup(func() { o.client.Disconnect(0) })
}

func (o *observer) received(topic string) []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]string(nil), o.got[topic]...)
}

func (o *observer) total() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.count
}

func (o *observer) publish(topic, payload string) {
	o.t.Helper()
	if tok := o.client.Publish(topic, 1, false, payload); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		o.t.Fatalf("observer publish: %v", tok.Error())
	}
}

// testCore is a core's root and config.json pointing at the cloud.
type testCore struct {
	root layout.Root
	cfg  *config.Config
}

// newTestCore writes the core certificate where certmgr would and sets the
// config the way a v1 config.json does (crypto.caPath, iotHost,
// iotMqttPort), with the shortest retry interval.
func newTestCore(t testing.TB, p *pki, cloudPort int) *testCore {
	t.Helper()
	root := layout.Root(t.TempDir())
	if err := root.Create(); err != nil {
		t.Fatal(err)
	}
	cert, key := p.issue(t, "core", false)
	for src, dst := range map[string]string{cert: root.CoreCert(), key: root.CoreKey()} {
		data, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dst, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cfg := config.Default()
	cfg.CoreThing.ThingArn = "arn:aws:iot:us-east-1:123456789012:thing/core"
	cfg.CoreThing.IotHost = "127.0.0.1"
	cfg.CoreThing.IotMqttPort = cloudPort
	cfg.CoreThing.KeepAlive = 30
	cfg.MqttMaxConnectionRetryInterval = 1
	cfg.Crypto = &config.Crypto{CaPath: "file://" + p.caFile}
	return &testCore{root: root, cfg: cfg}
}

// newCloud makes a Cloud for core with settings s, stopped at cleanup.
func newCloud(t testing.TB, core *testCore, s SpoolerSettings, tweak func(*Options)) *Cloud {
	t.Helper()
	o := Options{Config: core.cfg, Root: core.root, Settings: s, Log: testLogger(t)}
	if tweak != nil {
		tweak(&o)
	}
	c, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	c.retryBase = 50 * time.Millisecond
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		c.Stop(ctx)
	})
	return c
}

// latencyProxy forwards TCP to target, holding every chunk for delay in
// each direction: a cloud that far away. No bandwidth limit.
type latencyProxy struct {
	l     net.Listener
	delay time.Duration
}

func startLatencyProxy(t testing.TB, target string, delay time.Duration) *latencyProxy {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &latencyProxy{l: l, delay: delay}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			in, err := l.Accept()
			if err != nil {
				return
			}
			out, err := net.Dial("tcp", target)
			if err != nil {
				in.Close()
				continue
			}
			go p.pipe(in, out)
			go p.pipe(out, in)
		}
	}()
	return p
}

func (p *latencyProxy) addr() string { return p.l.Addr().String() }

type chunk struct {
	at   time.Time
	data []byte
}

func (p *latencyProxy) pipe(from, to net.Conn) {
	q := make(chan chunk, 1<<14)
	go func() {
		defer to.Close()
		for c := range q {
			time.Sleep(time.Until(c.at))
			if _, err := to.Write(c.data); err != nil {
				for range q {
				}
				return
			}
		}
	}()
	buf := make([]byte, 64<<10)
	for {
		n, err := from.Read(buf)
		if n > 0 {
			q <- chunk{at: time.Now().Add(p.delay), data: append([]byte(nil), buf[:n]...)}
		}
		if err != nil {
			close(q)
			from.Close()
			return
		}
	}
}

// connectProxy is an HTTP CONNECT proxy that wants basic auth user:pass.
type connectProxy struct {
	l        net.Listener
	mu       sync.Mutex
	tunnels  []string
	refusals int
}

func startConnectProxy(t testing.TB, user, pass string) *connectProxy {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &connectProxy{l: l}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			in, err := l.Accept()
			if err != nil {
				return
			}
			go p.serve(in, user, pass)
		}
	}()
	return p
}

func (p *connectProxy) serve(in net.Conn, user, pass string) {
	br := bufio.NewReader(in)
	req, err := http.ReadRequest(br)
	if err != nil {
		in.Close()
		return
	}
	u, pw, ok := req.BasicAuth()
	if h := req.Header.Get("Proxy-Authorization"); h != "" {
		r := &http.Request{Header: http.Header{"Authorization": {h}}}
		u, pw, ok = r.BasicAuth()
	}
	if req.Method != http.MethodConnect || !ok || u != user || pw != pass {
		p.mu.Lock()
		p.refusals++
		p.mu.Unlock()
		io.WriteString(in, "HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 0\r\n\r\n")
		in.Close()
		return
	}
	out, err := net.Dial("tcp", req.Host)
	if err != nil {
		io.WriteString(in, "HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
		in.Close()
		return
	}
	p.mu.Lock()
	p.tunnels = append(p.tunnels, req.Host)
	p.mu.Unlock()
	io.WriteString(in, "HTTP/1.1 200 Connection established\r\n\r\n")
	go func() { io.Copy(out, br); out.Close() }()
	io.Copy(in, out)
	in.Close()
}

func (p *connectProxy) seen() ([]string, int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.tunnels...), p.refusals
}
