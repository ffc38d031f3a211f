package cloud

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/evergreen-edge/evergreen/services/kit/config"
	"github.com/evergreen-edge/evergreen/services/kit/errdefs"
	"github.com/evergreen-edge/evergreen/services/kit/layout"
)

// alpnMQTT lets AWS IoT take MQTT with client certificates on port 443.
const alpnMQTT = "x-amzn-mqtt-ca"

// credentials are the files of the cloud connection's mutual TLS.
type credentials struct {
	ca        string // "" means the system roots (AWS IoT's Amazon roots are there)
	cert, key string
	caKey     string // config key the CA came from, for messages
	certKey   string
	keyKey    string
}

// credentialsFor picks the files v1 would: crypto.caPath and
// crypto.principals.IoTCertificate; without a crypto block the legacy
// coreThing paths (relative to DIR/certs); the core certificate certmgr
// wrote where neither names one.
func credentialsFor(cfg *config.Config, root layout.Root) (credentials, error) {
	c := credentials{cert: root.CoreCert(), key: root.CoreKey(), certKey: "DIR/certs/core.cert.pem", keyKey: "DIR/certs/core.key.pem"}
	if cr := cfg.Crypto; cr != nil {
		if cr.CaPath != "" {
			p, err := filePath("crypto.caPath", cr.CaPath)
			if err != nil {
				return c, err
			}
			c.ca, c.caKey = p, "crypto.caPath"
		}
		if ic := cr.Principals.IoTCertificate; ic != nil {
			cert, err := filePath("crypto.principals.IoTCertificate.certificatePath", ic.CertificatePath)
			if err != nil {
				return c, err
			}
			key, err := filePath("crypto.principals.IoTCertificate.privateKeyPath", ic.PrivateKeyPath)
			if err != nil {
				return c, err
			}
			c.cert, c.key = cert, key
			c.certKey, c.keyKey = "crypto.principals.IoTCertificate.certificatePath", "crypto.principals.IoTCertificate.privateKeyPath"
		}
		return c, nil
	}
	legacy := func(p string) string {
		if filepath.IsAbs(p) {
			return p
		}
		return filepath.Join(root.CertsDir(), p)
	}
	if p := cfg.CoreThing.CaPath; p != "" {
		c.ca, c.caKey = legacy(p), "coreThing.caPath"
	}
	if cfg.CoreThing.CertPath != "" && cfg.CoreThing.KeyPath != "" {
		c.cert, c.key = legacy(cfg.CoreThing.CertPath), legacy(cfg.CoreThing.KeyPath)
		c.certKey, c.keyKey = "coreThing.certPath", "coreThing.keyPath"
	}
	return c, nil
}

func filePath(key, uri string) (string, error) {
	if strings.HasPrefix(uri, "pkcs11:") {
		return "", errdefs.InvalidArgument(key, "pkcs11: URIs are not supported for the cloud connection; use a file:/// URI")
	}
	p, ok := config.FileURIPath(uri)
	if !ok {
		return "", errdefs.InvalidArgument(key, "%q is not a file:/// URI", uri)
	}
	return p, nil
}

// clientTLS builds the mutual-TLS configuration. The client certificate is
// read again for every connection, so one that certmgr renews is used from
// the next reconnect on.
func clientTLS(c credentials, host string, port int) (*tls.Config, error) {
	conf := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: host}
	if c.ca != "" {
		pem, err := os.ReadFile(c.ca)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", c.caKey, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, errdefs.InvalidArgument(c.caKey, "%s holds no PEM certificate", c.ca)
		}
		conf.RootCAs = pool
	}
	load := func() (*tls.Certificate, error) {
		kp, err := tls.LoadX509KeyPair(c.cert, c.key)
		if err != nil {
			return nil, fmt.Errorf("core certificate (%s, %s): %w", c.certKey, c.keyKey, err)
		}
		return &kp, nil
	}
	if _, err := load(); err != nil {
		return nil, err
	}
	conf.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return load() }
	if port == 443 {
		conf.NextProtos = []string{alpnMQTT}
	}
	return conf, nil
}

// dialer opens the TCP connection to the cloud, directly or through the
// HTTP CONNECT proxy of coreThing.networkProxy.
type dialer struct {
	proxy      *url.URL
	user, pass string
	noProxy    []string
}

func newDialer(np *config.NetworkProxy) (*dialer, error) {
	d := &dialer{}
	if np == nil || np.Proxy.URL == "" {
		return d, nil
	}
	u, err := url.Parse(np.Proxy.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, errdefs.InvalidArgument("coreThing.networkProxy.proxy.url", "%q is not http://host[:port] or https://host[:port]", np.Proxy.URL)
	}
	d.proxy, d.user, d.pass = u, np.Proxy.Username, np.Proxy.Password
	if u.User != nil && d.user == "" {
		d.user = u.User.Username()
		d.pass, _ = u.User.Password()
	}
	for _, a := range strings.Split(np.NoProxyAddresses, ",") {
		if a = strings.ToLower(strings.TrimSpace(a)); a != "" {
			d.noProxy = append(d.noProxy, a)
		}
	}
	return d, nil
}

// bypass reports whether host is in noProxyAddresses: "*", an exact host or
// IP, a domain (example.com or .example.com covers its subdomains) or a
// CIDR block.
func (d *dialer) bypass(host string) bool {
	host = strings.ToLower(host)
	ip := net.ParseIP(host)
	for _, a := range d.noProxy {
		switch {
		case a == "*" || a == host:
			return true
		case ip != nil && strings.Contains(a, "/"):
			if _, n, err := net.ParseCIDR(a); err == nil && n.Contains(ip) {
				return true
			}
		case ip == nil && strings.HasSuffix(host, "."+strings.TrimPrefix(a, ".")):
			return true
		}
	}
	return false
}

func (d *dialer) dial(ctx context.Context, addr string) (net.Conn, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	var nd net.Dialer
	if d.proxy == nil || d.bypass(host) {
		return nd.DialContext(ctx, "tcp", addr)
	}
	proxyAddr := d.proxy.Host
	if d.proxy.Port() == "" {
		port := "80"
		if d.proxy.Scheme == "https" {
			port = "443"
		}
		proxyAddr = net.JoinHostPort(d.proxy.Hostname(), port)
	}
	conn, err := nd.DialContext(ctx, "tcp", proxyAddr)
	if err != nil {
		return nil, fmt.Errorf("proxy %s: %w", proxyAddr, err)
	}
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	if d.proxy.Scheme == "https" {
		tc := tls.Client(conn, &tls.Config{MinVersion: tls.VersionTLS12, ServerName: d.proxy.Hostname()})
		if err := tc.HandshakeContext(ctx); err != nil {
			conn.Close()
			return nil, fmt.Errorf("proxy %s: %w", proxyAddr, err)
		}
		conn = tc
	}
	req := "CONNECT " + addr + " HTTP/1.1\r\nHost: " + addr + "\r\n"
	if d.user != "" {
		req += "Proxy-Authorization: Basic " + base64.StdEncoding.EncodeToString([]byte(d.user+":"+d.pass)) + "\r\n"
	}
	if _, err := conn.Write([]byte(req + "\r\n")); err != nil {
		conn.Close()
		return nil, fmt.Errorf("proxy %s: %w", proxyAddr, err)
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("proxy %s: %w", proxyAddr, err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		conn.Close()
		return nil, fmt.Errorf("proxy %s refused CONNECT %s: %s", proxyAddr, addr, resp.Status)
	}
	conn.SetDeadline(time.Time{})
	if br.Buffered() > 0 {
		return &bufferedConn{Conn: conn, r: br}, nil
	}
	return conn, nil
}

// bufferedConn keeps bytes the proxy sent right after its answer.
type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *bufferedConn) Read(p []byte) (int, error) { return c.r.Read(p) }
