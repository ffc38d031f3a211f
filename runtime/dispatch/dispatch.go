package dispatch

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"
)

// Errors of the dispatcher; package ipc turns them into HTTP statuses.
var (
	ErrUnknownFunction   = errors.New("unknown function")
	ErrQueueFull         = errors.New("work queue is full")
	ErrClosed            = errors.New("dispatcher is closed")
	ErrNotYours          = errors.New("invocation is not held by this worker")
	ErrUnknownInvocation = errors.New("unknown invocation")
	ErrWorkerGone        = errors.New("worker is gone")
	// ErrUnavailable: a daemon a system function needs did not answer.
	ErrUnavailable           = errors.New("service unavailable")
	ErrInvalidInvocationType = errors.New("invalid invocation type")
	// ErrInvalidPayload: the target's encoding is json and the payload is
	// not JSON (InvokeAll only; Invoke reports it as a result, see Invoke).
	ErrInvalidPayload = errors.New("payload is not JSON and the target's encoding is json")
)

// Queue-full policies of a publish (client context custom.queueFullPolicy).
const (
	BestEffort = "BestEffort"
	AllOrError = "AllOrError"
)

// Defaults of Options.
const (
	DefaultMaxWorkItems = 1024
	DefaultTimeout      = 3 * time.Second
	DefaultResultTTL    = 2 * time.Minute
)

// Error types in the JSON payload of an Unhandled result the core produces:
// {"errorMessage":"...","errorType":"<one of these>"}.
const (
	ErrorTypeTimeout         = "Timeout"
	ErrorTypeWorkerDied      = "WorkerDied"
	ErrorTypeFunctionRemoved = "FunctionRemoved"
	ErrorTypeShutdown        = "Shutdown"
	ErrorTypeInvalidPayload  = "InvalidPayload"
	ErrorTypeAbandoned       = "Abandoned"
)

// Options configures a Dispatcher.
type Options struct {
	// MaxWorkItems bounds the items queued (not yet handed out) across all
	// functions: runtime.maxWorkItemCount. 0 = 1024.
	MaxWorkItems int
	Launcher     Launcher
	// System maps pseudo-function ARNs, unqualified or qualified
	// ("arn:aws:lambda:::function:GGRouter"), to their inline handlers.
	System map[string]SystemFunc
	// ResultTTL is how long a RequestResponse result is kept after its
	// completion for the invoker to fetch. 0 = 2 minutes.
	ResultTTL time.Duration
	// MaxResults bounds the completed results kept; the oldest go first.
	// 0 = MaxWorkItems.
	MaxResults int
	Now        func() time.Time
	Log        *slog.Logger
}

// Stats are counters since New.
type Stats struct {
	Queued   int // items waiting for a worker
	InFlight int // items held by a worker
	Waiting  int // workers waiting in Next
	// Completed counts items that reached a result of any kind
	// (including timeouts and Event invocations).
	Completed    uint64
	Timeouts     uint64
	WorkerDeaths uint64 // items failed because their worker died
	// Rejected counts invocations refused because the queue was full.
	Rejected uint64
	// Dropped counts InvokeAll targets not delivered (policy, queue full,
	// unknown target, invalid payload).
	Dropped uint64
	// InvalidPayload counts non-JSON payloads refused for json targets.
	InvalidPayload uint64
}

// FunctionStats are one deployed function's counters, kept from the
// deployment that added its (qualified) ARN until the one that removes it.
// Only invocations queued for the function's workers count: system
// functions have none, and a payload refused as not JSON is never queued.
type FunctionStats struct {
	// Invocations counts invocations queued for the function (Invoke and
	// InvokeAll), whatever became of them.
	Invocations uint64
	// Handled counts results whose FunctionError is Handled: the function
	// raised an error (IPC E).
	Handled uint64
	// Unhandled counts results whose FunctionError is Unhandled: errors the
	// core detected (timeouts, worker deaths, out-of-memory kills,
	// abandoned items, removal by a deployment, shutdown).
	Unhandled uint64
	// Timeouts counts items that ran past the function's timeout.
	Timeouts uint64
	// WorkerDeaths counts items lost because their worker exited while
	// holding them (out-of-memory kills included).
	WorkerDeaths uint64
	// OutOfMemory counts workers the kernel killed at their memory limit
	// (OutOfMemory), whether or not they held an item.
	OutOfMemory uint64
	// Rejected counts invocations refused because the work queue was full.
	Rejected uint64
}

// Dispatcher is the work queue. Its methods are safe for concurrent use.
// It takes one lock and never calls the Launcher or a SystemFunc while
// holding it.
type Dispatcher struct {
	o Options

	mu       sync.Mutex
	closed   bool
	fns      map[string]*fnState // by qualified ARN
	byUnq    map[string][]string // unqualified ARN -> qualified ARNs deployed
	sysByUnq map[string][]string // unqualified ARN -> keys of o.System
	queued   int
	held     map[WorkerID]*item
	killed   map[WorkerID]bool // killed after a timeout, until WorkerGone
	results  map[string]*item  // RequestResponse items: pending and kept
	kept     []*item           // completed RequestResponse items, oldest first
	stats    Stats
	// counts holds each deployed function's counters, by qualified ARN.
	counts map[string]*FunctionStats
}

type fnState struct {
	Function
	queue   []*item
	waiters []*waiter
}

type waiter struct {
	w WorkerID
	// ch gets exactly one value, sent under d.mu, once the waiter has
	// been taken out of its function's list.
	ch chan handOff
}

type handOff struct {
	it   *item
	work Work // copied under d.mu: a timeout may clear it.payload
	err  error
}

type item struct {
	id, fn, caller string
	// counts are the counters of the user function it was queued for;
	// nil for system functions and results made at once.
	counts        *FunctionStats
	clientContext string
	payload       []byte
	worker        WorkerID
	timer         *time.Timer
	done          chan struct{} // nil for Event invocations
	completed     bool
	completedAt   time.Time
	result        Result
}

// New returns a Dispatcher with no functions deployed.
func New(o Options) *Dispatcher {
	if o.MaxWorkItems <= 0 {
		o.MaxWorkItems = DefaultMaxWorkItems
	}
	if o.ResultTTL <= 0 {
		o.ResultTTL = DefaultResultTTL
	}
	if o.MaxResults <= 0 {
		o.MaxResults = o.MaxWorkItems
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	d := &Dispatcher{
		o:        o,
		fns:      map[string]*fnState{},
		byUnq:    map[string][]string{},
		sysByUnq: map[string][]string{},
		held:     map[WorkerID]*item{},
		killed:   map[WorkerID]bool{},
		results:  map[string]*item{},
		counts:   map[string]*FunctionStats{},
	}
	for k := range o.System {
		u := Unqualified(k)
		d.sysByUnq[u] = append(d.sysByUnq[u], k)
	}
	return d
}

// Unqualified returns a Lambda function ARN without its version or alias
// qualifier: arn:aws:lambda:<region>:<account>:function:<name>.
func Unqualified(arn string) string {
	n := 0
	for i := 0; i < len(arn); i++ {
		if arn[i] == ':' {
			n++
			if n == 7 {
				return arn[:i]
			}
		}
	}
	return arn
}

func qualified(arn string) bool { return strings.Count(arn, ":") >= 7 }

// SetFunctions installs a deployment. Functions that stay keep their queue
// and workers; queued items of removed functions complete Unhandled
// (FunctionRemoved) and their waiting workers get ErrUnknownFunction.
// Items already handed out keep running to their result or timeout.
func (d *Dispatcher) SetFunctions(fs []Function) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return
	}
	next := make(map[string]*fnState, len(fs))
	for _, f := range fs {
		if f.Timeout <= 0 {
			f.Timeout = DefaultTimeout
		}
		if st := d.fns[f.ARN]; st != nil {
			st.Function = f
			next[f.ARN] = st
		} else {
			next[f.ARN] = &fnState{Function: f}
		}
	}
	for arn, st := range d.fns {
		if next[arn] != nil {
			continue
		}
		for _, it := range st.queue {
			d.queued--
			d.complete(it, coreError(ErrorTypeFunctionRemoved, "function "+arn+" was removed by a deployment"))
		}
		for _, wt := range st.waiters {
			wt.ch <- handOff{err: fmt.Errorf("%s: %w", arn, ErrUnknownFunction)}
		}
		st.queue, st.waiters = nil, nil
	}
	d.fns = next
	for arn := range d.counts {
		if next[arn] == nil {
			delete(d.counts, arn)
		}
	}
	for arn := range next {
		if d.counts[arn] == nil {
			d.counts[arn] = &FunctionStats{}
		}
	}
	d.byUnq = map[string][]string{}
	for arn := range next {
		u := Unqualified(arn)
		d.byUnq[u] = append(d.byUnq[u], arn)
	}
}

// resolve finds target among the deployed functions, then the system
// functions. An unqualified target resolves when exactly one deployed (or
// system) ARN has it as its unqualified form; a qualified system target
// also matches a system function registered unqualified.
func (d *Dispatcher) resolve(target string) (*fnState, SystemFunc, string) {
	if st := d.fns[target]; st != nil {
		return st, nil, st.ARN
	}
	if !qualified(target) {
		if arns := d.byUnq[target]; len(arns) == 1 {
			return d.fns[arns[0]], nil, arns[0]
		}
	}
	if f := d.o.System[target]; f != nil {
		return nil, f, target
	}
	u := Unqualified(target)
	if u != target {
		if f := d.o.System[u]; f != nil {
			return nil, f, u
		}
		return nil, nil, ""
	}
	if keys := d.sysByUnq[u]; len(keys) == 1 {
		return nil, d.o.System[keys[0]], keys[0]
	}
	return nil, nil, ""
}

// Invoke is IPC A (post_work). invocationType "" means RequestResponse.
//
// A non-JSON payload for a json target is never queued: a RequestResponse
// invoker gets an id whose result is Unhandled with errorType
// InvalidPayload ("could not parse the payload as JSON", as v1 documents);
// an Event invocation is accepted and dropped (Stats.InvalidPayload). An
// empty payload counts as JSON (runtimes turn it into {}).
//
// A system function runs inline, before Invoke returns.
func (d *Dispatcher) Invoke(caller, target, invocationType, clientContext string, payload []byte) (string, error) {
	switch invocationType {
	case "":
		invocationType = RequestResponse
	case RequestResponse, Event:
	default:
		return "", fmt.Errorf("%q: %w", invocationType, ErrInvalidInvocationType)
	}
	rr := invocationType == RequestResponse
	id := newID()

	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return "", ErrClosed
	}
	d.pruneLocked()
	st, sys, arn := d.resolve(target)
	switch {
	case st == nil && sys == nil:
		d.mu.Unlock()
		return "", fmt.Errorf("%s: %w", target, ErrUnknownFunction)
	case sys != nil:
		d.mu.Unlock()
		res := sys(caller, clientContext, payload)
		if res.Err != nil {
			return "", res.Err
		}
		d.mu.Lock()
		d.stats.Completed++
		if rr {
			it := &item{id: id, fn: arn, caller: caller, done: make(chan struct{})}
			d.results[id] = it
			d.complete(it, res)
		}
		d.mu.Unlock()
		return id, nil
	case !validFor(st.Encoding, payload):
		d.stats.InvalidPayload++
		if rr {
			it := &item{id: id, fn: arn, caller: caller, done: make(chan struct{})}
			d.results[id] = it
			d.stats.Completed++
			d.complete(it, coreError(ErrorTypeInvalidPayload, "function "+arn+" could not parse the payload as JSON"))
		}
		d.mu.Unlock()
		if !rr {
			d.o.Log.Warn("dropped an Event invocation: payload is not JSON", "target", arn, "caller", caller)
		}
		return id, nil
	case d.queued >= d.o.MaxWorkItems:
		d.stats.Rejected++
		d.counts[arn].Rejected++
		d.mu.Unlock()
		return "", fmt.Errorf("%s: %d items queued: %w", target, d.o.MaxWorkItems, ErrQueueFull)
	}
	it := &item{id: id, fn: arn, caller: caller, counts: d.counts[arn], clientContext: clientContext, payload: payload}
	it.counts.Invocations++
	if rr {
		it.done = make(chan struct{})
		d.results[id] = it
	}
	demand := d.enqueueLocked(st, it)
	d.mu.Unlock()
	if demand {
		d.o.Launcher.Demand(arn)
	}
	return id, nil
}

// InvokeAll delivers one Event invocation to each target (duplicates
// once) under a queue-full policy: BestEffort ("" too, and any unknown
// value, since BestEffort is v1's default) delivers to every target it
// can and joins the errors of the others; AllOrError delivers to all or,
// when any target is unknown, refuses the payload or finds the queue
// full, to none and returns that error. delivered lists targets as given.
func (d *Dispatcher) InvokeAll(targets []string, policy, clientContext string, payload []byte) ([]string, error) {
	type plan struct {
		target string
		st     *fnState
		sys    SystemFunc
		arn    string
	}
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return nil, ErrClosed
	}
	var (
		ok     []plan
		errs   []error
		seen   = map[string]bool{}
		queued int
	)
	for _, t := range targets {
		st, sys, arn := d.resolve(t)
		switch {
		case st == nil && sys == nil:
			errs = append(errs, fmt.Errorf("%s: %w", t, ErrUnknownFunction))
			continue
		case seen[arn]:
			continue
		case st != nil && !validFor(st.Encoding, payload):
			d.stats.InvalidPayload++
			errs = append(errs, fmt.Errorf("%s: %w", t, ErrInvalidPayload))
			continue
		case st != nil && d.queued+queued >= d.o.MaxWorkItems:
			d.stats.Rejected++
			d.counts[arn].Rejected++
			errs = append(errs, fmt.Errorf("%s: %w", t, ErrQueueFull))
			continue
		}
		seen[arn] = true
		if st != nil {
			queued++
		}
		ok = append(ok, plan{t, st, sys, arn})
	}
	if policy == AllOrError && len(errs) > 0 {
		d.stats.Dropped += uint64(len(ok) + len(errs))
		d.mu.Unlock()
		return nil, errors.Join(errs...)
	}
	d.stats.Dropped += uint64(len(errs))
	var demand []string
	delivered := make([]string, 0, len(ok))
	for _, p := range ok {
		delivered = append(delivered, p.target)
		if p.st == nil {
			continue
		}
		it := &item{id: newID(), fn: p.arn, counts: d.counts[p.arn], clientContext: clientContext, payload: payload}
		it.counts.Invocations++
		if d.enqueueLocked(p.st, it) {
			demand = append(demand, p.arn)
		}
	}
	d.mu.Unlock()
	for _, fn := range demand {
		d.o.Launcher.Demand(fn)
	}
	for _, p := range ok {
		if p.sys != nil {
			p.sys("", clientContext, payload)
			d.mu.Lock()
			d.stats.Completed++
			d.mu.Unlock()
		}
	}
	return delivered, errors.Join(errs...)
}

// enqueueLocked hands it to a waiting worker of st or queues it; it
// reports whether the Launcher must be asked for a worker.
func (d *Dispatcher) enqueueLocked(st *fnState, it *item) (demand bool) {
	if len(st.waiters) > 0 {
		wt := st.waiters[0]
		st.waiters = st.waiters[1:]
		d.handOutLocked(st, it, wt.w)
		wt.ch <- handOff{it: it, work: work(it)}
		return false
	}
	st.queue = append(st.queue, it)
	d.queued++
	return true
}

// handOutLocked gives it to worker w and starts its timeout.
func (d *Dispatcher) handOutLocked(st *fnState, it *item, w WorkerID) {
	it.worker = w
	d.held[w] = it
	timeout := st.Timeout
	it.timer = time.AfterFunc(timeout, func() { d.expire(it, w, timeout) })
}

// Next is IPC C (get_work) for worker w of fn: it returns the oldest item
// of fn, waiting until there is one or ctx ends. When ctx ends after an
// item was handed to this call, the item goes back to the head of the
// queue. A worker that asks for work while it still holds an item has
// abandoned that item: it completes Unhandled (Abandoned).
func (d *Dispatcher) Next(ctx context.Context, fn string, w WorkerID) (Work, error) {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return Work{}, ErrClosed
	}
	if d.killed[w] {
		d.mu.Unlock()
		return Work{}, fmt.Errorf("%s: %w", w, ErrWorkerGone)
	}
	st := d.fns[fn]
	if st == nil {
		d.mu.Unlock()
		return Work{}, fmt.Errorf("%s: %w", fn, ErrUnknownFunction)
	}
	if prev := d.held[w]; prev != nil {
		prev.timer.Stop()
		delete(d.held, w)
		d.stats.Completed++
		d.complete(prev, coreError(ErrorTypeAbandoned, "worker asked for new work without posting a result"))
	}
	if len(st.queue) > 0 {
		it := st.queue[0]
		st.queue[0] = nil
		st.queue = st.queue[1:]
		d.queued--
		d.handOutLocked(st, it, w)
		wk := work(it)
		d.mu.Unlock()
		return wk, nil
	}
	wt := &waiter{w: w, ch: make(chan handOff, 1)}
	st.waiters = append(st.waiters, wt)
	d.mu.Unlock()

	select {
	case h := <-wt.ch:
		if h.err != nil {
			return Work{}, h.err
		}
		return h.work, nil
	case <-ctx.Done():
	}
	d.mu.Lock()
	for i, x := range st.waiters {
		if x == wt {
			st.waiters = append(st.waiters[:i:i], st.waiters[i+1:]...)
			d.mu.Unlock()
			return Work{}, ctx.Err()
		}
	}
	h := <-wt.ch // sent under d.mu before the waiter left the list
	var demand string
	if it := h.it; it != nil && d.held[w] == it && !it.completed {
		it.timer.Stop()
		delete(d.held, w)
		it.worker = ""
		if cur := d.fns[it.fn]; cur != nil && !d.closed {
			cur.queue = append([]*item{it}, cur.queue...)
			d.queued++
			if d.pumpLocked(cur) {
				demand = it.fn
			}
		} else {
			d.stats.Completed++
			d.complete(it, coreError(ErrorTypeFunctionRemoved, "function "+it.fn+" was removed by a deployment"))
		}
	}
	d.mu.Unlock()
	if demand != "" {
		d.o.Launcher.Demand(demand)
	}
	return Work{}, ctx.Err()
}

// pumpLocked hands queued items of st to its waiters; it reports whether
// items remain with no worker waiting.
func (d *Dispatcher) pumpLocked(st *fnState) bool {
	for len(st.queue) > 0 && len(st.waiters) > 0 {
		it := st.queue[0]
		st.queue[0] = nil
		st.queue = st.queue[1:]
		d.queued--
		wt := st.waiters[0]
		st.waiters = st.waiters[1:]
		d.handOutLocked(st, it, wt.w)
		wt.ch <- handOff{it: it, work: work(it)}
	}
	return len(st.queue) > 0
}

func work(it *item) Work {
	return Work{ID: it.id, ClientContext: it.clientContext, Payload: it.payload}
}

// Done is IPC D (handled=false) and E (handled=true, FunctionError
// Handled): the result of the item id that worker w of fn holds.
func (d *Dispatcher) Done(fn string, w WorkerID, id string, payload []byte, handled bool) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return ErrClosed
	}
	it := d.held[w]
	if it == nil || it.id != id || it.fn != fn {
		return fmt.Errorf("%s: %w", id, ErrNotYours)
	}
	it.timer.Stop()
	delete(d.held, w)
	res := Result{Payload: payload}
	if handled {
		res.FunctionError = Handled
	}
	d.stats.Completed++
	d.complete(it, res)
	return nil
}

// expire is the timeout of an item handed to w.
func (d *Dispatcher) expire(it *item, w WorkerID, timeout time.Duration) {
	d.mu.Lock()
	if d.held[w] != it || it.completed {
		d.mu.Unlock()
		return
	}
	delete(d.held, w)
	d.killed[w] = true
	d.stats.Timeouts++
	if it.counts != nil {
		it.counts.Timeouts++
	}
	d.stats.Completed++
	d.complete(it, coreError(ErrorTypeTimeout, fmt.Sprintf("Task timed out after %.2f seconds", timeout.Seconds())))
	demand := false
	if st := d.fns[it.fn]; st != nil {
		demand = len(st.queue) > 0 && len(st.waiters) == 0
	}
	d.mu.Unlock()
	d.o.Log.Warn("work item timed out", "function", it.fn, "worker", string(w), "invocation", it.id, "timeout", timeout)
	d.o.Launcher.Kill(w, "work item "+it.id+" timed out after "+timeout.String())
	if demand {
		d.o.Launcher.Demand(it.fn)
	}
}

// Retire stops handing work to worker w, which is being stopped (a
// restart): its pending Next returns ErrWorkerGone at once and later ones
// too, so that no invocation goes to a worker about to die. An item it
// already holds completes when it posts its result or when WorkerGone
// reports it dead.
func (d *Dispatcher) Retire(w WorkerID) {
	d.mu.Lock()
	d.killed[w] = true
	demand := d.dropWaiterLocked(w)
	d.mu.Unlock()
	for _, fn := range demand {
		d.o.Launcher.Demand(fn)
	}
}

// dropWaiterLocked ends w's pending Next with ErrWorkerGone and returns
// the functions left with queued work and no waiting worker.
func (d *Dispatcher) dropWaiterLocked(w WorkerID) []string {
	var demand []string
	for arn, st := range d.fns {
		kept := st.waiters[:0]
		for _, wt := range st.waiters {
			if wt.w == w {
				wt.ch <- handOff{err: fmt.Errorf("%s: %w", w, ErrWorkerGone)}
			} else {
				kept = append(kept, wt)
			}
		}
		clear(st.waiters[len(kept):])
		st.waiters = kept
		if len(st.queue) > 0 && len(st.waiters) == 0 {
			demand = append(demand, arn)
		}
	}
	return demand
}

// WorkerGone says worker w has exited: the item it held completes
// Unhandled (WorkerDied) and its pending Next returns ErrWorkerGone. The
// Launcher calls it for every worker that ends, killed ones included.
func (d *Dispatcher) WorkerGone(w WorkerID) {
	d.mu.Lock()
	delete(d.killed, w)
	if it := d.held[w]; it != nil {
		it.timer.Stop()
		delete(d.held, w)
		d.stats.WorkerDeaths++
		if it.counts != nil {
			it.counts.WorkerDeaths++
		}
		d.stats.Completed++
		d.complete(it, coreError(ErrorTypeWorkerDied, "worker "+string(w)+" exited while handling the invocation"))
	}
	demand := d.dropWaiterLocked(w)
	d.mu.Unlock()
	for _, fn := range demand {
		d.o.Launcher.Demand(fn)
	}
}

// Result is IPC B (get_work_result): the result of RequestResponse
// invocation id, waiting for it until ctx ends. Only caller, the invoker,
// may read it; to anyone else, and after it was read, expired or evicted,
// it is ErrUnknownInvocation. Event invocations have no result.
func (d *Dispatcher) Result(ctx context.Context, caller, id string) (Result, error) {
	d.mu.Lock()
	d.pruneLocked()
	it := d.results[id]
	d.mu.Unlock()
	if it == nil || it.caller != caller {
		return Result{}, fmt.Errorf("%s: %w", id, ErrUnknownInvocation)
	}
	select {
	case <-it.done:
	case <-ctx.Done():
		return Result{}, ctx.Err()
	}
	d.mu.Lock()
	if d.results[id] == it {
		delete(d.results, id)
	}
	d.mu.Unlock()
	return it.result, nil
}

// complete records the result of it once. Callers count Stats.Completed.
func (d *Dispatcher) complete(it *item, res Result) {
	if it.completed {
		return
	}
	it.completed = true
	it.result = res
	it.payload = nil
	if it.counts != nil {
		switch res.FunctionError {
		case Handled:
			it.counts.Handled++
		case Unhandled:
			it.counts.Unhandled++
		}
	}
	if it.done == nil {
		return
	}
	it.completedAt = d.o.Now()
	close(it.done)
	d.kept = append(d.kept, it)
	d.pruneLocked()
}

// pruneLocked forgets completed results older than ResultTTL, and the
// oldest beyond MaxResults.
func (d *Dispatcher) pruneLocked() {
	now := d.o.Now()
	n := 0
	for n < len(d.kept) {
		it := d.kept[n]
		if len(d.kept)-n <= d.o.MaxResults && now.Sub(it.completedAt) < d.o.ResultTTL {
			break
		}
		if d.results[it.id] == it {
			delete(d.results, it.id)
		}
		n++
	}
	if n > 0 {
		clear(d.kept[:n])
		d.kept = d.kept[n:]
	}
}

// Stats returns the counters.
func (d *Dispatcher) Stats() Stats {
	d.mu.Lock()
	defer d.mu.Unlock()
	s := d.stats
	s.Queued = d.queued
	s.InFlight = len(d.held)
	for _, st := range d.fns {
		s.Waiting += len(st.waiters)
	}
	return s
}

// OutOfMemory counts a worker of fn that the kernel killed at its memory
// limit. The Launcher calls it before WorkerGone, which fails the item the
// worker held (Unhandled, WorkerDied). An fn no longer deployed is ignored.
func (d *Dispatcher) OutOfMemory(fn string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if c := d.counts[fn]; c != nil {
		c.OutOfMemory++
	}
}

// FunctionStats returns the counters of every deployed function, by
// qualified ARN.
func (d *Dispatcher) FunctionStats() map[string]FunctionStats {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make(map[string]FunctionStats, len(d.counts))
	for arn, c := range d.counts {
		out[arn] = *c
	}
	return out
}

// Close fails every queued and held item Unhandled (Shutdown), wakes every
// waiting worker with ErrClosed, and refuses further work. Results already
// completed can still be read.
func (d *Dispatcher) Close() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return
	}
	d.closed = true
	shutdown := coreError(ErrorTypeShutdown, "the core is shutting down")
	for _, st := range d.fns {
		for _, it := range st.queue {
			d.stats.Completed++
			d.complete(it, shutdown)
		}
		for _, wt := range st.waiters {
			wt.ch <- handOff{err: ErrClosed}
		}
		st.queue, st.waiters = nil, nil
	}
	d.queued = 0
	for w, it := range d.held {
		it.timer.Stop()
		d.stats.Completed++
		d.complete(it, shutdown)
		delete(d.held, w)
	}
}

// validFor reports whether payload may go to a function of encoding enc.
func validFor(enc string, payload []byte) bool {
	return enc != "json" || len(payload) == 0 || json.Valid(payload)
}

// coreError is an Unhandled result the core produces.
func coreError(typ, msg string) Result {
	b, _ := json.Marshal(struct {
		ErrorMessage string `json:"errorMessage"`
		ErrorType    string `json:"errorType"`
	}{msg, typ})
	return Result{Payload: b, FunctionError: Unhandled}
}

// newID returns a random UUID-shaped invocation id.
func newID() string {
	var b [16]byte
	rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}
