package certmgr

import (
	"bytes"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/evergreen-edge/evergreen/certmgr/pki"
	"github.com/evergreen-edge/evergreen/services/kit/atomicfile"
	"github.com/evergreen-edge/evergreen/services/kit/config"
)

const day = 24 * time.Hour

// writePair stores a key and its certificate. The key goes first: a
// certificate file on disk means its key is there too, so a power cut
// between the two leaves an orphan key that the next start replaces.
func writePair(certFile, keyFile string, certPEM, keyPEM []byte) error {
	if err := atomicfile.WriteFile(keyFile, keyPEM, 0o600); err != nil {
		return err
	}
	return atomicfile.WriteFile(certFile, certPEM, 0o644)
}

// readPairIfPresent loads a pair; nil, nil when its certificate file does
// not exist yet. A certificate without its key is damage from outside and
// stops the start: replacing a CA silently would cut off every device.
func readPairIfPresent(what, certFile, keyFile string) (*pki.KeyPair, error) {
	if _, err := os.Stat(certFile); errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	p, err := pki.ReadPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	return p, nil
}

// createPair makes a key, has issuer (nil: self) sign a certificate for it
// and stores both.
func (s *Service) createPair(t pki.Template, issuer *pki.KeyPair, certFile, keyFile string, now time.Time) (*pki.KeyPair, error) {
	key, err := pki.GenerateKey(s.alg)
	if err != nil {
		return nil, err
	}
	cert, err := pki.Issue(t, key, issuer, now)
	if err != nil {
		return nil, err
	}
	keyPEM, err := pki.EncodeKey(key)
	if err != nil {
		return nil, err
	}
	if err := writePair(certFile, keyFile, pki.EncodeCert(cert), keyPEM); err != nil {
		return nil, err
	}
	return &pki.KeyPair{Cert: cert, Key: key}, nil
}

// loadAuthorities loads the group CA and the device CA, creating what is
// missing. A device CA that the group CA did not sign (the group CA was
// deleted and made anew) is replaced too.
func (s *Service) loadAuthorities(now time.Time) error {
	root, cm := s.env.Root, s.env.Config.Evergreen.Certmgr
	caValidity := time.Duration(cm.CAValidityDays) * day
	thing := s.env.Config.CoreThingName()

	group, err := readPairIfPresent("group CA", root.GroupCACert(), root.GroupCAKey())
	if err != nil {
		return err
	}
	if group != nil && !group.Cert.IsCA {
		return fmt.Errorf("group CA %s is not a CA certificate", root.GroupCACert())
	}
	if group == nil {
		t := pki.Template{CommonName: "Evergreen group CA " + thing, CA: true, MaxPathLen: 1, Validity: caValidity}
		if group, err = s.createPair(t, nil, root.GroupCACert(), root.GroupCAKey(), now); err != nil {
			return fmt.Errorf("create group CA: %w", err)
		}
		s.env.Log.Info("created group CA", "algorithm", s.alg, "expires", group.Cert.NotAfter)
	} else if a := pki.AlgorithmOf(group.Cert.PublicKey); a != s.alg {
		s.env.Log.Info("keeping the existing group CA; keyAlgorithm applies to new CAs only", "ca_algorithm", a, "configured", s.alg)
	}

	device, err := readPairIfPresent("device CA", root.DeviceCACert(), root.DeviceCAKey())
	if err != nil {
		return err
	}
	if device != nil && (!device.Cert.IsCA || device.Cert.CheckSignatureFrom(group.Cert) != nil) {
		s.env.Log.Warn("device CA is not signed by the group CA; issuing a new one (devices created before must be created again)",
			"file", root.DeviceCACert())
		device = nil
	}
	if device == nil {
		t := pki.Template{CommonName: "Evergreen device CA " + thing, CA: true, MaxPathLen: 0, Validity: caValidity}
		if device, err = s.createPair(t, group, root.DeviceCACert(), root.DeviceCAKey(), now); err != nil {
			return fmt.Errorf("create device CA: %w", err)
		}
		s.env.Log.Info("created device CA", "expires", device.Cert.NotAfter)
	}
	s.groupCA, s.deviceCA = group, device
	s.groupPEM, s.devPEM = pki.EncodeCert(group.Cert), pki.EncodeCert(device.Cert)
	s.roots, s.intermediates = x509.NewCertPool(), x509.NewCertPool()
	s.roots.AddCert(group.Cert)
	s.intermediates.AddCert(device.Cert)
	return nil
}

// loadCore makes DIR/certs/core.* the core's identity: the customer's
// IoTCertificate principal when config.json names one (copied so every
// daemon finds it in one place), otherwise a certificate the group CA
// signs for the core thing name.
func (s *Service) loadCore(now time.Time) error {
	root := s.env.Root
	certFile, keyFile, key, ok, err := coreIdentity(s.env.Config, root.CertsDir())
	if err != nil {
		return err
	}
	if ok {
		pair, err := pki.ReadPair(certFile, keyFile)
		if err != nil {
			return fmt.Errorf("%s: %w", key, err)
		}
		if err := copyIfDifferent(certFile, root.CoreCert(), 0o644); err != nil {
			return err
		}
		if err := copyIfDifferent(keyFile, root.CoreKey(), 0o600); err != nil {
			return err
		}
		s.core = pair.Cert
		s.env.Log.Info("core certificate from config", "key", key, "file", certFile,
			"subject", pair.Cert.Subject.String(), "expires", pair.Cert.NotAfter)
		return nil
	}

	cm, thing := s.env.Config.Evergreen.Certmgr, s.env.Config.CoreThingName()
	pair, err := readPairIfPresent("core certificate", root.CoreCert(), root.CoreKey())
	if err != nil {
		return err
	}
	switch {
	case pair == nil:
	case pair.Cert.CheckSignatureFrom(s.groupCA.Cert) != nil:
		s.env.Log.Info("core certificate is not signed by the group CA; issuing a new one")
		pair = nil
	case pair.Cert.Subject.CommonName != thing:
		s.env.Log.Info("core thing name changed; issuing a new core certificate", "old", pair.Cert.Subject.CommonName, "new", thing)
		pair = nil
	case !now.Before(renewTime(pair.Cert, DefaultRenewFraction)):
		s.env.Log.Info("core certificate is near its end; issuing a new one", "expires", pair.Cert.NotAfter)
		pair = nil
	}
	if pair == nil {
		// The core certificate also serves the daemons' optional mutual-TLS
		// gRPC listener, hence server names and both key usages.
		t := pki.Template{
			CommonName:  thing,
			DNSNames:    coreDNSNames(thing, cm.HostNames),
			IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth},
			Validity:    time.Duration(cm.CAValidityDays) * day,
		}
		if pair, err = s.createPair(t, s.groupCA, root.CoreCert(), root.CoreKey(), now); err != nil {
			return fmt.Errorf("create core certificate: %w", err)
		}
		s.env.Log.Info("created core certificate", "thing", thing, "expires", pair.Cert.NotAfter)
	}
	s.core = pair.Cert
	return nil
}

// isDNSLabel is ^[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?$, by hand (a
// compiled regexp costs heap in every process of the multi-call ggd).
func isDNSLabel(s string) bool {
	if len(s) == 0 || len(s) > 63 || s[0] == '-' || s[len(s)-1] == '-' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

func coreDNSNames(thing string, hostNames []string) []string {
	names := []string{"localhost"}
	if isDNSLabel(thing) {
		names = append(names, thing)
	}
	for _, h := range hostNames {
		if net.ParseIP(h) == nil {
			names = append(names, h)
		}
	}
	return dedupe(names)
}

// coreIdentity finds the customer's core certificate in config.json: the
// crypto IoTCertificate principal, or with no crypto block the legacy
// coreThing certPath and keyPath (relative to DIR/certs). key names the
// config key for error messages.
func coreIdentity(cfg *config.Config, certsDir string) (certFile, keyFile, key string, ok bool, err error) {
	if cr := cfg.Crypto; cr != nil {
		p := cr.Principals.IoTCertificate
		if p == nil {
			return "", "", "", false, nil
		}
		key = "crypto.principals.IoTCertificate"
		if certFile, err = localFile(key+".certificatePath", p.CertificatePath); err != nil {
			return
		}
		if keyFile, err = localFile(key+".privateKeyPath", p.PrivateKeyPath); err != nil {
			return
		}
		return certFile, keyFile, key, true, nil
	}
	ct := cfg.CoreThing
	if ct.CertPath == "" || ct.KeyPath == "" {
		return "", "", "", false, nil
	}
	abs := func(p string) string {
		if filepath.IsAbs(p) {
			return p
		}
		return filepath.Join(certsDir, p)
	}
	return abs(ct.CertPath), abs(ct.KeyPath), "coreThing.certPath/keyPath", true, nil
}

// localFile turns a credential URI into a path. pkcs11: keys stay in their
// module, which certmgr cannot drive.
func localFile(key, uri string) (string, error) {
	if p, ok := config.FileURIPath(uri); ok {
		return p, nil
	}
	if strings.HasPrefix(uri, "pkcs11:") {
		return "", fmt.Errorf("%s: certmgr supports file:/// URIs only, not pkcs11: (%s)", key, uri)
	}
	return "", fmt.Errorf("%s: %q is not a file:/// URI", key, uri)
}

// copyIfDifferent copies src over dst atomically unless dst already holds
// the same bytes or is src.
func copyIfDifferent(src, dst string, perm os.FileMode) error {
	if same, _ := sameFile(src, dst); same {
		return nil
	}
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	if old, err := os.ReadFile(dst); err == nil && bytes.Equal(old, b) {
		return nil
	}
	return atomicfile.WriteFile(dst, b, perm)
}

func sameFile(a, b string) (bool, error) {
	sa, err := os.Stat(a)
	if err != nil {
		return false, err
	}
	sb, err := os.Stat(b)
	if err != nil {
		return false, err
	}
	return os.SameFile(sa, sb), nil
}

// reportCloudCA logs the root CA of the cloud endpoint named in config.json
// (crypto.caPath, or legacy coreThing.caPath). certmgr does not use it; the
// broker's cloud connection does.
func (s *Service) reportCloudCA() {
	cfg := s.env.Config
	var path, key string
	switch {
	case cfg.Crypto != nil && cfg.Crypto.CaPath != "":
		key = "crypto.caPath"
		var err error
		if path, err = localFile(key, cfg.Crypto.CaPath); err != nil {
			s.env.Log.Info("cloud root CA", "key", key, "uri", cfg.Crypto.CaPath)
			return
		}
	case cfg.Crypto == nil && cfg.CoreThing.CaPath != "":
		key, path = "coreThing.caPath", cfg.CoreThing.CaPath
		if !filepath.IsAbs(path) {
			path = filepath.Join(s.env.Root.CertsDir(), path)
		}
	default:
		return
	}
	b, err := os.ReadFile(path)
	if err != nil {
		s.env.Log.Warn("cloud root CA unreadable", "key", key, "err", err)
		return
	}
	certs, err := pki.ParseCerts(b)
	if err != nil {
		s.env.Log.Warn("cloud root CA does not parse", "key", key, "file", path, "err", err)
		return
	}
	for _, c := range certs {
		s.env.Log.Info("cloud root CA", "key", key, "file", path, "subject", c.Subject.String(), "expires", c.NotAfter)
	}
}

// loadServerKey reads the customer's MQTTServerCertificate key (v1: the
// customer then rotates the key; certmgr still renews the certificate).
func (s *Service) loadServerKey() error {
	cr := s.env.Config.Crypto
	if cr == nil || cr.Principals.MQTTServerCertificate == nil {
		s.serverKey = nil
		return nil
	}
	const key = "crypto.principals.MQTTServerCertificate.privateKeyPath"
	path, err := localFile(key, cr.Principals.MQTTServerCertificate.PrivateKeyPath)
	if err != nil {
		return err
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("%s: %w", key, err)
	}
	if s.serverKey, err = pki.ParseKey(b); err != nil {
		return fmt.Errorf("%s: %s: %w", key, path, err)
	}
	return nil
}

// renewTime is when fraction of c's life has passed.
func renewTime(c *x509.Certificate, fraction float64) time.Time {
	life := c.NotAfter.Sub(c.NotBefore)
	return c.NotBefore.Add(time.Duration(float64(life) * fraction))
}

func dedupe(xs []string) []string {
	seen := make(map[string]bool, len(xs))
	out := xs[:0]
	for _, x := range xs {
		if !seen[x] {
			seen[x] = true
			out = append(out, x)
		}
	}
	return out
}
