package export_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/evergreen-edge/evergreen/streammgr/export"
)

// The S3 test server's view of a request: what S3 itself would refuse.
// newFakeS3 gives the exporter these credentials through the environment.
const (
	s3TestAccessKey = "AKIDEVERGREENTEST"
	s3TestSecretKey = "evergreen-test-secret"
	s3TestRegion    = "us-east-1"
)

// checkS3Request starts checking r as S3 would: SigV4-signed for s3 in
// the test region with the test's key, every x-amz-* header and
// Content-MD5 signed, the path encoded as S3 signs it (once: every byte
// but A-Z a-z 0-9 - _ . ~ and '/' as %XX), a Content-MD5 on the bodies
// that carry file bytes, and the body the one whose SHA-256 was signed
// (UNSIGNED-PAYLOAD over https only). It wraps r.Body; the function it
// returns, called once the request was served, tells the problem found,
// "" for none.
func checkS3Request(r *http.Request) func() string {
	problem := verifyS3Signature(r)
	if problem == "" {
		switch opOf(r) {
		case "PutObject", "UploadPart":
			if r.Header.Get("Content-MD5") == "" {
				problem = "no Content-MD5"
			}
		}
	}
	declared := r.Header.Get("X-Amz-Content-Sha256")
	body := &hashingBody{r: r.Body, h: sha256.New()}
	r.Body = body
	return func() string {
		switch {
		case problem != "":
			return problem
		case declared == "UNSIGNED-PAYLOAD":
			if r.TLS == nil {
				return "UNSIGNED-PAYLOAD over plain http"
			}
			return ""
		case !body.eof && body.n != r.ContentLength:
			return "" // not read whole: nothing to compare
		}
		if got := hex.EncodeToString(body.h.Sum(nil)); got != declared {
			return fmt.Sprintf("x-amz-content-sha256 %s, the body's is %s", declared, got)
		}
		return ""
	}
}

type hashingBody struct {
	r   io.ReadCloser
	h   hash.Hash
	n   int64
	eof bool
}

func (b *hashingBody) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	b.h.Write(p[:n])
	b.n += int64(n)
	if err == io.EOF {
		b.eof = true
	}
	return n, err
}

func (b *hashingBody) Close() error { return b.r.Close() }

// s3Encode is the path encoding of S3's SigV4 (AWS's UriEncode, '/'
// kept).
func s3Encode(p string) string {
	var b strings.Builder
	for i := 0; i < len(p); i++ {
		c := p[i]
		if c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.' || c == '~' || c == '/' {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}

// verifyS3Signature signs r again from what arrived (its raw path and
// query, the headers it says it signed, its X-Amz-Date and declared
// payload hash) with the test's secret and S3's rules, and compares.
func verifyS3Signature(r *http.Request) string {
	auth := r.Header.Get("Authorization")
	rest, ok := strings.CutPrefix(auth, "AWS4-HMAC-SHA256 ")
	if !ok {
		return fmt.Sprintf("Authorization %q is not AWS4-HMAC-SHA256", auth)
	}
	fields := map[string]string{}
	for _, kv := range strings.Split(rest, ",") {
		k, v, _ := strings.Cut(strings.TrimSpace(kv), "=")
		fields[k] = v
	}
	scope := strings.Split(fields["Credential"], "/")
	if len(scope) != 5 || scope[0] != s3TestAccessKey || scope[2] != s3TestRegion || scope[3] != "s3" || scope[4] != "aws4_request" {
		return fmt.Sprintf("credential scope %v, want %s/<date>/%s/s3/aws4_request", scope, s3TestAccessKey, s3TestRegion)
	}
	signed := strings.Split(fields["SignedHeaders"], ";")
	for _, h := range []string{"host", "x-amz-date", "x-amz-content-sha256"} {
		if !slices.Contains(signed, h) {
			return fmt.Sprintf("%s not signed (SignedHeaders %s)", h, fields["SignedHeaders"])
		}
	}
	for h := range r.Header {
		if l := strings.ToLower(h); (strings.HasPrefix(l, "x-amz-") || l == "content-md5") && !slices.Contains(signed, l) {
			return fmt.Sprintf("%s sent but not signed", h)
		}
	}
	rawPath, _, _ := strings.Cut(r.RequestURI, "?")
	if want := s3Encode(r.URL.Path); rawPath != want {
		return fmt.Sprintf("path sent as %s, S3 signs it as %s", rawPath, want)
	}
	when, err := time.Parse("20060102T150405Z", r.Header.Get("X-Amz-Date"))
	if err != nil {
		return fmt.Sprintf("X-Amz-Date %q: %v", r.Header.Get("X-Amz-Date"), err)
	}
	again, err := http.NewRequest(r.Method, "http://"+r.Host+r.RequestURI, nil)
	if err != nil {
		return err.Error()
	}
	again.ContentLength = r.ContentLength
	for _, h := range signed {
		if h != "host" && h != "content-length" {
			again.Header[http.CanonicalHeaderKey(h)] = r.Header.Values(h)
		}
	}
	err = v4.NewSigner(func(o *v4.SignerOptions) { o.DisableURIPathEscaping = true }).SignHTTP(context.Background(),
		aws.Credentials{AccessKeyID: s3TestAccessKey, SecretAccessKey: s3TestSecretKey},
		again, r.Header.Get("X-Amz-Content-Sha256"), "s3", s3TestRegion, when)
	if err != nil {
		return err.Error()
	}
	if got := again.Header.Get("Authorization"); got != auth {
		return fmt.Sprintf("signature does not verify:\n got  %s\n want %s", auth, got)
	}
	return ""
}

// TestS3KeysWithReservedCharactersArriveAsWritten: a key holding every
// character S3 export keys may have that a URL path reserves or escapes
// is stored under exactly that key, by PutObject and by a multipart
// upload, and every request is signed as S3 checks it (the fake verifies
// each).
func TestS3KeysWithReservedCharactersArriveAsWritten(t *testing.T) {
	r := newS3Rig(t)
	r.create(nil)
	smallKey := "odd/k+e=y;(1)&@:$!*,é.bin"
	bigKey := "odd//(big)+1=ü.bin"
	big := pattern(export.DefaultS3MinPartSize+3, 5)
	r.task(map[string]any{"inputUrl": fileURL(r.file("small", []byte("small"))), "bucket": testBucket, "key": smallKey,
		"userMetadata": map[string]any{"Origin": "a+b=c; d"}})
	r.task(map[string]any{"inputUrl": fileURL(r.file("big", big)), "bucket": testBucket, "key": bigKey})
	r.waitStatus(1, sSuccess)
	if got, meta := r.f.object(smallKey); string(got) != "small" || meta["origin"] != "a+b=c; d" {
		t.Fatalf("%s: %q, metadata %v", smallKey, got, meta)
	}
	if got, _ := r.f.object(bigKey); !bytes.Equal(got, big) {
		t.Fatalf("%s differs", bigKey)
	}
	if p := r.f.pendingUploads(); len(p) != 0 {
		t.Fatalf("uploads left open: %v", p)
	}
}

// TestS3OverHTTPSLeavesTheFileOutOfTheSignature: over https the file
// bodies are sent as UNSIGNED-PAYLOAD (TLS, Content-MD5 and the CRC32
// checksum guard them; the file is not hashed a second time), the rest
// still signed with its SHA-256; both kinds of upload complete.
func TestS3OverHTTPSLeavesTheFileOutOfTheSignature(t *testing.T) {
	r := newS3Rig(t)
	srv := httptest.NewTLSServer(r.f)
	t.Cleanup(srv.Close)
	r.m.Close()
	r.m = export.New(export.Options{Store: r.st, Client: srv.Client(), BackoffBase: 5 * time.Millisecond, BackoffMax: 40 * time.Millisecond,
		Now: func() time.Time { return s3Epoch },
		AWS: export.AWSOptions{Region: s3TestRegion, Endpoints: map[string]string{export.ServiceS3: srv.URL}, S3ForcePathStyle: true}})
	var mu sync.Mutex
	hashes := map[string][]string{}
	r.f.setFail(func(op string, req *http.Request) int {
		if req.TLS == nil {
			t.Errorf("%s over plain http", op)
		}
		mu.Lock()
		hashes[op] = append(hashes[op], req.Header.Get("X-Amz-Content-Sha256"))
		mu.Unlock()
		return 0
	})
	r.create(nil)
	big := pattern(export.DefaultS3MinPartSize+3, 6)
	r.task(map[string]any{"inputUrl": fileURL(r.file("small", []byte("small"))), "bucket": testBucket, "key": "small"})
	r.task(map[string]any{"inputUrl": fileURL(r.file("big", big)), "bucket": testBucket, "key": "big"})
	r.waitStatus(1, sSuccess)
	if got, _ := r.f.object("small"); string(got) != "small" {
		t.Fatalf("small: %q", got)
	}
	if got, _ := r.f.object("big"); !bytes.Equal(got, big) {
		t.Fatal("big differs")
	}
	mu.Lock()
	defer mu.Unlock()
	for _, op := range []string{"PutObject", "UploadPart"} {
		if len(hashes[op]) == 0 || slices.ContainsFunc(hashes[op], func(h string) bool { return h != "UNSIGNED-PAYLOAD" }) {
			t.Errorf("%s payload hashes %v, want UNSIGNED-PAYLOAD", op, hashes[op])
		}
	}
	for _, op := range []string{"CreateMultipartUpload", "CompleteMultipartUpload"} {
		if len(hashes[op]) == 0 || slices.Contains(hashes[op], "UNSIGNED-PAYLOAD") {
			t.Errorf("%s payload hashes %v, want the body's SHA-256", op, hashes[op])
		}
	}
}

// TestS3RefusalsByCode: S3's error codes decide between skipping the task
// (the bucket, key or object cannot be) and retrying it (S3 or access
// failing for now); a 200 whose body is an <Error> is a failure too.
func TestS3RefusalsByCode(t *testing.T) {
	for _, tc := range []struct {
		code   string
		status int
		final  bool
	}{
		{"NoSuchBucket", 404, true},
		{"InvalidBucketName", 400, true},
		{"KeyTooLongError", 400, true},
		{"MetadataTooLarge", 400, true},
		{"EntityTooLarge", 400, true},
		{"InvalidArgument", 400, true},
		{"AccessDenied", 403, false},
		{"InternalError", 500, false},
		{"SlowDown", 503, false},
	} {
		t.Run(tc.code, func(t *testing.T) {
			r := newS3Rig(t)
			var once sync.Once
			r.f.setFail(func(op string, req *http.Request) int {
				code := 0
				once.Do(func() { code = tc.status })
				return code
			})
			// The fake's refusal is ServiceUnavailable; answer tc.code
			// instead, through a handler in front of it.
			front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
				rec := httptest.NewRecorder()
				r.f.ServeHTTP(rec, req)
				for k, v := range rec.Header() {
					w.Header()[k] = v
				}
				body := bytes.ReplaceAll(rec.Body.Bytes(), []byte("<Code>ServiceUnavailable</Code>"), []byte("<Code>"+tc.code+"</Code>"))
				w.WriteHeader(rec.Code)
				w.Write(body)
			}))
			t.Cleanup(front.Close)
			r.m.Close()
			r.m = export.New(export.Options{Store: r.st, BackoffBase: 5 * time.Millisecond, BackoffMax: 40 * time.Millisecond,
				Now: func() time.Time { return s3Epoch },
				AWS: export.AWSOptions{Region: s3TestRegion, Endpoints: map[string]string{export.ServiceS3: front.URL}, S3ForcePathStyle: true}})
			r.create(nil)
			r.task(map[string]any{"inputUrl": fileURL(r.file("f", []byte("f"))), "bucket": testBucket, "key": "f"})
			if tc.final {
				v := r.waitStatus(0, sFailure)
				if !strings.Contains(v.Message, tc.code) {
					t.Fatalf("failure %q does not name %s", v.Message, tc.code)
				}
				if n := r.f.count("PutObject"); n != 0 {
					t.Fatalf("%d PutObject after a final refusal", n)
				}
				return
			}
			v := r.waitStatus(0, sWarning)
			if !strings.Contains(v.Message, tc.code) || !strings.Contains(v.Message, fmt.Sprint(tc.status)) {
				t.Fatalf("warning %q does not name %d %s", v.Message, tc.status, tc.code)
			}
			r.waitStatus(0, sSuccess)
		})
	}
}
