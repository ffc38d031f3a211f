package agent

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/evergreen-edge/evergreen/ota/bundle"
	"github.com/evergreen-edge/evergreen/ota/install"
	"github.com/evergreen-edge/evergreen/services/kit/atomicfile"
	"github.com/evergreen-edge/evergreen/services/kit/errdefs"
)

// Downloads go to DIR/ota/downloads/<sha256>.part, hashed as they arrive,
// never past the signed size; an interrupted one (network error, timeout,
// the daemon stopping) keeps its bytes and the next job for the same
// bundle resumes with a Range request. A complete download is renamed to
// <sha256>.bundle; a wrong one (hash, size) is deleted.

// readTimeout is how long a download may receive nothing.
const readTimeout = 30 * time.Second

// progressEvery spaces progress reports.
const progressEvery = 250 * time.Millisecond

// download fetches url into the downloads folder and returns the path of
// the complete, hash-checked file.
func (a *Agent) download(ctx context.Context, url, sum string, size, maxBytes int64, progress func(done, total int64)) (string, error) {
	if err := a.l.Create(); err != nil {
		return "", err
	}
	final := filepath.Join(a.l.DownloadsDir(), sum+".bundle")
	if got, n, err := hashFile(final); err == nil && got == sum && n == size {
		progress(n, size)
		return final, nil
	}
	os.Remove(final)
	part := filepath.Join(a.l.DownloadsDir(), sum+".part")
	for attempt := 0; ; attempt++ {
		resumed, err := a.fetchInto(ctx, url, part, size, progress)
		if err != nil {
			return "", err
		}
		got, n, err := hashFile(part)
		if err != nil {
			return "", err
		}
		if n < size {
			os.Remove(part)
			return "", fmt.Errorf("%s: %w: got %d bytes, the signature covers %d", shownSource(url), bundle.ErrTruncated, n, size)
		}
		if got == sum {
			break
		}
		os.Remove(part)
		if resumed > 0 && attempt == 0 {
			continue // the kept bytes were torn, or the file changed: once more from the start
		}
		return "", fmt.Errorf("%s: %w: its sha256 is %s, the signature's %s", shownSource(url), bundle.ErrHashMismatch, got, sum)
	}
	if err := os.Rename(part, final); err != nil {
		return "", err
	}
	if err := atomicfile.SyncDir(a.l.DownloadsDir()); err != nil {
		return "", err
	}
	return final, nil
}

// fetchInto appends what the server has beyond part's bytes, up to size.
// It returns how many bytes were kept from before.
func (a *Agent) fetchInto(ctx context.Context, url, part string, size int64, progress func(done, total int64)) (int64, error) {
	f, err := os.OpenFile(part, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	have, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return 0, err
	}
	if have > size {
		if err := f.Truncate(0); err != nil {
			return 0, err
		}
		have = 0
	}
	if have == size {
		return have, nil
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, errdefs.InvalidArgument("source", "%v", err)
	}
	if have > 0 {
		req.Header.Set("Range", "bytes="+strconv.FormatInt(have, 10)+"-")
	}
	client := *a.o.HTTPClient
	client.CheckRedirect = httpsOnly
	resp, err := client.Do(req)
	if err != nil {
		return 0, unavailable(url, err)
	}
	defer resp.Body.Close()
	resumed := int64(0)
	switch {
	case resp.StatusCode == http.StatusPartialContent && have > 0 && strings.HasPrefix(resp.Header.Get("Content-Range"), "bytes "+strconv.FormatInt(have, 10)+"-"):
		resumed = have
	case resp.StatusCode == http.StatusOK:
		// The server ignores Range: start over.
		if err := f.Truncate(0); err != nil {
			return 0, err
		}
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			return 0, err
		}
		have = 0
	case resp.StatusCode == http.StatusNotFound:
		return 0, fmt.Errorf("%s: HTTP 404: %w", shownSource(url), errdefs.ErrNotFound)
	case resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusRequestedRangeNotSatisfiable:
		if resp.StatusCode == http.StatusRequestedRangeNotSatisfiable {
			f.Truncate(0)
		}
		return 0, fmt.Errorf("download %s: HTTP %d: %w", shownSource(url), resp.StatusCode, errdefs.ErrUnavailable)
	default:
		return 0, fmt.Errorf("%s: HTTP %d: %w", shownSource(url), resp.StatusCode, errdefs.ErrInvalidArgument)
	}
	if cl := resp.ContentLength; cl >= 0 && have+cl > size {
		return 0, fmt.Errorf("%s: %w: the server has %d bytes, the signature covers %d: %w", shownSource(url), bundle.ErrHashMismatch, have+cl, size, errdefs.ErrInvalidArgument)
	}
	// Cut the connection when nothing arrives for readTimeout.
	idle := time.AfterFunc(readTimeout, cancel)
	defer idle.Stop()
	buf := make([]byte, 64<<10)
	done, last := have, time.Time{}
	for done < size {
		n, rerr := resp.Body.Read(buf[:min(int64(len(buf)), size-done)])
		idle.Reset(readTimeout)
		if n > 0 {
			if _, err := f.Write(buf[:n]); err != nil {
				return 0, err
			}
			done += int64(n)
			if now := time.Now(); now.Sub(last) >= progressEvery {
				last = now
				progress(done, size)
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			f.Sync()
			if ctx.Err() != nil && a.ctx.Err() == nil {
				return 0, fmt.Errorf("download %s: nothing received for %v (a retry resumes it): %w", shownSource(url), readTimeout, errdefs.ErrUnavailable)
			}
			return 0, unavailable(url, rerr)
		}
	}
	if resp.ContentLength >= 0 && done-have < resp.ContentLength {
		// The body ended before the length the server announced.
		f.Sync()
		return 0, fmt.Errorf("download %s: the connection ended after %d of %d bytes (a retry resumes it): %w", shownSource(url), done, have+resp.ContentLength, errdefs.ErrUnavailable)
	}
	progress(done, size)
	return resumed, f.Sync()
}

// fetchSmall reads a small file (a signature) from an https or file URL.
func (a *Agent) fetchSmall(ctx context.Context, rawURL string, limit int64) ([]byte, error) {
	path, isURL, err := parseSource(rawURL)
	if err != nil {
		return nil, err
	}
	var r io.Reader
	if !isURL {
		f, err := os.Open(path)
		if err != nil {
			return nil, fmt.Errorf("%v: %w", err, errdefs.ErrInvalidArgument)
		}
		defer f.Close()
		r = f
	} else {
		ctx, cancel := context.WithTimeout(ctx, readTimeout)
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, path, nil)
		if err != nil {
			return nil, errdefs.InvalidArgument("signature_url", "%v", err)
		}
		client := *a.o.HTTPClient
		client.CheckRedirect = httpsOnly
		resp, err := client.Do(req)
		if err != nil {
			return nil, unavailable(path, err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("download %s: HTTP %d: %w", shownSource(path), resp.StatusCode, errdefs.ErrUnavailable)
		}
		r = resp.Body
	}
	b, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, unavailable(rawURL, err)
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%w: %s is over %d bytes, not a signature file: %w", bundle.ErrBadSignature, shownSource(rawURL), limit, errdefs.ErrPermissionDenied)
	}
	return b, nil
}

// tidyDownloads removes DIR/ota/downloads and DIR/ota when they are empty:
// a refused first update leaves no trace.
func (a *Agent) tidyDownloads() {
	if err := os.Remove(a.l.DownloadsDir()); err == nil || errors.Is(err, fs.ErrNotExist) {
		os.Remove(a.l.VersionsDir())
		os.Remove(a.l.Dir())
	}
}

// partSize is how many bytes of the bundle sum a download kept (0 when
// none, or more than the signed size).
func (a *Agent) partSize(sum string, size int64) int64 {
	fi, err := os.Stat(filepath.Join(a.l.DownloadsDir(), sum+".part"))
	if err != nil || fi.Size() > size {
		return 0
	}
	return fi.Size()
}

func unavailable(url string, err error) error {
	return fmt.Errorf("download %s: %v (a retry resumes it): %w", shownSource(url), err, errdefs.ErrUnavailable)
}

// httpsOnly refuses a redirect away from https.
func httpsOnly(req *http.Request, via []*http.Request) error {
	if req.URL.Scheme != "https" {
		return fmt.Errorf("redirected to %s: only https is allowed", shownSource(req.URL.String()))
	}
	if len(via) >= 10 {
		return errors.New("stopped after 10 redirects")
	}
	return nil
}

func hashFile(path string) (string, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	var h hash.Hash = sha256.New()
	n, err := io.Copy(h, f)
	return hex.EncodeToString(h.Sum(nil)), n, err
}

// removeDownloads deletes every download (after a commit).
func removeDownloads(l install.Layout) error {
	es, err := os.ReadDir(l.DownloadsDir())
	if err != nil {
		return nil
	}
	var errs []error
	for _, e := range es {
		if err := os.Remove(filepath.Join(l.DownloadsDir(), e.Name())); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
