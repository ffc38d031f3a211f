// Package pki makes and reads the keys and X.509 certificates certmgr
// deals in: CAs, the core and MQTT server certificates, device
// certificates. It knows nothing of files or the API; certmgr decides what
// is issued, when, and where it is kept.
package pki

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"github.com/evergreen-edge/evergreen/services/kit/pemkey"
	"math/big"
	"net"
	"os"
	"time"
)

// Algorithm is a key type certmgr generates.
type Algorithm int

const (
	// Unknown is a key certmgr would not generate (other curves, sizes).
	Unknown Algorithm = iota
	ECDSAP256
	RSA2048
)

func (a Algorithm) String() string {
	switch a {
	case ECDSAP256:
		return "ecdsa-p256"
	case RSA2048:
		return "rsa-2048"
	}
	return "unknown"
}

// ParseAlgorithm reads evergreen.certmgr.keyAlgorithm.
func ParseAlgorithm(s string) (Algorithm, error) {
	switch s {
	case "", "ecdsa-p256":
		return ECDSAP256, nil
	case "rsa-2048":
		return RSA2048, nil
	}
	return Unknown, fmt.Errorf("key algorithm %q: want ecdsa-p256 or rsa-2048", s)
}

// GenerateKey makes a new private key.
func GenerateKey(a Algorithm) (crypto.Signer, error) {
	switch a {
	case ECDSAP256:
		return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case RSA2048:
		return rsa.GenerateKey(rand.Reader, 2048)
	}
	return nil, fmt.Errorf("cannot generate a key of algorithm %v", a)
}

// AlgorithmOf names the algorithm of a public key, Unknown when it is not
// one certmgr generates.
func AlgorithmOf(pub crypto.PublicKey) Algorithm {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		if k.Curve == elliptic.P256() {
			return ECDSAP256
		}
	case *rsa.PublicKey:
		if k.N.BitLen() == 2048 {
			return RSA2048
		}
	}
	return Unknown
}

// KeyPair is a certificate and its private key.
type KeyPair struct {
	Cert *x509.Certificate
	Key  crypto.Signer
}

// Template says what to put in a new certificate.
type Template struct {
	CommonName string
	// CA makes a certificate authority; MaxPathLen then limits the CAs
	// below it (0: it signs leaves only).
	CA          bool
	MaxPathLen  int
	DNSNames    []string
	IPAddresses []net.IP
	ExtKeyUsage []x509.ExtKeyUsage
	Validity    time.Duration
}

// Backdate is how far before its issue a certificate becomes valid, so
// that a peer whose clock lags a little accepts a fresh one. Short-lived
// test certificates are backdated by a tenth of their life instead.
func Backdate(validity time.Duration) time.Duration {
	return min(5*time.Minute, validity/10)
}

// Issue signs a certificate for key's public half. A nil issuer makes a
// self-signed certificate. The certificate never outlives its issuer.
func Issue(t Template, key crypto.Signer, issuer *KeyPair, now time.Time) (*x509.Certificate, error) {
	if t.Validity <= 0 {
		return nil, errors.New("certificate validity must be positive")
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, err
	}
	serial.Add(serial, big.NewInt(1))
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: t.CommonName, Organization: []string{"Evergreen"}},
		NotBefore:    now.Add(-Backdate(t.Validity)),
		NotAfter:     now.Add(t.Validity),
		DNSNames:     t.DNSNames,
		IPAddresses:  t.IPAddresses,
		ExtKeyUsage:  t.ExtKeyUsage,
	}
	if t.CA {
		tmpl.IsCA = true
		tmpl.BasicConstraintsValid = true
		tmpl.MaxPathLen = t.MaxPathLen
		tmpl.MaxPathLenZero = t.MaxPathLen == 0
		tmpl.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature
	} else {
		tmpl.BasicConstraintsValid = true
		tmpl.KeyUsage = x509.KeyUsageDigitalSignature
		if _, ok := key.Public().(*rsa.PublicKey); ok {
			// RSA key exchange (TLS 1.2 RSA-AES suites v1 offers) needs it.
			tmpl.KeyUsage |= x509.KeyUsageKeyEncipherment
		}
	}
	parent, signer := tmpl, key
	if issuer != nil {
		parent, signer = issuer.Cert, issuer.Key
		if tmpl.NotAfter.After(issuer.Cert.NotAfter) {
			tmpl.NotAfter = issuer.Cert.NotAfter
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, key.Public(), signer)
	if err != nil {
		return nil, fmt.Errorf("sign certificate for %q: %w", t.CommonName, err)
	}
	return x509.ParseCertificate(der)
}

// EncodeCert returns c as a PEM CERTIFICATE block.
func EncodeCert(c *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
}

// EncodeKey returns key as a PKCS #8 PEM PRIVATE KEY block.
func EncodeKey(key crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// ParseCerts reads every block of a PEM document, which must all be
// certificates. It returns at least one certificate or an error.
func ParseCerts(data []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	rest := data
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("PEM block %d is a %s, not a CERTIFICATE", len(certs)+1, b.Type)
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("certificate %d: %w", len(certs)+1, err)
		}
		certs = append(certs, c)
	}
	if len(bytes.TrimSpace(rest)) != 0 {
		return nil, fmt.Errorf("text after certificate %d is not PEM", len(certs))
	}
	if len(certs) == 0 {
		return nil, errors.New("no PEM CERTIFICATE block")
	}
	return certs, nil
}

// ParseKey reads a PEM private key: PKCS #8, PKCS #1 (RSA) or SEC 1 (EC).
func ParseKey(data []byte) (crypto.Signer, error) { return pemkey.Parse(data) }

// ReadPair loads a certificate (the first of the file) and its key, and
// checks that they belong together.
func ReadPair(certFile, keyFile string) (*KeyPair, error) {
	cb, err := os.ReadFile(certFile)
	if err != nil {
		return nil, err
	}
	certs, err := ParseCerts(cb)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", certFile, err)
	}
	kb, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, err
	}
	key, err := ParseKey(kb)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", keyFile, err)
	}
	if !KeyMatches(certs[0], key) {
		return nil, fmt.Errorf("%s does not hold the private key of %s", keyFile, certFile)
	}
	return &KeyPair{Cert: certs[0], Key: key}, nil
}

// KeyMatches reports whether key is the private half of c's public key.
func KeyMatches(c *x509.Certificate, key crypto.Signer) bool {
	pub, ok := c.PublicKey.(interface{ Equal(crypto.PublicKey) bool })
	return ok && pub.Equal(key.Public())
}

// SamePublicKey reports whether two public keys are equal.
func SamePublicKey(a, b crypto.PublicKey) bool {
	k, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && k.Equal(b)
}

// Fingerprint is the lowercase hex SHA-256 of the certificate's DER.
func Fingerprint(c *x509.Certificate) string {
	sum := sha256.Sum256(c.Raw)
	return hex.EncodeToString(sum[:])
}

// Serial is the certificate's serial number in lowercase hex.
func Serial(c *x509.Certificate) string { return c.SerialNumber.Text(16) }
