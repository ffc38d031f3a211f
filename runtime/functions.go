package runtime

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/evergreen-edge/evergreen/runtime/code"
	"github.com/evergreen-edge/evergreen/runtime/containerapi"
	"github.com/evergreen-edge/evergreen/runtime/dispatch"
	"github.com/evergreen-edge/evergreen/runtime/worker"
	"github.com/evergreen-edge/evergreen/services/kit/arn"
	"github.com/evergreen-edge/evergreen/services/kit/groupdef"
)

// function is one user function of the group in force.
type function struct {
	arn       string
	name      string
	runtime   string
	handler   string
	isolation string
	pkg       code.Package
	dispatch  dispatch.Function
	spec      worker.Spec
}

// Isolation modes (FunctionExecutionConfig.IsolationMode).
const (
	NoContainer         = "NoContainer"
	GreengrassContainer = "GreengrassContainer"
)

// DefaultTimeout is v1's FunctionConfiguration.Timeout default.
const DefaultTimeout = 3 * time.Second

// A deployment reaches the runtime in two steps. PREPARE (prepareGroup)
// does everything that can refuse the group: each function's code is
// installed (code.Install is idempotent per content, so the code of the
// group in force is untouched and APPLY finds it in place), its command and
// container settings are built, and what the worker manager would refuse is
// checked. Nothing runs differently: workers and the dispatcher keep the
// group in force. APPLY (applyGroup) builds the same again and switches.

// prepareGroup is the runtime's PrepareFunc.
func (s *Service) prepareGroup(_ context.Context, g *groupdef.Group, _ string) error {
	_, err := s.build(g)
	return err
}

// applyGroup is the runtime's answer to a deployment: every function's
// code installs and every function can run here, or the group is refused
// with the reasons; then the dispatcher and the workers switch to it. A
// rollback switches to the functions that can run.
func (s *Service) applyGroup(_ context.Context, g *groupdef.Group, rollback bool) error {
	fns, err := s.build(g)
	if err != nil && !rollback {
		return err
	}
	if err != nil {
		s.log.Error("the group rolled back to has functions that cannot run; running the others", "err", err)
	}
	return s.switchTo(g, fns, rollback)
}

// switchTo puts fns, which build accepted, in force.
func (s *Service) switchTo(g *groupdef.Group, fns []*function, rollback bool) error {
	var dfs []dispatch.Function
	var specs []worker.Spec
	byARN := map[string]*function{}
	for _, f := range fns {
		dfs = append(dfs, f.dispatch)
		specs = append(specs, f.spec)
		byARN[f.arn] = f
	}
	if err := s.workers.SetFunctions(specs); err != nil && !rollback {
		return err
	}
	s.disp.SetFunctions(dfs)
	s.mu.Lock()
	s.group, s.functions = g, byARN
	s.mu.Unlock()
	return nil
}

// build installs the code of each user function and builds how to run it,
// refusing what the worker manager would refuse. It returns what can run
// and every problem, each naming its function. It starts and stops no
// worker.
func (s *Service) build(g *groupdef.Group) ([]*function, error) {
	fns, err := s.buildFunctions(g)
	ok, werr := s.runnable(fns)
	return ok, errors.Join(err, werr)
}

// runnable applies the checks of worker.Manager.SetFunctions, which refuses
// the whole list for one bad spec, so that they happen at PREPARE and a
// rollback can drop just the bad ones: a function listed twice, without a
// command or with a negative memory size, and one that would run as root
// (uid or gid 0) while runtime.allowFunctionsToRunAsRoot is not "yes"
// (v1's deployment error, worker.RootError).
func (s *Service) runnable(fns []*function) ([]*function, error) {
	allowRoot := s.env.Config.Runtime.AllowFunctionsToRunAsRoot == "yes"
	var ok []*function
	var errs []error
	var root []string
	seen := map[string]bool{}
	for _, f := range fns {
		sp := f.spec
		switch {
		case seen[sp.ARN]:
			errs = append(errs, fmt.Errorf("function %s is listed twice", sp.ARN))
			continue
		case len(sp.Argv) == 0 || sp.Argv[0] == "":
			errs = append(errs, fmt.Errorf("function %s has no command", sp.ARN))
			continue
		case sp.MemoryKB < 0:
			errs = append(errs, fmt.Errorf("function %s: MemorySize is negative", sp.ARN))
			continue
		}
		seen[sp.ARN] = true
		if uid, gid := effectiveIDs(sp); (uid == 0 || gid == 0) && !allowRoot {
			root = append(root, sp.ARN)
			continue
		}
		ok = append(ok, f)
	}
	if len(root) > 0 {
		errs = append(errs, &worker.RootError{ARNs: root})
	}
	return ok, errors.Join(errs...)
}

// effectiveIDs is who a worker runs as: the spec's ids, -1 meaning the
// daemon's own (as the worker manager reads them).
func effectiveIDs(sp worker.Spec) (uid, gid int) {
	uid, gid = sp.UID, sp.GID
	if uid < 0 {
		uid = os.Geteuid()
	}
	if gid < 0 {
		gid = os.Getegid()
	}
	return uid, gid
}

// buildFunctions installs the code of each user function and builds how to
// run it. It returns what can run and every problem, each naming its
// function.
func (s *Service) buildFunctions(g *groupdef.Group) ([]*function, error) {
	if g == nil || g.Functions == nil {
		return nil, nil
	}
	var out []*function
	var errs []error
	for i, gf := range g.Functions.Functions {
		if arn.IsSystemFunction(gf.FunctionArn) {
			continue // built into the core
		}
		f, err := s.buildOne(g, &gf)
		if err != nil {
			errs = append(errs, fmt.Errorf("Functions[%d] (%s): %w", i, gf.FunctionArn, err))
			continue
		}
		out = append(out, f)
	}
	return out, errors.Join(errs...)
}

func (s *Service) buildOne(g *groupdef.Group, gf *groupdef.Function) (*function, error) {
	fa, err := arn.ParseFunction(gf.FunctionArn)
	if err != nil {
		return nil, err
	}
	cfg := gf.FunctionConfiguration
	if cfg == nil {
		cfg = &groupdef.FunctionConfiguration{}
	}
	mode, runAs := effectiveExecution(g, cfg)
	if mode != NoContainer && mode != GreengrassContainer {
		return nil, fmt.Errorf("IsolationMode %q: want GreengrassContainer or NoContainer", mode)
	}
	ext := gf.Evergreen
	pkg, err := code.Install(s.env.Root.FunctionsDir(), fa.Name, ext, "")
	if err != nil {
		return nil, err
	}
	f := &function{arn: gf.FunctionArn, name: fa.Name, runtime: ext.Runtime, handler: ext.Handler, isolation: mode, pkg: pkg}
	timeout := DefaultTimeout
	if cfg.Timeout != nil && *cfg.Timeout > 0 {
		timeout = time.Duration(*cfg.Timeout) * time.Second
	}
	enc := strings.ToLower(cfg.EncodingType)
	if enc == "" {
		enc = "json"
	}
	argv, err := s.command(ext, pkg.Dir, cfg)
	if err != nil {
		return nil, err
	}
	if ext.Runtime == "executable" || ext.Runtime == "go" {
		enc = "binary" // v1: executables take binary payloads only
	}
	f.dispatch = dispatch.Function{ARN: gf.FunctionArn, Pinned: cfg.Pinned, Timeout: timeout, Encoding: enc}
	uid, gid := defaultIdentity()
	if runAs != nil {
		if runAs.Uid != nil {
			uid = *runAs.Uid
		}
		if runAs.Gid != nil {
			gid = *runAs.Gid
		}
	}
	f.spec = worker.Spec{
		ARN:         gf.FunctionArn,
		Pinned:      cfg.Pinned,
		Argv:        argv,
		Dir:         pkg.Dir,
		Env:         s.environment(gf, cfg, enc, timeout),
		UID:         uid,
		GID:         gid,
		LogFile:     filepath.Join(s.env.Root.LogsDir(), "user", fa.Name+".log"),
		MaxLogBytes: lambdaLogBytes(g),
	}
	if mode == GreengrassContainer {
		if _, err := s.containers(); err != nil {
			return nil, fmt.Errorf("IsolationMode GreengrassContainer: %w", err)
		}
		cs, err := containerSpec(g, cfg, []string{pkg.Dir, s.shims})
		if err != nil {
			return nil, err
		}
		f.spec.Container = cs
		f.spec.MemoryKB = DefaultMemoryKB
		if cfg.MemorySize != nil && *cfg.MemorySize > 0 {
			f.spec.MemoryKB = *cfg.MemorySize
		}
	}
	return f, nil
}

// DefaultMemoryKB is v1's MemorySize default for GreengrassContainer.
const DefaultMemoryKB = 16384

// containerSpec builds a GreengrassContainer worker's container settings:
// the function's code and the language runtimes bound read-only, /sys
// when AccessSysfs, and its local resources with their permissions and
// group owners.
func containerSpec(g *groupdef.Group, cfg *groupdef.FunctionConfiguration, binds []string) (*worker.ContainerSpec, error) {
	cs := &worker.ContainerSpec{ReadOnlyBinds: binds}
	env := cfg.Environment
	if env == nil {
		return cs, nil
	}
	cs.AccessSysfs = env.AccessSysfs
	byID := map[string]groupdef.Resource{}
	if g.Resources != nil {
		for _, r := range g.Resources.Resources {
			byID[r.Id] = r
		}
	}
	groups := map[int]bool{}
	for _, p := range env.ResourceAccessPolicies {
		r, ok := byID[p.ResourceId]
		if !ok || r.ResourceDataContainer == nil {
			return nil, fmt.Errorf("ResourceAccessPolicies: resource %q is not in the group", p.ResourceId)
		}
		ro := p.Permission != "rw"
		var owner *groupdef.GroupOwnerSetting
		var source string
		switch rd := r.ResourceDataContainer; {
		case rd.LocalDeviceResourceData != nil:
			source, owner = rd.LocalDeviceResourceData.SourcePath, rd.LocalDeviceResourceData.GroupOwnerSetting
			if err := checkDevice(source); err != nil {
				return nil, fmt.Errorf("resource %q: %w", p.ResourceId, err)
			}
			cs.Devices = append(cs.Devices, containerapi.Device{Path: source, ReadOnly: ro})
		case rd.LocalVolumeResourceData != nil:
			v := rd.LocalVolumeResourceData
			source, owner = v.SourcePath, v.GroupOwnerSetting
			// The container would not start without it: refuse the group
			// rather than restart a worker that cannot start.
			if _, err := os.Stat(source); err != nil {
				return nil, fmt.Errorf("resource %q: SourcePath: %w", p.ResourceId, err)
			}
			dest := v.DestinationPath
			if dest == "" {
				dest = v.SourcePath
			}
			cs.Volumes = append(cs.Volumes, containerapi.Mount{Source: v.SourcePath, Dest: dest, ReadOnly: ro})
		default:
			continue // machine-learning and secret resources: not local mounts
		}
		gid, err := groupOwner(owner, source)
		if err != nil {
			return nil, fmt.Errorf("resource %q: %w", p.ResourceId, err)
		}
		if gid >= 0 {
			groups[gid] = true
		}
	}
	for gid := range groups {
		cs.Groups = append(cs.Groups, gid)
	}
	return cs, nil
}

// checkDevice refuses a device resource whose source is not a character
// or block device on this host: its container would not start.
func checkDevice(path string) error {
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		return fmt.Errorf("SourcePath: %w", err)
	}
	if m := st.Mode & syscall.S_IFMT; m != syscall.S_IFCHR && m != syscall.S_IFBLK {
		return fmt.Errorf("SourcePath: %s is not a character or block device", path)
	}
	return nil
}

// groupOwner is the group a resource adds to the function's process:
// the owner of the source with AutoAddGroupOwner, or the named group.
func groupOwner(o *groupdef.GroupOwnerSetting, source string) (int, error) {
	switch {
	case o == nil:
		return -1, nil
	case o.AutoAddGroupOwner:
		var st syscall.Stat_t
		if err := syscall.Stat(source, &st); err != nil {
			return -1, fmt.Errorf("AutoAddGroupOwner: %w", err)
		}
		return int(st.Gid), nil
	case o.GroupOwner != "":
		g, err := user.LookupGroup(o.GroupOwner)
		if err != nil {
			return -1, fmt.Errorf("GroupOwner %q: %w", o.GroupOwner, err)
		}
		return strconv.Atoi(g.Gid)
	}
	return -1, nil
}

// DefaultFunctionLogBytes caps each function's log file when the group has
// no FileSystem logger for Lambda (one rotation: at most twice this on
// disk per function).
const DefaultFunctionLogBytes = 1 << 20

// lambdaLogBytes is the cap of each function's log: the Space (KB) of the
// group's FileSystem logger of Component Lambda, else the default.
func lambdaLogBytes(g *groupdef.Group) int64 {
	if g.Loggers != nil {
		for _, l := range g.Loggers.Loggers {
			if l.Component == "Lambda" && l.Type == "FileSystem" && l.Space != nil && *l.Space > 0 {
				return int64(*l.Space) << 10
			}
		}
	}
	return DefaultFunctionLogBytes
}

// effectiveExecution applies the group's DefaultConfig under the
// function's own execution settings (v1's default: GreengrassContainer).
func effectiveExecution(g *groupdef.Group, cfg *groupdef.FunctionConfiguration) (string, *groupdef.FunctionRunAsConfig) {
	mode := GreengrassContainer
	var runAs *groupdef.FunctionRunAsConfig
	if g.Functions.DefaultConfig != nil && g.Functions.DefaultConfig.Execution != nil {
		d := g.Functions.DefaultConfig.Execution
		if d.IsolationMode != "" {
			mode = d.IsolationMode
		}
		runAs = d.RunAs
	}
	if cfg.Environment != nil && cfg.Environment.Execution != nil {
		e := cfg.Environment.Execution
		if e.IsolationMode != "" {
			mode = e.IsolationMode
		}
		if e.RunAs != nil {
			runAs = e.RunAs
		}
	}
	return mode, runAs
}

// defaultIdentity is who functions run as when the group says nothing:
// v1's ggc_user/ggc_group when the host has them, else nobody/nogroup
// (65534); a daemon that is not root runs functions as itself (-1).
func defaultIdentity() (int, int) {
	if os.Geteuid() != 0 {
		return -1, -1
	}
	uid, gid := 65534, 65534
	if u, err := user.Lookup("ggc_user"); err == nil {
		uid, _ = strconv.Atoi(u.Uid)
		gid, _ = strconv.Atoi(u.Gid)
	}
	if g, err := user.LookupGroup("ggc_group"); err == nil {
		gid, _ = strconv.Atoi(g.Gid)
	}
	return uid, gid
}

// command is the worker's command line for the function's runtime.
func (s *Service) command(ext *groupdef.FunctionExtension, dir string, cfg *groupdef.FunctionConfiguration) ([]string, error) {
	switch {
	case ext.Runtime == "python2.7":
		py, err := exec.LookPath("python2.7")
		if err != nil {
			return nil, errors.New("Runtime python2.7: this host has no python2.7 (python 2 reached end of life in 2020); port the function to python3.8")
		}
		return []string{py, filepath.Join(s.shims, "python", "lambda_runtime.py"), "--handler=" + ext.Handler}, nil
	case strings.HasPrefix(ext.Runtime, "python3"):
		py := s.opts.Python
		if py == "" {
			p, err := hostInterpreter("python3")
			if err != nil {
				return nil, fmt.Errorf("Runtime %s: this host has no python3 (in /usr/bin, /usr/local/bin or on PATH)", ext.Runtime)
			}
			py = p
		}
		return []string{py, filepath.Join(s.shims, "python", "lambda_runtime.py"), "--handler=" + ext.Handler}, nil
	case strings.HasPrefix(ext.Runtime, "nodejs"):
		node := s.opts.Node
		if node == "" {
			p, err := hostInterpreter("node")
			if err != nil {
				return nil, fmt.Errorf("Runtime %s: this host has no node on PATH", ext.Runtime)
			}
			node = p
		}
		return []string{node, filepath.Join(s.shims, "nodejs", "lambda_nodejs_runtime.js"), "--handler=" + ext.Handler}, nil
	case ext.Runtime == "executable" || ext.Runtime == "go":
		return append([]string{filepath.Join(dir, ext.Handler)}, strings.Fields(cfg.ExecArgs)...), nil
	}
	return nil, fmt.Errorf("Runtime %s is not available in this runtime yet (python3.x, nodejs, executable and go are)", ext.Runtime)
}

// environment is what every worker of the function sees (spec 1.1); the
// worker manager adds AWS_CONTAINER_AUTHORIZATION_TOKEN.
func (s *Service) environment(gf *groupdef.Function, cfg *groupdef.FunctionConfiguration, enc string, timeout time.Duration) []string {
	_, port, _ := splitPort(s.env.Endpoints.IPC)
	_, streams, _ := splitPort(s.env.Endpoints.Streams)
	env := map[string]string{
		"PATH":                               "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"HOME":                               "/tmp",
		"MY_FUNCTION_ARN":                    gf.FunctionArn,
		"SHADOW_FUNCTION_ARN":                ShadowARN,
		"ROUTER_FUNCTION_ARN":                RouterARN,
		"SECRETS_MANAGER_FUNCTION_ARN":       SecretsARN,
		"GGC_MAX_INTERFACE_VERSION":          "1.5",
		"ENCODING_TYPE":                      enc,
		"GG_DAEMON_PORT":                     port,
		"AWS_CONTAINER_CREDENTIALS_FULL_URI": "http://localhost:" + port + "/2016-11-01/credentialprovider/",
		"AWS_IOT_THING_NAME":                 s.env.Config.CoreThingName(),
		"STREAM_MANAGER_SERVER_PORT":         streams,
		"PYTHONPATH":                         filepath.Join(s.shims, "python"),
		"NODE_PATH":                          filepath.Join(s.shims, "nodejs", "node_modules"),
		"EVERGREEN_FUNCTION_TIMEOUT_MS":      strconv.FormatInt(timeout.Milliseconds(), 10),
	}
	if cfg.Environment != nil {
		for k, v := range cfg.Environment.Variables {
			env[k] = v
		}
	}
	out := make([]string, 0, len(env))
	for k, v := range env {
		out = append(out, k+"="+v)
	}
	return out
}

func splitPort(hostport string) (string, string, error) {
	i := strings.LastIndex(hostport, ":")
	if i < 0 {
		return hostport, "", fmt.Errorf("%q has no port", hostport)
	}
	return hostport[:i], hostport[i+1:], nil
}

// hostInterpreter finds an interpreter that every function user can run:
// /usr/bin and /usr/local/bin first (a PATH entry under the daemon's home,
// such as pyenv's shims in /root, is not reachable by ggc_user or nobody),
// then PATH.
func hostInterpreter(name string) (string, error) {
	for _, dir := range []string{"/usr/bin", "/usr/local/bin"} {
		p := filepath.Join(dir, name)
		if st, err := os.Stat(p); err == nil && st.Mode()&0o001 != 0 {
			return p, nil
		}
	}
	return exec.LookPath(name)
}
