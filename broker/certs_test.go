package broker

import (
	"crypto/tls"
	"fmt"
	"github.com/evergreen-edge/evergreen/services/kit/bustest"
	"sync"
	"testing"
	"time"

	pahov3 "github.com/eclipse/paho.mqtt.golang"
	"github.com/evergreen-edge/evergreen/certmgr"
)

// serialSeen records the server certificate serial a client's TLS
// handshake saw.
type serialSeen struct {
	mu     sync.Mutex
	serial string
}

func (s *serialSeen) get() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.serial
}

func (s *serialSeen) hook(o *pahov3.ClientOptions) {
	cfg := o.TLSConfig.Clone()
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.serial = cs.PeerCertificates[0].SerialNumber.Text(16)
		return nil
	}
	o.SetTLSConfig(cfg)
}

// certmgr renews the MQTT server certificate; the broker serves the new
// one to new connections at once while established ones carry on.
func TestServerCertificateRenewalWithoutRestart(t *testing.T) {
	s := newSuiteWith(t, suiteOptions{certmgr: certmgr.Options{ServerValidity: 3 * time.Second}})
	sensor, watcher := s.createDevice("sensor"), s.createDevice("watcher")
	s.deploy(group([]*device{sensor, watcher}, nil, sub{thingARN("sensor"), "ping", thingARN("watcher")}))

	var first serialSeen
	w, _, err := s.connectV3(watcher, "watcher", first.hook)
	if err != nil {
		t.Fatal(err)
	}
	w.subscribe(t, 0, "ping")
	old := first.get()
	if old == "" {
		t.Fatal("no server certificate seen")
	}

	var renewed string
	bustest.CheckFor(t, 20*time.Second, 100*time.Millisecond, func() error {
		var seen serialSeen
		c, _, err := s.connectV3(sensor, "sensor", seen.hook)
		if err != nil {
			return err
		}
		defer c.c.Disconnect(0)
		if seen.get() == old {
			return fmt.Errorf("new connections still get serial %s", old)
		}
		renewed = seen.get()
		return nil
	})
	s.logs.waitFor(t, "MQTT server certificate reloaded", "serial=")

	// The connection made under the old certificate is still up and
	// still served.
	if !w.c.IsConnected() {
		t.Fatal("the renewal dropped an established connection")
	}
	p := s.mustV3(sensor)
	p.publish(t, "ping", 0, "after renewal")
	w.in.expect(t, "ping", "after renewal")
	if renewed == old {
		t.Fatalf("serial %s unchanged", old)
	}
}
