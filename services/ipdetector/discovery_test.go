package ipdetector_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"math/big"
	"net/http"
	"strings"
	"testing"
	"time"

	certmgrv1 "github.com/evergreen-edge/evergreen/proto/evergreen/certmgr/v1"
	"github.com/evergreen-edge/evergreen/services/ipdetector"
	"github.com/evergreen-edge/evergreen/services/kit/config"
	"github.com/evergreen-edge/evergreen/services/kit/deployment"
	"github.com/evergreen-edge/evergreen/services/kit/groupdef"
)

// selfSigned makes a client certificate no CA of the core knows, as a
// device maker's or AWS IoT's would be, valid from now+from for validity.
func selfSigned(t *testing.T, cn string, from, validity time.Duration) device {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(now.UnixNano()),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    now.Add(from),
		NotAfter:     now.Add(from + validity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyDER, _ := x509.MarshalECPrivateKey(key)
	pair, err := tls.X509KeyPair(certPEM, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}))
	if err != nil {
		t.Fatal(err)
	}
	return device{pair: pair, certPEM: string(certPEM)}
}

// certID is the AWS IoT certificate id: lower-case hex SHA-256 of the DER.
func certID(d device) string {
	sum := sha256.Sum256(d.pair.Certificate[0])
	return hex.EncodeToString(sum[:])
}

type groupDevice struct{ name, certID string }

func groupJSON(groupID string, devices ...groupDevice) []byte {
	var ds []string
	for i, d := range devices {
		ds = append(ds, fmt.Sprintf(`{"Id":"d%d","ThingArn":"%s%s","CertificateArn":"%s%s"}`, i, thingArn, d.name, certArn, d.certID))
	}
	id := ""
	if groupID != "" {
		id = `"GroupId":"` + groupID + `",`
	}
	return []byte(`{` + id + `"Name":"site-1",
 "Core":{"Cores":[{"Id":"core","ThingArn":"` + coreArn + `","CertificateArn":"` + certArn + strings.Repeat("a", 64) + `"}]},
 "Devices":{"Devices":[` + strings.Join(ds, ",") + `]}}`)
}

// The exact bytes of a v1 discovery answer: key spelling and order, no
// whitespace, the group CA as a JSON string. %s is the CA's JSON text.
const goldenDiscovery = `{"GGGroups":[{"GGGroupId":"3a61b1f6-4c93-4b9e-8c2e-6a8bf3c0e9d1","Cores":[{"thingArn":"arn:aws:iot:us-east-1:123456789012:thing/test-core","Connectivity":[` +
	`{"Id":"lan","HostAddress":"gw.test.example","PortNumber":8883,"Metadata":"front door"},` +
	`{"Id":"localhost_127.0.0.1_0","HostAddress":"127.0.0.1","PortNumber":28883,"Metadata":""},` +
	`{"Id":"AUTOIP_192.0.2.10_0","HostAddress":"192.0.2.10","PortNumber":28883,"Metadata":""},` +
	`{"Id":"AUTOIP_2001:db8::10_1","HostAddress":"2001:db8::10","PortNumber":28883,"Metadata":""}` +
	`]}],"CAs":[%s]}]}`

func jsonString(s string) string {
	return `"` + strings.ReplaceAll(s, "\n", `\n`) + `"`
}

// Discovery over real mutual TLS with device certificates from certmgr:
// the v1 JSON byte for byte, 200/400/403/404/405, the raw wire format the
// legacy Python SDK needs, revocation, certificates known only by the
// group's certificate id, and the group in force after a restart.
func TestDiscovery(t *testing.T) {
	s := newSuite(t)
	addrs := &addrList{}
	addrs.set("192.0.2.10", "2001:db8::10")
	s.opts = ipdetector.Options{Addrs: addrs.get}
	s.cfg.Evergreen.Connectivity = []config.ConnectivityEntry{
		{ID: "lan", HostAddress: "gw.test.example", PortNumber: 8883, Metadata: "front door"},
		{ID: "localhost_127.0.0.1_0", HostAddress: "127.0.0.1", PortNumber: mqttPort},
	}
	s.start()
	caPEM, roots := s.groupCA()
	addr := s.discoveryAddr()
	sensor1, sensor2 := s.createDevice("sensor-1"), s.createDevice("sensor-2")
	foreign := selfSigned(t, "foreign-1", -time.Hour, 24*time.Hour)
	stranger := selfSigned(t, "stranger", -time.Hour, 24*time.Hour)

	// No group deployed yet: a registered device finds nothing.
	if r := request(t, addr, "", roots, &sensor1.pair, discoverReq("sensor-1")); r.status != http.StatusNotFound {
		t.Fatalf("before any deployment: %d %s", r.status, r.body)
	}

	s.apply(groupJSON("3a61b1f6-4c93-4b9e-8c2e-6a8bf3c0e9d1",
		groupDevice{"sensor-1", certID(sensor1)}, groupDevice{"sensor-2", certID(sensor2)}, groupDevice{"foreign-1", certID(foreign)}), false)

	r := request(t, addr, "", roots, &sensor1.pair, discoverReq("sensor-1"))
	if r.status != http.StatusOK {
		t.Fatalf("sensor-1 discovering itself: %d %s", r.status, r.body)
	}
	if want := fmt.Sprintf(goldenDiscovery, jsonString(caPEM)); r.body != want {
		t.Fatalf("discovery body\n got %s\nwant %s", r.body, want)
	}
	if !strings.HasPrefix(string(r.raw), "HTTP/1.1 200 OK\r\n") || !strings.Contains(r.header, "\r\ncontent-type: application/json\r\n") {
		t.Fatalf("header on the wire:\n%s", r.header)
	}
	// The CA in the answer verifies the server the device talked to.
	if _, err := r.state.PeerCertificates[0].Verify(x509.VerifyOptions{Roots: roots}); err != nil {
		t.Fatalf("discovery's server certificate does not chain to CAs[0]: %v", err)
	}

	cases := []struct {
		name   string
		client device
		req    string
		status int
	}{
		{"certificate known only by the group's certificate id", foreign, discoverReq("foreign-1"), http.StatusOK},
		{"another device's certificate", sensor2, discoverReq("sensor-1"), http.StatusForbidden},
		{"group-only certificate for another thing", foreign, discoverReq("sensor-2"), http.StatusForbidden},
		{"unknown certificate", stranger, discoverReq("sensor-1"), http.StatusForbidden},
		{"unknown certificate, unknown thing", stranger, discoverReq("ghost"), http.StatusForbidden},
		{"thing not in the group", sensor1, discoverReq("ghost"), http.StatusNotFound},
		{"expired certificate", selfSigned(t, "old", -48*time.Hour, time.Hour), discoverReq("sensor-1"), http.StatusForbidden},
		{"invalid thing name", sensor1, discoverReq("a%20b"), http.StatusBadRequest},
		{"wrong path", sensor1, "GET /greengrass/discover/ HTTP/1.1\r\nHost: x\r\n\r\n", http.StatusNotFound},
		{"POST", sensor1, "POST " + ipdetector.DiscoverPath + "sensor-1 HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", http.StatusMethodNotAllowed},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := request(t, addr, "", roots, &tc.client.pair, tc.req)
			if r.status != tc.status {
				t.Fatalf("status %d, want %d: %s", r.status, tc.status, r.body)
			}
			if tc.status != http.StatusOK && !strings.HasPrefix(r.body, `{"message":`) {
				t.Fatalf("error body %q", r.body)
			}
		})
	}

	// The group-only device gets the same answer as a registered one.
	if r := request(t, addr, "", roots, &foreign.pair, discoverReq("foreign-1")); r.body != fmt.Sprintf(goldenDiscovery, jsonString(caPEM)) {
		t.Fatalf("foreign-1's answer differs: %s", r.body)
	}

	// No client certificate: the handshake itself fails.
	if conn, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}); err == nil {
		conn.SetDeadline(time.Now().Add(waitLimit))
		_, werr := conn.Write([]byte(discoverReq("sensor-1")))
		buf := make([]byte, 64)
		_, rerr := conn.Read(buf)
		conn.Close()
		if werr == nil && rerr == nil {
			t.Fatal("a client without a certificate got an answer")
		}
	}

	// A removed (revoked) device is refused even though the group still
	// names its certificate.
	if _, err := s.certmgr().RemoveDevice(context.Background(), &certmgrv1.RemoveDeviceRequest{Name: "sensor-1"}); err != nil {
		t.Fatal(err)
	}
	if r := request(t, addr, "", roots, &sensor1.pair, discoverReq("sensor-1")); r.status != http.StatusForbidden {
		t.Fatalf("revoked sensor-1: %d %s", r.status, r.body)
	}

	// A reset removes the group: nothing to discover.
	s.apply(nil, true)
	if r := request(t, addr, "", roots, &sensor2.pair, discoverReq("sensor-2")); r.status != http.StatusNotFound {
		t.Fatalf("after reset: %d %s", r.status, r.body)
	}

	// A restarted ipdetector serves the group in force (current.json),
	// here one without a GroupId: the id is derived, and stable.
	g, err := groupdef.Parse(groupJSON("", groupDevice{"sensor-2", certID(sensor2)}))
	if err != nil {
		t.Fatal(err)
	}
	canonical, err := groupdef.Marshal(g)
	if err != nil {
		t.Fatal(err)
	}
	if err := deployment.Commit(s.root, &deployment.Record{DeploymentID: "d-2", DeployedAt: time.Now(), Group: canonical}); err != nil {
		t.Fatal(err)
	}
	s.stopIPDetector()
	s.startIPDetector()
	r = request(t, s.discoveryAddr(), "", roots, &sensor2.pair, discoverReq("sensor-2"))
	want := `{"GGGroups":[{"GGGroupId":"` + ipdetector.GroupID(g) + `","Cores":[{"thingArn":"` + coreArn + `","Connectivity":[`
	if r.status != http.StatusOK || !strings.HasPrefix(r.body, want) {
		t.Fatalf("after restart: %d %s\nwant prefix %s", r.status, r.body, want)
	}

	// certmgr down: the group's certificate ids still admit its devices;
	// a certificate nobody can vouch for now is told to come back later.
	s.stopCertmgr()
	if r := request(t, s.discoveryAddr(), "", roots, &sensor2.pair, discoverReq("sensor-2")); r.status != http.StatusOK {
		t.Fatalf("certmgr down, device named by the group: %d %s", r.status, r.body)
	}
	if r := request(t, s.discoveryAddr(), "", roots, &stranger.pair, discoverReq("sensor-2")); r.status != http.StatusServiceUnavailable {
		t.Fatalf("certmgr down, unknown certificate: %d %s", r.status, r.body)
	}
}

// GroupID is the group's own id when it has one, otherwise a UUID that
// depends only on the core and the group's name.
func TestGroupID(t *testing.T) {
	parse := func(data []byte) *groupdef.Group {
		g, err := groupdef.Parse(data)
		if err != nil {
			t.Fatal(err)
		}
		return g
	}
	if got := ipdetector.GroupID(parse(groupJSON("my-group-id"))); got != "my-group-id" {
		t.Fatalf("GroupID = %q, want the group's GroupId", got)
	}
	a := ipdetector.GroupID(parse(groupJSON("")))
	b := ipdetector.GroupID(parse(groupJSON("", groupDevice{"sensor-9", strings.Repeat("b", 64)})))
	if a != b {
		t.Fatalf("derived id changed with the devices: %s vs %s", a, b)
	}
	if len(a) != 36 || strings.Count(a, "-") != 4 || a[14] != '8' {
		t.Fatalf("derived id %q is not a version-8 UUID", a)
	}
	renamed := parse(groupJSON(""))
	renamed.Name = "site-2"
	if ipdetector.GroupID(renamed) == a {
		t.Fatal("two groups with different names share a derived id")
	}
}

// The discovery server picks up certmgr's new server certificate at the
// next handshake: after a rotation, and after certmgr re-issued it for a
// manual connectivity entry's DNS name, which devices may then dial.
func TestDiscoveryFollowsServerCertificate(t *testing.T) {
	s := newSuite(t)
	s.cfg.Evergreen.Connectivity = []config.ConnectivityEntry{{ID: "dns", HostAddress: "core.site.example", PortNumber: mqttPort}}
	s.start()
	_, roots := s.groupCA()
	dev := s.createDevice("sensor-1")
	s.apply(groupJSON("g", groupDevice{"sensor-1", certID(dev)}), false)

	// certmgr re-issues for the ipdetector's connectivity event; devices
	// dialling the DNS name verify the server.
	checkFor(t, waitLimit, 20*time.Millisecond, func() error {
		conn, err := tls.Dial("tcp", s.discoveryAddr(), &tls.Config{RootCAs: roots, ServerName: "core.site.example", Certificates: []tls.Certificate{dev.pair}})
		if err != nil {
			return err
		}
		return conn.Close()
	})

	serial := func() string {
		r := request(t, s.discoveryAddr(), "", roots, &dev.pair, discoverReq("sensor-1"))
		if r.status != http.StatusOK {
			t.Fatalf("discovery: %d %s", r.status, r.body)
		}
		return r.state.PeerCertificates[0].SerialNumber.Text(16)
	}
	before := serial()
	rotated, err := s.certmgr().RotateServerCertificate(context.Background(), &certmgrv1.RotateServerCertificateRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if rotated.GetInfo().GetSerial() == "" {
		t.Fatal("rotation returned no serial")
	}
	after := serial()
	if after == before {
		t.Fatalf("discovery still serves certificate %s after a rotation", before)
	}
	cur, err := s.certmgr().GetServerCertificate(context.Background(), &certmgrv1.GetServerCertificateRequest{})
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := tls.X509KeyPair([]byte(cur.GetChainPem()), []byte(cur.GetKeyPem()))
	if err != nil {
		t.Fatal(err)
	}
	if got := leaf.Leaf.SerialNumber.Text(16); got != after {
		t.Fatalf("discovery serves %s, certmgr's current certificate is %s", after, got)
	}
}
