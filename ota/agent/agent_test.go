package agent

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/evergreen-edge/evergreen/ota/bundle"
	"github.com/evergreen-edge/evergreen/ota/install"
	otav1 "github.com/evergreen-edge/evergreen/proto/evergreen/ota/v1"
	"github.com/evergreen-edge/evergreen/services/kit/bustest"
	"github.com/evergreen-edge/evergreen/services/kit/config"
	"github.com/evergreen-edge/evergreen/services/kit/errdefs"
)

func readLink(t *testing.T, l install.Layout, name string) string {
	t.Helper()
	d, err := l.ReadLink(name)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// launch does what the launcher does before the new version's agent
// starts: one more attempt, launched now.
func launch(t *testing.T, l install.Layout) {
	t.Helper()
	s, err := l.LoadState()
	if err != nil || s.Pending == nil {
		t.Fatalf("nothing pending: %+v %v", s, err)
	}
	s.Pending.Attempts++
	s.Pending.LaunchedAt = time.Now()
	if err := l.SaveState(s); err != nil {
		t.Fatal(err)
	}
}

// A good update: verified, installed beside a copy of the running
// binaries, switched, restart requested; the new version commits itself
// once every daemon is healthy and removes nothing it may still need.
func TestUpdateInstallsSwitchesAndCommits(t *testing.T) {
	h := newHarness(t)
	h.start("1.0.0", nil, Options{})
	path, sig := h.bundleOf("1.1.0", runtimeArch())
	evs, err := h.apply(&otav1.ApplyRequest{Source: path, Signature: sig, JobId: "j-1"})
	if err != nil {
		t.Fatal(err)
	}
	var seen []otav1.JobStatus
	for _, e := range evs {
		if len(seen) == 0 || seen[len(seen)-1] != e.GetStatus() {
			seen = append(seen, e.GetStatus())
		}
	}
	want := []otav1.JobStatus{otav1.JobStatus_JOB_STATUS_VERIFYING, otav1.JobStatus_JOB_STATUS_INSTALLING, otav1.JobStatus_JOB_STATUS_RESTARTING}
	if !slices.Equal(seen, want) || evs[len(evs)-1].GetVersion() != "1.1.0" {
		t.Fatalf("events %v", evs)
	}
	if h.sup.restartCount() != 1 {
		t.Fatalf("restarts: %d", h.sup.restartCount())
	}
	l := install.New(h.root.Dir())
	if readLink(t, l, install.CurrentLink) != "1.1.0" || readLink(t, l, install.PreviousLink) != "1.0.0" {
		t.Fatal("links not switched")
	}
	// The running binaries were kept as 1.0.0, with a manifest.
	if b, _ := os.ReadFile(filepath.Join(l.VersionDir("1.0.0"), "ggd")); string(b) != "ggd 1.0.0" {
		t.Fatalf("snapshot ggd = %q", b)
	}
	if m, err := bundle.Installed(l.VersionDir("1.0.0")); err != nil || m.Version != "1.0.0" || len(m.Files) != 2 {
		t.Fatalf("snapshot manifest %+v %v", m, err)
	}
	if m, err := bundle.Installed(l.VersionDir("1.1.0")); err != nil || m.Version != "1.1.0" {
		t.Fatalf("installed 1.1.0: %+v %v", m, err)
	}
	st := h.status()
	if st.GetPending().GetVersion() != "1.1.0" || st.GetPending().GetLaunchAttempts() != 0 || st.GetCurrentVersion() != "1.1.0" || st.GetPreviousVersion() != "1.0.0" {
		t.Fatalf("status %v", st)
	}
	// Another job while one waits for its health check is refused.
	if _, err := h.apply(&otav1.ApplyRequest{Source: path, Signature: sig}); !errors.Is(err, errdefs.ErrAborted) {
		t.Fatalf("second job: %v", err)
	}

	// The restart: the launcher counts, the new ggd runs.
	launch(t, l)
	h.exe = filepath.Join(l.VersionDir("1.1.0"), "ggd")
	h.start("1.1.0", nil, Options{})
	bustest.CheckFor(t, 5*time.Second, 20*time.Millisecond, func() error {
		if st := h.status(); st.GetCommittedVersion() != "1.1.0" || st.GetPending() != nil {
			return fmt.Errorf("not committed: %v", st)
		}
		return nil
	})
	st = h.status()
	o := st.GetLastOutcome()
	if o.GetStatus() != otav1.JobStatus_JOB_STATUS_SUCCESS || o.GetJobId() != "j-1" || o.GetFromVersion() != "1.0.0" || st.GetRunningVersion() != "1.1.0" {
		t.Fatalf("outcome %v", st)
	}
	if ds, _ := l.Installed(); !slices.Equal(ds, []string{"1.0.0", "1.1.0"}) {
		t.Fatalf("installed after the commit: %v", ds)
	}
}

// A new version that does not get every daemon healthy in time is rolled
// back, marked broken, and never installed again without force.
func TestHealthCheckFailureRollsBack(t *testing.T) {
	h := newHarness(t)
	h.start("1.0.0", nil, Options{})
	path, sig := h.bundleOf("1.1.0", runtimeArch())
	if _, err := h.apply(&otav1.ApplyRequest{Source: path, Signature: sig, JobId: "j-2"}); err != nil {
		t.Fatal(err)
	}
	l := install.New(h.root.Dir())
	launch(t, l)
	h.sup.setHealthy(false)
	h.exe = filepath.Join(l.VersionDir("1.1.0"), "ggd")
	started := time.Now()
	h.start("1.1.0", nil, Options{})
	bustest.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		if h.sup.restartCount() != 2 {
			return fmt.Errorf("restarts: %d", h.sup.restartCount())
		}
		return nil
	})
	if took := time.Since(started); took < 1900*time.Millisecond {
		t.Fatalf("rolled back after %v, before the 2 s timeout", took)
	}
	st := h.status()
	o := st.GetLastOutcome()
	if readLink(t, l, install.CurrentLink) != "1.0.0" || st.GetPending() != nil || o.GetStatus() != otav1.JobStatus_JOB_STATUS_FAILURE ||
		!strings.Contains(o.GetReason(), "streammgr (STARTING, signal: killed)") || len(st.GetBroken()) != 1 || st.GetBroken()[0].GetVersion() != "1.1.0" {
		t.Fatalf("after the rollback: %v", st)
	}
	// Back on 1.0.0 (the old binary): 1.1.0 is refused as broken, forced
	// it installs again.
	h.sup.setHealthy(true)
	h.exe = filepath.Join(l.VersionDir("1.0.0"), "ggd")
	h.start("1.0.0", nil, Options{})
	if _, err := h.apply(&otav1.ApplyRequest{Source: path, Signature: sig}); !errors.Is(err, errdefs.ErrFailedPrecondition) || !strings.Contains(err.Error(), "marked broken") {
		t.Fatalf("a broken version again: %v", err)
	}
	if _, err := h.apply(&otav1.ApplyRequest{Source: path, Signature: sig, Force: true}); err != nil {
		t.Fatalf("forced: %v", err)
	}
	if readLink(t, l, install.CurrentLink) != "1.1.0" || readLink(t, l, install.PreviousLink) != "1.0.0" {
		t.Fatal("forced install not switched")
	}
}

// Every refusal names its reason, has its code, and leaves DIR/ota as it
// was: absent on a core never updated.
func TestRefusalsChangeNothing(t *testing.T) {
	h := newHarness(t)
	h.start("1.0.0", nil, Options{})
	good, goodSig := h.bundleOf("1.1.0", runtimeArch())
	_, otherKey, _ := bundle.GenerateKey()
	tampered := copyTo(t, good)
	b, _ := os.ReadFile(tampered)
	b[len(b)/2] ^= 0xff
	os.WriteFile(tampered, b, 0o644)
	truncated := copyTo(t, good)
	os.WriteFile(truncated, b[:len(b)/2], 0o644)
	badSig := bytes.Replace(goodSig, []byte(`"signature": "`), []byte(`"signature": "AAAA`), 1)
	arm, armSig := h.bundleOf("1.1.0", otherArch())
	old, oldSig := h.bundleOf("0.9.0", runtimeArch())
	same, sameSig := h.bundleOf("1.0.0", runtimeArch())
	dev, devSig := h.bundleOf("dev", runtimeArch())
	for _, tc := range []struct {
		name string
		req  *otav1.ApplyRequest
		code error
		want string
	}{
		{"bad signature", &otav1.ApplyRequest{Source: good, Signature: badSig}, errdefs.ErrPermissionDenied, "bad signature"},
		{"unknown key", &otav1.ApplyRequest{Source: good, Signature: h.sign(good, otherKey)}, errdefs.ErrPermissionDenied, "unknown signing key"},
		{"no signature", &otav1.ApplyRequest{Source: good}, errdefs.ErrPermissionDenied, "without a signature"},
		{"hash mismatch", &otav1.ApplyRequest{Source: tampered, Signature: goodSig}, errdefs.ErrInvalidArgument, "hash mismatch"},
		{"sha256 of the request", &otav1.ApplyRequest{Source: good, Signature: goodSig, Sha256: strings.Repeat("0", 64)}, errdefs.ErrInvalidArgument, "hash mismatch"},
		{"truncated", &otav1.ApplyRequest{Source: truncated, Signature: goodSig}, errdefs.ErrInvalidArgument, "truncated bundle"},
		{"wrong architecture", &otav1.ApplyRequest{Source: arm, Signature: armSig}, errdefs.ErrInvalidArgument, "wrong architecture"},
		{"downgrade", &otav1.ApplyRequest{Source: old, Signature: oldSig}, errdefs.ErrFailedPrecondition, "downgrade"},
		{"same version", &otav1.ApplyRequest{Source: same, Signature: sameSig}, errdefs.ErrFailedPrecondition, "the one running"},
		{"unordered version", &otav1.ApplyRequest{Source: dev, Signature: devSig}, errdefs.ErrFailedPrecondition, "cannot be ordered"},
		{"plain http", &otav1.ApplyRequest{Source: "http://example.com/b.tar.gz", Signature: goodSig}, errdefs.ErrInvalidArgument, "plain http"},
		{"relative path", &otav1.ApplyRequest{Source: "b.tar.gz", Signature: goodSig}, errdefs.ErrInvalidArgument, "absolute"},
		{"missing file", &otav1.ApplyRequest{Source: "/nonexistent/b.tar.gz", Signature: goodSig}, errdefs.ErrInvalidArgument, "no such file"},
		{"bad job id", &otav1.ApplyRequest{Source: good, Signature: goodSig, JobId: "-x"}, errdefs.ErrInvalidArgument, "job_id"},
	} {
		_, err := h.apply(tc.req)
		if !errors.Is(err, tc.code) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %v with %q", tc.name, err, tc.code, tc.want)
		}
		if tree := h.tree(); tree != nil {
			t.Fatalf("%s left %v", tc.name, tree)
		}
		if tc.name != "bad job id" {
			if o := h.status().GetLastOutcome(); o.GetStatus() != otav1.JobStatus_JOB_STATUS_REJECTED || !strings.Contains(o.GetReason(), tc.want) {
				t.Errorf("%s: status shows %v", tc.name, o)
			}
		}
	}
	if h.sup.restartCount() != 0 {
		t.Fatal("a refused update restarted the core")
	}
	// No trusted key: nothing can be installed.
	h.start("1.0.0", h.config(func(c *config.Config) { c.Evergreen.OTA.TrustedKeys = nil }), Options{})
	if _, err := h.apply(&otav1.ApplyRequest{Source: good, Signature: goodSig}); !errors.Is(err, errdefs.ErrPermissionDenied) || !strings.Contains(err.Error(), "no key is trusted") {
		t.Fatalf("without trusted keys: %v", err)
	}
	// allowDowngrade lets an older version in without force.
	h.start("1.0.0", h.config(func(c *config.Config) { c.Evergreen.OTA.AllowDowngrade = true }), Options{})
	if _, err := h.apply(&otav1.ApplyRequest{Source: old, Signature: oldSig}); err != nil {
		t.Fatalf("allowed downgrade: %v", err)
	}
}

// A forced reinstall of the running version goes beside it.
func TestForcedSameVersionInstallsBeside(t *testing.T) {
	h := newHarness(t)
	h.start("1.0.0", nil, Options{})
	same, sig := h.bundleOf("1.0.0", runtimeArch())
	if _, err := h.apply(&otav1.ApplyRequest{Source: same, Signature: sig, Force: true}); err != nil {
		t.Fatal(err)
	}
	l := install.New(h.root.Dir())
	if cur, prev := readLink(t, l, install.CurrentLink), readLink(t, l, install.PreviousLink); cur != "1.0.0-2" || prev != "1.0.0" {
		t.Fatalf("current %s previous %s", cur, prev)
	}
}

// An https download cut in the middle keeps its bytes; the next job
// resumes it with a Range request. A server with fewer bytes than signed
// is a truncated bundle, refused.
func TestDownloadResumesAndRefusesTruncated(t *testing.T) {
	h := newHarness(t)
	good, sig := h.bundleOf("1.1.0", runtimeArch())
	body, _ := os.ReadFile(good)
	var mu sync.Mutex
	var ranges []string
	cut := true
	ts := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		ranges = append(ranges, r.Header.Get("Range"))
		first := cut
		cut = false
		mu.Unlock()
		switch r.URL.Path {
		case "/short.tar.gz":
			w.Write(body[:len(body)/3])
			return
		}
		if first {
			// Announce everything, send a third, hang up.
			w.Header().Set("Content-Length", fmt.Sprint(len(body)))
			w.WriteHeader(http.StatusOK)
			w.Write(body[:len(body)/3])
			w.(http.Flusher).Flush()
			panic(http.ErrAbortHandler)
		}
		http.ServeContent(w, r, "b.tar.gz", time.Time{}, bytes.NewReader(body))
	}))
	defer ts.Close()
	h.start("1.0.0", nil, Options{HTTPClient: ts.Client()})
	req := &otav1.ApplyRequest{Source: ts.URL + "/b.tar.gz", Signature: sig}
	if _, err := h.apply(req); !errors.Is(err, errdefs.ErrUnavailable) || !strings.Contains(err.Error(), "resumes") {
		t.Fatalf("cut download: %v", err)
	}
	sum := sha256.Sum256(body)
	part := filepath.Join(install.New(h.root.Dir()).DownloadsDir(), hex.EncodeToString(sum[:])+".part")
	if fi, err := os.Stat(part); err != nil || fi.Size() == 0 {
		t.Fatalf("partial download: %v", err)
	}
	if o := h.status().GetLastOutcome(); o.GetStatus() != otav1.JobStatus_JOB_STATUS_FAILURE {
		t.Fatalf("a failed download shows %v", o)
	}
	evs, err := h.apply(req)
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	if len(ranges) != 2 || !strings.HasPrefix(ranges[1], "bytes=") || ranges[1] == "bytes=0-" {
		t.Fatalf("requests' Range headers: %q", ranges)
	}
	mu.Unlock()
	if evs[len(evs)-1].GetStatus() != otav1.JobStatus_JOB_STATUS_RESTARTING {
		t.Fatalf("events %v", evs)
	}
	if es, _ := os.ReadDir(install.New(h.root.Dir()).DownloadsDir()); len(es) != 0 {
		t.Fatalf("downloads left: %v", es)
	}

	h2 := newHarness(t)
	h2.priv, h2.pub = h.priv, h.pub
	h2.start("1.0.0", nil, Options{HTTPClient: ts.Client()})
	_, err = h2.apply(&otav1.ApplyRequest{Source: ts.URL + "/short.tar.gz", Signature: sig})
	if !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), "truncated bundle") {
		t.Fatalf("short download: %v", err)
	}
	if tree := h2.tree(); tree != nil {
		t.Fatalf("a refused download left %v", tree)
	}
}

func copyTo(t *testing.T, path string) string {
	t.Helper()
	b, _ := os.ReadFile(path)
	p := filepath.Join(t.TempDir(), filepath.Base(path))
	os.WriteFile(p, b, 0o644)
	return p
}

func runtimeArch() string { return runtime.GOARCH }

func otherArch() string {
	if runtime.GOARCH == "arm64" {
		return "amd64"
	}
	return "arm64"
}
