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
//
// The load is closed-loop: each publisher keeps at most Window messages
// in flight end to end (published but not yet received by every
// subscriber), so the figure is what the broker sustains, not how fast its
// queues overflow. A message not received within LossTimeout is counted as
// lost and its slot freed.
func Run(s Scenario) (Result, error) {
	if s.Window <= 0 {
		s.Window = 64
	}
	if s.PayloadSize < 24 {
		s.PayloadSize = 64
	}
	fanout := int64(len(s.Subscribers))
	type pending struct {
		left int64
		at   time.Time
	}
	var mu sync.Mutex
	inflight := make([]map[uint64]*pending, len(s.Publishers))
	for i := range inflight {
		inflight[i] = map[uint64]*pending{}
	}
	cond := sync.NewCond(&mu)
	var received atomic.Int64
	lat := make([]time.Duration, 0, 1<<16)
	var measuring atomic.Bool
	handler := func(_ mqtt.Client, m mqtt.Message) {
		p := m.Payload()
		if len(p) < 24 {
			return
		}
		now := time.Now()
		sentAt := int64(binary.BigEndian.Uint64(p))
		seq := binary.BigEndian.Uint64(p[8:])
		pub := int(binary.BigEndian.Uint64(p[16:]))
		mu.Lock()
		if measuring.Load() {
			received.Add(1)
			if len(lat) < cap(lat) || received.Load()%8 == 0 {
				lat = append(lat, time.Duration(now.UnixNano()-sentAt))
			}
		}
		if pub < len(inflight) {
			if e := inflight[pub][seq]; e != nil {
				if e.left--; e.left <= 0 {
					delete(inflight[pub], seq)
					cond.Broadcast()
				}
			}
		}
		mu.Unlock()
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
	// Wake waiting publishers now and then so lost messages time out.
	stopTick := make(chan struct{})
	go func() {
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-stopTick:
				return
			case <-t.C:
				mu.Lock()
				cond.Broadcast()
				mu.Unlock()
			}
		}
	}()
	var sent, lost atomic.Int64
	start := time.Now()
	stop := start.Add(s.Duration)
	var wg sync.WaitGroup
	for i, c := range pubs {
		wg.Add(1)
		go func(i int, c mqtt.Client) {
			defer wg.Done()
			topic := s.Topic(i)
			for seq := uint64(0); ; seq++ {
				mu.Lock()
				for len(inflight[i]) >= s.Window && time.Now().Before(stop) {
					for k, e := range inflight[i] {
						if time.Since(e.at) > LossTimeout {
							delete(inflight[i], k)
							lost.Add(1)
						}
					}
					if len(inflight[i]) >= s.Window {
						cond.Wait()
					}
				}
				if !time.Now().Before(stop) {
					mu.Unlock()
					return
				}
				now := time.Now()
				inflight[i][seq] = &pending{left: fanout, at: now}
				mu.Unlock()
				p := make([]byte, s.PayloadSize)
				binary.BigEndian.PutUint64(p, uint64(now.UnixNano()))
				binary.BigEndian.PutUint64(p[8:], seq)
				binary.BigEndian.PutUint64(p[16:], uint64(i))
				c.Publish(topic, s.QoS, false, p)
				sent.Add(1)
			}
		}(i, c)
	}
	wg.Wait()
	elapsed := time.Since(start)
	measuring.Store(false)
	close(stopTick)
	r := Result{Sent: sent.Load(), Received: received.Load()}
	r.MsgsPerSec = float64(r.Received) / elapsed.Seconds()
	mu.Lock()
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	if n := len(lat); n > 0 {
		r.P50 = lat[n/2]
		r.P99 = lat[n*99/100]
	}
	mu.Unlock()
	return r, nil
}

// LossTimeout is how long a message may take before it counts as lost.
const LossTimeout = 2 * time.Second

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
