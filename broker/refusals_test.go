package broker

import (
	"bytes"
	"context"
	"crypto/x509"
	"strings"
	"testing"
	"time"

	"github.com/evergreen-edge/evergreen/certmgr/pki"
	certmgrv1 "github.com/evergreen-edge/evergreen/proto/evergreen/certmgr/v1"
)

// CONNACK codes of a refusal.
const (
	v3NotAuthorized = 5
	v5NotAuthorized = 0x87
)

// foreignCA is a CA certmgr knows nothing of.
func foreignCA(t *testing.T) *pki.KeyPair {
	t.Helper()
	key, err := pki.GenerateKey(pki.ECDSAP256)
	if err != nil {
		t.Fatal(err)
	}
	c, err := pki.Issue(pki.Template{CommonName: "Foreign CA", CA: true, Validity: 24 * time.Hour}, key, nil, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return &pki.KeyPair{Cert: c, Key: key}
}

// deviceCA is certmgr's device CA, read from its files in the test root.
func (s *suite) deviceCA() *pki.KeyPair {
	s.t.Helper()
	kp, err := pki.ReadPair(s.root.DeviceCACert(), s.root.DeviceCAKey())
	if err != nil {
		s.t.Fatal(err)
	}
	return kp
}

// issue makes a client certificate for cn signed by ca, issued at issued
// and valid for validity.
func (s *suite) issue(ca *pki.KeyPair, cn string, issued time.Time, validity time.Duration) *device {
	s.t.Helper()
	key, err := pki.GenerateKey(pki.ECDSAP256)
	if err != nil {
		s.t.Fatal(err)
	}
	c, err := pki.Issue(pki.Template{CommonName: cn, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, Validity: validity}, key, ca, issued)
	if err != nil {
		s.t.Fatal(err)
	}
	kp, err := pki.EncodeKey(key)
	if err != nil {
		s.t.Fatal(err)
	}
	return s.identity(cn, pki.EncodeCert(c), kp)
}

func TestRefusedWrongCA(t *testing.T) {
	s := newSuite(t)
	s.createDevice("sensor")
	impostor := s.issue(foreignCA(t), "sensor", time.Now(), time.Hour)
	_, rc, err := s.connectV3(impostor, "sensor")
	if err == nil || rc != v3NotAuthorized {
		t.Fatalf("connect with a foreign CA's certificate: return code %d, err %v; want %d", rc, err, v3NotAuthorized)
	}
	s.logs.waitFor(t, "connection refused", `client_id=sensor`, "unknown certificate", "not signed by the device CA", `Foreign CA`)
}

func TestRefusedExpiredCertificate(t *testing.T) {
	s := newSuite(t)
	old := s.issue(s.deviceCA(), "old", time.Now().Add(-48*time.Hour), 24*time.Hour)
	_, ack, err := s.connectV5(old, "old", nil)
	if err == nil || ack == nil || ack.ReasonCode != v5NotAuthorized {
		t.Fatalf("connect with an expired certificate: CONNACK %+v, err %v; want reason 0x87", ack, err)
	}
	s.logs.waitFor(t, "connection refused", "client_id=old", "reason=\"expired (not after")
}

// An unregistered certificate of the right CA, through mosquitto_pub.
func TestRefusedUnknownDeviceMosquittoPub(t *testing.T) {
	s := newSuite(t)
	stranger := s.issue(s.deviceCA(), "stranger", time.Now(), time.Hour)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out bytes.Buffer
	cmd := s.mosquitto(ctx, "mosquitto_pub", stranger, "stranger", "-V", "mqttv311", "-t", "hello", "-m", "x")
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err == nil {
		t.Fatalf("mosquitto_pub succeeded for an unknown device: %s", out.String())
	}
	if !strings.Contains(out.String(), "not authorised") {
		t.Fatalf("mosquitto_pub said %q, want a not-authorised refusal", out.String())
	}
	s.logs.waitFor(t, "connection refused", "client_id=stranger", "unknown certificate (signed by the device CA but not registered)")
}

func TestRefusedClientIDMismatch(t *testing.T) {
	s := newSuite(t)
	sensor := s.createDevice("sensor")
	s.createDevice("actuator")
	_, ack, err := s.connectV5(sensor, "actuator", nil)
	if err == nil || ack == nil || ack.ReasonCode != v5NotAuthorized {
		t.Fatalf("MQTT 5 connect as another device: CONNACK %+v, err %v; want reason 0x87", ack, err)
	}
	_, rc, err := s.connectV3(sensor, "actuator")
	if err == nil || rc != v3NotAuthorized {
		t.Fatalf("MQTT 3.1.1 connect as another device: return code %d, err %v; want %d", rc, err, v3NotAuthorized)
	}
	s.logs.waitFor(t, "connection refused", `client id mismatch (client id \"actuator\", certificate of device \"sensor\")`)
}

func TestRefusedReservedClientID(t *testing.T) {
	s := newSuite(t)
	d := s.createDevice("inline") // a legal thing name, but mochi's own client id
	_, rc, err := s.connectV3(d, "inline")
	if err == nil || rc != v3NotAuthorized {
		t.Fatalf("connect as %q: return code %d, err %v; want %d", "inline", rc, err, v3NotAuthorized)
	}
	s.logs.waitFor(t, "connection refused", "client id is reserved")
	// The broker's own delivery path still works.
	sensor, watcher := s.createDevice("sensor"), s.createDevice("watcher")
	s.deploy(group([]*device{sensor, watcher}, nil, sub{thingARN("sensor"), "x", thingARN("watcher")}))
	w := s.mustV3(watcher)
	w.subscribe(t, 0, "x")
	s.mustV3(sensor).publish(t, "x", 0, "still routed")
	w.in.expect(t, "x", "still routed")
}

func TestRefusedNoClientCertificate(t *testing.T) {
	s := newSuite(t)
	if _, _, err := s.connectV3(nil, "anonymous"); err == nil {
		t.Fatal("connected without a client certificate")
	}
	s.logs.waitFor(t, "connection refused", "reason=\"no client certificate\"")
}

// Removing a device disconnects it at once, drops its session, and its
// certificate stays refused even though the group names it.
func TestRemovedDeviceIsDisconnected(t *testing.T) {
	s := newSuite(t)
	three, five := s.createDevice("three"), s.createDevice("five")
	s.deploy(group([]*device{three, five}, nil))
	c3 := s.mustV3(three)
	c3.subscribe(t, 1, "x")
	c5 := s.mustV5(five)

	for _, name := range []string{"three", "five"} {
		if _, err := s.cm.RemoveDevice(context.Background(), &certmgrv1.RemoveDeviceRequest{Name: name}); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case <-c3.lost:
	case <-time.After(within):
		t.Fatal("the MQTT 3.1.1 client of a removed device is still connected")
	}
	select {
	case d := <-c5.disconnected:
		if d.ReasonCode != v5NotAuthorized {
			t.Fatalf("DISCONNECT reason 0x%x, want 0x87", d.ReasonCode)
		}
	case <-time.After(within):
		t.Fatal("the MQTT 5 client of a removed device got no DISCONNECT")
	}
	s.logs.waitFor(t, "disconnecting device", "device=three", "removed from certmgr")
	_, rc, err := s.connectV3(three, "three")
	if err == nil || rc != v3NotAuthorized {
		t.Fatalf("reconnect of a removed device: return code %d, err %v", rc, err)
	}
	s.logs.waitFor(t, "connection refused", "client_id=three", "reason=revoked")
	if n := len(s.clients()); n != 0 {
		t.Fatalf("%d clients still listed", n)
	}
}

// A device of the group is admitted by its certificate id alone (a
// certificate AWS IoT issued, unknown to certmgr), and disconnected once a
// deployment drops it.
func TestGroupDeviceAdmittedThenDroppedByDeployment(t *testing.T) {
	s := newSuite(t)
	cloudMade := s.issue(foreignCA(t), "field-unit", time.Now(), time.Hour)
	watcher := s.createDevice("watcher")
	s.deploy(group([]*device{cloudMade, watcher}, nil, sub{thingARN("field-unit"), "report", thingARN("watcher")}))
	w := s.mustV5(watcher)
	w.subscribe(t, 0, "report")
	f := s.mustV3(cloudMade)
	s.logs.waitFor(t, "device connected", "device=field-unit", "admitted_by=group")
	f.publish(t, "report", 0, "hello")
	w.in.expect(t, "report", "hello")

	s.deploy(group([]*device{watcher}, nil))
	select {
	case <-f.lost:
	case <-time.After(within):
		t.Fatal("a device dropped from the group and unknown to certmgr stayed connected")
	}
	s.logs.waitFor(t, "disconnecting device", "device=field-unit", "no longer admitted after the deployment")
	select {
	case <-w.c.Done():
		t.Fatal("the deployment disconnected a registered device")
	default:
	}
	if _, rc, err := s.connectV3(cloudMade, "field-unit"); err == nil || rc != v3NotAuthorized {
		t.Fatalf("reconnect after the group dropped it: return code %d, err %v", rc, err)
	}
}

func (s *suite) clients() []string {
	s.t.Helper()
	resp, err := s.api.ListClients(context.Background(), nil)
	if err != nil {
		s.t.Fatal(err)
	}
	var out []string
	for _, c := range resp.GetClients() {
		out = append(out, c.GetClientId())
	}
	return out
}
