package artifact

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/evergreen-edge/evergreen/services/kit/atomicfile"
	"github.com/evergreen-edge/evergreen/services/kit/errdefs"
)

// Defaults of a Fetcher and a Spec.
const (
	// DefaultMaxBytes is the download limit of a Spec that sets none.
	DefaultMaxBytes int64 = 2 << 30
	// DefaultReadTimeout is how long a download may go without receiving a
	// byte (connecting and waiting for the response headers included).
	DefaultReadTimeout = 30 * time.Second
	// DefaultPartialMaxAge is how long GC keeps an unreferenced partial
	// download, so that a failed deployment retried soon still resumes.
	DefaultPartialMaxAge = 24 * time.Hour
)

// progressEvery spaces progress reports: ggctl redraws a line, it does not
// need one report per read.
const progressEvery = 100 * time.Millisecond

// Spec names one artifact.
type Spec struct {
	// URL is https://host/path or file:///absolute/path. Plain http is
	// refused: the checksum protects the content, but not the fact that a
	// network path can hold a download hostage.
	URL string
	// SHA256 is the hex digest of the artifact's bytes; required.
	SHA256 string
	// Size is the artifact's size in bytes when known (0 = unknown). A
	// source that serves another size fails the fetch.
	Size int64
	// MaxBytes caps the download (0 = DefaultMaxBytes).
	MaxBytes int64
}

// Progress is one report of a fetch in progress.
type Progress struct {
	URL         string // the Spec's URL, without query string or user info
	Bytes       int64  // bytes held so far, resumed ones included
	Total       int64  // the artifact's size, -1 while unknown
	ResumedFrom int64  // bytes kept from an earlier attempt (0 = from the start)
	Cached      bool   // the artifact was already in the cache
	Finished    bool   // the last report: the artifact is verified and in place
}

// Fetcher downloads artifacts into a content-addressed cache:
//
//	DIR/sha256/<hex>        verified artifacts, mode 0400
//	DIR/partial/<hex>.part  downloads in progress or interrupted
//
// Fetch calls for the same digest wait for each other; different digests
// download in parallel.
type Fetcher struct {
	dir           string
	client        *http.Client
	readTimeout   time.Duration
	partialMaxAge time.Duration

	// mu guards busy, the digests being fetched; GC holds it for its whole
	// run so that no fetch starts on an artifact it is removing.
	mu   sync.Mutex
	busy map[string]chan struct{}
}

// Option tunes a Fetcher.
type Option func(*Fetcher)

// WithHTTPClient sets the client used for https URLs (tests pass the one of
// an httptest TLS server; the host may pass one with its own root CAs or
// proxy). Redirects to anything but https are refused whatever the client.
func WithHTTPClient(c *http.Client) Option {
	return func(f *Fetcher) { f.client = c }
}

// WithReadTimeout sets how long a download may receive nothing before it is
// cut (DefaultReadTimeout).
func WithReadTimeout(d time.Duration) Option {
	return func(f *Fetcher) { f.readTimeout = d }
}

// WithPartialMaxAge sets how long GC keeps unreferenced partial downloads
// (DefaultPartialMaxAge).
func WithPartialMaxAge(d time.Duration) Option {
	return func(f *Fetcher) { f.partialMaxAge = d }
}

// NewFetcher returns a Fetcher caching under dir (the deployagent uses
// DIR/data/deployagent/artifacts), creating its folders.
func NewFetcher(dir string, opts ...Option) (*Fetcher, error) {
	f := &Fetcher{
		dir:           dir,
		readTimeout:   DefaultReadTimeout,
		partialMaxAge: DefaultPartialMaxAge,
		busy:          map[string]chan struct{}{},
	}
	for _, o := range opts {
		o(f)
	}
	if f.client == nil {
		f.client = &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()}
	}
	c := *f.client
	c.CheckRedirect = httpsOnly(c.CheckRedirect)
	f.client = &c
	for _, d := range []string{f.storeDir(), f.partialDir()} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("artifact cache: %w", err)
		}
	}
	return f, nil
}

func (f *Fetcher) storeDir() string   { return filepath.Join(f.dir, "sha256") }
func (f *Fetcher) partialDir() string { return filepath.Join(f.dir, "partial") }

// httpsOnly refuses a redirect that would leave https, then applies the
// client's own policy (at most 10 redirects when it has none).
func httpsOnly(next func(*http.Request, []*http.Request) error) func(*http.Request, []*http.Request) error {
	return func(req *http.Request, via []*http.Request) error {
		if req.URL.Scheme != "https" {
			return &insecureRedirect{to: shownURL(req.URL)}
		}
		if next != nil {
			return next(req, via)
		}
		if len(via) >= 10 {
			return errors.New("stopped after 10 redirects")
		}
		return nil
	}
}

// insecureRedirect is a redirect httpsOnly refused.
type insecureRedirect struct{ to string }

func (e *insecureRedirect) Error() string {
	return "redirected to " + e.to + ", only https is allowed"
}

// source is a validated Spec.
type source struct {
	url   *url.URL
	shown string // for messages and progress: no query (presigned URLs carry credentials)
	sum   string // lower-case hex
	size  int64  // 0 = unknown
	max   int64
}

// limit is the most bytes the artifact may have.
func (s *source) limit() int64 {
	if s.size > 0 {
		return s.size
	}
	return s.max
}

func (s *source) errorf(kind error, format string, args ...any) error {
	return fmt.Errorf("artifact %s: %s: %w", s.shown, fmt.Sprintf(format, args...), kind)
}

// tooBig is the error for an artifact that grew past its limit.
func (s *source) tooBig() error {
	if s.size > 0 {
		return s.errorf(errdefs.ErrInvalidArgument, "larger than its declared size of %d bytes", s.size)
	}
	return s.errorf(errdefs.ErrResourceExhausted, "larger than the limit of %d bytes", s.max)
}

// checkTotal checks a size announced by the source before any byte of the
// body is stored.
func (s *source) checkTotal(total int64) error {
	switch {
	case total < 0:
		return nil
	case s.size > 0 && total != s.size:
		return s.errorf(errdefs.ErrInvalidArgument, "source has %d bytes, declared size is %d", total, s.size)
	case total > s.max:
		return s.errorf(errdefs.ErrResourceExhausted, "source has %d bytes, over the limit of %d bytes", total, s.max)
	}
	return nil
}

func parseSpec(s Spec) (*source, error) {
	src := &source{shown: s.URL, size: s.Size, max: s.MaxBytes}
	u, err := url.Parse(s.URL)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, src.errorf(errdefs.ErrInvalidArgument, "not a URL: %v", err)
	}
	src.url = u
	src.shown = shownURL(u)
	switch u.Scheme {
	case "https":
		if u.Host == "" {
			return nil, src.errorf(errdefs.ErrInvalidArgument, "URL has no host")
		}
	case "file":
		if u.Opaque != "" || (u.Host != "" && u.Host != "localhost") || !path.IsAbs(u.Path) {
			return nil, src.errorf(errdefs.ErrInvalidArgument, "file URLs take an absolute path (file:///path/to/file)")
		}
	case "http":
		return nil, src.errorf(errdefs.ErrInvalidArgument, "plain http is refused, use https")
	default:
		return nil, src.errorf(errdefs.ErrInvalidArgument, "scheme %q is not supported, use https:// or file://", u.Scheme)
	}
	src.sum = strings.ToLower(s.SHA256)
	if src.sum == "" {
		return nil, src.errorf(errdefs.ErrInvalidArgument, "sha256 is required")
	}
	if _, err := hex.DecodeString(src.sum); err != nil || len(src.sum) != 2*sha256.Size {
		return nil, src.errorf(errdefs.ErrInvalidArgument, "sha256 %q is not 64 hex digits", s.SHA256)
	}
	if src.size < 0 || src.max < 0 {
		return nil, src.errorf(errdefs.ErrInvalidArgument, "size and limit may not be negative")
	}
	if src.max == 0 {
		src.max = DefaultMaxBytes
	}
	if src.size > src.max {
		return nil, src.errorf(errdefs.ErrResourceExhausted, "declared size of %d bytes is over the limit of %d bytes", src.size, src.max)
	}
	return src, nil
}

// shownURL drops what may be secret: user info and the query string (an S3
// presigned URL's signature).
func shownURL(u *url.URL) string {
	c := *u
	c.User = nil
	c.Fragment, c.RawFragment = "", ""
	query := c.RawQuery != ""
	c.RawQuery, c.ForceQuery = "", false
	if query {
		return c.String() + "?…"
	}
	return c.String()
}

// Fetch makes sure the artifact is in the cache and returns its path, which
// stays valid until a GC that does not keep it. A cached copy is verified
// again before it is trusted. progress (may be nil) is called at most about
// ten times a second, and once more with Finished set on success.
//
// An interrupted https download (network error, read timeout, cancelled
// ctx) keeps its partial file: the next Fetch of the same digest resumes it
// with a Range request. A bad artifact (checksum, size, limit) leaves
// nothing behind. Errors wrap an errdefs sentinel: ErrInvalidArgument for a
// bad Spec or artifact, ErrResourceExhausted for the limit, ErrNotFound,
// ErrUnavailable for what a retry may fix.
func (f *Fetcher) Fetch(ctx context.Context, s Spec, progress func(Progress)) (string, error) {
	src, err := parseSpec(s)
	if err != nil {
		return "", err
	}
	unlock, err := f.lock(ctx, src.sum)
	if err != nil {
		return "", fmt.Errorf("artifact %s: %w", src.shown, err)
	}
	defer unlock()

	rep := &reporter{fn: progress, p: Progress{URL: src.shown, Total: -1}}
	if src.size > 0 {
		rep.p.Total = src.size
	}
	final := filepath.Join(f.storeDir(), src.sum)
	if ok, err := f.cached(src, final, rep); err != nil {
		return "", err
	} else if ok {
		return final, nil
	}

	t, err := f.openPartial(src, rep)
	if err != nil {
		return "", err
	}
	for {
		if src.url.Scheme == "file" {
			err = t.copyFile(ctx)
		} else {
			err = f.download(ctx, t)
		}
		if err == nil {
			err = t.verify()
			if err != nil && t.resumedFrom > 0 {
				// The kept bytes were torn by a power cut, or the source
				// changed since: one more try, from the start.
				if err = t.reset(); err == nil {
					continue
				}
			}
		}
		break
	}
	if err != nil {
		t.abandon(err)
		return "", err
	}
	if err := t.install(final); err != nil {
		return "", err
	}
	rep.finish()
	return final, nil
}

// lock waits until no other Fetch holds the digest (or ctx ends).
func (f *Fetcher) lock(ctx context.Context, sum string) (unlock func(), err error) {
	for {
		f.mu.Lock()
		wait, held := f.busy[sum]
		if !held {
			done := make(chan struct{})
			f.busy[sum] = done
			f.mu.Unlock()
			return func() {
				f.mu.Lock()
				delete(f.busy, sum)
				f.mu.Unlock()
				close(done)
			}, nil
		}
		f.mu.Unlock()
		select {
		case <-wait:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// cached reports whether a verified copy is in the store. A copy that fails
// verification (disk corruption) is removed and downloaded again.
func (f *Fetcher) cached(src *source, final string, rep *reporter) (bool, error) {
	file, err := os.Open(final)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, src.errorf(errdefs.ErrInternal, "open cached copy: %v", err)
	}
	h := sha256.New()
	n, err := io.Copy(h, file)
	file.Close()
	if err != nil {
		return false, src.errorf(errdefs.ErrInternal, "read cached copy: %v", err)
	}
	if hex.EncodeToString(h.Sum(nil)) != src.sum {
		os.Remove(final)
		return false, nil
	}
	if err := src.checkTotal(n); err != nil {
		return false, err
	}
	rep.p.Bytes, rep.p.Total, rep.p.Cached = n, n, true
	rep.finish()
	return true, nil
}

// transfer is one artifact on its way into the cache.
type transfer struct {
	src         *source
	path        string
	file        *os.File
	hash        hash.Hash // over file's first done bytes
	done        int64
	resumedFrom int64
	rep         *reporter
}

// openPartial opens the partial file, keeping and hashing its bytes when
// they can be resumed.
func (f *Fetcher) openPartial(src *source, rep *reporter) (*transfer, error) {
	p := filepath.Join(f.partialDir(), src.sum+".part")
	file, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, src.errorf(errdefs.ErrInternal, "open partial file: %v", err)
	}
	t := &transfer{src: src, path: p, file: file, hash: sha256.New(), rep: rep}
	n, err := io.Copy(t.hash, file)
	if err != nil {
		file.Close()
		return nil, src.errorf(errdefs.ErrInternal, "read partial file: %v", err)
	}
	t.done = n
	if n > src.limit() || src.url.Scheme == "file" {
		err = t.reset()
	}
	if err != nil {
		file.Close()
		return nil, err
	}
	return t, nil
}

// reset empties the partial file.
func (t *transfer) reset() error {
	if err := t.file.Truncate(0); err != nil {
		return t.src.errorf(errdefs.ErrInternal, "truncate partial file: %v", err)
	}
	if _, err := t.file.Seek(0, io.SeekStart); err != nil {
		return t.src.errorf(errdefs.ErrInternal, "seek partial file: %v", err)
	}
	t.hash.Reset()
	t.done, t.resumedFrom = 0, 0
	t.rep.p.Bytes, t.rep.p.ResumedFrom = 0, 0
	return nil
}

// abandon closes the partial file after a failure, and removes it unless
// the failure was an interruption a later Fetch may resume.
func (t *transfer) abandon(err error) {
	t.file.Close()
	resumable := t.src.url.Scheme == "https" && t.done > 0 &&
		!errors.Is(err, errdefs.ErrInvalidArgument) &&
		!errors.Is(err, errdefs.ErrResourceExhausted) &&
		!errors.Is(err, errdefs.ErrNotFound)
	if !resumable {
		os.Remove(t.path)
	}
}

// verify checks the whole file against the Spec.
func (t *transfer) verify() error {
	if t.src.size > 0 && t.done != t.src.size {
		return t.src.errorf(errdefs.ErrInvalidArgument, "got %d bytes, declared size is %d", t.done, t.src.size)
	}
	if sum := hex.EncodeToString(t.hash.Sum(nil)); sum != t.src.sum {
		return t.src.errorf(errdefs.ErrInvalidArgument, "sha256 is %s, want %s", sum, t.src.sum)
	}
	return nil
}

// install moves the verified file into the store, durably.
func (t *transfer) install(final string) error {
	err := t.file.Chmod(0o400)
	if err == nil {
		err = t.file.Sync()
	}
	if cerr := t.file.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(t.path, final)
	}
	if err == nil {
		err = atomicfile.SyncDir(filepath.Dir(final))
	}
	if err != nil {
		os.Remove(t.path)
		return t.src.errorf(errdefs.ErrInternal, "store: %v", err)
	}
	return nil
}

// copyFile copies a file:// artifact, always from the start.
func (t *transfer) copyFile(ctx context.Context) error {
	in, err := os.Open(t.src.url.Path)
	if errors.Is(err, os.ErrNotExist) {
		return t.src.errorf(errdefs.ErrNotFound, "no such file")
	}
	if err != nil {
		return t.src.errorf(errdefs.ErrFailedPrecondition, "%v", err)
	}
	defer in.Close()
	st, err := in.Stat()
	if err != nil {
		return t.src.errorf(errdefs.ErrFailedPrecondition, "%v", err)
	}
	if !st.Mode().IsRegular() {
		return t.src.errorf(errdefs.ErrInvalidArgument, "not a regular file")
	}
	if err := t.src.checkTotal(st.Size()); err != nil {
		return err
	}
	t.rep.p.Total = st.Size()
	return t.copy(ctx, in, func(err error) error {
		return t.src.errorf(errdefs.ErrFailedPrecondition, "read: %v", err)
	})
}

// errReadTimeout is the cause of a download cut for silence.
var errReadTimeout = errors.New("read timeout")

// download fetches the rest of an https artifact into the partial file. On
// return without error the file holds what the source serves (verify
// decides whether that is the artifact).
func (f *Fetcher) download(ctx context.Context, t *transfer) error {
	if t.done == t.src.limit() {
		t.resumedFrom = t.done // a whole file was left behind; verify decides
		return nil
	}
	rctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	idle := time.AfterFunc(f.readTimeout, func() { cancel(errReadTimeout) })
	defer idle.Stop()

	req, err := http.NewRequestWithContext(rctx, http.MethodGet, t.src.url.String(), nil)
	if err != nil {
		return t.src.errorf(errdefs.ErrInvalidArgument, "%v", err)
	}
	// A transparently decompressed body would not match Range offsets.
	req.Header.Set("Accept-Encoding", "identity")
	if t.done > 0 {
		req.Header.Set("Range", "bytes="+strconv.FormatInt(t.done, 10)+"-")
	}
	resp, err := f.client.Do(req)
	if err != nil {
		return t.interrupted(ctx, rctx, f.readTimeout, "request failed", err)
	}
	defer resp.Body.Close()

	total := int64(-1)
	switch {
	case resp.StatusCode == http.StatusPartialContent && t.done > 0:
		start, size, ok := parseContentRange(resp.Header.Get("Content-Range"))
		if !ok || start != t.done {
			if err := t.reset(); err != nil {
				return err
			}
			return t.src.errorf(errdefs.ErrUnavailable, "server answered a resume from byte %d with Content-Range %q; restarting next time", start, resp.Header.Get("Content-Range"))
		}
		t.resumedFrom = t.done
		t.rep.p.ResumedFrom = t.done
		total = size
	case resp.StatusCode == http.StatusOK:
		if t.done > 0 { // the server ignores Range: start over
			if err := t.reset(); err != nil {
				return err
			}
		}
		total = resp.ContentLength
	case resp.StatusCode == http.StatusRequestedRangeNotSatisfiable && t.done > 0:
		// Nothing after our bytes: the file may be whole already.
		t.resumedFrom = t.done
		return nil
	case resp.StatusCode == http.StatusNotFound || resp.StatusCode == http.StatusGone:
		return t.src.errorf(errdefs.ErrNotFound, "HTTP %s", resp.Status)
	case resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusRequestTimeout:
		return t.src.errorf(errdefs.ErrUnavailable, "HTTP %s", resp.Status)
	default:
		return t.src.errorf(errdefs.ErrFailedPrecondition, "HTTP %s", resp.Status)
	}
	if err := t.src.checkTotal(total); err != nil {
		return err
	}
	if total >= 0 {
		t.rep.p.Total = total
	}
	body := &idleReader{r: resp.Body, timer: idle, d: f.readTimeout}
	return t.copy(ctx, body, func(err error) error {
		return t.interrupted(ctx, rctx, f.readTimeout, fmt.Sprintf("interrupted at byte %d", t.done), err)
	})
}

// interrupted describes a failed request or read, without the URL's query
// (url.Error would print it).
func (t *transfer) interrupted(ctx, rctx context.Context, timeout time.Duration, what string, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("artifact %s: %s: %w", t.src.shown, what, ctx.Err())
	}
	if context.Cause(rctx) == errReadTimeout {
		return t.src.errorf(errdefs.ErrUnavailable, "no data for %s at byte %d", timeout, t.done)
	}
	var redirect *insecureRedirect
	if errors.As(err, &redirect) {
		return t.src.errorf(errdefs.ErrFailedPrecondition, "%v", redirect)
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	return t.src.errorf(errdefs.ErrUnavailable, "%s: %v", what, err)
}

// copy appends src to the partial file, never past the limit.
func (t *transfer) copy(ctx context.Context, src io.Reader, readErr func(error) error) error {
	buf := make([]byte, 64<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if t.done+int64(n) > t.src.limit() {
				return t.src.tooBig()
			}
			if _, werr := t.file.Write(buf[:n]); werr != nil {
				return t.src.errorf(errdefs.ErrInternal, "write partial file: %v", werr)
			}
			t.hash.Write(buf[:n])
			t.done += int64(n)
			t.rep.p.Bytes = t.done
			t.rep.update()
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return readErr(err)
		}
		if err := ctx.Err(); err != nil { // file:// reads do not watch ctx themselves
			return fmt.Errorf("artifact %s: interrupted at byte %d: %w", t.src.shown, t.done, err)
		}
	}
}

// parseContentRange reads "bytes START-END/TOTAL" (TOTAL may be "*").
func parseContentRange(s string) (start, total int64, ok bool) {
	rest, found := strings.CutPrefix(s, "bytes ")
	if !found {
		return 0, 0, false
	}
	span, size, found := strings.Cut(rest, "/")
	first, _, found2 := strings.Cut(span, "-")
	if !found || !found2 {
		return 0, 0, false
	}
	start, err := strconv.ParseInt(first, 10, 64)
	if err != nil || start < 0 {
		return 0, 0, false
	}
	if size == "*" {
		return start, -1, true
	}
	total, err = strconv.ParseInt(size, 10, 64)
	return start, total, err == nil && total > start
}

// idleReader pushes the read deadline back on every byte received.
type idleReader struct {
	r     io.Reader
	timer *time.Timer
	d     time.Duration
}

func (r *idleReader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	if n > 0 {
		r.timer.Reset(r.d)
	}
	return n, err
}

// reporter rate-limits progress reports.
type reporter struct {
	fn   func(Progress)
	p    Progress
	last time.Time
}

func (r *reporter) update() {
	if r.fn == nil {
		return
	}
	if now := time.Now(); now.Sub(r.last) >= progressEvery {
		r.last = now
		r.fn(r.p)
	}
}

func (r *reporter) finish() {
	if r.fn == nil {
		return
	}
	r.p.Finished = true
	r.p.Total = r.p.Bytes
	r.fn(r.p)
}
