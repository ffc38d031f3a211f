// Package ipc serves the Greengrass v1 Lambda IPC over HTTP: invoke
// (post_work), get_work_result, get_work, post_work_result,
// post_handler_err, put_initialization_result, the local log sink, the
// credential provider stub and the health API, all under /2016-11-01/.
// See README.md for the status codes chosen where v1 is undocumented.
package ipc

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strings"

	"github.com/evergreen-edge/evergreen/runtime/dispatch"
)

// Header names exactly as v1 writes them. Set through the map, not
// Header.Set, so that X-Amz-InvocationId keeps its capital I.
const (
	hdrInvocationID   = "X-Amz-InvocationId"
	hdrClientContext  = "X-Amz-Client-Context"
	hdrInvocationType = "X-Amz-Invocation-Type"
	hdrFunctionError  = "X-Amz-Function-Error"
)

// Body limits. Payloads follow Lambda's 6 MB synchronous invocation limit;
// the JSON control bodies (F, G, I) get 1 MB, PutLogEvents' limit.
const (
	MaxPayload = 6 << 20
	MaxControl = 1 << 20
)

// Auth resolves the token of the Authorization header.
type Auth interface {
	Lookup(token string) (fn string, w dispatch.WorkerID, ok bool)
}

// LogEvent is one event of a log sink request (G).
type LogEvent struct {
	Timestamp int64  `json:"timestamp"`
	Message   string `json:"message"`
}

// WorkerInfo is one entry of the health API (I). ProcessId is written as
// a JSON string, as in every v1 example.
type WorkerInfo struct {
	FuncArn     string
	WorkerId    string
	ProcessId   int `json:",string"`
	WorkerState string
}

// Options configures the handler. Only Dispatcher and Auth are required.
type Options struct {
	Dispatcher  *dispatch.Dispatcher
	Auth        Auth
	Initialized func(fn string, w dispatch.WorkerID, success bool, response string)
	Logs        func(fn string, group, stream string, events []LogEvent)
	Health      func() []WorkerInfo
	// State, when set, hears a worker's moves: "Waiting" when it asks for
	// work (C), "Working" when it gets an item (the worker manager keeps
	// idle workers by it).
	State func(w dispatch.WorkerID, state string)
	Log   *slog.Logger
}

type handler struct{ o Options }

// NewHandler returns the IPC handler. It must be served without a write
// timeout: get_work and get_work_result are long polls.
func NewHandler(o Options) http.Handler {
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	return &handler{o: o}
}

const prefix = "/2016-11-01/"

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// r.URL.Path splits the same way whether a client escaped ':' and '$'
	// or not: ARNs never contain '/'.
	rest, ok := strings.CutPrefix(r.URL.Path, prefix)
	if !ok {
		writeError(w, http.StatusNotFound, "NotFound", "no such endpoint")
		return
	}
	seg := strings.Split(strings.TrimSuffix(rest, "/"), "/")
	switch {
	case len(seg) == 2 && seg[0] == "health" && seg[1] == "workers":
		h.health(w, r)
	case len(seg) == 1 && seg[0] == "credentialprovider":
		h.authed(w, r, []string{http.MethodGet}, func(fn string, _ dispatch.WorkerID) {
			writeError(w, http.StatusNotFound, "NoGroupRole", "no group role is configured: the token exchange service has no credentials to give")
		})
	case len(seg) == 2 && seg[0] == "cloudwatch" && seg[1] == "logs":
		h.authed(w, r, []string{http.MethodPost}, func(fn string, _ dispatch.WorkerID) { h.logs(w, r, fn) })
	case len(seg) == 2 && seg[0] == "functions" && seg[1] != "":
		h.authed(w, r, []string{http.MethodPost, http.MethodGet}, func(fn string, _ dispatch.WorkerID) {
			if r.Method == http.MethodPost {
				h.invoke(w, r, fn, seg[1])
			} else {
				h.result(w, r, fn)
			}
		})
	case len(seg) == 3 && seg[0] == "functions" && seg[2] == "work":
		h.own(w, r, seg[1], []string{http.MethodGet, http.MethodPost}, func(fn string, wk dispatch.WorkerID) {
			if r.Method == http.MethodGet {
				h.work(w, r, fn, wk)
			} else {
				h.done(w, r, fn, wk)
			}
		})
	case len(seg) == 3 && seg[0] == "functions" && seg[2] == "initialized":
		h.own(w, r, seg[1], []string{http.MethodPut}, func(fn string, wk dispatch.WorkerID) { h.initialized(w, r, fn, wk) })
	default:
		writeError(w, http.StatusNotFound, "NotFound", "no such endpoint")
	}
}

// authed checks the method, then the token (401 without one, 403 when it
// is unknown), and runs f with the token's identity.
func (h *handler) authed(w http.ResponseWriter, r *http.Request, methods []string, f func(fn string, wk dispatch.WorkerID)) {
	if !allowed(w, r, methods) {
		return
	}
	tok := r.Header.Get("Authorization")
	if tok == "" {
		writeError(w, http.StatusUnauthorized, "MissingAuthorization", "the Authorization header is missing")
		return
	}
	fn, wk, ok := h.o.Auth.Lookup(tok)
	if !ok {
		writeError(w, http.StatusForbidden, "InvalidToken", "the Authorization token is not known")
		return
	}
	f(fn, wk)
}

// own is authed for the endpoints a worker may call only for its own
// function.
func (h *handler) own(w http.ResponseWriter, r *http.Request, arn string, methods []string, f func(fn string, wk dispatch.WorkerID)) {
	h.authed(w, r, methods, func(fn string, wk dispatch.WorkerID) {
		if fn != arn {
			writeError(w, http.StatusForbidden, "AccessDenied", "a function may only fetch and answer its own work")
			return
		}
		f(fn, wk)
	})
}

func allowed(w http.ResponseWriter, r *http.Request, methods []string) bool {
	for _, m := range methods {
		if r.Method == m {
			return true
		}
	}
	w.Header().Set("Allow", strings.Join(methods, ", "))
	writeError(w, http.StatusMethodNotAllowed, "MethodNotAllowed", r.Method+" is not allowed here")
	return false
}

// invoke is A.
func (h *handler) invoke(w http.ResponseWriter, r *http.Request, caller, target string) {
	cc := r.Header.Get(hdrClientContext)
	if !validBase64(cc) {
		writeError(w, http.StatusBadRequest, "InvalidClientContext", hdrClientContext+" is not base64")
		return
	}
	typ := r.Header.Get(hdrInvocationType)
	body, ok := readBody(w, r, MaxPayload)
	if !ok {
		return
	}
	id, err := h.o.Dispatcher.Invoke(caller, target, typ, cc, body)
	if err != nil {
		h.dispatchError(w, r, err)
		return
	}
	w.Header()[hdrInvocationID] = []string{id}
	if typ == dispatch.Event {
		w.WriteHeader(http.StatusAccepted)
	} else {
		w.WriteHeader(http.StatusOK)
	}
}

// result is B. The ARN in the path is not checked: the invocation id and
// the caller's token identify the result.
func (h *handler) result(w http.ResponseWriter, r *http.Request, caller string) {
	id := r.Header.Get(hdrInvocationID)
	if id == "" {
		writeError(w, http.StatusBadRequest, "MissingInvocationId", hdrInvocationID+" is missing")
		return
	}
	res, err := h.o.Dispatcher.Result(r.Context(), caller, id)
	if err != nil {
		h.dispatchError(w, r, err)
		return
	}
	hd := w.Header()
	hd[hdrInvocationID] = []string{id}
	// Always present, empty on success: the Python SDK tests the value
	// against '' and treats an absent header (None) as an error.
	hd[hdrFunctionError] = []string{res.FunctionError}
	hd.Set("Content-Type", "application/octet-stream")
	w.WriteHeader(http.StatusOK)
	w.Write(res.Payload)
}

// work is C.
func (h *handler) work(w http.ResponseWriter, r *http.Request, fn string, wk dispatch.WorkerID) {
	if h.o.State != nil {
		h.o.State(wk, "Waiting")
	}
	item, err := h.o.Dispatcher.Next(r.Context(), fn, wk)
	if err == nil && h.o.State != nil {
		h.o.State(wk, "Working")
	}
	if err != nil {
		h.dispatchError(w, r, err)
		return
	}
	hd := w.Header()
	hd[hdrInvocationID] = []string{item.ID}
	hd[hdrClientContext] = []string{item.ClientContext}
	hd.Set("Content-Type", "application/octet-stream")
	w.WriteHeader(http.StatusOK)
	w.Write(item.Payload)
}

// done is D, or E when X-Amz-Function-Error has any value.
func (h *handler) done(w http.ResponseWriter, r *http.Request, fn string, wk dispatch.WorkerID) {
	id := r.Header.Get(hdrInvocationID)
	if id == "" {
		writeError(w, http.StatusBadRequest, "MissingInvocationId", hdrInvocationID+" is missing")
		return
	}
	body, ok := readBody(w, r, MaxPayload)
	if !ok {
		return
	}
	handled := r.Header.Get(hdrFunctionError) != ""
	if err := h.o.Dispatcher.Done(fn, wk, id, body, handled); err != nil {
		h.dispatchError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusOK)
}

// initialized is F.
func (h *handler) initialized(w http.ResponseWriter, r *http.Request, fn string, wk dispatch.WorkerID) {
	body, ok := readBody(w, r, MaxControl)
	if !ok {
		return
	}
	in := struct {
		Success  *bool
		Response string
	}{}
	if len(body) > 0 {
		if err := json.Unmarshal(body, &in); err != nil || in.Success == nil {
			writeError(w, http.StatusBadRequest, "InvalidRequest", `want {"Success": true|false, "Response": "..."}`)
			return
		}
	}
	success := in.Success == nil || *in.Success // an empty body reports success
	if h.o.Initialized != nil {
		h.o.Initialized(fn, wk, success, in.Response)
	}
	w.WriteHeader(http.StatusOK)
}

// logs is G.
func (h *handler) logs(w http.ResponseWriter, r *http.Request, fn string) {
	body, ok := readBody(w, r, MaxControl)
	if !ok {
		return
	}
	var in struct {
		LogGroupName  string     `json:"logGroupName"`
		LogStreamName string     `json:"logStreamName"`
		LogEvents     []LogEvent `json:"logEvents"`
	}
	if len(body) > 0 {
		if err := json.Unmarshal(body, &in); err != nil {
			writeError(w, http.StatusBadRequest, "InvalidRequest", "the body is not a PutLogEvents-like JSON object")
			return
		}
	}
	if h.o.Logs != nil && len(in.LogEvents) > 0 {
		h.o.Logs(fn, in.LogGroupName, in.LogStreamName, in.LogEvents)
	}
	w.WriteHeader(http.StatusOK)
}

// health is I. It needs no token, as in v1.
func (h *handler) health(w http.ResponseWriter, r *http.Request) {
	if !allowed(w, r, []string{http.MethodGet, http.MethodPost}) {
		return
	}
	var all []WorkerInfo
	if h.o.Health != nil {
		all = h.o.Health()
	}
	if all == nil {
		all = []WorkerInfo{}
	}
	if r.Method == http.MethodGet {
		writeJSON(w, http.StatusOK, all)
		return
	}
	body, ok := readBody(w, r, MaxControl)
	if !ok {
		return
	}
	var in struct{ FuncArns []string }
	if err := json.Unmarshal(body, &in); err != nil || len(in.FuncArns) == 0 {
		writeText(w, http.StatusBadRequest, "Invalid request")
		return
	}
	if len(in.FuncArns) > len(all) {
		writeText(w, http.StatusBadRequest, "Request exceeds max number of workers")
		return
	}
	out := struct {
		Workers     []WorkerInfo
		InvalidArns []string
	}{Workers: []WorkerInfo{}, InvalidArns: []string{}}
	seen := map[string]bool{}
	for _, arn := range in.FuncArns {
		found := false
		if functionARN(arn) {
			for _, wi := range all {
				if wi.FuncArn == arn || dispatch.Unqualified(wi.FuncArn) == arn {
					found = true
					if !seen[wi.WorkerId+"\x00"+wi.FuncArn] {
						seen[wi.WorkerId+"\x00"+wi.FuncArn] = true
						out.Workers = append(out.Workers, wi)
					}
				}
			}
		}
		if !found {
			out.InvalidArns = append(out.InvalidArns, arn)
		}
	}
	writeJSON(w, http.StatusOK, out)
}

// functionARN reports whether s has the shape of a Lambda function ARN,
// arn:<partition>:lambda:<region>:<account>:function:<name>[:<qualifier>].
func functionARN(s string) bool {
	p := strings.Split(s, ":")
	return (len(p) == 7 || len(p) == 8 && p[7] != "") &&
		p[0] == "arn" && p[1] != "" && p[2] == "lambda" && p[5] == "function" && p[6] != ""
}

// dispatchError maps dispatcher errors to statuses.
func (h *handler) dispatchError(w http.ResponseWriter, r *http.Request, err error) {
	switch {
	case errors.Is(err, dispatch.ErrUnknownFunction):
		writeError(w, http.StatusNotFound, "ResourceNotFound", err.Error())
	case errors.Is(err, dispatch.ErrUnknownInvocation):
		writeError(w, http.StatusNotFound, "InvocationNotFound", err.Error())
	case errors.Is(err, dispatch.ErrQueueFull):
		writeError(w, http.StatusTooManyRequests, "TooManyRequests", err.Error())
	case errors.Is(err, dispatch.ErrInvalidInvocationType):
		writeError(w, http.StatusBadRequest, "InvalidInvocationType", err.Error())
	case errors.Is(err, dispatch.ErrInvalidPayload):
		writeError(w, http.StatusBadRequest, "InvalidPayload", err.Error())
	case errors.Is(err, dispatch.ErrNotYours):
		writeError(w, http.StatusConflict, "InvocationNotHeld", err.Error())
	case errors.Is(err, dispatch.ErrWorkerGone):
		writeError(w, http.StatusGone, "WorkerGone", err.Error())
	case errors.Is(err, dispatch.ErrClosed), errors.Is(err, dispatch.ErrUnavailable):
		writeError(w, http.StatusServiceUnavailable, "ServiceUnavailable", err.Error())
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		// The client went away; nobody reads this.
		writeError(w, http.StatusServiceUnavailable, "ServiceUnavailable", err.Error())
	default:
		h.o.Log.Error("ipc", "method", r.Method, "path", r.URL.Path, "err", err)
		writeError(w, http.StatusInternalServerError, "InternalError", err.Error())
	}
}

// readBody reads at most limit bytes; a larger body gets 413.
func readBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, bool) {
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeError(w, http.StatusRequestEntityTooLarge, "RequestTooLarge", "the body exceeds "+sizeText(limit))
		} else {
			writeError(w, http.StatusBadRequest, "InvalidRequest", "reading the body: "+err.Error())
		}
		return nil, false
	}
	return b, true
}

func sizeText(n int64) string {
	if n == MaxPayload {
		return "6 MB"
	}
	return "1 MB"
}

// validBase64 applies the SDKs' rule: empty, or padded standard base64
// with no whitespace.
func validBase64(s string) bool {
	if s == "" {
		return true
	}
	if len(s)%4 != 0 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '+' || c == '/' || c == '=') {
			return false
		}
	}
	_, err := base64.StdEncoding.DecodeString(s)
	return err == nil
}

func writeError(w http.ResponseWriter, status int, typ, msg string) {
	writeJSON(w, status, map[string]string{"errorType": typ, "errorMessage": msg})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, _ := json.Marshal(v)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(b)
}

func writeText(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(status)
	io.WriteString(w, msg)
}
