// Package dispatch is the runtime's work queue: invocations of functions
// (v1 IPC "post_work"), the work items workers fetch ("get_work"), their
// results ("post_work_result", "get_work_result"), timeouts, and the
// system pseudo-functions (GGRouter, GGShadowService, GGSecretManager).
// It starts no process: it asks a Launcher for workers.
package dispatch

import "time"

// Invocation types of the v1 IPC (X-Amz-Invocation-Type).
const (
	RequestResponse = "RequestResponse"
	Event           = "Event"
)

// Function errors of the v1 IPC (X-Amz-Function-Error).
const (
	Handled   = "Handled"
	Unhandled = "Unhandled"
)

// WorkerID names one worker process; the IPC token of a worker resolves to
// its function ARN and its WorkerID.
type WorkerID string

// Function is one function of the group as the dispatcher needs it.
type Function struct {
	// ARN is the qualified ARN the function is addressed by.
	ARN     string
	Pinned  bool
	Timeout time.Duration // per invocation; 0 = 3 s
	// Encoding is "json" or "binary".
	Encoding string
}

// Work is one work item handed to a worker.
type Work struct {
	ID string
	// ClientContext is the base64 JSON of X-Amz-Client-Context, "" = none.
	ClientContext string
	Payload       []byte
}

// Result is what an invoker gets back (get_work_result).
type Result struct {
	Payload []byte
	// FunctionError is "", Handled or Unhandled.
	FunctionError string
	// Err, from a SystemFunc, refuses the invocation itself: Invoke
	// returns it (the IPC maps ErrQueueFull to 429, ErrUnavailable to
	// 503) and no result is kept. A GGRouter publish with
	// queueFullPolicy AllOrError that cannot reach every target fails so.
	Err error
}

// Launcher is the process side (package worker): the dispatcher tells it
// when a function needs a worker and when a worker must die.
type Launcher interface {
	// Demand says fn has queued work and no worker waiting for it: start
	// one if the limits allow (pinned: its one worker, restarted with
	// backoff; on demand: up to maxConcurrentLimit). Must not block.
	Demand(fn string)
	// Kill stops worker w (its item timed out); the worker is replaced on
	// the next Demand. Must not block.
	Kill(w WorkerID, reason string)
}

// SystemFunc answers an invocation of a pseudo-function inline. caller is
// the invoking function's ARN as its token says.
type SystemFunc func(caller, clientContext string, payload []byte) Result
