package export

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/evergreen-edge/evergreen/streammgr/store"
)

// DefaultThreadPoolSize is v1's STREAM_MANAGER_EXPORTER_THREAD_POOL_SIZE
// default: how many sends run at once across every export.
const DefaultThreadPoolSize = 5

// gate is what the sends of every export of every stream share, as v1's
// exporter thread pool and bandwidth limit were: at most size sends at
// once, a free slot going to the waiting export of the highest priority
// (v1: "lower values are higher priority"), first come first served
// within a priority; and a token bucket of upload bytes. A slot is held
// for one send (a request and its answer, a JetStream batch and its acks),
// not across a retry's backoff.
type gate struct {
	mu   sync.Mutex
	size int
	// free is size minus the slots held; below 0 after a shrink, until
	// enough sends end.
	free    int
	waiters []*slotWaiter // by priority, then arrival

	bw atomic.Pointer[bucket] // nil: unlimited
}

type slotWaiter struct {
	prio    int64
	ready   chan struct{}
	granted bool // under gate.mu
}

// newGate returns a gate of size slots (DefaultThreadPoolSize when 0) and
// bitsPerSecond of upload bandwidth (0 unlimited).
func newGate(size int, bitsPerSecond int64) *gate {
	if size <= 0 {
		size = DefaultThreadPoolSize
	}
	g := &gate{size: size, free: size}
	g.setBandwidth(bitsPerSecond)
	return g
}

// resize changes the number of slots (a deployment changed the thread
// pool): more slots go to waiters at once; fewer take effect as sends end.
func (g *gate) resize(size int) {
	if size <= 0 {
		size = DefaultThreadPoolSize
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.free += size - g.size
	g.size = size
	for g.free > 0 && len(g.waiters) > 0 {
		g.free--
		g.grantFirstLocked()
	}
}

// setBandwidth replaces the bandwidth limit (0 unlimited); sends already
// charged keep their charge.
func (g *gate) setBandwidth(bitsPerSecond int64) {
	if bitsPerSecond <= 0 {
		g.bw.Store(nil)
		return
	}
	if b := g.bw.Load(); b != nil && b.rate == float64(bitsPerSecond)/8 {
		return
	}
	g.bw.Store(newBucket(float64(bitsPerSecond) / 8))
}

func (g *gate) grantFirstLocked() {
	w := g.waiters[0]
	g.waiters = g.waiters[1:]
	w.granted = true
	close(w.ready)
}

// acquire waits for a slot for an export of priority prio.
func (g *gate) acquire(ctx context.Context, prio int64) error {
	g.mu.Lock()
	if g.free > 0 {
		g.free--
		g.mu.Unlock()
		return nil
	}
	w := &slotWaiter{prio: prio, ready: make(chan struct{})}
	// After every waiter of the same or a higher priority.
	i := len(g.waiters)
	for i > 0 && g.waiters[i-1].prio > prio {
		i--
	}
	g.waiters = slices.Insert(g.waiters, i, w)
	g.mu.Unlock()
	select {
	case <-w.ready:
		return nil
	case <-ctx.Done():
		g.mu.Lock()
		if w.granted {
			g.mu.Unlock()
			g.release()
		} else {
			g.waiters = slices.DeleteFunc(g.waiters, func(x *slotWaiter) bool { return x == w })
			g.mu.Unlock()
		}
		return ctx.Err()
	}
}

// release hands the slot to the first waiter, or frees it.
func (g *gate) release() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.free >= 0 && len(g.waiters) > 0 {
		g.grantFirstLocked()
		return
	}
	g.free++
}

// waiting is how many sends wait for a slot.
func (g *gate) waiting() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.waiters)
}

// bucket is a token bucket of bytes that may run into debt: a charge
// larger than the bucket (one big batch) is allowed and the charges after
// it wait until the debt is paid, so the long-run rate holds whatever the
// sizes. It holds one second's worth, and starts full.
type bucket struct {
	mu     sync.Mutex
	rate   float64 // bytes per second
	burst  float64
	tokens float64
	last   time.Time
}

func newBucket(bytesPerSecond float64) *bucket {
	return &bucket{rate: bytesPerSecond, burst: bytesPerSecond, tokens: bytesPerSecond, last: time.Now()}
}

// take charges n bytes, waiting until the bucket allows them; a cancelled
// wait gives them back.
func (b *bucket) take(ctx context.Context, n int) error {
	if n <= 0 {
		return ctx.Err()
	}
	b.mu.Lock()
	now := time.Now()
	b.tokens = min(b.burst, b.tokens+now.Sub(b.last).Seconds()*b.rate)
	b.last = now
	b.tokens -= float64(n)
	var wait time.Duration
	if b.tokens < 0 {
		wait = time.Duration(-b.tokens / b.rate * float64(time.Second))
	}
	b.mu.Unlock()
	if wait <= 0 {
		return nil
	}
	if !sleep(ctx, wait) {
		b.mu.Lock()
		b.tokens += float64(n)
		b.mu.Unlock()
		return ctx.Err()
	}
	return nil
}

// metered is a sender that charges the bandwidth limit itself, with the
// bytes it actually uploads (a request body; only the items a retry
// resends). The gate charges other senders the payload bytes of each send.
type metered interface{ chargesItself() }

// sendGated runs one send of msgs through the gate.
func (e *exporter) sendGated(ctx context.Context, snd sender, msgs []store.Message) error {
	g := e.m.gate
	if err := g.acquire(ctx, e.batch.Priority); err != nil {
		return err
	}
	defer g.release()
	if _, ok := snd.(metered); !ok {
		n := 0
		for _, m := range msgs {
			n += len(m.Payload)
		}
		if err := e.charge(ctx, n); err != nil {
			return err
		}
	}
	return snd.send(ctx, msgs)
}

// charge waits until the bandwidth limit allows n more bytes uploaded.
func (e *exporter) charge(ctx context.Context, n int) error {
	b := e.m.gate.bw.Load()
	if b == nil {
		return nil
	}
	return b.take(ctx, n)
}
