// Package loadgen drives MQTT load over mutual TLS with real paho clients
// and measures delivered messages per second and end-to-end latency from
// timestamps carried in the payloads. It is the engine of the broker
// scenarios of `make bench`, run against Evergreen and against mosquitto
// in the same run.
package loadgen

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
)

// Device is a client identity: its thing name doubles as MQTT client id.
type Device struct {
	Name string
	TLS  *tls.Config
}

// LoadDevice reads DIR/NAME.cert.pem and DIR/NAME.key.pem (as written by
// `ggctl device create`) and trusts caFile for the server.
func LoadDevice(dir, name, caFile string) (Device, error) {
	cert, err := tls.LoadX509KeyPair(filepath.Join(dir, name+".cert.pem"), filepath.Join(dir, name+".key.pem"))
	if err != nil {
		return Device{}, err
	}
	ca, err := os.ReadFile(caFile)
	if err != nil {
		return Device{}, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		return Device{}, fmt.Errorf("%s: no certificate", caFile)
	}
	return Device{Name: name, TLS: &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}, RootCAs: pool, ServerName: "localhost"}}, nil
}

// Scenario is one load run.
type Scenario struct {
	Addr string // host:port of the broker
	QoS  byte
	// Publishers send to Topic(i); Subscribers subscribe to Filter.
	Publishers  []Device
	Subscribers []Device
	Topic       func(i int) string
	Filter      string
	Duration    time.Duration
	// Window bounds unacknowledged publishes per publisher.
	Window int
	// PayloadSize is at least 16 (timestamp and sequence).
	PayloadSize int
}

// Result is what a run measured.
type Result struct {
	Sent, Received  int64
	MsgsPerSec      float64
	P50, P99        time.Duration
	ConnectFailures int
}

func (r Result) String() string {
	return fmt.Sprintf("%9.0f msg/s  p50 %8s  p99 %8s  (sent %d, received %d)", r.MsgsPerSec, r.P50.Round(time.Microsecond), r.P99.Round(time.Microsecond), r.Sent, r.Received)
}

func connect(addr string, d Device, onConn func(mqtt.Client)) (mqtt.Client, error) {
	o := mqtt.NewClientOptions().AddBroker("ssl://" + addr).SetClientID(d.Name).SetTLSConfig(d.TLS).
		SetCleanSession(true).SetAutoReconnect(false).SetKeepAlive(60 * time.Second).
		SetConnectTimeout(10 * time.Second).SetWriteTimeout(10 * time.Second).SetOrderMatters(false).
		SetMaxResumePubInFlight(0)
	if onConn != nil {
		o.SetOnConnectHandler(onConn)
	}
	c := mqtt.NewClient(o)
	t := c.Connect()
	if !t.WaitTimeout(15*time.Second) || t.Error() != nil {
		return nil, fmt.Errorf("connect %s as %s: %v", addr, d.Name, t.Error())
	}
	return c, nil
}

// Run executes s and returns what was delivered to the subscribers.
func Run(s Scenario) (Result, error) {
	if s.Window <= 0 {
		s.Window = 64
	}
	if s.PayloadSize < 16 {
		s.PayloadSize = 64
	}
	var received atomic.Int64
	var latMu sync.Mutex
	lat := make([]time.Duration, 0, 1<<16)
	sample := uint64(0)
	var measuring atomic.Bool
	handler := func(_ mqtt.Client, m mqtt.Message) {
		p := m.Payload()
		if len(p) < 16 || !measuring.Load() {
			return
		}
		received.Add(1)
		sent := int64(binary.BigEndian.Uint64(p))
		d := time.Duration(time.Now().UnixNano() - sent)
		// Keep every 8th sample to bound memory on long runs.
		if atomic.AddUint64(&sample, 1)%8 == 0 {
			latMu.Lock()
			lat = append(lat, d)
			latMu.Unlock()
		}
	}
	var subs []mqtt.Client
	defer func() {
		for _, c := range subs {
			c.Disconnect(0)
		}
	}()
	for _, d := range s.Subscribers {
		c, err := connect(s.Addr, d, nil)
		if err != nil {
			return Result{}, err
		}
		if t := c.Subscribe(s.Filter, s.QoS, handler); !t.WaitTimeout(10*time.Second) || t.Error() != nil {
			return Result{}, fmt.Errorf("subscribe %s as %s: %v", s.Filter, d.Name, t.Error())
		}
		subs = append(subs, c)
	}
	var pubs []mqtt.Client
	defer func() {
		for _, c := range pubs {
			c.Disconnect(0)
		}
	}()
	for _, d := range s.Publishers {
		c, err := connect(s.Addr, d, nil)
		if err != nil {
			return Result{}, err
		}
		pubs = append(pubs, c)
	}
	time.Sleep(200 * time.Millisecond) // subscriptions settle
	measuring.Store(true)
	var sent atomic.Int64
	stop := time.Now().Add(s.Duration)
	var wg sync.WaitGroup
	for i, c := range pubs {
		wg.Add(1)
		go func(i int, c mqtt.Client) {
			defer wg.Done()
			topic := s.Topic(i)
			window := make([]mqtt.Token, 0, s.Window)
			for seq := uint64(0); time.Now().Before(stop); seq++ {
				p := make([]byte, s.PayloadSize)
				binary.BigEndian.PutUint64(p, uint64(time.Now().UnixNano()))
				binary.BigEndian.PutUint64(p[8:], seq)
				window = append(window, c.Publish(topic, s.QoS, false, p))
				sent.Add(1)
				if len(window) == cap(window) {
					for _, t := range window {
						t.WaitTimeout(5 * time.Second)
					}
					window = window[:0]
				}
			}
			for _, t := range window {
				t.WaitTimeout(5 * time.Second)
			}
		}(i, c)
	}
	wg.Wait()
	elapsed := s.Duration
	// Let messages in flight arrive, but count throughput over the send
	// window plus the drain actually needed.
	drainStart := time.Now()
	last := received.Load()
	for time.Since(drainStart) < 3*time.Second {
		time.Sleep(100 * time.Millisecond)
		if n := received.Load(); n == last {
			break
		} else {
			last = n
		}
	}
	elapsed += time.Since(drainStart)
	measuring.Store(false)
	r := Result{Sent: sent.Load(), Received: received.Load()}
	r.MsgsPerSec = float64(r.Received) / elapsed.Seconds()
	latMu.Lock()
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	if n := len(lat); n > 0 {
		r.P50 = lat[n/2]
		r.P99 = lat[n*99/100]
	}
	latMu.Unlock()
	return r, nil
}

// ConnectIdle connects every device and leaves the connections idle; the
// connections made so far are returned with the first error.
func ConnectIdle(addr string, devs []Device) ([]mqtt.Client, error) {
	conns := make([]mqtt.Client, 0, len(devs))
	for _, d := range devs {
		c, err := connect(addr, d, nil)
		if err != nil {
			return conns, err
		}
		conns = append(conns, c)
	}
	return conns, nil
}

// DisconnectAll closes connections from ConnectIdle.
func DisconnectAll(conns []mqtt.Client) {
	for _, c := range conns {
		c.Disconnect(0)
	}
}
