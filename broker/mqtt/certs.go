package mqtt

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
)

// ServerCert is the MQTT server certificate in force. The TLS listener asks
// it for every handshake (tls.Config.GetCertificate), so a renewal takes
// effect for the next handshake while established connections keep the
// certificate they negotiated.
type ServerCert struct {
	certFile, keyFile string

	mu  sync.Mutex // serialises reloads
	cur atomic.Pointer[tls.Certificate]
	raw []byte // the chain file last loaded, to skip identical reloads
}

// LoadServerCert reads the certificate chain and key certmgr writes.
func LoadServerCert(certFile, keyFile string) (*ServerCert, error) {
	c := &ServerCert{certFile: certFile, keyFile: keyFile}
	if _, err := c.Reload(); err != nil {
		return nil, err
	}
	return c, nil
}

// Reload reads the files again; changed reports whether the certificate in
// force is now a different one. On error the old certificate stays.
func (c *ServerCert) Reload() (changed bool, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	chain, err := os.ReadFile(c.certFile)
	if err != nil {
		return false, err
	}
	key, err := os.ReadFile(c.keyFile)
	if err != nil {
		return false, err
	}
	if c.raw != nil && bytes.Equal(chain, c.raw) {
		return false, nil
	}
	pair, err := tls.X509KeyPair(chain, key)
	if err != nil {
		return false, fmt.Errorf("MQTT server certificate %s: %w", c.certFile, err)
	}
	if pair.Leaf == nil {
		if pair.Leaf, err = x509.ParseCertificate(pair.Certificate[0]); err != nil {
			return false, fmt.Errorf("MQTT server certificate %s: %w", c.certFile, err)
		}
	}
	c.cur.Store(&pair)
	c.raw = chain
	return true, nil
}

// GetCertificate is tls.Config.GetCertificate.
func (c *ServerCert) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return c.cur.Load(), nil
}

// Leaf returns the certificate in force.
func (c *ServerCert) Leaf() *x509.Certificate { return c.cur.Load().Leaf }

// TLSConfig is the server side of the device connections: TLS 1.2 or
// newer, a client certificate required but not verified by the TLS stack.
// The broker verifies it itself at CONNECT (package admission), where it
// can name the exact reason of a refusal and accept certificates certmgr
// registered as-is, whatever CA signed them.
func TLSConfig(c *ServerCert) *tls.Config {
	return &tls.Config{
		MinVersion:     tls.VersionTLS12,
		ClientAuth:     tls.RequireAnyClientCert,
		GetCertificate: c.GetCertificate,
	}
}
