package e2e

import (
	"archive/zip"
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	pahov3 "github.com/eclipse/paho.mqtt.golang"
	"github.com/evergreen-edge/evergreen/services/internal/suitetest"
	"github.com/evergreen-edge/evergreen/services/kit/bustest"
	"github.com/evergreen-edge/evergreen/services/kit/clouddeploy"
	"github.com/evergreen-edge/evergreen/services/secrets/envelope"
)

// A cloud deployment end to end: a real mosquitto plays the cloud, a
// local HTTPS server serves the function's code. The request published on
// the core's request topic deploys the group; the statuses arrive on the
// status topic (InProgress, Building while the code downloads, Success);
// the function downloaded by URL runs; a bad artifact reports Failure and
// leaves the group in force.
func TestCloudDeploymentEndToEnd(t *testing.T) {
	needPython(t)
	needMosquitto(t)
	cloud := newAWSCloud(t)
	cloud.start()

	var zb bytes.Buffer
	zw := zip.NewWriter(&zb)
	f, _ := zw.Create("main.py")
	f.Write([]byte("import json\nimport greengrasssdk\niot = greengrasssdk.client('iot-data')\n\n\ndef handler(event, context):\n    iot.publish(topic='fromcloud/out', payload=json.dumps({'got': event}))\n"))
	zw.Close()
	code := zb.Bytes()
	sum := sha256.Sum256(code)
	var mu sync.Mutex
	fetched := 0
	ts := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		fetched++
		mu.Unlock()
		http.ServeContent(w, r, "code.zip", time.Time{}, bytes.NewReader(code))
	}))
	defer ts.Close()
	// The suite trusts the test server through SSL_CERT_FILE, as a core
	// behind a TLS-inspecting proxy would be configured.
	caFile := filepath.Join(t.TempDir(), "artifact-ca.pem")
	os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ts.Certificate().Raw}), 0o600)

	root := suitetest.ShortRoot(t)
	cloud.writeConfig(root)
	s := suitetest.LaunchWith(t, root, suitetest.LaunchOptions{Env: []string{"SSL_CERT_FILE=" + caFile}})
	if err := s.WaitHealthy(20 * time.Second); err != nil {
		t.Fatal(err)
	}
	dev := createDevice(t, root, "dev")

	// The cloud side: a client publishing requests and reading statuses.
	pool := x509.NewCertPool()
	pool.AddCert(cloud.ca.Cert)
	var smu sync.Mutex
	var statuses []clouddeploy.Status
	ops := pahov3.NewClient(pahov3.NewClientOptions().AddBroker("ssl://127.0.0.1:" + strconv.Itoa(cloud.port)).SetClientID("fleet-ops").
		SetTLSConfig(&tls.Config{RootCAs: pool}))
	if tok := ops.Connect(); !tok.WaitTimeout(waitLimit) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	defer ops.Disconnect(0)
	if tok := ops.Subscribe(clouddeploy.StatusTopic("test-core"), 1, func(_ pahov3.Client, m pahov3.Message) {
		var st clouddeploy.Status
		json.Unmarshal(m.Payload(), &st)
		smu.Lock()
		statuses = append(statuses, st)
		smu.Unlock()
	}); !tok.WaitTimeout(waitLimit) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	final := func(id string) []clouddeploy.Status {
		var got []clouddeploy.Status
		bustest.CheckFor(t, waitLimit, 50*time.Millisecond, func() error {
			smu.Lock()
			defer smu.Unlock()
			got = got[:0]
			for _, st := range statuses {
				if st.DeploymentID == id {
					got = append(got, st)
				}
			}
			if n := len(got); n == 0 || got[n-1].Status != clouddeploy.Success && got[n-1].Status != clouddeploy.Failure {
				return fmt.Errorf("statuses of %s: %+v", id, got)
			}
			return nil
		})
		return got
	}
	fnARN := "arn:aws:lambda:us-east-1:123456789012:function:fromcloud:1"
	group := func(sha string) string {
		g := map[string]any{
			"Core":    map[string]any{"Cores": []any{map[string]any{"Id": "core", "ThingArn": thing("test-core"), "CertificateArn": acct + "cert/" + strings.Repeat("ab", 32)}}},
			"Devices": map[string]any{"Devices": []any{map[string]any{"Id": "dev", "ThingArn": thing("dev"), "CertificateArn": acct + "cert/" + dev.certID}}},
			"Functions": map[string]any{
				"DefaultConfig": map[string]any{"Execution": map[string]any{"IsolationMode": "NoContainer"}},
				"Functions": []any{map[string]any{"Id": "fromcloud", "FunctionArn": fnARN,
					"FunctionConfiguration": map[string]any{"Pinned": false, "Timeout": 10, "EncodingType": "json"},
					"Evergreen":             map[string]any{"Runtime": "python3.8", "Handler": "main.handler", "CodeUri": ts.URL + "/code.zip", "CodeSha256": sha}}}},
			"Subscriptions": map[string]any{"Subscriptions": []any{
				map[string]any{"Id": "1", "Source": thing("dev"), "Subject": "fromcloud/in", "Target": fnARN},
				map[string]any{"Id": "2", "Source": fnARN, "Subject": "fromcloud/out", "Target": thing("dev")},
			}},
		}
		b, _ := json.Marshal(map[string]any{"deploymentId": "cloud-" + sha[:6], "group": g})
		return string(b)
	}
	publish := func(body string) {
		if tok := ops.Publish(clouddeploy.RequestTopic("test-core"), 1, false, body); !tok.WaitTimeout(waitLimit) || tok.Error() != nil {
			t.Fatal(tok.Error())
		}
	}
	// The broker subscribes upstream once connected; requests sent before
	// would be lost like any message to an absent subscriber.
	bustest.CheckFor(t, waitLimit, 100*time.Millisecond, func() error {
		r := ggctl(t, root, "cloud", "--json")
		if !strings.Contains(r.stdout, clouddeploy.RequestTopic("test-core")) {
			return fmt.Errorf("cloud status: %s%s", r.stdout, r.stderr)
		}
		return nil
	})

	good := hex.EncodeToString(sum[:])
	publish(group(good))
	st := final("cloud-" + good[:6])
	var seen []string
	for _, x := range st {
		seen = append(seen, x.Status+"/"+x.Stage)
	}
	if st[0].Status != clouddeploy.InProgress || st[len(st)-1].Status != clouddeploy.Success || !strings.Contains(strings.Join(seen, " "), "Building/artifacts") {
		t.Fatalf("statuses: %v %+v", seen, st)
	}
	c, in := pahoDevice(t, s.Endpoints().MQTT, dev, "#")
	pahoPublish(t, c, "fromcloud/in", `{"n":1}`)
	if out := in.wait(t, "fromcloud/out", 1); !strings.Contains(out[0], `"n": 1`) {
		t.Fatalf("the function from the cloud: %s", out[0])
	}

	// A wrong sha256: Failure naming the artifact; the group stays.
	bad := strings.Repeat("0", 64)
	publish(group(bad))
	st = final("cloud-" + bad[:6])
	if last := st[len(st)-1]; last.Status != clouddeploy.Failure || !strings.Contains(strings.Join(last.Reasons, " "), "sha256") {
		t.Fatalf("bad artifact: %+v", st)
	}
	pahoPublish(t, c, "fromcloud/in", `{"n":2}`)
	in.wait(t, "fromcloud/out", 2)

	// A sealed secret in a cloud deployment: stored before the group that
	// names it, read by a function through the v1 SDK, never in clear.
	r := ggctl(t, root, "secret", "list", "--json")
	var keys struct {
		SealingPublicKeyPem string `json:"sealingPublicKeyPem"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &keys); err != nil || keys.SealingPublicKeyPem == "" {
		t.Fatalf("secret list --json: %v %s%s", err, r.stdout, r.stderr)
	}
	blk, _ := pem.Decode([]byte(keys.SealingPublicKeyPem))
	pub, err := x509.ParsePKIXPublicKey(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	const value = "cloud-sealed-6b1e-never-in-clear"
	sealed, err := envelope.Seal(pub, []byte(value))
	if err != nil {
		t.Fatal(err)
	}
	fnDir, _ := filepath.Abs("testdata/fns")
	reader := "arn:aws:lambda:us-east-1:123456789012:function:reader:1"
	sg := map[string]any{
		"Core":    map[string]any{"Cores": []any{map[string]any{"Id": "core", "ThingArn": thing("test-core"), "CertificateArn": acct + "cert/" + strings.Repeat("ab", 32)}}},
		"Devices": map[string]any{"Devices": []any{map[string]any{"Id": "dev", "ThingArn": thing("dev"), "CertificateArn": acct + "cert/" + dev.certID}}},
		"Resources": map[string]any{"Resources": []any{map[string]any{"Id": "db", "Name": "db", "ResourceDataContainer": map[string]any{
			"SecretsManagerSecretResourceData": map[string]any{"ARN": "arn:aws:secretsmanager:us-east-1:123456789012:secret:cloud/db-AbCdEf"}}}}},
		"Functions": map[string]any{
			"DefaultConfig": map[string]any{"Execution": map[string]any{"IsolationMode": "NoContainer"}},
			"Functions": []any{map[string]any{"Id": "reader", "FunctionArn": reader,
				"FunctionConfiguration": map[string]any{"Pinned": false, "Timeout": 10, "EncodingType": "json",
					"Environment": map[string]any{"ResourceAccessPolicies": []any{map[string]any{"ResourceId": "db", "Permission": "ro"}}}},
				"Evergreen": map[string]any{"Runtime": "python3.8", "Handler": "main.handler", "CodeUri": filepath.Join(fnDir, "secretreader")}}}},
		"Subscriptions": map[string]any{"Subscriptions": []any{
			map[string]any{"Id": "1", "Source": thing("dev"), "Subject": "read/reader", "Target": reader},
			map[string]any{"Id": "2", "Source": reader, "Subject": "secret/out", "Target": thing("dev")},
		}},
	}
	sb, _ := json.Marshal(map[string]any{"deploymentId": "cloud-secret-1", "group": sg,
		"secrets": []any{map[string]any{"name": "cloud/db", "sealedValue": sealed, "versionId": "v1"}}})
	publish(string(sb))
	if st := final("cloud-secret-1"); st[len(st)-1].Status != clouddeploy.Success {
		t.Fatalf("cloud deployment with a secret: %+v", st)
	}
	pahoPublish(t, c, "read/reader", `{"id":"cloud/db"}`)
	if out := in.wait(t, "secret/out", 1); jsonAt(t, out[0], "value") != value {
		t.Fatalf("the function read %s", out[0])
	}
	filepath.WalkDir(root.Dir(), func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if b, err := os.ReadFile(p); err == nil && bytes.Contains(b, []byte(value)) {
				t.Errorf("%s holds the cloud secret in clear", p)
			}
		}
		return nil
	})

	// The documented script, against the same broker.
	repo, err := suitetest.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	var req struct{ Group json.RawMessage }
	json.Unmarshal([]byte(group(good)), &req)
	gf := filepath.Join(t.TempDir(), "group.json")
	os.WriteFile(gf, req.Group, 0o600)
	cmd := exec.Command("bash", filepath.Join(repo, "examples", "cloud", "deploy.sh"), "-h", "127.0.0.1", "-p", strconv.Itoa(cloud.port),
		"--cafile", filepath.Join(cloud.dir, "ca.pem"), "-t", "test-core", "-i", "by-script-1", gf)
	cmd.Env = append(os.Environ(), "DEPLOY_TIMEOUT=60")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), `"status":"Success"`) {
		t.Fatalf("examples/cloud/deploy.sh: %v\n%s", err, out)
	}
	cmd = exec.Command("bash", filepath.Join(repo, "examples", "cloud", "deploy.sh"), "-h", "127.0.0.1", "-p", strconv.Itoa(cloud.port),
		"--cafile", filepath.Join(cloud.dir, "ca.pem"), "-t", "test-core", "-i", "by-script-2", "--type", "Redeployment")
	cmd.Env = append(os.Environ(), "DEPLOY_TIMEOUT=60")
	if out, err := cmd.CombinedOutput(); err != nil || !strings.Contains(string(out), `"status":"Success"`) {
		t.Fatalf("examples/cloud/deploy.sh --type Redeployment: %v\n%s", err, out)
	}
}

// cutServer serves body over https. The first request gets the first half
// (in pieces, slowly), then nothing until the client goes away: a
// download the test cuts with a power cut. Later requests are served
// whole or from their Range. It records every Range header.
type cutServer struct {
	*httptest.Server
	mu     sync.Mutex
	ranges []string
}

func newCutServer(t *testing.T, body []byte) *cutServer {
	s := &cutServer{}
	release := make(chan struct{})
	s.Server = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.ranges = append(s.ranges, r.Header.Get("Range"))
		first := len(s.ranges) == 1
		s.mu.Unlock()
		if !first {
			http.ServeContent(w, r, "code.zip", time.Time{}, bytes.NewReader(body))
			return
		}
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		half, step := len(body)/2, len(body)/16
		for at := 0; at < half; at += step {
			w.Write(body[at:min(at+step, half)])
			w.(http.Flusher).Flush()
			select {
			case <-time.After(50 * time.Millisecond):
			case <-r.Context().Done():
				return
			}
		}
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

func (s *cutServer) seen() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.ranges...)
}

// A cloud deployment cut by a power cut (SIGKILL of every process of the
// suite) in the middle of its function's code download: the next start
// runs the request again (cloud.json), the statuses start again on the
// status topic (InProgress "resumed", Building), the download resumes
// with a Range request where the partial file stopped, and the deployment
// ends Success with the function running.
func TestCloudDeploymentResumesAfterPowerCut(t *testing.T) {
	needPython(t)
	needMosquitto(t)
	t.Parallel()
	cloud := newAWSCloud(t)
	cloud.start()

	// A function zip of 4 MiB: the handler and stored random padding.
	var zb bytes.Buffer
	zw := zip.NewWriter(&zb)
	f, _ := zw.Create("main.py")
	f.Write([]byte("import json\nimport greengrasssdk\niot = greengrasssdk.client('iot-data')\n\n\ndef handler(event, context):\n    iot.publish(topic='resumed/out', payload=json.dumps({'got': event}))\n"))
	pad, _ := zw.CreateHeader(&zip.FileHeader{Name: "padding.bin", Method: zip.Store})
	noise := make([]byte, 4<<20)
	rand.Read(noise)
	pad.Write(noise)
	zw.Close()
	code := zb.Bytes()
	codeSha := sha(code)
	ts := newCutServer(t, code)
	caFile := filepath.Join(t.TempDir(), "artifact-ca.pem")
	os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ts.Certificate().Raw}), 0o600)

	root := suitetest.ShortRoot(t)
	cloud.writeConfig(root)
	env := []string{"SSL_CERT_FILE=" + caFile}
	s := suitetest.LaunchWith(t, root, suitetest.LaunchOptions{Env: env})
	if err := s.WaitHealthy(60 * time.Second); err != nil {
		t.Fatal(err)
	}
	dev := createDevice(t, root, "dev")

	pool := x509.NewCertPool()
	pool.AddCert(cloud.ca.Cert)
	var smu sync.Mutex
	var statuses []clouddeploy.Status
	ops := pahov3.NewClient(pahov3.NewClientOptions().AddBroker("ssl://127.0.0.1:" + strconv.Itoa(cloud.port)).SetClientID("fleet-ops-cut").
		SetTLSConfig(&tls.Config{RootCAs: pool}))
	if tok := ops.Connect(); !tok.WaitTimeout(waitLimit) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	defer ops.Disconnect(0)
	const id = "cloud-cut-1"
	if tok := ops.Subscribe(clouddeploy.StatusTopic("test-core"), 1, func(_ pahov3.Client, m pahov3.Message) {
		var st clouddeploy.Status
		json.Unmarshal(m.Payload(), &st)
		if st.DeploymentID == id {
			smu.Lock()
			statuses = append(statuses, st)
			smu.Unlock()
		}
	}); !tok.WaitTimeout(waitLimit) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	seen := func(from int) []string {
		smu.Lock()
		defer smu.Unlock()
		var out []string
		for _, st := range statuses[min(from, len(statuses)):] {
			out = append(out, st.Status+"/"+st.Stage)
		}
		return out
	}
	bustest.CheckFor(t, waitLimit, 100*time.Millisecond, func() error {
		if r := ggctl(t, root, "cloud", "--json"); !strings.Contains(r.stdout, clouddeploy.RequestTopic("test-core")) {
			return fmt.Errorf("cloud status: %s%s", r.stdout, r.stderr)
		}
		return nil
	})

	fnARN := "arn:aws:lambda:us-east-1:123456789012:function:resumed:1"
	g := map[string]any{
		"Core":    map[string]any{"Cores": []any{map[string]any{"Id": "core", "ThingArn": thing("test-core"), "CertificateArn": acct + "cert/" + strings.Repeat("ab", 32)}}},
		"Devices": map[string]any{"Devices": []any{map[string]any{"Id": "dev", "ThingArn": thing("dev"), "CertificateArn": acct + "cert/" + dev.certID}}},
		"Functions": map[string]any{
			"DefaultConfig": map[string]any{"Execution": map[string]any{"IsolationMode": "NoContainer"}},
			"Functions": []any{map[string]any{"Id": "resumed", "FunctionArn": fnARN,
				"FunctionConfiguration": map[string]any{"Pinned": false, "Timeout": 10, "EncodingType": "json"},
				"Evergreen":             map[string]any{"Runtime": "python3.8", "Handler": "main.handler", "CodeUri": ts.URL + "/code.zip", "CodeSha256": codeSha}}}},
		"Subscriptions": map[string]any{"Subscriptions": []any{
			map[string]any{"Id": "1", "Source": thing("dev"), "Subject": "resumed/in", "Target": fnARN},
			map[string]any{"Id": "2", "Source": fnARN, "Subject": "resumed/out", "Target": thing("dev")},
		}},
	}
	body, _ := json.Marshal(map[string]any{"deploymentId": id, "group": g})
	if tok := ops.Publish(clouddeploy.RequestTopic("test-core"), 1, false, body); !tok.WaitTimeout(waitLimit) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}

	// The power cut, with the download stalled at half.
	half := int64(len(code) / 2)
	part := filepath.Join(root.DataDir("deployagent"), "artifacts", "partial", codeSha+".part")
	bustest.CheckFor(t, 60*time.Second, 20*time.Millisecond, func() error {
		if fi, err := os.Stat(part); err != nil || fi.Size() < half {
			return fmt.Errorf("download not at half (%d bytes) yet: %v", half, err)
		}
		if j := strings.Join(seen(0), " "); !strings.Contains(j, "Building/artifacts") {
			return fmt.Errorf("statuses so far: %s", j)
		}
		return nil
	})
	s.Kill()
	cut := len(seen(0))

	s = suitetest.LaunchWith(t, root, suitetest.LaunchOptions{Env: env})
	if err := s.WaitHealthy(60 * time.Second); err != nil {
		t.Fatalf("suite not healthy after the power cut: %v", err)
	}
	var after []string
	bustest.CheckFor(t, 60*time.Second, 50*time.Millisecond, func() error {
		after = seen(cut)
		if n := len(after); n == 0 || !strings.HasPrefix(after[n-1], "Success/") && !strings.HasPrefix(after[n-1], "Failure/") {
			return fmt.Errorf("statuses after the restart: %v", after)
		}
		return nil
	})
	// The resumed request waits for the restarted broker, so every status
	// reaches the cloud (the last one may come again at each connection).
	j := strings.Join(after, " ")
	if !strings.HasPrefix(j, "InProgress/resumed") || !strings.Contains(j, "Building/artifacts") || !strings.HasSuffix(j, "Success/done") {
		t.Fatalf("statuses after the restart: %v (before the cut: %v)", after, seen(0)[:cut])
	}
	rs := ts.seen()
	resumed := false
	for _, r := range rs {
		if v, ok := strings.CutPrefix(r, "bytes="); ok {
			n, err := strconv.ParseInt(strings.TrimSuffix(v, "-"), 10, 64)
			resumed = resumed || (err == nil && n > 0 && strings.HasSuffix(v, "-"))
		}
	}
	if !resumed || rs[0] != "" {
		t.Fatalf("Range headers %q: the download after the restart must resume with bytes=N- (N > 0)", rs)
	}
	d := waitOutcome(t, root, id)
	if d.Status != "DEPLOYMENT_STATUS_SUCCESS" {
		t.Fatalf("deployment recorded %+v", d)
	}
	for _, x := range deploymentsOf(t, root) {
		if x.Status == "DEPLOYMENT_STATUS_IN_PROGRESS" {
			t.Fatalf("deployment left in progress: %+v", x)
		}
	}
	c, in := pahoDevice(t, s.Endpoints().MQTT, dev, "#")
	pahoPublish(t, c, "resumed/in", `{"n":1}`)
	if out := in.wait(t, "resumed/out", 1); !strings.Contains(out[0], `"n": 1`) {
		t.Fatalf("the function deployed after the power cut: %s", out[0])
	}
	t.Logf("statuses after the power cut: %v; Range headers %q", after, rs)
}
