package ipc

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/evergreen-edge/evergreen/runtime/dispatch"
)

const (
	fnA      = "arn:aws:lambda:us-east-1:123456789012:function:A:1"
	fnLatest = "arn:aws:lambda:us-east-1:123456789012:function:B:$LATEST"
	fnSlow   = "arn:aws:lambda:us-east-1:123456789012:function:Slow:2"
	router   = "arn:aws:lambda:::function:GGRouter"
	secrets  = "arn:aws:lambda:::function:GGSecretManager:1"
	caller   = "arn:aws:lambda:us-east-1:123456789012:function:Caller:3"

	tokCaller = "Basic Y2FsbGVy"
	tokA      = "Basic dG9rQQ=="
	tokLatest = "tok-latest"
	tokSlow   = "tok-slow"
)

type identity struct {
	fn string
	w  dispatch.WorkerID
}

type tokens map[string]identity

func (t tokens) Lookup(tok string) (string, dispatch.WorkerID, bool) {
	id, ok := t[tok]
	return id.fn, id.w, ok
}

type nopLauncher struct{}

func (nopLauncher) Demand(string)                  {}
func (nopLauncher) Kill(dispatch.WorkerID, string) {}

type env struct {
	url  string
	addr string
	d    *dispatch.Dispatcher

	mu     sync.Mutex
	routed []string // caller|clientContext|payload of GGRouter invocations
	inits  []string
	logs   []string
	health []WorkerInfo
}

func newEnv(t *testing.T, maxItems int) *env {
	t.Helper()
	e := &env{}
	sys := map[string]dispatch.SystemFunc{
		router: func(c, cc string, p []byte) dispatch.Result {
			e.mu.Lock()
			e.routed = append(e.routed, c+"|"+cc+"|"+string(p))
			e.mu.Unlock()
			return dispatch.Result{}
		},
		secrets: func(c, cc string, p []byte) dispatch.Result {
			return dispatch.Result{Payload: []byte(`{"Status":404,"Message":"secret not found"}`)}
		},
	}
	e.d = dispatch.New(dispatch.Options{Launcher: nopLauncher{}, System: sys, MaxWorkItems: maxItems})
	e.d.SetFunctions([]dispatch.Function{
		{ARN: fnA, Encoding: "json"},
		{ARN: fnLatest, Encoding: "binary"},
		{ARN: fnSlow, Encoding: "binary", Timeout: 50 * time.Millisecond},
	})
	h := NewHandler(Options{
		Dispatcher: e.d,
		Auth: tokens{
			tokCaller: {caller, "wc"},
			tokA:      {fnA, "wa"},
			tokLatest: {fnLatest, "wl"},
			tokSlow:   {fnSlow, "ws"},
		},
		Initialized: func(fn string, w dispatch.WorkerID, ok bool, resp string) {
			e.mu.Lock()
			e.inits = append(e.inits, fmt.Sprintf("%s|%s|%v|%s", fn, w, ok, resp))
			e.mu.Unlock()
		},
		Logs: func(fn, group, stream string, events []LogEvent) {
			e.mu.Lock()
			for _, ev := range events {
				e.logs = append(e.logs, fmt.Sprintf("%s|%s|%s|%d|%s", fn, group, stream, ev.Timestamp, ev.Message))
			}
			e.mu.Unlock()
		},
		Health: func() []WorkerInfo {
			e.mu.Lock()
			defer e.mu.Unlock()
			return e.health
		},
	})
	srv := httptest.NewServer(h)
	t.Cleanup(func() { e.d.Close(); srv.Close() })
	e.url = srv.URL
	e.addr = srv.Listener.Addr().String()
	return e
}

// do sends a request the way Python's urllib does: a POST or PUT carries
// Content-Type application/x-www-form-urlencoded whatever the body is.
func (e *env) do(t *testing.T, method, path, token string, hdr map[string]string, body []byte) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, e.url+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("User-Agent", "Python-urllib/3.8")
	req.Header.Set("Accept-Encoding", "identity")
	if method == http.MethodPost || method == http.MethodPut {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	if token != "" {
		req.Header.Set("Authorization", token)
	}
	for k, v := range hdr {
		req.Header[k] = []string{v}
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

// raw sends a request line and headers verbatim over TCP and returns the
// whole response as bytes.
func (e *env) raw(t *testing.T, req string) string {
	t.Helper()
	c, err := net.Dial("tcp", e.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(c)
	return string(b)
}

func wantStatus(t *testing.T, resp *http.Response, body []byte, status int) {
	t.Helper()
	if resp.StatusCode != status {
		t.Fatalf("%s %s: status %d, want %d; body %s", resp.Request.Method, resp.Request.URL.Path, resp.StatusCode, status, body)
	}
}

func wantErrorType(t *testing.T, body []byte, typ string) {
	t.Helper()
	var e struct{ ErrorType, ErrorMessage string }
	if err := json.Unmarshal(body, &e); err != nil || e.ErrorType != typ || e.ErrorMessage == "" {
		t.Fatalf("error body %s, want errorType %s", body, typ)
	}
}

func (e *env) invoke(t *testing.T, token, target, typ, cc string, payload []byte) string {
	t.Helper()
	resp, body := e.do(t, "POST", "/2016-11-01/functions/"+target, token,
		map[string]string{hdrInvocationType: typ, hdrClientContext: cc}, payload)
	want := http.StatusOK
	if typ == dispatch.Event {
		want = http.StatusAccepted
	}
	wantStatus(t, resp, body, want)
	id := resp.Header.Get(hdrInvocationID)
	if len(id) != 36 {
		t.Fatalf("invocation id %q", id)
	}
	return id
}

// getWork is one get_work by the worker holding token for fn.
func (e *env) getWork(t *testing.T, token, fn string) (id, cc string, payload []byte) {
	t.Helper()
	resp, body := e.do(t, "GET", "/2016-11-01/functions/"+fn+"/work", token, nil, nil)
	wantStatus(t, resp, body, http.StatusOK)
	if _, ok := resp.Header[hdrClientContext]; !ok {
		t.Fatalf("get_work without %s", hdrClientContext)
	}
	return resp.Header.Get(hdrInvocationID), resp.Header.Get(hdrClientContext), body
}

func (e *env) getResult(t *testing.T, token, target, id string) (string, []byte) {
	t.Helper()
	resp, body := e.do(t, "GET", "/2016-11-01/functions/"+target, token, map[string]string{hdrInvocationID: id}, nil)
	wantStatus(t, resp, body, http.StatusOK)
	fe, ok := resp.Header[hdrFunctionError]
	if !ok || len(fe) != 1 {
		t.Fatalf("get_work_result without %s: %v", hdrFunctionError, resp.Header)
	}
	return fe[0], body
}

func TestRequestResponseRoundTrip(t *testing.T) {
	e := newEnv(t, 0)
	cc := base64.StdEncoding.EncodeToString([]byte(`{"custom":{"subject":"t/1","source":"x"}}`))
	done := make(chan struct{})
	go func() {
		defer close(done)
		id, gotCC, p := e.getWork(t, tokA, fnA)
		if gotCC != cc || string(p) != `{"n":1}` {
			t.Errorf("work: cc %q payload %q", gotCC, p)
		}
		resp, body := e.do(t, "POST", "/2016-11-01/functions/"+fnA+"/work", tokA,
			map[string]string{hdrInvocationID: id}, []byte(`{"n":2}`))
		if resp.StatusCode != http.StatusOK {
			t.Errorf("post_work_result: %d %s", resp.StatusCode, body)
		}
	}()
	id := e.invoke(t, tokCaller, fnA, dispatch.RequestResponse, cc, []byte(`{"n":1}`))
	fe, body := e.getResult(t, tokCaller, fnA, id)
	<-done
	if fe != "" || string(body) != `{"n":2}` {
		t.Fatalf("result %q %q", fe, body)
	}
}

func TestEmptyFunctionErrorHeaderOnTheWire(t *testing.T) {
	e := newEnv(t, 0)
	id := e.invoke(t, tokCaller, secrets, dispatch.RequestResponse, "", []byte(`{"SecretId":"s"}`))
	got := e.raw(t, "GET /2016-11-01/functions/"+secrets+" HTTP/1.1\r\nHost: localhost:8000\r\n"+
		"Authorization: "+tokCaller+"\r\nX-Amz-InvocationId: "+id+"\r\nConnection: close\r\n\r\n")
	head, body, _ := strings.Cut(got, "\r\n\r\n")
	if !strings.HasPrefix(head, "HTTP/1.1 200 ") {
		t.Fatalf("response %q", got)
	}
	if !strings.Contains(head, "\r\nX-Amz-Function-Error: \r\n") {
		t.Fatalf("no empty X-Amz-Function-Error line in %q", head)
	}
	if !strings.Contains(head, "\r\nX-Amz-InvocationId: "+id+"\r\n") {
		t.Fatalf("no X-Amz-InvocationId in %q", head)
	}
	if body != `{"Status":404,"Message":"secret not found"}` {
		t.Fatalf("body %q", body)
	}
}

func TestHandledError(t *testing.T) {
	e := newEnv(t, 0)
	id := e.invoke(t, tokCaller, fnLatest, "RequestResponse", "", []byte("x"))
	wid, _, _ := e.getWork(t, tokLatest, fnLatest)
	if wid != id {
		t.Fatalf("work id %s, invoked %s", wid, id)
	}
	errJSON := `{"errorMessage":"bad input","errorType":"ValueError","stackTrace":[]}`
	resp, body := e.do(t, "POST", "/2016-11-01/functions/"+fnLatest+"/work", tokLatest,
		map[string]string{hdrInvocationID: id, hdrFunctionError: "Handled"}, []byte(errJSON))
	wantStatus(t, resp, body, http.StatusOK)
	fe, got := e.getResult(t, tokCaller, fnLatest, id)
	if fe != "Handled" || string(got) != errJSON {
		t.Fatalf("result %q %q", fe, got)
	}
}

func TestTimeoutIsUnhandled(t *testing.T) {
	e := newEnv(t, 0)
	id := e.invoke(t, tokCaller, fnSlow, dispatch.RequestResponse, "", nil)
	e.getWork(t, tokSlow, fnSlow) // and never answer
	fe, body := e.getResult(t, tokCaller, fnSlow, id)
	if fe != "Unhandled" || string(body) != `{"errorMessage":"Task timed out after 0.05 seconds","errorType":"Timeout"}` {
		t.Fatalf("result %q %s", fe, body)
	}
	// The worker's late answer is refused.
	resp, b := e.do(t, "POST", "/2016-11-01/functions/"+fnSlow+"/work", tokSlow, map[string]string{hdrInvocationID: id}, nil)
	wantStatus(t, resp, b, http.StatusConflict)
}

func TestNonJSONToAJSONFunction(t *testing.T) {
	e := newEnv(t, 0)
	id := e.invoke(t, tokCaller, fnA, dispatch.RequestResponse, "", []byte("\x00\x01binary"))
	fe, body := e.getResult(t, tokCaller, fnA, id)
	if fe != "Unhandled" || !strings.Contains(string(body), "could not parse the payload as JSON") {
		t.Fatalf("result %q %s", fe, body)
	}
}

func TestEventInvocation(t *testing.T) {
	e := newEnv(t, 0)
	id := e.invoke(t, tokCaller, fnLatest, dispatch.Event, "", []byte("evt"))
	wid, cc, p := e.getWork(t, tokLatest, fnLatest)
	if wid != id || cc != "" || string(p) != "evt" {
		t.Fatalf("work %s %q %q", wid, cc, p)
	}
	resp, body := e.do(t, "GET", "/2016-11-01/functions/"+fnLatest, tokCaller, map[string]string{hdrInvocationID: id}, nil)
	wantStatus(t, resp, body, http.StatusNotFound)
	wantErrorType(t, body, "InvocationNotFound")
}

func TestPublishToGGRouterUnescaped(t *testing.T) {
	e := newEnv(t, 0)
	cc := base64.StdEncoding.EncodeToString([]byte(`{"custom":{"source":"spoofed","subject":"a/b","queueFullPolicy":"AllOrError"}}`))
	got := e.raw(t, "POST /2016-11-01/functions/arn:aws:lambda:::function:GGRouter HTTP/1.1\r\nHost: localhost\r\n"+
		"Authorization: "+tokA+"\r\nContent-Type: application/x-www-form-urlencoded\r\n"+
		"X-Amz-Invocation-Type: Event\r\nX-Amz-Client-Context: "+cc+"\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello")
	if !strings.HasPrefix(got, "HTTP/1.1 202 ") || !strings.Contains(got, "\r\nX-Amz-InvocationId: ") {
		t.Fatalf("response %q", got)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	// The caller is the token's function, never what the request says.
	if len(e.routed) != 1 || e.routed[0] != fnA+"|"+cc+"|hello" {
		t.Fatalf("routed %q", e.routed)
	}
}

func TestLatestARNInPath(t *testing.T) {
	e := newEnv(t, 0)
	id := e.invoke(t, tokCaller, fnLatest, dispatch.Event, "", []byte("1"))
	// Unescaped, as the SDKs send it.
	got := e.raw(t, "GET /2016-11-01/functions/arn:aws:lambda:us-east-1:123456789012:function:B:$LATEST/work HTTP/1.1\r\n"+
		"Host: localhost\r\nAuthorization: "+tokLatest+"\r\nConnection: close\r\n\r\n")
	if !strings.HasPrefix(got, "HTTP/1.1 200 ") || !strings.Contains(got, "\r\nX-Amz-InvocationId: "+id+"\r\n") ||
		!strings.Contains(got, "\r\nX-Amz-Client-Context: \r\n") {
		t.Fatalf("response %q", got)
	}
	// Escaped by a stricter client: the same function.
	id2 := e.invoke(t, tokCaller, "arn:aws:lambda:us-east-1:123456789012:function:B:%24LATEST", dispatch.Event, "", []byte("2"))
	if wid, _, _ := e.getWork(t, tokLatest, fnLatest); wid != id2 {
		t.Fatalf("work %s, want %s", wid, id2)
	}
}

func TestUnqualifiedTarget(t *testing.T) {
	e := newEnv(t, 0)
	id := e.invoke(t, tokCaller, "arn:aws:lambda:us-east-1:123456789012:function:B", dispatch.Event, "", nil)
	if wid, _, _ := e.getWork(t, tokLatest, fnLatest); wid != id {
		t.Fatalf("work %s, want %s", wid, id)
	}
}

func TestTokens(t *testing.T) {
	e := newEnv(t, 0)
	for _, c := range []struct{ method, path string }{
		{"POST", "/2016-11-01/functions/" + fnA},
		{"GET", "/2016-11-01/functions/" + fnA},
		{"GET", "/2016-11-01/functions/" + fnA + "/work"},
		{"POST", "/2016-11-01/functions/" + fnA + "/work"},
		{"PUT", "/2016-11-01/functions/" + fnA + "/initialized"},
		{"POST", "/2016-11-01/cloudwatch/logs/"},
		{"GET", "/2016-11-01/credentialprovider/"},
	} {
		resp, body := e.do(t, c.method, c.path, "", nil, nil)
		wantStatus(t, resp, body, http.StatusUnauthorized)
		wantErrorType(t, body, "MissingAuthorization")
		resp, body = e.do(t, c.method, c.path, "Basic bm9wZQ==", nil, nil)
		wantStatus(t, resp, body, http.StatusForbidden)
		wantErrorType(t, body, "InvalidToken")
	}
}

func TestAFunctionCannotTouchAnothersWork(t *testing.T) {
	e := newEnv(t, 0)
	e.invoke(t, tokCaller, fnA, dispatch.Event, "", nil)
	for _, c := range []struct{ method, path string }{
		{"GET", "/2016-11-01/functions/" + fnA + "/work"},
		{"POST", "/2016-11-01/functions/" + fnA + "/work"},
		{"PUT", "/2016-11-01/functions/" + fnA + "/initialized"},
	} {
		resp, body := e.do(t, c.method, c.path, tokLatest, map[string]string{hdrInvocationID: "x"}, nil)
		wantStatus(t, resp, body, http.StatusForbidden)
		wantErrorType(t, body, "AccessDenied")
	}
	if s := e.d.Stats(); s.Queued != 1 {
		t.Fatalf("the item must still be queued: %+v", s)
	}
}

func TestResultOnlyForTheInvoker(t *testing.T) {
	e := newEnv(t, 0)
	id := e.invoke(t, tokCaller, secrets, dispatch.RequestResponse, "", nil)
	resp, body := e.do(t, "GET", "/2016-11-01/functions/"+secrets, tokA, map[string]string{hdrInvocationID: id}, nil)
	wantStatus(t, resp, body, http.StatusNotFound)
	if fe, _ := e.getResult(t, tokCaller, secrets, id); fe != "" {
		t.Fatalf("function error %q", fe)
	}
}

func TestWorkPostedByAnotherWorkerOfTheSameFunction(t *testing.T) {
	e := newEnv(t, 0)
	id := e.invoke(t, tokCaller, fnA, dispatch.Event, "", nil)
	e.getWork(t, tokA, fnA)
	h := NewHandler(Options{Dispatcher: e.d, Auth: tokens{"other": {fnA, "wa2"}}})
	srv := httptest.NewServer(h)
	defer srv.Close()
	req, _ := http.NewRequest("POST", srv.URL+"/2016-11-01/functions/"+fnA+"/work", nil)
	req.Header.Set("Authorization", "other")
	req.Header.Set(hdrInvocationID, id)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusConflict {
		t.Fatalf("status %d", resp.StatusCode)
	}
}

func TestInvokeErrors(t *testing.T) {
	e := newEnv(t, 1)
	path := "/2016-11-01/functions/"
	resp, body := e.do(t, "POST", path+"arn:aws:lambda:us-east-1:123456789012:function:Nope:1", tokCaller, nil, nil)
	wantStatus(t, resp, body, http.StatusNotFound)
	wantErrorType(t, body, "ResourceNotFound")

	resp, body = e.do(t, "POST", path+fnLatest, tokCaller, map[string]string{hdrClientContext: "not base64!"}, nil)
	wantStatus(t, resp, body, http.StatusBadRequest)
	wantErrorType(t, body, "InvalidClientContext")

	resp, body = e.do(t, "POST", path+fnLatest, tokCaller, map[string]string{hdrInvocationType: "DryRun"}, nil)
	wantStatus(t, resp, body, http.StatusBadRequest)

	e.invoke(t, tokCaller, fnLatest, dispatch.Event, "", nil)
	resp, body = e.do(t, "POST", path+fnLatest, tokCaller, map[string]string{hdrInvocationType: "Event"}, nil)
	wantStatus(t, resp, body, http.StatusTooManyRequests)
	wantErrorType(t, body, "TooManyRequests")

	resp, body = e.do(t, "GET", path+fnLatest, tokCaller, nil, nil)
	wantStatus(t, resp, body, http.StatusBadRequest)
	wantErrorType(t, body, "MissingInvocationId")

	resp, body = e.do(t, "DELETE", path+fnLatest, tokCaller, nil, nil)
	wantStatus(t, resp, body, http.StatusMethodNotAllowed)
	resp, body = e.do(t, "GET", "/2016-11-01/nothing/here", tokCaller, nil, nil)
	wantStatus(t, resp, body, http.StatusNotFound)
}

func TestInvocationTypeDefaultsToRequestResponse(t *testing.T) {
	e := newEnv(t, 0)
	resp, body := e.do(t, "POST", "/2016-11-01/functions/"+secrets, tokCaller, nil, nil)
	wantStatus(t, resp, body, http.StatusOK)
	if fe, _ := e.getResult(t, tokCaller, secrets, resp.Header.Get(hdrInvocationID)); fe != "" {
		t.Fatal(fe)
	}
}

func TestClientContextBase64(t *testing.T) {
	for cc, ok := range map[string]bool{
		"":                     true,
		"e30=":                 true,
		"eyJjdXN0b20iOnt9fQ==": true,
		"e30":                  false, // unpadded
		"e3 0=":                false,
		"e30=\n":               false,
		"=e30":                 false,
		"e30=e30=":             false,
	} {
		if validBase64(cc) != ok {
			t.Errorf("validBase64(%q) = %v", cc, !ok)
		}
	}
}

func TestBodyLimit(t *testing.T) {
	e := newEnv(t, 0)
	big := bytes.Repeat([]byte("x"), MaxPayload)
	e.invoke(t, tokCaller, fnLatest, dispatch.Event, "", big)
	resp, body := e.do(t, "POST", "/2016-11-01/functions/"+fnLatest, tokCaller,
		map[string]string{hdrInvocationType: "Event"}, append(big, 'x'))
	wantStatus(t, resp, body, http.StatusRequestEntityTooLarge)
	wantErrorType(t, body, "RequestTooLarge")
	_, _, p := e.getWork(t, tokLatest, fnLatest)
	if len(p) != MaxPayload {
		t.Fatalf("payload %d bytes", len(p))
	}
	resp, body = e.do(t, "POST", "/2016-11-01/cloudwatch/logs/", tokA, nil, bytes.Repeat([]byte(" "), MaxControl+1))
	wantStatus(t, resp, body, http.StatusRequestEntityTooLarge)
}

func TestInitialized(t *testing.T) {
	e := newEnv(t, 0)
	path := "/2016-11-01/functions/" + fnA + "/initialized"
	resp, body := e.do(t, "PUT", path, tokA, nil, []byte(`{"Success": false, "Response": "ImportError(\"no module\")"}`))
	wantStatus(t, resp, body, http.StatusOK)
	resp, body = e.do(t, "PUT", path, tokA, nil, nil)
	wantStatus(t, resp, body, http.StatusOK)
	resp, body = e.do(t, "PUT", path, tokA, nil, []byte(`{"Succ`))
	wantStatus(t, resp, body, http.StatusBadRequest)
	e.mu.Lock()
	defer e.mu.Unlock()
	want := []string{fnA + `|wa|false|ImportError("no module")`, fnA + "|wa|true|"}
	if fmt.Sprint(e.inits) != fmt.Sprint(want) {
		t.Fatalf("inits %q", e.inits)
	}
}

func TestLogSink(t *testing.T) {
	e := newEnv(t, 0)
	resp, body := e.do(t, "POST", "/2016-11-01/cloudwatch/logs/", tokA, nil, []byte(
		`{"logGroupName":"/Lambda/A","logStreamName":"fromPythonAppender","logEvents":[{"timestamp":1700000000000,"message":"[INFO]-f.py:3,hi"}]}`))
	wantStatus(t, resp, body, http.StatusOK)
	resp, body = e.do(t, "POST", "/2016-11-01/cloudwatch/logs", tokA, nil, nil) // no trailing slash, empty body
	wantStatus(t, resp, body, http.StatusOK)
	resp, body = e.do(t, "POST", "/2016-11-01/cloudwatch/logs/", tokA, nil, []byte("nope"))
	wantStatus(t, resp, body, http.StatusBadRequest)
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.logs) != 1 || e.logs[0] != fnA+"|/Lambda/A|fromPythonAppender|1700000000000|[INFO]-f.py:3,hi" {
		t.Fatalf("logs %q", e.logs)
	}
}

func TestCredentialProviderHasNoRole(t *testing.T) {
	e := newEnv(t, 0)
	resp, body := e.do(t, "GET", "/2016-11-01/credentialprovider/", tokA, nil, nil)
	wantStatus(t, resp, body, http.StatusNotFound)
	wantErrorType(t, body, "NoGroupRole")
	if !strings.Contains(string(body), "no group role is configured") {
		t.Fatalf("body %s", body)
	}
}

func TestHealth(t *testing.T) {
	e := newEnv(t, 0)
	e.health = []WorkerInfo{
		{FuncArn: "arn:aws:lambda:::function:GGShadowService", WorkerId: "w-1", ProcessId: 1234, WorkerState: "Waiting"},
		{FuncArn: fnA, WorkerId: "w-2", ProcessId: 11837, WorkerState: "Working"},
	}
	path := "/2016-11-01/health/workers"
	resp, body := e.do(t, "GET", path, "", nil, nil)
	wantStatus(t, resp, body, http.StatusOK)
	want := `[{"FuncArn":"arn:aws:lambda:::function:GGShadowService","WorkerId":"w-1","ProcessId":"1234","WorkerState":"Waiting"},` +
		`{"FuncArn":"` + fnA + `","WorkerId":"w-2","ProcessId":"11837","WorkerState":"Working"}]`
	if string(body) != want {
		t.Fatalf("GET %s", body)
	}

	resp, body = e.do(t, "POST", path, "", nil, []byte(`{"FuncArns":["`+fnA+`","some-malformed-arn"]}`))
	wantStatus(t, resp, body, http.StatusOK)
	want = `{"Workers":[{"FuncArn":"` + fnA + `","WorkerId":"w-2","ProcessId":"11837","WorkerState":"Working"}],"InvalidArns":["some-malformed-arn"]}`
	if string(body) != want {
		t.Fatalf("POST %s", body)
	}
	resp, body = e.do(t, "POST", path, "", nil, []byte(`{"FuncArns":["arn:aws:lambda:us-east-1:123456789012:function:Unknown:1"]}`))
	wantStatus(t, resp, body, http.StatusOK)
	if !strings.Contains(string(body), `"Workers":[],"InvalidArns":["arn:aws:lambda:us-east-1:123456789012:function:Unknown:1"]`) {
		t.Fatalf("POST unknown %s", body)
	}

	for _, bad := range []string{``, `{`, `{"FuncArns":[]}`, `{"FuncArns":"x"}`, `[]`} {
		resp, body = e.do(t, "POST", path, "", nil, []byte(bad))
		wantStatus(t, resp, body, http.StatusBadRequest)
		if string(body) != "Invalid request" {
			t.Fatalf("%q: body %q", bad, body)
		}
	}
	resp, body = e.do(t, "POST", path, "", nil, []byte(`{"FuncArns":["a","b","c"]}`))
	wantStatus(t, resp, body, http.StatusBadRequest)
	if string(body) != "Request exceeds max number of workers" {
		t.Fatalf("body %q", body)
	}
}

func TestHealthWithNoWorkersIsAnEmptyArray(t *testing.T) {
	e := newEnv(t, 0)
	resp, body := e.do(t, "GET", "/2016-11-01/health/workers", "", nil, nil)
	wantStatus(t, resp, body, http.StatusOK)
	if string(body) != "[]" {
		t.Fatalf("body %s", body)
	}
}

func TestLongPollEndsWithTheClient(t *testing.T) {
	e := newEnv(t, 0)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", e.url+"/2016-11-01/functions/"+fnA+"/work", nil)
	req.Header.Set("Authorization", tokA)
	if _, err := http.DefaultClient.Do(req); err == nil {
		t.Fatal("get_work returned with no work")
	}
	// Work queued after the client left is still there for the next poll.
	deadline := time.Now().Add(2 * time.Second)
	for e.d.Stats().Waiting != 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	id := e.invoke(t, tokCaller, fnA, dispatch.Event, "", nil)
	if wid, _, _ := e.getWork(t, tokA, fnA); wid != id {
		t.Fatalf("work %s, want %s", wid, id)
	}
}

// TestKeepAliveConnectionServesSeveralCalls: the Node and Java clients
// reuse connections; an error response must not break the next request.
func TestKeepAliveConnectionServesSeveralCalls(t *testing.T) {
	e := newEnv(t, 0)
	c, err := net.Dial("tcp", e.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	for i, want := range []int{401, 202, 202} {
		auth := ""
		if i > 0 {
			auth = "Authorization: " + tokCaller + "\r\n"
		}
		fmt.Fprintf(c, "POST /2016-11-01/functions/%s HTTP/1.1\r\nHost: x\r\n%sX-Amz-Invocation-Type: Event\r\nContent-Length: 3\r\n\r\nabc", fnLatest, auth)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Fatalf("request %d: status %d", i, resp.StatusCode)
		}
	}
}
