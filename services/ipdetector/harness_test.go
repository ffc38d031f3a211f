package ipdetector_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"github.com/evergreen-edge/evergreen/services/kit/bustest"
	"github.com/nats-io/nats.go"
	"io"
	"net/netip"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/evergreen-edge/evergreen/certmgr"
	certmgrv1 "github.com/evergreen-edge/evergreen/proto/evergreen/certmgr/v1"
	deployv1 "github.com/evergreen-edge/evergreen/proto/evergreen/deploy/v1"
	ipdetectorv1 "github.com/evergreen-edge/evergreen/proto/evergreen/ipdetector/v1"
	"github.com/evergreen-edge/evergreen/services/ipdetector"
	"github.com/evergreen-edge/evergreen/services/kit/config"
	"github.com/evergreen-edge/evergreen/services/kit/daemon"
	"github.com/evergreen-edge/evergreen/services/kit/layout"
	"github.com/evergreen-edge/evergreen/services/kit/subjects"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"
)

const (
	coreArn   = "arn:aws:iot:us-east-1:123456789012:thing/test-core"
	thingArn  = "arn:aws:iot:us-east-1:123456789012:thing/"
	certArn   = "arn:aws:iot:us-east-1:123456789012:cert/"
	mqttPort  = 28883
	waitLimit = 10 * time.Second
)

// addrList is a changeable address source for Options.Addrs.
type addrList struct {
	mu    sync.Mutex
	addrs []netip.Addr
}

func (a *addrList) set(addrs ...string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.addrs = a.addrs[:0]
	for _, s := range addrs {
		a.addrs = append(a.addrs, netip.MustParseAddr(s))
	}
}

func (a *addrList) get() ([]netip.Addr, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]netip.Addr(nil), a.addrs...), nil
}

// suite is certmgr and the ipdetector on one root and one bus, both in
// process, started the way the supervisor starts them.
type suite struct {
	t       *testing.T
	root    layout.Root
	busURL  string
	cfg     *config.Config
	opts    ipdetector.Options
	cm, ipd *daemon.Running
	ipdSvc  *ipdetector.Service
}

func newSuite(t *testing.T) *suite {
	t.Helper()
	cfg := config.Default()
	cfg.CoreThing.ThingArn = coreArn
	cfg.Evergreen.Listen.MQTT = "0.0.0.0:" + strconv.Itoa(mqttPort)
	cfg.Evergreen.Listen.Discovery = "127.0.0.1:0"
	s := &suite{t: t, root: layout.Root(t.TempDir()), busURL: bustest.Start(t), cfg: cfg}
	t.Cleanup(func() {
		s.stopIPDetector()
		s.stopCertmgr()
		if t.Failed() {
			for _, d := range []string{certmgr.Name, ipdetector.Name} {
				if b, err := os.ReadFile(s.root.LogFile(d)); err == nil {
					t.Logf("%s log:\n%s", d, b)
				}
			}
		}
	})
	return s
}

func (s *suite) startDaemon(spec daemon.Spec) *daemon.Running {
	s.t.Helper()
	bustest.WriteCreds(s.t, s.root, spec.Name)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	run, err := daemon.Start(ctx, spec, daemon.Options{Root: s.root.Dir(), BusURL: s.busURL, Config: s.cfg, LogStderr: io.Discard})
	if err != nil {
		s.t.Fatalf("start %s: %v", spec.Name, err)
	}
	return run
}

func (s *suite) start() {
	s.t.Helper()
	s.cm = s.startDaemon(certmgr.Spec())
	s.startIPDetector()
}

func (s *suite) startIPDetector() {
	s.t.Helper()
	spec := ipdetector.SpecWithOptions(s.opts)
	spec.New = func() daemon.Service {
		s.ipdSvc = ipdetector.New(s.opts)
		return s.ipdSvc
	}
	s.ipd = s.startDaemon(spec)
}

func shutdown(t *testing.T, r **daemon.Running) {
	if *r == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := (*r).Shutdown(ctx); err != nil {
		t.Errorf("shutdown: %v", err)
	}
	*r = nil
}

func (s *suite) stopIPDetector() { shutdown(s.t, &s.ipd) }
func (s *suite) stopCertmgr()    { shutdown(s.t, &s.cm) }

// discoveryAddr is the address the ipdetector serves discovery on.
func (s *suite) discoveryAddr() string { return s.ipd.Env.Endpoints.Discovery }

func (s *suite) dial(name string) *grpc.ClientConn {
	s.t.Helper()
	cc, err := grpc.NewClient("unix://"+s.root.Socket(name), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		s.t.Fatal(err)
	}
	s.t.Cleanup(func() { cc.Close() })
	return cc
}

func (s *suite) certmgr() certmgrv1.CertManagerClient {
	return certmgrv1.NewCertManagerClient(s.dial(certmgr.Name))
}

// apply sends an ApplyGroup to the ipdetector over the real bus, as the
// deployagent does, and requires it to be accepted.
func (s *suite) apply(group []byte, reset bool) {
	s.t.Helper()
	nc, err := nats.Connect(s.busURL)
	if err != nil {
		s.t.Fatal(err)
	}
	defer nc.Close()
	req, _ := proto.Marshal(&deployv1.ApplyGroup{DeploymentId: "d-1", GroupJson: group, Reset_: reset})
	msg, err := nc.Request(subjects.DeployApply(ipdetector.Name), req, 5*time.Second)
	if err != nil {
		s.t.Fatal(err)
	}
	var res deployv1.ApplyResult
	if err := proto.Unmarshal(msg.Data, &res); err != nil {
		s.t.Fatal(err)
	}
	if !res.Ok {
		s.t.Fatalf("ipdetector refused the group: %s", res.Reason)
	}
}

// connectivityEvents collects the Connectivity messages on the bus.
func connectivityEvents(t *testing.T, busURL string) chan *ipdetectorv1.Connectivity {
	t.Helper()
	nc, err := nats.Connect(busURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	ch := make(chan *ipdetectorv1.Connectivity, 64)
	if _, err := nc.Subscribe(subjects.IPConnectivity, func(m *nats.Msg) {
		var c ipdetectorv1.Connectivity
		if err := proto.Unmarshal(m.Data, &c); err != nil {
			t.Errorf("malformed Connectivity: %v", err)
			return
		}
		ch <- &c
	}); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return ch
}

func nextConnectivity(t *testing.T, ch chan *ipdetectorv1.Connectivity) *ipdetectorv1.Connectivity {
	t.Helper()
	select {
	case c := <-ch:
		return c
	case <-time.After(waitLimit):
		t.Fatal("no Connectivity on the bus")
		return nil
	}
}

// device is a client identity: its TLS pair and PEM certificate.
type device struct {
	pair    tls.Certificate
	certPEM string
}

func (s *suite) createDevice(name string) device {
	s.t.Helper()
	res, err := s.certmgr().CreateDevice(context.Background(), &certmgrv1.CreateDeviceRequest{Name: name})
	if err != nil {
		s.t.Fatal(err)
	}
	pair, err := tls.X509KeyPair([]byte(res.GetDevice().GetCertificatePem()), []byte(res.GetKeyPem()))
	if err != nil {
		s.t.Fatal(err)
	}
	return device{pair: pair, certPEM: res.GetDevice().GetCertificatePem()}
}

// groupCA is the trust anchor devices get in CAs (and as ca.pem).
func (s *suite) groupCA() (string, *x509.CertPool) {
	s.t.Helper()
	auth, err := s.certmgr().GetAuthorities(context.Background(), &certmgrv1.GetAuthoritiesRequest{})
	if err != nil {
		s.t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM([]byte(auth.GetGroupCaPem())) {
		s.t.Fatal("group CA PEM does not parse")
	}
	return auth.GetGroupCaPem(), pool
}

// response is one HTTP response as raw bytes, parsed the way the legacy
// Python device SDK parses it.
type response struct {
	raw    []byte
	status int
	header string
	body   string
	state  tls.ConnectionState
}

var (
	statusLine = regexp.MustCompile(`^HTTP/1\.1 (\d{3}) `)
	// The legacy SDK's own pattern, case-sensitive.
	lengthHeader = regexp.MustCompile(`content-length: (\d+)\r\n`)
)

// request sends one raw HTTP/1.1 request over mutual TLS and reads the
// connection to its end.
func request(t *testing.T, addr, serverName string, roots *x509.CertPool, client *tls.Certificate, req string) response {
	t.Helper()
	cfg := &tls.Config{RootCAs: roots, ServerName: serverName, MinVersion: tls.VersionTLS12}
	if client != nil {
		cfg.Certificates = []tls.Certificate{*client}
	}
	conn, err := tls.Dial("tcp", addr, cfg)
	if err != nil {
		t.Fatalf("TLS to discovery: %v", err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(waitLimit))
	if _, err := io.WriteString(conn, req); err != nil {
		t.Fatal(err)
	}
	raw, err := io.ReadAll(conn)
	if err != nil {
		t.Fatalf("read response: %v (got %q)", err, raw)
	}
	r := response{raw: raw, state: conn.ConnectionState()}
	head, body, ok := bytes.Cut(raw, []byte("\r\n\r\n"))
	if !ok {
		t.Fatalf("response has no end of header: %q", raw)
	}
	m := statusLine.FindSubmatch(head)
	if m == nil {
		t.Fatalf("status line is not what the legacy SDK expects: %q", head)
	}
	r.status, _ = strconv.Atoi(string(m[1]))
	r.header = string(head) + "\r\n"
	lm := lengthHeader.FindStringSubmatch(r.header)
	if lm == nil {
		t.Fatalf("no lower-case content-length header on the wire:\n%s", head)
	}
	if n, _ := strconv.Atoi(lm[1]); n != len(body) {
		t.Fatalf("content-length %d, body %d bytes", n, len(body))
	}
	if h := strings.ToLower(r.header); strings.Contains(h, "transfer-encoding") {
		t.Fatalf("chunked or encoded response:\n%s", head)
	}
	if strings.Contains(r.header, "Content-Length") {
		t.Fatalf("a canonicalised Content-Length besides the lower-case one:\n%s", head)
	}
	r.body = string(body)
	return r
}

func discoverReq(thing string) string {
	return "GET " + ipdetector.DiscoverPath + thing + " HTTP/1.1\r\nHost: greengrass-ats.iot.us-east-1.amazonaws.com:8443\r\n\r\n"
}

// checkFor polls fn until it returns nil or total passes.
func checkFor(t *testing.T, total, every time.Duration, fn func() error) {
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
