package ggsdk

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/evergreen-edge/evergreen/runtime/dispatch"
	"github.com/evergreen-edge/evergreen/runtime/ipc"
)

// The tests run the SDK against the runtime's real IPC handler and work
// queue (runtime/ipc over runtime/dispatch); the system functions are
// small stand-ins that record what reaches them.

const (
	fnA    = "arn:aws:lambda:us-east-1:123456789012:function:A:1"
	fnB    = "arn:aws:lambda:us-east-1:123456789012:function:B:1"
	fnSlow = "arn:aws:lambda:us-east-1:123456789012:function:Slow:1"
	caller = "arn:aws:lambda:us-east-1:123456789012:function:Caller:1"
	router = "arn:aws:lambda:::function:GGRouter"
	shadow = "arn:aws:lambda:::function:GGShadowService"

	tokA      = "Basic dG9rQQ=="
	tokB      = "tok-b"
	tokSlow   = "tok-slow"
	tokCaller = "tok-caller"

	createdMs = 1700000000123
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

// call is one invocation of a system function.
type call struct {
	caller  string
	custom  map[string]any
	payload string
}

type env struct {
	url string

	mu      sync.Mutex
	inits   []string
	routed  []call
	shadows []call
	secrets []call
	docs    map[string]string // thing -> shadow document
}

func decodeCustom(t *testing.T, cc string) map[string]any {
	if cc == "" {
		return nil
	}
	raw, err := base64.StdEncoding.DecodeString(cc)
	if err != nil {
		t.Errorf("client context %q: %v", cc, err)
		return nil
	}
	var v struct {
		Custom map[string]any `json:"custom"`
	}
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Errorf("client context %s: %v", raw, err)
	}
	return v.Custom
}

func newEnv(t *testing.T) *env {
	t.Helper()
	e := &env{docs: map[string]string{}}
	sys := map[string]dispatch.SystemFunc{
		router: func(c, cc string, p []byte) dispatch.Result {
			custom := decodeCustom(t, cc)
			e.mu.Lock()
			e.routed = append(e.routed, call{c, custom, string(p)})
			e.mu.Unlock()
			if custom["subject"] == "full" && custom["queueFullPolicy"] == AllOrError {
				return dispatch.Result{Err: dispatch.ErrQueueFull}
			}
			return dispatch.Result{}
		},
		shadow: func(c, cc string, p []byte) dispatch.Result {
			custom := decodeCustom(t, cc)
			e.mu.Lock()
			defer e.mu.Unlock()
			e.shadows = append(e.shadows, call{c, custom, string(p)})
			subject, _ := custom["subject"].(string)
			rest, ok := strings.CutPrefix(subject, "$aws/things/")
			thing, op, ok2 := strings.Cut(rest, "/shadow/")
			if !ok || !ok2 {
				return dispatch.Result{Payload: []byte(`{"code":400,"message":"bad subject"}`)}
			}
			switch op {
			case "update":
				e.docs[thing] = string(p)
				return dispatch.Result{Payload: []byte(`{"state":{"reported":{"on":true}},"version":1}`)}
			case "get", "delete":
				doc, ok := e.docs[thing]
				if !ok {
					return dispatch.Result{Payload: []byte(`{"code":404,"message":"No shadow exists with name: '` + thing + `'","timestamp":1}`)}
				}
				if op == "delete" {
					delete(e.docs, thing)
					return dispatch.Result{Payload: []byte(`{"version":1,"timestamp":2}`)}
				}
				return dispatch.Result{Payload: []byte(doc)}
			}
			return dispatch.Result{Payload: []byte(`{"code":400,"message":"bad op"}`)}
		},
		SecretsARN: func(c, cc string, p []byte) dispatch.Result {
			e.mu.Lock()
			e.secrets = append(e.secrets, call{c, decodeCustom(t, cc), string(p)})
			e.mu.Unlock()
			var req struct{ SecretId, VersionStage string }
			json.Unmarshal(p, &req)
			switch {
			case req.SecretId == "db" && (req.VersionStage == "" || req.VersionStage == "AWSCURRENT"):
				return dispatch.Result{Payload: []byte(fmt.Sprintf(`{"ARN":"arn:aws:secretsmanager:us-east-1:123456789012:secret:db-AbCdEf","Name":"db","VersionId":"v1","SecretString":"s3cret","VersionStages":["AWSCURRENT"],"CreatedDate":%d}`, createdMs))}
			case req.SecretId == "blob":
				return dispatch.Result{Payload: []byte(fmt.Sprintf(`{"ARN":"arn:aws:secretsmanager:us-east-1:123456789012:secret:blob-AbCdEf","Name":"blob","VersionId":"v2","SecretBinary":"AAEC/w==","VersionStages":["AWSCURRENT","v2"],"CreatedDate":%d}`, createdMs))}
			}
			return dispatch.Result{Payload: []byte(`{"Status":404,"Message":"Secret not found: ` + req.SecretId + `"}`)}
		},
	}
	d := dispatch.New(dispatch.Options{Launcher: nopLauncher{}, System: sys})
	d.SetFunctions([]dispatch.Function{
		{ARN: fnA, Encoding: "binary", Timeout: 10 * time.Second},
		{ARN: fnB, Encoding: "binary", Timeout: 10 * time.Second},
		{ARN: fnSlow, Encoding: "binary", Timeout: 100 * time.Millisecond},
	})
	h := ipc.NewHandler(ipc.Options{
		Dispatcher: d,
		Auth: tokens{
			tokA:      {fnA, "wa"},
			tokB:      {fnB, "wb"},
			tokSlow:   {fnSlow, "ws"},
			tokCaller: {caller, "wc"},
		},
		Initialized: func(fn string, w dispatch.WorkerID, ok bool, resp string) {
			e.mu.Lock()
			e.inits = append(e.inits, fmt.Sprintf("%s|%s|%v", fn, w, ok))
			e.mu.Unlock()
		},
	})
	srv := httptest.NewServer(h)
	t.Cleanup(func() { d.Close(); srv.Close() })
	e.url = srv.URL
	return e
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func (e *env) client(tok, arn string, log *syncBuffer) *Client {
	c := &Client{base: e.url + "/2016-11-01", token: tok, arn: arn, http: &http.Client{}}
	if log != nil {
		c.logw = log
	}
	return c
}

// serve runs c.Serve(h) until the test ends and fails the test if Serve
// returns an error.
func serve(t *testing.T, c *Client, h Handler) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Serve(ctx, h) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve %s: %v", c.arn, err)
		}
	})
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(20 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

func TestServe(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	a := e.client(tokA, fnA, &syncBuffer{})
	b := e.client(tokB, fnB, nil)
	events := make(chan Context, 1)
	serve(t, a, func(hc Context, p []byte) ([]byte, error) {
		s := string(p)
		switch {
		case s == "fail":
			return nil, errors.New("asked to fail")
		case strings.HasPrefix(s, "event:"):
			events <- hc
			return nil, nil
		case strings.HasPrefix(s, "publish:"):
			return nil, a.Publish(hc, strings.TrimPrefix(s, "publish:"), []byte("hello"))
		case strings.HasPrefix(s, "publish-all:"):
			err := a.PublishWithPolicy(hc, strings.TrimPrefix(s, "publish-all:"), []byte("all"), AllOrError)
			if errors.Is(err, ErrRequestAgain) {
				return []byte("again"), nil
			}
			return []byte("ok"), err
		case strings.HasPrefix(s, "invoke-b:"):
			return a.Invoke(hc, fnB, map[string]any{"from": "A"}, []byte(strings.TrimPrefix(s, "invoke-b:")), true)
		}
		return append([]byte(hc.FunctionARN+"|"), p...), nil
	})
	serve(t, b, func(hc Context, p []byte) ([]byte, error) {
		from, _ := hc.Custom["from"].(string)
		return []byte("b got " + string(p) + " from " + from), nil
	})
	c := e.client(tokCaller, caller, nil)

	t.Run("registration", func(t *testing.T) {
		waitFor(t, "both functions to report initialization", func() bool {
			e.mu.Lock()
			defer e.mu.Unlock()
			return len(e.inits) == 2
		})
		e.mu.Lock()
		got := strings.Join(e.inits, ",")
		e.mu.Unlock()
		if !strings.Contains(got, fnA+"|wa|true") || !strings.Contains(got, fnB+"|wb|true") {
			t.Fatalf("initialized calls %s", got)
		}
	})
	t.Run("RequestResponse", func(t *testing.T) {
		out, err := c.Invoke(ctx, fnA, nil, []byte("ping"), true)
		if err != nil || string(out) != fnA+"|ping" {
			t.Fatalf("invoke: %q %v", out, err)
		}
		// Unqualified ARN: the only version is chosen.
		out, err = c.Invoke(ctx, strings.TrimSuffix(fnA, ":1"), nil, []byte("pong"), true)
		if err != nil || string(out) != fnA+"|pong" {
			t.Fatalf("invoke unqualified: %q %v", out, err)
		}
	})
	t.Run("Event", func(t *testing.T) {
		out, err := c.Invoke(ctx, fnA, map[string]any{"k": "v"}, []byte("event:1"), false)
		if err != nil || out != nil {
			t.Fatalf("event invoke: %q %v", out, err)
		}
		select {
		case hc := <-events:
			if hc.Custom["k"] != "v" || hc.InvocationID == "" || hc.FunctionARN != fnA || hc.Subject() != "" {
				t.Fatalf("handler context %+v", hc)
			}
		case <-time.After(20 * time.Second):
			t.Fatal("the Event invocation never reached the handler")
		}
	})
	t.Run("HandledError", func(t *testing.T) {
		out, err := c.Invoke(ctx, fnA, nil, []byte("fail"), true)
		var fe *FunctionError
		if !errors.As(err, &fe) || fe.Kind != "Handled" {
			t.Fatalf("want a Handled FunctionError, got %q %v", out, err)
		}
		var doc struct{ ErrorMessage, ErrorType string }
		if err := json.Unmarshal(fe.Payload, &doc); err != nil || doc.ErrorMessage != "asked to fail" || doc.ErrorType == "" {
			t.Fatalf("error document %s (%v)", fe.Payload, err)
		}
	})
	t.Run("Publish", func(t *testing.T) {
		if _, err := c.Invoke(ctx, fnA, nil, []byte("publish:sensors/1"), true); err != nil {
			t.Fatal(err)
		}
		e.mu.Lock()
		got := e.routed[len(e.routed)-1]
		e.mu.Unlock()
		// The router hears the publisher from its token, and the client
		// context carries it as source.
		if got.caller != fnA || got.custom["source"] != fnA || got.custom["subject"] != "sensors/1" ||
			got.custom["queueFullPolicy"] != BestEffort || got.payload != "hello" {
			t.Fatalf("router got %+v", got)
		}
		out, err := c.Invoke(ctx, fnA, nil, []byte("publish-all:full"), true)
		if err != nil || string(out) != "again" {
			t.Fatalf("AllOrError on a full queue: %q %v, want again (ErrRequestAgain)", out, err)
		}
		if err := c.PublishWithPolicy(ctx, "t", nil, "Sometimes"); err == nil || !strings.Contains(err.Error(), "queueFullPolicy") {
			t.Fatalf("bad policy: %v", err)
		}
	})
	t.Run("InvokeAnother", func(t *testing.T) {
		out, err := c.Invoke(ctx, fnA, nil, []byte("invoke-b:x"), true)
		if err != nil || string(out) != "b got x from A" {
			t.Fatalf("A invoking B: %q %v", out, err)
		}
	})
	t.Run("Shadow", func(t *testing.T) {
		_, err := c.Shadow(ctx, "lamp", "get", nil)
		var se *ShadowError
		if !errors.As(err, &se) || se.Code != 404 || !strings.Contains(se.Message, "lamp") {
			t.Fatalf("get of a missing shadow: %v", err)
		}
		doc := `{"state":{"reported":{"on":true}}}`
		out, err := c.Shadow(ctx, "lamp", "update", []byte(doc))
		if err != nil || !strings.Contains(string(out), `"version":1`) {
			t.Fatalf("update: %s %v", out, err)
		}
		out, err = c.Shadow(ctx, "lamp", "get", nil)
		if err != nil || string(out) != doc {
			t.Fatalf("get: %s %v", out, err)
		}
		if out, err = c.Shadow(ctx, "lamp", "delete", nil); err != nil || !strings.Contains(string(out), `"version"`) {
			t.Fatalf("delete: %s %v", out, err)
		}
		e.mu.Lock()
		defer e.mu.Unlock()
		want := []string{"get", "update", "get", "delete"}
		if len(e.shadows) != len(want) {
			t.Fatalf("shadow calls %+v", e.shadows)
		}
		for i, s := range e.shadows {
			if s.caller != caller || s.custom["subject"] != "$aws/things/lamp/shadow/"+want[i] || s.custom["source"] != nil {
				t.Fatalf("shadow call %d: %+v", i, s)
			}
			if (want[i] == "update") != (s.payload != "") {
				t.Fatalf("shadow call %d body %q", i, s.payload)
			}
		}
	})
	t.Run("GetSecretValue", func(t *testing.T) {
		v, err := c.GetSecretValue(ctx, "db", "")
		if err != nil {
			t.Fatal(err)
		}
		if v.Name != "db" || v.ARN == "" || v.VersionID != "v1" || v.SecretString != "s3cret" || v.SecretBinary != nil ||
			len(v.VersionStages) != 1 || v.VersionStages[0] != "AWSCURRENT" || !v.CreatedDate.Equal(time.UnixMilli(createdMs)) {
			t.Fatalf("secret %+v", v)
		}
		v, err = c.GetSecretValue(ctx, "blob", "v2")
		if err != nil || !bytes.Equal(v.SecretBinary, []byte{0, 1, 2, 0xff}) || v.SecretString != "" || len(v.VersionStages) != 2 {
			t.Fatalf("binary secret %+v %v", v, err)
		}
		_, err = c.GetSecretValue(ctx, "nope", "AWSCURRENT")
		var se *SecretError
		if !errors.As(err, &se) || se.Status != 404 || se.Message != "Secret not found: nope" {
			t.Fatalf("missing secret: %v", err)
		}
		if _, err := c.GetSecretValue(ctx, "", ""); err == nil || !strings.Contains(err.Error(), "SecretId") {
			t.Fatalf("empty SecretId: %v", err)
		}
		e.mu.Lock()
		defer e.mu.Unlock()
		want := []string{`{"SecretId":"db"}`, `{"SecretId":"blob","VersionStage":"v2"}`, `{"SecretId":"nope","VersionStage":"AWSCURRENT"}`}
		if len(e.secrets) != len(want) {
			t.Fatalf("secrets calls %+v", e.secrets)
		}
		for i, s := range e.secrets {
			if s.caller != caller || s.custom != nil || s.payload != want[i] {
				t.Fatalf("secrets call %d: %+v, want body %s", i, s, want[i])
			}
		}
	})
}

// TestServeLogsRefusedResult: a result posted after the invocation timed
// out is refused by the core; Serve writes that to the function's log and
// keeps serving.
func TestServeLogsRefusedResult(t *testing.T) {
	e := newEnv(t)
	log := &syncBuffer{}
	release := make(chan struct{})
	serve(t, e.client(tokSlow, fnSlow, log), func(hc Context, p []byte) ([]byte, error) {
		<-release
		return p, nil
	})
	c := e.client(tokCaller, caller, nil)
	_, err := c.Invoke(context.Background(), fnSlow, nil, []byte("x"), true)
	var fe *FunctionError
	if !errors.As(err, &fe) || fe.Kind != "Unhandled" || !strings.Contains(string(fe.Payload), "timed out") {
		t.Fatalf("want a timeout, got %v", err)
	}
	close(release)
	waitFor(t, "the refused result in the log", func() bool {
		return strings.Contains(log.String(), "ggsdk: posting the result of invocation ")
	})
	// The core killed (retired) the worker: fetching work is refused too,
	// and logged, while Serve goes on until its context ends.
	waitFor(t, "the refused work fetch in the log", func() bool {
		return strings.Contains(log.String(), "ggsdk: fetching work")
	})
	if !strings.Contains(log.String(), "409") || !strings.Contains(log.String(), "410") {
		t.Fatalf("log:\n%s", log.String())
	}
}

// TestServeInitializationRefused: a token that is not this function's is
// refused at once; a core that cannot be reached is retried, then given
// up. Both are Serve's error.
func TestServeInitializationRefused(t *testing.T) {
	e := newEnv(t)
	err := e.client(tokA, fnB, nil).Serve(context.Background(), func(Context, []byte) ([]byte, error) { return nil, nil })
	if err == nil || !strings.Contains(err.Error(), "reporting initialization") || !strings.Contains(err.Error(), "403") {
		t.Fatalf("Serve with another function's token: %v", err)
	}

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	old := initTimeout
	initTimeout = 300 * time.Millisecond
	defer func() { initTimeout = old }()
	log := &syncBuffer{}
	c := &Client{base: "http://" + addr + "/2016-11-01", token: tokA, arn: fnA, http: &http.Client{}, logw: log}
	err = c.Serve(context.Background(), func(Context, []byte) ([]byte, error) { return nil, nil })
	if err == nil || !strings.Contains(err.Error(), "reporting initialization") {
		t.Fatalf("Serve with no core: %v", err)
	}
	if !strings.Contains(log.String(), "retrying") {
		t.Fatalf("no retry logged:\n%s", log.String())
	}

	// Cancelled while retrying (SIGTERM): not an error.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := c.Serve(ctx, func(Context, []byte) ([]byte, error) { return nil, nil }); err != nil {
		t.Fatalf("Serve cancelled: %v", err)
	}
}

// TestFromEnv builds the client from the environment a core gives a
// function and serves one invocation through it.
func TestFromEnv(t *testing.T) {
	e := newEnv(t)
	_, port, _ := net.SplitHostPort(strings.TrimPrefix(e.url, "http://"))
	t.Setenv("GG_DAEMON_PORT", port)
	t.Setenv("AWS_CONTAINER_AUTHORIZATION_TOKEN", tokA)
	t.Setenv("MY_FUNCTION_ARN", fnA)
	a, err := FromEnv()
	if err != nil {
		t.Fatal(err)
	}
	serve(t, a, func(hc Context, p []byte) ([]byte, error) { return p, nil })
	out, err := e.client(tokCaller, caller, nil).Invoke(context.Background(), fnA, nil, []byte("hi"), true)
	if err != nil || string(out) != "hi" {
		t.Fatalf("invoke: %q %v", out, err)
	}
	t.Setenv("MY_FUNCTION_ARN", "")
	if _, err := FromEnv(); err == nil || !strings.Contains(err.Error(), "MY_FUNCTION_ARN") {
		t.Fatalf("FromEnv without MY_FUNCTION_ARN: %v", err)
	}
}
