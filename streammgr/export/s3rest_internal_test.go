package export

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
)

func TestS3ObjectURLAddressing(t *testing.T) {
	for _, tc := range []struct {
		name      string
		endpoint  string // "" for AWS's
		region    string
		pathStyle bool
		bucket    string
		key       string
		want      string // the URL as sent
		host      string
	}{
		{"custom endpoint, path style forced", "http://127.0.0.1:9000", "us-east-1", true, "b-1", "dir/f.bin",
			"http://127.0.0.1:9000/b-1/dir/f.bin", "127.0.0.1:9000"},
		{"custom endpoint by name, path style forced, path prefix", "https://store.example:8443/s3/", "eu-west-1", true, "b-1", "f",
			"https://store.example:8443/s3/b-1/f", "store.example:8443"},
		{"custom endpoint by name, virtual-hosted", "https://store.example/s3", "eu-west-1", false, "b-1", "f",
			"https://b-1.store.example/s3/f", "b-1.store.example"},
		{"custom endpoint by IP address: no name to put the bucket in", "http://10.0.0.5:9000", "eu-west-1", false, "b-1", "f",
			"http://10.0.0.5:9000/b-1/f", "10.0.0.5:9000"},
		{"custom endpoint, dots over https: path style", "https://store.example", "eu-west-1", false, "my.bucket", "f",
			"https://store.example/my.bucket/f", "store.example"},
		{"custom endpoint, dots over http: virtual-hosted", "http://store.example", "eu-west-1", false, "my.bucket", "f",
			"http://my.bucket.store.example/f", "my.bucket.store.example"},
		{"AWS, regional endpoint, virtual-hosted", "", "eu-west-1", false, "b-1", "logs/2023/f.bin",
			"https://b-1.s3.eu-west-1.amazonaws.com/logs/2023/f.bin", "b-1.s3.eu-west-1.amazonaws.com"},
		{"AWS us-east-1: regional endpoint too", "", "us-east-1", false, "b-1", "f",
			"https://b-1.s3.us-east-1.amazonaws.com/f", "b-1.s3.us-east-1.amazonaws.com"},
		{"AWS China", "", "cn-north-1", false, "b-1", "f",
			"https://b-1.s3.cn-north-1.amazonaws.com.cn/f", "b-1.s3.cn-north-1.amazonaws.com.cn"},
		{"AWS, bucket with dots: path style over https", "", "us-west-2", false, "my.bucket.name", "f",
			"https://s3.us-west-2.amazonaws.com/my.bucket.name/f", "s3.us-west-2.amazonaws.com"},
		{"AWS, path style forced", "", "us-west-2", true, "b-1", "f",
			"https://s3.us-west-2.amazonaws.com/b-1/f", "s3.us-west-2.amazonaws.com"},
		{"key encoded once, '/' kept", "http://127.0.0.1:9000", "us-east-1", true, "b-1", "a b//c+d=é;(1)~_-.!*%",
			"http://127.0.0.1:9000/b-1/a%20b//c%2Bd%3D%C3%A9%3B%281%29~_-.%21%2A%25", "127.0.0.1:9000"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var ep *url.URL
			if tc.endpoint != "" {
				var err error
				if ep, err = url.Parse(tc.endpoint); err != nil {
					t.Fatal(err)
				}
			}
			u := s3ObjectURL(ep, tc.region, tc.pathStyle, tc.bucket, tc.key)
			if u.String() != tc.want || u.Host != tc.host {
				t.Fatalf("URL %s host %s, want %s host %s", u, u.Host, tc.want, tc.host)
			}
			// As the request line carries it.
			req, err := http.NewRequest(http.MethodPut, u.String(), nil)
			if err != nil {
				t.Fatal(err)
			}
			if got := req.URL.Scheme + "://" + req.Host + req.URL.RequestURI(); got != tc.want {
				t.Fatalf("sent as %s, want %s", got, tc.want)
			}
		})
	}
}

func TestS3ErrorAnswers(t *testing.T) {
	h := http.Header{"X-Amz-Request-Id": {"HDRID"}}
	e := parseS3Error(404, h, []byte(`<?xml version="1.0" encoding="UTF-8"?>
<Error><Code>NoSuchBucket</Code><Message>The specified bucket does not exist</Message><BucketName>x</BucketName><RequestId>4442587FB7D0A2F9</RequestId><HostId>abc</HostId></Error>`))
	if e.Status != 404 || e.Code != "NoSuchBucket" || e.Message != "The specified bucket does not exist" || e.RequestID != "4442587FB7D0A2F9" {
		t.Fatalf("%+v", e)
	}
	if got := e.Error(); got != "HTTP 404 NoSuchBucket: The specified bucket does not exist (request ID 4442587FB7D0A2F9)" {
		t.Fatalf("Error() %q", got)
	}
	if s3Code(fmt.Errorf("PutObject s3://x/k: %w", e)) != "NoSuchBucket" {
		t.Fatal("the code is lost when wrapped")
	}
	// A proxy's page, an empty body: the status and the header's ID.
	for _, body := range []string{"<html><body>Bad Gateway</body></html>", ""} {
		e = parseS3Error(502, h, []byte(body))
		if e.Code != "" || e.Message != "Bad Gateway" || e.RequestID != "HDRID" || e.Error() != "HTTP 502: Bad Gateway (request ID HDRID)" {
			t.Fatalf("%q: %+v %q", body, e, e.Error())
		}
	}
	if s3Code(errors.New("dial tcp: connection refused")) != "" {
		t.Fatal("a network error has an S3 code")
	}
}

// testS3Client is a client of srv with static test credentials.
func testS3Client(t *testing.T, srv *httptest.Server) *s3Client {
	t.Helper()
	cfg := aws.Config{Region: "us-east-1", Credentials: aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
		return aws.Credentials{AccessKeyID: "AKIDTEST", SecretAccessKey: "secret"}, nil
	})}
	cl, err := newS3Client(cfg, srv.URL, true, srv.Client())
	if err != nil {
		t.Fatal(err)
	}
	return cl
}

// TestS3CompleteAnswered200WithAnError: S3 may answer
// CompleteMultipartUpload 200 and only then find it failed, the error in
// the body: that is a failure, with its code.
func TestS3CompleteAnswered200WithAnError(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusOK)
		w.Write([]byte("\n\n  <?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>InternalError</Code><Message>We encountered an internal error. Please try again.</Message><RequestId>R1</RequestId></Error>"))
	}))
	t.Cleanup(srv.Close)
	err := testS3Client(t, srv).completeMultipartUpload(context.Background(), "b-1", "k", "u1", []s3Part{{PartNumber: 1, ETag: `"e1"`}})
	var se *s3Error
	if !errors.As(err, &se) || se.Status != 200 || se.Code != "InternalError" {
		t.Fatalf("err %v", err)
	}
}

// TestS3CompleteBody: the parts in order with their ETags and CRC32
// checksums, in S3's namespace, as CompleteMultipartUpload takes them.
func TestS3CompleteBody(t *testing.T) {
	var mu sync.Mutex
	var got, ctype, query string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		got, ctype, query = string(b), r.Header.Get("Content-Type"), r.URL.RawQuery
		mu.Unlock()
		w.Write([]byte(`<CompleteMultipartUploadResult><Bucket>b-1</Bucket><Key>k</Key><ETag>"x-2"</ETag></CompleteMultipartUploadResult>`))
	}))
	t.Cleanup(srv.Close)
	err := testS3Client(t, srv).completeMultipartUpload(context.Background(), "b-1", "k", "u/1+", []s3Part{
		{PartNumber: 1, Size: 5 << 20, ETag: `"e1"`, ChecksumCRC32: "AAAAAA=="},
		{PartNumber: 2, Size: 7, ETag: `"e2"`}})
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	want := `<CompleteMultipartUpload xmlns="http://s3.amazonaws.com/doc/2006-03-01/">` +
		`<Part><PartNumber>1</PartNumber><ETag>&#34;e1&#34;</ETag><ChecksumCRC32>AAAAAA==</ChecksumCRC32></Part>` +
		`<Part><PartNumber>2</PartNumber><ETag>&#34;e2&#34;</ETag></Part></CompleteMultipartUpload>`
	if got != want || ctype != "application/xml" || query != "uploadId=u%2F1%2B" {
		t.Fatalf("body %s\nwant %s\ncontent type %q, query %q", got, want, ctype, query)
	}
}

// partsServer answers ListParts as S3 does: the parts numbered above
// part-number-marker, at most perPage, NextPartNumberMarker the last one
// listed when more follow. It records the markers asked for.
type partsServer struct {
	parts   []int // part numbers held
	perPage int

	mu      sync.Mutex
	markers []string
}

func (p *partsServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	marker := r.URL.Query().Get("part-number-marker")
	p.mu.Lock()
	p.markers = append(p.markers, marker)
	p.mu.Unlock()
	from, _ := strconv.Atoi(marker)
	var b strings.Builder
	b.WriteString(`<?xml version="1.0" encoding="UTF-8"?><ListPartsResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Bucket>b-1</Bucket><Key>k</Key><UploadId>u1</UploadId>`)
	fmt.Fprintf(&b, "<PartNumberMarker>%d</PartNumberMarker><MaxParts>%d</MaxParts>", from, p.perPage)
	n, last, more := 0, 0, false
	for _, pn := range p.parts {
		if pn <= from {
			continue
		}
		if n == p.perPage {
			more = true
			break
		}
		fmt.Fprintf(&b, `<Part><PartNumber>%d</PartNumber><LastModified>2023-11-14T22:13:20.000Z</LastModified><ETag>"etag-%d"</ETag><Size>%d</Size><ChecksumCRC32>crc-%d</ChecksumCRC32></Part>`, pn, pn, 1000+pn, pn)
		n, last = n+1, pn
	}
	fmt.Fprintf(&b, "<NextPartNumberMarker>%d</NextPartNumberMarker><IsTruncated>%t</IsTruncated></ListPartsResult>", last, more)
	w.Write([]byte(b.String()))
}

// TestS3ListPartsFollowsPages: a resumed upload learns every part S3
// holds, page after page, asking from each page's NextPartNumberMarker.
func TestS3ListPartsFollowsPages(t *testing.T) {
	ps := &partsServer{parts: []int{1, 2, 3, 5, 8}, perPage: 2}
	srv := httptest.NewServer(ps)
	t.Cleanup(srv.Close)
	s := &s3Sender{mp: &multipartState{Bucket: "b-1", Key: "k", UploadID: "u1"}}
	done := map[int32]s3Part{}
	if err := s.listParts(context.Background(), testS3Client(t, srv), done); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, pn := range []int32{1, 2, 3, 5, 8} {
		p, ok := done[pn]
		if !ok {
			t.Fatalf("part %d not learnt; parts %+v", pn, done)
		}
		got = append(got, fmt.Sprintf("%d:%d:%s:%s", p.PartNumber, p.Size, p.ETag, p.ChecksumCRC32))
	}
	want := []string{`1:1001:"etag-1":crc-1`, `2:1002:"etag-2":crc-2`, `3:1003:"etag-3":crc-3`, `5:1005:"etag-5":crc-5`, `8:1008:"etag-8":crc-8`}
	if len(done) != 5 || !slices.Equal(got, want) {
		t.Fatalf("parts %v, want %v", got, want)
	}
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if !slices.Equal(ps.markers, []string{"", "2", "5"}) {
		t.Fatalf("markers asked for %q, want \"\", 2, 5", ps.markers)
	}
}

// TestS3ListPartsStopsOnAMarkerThatDoesNotMove: a server that says
// "truncated" without moving on is an error, not an endless loop.
func TestS3ListPartsStopsOnAMarkerThatDoesNotMove(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		w.Write([]byte(`<ListPartsResult><Part><PartNumber>1</PartNumber><ETag>"e"</ETag><Size>5</Size></Part><IsTruncated>true</IsTruncated><NextPartNumberMarker>0</NextPartNumberMarker></ListPartsResult>`))
	}))
	t.Cleanup(srv.Close)
	s := &s3Sender{mp: &multipartState{Bucket: "b-1", Key: "k", UploadID: "u1"}}
	err := s.listParts(context.Background(), testS3Client(t, srv), map[int32]s3Part{})
	if err == nil || !strings.Contains(err.Error(), "NextPartNumberMarker") || calls.Load() != 1 {
		t.Fatalf("err %v after %d calls", err, calls.Load())
	}
}
