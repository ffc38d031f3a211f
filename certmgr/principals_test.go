package certmgr

import (
	"bytes"
	"context"
	"crypto/x509"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/evergreen-edge/evergreen/certmgr/pki"
	certmgrv1 "github.com/evergreen-edge/evergreen/proto/evergreen/certmgr/v1"
	"github.com/evergreen-edge/evergreen/services/kit/config"
)

// The v1 crypto principals are honoured: the IoTCertificate becomes the
// core certificate (not one of ours), and the customer's
// MQTTServerCertificate key is the key of every server certificate, across
// rotations and restarts.
func TestConfigPrincipalsReused(t *testing.T) {
	s := newSuite(t)
	dir := t.TempDir()
	aws := foreignCA(t)
	coreKey, err := pki.GenerateKey(pki.ECDSAP256)
	if err != nil {
		t.Fatal(err)
	}
	coreCert, err := pki.Issue(pki.Template{CommonName: "factory-core", ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, Validity: 24 * time.Hour},
		coreKey, aws, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	coreKeyPEM := must(pki.EncodeKey(coreKey)).get(t)
	serverKey := must(pki.GenerateKey(pki.ECDSAP256)).get(t)
	serverKeyPEM := must(pki.EncodeKey(serverKey)).get(t)

	s.cfg = config.Default()
	s.cfg.CoreThing.ThingArn = "arn:aws:iot:eu-west-1:123456789012:thing/factory-core"
	s.cfg.Crypto = &config.Crypto{
		CaPath: fileURI(writeFile(t, dir, "root.ca.pem", pki.EncodeCert(aws.Cert))),
		Principals: config.Principals{
			IoTCertificate: &config.KeyCert{
				CertificatePath: fileURI(writeFile(t, dir, "core.cert.pem", pki.EncodeCert(coreCert))),
				PrivateKeyPath:  fileURI(writeFile(t, dir, "core.private.key", coreKeyPEM)),
			},
			MQTTServerCertificate: &config.KeyOnly{PrivateKeyPath: fileURI(writeFile(t, dir, "server.private.key", serverKeyPEM))},
		},
	}
	if err := s.cfg.Validate(); err != nil {
		t.Fatalf("test config: %v", err)
	}
	s.start()
	c := s.dial()
	ctx := context.Background()

	auth := must(c.GetAuthorities(ctx, &certmgrv1.GetAuthoritiesRequest{})).get(t)
	if auth.GetCore().GetSha256Fingerprint() != pki.Fingerprint(coreCert) {
		t.Fatalf("core certificate is %s, not the IoTCertificate principal", auth.GetCore().GetSubject())
	}
	if got := must(os.ReadFile(s.root.CoreCert())).get(t); !bytes.Equal(got, pki.EncodeCert(coreCert)) {
		t.Fatal("DIR/certs/core.cert.pem is not the principal's certificate")
	}
	if _, err := pki.ReadPair(s.root.CoreCert(), s.root.CoreKey()); err != nil {
		t.Fatalf("core pair on disk: %v", err)
	}

	first := must(c.GetServerCertificate(ctx, &certmgrv1.GetServerCertificateRequest{})).get(t)
	rotated := must(c.RotateServerCertificate(ctx, &certmgrv1.RotateServerCertificateRequest{})).get(t)
	if rotated.GetInfo().GetSerial() == first.GetInfo().GetSerial() {
		t.Fatal("rotation kept the serial")
	}
	for _, sc := range []*certmgrv1.ServerCertificate{first, rotated} {
		leaf := must(pki.ParseCerts([]byte(sc.GetChainPem()))).get(t)[0]
		if !pki.SamePublicKey(leaf.PublicKey, serverKey.Public()) {
			t.Fatalf("server certificate %s does not use the MQTTServerCertificate key", sc.GetInfo().GetSerial())
		}
	}
	s.stop()

	s.start()
	c = s.dial()
	again := must(c.GetServerCertificate(ctx, &certmgrv1.GetServerCertificateRequest{})).get(t)
	if again.GetInfo().GetSerial() != rotated.GetInfo().GetSerial() {
		t.Fatal("restart reissued a current server certificate made with the customer key")
	}
	if a := must(c.GetAuthorities(ctx, &certmgrv1.GetAuthoritiesRequest{})).get(t); a.GetCore().GetSha256Fingerprint() != pki.Fingerprint(coreCert) {
		t.Fatal("restart replaced the principal core certificate")
	}
}

// A principal whose key does not belong to its certificate stops the
// start and names the config key.
func TestMismatchedPrincipalStopsStart(t *testing.T) {
	s := newSuite(t)
	dir := t.TempDir()
	certPEM, _ := foreignCert(t, foreignCA(t), "core", 0, time.Hour)
	_, otherKey := foreignCert(t, foreignCA(t), "core", 0, time.Hour)
	s.cfg = config.Default()
	s.cfg.Crypto = &config.Crypto{
		CaPath: fileURI(writeFile(t, dir, "root.ca.pem", certPEM)),
		Principals: config.Principals{IoTCertificate: &config.KeyCert{
			CertificatePath: fileURI(writeFile(t, dir, "c.pem", certPEM)),
			PrivateKeyPath:  fileURI(writeFile(t, dir, "k.pem", otherKey)),
		}},
	}
	err := s.tryStart()
	if err == nil || !strings.Contains(err.Error(), "crypto.principals.IoTCertificate") {
		t.Fatalf("start with a mismatched principal: %v", err)
	}
}
