package broker

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"github.com/evergreen-edge/evergreen/services/kit/bustest"
	"github.com/nats-io/nats.go"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"
	pahov3 "github.com/eclipse/paho.mqtt.golang"
	"github.com/evergreen-edge/evergreen/certmgr"
	brokerv1 "github.com/evergreen-edge/evergreen/proto/evergreen/broker/v1"
	certmgrv1 "github.com/evergreen-edge/evergreen/proto/evergreen/certmgr/v1"
	deployv1 "github.com/evergreen-edge/evergreen/proto/evergreen/deploy/v1"
	"github.com/evergreen-edge/evergreen/services/kit/config"
	"github.com/evergreen-edge/evergreen/services/kit/daemon"
	"github.com/evergreen-edge/evergreen/services/kit/deployment"
	"github.com/evergreen-edge/evergreen/services/kit/groupdef"
	"github.com/evergreen-edge/evergreen/services/kit/layout"
	"github.com/evergreen-edge/evergreen/services/kit/subjects"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"
)

// The tests run the real parts: an embedded NATS server, certmgr in
// process on its real socket, the broker in process on its real socket and
// MQTT listener, and real MQTT clients over mutual TLS (paho for MQTT
// 3.1.1, paho.golang for MQTT 5, mosquitto_pub/mosquitto_sub).

const (
	region  = "us-east-1"
	account = "123456789012"
	// within bounds every wait for something that must happen.
	within = 10 * time.Second
)

func thingARN(name string) string { return "arn:aws:iot:" + region + ":" + account + ":thing/" + name }
func certARN(id string) string    { return "arn:aws:iot:" + region + ":" + account + ":cert/" + id }
func functionARN(name string) string {
	return "arn:aws:lambda:" + region + ":" + account + ":function:" + name + ":1"
}

// logBuffer collects a daemon's log records.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// waitFor waits until a log line holds every one of parts.
func (l *logBuffer) waitFor(t *testing.T, parts ...string) string {
	t.Helper()
	var found string
	bustest.CheckFor(t, within, 20*time.Millisecond, func() error {
		for _, line := range strings.Split(l.String(), "\n") {
			ok := true
			for _, p := range parts {
				if !strings.Contains(line, p) {
					ok = false
					break
				}
			}
			if ok {
				found = line
				return nil
			}
		}
		return fmt.Errorf("no broker log line contains all of %q", parts)
	})
	return found
}

// suite is one root with a bus, certmgr and the broker.
type suite struct {
	t        *testing.T
	root     layout.Root
	busURL   string
	cfg      *config.Config
	logs     *logBuffer
	certmgr  *daemon.Running
	broker   *daemon.Running
	svc      *Service
	cm       certmgrv1.CertManagerClient
	api      brokerv1.BrokerClient
	bus      *nats.Conn
	mqttAddr string
	// serverCA is what devices trust: the group CA.
	serverCA *x509.CertPool
	caPEM    []byte
	deploys  int
}

type suiteOptions struct {
	certmgr certmgr.Options
	broker  Options
	// config adjusts config.json before anything starts.
	config func(*config.Config)
	// beforeBroker runs once certmgr is up (its CAs exist).
	beforeBroker func(*suite)
}

func newSuite(t *testing.T) *suite { return newSuiteWith(t, suiteOptions{}) }

func newSuiteWith(t *testing.T, o suiteOptions) *suite {
	t.Helper()
	s := &suite{t: t, root: layout.Root(t.TempDir()), busURL: bustest.Start(t), logs: &logBuffer{}}
	cfg := config.Default()
	l := &cfg.Evergreen.Listen
	for _, p := range []*string{&l.MQTT, &l.IPC, &l.Streams, &l.Bus, &l.HTTP, &l.Discovery} {
		if *p != "" {
			*p = "127.0.0.1:0"
		}
	}
	if o.config != nil {
		o.config(cfg)
	}
	s.cfg = cfg
	bustest.WriteCreds(t, s.root, certmgr.Name, Name)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	run, err := daemon.Start(ctx, certmgr.SpecWithOptions(o.certmgr), daemon.Options{Root: s.root.Dir(), BusURL: s.busURL, Config: cfg, LogStderr: io.Discard})
	if err != nil {
		t.Fatalf("start certmgr: %v", err)
	}
	s.certmgr = run
	t.Cleanup(func() { s.stop(&s.certmgr) })
	if o.beforeBroker != nil {
		o.beforeBroker(s)
	}
	spec := SpecWithOptions(o.broker)
	spec.New = func() daemon.Service {
		s.svc = New(o.broker)
		return s.svc
	}
	if s.broker, err = daemon.Start(ctx, spec, daemon.Options{Root: s.root.Dir(), BusURL: s.busURL, Config: cfg, LogStderr: s.logs}); err != nil {
		t.Fatalf("start broker: %v", err)
	}
	t.Cleanup(func() {
		s.stop(&s.broker)
		if t.Failed() || os.Getenv("EVERGREEN_TEST_LOGS") != "" {
			t.Logf("broker log:\n%s", s.logs.String())
		}
	})
	s.mqttAddr = s.svc.mqtt.Addr()
	s.cm = certmgrv1.NewCertManagerClient(s.dial(certmgr.Name))
	s.api = brokerv1.NewBrokerClient(s.dial(Name))
	if s.bus, err = nats.Connect(s.busURL); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.bus.Close)
	auth, err := s.cm.GetAuthorities(ctx, &certmgrv1.GetAuthoritiesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	s.caPEM = []byte(auth.GetGroupCaPem())
	s.serverCA = x509.NewCertPool()
	s.serverCA.AppendCertsFromPEM(s.caPEM)
	return s
}

func (s *suite) stop(r **daemon.Running) {
	if *r == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := (*r).Shutdown(ctx); err != nil {
		s.t.Errorf("shutdown: %v", err)
	}
	*r = nil
}

func (s *suite) dial(name string) *grpc.ClientConn {
	cc, err := grpc.NewClient("unix://"+s.root.Socket(name), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		s.t.Fatal(err)
	}
	s.t.Cleanup(func() { cc.Close() })
	return cc
}

// device is a client device's identity.
type device struct {
	name    string
	certPEM []byte
	keyPEM  []byte
	pair    tls.Certificate
	// id is the AWS IoT certificate id: SHA-256 of the DER.
	id string
	// dir holds cert, key and CA files for mosquitto clients.
	dir string
}

// createDevice registers a device with certmgr (ggctl device create).
func (s *suite) createDevice(name string) *device {
	s.t.Helper()
	resp, err := s.cm.CreateDevice(context.Background(), &certmgrv1.CreateDeviceRequest{Name: name})
	if err != nil {
		s.t.Fatalf("CreateDevice %s: %v", name, err)
	}
	return s.identity(name, []byte(resp.GetDevice().GetCertificatePem()), []byte(resp.GetKeyPem()))
}

// identity wraps a certificate and key made anywhere.
func (s *suite) identity(name string, certPEM, keyPEM []byte) *device {
	s.t.Helper()
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		s.t.Fatal(err)
	}
	sum := sha256.Sum256(pair.Certificate[0])
	d := &device{name: name, certPEM: certPEM, keyPEM: keyPEM, pair: pair, id: hex.EncodeToString(sum[:]), dir: s.t.TempDir()}
	for file, b := range map[string][]byte{"cert.pem": certPEM, "key.pem": keyPEM, "ca.pem": s.caPEM} {
		if err := os.WriteFile(filepath.Join(d.dir, file), b, 0o600); err != nil {
			s.t.Fatal(err)
		}
	}
	return d
}

func (s *suite) tlsConfig(d *device) *tls.Config {
	c := &tls.Config{RootCAs: s.serverCA, MinVersion: tls.VersionTLS12}
	if d != nil {
		c.Certificates = []tls.Certificate{d.pair}
	}
	return c
}

// sub is a subscription of a group: source, subject, target.
type sub struct{ src, subject, dst string }

// group builds a valid group with devs (certificate ids from their
// identities), one function per name in fns, and subs.
func group(devs []*device, fns []string, subs ...sub) *groupdef.Group {
	core := sha256.Sum256([]byte("core"))
	g := &groupdef.Group{
		GroupId: "test-group", Name: "test",
		Core:          &groupdef.CoreDefinitionVersion{Cores: []groupdef.Core{{Id: "core", ThingArn: thingARN("test-core"), CertificateArn: certARN(hex.EncodeToString(core[:]))}}},
		Devices:       &groupdef.DeviceDefinitionVersion{},
		Functions:     &groupdef.FunctionDefinitionVersion{},
		Subscriptions: &groupdef.SubscriptionDefinitionVersion{},
	}
	for _, d := range devs {
		g.Devices.Devices = append(g.Devices.Devices, groupdef.Device{Id: d.name, ThingArn: thingARN(d.name), CertificateArn: certARN(d.id)})
	}
	for _, f := range fns {
		g.Functions.Functions = append(g.Functions.Functions, groupdef.Function{
			Id: f, FunctionArn: functionARN(f),
			Evergreen: &groupdef.FunctionExtension{Runtime: "python3.8", Handler: f + ".handler", CodeUri: "functions/" + f},
		})
	}
	for i, x := range subs {
		g.Subscriptions.Subscriptions = append(g.Subscriptions.Subscriptions, groupdef.Subscription{Id: fmt.Sprintf("s%d", i), Source: x.src, Subject: x.subject, Target: x.dst})
	}
	return g
}

// deploy applies g to the broker the way the deployagent does: stage the
// record, send ApplyGroup on the bus, commit on success.
func (s *suite) deploy(g *groupdef.Group) string {
	s.t.Helper()
	res := s.tryDeploy(g)
	if !res.GetOk() {
		s.t.Fatalf("deployment refused: %s", res.GetReason())
	}
	return res.GetDaemon()
}

func (s *suite) tryDeploy(g *groupdef.Group) *deployv1.ApplyResult {
	s.t.Helper()
	b, err := groupdef.Marshal(g)
	if err != nil {
		s.t.Fatal(err)
	}
	if _, err := groupdef.Parse(b); err != nil {
		s.t.Fatalf("test group does not validate: %v", err)
	}
	s.deploys++
	rec := &deployment.Record{DeploymentID: fmt.Sprintf("deploy-%d", s.deploys), DeployedAt: time.Now().UTC(), Group: b}
	if err := deployment.WriteRecord(deployment.Path(s.root, deployment.StagedFile), rec); err != nil {
		s.t.Fatal(err)
	}
	data, _ := proto.Marshal(&deployv1.ApplyGroup{DeploymentId: rec.DeploymentID, GroupJson: b})
	msg, err := s.bus.Request(subjects.DeployApply(Name), data, within)
	if err != nil {
		s.t.Fatalf("ApplyGroup: %v", err)
	}
	res := &deployv1.ApplyResult{}
	if err := proto.Unmarshal(msg.Data, res); err != nil {
		s.t.Fatal(err)
	}
	if res.GetOk() {
		if err := deployment.Commit(s.root, rec); err != nil {
			s.t.Fatal(err)
		}
	}
	os.Remove(deployment.Path(s.root, deployment.StagedFile))
	return res
}

// deployReset removes the group, as `ggctl deploy --reset` does.
func (s *suite) deployReset() {
	s.t.Helper()
	data, _ := proto.Marshal(&deployv1.ApplyGroup{DeploymentId: "reset", Reset_: true})
	msg, err := s.bus.Request(subjects.DeployApply(Name), data, within)
	if err != nil {
		s.t.Fatalf("ApplyGroup reset: %v", err)
	}
	res := &deployv1.ApplyResult{}
	if err := proto.Unmarshal(msg.Data, res); err != nil || !res.GetOk() {
		s.t.Fatalf("reset refused: %v %s", err, res.GetReason())
	}
}

// received is what a test client got.
type received struct {
	topic   string
	payload string
	qos     byte
	props   *paho.PublishProperties
}

// inbox collects received messages.
type inbox chan received

// put keeps m unless the inbox is full (a test flooding a client it does
// not read): a blocked handler would wedge the client library.
func (in inbox) put(m received) {
	select {
	case in <- m:
	default:
	}
}

// next waits for the next message.
func (in inbox) next(t *testing.T) received {
	t.Helper()
	select {
	case m := <-in:
		return m
	case <-time.After(within):
		t.Fatalf("no message within %v", within)
		return received{}
	}
}

// expect waits for the next message and checks its topic and payload.
func (in inbox) expect(t *testing.T, topic, payload string) received {
	t.Helper()
	m := in.next(t)
	if m.topic != topic || m.payload != payload {
		t.Fatalf("received %q %q, want %q %q", m.topic, m.payload, topic, payload)
	}
	return m
}

// empty checks that nothing is waiting.
func (in inbox) empty(t *testing.T) {
	t.Helper()
	select {
	case m := <-in:
		t.Fatalf("unexpected message %q %q", m.topic, m.payload)
	default:
	}
}

// v3 is an MQTT 3.1.1 client (paho.mqtt.golang).
type v3 struct {
	c    pahov3.Client
	in   inbox
	lost chan error
}

func (s *suite) v3Options(d *device, clientID string) *pahov3.ClientOptions {
	return pahov3.NewClientOptions().
		AddBroker("ssl://" + s.mqttAddr).
		SetClientID(clientID).
		SetTLSConfig(s.tlsConfig(d)).
		SetProtocolVersion(4).
		SetAutoReconnect(false).
		SetConnectRetry(false).
		SetConnectTimeout(5 * time.Second).
		SetKeepAlive(30 * time.Second).
		SetOrderMatters(true)
}

// connectV3 connects d as clientID and returns the client, or the CONNACK
// return code and error of a refusal.
func (s *suite) connectV3(d *device, clientID string, tweak ...func(*pahov3.ClientOptions)) (*v3, byte, error) {
	s.t.Helper()
	c := &v3{in: make(inbox, 4096), lost: make(chan error, 1)}
	o := s.v3Options(d, clientID).
		SetDefaultPublishHandler(func(_ pahov3.Client, m pahov3.Message) {
			c.in.put(received{topic: m.Topic(), payload: string(m.Payload()), qos: m.Qos()})
		}).
		SetConnectionLostHandler(func(_ pahov3.Client, err error) { c.lost <- err })
	for _, f := range tweak {
		f(o)
	}
	c.c = pahov3.NewClient(o)
	tok := c.c.Connect()
	if !tok.WaitTimeout(within) {
		s.t.Fatal("MQTT 3.1.1 connect timed out")
	}
	ct := tok.(*pahov3.ConnectToken)
	if err := tok.Error(); err != nil {
		return nil, ct.ReturnCode(), err
	}
	s.t.Cleanup(func() { c.c.Disconnect(0) })
	return c, ct.ReturnCode(), nil
}

func (s *suite) mustV3(d *device) *v3 {
	s.t.Helper()
	c, _, err := s.connectV3(d, d.name)
	if err != nil {
		s.t.Fatalf("connect %s (MQTT 3.1.1): %v", d.name, err)
	}
	return c
}

func (c *v3) subscribe(t *testing.T, qos byte, filters ...string) {
	t.Helper()
	for _, f := range filters {
		tok := c.c.Subscribe(f, qos, nil)
		if !tok.WaitTimeout(within) || tok.Error() != nil {
			t.Fatalf("subscribe %s: %v", f, tok.Error())
		}
	}
}

func (c *v3) publish(t *testing.T, topic string, qos byte, payload string) {
	t.Helper()
	tok := c.c.Publish(topic, qos, false, payload)
	if !tok.WaitTimeout(within) || tok.Error() != nil {
		t.Fatalf("publish %s: %v", topic, tok.Error())
	}
}

// v5 is an MQTT 5 client (paho.golang).
type v5 struct {
	c            *paho.Client
	raw          net.Conn
	in           inbox
	disconnected chan *paho.Disconnect
}

// connectV5 connects d as clientID; the CONNACK comes back refused or not.
func (s *suite) connectV5(d *device, clientID string, cp *paho.Connect) (*v5, *paho.Connack, error) {
	s.t.Helper()
	raw, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", s.mqttAddr, s.tlsConfig(d))
	if err != nil {
		return nil, nil, err
	}
	c := &v5{raw: raw, in: make(inbox, 4096), disconnected: make(chan *paho.Disconnect, 1)}
	c.c = paho.NewClient(paho.ClientConfig{
		Conn: packets.NewThreadSafeConn(raw),
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
			c.in.put(received{topic: pr.Packet.Topic, payload: string(pr.Packet.Payload), qos: pr.Packet.QoS, props: pr.Packet.Properties})
			return true, nil
		}},
		OnServerDisconnect: func(d *paho.Disconnect) { c.disconnected <- d },
	})
	if cp == nil {
		cp = &paho.Connect{KeepAlive: 30, CleanStart: true}
	}
	cp.ClientID = clientID
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	ack, err := c.c.Connect(ctx, cp)
	if err != nil {
		return nil, ack, err
	}
	s.t.Cleanup(func() { c.c.Disconnect(&paho.Disconnect{}) })
	return c, ack, nil
}

func (s *suite) mustV5(d *device) *v5 {
	s.t.Helper()
	c, _, err := s.connectV5(d, d.name, nil)
	if err != nil {
		s.t.Fatalf("connect %s (MQTT 5): %v", d.name, err)
	}
	return c
}

func (c *v5) subscribe(t *testing.T, qos byte, filters ...string) *paho.Suback {
	t.Helper()
	sp := &paho.Subscribe{}
	for _, f := range filters {
		sp.Subscriptions = append(sp.Subscriptions, paho.SubscribeOptions{Topic: f, QoS: qos})
	}
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	ack, err := c.c.Subscribe(ctx, sp)
	if err != nil {
		t.Fatalf("subscribe %v: %v", filters, err)
	}
	return ack
}

func (c *v5) publish(t *testing.T, p *paho.Publish) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	if _, err := c.c.Publish(ctx, p); err != nil {
		t.Fatalf("publish %s: %v", p.Topic, err)
	}
}

// mosquitto runs a mosquitto client (mosquitto_pub or mosquitto_sub) as d.
func (s *suite) mosquitto(ctx context.Context, tool string, d *device, clientID string, args ...string) *exec.Cmd {
	host, port, _ := net.SplitHostPort(s.mqttAddr)
	base := []string{"-h", host, "-p", port, "--cafile", filepath.Join(d.dir, "ca.pem"),
		"--cert", filepath.Join(d.dir, "cert.pem"), "--key", filepath.Join(d.dir, "key.pem"), "-i", clientID}
	return exec.CommandContext(ctx, tool, append(base, args...)...)
}

// waitSubscribed waits until the broker lists the filters among device's
// subscriptions (a mosquitto_sub started in the background).
func (s *suite) waitSubscribed(device string, filters ...string) {
	s.t.Helper()
	bustest.CheckFor(s.t, within, 20*time.Millisecond, func() error {
		resp, err := s.api.ListClients(context.Background(), &brokerv1.ListClientsRequest{})
		if err != nil {
			return err
		}
		for _, c := range resp.GetClients() {
			if c.GetClientId() != device {
				continue
			}
			have := map[string]bool{}
			for _, f := range c.GetSubscriptions() {
				have[f] = true
			}
			for _, f := range filters {
				if !have[f] {
					return fmt.Errorf("%s has subscriptions %v, want %v", device, c.GetSubscriptions(), filters)
				}
			}
			return nil
		}
		return fmt.Errorf("%s is not connected", device)
	})
}

// busInbox subscribes the test to a bus subject.
func (s *suite) busInbox(subject string) chan *nats.Msg {
	s.t.Helper()
	ch := make(chan *nats.Msg, 256)
	sub, err := s.bus.ChanSubscribe(subject, ch)
	if err != nil {
		s.t.Fatal(err)
	}
	s.t.Cleanup(func() { sub.Unsubscribe() })
	if err := s.bus.Flush(); err != nil {
		s.t.Fatal(err)
	}
	return ch
}

func nextRouted(t *testing.T, ch chan *nats.Msg) *brokerv1.RoutedMessage {
	t.Helper()
	select {
	case m := <-ch:
		rm := &brokerv1.RoutedMessage{}
		if err := proto.Unmarshal(m.Data, rm); err != nil {
			t.Fatal(err)
		}
		return rm
	case <-time.After(within):
		t.Fatalf("no RoutedMessage on the bus within %v", within)
		return nil
	}
}

func (s *suite) busPublish(subject string, rm *brokerv1.RoutedMessage) {
	s.t.Helper()
	b, err := proto.Marshal(rm)
	if err != nil {
		s.t.Fatal(err)
	}
	if err := s.bus.Publish(subject, b); err != nil {
		s.t.Fatal(err)
	}
	if err := s.bus.Flush(); err != nil {
		s.t.Fatal(err)
	}
}
