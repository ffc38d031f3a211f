package dispatch

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"
)

const (
	fnA    = "arn:aws:lambda:us-east-1:123456789012:function:A:1"
	fnB    = "arn:aws:lambda:us-east-1:123456789012:function:B:$LATEST"
	caller = "arn:aws:lambda:us-east-1:123456789012:function:Caller:3"
)

// handler is what an in-process worker does with a work item.
type handler func(w Work) (payload []byte, handled bool)

// fakeLauncher records Demand and Kill; with a handler registered for a
// function, Demand starts an in-process worker (up to max per function)
// that speaks the real protocol: Next, handle, Done.
type fakeLauncher struct {
	t  *testing.T
	d  *Dispatcher
	mu sync.Mutex

	demands  []string
	kills    []WorkerID
	handlers map[string]handler
	max      int
	started  map[string]int
	cancel   map[WorkerID]context.CancelFunc
	wg       sync.WaitGroup
}

func newFake(t *testing.T) *fakeLauncher {
	f := &fakeLauncher{t: t, handlers: map[string]handler{}, started: map[string]int{}, cancel: map[WorkerID]context.CancelFunc{}, max: 1}
	t.Cleanup(func() {
		f.mu.Lock()
		for _, c := range f.cancel {
			c()
		}
		f.mu.Unlock()
		f.wg.Wait()
	})
	return f
}

func (f *fakeLauncher) Demand(fn string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.demands = append(f.demands, fn)
	h := f.handlers[fn]
	if h == nil || f.started[fn] >= f.max {
		return
	}
	f.started[fn]++
	f.startLocked(fn, WorkerID(fmt.Sprintf("%s#%d", fn, f.started[fn])), h)
}

func (f *fakeLauncher) startLocked(fn string, w WorkerID, h handler) {
	ctx, cancel := context.WithCancel(context.Background())
	f.cancel[w] = cancel
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		for {
			work, err := f.d.Next(ctx, fn, w)
			if err != nil {
				return
			}
			p, handled := h(work)
			if err := f.d.Done(fn, w, work.ID, p, handled); err != nil && ctx.Err() == nil {
				f.t.Errorf("Done by %s: %v", w, err)
			}
		}
	}()
}

func (f *fakeLauncher) Kill(w WorkerID, reason string) {
	f.mu.Lock()
	f.kills = append(f.kills, w)
	if c := f.cancel[w]; c != nil {
		c()
	}
	f.mu.Unlock()
	go f.d.WorkerGone(w)
}

func (f *fakeLauncher) demandCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.demands)
}

func (f *fakeLauncher) killed() []WorkerID {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]WorkerID(nil), f.kills...)
}

func setup(t *testing.T, o Options, fs ...Function) (*Dispatcher, *fakeLauncher) {
	t.Helper()
	f := newFake(t)
	o.Launcher = f
	d := New(o)
	f.d = d
	if fs == nil {
		fs = []Function{{ARN: fnA, Encoding: "json"}, {ARN: fnB, Encoding: "binary"}}
	}
	d.SetFunctions(fs)
	t.Cleanup(d.Close)
	return d, f
}

// checkFor polls fn until it returns nil or total elapses.
func checkFor(t *testing.T, total time.Duration, fn func() error) {
	t.Helper()
	deadline := time.Now().Add(total)
	for {
		err := fn()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func result(t *testing.T, d *Dispatcher, who, id string) Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	r, err := d.Result(ctx, who, id)
	if err != nil {
		t.Fatalf("Result(%s): %v", id, err)
	}
	return r
}

func errorType(t *testing.T, r Result) (typ, msg string) {
	t.Helper()
	var e struct{ ErrorMessage, ErrorType string }
	if err := json.Unmarshal(r.Payload, &e); err != nil {
		t.Fatalf("error payload %q: %v", r.Payload, err)
	}
	return e.ErrorType, e.ErrorMessage
}

func echo(w Work) ([]byte, bool) { return append([]byte("echo:"), w.Payload...), false }

func TestQueueIsBoundedAcrossFunctions(t *testing.T) {
	d, f := setup(t, Options{MaxWorkItems: 3})
	for _, fn := range []string{fnA, fnB, fnA} {
		if _, err := d.Invoke(caller, fn, Event, "", []byte("{}")); err != nil {
			t.Fatal(err)
		}
	}
	_, err := d.Invoke(caller, fnB, RequestResponse, "", nil)
	if !errors.Is(err, ErrQueueFull) {
		t.Fatalf("4th invoke: %v, want ErrQueueFull", err)
	}
	s := d.Stats()
	if s.Queued != 3 || s.Rejected != 1 {
		t.Fatalf("stats %+v", s)
	}
	if n := f.demandCount(); n != 3 {
		t.Fatalf("Demand called %d times, want 3 (one per queued item)", n)
	}
	// A worker taking an item frees a slot.
	if _, err := d.Next(context.Background(), fnA, "w"); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Invoke(caller, fnB, Event, "", nil); err != nil {
		t.Fatalf("after a hand-out: %v", err)
	}
}

func TestItemsOfAFunctionAreFIFO(t *testing.T) {
	d, f := setup(t, Options{})
	for i := range 5 {
		d.Invoke(caller, fnA, Event, "", fmt.Appendf(nil, "%d", i))
		d.Invoke(caller, fnB, Event, "", fmt.Appendf(nil, "b%d", i))
	}
	var got []string
	for range 5 {
		w, err := d.Next(context.Background(), fnA, "wa")
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, string(w.Payload))
		if err := d.Done(fnA, "wa", w.ID, nil, false); err != nil {
			t.Fatal(err)
		}
	}
	if fmt.Sprint(got) != "[0 1 2 3 4]" {
		t.Fatalf("order %v", got)
	}
	if s := d.Stats(); s.Queued != 5 {
		t.Fatalf("fnB's items should still be queued: %+v", s)
	}
	_ = f
}

func TestNoDemandWhenAWorkerIsWaiting(t *testing.T) {
	d, f := setup(t, Options{})
	got := make(chan Work, 1)
	go func() {
		w, _ := d.Next(context.Background(), fnA, "w1")
		got <- w
	}()
	checkFor(t, 2*time.Second, func() error {
		if d.Stats().Waiting != 1 {
			return errors.New("worker not waiting")
		}
		return nil
	})
	id, err := d.Invoke(caller, fnA, Event, "Y2M=", []byte(`{"a":1}`))
	if err != nil {
		t.Fatal(err)
	}
	w := <-got
	if w.ID != id || w.ClientContext != "Y2M=" || string(w.Payload) != `{"a":1}` {
		t.Fatalf("work %+v", w)
	}
	if n := f.demandCount(); n != 0 {
		t.Fatalf("Demand called %d times with a worker waiting", n)
	}
}

func TestRequestResponseResult(t *testing.T) {
	d, f := setup(t, Options{})
	f.handlers[fnB] = echo
	id, err := d.Invoke(caller, fnB, RequestResponse, "", []byte("raw \x00 bytes"))
	if err != nil {
		t.Fatal(err)
	}
	r := result(t, d, caller, id)
	if string(r.Payload) != "echo:raw \x00 bytes" || r.FunctionError != "" {
		t.Fatalf("result %+v", r)
	}
	// Read once: the result is gone afterwards.
	if _, err := d.Result(context.Background(), caller, id); !errors.Is(err, ErrUnknownInvocation) {
		t.Fatalf("second read: %v", err)
	}
}

func TestHandledError(t *testing.T) {
	d, f := setup(t, Options{})
	f.handlers[fnA] = func(Work) ([]byte, bool) { return []byte(`{"errorMessage":"boom"}`), true }
	id, _ := d.Invoke(caller, fnA, "", "", nil)
	r := result(t, d, caller, id)
	if r.FunctionError != Handled || string(r.Payload) != `{"errorMessage":"boom"}` {
		t.Fatalf("result %+v", r)
	}
}

func TestEventHasNoResult(t *testing.T) {
	d, f := setup(t, Options{})
	seen := make(chan string, 1)
	f.handlers[fnA] = func(w Work) ([]byte, bool) { seen <- string(w.Payload); return []byte("ignored"), false }
	id, err := d.Invoke(caller, fnA, Event, "", []byte(`"hi"`))
	if err != nil {
		t.Fatal(err)
	}
	if p := <-seen; p != `"hi"` {
		t.Fatalf("payload %q", p)
	}
	if _, err := d.Result(context.Background(), caller, id); !errors.Is(err, ErrUnknownInvocation) {
		t.Fatalf("Result of an Event: %v", err)
	}
	checkFor(t, 2*time.Second, func() error {
		if s := d.Stats(); s.Completed != 1 {
			return fmt.Errorf("stats %+v", s)
		}
		return nil
	})
}

func TestTimeoutKillsTheWorker(t *testing.T) {
	d, f := setup(t, Options{}, Function{ARN: fnA, Timeout: 50 * time.Millisecond, Encoding: "json"})
	release := make(chan struct{})
	defer close(release)
	f.handlers[fnA] = func(Work) ([]byte, bool) { <-release; return nil, false }
	id, _ := d.Invoke(caller, fnA, RequestResponse, "", nil)
	r := result(t, d, caller, id)
	typ, msg := errorType(t, r)
	if r.FunctionError != Unhandled || typ != ErrorTypeTimeout || msg != "Task timed out after 0.05 seconds" {
		t.Fatalf("result %+v", r)
	}
	checkFor(t, 2*time.Second, func() error {
		if k := f.killed(); len(k) != 1 || k[0] != WorkerID(fnA+"#1") {
			return fmt.Errorf("kills %v", k)
		}
		return nil
	})
	if s := d.Stats(); s.Timeouts != 1 || s.InFlight != 0 {
		t.Fatalf("stats %+v", s)
	}
	// A late result from the killed worker is refused.
	if err := d.Done(fnA, WorkerID(fnA+"#1"), id, nil, false); !errors.Is(err, ErrNotYours) {
		t.Fatalf("late Done: %v", err)
	}
}

func TestKilledWorkerGetsNoMoreWork(t *testing.T) {
	d := New(Options{Launcher: &nopLauncher{}})
	defer d.Close()
	d.SetFunctions([]Function{{ARN: fnA, Timeout: 20 * time.Millisecond}})
	d.Invoke(caller, fnA, Event, "", nil)
	if _, err := d.Next(context.Background(), fnA, "w"); err != nil {
		t.Fatal(err)
	}
	checkFor(t, 2*time.Second, func() error {
		if d.Stats().Timeouts != 1 {
			return errors.New("no timeout yet")
		}
		return nil
	})
	if _, err := d.Next(context.Background(), fnA, "w"); !errors.Is(err, ErrWorkerGone) {
		t.Fatalf("Next by a killed worker: %v", err)
	}
	d.WorkerGone("w") // the launcher reaped it; the id may be reused
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := d.Next(ctx, fnA, "w"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Next after WorkerGone: %v", err)
	}
}

type nopLauncher struct{}

func (*nopLauncher) Demand(string)         {}
func (*nopLauncher) Kill(WorkerID, string) {}

func TestWorkerGoneFailsItsItem(t *testing.T) {
	d, _ := setup(t, Options{})
	id, _ := d.Invoke(caller, fnA, RequestResponse, "", []byte(`1`))
	if _, err := d.Next(context.Background(), fnA, "w1"); err != nil {
		t.Fatal(err)
	}
	d.WorkerGone("w1")
	r := result(t, d, caller, id)
	if typ, _ := errorType(t, r); r.FunctionError != Unhandled || typ != ErrorTypeWorkerDied {
		t.Fatalf("result %+v", r)
	}
	if s := d.Stats(); s.WorkerDeaths != 1 || s.InFlight != 0 {
		t.Fatalf("stats %+v", s)
	}
}

func TestWorkerGoneWakesItsNext(t *testing.T) {
	d, _ := setup(t, Options{})
	errc := make(chan error, 1)
	go func() { _, err := d.Next(context.Background(), fnA, "w1"); errc <- err }()
	checkFor(t, 2*time.Second, func() error {
		if d.Stats().Waiting != 1 {
			return errors.New("not waiting")
		}
		return nil
	})
	d.WorkerGone("w1")
	if err := <-errc; !errors.Is(err, ErrWorkerGone) {
		t.Fatalf("Next: %v", err)
	}
}

func TestDoneByTheWrongWorker(t *testing.T) {
	d, _ := setup(t, Options{})
	id, _ := d.Invoke(caller, fnA, RequestResponse, "", nil)
	if _, err := d.Next(context.Background(), fnA, "w1"); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		fn string
		w  WorkerID
		id string
	}{{fnA, "w2", id}, {fnA, "w1", "other-id"}, {fnB, "w1", id}} {
		if err := d.Done(c.fn, c.w, c.id, []byte("x"), false); !errors.Is(err, ErrNotYours) {
			t.Fatalf("Done%v: %v, want ErrNotYours", c, err)
		}
	}
	if err := d.Done(fnA, "w1", id, []byte(`"ok"`), false); err != nil {
		t.Fatal(err)
	}
	if r := result(t, d, caller, id); string(r.Payload) != `"ok"` {
		t.Fatalf("result %+v", r)
	}
}

func TestAbandonedItemFails(t *testing.T) {
	d, _ := setup(t, Options{})
	id, _ := d.Invoke(caller, fnA, RequestResponse, "", nil)
	d.Next(context.Background(), fnA, "w1")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	d.Next(ctx, fnA, "w1")
	if typ, _ := errorType(t, result(t, d, caller, id)); typ != ErrorTypeAbandoned {
		t.Fatalf("type %s", typ)
	}
}

func TestCancelledNextLeavesWorkQueued(t *testing.T) {
	d, f := setup(t, Options{})
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { _, err := d.Next(ctx, fnA, "w1"); errc <- err }()
	checkFor(t, 2*time.Second, func() error {
		if d.Stats().Waiting != 1 {
			return errors.New("not waiting")
		}
		return nil
	})
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatal(err)
	}
	d.Invoke(caller, fnA, Event, "", nil)
	if s := d.Stats(); s.Queued != 1 || s.Waiting != 0 || f.demandCount() != 1 {
		t.Fatalf("stats %+v, demands %d", s, f.demandCount())
	}
}

func TestSetFunctionsRemovesQueuedWork(t *testing.T) {
	d, _ := setup(t, Options{})
	idA, _ := d.Invoke(caller, fnA, RequestResponse, "", nil)
	d.Invoke(caller, fnB, Event, "", nil)
	errc := make(chan error, 1)
	const fnC = "arn:aws:lambda:us-east-1:123456789012:function:C:1"
	d.SetFunctions([]Function{{ARN: fnA}, {ARN: fnB}, {ARN: fnC}})
	go func() { _, err := d.Next(context.Background(), fnC, "wc"); errc <- err }()
	checkFor(t, 2*time.Second, func() error {
		if d.Stats().Waiting != 1 {
			return errors.New("not waiting")
		}
		return nil
	})

	d.SetFunctions([]Function{{ARN: fnB}})

	if typ, _ := errorType(t, result(t, d, caller, idA)); typ != ErrorTypeFunctionRemoved {
		t.Fatalf("type %s", typ)
	}
	if err := <-errc; !errors.Is(err, ErrUnknownFunction) {
		t.Fatalf("waiting worker of a removed function: %v", err)
	}
	if _, err := d.Invoke(caller, fnA, Event, "", nil); !errors.Is(err, ErrUnknownFunction) {
		t.Fatalf("invoke removed: %v", err)
	}
	if s := d.Stats(); s.Queued != 1 {
		t.Fatalf("fnB's item must survive the deployment: %+v", s)
	}
}

func TestInvokeAllBestEffort(t *testing.T) {
	const fnC = "arn:aws:lambda:us-east-1:123456789012:function:C:1"
	d, _ := setup(t, Options{MaxWorkItems: 2}, Function{ARN: fnA}, Function{ARN: fnB}, Function{ARN: fnC})
	got, err := d.InvokeAll([]string{fnA, fnB, fnA, fnC, "arn:aws:lambda:us-east-1:123456789012:function:Nope:1"}, "", "", nil)
	if fmt.Sprint(got) != fmt.Sprint([]string{fnA, fnB}) {
		t.Fatalf("delivered %v", got)
	}
	if !errors.Is(err, ErrQueueFull) || !errors.Is(err, ErrUnknownFunction) {
		t.Fatalf("err %v", err)
	}
	if s := d.Stats(); s.Queued != 2 || s.Dropped != 2 {
		t.Fatalf("stats %+v", s)
	}
}

func TestInvokeAllAllOrError(t *testing.T) {
	const fnC = "arn:aws:lambda:us-east-1:123456789012:function:C:1"
	d, _ := setup(t, Options{MaxWorkItems: 2}, Function{ARN: fnA}, Function{ARN: fnB}, Function{ARN: fnC})
	got, err := d.InvokeAll([]string{fnA, fnB, fnC}, AllOrError, "", nil)
	if got != nil || !errors.Is(err, ErrQueueFull) {
		t.Fatalf("delivered %v, err %v", got, err)
	}
	if s := d.Stats(); s.Queued != 0 || s.Dropped != 3 {
		t.Fatalf("nothing may be queued: %+v", s)
	}
	got, err = d.InvokeAll([]string{fnA, fnB, fnA}, AllOrError, "", nil)
	if err != nil || len(got) != 2 {
		t.Fatalf("delivered %v, err %v", got, err)
	}
}

func TestInvokeAllRunsSystemFunctions(t *testing.T) {
	var calls []string
	sys := map[string]SystemFunc{"arn:aws:lambda:::function:GGShadowService": func(c, cc string, p []byte) Result {
		calls = append(calls, c+"|"+cc+"|"+string(p))
		return Result{}
	}}
	d, _ := setup(t, Options{System: sys})
	got, err := d.InvokeAll([]string{"arn:aws:lambda:::function:GGShadowService", fnA}, AllOrError, "Y2M=", []byte("{}"))
	if err != nil || len(got) != 2 {
		t.Fatalf("delivered %v, err %v", got, err)
	}
	if fmt.Sprint(calls) != "[|Y2M=|{}]" {
		t.Fatalf("calls %v", calls)
	}
}

func TestResultOnlyToItsInvoker(t *testing.T) {
	d, f := setup(t, Options{})
	f.handlers[fnA] = echo
	id, _ := d.Invoke(caller, fnA, RequestResponse, "", nil)
	if _, err := d.Result(context.Background(), fnB, id); !errors.Is(err, ErrUnknownInvocation) {
		t.Fatalf("another function read the result: %v", err)
	}
	if r := result(t, d, caller, id); string(r.Payload) != "echo:" {
		t.Fatalf("result %+v", r)
	}
}

func TestResultRetention(t *testing.T) {
	var mu sync.Mutex
	now := time.Unix(1_700_000_000, 0)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	sys := map[string]SystemFunc{"arn:aws:lambda:::function:GGSecretManager:1": func(_, _ string, p []byte) Result { return Result{Payload: p} }}
	d, _ := setup(t, Options{Now: clock, MaxResults: 2, System: sys})
	const sm = "arn:aws:lambda:::function:GGSecretManager:1"

	old, _ := d.Invoke(caller, sm, RequestResponse, "", []byte("old"))
	advance(DefaultResultTTL - time.Second)
	young, _ := d.Invoke(caller, sm, RequestResponse, "", []byte("young"))
	advance(2 * time.Second)
	if _, err := d.Result(context.Background(), caller, old); !errors.Is(err, ErrUnknownInvocation) {
		t.Fatalf("result older than 2 minutes: %v", err)
	}
	if r := result(t, d, caller, young); string(r.Payload) != "young" {
		t.Fatalf("young %+v", r)
	}

	var ids []string
	for i := range 3 {
		id, _ := d.Invoke(caller, sm, RequestResponse, "", fmt.Appendf(nil, "%d", i))
		ids = append(ids, id)
	}
	if _, err := d.Result(context.Background(), caller, ids[0]); !errors.Is(err, ErrUnknownInvocation) {
		t.Fatalf("count bound 2 kept the oldest of 3: %v", err)
	}
	for _, id := range ids[1:] {
		result(t, d, caller, id)
	}
}

func TestUnqualifiedTargets(t *testing.T) {
	a1 := "arn:aws:lambda:us-east-1:123456789012:function:A:1"
	a2 := "arn:aws:lambda:us-east-1:123456789012:function:A:2"
	d, _ := setup(t, Options{}, Function{ARN: a1}, Function{ARN: fnB})
	if _, err := d.Invoke(caller, Unqualified(a1), Event, "", nil); err != nil {
		t.Fatalf("unique unqualified: %v", err)
	}
	if _, err := d.Invoke(caller, Unqualified(fnB), Event, "", nil); err != nil {
		t.Fatalf("unqualified of $LATEST: %v", err)
	}
	d.SetFunctions([]Function{{ARN: a1}, {ARN: a2}})
	if _, err := d.Invoke(caller, Unqualified(a1), Event, "", nil); !errors.Is(err, ErrUnknownFunction) {
		t.Fatalf("ambiguous unqualified: %v", err)
	}
	if _, err := d.Invoke(caller, "arn:aws:lambda:us-east-1:123456789012:function:A:3", Event, "", nil); !errors.Is(err, ErrUnknownFunction) {
		t.Fatalf("undeployed version: %v", err)
	}
}

func TestSystemFunctions(t *testing.T) {
	type call struct{ caller, cc, payload string }
	var mu sync.Mutex
	var calls []call
	rec := func(res Result) SystemFunc {
		return func(c, cc string, p []byte) Result {
			mu.Lock()
			calls = append(calls, call{c, cc, string(p)})
			mu.Unlock()
			return res
		}
	}
	sys := map[string]SystemFunc{
		"arn:aws:lambda:::function:GGRouter":          rec(Result{}),
		"arn:aws:lambda:::function:GGShadowService":   rec(Result{Payload: []byte(`{"state":{}}`)}),
		"arn:aws:lambda:::function:GGSecretManager:1": rec(Result{Payload: []byte(`{"Status":404,"Message":"no"}`)}),
	}
	d, f := setup(t, Options{System: sys})
	if _, err := d.Invoke(caller, "arn:aws:lambda:::function:GGRouter", Event, "Y2M=", []byte("m")); err != nil {
		t.Fatal(err)
	}
	id, err := d.Invoke(caller, "arn:aws:lambda:::function:GGShadowService:1", RequestResponse, "", nil)
	if err != nil {
		t.Fatalf("qualified form of an unqualified system function: %v", err)
	}
	if r := result(t, d, caller, id); string(r.Payload) != `{"state":{}}` || r.FunctionError != "" {
		t.Fatalf("shadow %+v", r)
	}
	if id, err = d.Invoke(caller, "arn:aws:lambda:::function:GGSecretManager", RequestResponse, "", []byte(`{"SecretId":"s"}`)); err != nil {
		t.Fatalf("unqualified form of GGSecretManager:1: %v", err)
	}
	result(t, d, caller, id)
	if len(calls) != 3 || calls[0] != (call{caller, "Y2M=", "m"}) {
		t.Fatalf("calls %+v", calls)
	}
	if f.demandCount() != 0 || d.Stats().Queued != 0 {
		t.Fatal("system functions must not queue work")
	}
}

func TestJSONEncoding(t *testing.T) {
	d, f := setup(t, Options{})
	id, err := d.Invoke(caller, fnA, RequestResponse, "", []byte("not json"))
	if err != nil {
		t.Fatal(err)
	}
	r := result(t, d, caller, id)
	if typ, msg := errorType(t, r); r.FunctionError != Unhandled || typ != ErrorTypeInvalidPayload || msg != "function "+fnA+" could not parse the payload as JSON" {
		t.Fatalf("result %+v", r)
	}
	if _, err := d.Invoke(caller, fnA, Event, "", []byte("not json")); err != nil {
		t.Fatal(err)
	}
	if s := d.Stats(); s.Queued != 0 || s.InvalidPayload != 2 || f.demandCount() != 0 {
		t.Fatalf("non-JSON must not be queued: %+v", s)
	}
	d.Invoke(caller, fnA, Event, "", nil)                // empty = {}
	d.Invoke(caller, fnB, Event, "", []byte("not json")) // binary takes anything
	d.Invoke(caller, fnB, Event, "", []byte(`{"j":1}`))  // and JSON as bytes
	if s := d.Stats(); s.Queued != 3 {
		t.Fatalf("stats %+v", s)
	}
	if _, err := d.InvokeAll([]string{fnA, fnB}, AllOrError, "", []byte("x")); !errors.Is(err, ErrInvalidPayload) {
		t.Fatalf("InvokeAll: %v", err)
	}
}

func TestInvalidInvocationType(t *testing.T) {
	d, _ := setup(t, Options{})
	if _, err := d.Invoke(caller, fnA, "DryRun", "", nil); !errors.Is(err, ErrInvalidInvocationType) {
		t.Fatal(err)
	}
}

func TestOnDemandWorkersRunConcurrently(t *testing.T) {
	d, f := setup(t, Options{})
	f.max = 3
	var mu sync.Mutex
	running, peak := 0, 0
	release := make(chan struct{})
	f.handlers[fnB] = func(w Work) ([]byte, bool) {
		mu.Lock()
		running++
		peak = max(peak, running)
		mu.Unlock()
		<-release
		mu.Lock()
		running--
		mu.Unlock()
		return w.Payload, false
	}
	var ids []string
	for i := range 3 {
		id, _ := d.Invoke(caller, fnB, RequestResponse, "", fmt.Appendf(nil, "%d", i))
		ids = append(ids, id)
	}
	checkFor(t, 2*time.Second, func() error {
		if d.Stats().InFlight != 3 {
			return fmt.Errorf("stats %+v", d.Stats())
		}
		return nil
	})
	close(release)
	for i, id := range ids {
		if r := result(t, d, caller, id); string(r.Payload) != fmt.Sprint(i) {
			t.Fatalf("result %d: %+v", i, r)
		}
	}
	if peak != 3 {
		t.Fatalf("peak %d", peak)
	}
}

func TestClose(t *testing.T) {
	d, _ := setup(t, Options{})
	idQueued, _ := d.Invoke(caller, fnA, RequestResponse, "", nil)
	errc := make(chan error, 1)
	go func() { _, err := d.Next(context.Background(), fnB, "wb"); errc <- err }()
	checkFor(t, 2*time.Second, func() error {
		if d.Stats().Waiting != 1 {
			return errors.New("not waiting")
		}
		return nil
	})
	d.Close()
	if err := <-errc; !errors.Is(err, ErrClosed) {
		t.Fatalf("Next: %v", err)
	}
	if typ, _ := errorType(t, result(t, d, caller, idQueued)); typ != ErrorTypeShutdown {
		t.Fatalf("type %s", typ)
	}
	if _, err := d.Invoke(caller, fnA, Event, "", nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("Invoke: %v", err)
	}
}

func TestResultWaitEndsWithContext(t *testing.T) {
	d, _ := setup(t, Options{})
	id, _ := d.Invoke(caller, fnA, RequestResponse, "", nil)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := d.Result(ctx, caller, id); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatal(err)
	}
	// The result is still there for a later read.
	w, _ := d.Next(context.Background(), fnA, "w")
	d.Done(fnA, "w", w.ID, []byte("1"), false)
	if r := result(t, d, caller, id); string(r.Payload) != "1" {
		t.Fatalf("result %+v", r)
	}
}

func TestUnqualified(t *testing.T) {
	for in, want := range map[string]string{
		"arn:aws:lambda:us-east-1:123456789012:function:A:$LATEST": "arn:aws:lambda:us-east-1:123456789012:function:A",
		"arn:aws:lambda:us-east-1:123456789012:function:A":         "arn:aws:lambda:us-east-1:123456789012:function:A",
		"arn:aws:lambda:::function:GGSecretManager:1":              "arn:aws:lambda:::function:GGSecretManager",
		"arn:aws:lambda:::function:GGRouter":                       "arn:aws:lambda:::function:GGRouter",
	} {
		if got := Unqualified(in); got != want {
			t.Errorf("Unqualified(%s) = %s", in, got)
		}
	}
}

// A retired worker (being restarted) gets no more work: its waiting Next
// ends, the next invocation is queued and a worker demanded for it.
func TestRetiredWorkerGetsNoWork(t *testing.T) {
	d, f := setup(t, Options{})
	errc := make(chan error, 1)
	go func() { _, err := d.Next(context.Background(), fnA, "w1"); errc <- err }()
	checkFor(t, 2*time.Second, func() error {
		if d.Stats().Waiting != 1 {
			return errors.New("not waiting")
		}
		return nil
	})
	before := f.demandCount()
	d.Retire("w1")
	if err := <-errc; !errors.Is(err, ErrWorkerGone) {
		t.Fatalf("Next of a retired worker: %v", err)
	}
	if _, err := d.Next(context.Background(), fnA, "w1"); !errors.Is(err, ErrWorkerGone) {
		t.Fatalf("a later Next of a retired worker: %v", err)
	}
	if _, err := d.Invoke(caller, fnA, Event, "", []byte(`1`)); err != nil {
		t.Fatal(err)
	}
	if s := d.Stats(); s.Queued+s.InFlight != 1 || f.demandCount() <= before {
		t.Fatalf("after Retire: stats %+v, demands %d -> %d", s, before, f.demandCount())
	}
}
