package ipdetector_test

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"testing"
	"time"

	ipdetectorv1 "github.com/evergreen-edge/evergreen/proto/evergreen/ipdetector/v1"
	"github.com/evergreen-edge/evergreen/services/ipdetector"
	"github.com/evergreen-edge/evergreen/services/kit/config"
	"google.golang.org/protobuf/proto"
)

func infos(c *ipdetectorv1.Connectivity) [][4]string {
	var out [][4]string
	for _, i := range c.GetInfo() {
		out = append(out, [4]string{i.GetId(), i.GetHostAddress(), strconv.Itoa(int(i.GetPortNumber())), i.GetMetadata()})
	}
	return out
}

// The connectivity info is published once at start and again whenever
// the addresses change, manual entries first, detected ones as
// AUTOIP_<ip>_<n> on the MQTT port; GetConnectivity on the socket returns
// the same.
func TestConnectivityPublished(t *testing.T) {
	s := newSuite(t)
	addrs := &addrList{}
	addrs.set("192.0.2.10", "2001:db8::10")
	s.opts = ipdetector.Options{Addrs: addrs.get, PollInterval: 20 * time.Millisecond}
	s.cfg.Evergreen.Connectivity = []config.ConnectivityEntry{
		{ID: "localIP_10.1.1.1", HostAddress: "10.1.1.1", PortNumber: 443, Metadata: "port forward"},
	}
	events := connectivityEvents(t, s.busURL)
	s.start()
	port := strconv.Itoa(mqttPort)

	first := nextConnectivity(t, events)
	want := [][4]string{
		{"localIP_10.1.1.1", "10.1.1.1", "443", "port forward"},
		{"AUTOIP_192.0.2.10_0", "192.0.2.10", port, ""},
		{"AUTOIP_2001:db8::10_1", "2001:db8::10", port, ""},
	}
	if got := infos(first); !slices.Equal(got, want) {
		t.Fatalf("first connectivity %v\nwant %v", got, want)
	}
	api := ipdetectorv1.NewIPDetectorClient(s.dial(ipdetector.Name))
	got, err := api.GetConnectivity(context.Background(), &ipdetectorv1.GetConnectivityRequest{})
	if err != nil || !proto.Equal(got, first) {
		t.Fatalf("GetConnectivity = %v, %v; want %v", got, err, first)
	}

	// Unchanged addresses publish nothing; a change publishes at once.
	select {
	case c := <-events:
		t.Fatalf("published without a change: %v", infos(c))
	case <-time.After(200 * time.Millisecond):
	}
	addrs.set("198.51.100.7", "192.0.2.10")
	next := nextConnectivity(t, events)
	want = [][4]string{
		{"localIP_10.1.1.1", "10.1.1.1", "443", "port forward"},
		{"AUTOIP_198.51.100.7_0", "198.51.100.7", port, ""},
		{"AUTOIP_192.0.2.10_1", "192.0.2.10", port, ""},
	}
	if got := infos(next); !slices.Equal(got, want) {
		t.Fatalf("after the change %v\nwant %v", got, want)
	}
	checkFor(t, waitLimit, 10*time.Millisecond, func() error {
		got, err := api.GetConnectivity(context.Background(), &ipdetectorv1.GetConnectivityRequest{})
		if err != nil {
			return err
		}
		if !proto.Equal(got, next) {
			return fmt.Errorf("GetConnectivity %v, want %v", infos(got), infos(next))
		}
		return nil
	})
}

// With autoDetect off only the manual entries are offered; an MQTT server
// bound to one address is offered at that address alone.
func TestConnectivityAutoDetectAndBinding(t *testing.T) {
	t.Run("autoDetect off", func(t *testing.T) {
		s := newSuite(t)
		s.cfg.Evergreen.IPDetector.AutoDetect = false
		s.cfg.Evergreen.Connectivity = []config.ConnectivityEntry{{ID: "lan", HostAddress: "gw.lan", PortNumber: 8883}}
		events := connectivityEvents(t, s.busURL)
		s.start()
		if got, want := infos(nextConnectivity(t, events)), [][4]string{{"lan", "gw.lan", "8883", ""}}; !slices.Equal(got, want) {
			t.Fatalf("connectivity %v, want %v", got, want)
		}
	})
	t.Run("bound MQTT server", func(t *testing.T) {
		s := newSuite(t)
		s.cfg.Evergreen.Listen.MQTT = "127.0.0.1:0"
		events := connectivityEvents(t, s.busURL)
		s.start()
		_, port, _ := net.SplitHostPort(s.ipd.Env.Endpoints.MQTT)
		if got, want := infos(nextConnectivity(t, events)), [][4]string{{"AUTOIP_127.0.0.1_0", "127.0.0.1", port, ""}}; !slices.Equal(got, want) {
			t.Fatalf("connectivity %v, want %v", got, want)
		}
	})
}

// The real detection offers every address of every interface that is up
// and not a loopback, except IPv6 link-local ones, IPv4 first.
func TestInterfaceAddrs(t *testing.T) {
	got, err := ipdetector.InterfaceAddrs()
	if err != nil {
		t.Fatal(err)
	}
	ifs, err := net.Interfaces()
	if err != nil {
		t.Fatal(err)
	}
	var want []netip.Addr
	for _, ifc := range ifs {
		as, _ := ifc.Addrs()
		for _, a := range as {
			ip, _ := netip.AddrFromSlice(a.(*net.IPNet).IP)
			ip = ip.Unmap()
			up := ifc.Flags&net.FlagUp != 0 && ifc.Flags&net.FlagLoopback == 0
			if up && !ip.IsLoopback() && !(ip.Is6() && ip.IsLinkLocalUnicast()) && !slices.Contains(want, ip) {
				want = append(want, ip)
			}
		}
	}
	for _, a := range got {
		if !slices.Contains(want, a) {
			t.Errorf("offered %s, which no up non-loopback interface has (or is link-local IPv6)", a)
		}
	}
	for _, a := range want {
		if !slices.Contains(got, a) {
			t.Errorf("address %s of an interface is not offered", a)
		}
	}
	for i := 1; i < len(got); i++ {
		if got[i-1].Is6() && got[i].Is4() {
			t.Fatalf("IPv4 %s after IPv6 %s: %v", got[i], got[i-1], got)
		}
	}
	if len(want) == 0 {
		t.Log("this host has no non-loopback address; only the empty case was checked")
	}
}
