package groupdef

import (
	"fmt"

	"github.com/evergreen-edge/evergreen/services/kit/arn"
	"github.com/evergreen-edge/evergreen/services/kit/errdefs"
)

// SystemFunction finds the group's v1 system function named name
// (arn:aws:lambda:::function:<name>:<version>, e.g. GGCloudSpooler), whose
// environment variables configure a daemon as in v1. It returns the
// entry's path (Functions[i]), its variables (nil when it has none) and
// found; a nil group or one without the function is not found. A second
// entry of that name is an invalid argument naming its FunctionArn: a
// group configures a daemon once.
func (g *Group) SystemFunction(name string) (path string, vars map[string]string, found bool, err error) {
	if g == nil || g.Functions == nil {
		return "", nil, false, nil
	}
	for i, f := range g.Functions.Functions {
		if !arn.IsSystemFunction(f.FunctionArn) {
			continue
		}
		if fn, perr := arn.ParseFunction(f.FunctionArn); perr != nil || fn.Name != name {
			continue
		}
		p := fmt.Sprintf("Functions[%d]", i)
		if found {
			return "", nil, false, errdefs.InvalidArgument(p+".FunctionArn", "a second %s function (the first is %s); a group configures it once", name, path)
		}
		path, found = p, true
		if c := f.FunctionConfiguration; c != nil && c.Environment != nil {
			vars = c.Environment.Variables
		}
	}
	return path, vars, found, nil
}
