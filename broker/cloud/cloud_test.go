package cloud

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	brokerv1 "github.com/evergreen-edge/evergreen/proto/evergreen/broker/v1"
	"github.com/evergreen-edge/evergreen/services/kit/config"
	"github.com/evergreen-edge/evergreen/services/kit/errdefs"
	"github.com/evergreen-edge/evergreen/services/kit/layout"
)

// testLogger logs through t until the test ends.
func testLogger(t testing.TB) *slog.Logger {
	w := &testWriter{t: t}
	t.Cleanup(func() {
		w.mu.Lock()
		w.done = true
		w.mu.Unlock()
	})
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

type testWriter struct {
	t    testing.TB
	mu   sync.Mutex
	done bool
}

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimSpace(string(p)))
	}
	return len(p), nil
}

func startCloud(t testing.TB, c *Cloud) {
	t.Helper()
	if err := c.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func waitConnected(t testing.TB, c *Cloud) {
	t.Helper()
	checkFor(t, 15*time.Second, 10*time.Millisecond, func() error {
		if st := c.Status(); st.State != brokerv1.CloudState_CLOUD_STATE_CONNECTED {
			return fmt.Errorf("cloud state %v, last error %q", st.State, st.LastError)
		}
		return nil
	})
}

// waitDrained waits until every queued message has been acked by the cloud.
func waitDrained(t testing.TB, c *Cloud, total time.Duration) {
	t.Helper()
	checkFor(t, total, 10*time.Millisecond, func() error {
		if st := c.Status(); st.QueueMessages != 0 || st.InFlight != 0 {
			return fmt.Errorf("%d messages still queued, %d in flight (state %v, last error %q)", st.QueueMessages, st.InFlight, st.State, st.LastError)
		}
		return nil
	})
}

// inOrder checks that got holds 0..n-1, each first seen in that order
// (redelivery may repeat one, at least once allows it).
func inOrder(got []string, n int) error {
	next := 0
	seen := map[string]bool{}
	for _, p := range got {
		if seen[p] {
			continue
		}
		seen[p] = true
		if p != strconv.Itoa(next) {
			return fmt.Errorf("message %q arrived where %d was due", p, next)
		}
		next++
	}
	if next != n {
		return fmt.Errorf("%d of %d messages arrived", next, n)
	}
	return nil
}

// Test 1: what is published arrives upstream at QoS 1, in order per topic.
func TestCloudPublishArrivesInOrder(t *testing.T) {
	p := newPKI(t)
	m := startMosquitto(t, p, mosquittoOptions{})
	obs := newObserver(t, p, m.addr(), "observer", "telemetry/#", false)
	core := newTestCore(t, p, m.port)
	c := newCloud(t, core, DefaultSpoolerSettings(), nil)
	startCloud(t, c)
	waitConnected(t, c)

	topics := []string{"telemetry/a", "telemetry/b", "telemetry/c"}
	const perTopic = 300
	for i := 0; i < perTopic; i++ {
		for _, tp := range topics {
			if err := c.Publish(tp, []byte(strconv.Itoa(i))); err != nil {
				t.Fatal(err)
			}
		}
	}
	checkFor(t, 20*time.Second, 20*time.Millisecond, func() error {
		if n := obs.total(); n < perTopic*len(topics) {
			return fmt.Errorf("%d of %d messages arrived upstream", n, perTopic*len(topics))
		}
		return nil
	})
	for _, tp := range topics {
		got := obs.received(tp)
		if len(got) != perTopic {
			t.Errorf("%s: %d messages arrived, want exactly %d (no loss, no duplicate on a healthy link)", tp, len(got), perTopic)
		}
		if err := inOrder(got, perTopic); err != nil {
			t.Errorf("%s: %v", tp, err)
		}
	}
	waitDrained(t, c, 5*time.Second)
	st := c.Status()
	if st.Sent != perTopic*3 || st.Dropped != 0 || st.Endpoint != m.addr() || st.StorageType != StorageMemory {
		t.Errorf("status after the run: %v", st)
	}
	if ids := m.clientsConnected(); ids["core"] == "" {
		t.Errorf("no connection with client id core (the thing name); mosquitto saw %v", ids)
	}
}

// Test 2: the cloud goes away, 1,000 messages are published meanwhile, the
// cloud comes back on the same port: all of them arrive.
func TestCloudOutageKeepsMessages(t *testing.T) {
	p := newPKI(t)
	m := startMosquitto(t, p, mosquittoOptions{persistence: true})
	// A persistent session, so that what arrives before the observer
	// reconnects after the restart waits for it.
	obs := newObserver(t, p, m.addr(), "observer", "outage/#", true)
	core := newTestCore(t, p, m.port)
	c := newCloud(t, core, DefaultSpoolerSettings(), nil)
	startCloud(t, c)
	waitConnected(t, c)
	for i := 0; i < 10; i++ {
		if err := c.Publish("outage/before", []byte(strconv.Itoa(i))); err != nil {
			t.Fatal(err)
		}
	}
	waitDrained(t, c, 10*time.Second)

	obs.client.Disconnect(0)
	m.stop()
	checkFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		if st := c.Status(); st.State == brokerv1.CloudState_CLOUD_STATE_CONNECTED {
			return errors.New("the cloud is gone but the state is still CONNECTED")
		}
		return nil
	})
	const n = 1000
	for i := 0; i < n; i++ {
		if err := c.Publish("outage/during", []byte(strconv.Itoa(i))); err != nil {
			t.Fatal(err)
		}
	}
	if st := c.Status(); st.QueueMessages != n {
		t.Fatalf("queue holds %d messages during the outage, want %d", st.QueueMessages, n)
	}

	m.start()
	obs.connect(p.clientTLSFor(t, "observer"), m.addr(), "observer", "", true)
	checkFor(t, 30*time.Second, 20*time.Millisecond, func() error {
		if got := len(obs.received("outage/during")); got < n {
			return fmt.Errorf("%d of %d messages arrived after the cloud came back (cloud status %v)", got, n, c.Status())
		}
		return nil
	})
	if err := inOrder(obs.received("outage/during"), n); err != nil {
		t.Error(err)
	}
	waitDrained(t, c, 10*time.Second)
	if st := c.Status(); st.Reconnects < 1 || st.Dropped != 0 {
		t.Errorf("status after the outage: %v; want reconnects >= 1 and nothing dropped", st)
	}
}

// Test 3: with FileSystem storage, kill -9 the process holding the spool
// while it publishes; after a restart every message whose Publish returned
// reaches the cloud.
func TestFileSystemSpoolSurvivesKill(t *testing.T) {
	p := newPKI(t)
	m := startMosquitto(t, p, mosquittoOptions{})
	obs := newObserver(t, p, m.addr(), "observer", "kill/#", false)
	core := newTestCore(t, p, m.port)
	// The killed core talks to a far cloud with a small window, so that
	// at the kill some messages are acked, some in flight and most queued.
	far := startLatencyProxy(t, m.addr(), 50*time.Millisecond)

	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$")
	cmd.Env = append(os.Environ(),
		"EVERGREEN_CLOUD_HELPER=1",
		"EVERGREEN_CLOUD_HELPER_ROOT="+core.root.Dir(),
		"EVERGREEN_CLOUD_HELPER_CA="+p.caFile,
		"EVERGREEN_CLOUD_HELPER_ENDPOINT="+far.addr(),
	)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Kill it while it publishes, once some messages made it upstream.
	accepted := map[string]bool{}
	sc := bufio.NewScanner(stdout)
	const killAfter = 1500
	killed, seenAtKill := false, 0
	for sc.Scan() {
		id, ok := strings.CutPrefix(sc.Text(), "accepted ")
		if !ok {
			continue
		}
		accepted[id] = true
		if !killed && len(accepted) >= killAfter && obs.total() >= 50 {
			seenAtKill = obs.total()
			cmd.Process.Signal(syscall.SIGKILL)
			killed = true
		}
	}
	cmd.Wait()
	if !killed {
		t.Fatalf("the producer stopped after %d messages before it was killed", len(accepted))
	}
	// Lines written before the kill count too: those Publish calls returned.
	t.Logf("producer killed with %d messages accepted, %d seen upstream", len(accepted), seenAtKill)

	c := newCloud(t, core, SpoolerSettings{Storage: StorageFileSystem, MaxBytes: DefaultMaxBytes,
		SubscriptionQuality: QualityAtMostOnce, WhenFull: WhenFullDropOldest, MaxInflight: 100}, nil)
	if st := c.Status(); st.QueueMessages == 0 {
		t.Fatalf("the reopened spool is empty; the kill should have left a backlog (%d seen upstream)", obs.total())
	} else {
		t.Logf("reopened spool holds %d messages", st.QueueMessages)
	}
	startCloud(t, c)
	waitDrained(t, c, 30*time.Second)
	checkFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		got := map[string]bool{}
		for _, id := range obs.received("kill/x") {
			got[id] = true
		}
		var missing []string
		for id := range accepted {
			if !got[id] {
				missing = append(missing, id)
			}
		}
		if len(missing) > 0 {
			slices.Sort(missing)
			return fmt.Errorf("%d accepted messages never reached the cloud, e.g. %v", len(missing), missing[:min(10, len(missing))])
		}
		return nil
	})
}

// TestHelperProcess is the producer that TestFileSystemSpoolSurvivesKill
// kills: a Cloud with FileSystem storage, publishing from 8 goroutines and
// printing "accepted <n>" once Publish has returned.
func TestHelperProcess(t *testing.T) {
	if os.Getenv("EVERGREEN_CLOUD_HELPER") != "1" {
		t.Skip("the producer process of TestFileSystemSpoolSurvivesKill")
	}
	root := layout.Root(os.Getenv("EVERGREEN_CLOUD_HELPER_ROOT"))
	cfg := config.Default()
	cfg.CoreThing.ThingArn = "arn:aws:iot:us-east-1:123456789012:thing/core"
	cfg.CoreThing.IotHost = "127.0.0.1"
	cfg.MqttMaxConnectionRetryInterval = 1
	cfg.Crypto = &config.Crypto{CaPath: "file://" + os.Getenv("EVERGREEN_CLOUD_HELPER_CA")}
	c, err := New(Options{Config: cfg, Root: root, Endpoint: os.Getenv("EVERGREEN_CLOUD_HELPER_ENDPOINT"),
		Settings: SpoolerSettings{Storage: StorageFileSystem, MaxBytes: DefaultMaxBytes,
			SubscriptionQuality: QualityAtMostOnce, WhenFull: WhenFullRefuseNew, MaxInflight: 10}})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	if err := c.Start(context.Background()); err != nil {
		os.Exit(2)
	}
	var next atomic.Int64
	var out sync.Mutex
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				n := next.Add(1)
				if n > 200000 {
					return
				}
				id := strconv.FormatInt(n, 10)
				if err := c.Publish("kill/x", []byte(id)); err != nil {
					fmt.Fprintln(os.Stderr, err)
					os.Exit(2)
				}
				out.Lock()
				fmt.Fprintf(os.Stdout, "accepted %s\n", id)
				out.Unlock()
			}
		}()
	}
	wg.Wait()
	// Wait to be killed: exiting by itself would not test anything.
	time.Sleep(time.Minute)
	os.Exit(3)
}

// Test 5 at the level of the Cloud: a full spool drops the oldest and
// Status counts them.
func TestCloudQueueFullDropsOldest(t *testing.T) {
	p := newPKI(t)
	core := newTestCore(t, p, freePort(t)) // nothing listens: the cloud is away
	s := DefaultSpoolerSettings()
	s.MaxBytes = MinMaxBytes
	c := newCloud(t, core, s, nil)
	startCloud(t, c)
	payload := make([]byte, 1000)
	for i := 0; i < 1000; i++ {
		if err := c.Publish("full/x", payload); err != nil {
			t.Fatal(err)
		}
	}
	st := c.Status()
	per := uint64(len(payload) + len("full/x"))
	if st.QueueMessages != uint64(MinMaxBytes)/per || st.Dropped != 1000-st.QueueMessages || st.QueueBytes > uint64(MinMaxBytes) {
		t.Errorf("status of a full spool: %v; want %d queued and the rest dropped", st, uint64(MinMaxBytes)/per)
	}
	checkFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		if st := c.Status(); st.State != brokerv1.CloudState_CLOUD_STATE_DISCONNECTED || !strings.Contains(st.LastError, "connection refused") {
			return fmt.Errorf("no cloud listens, yet state %v and last error %q", st.State, st.LastError)
		}
		return nil
	})
}

// Test 6: cloud-source subscriptions deliver to OnMessage; 120 subjects
// take three connections of at most 50, with v1's client ids.
func TestCloudSubscriptions(t *testing.T) {
	p := newPKI(t)
	m := startMosquitto(t, p, mosquittoOptions{})
	core := newTestCore(t, p, m.port)
	var mu sync.Mutex
	inbound := map[string]int{}
	c := newCloud(t, core, DefaultSpoolerSettings(), func(o *Options) {
		o.OnMessage = func(topic string, payload []byte) {
			mu.Lock()
			inbound[topic]++
			mu.Unlock()
		}
	})
	var subjects []string
	for i := 0; i < 119; i++ {
		subjects = append(subjects, fmt.Sprintf("commands/%d", i))
	}
	subjects = append(subjects, "wild/+/cmd")
	if err := c.SetSubscriptions(subjects); err != nil {
		t.Fatal(err)
	}
	startCloud(t, c)
	obs := newObserver(t, p, m.addr(), "observer", "", false)

	// Each subject gets a message until it comes through: a connection
	// may still be subscribing when the first one is sent.
	topics := append(subjects[:119:119], "wild/x/cmd")
	checkFor(t, 20*time.Second, 200*time.Millisecond, func() error {
		var missing []string
		for _, tp := range topics {
			mu.Lock()
			n := inbound[tp]
			mu.Unlock()
			if n == 0 {
				missing = append(missing, tp)
				obs.publish(tp, "hello")
			}
		}
		if len(missing) > 0 {
			return fmt.Errorf("%d subjects delivered nothing yet, e.g. %v", len(missing), missing[:min(5, len(missing))])
		}
		return nil
	})
	ids := m.clientsConnected()
	for _, id := range []string{"core", "core-c00", "core-c01"} {
		if !strings.Contains(ids[id], "c1") {
			t.Errorf("no clean-session connection %q; mosquitto saw %v", id, ids)
		}
	}
	if _, ok := ids["core-c02"]; ok || len(ids) != 4 { // 3 + the observer
		t.Errorf("120 subscriptions should take exactly 3 connections; mosquitto saw %v", ids)
	}
	if st := c.Status(); len(st.CloudSubscriptions) != 120 {
		t.Errorf("status lists %d cloud subscriptions, want 120", len(st.CloudSubscriptions))
	}

	// AtLeastOncePersistent reconnects with persistent sessions and QoS 1.
	s := DefaultSpoolerSettings()
	s.SubscriptionQuality = QualityAtLeastOncePersistent
	if err := c.Reconfigure(s); err != nil {
		t.Fatal(err)
	}
	checkFor(t, 15*time.Second, 50*time.Millisecond, func() error {
		ids := m.clientsConnected()
		for _, id := range []string{"core", "core-c00", "core-c01"} {
			if !strings.Contains(ids[id], "c0") {
				return fmt.Errorf("%s has not reconnected with a persistent session: %v", id, ids)
			}
		}
		return nil
	})
	mu.Lock()
	before := inbound["commands/118"]
	mu.Unlock()
	checkFor(t, 15*time.Second, 200*time.Millisecond, func() error {
		mu.Lock()
		n := inbound["commands/118"]
		mu.Unlock()
		if n == before {
			obs.publish("commands/118", "again")
			return errors.New("no delivery on a persistent-session connection yet")
		}
		return nil
	})

	// Fewer subjects: the extra connections go.
	if err := c.SetSubscriptions(subjects[:40]); err != nil {
		t.Fatal(err)
	}
	checkFor(t, 10*time.Second, 50*time.Millisecond, func() error {
		for _, id := range []string{"core-c00", "core-c01"} {
			if last := m.lastEvent(id); !strings.Contains(last, "disconnected") {
				return fmt.Errorf("%s is still connected with no subscriptions left (last logged: %q)", id, last)
			}
		}
		if last := m.lastEvent("core"); !strings.Contains(last, "New client connected") {
			return fmt.Errorf("the primary connection went too (last logged: %q)", last)
		}
		return nil
	})
}

// A message the cloud refuses (mosquitto drops the connection for an
// oversize packet, as AWS IoT does for one over 128 KB) is tried a bounded
// number of times, then dropped and counted; the queue behind it flows.
func TestCloudDropsMessageTheCloudRefuses(t *testing.T) {
	p := newPKI(t)
	m := startMosquitto(t, p, mosquittoOptions{extra: "max_packet_size 4096\n"})
	obs := newObserver(t, p, m.addr(), "observer", "refuse/#", false)
	core := newTestCore(t, p, m.port)
	c := newCloud(t, core, DefaultSpoolerSettings(), nil)
	c.retryMax = 200 * time.Millisecond
	for i := 0; i < 20; i++ {
		c.Publish("refuse/ok", []byte(strconv.Itoa(i)))
	}
	c.Publish("refuse/big", make([]byte, 8000))
	for i := 20; i < 40; i++ {
		c.Publish("refuse/ok", []byte(strconv.Itoa(i)))
	}
	startCloud(t, c)
	// The messages before the refused one went out with it and lost
	// their PUBACKs when the connection dropped: they arrive again.
	checkFor(t, 30*time.Second, 20*time.Millisecond, func() error {
		return inOrder(obs.received("refuse/ok"), 40)
	})
	waitDrained(t, c, 10*time.Second)
	if st := c.Status(); st.Dropped != 1 || st.Sent != 40 {
		t.Errorf("status %v: want the refused message dropped and counted (1), the 40 others sent", st)
	}
	if n := len(obs.received("refuse/big")); n != 0 {
		t.Errorf("the refused message arrived %d times", n)
	}
}

// coreThing.networkProxy: the connection goes through an HTTP CONNECT
// proxy with basic auth, and noProxyAddresses bypasses it.
func TestCloudThroughProxy(t *testing.T) {
	p := newPKI(t)
	m := startMosquitto(t, p, mosquittoOptions{})
	obs := newObserver(t, p, m.addr(), "observer", "proxied/#", false)
	proxy := startConnectProxy(t, "edge", "s3cret")
	core := newTestCore(t, p, m.port)
	core.cfg.CoreThing.NetworkProxy = &config.NetworkProxy{
		NoProxyAddresses: "example.com,10.0.0.0/8",
		Proxy:            config.Proxy{URL: "http://" + proxy.l.Addr().String(), Username: "edge", Password: "s3cret"},
	}
	c := newCloud(t, core, DefaultSpoolerSettings(), nil)
	startCloud(t, c)
	if err := c.Publish("proxied/x", []byte("0")); err != nil {
		t.Fatal(err)
	}
	checkFor(t, 15*time.Second, 20*time.Millisecond, func() error {
		if len(obs.received("proxied/x")) == 0 {
			return fmt.Errorf("nothing arrived through the proxy (status %v)", c.Status())
		}
		return nil
	})
	if tunnels, refusals := proxy.seen(); len(tunnels) == 0 || tunnels[0] != m.addr() || refusals != 0 {
		t.Errorf("proxy tunnels %v, refusals %d; want a CONNECT to %s with the right credentials", tunnels, refusals, m.addr())
	}

	d, err := newDialer(core.cfg.CoreThing.NetworkProxy)
	if err != nil {
		t.Fatal(err)
	}
	for host, want := range map[string]bool{"example.com": true, "iot.example.com": true, "notexample.com": false, "10.1.2.3": true, "127.0.0.1": false} {
		if got := d.bypass(host); got != want {
			t.Errorf("bypass(%q) = %v, want %v", host, got, want)
		}
	}
}

func TestNewNeedsACloud(t *testing.T) {
	cfg := config.Default()
	_, err := New(Options{Config: cfg, Settings: DefaultSpoolerSettings()})
	if !errors.Is(err, errdefs.ErrFailedPrecondition) || !strings.Contains(err.Error(), "coreThing.iotHost") {
		t.Errorf("New without iotHost: %v; want FailedPrecondition naming coreThing.iotHost", err)
	}
	cfg.CoreThing.IotHost = "example.com"
	cfg.Crypto = &config.Crypto{CaPath: "pkcs11:token=x"}
	if _, err := New(Options{Config: cfg, Settings: DefaultSpoolerSettings()}); !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), "crypto.caPath") {
		t.Errorf("New with a pkcs11 CA: %v; want InvalidArgument naming crypto.caPath", err)
	}
}

func TestBackoff(t *testing.T) {
	base, limit := 500*time.Millisecond, 60*time.Second
	for failures, want := range map[int]time.Duration{1: base, 2: 2 * base, 5: 16 * base, 8: limit, 100: limit} {
		for range 50 {
			if d := backoff(failures, base, limit); d < want/2 || d > want {
				t.Fatalf("backoff(%d) = %v, want within [%v, %v]", failures, d, want/2, want)
			}
		}
	}
}

// Reconfigure moves the queue between storages without losing it, and a
// smaller spool keeps the newest.
func TestCloudReconfigureStorage(t *testing.T) {
	p := newPKI(t)
	core := newTestCore(t, p, freePort(t))
	c := newCloud(t, core, DefaultSpoolerSettings(), nil)
	for i := 0; i < 500; i++ {
		if err := c.Publish("re/x", []byte(strconv.Itoa(i))); err != nil {
			t.Fatal(err)
		}
	}
	s := DefaultSpoolerSettings()
	s.Storage = StorageFileSystem
	if err := c.Reconfigure(s); err != nil {
		t.Fatal(err)
	}
	msgs := c.spool.Peek(1000)
	if len(msgs) != 500 || string(msgs[0].Payload) != "0" || string(msgs[499].Payload) != "499" {
		t.Fatalf("after Memory -> FileSystem the spool holds %d messages", len(msgs))
	}
	s.Storage = StorageMemory
	if err := c.Reconfigure(s); err != nil {
		t.Fatal(err)
	}
	if n := c.spool.Len(); n != 500 {
		t.Fatalf("after FileSystem -> Memory the spool holds %d messages, want 500", n)
	}
	if names, _ := os.ReadDir(core.root.DataDir("broker")); len(names) != 0 {
		t.Errorf("the FileSystem spool's files stay after moving to Memory: %v", names)
	}
	for i := 500; i < 2000; i++ {
		c.Publish("re/x", make([]byte, 1000))
	}
	s.MaxBytes = MinMaxBytes
	if err := c.Reconfigure(s); err != nil {
		t.Fatal(err)
	}
	if st := c.Status(); st.QueueBytes > uint64(MinMaxBytes) || st.QueueMaxBytes != uint64(MinMaxBytes) || st.Dropped == 0 {
		t.Errorf("after shrinking: %v", st)
	}
}

// Room tells ahead of a Publish whether the spool would take a message:
// always with DropOldest, not once full with RefuseNew.
func TestCloudRoom(t *testing.T) {
	p := newPKI(t)
	core := newTestCore(t, p, freePort(t)) // nothing listens: the cloud is away
	for _, whenFull := range []string{WhenFullDropOldest, WhenFullRefuseNew} {
		s := DefaultSpoolerSettings()
		s.MaxBytes, s.WhenFull = MinMaxBytes, whenFull
		c := newCloud(t, core, s, nil)
		startCloud(t, c)
		payload := make([]byte, 1000)
		for i := 0; ; i++ {
			room := c.Room("full/x", len(payload))
			err := c.Publish("full/x", payload)
			if (room == nil) != (err == nil) {
				t.Fatalf("%s, message %d: Room %v but Publish %v", whenFull, i, room, err)
			}
			if room != nil {
				if whenFull == WhenFullDropOldest || !errors.Is(room, errdefs.ErrResourceExhausted) || !strings.Contains(room.Error(), "cloud spool is full") {
					t.Fatalf("%s: Room %v", whenFull, room)
				}
				break
			}
			if whenFull == WhenFullDropOldest && i == int(2*MinMaxBytes)/len(payload) {
				break // went round the spool twice: it always has room
			}
		}
		if err := c.Room("full/x", int(MinMaxBytes)); !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("%s: Room of a message larger than the spool: %v", whenFull, err)
		}
		c.Stop(context.Background())
	}
}
