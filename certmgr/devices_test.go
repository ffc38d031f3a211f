package certmgr

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/evergreen-edge/evergreen/certmgr/pki"
	certmgrv1 "github.com/evergreen-edge/evergreen/proto/evergreen/certmgr/v1"
	"github.com/evergreen-edge/evergreen/services/kit/config"
	"github.com/evergreen-edge/evergreen/services/kit/errdefs"
	"github.com/evergreen-edge/evergreen/services/kit/subjects"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func wantCode(t *testing.T, what string, err error, code codes.Code, mention string) {
	t.Helper()
	if got := status.Code(err); got != code {
		t.Errorf("%s: code %v (%v), want %v", what, got, err, code)
		return
	}
	if mention != "" && !strings.Contains(status.Convert(err).Message(), mention) {
		t.Errorf("%s: message %q does not mention %q", what, status.Convert(err).Message(), mention)
	}
}

// A device made by CreateDevice connects over mutual TLS to a server using
// the MQTT server certificate; a certificate from an unrelated CA is
// refused by the handshake and by VerifyDevice.
func TestDeviceMutualTLS(t *testing.T) {
	s := newSuite(t)
	s.start()
	ctx := context.Background()
	dev := must(s.svc.CreateDevice(ctx, &certmgrv1.CreateDeviceRequest{Name: "thermostat-1"})).get(t)
	sc := must(s.svc.GetServerCertificate(ctx, &certmgrv1.GetServerCertificateRequest{})).get(t)
	auth := must(s.svc.GetAuthorities(ctx, &certmgrv1.GetAuthoritiesRequest{})).get(t)

	if err := handshake(t, sc, dev, auth); err != nil {
		t.Fatalf("device handshake: %v", err)
	}
	v := must(s.svc.VerifyDevice(ctx, &certmgrv1.VerifyDeviceRequest{CertificatePem: dev.GetDevice().GetCertificatePem()})).get(t)
	if !v.GetAllowed() || v.GetDeviceName() != "thermostat-1" {
		t.Fatalf("VerifyDevice of a created device: %+v", v)
	}
	leaf := must(pki.ParseCerts([]byte(dev.GetDevice().GetCertificatePem()))).get(t)[0]
	if leaf.Subject.CommonName != "thermostat-1" || len(leaf.ExtKeyUsage) != 1 || leaf.ExtKeyUsage[0] != x509.ExtKeyUsageClientAuth {
		t.Fatalf("device certificate CN %q, ext key usage %v", leaf.Subject.CommonName, leaf.ExtKeyUsage)
	}

	certPEM, keyPEM := foreignCert(t, foreignCA(t), "thermostat-1", 0, time.Hour)
	rogue := &certmgrv1.CreateDeviceResponse{
		Device:      &certmgrv1.Device{CertificatePem: string(certPEM)},
		KeyPem:      string(keyPEM),
		ServerCaPem: dev.GetServerCaPem(),
	}
	if err := handshake(t, sc, rogue, auth); err == nil {
		t.Fatal("handshake with a certificate from an unrelated CA succeeded")
	}
	v = must(s.svc.VerifyDevice(ctx, &certmgrv1.VerifyDeviceRequest{CertificatePem: string(certPEM)})).get(t)
	if v.GetAllowed() || v.GetReason() != ReasonUnknown {
		t.Fatalf("VerifyDevice of an unrelated certificate: %+v", v)
	}
}

// The device API through the daemon's real socket, with its status codes
// and the DeviceRemoved event.
func TestDeviceAPIOverSocket(t *testing.T) {
	s := newSuite(t)
	s.start()
	c := s.dial()
	ctx := context.Background()

	for _, bad := range []string{"", "has space", "slash/name", "ünicode", strings.Repeat("a", 129)} {
		_, err := c.CreateDevice(ctx, &certmgrv1.CreateDeviceRequest{Name: bad})
		wantCode(t, "CreateDevice("+bad+")", err, codes.InvalidArgument, "name")
	}
	longest := strings.Repeat("Z", 128)
	must(c.CreateDevice(ctx, &certmgrv1.CreateDeviceRequest{Name: longest})).get(t)
	a := must(c.CreateDevice(ctx, &certmgrv1.CreateDeviceRequest{Name: "dev:a_1-x"})).get(t)
	if !a.GetDevice().GetIssuedHere() || a.GetKeyPem() == "" || a.GetServerCaPem() == "" {
		t.Fatalf("CreateDevice response incomplete: %+v", a)
	}
	_, err := c.CreateDevice(ctx, &certmgrv1.CreateDeviceRequest{Name: "dev:a_1-x"})
	wantCode(t, "CreateDevice clash", err, codes.AlreadyExists, "dev:a_1-x")

	ca := foreignCA(t)
	bPEM, _ := foreignCert(t, ca, "b", 0, time.Hour)
	b := must(c.RegisterDevice(ctx, &certmgrv1.RegisterDeviceRequest{Name: "dev-b", CertificatePem: string(bPEM)})).get(t)
	if b.GetIssuedHere() {
		t.Fatal("registered device marked issued here")
	}
	_, err = c.RegisterDevice(ctx, &certmgrv1.RegisterDeviceRequest{Name: "dev-c", CertificatePem: string(bPEM)})
	wantCode(t, "RegisterDevice same certificate", err, codes.AlreadyExists, "dev-b")
	other, _ := foreignCert(t, ca, "b2", 0, time.Hour)
	_, err = c.RegisterDevice(ctx, &certmgrv1.RegisterDeviceRequest{Name: "dev-b", CertificatePem: string(other)})
	wantCode(t, "RegisterDevice name taken", err, codes.AlreadyExists, "dev-b")
	expired, _ := foreignCert(t, ca, "old", -2*time.Hour, time.Hour)
	_, err = c.RegisterDevice(ctx, &certmgrv1.RegisterDeviceRequest{Name: "dev-old", CertificatePem: string(expired)})
	wantCode(t, "RegisterDevice expired", err, codes.InvalidArgument, "expired")
	_, err = c.RegisterDevice(ctx, &certmgrv1.RegisterDeviceRequest{Name: "dev-two", CertificatePem: string(other) + string(bPEM)})
	wantCode(t, "RegisterDevice two certificates", err, codes.InvalidArgument, "certificate_pem")
	_, err = c.RegisterDevice(ctx, &certmgrv1.RegisterDeviceRequest{Name: "dev-junk", CertificatePem: "not a certificate"})
	wantCode(t, "RegisterDevice junk", err, codes.InvalidArgument, "certificate_pem")
	_, err = c.RegisterDevice(ctx, &certmgrv1.RegisterDeviceRequest{Name: "dev-key", CertificatePem: string(other) + a.GetKeyPem()})
	wantCode(t, "RegisterDevice with a key", err, codes.InvalidArgument, "PRIVATE KEY")
	_, err = c.RegisterDevice(ctx, &certmgrv1.RegisterDeviceRequest{Name: "bad name", CertificatePem: string(other)})
	wantCode(t, "RegisterDevice bad name", err, codes.InvalidArgument, "name")

	list := must(c.ListDevices(ctx, &certmgrv1.ListDevicesRequest{})).get(t)
	var names []string
	for _, d := range list.GetDevices() {
		names = append(names, d.GetName())
	}
	if want := []string{longest, "dev-b", "dev:a_1-x"}; strings.Join(names, ",") != strings.Join(want, ",") {
		t.Fatalf("ListDevices %v, want %v", names, want)
	}
	got := must(c.GetDevice(ctx, &certmgrv1.GetDeviceRequest{Name: "dev-b"})).get(t)
	if got.GetCertificatePem() != string(bPEM) || got.GetCertificate().GetSha256Fingerprint() == "" {
		t.Fatalf("GetDevice: %+v", got)
	}
	_, err = c.GetDevice(ctx, &certmgrv1.GetDeviceRequest{Name: "nobody"})
	wantCode(t, "GetDevice unknown", err, codes.NotFound, "nobody")
	_, err = c.GetDevice(ctx, &certmgrv1.GetDeviceRequest{})
	wantCode(t, "GetDevice empty", err, codes.InvalidArgument, "name")
	_, err = c.RemoveDevice(ctx, &certmgrv1.RemoveDeviceRequest{Name: "nobody"})
	wantCode(t, "RemoveDevice unknown", err, codes.NotFound, "nobody")
	_, err = c.RemoveDevice(ctx, &certmgrv1.RemoveDeviceRequest{})
	wantCode(t, "RemoveDevice empty", err, codes.InvalidArgument, "name")
	_, err = c.VerifyDevice(ctx, &certmgrv1.VerifyDeviceRequest{CertificatePem: "junk"})
	wantCode(t, "VerifyDevice junk", err, codes.InvalidArgument, "certificate_pem")

	// A certificate registered as-is is allowed though no CA of ours signed it.
	v := must(c.VerifyDevice(ctx, &certmgrv1.VerifyDeviceRequest{CertificatePem: string(bPEM)})).get(t)
	if !v.GetAllowed() || v.GetDeviceName() != "dev-b" {
		t.Fatalf("VerifyDevice registered: %+v", v)
	}

	removed := s.subscribe(subjects.CertDeviceRemoved)
	must(c.RemoveDevice(ctx, &certmgrv1.RemoveDeviceRequest{Name: "dev:a_1-x"})).get(t)
	var ev certmgrv1.DeviceRemoved
	receive(t, removed, &ev, 5*time.Second)
	if ev.GetName() != "dev:a_1-x" || ev.GetSerial() != a.GetDevice().GetCertificate().GetSerial() {
		t.Fatalf("DeviceRemoved %+v, want dev:a_1-x serial %s", &ev, a.GetDevice().GetCertificate().GetSerial())
	}
	v = must(c.VerifyDevice(ctx, &certmgrv1.VerifyDeviceRequest{CertificatePem: a.GetDevice().GetCertificatePem()})).get(t)
	if v.GetAllowed() || v.GetReason() != ReasonRevoked {
		t.Fatalf("VerifyDevice of a removed device: %+v", v)
	}
	_, err = c.GetDevice(ctx, &certmgrv1.GetDeviceRequest{Name: "dev:a_1-x"})
	wantCode(t, "GetDevice removed", err, codes.NotFound, "")
	_, err = c.RegisterDevice(ctx, &certmgrv1.RegisterDeviceRequest{Name: "dev-again", CertificatePem: a.GetDevice().GetCertificatePem()})
	wantCode(t, "RegisterDevice revoked certificate", err, codes.InvalidArgument, "revoked")
	// The name itself is free again.
	must(c.CreateDevice(ctx, &certmgrv1.CreateDeviceRequest{Name: "dev:a_1-x"})).get(t)
}

// VerifyDevice refuses a registered certificate outside its validity.
func TestVerifyDeviceValidity(t *testing.T) {
	s := newSuite(t)
	var skew atomic.Int64
	s.opts.Now = func() time.Time { return time.Now().Add(time.Duration(skew.Load())) }
	s.start()
	ctx := context.Background()
	ca := foreignCA(t)
	future, _ := foreignCert(t, ca, "later", time.Hour, time.Hour)
	must(s.svc.RegisterDevice(ctx, &certmgrv1.RegisterDeviceRequest{Name: "later", CertificatePem: string(future)})).get(t)
	v := must(s.svc.VerifyDevice(ctx, &certmgrv1.VerifyDeviceRequest{CertificatePem: string(future)})).get(t)
	if v.GetAllowed() || v.GetReason() != ReasonNotYetValid {
		t.Fatalf("not yet valid certificate: %+v", v)
	}
	short, _ := foreignCert(t, ca, "short", 0, time.Hour)
	must(s.svc.RegisterDevice(ctx, &certmgrv1.RegisterDeviceRequest{Name: "short", CertificatePem: string(short)})).get(t)
	skew.Store(int64(3 * time.Hour))
	v = must(s.svc.VerifyDevice(ctx, &certmgrv1.VerifyDeviceRequest{CertificatePem: string(short)})).get(t)
	if v.GetAllowed() || v.GetReason() != ReasonExpired {
		t.Fatalf("expired certificate: %+v", v)
	}
}

// A restart on the same root keeps the CAs, the core and server
// certificates, the devices and the revocations.
func TestRestartKeepsState(t *testing.T) {
	s := newSuite(t)
	s.start()
	c := s.dial()
	ctx := context.Background()
	keep := must(c.CreateDevice(ctx, &certmgrv1.CreateDeviceRequest{Name: "keep"})).get(t)
	gone := must(c.CreateDevice(ctx, &certmgrv1.CreateDeviceRequest{Name: "gone"})).get(t)
	must(c.RemoveDevice(ctx, &certmgrv1.RemoveDeviceRequest{Name: "gone"})).get(t)
	before := must(c.GetAuthorities(ctx, &certmgrv1.GetAuthoritiesRequest{})).get(t)
	server := must(c.GetServerCertificate(ctx, &certmgrv1.GetServerCertificateRequest{})).get(t)
	for path, want := range map[string]os.FileMode{
		s.root.GroupCAKey(): 0o600, s.root.DeviceCAKey(): 0o600, s.root.CoreKey(): 0o600,
		s.root.GroupCACert(): 0o644, s.root.DeviceCACert(): 0o644, s.root.CoreCert(): 0o644,
	} {
		if m := mode(t, path); m != want {
			t.Errorf("%s mode %v, want %v", filepath.Base(path), m, want)
		}
	}
	s.stop()

	s.start()
	c = s.dial()
	after := must(c.GetAuthorities(ctx, &certmgrv1.GetAuthoritiesRequest{})).get(t)
	for what, pair := range map[string][2]*certmgrv1.CertificateInfo{
		"group CA":  {before.GetGroupCa(), after.GetGroupCa()},
		"device CA": {before.GetDeviceCa(), after.GetDeviceCa()},
		"core":      {before.GetCore(), after.GetCore()},
	} {
		if pair[0].GetSha256Fingerprint() != pair[1].GetSha256Fingerprint() {
			t.Errorf("%s changed across restart", what)
		}
	}
	if got := must(c.GetServerCertificate(ctx, &certmgrv1.GetServerCertificateRequest{})).get(t); got.GetInfo().GetSerial() != server.GetInfo().GetSerial() {
		t.Error("a fresh server certificate was reissued across restart")
	}
	list := must(c.ListDevices(ctx, &certmgrv1.ListDevicesRequest{})).get(t)
	if len(list.GetDevices()) != 1 || list.GetDevices()[0].GetName() != "keep" {
		t.Fatalf("devices after restart: %v", list.GetDevices())
	}
	v := must(c.VerifyDevice(ctx, &certmgrv1.VerifyDeviceRequest{CertificatePem: keep.GetDevice().GetCertificatePem()})).get(t)
	if !v.GetAllowed() {
		t.Fatalf("kept device refused after restart: %+v", v)
	}
	v = must(c.VerifyDevice(ctx, &certmgrv1.VerifyDeviceRequest{CertificatePem: gone.GetDevice().GetCertificatePem()})).get(t)
	if v.GetAllowed() || v.GetReason() != ReasonRevoked {
		t.Fatalf("revocation lost across restart: %+v", v)
	}
}

// A damaged registry stops the start with a message saying what to do; it
// is never replaced by an empty one.
func TestDamagedRegistryStopsStart(t *testing.T) {
	s := newSuite(t)
	s.start()
	must(s.svc.CreateDevice(context.Background(), &certmgrv1.CreateDeviceRequest{Name: "precious"})).get(t)
	s.stop()

	file := filepath.Join(s.root.DataDir(Name), "devices.json")
	whole := must(os.ReadFile(file)).get(t)
	torn := whole[:len(whole)/2]
	if err := os.WriteFile(file, torn, 0o600); err != nil {
		t.Fatal(err)
	}
	err := s.tryStart()
	if err == nil {
		t.Fatal("certmgr started on a torn registry")
	}
	if !strings.Contains(err.Error(), "damaged") || !strings.Contains(err.Error(), file) {
		t.Fatalf("start error does not explain: %v", err)
	}
	if now := must(os.ReadFile(file)).get(t); !bytes.Equal(now, torn) {
		t.Fatal("the damaged registry was rewritten")
	}
}

// Expiry of every certificate is reported in seconds from now.
func TestExpiryReported(t *testing.T) {
	s := newSuite(t)
	s.start()
	c := s.dial()
	ctx := context.Background()
	cfg := config.Default().Evergreen.Certmgr
	within := func(what string, got float64, want time.Duration) {
		t.Helper()
		// Issued moments ago; certificate times have one-second precision.
		if d := want.Seconds() - got; d < -1 || d > 120 {
			t.Errorf("%s expires in %.0fs, want about %.0fs", what, got, want.Seconds())
		}
	}
	auth := must(c.GetAuthorities(ctx, &certmgrv1.GetAuthoritiesRequest{})).get(t)
	ca := time.Duration(cfg.CAValidityDays) * day
	within("group CA", auth.GetGroupCa().GetExpiresInSeconds(), ca)
	within("device CA", auth.GetDeviceCa().GetExpiresInSeconds(), ca)
	within("core", auth.GetCore().GetExpiresInSeconds(), ca)
	sc := must(c.GetServerCertificate(ctx, &certmgrv1.GetServerCertificateRequest{})).get(t)
	within("server", sc.GetInfo().GetExpiresInSeconds(), time.Duration(cfg.ServerCertValidityDays)*day)
	if got, want := sc.GetRenewAt().AsTime(), time.Now().Add(time.Duration(cfg.ServerCertValidityDays)*day*8/10); got.Sub(want).Abs() > 10*time.Minute {
		t.Errorf("server renew_at %v, want about %v", got, want)
	}
	dev := must(c.CreateDevice(ctx, &certmgrv1.CreateDeviceRequest{Name: "aging"})).get(t)
	within("device", dev.GetDevice().GetCertificate().GetExpiresInSeconds(), time.Duration(cfg.DeviceCertValidityDays)*day)
}

// Before Start the local API answers UNAVAILABLE rather than crashing.
func TestUnavailableBeforeStart(t *testing.T) {
	svc := New(Options{})
	ctx := context.Background()
	if _, err := svc.GetAuthorities(ctx, &certmgrv1.GetAuthoritiesRequest{}); !errors.Is(err, errdefs.ErrUnavailable) {
		t.Errorf("GetAuthorities: %v", err)
	}
	if _, err := svc.GetServerCertificate(ctx, &certmgrv1.GetServerCertificateRequest{}); !errors.Is(err, errdefs.ErrUnavailable) {
		t.Errorf("GetServerCertificate: %v", err)
	}
	if _, err := svc.ListDevices(ctx, &certmgrv1.ListDevicesRequest{}); !errors.Is(err, errdefs.ErrUnavailable) {
		t.Errorf("ListDevices: %v", err)
	}
}
