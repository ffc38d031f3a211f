package e2e

import (
	"bufio"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	pahov3 "github.com/eclipse/paho.mqtt.golang"
	"github.com/evergreen-edge/evergreen/certmgr/pki"
	"github.com/evergreen-edge/evergreen/services/internal/suitetest"
	"github.com/evergreen-edge/evergreen/services/kit/bustest"
	"github.com/evergreen-edge/evergreen/services/kit/layout"
	"github.com/evergreen-edge/evergreen/services/kit/topic"
	"github.com/evergreen-edge/evergreen/shadow/doc"
)

const waitLimit = 15 * time.Second

func needMosquitto(t *testing.T) {
	t.Helper()
	for _, tool := range []string{"mosquitto", "mosquitto_pub", "mosquitto_sub"} {
		if _, err := exec.LookPath(tool); err != nil {
			if suitetest.RequireAll() {
				t.Fatalf("%s is not installed (EVERGREEN_REQUIRE_ALL is set): apt-get install mosquitto mosquitto-clients", tool)
			}
			t.Skipf("%s is not installed: apt-get install mosquitto mosquitto-clients", tool)
		}
	}
}

// devCreds are the files `ggctl device create` wrote for a device.
type devCreds struct {
	name, cert, key, ca string
	certID              string // sha256 of the certificate, the CertificateArn id
}

func createDevice(t *testing.T, root layout.Root, name string) devCreds {
	t.Helper()
	out := t.TempDir()
	if r := ggctl(t, root, "device", "create", name, "--out", out); r.code != 0 {
		t.Fatalf("device create %s: %d %s", name, r.code, r.stderr)
	}
	d := devCreds{name: name, cert: filepath.Join(out, name+".cert.pem"), key: filepath.Join(out, name+".key.pem"), ca: filepath.Join(out, "ca.pem")}
	b, _ := os.ReadFile(d.cert)
	blk, _ := pem.Decode(b)
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(c.Raw)
	d.certID = hex.EncodeToString(sum[:])
	return d
}

const acct = "arn:aws:iot:us-east-1:123456789012:"

type sub struct{ src, subject, dst string }

// deployGroup deploys the core test-core and devices with subscriptions;
// synced lists things with SyncShadow.
func deployGroup(t *testing.T, root layout.Root, devs []devCreds, synced []string, subs ...sub) {
	t.Helper()
	isSynced := func(n string) bool {
		for _, s := range synced {
			if s == n {
				return true
			}
		}
		return false
	}
	g := map[string]any{
		"Core": map[string]any{"Cores": []any{map[string]any{
			"Id": "core", "ThingArn": acct + "thing/test-core", "SyncShadow": isSynced("test-core"),
			"CertificateArn": acct + "cert/" + strings.Repeat("ab", 32),
		}}},
	}
	var ds []any
	for _, d := range devs {
		ds = append(ds, map[string]any{"Id": d.name, "ThingArn": acct + "thing/" + d.name, "CertificateArn": acct + "cert/" + d.certID, "SyncShadow": isSynced(d.name)})
	}
	g["Devices"] = map[string]any{"Devices": ds}
	var ss []any
	for i, s := range subs {
		ss = append(ss, map[string]any{"Id": fmt.Sprintf("s%d", i), "Source": s.src, "Subject": s.subject, "Target": s.dst})
	}
	g["Subscriptions"] = map[string]any{"Subscriptions": ss}
	b, _ := json.MarshalIndent(g, "", " ")
	f := filepath.Join(t.TempDir(), "group.json")
	os.WriteFile(f, b, 0o600)
	if r := ggctl(t, root, "deploy", f); r.code != 0 {
		t.Fatalf("deploy: %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}

func thing(name string) string { return acct + "thing/" + name }

// mqttSub is a running mosquitto_sub printing "topic payload" lines.
type mqttSub struct {
	mu    sync.Mutex
	lines []string
	cmd   *exec.Cmd
}

func subscribe(t *testing.T, addr string, d devCreds, filter string) *mqttSub {
	t.Helper()
	host, port, _ := net.SplitHostPort(addr)
	cmd := exec.Command("mosquitto_sub", "-h", host, "-p", port, "--cafile", d.ca, "--cert", d.cert, "--key", d.key,
		"-i", d.name, "-t", filter, "-v", "-q", "1")
	out, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	m := &mqttSub{cmd: cmd}
	go func() {
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 256<<10), 256<<10)
		for sc.Scan() {
			m.mu.Lock()
			m.lines = append(m.lines, sc.Text())
			m.mu.Unlock()
		}
	}()
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return m
}

func (m *mqttSub) snapshot() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]string(nil), m.lines...)
}

// wait returns the payloads received on topic once there are n.
func (m *mqttSub) wait(t *testing.T, topic string, n int) []string {
	t.Helper()
	var got []string
	bustest.CheckFor(t, waitLimit, 20*time.Millisecond, func() error {
		got = got[:0]
		for _, l := range m.snapshot() {
			if p, ok := strings.CutPrefix(l, topic+" "); ok {
				got = append(got, p)
			}
		}
		if len(got) < n {
			return fmt.Errorf("%d messages on %s, want %d; have %q", len(got), topic, n, m.snapshot())
		}
		return nil
	})
	return got
}

// pahoDevice connects d with paho (one connection that both subscribes to
// filter and publishes: the client id is the thing name, so a second
// connection of the same device would take the session over).
func pahoDevice(t *testing.T, addr string, d devCreds, filter string) (pahov3.Client, *mqttSub) {
	t.Helper()
	pair, err := tls.LoadX509KeyPair(d.cert, d.key)
	if err != nil {
		t.Fatal(err)
	}
	caPEM, _ := os.ReadFile(d.ca)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	m := &mqttSub{}
	c := pahov3.NewClient(pahov3.NewClientOptions().AddBroker("ssl://" + addr).SetClientID(d.name).
		SetTLSConfig(&tls.Config{RootCAs: pool, Certificates: []tls.Certificate{pair}, ServerName: "localhost"}).SetAutoReconnect(false))
	if tok := c.Connect(); !tok.WaitTimeout(waitLimit) || tok.Error() != nil {
		t.Fatalf("connect %s: %v", d.name, tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(0) })
	if tok := c.Subscribe(filter, 1, func(_ pahov3.Client, msg pahov3.Message) {
		m.mu.Lock()
		m.lines = append(m.lines, msg.Topic()+" "+string(msg.Payload()))
		m.mu.Unlock()
	}); !tok.WaitTimeout(waitLimit) || tok.Error() != nil {
		t.Fatalf("subscribe %s: %v", d.name, tok.Error())
	}
	return c, m
}

func pahoPublish(t *testing.T, c pahov3.Client, topic, payload string) {
	t.Helper()
	if tok := c.Publish(topic, 1, false, payload); !tok.WaitTimeout(waitLimit) || tok.Error() != nil {
		t.Fatalf("publish %s: %v", topic, tok.Error())
	}
}

func publish(t *testing.T, addr string, d devCreds, topic, payload string) {
	t.Helper()
	host, port, _ := net.SplitHostPort(addr)
	cmd := exec.Command("mosquitto_pub", "-h", host, "-p", port, "--cafile", d.ca, "--cert", d.cert, "--key", d.key,
		"-i", d.name, "-t", topic, "-m", payload, "-q", "1")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("mosquitto_pub %s: %v %s", topic, err, out)
	}
}

func jsonAt(t *testing.T, b string, keys ...string) any {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("not JSON: %q", b)
	}
	for _, k := range keys {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[k]
	}
	return v
}

// Devices reach the shadow service only through subscriptions, with real
// mosquitto clients and the whole suite: a phone sets desired state of the
// lamp, the lamp gets /update/delta, the phone /update/documents; a device
// subscribed to everything but named in no subscription gets nothing.
func TestShadowThroughRouting(t *testing.T) {
	needMosquitto(t)
	root := suitetest.ShortRoot(t)
	suitetest.WriteConfig(t, root, nil)
	s := suitetest.Start(t, root)
	lamp, phone, other := createDevice(t, root, "lamp"), createDevice(t, root, "phone"), createDevice(t, root, "other")
	const pre = "$aws/things/lamp/shadow/"
	deployGroup(t, root, []devCreds{lamp, phone, other}, nil,
		sub{thing("phone"), pre + "update", "GGShadowService"},
		sub{thing("lamp"), pre + "update", "GGShadowService"},
		sub{thing("lamp"), pre + "get", "GGShadowService"},
		sub{"GGShadowService", pre + "update/delta", thing("lamp")},
		sub{"GGShadowService", pre + "get/accepted", thing("lamp")},
		sub{"GGShadowService", pre + "update/documents", thing("phone")},
		sub{"GGShadowService", pre + "update/rejected", thing("phone")},
	)
	addr := s.Endpoints().MQTT
	lampC, lampIn := pahoDevice(t, addr, lamp, pre+"#")
	phoneC, phoneIn := pahoDevice(t, addr, phone, pre+"#")
	otherIn := subscribe(t, addr, other, "#") // mosquitto_sub
	time.Sleep(300 * time.Millisecond)        // mosquitto_sub has subscribed

	pahoPublish(t, phoneC, pre+"update", `{"state":{"desired":{"on":true,"level":7}},"clientToken":"phone-1"}`)
	delta := lampIn.wait(t, pre+"update/delta", 1)
	if jsonAt(t, delta[0], "state", "level") != json.Number("7") || jsonAt(t, delta[0], "version") != json.Number("1") {
		t.Fatalf("delta = %s", delta[0])
	}
	docs := phoneIn.wait(t, pre+"update/documents", 1)
	if jsonAt(t, docs[0], "current", "state", "desired", "on") != true || jsonAt(t, docs[0], "clientToken") != "phone-1" {
		t.Fatalf("documents = %s", docs[0])
	}

	// The lamp reports: no delta is left, and its get shows the state.
	pahoPublish(t, lampC, pre+"update", `{"state":{"reported":{"on":true,"level":7}}}`)
	phoneIn.wait(t, pre+"update/documents", 2)
	pahoPublish(t, lampC, pre+"get", ``)
	got := lampIn.wait(t, pre+"get/accepted", 1)
	if jsonAt(t, got[0], "state", "delta") != nil || jsonAt(t, got[0], "version") != json.Number("2") || jsonAt(t, got[0], "state", "reported", "level") != json.Number("7") {
		t.Fatalf("get = %s", got[0])
	}
	// A refused update reaches whom the table says.
	pahoPublish(t, phoneC, pre+"update", `{"state":{"desired":{"level":8}},"version":1}`)
	rej := phoneIn.wait(t, pre+"update/rejected", 1)
	if jsonAt(t, rej[0], "code") != json.Number("409") || jsonAt(t, rej[0], "message") != "Version conflict" {
		t.Fatalf("rejected = %s", rej[0])
	}
	// The lamp has no subscription for /update/accepted or /documents, the
	// phone none for /delta; other has none at all.
	for _, l := range lampIn.snapshot() {
		if !strings.HasPrefix(l, pre+"update/delta ") && !strings.HasPrefix(l, pre+"get/accepted ") {
			t.Errorf("lamp received %q", l)
		}
	}
	for _, l := range phoneIn.snapshot() {
		if !strings.HasPrefix(l, pre+"update/documents ") && !strings.HasPrefix(l, pre+"update/rejected ") {
			t.Errorf("phone received %q", l)
		}
	}
	if l := otherIn.snapshot(); len(l) != 0 {
		t.Errorf("other (no subscriptions) received %q", l)
	}
	// other publishes to the shadow without a subscription (mosquitto_pub,
	// after its mosquitto_sub is gone): nothing changes.
	otherIn.cmd.Process.Kill()
	otherIn.cmd.Wait()
	publish(t, addr, other, pre+"update", `{"state":{"desired":{"level":0}}}`)
	time.Sleep(300 * time.Millisecond)
	if r := ggctl(t, root, "shadow", "get", "lamp"); r.code != 0 || jsonAt(t, r.stdout, "version") != json.Number("2") {
		t.Fatalf("ggctl shadow get: %d %s %s", r.code, r.stdout, r.stderr)
	}
	// ggctl's update reaches the lamp as a delta.
	if r := ggctl(t, root, "shadow", "update", "lamp", `{"state":{"desired":{"level":9}}}`); r.code != 0 {
		t.Fatalf("ggctl shadow update: %d %s", r.code, r.stderr)
	}
	delta = lampIn.wait(t, pre+"update/delta", 2)
	if jsonAt(t, delta[1], "state", "level") != json.Number("9") {
		t.Fatalf("delta after ggctl = %s", delta[1])
	}
}

// awsCloud is a real mosquitto (TLS) playing AWS IoT with a responder that
// implements the shadow topics using package doc, as the service does.
type awsCloud struct {
	t    *testing.T
	dir  string
	port int
	ca   *pki.KeyPair
	cmd  *exec.Cmd
	conf string

	mu      sync.Mutex
	shadows map[string]doc.Shadow // by topic prefix
	resp    pahov3.Client
}

func newAWSCloud(t *testing.T) *awsCloud {
	t.Helper()
	key, err := pki.GenerateKey(pki.ECDSAP256)
	if err != nil {
		t.Fatal(err)
	}
	caCert, err := pki.Issue(pki.Template{CommonName: "test cloud CA", CA: true, Validity: time.Hour}, key, nil, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	ca := &pki.KeyPair{Cert: caCert, Key: key}
	c := &awsCloud{t: t, dir: t.TempDir(), ca: ca, shadows: map[string]doc.Shadow{}}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c.port = l.Addr().(*net.TCPAddr).Port
	l.Close()
	os.WriteFile(filepath.Join(c.dir, "ca.pem"), pki.EncodeCert(ca.Cert), 0o600)
	skey, _ := pki.GenerateKey(pki.ECDSAP256)
	cert, err := pki.Issue(pki.Template{CommonName: "cloud", ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, Validity: time.Hour}, skey, ca, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := pki.EncodeKey(skey)
	os.WriteFile(filepath.Join(c.dir, "server.pem"), pki.EncodeCert(cert), 0o600)
	os.WriteFile(filepath.Join(c.dir, "server.key"), kb, 0o600)
	// The core's certificate for the cloud, as AWS IoT would issue it.
	ckey, _ := pki.GenerateKey(pki.ECDSAP256)
	ccert, err := pki.Issue(pki.Template{CommonName: "test-core", ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, Validity: time.Hour}, ckey, ca, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	ckb, _ := pki.EncodeKey(ckey)
	os.WriteFile(filepath.Join(c.dir, "core.pem"), pki.EncodeCert(ccert), 0o600)
	os.WriteFile(filepath.Join(c.dir, "core.key"), ckb, 0o600)
	me, _ := user.Current()
	c.conf = filepath.Join(c.dir, "mosquitto.conf")
	os.WriteFile(c.conf, fmt.Appendf(nil, "listener %d 127.0.0.1\ncafile %s\ncertfile %s\nkeyfile %s\nrequire_certificate false\nallow_anonymous true\npersistence false\nuser %s\n",
		c.port, filepath.Join(c.dir, "ca.pem"), filepath.Join(c.dir, "server.pem"), filepath.Join(c.dir, "server.key"), me.Username), 0o600)
	t.Cleanup(c.stop)
	return c
}

// writeConfig writes root's config.json with c as the cloud: its CA, the
// core certificate it issued, reconnects within a second.
func (c *awsCloud) writeConfig(root layout.Root) {
	c.t.Helper()
	suitetest.WriteConfig(c.t, root, func(cfg map[string]any) {
		cfg["coreThing"] = map[string]any{
			"thingArn": acct + "thing/test-core", "iotHost": "127.0.0.1", "iotMqttPort": c.port, "keepAlive": 30,
		}
		cfg["mqttMaxConnectionRetryInterval"] = 1
		cfg["crypto"] = map[string]any{
			"caPath": "file://" + filepath.Join(c.dir, "ca.pem"),
			"principals": map[string]any{"IoTCertificate": map[string]any{
				"certificatePath": "file://" + filepath.Join(c.dir, "core.pem"),
				"privateKeyPath":  "file://" + filepath.Join(c.dir, "core.key"),
			}},
		}
	})
}

func (c *awsCloud) start() {
	c.t.Helper()
	c.cmd = exec.Command("mosquitto", "-c", c.conf)
	if err := c.cmd.Start(); err != nil {
		c.t.Fatal(err)
	}
	bustest.CheckFor(c.t, waitLimit, 20*time.Millisecond, func() error {
		conn, err := net.Dial("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(c.port)))
		if err == nil {
			conn.Close()
		}
		return err
	})
	pool := x509.NewCertPool()
	pool.AddCert(c.ca.Cert)
	c.resp = pahov3.NewClient(pahov3.NewClientOptions().AddBroker("ssl://127.0.0.1:" + strconv.Itoa(c.port)).SetClientID("aws-shadow-service").
		SetTLSConfig(&tls.Config{RootCAs: pool}).SetAutoReconnect(false))
	if tok := c.resp.Connect(); !tok.WaitTimeout(waitLimit) || tok.Error() != nil {
		c.t.Fatalf("responder: %v", tok.Error())
	}
	for _, f := range []string{"$aws/things/+/shadow/+", "$aws/things/+/shadow/name/+/+"} {
		if tok := c.resp.Subscribe(f, 1, c.onRequest); !tok.WaitTimeout(waitLimit) || tok.Error() != nil {
			c.t.Fatal(tok.Error())
		}
	}
}

func (c *awsCloud) stop() {
	if c.resp != nil {
		c.resp.Disconnect(0)
		c.resp = nil
	}
	if c.cmd != nil {
		c.cmd.Process.Kill()
		c.cmd.Wait()
		c.cmd = nil
	}
}

// onRequest answers a shadow request as AWS IoT does.
func (c *awsCloud) onRequest(cl pahov3.Client, m pahov3.Message) {
	sh, ok := topic.ParseShadow(m.Topic())
	if !ok || sh.Result != "" {
		return
	}
	for _, out := range c.apply(sh, m.Payload()) {
		cl.Publish(out[0], 1, false, out[1])
	}
}

// apply runs one request on the cloud's shadows and returns the messages
// the service publishes ([topic, payload]).
func (c *awsCloud) apply(sh topic.Shadow, payload []byte) [][2]string {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := time.Now()
	cur := c.shadows[sh.Prefix()]
	name := sh.Name
	if name == "" {
		name = sh.Thing
	}
	var out [][2]string
	switch sh.Op {
	case "get":
		b, err := doc.Get(cur, name, payload, now)
		if err != nil {
			return append(out, [2]string{sh.Topic("get", "rejected"), string(err.Document(now))})
		}
		return append(out, [2]string{sh.Topic("get", "accepted"), string(b)})
	case "update":
		res, err := doc.Update(cur, payload, now, doc.DefaultLimits())
		if err != nil {
			return append(out, [2]string{sh.Topic("update", "rejected"), string(err.Document(now))})
		}
		c.shadows[sh.Prefix()] = res.Next
		out = append(out, [2]string{sh.Topic("update", "accepted"), string(res.Accepted)})
		if res.Delta != nil {
			out = append(out, [2]string{sh.Topic("update", "delta"), string(res.Delta)})
		}
		return append(out, [2]string{sh.Topic("update", "documents"), string(res.Documents)})
	case "delete":
		next, b, err := doc.Delete(cur, name, payload, now)
		if err != nil {
			return append(out, [2]string{sh.Topic("delete", "rejected"), string(err.Document(now))})
		}
		c.shadows[sh.Prefix()] = next
		return append(out, [2]string{sh.Topic("delete", "accepted"), string(b)})
	}
	return nil
}

// update changes the cloud's shadow as an app would over HTTP; with the
// broker up the service also publishes the change.
func (c *awsCloud) update(thing, payload string) {
	c.t.Helper()
	sh := topic.Shadow{Thing: thing, Op: "update"}
	outs := c.apply(sh, []byte(payload))
	if c.resp != nil {
		for _, o := range outs {
			c.resp.Publish(o[0], 1, false, o[1]).WaitTimeout(waitLimit)
		}
	}
	if !strings.HasSuffix(outs[0][0], "/accepted") {
		c.t.Fatalf("cloud update refused: %s", outs[0][1])
	}
}

func (c *awsCloud) document(thing string) (doc.Shadow, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	s, ok := c.shadows[topic.Shadow{Thing: thing}.Prefix()]
	return s, ok && s.Exists
}

// cloudValue reads desired/reported.<key> of the cloud's shadow.
func (c *awsCloud) value(thing, section, key string) any {
	s, ok := c.document(thing)
	if !ok {
		return nil
	}
	if section == "desired" {
		return s.Desired[key]
	}
	return s.Reported[key]
}

func localValue(t *testing.T, root layout.Root, thing, section, key string) any {
	t.Helper()
	r := ggctl(t, root, "shadow", "get", thing)
	if r.code != 0 {
		return nil
	}
	return jsonAt(t, r.stdout, "state", section, key)
}

func waitEqual(t *testing.T, what string, want any, get func() any) {
	t.Helper()
	bustest.CheckFor(t, waitLimit, 100*time.Millisecond, func() error {
		if got := get(); fmt.Sprint(got) != fmt.Sprint(want) {
			return fmt.Errorf("%s = %v, want %v", what, got, want)
		}
		return nil
	})
}

// Sync with a real mosquitto playing AWS IoT: local changes reach the
// cloud, cloud changes reach the local shadow (and devices); changes made
// on both sides while the core is offline merge by the documented rule
// after reconnecting; a restart of the shadow daemon keeps the sync; a
// delete in the cloud deletes the local shadow.
func TestShadowCloudSync(t *testing.T) {
	needMosquitto(t)
	cloud := newAWSCloud(t)
	cloud.start()
	root := suitetest.ShortRoot(t)
	cloud.writeConfig(root)
	suitetest.Start(t, root)
	lamp := createDevice(t, root, "lamp")
	deployGroup(t, root, []devCreds{lamp}, []string{"lamp"})

	// Local -> cloud.
	if r := ggctl(t, root, "shadow", "update", "lamp", `{"state":{"desired":{"color":"red"},"reported":{"color":"off"}}}`); r.code != 0 {
		t.Fatalf("shadow update: %d %s", r.code, r.stderr)
	}
	waitEqual(t, "cloud desired.color", "red", func() any { return cloud.value("lamp", "desired", "color") })
	waitEqual(t, "cloud reported.color", "off", func() any { return cloud.value("lamp", "reported", "color") })

	// Cloud -> local.
	cloud.update("lamp", `{"state":{"desired":{"level":5}}}`)
	waitEqual(t, "local desired.level", "5", func() any { return localValue(t, root, "lamp", "desired", "level") })
	waitEqual(t, "sync state", true, func() any {
		r := ggctl(t, root, "shadow", "list", "lamp")
		return strings.Contains(r.stdout, "IN_SYNC")
	})

	// Offline: both sides change; the cloud's color is later.
	cloud.stop()
	time.Sleep(300 * time.Millisecond)
	if r := ggctl(t, root, "shadow", "update", "lamp", `{"state":{"desired":{"color":"blue"},"reported":{"temp":20}}}`); r.code != 0 {
		t.Fatalf("offline shadow update: %d %s", r.code, r.stderr)
	}
	time.Sleep(1100 * time.Millisecond) // a later second for the cloud's write
	cloud.update("lamp", `{"state":{"desired":{"color":"green","level":7}}}`)
	waitEqual(t, "sync state while offline", true, func() any {
		return strings.Contains(ggctl(t, root, "shadow", "list", "lamp").stdout, "PENDING")
	})
	cloud.start()
	waitEqual(t, "local desired.color", "green", func() any { return localValue(t, root, "lamp", "desired", "color") })
	waitEqual(t, "local desired.level", "7", func() any { return localValue(t, root, "lamp", "desired", "level") })
	waitEqual(t, "cloud reported.temp", "20", func() any { return cloud.value("lamp", "reported", "temp") })
	waitEqual(t, "cloud desired.color", "green", func() any { return cloud.value("lamp", "desired", "color") })

	// A restart of the shadow daemon keeps the sync going.
	if r := ggctl(t, root, "restart", "shadow"); r.code != 0 {
		t.Fatalf("restart shadow: %d %s", r.code, r.stderr)
	}
	if r := ggctl(t, root, "shadow", "update", "lamp", `{"state":{"reported":{"temp":21}}}`); r.code != 0 {
		t.Fatalf("shadow update after restart: %d %s", r.code, r.stderr)
	}
	waitEqual(t, "cloud reported.temp", "21", func() any { return cloud.value("lamp", "reported", "temp") })
	waitEqual(t, "local desired.color after restart", "green", func() any { return localValue(t, root, "lamp", "desired", "color") })

	// A delete in the cloud deletes the local shadow; its version numbering
	// continues locally.
	before := ggctl(t, root, "shadow", "get", "lamp")
	outs := cloud.apply(topic.Shadow{Thing: "lamp", Op: "delete"}, nil)
	for _, o := range outs {
		cloud.resp.Publish(o[0], 1, false, o[1]).WaitTimeout(waitLimit)
	}
	bustest.CheckFor(t, waitLimit, 100*time.Millisecond, func() error {
		if r := ggctl(t, root, "shadow", "get", "lamp"); r.code != 4 {
			return fmt.Errorf("local shadow after the cloud deleted it: exit %d %s", r.code, r.stdout)
		}
		return nil
	})
	t.Logf("local version before the delete: %v", jsonAt(t, before.stdout, "version"))
	_ = io.Discard
	_ = context.Background
}
