package artifact_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/evergreen-edge/evergreen/deployagent/artifact"
	"github.com/evergreen-edge/evergreen/services/kit/errdefs"
)

func sum(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

// payload is deterministic, incompressible-looking content.
func payload(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + i/251)
	}
	return b
}

// server is a TLS server that records the requests it got and the body
// bytes it sent.
type server struct {
	*httptest.Server
	mu       sync.Mutex
	ranges   []string // the Range header of each request ("" = none)
	sent     []int    // body bytes written per request
	handlers []func(w http.ResponseWriter, r *http.Request) int
}

// newServer answers the i-th request with handlers[i], the last one
// answering all the rest. A handler returns the body bytes it wrote.
func newServer(t *testing.T, handlers ...func(w http.ResponseWriter, r *http.Request) int) *server {
	s := &server{handlers: handlers}
	s.Server = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		i := min(len(s.ranges), len(s.handlers)-1)
		s.ranges = append(s.ranges, r.Header.Get("Range"))
		s.sent = append(s.sent, 0)
		s.mu.Unlock()
		n := s.handlers[i](w, r)
		s.mu.Lock()
		s.sent[len(s.sent)-1] = n
		s.mu.Unlock()
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *server) requests() ([]string, []int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.ranges...), append([]int(nil), s.sent...)
}

// serve answers with content, honouring Range like S3 does.
func serve(content []byte) func(w http.ResponseWriter, r *http.Request) int {
	return func(w http.ResponseWriter, r *http.Request) int {
		cw := &countingWriter{ResponseWriter: w}
		http.ServeContent(cw, r, "m.tar.gz", time.Time{}, bytes.NewReader(content))
		return cw.n
	}
}

// cutAfter sends the whole length, then n bytes, then drops the connection.
func cutAfter(content []byte, n int) func(w http.ResponseWriter, r *http.Request) int {
	return func(w http.ResponseWriter, r *http.Request) int {
		w.Header().Set("Content-Length", fmt.Sprint(len(content)))
		w.Write(content[:n])
		w.(http.Flusher).Flush()
		panic(http.ErrAbortHandler)
	}
}

// ignoreRange always sends the whole content with 200.
func ignoreRange(content []byte) func(w http.ResponseWriter, r *http.Request) int {
	return func(w http.ResponseWriter, r *http.Request) int {
		w.Header().Set("Content-Length", fmt.Sprint(len(content)))
		w.Write(content)
		return len(content)
	}
}

// chunked sends content without a Content-Length, so that only the byte
// count can tell its size.
func chunked(content []byte) func(w http.ResponseWriter, r *http.Request) int {
	return func(w http.ResponseWriter, r *http.Request) int {
		for i := 0; i < len(content); i += 1000 {
			w.Write(content[i:min(i+1000, len(content))])
			w.(http.Flusher).Flush()
		}
		return len(content)
	}
}

type countingWriter struct {
	http.ResponseWriter
	n int
}

func (w *countingWriter) Write(p []byte) (int, error) {
	n, err := w.ResponseWriter.Write(p)
	w.n += n
	return n, err
}

func newFetcher(t *testing.T, s *server, opts ...artifact.Option) (*artifact.Fetcher, string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "artifacts")
	if s != nil {
		opts = append([]artifact.Option{artifact.WithHTTPClient(s.Client())}, opts...)
	}
	f, err := artifact.NewFetcher(dir, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return f, dir
}

// files lists the files under dir, relative to it.
func files(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			rel, _ := filepath.Rel(dir, p)
			out = append(out, rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func expectNoFiles(t *testing.T, dir string) {
	t.Helper()
	if got := files(t, dir); len(got) != 0 {
		t.Fatalf("left behind in %s: %v", dir, got)
	}
}

func expectError(t *testing.T, err error, kind error, want string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want one containing %q", want)
	}
	if !strings.Contains(err.Error(), want) {
		t.Fatalf("error %q does not say %q", err, want)
	}
	if kind != nil && !errors.Is(err, kind) {
		t.Fatalf("error %q is not %v", err, kind)
	}
}

// checkFor polls fn until it succeeds or total has passed.
func checkFor(t *testing.T, total, every time.Duration, fn func() error) {
	t.Helper()
	deadline := time.Now().Add(total)
	for {
		err := fn()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal(err)
		}
		time.Sleep(every)
	}
}

type progressLog struct {
	mu  sync.Mutex
	all []artifact.Progress
}

func (l *progressLog) add(p artifact.Progress) {
	l.mu.Lock()
	l.all = append(l.all, p)
	l.mu.Unlock()
}

func (l *progressLog) last(t *testing.T) artifact.Progress {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.all) == 0 {
		t.Fatal("no progress reported")
	}
	return l.all[len(l.all)-1]
}

func TestFetchStoresVerifiedArtifactAndReusesIt(t *testing.T) {
	content := payload(300_000)
	s := newServer(t, serve(content))
	f, dir := newFetcher(t, s)
	var log progressLog

	start := time.Now()
	p, err := f.Fetch(context.Background(), artifact.Spec{URL: s.URL + "/m.tar.gz?X-Amz-Signature=secret", SHA256: sum(content)}, log.add)
	if err != nil {
		t.Fatal(err)
	}
	elapsed := time.Since(start)
	if want := filepath.Join(dir, "sha256", sum(content)); p != want {
		t.Fatalf("path %s, want %s", p, want)
	}
	got, err := os.ReadFile(p)
	if err != nil || !bytes.Equal(got, content) {
		t.Fatalf("stored artifact differs (%v)", err)
	}
	if st, _ := os.Stat(p); st.Mode().Perm() != 0o400 {
		t.Fatalf("stored with mode %v, want 0400", st.Mode().Perm())
	}
	expectNoFiles(t, filepath.Join(dir, "partial"))
	last := log.last(t)
	if !last.Finished || last.Bytes != int64(len(content)) || last.Total != int64(len(content)) || last.Cached {
		t.Fatalf("last progress %+v", last)
	}
	if strings.Contains(last.URL, "secret") {
		t.Fatalf("progress shows the query string: %s", last.URL)
	}
	// At most one report per 100 ms, plus the first and the last.
	if max := int(elapsed/(100*time.Millisecond)) + 2; len(log.all) > max {
		t.Fatalf("%d progress reports in %v", len(log.all), elapsed)
	}

	var again progressLog
	if _, err := f.Fetch(context.Background(), artifact.Spec{URL: s.URL + "/m.tar.gz", SHA256: strings.ToUpper(sum(content))}, again.add); err != nil {
		t.Fatal(err)
	}
	if ranges, _ := s.requests(); len(ranges) != 1 {
		t.Fatalf("%d requests, want the cached copy reused", len(ranges))
	}
	if p := again.last(t); !p.Cached || !p.Finished {
		t.Fatalf("progress of a cached fetch %+v", p)
	}
}

func TestFetchRefusesChecksumMismatch(t *testing.T) {
	content := payload(10_000)
	s := newServer(t, serve(content))
	f, dir := newFetcher(t, s)
	want := sum([]byte("something else"))

	_, err := f.Fetch(context.Background(), artifact.Spec{URL: s.URL + "/m.tar.gz", SHA256: want}, nil)
	expectError(t, err, errdefs.ErrInvalidArgument, fmt.Sprintf("artifact %s/m.tar.gz: sha256 is %s, want %s", s.URL, sum(content), want))
	expectNoFiles(t, dir)
}

func TestFetchEnforcesLimitAndDeclaredSize(t *testing.T) {
	content := payload(50_000)
	for _, tc := range []struct {
		name    string
		handler func(w http.ResponseWriter, r *http.Request) int
		spec    artifact.Spec
		kind    error
		want    string
	}{
		{"announced over limit", serve(content), artifact.Spec{MaxBytes: 40_000}, errdefs.ErrResourceExhausted,
			"source has 50000 bytes, over the limit of 40000 bytes"},
		{"streamed over limit", chunked(content), artifact.Spec{MaxBytes: 40_000}, errdefs.ErrResourceExhausted,
			"larger than the limit of 40000 bytes"},
		{"announced size differs", serve(content), artifact.Spec{Size: 49_999}, errdefs.ErrInvalidArgument,
			"source has 50000 bytes, declared size is 49999"},
		{"streamed over declared size", chunked(content), artifact.Spec{Size: 30_000}, errdefs.ErrInvalidArgument,
			"larger than its declared size of 30000 bytes"},
		{"streamed under declared size", chunked(content), artifact.Spec{Size: 60_000}, errdefs.ErrInvalidArgument,
			"got 50000 bytes, declared size is 60000"},
		{"declared size over limit", serve(content), artifact.Spec{Size: 50_000, MaxBytes: 1000}, errdefs.ErrResourceExhausted,
			"declared size of 50000 bytes is over the limit of 1000 bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newServer(t, tc.handler)
			f, dir := newFetcher(t, s)
			spec := tc.spec
			spec.URL, spec.SHA256 = s.URL+"/m.tar.gz", sum(content)
			_, err := f.Fetch(context.Background(), spec, nil)
			expectError(t, err, tc.kind, tc.want)
			expectNoFiles(t, dir)
		})
	}
}

func TestFetchResumesAnInterruptedDownload(t *testing.T) {
	content := payload(200_000)
	const cut = 70_000
	s := newServer(t, cutAfter(content, cut), serve(content))
	f, dir := newFetcher(t, s)
	spec := artifact.Spec{URL: s.URL + "/m.tar.gz", SHA256: sum(content), Size: int64(len(content))}

	_, err := f.Fetch(context.Background(), spec, nil)
	expectError(t, err, errdefs.ErrUnavailable, "interrupted at byte 70000")
	part := filepath.Join(dir, "partial", sum(content)+".part")
	if st, err := os.Stat(part); err != nil || st.Size() != cut {
		t.Fatalf("partial file after the cut: %v %v, want %d bytes", st, err, cut)
	}

	var log progressLog
	p, err := f.Fetch(context.Background(), spec, log.add)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(p); !bytes.Equal(got, content) {
		t.Fatal("resumed artifact differs")
	}
	ranges, sent := s.requests()
	if len(ranges) != 2 || ranges[0] != "" || ranges[1] != "bytes=70000-" {
		t.Fatalf("Range headers %q, want none then bytes=70000-", ranges)
	}
	if sent[1] != len(content)-cut {
		t.Fatalf("second request sent %d bytes, want only the missing %d", sent[1], len(content)-cut)
	}
	if last := log.last(t); last.ResumedFrom != cut || !last.Finished {
		t.Fatalf("last progress %+v, want resumed from %d", last, cut)
	}
	expectNoFiles(t, filepath.Join(dir, "partial"))
}

func TestFetchStartsOverWhenServerIgnoresRange(t *testing.T) {
	content := payload(100_000)
	s := newServer(t, cutAfter(content, 30_000), ignoreRange(content))
	f, _ := newFetcher(t, s)
	spec := artifact.Spec{URL: s.URL + "/m.tar.gz", SHA256: sum(content)}

	if _, err := f.Fetch(context.Background(), spec, nil); err == nil {
		t.Fatal("first fetch should have been cut")
	}
	var log progressLog
	p, err := f.Fetch(context.Background(), spec, log.add)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(p); !bytes.Equal(got, content) {
		t.Fatal("artifact differs: the kept bytes were not dropped")
	}
	if ranges, _ := s.requests(); ranges[1] != "bytes=30000-" {
		t.Fatalf("second request had Range %q", ranges[1])
	}
	if last := log.last(t); last.ResumedFrom != 0 {
		t.Fatalf("progress says resumed from %d, but the server sent everything", last.ResumedFrom)
	}
}

func TestFetchVerifiesAWholePartialFile(t *testing.T) {
	// A power cut between the last write and the rename leaves a whole
	// partial file: the server answers 416 and the bytes are checked.
	content := payload(20_000)
	s := newServer(t, serve(content))
	f, dir := newFetcher(t, s)
	part := filepath.Join(dir, "partial", sum(content)+".part")
	if err := os.WriteFile(part, content, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Fetch(context.Background(), artifact.Spec{URL: s.URL + "/m", SHA256: sum(content)}, nil); err != nil {
		t.Fatal(err)
	}
	if ranges, _ := s.requests(); len(ranges) != 1 || ranges[0] != "bytes=20000-" {
		t.Fatalf("Range headers %q, want one request for what follows the kept bytes", ranges)
	}
	expectNoFiles(t, filepath.Join(dir, "partial"))
}

func TestFetchRestartsWhenKeptBytesAreTorn(t *testing.T) {
	content := payload(20_000)
	s := newServer(t, serve(content))
	f, dir := newFetcher(t, s)
	part := filepath.Join(dir, "partial", sum(content)+".part")
	torn := append([]byte(nil), content[:8000]...)
	torn[100] ^= 0xff
	if err := os.WriteFile(part, torn, 0o600); err != nil {
		t.Fatal(err)
	}
	p, err := f.Fetch(context.Background(), artifact.Spec{URL: s.URL + "/m", SHA256: sum(content)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(p); !bytes.Equal(got, content) {
		t.Fatal("artifact differs")
	}
	if ranges, _ := s.requests(); len(ranges) != 2 || ranges[0] != "bytes=8000-" || ranges[1] != "" {
		t.Fatalf("Range headers %q, want a resume then a clean download", ranges)
	}
}

func TestFetchCancelledKeepsPartialForResume(t *testing.T) {
	content := payload(100_000)
	release := make(chan struct{})
	stall := func(w http.ResponseWriter, r *http.Request) int {
		w.Header().Set("Content-Length", fmt.Sprint(len(content)))
		w.Write(content[:40_000])
		w.(http.Flusher).Flush()
		select {
		case <-r.Context().Done():
		case <-release:
		}
		return 40_000
	}
	s := newServer(t, stall, serve(content))
	defer close(release)
	f, dir := newFetcher(t, s)
	spec := artifact.Spec{URL: s.URL + "/m", SHA256: sum(content)}

	part := filepath.Join(dir, "partial", sum(content)+".part")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := f.Fetch(ctx, spec, nil)
		done <- err
	}()
	checkFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		if st, err := os.Stat(part); err != nil || st.Size() < 40_000 {
			return fmt.Errorf("partial file not written yet: %v %v", st, err)
		}
		return nil
	})
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("error %v, want context.Canceled", err)
	}
	if st, err := os.Stat(part); err != nil || st.Size() != 40_000 {
		t.Fatalf("partial file after cancel: %v %v", st, err)
	}
	if _, err := f.Fetch(context.Background(), spec, nil); err != nil {
		t.Fatal(err)
	}
	if ranges, _ := s.requests(); ranges[1] != "bytes=40000-" {
		t.Fatalf("Range %q after cancel, want bytes=40000-", ranges[1])
	}
}

func TestFetchCutsASilentDownload(t *testing.T) {
	content := payload(10_000)
	release := make(chan struct{})
	s := newServer(t, func(w http.ResponseWriter, r *http.Request) int {
		w.Header().Set("Content-Length", fmt.Sprint(len(content)))
		w.Write(content[:1000])
		w.(http.Flusher).Flush()
		select {
		case <-r.Context().Done():
		case <-release:
		}
		return 1000
	})
	defer close(release)
	f, _ := newFetcher(t, s, artifact.WithReadTimeout(200*time.Millisecond))
	_, err := f.Fetch(context.Background(), artifact.Spec{URL: s.URL + "/m", SHA256: sum(content)}, nil)
	expectError(t, err, errdefs.ErrUnavailable, "no data for 200ms at byte 1000")
}

func TestFetchFromFileURL(t *testing.T) {
	content := payload(5000)
	src := filepath.Join(t.TempDir(), "model.zip")
	if err := os.WriteFile(src, content, 0o644); err != nil {
		t.Fatal(err)
	}
	f, dir := newFetcher(t, nil)
	p, err := f.Fetch(context.Background(), artifact.Spec{URL: "file://" + src, SHA256: sum(content)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(p); !bytes.Equal(got, content) {
		t.Fatal("artifact differs")
	}

	_, err = f.Fetch(context.Background(), artifact.Spec{URL: "file://" + src, SHA256: sum([]byte("x"))}, nil)
	expectError(t, err, errdefs.ErrInvalidArgument, "sha256 is "+sum(content))
	_, err = f.Fetch(context.Background(), artifact.Spec{URL: "file://" + src + ".missing", SHA256: sum([]byte("y"))}, nil)
	expectError(t, err, errdefs.ErrNotFound, "no such file")
	if got := files(t, filepath.Join(dir, "partial")); len(got) != 0 {
		t.Fatalf("partial files left: %v", got)
	}
}

func TestFetchRefusesBadSpecs(t *testing.T) {
	f, dir := newFetcher(t, nil)
	good := sum([]byte("x"))
	for _, tc := range []struct {
		spec artifact.Spec
		want string
	}{
		{artifact.Spec{URL: "http://example.com/m.tar.gz", SHA256: good}, "plain http is refused, use https"},
		{artifact.Spec{URL: "s3://bucket/m.tar.gz", SHA256: good}, `scheme "s3" is not supported`},
		{artifact.Spec{URL: "file://relative/m.tar.gz", SHA256: good}, "file URLs take an absolute path"},
		{artifact.Spec{URL: "file:m.tar.gz", SHA256: good}, "file URLs take an absolute path"},
		{artifact.Spec{URL: "https://example.com/m.tar.gz"}, "sha256 is required"},
		{artifact.Spec{URL: "https://example.com/m.tar.gz", SHA256: "abc"}, `sha256 "abc" is not 64 hex digits`},
		{artifact.Spec{URL: "https://example.com/m.tar.gz", SHA256: good, Size: -1}, "may not be negative"},
	} {
		_, err := f.Fetch(context.Background(), tc.spec, nil)
		expectError(t, err, errdefs.ErrInvalidArgument, tc.want)
	}
	expectNoFiles(t, dir)
}

func TestFetchRefusesRedirectToHTTP(t *testing.T) {
	s := newServer(t, func(w http.ResponseWriter, r *http.Request) int {
		http.Redirect(w, r, "http://example.com/m.tar.gz", http.StatusFound)
		return 0
	})
	f, dir := newFetcher(t, s)
	_, err := f.Fetch(context.Background(), artifact.Spec{URL: s.URL + "/m", SHA256: sum([]byte("x"))}, nil)
	expectError(t, err, errdefs.ErrFailedPrecondition, "artifact "+s.URL+"/m: redirected to http://example.com/m.tar.gz, only https is allowed")
	expectNoFiles(t, dir)
}

func TestFetchDownloadsAgainOverACorruptCachedCopy(t *testing.T) {
	content := payload(10_000)
	s := newServer(t, serve(content))
	f, _ := newFetcher(t, s)
	spec := artifact.Spec{URL: s.URL + "/m", SHA256: sum(content)}
	p, err := f.Fetch(context.Background(), spec, nil)
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(p, 0o600)
	if err := os.WriteFile(p, []byte("bit rot"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Fetch(context.Background(), spec, nil); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(p); !bytes.Equal(got, content) {
		t.Fatal("corrupt copy was trusted")
	}
	if ranges, _ := s.requests(); len(ranges) != 2 {
		t.Fatalf("%d requests, want a second download", len(ranges))
	}
}

func TestGCRemovesWhatNoDeploymentReferences(t *testing.T) {
	f, dir := newFetcher(t, nil, artifact.WithPartialMaxAge(time.Hour))
	src := t.TempDir()
	var sums []string
	for i := range 3 {
		content := payload(1000 + i)
		p := filepath.Join(src, fmt.Sprint(i))
		os.WriteFile(p, content, 0o644)
		if _, err := f.Fetch(context.Background(), artifact.Spec{URL: "file://" + p, SHA256: sum(content)}, nil); err != nil {
			t.Fatal(err)
		}
		sums = append(sums, sum(content))
	}
	partial := func(name string, age time.Duration) string {
		p := filepath.Join(dir, "partial", name+".part")
		os.WriteFile(p, []byte("some"), 0o600)
		old := time.Now().Add(-age)
		os.Chtimes(p, old, old)
		return p
	}
	stale := partial(sum([]byte("stale")), 2*time.Hour)
	partial(sum([]byte("fresh")), time.Minute)
	partial(sums[1], 2*time.Hour) // referenced: may still resume

	removed, err := f.GC(map[string]bool{sums[0]: true, strings.ToUpper(sums[1]): true})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{filepath.Join(dir, "sha256", sums[2]), stale}
	if fmt.Sprint(removed) != fmt.Sprint(want) {
		t.Fatalf("removed %v, want %v", removed, want)
	}
	got := files(t, dir)
	wantLeft := []string{
		filepath.Join("partial", sum([]byte("fresh"))+".part"),
		filepath.Join("partial", sums[1]+".part"),
		filepath.Join("sha256", sums[0]),
		filepath.Join("sha256", sums[1]),
	}
	slices.Sort(got)
	slices.Sort(wantLeft)
	if fmt.Sprint(got) != fmt.Sprint(wantLeft) {
		t.Fatalf("left %v, want %v", got, wantLeft)
	}
}

func TestFetchRefusesAnUntrustedCertificate(t *testing.T) {
	s := newServer(t, serve([]byte("x")))
	f, dir := newFetcher(t, nil) // the system roots do not know the test CA
	_, err := f.Fetch(context.Background(), artifact.Spec{URL: s.URL + "/m", SHA256: sum([]byte("x"))}, nil)
	expectError(t, err, errdefs.ErrUnavailable, "artifact "+s.URL+"/m: request failed: tls: failed to verify certificate")
	expectNoFiles(t, dir)
}
