package certmgr

import (
	"encoding/json"
	"errors"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	ipdetectorv1 "github.com/evergreen-edge/evergreen/proto/evergreen/ipdetector/v1"
	"github.com/evergreen-edge/evergreen/services/kit/atomicfile"
	"github.com/evergreen-edge/evergreen/services/kit/subjects"
	"github.com/nats-io/nats.go"
	"google.golang.org/protobuf/proto"
)

// Devices dial the core at the host addresses the ipdetector publishes
// (detected addresses and the manual entries of evergreen.connectivity), so
// the MQTT server certificate must name them all. certmgr's own interface
// scan already covers the detected addresses when both run on one host; the
// manual entries (DNS names, NAT addresses) and the ipdetector's addresses
// in another network namespace come only from the bus.
//
// The last set received is kept in DIR/data/certmgr/connectivity.json, so
// a restarted certmgr issues the same names without waiting for the next
// change (the ipdetector publishes only at its start and on changes).

// connectivityFile is the last connectivity host set, as JSON.
func connectivityFile(root string) string {
	return filepath.Join(root, "data", Name, "connectivity.json")
}

type connectivityRecord struct {
	HostAddresses []string `json:"hostAddresses"`
}

// loadConnectivityLocked reads the saved host set. The file is a cache of
// what the ipdetector says: a damaged one is logged and ignored.
func (s *Service) loadConnectivityLocked() {
	b, err := os.ReadFile(connectivityFile(s.env.Root.Dir()))
	if errors.Is(err, fs.ErrNotExist) {
		return
	}
	var rec connectivityRecord
	if err == nil {
		err = json.Unmarshal(b, &rec)
	}
	if err != nil {
		s.env.Log.Warn("ignoring the saved connectivity host addresses", "file", connectivityFile(s.env.Root.Dir()), "err", err)
		return
	}
	s.connHosts = s.connHosts[:0]
	for _, h := range rec.HostAddresses {
		if n, ok := certHostName(h); ok {
			s.connHosts = append(s.connHosts, n)
		}
	}
	s.connHosts = sortedSet(s.connHosts)
}

// followConnectivity subscribes to the ipdetector's connectivity events.
func (s *Service) followConnectivity() error {
	if s.env.Bus == nil {
		return nil
	}
	sub, err := s.env.Bus.Subscribe(subjects.IPConnectivity, s.onConnectivity)
	if err != nil {
		return err
	}
	s.connSub = sub
	return nil
}

// onConnectivity re-issues the server certificate when a host address of
// the connectivity info is not among its names.
func (s *Service) onConnectivity(m *nats.Msg) {
	var c ipdetectorv1.Connectivity
	if err := proto.Unmarshal(m.Data, &c); err != nil {
		s.env.Log.Warn("malformed connectivity event", "err", err)
		return
	}
	var hosts []string
	for _, info := range c.GetInfo() {
		n, ok := certHostName(info.GetHostAddress())
		if !ok {
			s.env.Log.Warn("connectivity host address is neither an IP address nor a DNS name; not put in the server certificate",
				"id", info.GetId(), "host_address", info.GetHostAddress())
			continue
		}
		hosts = append(hosts, n)
	}
	hosts = sortedSet(hosts)

	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped || s.server == nil {
		return
	}
	if !slices.Equal(hosts, s.connHosts) {
		s.connHosts = hosts
		b, _ := json.Marshal(connectivityRecord{HostAddresses: hosts})
		if err := atomicfile.WriteFile(connectivityFile(s.env.Root.Dir()), append(b, '\n'), 0o644); err != nil {
			s.env.Log.Error("save connectivity host addresses", "err", err)
		}
	}
	var missing []string
	for _, h := range hosts {
		if s.server.cert.VerifyHostname(h) != nil {
			missing = append(missing, h)
		}
	}
	if len(missing) == 0 {
		return
	}
	s.env.Log.Info("connectivity names a host the server certificate lacks", "hosts", missing)
	if _, err := s.issueServerLocked("connectivity changed"); err != nil {
		retry := 5 * time.Second
		s.env.Log.Error("re-issue MQTT server certificate for new connectivity", "err", err, "retry_in", retry)
		s.scheduleLocked(s.opts.Now().Add(retry))
	}
}

// certHostName normalises a host address for a certificate SAN: an IP
// address without zone (IPv4-mapped addresses unmapped), or a lower-case
// DNS name without trailing dot. ok is false for anything else.
func certHostName(h string) (string, bool) {
	h = strings.TrimSpace(h)
	if a, err := netip.ParseAddr(h); err == nil {
		return a.Unmap().WithZone("").String(), true
	}
	h = strings.ToLower(strings.TrimSuffix(h, "."))
	if h == "" || len(h) > 253 {
		return "", false
	}
	for _, label := range strings.Split(h, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return "", false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return "", false
			}
		}
	}
	return h, true
}

func sortedSet(xs []string) []string {
	slices.Sort(xs)
	return slices.Compact(xs)
}
