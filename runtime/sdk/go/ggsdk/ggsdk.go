// Package ggsdk is the Go function SDK of Evergreen: a Go executable
// (group Runtime "go" or "executable") becomes a Greengrass v1 function by
// calling Start with its handler. It speaks the v1 Core SDK IPC the
// Python and Node.js runtimes speak (spec section 1): work items, results,
// publish through GGRouter, invoke, shadow calls and GetSecretValue
// (GGSecretManager). The stream manager has its own client, package
// github.com/evergreen-edge/evergreen/streammgr/client.
//
// Errors the handler cannot see (a work item that cannot be fetched, a
// result the core refuses, for example one posted after the invocation
// timed out) are written to standard error, which is the function's log
// (DIR/logs/user/<function>.log, `ggctl fn logs`), and the function keeps
// serving. Reporting initialization is the exception: when the core
// refuses it, or cannot be reached for 10 s, Start returns the error and
// main should exit non-zero, so that the core sees the worker fail.
package ggsdk

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

// Context is what a handler learns about one invocation.
type Context struct {
	context.Context
	// FunctionARN is MY_FUNCTION_ARN; InvocationID the work item's id.
	FunctionARN  string
	InvocationID string
	// Custom is the client context's "custom" object: for a routed
	// message, "subject" (the topic) and "source" (who published).
	Custom map[string]any
}

// Subject is the topic of a routed message ("" for a direct invoke).
func (c Context) Subject() string { s, _ := c.Custom["subject"].(string); return s }

// Handler answers one work item. A returned error is reported as a
// Handled function error ({"errorMessage": ...}).
type Handler func(ctx Context, payload []byte) ([]byte, error)

// Client talks to the core's IPC.
type Client struct {
	base  string
	token string
	arn   string
	http  *http.Client
	logw  io.Writer // where Serve reports errors: os.Stderr
}

// FromEnv builds a client from the environment the core gives every
// function (GG_DAEMON_PORT, AWS_CONTAINER_AUTHORIZATION_TOKEN,
// MY_FUNCTION_ARN).
func FromEnv() (*Client, error) {
	port := os.Getenv("GG_DAEMON_PORT")
	if port == "" {
		port = "8000"
	}
	c := &Client{base: "http://localhost:" + port + "/2016-11-01", token: os.Getenv("AWS_CONTAINER_AUTHORIZATION_TOKEN"), arn: os.Getenv("MY_FUNCTION_ARN"), http: &http.Client{}, logw: os.Stderr}
	if c.token == "" || c.arn == "" {
		return nil, errors.New("ggsdk: AWS_CONTAINER_AUTHORIZATION_TOKEN or MY_FUNCTION_ARN is not set: not started by a Greengrass core")
	}
	return c, nil
}

// FunctionError is an invocation's error as the core reports it.
type FunctionError struct {
	Kind    string // Handled or Unhandled
	Payload []byte
}

func (e *FunctionError) Error() string {
	return fmt.Sprintf("function error (%s): %s", e.Kind, e.Payload)
}

func (c *Client) do(ctx context.Context, method, path string, hdr map[string]string, body []byte) (*http.Response, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, bytes.NewReader(body))
	if err != nil {
		return nil, nil, err
	}
	req.Header.Set("Authorization", c.token)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err == nil && resp.StatusCode >= 300 {
		err = &statusError{method: method, path: path, status: resp.Status, code: resp.StatusCode, body: bytes.TrimSpace(b)}
	}
	return resp, b, err
}

// statusError is a refusal of the core's IPC (HTTP status 300 and up).
type statusError struct {
	method, path, status string
	code                 int
	body                 []byte
}

func (e *statusError) Error() string {
	s := fmt.Sprintf("ggsdk: %s %s: %s: %s", e.method, e.path, e.status, e.body)
	if e.code == http.StatusTooManyRequests {
		s += ": " + ErrRequestAgain.Error()
	}
	return s
}

func (e *statusError) Unwrap() error {
	if e.code == http.StatusTooManyRequests {
		return ErrRequestAgain
	}
	return nil
}

func encodeCustom(custom map[string]any) string {
	b, _ := json.Marshal(map[string]any{"custom": custom})
	return base64.StdEncoding.EncodeToString(b)
}

// Invoke calls another function (or a system function). With wait it is
// RequestResponse and returns the result; else Event and returns nil.
func (c *Client) Invoke(ctx context.Context, arn string, custom map[string]any, payload []byte, wait bool) ([]byte, error) {
	typ := "Event"
	if wait {
		typ = "RequestResponse"
	}
	hdr := map[string]string{"X-Amz-Invocation-Type": typ}
	if custom != nil {
		hdr["X-Amz-Client-Context"] = encodeCustom(custom)
	}
	resp, _, err := c.do(ctx, http.MethodPost, "/functions/"+arn, hdr, payload)
	if err != nil || !wait {
		return nil, err
	}
	id := resp.Header.Get("X-Amz-InvocationId")
	resp, body, err := c.do(ctx, http.MethodGet, "/functions/"+arn, map[string]string{"X-Amz-InvocationId": id}, nil)
	if err != nil {
		return nil, err
	}
	if fe := resp.Header.Get("X-Amz-Function-Error"); fe != "" {
		return body, &FunctionError{Kind: fe, Payload: body}
	}
	return body, nil
}

// ErrRequestAgain matches (errors.Is) a refusal that may succeed later
// (HTTP 429): a queue was full. It is the C SDK's GG_REQUEST_AGAIN.
var ErrRequestAgain = errors.New("throttled, try again")

// Queue-full policies of a publish (v1 1.10+).
const (
	// BestEffort delivers to as many targets as have room (the default).
	BestEffort = "BestEffort"
	// AllOrError delivers to every target or, when one has no room, to
	// none and fails with ErrRequestAgain.
	AllOrError = "AllOrError"
)

// Publish sends a message through the router with this function as the
// source (v1's iot-data publish), BestEffort.
func (c *Client) Publish(ctx context.Context, topic string, payload []byte) error {
	return c.PublishWithPolicy(ctx, topic, payload, BestEffort)
}

// PublishWithPolicy is Publish with a queue-full policy, BestEffort or
// AllOrError.
func (c *Client) PublishWithPolicy(ctx context.Context, topic string, payload []byte, policy string) error {
	if policy != BestEffort && policy != AllOrError {
		return fmt.Errorf("ggsdk: queueFullPolicy must be %q or %q, got %q", BestEffort, AllOrError, policy)
	}
	_, err := c.Invoke(ctx, "arn:aws:lambda:::function:GGRouter", map[string]any{"source": c.arn, "subject": topic, "queueFullPolicy": policy}, payload, false)
	return err
}

// ShadowError is the shadow service's error document.
type ShadowError struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
}

func (e *ShadowError) Error() string { return fmt.Sprintf("shadow: %d %s", e.Code, e.Message) }

// Shadow runs op (get, update or delete) on thing's classic shadow and
// returns the /accepted document.
func (c *Client) Shadow(ctx context.Context, thing, op string, doc []byte) ([]byte, error) {
	b, err := c.Invoke(ctx, "arn:aws:lambda:::function:GGShadowService", map[string]any{"subject": "$aws/things/" + thing + "/shadow/" + op}, doc, true)
	if err != nil {
		return nil, err
	}
	var se ShadowError
	if json.Unmarshal(b, &se) == nil && se.Code != 0 && se.Message != "" {
		return nil, &se
	}
	return b, nil
}

// SecretsARN is the secrets manager's system function (spec 1.8).
const SecretsARN = "arn:aws:lambda:::function:GGSecretManager:1"

// SecretValue is a secret as GGSecretManager returns it (the shape of
// AWS Secrets Manager's GetSecretValue).
type SecretValue struct {
	ARN       string
	Name      string
	VersionID string
	// SecretString is the secret's text, "" when it has none; SecretBinary
	// its bytes (base64 on the wire), nil when it has none.
	SecretString  string
	SecretBinary  []byte
	VersionStages []string
	CreatedDate   time.Time
}

// SecretError is GGSecretManager's error document, {"Status","Message"}:
// Status is HTTP-like (404 not found, 403 not authorized, 400 invalid
// request, 500 internal).
type SecretError struct {
	Status  int
	Message string
}

func (e *SecretError) Error() string {
	return fmt.Sprintf("secrets manager: %d %s", e.Status, e.Message)
}

// GetSecretValue reads a secret of the group's secret resources that this
// function may read. secretID is the secret's name or ARN; versionStage
// "" means AWSCURRENT. The core's refusal is a *SecretError (errors.As).
func (c *Client) GetSecretValue(ctx context.Context, secretID, versionStage string) (*SecretValue, error) {
	if secretID == "" {
		return nil, errors.New("ggsdk: GetSecretValue: SecretId is empty")
	}
	req := map[string]string{"SecretId": secretID}
	if versionStage != "" {
		req["VersionStage"] = versionStage
	}
	body, _ := json.Marshal(req)
	b, err := c.Invoke(ctx, SecretsARN, nil, body, true)
	if err != nil {
		return nil, err
	}
	var keys map[string]json.RawMessage
	if err := json.Unmarshal(b, &keys); err != nil {
		return nil, fmt.Errorf("ggsdk: GetSecretValue: the answer is not a JSON object: %w", err)
	}
	_, hasStatus := keys["Status"]
	_, hasMessage := keys["Message"]
	if hasStatus && hasMessage {
		var se SecretError
		if err := json.Unmarshal(b, &se); err != nil {
			return nil, fmt.Errorf("ggsdk: GetSecretValue: bad error document %s: %w", b, err)
		}
		return nil, &se
	}
	var v struct {
		ARN           string
		Name          string
		VersionId     string
		SecretString  *string
		SecretBinary  []byte
		VersionStages []string
		CreatedDate   *float64
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return nil, fmt.Errorf("ggsdk: GetSecretValue: bad answer: %w", err)
	}
	if v.ARN == "" || v.Name == "" || v.CreatedDate == nil {
		return nil, fmt.Errorf("ggsdk: GetSecretValue: the answer lacks ARN, Name or CreatedDate: %.200s", b)
	}
	out := &SecretValue{ARN: v.ARN, Name: v.Name, VersionID: v.VersionId, SecretBinary: v.SecretBinary,
		VersionStages: v.VersionStages, CreatedDate: time.UnixMilli(int64(*v.CreatedDate))}
	if v.SecretString != nil {
		out.SecretString = *v.SecretString
	}
	return out, nil
}

// Start serves work items with h until SIGTERM or SIGINT (then it
// returns nil, so main can exit 0 as the core expects). It returns an
// error when the environment is not a core's (FromEnv) or when reporting
// initialization fails (see Serve): main should print it and exit 1.
func Start(h Handler) error {
	c, err := FromEnv()
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	return c.Serve(ctx, h)
}

// initTimeout bounds the retries of the initialization report while the
// core cannot be reached.
var initTimeout = 10 * time.Second

// Serve reports this function initialized, then fetches work items, runs
// h on each and posts its result, until ctx ends (then it returns nil).
// Reporting initialization is retried while the core cannot be reached or
// answers 5xx or 429, for up to 10 s; a refusal (another 4xx: the token is
// not this core's, or not this function's) or the end of those 10 s is
// returned as an error, because such a worker can never get work. Later
// errors (fetching work, posting a result) are written to standard error,
// the function's log, and Serve goes on.
func (c *Client) Serve(ctx context.Context, h Handler) error {
	if err := c.reportInitialized(ctx); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("ggsdk: reporting initialization to the core: %w", err)
	}
	backoff := 50 * time.Millisecond
	for ctx.Err() == nil {
		resp, body, err := c.do(ctx, http.MethodGet, "/functions/"+c.arn+"/work", nil, nil)
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			c.logf("fetching work (retrying in %v): %v", backoff, err)
			sleep(ctx, backoff)
			backoff = min(backoff*2, 3*time.Second)
			continue
		}
		backoff = 50 * time.Millisecond
		id := resp.Header.Get("X-Amz-InvocationId")
		hc := Context{Context: ctx, FunctionARN: c.arn, InvocationID: id}
		if cc := resp.Header.Get("X-Amz-Client-Context"); cc != "" {
			if raw, err := base64.StdEncoding.DecodeString(cc); err == nil {
				var v struct {
					Custom map[string]any `json:"custom"`
				}
				json.Unmarshal(raw, &v)
				hc.Custom = v.Custom
			}
		}
		out, herr := h(hc, body)
		hdr := map[string]string{"X-Amz-InvocationId": id}
		if herr != nil {
			hdr["X-Amz-Function-Error"] = "Handled"
			out, _ = json.Marshal(map[string]string{"errorMessage": herr.Error(), "errorType": fmt.Sprintf("%T", herr)})
		}
		// Posted even when ctx has ended (SIGTERM): the item was handled.
		if _, _, err := c.do(context.WithoutCancel(ctx), http.MethodPost, "/functions/"+c.arn+"/work", hdr, out); err != nil {
			c.logf("posting the result of invocation %s: %v", id, err)
		}
	}
	return nil
}

func (c *Client) reportInitialized(ctx context.Context) error {
	deadline := time.Now().Add(initTimeout)
	backoff := 50 * time.Millisecond
	for {
		_, _, err := c.do(ctx, http.MethodPut, "/functions/"+c.arn+"/initialized", nil, []byte(`{"Success": true, "Response": ""}`))
		if err == nil || ctx.Err() != nil {
			return err
		}
		var se *statusError
		if errors.As(err, &se) && se.code < 500 && se.code != http.StatusTooManyRequests {
			return err
		}
		if time.Now().Add(backoff).After(deadline) {
			return err
		}
		c.logf("reporting initialization (retrying in %v): %v", backoff, err)
		sleep(ctx, backoff)
		backoff = min(backoff*2, time.Second)
	}
}

func (c *Client) logf(format string, args ...any) {
	if c.logw == nil {
		return
	}
	msg := fmt.Sprintf(format, args...)
	fmt.Fprintln(c.logw, "ggsdk: "+strings.ReplaceAll(msg, "\n", " "))
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// Default is a client built from the environment, for handlers that
// publish (nil outside a core).
var Default, _ = FromEnv()
