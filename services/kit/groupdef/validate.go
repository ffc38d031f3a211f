package groupdef

import (
	"fmt"
	"net/url"
	"path"
	"slices"
	"sort"
	"strings"
	"unicode"

	"github.com/evergreen-edge/evergreen/services/kit/arn"
	"github.com/evergreen-edge/evergreen/services/kit/topic"
)

// Quotas of a v1 group (AWS General Reference, "AWS IoT Greengrass V1
// endpoints and quotas", core 1.11).
const (
	MaxDevices                  = 2500
	MaxSubscriptions            = 10000
	MaxCloudSourceSubscriptions = 50 // one AWS IoT subscription each
	MaxFunctions                = 200
	MaxResources                = 200
	MaxResourcesPerFunction     = 20
	MaxCoreThingNameBytes       = 124
)

// Function limits and the defaults v1 applies when a field is absent.
const (
	MaxTimeout          = 900   // seconds
	DefaultTimeout      = 3     // seconds
	DefaultMemorySize   = 16384 // KB
	DefaultEncodingType = "json"
	maxIDLength         = 128
)

// Isolation modes.
const (
	GreengrassContainer = "GreengrassContainer"
	NoContainer         = "NoContainer"
)

// Runtimes are the fixed runtime names accepted in a function's Evergreen
// block; RuntimeSupported also accepts python3.N (N >= 7) and nodejsN.x
// (N >= 12).
var Runtimes = []string{"python3.8", "python3.7", "python2.7", "nodejs12.x", "nodejs8.10", "java8", "executable", "go"}

// runtimesText lists what RuntimeSupported accepts, for error messages.
const runtimesText = "python3.7 or later (python3.N), python2.7, nodejs12.x or later (nodejsN.x), nodejs8.10, java8, executable or go"

// RuntimeSupported reports whether name is a runtime a function may give:
// one of Runtimes, python3.N with N >= 7, or nodejsN.x with N >= 12
// (v1's python3.7, python3.8 and nodejs12.x, and their successors, which
// map to the host's python3 and node).
func RuntimeSupported(name string) bool {
	if slices.Contains(Runtimes, name) {
		return true
	}
	if n, ok := strings.CutPrefix(name, "python3."); ok {
		v, ok := decimal(n)
		return ok && v >= 7
	}
	if rest, ok := strings.CutPrefix(name, "nodejs"); ok {
		n, ok := strings.CutSuffix(rest, ".x")
		if !ok {
			return false
		}
		v, ok := decimal(n)
		return ok && v >= 12
	}
	return false
}

// decimal parses 1 to 3 digits without a leading zero.
func decimal(s string) (int, bool) {
	if s == "" || len(s) > 3 || (s[0] == '0' && len(s) > 1) {
		return 0, false
	}
	v := 0
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
		v = v*10 + int(s[i]-'0')
	}
	return v, true
}

var (
	isolationModes  = []string{GreengrassContainer, NoContainer}
	encodingTypes   = []string{"json", "binary"}
	permissions     = []string{"ro", "rw"}
	logComponents   = []string{"GreengrassSystem", "Lambda"}
	logLevels       = []string{"DEBUG", "INFO", "WARN", "ERROR", "FATAL"}
	logTypes        = []string{"FileSystem", "AWSCloudWatch"}
	containerFields = []string{"LocalDeviceResourceData", "LocalVolumeResourceData", "S3MachineLearningModelResourceData", "SageMakerMachineLearningModelResourceData", "SecretsManagerSecretResourceData"}
)

type validator struct {
	errs []FieldError
	bad  map[string]bool // paths that failed to decode: no follow-on complaints at or below them
}

func (v *validator) add(p, format string, args ...any) {
	if v.suppressed(p) {
		return
	}
	v.errs = append(v.errs, FieldError{Path: p, Message: fmt.Sprintf(format, args...)})
}

func (v *validator) suppressed(p string) bool {
	if len(v.bad) == 0 {
		return false
	}
	for i := 0; i <= len(p); i++ {
		if (i == len(p) || p[i] == '.' || p[i] == '[') && v.bad[p[:i]] {
			return true
		}
	}
	return false
}

func at(list string, i int) string { return fmt.Sprintf("%s[%d]", list, i) }

// resourceRef is what a function's ResourceAccessPolicy may point at.
type resourceRef struct {
	path   string
	kind   string // the ResourceDataContainer field that is set
	owner  bool   // ML resources: OwnerSetting given
	devShm bool   // volume of /dev/shm
}

func (v *validator) group(g *Group) {
	v.core(g)
	v.devices(g)
	res := v.resources(g)
	v.functions(g, res)
	v.connectors(g)
	v.subscriptions(g)
	v.loggers(g)
}

func (v *validator) id(p, id string, seen map[string]string, owner string) {
	switch {
	case id == "":
		v.add(p, "required")
	case len(id) > maxIDLength:
		v.add(p, "is %d characters, the limit is %d", len(id), maxIDLength)
	case !idChars(id):
		v.add(p, "%q may only contain letters, digits, ':', '_' and '-'", id)
	case seen[id] != "":
		v.add(p, "%q is already the Id of %s; Ids are unique within a list", id, seen[id])
	default:
		seen[id] = owner
	}
}

func idChars(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == ':' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

func (v *validator) required(p, val string) bool {
	if val == "" {
		v.add(p, "required")
		return false
	}
	return true
}

func (v *validator) enum(p, val string, required bool, allowed []string) {
	if val == "" {
		if required {
			v.add(p, "required; one of %s", strings.Join(allowed, ", "))
		}
		return
	}
	if !slices.Contains(allowed, val) {
		v.add(p, "%q is not one of %s", val, strings.Join(allowed, ", "))
	}
}

func (v *validator) certificate(p, s string) {
	if !v.required(p, s) {
		return
	}
	if _, err := arn.ParseCertificate(s); err != nil {
		v.add(p, "%v", err)
	}
}

func (v *validator) core(g *Group) {
	if g.Core == nil {
		v.add("Core", "required: a group has exactly one core")
		return
	}
	if n := len(g.Core.Cores); n != 1 {
		v.add("Core.Cores", "a group has exactly one core, found %d", n)
	}
	ids := map[string]string{}
	for i, c := range g.Core.Cores {
		p := at("Core.Cores", i)
		v.id(p+".Id", c.Id, ids, p)
		if v.required(p+".ThingArn", c.ThingArn) {
			if th, err := arn.ParseThing(c.ThingArn); err != nil {
				v.add(p+".ThingArn", "%v", err)
			} else if len(th.Name) > MaxCoreThingNameBytes {
				v.add(p+".ThingArn", "core thing name is %d bytes, the quota is %d", len(th.Name), MaxCoreThingNameBytes)
			}
		}
		v.certificate(p+".CertificateArn", c.CertificateArn)
	}
}

func (v *validator) devices(g *Group) {
	if g.Devices == nil {
		return
	}
	if n := len(g.Devices.Devices); n > MaxDevices {
		v.add("Devices", "quota exceeded: %d devices, the limit is %d per group", n, MaxDevices)
	}
	ids, things := map[string]string{}, map[string]string{}
	for i, d := range g.Devices.Devices {
		p := at("Devices", i)
		v.id(p+".Id", d.Id, ids, p)
		if v.required(p+".ThingArn", d.ThingArn) {
			if _, err := arn.ParseThing(d.ThingArn); err != nil {
				v.add(p+".ThingArn", "%v", err)
			} else if prev := things[d.ThingArn]; prev != "" {
				v.add(p+".ThingArn", "thing %q is already %s; a thing joins a group once", d.ThingArn, prev)
			} else {
				things[d.ThingArn] = p
			}
		}
		v.certificate(p+".CertificateArn", d.CertificateArn)
	}
}

// under reports whether the absolute path p is dir or below it, after
// resolving "." and ".." so that /tmp/../sys counts as /sys.
func under(p, dir string) bool {
	c := path.Clean(p)
	return c == dir || strings.HasPrefix(c, dir+"/")
}

func (v *validator) absolute(p, val string) bool {
	if !v.required(p, val) {
		return false
	}
	if !strings.HasPrefix(val, "/") {
		v.add(p, "%q is not an absolute path", val)
		return false
	}
	return true
}

func (v *validator) resources(g *Group) map[string]resourceRef {
	refs := map[string]resourceRef{}
	if g.Resources == nil {
		return refs
	}
	if n := len(g.Resources.Resources); n > MaxResources {
		v.add("Resources", "quota exceeded: %d resources, the limit is %d per group", n, MaxResources)
	}
	ids, names, secrets := map[string]string{}, map[string]string{}, map[string]string{}
	for i, r := range g.Resources.Resources {
		p := at("Resources", i)
		v.id(p+".Id", r.Id, ids, p)
		switch {
		case r.Name == "":
			v.add(p+".Name", "required")
		case len(r.Name) > maxIDLength:
			v.add(p+".Name", "is %d characters, the limit is %d", len(r.Name), maxIDLength)
		case !idChars(r.Name):
			v.add(p+".Name", "%q may only contain letters, digits, ':', '_' and '-'", r.Name)
		case names[r.Name] != "":
			v.add(p+".Name", "%q is already the Name of %s; resource names are unique in a group", r.Name, names[r.Name])
		default:
			names[r.Name] = p
		}
		cp := p + ".ResourceDataContainer"
		c := r.ResourceDataContainer
		if c == nil {
			v.add(cp, "required; holds one of %s", strings.Join(containerFields, ", "))
			continue
		}
		set := containerKinds(c)
		switch len(set) {
		case 0:
			v.add(cp, "holds no data; set exactly one of %s", strings.Join(containerFields, ", "))
			continue
		case 1:
		default:
			v.add(cp, "holds %s; a resource holds exactly one kind of data", strings.Join(set, " and "))
			continue
		}
		ref := resourceRef{path: p, kind: set[0]}
		kp := cp + "." + set[0]
		switch {
		case c.LocalDeviceResourceData != nil:
			d := c.LocalDeviceResourceData
			if v.absolute(kp+".SourcePath", d.SourcePath) {
				switch {
				case under(d.SourcePath, "/dev/shm"):
					v.add(kp+".SourcePath", "/dev/shm is shared memory, not a device; declare it as a LocalVolumeResourceData attached rw")
				case !under(d.SourcePath, "/dev") || path.Clean(d.SourcePath) == "/dev":
					v.add(kp+".SourcePath", "%q is not under /dev; a device resource is a character or block device such as /dev/ttyUSB0", d.SourcePath)
				}
			}
			v.groupOwner(kp+".GroupOwnerSetting", d.GroupOwnerSetting)
		case c.LocalVolumeResourceData != nil:
			d := c.LocalVolumeResourceData
			if v.absolute(kp+".SourcePath", d.SourcePath) {
				switch {
				case under(d.SourcePath, "/sys"):
					v.add(kp+".SourcePath", "%q is under /sys, which cannot be a volume", d.SourcePath)
				case under(d.SourcePath, "/var"):
					v.add(kp+".SourcePath", "%q is under /var, which cannot be a volume; bind-mount it elsewhere and use that path", d.SourcePath)
				case under(d.SourcePath, "/dev/shm"):
					ref.devShm = true
				case under(d.SourcePath, "/dev"):
					v.add(kp+".SourcePath", "%q is under /dev; declare devices as LocalDeviceResourceData (only /dev/shm may be a volume)", d.SourcePath)
				}
			}
			v.absolute(kp+".DestinationPath", d.DestinationPath)
			v.groupOwner(kp+".GroupOwnerSetting", d.GroupOwnerSetting)
		case c.S3MachineLearningModelResourceData != nil:
			d := c.S3MachineLearningModelResourceData
			v.absolute(kp+".DestinationPath", d.DestinationPath)
			if v.required(kp+".S3Uri", d.S3Uri) {
				if err := checkS3URI(d.S3Uri); err != nil {
					v.add(kp+".S3Uri", "%v", err)
				}
			}
			v.ownerSetting(kp+".OwnerSetting", d.OwnerSetting)
			ref.owner = d.OwnerSetting != nil
			if d.Evergreen == nil {
				v.add(kp+".Evergreen", "required: Evergreen cannot download from S3 (a core has no AWS credentials for S3Uri); "+
					`add {"Url": "https://... or file:///...", "Sha256": "<SHA-256 of the archive>"} saying where this core fetches the .tar.gz or .zip model`)
			}
			if e := d.Evergreen; e != nil {
				if v.required(kp+".Evergreen.Url", e.Url) {
					if err := checkArtifactURL(e.Url); err != nil {
						v.add(kp+".Evergreen.Url", "%v", err)
					}
				}
				if v.required(kp+".Evergreen.Sha256", e.Sha256) && !lowerHex64(e.Sha256) {
					v.add(kp+".Evergreen.Sha256", "%q is not 64 lowercase hex digits (the SHA-256 of the archive)", e.Sha256)
				}
				if e.Size < 0 {
					v.add(kp+".Evergreen.Size", "is %d; must be 0 (unknown) or the archive's size in bytes", e.Size)
				}
			}
		case c.SageMakerMachineLearningModelResourceData != nil:
			d := c.SageMakerMachineLearningModelResourceData
			v.absolute(kp+".DestinationPath", d.DestinationPath)
			if v.required(kp+".SageMakerJobArn", d.SageMakerJobArn) {
				v.serviceARN(kp+".SageMakerJobArn", d.SageMakerJobArn, "sagemaker", "training-job/", "SageMaker training job")
			}
			v.ownerSetting(kp+".OwnerSetting", d.OwnerSetting)
			ref.owner = d.OwnerSetting != nil
		case c.SecretsManagerSecretResourceData != nil:
			d := c.SecretsManagerSecretResourceData
			if v.required(kp+".ARN", d.ARN) && v.serviceARN(kp+".ARN", d.ARN, "secretsmanager", "secret:", "Secrets Manager secret") {
				if prev := secrets[d.ARN]; prev != "" {
					v.add(kp+".ARN", "secret %q is already used by %s; a secret may be referenced once per group", d.ARN, prev)
				} else {
					secrets[d.ARN] = p
				}
			}
			for j, l := range d.AdditionalStagingLabelsToDownload {
				if l == "" {
					v.add(at(kp+".AdditionalStagingLabelsToDownload", j), "empty staging label")
				}
			}
		}
		if r.Id != "" {
			if _, dup := refs[r.Id]; !dup {
				refs[r.Id] = ref
			}
		}
	}
	return refs
}

func containerKinds(c *ResourceDataContainer) []string {
	var set []string
	for i, present := range []bool{
		c.LocalDeviceResourceData != nil,
		c.LocalVolumeResourceData != nil,
		c.S3MachineLearningModelResourceData != nil,
		c.SageMakerMachineLearningModelResourceData != nil,
		c.SecretsManagerSecretResourceData != nil,
	} {
		if present {
			set = append(set, containerFields[i])
		}
	}
	return set
}

func (v *validator) serviceARN(p, s, service, resourcePrefix, what string) bool {
	a, err := arn.Parse(s)
	switch {
	case err != nil:
		v.add(p, "%v", err)
	case a.Service != service || a.Region == "" || a.Account == "" || !strings.HasPrefix(a.Resource, resourcePrefix) || len(a.Resource) == len(resourcePrefix):
		v.add(p, "%q is not a %s ARN (arn:aws:%s:<region>:<account>:%s<name>)", s, what, service, resourcePrefix)
	default:
		return true
	}
	return false
}

func checkS3URI(s string) error {
	rest, ok := strings.CutPrefix(s, "s3://")
	bucket, key, _ := strings.Cut(rest, "/")
	switch {
	case !ok || bucket == "" || key == "":
		return fmt.Errorf("%q is not an S3 URI (s3://<bucket>/<key>)", s)
	case !strings.HasSuffix(key, ".tar.gz") && !strings.HasSuffix(key, ".zip"):
		return fmt.Errorf("%q is not a .tar.gz or .zip model archive", s)
	}
	return nil
}

func (v *validator) groupOwner(p string, s *GroupOwnerSetting) {
	if s != nil && s.GroupOwner != "" && !linuxGroupName(s.GroupOwner) {
		v.add(p+".GroupOwner", "%q is not a Linux group name", s.GroupOwner)
	}
}

func (v *validator) ownerSetting(p string, s *ResourceDownloadOwnerSetting) {
	if s == nil {
		return
	}
	if v.required(p+".GroupOwner", s.GroupOwner) && !linuxGroupName(s.GroupOwner) {
		v.add(p+".GroupOwner", "%q is not a Linux group name or GID", s.GroupOwner)
	}
	v.enum(p+".GroupPermission", s.GroupPermission, true, permissions)
}

// linuxGroupName refuses what would corrupt /etc/group or a command line.
func linuxGroupName(s string) bool {
	return !strings.ContainsFunc(s, func(r rune) bool { return r == ':' || unicode.IsSpace(r) || unicode.IsControl(r) })
}

func (v *validator) runAs(p string, r *FunctionRunAsConfig) {
	if r == nil {
		return
	}
	if r.Uid != nil && *r.Uid < 0 {
		v.add(p+".Uid", "is %d; must be 0 or greater", *r.Uid)
	}
	if r.Gid != nil && *r.Gid < 0 {
		v.add(p+".Gid", "is %d; must be 0 or greater", *r.Gid)
	}
}

func (v *validator) functions(g *Group, res map[string]resourceRef) {
	if g.Functions == nil {
		return
	}
	defaultMode := ""
	if dc := g.Functions.DefaultConfig; dc != nil && dc.Execution != nil {
		p := "Functions.DefaultConfig.Execution"
		v.enum(p+".IsolationMode", dc.Execution.IsolationMode, false, isolationModes)
		v.runAs(p+".RunAs", dc.Execution.RunAs)
		defaultMode = dc.Execution.IsolationMode
	}
	if n := len(g.Functions.Functions); n > MaxFunctions {
		v.add("Functions", "quota exceeded: %d functions, the limit is %d per group", n, MaxFunctions)
	}
	ids, arns := map[string]string{}, map[string]string{}
	for i := range g.Functions.Functions {
		f := &g.Functions.Functions[i]
		p := at("Functions", i)
		v.id(p+".Id", f.Id, ids, p)
		system := arn.IsSystemFunction(f.FunctionArn)
		if v.required(p+".FunctionArn", f.FunctionArn) {
			if _, err := arn.ParseFunction(f.FunctionArn); err != nil {
				v.add(p+".FunctionArn", "%v", err)
			} else if prev := arns[f.FunctionArn]; prev != "" {
				v.add(p+".FunctionArn", "%q is already the FunctionArn of %s", f.FunctionArn, prev)
			} else {
				arns[f.FunctionArn] = p
			}
		}
		v.extension(p+".Evergreen", f.Evergreen, system)
		if f.FunctionConfiguration != nil {
			v.configuration(p+".FunctionConfiguration", f.FunctionConfiguration, isolationMode(f, system, defaultMode), res)
		}
	}
}

// IsolationMode returns the isolation mode f runs in: its own, else the
// group default, else GreengrassContainer. System functions do not take the
// group default, as connectors do not. It returns "" for a nil f.
func (g *Group) IsolationMode(f *Function) string {
	if f == nil {
		return ""
	}
	def := ""
	if g != nil && g.Functions != nil && g.Functions.DefaultConfig != nil && g.Functions.DefaultConfig.Execution != nil {
		def = g.Functions.DefaultConfig.Execution.IsolationMode
	}
	return isolationMode(f, arn.IsSystemFunction(f.FunctionArn), def)
}

func isolationMode(f *Function, system bool, groupDefault string) string {
	if c := f.FunctionConfiguration; c != nil && c.Environment != nil && c.Environment.Execution != nil && slices.Contains(isolationModes, c.Environment.Execution.IsolationMode) {
		return c.Environment.Execution.IsolationMode
	}
	if !system && slices.Contains(isolationModes, groupDefault) {
		return groupDefault
	}
	return GreengrassContainer
}

func (v *validator) extension(p string, e *FunctionExtension, system bool) {
	if system {
		if e != nil {
			v.add(p, "system functions are built into the core; remove the Evergreen block")
		}
		return
	}
	if e == nil {
		v.add(p, "required for user functions: Runtime, Handler and CodeUri say how to run the function's code")
		return
	}
	switch {
	case e.Runtime == "":
		v.add(p+".Runtime", "required; one of %s", runtimesText)
	case !RuntimeSupported(e.Runtime):
		v.add(p+".Runtime", "%q is not a supported runtime; want %s", e.Runtime, runtimesText)
	}
	if v.required(p+".Handler", e.Handler) {
		switch {
		case strings.ContainsFunc(e.Handler, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }):
			v.add(p+".Handler", "%q contains white space or control characters", e.Handler)
		case strings.HasPrefix(e.Runtime, "python") || strings.HasPrefix(e.Runtime, "nodejs"):
			if i := strings.LastIndexByte(e.Handler, '.'); i <= 0 || i == len(e.Handler)-1 {
				v.add(p+".Handler", "%q is not <module>.<function>", e.Handler)
			}
		}
	}
	if v.required(p+".CodeUri", e.CodeUri) {
		if err := checkCodeURI(e.CodeUri); err != nil {
			v.add(p+".CodeUri", "%v", err)
		}
	}
	if e.CodeSha256 != "" && !lowerHex64(e.CodeSha256) {
		v.add(p+".CodeSha256", "%q is not 64 lowercase hex digits (the SHA-256 of the code)", e.CodeSha256)
	}
	if strings.HasPrefix(e.CodeUri, "https://") && e.CodeSha256 == "" {
		v.add(p+".CodeSha256", "required with an https:// CodeUri: the SHA-256 of the .zip the deployagent downloads")
	}
}

// checkArtifactURL accepts what the deployagent fetches: https:// with a
// host, or file:///absolute/path.
func checkArtifactURL(s string) error {
	u, err := url.Parse(s)
	switch {
	case err != nil:
		return fmt.Errorf("%q is not a valid URL: %v", s, err)
	case u.Scheme == "https" && u.Host != "":
		return nil
	case u.Scheme == "file" && (u.Host == "" || u.Host == "localhost") && strings.HasPrefix(u.Path, "/"):
		return nil
	}
	return fmt.Errorf("%q: want https://host/path or file:///absolute/path", s)
}

func lowerHex64(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !(s[i] >= '0' && s[i] <= '9' || s[i] >= 'a' && s[i] <= 'f') {
			return false
		}
	}
	return true
}

// checkCodeURI accepts file:///absolute/path and plain paths (absolute, or
// relative to the directory holding the group file).
func checkCodeURI(s string) error {
	if strings.ContainsRune(s, 0) {
		return fmt.Errorf("%q contains a NUL character", s)
	}
	if !looksLikeURI(s) {
		return nil
	}
	u, err := url.Parse(s)
	switch {
	case err != nil:
		return fmt.Errorf("%q is not a valid URI: %v", s, err)
	case u.Scheme == "https":
		return checkArtifactURL(s)
	case u.Scheme != "file":
		return fmt.Errorf("scheme %q is not supported; use https://, file:///absolute/path or a path relative to the group file", u.Scheme)
	case u.Host != "" && u.Host != "localhost":
		return fmt.Errorf("%q names host %q; only local files are supported", s, u.Host)
	case !strings.HasPrefix(u.Path, "/"):
		return fmt.Errorf("%q does not name an absolute path", s)
	case u.RawQuery != "" || u.Fragment != "":
		return fmt.Errorf("%q has a query or fragment", s)
	}
	return nil
}

// looksLikeURI reports whether s starts with "<scheme>://" or "file:".
func looksLikeURI(s string) bool {
	if strings.HasPrefix(s, "file:") {
		return true
	}
	i := strings.Index(s, "://")
	if i <= 0 {
		return false
	}
	for j := 0; j < i; j++ {
		c := s[j]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || j > 0 && (c >= '0' && c <= '9' || c == '+' || c == '.' || c == '-')) {
			return false
		}
	}
	return true
}

func (v *validator) configuration(p string, c *FunctionConfiguration, mode string, res map[string]resourceRef) {
	v.enum(p+".EncodingType", c.EncodingType, false, encodingTypes)
	if m := c.MemorySize; m != nil {
		switch {
		case mode == NoContainer && *m < 0:
			// An Evergreen extension: v1 wants MemorySize cleared for
			// NoContainer; here a positive one is a cgroup memory limit.
			v.add(p+".MemorySize", "is %d; must be absent, 0 (no limit) or greater than 0 (KB)", *m)
		case mode != NoContainer && *m <= 0:
			v.add(p+".MemorySize", "is %d; must be greater than 0 (KB)", *m)
		}
	}
	if t := c.Timeout; t != nil {
		switch {
		case *t <= 0:
			v.add(p+".Timeout", "is %d; must be greater than 0 (seconds)", *t)
		case *t > MaxTimeout:
			v.add(p+".Timeout", "is %d seconds, the limit is %d", *t, MaxTimeout)
		}
	}
	env := c.Environment
	if env == nil {
		return
	}
	ep := p + ".Environment"
	names := make([]string, 0, len(env.Variables))
	for k := range env.Variables {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		val := env.Variables[k]
		switch {
		case k == "":
			v.add(ep+".Variables", "a variable has an empty name")
		case strings.ContainsAny(k, "=\x00"):
			v.add(ep+".Variables."+k, "variable names cannot contain '=' or NUL")
		case strings.ContainsRune(val, 0):
			v.add(ep+".Variables."+k, "value contains a NUL character")
		}
	}
	if env.AccessSysfs && mode == NoContainer {
		v.add(ep+".AccessSysfs", "only applies to GreengrassContainer functions; a NoContainer function already sees /sys")
	}
	if x := env.Execution; x != nil {
		v.enum(ep+".Execution.IsolationMode", x.IsolationMode, false, isolationModes)
		v.runAs(ep+".Execution.RunAs", x.RunAs)
	}
	lp := ep + ".ResourceAccessPolicies"
	if n := len(env.ResourceAccessPolicies); n > MaxResourcesPerFunction {
		v.add(lp, "quota exceeded: %d resource access policies, the limit is %d resources per function", n, MaxResourcesPerFunction)
	}
	attached := map[string]string{}
	for j, rp := range env.ResourceAccessPolicies {
		pp := at(lp, j)
		v.enum(pp+".Permission", rp.Permission, false, permissions)
		if !v.required(pp+".ResourceId", rp.ResourceId) {
			continue
		}
		if prev := attached[rp.ResourceId]; prev != "" {
			v.add(pp+".ResourceId", "resource %q is already attached by %s", rp.ResourceId, prev)
			continue
		}
		attached[rp.ResourceId] = fmt.Sprintf("ResourceAccessPolicies[%d]", j)
		ref, ok := res[rp.ResourceId]
		switch {
		case !ok:
			v.add(pp+".ResourceId", "%q names no resource of this group", rp.ResourceId)
		case mode == NoContainer && (ref.kind == "LocalDeviceResourceData" || ref.kind == "LocalVolumeResourceData"):
			v.add(pp+".ResourceId", "%q (%s) is a local resource; only GreengrassContainer functions can attach local resources", rp.ResourceId, ref.path)
		case mode == NoContainer && !ref.owner && (ref.kind == "S3MachineLearningModelResourceData" || ref.kind == "SageMakerMachineLearningModelResourceData"):
			v.add(pp+".ResourceId", "%q (%s) is a machine-learning resource without OwnerSetting; a NoContainer function reaches it only through its owner group", rp.ResourceId, ref.path)
		case ref.devShm && rp.Permission != "rw":
			v.add(pp+".Permission", "/dev/shm (%s) must be attached rw", ref.path)
		}
	}
}

func (v *validator) connectors(g *Group) {
	if g.Connectors == nil {
		return
	}
	ids := map[string]string{}
	for i, c := range g.Connectors.Connectors {
		p := at("Connectors", i)
		v.id(p+".Id", c.Id, ids, p)
		if v.required(p+".ConnectorArn", c.ConnectorArn) {
			if _, err := arn.ParseConnector(c.ConnectorArn); err != nil {
				v.add(p+".ConnectorArn", "%v", err)
			}
		}
		if _, ok := c.Parameters[""]; ok {
			v.add(p+".Parameters", "a parameter has an empty name")
		}
	}
}

// endpoints indexes what a subscription may name.
type endpoints struct {
	things, functions, connectors map[string]bool
	unqualified                   map[string]string // function ARN without qualifier -> an ARN the group has
}

func newEndpoints(g *Group) *endpoints {
	e := &endpoints{things: map[string]bool{}, functions: map[string]bool{}, connectors: map[string]bool{}, unqualified: map[string]string{}}
	if g.Core != nil {
		for _, c := range g.Core.Cores {
			e.things[c.ThingArn] = true
		}
	}
	if g.Devices != nil {
		for _, d := range g.Devices.Devices {
			e.things[d.ThingArn] = true
		}
	}
	if g.Functions != nil {
		for _, f := range g.Functions.Functions {
			e.functions[f.FunctionArn] = true
			if fa, err := arn.ParseFunction(f.FunctionArn); err == nil {
				e.unqualified[fa.Unqualified()] = f.FunctionArn
			}
		}
	}
	if g.Connectors != nil {
		for _, c := range g.Connectors.Connectors {
			e.connectors[c.ConnectorArn] = true
		}
	}
	return e
}

func (v *validator) endpoint(p, s string, e *endpoints) {
	if !v.required(p, s) {
		return
	}
	k, err := arn.ParseEndpoint(s)
	if err != nil {
		v.add(p, "%v", err)
		return
	}
	known := true
	switch k {
	case arn.KindThing:
		known = e.things[s]
	case arn.KindFunction:
		known = e.functions[s]
	case arn.KindConnector:
		known = e.connectors[s]
	}
	if known {
		return
	}
	msg := fmt.Sprintf("%q names no device, function or connector of this group", s)
	if fa, err := arn.ParseFunction(s); err == nil && e.unqualified[fa.Unqualified()] != "" {
		msg += fmt.Sprintf(" (the group has %q; use the same version or alias)", e.unqualified[fa.Unqualified()])
	}
	v.add(p, "%s", msg)
}

func (v *validator) subscriptions(g *Group) {
	if g.Subscriptions == nil {
		return
	}
	subs := g.Subscriptions.Subscriptions
	if n := len(subs); n > MaxSubscriptions {
		v.add("Subscriptions", "quota exceeded: %d subscriptions, the limit is %d per group", n, MaxSubscriptions)
	}
	e := newEndpoints(g)
	ids := map[string]string{}
	fromCloud := 0
	for i, s := range subs {
		p := at("Subscriptions", i)
		v.id(p+".Id", s.Id, ids, p)
		v.endpoint(p+".Source", s.Source, e)
		if v.required(p+".Subject", s.Subject) {
			if err := topic.ValidateFilter(s.Subject); err != nil {
				v.add(p+".Subject", "%v", err)
			}
		}
		v.endpoint(p+".Target", s.Target, e)
		if s.Source == arn.Cloud {
			fromCloud++
		}
	}
	if fromCloud > MaxCloudSourceSubscriptions {
		v.add("Subscriptions", "quota exceeded: %d subscriptions have Source %q, the limit is %d", fromCloud, arn.Cloud, MaxCloudSourceSubscriptions)
	}
}

func (v *validator) loggers(g *Group) {
	if g.Loggers == nil {
		return
	}
	ids := map[string]string{}
	for i, l := range g.Loggers.Loggers {
		p := at("Loggers", i)
		v.id(p+".Id", l.Id, ids, p)
		v.enum(p+".Component", l.Component, true, logComponents)
		v.enum(p+".Level", l.Level, true, logLevels)
		v.enum(p+".Type", l.Type, true, logTypes)
		if l.Space != nil {
			switch {
			case l.Type == "AWSCloudWatch":
				v.add(p+".Space", "only applies to FileSystem loggers")
			case l.Type == "FileSystem" && *l.Space <= 0:
				v.add(p+".Space", "is %d; must be greater than 0 (KB)", *l.Space)
			}
		}
	}
}
