package secrets

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"github.com/evergreen-edge/evergreen/services/kit/pemkey"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"

	"github.com/evergreen-edge/evergreen/services/kit/config"
	"github.com/evergreen-edge/evergreen/services/kit/errdefs"
	"github.com/evergreen-edge/evergreen/services/kit/layout"
	"github.com/evergreen-edge/evergreen/services/secrets/envelope"
)

// keySource finds and reads the sealing key: the private key the store's
// data key is sealed to and sealed values are opened with. It is, in this
// order, crypto.principals.SecretsManager.privateKeyPath,
// crypto.principals.IoTCertificate.privateKeyPath, the legacy
// coreThing.keyPath (without a crypto block), or certmgr's core key
// DIR/certs/core.key.pem. The key is read again only when the file
// changes (path, size, modification time).
type keySource struct {
	path, source string
	where        error // the configured location is unusable

	mu   sync.Mutex
	file fileStamp
	key  crypto.Signer
}

// fileStamp tells a key file's versions apart: a rename (atomicfile, as
// certmgr writes) changes the inode, an edit in place the times or size.
type fileStamp struct {
	mod, change int64 // ns
	size        int64
	ino         uint64
}

func stampOf(fi os.FileInfo) fileStamp {
	st := fileStamp{mod: fi.ModTime().UnixNano(), size: fi.Size()}
	if sys, ok := fi.Sys().(*syscall.Stat_t); ok {
		st.ino = sys.Ino
		st.change = sys.Ctim.Nano()
	}
	return st
}

func newKeySource(cfg *config.Config, root layout.Root) *keySource {
	k := &keySource{path: root.CoreKey(), source: "certmgr's core key"}
	fileURI := func(key, uri string) {
		k.path, k.source = uri, key
		if strings.HasPrefix(uri, "pkcs11:") {
			k.where = fmt.Errorf("%s: pkcs11: keys are not supported by the secrets daemon; use a file:/// URI: %w", key, errdefs.ErrFailedPrecondition)
			return
		}
		p, ok := config.FileURIPath(uri)
		if !ok {
			k.where = fmt.Errorf("%s: %q is not a file:/// URI: %w", key, uri, errdefs.ErrFailedPrecondition)
			return
		}
		k.path, k.source = p, key
	}
	if cr := cfg.Crypto; cr != nil {
		switch {
		case cr.Principals.SecretsManager != nil && cr.Principals.SecretsManager.PrivateKeyPath != "":
			fileURI("crypto.principals.SecretsManager.privateKeyPath", cr.Principals.SecretsManager.PrivateKeyPath)
		case cr.Principals.IoTCertificate != nil && cr.Principals.IoTCertificate.PrivateKeyPath != "":
			fileURI("crypto.principals.IoTCertificate.privateKeyPath", cr.Principals.IoTCertificate.PrivateKeyPath)
		}
		return k
	}
	if p := cfg.CoreThing.KeyPath; p != "" && cfg.CoreThing.CertPath != "" {
		if !filepath.IsAbs(p) {
			p = filepath.Join(root.CertsDir(), p)
		}
		k.path, k.source = p, "coreThing.keyPath"
	}
	return k
}

// Key returns the sealing key. A missing or unreadable file is
// ErrUnavailable (certmgr may not have written it yet); a key of the wrong
// kind is ErrFailedPrecondition.
func (k *keySource) Key() (crypto.Signer, error) {
	if k.where != nil {
		return nil, k.where
	}
	fi, err := os.Stat(k.path)
	if err != nil {
		return nil, fmt.Errorf("sealing key %s (%s): %v: %w", k.path, k.source, err, errdefs.ErrUnavailable)
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.key != nil && stampOf(fi) == k.file {
		return k.key, nil
	}
	data, err := os.ReadFile(k.path)
	if err != nil {
		return nil, fmt.Errorf("sealing key %s (%s): %v: %w", k.path, k.source, err, errdefs.ErrUnavailable)
	}
	key, err := parseKey(data)
	if err == nil {
		_, err = envelope.Algorithm(key.Public())
	}
	if err != nil {
		return nil, fmt.Errorf("sealing key %s (%s): %v: %w", k.path, k.source, err, errdefs.ErrFailedPrecondition)
	}
	k.key, k.file = key, stampOf(fi)
	return key, nil
}

// parseKey reads a PEM private key (pemkey) that can seal: RSA or ECDSA.
func parseKey(data []byte) (crypto.Signer, error) {
	k, err := pemkey.Parse(data)
	if err != nil {
		return nil, err
	}
	switch k.(type) {
	case *rsa.PrivateKey, *ecdsa.PrivateKey:
		return k, nil
	}
	return nil, fmt.Errorf("a %T key is not supported (RSA or ECDSA P-256/P-384)", k)
}

// keyInfo describes the sealing key for ListSecrets.
type keyInfo struct {
	id, algorithm, pemPublic, source, err string
}

func (k *keySource) describe() keyInfo {
	ki := keyInfo{source: k.source + ": " + k.path}
	key, err := k.Key()
	if err != nil {
		ki.err = err.Error()
		return ki
	}
	ki.id, _ = envelope.KeyIDString(key.Public())
	ki.algorithm, _ = envelope.Algorithm(key.Public())
	if der, err := x509.MarshalPKIXPublicKey(key.Public()); err == nil {
		ki.pemPublic = string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
	}
	return ki
}
