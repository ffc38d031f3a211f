package broker

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"github.com/evergreen-edge/evergreen/services/kit/bustest"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	pahov3 "github.com/eclipse/paho.mqtt.golang"
	"github.com/evergreen-edge/evergreen/certmgr/pki"
	brokerv1 "github.com/evergreen-edge/evergreen/proto/evergreen/broker/v1"
	"github.com/evergreen-edge/evergreen/services/kit/arn"
	"github.com/evergreen-edge/evergreen/services/kit/clouddeploy"
	"github.com/evergreen-edge/evergreen/services/kit/cloudota"
	"github.com/evergreen-edge/evergreen/services/kit/config"
	"github.com/evergreen-edge/evergreen/services/kit/subjects"
)

// upstream is a real mosquitto with mutual TLS playing AWS IoT: it trusts
// the group CA (which signs the core certificate) and a CA of its own.
type upstream struct {
	dir  string
	port int
	ca   *pki.KeyPair
	pool *x509.CertPool
}

func newUpstream(t *testing.T) *upstream {
	t.Helper()
	u := &upstream{dir: t.TempDir(), ca: foreignCA(t), pool: x509.NewCertPool()}
	u.pool.AddCert(u.ca.Cert)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u.port = l.Addr().(*net.TCPAddr).Port
	l.Close()
	writeFile(t, filepath.Join(u.dir, "ca.pem"), pki.EncodeCert(u.ca.Cert))
	return u
}

// issue writes a certificate of the upstream CA (server or client) and
// returns its files.
func (u *upstream) issue(t *testing.T, name string, server bool) (string, string) {
	t.Helper()
	key, err := pki.GenerateKey(pki.ECDSAP256)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := pki.Template{CommonName: name, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, Validity: time.Hour}
	if server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
	}
	c, err := pki.Issue(tmpl, key, u.ca, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	kp, err := pki.EncodeKey(key)
	if err != nil {
		t.Fatal(err)
	}
	cf, kf := filepath.Join(u.dir, name+".pem"), filepath.Join(u.dir, name+".key")
	writeFile(t, cf, pki.EncodeCert(c))
	writeFile(t, kf, kp)
	return cf, kf
}

// start runs mosquitto trusting the upstream CA and groupCA.
func (u *upstream) start(t *testing.T, groupCA string) {
	t.Helper()
	g, err := os.ReadFile(groupCA)
	if err != nil {
		t.Fatal(err)
	}
	trust := filepath.Join(u.dir, "trust.pem")
	writeFile(t, trust, append(pki.EncodeCert(u.ca.Cert), g...))
	cert, key := u.issue(t, "cloud-server", true)
	me, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(u.dir, "mosquitto.conf")
	writeFile(t, conf, fmt.Appendf(nil, "listener %d 127.0.0.1\ncafile %s\ncertfile %s\nkeyfile %s\nrequire_certificate true\nallow_anonymous true\npersistence false\nuser %s\n",
		u.port, trust, cert, key, me.Username))
	cmd := exec.Command("mosquitto", "-c", conf)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	bustest.CheckFor(t, within, 20*time.Millisecond, func() error {
		c, err := net.Dial("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(u.port)))
		if err == nil {
			c.Close()
		}
		return err
	})
}

// client connects an observer to the upstream broker.
func (u *upstream) client(t *testing.T, id string) (pahov3.Client, inbox) {
	t.Helper()
	cf, kf := u.issue(t, id, false)
	pair, err := tls.LoadX509KeyPair(cf, kf)
	if err != nil {
		t.Fatal(err)
	}
	in := make(inbox, 64)
	c := pahov3.NewClient(pahov3.NewClientOptions().AddBroker("ssl://127.0.0.1:" + strconv.Itoa(u.port)).SetClientID(id).
		SetTLSConfig(&tls.Config{RootCAs: u.pool, Certificates: []tls.Certificate{pair}}).SetAutoReconnect(false).
		SetDefaultPublishHandler(func(_ pahov3.Client, m pahov3.Message) {
			in.put(received{topic: m.Topic(), payload: string(m.Payload()), qos: m.Qos()})
		}))
	if tok := c.Connect(); !tok.WaitTimeout(within) || tok.Error() != nil {
		t.Fatalf("upstream client: %v", tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(0) })
	return c, in
}

// With coreThing.iotHost set, messages routed to `cloud` go upstream
// through the spooler, and cloud-source subscriptions deliver to devices.
// newCloudSuite is a suite whose cloud is the upstream mosquitto.
func newCloudSuite(t *testing.T) (*upstream, *suite) {
	up := newUpstream(t)
	s := newSuiteWith(t, suiteOptions{
		config: func(c *config.Config) {
			c.CoreThing.ThingArn = thingARN("test-core")
			c.CoreThing.IotHost = "127.0.0.1"
			c.CoreThing.IotMqttPort = up.port
			c.CoreThing.KeepAlive = 30
			c.MqttMaxConnectionRetryInterval = 1
			c.Crypto = &config.Crypto{CaPath: "file://" + filepath.Join(up.dir, "ca.pem")}
		},
		beforeBroker: func(s *suite) { up.start(t, s.root.GroupCACert()) },
	})
	return up, s
}

func TestCloudRoutes(t *testing.T) {
	up, s := newCloudSuite(t)
	sensor, watcher := s.createDevice("sensor"), s.createDevice("watcher")
	s.deploy(group([]*device{sensor, watcher}, nil,
		sub{thingARN("sensor"), "up/#", arn.Cloud},
		sub{arn.Cloud, "down/#", thingARN("watcher")},
	))
	obs, obsIn := up.client(t, "observer")
	if tok := obs.Subscribe("up/#", 1, nil); !tok.WaitTimeout(within) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	bustest.CheckFor(t, within, 50*time.Millisecond, func() error {
		st, err := s.api.GetCloudStatus(context.Background(), &brokerv1.GetCloudStatusRequest{})
		if err != nil {
			return err
		}
		if st.GetState() != brokerv1.CloudState_CLOUD_STATE_CONNECTED || !slices.Contains(st.GetCloudSubscriptions(), "down/#") {
			return fmt.Errorf("cloud status %v", st)
		}
		return nil
	})

	w := s.mustV3(watcher)
	w.subscribe(t, 1, "#")
	s.mustV3(sensor).publish(t, "up/temp", 1, "21")
	obsIn.expect(t, "up/temp", "21")

	if tok := obs.Publish("down/cmd", 1, false, "reboot"); !tok.WaitTimeout(within) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	w.in.expect(t, "down/cmd", "reboot")
}

// The core's deployment topics bypass the table: a request from the cloud
// goes to the deployagent on the bus (not to a device subscribed to #),
// and the deployagent's status reaches the cloud; no other topic may
// leave that way.
func TestCloudDeploymentTopics(t *testing.T) {
	up, s := newCloudSuite(t)
	watcher := s.createDevice("watcher")
	s.deploy(group([]*device{watcher}, nil, sub{arn.Cloud, "evergreen/#", thingARN("watcher")}))
	requests := s.busInbox(subjects.BrokerCloudDeploy)
	obs, obsIn := up.client(t, "observer")
	if tok := obs.Subscribe("evergreen/#", 1, nil); !tok.WaitTimeout(within) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	bustest.CheckFor(t, within, 50*time.Millisecond, func() error {
		st, err := s.api.GetCloudStatus(context.Background(), &brokerv1.GetCloudStatusRequest{})
		if err != nil {
			return err
		}
		if st.GetState() != brokerv1.CloudState_CLOUD_STATE_CONNECTED || !slices.Contains(st.GetCloudSubscriptions(), clouddeploy.RequestTopic("test-core")) {
			return fmt.Errorf("cloud status %v", st)
		}
		return nil
	})
	w := s.mustV3(watcher)
	w.subscribe(t, 1, "#")

	req := `{"deploymentId":"d-1","group":{}}`
	if tok := obs.Publish(clouddeploy.RequestTopic("test-core"), 1, false, req); !tok.WaitTimeout(within) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	obsIn.expect(t, clouddeploy.RequestTopic("test-core"), req) // the observer's own
	if rm := nextRouted(t, requests); rm.GetTopic() != clouddeploy.RequestTopic("test-core") || string(rm.GetPayload()) != req ||
		rm.GetSource().GetKind() != brokerv1.EndpointKind_ENDPOINT_KIND_CLOUD {
		t.Fatalf("deployment request on the bus: %v", rm)
	}

	status := `{"deploymentId":"d-1","status":"Success","timestamp":1}`
	s.busPublish(subjects.DeployCloud, &brokerv1.RoutedMessage{Topic: "elsewhere/x", Payload: []byte("no")})
	s.busPublish(subjects.DeployCloud, &brokerv1.RoutedMessage{Topic: clouddeploy.StatusTopic("test-core"), Payload: []byte(status)})
	obsIn.expect(t, clouddeploy.StatusTopic("test-core"), status)
	s.logs.waitFor(t, "message refused", "from="+subjects.DeployCloud, "is not this core's deployment status topic")
	// Neither the request nor our own status, echoed back through the
	// wide cloud subscription, went through the table; other topics do.
	if tok := obs.Publish("evergreen/other", 1, false, "x"); !tok.WaitTimeout(within) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	w.in.expect(t, "evergreen/other", "x")
	w.in.empty(t)
}

// The core's update job topics bypass the table like the deployment ones:
// a request goes to the ota daemon on the bus, its status reaches the
// cloud, and nothing else leaves on that subject.
func TestCloudOTATopics(t *testing.T) {
	up, s := newCloudSuite(t)
	watcher := s.createDevice("watcher")
	s.deploy(group([]*device{watcher}, nil, sub{arn.Cloud, "evergreen/#", thingARN("watcher")}))
	requests := s.busInbox(subjects.BrokerCloudOTA)
	obs, obsIn := up.client(t, "observer")
	if tok := obs.Subscribe("evergreen/#", 1, nil); !tok.WaitTimeout(within) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	bustest.CheckFor(t, within, 50*time.Millisecond, func() error {
		st, err := s.api.GetCloudStatus(context.Background(), &brokerv1.GetCloudStatusRequest{})
		if err != nil {
			return err
		}
		if st.GetState() != brokerv1.CloudState_CLOUD_STATE_CONNECTED || !slices.Contains(st.GetCloudSubscriptions(), cloudota.RequestTopic("test-core")) {
			return fmt.Errorf("cloud status %v", st)
		}
		return nil
	})
	w := s.mustV3(watcher)
	w.subscribe(t, 1, "#")

	req := `{"jobId":"j-1","url":"https://h/b.tar.gz"}`
	if tok := obs.Publish(cloudota.RequestTopic("test-core"), 1, false, req); !tok.WaitTimeout(within) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	obsIn.expect(t, cloudota.RequestTopic("test-core"), req)
	if rm := nextRouted(t, requests); rm.GetTopic() != cloudota.RequestTopic("test-core") || string(rm.GetPayload()) != req ||
		rm.GetSource().GetKind() != brokerv1.EndpointKind_ENDPOINT_KIND_CLOUD {
		t.Fatalf("update request on the bus: %v", rm)
	}
	status := `{"jobId":"j-1","status":"Success","timestamp":1}`
	s.busPublish(subjects.OTACloud, &brokerv1.RoutedMessage{Topic: clouddeploy.StatusTopic("test-core"), Payload: []byte("no")})
	s.busPublish(subjects.OTACloud, &brokerv1.RoutedMessage{Topic: cloudota.StatusTopic("test-core"), Payload: []byte(status)})
	obsIn.expect(t, cloudota.StatusTopic("test-core"), status)
	s.logs.waitFor(t, "message refused", "from="+subjects.OTACloud, "is not this core's update status topic")
	w.in.empty(t)
}

func writeFile(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}
