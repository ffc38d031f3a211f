package export_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/evergreen-edge/evergreen/streammgr/export"
	"github.com/evergreen-edge/evergreen/streammgr/store"
	"github.com/fxamacker/cbor/v2"
)

const (
	testRegion    = "us-west-2"
	testAccessKey = "AKIDEVERGREENTEST"
	testSecretKey = "evergreen/test/secret/key"
)

// awsEnv gives the SDK's chain static credentials and a region, and keeps
// the user's AWS files and instance metadata out of the test.
func awsEnv(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("AWS_ACCESS_KEY_ID", testAccessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", testSecretKey)
	t.Setenv("AWS_SESSION_TOKEN", "")
	t.Setenv("AWS_REGION", testRegion)
	t.Setenv("AWS_PROFILE", "")
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(dir, "config"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(dir, "credentials"))
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
}

// awsCall is one request an AWS service in the test received.
type awsCall struct {
	method, path, host string
	target             string // X-Amz-Target (JSON 1.1 protocol)
	ctype              string
	// scope is the SigV4 credential scope: key/date/region/service/aws4_request.
	scope []string
	// sigErr is why the signature does not verify, "" when it does.
	sigErr string
	body   map[string]any
}

// awsAnswer is what a fake service answers: a status, and a JSON body (an
// error's is {"__type", "message"} with the code in X-Amzn-ErrorType too).
type awsAnswer struct {
	status int
	code   string // error code, for a non-2xx status
	body   any
}

// awsFake is an AWS service in the test: it records every request and
// answers each with answer, called under its lock.
type awsFake struct {
	t       *testing.T
	srv     *httptest.Server
	service string // signing name

	mu      sync.Mutex
	calls   []awsCall
	arrived int
	answer  func(c awsCall) awsAnswer
	// Requests after the holdAfter'th wait for hold to close before they
	// are answered (the test inspects the exporter mid-retry meanwhile).
	hold      chan struct{}
	holdAfter int
}

func newAWSFake(t *testing.T, service string, answer func(c awsCall) awsAnswer) *awsFake {
	f := &awsFake{t: t, service: service, answer: answer}
	f.srv = httptest.NewServer(http.HandlerFunc(f.handle))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *awsFake) url() string { return f.srv.URL }

func (f *awsFake) handle(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	c := awsCall{method: r.Method, path: r.URL.Path, host: r.Host, target: r.Header.Get("X-Amz-Target"),
		ctype: r.Header.Get("Content-Type")}
	c.scope, c.sigErr = verifySigV4(r, body)
	if err := json.Unmarshal(body, &c.body); err != nil {
		f.t.Errorf("request body is not JSON: %v: %q", err, body)
	}
	f.mu.Lock()
	hold := f.hold
	if f.arrived++; f.arrived <= f.holdAfter {
		hold = nil
	}
	f.mu.Unlock()
	if hold != nil {
		select {
		case <-hold:
		case <-r.Context().Done():
			return
		}
	}
	f.mu.Lock()
	f.calls = append(f.calls, c)
	a := f.answer(c)
	f.mu.Unlock()
	if a.status == 0 {
		a.status = http.StatusOK
	}
	if a.code != "" {
		w.Header().Set("X-Amzn-ErrorType", a.code+":http://internal.amazon.com/coral/com.amazonaws.test/")
		if a.body == nil {
			a.body = map[string]any{"__type": a.code, "message": "test says " + a.code}
		}
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(a.status)
	json.NewEncoder(w).Encode(a.body)
}

// holdFrom holds the requests after the first n until release is called.
func (f *awsFake) holdFrom(n int) (release func()) {
	ch := make(chan struct{})
	f.mu.Lock()
	f.hold, f.holdAfter = ch, n
	f.mu.Unlock()
	var once sync.Once
	release = func() { once.Do(func() { close(ch) }) }
	f.t.Cleanup(release)
	return release
}

func (f *awsFake) setAnswer(a func(c awsCall) awsAnswer) {
	f.mu.Lock()
	f.answer = a
	f.mu.Unlock()
}

func (f *awsFake) recorded() []awsCall {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.calls)
}

// checkCall fails the test unless c was signed for the fake's service in
// testRegion with the test's key and its signature verifies.
func (f *awsFake) checkCall(c awsCall) {
	f.t.Helper()
	if len(c.scope) != 5 || c.scope[0] != testAccessKey || c.scope[2] != testRegion || c.scope[3] != f.service || c.scope[4] != "aws4_request" {
		f.t.Errorf("SigV4 credential scope %v, want %s/<date>/%s/%s/aws4_request", c.scope, testAccessKey, testRegion, f.service)
	}
	if c.sigErr != "" {
		f.t.Errorf("SigV4 signature: %s", c.sigErr)
	}
}

// verifySigV4 returns the credential scope of r's Authorization header and
// why its signature is wrong ("" when it is right): it signs the same
// request again, with the headers the client signed, its X-Amz-Date and
// the test's secret, and compares.
func verifySigV4(r *http.Request, body []byte) (scope []string, problem string) {
	auth := r.Header.Get("Authorization")
	rest, ok := strings.CutPrefix(auth, "AWS4-HMAC-SHA256 ")
	if !ok {
		return nil, fmt.Sprintf("Authorization %q is not AWS4-HMAC-SHA256", auth)
	}
	fields := map[string]string{}
	for _, kv := range strings.Split(rest, ",") {
		k, v, _ := strings.Cut(strings.TrimSpace(kv), "=")
		fields[k] = v
	}
	scope = strings.Split(fields["Credential"], "/")
	if len(scope) != 5 || fields["Signature"] == "" || fields["SignedHeaders"] == "" {
		return scope, fmt.Sprintf("Authorization %q lacks Credential, SignedHeaders or Signature", auth)
	}
	when, err := time.Parse("20060102T150405Z", r.Header.Get("X-Amz-Date"))
	if err != nil {
		return scope, fmt.Sprintf("X-Amz-Date %q: %v", r.Header.Get("X-Amz-Date"), err)
	}
	again, _ := http.NewRequest(r.Method, "http://"+r.Host+r.URL.RequestURI(), bytes.NewReader(body))
	for _, h := range strings.Split(fields["SignedHeaders"], ";") {
		if h != "host" && h != "content-length" {
			again.Header[http.CanonicalHeaderKey(h)] = r.Header.Values(h)
		}
	}
	sum := sha256.Sum256(body)
	err = v4.NewSigner().SignHTTP(context.Background(), aws.Credentials{AccessKeyID: testAccessKey, SecretAccessKey: testSecretKey},
		again, hex.EncodeToString(sum[:]), scope[3], scope[2], when)
	if err != nil {
		return scope, err.Error()
	}
	if got := again.Header.Get("Authorization"); got != auth {
		return scope, fmt.Sprintf("signature does not verify:\n got  %s\n want %s", auth, got)
	}
	return scope, ""
}

// awsRig is a store and an export manager whose AWS exports send to
// test servers.
type awsRig struct {
	t  *testing.T
	st *store.Store
	m  *export.Manager
}

func newAWSRig(t *testing.T, o export.Options) *awsRig {
	awsEnv(t)
	st, err := store.Open(store.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	o.Store = st
	if o.BackoffBase == 0 {
		o.BackoffBase, o.BackoffMax = 5*time.Millisecond, 40*time.Millisecond
	}
	r := &awsRig{t: t, st: st, m: export.New(o)}
	t.Cleanup(func() {
		r.m.Close()
		r.st.Close()
	})
	return r
}

// stream creates a stream without exports.
func (r *awsRig) stream(name string) {
	r.t.Helper()
	if err := r.st.Create(store.Definition{Name: name}); err != nil {
		r.t.Fatal(err)
	}
}

// export sets the stream's ExportDefinition (as a client sends it) and
// starts it.
func (r *awsRig) export(name string, def map[string]any) {
	r.t.Helper()
	in, err := r.st.Describe(name)
	if err != nil {
		r.t.Fatal(err)
	}
	if in.Definition.Export, err = cbor.Marshal(def); err != nil {
		r.t.Fatal(err)
	}
	if err := r.st.Update(in.Definition); err != nil {
		r.t.Fatal(err)
	}
	if err := r.m.Sync(name); err != nil {
		r.t.Fatal(err)
	}
}

func (r *awsRig) append(name string, payloads ...[]byte) {
	r.t.Helper()
	for _, p := range payloads {
		if _, err := r.st.Append(name, p); err != nil {
			r.t.Fatal(err)
		}
	}
}

func (r *awsRig) status(name string) export.Status {
	r.t.Helper()
	s := r.m.Statuses(name)
	if len(s) != 1 {
		r.t.Fatalf("statuses %+v", s)
	}
	return s[0]
}

// waitStatus polls the export's status until ok accepts it.
func (r *awsRig) waitStatus(name string, ok func(s export.Status) bool) export.Status {
	r.t.Helper()
	var s export.Status
	checkFor(r.t, wait, func() error {
		if s = r.status(name); !ok(s) {
			return fmt.Errorf("status %+v", s)
		}
		return nil
	})
	return s
}

func payloads(from, to int) [][]byte {
	var out [][]byte
	for i := from; i <= to; i++ {
		out = append(out, payload(int64(i)))
	}
	return out
}

func b64(b []byte) string { return base64(b) }
