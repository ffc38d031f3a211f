package dispatch

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"
)

// Each function's counters follow what became of its invocations: a
// success, a Handled error, an Unhandled timeout, a worker death after an
// out-of-memory kill, a queue-full refusal (Invoke and InvokeAll), and
// nothing for payloads never queued or system functions. A deployment
// that removes the function drops its counters; one that keeps it keeps
// them.
func TestFunctionCounters(t *testing.T) {
	sys := func(string, string, []byte) Result { return Result{Payload: []byte("ok")} }
	d := New(Options{Launcher: &nopLauncher{}, MaxWorkItems: 1, System: map[string]SystemFunc{"arn:aws:lambda:::function:GGRouter": sys}})
	defer d.Close()
	d.SetFunctions([]Function{{ARN: fnA, Encoding: "json", Timeout: 50 * time.Millisecond}, {ARN: fnB, Encoding: "binary"}})
	ctx := context.Background()

	// run invokes fnA and lets worker w take the item.
	run := func(w WorkerID) (string, Work) {
		t.Helper()
		id, err := d.Invoke(caller, fnA, RequestResponse, "", []byte(`{}`))
		if err != nil {
			t.Fatal(err)
		}
		wk, err := d.Next(ctx, fnA, w)
		if err != nil || wk.ID != id {
			t.Fatalf("Next: %v %v", wk, err)
		}
		return id, wk
	}
	// A success and a Handled error.
	id, _ := run("w1")
	d.Done(fnA, "w1", id, []byte(`1`), false)
	result(t, d, caller, id)
	id, _ = run("w1")
	d.Done(fnA, "w1", id, []byte(`{"errorMessage":"boom"}`), true)
	if r := result(t, d, caller, id); r.FunctionError != Handled {
		t.Fatalf("handled result %+v", r)
	}
	// A timeout (Unhandled).
	id, _ = run("w2")
	if r := result(t, d, caller, id); r.FunctionError != Unhandled {
		t.Fatalf("timed-out result %+v", r)
	}
	d.WorkerGone("w2")
	// An out-of-memory kill of the worker holding an item: the launcher
	// counts it, then reports the worker gone.
	id, _ = run("w3")
	d.OutOfMemory(fnA)
	d.WorkerGone("w3")
	if r := result(t, d, caller, id); r.FunctionError != Unhandled {
		t.Fatalf("result after the OOM kill %+v", r)
	}
	// One queued with no worker fills the queue: the next Invoke and the
	// InvokeAll targeting fnA are refused.
	if _, err := d.Invoke(caller, fnA, Event, "", []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Invoke(caller, fnA, Event, "", []byte(`{}`)); !errors.Is(err, ErrQueueFull) {
		t.Fatalf("Invoke on a full queue: %v", err)
	}
	if _, err := d.InvokeAll([]string{fnA}, BestEffort, "", []byte(`{}`)); !errors.Is(err, ErrQueueFull) {
		t.Fatalf("InvokeAll on a full queue: %v", err)
	}
	// Never queued: a payload that is not JSON, a system function.
	d.Invoke(caller, fnA, RequestResponse, "", []byte(`not json`))
	d.Invoke(caller, "arn:aws:lambda:::function:GGRouter", RequestResponse, "", nil)
	// Out of memory while idle (no item lost), and for a function that
	// is not deployed (ignored).
	d.OutOfMemory(fnA)
	d.OutOfMemory("arn:aws:lambda:us-east-1:123456789012:function:Gone:1")

	want := FunctionStats{Invocations: 5, Handled: 1, Unhandled: 2, Timeouts: 1, WorkerDeaths: 1, OutOfMemory: 2, Rejected: 2}
	all := d.FunctionStats()
	if got := all[fnA]; got != want {
		t.Fatalf("counters of A:\n got %+v\nwant %+v", got, want)
	}
	if got := all[fnB]; got != (FunctionStats{}) || len(all) != 2 {
		t.Fatalf("counters: %+v", all)
	}

	// A deployment keeping A keeps its counters; one dropping it drops
	// them, and A starts from zero when it comes back.
	d.SetFunctions([]Function{{ARN: fnA, Encoding: "json"}})
	if got := d.FunctionStats(); got[fnA] != want || len(got) != 1 {
		t.Fatalf("counters after a deployment keeping A: %+v", got)
	}
	d.SetFunctions([]Function{{ARN: fnB, Encoding: "binary"}})
	d.SetFunctions([]Function{{ARN: fnA, Encoding: "json"}, {ARN: fnB, Encoding: "binary"}})
	if got := d.FunctionStats(); got[fnA] != (FunctionStats{}) {
		t.Fatalf("counters of A redeployed after its removal: %+v", got[fnA])
	}
}

// The counters stay consistent under concurrent invocations and workers
// (run with -race).
func TestFunctionCountersConcurrent(t *testing.T) {
	d, f := setup(t, Options{})
	f.max = 4
	f.handlers[fnB] = func(w Work) ([]byte, bool) { return w.Payload, len(w.Payload)%2 == 1 }
	const n = 200
	errc := make(chan error, n)
	for i := range n {
		go func() {
			id, err := d.Invoke(caller, fnB, RequestResponse, "", []byte(fmt.Sprint(i)))
			if err == nil {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				_, err = d.Result(ctx, caller, id)
				cancel()
			}
			errc <- err
		}()
	}
	for range n {
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
	}
	got := d.FunctionStats()[fnB]
	// Payloads 0..9 (1 byte), 10..99 (2 bytes), 100..199 (3 bytes): odd
	// lengths are Handled errors.
	if want := (FunctionStats{Invocations: n, Handled: 110}); got != want {
		t.Fatalf("counters %+v, want %+v", got, want)
	}
}
