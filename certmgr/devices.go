package certmgr

import (
	"context"
	"crypto/x509"
	"fmt"
	"time"

	"github.com/evergreen-edge/evergreen/certmgr/pki"
	"github.com/evergreen-edge/evergreen/certmgr/registry"
	certmgrv1 "github.com/evergreen-edge/evergreen/proto/evergreen/certmgr/v1"
	"github.com/evergreen-edge/evergreen/services/kit/errdefs"
	"github.com/evergreen-edge/evergreen/services/kit/subjects"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// Reasons VerifyDevice gives for a refusal.
const (
	ReasonUnknown         = "unknown certificate"
	ReasonRevoked         = "revoked"
	ReasonExpired         = "expired"
	ReasonNotYetValid     = "not yet valid"
	ReasonUntrustedIssuer = "not signed by the device CA"
)

// MaxThingNameLen is AWS IoT's limit on thing names.
const MaxThingNameLen = 128

// checkThingName applies the AWS IoT thing-name rules: 1..128 characters
// of a-z A-Z 0-9 : _ -.
func checkThingName(name string) error {
	if name == "" {
		return errdefs.InvalidArgument("name", "is empty")
	}
	if len(name) > MaxThingNameLen {
		return errdefs.InvalidArgument("name", "is %d characters long; thing names have at most %d", len(name), MaxThingNameLen)
	}
	for _, r := range name {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == ':' || r == '_' || r == '-'
		if !ok {
			return errdefs.InvalidArgument("name", "%q contains %q; thing names allow only a-z A-Z 0-9 : _ -", name, r)
		}
	}
	return nil
}

func certInfo(c *x509.Certificate, now time.Time) *certmgrv1.CertificateInfo {
	alg := certmgrv1.KeyAlgorithm_KEY_ALGORITHM_UNSPECIFIED
	switch pki.AlgorithmOf(c.PublicKey) {
	case pki.ECDSAP256:
		alg = certmgrv1.KeyAlgorithm_KEY_ALGORITHM_ECDSA_P256
	case pki.RSA2048:
		alg = certmgrv1.KeyAlgorithm_KEY_ALGORITHM_RSA_2048
	}
	return &certmgrv1.CertificateInfo{
		Subject:           c.Subject.String(),
		Serial:            pki.Serial(c),
		NotBefore:         timestamppb.New(c.NotBefore),
		NotAfter:          timestamppb.New(c.NotAfter),
		ExpiresInSeconds:  c.NotAfter.Sub(now).Seconds(),
		Sha256Fingerprint: pki.Fingerprint(c),
		KeyAlgorithm:      alg,
	}
}

func deviceProto(d *registry.Device, now time.Time) *certmgrv1.Device {
	return &certmgrv1.Device{
		Name:           d.Name,
		Certificate:    certInfo(d.Cert, now),
		IssuedHere:     d.IssuedHere,
		RegisteredAt:   timestamppb.New(d.RegisteredAt),
		CertificatePem: d.CertificatePEM,
	}
}

// GetAuthorities returns the group CA, the device CA and the core
// certificate.
func (s *Service) GetAuthorities(_ context.Context, _ *certmgrv1.GetAuthoritiesRequest, _ ...grpc.CallOption) (*certmgrv1.GetAuthoritiesResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.readyLocked(); err != nil {
		return nil, err
	}
	now := s.opts.Now()
	return &certmgrv1.GetAuthoritiesResponse{
		GroupCaPem:  string(s.groupPEM),
		GroupCa:     certInfo(s.groupCA.Cert, now),
		DeviceCaPem: string(s.devPEM),
		DeviceCa:    certInfo(s.deviceCA.Cert, now),
		Core:        certInfo(s.core, now),
	}, nil
}

// CreateDevice issues an ECDSA P-256 key and a client certificate signed by
// the device CA, and registers the device. The key is returned, never
// stored.
func (s *Service) CreateDevice(_ context.Context, in *certmgrv1.CreateDeviceRequest, _ ...grpc.CallOption) (*certmgrv1.CreateDeviceResponse, error) {
	name := in.GetName()
	if err := checkThingName(name); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.readyLocked(); err != nil {
		return nil, err
	}
	if _, ok := s.devices.Get(name); ok {
		return nil, errdefs.AlreadyExists("device", name)
	}
	now := s.opts.Now()
	key, err := pki.GenerateKey(pki.ECDSAP256)
	if err != nil {
		return nil, internal(err)
	}
	cert, err := pki.Issue(pki.Template{
		CommonName:  name,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		Validity:    time.Duration(s.env.Config.Evergreen.Certmgr.DeviceCertValidityDays) * day,
	}, key, s.deviceCA, now)
	if err != nil {
		return nil, internal(err)
	}
	keyPEM, err := pki.EncodeKey(key)
	if err != nil {
		return nil, internal(err)
	}
	d := &registry.Device{Name: name, Cert: cert, IssuedHere: true, RegisteredAt: now.UTC()}
	if err := s.devices.Add(d); err != nil {
		return nil, internal(err)
	}
	s.env.Log.Info("device created", "device", name, "serial", pki.Serial(cert), "expires", cert.NotAfter)
	return &certmgrv1.CreateDeviceResponse{
		Device:      deviceProto(d, now),
		KeyPem:      string(keyPEM),
		ServerCaPem: string(s.groupPEM),
	}, nil
}

// RegisterDevice registers a certificate made elsewhere.
func (s *Service) RegisterDevice(_ context.Context, in *certmgrv1.RegisterDeviceRequest, _ ...grpc.CallOption) (*certmgrv1.Device, error) {
	name := in.GetName()
	if err := checkThingName(name); err != nil {
		return nil, err
	}
	certs, err := pki.ParseCerts([]byte(in.GetCertificatePem()))
	if err != nil {
		return nil, errdefs.InvalidArgument("certificate_pem", "%v", err)
	}
	if len(certs) != 1 {
		return nil, errdefs.InvalidArgument("certificate_pem", "holds %d certificates; send the device's certificate alone", len(certs))
	}
	cert := certs[0]
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.readyLocked(); err != nil {
		return nil, err
	}
	now := s.opts.Now()
	if now.After(cert.NotAfter) {
		return nil, errdefs.InvalidArgument("certificate_pem", "certificate expired at %s", cert.NotAfter.UTC().Format(time.RFC3339))
	}
	fp := pki.Fingerprint(cert)
	if v, ok := s.devices.Revoked(fp); ok {
		return nil, errdefs.InvalidArgument("certificate_pem", "certificate was revoked at %s when device %q was removed",
			v.RevokedAt.UTC().Format(time.RFC3339), v.Name)
	}
	if _, ok := s.devices.Get(name); ok {
		return nil, errdefs.AlreadyExists("device", name)
	}
	if other, ok := s.devices.ByFingerprint(fp); ok {
		return nil, fmt.Errorf("certificate_pem: certificate %s is already registered as device %q: %w", fp, other.Name, errdefs.ErrAlreadyExists)
	}
	d := &registry.Device{Name: name, Cert: cert, RegisteredAt: now.UTC()}
	if err := s.devices.Add(d); err != nil {
		return nil, internal(err)
	}
	s.env.Log.Info("device registered", "device", name, "subject", cert.Subject.String(), "sha256", fp)
	return deviceProto(d, now), nil
}

// GetDevice returns one device.
func (s *Service) GetDevice(_ context.Context, in *certmgrv1.GetDeviceRequest, _ ...grpc.CallOption) (*certmgrv1.Device, error) {
	if in.GetName() == "" {
		return nil, errdefs.InvalidArgument("name", "is empty")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.readyLocked(); err != nil {
		return nil, err
	}
	d, ok := s.devices.Get(in.GetName())
	if !ok {
		return nil, errdefs.NotFound("device", in.GetName())
	}
	return deviceProto(d, s.opts.Now()), nil
}

// ListDevices returns every device sorted by name.
func (s *Service) ListDevices(_ context.Context, _ *certmgrv1.ListDevicesRequest, _ ...grpc.CallOption) (*certmgrv1.ListDevicesResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.readyLocked(); err != nil {
		return nil, err
	}
	now := s.opts.Now()
	out := &certmgrv1.ListDevicesResponse{}
	for _, d := range s.devices.List() {
		out.Devices = append(out.Devices, deviceProto(d, now))
	}
	return out, nil
}

// RemoveDevice unregisters a device and revokes its certificate, then
// tells the broker on the bus.
func (s *Service) RemoveDevice(_ context.Context, in *certmgrv1.RemoveDeviceRequest, _ ...grpc.CallOption) (*certmgrv1.RemoveDeviceResponse, error) {
	name := in.GetName()
	if name == "" {
		return nil, errdefs.InvalidArgument("name", "is empty")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.readyLocked(); err != nil {
		return nil, err
	}
	if _, ok := s.devices.Get(name); !ok {
		return nil, errdefs.NotFound("device", name)
	}
	v, err := s.devices.Remove(name, s.opts.Now())
	if err != nil {
		return nil, internal(err)
	}
	s.env.Log.Info("device removed; certificate revoked", "device", name, "serial", v.Serial)
	s.publishLocked(subjects.CertDeviceRemoved, &certmgrv1.DeviceRemoved{Name: name, Serial: v.Serial})
	return &certmgrv1.RemoveDeviceResponse{}, nil
}

// VerifyDevice says whether a client certificate (PEM, leaf first) belongs
// to a registered, unrevoked device within its validity.
func (s *Service) VerifyDevice(_ context.Context, in *certmgrv1.VerifyDeviceRequest, _ ...grpc.CallOption) (*certmgrv1.VerifyDeviceResponse, error) {
	certs, err := pki.ParseCerts([]byte(in.GetCertificatePem()))
	if err != nil {
		return nil, errdefs.InvalidArgument("certificate_pem", "%v", err)
	}
	leaf := certs[0]
	fp := pki.Fingerprint(leaf)
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.readyLocked(); err != nil {
		return nil, err
	}
	refuse := func(device, reason string) (*certmgrv1.VerifyDeviceResponse, error) {
		return &certmgrv1.VerifyDeviceResponse{Allowed: false, DeviceName: device, Reason: reason}, nil
	}
	if v, ok := s.devices.Revoked(fp); ok {
		return refuse(v.Name, ReasonRevoked)
	}
	d, ok := s.devices.ByFingerprint(fp)
	if !ok {
		return refuse("", ReasonUnknown)
	}
	now := s.opts.Now()
	switch {
	case now.Before(d.Cert.NotBefore):
		return refuse(d.Name, ReasonNotYetValid)
	case now.After(d.Cert.NotAfter):
		return refuse(d.Name, ReasonExpired)
	}
	if d.IssuedHere {
		// A device CA made anew (its files were lost) no longer vouches
		// for the certificates the old one signed.
		if _, err := d.Cert.Verify(x509.VerifyOptions{
			Roots:         s.roots,
			Intermediates: s.intermediates,
			CurrentTime:   now,
			KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		}); err != nil {
			return refuse(d.Name, ReasonUntrustedIssuer)
		}
	}
	return &certmgrv1.VerifyDeviceResponse{Allowed: true, DeviceName: d.Name}, nil
}
