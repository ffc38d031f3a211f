package runtime

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/evergreen-edge/evergreen/runtime/code"
	"github.com/evergreen-edge/evergreen/runtime/containerapi"
	"github.com/evergreen-edge/evergreen/runtime/dispatch"
	"github.com/evergreen-edge/evergreen/runtime/worker"
	"github.com/evergreen-edge/evergreen/services/kit/arn"
	"github.com/evergreen-edge/evergreen/services/kit/config"
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
	_, err := s.build(g, true)
	return err
}

// applyGroup is the runtime's answer to a deployment: every function's
// code installs and every function can run here, or the group is refused
// with the reasons; then the dispatcher and the workers switch to it. A
// rollback switches to the functions that can run.
func (s *Service) applyGroup(_ context.Context, g *groupdef.Group, rollback bool) error {
	fns, err := s.build(g, false)
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
// worker. preparing is true at PREPARE, before the deployagent links the
// group's models at their DestinationPath.
func (s *Service) build(g *groupdef.Group, preparing bool) ([]*function, error) {
	fns, err := s.buildFunctions(g, &buildRun{preparing: preparing})
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

// buildRun is one build of a group: what it probes once for all its
// functions.
type buildRun struct {
	preparing bool

	py2Done bool
	py2     string
	py2Err  error
}

// fieldError is a problem with one field of a function, named by its path
// under Functions[i].
type fieldError struct {
	field string
	err   error
}

func (e *fieldError) Error() string { return e.field + ": " + e.err.Error() }
func (e *fieldError) Unwrap() error { return e.err }

// buildFunctions installs the code of each user function and builds how to
// run it. It returns what can run and every problem, each naming its
// function.
func (s *Service) buildFunctions(g *groupdef.Group, run *buildRun) ([]*function, error) {
	if g == nil || g.Functions == nil {
		return nil, nil
	}
	var out []*function
	var errs []error
	for i, gf := range g.Functions.Functions {
		if arn.IsSystemFunction(gf.FunctionArn) {
			continue // built into the core
		}
		f, err := s.buildOne(g, &gf, run)
		var fe *fieldError
		switch {
		case errors.As(err, &fe):
			errs = append(errs, fmt.Errorf("Functions[%d].%s (%s): %w", i, fe.field, gf.FunctionArn, fe.err))
			continue
		case err != nil:
			errs = append(errs, fmt.Errorf("Functions[%d] (%s): %w", i, gf.FunctionArn, err))
			continue
		}
		out = append(out, f)
	}
	return out, errors.Join(errs...)
}

func (s *Service) buildOne(g *groupdef.Group, gf *groupdef.Function, run *buildRun) (*function, error) {
	fa, err := arn.ParseFunction(gf.FunctionArn)
	if err != nil {
		return nil, err
	}
	cfg := gf.FunctionConfiguration
	if cfg == nil {
		cfg = &groupdef.FunctionConfiguration{}
	}
	mode, runUID, runGID := effectiveExecution(g, cfg)
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
	argv, err := s.command(ext, pkg.Dir, cfg, run)
	if err != nil {
		return nil, err
	}
	if ext.Runtime == "executable" || ext.Runtime == "go" {
		enc = "binary" // v1: executables take binary payloads only
	}
	f.dispatch = dispatch.Function{ARN: gf.FunctionArn, Pinned: cfg.Pinned, Timeout: timeout, Encoding: enc}
	uid, gid := defaultIdentity()
	if runUID != nil {
		uid = *runUID
	}
	if runGID != nil {
		gid = *runGID
	}
	memKB, err := s.functionMemory(mode, cfg)
	if err != nil {
		return nil, err
	}
	f.spec = worker.Spec{
		ARN:         gf.FunctionArn,
		Pinned:      cfg.Pinned,
		Argv:        argv,
		Dir:         pkg.Dir,
		Env:         s.environment(g, gf, cfg, enc, timeout, memKB),
		UID:         uid,
		GID:         gid,
		MemoryKB:    memKB,
		LogFile:     filepath.Join(s.env.Root.LogsDir(), "user", fa.Name+".log"),
		MaxLogBytes: lambdaLogBytes(g),
	}
	if mode == GreengrassContainer {
		if _, err := s.containers(); err != nil {
			return nil, fmt.Errorf("IsolationMode GreengrassContainer: %w", err)
		}
		cs, err := containerSpec(g, cfg, []string{pkg.Dir, s.shims}, run.preparing)
		if err != nil {
			return nil, err
		}
		f.spec.Container = cs
	} else if f.spec.Groups, err = processGroups(g, cfg); err != nil {
		return nil, err
	}
	return f, nil
}

// processGroups are a NoContainer function's supplementary groups: the
// OwnerSetting group of each machine-learning model its
// ResourceAccessPolicies name (v1 gives a non-containerized function a
// model only through that group; validation requires one). Other
// resources add none: devices and volumes are for containers, secrets are
// not files.
func processGroups(g *groupdef.Group, cfg *groupdef.FunctionConfiguration) ([]int, error) {
	if cfg.Environment == nil || g.Resources == nil {
		return nil, nil
	}
	byID := map[string]groupdef.Resource{}
	for _, r := range g.Resources.Resources {
		byID[r.Id] = r
	}
	var groups []int
	for _, p := range cfg.Environment.ResourceAccessPolicies {
		r, ok := byID[p.ResourceId]
		if !ok || r.ResourceDataContainer == nil {
			continue // validation names the missing resource
		}
		rd := r.ResourceDataContainer
		if rd.S3MachineLearningModelResourceData == nil && rd.SageMakerMachineLearningModelResourceData == nil {
			continue
		}
		_, owner, _ := modelData(rd)
		gid, err := modelGroup(owner)
		if err != nil {
			return nil, fmt.Errorf("resource %q: OwnerSetting: %w", p.ResourceId, err)
		}
		if gid >= 0 && !slices.Contains(groups, gid) {
			groups = append(groups, gid)
		}
	}
	slices.Sort(groups) // a stable spec: the same groups restart nothing
	return groups, nil
}

// functionMemory is the function's memory limit in KB (0 = none):
// MemorySize, 16384 by default in a container; a NoContainer function has
// one only when it gives MemorySize.
func (s *Service) functionMemory(mode string, cfg *groupdef.FunctionConfiguration) (int, error) {
	switch {
	case mode == GreengrassContainer && cfg.MemorySize != nil && *cfg.MemorySize > 0:
		return *cfg.MemorySize, nil
	case mode == GreengrassContainer:
		return DefaultMemoryKB, nil
	case cfg.MemorySize != nil && *cfg.MemorySize > 0:
		enforced, why := s.memoryLimits()
		return noContainerMemory(*cfg.MemorySize, enforced, why)
	}
	return 0, nil
}

// memoryLimits tells whether the worker manager enforces memory limits on
// processes (a writable memory cgroup), and how or why not.
func (s *Service) memoryLimits() (bool, string) {
	if s.workers == nil {
		return false, "the worker manager is not running"
	}
	return s.workers.MemoryLimits()
}

// noContainerMemory is the memory limit of a NoContainer function with
// MemorySize kb: an Evergreen extension (v1 wants MemorySize cleared for
// NoContainer) that the worker applies through a memory cgroup, so a host
// without a writable one refuses the function.
func noContainerMemory(kb int, enforced bool, why string) (int, error) {
	if !enforced {
		return 0, &fieldError{"FunctionConfiguration.MemorySize", fmt.Errorf(
			"%d KB: a NoContainer function's memory limit needs a writable memory cgroup, and this host has none (%s); remove MemorySize or run the function in GreengrassContainer", kb, why)}
	}
	return kb, nil
}

// DefaultMemoryKB is v1's MemorySize default for GreengrassContainer.
const DefaultMemoryKB = 16384

// containerSpec builds a GreengrassContainer worker's container settings:
// the function's code and the language runtimes bound read-only, /sys
// when AccessSysfs, its local resources with their permissions and group
// owners, and its machine-learning models: the directory the model's
// DestinationPath links to (the deployagent's unpacked tree) bound at
// DestinationPath with the policy's permission, with OwnerSetting's group
// added. Resolving the link puts the tree in the spec, so a new model
// restarts the function's workers. At PREPARE (preparing) an S3 model
// with an Evergreen source may not be linked yet: the deployagent links it
// at the switch, before APPLY.
func containerSpec(g *groupdef.Group, cfg *groupdef.FunctionConfiguration, binds []string, preparing bool) (*worker.ContainerSpec, error) {
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
		case rd.S3MachineLearningModelResourceData != nil || rd.SageMakerMachineLearningModelResourceData != nil:
			dest, ownerSetting, linked := modelData(rd)
			tree, err := filepath.EvalSymlinks(dest)
			switch {
			case err != nil && preparing && linked && errors.Is(err, fs.ErrNotExist):
				continue // linked at the switch
			case err != nil && linked:
				return nil, fmt.Errorf("resource %q: DestinationPath: %w (the deployagent links the model there when the group switches)", p.ResourceId, err)
			case err != nil:
				return nil, fmt.Errorf("resource %q: DestinationPath: %w (Evergreen does not download SageMaker models: put the model there)", p.ResourceId, err)
			}
			cs.Volumes = append(cs.Volumes, containerapi.Mount{Source: tree, Dest: dest, ReadOnly: ro})
			gid, err := modelGroup(ownerSetting)
			if err != nil {
				return nil, fmt.Errorf("resource %q: OwnerSetting: %w", p.ResourceId, err)
			}
			if gid >= 0 {
				groups[gid] = true
			}
			continue
		default:
			continue // secrets: not mounts
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
	slices.Sort(cs.Groups) // a stable spec: the same group restarts nothing
	return cs, nil
}

// modelData is a machine-learning resource's DestinationPath and owner,
// and whether the deployagent links a model there (an S3 model with an
// Evergreen source).
func modelData(rd *groupdef.ResourceDataContainer) (dest string, owner *groupdef.ResourceDownloadOwnerSetting, linked bool) {
	if m := rd.S3MachineLearningModelResourceData; m != nil {
		return m.DestinationPath, m.OwnerSetting, m.Evergreen != nil
	}
	m := rd.SageMakerMachineLearningModelResourceData
	return m.DestinationPath, m.OwnerSetting, false
}

// modelGroup is the gid of a model's OwnerSetting GroupOwner (a group name
// or a GID), -1 without one.
func modelGroup(o *groupdef.ResourceDownloadOwnerSetting) (int, error) {
	if o == nil || o.GroupOwner == "" {
		return -1, nil
	}
	if gid, err := strconv.Atoi(o.GroupOwner); err == nil && gid >= 0 {
		return gid, nil
	}
	g, err := user.LookupGroup(o.GroupOwner)
	if err != nil {
		return -1, fmt.Errorf("GroupOwner %q: %w", o.GroupOwner, err)
	}
	return strconv.Atoi(g.Gid)
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

// lambdaLogLevel is the Level of the group's FileSystem logger of
// Component Lambda, else v1's default INFO. The Python shim writes the
// function's logging records below it to neither stdout nor the log file.
func lambdaLogLevel(g *groupdef.Group) string {
	if g.Loggers != nil {
		for _, l := range g.Loggers.Loggers {
			if l.Component == "Lambda" && l.Type == "FileSystem" && l.Level != "" {
				return l.Level
			}
		}
	}
	return "INFO"
}

// effectiveExecution applies the group's DefaultConfig under the
// function's own execution settings (v1's default: GreengrassContainer).
// Uid and Gid fall back separately, as in v1: a function's RunAs that
// gives only Uid keeps the group default's Gid. A nil id is not given
// (the built-in default, defaultIdentity, applies).
func effectiveExecution(g *groupdef.Group, cfg *groupdef.FunctionConfiguration) (mode string, uid, gid *int) {
	mode = GreengrassContainer
	if g.Functions != nil && g.Functions.DefaultConfig != nil && g.Functions.DefaultConfig.Execution != nil {
		d := g.Functions.DefaultConfig.Execution
		if d.IsolationMode != "" {
			mode = d.IsolationMode
		}
		if d.RunAs != nil {
			uid, gid = d.RunAs.Uid, d.RunAs.Gid
		}
	}
	if cfg.Environment != nil && cfg.Environment.Execution != nil {
		e := cfg.Environment.Execution
		if e.IsolationMode != "" {
			mode = e.IsolationMode
		}
		if e.RunAs != nil && e.RunAs.Uid != nil {
			uid = e.RunAs.Uid
		}
		if e.RunAs != nil && e.RunAs.Gid != nil {
			gid = e.RunAs.Gid
		}
	}
	return mode, uid, gid
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

// command is the worker's command line for the function's runtime:
// python3.N runs on the host's python3.N when /usr/bin or /usr/local/bin
// has it, else on the host's python3; nodejsN.x (and nodejs8.10) on the
// host's node; python2.7 only on a python2.7 that runs and imports
// Evergreen's Python shims (probed once per build).
func (s *Service) command(ext *groupdef.FunctionExtension, dir string, cfg *groupdef.FunctionConfiguration, run *buildRun) ([]string, error) {
	switch {
	case ext.Runtime == "python2.7":
		py, err := run.python2(s.shims)
		if err != nil {
			return nil, err
		}
		return []string{py, filepath.Join(s.shims, "python", "lambda_runtime.py"), "--handler=" + ext.Handler}, nil
	case strings.HasPrefix(ext.Runtime, "python3"):
		py := s.opts.Python
		if py == "" {
			py = systemInterpreter(ext.Runtime)
		}
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

// probeTimeout bounds each run of the python2.7 probe.
const probeTimeout = 5 * time.Second

// python2 finds the host's python2.7 and checks, once per build, that it
// runs and imports lambda_runtime from the shims: Evergreen's Python shims
// are Python 3, so a real Python 2 is refused, and so is a python2.7 that
// does not run (such as a pyenv shim without that version installed).
func (run *buildRun) python2(shims string) (string, error) {
	if run.py2Done {
		return run.py2, run.py2Err
	}
	run.py2Done = true
	run.py2, run.py2Err = probePython2(shims)
	return run.py2, run.py2Err
}

func probePython2(shims string) (string, error) {
	py, err := hostInterpreter("python2.7")
	if err != nil {
		return "", errors.New("Runtime python2.7: this host has no working python2.7 (none in /usr/bin, /usr/local/bin or on PATH); port the function to python3.8 or later")
	}
	if out, err := probe(py, "import sys; sys.stdout.write('%d.%d' % sys.version_info[:2])"); err != nil {
		return "", fmt.Errorf("Runtime python2.7: this host has no working python2.7 (%s does not run: %s); port the function to python3.8 or later", py, firstLine(out, err))
	}
	if out, err := probe(py, "import sys; sys.path.insert(0, sys.argv[1]); import lambda_runtime", filepath.Join(shims, "python")); err != nil {
		return "", fmt.Errorf("Runtime python2.7: the Python of %s cannot run Evergreen's Python 3 runtime shims (%s); port the function to python3.8 or later", py, lastLine(out, err))
	}
	return py, nil
}

func probe(py, script string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), probeTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, py, append([]string{"-c", script}, args...)...)
	cmd.WaitDelay = time.Second
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		err = fmt.Errorf("no answer within %v", probeTimeout)
	}
	return out, err
}

// firstLine is the first line a failed probe printed (what a launcher
// says), else its error.
func firstLine(out []byte, err error) string {
	line, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	if line = strings.TrimSpace(line); line != "" {
		return line
	}
	return err.Error()
}

// lastLine is the last line a failed probe printed (a Python traceback's
// exception), else its error.
func lastLine(out []byte, err error) string {
	text := strings.TrimSpace(string(out))
	if line := strings.TrimSpace(text[strings.LastIndexByte(text, '\n')+1:]); line != "" {
		return line
	}
	return err.Error()
}

// systemInterpreter is name in /usr/bin or /usr/local/bin, executable by
// everyone, or "" (PATH is not searched: a versioned name there is often a
// version manager's shim under the daemon's home).
func systemInterpreter(name string) string {
	for _, dir := range []string{"/usr/bin", "/usr/local/bin"} {
		p := filepath.Join(dir, name)
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() && st.Mode()&0o001 != 0 {
			return p
		}
	}
	return ""
}

// environment is what every worker of the function sees (spec 1.1); the
// worker manager adds AWS_CONTAINER_AUTHORIZATION_TOKEN. Besides v1's:
// AWS_GG_RESOURCE_PREFIX is "/" in both isolation modes (models are linked
// at their DestinationPath on the host and bound there in a container);
// http_proxy, https_proxy and no_proxy come from coreThing.networkProxy
// (no_proxy always keeps localhost and 127.0.0.1, where the IPC is);
// EVERGREEN_FUNCTION_TIMEOUT_MS, EVERGREEN_FUNCTION_MEMORY_MB (when the
// function has a memory limit) and EVERGREEN_LAMBDA_LOG_LEVEL (the Lambda
// FileSystem logger's Level) are read by the language shims. The
// function's own Variables win over all of them.
func (s *Service) environment(g *groupdef.Group, gf *groupdef.Function, cfg *groupdef.FunctionConfiguration, enc string, timeout time.Duration, memKB int) []string {
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
		"EVERGREEN_LAMBDA_LOG_LEVEL":         lambdaLogLevel(g),
		"AWS_GG_RESOURCE_PREFIX":             "/",
	}
	if memKB > 0 {
		env["EVERGREEN_FUNCTION_MEMORY_MB"] = strconv.Itoa((memKB + 1023) / 1024)
	}
	if np := s.env.Config.CoreThing.NetworkProxy; np != nil && np.Proxy.URL != "" {
		proxy := proxyURL(np.Proxy)
		env["http_proxy"], env["https_proxy"] = proxy, proxy
		noProxy := "localhost,127.0.0.1"
		if np.NoProxyAddresses != "" {
			noProxy += "," + np.NoProxyAddresses
		}
		env["no_proxy"] = noProxy
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

// proxyURL is the proxy's URL with its basic-auth credentials in it, as
// http_proxy carries them.
func proxyURL(p config.Proxy) string {
	if p.Username == "" {
		return p.URL
	}
	u, err := url.Parse(p.URL)
	if err != nil {
		return p.URL
	}
	u.User = url.UserPassword(p.Username, p.Password)
	return u.String()
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
