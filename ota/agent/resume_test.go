package agent

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/evergreen-edge/evergreen/ota/bundle"
	"github.com/evergreen-edge/evergreen/ota/install"
	brokerv1 "github.com/evergreen-edge/evergreen/proto/evergreen/broker/v1"
	otav1 "github.com/evergreen-edge/evergreen/proto/evergreen/ota/v1"
	"github.com/evergreen-edge/evergreen/services/kit/bustest"
	"github.com/evergreen-edge/evergreen/services/kit/cloudota"
	"github.com/evergreen-edge/evergreen/services/kit/config"
	"github.com/evergreen-edge/evergreen/services/kit/subjects"
	"github.com/nats-io/nats.go"
	"google.golang.org/protobuf/proto"
)

// stallServer serves body; while stalled, a request without Range gets a
// third of it and then nothing (a download the test cuts by stopping the
// agent). It records every request's Range header.
type stallServer struct {
	*httptest.Server
	body    []byte
	mu      sync.Mutex
	ranges  []string
	stalled bool
	release chan struct{}
}

func newStallServer(t *testing.T, body []byte) *stallServer {
	s := &stallServer{body: body, stalled: true, release: make(chan struct{})}
	s.Server = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.ranges = append(s.ranges, r.Header.Get("Range"))
		stall := s.stalled && r.Header.Get("Range") == ""
		s.mu.Unlock()
		if stall {
			w.Header().Set("Content-Length", fmt.Sprint(len(body)))
			w.WriteHeader(http.StatusOK)
			w.Write(body[:len(body)/3])
			w.(http.Flusher).Flush()
			select {
			case <-r.Context().Done():
			case <-s.release:
			}
			panic(http.ErrAbortHandler)
		}
		http.ServeContent(w, r, "b.tar.gz", time.Time{}, bytes.NewReader(body))
	}))
	t.Cleanup(func() {
		close(s.release)
		s.Close()
	})
	return s
}

func (s *stallServer) rangesSeen() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.ranges...)
}

func (s *stallServer) unstall() {
	s.mu.Lock()
	s.stalled = false
	s.mu.Unlock()
}

// cloudBus plays the broker: it hands requests to the agent and collects
// the statuses the agent publishes for the cloud.
type cloudBus struct {
	t  *testing.T
	nc *nats.Conn
	mu sync.Mutex
	st []cloudota.Status
}

func newCloudBus(t *testing.T, url string) *cloudBus {
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	c := &cloudBus{t: t, nc: nc}
	if _, err := nc.Subscribe(subjects.OTACloud, func(m *nats.Msg) {
		rm := &brokerv1.RoutedMessage{}
		proto.Unmarshal(m.Data, rm)
		var st cloudota.Status
		json.Unmarshal(rm.GetPayload(), &st)
		c.mu.Lock()
		c.st = append(c.st, st)
		c.mu.Unlock()
	}); err != nil {
		t.Fatal(err)
	}
	nc.Flush()
	return c
}

func (c *cloudBus) request(req cloudota.Request) {
	b, _ := json.Marshal(req)
	m, _ := proto.Marshal(&brokerv1.RoutedMessage{Topic: cloudota.RequestTopic("core-1"), Payload: b})
	if err := c.nc.Publish(subjects.BrokerCloudOTA, m); err != nil {
		c.t.Fatal(err)
	}
	c.nc.Flush()
}

func (c *cloudBus) statuses() []cloudota.Status {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]cloudota.Status(nil), c.st...)
}

// waitStatus waits for a status st of job and returns every status so far.
func (c *cloudBus) waitStatus(job, st string) []cloudota.Status {
	c.t.Helper()
	var all []cloudota.Status
	bustest.CheckFor(c.t, 10*time.Second, 10*time.Millisecond, func() error {
		all = c.statuses()
		for _, s := range all {
			if s.JobID == job && s.Status == st {
				return nil
			}
		}
		return fmt.Errorf("no %s for %s: %+v", st, job, all)
	})
	return all
}

// waitPart waits until the download of the bundle sum holds bytes.
func waitPart(t *testing.T, h *harness, body []byte) {
	t.Helper()
	part := filepath.Join(install.New(h.root.Dir()).DownloadsDir(), sha256Hex(body)+".part")
	bustest.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		if fi, err := os.Stat(part); err != nil || fi.Size() < int64(len(body)/3) {
			return fmt.Errorf("download not under way: %v", err)
		}
		return nil
	})
}

func jobRecord(t *testing.T, h *harness) *install.Job {
	t.Helper()
	j, err := install.New(h.root.Dir()).LoadJob()
	if err != nil {
		t.Fatal(err)
	}
	return j
}

// A cloud job cut during its download by a restart of the core is picked
// up by the next start from DIR/ota/job.json: the download resumes with a
// Range request, the statuses start again (InProgress, resumed, then the
// download from where it stopped), and the update goes on to Success.
func TestCloudJobResumesAfterRestart(t *testing.T) {
	h := newHarness(t)
	path, sig := h.bundleOf("1.1.0", runtimeArch())
	body, _ := os.ReadFile(path)
	ts := newStallServer(t, body)
	h.start("1.0.0", nil, Options{HTTPClient: ts.Client()})
	cb := newCloudBus(t, h.bus)
	req := cloudota.Request{JobID: "c-9", URL: ts.URL + "/b.tar.gz", SHA256: sha256Hex(body), Size: int64(len(body)),
		Signature: sig, TargetVersion: "1.1.0"}
	cb.request(req)
	waitPart(t, h, body)
	cb.waitStatus("c-9", cloudota.Downloading)
	if j := jobRecord(t, h); j == nil || j.JobID != "c-9" || j.Source != install.SourceCloud || j.Bundle != req.URL ||
		j.SHA256 != req.SHA256 || j.Size != req.Size || j.TargetVersion != "1.1.0" || !jsonEqual(j.Signature, sig) {
		t.Fatalf("job record during the download: %+v", j)
	}

	// The core stops (the daemon's context ends mid-download).
	h.stop()
	if j := jobRecord(t, h); j == nil || j.JobID != "c-9" {
		t.Fatalf("the stop dropped the job record: %+v", j)
	}
	before := len(cb.statuses())
	ts.unstall()
	h.start("1.0.0", nil, Options{HTTPClient: ts.Client()})
	all := cb.waitStatus("c-9", cloudota.Restarting)
	after := all[before:]
	if after[0].Status != cloudota.InProgress || !strings.Contains(after[0].Reason, "resumed after a restart") {
		t.Fatalf("first status after the restart: %+v", after)
	}
	var firstDL *cloudota.Status
	for i := range after {
		if after[i].Status == cloudota.Downloading {
			firstDL = &after[i]
			break
		}
	}
	if firstDL == nil || firstDL.Progress < 30 {
		t.Fatalf("the resumed download does not start where it stopped: %+v", after)
	}
	rs := ts.rangesSeen()
	if len(rs) != 2 || rs[0] != "" || !strings.HasPrefix(rs[1], "bytes=") || rs[1] == "bytes=0-" {
		t.Fatalf("Range headers %q", rs)
	}
	if h.sup.restartCount() != 1 {
		t.Fatalf("restarts %d", h.sup.restartCount())
	}
	if j := jobRecord(t, h); j != nil {
		t.Fatalf("job record after the install: %+v", j)
	}
	l := install.New(h.root.Dir())
	launch(t, l)
	h.exe = filepath.Join(l.VersionDir("1.1.0"), "ggd")
	h.start("1.1.0", nil, Options{})
	cb.waitStatus("c-9", cloudota.Success)
	if o := h.status().GetLastOutcome(); o.GetJobId() != "c-9" || o.GetStatus() != otav1.JobStatus_JOB_STATUS_SUCCESS {
		t.Fatalf("outcome %v", o)
	}
	var seen []string
	for _, s := range cb.statuses()[before:] {
		if s.JobID == "c-9" && (len(seen) == 0 || seen[len(seen)-1] != s.Status) {
			seen = append(seen, s.Status)
		}
	}
	t.Logf("statuses after the restart: %v (download resumed at %d%%, Range %s)", seen, firstDL.Progress, rs[1])
}

// A resumed cloud job that can no longer proceed (its signing key is no
// longer trusted) ends as a Failure with the reason: nothing in flight.
func TestResumedJobFailsWhenKeyNoLongerTrusted(t *testing.T) {
	h := newHarness(t)
	path, sig := h.bundleOf("1.1.0", runtimeArch())
	body, _ := os.ReadFile(path)
	ts := newStallServer(t, body)
	h.start("1.0.0", nil, Options{HTTPClient: ts.Client()})
	cb := newCloudBus(t, h.bus)
	cb.request(cloudota.Request{JobID: "c-k", URL: ts.URL + "/b.tar.gz", SHA256: sha256Hex(body), Size: int64(len(body)), Signature: sig, TargetVersion: "1.1.0"})
	waitPart(t, h, body)
	h.stop()
	other, _, _ := bundle.GenerateKey()
	cfg := h.config(func(c *config.Config) { c.Evergreen.OTA.TrustedKeys = []string{bundle.MarshalPublicKey(other)} })
	ts.unstall()
	h.start("1.0.0", cfg, Options{HTTPClient: ts.Client()})
	all := cb.waitStatus("c-k", cloudota.Failure)
	last := all[len(all)-1]
	if last.JobID != "c-k" || !strings.Contains(last.Reason, "unknown signing key") {
		t.Fatalf("statuses %+v", all)
	}
	for _, s := range all {
		if s.Status == cloudota.Rejected {
			t.Fatalf("a resumed job is Rejected: %+v", all)
		}
	}
	if j := jobRecord(t, h); j != nil {
		t.Fatalf("job record left: %+v", j)
	}
	if h.status().GetJob() != nil || h.sup.restartCount() != 0 {
		t.Fatalf("status %v", h.status())
	}
}

// A local apply belongs to its ggctl call: cut by a restart, it is not run
// again but shows as a Failure "interrupted by a restart"; the next apply
// resumes the download.
func TestLocalApplyInterruptedByRestart(t *testing.T) {
	h := newHarness(t)
	path, sig := h.bundleOf("1.1.0", runtimeArch())
	body, _ := os.ReadFile(path)
	ts := newStallServer(t, body)
	h.start("1.0.0", nil, Options{HTTPClient: ts.Client()})
	req := &otav1.ApplyRequest{Source: ts.URL + "/b.tar.gz", Signature: sig, JobId: "l-1"}
	done := make(chan error, 1)
	go func() { _, err := h.apply(req); done <- err }()
	waitPart(t, h, body)
	if j := jobRecord(t, h); j == nil || j.JobID != "l-1" || j.Source != install.SourceLocal {
		t.Fatalf("job record %+v", j)
	}
	h.stop()
	if err := <-done; err == nil {
		t.Fatal("the apply cut by the stop succeeded")
	}
	ts.unstall()
	h.start("1.0.0", nil, Options{HTTPClient: ts.Client()})
	o := h.status().GetLastOutcome()
	if o.GetJobId() != "l-1" || o.GetSource() != install.SourceLocal || o.GetStatus() != otav1.JobStatus_JOB_STATUS_FAILURE ||
		!strings.Contains(o.GetReason(), "interrupted by a restart") || !strings.Contains(o.GetReason(), "ggctl ota apply again") {
		t.Fatalf("outcome %v", o)
	}
	if j := jobRecord(t, h); j != nil {
		t.Fatalf("job record left: %+v", j)
	}
	time.Sleep(100 * time.Millisecond)
	if rs := ts.rangesSeen(); len(rs) != 1 || h.sup.restartCount() != 0 {
		t.Fatalf("a local job ran again: ranges %q, restarts %d", rs, h.sup.restartCount())
	}
	// The partial download is kept: the next apply resumes it.
	evs, err := h.apply(req)
	if err != nil {
		t.Fatal(err)
	}
	if rs := ts.rangesSeen(); len(rs) != 2 || !strings.HasPrefix(rs[1], "bytes=") || rs[1] == "bytes=0-" {
		t.Fatalf("Range headers %q", rs)
	}
	if evs[len(evs)-1].GetStatus() != otav1.JobStatus_JOB_STATUS_RESTARTING {
		t.Fatalf("events %v", evs)
	}
}

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func jsonEqual(a, b []byte) bool {
	var x, y bytes.Buffer
	return json.Compact(&x, a) == nil && json.Compact(&y, b) == nil && bytes.Equal(x.Bytes(), y.Bytes())
}
