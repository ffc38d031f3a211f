package e2e

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	pahov3 "github.com/eclipse/paho.mqtt.golang"
	"github.com/evergreen-edge/evergreen/ota/bundle"
	"github.com/evergreen-edge/evergreen/services/internal/suitetest"
	"github.com/evergreen-edge/evergreen/services/kit/bustest"
	"github.com/evergreen-edge/evergreen/services/kit/cloudota"
)

// haltingServer serves a bundle over https, each request (with or without
// a Range) only up to stallAt and then nothing, until the client goes
// away: a download the test cuts with a SIGKILL. A request starting at or
// past stallAt is served whole. It records every Range header.
type haltingServer struct {
	*httptest.Server
	body    []byte
	mu      sync.Mutex
	stallAt int
	ranges  []string
}

func newHaltingServer(t *testing.T, body, sig []byte, stallAt int) *haltingServer {
	s := &haltingServer{body: body, stallAt: stallAt}
	release := make(chan struct{})
	s.Server = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, ".sig") {
			w.Write(sig)
			return
		}
		rg := r.Header.Get("Range")
		s.mu.Lock()
		s.ranges = append(s.ranges, rg)
		stallAt := s.stallAt
		s.mu.Unlock()
		from := 0
		if v, ok := strings.CutPrefix(rg, "bytes="); ok {
			from, _ = strconv.Atoi(strings.TrimSuffix(v, "-"))
		}
		if from >= stallAt || from >= len(body) {
			http.ServeContent(w, r, "b.tar.gz", time.Time{}, bytes.NewReader(body))
			return
		}
		w.Header().Set("Content-Length", strconv.Itoa(len(body)-from))
		if from > 0 {
			w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", from, len(body)-1, len(body)))
			w.WriteHeader(http.StatusPartialContent)
		} else {
			w.WriteHeader(http.StatusOK)
		}
		w.Write(body[from:stallAt])
		w.(http.Flusher).Flush()
		select {
		case <-r.Context().Done():
		case <-release:
		}
		panic(http.ErrAbortHandler)
	}))
	t.Cleanup(func() {
		close(release)
		s.Close()
	})
	return s
}

func (s *haltingServer) setStall(n int) {
	s.mu.Lock()
	s.stallAt = n
	s.mu.Unlock()
}

func (s *haltingServer) rangesSeen() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.ranges...)
}

// waitPartAt waits until the download of the bundle holds n bytes.
func waitPartAt(t *testing.T, part string, n int) {
	t.Helper()
	bustest.CheckFor(t, 60*time.Second, 20*time.Millisecond, func() error {
		fi, err := os.Stat(part)
		if err != nil || fi.Size() < int64(n) {
			return fmt.Errorf("download of %s not at %d bytes: %v", part, n, err)
		}
		return nil
	})
}

// Jobs cut by a SIGKILL of the whole suite during their download. A local
// `ggctl ota apply URL` is not run again: `ggctl ota status` shows it as a
// Failure "interrupted by a restart". A cloud job is picked up by the next
// start: its statuses start again on the status topic (InProgress
// "resumed", Downloading from where it stopped), the download resumes
// with a Range request, and the job ends Success on the new version.
func TestOTACloudJobResumesAfterKill(t *testing.T) {
	needMosquitto(t)
	t.Parallel()
	cloud := newAWSCloud(t)
	cloud.start()
	old := otaGgd(t, "1.0.0")
	b := otaBundle(t, "1.1.0", otaBundleOpts{})
	body, _ := os.ReadFile(b.path)
	quarter, half := len(body)/4, len(body)/2
	ts := newHaltingServer(t, body, b.sig, quarter)
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ts.Certificate().Raw}), 0o600)
	root := suitetest.ShortRoot(t)
	cloud.writeConfig(root)
	otaConfig(t, root, true, 30000)
	env := []string{"SSL_CERT_FILE=" + caFile}
	s := suitetest.LaunchWith(t, root, suitetest.LaunchOptions{Binary: old, Env: env})
	if err := waitVersion(root, "1.0.0", 30*time.Second); err != nil {
		t.Fatal(err)
	}
	var sig bundle.Signature
	json.Unmarshal(b.sig, &sig)
	part := filepath.Join(root.Dir(), "ota", "downloads", sig.SHA256+".part")
	url := ts.URL + "/b.tar.gz"

	// 1. A local apply, killed with the suite at a quarter of its download.
	apply := exec.Command(suitetest.Binary(t, "ggctl"), "--root", root.Dir(), "ota", "apply", url, "--id", "local-cut")
	if err := apply.Start(); err != nil {
		t.Fatal(err)
	}
	waitPartAt(t, part, quarter)
	s.Kill()
	apply.Process.Kill()
	apply.Wait()
	s = suitetest.LaunchWith(t, root, suitetest.LaunchOptions{Binary: old, Env: env})
	if err := waitVersion(root, "1.0.0", 30*time.Second); err != nil {
		t.Fatal(err)
	}
	st := waitOTAOutcome(t, root, "local-cut", 30*time.Second)
	if o := st.LastOutcome; o.Status != "JOB_STATUS_FAILURE" || o.Source != "local" || !strings.Contains(o.Reason, "interrupted by a restart") ||
		!strings.Contains(o.Reason, "ggctl ota apply again") {
		t.Fatalf("the interrupted local apply: %+v", o)
	}
	if r := ggctl(t, root, "ota", "status"); !strings.Contains(r.stdout, "FAILURE") || !strings.Contains(r.stdout, "interrupted by a restart") {
		t.Fatalf("ggctl ota status:\n%s%s", r.stdout, r.stderr)
	}
	if _, err := os.Stat(filepath.Join(root.Dir(), "ota", "job.json")); err == nil {
		t.Fatal("the interrupted local job is still recorded in flight")
	}
	if rs := ts.rangesSeen(); len(rs) != 1 {
		t.Fatalf("the local job ran again after the restart: Range headers %q", rs)
	}

	// 2. A cloud job, killed with the suite at half its download (it
	// resumes the local job's quarter first).
	pool := x509.NewCertPool()
	pool.AddCert(cloud.ca.Cert)
	var mu sync.Mutex
	var statuses []cloudota.Status
	ops := pahov3.NewClient(pahov3.NewClientOptions().AddBroker("ssl://127.0.0.1:" + strconv.Itoa(cloud.port)).SetClientID("fleet-ota-resume").
		SetTLSConfig(&tls.Config{RootCAs: pool}))
	if tok := ops.Connect(); !tok.WaitTimeout(waitLimit) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	defer ops.Disconnect(0)
	if tok := ops.Subscribe(cloudota.StatusTopic("test-core"), 1, func(_ pahov3.Client, m pahov3.Message) {
		var st cloudota.Status
		json.Unmarshal(m.Payload(), &st)
		mu.Lock()
		statuses = append(statuses, st)
		mu.Unlock()
	}); !tok.WaitTimeout(waitLimit) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	bustest.CheckFor(t, waitLimit, 100*time.Millisecond, func() error {
		if r := ggctl(t, root, "cloud", "--json"); !strings.Contains(r.stdout, cloudota.RequestTopic("test-core")) {
			return fmt.Errorf("cloud status: %s%s", r.stdout, r.stderr)
		}
		return nil
	})
	ofJob := func() []cloudota.Status {
		mu.Lock()
		defer mu.Unlock()
		var got []cloudota.Status
		for _, s := range statuses {
			if s.JobID == "c-cut" {
				got = append(got, s)
			}
		}
		return got
	}
	ts.setStall(half)
	req, _ := json.Marshal(map[string]any{"jobId": "c-cut", "url": url, "sha256": sig.SHA256, "size": sig.Size,
		"signature": json.RawMessage(b.sig), "targetVersion": "1.1.0"})
	start := time.Now()
	if tok := ops.Publish(cloudota.RequestTopic("test-core"), 1, false, req); !tok.WaitTimeout(waitLimit) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	waitPartAt(t, part, half)
	bustest.CheckFor(t, 30*time.Second, 50*time.Millisecond, func() error {
		for _, s := range ofJob() {
			if s.Status == cloudota.Downloading {
				return nil
			}
		}
		return fmt.Errorf("no Downloading status yet: %+v", ofJob())
	})
	s.Kill()
	t.Logf("suite killed %s after the request, the download at %d of %d bytes", time.Since(start).Round(time.Millisecond), half, len(body))
	restart := time.Now()
	suitetest.LaunchWith(t, root, suitetest.LaunchOptions{Binary: old, Env: env})
	var got []cloudota.Status
	bustest.CheckFor(t, 90*time.Second, 50*time.Millisecond, func() error {
		got = ofJob()
		if n := len(got); n == 0 || !slices.Contains([]string{cloudota.Success, cloudota.Failure, cloudota.Rejected}, got[n-1].Status) {
			return fmt.Errorf("statuses of c-cut: %+v", got)
		}
		return nil
	})
	if last := got[len(got)-1]; last.Status != cloudota.Success || last.Version != "1.1.0" {
		t.Fatalf("the resumed job: %+v", got)
	}
	// Statuses spooled before the kill may still arrive after it: the
	// resumed run starts at its InProgress "resumed".
	from := slices.IndexFunc(got, func(s cloudota.Status) bool { return strings.Contains(s.Reason, "resumed after a restart") })
	if from < 0 {
		t.Fatalf("no status of the resumed run: %+v", got)
	}
	after := got[from:]
	var seen []string
	resumedAt := -1
	for _, s := range after {
		if len(seen) == 0 || seen[len(seen)-1] != s.Status {
			seen = append(seen, s.Status)
		}
		if s.Status == cloudota.Downloading && resumedAt < 0 {
			resumedAt = s.Progress
		}
	}
	want := []string{"InProgress", "Verifying", "Downloading", "Verifying", "Installing", "Restarting", "InProgress", "Success"}
	if !slices.Equal(seen, want) || !strings.Contains(after[0].Reason, "resumed after a restart") {
		t.Fatalf("statuses after the kill: %v, want %v\n%+v", seen, want, after)
	}
	if resumedAt < 45 {
		t.Fatalf("the resumed download reported %d%% first, want where it stopped (50%%): %+v", resumedAt, after)
	}
	rs := ts.rangesSeen()
	if len(rs) != 3 || rs[1] != "bytes="+strconv.Itoa(quarter)+"-" || rs[2] != "bytes="+strconv.Itoa(half)+"-" {
		t.Fatalf("Range headers %q, want [\"\" bytes=%d- bytes=%d-]", rs, quarter, half)
	}
	t.Logf("cloud job resumed after SIGKILL: Success %s after the restart; Range %q; statuses after the restart %v (first Downloading at %d%%)",
		time.Since(restart).Round(time.Millisecond), rs, seen, resumedAt)
	if err := waitVersion(root, "1.1.0", 10*time.Second); err != nil {
		t.Fatal(err)
	}
	checkRunsDir(t, root, "1.1.0")
	if st := otaStatus(t, root); st.CommittedVersion != "1.1.0" || st.LastOutcome.JobID != "c-cut" || st.LastOutcome.Status != "JOB_STATUS_SUCCESS" {
		t.Fatalf("status %+v", st)
	}
	if _, err := os.Stat(filepath.Join(root.Dir(), "ota", "job.json")); err == nil {
		t.Fatal("job.json left after the commit")
	}
}
