package runtime_test

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	runtimev1 "github.com/evergreen-edge/evergreen/proto/evergreen/runtime/v1"
	"github.com/evergreen-edge/evergreen/runtime"
)

// ListFunctions reports each function's counters and the deployment in
// force: the one committed at start, then each one applied.
func TestListFunctionsCountersAndDeployment(t *testing.T) {
	group := strings.Replace(echoGroup(buildEcho(t), false), `"Timeout":3`, `"Timeout":1`, 1)
	r := startRuntime(t, group)
	api := r.api()
	ctx := context.Background()
	for _, p := range []string{"hello", "fail", "sleep:3000"} {
		if _, err := api.Invoke(ctx, &runtimev1.InvokeRequest{Function: "echo", Payload: []byte(p)}); err != nil {
			t.Fatalf("invoke %s: %v", p, err)
		}
	}
	fl, err := api.ListFunctions(ctx, &runtimev1.ListFunctionsRequest{})
	if err != nil || len(fl.GetFunctions()) != 1 {
		t.Fatalf("functions: %v %v", fl, err)
	}
	if got := fl.GetDeploymentId(); got != "d-1" {
		t.Errorf("deployment_id %q, want d-1 (current.json at start)", got)
	}
	f := fl.GetFunctions()[0]
	if f.GetInvocations() != 3 || f.GetHandledErrors() != 1 || f.GetUnhandledErrors() != 1 || f.GetTimeouts() != 1 ||
		f.GetWorkerDeaths() != 0 || f.GetOutOfMemoryKills() != 0 || f.GetRejected() != 0 {
		t.Errorf("counters: %v", f)
	}

	// An applied deployment is the one in force; its PREPARE named it.
	if res := r.ask(prepare, "d-2", group); !res.GetOk() {
		t.Fatalf("PREPARE d-2: %s", res.GetReason())
	}
	if res := r.ask(apply, "d-2", group); !res.GetOk() {
		t.Fatalf("APPLY d-2: %s", res.GetReason())
	}
	fl, err = api.ListFunctions(ctx, &runtimev1.ListFunctionsRequest{})
	if err != nil || fl.GetDeploymentId() != "d-2" {
		t.Fatalf("after APPLY d-2: deployment %q %v", fl.GetDeploymentId(), err)
	}
	// The function stayed: its counters too.
	if f := fl.GetFunctions()[0]; f.GetInvocations() != 3 {
		t.Errorf("counters after a deployment that keeps the function: %v", f)
	}
}

// echoVersion copies the built echo into a directory of its own with a
// marker, so that its code installs under a sha of its own.
func echoVersion(t *testing.T, built, v string) string {
	t.Helper()
	dir := t.TempDir()
	b, err := os.ReadFile(filepath.Join(built, "echo"))
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "echo"), b, 0o755)
	os.WriteFile(filepath.Join(dir, "version"), []byte(v), 0o644)
	os.Chmod(dir, 0o755)
	return dir
}

// After each applied deployment, the installed code left is that of the
// group in force and of the one before it; what a PREPARE installed for a
// deployment that never applied is gone.
func TestUnusedCodeRemoved(t *testing.T) {
	built := buildEcho(t)
	v1, v2, v3, vx := echoVersion(t, built, "1"), echoVersion(t, built, "2"), echoVersion(t, built, "3"), echoVersion(t, built, "x")
	r := startRuntime(t, echoGroup(v1, false))
	api := r.api()
	ctx := context.Background()
	codeDirs := func() []string {
		t.Helper()
		m, _ := filepath.Glob(filepath.Join(r.root.FunctionsDir(), "*", "*"))
		slices.Sort(m)
		return m
	}
	inForce := func() string {
		t.Helper()
		fl, err := api.ListFunctions(ctx, &runtimev1.ListFunctionsRequest{})
		if err != nil || len(fl.GetFunctions()) != 1 {
			t.Fatalf("functions: %v %v", fl, err)
		}
		return fl.GetFunctions()[0].GetCodeDir()
	}
	deploy := func(id, code string) string {
		t.Helper()
		for _, phase := range []string{"PREPARE", "APPLY"} {
			p := prepare
			if phase == "APPLY" {
				p = apply
			}
			if res := r.ask(p, id, echoGroup(code, false)); !res.GetOk() {
				t.Fatalf("%s %s: %s", phase, id, res.GetReason())
			}
		}
		return inForce()
	}
	dir1 := inForce()
	if got := codeDirs(); !slices.Equal(got, []string{dir1}) {
		t.Fatalf("code at start: %v", got)
	}
	// Another daemon refuses deployment d-x after the runtime prepared
	// it: no APPLY ever comes.
	if res := r.ask(prepare, "d-x", echoGroup(vx, false)); !res.GetOk() {
		t.Fatalf("PREPARE d-x: %s", res.GetReason())
	}
	if got := codeDirs(); len(got) != 2 {
		t.Fatalf("code after PREPARE d-x: %v", got)
	}
	dir2 := deploy("d-2", v2)
	if want := sortedDirs(dir1, dir2); !slices.Equal(codeDirs(), want) {
		t.Fatalf("code after d-2: %v, want %v", codeDirs(), want)
	}
	dir3 := deploy("d-3", v3)
	if want := sortedDirs(dir2, dir3); !slices.Equal(codeDirs(), want) {
		t.Fatalf("code after d-3: %v, want %v", codeDirs(), want)
	}
	if _, err := os.Stat(filepath.Join(r.root.DataDir(runtime.Name), runtime.CodeLedgerFile)); err != nil {
		t.Fatalf("the record of the code in use: %v", err)
	}
	if res, err := api.Invoke(ctx, &runtimev1.InvokeRequest{Function: "echo", Payload: []byte("v3")}); err != nil || string(res.GetPayload()) != "v3" {
		t.Fatalf("invoke after the code of older groups went: %v %v", res, err)
	}
}

func sortedDirs(d ...string) []string { slices.Sort(d); return d }

// The IPC listener is refused anywhere but on loopback, naming the key.
func TestCheckIPCListen(t *testing.T) {
	for _, ok := range []string{"127.0.0.1:8000", "127.0.0.2:0", "[::1]:8000", "localhost:8000"} {
		if err := runtime.CheckIPCListen(ok); err != nil {
			t.Errorf("%s refused: %v", ok, err)
		}
	}
	for _, bad := range []string{"0.0.0.0:8000", ":8000", "[::]:8000", "192.168.1.5:8000", "core.example:8000", "127.0.0.1"} {
		err := runtime.CheckIPCListen(bad)
		if err == nil || !strings.Contains(err.Error(), "evergreen.listen.ipc") || !strings.Contains(err.Error(), bad) {
			t.Errorf("%s: %v, want a refusal naming evergreen.listen.ipc and the address", bad, err)
		}
	}
}
