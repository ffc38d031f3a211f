package bundle

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"regexp"
	"slices"
	"strings"
	"testing"
)

func TestPublicKeyText(t *testing.T) {
	pub, _, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	s := MarshalPublicKey(pub)
	if !regexp.MustCompile(`^ed25519:[A-Za-z0-9+/]{43}=$`).MatchString(s) {
		t.Fatalf("public key text %q", s)
	}
	back, err := ParsePublicKey("  " + s + "\n")
	if err != nil || !back.Equal(pub) {
		t.Fatalf("round trip: %v", err)
	}
	if id := KeyID(pub); !regexp.MustCompile(`^[0-9a-f]{16}$`).MatchString(id) {
		t.Fatalf("key id %q", id)
	}

	der, _ := x509.MarshalPKIXPublicKey(pub)
	pemText := string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
	if k, err := ParsePublicKey(pemText); err != nil || !k.Equal(pub) {
		t.Fatalf("PEM public key: %v", err)
	}

	for _, bad := range []string{"", "ssh-ed25519 AAAA", "ed25519:", "ed25519:not base64!", "ed25519:AAAA", "ed25519:" + strings.Repeat("A", 43) + "=x"} {
		if _, err := ParsePublicKey(bad); err == nil {
			t.Fatalf("ParsePublicKey(%q) accepted", bad)
		}
	}
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ = x509.MarshalPKIXPublicKey(&ec.PublicKey)
	if _, err := ParsePublicKey(string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))); err == nil || !strings.Contains(err.Error(), "not ed25519") {
		t.Fatalf("an EC public key: %v", err)
	}
}

func TestParsePublicKeys(t *testing.T) {
	a, _, _ := GenerateKey()
	b, _, _ := GenerateKey()
	keys, err := ParsePublicKeys("# fleet keys\n" + MarshalPublicKey(a) + "\n\n  " + MarshalPublicKey(b) + "\n")
	if err != nil || len(keys) != 2 || !keys[0].Equal(a) || !keys[1].Equal(b) {
		t.Fatalf("%v %v", keys, err)
	}
	if _, err := ParsePublicKeys("# nothing\n"); err == nil {
		t.Fatal("an empty key list was accepted")
	}
	if _, err := ParsePublicKeys(MarshalPublicKey(a) + "\nrubbish\n"); err == nil || !strings.Contains(err.Error(), "line 2") {
		t.Fatalf("want an error naming line 2, got %v", err)
	}
}

func TestPrivateKeyPEM(t *testing.T) {
	pub, priv, _ := GenerateKey()
	b, err := MarshalPrivateKeyPEM(priv)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(b), "-----BEGIN PRIVATE KEY-----\n") {
		t.Fatalf("not PKCS #8 PEM:\n%s", b)
	}
	back, err := ParsePrivateKeyPEM(b)
	if err != nil || !back.Equal(priv) || !back.Public().(ed25519.PublicKey).Equal(pub) {
		t.Fatalf("round trip: %v", err)
	}

	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalPKCS8PrivateKey(ec)
	for _, tc := range []struct {
		in   []byte
		want string
	}{
		{[]byte("nothing"), "no PEM block"},
		{pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), "not ed25519"},
		{pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), `"EC PRIVATE KEY"`},
		{pem.EncodeToMemory(&pem.Block{Type: "ENCRYPTED PRIVATE KEY", Bytes: der}), "encrypted"},
	} {
		if _, err := ParsePrivateKeyPEM(tc.in); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Fatalf("want %q, got %v", tc.want, err)
		}
	}
}

func TestSignatureFile(t *testing.T) {
	pub, priv, _ := GenerateKey()
	b, err := Sign(priv, strings.NewReader("bundle bytes"))
	if err != nil {
		t.Fatal(err)
	}
	var fields map[string]any
	if err := json.Unmarshal(b, &fields); err != nil {
		t.Fatal(err)
	}
	var keys []string
	for k := range fields {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	if strings.Join(keys, ",") != "algorithm,format,keyId,sha256,signature,size" {
		t.Fatalf("signature fields %v", keys)
	}
	sig, err := ParseSignature(b)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte("bundle bytes"))
	if sig.Format != 1 || sig.Algorithm != "ed25519" || sig.KeyID != KeyID(pub) || sig.Size != 12 || sig.SHA256 != hex.EncodeToString(sum[:]) {
		t.Fatalf("signature %+v", sig)
	}
	// The message is domain separated: a plain signature over the digest
	// does not verify.
	if err := VerifySignature(sig, []ed25519.PublicKey{pub}, sig.SHA256, sig.Size); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(SignedMessage(sig.SHA256, sig.Size)), "evergreen-ota-bundle-v1\n") {
		t.Fatal("message lacks its domain")
	}
	plain := sig
	plain.Signature = base64.StdEncoding.EncodeToString(ed25519.Sign(priv, []byte(sig.SHA256)))
	if err := VerifySignature(plain, []ed25519.PublicKey{pub}, sig.SHA256, sig.Size); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("a signature over the bare digest: %v", err)
	}

	for _, tc := range []struct{ in, want string }{
		{`{"format":1,"keyId":"0123456789abcdef","algorithm":"rsa","sha256":"` + sig.SHA256 + `","size":1,"signature":"` + sig.Signature + `"}`, `algorithm "rsa"`},
		{`{"format":1,"keyId":"0123456789abcdef","algorithm":"ed25519","sha256":"abc","size":1,"signature":"` + sig.Signature + `"}`, "sha256"},
		{`{"format":1,"keyId":"0123456789abcdef","algorithm":"ed25519","sha256":"` + sig.SHA256 + `","size":0,"signature":"` + sig.Signature + `"}`, "never empty"},
		{`{"format":1,"keyId":"0123456789abcdef","algorithm":"ed25519","sha256":"` + sig.SHA256 + `","size":1,"signature":"AAAA"}`, "64 bytes"},
		{`{"format":2}`, "format 2"},
		{strings.Repeat(" ", MaxSignatureSize+1), "limit"},
	} {
		if _, err := ParseSignature([]byte(tc.in)); !errors.Is(err, ErrBadSignature) || !strings.Contains(err.Error(), tc.want) {
			t.Fatalf("%s: want bad signature with %q, got %v", tc.in, tc.want, err)
		}
	}
}
