package cloud

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	brokerv1 "github.com/evergreen-edge/evergreen/proto/evergreen/broker/v1"
	"github.com/evergreen-edge/evergreen/services/kit/config"
	"github.com/evergreen-edge/evergreen/services/kit/errdefs"
	"github.com/evergreen-edge/evergreen/services/kit/layout"
	"github.com/evergreen-edge/evergreen/services/kit/topic"
)

// Connection layout (v1 1.9+): the primary connection, client id the core's
// thing name, publishes and holds the first SubscriptionsPerConnection
// subscriptions; the rest go to extra connections <thing>-c00, -c01, ...
const (
	SubscriptionsPerConnection = 50
	MaxExtraConnections        = 250
	// subscribeBatch is how many filters one SUBSCRIBE carries: AWS IoT
	// takes at most 8.
	subscribeBatch = 8
)

// Defaults used where the config leaves a value at zero.
const (
	defaultKeepAlive     = 600 * time.Second
	defaultOpTimeout     = 5 * time.Second
	defaultRetryInterval = 60 * time.Second
	defaultRetryBase     = 500 * time.Millisecond
)

// Options configure a Cloud.
type Options struct {
	Config *config.Config
	// Root locates the core certificate and the FileSystem spool
	// (DIR/data/broker/spool).
	Root     layout.Root
	Settings SpoolerSettings
	Log      *slog.Logger
	// OnMessage receives what arrives on the cloud subscriptions. It runs
	// on the connection's goroutine, in order: hand the message on, do not
	// block.
	OnMessage func(topic string, payload []byte)
	// OnReady is called after a connection has made its subscriptions, on
	// connect and after a change (on the connection's goroutine: do not
	// block).
	OnReady func(*brokerv1.CloudStatus)
	// TLS replaces the configuration built from the config's credentials
	// (tests).
	TLS *tls.Config
	// Endpoint replaces coreThing.iotHost:iotMqttPort (tests).
	Endpoint string
}

// Cloud is the connection to AWS IoT (or whatever coreThing.iotHost names)
// with the spooler in front of it.
type Cloud struct {
	log       *slog.Logger
	thing     string
	endpoint  string
	onMessage func(string, []byte)
	onReady   func(*brokerv1.CloudStatus)
	tls       *tls.Config
	dialer    *dialer
	keepAlive time.Duration
	opTimeout time.Duration
	retryMax  time.Duration
	retryBase time.Duration
	spoolDir  string

	spoolMu     sync.RWMutex
	spool       *spool
	settings    SpoolerSettings
	spoolGen    uint64
	droppedBase uint64 // drops counted by spools that Reconfigure replaced

	// wake tells the sender that there is something to look at.
	wake    chan struct{}
	primary atomic.Pointer[session]

	sent     atomic.Uint64
	failed   atomic.Uint64 // dropped after maxAttempts
	inflight atomic.Int64

	mu       sync.Mutex
	links    []*link
	subjects []string
	running  bool
	stopped  bool
	runCtx   context.Context
	cancel   context.CancelFunc
	wg       sync.WaitGroup
}

// New checks the options and opens the spool; it does not connect.
func New(o Options) (*Cloud, error) {
	cfg := o.Config
	if cfg == nil {
		return nil, errdefs.InvalidArgument("Config", "is nil")
	}
	endpoint := o.Endpoint
	if endpoint == "" {
		if cfg.CoreThing.IotHost == "" {
			return nil, fmt.Errorf("coreThing.iotHost is empty, so the core runs offline and has no cloud connection: %w", errdefs.ErrFailedPrecondition)
		}
		port := cfg.CoreThing.IotMqttPort
		if port == 0 {
			port = 8883
		}
		endpoint = net.JoinHostPort(cfg.CoreThing.IotHost, strconv.Itoa(port))
	}
	host, portText, err := net.SplitHostPort(endpoint)
	if err != nil {
		return nil, errdefs.InvalidArgument("Endpoint", "%q is not host:port", endpoint)
	}
	port, _ := strconv.Atoi(portText)
	if err := o.Settings.Validate(); err != nil {
		return nil, err
	}
	c := &Cloud{
		log:       o.Log,
		thing:     cfg.CoreThingName(),
		endpoint:  endpoint,
		onMessage: o.OnMessage,
		onReady:   o.OnReady,
		keepAlive: seconds(cfg.CoreThing.KeepAlive, defaultKeepAlive),
		opTimeout: seconds(cfg.CoreThing.MqttOperationTimeout, defaultOpTimeout),
		retryMax:  seconds(cfg.MqttMaxConnectionRetryInterval, defaultRetryInterval),
		retryBase: defaultRetryBase,
		settings:  o.Settings,
		wake:      make(chan struct{}, 1),
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	c.log = c.log.With("component", "cloud")
	if o.Root != "" {
		c.spoolDir = filepath.Join(o.Root.DataDir("broker"), "spool")
	}
	if o.TLS != nil {
		c.tls = o.TLS.Clone()
		if c.tls.ServerName == "" {
			c.tls.ServerName = host
		}
	} else {
		creds, err := credentialsFor(cfg, o.Root)
		if err != nil {
			return nil, err
		}
		if c.tls, err = clientTLS(creds, host, port); err != nil {
			return nil, err
		}
	}
	if c.dialer, err = newDialer(cfg.CoreThing.NetworkProxy); err != nil {
		return nil, err
	}
	if c.spool, err = c.openStorage(o.Settings); err != nil {
		return nil, err
	}
	if o.Settings.Storage == StorageMemory {
		// A FileSystem spool left by an earlier run still holds accepted
		// messages: carry them over before its files go.
		if err := c.adoptLeftovers(); err != nil {
			c.spool.Close()
			return nil, err
		}
	}
	c.links = []*link{c.newLink(0)}
	return c, nil
}

func seconds(n int, def time.Duration) time.Duration {
	if n <= 0 {
		return def
	}
	return time.Duration(n) * time.Second
}

func (c *Cloud) openStorage(s SpoolerSettings) (*spool, error) {
	if s.Storage == StorageFileSystem && c.spoolDir == "" {
		return nil, errdefs.InvalidArgument("Root", "FileSystem storage needs the root directory")
	}
	return openSpool(c.spoolDir, s)
}

func (c *Cloud) adoptLeftovers() error {
	if c.spoolDir == "" {
		return nil
	}
	names, _ := filepath.Glob(filepath.Join(c.spoolDir, "*"+segExt))
	if len(names) == 0 {
		return nil
	}
	fs := c.settings
	fs.Storage, fs.MaxBytes = StorageFileSystem, max(fs.MaxBytes, 1<<40)
	old, err := openSpool(c.spoolDir, fs)
	if err != nil {
		return err
	}
	n, err := c.migrate(old, c.spool)
	if err != nil {
		old.Close()
		return err
	}
	c.log.Info("moved the messages of a FileSystem spool into Memory storage", "dir", c.spoolDir, "messages", n)
	return nil
}

// migrate moves every message of from into to, oldest first, keeping the
// newest when to is smaller, then closes from and deletes its files.
func (c *Cloud) migrate(from, to *spool) (int, error) {
	msgs := from.Peek(from.Len())
	var size int64
	keep := len(msgs)
	for keep > 0 && size+int64(len(msgs[keep-1].Topic)+len(msgs[keep-1].Payload)) <= to.max {
		keep--
		size += int64(len(msgs[keep].Topic) + len(msgs[keep].Payload))
	}
	n, err := to.putMany(msgs[keep:])
	if err != nil && !errors.Is(err, errdefs.ErrResourceExhausted) {
		return 0, err
	}
	c.droppedBase += from.Dropped() + uint64(len(msgs)-n)
	if err := from.destroy(); err != nil {
		c.log.Warn("could not delete the old spool's files", "err", err)
	}
	return n, nil
}

// Start connects in the background and returns at once. The connection
// lives until Stop, whatever happens to ctx.
func (c *Cloud) Start(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case c.stopped:
		return fmt.Errorf("cloud connection was stopped: %w", errdefs.ErrFailedPrecondition)
	case c.running:
		return fmt.Errorf("cloud connection already started: %w", errdefs.ErrFailedPrecondition)
	}
	c.running = true
	c.runCtx, c.cancel = context.WithCancel(context.WithoutCancel(ctx))
	for _, l := range c.links {
		c.startLink(l)
	}
	c.wg.Add(1)
	go c.send(c.runCtx)
	c.log.Info("cloud connection started", "endpoint", c.endpoint, "client_id", c.thing, "storage", c.settings.Storage)
	return nil
}

// Stop disconnects, waits for the goroutines (or ctx) and closes the spool,
// which keeps what is queued when it is FileSystem.
func (c *Cloud) Stop(ctx context.Context) error {
	c.mu.Lock()
	if c.stopped {
		c.mu.Unlock()
		return nil
	}
	c.stopped = true
	if c.cancel != nil {
		c.cancel()
	}
	c.mu.Unlock()
	done := make(chan struct{})
	go func() { c.wg.Wait(); close(done) }()
	var err error
	select {
	case <-done:
	case <-ctx.Done():
		err = fmt.Errorf("stop cloud connection: %w", ctx.Err())
	}
	c.spoolMu.Lock()
	defer c.spoolMu.Unlock()
	if cerr := c.spool.Close(); err == nil {
		err = cerr
	}
	return err
}

// Publish queues a message for the cloud. With FileSystem storage it
// returns once the message is on disk. It fails with
// errdefs.ErrResourceExhausted when the spool is full and WhenFull is
// RefuseNew, and with errdefs.ErrInvalidArgument for a topic one cannot
// publish to.
func (c *Cloud) Publish(topicName string, payload []byte) error {
	if err := topic.ValidateTopic(topicName); err != nil {
		return errdefs.InvalidArgument("topic", "%v", err)
	}
	c.spoolMu.RLock()
	err := c.spool.Put(topicName, payload)
	c.spoolMu.RUnlock()
	if err != nil {
		return err
	}
	c.poke()
	return nil
}

// Room reports whether Publish would take a message of this topic and
// payload size now: an error wrapping errdefs.ErrResourceExhausted when
// the spool is full and WhenFull is RefuseNew (with DropOldest there is
// always room). It is a snapshot: other messages may take the room first.
func (c *Cloud) Room(topicName string, payloadBytes int) error {
	c.spoolMu.RLock()
	defer c.spoolMu.RUnlock()
	return c.spool.room(int64(len(topicName) + payloadBytes))
}

func (c *Cloud) poke() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// SetSubscriptions replaces the upstream subscriptions (the Subjects of the
// group's cloud-source subscriptions). Duplicates are ignored. They are
// spread SubscriptionsPerConnection per connection, made on every
// (re)connect, and updated in place on a live connection.
func (c *Cloud) SetSubscriptions(subjects []string) error {
	var list []string
	seen := map[string]bool{}
	for i, s := range subjects {
		if err := topic.ValidateFilter(s); err != nil {
			return errdefs.InvalidArgument(fmt.Sprintf("subjects[%d]", i), "%v", err)
		}
		if !seen[s] {
			seen[s] = true
			list = append(list, s)
		}
	}
	need := max(1, (len(list)+SubscriptionsPerConnection-1)/SubscriptionsPerConnection)
	if need > 1+MaxExtraConnections {
		return errdefs.InvalidArgument("subjects", "%d subscriptions need more than the %d connections v1 allows", len(list), 1+MaxExtraConnections)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopped {
		return fmt.Errorf("cloud connection was stopped: %w", errdefs.ErrFailedPrecondition)
	}
	for i := 0; i < need; i++ {
		if i == len(c.links) {
			l := c.newLink(i)
			c.links = append(c.links, l)
			if c.running {
				c.startLink(l)
			}
		}
		lo := min(i*SubscriptionsPerConnection, len(list))
		hi := min(lo+SubscriptionsPerConnection, len(list))
		c.links[i].setSubscriptions(list[lo:hi])
	}
	for _, l := range c.links[need:] {
		l.retire()
	}
	c.links = c.links[:need]
	c.subjects = list
	return nil
}

// Reconfigure applies a new deployment's settings. A storage type change
// moves the queued messages into the new storage (a FileSystem spool's
// files are deleted once they are in memory); a smaller MaxBytes drops the
// oldest; a new SubscriptionQuality reconnects every connection with the
// new session type and QoS.
func (c *Cloud) Reconfigure(s SpoolerSettings) error {
	if err := s.Validate(); err != nil {
		return err
	}
	c.spoolMu.Lock()
	old := c.settings
	switch {
	case s.Storage != old.Storage:
		ns, err := c.openStorage(s)
		if err != nil {
			c.spoolMu.Unlock()
			return err
		}
		n, err := c.migrate(c.spool, ns)
		if err != nil {
			ns.Close()
			c.spoolMu.Unlock()
			return err
		}
		c.log.Info("cloud spool storage changed", "from", old.Storage, "to", s.Storage, "messages", n)
		c.spool = ns
		c.spoolGen++
	case s.MaxBytes != old.MaxBytes || s.WhenFull != old.WhenFull:
		if err := c.spool.resize(s.MaxBytes, s.WhenFull); err != nil {
			c.spoolMu.Unlock()
			return err
		}
	}
	c.settings = s
	c.spoolMu.Unlock()
	c.poke()
	if s.SubscriptionQuality != old.SubscriptionQuality {
		c.mu.Lock()
		for _, l := range c.links {
			l.reconnect()
		}
		c.mu.Unlock()
	}
	return nil
}

// Status reports the connection and the spool.
func (c *Cloud) Status() *brokerv1.CloudStatus {
	st := &brokerv1.CloudStatus{
		State:    brokerv1.CloudState_CLOUD_STATE_DISCONNECTED,
		Endpoint: c.endpoint,
		Sent:     c.sent.Load(),
		InFlight: uint32(c.inflight.Load()),
	}
	c.spoolMu.RLock()
	st.StorageType = c.settings.Storage
	st.QueueMaxBytes = uint64(c.settings.MaxBytes)
	st.QueueMessages = uint64(c.spool.Len())
	st.QueueBytes = uint64(c.spool.Bytes())
	st.Dropped = c.droppedBase + c.spool.Dropped() + c.failed.Load()
	c.spoolMu.RUnlock()

	c.mu.Lock()
	running := c.running && !c.stopped
	links := slices.Clone(c.links)
	st.CloudSubscriptions = slices.Clone(c.subjects)
	c.mu.Unlock()
	var errs []string
	for i, l := range links {
		state, lastErr, reconnects := l.status()
		if i == 0 && running {
			st.State = state
		}
		st.Reconnects += reconnects
		if lastErr != "" {
			errs = append(errs, lastErr)
		}
	}
	if len(errs) > 0 {
		st.LastError = errs[0]
	}
	return st
}

// snapshot returns what the sender needs under one read lock.
func (c *Cloud) snapshot() (*spool, uint64, int) {
	c.spoolMu.RLock()
	defer c.spoolMu.RUnlock()
	return c.spool, c.spoolGen, c.settings.MaxInflight
}

func (c *Cloud) persistent() bool {
	c.spoolMu.RLock()
	defer c.spoolMu.RUnlock()
	return c.settings.SubscriptionQuality == QualityAtLeastOncePersistent
}

func (c *Cloud) clientID(n int) string {
	if n == 0 {
		return c.thing
	}
	return c.thing + "-c" + fmt.Sprintf("%02d", n-1)
}

func (c *Cloud) startLink(l *link) {
	ctx, cancel := context.WithCancel(c.runCtx)
	l.cancel = cancel
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		l.run(ctx)
	}()
}

func (c *Cloud) ready() {
	if c.onReady != nil {
		c.onReady(c.Status())
	}
}

func (c *Cloud) deliver(topicName string, payload []byte) {
	if c.onMessage != nil {
		c.onMessage(topicName, payload)
	}
}

// describe shortens an error for Status and logs.
func describe(err error) string {
	if err == nil {
		return ""
	}
	return strings.TrimSpace(err.Error())
}
