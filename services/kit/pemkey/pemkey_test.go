package pemkey

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	rk, _ := rsa.GenerateKey(rand.Reader, 2048)
	p8, _ := x509.MarshalPKCS8PrivateKey(ec)
	sec1, _ := x509.MarshalECPrivateKey(ec)
	enc := func(typ string, b []byte) []byte { return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: b}) }
	for name, data := range map[string][]byte{
		"pkcs8":           enc("PRIVATE KEY", p8),
		"sec1":            enc("EC PRIVATE KEY", sec1),
		"pkcs1":           enc("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(rk)),
		"ec-params-first": append(enc("EC PARAMETERS", []byte{6, 8, 42, 134, 72, 206, 61, 3, 1, 7}), enc("EC PRIVATE KEY", sec1)...),
	} {
		if _, err := Parse(data); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	for name, tc := range map[string]struct {
		data []byte
		want string
	}{
		"empty":     {nil, "no PEM private key block"},
		"encrypted": {enc("ENCRYPTED PRIVATE KEY", []byte{1}), "encrypted"},
		"garbage":   {enc("EC PRIVATE KEY", []byte{1, 2}), "EC PRIVATE KEY: "},
	} {
		if _, err := Parse(tc.data); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", name, err, tc.want)
		}
	}
}
