// Package groupdef reads, checks and writes the group definition file: one
// JSON object holding a Greengrass v1 group's definition versions (Core,
// Functions, Subscriptions, Devices, Resources, Connectors, Loggers) exactly
// as the v1 API (2017-06-07) shapes them, plus an Evergreen block on each
// user function for what v1 kept in the Lambda service. The format is
// documented in docs/group-definition.md.
//
// Parse reports every problem at once, each with the path of the field at
// fault, because a deployment that fails one error at a time wastes the
// user's afternoon.
package groupdef

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/evergreen-edge/evergreen/services/kit/arn"
)

// MaxFileSize bounds the input of Parse. A group at every quota (10000
// subscriptions, 2500 devices, 200 functions) fits in a few megabytes.
const MaxFileSize = 32 << 20

// FieldError is one problem with the field at Path. Paths are relative to a
// section's definition version, and name a list element by index:
// Subscriptions[3].Target, Core.Cores,
// Functions[0].FunctionConfiguration.Environment.ResourceAccessPolicies[1].ResourceId.
// Path is empty for problems with the file as a whole (invalid JSON).
type FieldError struct {
	Path    string
	Message string
}

func (e FieldError) Error() string {
	if e.Path == "" {
		return e.Message
	}
	return e.Path + ": " + e.Message
}

// ValidationError lists every problem found in a group definition.
type ValidationError struct {
	Errors []FieldError
}

func (e *ValidationError) Error() string {
	parts := make([]string, len(e.Errors))
	for i, fe := range e.Errors {
		parts[i] = fe.Error()
	}
	return strings.Join(parts, "; ")
}

// Parse decodes and validates a group definition file. On failure the error
// is a *ValidationError listing every problem.
//
// A section may be given as the definition version itself
// ({"Subscriptions": [...]}) or as the output of `aws greengrass
// get-*-definition-version` ({"Definition": {...}, "Arn": ..., ...}); the
// wrapper's other keys are ignored. JSON null means "not given". Empty lists
// and maps decode to nil.
func Parse(data []byte) (*Group, error) {
	if len(data) > MaxFileSize {
		return nil, &ValidationError{Errors: []FieldError{{Message: fmt.Sprintf("the group definition is %d bytes, the limit is %d", len(data), MaxFileSize)}}}
	}
	root, err := readTree(data)
	if err != nil {
		return nil, &ValidationError{Errors: []FieldError{{Message: err.Error()}}}
	}
	d := &decoder{bad: map[string]bool{}}
	g := d.group(root)
	if g == nil {
		return nil, &ValidationError{Errors: d.errs}
	}
	v := &validator{bad: d.bad}
	v.group(g)
	if errs := append(d.errs, v.errs...); len(errs) > 0 {
		return nil, &ValidationError{Errors: errs}
	}
	return g, nil
}

// Validate checks a group built in code by the rules Parse applies. The
// error, if any, is a *ValidationError.
func (g *Group) Validate() error {
	if g == nil {
		return &ValidationError{Errors: []FieldError{{Message: "the group is nil"}}}
	}
	v := &validator{}
	v.group(g)
	if len(v.errs) > 0 {
		return &ValidationError{Errors: v.errs}
	}
	return nil
}

// Marshal validates g and writes it in canonical form: sections unwrapped,
// fields in API order, map keys sorted, zero values omitted, compact (no
// insignificant whitespace), a trailing newline. Parse(Marshal(g)) equals g
// for any g that Parse returned; for a group built in code, empty lists and
// maps come back as nil. The form is compact because deployments carry and
// store it whole, megabytes at v1's limits; `ggctl deployments group` indents it.
func Marshal(g *Group) ([]byte, error) {
	if err := g.Validate(); err != nil {
		return nil, err
	}
	return MarshalValid(g)
}

// MarshalValid is Marshal without the validation, for a group Parse has
// just returned (validating a group at v1's limits again costs tens of MB
// of garbage). A group that would not validate is written as it is.
func MarshalValid(g *Group) ([]byte, error) {
	if g == nil {
		return nil, fmt.Errorf("groupdef: encode: the group is nil")
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(g); err != nil {
		return nil, fmt.Errorf("groupdef: encode: %w", err)
	}
	return buf.Bytes(), nil
}

// CoreThingName returns the thing name of the group's core, "" when the
// group has no valid core.
func (g *Group) CoreThingName() string {
	if g == nil || g.Core == nil || len(g.Core.Cores) == 0 {
		return ""
	}
	name, err := arn.ThingName(g.Core.Cores[0].ThingArn)
	if err != nil {
		return ""
	}
	return name
}

// DeviceThingNames returns the thing names of the group's devices in the
// order of the definition, skipping malformed ARNs.
func (g *Group) DeviceThingNames() []string {
	if g == nil || g.Devices == nil {
		return nil
	}
	names := make([]string, 0, len(g.Devices.Devices))
	for _, d := range g.Devices.Devices {
		if name, err := arn.ThingName(d.ThingArn); err == nil {
			names = append(names, name)
		}
	}
	return names
}

// FunctionByArn returns the function whose FunctionArn is exactly functionArn
// (qualifier included), or nil. The pointer aliases g.
func (g *Group) FunctionByArn(functionArn string) *Function {
	if g == nil || g.Functions == nil {
		return nil
	}
	for i := range g.Functions.Functions {
		if g.Functions.Functions[i].FunctionArn == functionArn {
			return &g.Functions.Functions[i]
		}
	}
	return nil
}

// Paths returns the paths of the problems in err if it is a
// *ValidationError, nil otherwise. Tests and CLIs use it to point at fields.
func Paths(err error) []string {
	var ve *ValidationError
	if !errors.As(err, &ve) {
		return nil
	}
	paths := make([]string, len(ve.Errors))
	for i, fe := range ve.Errors {
		paths[i] = fe.Path
	}
	return paths
}

// SyncShadowThings returns the thing names of the core and devices whose
// entry has SyncShadow: true (the shadows synced with the cloud), core
// first, without duplicates.
func (g *Group) SyncShadowThings() []string {
	if g == nil {
		return nil
	}
	var names []string
	seen := map[string]bool{}
	add := func(thingARN string) {
		if name, err := arn.ThingName(thingARN); err == nil && !seen[name] {
			seen[name] = true
			names = append(names, name)
		}
	}
	if g.Core != nil {
		for _, c := range g.Core.Cores {
			if c.SyncShadow {
				add(c.ThingArn)
			}
		}
	}
	if g.Devices != nil {
		for _, d := range g.Devices.Devices {
			if d.SyncShadow {
				add(d.ThingArn)
			}
		}
	}
	return names
}

// FileLogger returns the group's FileSystem logger of component
// (GreengrassSystem or Lambda), if it has one.
func (g *Group) FileLogger(component string) (Logger, bool) {
	if g == nil || g.Loggers == nil {
		return Logger{}, false
	}
	for _, l := range g.Loggers.Loggers {
		if l.Component == component && l.Type == "FileSystem" {
			return l, true
		}
	}
	return Logger{}, false
}
