package certmgr

import (
	"context"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/evergreen-edge/evergreen/certmgr/pki"
	certmgrv1 "github.com/evergreen-edge/evergreen/proto/evergreen/certmgr/v1"
	"github.com/evergreen-edge/evergreen/services/kit/config"
	"github.com/evergreen-edge/evergreen/services/kit/subjects"
)

// The MQTT server certificate is renewed by the timer at 80% of its life:
// the new one lands on disk, chains to the group CA, and is announced on
// the bus.
func TestServerCertificateRenewedOnSchedule(t *testing.T) {
	s := newSuite(t)
	s.opts = Options{ServerValidity: 3 * time.Second}
	events := s.subscribe(subjects.CertServerRenewed)
	s.start()
	ctx := context.Background()

	first := readChain(t, s.root.ServerCert())
	var ev certmgrv1.ServerCertificateRenewed
	receive(t, events, &ev, 5*time.Second)
	if ev.GetInfo().GetSerial() != pki.Serial(first[0]) {
		t.Fatalf("first event serial %s, on disk %s", ev.GetInfo().GetSerial(), pki.Serial(first[0]))
	}
	cur := must(s.svc.GetServerCertificate(ctx, &certmgrv1.GetServerCertificateRequest{})).get(t)
	life := first[0].NotAfter.Sub(first[0].NotBefore)
	if want, got := first[0].NotBefore.Add(life*8/10), cur.GetRenewAt().AsTime(); got.Sub(want).Abs() > time.Millisecond {
		t.Fatalf("renew_at %v, want 80%% of life %v", got, want)
	}

	receive(t, events, &ev, 10*time.Second)
	renewed := ev.GetInfo().GetSerial()
	if renewed == pki.Serial(first[0]) {
		t.Fatalf("renewal event repeats serial %s", renewed)
	}
	chain := readChain(t, s.root.ServerCert())
	if got := pki.Serial(chain[0]); got != renewed {
		t.Fatalf("on disk serial %s, event serial %s", got, renewed)
	}
	pair, err := tls.LoadX509KeyPair(s.root.ServerCert(), s.root.ServerKey())
	if err != nil {
		t.Fatalf("renewed certificate and key do not pair: %v", err)
	}
	if pki.Fingerprint(pair.Leaf) != pki.Fingerprint(chain[0]) {
		t.Fatal("key file and certificate file are from different issues")
	}
	auth := must(s.svc.GetAuthorities(ctx, &certmgrv1.GetAuthoritiesRequest{})).get(t)
	if len(chain) != 2 || pki.Fingerprint(chain[1]) != auth.GetGroupCa().GetSha256Fingerprint() {
		t.Fatalf("chain is not leaf + group CA: %d certificates", len(chain))
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM([]byte(auth.GetGroupCaPem()))
	if _, err := chain[0].Verify(x509.VerifyOptions{Roots: roots, DNSName: "localhost", KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
		t.Fatalf("renewed certificate does not verify against the group CA: %v", err)
	}
	if m := mode(t, s.root.ServerKey()); m != 0o600 {
		t.Fatalf("server key mode %v", m)
	}
	if m := mode(t, s.root.ServerCert()); m != 0o644 {
		t.Fatalf("server cert mode %v", m)
	}

	// It keeps going: a second renewal follows the first.
	receive(t, events, &ev, 10*time.Second)
	if ev.GetInfo().GetSerial() == renewed {
		t.Fatal("second renewal repeats the serial")
	}
}

// The server certificate names every address of the host, localhost,
// 127.0.0.1 and the configured host names.
func TestServerCertificateNames(t *testing.T) {
	s := newSuite(t)
	s.cfg = config.Default()
	s.cfg.Evergreen.Certmgr.HostNames = []string{"core.example.com", "192.0.2.10"}
	s.start()
	sc := must(s.dial().GetServerCertificate(context.Background(), &certmgrv1.GetServerCertificateRequest{})).get(t)

	for _, n := range []string{"core.example.com", "localhost"} {
		if !slices.Contains(sc.GetDnsNames(), n) {
			t.Errorf("dns_names %v lack %s", sc.GetDnsNames(), n)
		}
	}
	want := []string{"127.0.0.1", "192.0.2.10"}
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok {
			want = append(want, netip.MustParseAddr(n.IP.String()).WithZone("").String())
		}
	}
	for _, ip := range want {
		if !slices.Contains(sc.GetIpAddresses(), ip) {
			t.Errorf("ip_addresses %v lack %s", sc.GetIpAddresses(), ip)
		}
	}
	leaf := readChain(t, s.root.ServerCert())[0]
	if !slices.Equal(leaf.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}) {
		t.Errorf("ext key usage %v, want serverAuth", leaf.ExtKeyUsage)
	}
}

// A server certificate whose names no longer match the configuration is
// replaced at start; one that still matches is kept.
func TestServerCertificateReissuedWhenNamesChange(t *testing.T) {
	s := newSuite(t)
	s.cfg = config.Default()
	s.start()
	first := pki.Serial(readChain(t, s.root.ServerCert())[0])
	s.stop()

	s.start()
	if got := pki.Serial(readChain(t, s.root.ServerCert())[0]); got != first {
		t.Fatalf("unchanged names: certificate reissued (%s -> %s)", first, got)
	}
	s.stop()

	s.cfg.Evergreen.Certmgr.HostNames = []string{"localhost", "gateway.lan"}
	events := s.subscribe(subjects.CertServerRenewed)
	s.start()
	leaf := readChain(t, s.root.ServerCert())[0]
	if pki.Serial(leaf) == first {
		t.Fatal("host names changed but the certificate was kept")
	}
	if !slices.Contains(leaf.DNSNames, "gateway.lan") {
		t.Fatalf("new certificate names %v lack gateway.lan", leaf.DNSNames)
	}
	var ev certmgrv1.ServerCertificateRenewed
	receive(t, events, &ev, 5*time.Second)
	if ev.GetInfo().GetSerial() != pki.Serial(leaf) {
		t.Fatalf("event serial %s, on disk %s", ev.GetInfo().GetSerial(), pki.Serial(leaf))
	}
}

// RotateServerCertificate issues at once and the old key is not reused.
func TestRotateServerCertificate(t *testing.T) {
	s := newSuite(t)
	s.start()
	c := s.dial()
	ctx := context.Background()
	before := must(c.GetServerCertificate(ctx, &certmgrv1.GetServerCertificateRequest{})).get(t)
	after := must(c.RotateServerCertificate(ctx, &certmgrv1.RotateServerCertificateRequest{})).get(t)
	if after.GetInfo().GetSerial() == before.GetInfo().GetSerial() {
		t.Fatal("rotation kept the serial")
	}
	if after.GetKeyPem() == before.GetKeyPem() {
		t.Fatal("rotation kept the generated key")
	}
	if got := pki.Serial(readChain(t, s.root.ServerCert())[0]); got != after.GetInfo().GetSerial() {
		t.Fatalf("disk has %s, rotation returned %s", got, after.GetInfo().GetSerial())
	}
}

// evergreen.certmgr.keyAlgorithm rsa-2048 makes RSA CAs, core and server
// certificates; device keys stay ECDSA P-256. A TLS handshake with the RSA
// server certificate works.
func TestRSAKeyAlgorithm(t *testing.T) {
	s := newSuite(t)
	s.cfg = config.Default()
	s.cfg.Evergreen.Certmgr.KeyAlgorithm = "rsa-2048"
	s.start()
	c := s.dial()
	ctx := context.Background()
	rsa2048 := certmgrv1.KeyAlgorithm_KEY_ALGORITHM_RSA_2048

	auth := must(c.GetAuthorities(ctx, &certmgrv1.GetAuthoritiesRequest{})).get(t)
	for what, info := range map[string]*certmgrv1.CertificateInfo{"group CA": auth.GetGroupCa(), "device CA": auth.GetDeviceCa(), "core": auth.GetCore()} {
		if info.GetKeyAlgorithm() != rsa2048 {
			t.Errorf("%s key algorithm %v", what, info.GetKeyAlgorithm())
		}
	}
	sc := must(c.GetServerCertificate(ctx, &certmgrv1.GetServerCertificateRequest{})).get(t)
	if sc.GetInfo().GetKeyAlgorithm() != rsa2048 {
		t.Errorf("server key algorithm %v", sc.GetInfo().GetKeyAlgorithm())
	}
	key := must(pki.ParseKey(must(os.ReadFile(s.root.GroupCAKey())).get(t))).get(t)
	if k, ok := key.(*rsa.PrivateKey); !ok || k.N.BitLen() != 2048 {
		t.Fatalf("group CA key is %T", key)
	}
	dev := must(c.CreateDevice(ctx, &certmgrv1.CreateDeviceRequest{Name: "rsa-site-sensor"})).get(t)
	if dev.GetDevice().GetCertificate().GetKeyAlgorithm() != certmgrv1.KeyAlgorithm_KEY_ALGORITHM_ECDSA_P256 {
		t.Errorf("device key algorithm %v", dev.GetDevice().GetCertificate().GetKeyAlgorithm())
	}
	if err := handshake(t, sc, dev, auth); err != nil {
		t.Fatalf("TLS with the RSA server certificate: %v", err)
	}
}

// handshake runs a mutual-TLS exchange: a server with the MQTT server
// certificate that trusts the device CA and asks VerifyDevice, as the
// broker does, and a client with the device's key and certificate that
// trusts ca.pem. It returns the client's error.
func handshake(t *testing.T, sc *certmgrv1.ServerCertificate, dev *certmgrv1.CreateDeviceResponse, auth *certmgrv1.GetAuthoritiesResponse) error {
	t.Helper()
	serverPair := must(tls.X509KeyPair([]byte(sc.GetChainPem()), []byte(sc.GetKeyPem()))).get(t)
	devicePool := x509.NewCertPool()
	devicePool.AppendCertsFromPEM([]byte(auth.GetDeviceCaPem()))
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{
		Certificates: []tls.Certificate{serverPair},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    devicePool,
		MinVersion:   tls.VersionTLS12,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(10 * time.Second))
		buf := make([]byte, 4)
		if _, err := conn.Read(buf); err == nil {
			conn.Write(buf)
		}
	}()
	clientPair, err := tls.X509KeyPair([]byte(dev.GetDevice().GetCertificatePem()), []byte(dev.GetKeyPem()))
	if err != nil {
		t.Fatal(err)
	}
	caPool := x509.NewCertPool()
	caPool.AppendCertsFromPEM([]byte(dev.GetServerCaPem()))
	// No ServerName: the client checks the 127.0.0.1 address SAN.
	conn, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{Certificates: []tls.Certificate{clientPair}, RootCAs: caPool, MinVersion: tls.VersionTLS12})
	if err != nil {
		return err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := conn.Write([]byte("ping")); err != nil {
		return err
	}
	buf := make([]byte, 4)
	if _, err := conn.Read(buf); err != nil {
		return fmt.Errorf("server closed the connection: %w", err)
	}
	return nil
}
