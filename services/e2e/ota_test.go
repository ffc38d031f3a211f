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
	"runtime"
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
	"github.com/evergreen-edge/evergreen/services/kit/layout"
)

// Over-the-air updates of the core, end to end: real ggd builds at two
// versions, real bundles signed with a key made for the run, the suite
// restarting into the new version and committing it, or rolling back.

// seedData puts something of every kind an update must not touch under
// root: a device, a group with the cloud spooler on disk, a secret, a
// shadow, a stream, and messages queued for a cloud that is down.
func seedData(t *testing.T, root layout.Root) map[string]string {
	t.Helper()
	dev := createDevice(t, root, "dev")
	g := map[string]any{
		"Core":    map[string]any{"Cores": []any{map[string]any{"Id": "core", "ThingArn": thing("test-core"), "CertificateArn": acct + "cert/" + strings.Repeat("ab", 32)}}},
		"Devices": map[string]any{"Devices": []any{map[string]any{"Id": "dev", "ThingArn": thing("dev"), "CertificateArn": acct + "cert/" + dev.certID}}},
		"Functions": map[string]any{"Functions": []any{map[string]any{"Id": "spooler", "FunctionArn": "arn:aws:lambda:::function:GGCloudSpooler:1",
			"FunctionConfiguration": map[string]any{"Environment": map[string]any{"Variables": map[string]any{"GG_CONFIG_STORAGE_TYPE": "FileSystem"}}}}}},
		"Subscriptions": map[string]any{"Subscriptions": []any{map[string]any{"Id": "up", "Source": thing("dev"), "Subject": "spool/#", "Target": "cloud"}}},
	}
	b, _ := json.Marshal(g)
	gf := filepath.Join(t.TempDir(), "group.json")
	os.WriteFile(gf, b, 0o600)
	for _, args := range [][]string{
		{"deploy", gf, "--id", "before-update"},
		{"shadow", "update", "dev", `{"state":{"desired":{"color":"green"}}}`},
		{"stream", "create", "telemetry"},
		{"stream", "append", "telemetry", "m1"},
		{"stream", "append", "telemetry", "m2"},
		{"pub", "spool/a", "s1", "--as", "device:dev", "--qos", "1"},
		{"pub", "spool/b", "s2", "--as", "device:dev", "--qos", "1"},
	} {
		if r := ggctl(t, root, args...); r.code != 0 {
			t.Fatalf("ggctl %v: %d\n%s%s", args, r.code, r.stdout, r.stderr)
		}
	}
	sf := filepath.Join(t.TempDir(), "secret")
	os.WriteFile(sf, []byte("s3cr3t"), 0o600)
	if r := ggctl(t, root, "secret", "put", "plant/db", "--file", sf, "--version-id", "v-1"); r.code != 0 {
		t.Fatalf("secret put: %d %s", r.code, r.stderr)
	}
	bustest.CheckFor(t, waitLimit, 100*time.Millisecond, func() error {
		if q := cloudQueue(t, root); q != 2 {
			return fmt.Errorf("cloud queue holds %d messages", q)
		}
		return nil
	})
	return dataPrint(t, root)
}

func cloudQueue(t *testing.T, root layout.Root) int {
	r := ggctl(t, root, "--json", "cloud")
	var st struct {
		StorageType   string `json:"storageType"`
		QueueMessages string `json:"queueMessages"`
	}
	json.Unmarshal([]byte(r.stdout), &st)
	n, _ := strconv.Atoi(st.QueueMessages)
	if st.StorageType != "FileSystem" {
		return -1
	}
	return n
}

// dataPrint is what a user sees of the seeded data, and the bytes of the
// certificates and the deployment pointer.
func dataPrint(t *testing.T, root layout.Root) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, args := range [][]string{
		{"device", "list"},
		{"deployments", "show"},
		{"secret", "list"},
		{"shadow", "get", "dev"},
		{"stream", "read", "telemetry"},
	} {
		r := ggctl(t, root, append([]string{"--json"}, args...)...)
		if r.code != 0 {
			t.Fatalf("ggctl %v: %d %s", args, r.code, r.stderr)
		}
		out[strings.Join(args, " ")] = stableJSON(r.stdout)
	}
	es, _ := os.ReadDir(root.CertsDir())
	for _, e := range es {
		out["certs/"+e.Name()] = fileSHA(filepath.Join(root.CertsDir(), e.Name()))
	}
	out["deployments/current.json"] = fileSHA(filepath.Join(root.DeploymentsDir(), "current.json"))
	return out
}

// stableJSON drops what changes with time alone (uptimes, timestamps of
// reads) from ggctl's JSON.
func stableJSON(s string) string {
	var v any
	if json.Unmarshal([]byte(s), &v) != nil {
		return s
	}
	var strip func(any) any
	strip = func(x any) any {
		switch x := x.(type) {
		case map[string]any:
			for k := range x {
				if lk := strings.ToLower(k); strings.Contains(lk, "uptime") || strings.Contains(lk, "expiresin") || k == "timestamp" {
					delete(x, k)
				} else {
					x[k] = strip(x[k])
				}
			}
		case []any:
			for i := range x {
				x[i] = strip(x[i])
			}
		}
		return x
	}
	b, _ := json.Marshal(strip(v))
	return string(b)
}

// A good update from a local bundle with managedRespawn: ggctl ota apply
// --wait returns once the new version is committed; every process runs
// it; groups, certificates, secrets, shadows, streams and queued cloud
// messages are as they were; a restart of the service stays on it.
func TestOTAUpdateFromLocalBundle(t *testing.T) {
	needMosquitto(t)
	t.Parallel()
	cloud := newAWSCloud(t) // down until the end: messages queue
	old := otaGgd(t, "1.0.0")
	b := otaBundle(t, "1.1.0", otaBundleOpts{ggctl: true})
	root := suitetest.ShortRoot(t)
	cloud.writeConfig(root)
	otaConfig(t, root, true, 30000)
	s := suitetest.LaunchWith(t, root, suitetest.LaunchOptions{Binary: old})
	if err := waitVersion(root, "1.0.0", 30*time.Second); err != nil {
		t.Fatal(err)
	}
	before := seedData(t, root)
	supPid := s.Cmd.Process.Pid

	start := time.Now()
	r := ggctl(t, root, "ota", "apply", b.path, "--wait", "--id", "up-1")
	took := time.Since(start)
	if r.code != 0 || !strings.Contains(r.stdout, "SUCCESS") {
		t.Fatalf("ota apply: %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	t.Logf("ggctl ota apply --wait to committed 1.1.0: %s (bundle %.1f MiB)\n%s", took.Round(time.Millisecond), float64(b.size)/(1<<20), r.stderr)
	if err := waitVersion(root, "1.1.0", 10*time.Second); err != nil {
		t.Fatal(err)
	}
	checkRunsDir(t, root, "1.1.0")
	if s.Cmd.Process.Pid != supPid {
		t.Fatal("managedRespawn: the supervisor's pid changed")
	}
	st := otaStatus(t, root)
	if st.RunningVersion != "1.1.0" || st.CurrentVersion != "1.1.0" || st.PreviousVersion != "1.0.0" || st.CommittedVersion != "1.1.0" ||
		st.Pending != nil || st.LastOutcome.Status != "JOB_STATUS_SUCCESS" || st.LastOutcome.JobID != "up-1" || len(st.Broken) != 0 {
		t.Fatalf("status %+v", st)
	}
	// The bundle's ggctl is installed beside ggd.
	if out, err := exec.Command(filepath.Join(root.Dir(), "ota", "current", "ggctl"), "version").CombinedOutput(); err != nil || !strings.Contains(string(out), "ggctl") {
		t.Fatalf("current/ggctl version: %v %s", err, out)
	}
	// `ggd version` through the installed binary reports what runs.
	if out, err := exec.Command(old, "version", "--root", root.Dir()).CombinedOutput(); err != nil || !strings.HasPrefix(string(out), "ggd 1.1.0 ") {
		t.Fatalf("ggd version: %v %s", err, out)
	}
	after := dataPrint(t, root)
	for k, v := range before {
		if after[k] != v {
			t.Errorf("%s changed across the update:\nbefore %s\nafter  %s", k, v, after[k])
		}
	}
	if q := cloudQueue(t, root); q != 2 {
		t.Fatalf("the cloud queue holds %d messages after the update, want 2", q)
	}
	// The queued messages reach the cloud once it is up.
	cloud.start()
	bustest.CheckFor(t, 30*time.Second, 100*time.Millisecond, func() error {
		if q := cloudQueue(t, root); q != 0 {
			return fmt.Errorf("cloud queue %d", q)
		}
		return nil
	})

	// A restart of the service (the same entry binary) stays on 1.1.0,
	// and counts no launch: nothing is pending.
	s.Stop(20 * time.Second)
	suitetest.LaunchWith(t, root, suitetest.LaunchOptions{Binary: old})
	if err := waitVersion(root, "1.1.0", 30*time.Second); err != nil {
		t.Fatal(err)
	}
	if st := otaStatus(t, root); st.Pending != nil || st.CommittedVersion != "1.1.0" {
		t.Fatalf("after a restart: %+v", st)
	}
	checkRunsDir(t, root, "1.1.0")
}

// An update from an https URL served by the test (trusted through
// SSL_CERT_FILE), with managedRespawn false: the supervisor exits with
// code 100 and the service manager (played by the test) starts it again.
// The first download is cut: it resumes with a Range request.
func TestOTAUpdateFromHTTPSWithExitCode100(t *testing.T) {
	t.Parallel()
	old := otaGgd(t, "1.0.0")
	b := otaBundle(t, "1.1.0", otaBundleOpts{})
	body, _ := os.ReadFile(b.path)
	var mu sync.Mutex
	var ranges []string
	ts := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/b.tar.gz.sig":
			w.Write(b.sig)
			return
		case "/b.tar.gz":
		default:
			http.NotFound(w, r)
			return
		}
		mu.Lock()
		ranges = append(ranges, r.Header.Get("Range"))
		first := len(ranges) == 1
		mu.Unlock()
		if first {
			w.Header().Set("Content-Length", strconv.Itoa(len(body)))
			w.WriteHeader(http.StatusOK)
			w.Write(body[:len(body)/2])
			w.(http.Flusher).Flush()
			panic(http.ErrAbortHandler)
		}
		http.ServeContent(w, r, "b.tar.gz", time.Time{}, bytes.NewReader(body))
	}))
	defer ts.Close()
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ts.Certificate().Raw}), 0o600)

	root := suitetest.ShortRoot(t)
	otaConfig(t, root, false, 30000)
	svc := runService(t, root, old, "SSL_CERT_FILE="+caFile)
	if err := waitVersion(root, "1.0.0", 30*time.Second); err != nil {
		t.Fatal(err)
	}
	url := ts.URL + "/b.tar.gz"
	r := ggctl(t, root, "ota", "apply", url, "--wait")
	if r.code != 1 || !strings.Contains(r.stderr, "resumes") {
		t.Fatalf("cut download: %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if _, err := os.Stat(filepath.Join(root.Dir(), "ota", "current")); err == nil {
		t.Fatal("a failed download switched current")
	}
	start := time.Now()
	r = ggctl(t, root, "ota", "apply", url, "--wait", "--id", "https-1")
	if r.code != 0 {
		t.Fatalf("ota apply %s: %d\n%s%s", url, r.code, r.stdout, r.stderr)
	}
	t.Logf("https update with exit code 100 to committed: %s\n%s", time.Since(start).Round(time.Millisecond), r.stderr)
	mu.Lock()
	if len(ranges) != 2 || ranges[0] != "" || !strings.HasPrefix(ranges[1], "bytes=") {
		t.Fatalf("Range headers %q: the second download did not resume", ranges)
	}
	mu.Unlock()
	if err := waitVersion(root, "1.1.0", 10*time.Second); err != nil {
		t.Fatal(err)
	}
	checkRunsDir(t, root, "1.1.0")
	if codes := svc.exitCodes(); !slices.Equal(codes, []int{100}) {
		t.Fatalf("the supervisor's exits: %v, want [100]", codes)
	}
	if st := otaStatus(t, root); st.CommittedVersion != "1.1.0" || st.LastOutcome.JobID != "https-1" {
		t.Fatalf("status %+v", st)
	}
}

// Refusals: each with its reason and exit code, each leaving DIR/ota and
// the running suite exactly as they were.
func TestOTARefusals(t *testing.T) {
	t.Parallel()
	old := otaGgd(t, "1.0.0")
	good := otaBundle(t, "1.1.0", otaBundleOpts{})
	arm := otaBundle(t, "1.1.0", otaBundleOpts{arch: otherArch()})
	down := otaBundle(t, "1.1.0", otaBundleOpts{version: "0.9.0"})
	same := otaBundle(t, "1.1.0", otaBundleOpts{version: "1.0.0"})
	dir := t.TempDir()
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		os.WriteFile(p, b, 0o644)
		return p
	}
	body, _ := os.ReadFile(good.path)
	flipped := bytes.Clone(body)
	flipped[len(flipped)/2] ^= 0xff
	_, otherKey, _ := bundle.GenerateKey()
	badSig := bytes.Replace(good.sig, []byte(`"signature": "`), []byte(`"signature": "AAAA`), 1)

	// https serves a bundle shorter than signed (a truncated upload).
	ts := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/short.tar.gz":
			w.Write(body[:len(body)/3])
		case "/short.tar.gz.sig":
			w.Write(good.sig)
		default:
			http.NotFound(w, r)
		}
	}))
	defer ts.Close()
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ts.Certificate().Raw}), 0o600)

	root := suitetest.ShortRoot(t)
	otaConfig(t, root, true, 30000)
	suitetest.LaunchWith(t, root, suitetest.LaunchOptions{Binary: old, Env: []string{"SSL_CERT_FILE=" + caFile}})
	if err := waitVersion(root, "1.0.0", 30*time.Second); err != nil {
		t.Fatal(err)
	}
	pids := func() map[string]int32 {
		resp, err := listDaemons(root)
		if err != nil {
			t.Fatal(err)
		}
		m := map[string]int32{}
		for _, d := range resp.GetDaemons() {
			m[d.GetName()] = d.GetPid()
		}
		return m
	}
	before := pids()
	for _, tc := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"bad signature", []string{good.path, "--sig", write("bad.sig", badSig)}, 1, "bad signature"},
		{"unknown key", []string{good.path, "--sig", write("other.sig", otaSign(t, good.path, otherKey))}, 1, "unknown signing key"},
		{"hash mismatch", []string{write("flipped.tar.gz", flipped), "--sig", write("flipped.sig", good.sig)}, 2, "hash mismatch"},
		{"truncated file", []string{write("cut.tar.gz", body[:len(body)/2]), "--sig", write("cut.sig", good.sig)}, 2, "truncated bundle"},
		{"truncated download", []string{ts.URL + "/short.tar.gz"}, 2, "truncated bundle"},
		{"wrong architecture", []string{arm.path}, 2, "wrong architecture"},
		{"downgrade", []string{down.path}, 1, "downgrade"},
		{"same version", []string{same.path}, 1, "the one running"},
		{"no signature", []string{write("nosig.tar.gz", body)}, 2, "signature"},
		{"plain http", []string{"http://127.0.0.1:1/b.tar.gz", "--sig", good.path + ".sig"}, 2, "plain http"},
	} {
		r := ggctl(t, root, append([]string{"ota", "apply"}, tc.args...)...)
		if r.code != tc.code || !strings.Contains(r.stderr, tc.want) || strings.Count(strings.TrimSpace(r.stderr), "\n") > 3 {
			t.Errorf("%s: exit %d (want %d)\n%s%s", tc.name, r.code, tc.code, r.stdout, r.stderr)
		}
		if _, err := os.Stat(filepath.Join(root.Dir(), "ota")); err == nil {
			t.Fatalf("%s: DIR/ota exists after a refusal:\n%s", tc.name, otaTree(t, root))
		}
		lines := strings.Split(strings.TrimSpace(r.stderr), "\n")
		t.Logf("%s: %s", tc.name, lines[len(lines)-1])
	}
	if st := otaStatus(t, root); st.LastOutcome == nil || st.LastOutcome.Status != "JOB_STATUS_REJECTED" || st.RunningVersion != "1.0.0" || st.CurrentVersion != "" {
		t.Fatalf("status after the refusals: %+v", st)
	}
	if after := pids(); !mapsEqual(before, after) {
		t.Fatalf("a refusal restarted daemons: %v -> %v", before, after)
	}
}

func mapsEqual(a, b map[string]int32) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func otherArch() string {
	if runtime.GOARCH == "arm64" {
		return "amd64"
	}
	return "arm64"
}

// A version whose stream manager never gets healthy is rolled back to the
// previous one within runtime.postStartHealthCheckTimeout, marked broken,
// and refused afterwards unless forced.
func TestOTAHealthCheckFailureRollsBack(t *testing.T) {
	t.Parallel()
	old := otaGgd(t, "1.0.0")
	bad := otaBundle(t, "1.2.0-unhealthy", otaBundleOpts{})
	root := suitetest.ShortRoot(t)
	const healthMs = 4000
	otaConfig(t, root, true, healthMs)
	suitetest.LaunchWith(t, root, suitetest.LaunchOptions{Binary: old})
	if err := waitVersion(root, "1.0.0", 30*time.Second); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	r := ggctl(t, root, "ota", "apply", bad.path, "--wait", "--id", "bad-1")
	if r.code != 1 || !strings.Contains(r.stderr, "health check failed") || !strings.Contains(r.stderr, "streammgr") {
		t.Fatalf("ota apply of an unhealthy version: %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if err := waitVersion(root, "1.0.0", 30*time.Second); err != nil {
		t.Fatal(err)
	}
	healthy := time.Now()
	st := otaStatus(t, root)
	o := st.LastOutcome
	if st.RunningVersion != "1.0.0" || st.CurrentVersion != "1.0.0" || st.Pending != nil || o.Status != "JOB_STATUS_FAILURE" ||
		len(st.Broken) != 1 || st.Broken[0].Version != "1.2.0" || !strings.Contains(o.Reason, "streammgr") {
		t.Fatalf("status %+v", st)
	}
	checkRunsDir(t, root, "1.0.0")
	t.Logf("apply to rolled back and healthy on 1.0.0: %s; failed health check (at %dms) to the previous version healthy: %s; reason %q",
		healthy.Sub(start).Round(time.Millisecond), healthMs, healthy.Sub(o.FinishedAt).Round(time.Millisecond), o.Reason)
	// Never retried automatically; forced it installs (and fails) again.
	r = ggctl(t, root, "ota", "apply", bad.path)
	if r.code != 1 || !strings.Contains(r.stderr, "marked broken") {
		t.Fatalf("a broken version again: %d %s", r.code, r.stderr)
	}
}

// A version that crashes at start: systemd (played by the test) starts ggd
// again after every exit; the launcher counts the launches and, after the
// third, restores the previous version and marks the new one broken.
func TestOTACrashAtStartRollsBack(t *testing.T) {
	t.Parallel()
	old := otaGgd(t, "1.0.0")
	bad := otaBundle(t, "1.3.0-crash", otaBundleOpts{})
	root := suitetest.ShortRoot(t)
	otaConfig(t, root, true, 30000)
	svc := runService(t, root, old)
	if err := waitVersion(root, "1.0.0", 30*time.Second); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	r := ggctl(t, root, "ota", "apply", bad.path, "--wait", "--id", "crash-1")
	if r.code != 1 || !strings.Contains(r.stderr, "crashed at start 3 times") {
		t.Fatalf("ota apply of a crashing version: %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if err := waitVersion(root, "1.0.0", 30*time.Second); err != nil {
		t.Fatal(err)
	}
	t.Logf("apply of a version crashing at start to the previous version healthy: %s", time.Since(start).Round(time.Millisecond))
	if codes := svc.exitCodes(); len(codes) != 3 || codes[0] != 3 || codes[2] != 3 {
		t.Fatalf("ggd exits %v, want three crashes (exit 3)", codes)
	}
	st := otaStatus(t, root)
	if st.CurrentVersion != "1.0.0" || len(st.Broken) != 1 || st.Broken[0].Version != "1.3.0" || st.LastOutcome.Status != "JOB_STATUS_FAILURE" {
		t.Fatalf("status %+v", st)
	}
	checkRunsDir(t, root, "1.0.0")
}

// The crash table: for every failpoint of an update, the whole suite is
// SIGKILLed there and started again by the same entry binary. The core
// must then run one whole version, the old or the new one as the table
// says, healthy, with the outcome recorded, and say which.
func TestOTACrashTable(t *testing.T) {
	if testing.Short() {
		t.Skip("builds ggd three times with -tags failpoints and kills the suite 10 times")
	}
	old := otaGgd(t, "1.0.0-fp")
	good := otaBundle(t, "1.1.0-fp", otaBundleOpts{})
	bad := otaBundle(t, "1.2.0-unhealthy", otaBundleOpts{})
	type crashCase struct {
		point string
		// failing: the update fails its health check (the rollback points).
		failing bool
		want    string // the version running afterwards
		outcome string
	}
	cases := []crashCase{
		// A local apply cut before its install is not run again: Failure
		// "interrupted by a restart".
		{"ota-verified", false, "1.0.0", "JOB_STATUS_FAILURE"},
		{"ota-extracted", false, "1.0.0", "JOB_STATUS_FAILURE"},
		{"ota-pending", false, "1.0.0", "JOB_STATUS_FAILURE"},
		{"ota-switched", false, "1.1.0", "JOB_STATUS_SUCCESS"},
		{"ota-before-restart", false, "1.1.0", "JOB_STATUS_SUCCESS"},
		{"ota-launch-counted", false, "1.1.0", "JOB_STATUS_SUCCESS"},
		{"ota-before-commit", false, "1.1.0", "JOB_STATUS_SUCCESS"},
		{"ota-committed", false, "1.1.0", "JOB_STATUS_SUCCESS"},
		{"ota-rollback-decided", true, "1.0.0", "JOB_STATUS_FAILURE"},
		{"ota-rollback-switched", true, "1.0.0", "JOB_STATUS_FAILURE"},
	}
	start := time.Now()
	t.Cleanup(func() {
		t.Logf("OTA crash table: %d cases in %s", len(cases), time.Since(start).Round(time.Millisecond))
	})
	for _, tc := range cases {
		t.Run(tc.point, func(t *testing.T) {
			t.Parallel()
			root := suitetest.ShortRoot(t)
			otaConfig(t, root, true, 4000)
			s := suitetest.LaunchWith(t, root, suitetest.LaunchOptions{Binary: old, Env: []string{"EVERGREEN_FAILPOINT=" + tc.point}})
			if err := waitVersion(root, "1.0.0", 60*time.Second); err != nil {
				t.Fatal(err)
			}
			b := good
			if tc.failing {
				b = bad
			}
			apply := exec.Command(suitetest.Binary(t, "ggctl"), "--root", root.Dir(), "ota", "apply", b.path, "--id", "kill-1")
			if err := apply.Start(); err != nil {
				t.Fatal(err)
			}
			marker := filepath.Join(root.RunDir(), "failpoint-"+tc.point)
			if err := waitFile(marker, 90*time.Second); err != nil {
				apply.Process.Kill()
				apply.Wait()
				t.Fatal(err)
			}
			s.Kill()
			apply.Process.Kill()
			apply.Wait()
			os.Remove(marker)
			disk := otaTree(t, root)

			s = suitetest.LaunchWith(t, root, suitetest.LaunchOptions{Binary: old})
			if err := waitVersion(root, tc.want, 60*time.Second); err != nil {
				t.Fatalf("%v\nDIR/ota after the kill:\n%s", err, disk)
			}
			var st otaStatusJSON
			if tc.outcome != "" {
				st = waitOTAOutcome(t, root, "kill-1", 60*time.Second)
				if st.LastOutcome.Status != tc.outcome {
					t.Fatalf("outcome %+v, want %s", st.LastOutcome, tc.outcome)
				}
			} else {
				st = otaStatus(t, root)
			}
			if err := waitVersion(root, tc.want, 30*time.Second); err != nil {
				t.Fatal(err)
			}
			if st.RunningVersion != tc.want || st.Pending != nil {
				t.Fatalf("status %+v, want %s running and nothing pending", st, tc.want)
			}
			if tc.want == "1.1.0" {
				checkRunsDir(t, root, "1.1.0")
				if st.CommittedVersion != "1.1.0" {
					t.Fatalf("committed %q", st.CommittedVersion)
				}
			} else if st.CurrentVersion != "" {
				checkRunsDir(t, root, "1.0.0")
			}
			if tc.failing && (len(st.Broken) != 1 || st.Broken[0].Version != "1.2.0") {
				t.Fatalf("broken %+v", st.Broken)
			}
			out, err := exec.Command(old, "version", "--root", root.Dir()).CombinedOutput()
			if err != nil || !strings.HasPrefix(string(out), "ggd "+tc.want+" ") {
				t.Fatalf("ggd version: %v %s", err, out)
			}
			t.Logf("%s: runs %s, outcome %s", tc.point, tc.want, tc.outcome)
			s.Stop(20 * time.Second)
		})
	}
}

// An update job from the cloud (a real mosquitto plays it): the request on
// evergreen/things/<thing>/ota/request names an https URL served by the
// test; the statuses arrive on the status topic through the restart
// (Downloading ... Restarting, then InProgress from the new version, then
// Success). A job signed by an unknown key, and one whose bundle is not
// the version it names, are Rejected.
func TestOTACloudJob(t *testing.T) {
	needMosquitto(t)
	t.Parallel()
	cloud := newAWSCloud(t)
	cloud.start()
	old := otaGgd(t, "1.0.0")
	b := otaBundle(t, "1.1.0", otaBundleOpts{})
	body, _ := os.ReadFile(b.path)
	ts := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.ServeContent(w, r, "b.tar.gz", time.Time{}, bytes.NewReader(body))
	}))
	defer ts.Close()
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ts.Certificate().Raw}), 0o600)
	root := suitetest.ShortRoot(t)
	cloud.writeConfig(root)
	otaConfig(t, root, true, 30000)
	suitetest.LaunchWith(t, root, suitetest.LaunchOptions{Binary: old, Env: []string{"SSL_CERT_FILE=" + caFile}})
	if err := waitVersion(root, "1.0.0", 30*time.Second); err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cloud.ca.Cert)
	var mu sync.Mutex
	var statuses []cloudota.Status
	ops := pahov3.NewClient(pahov3.NewClientOptions().AddBroker("ssl://127.0.0.1:" + strconv.Itoa(cloud.port)).SetClientID("fleet-ota").
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
	publish := func(req map[string]any) {
		body, _ := json.Marshal(req)
		if tok := ops.Publish(cloudota.RequestTopic("test-core"), 1, false, body); !tok.WaitTimeout(waitLimit) || tok.Error() != nil {
			t.Fatal(tok.Error())
		}
	}
	final := func(id string) []cloudota.Status {
		var got []cloudota.Status
		bustest.CheckFor(t, 60*time.Second, 50*time.Millisecond, func() error {
			mu.Lock()
			defer mu.Unlock()
			got = got[:0]
			for _, st := range statuses {
				if st.JobID == id {
					got = append(got, st)
				}
			}
			if n := len(got); n == 0 || !slices.Contains([]string{cloudota.Success, cloudota.Failure, cloudota.Rejected}, got[n-1].Status) {
				return fmt.Errorf("statuses of %s: %+v", id, got)
			}
			return nil
		})
		return got
	}
	var sig bundle.Signature
	json.Unmarshal(b.sig, &sig)
	job := func(id, target string, signature []byte) map[string]any {
		return map[string]any{"jobId": id, "url": ts.URL + "/b.tar.gz", "sha256": sig.SHA256, "size": sig.Size,
			"signature": json.RawMessage(signature), "targetVersion": target}
	}

	_, otherKey, _ := bundle.GenerateKey()
	publish(job("c-bad", "1.1.0", otaSign(t, b.path, otherKey)))
	if st := final("c-bad"); st[len(st)-1].Status != cloudota.Rejected || !strings.Contains(st[len(st)-1].Reason, "unknown signing key") {
		t.Fatalf("a job signed by an unknown key: %+v", st)
	}
	publish(job("c-target", "9.9.9", b.sig))
	if st := final("c-target"); st[len(st)-1].Status != cloudota.Rejected || !strings.Contains(st[len(st)-1].Reason, "9.9.9") {
		t.Fatalf("a job for another version: %+v", st)
	}

	start := time.Now()
	publish(job("c-1", "1.1.0", b.sig))
	st := final("c-1")
	var seen []string
	for _, s := range st {
		if len(seen) == 0 || seen[len(seen)-1] != s.Status {
			seen = append(seen, s.Status)
		}
	}
	want := []string{"InProgress", "Verifying", "Downloading", "Verifying", "Installing", "Restarting", "InProgress", "Success"}
	if !slices.Equal(seen, want) || st[len(st)-1].Version != "1.1.0" {
		t.Fatalf("statuses of c-1: %v, want %v\n%+v", seen, want, st)
	}
	t.Logf("cloud job to Success on the status topic: %s; statuses %v", time.Since(start).Round(time.Millisecond), seen)
	if err := waitVersion(root, "1.1.0", 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if s := otaStatus(t, root); s.CommittedVersion != "1.1.0" || s.LastOutcome.JobID != "c-1" || s.LastOutcome.Source != "cloud" {
		t.Fatalf("status %+v", s)
	}
	// A redelivery of the job gets its outcome again, and changes nothing.
	publish(job("c-1", "1.1.0", b.sig))
	bustest.CheckFor(t, waitLimit, 50*time.Millisecond, func() error {
		mu.Lock()
		defer mu.Unlock()
		n := 0
		for _, s := range statuses {
			if s.JobID == "c-1" && s.Status == cloudota.Success {
				n++
			}
		}
		if n < 2 {
			return fmt.Errorf("%d Success statuses for c-1", n)
		}
		return nil
	})
}
