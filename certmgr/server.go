package certmgr

import (
	"context"
	"crypto/x509"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"time"

	"github.com/evergreen-edge/evergreen/certmgr/pki"
	certmgrv1 "github.com/evergreen-edge/evergreen/proto/evergreen/certmgr/v1"
	"github.com/evergreen-edge/evergreen/services/kit/errdefs"
	"github.com/evergreen-edge/evergreen/services/kit/subjects"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// serverCert is the MQTT server certificate on disk.
type serverCert struct {
	cert     *x509.Certificate
	chainPEM []byte
	keyPEM   []byte
	renewAt  time.Time
}

func (s *Service) serverValidity() time.Duration {
	if s.opts.ServerValidity > 0 {
		return s.opts.ServerValidity
	}
	return time.Duration(s.env.Config.Evergreen.Certmgr.ServerCertValidityDays) * day
}

// wantedNames are the names the MQTT server certificate must carry now:
// the configured host names, localhost, every address of every interface
// and the host addresses of the ipdetector's connectivity info, so devices
// may dial the core by any of them.
func (s *Service) wantedNames() (dns []string, ips []net.IP) {
	dns = []string{"localhost"}
	addrs := []netip.Addr{netip.MustParseAddr("127.0.0.1")}
	for _, h := range slices.Concat(s.env.Config.Evergreen.Certmgr.HostNames, s.connHosts) {
		if a, err := netip.ParseAddr(h); err == nil {
			addrs = append(addrs, a)
		} else {
			dns = append(dns, h)
		}
	}
	ifAddrs, err := net.InterfaceAddrs()
	if err != nil {
		s.env.Log.Warn("list interface addresses", "err", err)
	}
	for _, a := range ifAddrs {
		var ip net.IP
		switch v := a.(type) {
		case *net.IPNet:
			ip = v.IP
		case *net.IPAddr:
			ip = v.IP
		}
		if na, ok := netip.AddrFromSlice(ip); ok {
			addrs = append(addrs, na)
		}
	}
	slices.Sort(dns)
	dns = slices.Compact(dns)
	for i, a := range addrs {
		addrs[i] = a.Unmap().WithZone("")
	}
	slices.SortFunc(addrs, func(a, b netip.Addr) int { return a.Compare(b) })
	addrs = slices.Compact(addrs)
	for _, a := range addrs {
		ips = append(ips, net.IP(a.AsSlice()))
	}
	return dns, ips
}

// sameNames reports whether c carries exactly the names dns and ips.
func sameNames(c *x509.Certificate, dns []string, ips []net.IP) bool {
	have := slices.Clone(c.DNSNames)
	slices.Sort(have)
	if !slices.Equal(slices.Compact(have), dns) {
		return false
	}
	norm := func(list []net.IP) []string {
		out := make([]string, 0, len(list))
		for _, ip := range list {
			if a, ok := netip.AddrFromSlice(ip); ok {
				out = append(out, a.Unmap().String())
			}
		}
		slices.Sort(out)
		return slices.Compact(out)
	}
	return slices.Equal(norm(c.IPAddresses), norm(ips))
}

// startServerCert adopts the server certificate on disk when it is still
// good, otherwise issues one at once, and arms the renewal timer.
func (s *Service) startServerCert(now time.Time) error {
	root := s.env.Root
	cur, reason := s.readServerCert()
	if cur != nil {
		s.server = cur
		reason = s.renewReasonLocked(now)
	}
	if reason == "" {
		s.scheduleLocked(cur.renewAt)
		return nil
	}
	s.server = nil
	if _, err := s.issueServerLocked(reason); err != nil {
		return fmt.Errorf("MQTT server certificate %s: %w", root.ServerCert(), err)
	}
	return nil
}

// readServerCert loads the server certificate on disk; when it cannot be
// used it returns why instead.
func (s *Service) readServerCert() (*serverCert, string) {
	root := s.env.Root
	chainPEM, err := os.ReadFile(root.ServerCert())
	if err != nil {
		if os.IsNotExist(err) {
			return nil, "first issue"
		}
		return nil, err.Error()
	}
	keyPEM, err := os.ReadFile(root.ServerKey())
	if err != nil {
		return nil, err.Error()
	}
	certs, err := pki.ParseCerts(chainPEM)
	if err != nil {
		return nil, "certificate does not parse: " + err.Error()
	}
	key, err := pki.ParseKey(keyPEM)
	if err != nil {
		return nil, "key does not parse: " + err.Error()
	}
	leaf := certs[0]
	switch {
	case !pki.KeyMatches(leaf, key):
		return nil, "key does not match the certificate"
	case leaf.CheckSignatureFrom(s.groupCA.Cert) != nil:
		return nil, "not signed by the group CA"
	case s.serverKey != nil && !pki.SamePublicKey(leaf.PublicKey, s.serverKey.Public()):
		return nil, "MQTTServerCertificate key changed"
	case s.serverKey == nil && pki.AlgorithmOf(leaf.PublicKey) != s.alg:
		return nil, "keyAlgorithm changed"
	}
	return &serverCert{cert: leaf, chainPEM: chainPEM, keyPEM: keyPEM, renewAt: renewTime(leaf, s.opts.RenewFraction)}, ""
}

// renewReasonLocked says why the current server certificate must be
// replaced now, or "".
func (s *Service) renewReasonLocked(now time.Time) string {
	if s.server == nil {
		return "no certificate"
	}
	if !now.Before(s.server.renewAt) {
		return "renewal due"
	}
	dns, ips := s.wantedNames()
	if !sameNames(s.server.cert, dns, ips) {
		return "host names or addresses changed"
	}
	return ""
}

// issueServerLocked issues a server certificate, writes it, arms the timer
// for its renewal and announces it on the bus.
func (s *Service) issueServerLocked(reason string) (*serverCert, error) {
	now := s.opts.Now()
	key := s.serverKey
	if key == nil {
		var err error
		if key, err = pki.GenerateKey(s.alg); err != nil {
			return nil, err
		}
	}
	dns, ips := s.wantedNames()
	cert, err := pki.Issue(pki.Template{
		CommonName:  s.env.Config.CoreThingName(),
		DNSNames:    dns,
		IPAddresses: ips,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		Validity:    s.serverValidity(),
	}, key, s.groupCA, now)
	if err != nil {
		return nil, err
	}
	keyPEM, err := pki.EncodeKey(key)
	if err != nil {
		return nil, err
	}
	chainPEM := append(pki.EncodeCert(cert), s.groupPEM...)
	if err := writePair(s.env.Root.ServerCert(), s.env.Root.ServerKey(), chainPEM, keyPEM); err != nil {
		return nil, internal(err)
	}
	s.server = &serverCert{cert: cert, chainPEM: chainPEM, keyPEM: keyPEM, renewAt: renewTime(cert, s.opts.RenewFraction)}
	s.scheduleLocked(s.server.renewAt)
	s.env.Log.Info("issued MQTT server certificate", "reason", reason, "serial", pki.Serial(cert),
		"expires", cert.NotAfter, "renew_at", s.server.renewAt, "dns", dns, "ips", len(ips))
	s.publishLocked(subjects.CertServerRenewed, &certmgrv1.ServerCertificateRenewed{Info: certInfo(cert, now)})
	return s.server, nil
}

// scheduleLocked arms the one renewal timer for at (or earlier, see
// maxTimerSleep).
func (s *Service) scheduleLocked(at time.Time) {
	if s.stopped {
		return
	}
	d := min(max(at.Sub(s.opts.Now()), 0), maxTimerSleep)
	if s.timer == nil {
		s.timer = time.AfterFunc(d, s.onTimer)
		return
	}
	s.timer.Reset(d)
}

func (s *Service) onTimer() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return
	}
	now := s.opts.Now()
	reason := s.renewReasonLocked(now)
	if reason == "" {
		s.scheduleLocked(s.server.renewAt)
		return
	}
	if _, err := s.issueServerLocked(reason); err != nil {
		retry := min(max(s.server.cert.NotAfter.Sub(now)/10, 5*time.Second), 5*time.Minute)
		s.env.Log.Error("renew MQTT server certificate", "err", err, "retry_in", retry)
		s.scheduleLocked(now.Add(retry))
	}
}

func (s *Service) serverProto(sc *serverCert) *certmgrv1.ServerCertificate {
	out := &certmgrv1.ServerCertificate{
		ChainPem: string(sc.chainPEM),
		KeyPem:   string(sc.keyPEM),
		Info:     certInfo(sc.cert, s.opts.Now()),
		DnsNames: slices.Clone(sc.cert.DNSNames),
		RenewAt:  timestamppb.New(sc.renewAt),
	}
	for _, ip := range sc.cert.IPAddresses {
		out.IpAddresses = append(out.IpAddresses, ip.String())
	}
	return out
}

// GetServerCertificate returns the current MQTT server certificate chain
// and key.
func (s *Service) GetServerCertificate(_ context.Context, _ *certmgrv1.GetServerCertificateRequest, _ ...grpc.CallOption) (*certmgrv1.ServerCertificate, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.server == nil {
		return nil, fmt.Errorf("no MQTT server certificate issued yet: %w", errdefs.ErrUnavailable)
	}
	return s.serverProto(s.server), nil
}

// RotateServerCertificate issues a new MQTT server certificate now.
func (s *Service) RotateServerCertificate(_ context.Context, _ *certmgrv1.RotateServerCertificateRequest, _ ...grpc.CallOption) (*certmgrv1.ServerCertificate, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.readyLocked(); err != nil {
		return nil, err
	}
	sc, err := s.issueServerLocked("rotation requested")
	if err != nil {
		return nil, internal(err)
	}
	return s.serverProto(sc), nil
}
