package bundle

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"strings"
)

// Algorithm is the only signature algorithm.
const Algorithm = "ed25519"

// signatureDomain starts every signed message, so that a bundle key's
// signature can never be taken for a signature over anything else.
const signatureDomain = "evergreen-ota-bundle-v1"

// Signature is the detached signature file, BUNDLE.sig:
//
//	{"format":1,"keyId":"…","algorithm":"ed25519","sha256":"…","size":N,"signature":"…"}
//
// It signs the bundle's sha256 and size, not its bytes, so a core can
// check it against a download's hash and length.
type Signature struct {
	Format    int    `json:"format"`
	KeyID     string `json:"keyId"`
	Algorithm string `json:"algorithm"`
	// SHA256 is the hex of the whole bundle file's sha256, lower case.
	SHA256 string `json:"sha256"`
	// Size is the bundle file's length in bytes.
	Size int64 `json:"size"`
	// Signature is the standard base64 of
	// ed25519.Sign(key, SignedMessage(SHA256, Size)).
	Signature string `json:"signature"`
}

// SignedMessage is what a signature signs, three lines:
//
//	evergreen-ota-bundle-v1
//	sha256:<64 lower-case hex digits>
//	size:<decimal bytes>
func SignedMessage(sha256Hex string, size int64) []byte {
	return fmt.Appendf(nil, "%s\nsha256:%s\nsize:%d\n", signatureDomain, strings.ToLower(sha256Hex), size)
}

// Sign reads the whole bundle and returns its signature file's contents.
func Sign(priv ed25519.PrivateKey, bundle io.Reader) ([]byte, error) {
	h := sha256.New()
	n, err := io.Copy(h, bundle)
	if err != nil {
		return nil, fmt.Errorf("read bundle: %w", err)
	}
	sig, err := SignDigest(priv, hex.EncodeToString(h.Sum(nil)), n)
	if err != nil {
		return nil, err
	}
	return sig.Marshal()
}

// SignDigest signs a bundle known by its sha256 (hex) and size.
func SignDigest(priv ed25519.PrivateKey, sha256Hex string, size int64) (Signature, error) {
	if len(priv) != ed25519.PrivateKeySize {
		return Signature{}, fmt.Errorf("private key holds %d bytes, an ed25519 key %d", len(priv), ed25519.PrivateKeySize)
	}
	sha256Hex = strings.ToLower(sha256Hex)
	if !isHex(sha256Hex, sha256.Size*2) {
		return Signature{}, fmt.Errorf("sha256 %q is not 64 hex digits", sha256Hex)
	}
	if size <= 0 {
		return Signature{}, fmt.Errorf("bundle size %d: a bundle is never empty", size)
	}
	pub := priv.Public().(ed25519.PublicKey)
	return Signature{
		Format:    Format,
		KeyID:     KeyID(pub),
		Algorithm: Algorithm,
		SHA256:    sha256Hex,
		Size:      size,
		Signature: base64.StdEncoding.EncodeToString(ed25519.Sign(priv, SignedMessage(sha256Hex, size))),
	}, nil
}

// Marshal is the signature file's contents: indented JSON and a newline.
func (s Signature) Marshal() ([]byte, error) {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// ParseSignature reads a signature file. Anything but a well-formed format
// 1 ed25519 signature wraps ErrBadSignature.
func ParseSignature(b []byte) (Signature, error) {
	if len(b) > MaxSignatureSize {
		return Signature{}, fmt.Errorf("%w: the signature file is %d bytes, the limit is %d", ErrBadSignature, len(b), MaxSignatureSize)
	}
	var probe struct {
		Format int `json:"format"`
	}
	if err := json.Unmarshal(b, &probe); err != nil {
		return Signature{}, fmt.Errorf("%w: not a signature file: %v", ErrBadSignature, err)
	}
	if probe.Format != Format {
		return Signature{}, fmt.Errorf("%w: signature format %d, this core reads format %d", ErrBadSignature, probe.Format, Format)
	}
	var s Signature
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s); err != nil {
		return Signature{}, fmt.Errorf("%w: not a signature file: %v", ErrBadSignature, err)
	}
	if dec.More() {
		return Signature{}, fmt.Errorf("%w: data after the signature's JSON object", ErrBadSignature)
	}
	if _, err := s.check(); err != nil {
		return Signature{}, err
	}
	return s, nil
}

// check validates the fields and returns the raw signature.
func (s Signature) check() ([]byte, error) {
	switch {
	case s.Format != Format:
		return nil, fmt.Errorf("%w: signature format %d, this core reads format %d", ErrBadSignature, s.Format, Format)
	case s.Algorithm != Algorithm:
		return nil, fmt.Errorf("%w: algorithm %q, want %q", ErrBadSignature, s.Algorithm, Algorithm)
	case !isHex(s.KeyID, 16):
		return nil, fmt.Errorf("%w: keyId %q is not 16 lower-case hex digits", ErrBadSignature, s.KeyID)
	case !isHex(s.SHA256, sha256.Size*2):
		return nil, fmt.Errorf("%w: sha256 %q is not 64 lower-case hex digits", ErrBadSignature, s.SHA256)
	case s.Size <= 0:
		return nil, fmt.Errorf("%w: size %d: a bundle is never empty", ErrBadSignature, s.Size)
	}
	raw, err := base64.StdEncoding.Strict().DecodeString(s.Signature)
	if err != nil || len(raw) != ed25519.SignatureSize {
		return nil, fmt.Errorf("%w: the signature is not %d bytes in standard base64", ErrBadSignature, ed25519.SignatureSize)
	}
	return raw, nil
}

// VerifySignature checks that sig is a valid signature by one of the
// trusted keys, and that it signs a bundle of this sha256 (hex) and size.
// In that order: a malformed signature is ErrBadSignature, a key not
// trusted ErrUnknownKey, a signature that does not verify ErrBadSignature,
// a bundle shorter than signed ErrTruncated, and any other difference
// ErrHashMismatch.
func VerifySignature(sig Signature, trusted []ed25519.PublicKey, bundleSHA256 string, size int64) error {
	raw, err := sig.check()
	if err != nil {
		return err
	}
	var known []string
	found := false
	for _, k := range trusted {
		if len(k) != ed25519.PublicKeySize {
			continue
		}
		id := KeyID(k)
		known = append(known, id)
		if id != sig.KeyID {
			continue
		}
		found = true
		if ed25519.Verify(k, SignedMessage(sig.SHA256, sig.Size), raw) {
			return checkDigest(sig, bundleSHA256, size)
		}
	}
	switch {
	case found:
		return fmt.Errorf("%w: the signature does not verify under key %s (the signature file was altered, or not made for this bundle)", ErrBadSignature, sig.KeyID)
	case len(known) == 0:
		return fmt.Errorf("%w: signed by key %s, and no key is trusted", ErrUnknownKey, sig.KeyID)
	}
	return fmt.Errorf("%w: signed by key %s, which is not among the trusted keys (%s)", ErrUnknownKey, sig.KeyID, strings.Join(known, ", "))
}

func checkDigest(sig Signature, bundleSHA256 string, size int64) error {
	switch {
	case size < sig.Size:
		return fmt.Errorf("%w: the bundle is %d bytes, the signature covers %d", ErrTruncated, size, sig.Size)
	case size != sig.Size:
		return fmt.Errorf("%w: the bundle is %d bytes, the signature covers %d", ErrHashMismatch, size, sig.Size)
	case strings.ToLower(bundleSHA256) != sig.SHA256:
		return fmt.Errorf("%w: the bundle's sha256 is %s, the signature's %s", ErrHashMismatch, bundleSHA256, sig.SHA256)
	}
	return nil
}
