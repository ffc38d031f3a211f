package runtime

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/evergreen-edge/evergreen/runtime/containerapi"
	"github.com/evergreen-edge/evergreen/services/kit/config"
	"github.com/evergreen-edge/evergreen/services/kit/daemon"
	"github.com/evergreen-edge/evergreen/services/kit/endpoints"
	"github.com/evergreen-edge/evergreen/services/kit/groupdef"
	"github.com/evergreen-edge/evergreen/services/kit/layout"
)

func TestLambdaLogBytes(t *testing.T) {
	space := 128
	g := &groupdef.Group{Loggers: &groupdef.LoggerDefinitionVersion{Loggers: []groupdef.Logger{
		{Component: "GreengrassSystem", Type: "FileSystem", Space: &space},
	}}}
	if got := lambdaLogBytes(g); got != DefaultFunctionLogBytes {
		t.Fatalf("no Lambda logger: %d", got)
	}
	g.Loggers.Loggers = append(g.Loggers.Loggers, groupdef.Logger{Component: "Lambda", Type: "FileSystem", Space: &space})
	if got := lambdaLogBytes(g); got != 128<<10 {
		t.Fatalf("Lambda logger of 128 KB: %d", got)
	}
	if got := lambdaLogBytes(&groupdef.Group{}); got != DefaultFunctionLogBytes {
		t.Fatalf("no loggers: %d", got)
	}
}

// A local resource whose source is missing, or a device resource that is
// not a device, refuses the group: its container could not start.
func TestResourceSourcesChecked(t *testing.T) {
	file := filepath.Join(t.TempDir(), "plain")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	g := &groupdef.Group{Resources: &groupdef.ResourceDefinitionVersion{Resources: []groupdef.Resource{
		{Id: "vol", ResourceDataContainer: &groupdef.ResourceDataContainer{LocalVolumeResourceData: &groupdef.LocalVolumeResourceData{SourcePath: t.TempDir(), DestinationPath: "/data"}}},
		{Id: "gone", ResourceDataContainer: &groupdef.ResourceDataContainer{LocalVolumeResourceData: &groupdef.LocalVolumeResourceData{SourcePath: "/nonexistent/volume"}}},
		{Id: "null", ResourceDataContainer: &groupdef.ResourceDataContainer{LocalDeviceResourceData: &groupdef.LocalDeviceResourceData{SourcePath: "/dev/null"}}},
		{Id: "file", ResourceDataContainer: &groupdef.ResourceDataContainer{LocalDeviceResourceData: &groupdef.LocalDeviceResourceData{SourcePath: file}}},
	}}}
	for _, tc := range []struct {
		uses []string
		want string // "" when accepted
	}{
		{[]string{"vol", "null"}, ""},
		{[]string{"vol", "gone"}, `resource "gone": SourcePath`},
		{[]string{"file"}, `resource "file": SourcePath: ` + file + ` is not a character or block device`},
	} {
		cfg := &groupdef.FunctionConfiguration{Environment: &groupdef.FunctionConfigurationEnvironment{}}
		for _, id := range tc.uses {
			cfg.Environment.ResourceAccessPolicies = append(cfg.Environment.ResourceAccessPolicies, groupdef.ResourceAccessPolicy{ResourceId: id, Permission: "ro"})
		}
		_, err := containerSpec(g, cfg, nil, false)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%v: %v", tc.uses, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%v: %v, want %q", tc.uses, err, tc.want)
		}
	}
}

func intp(v int) *int { return &v }

// testService is a Service that builds functions without running them:
// no worker manager (so no memory cgroup), the source tree's shims.
func testService(t *testing.T, tweak ...func(*config.Config)) *Service {
	t.Helper()
	cfg := config.Default()
	cfg.CoreThing.ThingArn = "arn:aws:iot:us-east-1:123456789012:thing/core-1"
	for _, f := range tweak {
		f(cfg)
	}
	shims, err := filepath.Abs("shims")
	if err != nil {
		t.Fatal(err)
	}
	return &Service{
		env:   &daemon.Env{Root: layout.Root(t.TempDir()), Config: cfg, Endpoints: endpoints.Endpoints{IPC: "127.0.0.1:8000", Streams: "127.0.0.1:8088"}},
		shims: shims,
	}
}

func ext(runtime string) *groupdef.FunctionExtension {
	handler := "index.handler"
	if strings.HasPrefix(runtime, "python") {
		handler = "main.handler"
	}
	return &groupdef.FunctionExtension{Runtime: runtime, Handler: handler}
}

// python2.7 runs only on a python2.7 that runs and imports the shims,
// which are Python 3: on this host (no python2.7, a broken pyenv shim, or
// a real Python 2) it is refused with the reason.
func TestPython2Refused(t *testing.T) {
	s := testService(t)
	_, err := s.command(ext("python2.7"), t.TempDir(), &groupdef.FunctionConfiguration{}, &buildRun{})
	if err == nil {
		t.Fatal("python2.7 accepted; the Python shims are Python 3 only")
	}
	msg := err.Error()
	if !strings.HasPrefix(msg, "Runtime python2.7: ") ||
		!strings.Contains(msg, "no working python2.7") && !strings.Contains(msg, "cannot run Evergreen's Python 3 runtime shims") {
		t.Fatalf("refusal %q does not say why", msg)
	}
	t.Log(msg)

	// The group's functions share one probe, and a refused one refuses
	// the deployment naming its function.
	run := &buildRun{}
	_, err1 := s.command(ext("python2.7"), t.TempDir(), &groupdef.FunctionConfiguration{}, run)
	_, err2 := s.command(ext("python2.7"), t.TempDir(), &groupdef.FunctionConfiguration{}, run)
	if err1 == nil || err1 != err2 || !run.py2Done {
		t.Fatalf("probe not shared: %v / %v", err1, err2)
	}
}

// A python2.7 that does not run, and one whose Python cannot import the
// shims, are refused each with its reason; one that can is accepted.
func TestPython2Probe(t *testing.T) {
	for _, dir := range []string{"/usr/bin", "/usr/local/bin"} {
		if _, err := os.Stat(filepath.Join(dir, "python2.7")); err == nil {
			t.Skipf("%s/python2.7 is found before PATH", dir)
		}
	}
	py3, err := hostInterpreter("python3")
	if err != nil {
		if os.Getenv("EVERGREEN_REQUIRE_ALL") != "" {
			t.Fatal("python3 is not installed (EVERGREEN_REQUIRE_ALL is set)")
		}
		t.Skip("python3 is not installed")
	}
	bin := t.TempDir()
	write := func(script string) {
		if err := os.WriteFile(filepath.Join(bin, "python2.7"), []byte("#!/bin/sh\n"+script+"\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("PATH", bin)
	s := testService(t)
	cfg := &groupdef.FunctionConfiguration{}

	write(`echo "pyenv: python2.7: command not found" >&2; exit 127`)
	if _, err := s.command(ext("python2.7"), "", cfg, &buildRun{}); err == nil || !strings.Contains(err.Error(), "no working python2.7") || !strings.Contains(err.Error(), "command not found") {
		t.Errorf("broken python2.7: %v", err)
	}

	write(`exec ` + py3 + ` "$@"`)
	argv, err := s.command(ext("python2.7"), "", cfg, &buildRun{})
	if err != nil || argv[0] != filepath.Join(bin, "python2.7") || argv[1] != filepath.Join(s.shims, "python", "lambda_runtime.py") {
		t.Errorf("python2.7 that runs the shims: %v %v", argv, err)
	}

	s.shims = t.TempDir() // no lambda_runtime to import
	if _, err := s.command(ext("python2.7"), "", cfg, &buildRun{}); err == nil || !strings.Contains(err.Error(), "cannot run Evergreen's Python 3 runtime shims") || !strings.Contains(err.Error(), "lambda_runtime") {
		t.Errorf("python2.7 that cannot import the shims: %v", err)
	}
}

// python3.N runs on the host's python3.N when /usr/bin or /usr/local/bin
// has it, else on python3; every nodejsN.x on node.
func TestRuntimeMapping(t *testing.T) {
	s := testService(t)
	cfg := &groupdef.FunctionConfiguration{}
	py3, err := hostInterpreter("python3")
	if err != nil {
		if os.Getenv("EVERGREEN_REQUIRE_ALL") != "" {
			t.Fatal("python3 is not installed (EVERGREEN_REQUIRE_ALL is set)")
		}
		t.Skip("python3 is not installed")
	}
	node, nodeErr := hostInterpreter("node")
	for _, rt := range []string{"python3.7", "python3.8", "python3.12", "python3.99"} {
		want := systemInterpreter(rt)
		if want == "" {
			want = py3
		}
		argv, err := s.command(ext(rt), "", cfg, &buildRun{})
		if err != nil || argv[0] != want || argv[1] != filepath.Join(s.shims, "python", "lambda_runtime.py") || argv[2] != "--handler=main.handler" {
			t.Errorf("%s: %v %v, want %s", rt, argv, err, want)
		}
	}
	// The host's own python3.N is found by its name.
	out, err := exec.Command(py3, "-c", "import sys; print('%d.%d' % sys.version_info[:2])").Output()
	if err != nil {
		t.Fatal(err)
	}
	if own := "python" + strings.TrimSpace(string(out)); systemInterpreter(own) != "" {
		if argv, err := s.command(ext(own), "", cfg, &buildRun{}); err != nil || argv[0] != systemInterpreter(own) {
			t.Errorf("%s: %v %v, want %s", own, argv, err, systemInterpreter(own))
		}
	}
	if nodeErr != nil {
		return
	}
	for _, rt := range []string{"nodejs8.10", "nodejs12.x", "nodejs20.x"} {
		argv, err := s.command(ext(rt), "", cfg, &buildRun{})
		if err != nil || argv[0] != node || argv[1] != filepath.Join(s.shims, "nodejs", "lambda_nodejs_runtime.js") {
			t.Errorf("%s: %v %v, want %s", rt, argv, err, node)
		}
	}
}

// Uid and Gid fall back separately: function, then group default, then
// the built-in default (nil here).
func TestRunAsMerge(t *testing.T) {
	group := func(def *groupdef.FunctionRunAsConfig) *groupdef.Group {
		return &groupdef.Group{Functions: &groupdef.FunctionDefinitionVersion{DefaultConfig: &groupdef.FunctionDefaultConfig{
			Execution: &groupdef.FunctionDefaultExecutionConfig{IsolationMode: NoContainer, RunAs: def}}}}
	}
	fn := func(own *groupdef.FunctionRunAsConfig) *groupdef.FunctionConfiguration {
		return &groupdef.FunctionConfiguration{Environment: &groupdef.FunctionConfigurationEnvironment{Execution: &groupdef.FunctionExecutionConfig{RunAs: own}}}
	}
	show := func(p *int) string {
		if p == nil {
			return "default"
		}
		return strconv.Itoa(*p)
	}
	for _, tc := range []struct {
		name         string
		def, own     *groupdef.FunctionRunAsConfig
		wantU, wantG string
	}{
		{"Uid-only override keeps the group's Gid", &groupdef.FunctionRunAsConfig{Uid: intp(1000), Gid: intp(2000)}, &groupdef.FunctionRunAsConfig{Uid: intp(3000)}, "3000", "2000"},
		{"Gid-only override keeps the group's Uid", &groupdef.FunctionRunAsConfig{Uid: intp(1000), Gid: intp(2000)}, &groupdef.FunctionRunAsConfig{Gid: intp(4000)}, "1000", "4000"},
		{"both overridden", &groupdef.FunctionRunAsConfig{Uid: intp(1000), Gid: intp(2000)}, &groupdef.FunctionRunAsConfig{Uid: intp(0), Gid: intp(0)}, "0", "0"},
		{"Uid-only override, group default without RunAs", nil, &groupdef.FunctionRunAsConfig{Uid: intp(3000)}, "3000", "default"},
		{"group default Gid only, no override", &groupdef.FunctionRunAsConfig{Gid: intp(2000)}, nil, "default", "2000"},
		{"empty override", &groupdef.FunctionRunAsConfig{Uid: intp(1000), Gid: intp(2000)}, &groupdef.FunctionRunAsConfig{}, "1000", "2000"},
	} {
		mode, u, g := effectiveExecution(group(tc.def), fn(tc.own))
		if mode != NoContainer || show(u) != tc.wantU || show(g) != tc.wantG {
			t.Errorf("%s: %s uid %s gid %s, want uid %s gid %s", tc.name, mode, show(u), show(g), tc.wantU, tc.wantG)
		}
	}
}

// MemorySize on a NoContainer function needs a writable memory cgroup:
// without one the deployment is refused naming the field.
func TestNoContainerMemoryRefused(t *testing.T) {
	if kb, err := noContainerMemory(65536, true, "cgroup v2 /sys/fs/cgroup/evergreen-runtime"); err != nil || kb != 65536 {
		t.Fatalf("with a cgroup: %d %v", kb, err)
	}
	s := testService(t) // no worker manager: no cgroup
	code := t.TempDir()
	if err := os.WriteFile(filepath.Join(code, "fn"), []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	const fnARN = "arn:aws:lambda:us-east-1:123456789012:function:fn:1"
	g := &groupdef.Group{Functions: &groupdef.FunctionDefinitionVersion{Functions: []groupdef.Function{{
		Id: "fn", FunctionArn: fnARN,
		FunctionConfiguration: &groupdef.FunctionConfiguration{MemorySize: intp(65536), Environment: &groupdef.FunctionConfigurationEnvironment{
			Execution: &groupdef.FunctionExecutionConfig{IsolationMode: NoContainer}}},
		Evergreen: &groupdef.FunctionExtension{Runtime: "executable", Handler: "fn", CodeUri: code},
	}}}}
	_, err := s.buildFunctions(g, &buildRun{preparing: true})
	want := "Functions[0].FunctionConfiguration.MemorySize (" + fnARN + "): 65536 KB: a NoContainer function's memory limit needs a writable memory cgroup, and this host has none"
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("got %v, want %q", err, want)
	}
	// Without MemorySize it builds, with no limit.
	g.Functions.Functions[0].FunctionConfiguration.MemorySize = nil
	fns, err := s.buildFunctions(g, &buildRun{preparing: true})
	if err != nil || len(fns) != 1 || fns[0].spec.MemoryKB != 0 {
		t.Fatalf("without MemorySize: %v %v", fns, err)
	}
}

// The environment of a function is exactly spec 1.1's set (with
// Evergreen's additions), for both isolation modes.
func TestEnvironment(t *testing.T) {
	s := testService(t, func(c *config.Config) {
		c.CoreThing.NetworkProxy = &config.NetworkProxy{NoProxyAddresses: "10.0.0.5,.corp", Proxy: config.Proxy{URL: "http://proxy.corp:3128", Username: "gg", Password: "p@ss"}}
	})
	s.shims = "/shims"
	const fnARN = "arn:aws:lambda:us-east-1:123456789012:function:fn:1"
	g := &groupdef.Group{Loggers: &groupdef.LoggerDefinitionVersion{Loggers: []groupdef.Logger{{Component: "Lambda", Type: "FileSystem", Level: "WARN"}}}}
	common := map[string]string{
		"PATH":                               "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"HOME":                               "/tmp",
		"MY_FUNCTION_ARN":                    fnARN,
		"SHADOW_FUNCTION_ARN":                "arn:aws:lambda:::function:GGShadowService",
		"ROUTER_FUNCTION_ARN":                "arn:aws:lambda:::function:GGRouter",
		"SECRETS_MANAGER_FUNCTION_ARN":       "arn:aws:lambda:::function:GGSecretManager:1",
		"GGC_MAX_INTERFACE_VERSION":          "1.5",
		"ENCODING_TYPE":                      "json",
		"GG_DAEMON_PORT":                     "8000",
		"AWS_CONTAINER_CREDENTIALS_FULL_URI": "http://localhost:8000/2016-11-01/credentialprovider/",
		"AWS_IOT_THING_NAME":                 "core-1",
		"STREAM_MANAGER_SERVER_PORT":         "8088",
		"AWS_GG_RESOURCE_PREFIX":             "/",
		"http_proxy":                         "http://gg:p%40ss@proxy.corp:3128",
		"https_proxy":                        "http://gg:p%40ss@proxy.corp:3128",
		"no_proxy":                           "localhost,127.0.0.1,10.0.0.5,.corp",
		"PYTHONPATH":                         "/shims/python",
		"NODE_PATH":                          "/shims/nodejs/node_modules",
		"EVERGREEN_FUNCTION_TIMEOUT_MS":      "5000",
		"EVERGREEN_LAMBDA_LOG_LEVEL":         "WARN",
		"MY_VAR":                             "mine",
	}
	with := func(extra map[string]string) map[string]string {
		m := map[string]string{}
		for k, v := range common {
			m[k] = v
		}
		for k, v := range extra {
			if v == "" {
				delete(m, k)
			} else {
				m[k] = v
			}
		}
		return m
	}
	for _, tc := range []struct {
		name string
		mode string
		cfg  groupdef.FunctionConfiguration
		vars map[string]string
		want map[string]string
	}{
		{"container, default memory", GreengrassContainer, groupdef.FunctionConfiguration{}, nil, with(map[string]string{"EVERGREEN_FUNCTION_MEMORY_MB": "16"})},
		{"container, MemorySize 65536", GreengrassContainer, groupdef.FunctionConfiguration{MemorySize: intp(65536)}, nil, with(map[string]string{"EVERGREEN_FUNCTION_MEMORY_MB": "64"})},
		{"NoContainer, no limit", NoContainer, groupdef.FunctionConfiguration{}, nil, common},
		{"NoContainer, own proxy wins", NoContainer, groupdef.FunctionConfiguration{},
			map[string]string{"http_proxy": "http://mine:1", "no_proxy": "*"},
			with(map[string]string{"http_proxy": "http://mine:1", "no_proxy": "*"})},
	} {
		cfg := tc.cfg
		vars := map[string]string{"MY_VAR": "mine"}
		for k, v := range tc.vars {
			vars[k] = v
		}
		cfg.Environment = &groupdef.FunctionConfigurationEnvironment{Variables: vars, Execution: &groupdef.FunctionExecutionConfig{IsolationMode: tc.mode}}
		memKB, err := s.functionMemory(tc.mode, &cfg)
		if err != nil {
			t.Fatal(err)
		}
		env := s.environment(g, &groupdef.Function{FunctionArn: fnARN}, &cfg, "json", 5*time.Second, memKB)
		got := map[string]string{}
		for _, kv := range env {
			k, v, _ := strings.Cut(kv, "=")
			if _, dup := got[k]; dup {
				t.Errorf("%s: %s twice", tc.name, k)
			}
			got[k] = v
		}
		for k, v := range tc.want {
			if got[k] != v {
				t.Errorf("%s: %s=%q, want %q", tc.name, k, got[k], v)
			}
		}
		for k, v := range got {
			if _, ok := tc.want[k]; !ok {
				t.Errorf("%s: unexpected %s=%q", tc.name, k, v)
			}
		}
	}
	// Without networkProxy: no proxy variables; without a Lambda
	// FileSystem logger: INFO.
	s2 := testService(t)
	env := s2.environment(&groupdef.Group{}, &groupdef.Function{FunctionArn: fnARN}, &groupdef.FunctionConfiguration{}, "json", time.Second, 0)
	for _, kv := range env {
		if strings.HasSuffix(strings.SplitN(kv, "=", 2)[0], "_proxy") {
			t.Errorf("proxy variable without networkProxy: %s", kv)
		}
	}
	if !slices.Contains(env, "EVERGREEN_LAMBDA_LOG_LEVEL=INFO") {
		t.Errorf("no Lambda FileSystem logger: %v", env)
	}
}

// A model attached to a container function is bound from the tree its
// DestinationPath links to, at DestinationPath, with the policy's
// permission, and its OwnerSetting group joins the worker's groups. At
// PREPARE a model the deployagent has not linked yet is skipped; at APPLY
// it refuses the function, as does a SageMaker model with nothing there.
func TestModelResources(t *testing.T) {
	dir := t.TempDir()
	tree := filepath.Join(dir, "models", "abc-1001-ro")
	if err := os.MkdirAll(tree, 0o755); err != nil {
		t.Fatal(err)
	}
	dest := filepath.Join(dir, "ml", "defects")
	os.MkdirAll(filepath.Dir(dest), 0o755)
	if err := os.Symlink(tree, dest); err != nil {
		t.Fatal(err)
	}
	smDest := t.TempDir() // a SageMaker model the user put in place
	src := &groupdef.ArtifactSource{Url: "file:///m.zip", Sha256: strings.Repeat("a", 64)}
	g := &groupdef.Group{Resources: &groupdef.ResourceDefinitionVersion{Resources: []groupdef.Resource{
		{Id: "model", ResourceDataContainer: &groupdef.ResourceDataContainer{S3MachineLearningModelResourceData: &groupdef.S3MachineLearningModelResourceData{
			DestinationPath: dest, OwnerSetting: &groupdef.ResourceDownloadOwnerSetting{GroupOwner: "1001", GroupPermission: "ro"}, Evergreen: src}}},
		{Id: "sm", ResourceDataContainer: &groupdef.ResourceDataContainer{SageMakerMachineLearningModelResourceData: &groupdef.SageMakerMachineLearningModelResourceData{
			DestinationPath: smDest, OwnerSetting: &groupdef.ResourceDownloadOwnerSetting{GroupOwner: "1002", GroupPermission: "rw"}}}},
		{Id: "unlinked", ResourceDataContainer: &groupdef.ResourceDataContainer{S3MachineLearningModelResourceData: &groupdef.S3MachineLearningModelResourceData{
			DestinationPath: filepath.Join(dir, "ml", "next"), Evergreen: src}}},
		{Id: "sm-missing", ResourceDataContainer: &groupdef.ResourceDataContainer{SageMakerMachineLearningModelResourceData: &groupdef.SageMakerMachineLearningModelResourceData{
			DestinationPath: filepath.Join(dir, "ml", "nothing")}}},
		{Id: "vol", ResourceDataContainer: &groupdef.ResourceDataContainer{LocalVolumeResourceData: &groupdef.LocalVolumeResourceData{
			SourcePath: dir, DestinationPath: "/data", GroupOwnerSetting: &groupdef.GroupOwnerSetting{GroupOwner: "root"}}}},
	}}}
	policies := func(ps ...groupdef.ResourceAccessPolicy) *groupdef.FunctionConfiguration {
		return &groupdef.FunctionConfiguration{Environment: &groupdef.FunctionConfigurationEnvironment{ResourceAccessPolicies: ps}}
	}
	cs, err := containerSpec(g, policies(
		groupdef.ResourceAccessPolicy{ResourceId: "model", Permission: "ro"},
		groupdef.ResourceAccessPolicy{ResourceId: "sm", Permission: "rw"},
		groupdef.ResourceAccessPolicy{ResourceId: "vol", Permission: "rw"},
	), []string{"/code"}, false)
	if err != nil {
		t.Fatal(err)
	}
	wantVolumes := []containerapi.Mount{
		{Source: tree, Dest: dest, ReadOnly: true},
		{Source: smDest, Dest: smDest, ReadOnly: false},
		{Source: dir, Dest: "/data", ReadOnly: false},
	}
	if !slices.Equal(cs.Volumes, wantVolumes) {
		t.Errorf("volumes %+v, want %+v", cs.Volumes, wantVolumes)
	}
	if !slices.Equal(cs.Groups, []int{0, 1001, 1002}) {
		t.Errorf("groups %v, want [0 1001 1002]", cs.Groups)
	}
	if !slices.Equal(cs.ReadOnlyBinds, []string{"/code"}) {
		t.Errorf("binds %v", cs.ReadOnlyBinds)
	}

	unlinked := policies(groupdef.ResourceAccessPolicy{ResourceId: "unlinked", Permission: "rw"})
	if cs, err := containerSpec(g, unlinked, nil, true); err != nil || len(cs.Volumes) != 0 {
		t.Errorf("PREPARE of a model linked at the switch: %+v %v", cs, err)
	}
	if _, err := containerSpec(g, unlinked, nil, false); err == nil || !strings.Contains(err.Error(), `resource "unlinked": DestinationPath`) {
		t.Errorf("APPLY of a model with nothing at DestinationPath: %v", err)
	}
	missing := policies(groupdef.ResourceAccessPolicy{ResourceId: "sm-missing"})
	for _, preparing := range []bool{true, false} {
		if _, err := containerSpec(g, missing, nil, preparing); err == nil || !strings.Contains(err.Error(), "Evergreen does not download SageMaker models") {
			t.Errorf("SageMaker model with nothing there (preparing %v): %v", preparing, err)
		}
	}
}

// A NoContainer function gets the OwnerSetting group of each model its
// policies name, once, sorted; volumes, devices and secrets add none.
func TestProcessGroups(t *testing.T) {
	src := &groupdef.ArtifactSource{Url: "file:///m.zip", Sha256: strings.Repeat("a", 64)}
	model := func(id, owner string) groupdef.Resource {
		return groupdef.Resource{Id: id, ResourceDataContainer: &groupdef.ResourceDataContainer{S3MachineLearningModelResourceData: &groupdef.S3MachineLearningModelResourceData{
			DestinationPath: "/ml/" + id, OwnerSetting: &groupdef.ResourceDownloadOwnerSetting{GroupOwner: owner, GroupPermission: "ro"}, Evergreen: src}}}
	}
	g := &groupdef.Group{Resources: &groupdef.ResourceDefinitionVersion{Resources: []groupdef.Resource{
		model("b", "2002"), model("a", "1001"), model("a2", "1001"),
		{Id: "sm", ResourceDataContainer: &groupdef.ResourceDataContainer{SageMakerMachineLearningModelResourceData: &groupdef.SageMakerMachineLearningModelResourceData{
			DestinationPath: "/ml/sm", OwnerSetting: &groupdef.ResourceDownloadOwnerSetting{GroupOwner: "root", GroupPermission: "rw"}}}},
		{Id: "vol", ResourceDataContainer: &groupdef.ResourceDataContainer{LocalVolumeResourceData: &groupdef.LocalVolumeResourceData{
			SourcePath: "/tmp", DestinationPath: "/data", GroupOwnerSetting: &groupdef.GroupOwnerSetting{GroupOwner: "root"}}}},
		model("bad", "no-such-group-evergreen"),
	}}}
	cfg := func(ids ...string) *groupdef.FunctionConfiguration {
		var ps []groupdef.ResourceAccessPolicy
		for _, id := range ids {
			ps = append(ps, groupdef.ResourceAccessPolicy{ResourceId: id, Permission: "ro"})
		}
		return &groupdef.FunctionConfiguration{Environment: &groupdef.FunctionConfigurationEnvironment{ResourceAccessPolicies: ps}}
	}
	got, err := processGroups(g, cfg("b", "a", "a2", "sm", "vol"))
	if err != nil || !slices.Equal(got, []int{0, 1001, 2002}) {
		t.Errorf("groups %v %v, want [0 1001 2002]", got, err)
	}
	if got, err := processGroups(g, &groupdef.FunctionConfiguration{}); err != nil || got != nil {
		t.Errorf("no policies: %v %v", got, err)
	}
	if _, err := processGroups(g, cfg("bad")); err == nil || !strings.Contains(err.Error(), `resource "bad": OwnerSetting: GroupOwner "no-such-group-evergreen"`) {
		t.Errorf("unknown group: %v", err)
	}
}
