package shadow

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	brokerv1 "github.com/evergreen-edge/evergreen/proto/evergreen/broker/v1"
	"github.com/evergreen-edge/evergreen/services/kit/memtrim"
	"github.com/evergreen-edge/evergreen/services/kit/subjects"
	"github.com/evergreen-edge/evergreen/services/kit/topic"
	"github.com/evergreen-edge/evergreen/shadow/cloudsync"
	"github.com/evergreen-edge/evergreen/shadow/doc"
	"github.com/evergreen-edge/evergreen/shadow/store"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// The engine runs requests one shadow at a time, in arrival order, and
// different shadows in parallel: each shadow with work has a queue and one
// goroutine draining it, gone when the queue is empty. Each accepted
// change is durable (the store's Put returns after fsync, and concurrent
// Puts share one) before any answer leaves.
//
// Lock order: engine.mu is never held across I/O.

type op int

const (
	opGet op = iota
	opUpdate
	opDelete
	opCloud // the cloud's document arrived: reconcile
)

var opNames = [...]string{"get", "update", "delete", "cloud"}

// request is one unit of work on one shadow.
type request struct {
	key     store.Key
	op      op
	payload []byte
	// client counts towards MaxInFlightPerClient ("" = not counted).
	client string
	// routed: the request came through the router; its answer
	// (accepted/rejected) goes back through the router.
	routed bool
	// cloud is the cloud's document for opCloud (nil: the cloud has no
	// such shadow) and cloudVersion its version.
	cloud        *cloudsync.State
	cloudVersion int64
	// done receives the answer when someone waits (gRPC).
	done chan result
}

type result struct {
	document []byte
	version  int64
	err      *doc.Error
}

type keyQueue struct{ items []*request }

type engine struct {
	s *Service

	mu       sync.Mutex
	queues   map[store.Key]*keyQueue
	inflight map[string]int
	queued   int
	stopped  bool
	wg       sync.WaitGroup

	// written counts bytes saved since the last trim; trim gives the heap
	// a burst of updates grew back to the system once the queues are idle.
	written atomic.Int64
	trim    *time.Timer

	// sizes of the stored records (bytes), to bound the store and to
	// count the named shadows of a thing. Guarded by sizeMu.
	sizeMu sync.Mutex
	sizes  map[store.Key]int
	total  int64
}

// A burst of more than trimAfterBytes of updates is followed, trimDelay
// after the queues went idle, by a memory trim.
const (
	trimAfterBytes = 1 << 20
	trimDelay      = 2 * time.Second
)

func newEngine(s *Service) (*engine, error) {
	e := &engine{s: s, queues: map[store.Key]*keyQueue{}, inflight: map[string]int{}, sizes: map[store.Key]int{}}
	e.trim = time.AfterFunc(time.Hour, func() {
		e.mu.Lock()
		idle := e.queued == 0 && !e.stopped
		e.mu.Unlock()
		if idle {
			e.written.Store(0)
			memtrim.Trim()
		}
	})
	e.trim.Stop()
	// Sizes reads no values: start-up stays cheap in memory however much
	// is stored (reading every value here costs ~10 MB of page cache PSS
	// with 2,500 shadows of 4 KB).
	err := s.db.Sizes("", func(k store.Key, n int) {
		e.sizes[k] = n
		e.total += int64(n)
	})
	if err != nil {
		return nil, fmt.Errorf("shadow store: list: %w", err)
	}
	return e, nil
}

func (e *engine) count() (int, int64) {
	e.sizeMu.Lock()
	defer e.sizeMu.Unlock()
	return len(e.sizes), e.total
}

// submit queues r. It answers 429 itself when the client has
// MaxInFlightPerClient requests in flight or the queues are full.
func (e *engine) submit(r *request) *doc.Error {
	e.mu.Lock()
	if e.stopped {
		e.mu.Unlock()
		return doc.ErrorFor(500, doc.MsgInternal, r.payload)
	}
	if (r.client != "" && e.inflight[r.client] >= MaxInFlightPerClient) || e.queued >= MaxQueued {
		e.mu.Unlock()
		return doc.ErrorFor(429, doc.MsgTooManyRequests, r.payload)
	}
	if r.client != "" {
		e.inflight[r.client]++
	}
	e.queued++
	q := e.queues[r.key]
	start := q == nil
	if start {
		q = &keyQueue{}
		e.queues[r.key] = q
		e.wg.Add(1)
	}
	q.items = append(q.items, r)
	e.mu.Unlock()
	if start {
		go e.drain(r.key, q)
	}
	return nil
}

func (e *engine) drain(k store.Key, q *keyQueue) {
	defer e.wg.Done()
	for {
		e.mu.Lock()
		if len(q.items) == 0 {
			delete(e.queues, k)
			if e.queued == 0 && e.written.Load() > trimAfterBytes && !e.stopped {
				e.trim.Reset(trimDelay)
			}
			e.mu.Unlock()
			return
		}
		r := q.items[0]
		q.items[0] = nil
		q.items = q.items[1:]
		e.mu.Unlock()

		e.process(r)

		e.mu.Lock()
		e.queued--
		if r.client != "" {
			if e.inflight[r.client]--; e.inflight[r.client] <= 0 {
				delete(e.inflight, r.client)
			}
		}
		e.mu.Unlock()
	}
}

// stop refuses new requests and waits for the queued ones until ctx ends.
func (e *engine) stop(ctx context.Context) {
	e.mu.Lock()
	e.stopped = true
	e.mu.Unlock()
	e.trim.Stop()
	done := make(chan struct{})
	go func() { e.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
	}
}

// load reads a shadow's record; a missing one is the zero record.
//
// A record that failed its checksum, or that no longer decodes, is treated
// as missing (and logged): the next update recreates the shadow and a
// delete removes it, instead of the shadow answering 500 forever. A synced
// shadow gets the cloud's copy back at the next resync.
func (e *engine) load(k store.Key) (record, error) {
	b, ok, err := e.s.db.Get(k)
	if errors.Is(err, store.ErrCorrupt) {
		e.s.log.Error("damaged shadow record treated as missing; the next update recreates it", "thing", k.Thing, "name", k.Name, "err", err)
		return record{}, nil
	}
	if err != nil || !ok {
		return record{}, err
	}
	r, err := unmarshalRecord(b)
	if err != nil {
		e.s.log.Error("undecodable shadow record treated as missing; the next update recreates it", "thing", k.Thing, "name", k.Name, "err", err)
		return record{}, nil
	}
	return r, nil
}

var errStoreFull = errors.New("store full")

// save makes rec durable, within the store's byte bound and the named
// shadow limit.
func (e *engine) save(k store.Key, rec *record) error {
	b, err := rec.marshal()
	if err != nil {
		return err
	}
	e.sizeMu.Lock()
	old, existed := e.sizes[k]
	grow := int64(len(b) - old)
	if grow > 0 && e.total+grow > e.s.opts.MaxStoreBytes {
		e.sizeMu.Unlock()
		return errStoreFull
	}
	var evict *store.Key
	if !existed && k.Name != "" {
		n := 0
		for other := range e.sizes {
			if other.Thing == k.Thing && other.Name != "" {
				n++
			}
		}
		if n >= MaxNamedShadows {
			evict = e.oldestTombstone(k.Thing)
			if evict == nil {
				e.sizeMu.Unlock()
				return errTooManyNamed
			}
		}
	}
	e.sizeMu.Unlock()
	if evict != nil {
		if err := e.s.db.Delete(*evict); err != nil {
			return err
		}
		e.sizeMu.Lock()
		e.total -= int64(e.sizes[*evict])
		delete(e.sizes, *evict)
		e.sizeMu.Unlock()
		e.s.log.Info("named shadow limit reached; forgot a deleted shadow's version numbering", "thing", evict.Thing, "name", evict.Name)
	}
	if err := e.s.db.Put(k, b); err != nil {
		return err
	}
	e.written.Add(int64(len(b)))
	e.sizeMu.Lock()
	e.total += int64(len(b) - e.sizes[k])
	e.sizes[k] = len(b)
	e.sizeMu.Unlock()
	return nil
}

var errTooManyNamed = fmt.Errorf("thing has %d named shadows", MaxNamedShadows)

// oldestTombstone picks a deleted named shadow of thing to forget (the
// first by name; the store does not keep deletion times). Called with
// sizeMu held; reads the store.
func (e *engine) oldestTombstone(thing string) *store.Key {
	var found *store.Key
	e.s.db.List(thing, func(k store.Key, v []byte) error {
		if k.Name == "" {
			return nil
		}
		if r, err := unmarshalRecord(v); err == nil && !r.Shadow.Exists {
			kk := k
			found = &kk
			return errors.New("found")
		}
		return nil
	})
	return found
}

// process runs one request and sends its answers.
func (e *engine) process(r *request) {
	s := e.s
	now := s.opts.Now()
	sh := topic.Shadow{Thing: r.key.Thing, Name: r.key.Name, Op: opNames[r.op]}
	if r.op != opCloud && !s.known(r.key.Thing) {
		e.answer(r, sh, nil, 0, doc.ErrorFor(404, doc.MsgThingNotFound, r.payload))
		return
	}
	rec, err := e.load(r.key)
	if err != nil {
		s.log.Error("read shadow", "thing", r.key.Thing, "name", r.key.Name, "err", err)
		e.answer(r, sh, nil, 0, doc.ErrorFor(500, doc.MsgInternal, r.payload))
		return
	}
	switch r.op {
	case opGet:
		out, derr := doc.Get(rec.Shadow, displayName(r.key), r.payload, now)
		e.answer(r, sh, out, rec.Shadow.Version, derr)
	case opUpdate:
		res, derr := doc.Update(rec.Shadow, r.payload, now, s.lim)
		if derr != nil {
			e.answer(r, sh, nil, 0, derr)
			return
		}
		rec.Shadow = res.Next
		synced := s.synced(r.key.Thing)
		if synced {
			rec.Sync.Pending = true
		}
		if derr := e.commit(r, &rec); derr != nil {
			e.answer(r, sh, nil, 0, derr)
			return
		}
		e.answer(r, sh, res.Accepted, res.Next.Version, nil)
		e.publishChange(sh, res.Delta, res.Documents)
		if synced {
			s.sync.push(r.key, &rec)
		}
	case opDelete:
		next, out, derr := doc.Delete(rec.Shadow, displayName(r.key), r.payload, now)
		if derr != nil {
			e.answer(r, sh, nil, 0, derr)
			return
		}
		rec.Shadow = next
		synced := s.synced(r.key.Thing)
		if synced {
			rec.Sync.Pending = true
		}
		if derr := e.commit(r, &rec); derr != nil {
			e.answer(r, sh, nil, 0, derr)
			return
		}
		e.answer(r, sh, out, next.Version, nil)
		if synced {
			s.sync.push(r.key, &rec)
		}
	case opCloud:
		s.sync.reconcile(r, &rec, now)
	}
}

// commit saves rec and maps a failure to the error the requester gets.
func (e *engine) commit(r *request, rec *record) *doc.Error {
	err := e.save(r.key, rec)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, errStoreFull):
		e.s.log.Warn("shadow store full; update refused", "thing", r.key.Thing, "name", r.key.Name, "max_bytes", e.s.opts.MaxStoreBytes)
		return doc.ErrorFor(413, fmt.Sprintf("The shadow store is full (%d bytes)", e.s.opts.MaxStoreBytes), r.payload)
	case errors.Is(err, errTooManyNamed):
		return doc.ErrorFor(429, fmt.Sprintf("Too many named shadows for thing %s (%d)", r.key.Thing, MaxNamedShadows), r.payload)
	default:
		e.s.log.Error("write shadow", "thing", r.key.Thing, "name", r.key.Name, "err", err)
		return doc.ErrorFor(500, doc.MsgInternal, r.payload)
	}
}

// answer sends the accepted or rejected answer of r: through the router
// for routed requests, to the waiting caller otherwise, where an accepted
// update or delete is also published for the group (as AWS IoT does for
// changes made over HTTP).
func (e *engine) answer(r *request, sh topic.Shadow, out []byte, version int64, derr *doc.Error) {
	if r.op == opCloud {
		return
	}
	if derr != nil {
		if r.routed {
			e.publish(sh.Topic(sh.Op, "rejected"), derr.Document(e.s.opts.Now()))
		}
		if r.done != nil {
			r.done <- result{err: derr}
		}
		return
	}
	if r.routed || r.op != opGet {
		e.publish(sh.Topic(sh.Op, "accepted"), out)
	}
	if r.done != nil {
		r.done <- result{document: out, version: version}
	}
}

// publishChange publishes what follows an accepted update.
func (e *engine) publishChange(sh topic.Shadow, delta, documents []byte) {
	if delta != nil {
		e.publish(sh.Topic("update", "delta"), delta)
	}
	if documents != nil {
		e.publish(sh.Topic("update", "documents"), documents)
	}
}

// publish hands a message of GGShadowService to the broker, which routes
// it by the table. The source is set by the broker from the subject.
func (e *engine) publish(t string, payload []byte) {
	e.s.busPublish(subjects.ShadowPublish, &brokerv1.RoutedMessage{
		Topic:   t,
		Payload: payload,
		Source:  &brokerv1.Endpoint{Kind: brokerv1.EndpointKind_ENDPOINT_KIND_SHADOW},
		Time:    timestamppb.New(e.s.opts.Now()),
	})
}

func (s *Service) busPublish(subject string, m proto.Message) {
	b, err := proto.Marshal(m)
	if err == nil {
		err = s.env.Bus.Publish(subject, b)
	}
	if err != nil {
		s.log.Warn("bus publish", "subject", subject, "err", err)
	}
}
