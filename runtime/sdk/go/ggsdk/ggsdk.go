// Package ggsdk is the Go function SDK of Evergreen: a Go executable
// (group Runtime "go" or "executable") becomes a Greengrass v1 function by
// calling Start with its handler. It speaks the v1 Core SDK IPC the
// Python and Node.js runtimes speak (spec section 1): work items, results,
// publish through GGRouter, invoke, shadow and secrets calls. The stream
// manager has its own client, package
// github.com/evergreen-edge/evergreen/streammgr/client.
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
}

// FromEnv builds a client from the environment the core gives every
// function (GG_DAEMON_PORT, AWS_CONTAINER_AUTHORIZATION_TOKEN,
// MY_FUNCTION_ARN).
func FromEnv() (*Client, error) {
	port := os.Getenv("GG_DAEMON_PORT")
	if port == "" {
		port = "8000"
	}
	c := &Client{base: "http://localhost:" + port + "/2016-11-01", token: os.Getenv("AWS_CONTAINER_AUTHORIZATION_TOKEN"), arn: os.Getenv("MY_FUNCTION_ARN"), http: &http.Client{}}
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
	if err == nil && resp.StatusCode == http.StatusTooManyRequests {
		err = fmt.Errorf("ggsdk: %s %s: %s: %s: %w", method, path, resp.Status, bytes.TrimSpace(b), ErrRequestAgain)
	} else if err == nil && resp.StatusCode >= 300 {
		err = fmt.Errorf("ggsdk: %s %s: %s: %s", method, path, resp.Status, bytes.TrimSpace(b))
	}
	return resp, b, err
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

// Start serves work items with h until SIGTERM (then it returns nil, so
// main can exit 0 as the core expects).
func Start(h Handler) error {
	c, err := FromEnv()
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	c.do(ctx, http.MethodPut, "/functions/"+c.arn+"/initialized", nil, []byte(`{"Success": true, "Response": ""}`))
	backoff := 50 * time.Millisecond
	for ctx.Err() == nil {
		resp, body, err := c.do(ctx, http.MethodGet, "/functions/"+c.arn+"/work", nil, nil)
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			time.Sleep(backoff)
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
		c.do(context.Background(), http.MethodPost, "/functions/"+c.arn+"/work", hdr, out)
	}
	return nil
}

// Default is a client built from the environment, for handlers that
// publish (nil outside a core).
var Default, _ = FromEnv()
