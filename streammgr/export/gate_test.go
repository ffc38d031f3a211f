package export

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/evergreen-edge/evergreen/streammgr/store"
	"github.com/fxamacker/cbor/v2"
)

// These tests look inside the gate (how many wait) to order their steps
// without sleeping.

func pollFor(t *testing.T, what string, fn func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !fn() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// TestGateGrantsByPriorityThenArrival: with every slot taken, a freed slot
// goes to the waiter of the lowest priority value, first come first
// served among equals; a cancelled waiter leaves the queue.
func TestGateGrantsByPriorityThenArrival(t *testing.T) {
	g := newGate(1, 0)
	if err := g.acquire(context.Background(), 5); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var order []string
	var wg sync.WaitGroup
	cancelled, cancel := context.WithCancel(context.Background())
	for i, w := range []struct {
		name string
		prio int64
		ctx  context.Context
	}{{"A10", 10, context.Background()}, {"B1", 1, context.Background()}, {"C10", 10, context.Background()},
		{"gone3", 3, cancelled}, {"D5", 5, context.Background()}, {"E1", 1, context.Background()}} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := g.acquire(w.ctx, w.prio); err != nil {
				return
			}
			mu.Lock()
			order = append(order, w.name)
			mu.Unlock()
			g.release()
		}()
		pollFor(t, fmt.Sprintf("%d waiters", i+1), func() bool { return g.waiting() == i+1 })
	}
	cancel()
	pollFor(t, "the cancelled waiter to leave", func() bool { return g.waiting() == 5 })
	g.release()
	wg.Wait()
	if want := []string{"B1", "E1", "D5", "A10", "C10"}; !slices.Equal(order, want) {
		t.Fatalf("slots granted in order %v, want %v", order, want)
	}
	// Every slot came back.
	if err := g.acquire(context.Background(), 10); err != nil || g.waiting() != 0 {
		t.Fatalf("acquire after all released: %v, %d waiting", err, g.waiting())
	}
}

// blockingDest records the stream of each POST, in arrival order, and
// holds the POSTs of stream "hold" until release.
type blockingDest struct {
	srv     *httptest.Server
	mu      sync.Mutex
	arrived []string
	bytes   int64
	hold    chan struct{}
	once    sync.Once
}

func newBlockingDest(t *testing.T) *blockingDest {
	d := &blockingDest{hold: make(chan struct{})}
	d.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		s := r.Header.Get("X-Evergreen-Stream")
		d.mu.Lock()
		d.arrived = append(d.arrived, s)
		d.bytes += n
		d.mu.Unlock()
		if s == "hold" {
			select {
			case <-d.hold:
			case <-r.Context().Done():
			}
		}
	}))
	t.Cleanup(d.srv.Close)
	t.Cleanup(d.release)
	return d
}

func (d *blockingDest) release() { d.once.Do(func() { close(d.hold) }) }

func (d *blockingDest) got() ([]string, int64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.arrived), d.bytes
}

type gateRig struct {
	t  *testing.T
	st *store.Store
	m  *Manager
}

func newGateRig(t *testing.T, o Options) *gateRig {
	st, err := store.Open(store.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	o.Store, o.BackoffBase, o.BackoffMax = st, 5*time.Millisecond, 40*time.Millisecond
	r := &gateRig{t: t, st: st, m: New(o)}
	t.Cleanup(func() {
		r.m.Close()
		st.Close()
	})
	return r
}

// httpStream creates stream name exporting each message alone to d.
func (r *gateRig) httpStream(name string, d *blockingDest, priority int) {
	r.t.Helper()
	exp, _ := cbor.Marshal(map[string]any{"http": []any{map[string]any{"identifier": "web", "uri": d.srv.URL, "priority": priority}}})
	if err := r.st.Create(store.Definition{Name: name, Export: exp}); err != nil {
		r.t.Fatal(err)
	}
	if err := r.m.Sync(name); err != nil {
		r.t.Fatal(err)
	}
}

func (r *gateRig) append(name string, p []byte) {
	r.t.Helper()
	if _, err := r.st.Append(name, p); err != nil {
		r.t.Fatal(err)
	}
}

// TestPoolServesHigherPriorityExportFirst: with a pool of one, a
// priority-1 export that started waiting after a priority-10 one is
// served first once the slot frees.
func TestPoolServesHigherPriorityExportFirst(t *testing.T) {
	d := newBlockingDest(t)
	r := newGateRig(t, Options{ThreadPoolSize: 1})
	r.httpStream("hold", d, 5)
	r.httpStream("low", d, 10)
	r.httpStream("high", d, 1)

	r.append("hold", []byte("holds the only slot"))
	pollFor(t, "the holding POST", func() bool { got, _ := d.got(); return len(got) == 1 })
	r.append("low", []byte("waits first"))
	pollFor(t, "the low-priority export to wait", func() bool { return r.m.gate.waiting() == 1 })
	r.append("high", []byte("waits second"))
	pollFor(t, "the high-priority export to wait", func() bool { return r.m.gate.waiting() == 2 })
	d.release()
	pollFor(t, "every POST", func() bool { got, _ := d.got(); return len(got) == 3 })
	if got, _ := d.got(); !slices.Equal(got, []string{"hold", "high", "low"}) {
		t.Fatalf("POSTs arrived in order %v, want hold, high, low", got)
	}
}

// TestBandwidthLimitHoldsTheRate: two exports of two streams share the
// limit: together they upload at about the limit, not each at it. The
// bucket lets one second's worth through at once; the rest is paced.
func TestBandwidthLimitHoldsTheRate(t *testing.T) {
	const (
		limit     = 400 << 10 // bytes per second
		msgSize   = 16 << 10
		perStream = 40 // 1.25 MiB in all: about 2.2 s beyond the first second's worth
	)
	d := newBlockingDest(t)
	r := newGateRig(t, Options{MaxBandwidth: limit * 8})
	r.httpStream("a", d, 10)
	r.httpStream("b", d, 10)
	start := time.Now()
	for range perStream {
		r.append("a", make([]byte, msgSize))
		r.append("b", make([]byte, msgSize))
	}
	pollFor(t, "every POST", func() bool { got, _ := d.got(); return len(got) == 2*perStream })
	elapsed := time.Since(start)
	_, total := d.got()
	if total != 2*perStream*msgSize {
		t.Fatalf("%d bytes arrived, want %d", total, 2*perStream*msgSize)
	}
	// Beyond the first second's burst, the pace is the limit.
	rate := float64(total-limit) / elapsed.Seconds()
	t.Logf("%d bytes in %v: %.0f bytes/s after the burst, limit %d", total, elapsed, rate, limit)
	if rate > 1.15*limit {
		t.Fatalf("uploaded at %.0f bytes/s, above the %d bytes/s limit", rate, limit)
	}
	if rate < 0.4*limit {
		t.Fatalf("uploaded at %.0f bytes/s, far below the %d bytes/s limit", rate, limit)
	}
}

// TestGateResize: a larger pool lets waiters in at once; a smaller one
// takes effect as held slots are released, never taking a slot away.
func TestGateResize(t *testing.T) {
	g := newGate(2, 0)
	for range 2 {
		if err := g.acquire(context.Background(), 5); err != nil {
			t.Fatal(err)
		}
	}
	got := make(chan int, 4)
	for i := range 2 {
		go func() {
			if err := g.acquire(context.Background(), 5); err == nil {
				got <- i
			}
		}()
	}
	pollFor(t, "two waiters", func() bool { return g.waiting() == 2 })
	g.resize(4)
	for range 2 {
		select {
		case <-got:
		case <-time.After(5 * time.Second):
			t.Fatal("growing the pool did not let the waiters in")
		}
	}
	// 4 held. Shrink to 1: three releases free nothing for a newcomer.
	g.resize(1)
	go func() {
		if err := g.acquire(context.Background(), 5); err == nil {
			got <- 9
		}
	}()
	pollFor(t, "a waiter", func() bool { return g.waiting() == 1 })
	for range 3 {
		g.release()
	}
	select {
	case <-got:
		t.Fatal("a shrunk pool granted a slot while the old sends still held them all")
	case <-time.After(50 * time.Millisecond):
	}
	g.release() // the last of the four: now one slot is free, and it is the waiter's
	select {
	case <-got:
	case <-time.After(5 * time.Second):
		t.Fatal("the waiter never got the slot")
	}
	g.setBandwidth(8000)
	if b := g.bw.Load(); b == nil || b.rate != 1000 {
		t.Fatalf("bandwidth 8000 bit/s: %+v", b)
	}
	g.setBandwidth(0)
	if g.bw.Load() != nil {
		t.Fatal("bandwidth 0 must be unlimited")
	}
}
