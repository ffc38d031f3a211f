package certmgr

import (
	"net"
	"slices"
	"testing"
	"time"

	"github.com/evergreen-edge/evergreen/certmgr/pki"
	certmgrv1 "github.com/evergreen-edge/evergreen/proto/evergreen/certmgr/v1"
	ipdetectorv1 "github.com/evergreen-edge/evergreen/proto/evergreen/ipdetector/v1"
	"github.com/evergreen-edge/evergreen/services/kit/subjects"
	"github.com/nats-io/nats.go"
	"google.golang.org/protobuf/proto"
)

// publishConnectivity sends a Connectivity event as the ipdetector does.
func publishConnectivity(t *testing.T, busURL string, infos ...*ipdetectorv1.ConnectivityInfo) {
	t.Helper()
	nc, err := nats.Connect(busURL)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	b, err := proto.Marshal(&ipdetectorv1.Connectivity{Info: infos})
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Publish(subjects.IPConnectivity, b); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
}

func info(id, host string) *ipdetectorv1.ConnectivityInfo {
	return &ipdetectorv1.ConnectivityInfo{Id: id, HostAddress: host, PortNumber: 8883}
}

// A connectivity event whose host addresses the server certificate already
// names changes nothing; one with a new address or DNS name re-issues the
// certificate with those names added to the ones it had, announced on the
// bus. A restarted certmgr keeps them without a new event.
func TestServerCertificateFollowsConnectivity(t *testing.T) {
	s := newSuite(t)
	events := s.subscribe(subjects.CertServerRenewed)
	s.start()
	var ev certmgrv1.ServerCertificateRenewed
	receive(t, events, &ev, 5*time.Second) // first issue
	first := readChain(t, s.root.ServerCert())[0]

	// Covered: loopback, localhost and an address of an interface.
	covered := []*ipdetectorv1.ConnectivityInfo{info("localhost_127.0.0.1_0", "127.0.0.1"), info("lh", "localhost")}
	if addrs, _ := net.InterfaceAddrs(); len(addrs) > 0 {
		if n, ok := addrs[len(addrs)-1].(*net.IPNet); ok && !n.IP.IsLinkLocalUnicast() {
			covered = append(covered, info("AUTOIP_"+n.IP.String()+"_0", n.IP.String()))
		}
	}
	publishConnectivity(t, s.busURL, covered...)
	// Not covered: a NAT address and a DNS name, plus garbage that is
	// skipped rather than put in a certificate.
	publishConnectivity(t, s.busURL, append(covered,
		info("nat", "203.0.113.7"), info("dns", "Gateway.Example.NET."), info("junk", "not a host!"))...)

	// Events are handled in order: had the covered one re-issued, this
	// event would name a certificate without the new names.
	receive(t, events, &ev, 5*time.Second)
	leaf := readChain(t, s.root.ServerCert())[0]
	if ev.GetInfo().GetSerial() != pki.Serial(leaf) || pki.Serial(leaf) == pki.Serial(first) {
		t.Fatalf("event serial %s, on disk %s, first %s", ev.GetInfo().GetSerial(), pki.Serial(leaf), pki.Serial(first))
	}
	for _, h := range []string{"203.0.113.7", "gateway.example.net", "127.0.0.1", "localhost"} {
		if err := leaf.VerifyHostname(h); err != nil {
			t.Errorf("re-issued certificate does not name %s: %v", h, err)
		}
	}
	for _, ip := range first.IPAddresses {
		if err := leaf.VerifyHostname(ip.String()); err != nil {
			t.Errorf("re-issued certificate lost %s", ip)
		}
	}
	if slices.Contains(leaf.DNSNames, "not a host!") {
		t.Error("an invalid host address became a SAN")
	}
	select {
	case m := <-events:
		t.Fatalf("a second renewal followed: %s", m.Subject)
	case <-time.After(300 * time.Millisecond):
	}

	// The same event again: already covered, nothing happens.
	publishConnectivity(t, s.busURL, info("nat", "203.0.113.7"), info("dns", "gateway.example.net"))
	select {
	case <-events:
		t.Fatal("an event whose hosts are covered re-issued the certificate")
	case <-time.After(300 * time.Millisecond):
	}

	s.stop()
	s.start()
	if got := readChain(t, s.root.ServerCert())[0]; pki.Serial(got) != pki.Serial(leaf) {
		t.Fatalf("restart re-issued the certificate (%s -> %s): the connectivity names were forgotten", pki.Serial(leaf), pki.Serial(got))
	}
}

func TestCertHostName(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		ok       bool
	}{
		{"192.168.1.5", "192.168.1.5", true},
		{"::ffff:10.0.0.1", "10.0.0.1", true},
		{"fe80::1%eth0", "fe80::1", true},
		{"GW.example.com.", "gw.example.com", true},
		{"gw_1.lan", "gw_1.lan", true},
		{"", "", false},
		{"a..b", "", false},
		{"-a.b", "", false},
		{"http://x", "", false},
		{"a b", "", false},
	} {
		got, ok := certHostName(tc.in)
		if got != tc.want || ok != tc.ok {
			t.Errorf("certHostName(%q) = %q, %v; want %q, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}
