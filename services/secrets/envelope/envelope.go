// Package envelope seals bytes to a public key and opens them with the
// private key: the format of secret values imported sealed (PutSecret's
// sealed_value, for cloud deployments) and of the store's data key.
//
// An envelope is, byte for byte (integers big-endian):
//
//	offset  size  field
//	0       4     magic "EGS1"
//	4       1     scheme: 1 = RSA-OAEP, 2 = HPKE P-256, 3 = HPKE P-384
//	5       32    key id: SHA-256 of the recipient's public key as DER
//	              SubjectPublicKeyInfo (x509.MarshalPKIXPublicKey)
//	37      2     n: length of enc
//	39      n     enc (below)
//	39+n    ...   ciphertext (below)
//
// The header is bytes 0 to 39+n (magic through enc); it is the additional
// authenticated data of the AEAD, so no byte of it can change unnoticed.
//
// Scheme 1, RSA (2048 bits or more): enc is RSA-OAEP (SHA-256, MGF1-SHA-256,
// label "evergreen-secrets-v1") of a random 32-byte content key; the
// ciphertext is a random 12-byte nonce followed by AES-256-GCM(content key,
// nonce, plaintext, aad = header), tag included.
//
// Schemes 2 and 3, ECDSA P-256 or P-384 keys used for ECDH: ECIES as RFC
// 9180 (HPKE) standardises it, base mode, KEM DHKEM(P-256, HKDF-SHA256)
// (0x0010) or DHKEM(P-384, HKDF-SHA384) (0x0011), KDF HKDF-SHA256 (0x0001),
// AEAD AES-256-GCM (0x0002), info "evergreen-secrets-v1": enc is HPKE's
// encapsulated key (the ephemeral public point, uncompressed), the
// ciphertext is the first Seal of the context with aad = header. Any
// RFC 9180 library can seal to a core.
//
// The v1 core's SecretsManager key is RSA with PKCS #1 v1.5 padding; the
// envelope uses OAEP instead (v1.5 encryption is not safe to offer), so a
// v1 core's own sealed files are not envelopes and cannot be imported.
package envelope

import (
	"bytes"
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hpke"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
)

// Magic starts every envelope.
const Magic = "EGS1"

// Scheme identifies how the content key reaches the recipient.
type Scheme byte

const (
	SchemeRSAOAEP  Scheme = 1
	SchemeHPKEP256 Scheme = 2
	SchemeHPKEP384 Scheme = 3
)

func (s Scheme) String() string {
	switch s {
	case SchemeRSAOAEP:
		return "RSA-OAEP-SHA256+A256GCM"
	case SchemeHPKEP256:
		return "HPKE-P256-HKDF-SHA256-A256GCM"
	case SchemeHPKEP384:
		return "HPKE-P384-HKDF-SHA256-A256GCM"
	}
	return fmt.Sprintf("scheme %d", byte(s))
}

// MinRSABits is the smallest RSA key accepted.
const MinRSABits = 2048

const (
	label      = "evergreen-secrets-v1"
	keyIDSize  = sha256.Size
	headerBase = len(Magic) + 1 + keyIDSize + 2
	nonceSize  = 12
	keySize    = 32
)

// Errors Open returns, so callers can tell a wrong key from a damaged or
// forged envelope.
var (
	ErrMalformed = errors.New("not an envelope")
	ErrWrongKey  = errors.New("sealed to another key")
	ErrTampered  = errors.New("does not decrypt (damaged, or not sealed by this format)")
)

// KeyID is the SHA-256 of pub's DER SubjectPublicKeyInfo.
func KeyID(pub crypto.PublicKey) ([keyIDSize]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return [keyIDSize]byte{}, err
	}
	return sha256.Sum256(der), nil
}

// KeyIDString is KeyID as "sha256:<hex>".
func KeyIDString(pub crypto.PublicKey) (string, error) {
	id, err := KeyID(pub)
	if err != nil {
		return "", err
	}
	return "sha256:" + hex.EncodeToString(id[:]), nil
}

// Algorithm names pub's kind for people ("RSA-2048", "EC-P256") and says
// whether envelopes can be sealed to it.
func Algorithm(pub crypto.PublicKey) (string, error) {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		name := fmt.Sprintf("RSA-%d", k.N.BitLen())
		if k.N.BitLen() < MinRSABits {
			return name, fmt.Errorf("an RSA key of %d bits is too small (at least %d)", k.N.BitLen(), MinRSABits)
		}
		return name, nil
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256():
			return "EC-P256", nil
		case elliptic.P384():
			return "EC-P384", nil
		}
		return "EC-" + k.Curve.Params().Name, fmt.Errorf("EC curve %s is not supported (P-256 or P-384)", k.Curve.Params().Name)
	}
	return fmt.Sprintf("%T", pub), fmt.Errorf("a %T key is not supported (RSA or ECDSA P-256/P-384)", pub)
}

func hpkeSuite(Scheme) (hpke.KDF, hpke.AEAD) { return hpke.HKDFSHA256(), hpke.AES256GCM() }

// Seal encrypts plaintext to pub (RSA of 2048 bits or more, ECDSA P-256 or
// P-384).
func Seal(pub crypto.PublicKey, plaintext []byte) ([]byte, error) {
	if _, err := Algorithm(pub); err != nil {
		return nil, err
	}
	id, err := KeyID(pub)
	if err != nil {
		return nil, err
	}
	header := func(s Scheme, enc []byte) []byte {
		h := make([]byte, 0, headerBase+len(enc))
		h = append(h, Magic...)
		h = append(h, byte(s))
		h = append(h, id[:]...)
		h = binary.BigEndian.AppendUint16(h, uint16(len(enc)))
		return append(h, enc...)
	}
	switch k := pub.(type) {
	case *rsa.PublicKey:
		cek := make([]byte, keySize)
		rand.Read(cek)
		enc, err := rsa.EncryptOAEP(sha256.New(), rand.Reader, k, cek, []byte(label))
		if err != nil {
			return nil, fmt.Errorf("RSA-OAEP: %w", err)
		}
		h := header(SchemeRSAOAEP, enc)
		gcm, err := newGCM(cek)
		if err != nil {
			return nil, err
		}
		nonce := make([]byte, nonceSize)
		rand.Read(nonce)
		out := append(h, nonce...)
		return gcm.Seal(out, nonce, plaintext, h), nil
	case *ecdsa.PublicKey:
		scheme := SchemeHPKEP256
		if k.Curve == elliptic.P384() {
			scheme = SchemeHPKEP384
		}
		ek, err := k.ECDH()
		if err != nil {
			return nil, err
		}
		hpub, err := hpke.NewDHKEMPublicKey(ek)
		if err != nil {
			return nil, err
		}
		kdf, aead := hpkeSuite(scheme)
		enc, sender, err := hpke.NewSender(hpub, kdf, aead, []byte(label))
		if err != nil {
			return nil, fmt.Errorf("HPKE: %w", err)
		}
		h := header(scheme, enc)
		ct, err := sender.Seal(h, plaintext)
		if err != nil {
			return nil, fmt.Errorf("HPKE: %w", err)
		}
		return append(h, ct...), nil
	}
	return nil, fmt.Errorf("a %T key is not supported", pub)
}

// Parsed is an envelope's header.
type Parsed struct {
	Scheme Scheme
	KeyID  [keyIDSize]byte
	enc    []byte
	header []byte
	body   []byte
}

// KeyIDString is the recipient's key id as "sha256:<hex>".
func (p *Parsed) KeyIDString() string { return "sha256:" + hex.EncodeToString(p.KeyID[:]) }

// Parse reads an envelope's header without decrypting anything.
func Parse(b []byte) (*Parsed, error) {
	if len(b) < headerBase {
		return nil, fmt.Errorf("%w: %d bytes is shorter than the %d-byte header", ErrMalformed, len(b), headerBase)
	}
	if !bytes.Equal(b[:len(Magic)], []byte(Magic)) {
		return nil, fmt.Errorf("%w: does not start with %q", ErrMalformed, Magic)
	}
	p := &Parsed{Scheme: Scheme(b[len(Magic)])}
	switch p.Scheme {
	case SchemeRSAOAEP, SchemeHPKEP256, SchemeHPKEP384:
	default:
		return nil, fmt.Errorf("%w: unknown scheme %d", ErrMalformed, b[len(Magic)])
	}
	copy(p.KeyID[:], b[len(Magic)+1:])
	n := int(binary.BigEndian.Uint16(b[headerBase-2:]))
	if len(b) < headerBase+n {
		return nil, fmt.Errorf("%w: truncated in its %d-byte encapsulated key", ErrMalformed, n)
	}
	p.enc = b[headerBase : headerBase+n]
	p.header = b[:headerBase+n]
	p.body = b[headerBase+n:]
	min := 16
	if p.Scheme == SchemeRSAOAEP {
		min += nonceSize
	}
	if len(p.body) < min {
		return nil, fmt.Errorf("%w: truncated ciphertext (%d bytes)", ErrMalformed, len(p.body))
	}
	return p, nil
}

// Open decrypts an envelope with priv (an *rsa.PrivateKey or an
// *ecdsa.PrivateKey). An envelope sealed to another key fails with
// ErrWrongKey before any decryption.
func Open(priv crypto.Signer, b []byte) ([]byte, error) {
	p, err := Parse(b)
	if err != nil {
		return nil, err
	}
	id, err := KeyID(priv.Public())
	if err != nil {
		return nil, err
	}
	if id != p.KeyID {
		mine := "sha256:" + hex.EncodeToString(id[:])
		return nil, fmt.Errorf("%w: the envelope is for key %s, this key is %s", ErrWrongKey, p.KeyIDString(), mine)
	}
	switch k := priv.(type) {
	case *rsa.PrivateKey:
		if p.Scheme != SchemeRSAOAEP {
			return nil, fmt.Errorf("%w: scheme %s needs an EC key, this key is RSA", ErrMalformed, p.Scheme)
		}
		cek, err := rsa.DecryptOAEP(sha256.New(), nil, k, p.enc, []byte(label))
		if err != nil || len(cek) != keySize {
			return nil, ErrTampered
		}
		gcm, err := newGCM(cek)
		if err != nil {
			return nil, err
		}
		out, err := gcm.Open(nil, p.body[:nonceSize], p.body[nonceSize:], p.header)
		if err != nil {
			return nil, ErrTampered
		}
		return out, nil
	case *ecdsa.PrivateKey:
		want := SchemeHPKEP256
		if k.Curve == elliptic.P384() {
			want = SchemeHPKEP384
		}
		if p.Scheme != want {
			return nil, fmt.Errorf("%w: scheme %s does not fit this key's curve", ErrMalformed, p.Scheme)
		}
		ek, err := k.ECDH()
		if err != nil {
			return nil, err
		}
		return openHPKE(ek, p)
	}
	return nil, fmt.Errorf("a %T key is not supported", priv)
}

func openHPKE(ek *ecdh.PrivateKey, p *Parsed) ([]byte, error) {
	hk, err := hpke.NewDHKEMPrivateKey(ek)
	if err != nil {
		return nil, err
	}
	kdf, aead := hpkeSuite(p.Scheme)
	r, err := hpke.NewRecipient(p.enc, hk, kdf, aead, []byte(label))
	if err != nil {
		return nil, ErrTampered
	}
	out, err := r.Open(p.header, p.body)
	if err != nil {
		return nil, ErrTampered
	}
	return out, nil
}

func newGCM(key []byte) (cipher.AEAD, error) {
	b, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(b)
}
