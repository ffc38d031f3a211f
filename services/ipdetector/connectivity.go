package ipdetector

import (
	"net"
	"net/netip"
	"slices"
	"strconv"

	ipdetectorv1 "github.com/evergreen-edge/evergreen/proto/evergreen/ipdetector/v1"
	"github.com/evergreen-edge/evergreen/services/kit/config"
)

// InterfaceAddrs returns the addresses devices may reach the host at: those
// of every interface that is up and not a loopback, without loopback,
// multicast and IPv6 link-local addresses (they need a zone no device
// knows). IPv4 comes first, then IPv6, each in interface order, so the
// AUTOIP ids stay put while nothing changes.
func InterfaceAddrs() ([]netip.Addr, error) {
	ifs, err := net.Interfaces()
	if err != nil {
		return nil, err
	}
	var v4, v6 []netip.Addr
	for _, ifc := range ifs {
		if ifc.Flags&net.FlagUp == 0 || ifc.Flags&net.FlagLoopback != 0 {
			continue
		}
		addrs, err := ifc.Addrs()
		if err != nil {
			// An interface that vanished between the two calls.
			continue
		}
		for _, a := range addrs {
			n, ok := a.(*net.IPNet)
			if !ok {
				continue
			}
			ip, ok := netip.AddrFromSlice(n.IP)
			if !ok {
				continue
			}
			ip = ip.Unmap()
			if !usable(ip) {
				continue
			}
			if ip.Is4() {
				v4 = append(v4, ip)
			} else {
				v6 = append(v6, ip)
			}
		}
	}
	return dedupe(append(v4, v6...)), nil
}

func usable(ip netip.Addr) bool {
	return ip.IsValid() && !ip.IsLoopback() && !ip.IsUnspecified() && !ip.IsMulticast() &&
		!(ip.Is6() && ip.IsLinkLocalUnicast())
}

func dedupe(addrs []netip.Addr) []netip.Addr {
	out := addrs[:0]
	for _, a := range addrs {
		if !slices.Contains(out, a) {
			out = append(out, a)
		}
	}
	return out
}

// advertised narrows the detected addresses to those the MQTT server
// listens on: a server bound to one address is reachable there only (even
// a loopback one, for devices on the core itself); a wildcard or a host
// name listens on every address.
func advertised(detected []netip.Addr, mqttHost string) []netip.Addr {
	bound, err := netip.ParseAddr(mqttHost)
	if err != nil || bound.IsUnspecified() {
		return detected
	}
	return []netip.Addr{bound.Unmap().WithZone("")}
}

// buildConnectivity is what devices get: the manual entries of
// evergreen.connectivity first, in their order, then the detected
// addresses as AUTOIP_<ip>_<n> on the MQTT port.
func buildConnectivity(manual []config.ConnectivityEntry, detected []netip.Addr, mqttPort uint32) *ipdetectorv1.Connectivity {
	c := &ipdetectorv1.Connectivity{Info: make([]*ipdetectorv1.ConnectivityInfo, 0, len(manual)+len(detected))}
	for _, e := range manual {
		c.Info = append(c.Info, &ipdetectorv1.ConnectivityInfo{
			Id: e.ID, HostAddress: e.HostAddress, PortNumber: uint32(e.PortNumber), Metadata: e.Metadata,
		})
	}
	for i, a := range detected {
		c.Info = append(c.Info, &ipdetectorv1.ConnectivityInfo{
			Id:          config.AutoIPPrefix + a.String() + "_" + strconv.Itoa(i),
			HostAddress: a.String(),
			PortNumber:  mqttPort,
		})
	}
	return c
}

// sameConnectivity is proto.Equal for Connectivity by hand: the poll runs
// every 10 s for the daemon's life, and proto.Equal walks the messages by
// reflection, which kept about 1.7 MB of the binary's descriptor and
// reflection pages resident in an otherwise idle process.
func sameConnectivity(a, b *ipdetectorv1.Connectivity) bool {
	ai, bi := a.GetInfo(), b.GetInfo()
	if a == nil || b == nil || len(ai) != len(bi) {
		return a == nil && b == nil
	}
	for i := range ai {
		x, y := ai[i], bi[i]
		if x.GetId() != y.GetId() || x.GetHostAddress() != y.GetHostAddress() || x.GetPortNumber() != y.GetPortNumber() || x.GetMetadata() != y.GetMetadata() {
			return false
		}
	}
	return true
}

func hostAddresses(c *ipdetectorv1.Connectivity) []string {
	out := make([]string, 0, len(c.GetInfo()))
	for _, i := range c.GetInfo() {
		out = append(out, i.GetHostAddress())
	}
	return out
}
