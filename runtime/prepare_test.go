package runtime_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	deployv1 "github.com/evergreen-edge/evergreen/proto/evergreen/deploy/v1"
	runtimev1 "github.com/evergreen-edge/evergreen/proto/evergreen/runtime/v1"
	"github.com/evergreen-edge/evergreen/runtime"
	"github.com/evergreen-edge/evergreen/services/kit/bustest"
	"github.com/evergreen-edge/evergreen/services/kit/config"
	"github.com/evergreen-edge/evergreen/services/kit/subjects"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"
)

// ask sends the runtime an ApplyGroup of phase, as the deployagent does.
func (r *rt) ask(phase deployv1.ApplyPhase, id, group string) *deployv1.ApplyResult {
	r.t.Helper()
	data, _ := proto.Marshal(&deployv1.ApplyGroup{DeploymentId: id, GroupJson: []byte(group), Phase: phase})
	msg, err := r.nc.Request(subjects.DeployApply(runtime.Name), data, 30*time.Second)
	if err != nil {
		r.t.Fatalf("ApplyGroup %s: %v", phase, err)
	}
	res := &deployv1.ApplyResult{}
	if err := proto.Unmarshal(msg.Data, res); err != nil {
		r.t.Fatal(err)
	}
	return res
}

func (r *rt) api() runtimev1.RuntimeClient {
	r.t.Helper()
	cc, err := grpc.NewClient("unix://"+r.root.Socket(runtime.Name), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		r.t.Fatal(err)
	}
	r.t.Cleanup(func() { cc.Close() })
	return runtimev1.NewRuntimeClient(cc)
}

const (
	prepare = deployv1.ApplyPhase_APPLY_PHASE_PREPARE
	apply   = deployv1.ApplyPhase_APPLY_PHASE_APPLY
)

func coreOnlyGroup() string {
	return fmt.Sprintf(`{"Core":{"Cores":[{"Id":"c","ThingArn":"arn:aws:iot:us-east-1:123456789012:thing/core-1","CertificateArn":"arn:aws:iot:us-east-1:123456789012:cert/%s"}]}}`, strings.Repeat("a", 64))
}

// What APPLY refuses is refused at PREPARE, before the deployagent
// commits: code that does not install, a GreengrassContainer function
// without containerd. A PREPARE, refused or not, leaves the group in force
// running: the same pinned worker, the same functions.
func TestPrepareRefusesWhatApplyRefuses(t *testing.T) {
	t.Setenv("EVERGREEN_CONTAINERD_SOCKET", "/nonexistent/containerd.sock")
	code := buildEcho(t)
	r := startRuntime(t, echoGroup(code, true))
	api := r.api()
	ctx := context.Background()
	var pid int32
	bustest.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		ws, err := api.ListWorkers(ctx, &runtimev1.ListWorkersRequest{Function: "echo"})
		if err != nil || len(ws.GetWorkers()) != 1 || ws.GetWorkers()[0].GetPid() == 0 {
			return fmt.Errorf("workers: %v %v", ws, err)
		}
		pid = ws.GetWorkers()[0].GetPid()
		return nil
	})
	unchanged := func(after string) {
		t.Helper()
		ws, err := api.ListWorkers(ctx, &runtimev1.ListWorkersRequest{})
		if err != nil || len(ws.GetWorkers()) != 1 || ws.GetWorkers()[0].GetPid() != pid {
			t.Fatalf("workers after %s: %v %v, want the one worker of pid %d", after, ws, err, pid)
		}
		if res, err := api.Invoke(ctx, &runtimev1.InvokeRequest{Function: "echo", Payload: []byte("still")}); err != nil || string(res.GetPayload()) != "still" {
			t.Fatalf("invoke after %s: %v %v", after, res, err)
		}
	}

	for _, tc := range []struct{ name, group, want string }{
		{"missing code", echoGroup("/nonexistent/code", true), "Functions[0] (" + echoARN + "): CodeUri \"/nonexistent/code\""},
		{"no containerd", strings.Replace(echoGroup(code, false), `"IsolationMode":"NoContainer"`, `"IsolationMode":"GreengrassContainer"`, 1), "IsolationMode GreengrassContainer: containerd socket /nonexistent/containerd.sock"},
	} {
		res := r.ask(prepare, "d-bad", tc.group)
		if res.GetOk() || !strings.Contains(res.GetReason(), tc.want) {
			t.Errorf("PREPARE with %s: ok=%v reason %q, want %q", tc.name, res.GetOk(), res.GetReason(), tc.want)
		}
		if got := res.GetAppliedDeploymentId(); got != "d-1" {
			t.Errorf("after the PREPARE with %s the runtime reports deployment %q, want d-1", tc.name, got)
		}
		unchanged("PREPARE with " + tc.name)
	}

	// A good group without the function prepares; the function keeps
	// running until APPLY.
	if res := r.ask(prepare, "d-2", coreOnlyGroup()); !res.GetOk() {
		t.Fatalf("PREPARE of a group without functions refused: %s", res.GetReason())
	}
	unchanged("PREPARE of a group without functions")
	if res := r.ask(apply, "d-2", coreOnlyGroup()); !res.GetOk() {
		t.Fatalf("APPLY of a group without functions refused: %s", res.GetReason())
	}
	if fl, err := api.ListFunctions(ctx, &runtimev1.ListFunctionsRequest{}); err != nil || len(fl.GetFunctions()) != 0 {
		t.Fatalf("functions after APPLY of a group without them: %v %v", fl, err)
	}
}

// A function that would run as root while runtime.allowFunctionsToRunAsRoot
// is not "yes" is refused at PREPARE with v1's error, as APPLY refuses it.
func TestPrepareRefusesRoot(t *testing.T) {
	r := startRuntime(t, coreOnlyGroup(), func(c *config.Config) { c.Runtime.AllowFunctionsToRunAsRoot = "no" })
	group := echoGroup(buildEcho(t), true) // RunAs uid 0, gid 0
	for _, phase := range []deployv1.ApplyPhase{prepare, apply} {
		res := r.ask(phase, "d-root", group)
		if res.GetOk() || !strings.Contains(res.GetReason(), "lambda(s) ["+echoARN+"] are configured to run as root") {
			t.Errorf("%s of a root function: ok=%v reason %q", phase, res.GetOk(), res.GetReason())
		}
	}
}

// fnGroup is a group of one NoContainer function running as root, with
// extra FunctionConfiguration fields and extra top-level sections.
func fnGroup(arn, runtime, handler, code, config, sections string) string {
	return fmt.Sprintf(`{"Core":{"Cores":[{"Id":"c","ThingArn":"arn:aws:iot:us-east-1:123456789012:thing/core-1","CertificateArn":"arn:aws:iot:us-east-1:123456789012:cert/%s"}]},
"Functions":{"DefaultConfig":{"Execution":{"IsolationMode":"NoContainer","RunAs":{"Uid":0,"Gid":0}}},
"Functions":[{"Id":"f","FunctionArn":%q,"FunctionConfiguration":{"Pinned":true,"Timeout":3%s},
"Evergreen":{"Runtime":%q,"Handler":%q,"CodeUri":%q}}]}%s}`, strings.Repeat("a", 64), arn, config, runtime, handler, code, sections)
}

// Evergreen's Python shims are Python 3: a python2.7 function is refused
// at PREPARE unless the host's python2.7 runs them (on this host it is
// absent, a broken pyenv shim, or a real Python 2).
func TestPreparePython2Refused(t *testing.T) {
	code := t.TempDir()
	os.WriteFile(filepath.Join(code, "main.py"), []byte("def handler(event, context):\n    return event\n"), 0o644)
	r := startRuntime(t, coreOnlyGroup())
	res := r.ask(prepare, "d-py2", fnGroup(echoARN, "python2.7", "main.handler", code, "", ""))
	if res.GetOk() || !strings.Contains(res.GetReason(), "Functions[0] ("+echoARN+"): Runtime python2.7: ") ||
		!strings.Contains(res.GetReason(), "no working python2.7") && !strings.Contains(res.GetReason(), "cannot run Evergreen's Python 3 runtime shims") {
		t.Fatalf("PREPARE of a python2.7 function: ok=%v reason %q", res.GetOk(), res.GetReason())
	}
}

// MemorySize on a NoContainer function (an Evergreen extension) limits
// its worker through a memory cgroup; a host without a writable one
// refuses the group at PREPARE naming the field.
func TestNoContainerMemoryLimit(t *testing.T) {
	r := startRuntime(t, coreOnlyGroup())
	group := fnGroup(echoARN, "go", "echo", buildEcho(t), `,"MemorySize":65536,"EncodingType":"binary"`, "")
	res := r.ask(prepare, "d-mem", group)
	if !res.GetOk() {
		if !strings.Contains(res.GetReason(), "Functions[0].FunctionConfiguration.MemorySize ("+echoARN+"): 65536 KB: a NoContainer function's memory limit needs a writable memory cgroup") {
			t.Fatalf("PREPARE refused with %q", res.GetReason())
		}
		if os.Getenv("EVERGREEN_REQUIRE_ALL") != "" {
			t.Fatalf("no memory cgroup here (EVERGREEN_REQUIRE_ALL is set): %s", res.GetReason())
		}
		t.Skipf("refused as it should be without a memory cgroup; the limit itself is not testable here: %s", res.GetReason())
	}
	if res := r.ask(apply, "d-mem", group); !res.GetOk() {
		t.Fatalf("APPLY: %s", res.GetReason())
	}
	api := r.api()
	bustest.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		ws, err := api.ListWorkers(context.Background(), &runtimev1.ListWorkersRequest{Function: "echo"})
		if err != nil || len(ws.GetWorkers()) != 1 || ws.GetWorkers()[0].GetPid() == 0 {
			return fmt.Errorf("workers: %v %v", ws, err)
		}
		w := ws.GetWorkers()[0]
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", w.GetPid()))
		if err != nil {
			return err
		}
		for _, line := range strings.Split(string(b), "\n") {
			if parts := strings.SplitN(line, ":", 3); len(parts) == 3 && strings.Contains(parts[2], "/evergreen-runtime/") {
				limit := readLimit(parts)
				if limit != 65536*1024 {
					return fmt.Errorf("cgroup %s limit %d, want %d", parts[2], limit, 65536*1024)
				}
				return nil
			}
		}
		return fmt.Errorf("worker %d is in no evergreen-runtime cgroup:\n%s", w.GetPid(), b)
	})
}

// readLimit reads the memory limit of the cgroup of a /proc/<pid>/cgroup
// line (v2 "0::/path" or v1 "N:memory:/path").
func readLimit(parts []string) int64 {
	var file string
	switch {
	case parts[0] == "0" && parts[1] == "":
		file = filepath.Join("/sys/fs/cgroup", parts[2], "memory.max")
	case strings.Contains(","+parts[1]+",", ",memory,"):
		file = filepath.Join("/sys/fs/cgroup/memory", parts[2], "memory.limit_in_bytes")
	default:
		return -1
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return -1
	}
	n, _ := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	return n
}

// The group's Lambda FileSystem logger Level filters the records a Python
// function logs (through the SDK's logging) out of its log file; print
// output has no level and is kept whole.
func TestLambdaFileLogLevel(t *testing.T) {
	if _, err := exec.LookPath("python3"); err != nil {
		if os.Getenv("EVERGREEN_REQUIRE_ALL") != "" {
			t.Fatal("python3 is not installed (EVERGREEN_REQUIRE_ALL is set)")
		}
		t.Skip("python3 is not installed")
	}
	code := t.TempDir()
	os.WriteFile(filepath.Join(code, "main.py"), []byte(`import logging
logging.debug('debug-at-import')
logging.info('info-at-import')
logging.warning('warn-at-import')
logging.error('error-at-import')
print('print-at-import', flush=True)


def handler(event, context):
    return event
`), 0o644)
	os.Chmod(code, 0o755)
	const pyARN = "arn:aws:lambda:us-east-1:123456789012:function:leveled:1"
	loggers := `,"Loggers":{"Loggers":[{"Id":"l","Component":"Lambda","Type":"FileSystem","Level":"WARN","Space":128}]}`
	r := startRuntime(t, fnGroup(pyARN, "python3.8", "main.handler", code, "", loggers))
	logFile := filepath.Join(r.root.LogsDir(), "user", "leveled.log")
	var text string
	bustest.CheckFor(t, 15*time.Second, 50*time.Millisecond, func() error {
		b, _ := os.ReadFile(logFile)
		text = string(b)
		if !strings.Contains(text, "print-at-import") {
			return fmt.Errorf("log so far:\n%s", text)
		}
		return nil
	})
	for _, want := range []string{"[WARN]-main.py:4,warn-at-import", "[ERROR]-main.py:5,error-at-import"} {
		if !strings.Contains(text, want) {
			t.Errorf("log lacks %q:\n%s", want, text)
		}
	}
	for _, below := range []string{"debug-at-import", "info-at-import"} {
		if strings.Contains(text, below) {
			t.Errorf("log has %q, below the logger's WARN:\n%s", below, text)
		}
	}
}
