package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/evergreen-edge/evergreen/services/internal/suitetest"
	"github.com/evergreen-edge/evergreen/services/kit/bustest"
	"github.com/evergreen-edge/evergreen/services/kit/endpoints"
	"github.com/evergreen-edge/evergreen/services/kit/layout"
)

func lambdaARN(name string) string {
	return "arn:aws:lambda:us-east-1:123456789012:function:" + name + ":1"
}

// pyFn is a NoContainer python3.8 function of testdata/fns/NAME.
func pyFn(name string, pinned bool, timeout int, env map[string]string) map[string]any {
	fnDir, _ := filepath.Abs("testdata/fns")
	cfg := map[string]any{"Pinned": pinned, "Timeout": timeout, "EncodingType": "json"}
	if env != nil {
		cfg["Environment"] = map[string]any{"Variables": env}
	}
	return map[string]any{"Id": name, "FunctionArn": lambdaARN(name), "FunctionConfiguration": cfg,
		"Evergreen": map[string]any{"Runtime": "python3.8", "Handler": "main.handler", "CodeUri": filepath.Join(fnDir, name)}}
}

// deployFunctions deploys the core test-core with fns (NoContainer by
// default) and nothing else.
func deployFunctions(t *testing.T, root layout.Root, fns ...map[string]any) {
	t.Helper()
	deployGroupWith(t, root, nil, fns...)
}

// healthWorker is one entry of the v1 health API (spec 8.1).
type healthWorker struct {
	FuncArn     string
	WorkerId    string
	ProcessId   json.Number
	WorkerState string
}

// healthWorkers asks the v1 health API on the IPC port: GET with no body,
// or POST {"FuncArns": arns}.
func healthWorkers(t *testing.T, s *suitetest.Suite, arns ...string) []healthWorker {
	t.Helper()
	url := "http://" + endpoints.Dialable(s.Endpoints().IPC) + "/2016-11-01/health/workers"
	var resp *http.Response
	var err error
	if len(arns) == 0 {
		resp, err = http.Get(url)
	} else {
		body, _ := json.Marshal(map[string]any{"FuncArns": arns})
		resp, err = http.Post(url, "application/json", bytes.NewReader(body))
	}
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("health API: %d %s", resp.StatusCode, b)
	}
	var ws []healthWorker
	if len(arns) == 0 {
		err = json.Unmarshal(b, &ws)
	} else {
		var r struct{ Workers []healthWorker }
		err = json.Unmarshal(b, &r)
		ws = r.Workers
	}
	if err != nil {
		t.Fatalf("health API answer %s: %v", b, err)
	}
	return ws
}

// invokePid invokes the sleeper and returns the pid its handler ran in.
func invokePid(t *testing.T, root layout.Root) int {
	t.Helper()
	r := ggctl(t, root, "fn", "invoke", "sleeper", `{"sleep":0}`)
	if r.code != 0 {
		t.Fatalf("fn invoke sleeper: %d %s%s", r.code, r.stdout, r.stderr)
	}
	pid, err := strconv.Atoi(fmt.Sprint(jsonAt(t, r.stdout, "pid")))
	if err != nil {
		t.Fatalf("fn invoke sleeper: %s: %v", r.stdout, err)
	}
	return pid
}

// Real worker processes of a real suite: an invocation that outlives the
// function's Timeout kills its worker (the process is gone, the pinned
// function gets a new one) and the next invocation succeeds; a worker's
// environment has every variable of spec 1.1 with the suite's values and
// the group's Environment.Variables; a function whose import fails is
// FailedInitialization on the v1 health API of the IPC port (spec 8.1).
func TestRuntimeWorkersTimeoutEnvironmentAndHealth(t *testing.T) {
	needPython(t)
	root := suitetest.ShortRoot(t)
	suitetest.WriteConfig(t, root, nil)
	s := suitetest.Start(t, root)
	deployFunctions(t, root,
		pyFn("sleeper", true, 1, nil),
		pyFn("envdump", false, 10, map[string]string{"GROUP_VAR": "from the group", "ENCODING_NOTE": "x=y"}),
		pyFn("broken", true, 10, nil),
	)

	// The timeout: the worker that ran the late call is killed.
	before := invokePid(t, root)
	var found bool
	for _, w := range healthWorkers(t, s, lambdaARN("sleeper")) {
		found = found || w.ProcessId.String() == strconv.Itoa(before)
	}
	if !found {
		t.Fatalf("the health API does not list the sleeper's worker pid %d: %+v", before, healthWorkers(t, s))
	}
	start := time.Now()
	r := ggctl(t, root, "fn", "invoke", "sleeper", `{"sleep":30}`)
	if r.code != 1 || !strings.Contains(r.stderr, "function error") {
		t.Fatalf("an invocation over the timeout: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if d := time.Since(start); d > 20*time.Second {
		t.Fatalf("the timed-out invocation took %v (Timeout is 1 s)", d)
	}
	bustest.CheckFor(t, waitLimit, 20*time.Millisecond, func() error {
		if suitetest.Alive(before) {
			return fmt.Errorf("the timed-out worker %d still runs", before)
		}
		return nil
	})
	after := invokePid(t, root)
	if after == before {
		t.Fatalf("the call after the timeout ran in the killed worker's pid %d", before)
	}

	// The environment (spec 1.1).
	r = ggctl(t, root, "fn", "invoke", "envdump", "{}")
	if r.code != 0 {
		t.Fatalf("fn invoke envdump: %d %s%s", r.code, r.stdout, r.stderr)
	}
	var env map[string]string
	if err := json.Unmarshal([]byte(r.stdout), &env); err != nil {
		t.Fatalf("envdump: %v\n%s", err, r.stdout)
	}
	ep := s.Endpoints()
	_, ipcPort, _ := net.SplitHostPort(ep.IPC)
	_, streamsPort, _ := net.SplitHostPort(ep.Streams)
	want := map[string]string{
		"MY_FUNCTION_ARN":                    lambdaARN("envdump"),
		"SHADOW_FUNCTION_ARN":                "arn:aws:lambda:::function:GGShadowService",
		"ROUTER_FUNCTION_ARN":                "arn:aws:lambda:::function:GGRouter",
		"SECRETS_MANAGER_FUNCTION_ARN":       "arn:aws:lambda:::function:GGSecretManager:1",
		"GGC_MAX_INTERFACE_VERSION":          "1.5",
		"ENCODING_TYPE":                      "json",
		"GG_DAEMON_PORT":                     ipcPort,
		"AWS_CONTAINER_CREDENTIALS_FULL_URI": "http://localhost:" + ipcPort + "/2016-11-01/credentialprovider/",
		"AWS_IOT_THING_NAME":                 "test-core",
		"STREAM_MANAGER_SERVER_PORT":         streamsPort,
		"GROUP_VAR":                          "from the group",
		"ENCODING_NOTE":                      "x=y",
	}
	for k, v := range want {
		if env[k] != v {
			t.Errorf("%s=%q, want %q", k, env[k], v)
		}
	}
	if env["AWS_CONTAINER_AUTHORIZATION_TOKEN"] == "" {
		t.Error("AWS_CONTAINER_AUTHORIZATION_TOKEN is not set")
	}
	if env["PATH"] == "" || env["HOME"] == "" {
		t.Errorf("PATH=%q HOME=%q", env["PATH"], env["HOME"])
	}
	// Being added to the runtime: checked when there.
	if v, ok := env["AWS_GG_RESOURCE_PREFIX"]; ok && v == "" {
		t.Error("AWS_GG_RESOURCE_PREFIX is set but empty")
	}
	if v, ok := env["EVERGREEN_FUNCTION_MEMORY_MB"]; ok {
		if _, err := strconv.Atoi(v); err != nil {
			t.Errorf("EVERGREEN_FUNCTION_MEMORY_MB=%q is not a number", v)
		}
	}
	if t.Failed() {
		t.Logf("worker environment: %s", r.stdout)
	}

	// FailedInitialization on the v1 health API (GET and POST).
	bustest.CheckFor(t, waitLimit, 50*time.Millisecond, func() error {
		for _, w := range healthWorkers(t, s) {
			if w.FuncArn == lambdaARN("broken") && w.WorkerState == "FailedInitialization" {
				return nil
			}
		}
		return fmt.Errorf("GET health/workers has no FailedInitialization worker of broken: %+v", healthWorkers(t, s))
	})
	ws := healthWorkers(t, s, lambdaARN("broken"))
	if len(ws) == 0 || ws[0].FuncArn != lambdaARN("broken") || ws[0].WorkerId == "" {
		t.Fatalf("POST health/workers for broken: %+v", ws)
	}
}
