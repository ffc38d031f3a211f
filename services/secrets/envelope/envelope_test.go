package envelope_test

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"strings"
	"testing"

	"github.com/evergreen-edge/evergreen/services/secrets/envelope"
)

func keys(t *testing.T) map[string]crypto.Signer {
	t.Helper()
	r, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	p256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	return map[string]crypto.Signer{"RSA-2048": r, "EC-P256": p256, "EC-P384": p384}
}

func TestRoundTrip(t *testing.T) {
	for alg, k := range keys(t) {
		t.Run(alg, func(t *testing.T) {
			if got, err := envelope.Algorithm(k.Public()); err != nil || got != alg {
				t.Fatalf("Algorithm = %q, %v", got, err)
			}
			for _, plain := range [][]byte{[]byte("hunter2"), bytes.Repeat([]byte{0, 1, 2, 255}, 16<<10), {0}} {
				env, err := envelope.Seal(k.Public(), plain)
				if err != nil {
					t.Fatal(err)
				}
				if bytes.Contains(env, plain) && len(plain) > 1 {
					t.Fatal("plaintext visible in the envelope")
				}
				p, err := envelope.Parse(env)
				if err != nil {
					t.Fatal(err)
				}
				if id, _ := envelope.KeyIDString(k.Public()); p.KeyIDString() != id {
					t.Fatalf("key id %s, want %s", p.KeyIDString(), id)
				}
				got, err := envelope.Open(k, env)
				if err != nil || !bytes.Equal(got, plain) {
					t.Fatalf("Open = %d bytes, %v", len(got), err)
				}
				// Two seals of the same value differ (fresh key, nonce).
				env2, _ := envelope.Seal(k.Public(), plain)
				if bytes.Equal(env, env2) {
					t.Fatal("two seals are identical")
				}
			}
		})
	}
}

func TestOpenRefuses(t *testing.T) {
	ks := keys(t)
	for alg, k := range ks {
		t.Run(alg, func(t *testing.T) {
			env, err := envelope.Seal(k.Public(), []byte("the value"))
			if err != nil {
				t.Fatal(err)
			}
			// Another key of either kind: ErrWrongKey, naming both ids.
			for other, ok := range ks {
				if other == alg {
					continue
				}
				_, err := envelope.Open(ok, env)
				if !errors.Is(err, envelope.ErrWrongKey) || !strings.Contains(err.Error(), "sha256:") {
					t.Fatalf("open with %s: %v", other, err)
				}
			}
			// Any byte flipped: refused (the header is authenticated).
			for i := 0; i < len(env); i++ {
				bad := bytes.Clone(env)
				bad[i] ^= 0x40
				if _, err := envelope.Open(k, bad); err == nil {
					t.Fatalf("byte %d flipped: opened", i)
				}
			}
			// Truncated anywhere: refused without panic.
			for n := 0; n < len(env); n++ {
				if _, err := envelope.Open(k, env[:n]); err == nil {
					t.Fatalf("truncated to %d bytes: opened", n)
				}
			}
			if _, err := envelope.Open(k, []byte("EGS2"+strings.Repeat("x", 80))); !errors.Is(err, envelope.ErrMalformed) {
				t.Fatalf("bad magic: %v", err)
			}
		})
	}
}

func TestUnsupportedKeys(t *testing.T) {
	small, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	p224, _ := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	edPub, _, _ := ed25519.GenerateKey(rand.Reader)
	for _, c := range []struct {
		pub  crypto.PublicKey
		want string
	}{
		{small.Public(), "RSA key of 1024 bits is too small"},
		{p224.Public(), "EC curve P-224 is not supported"},
		{edPub, "ed25519.PublicKey key is not supported"},
	} {
		if _, err := envelope.Seal(c.pub, []byte("x")); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Seal to %T: %v, want %q", c.pub, err, c.want)
		}
	}
}
