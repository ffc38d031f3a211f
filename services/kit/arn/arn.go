// Package arn parses the Amazon Resource Names that appear in a Greengrass v1
// group: thing ARNs of the core and devices, Lambda function ARNs, connector
// ARNs, certificate ARNs, and the endpoints a subscription may name.
//
// Partitions aws, aws-cn and aws-us-gov are accepted wherever the partition is
// written, because v1 ran in all three.
package arn

import (
	"errors"
	"fmt"
	"slices"
	"strings"
)

// ARN is the generic form arn:<partition>:<service>:<region>:<account>:<resource>.
type ARN struct {
	Partition, Service, Region, Account, Resource string
}

// String returns the ARN in its textual form.
func (a ARN) String() string {
	return "arn:" + a.Partition + ":" + a.Service + ":" + a.Region + ":" + a.Account + ":" + a.Resource
}

var partitions = []string{"aws", "aws-cn", "aws-us-gov"}

// Parse splits s into its six fields. The resource may itself contain colons.
// Region and account are checked only for their character set; callers that
// require them present check for emptiness.
func Parse(s string) (ARN, error) {
	parts := strings.SplitN(s, ":", 6)
	if len(parts) != 6 || parts[0] != "arn" {
		return ARN{}, fmt.Errorf("%q is not an ARN (want arn:<partition>:<service>:<region>:<account>:<resource>)", s)
	}
	a := ARN{Partition: parts[1], Service: parts[2], Region: parts[3], Account: parts[4], Resource: parts[5]}
	if !slices.Contains(partitions, a.Partition) {
		return a, fmt.Errorf("ARN %q: partition %q is not one of %s", s, a.Partition, strings.Join(partitions, ", "))
	}
	if a.Service == "" {
		return a, fmt.Errorf("ARN %q: service is empty", s)
	}
	if a.Region != "" && !validRegion(a.Region) {
		return a, fmt.Errorf("ARN %q: region %q is not a region name (like us-east-1)", s, a.Region)
	}
	if a.Account != "" && !validAccount(a.Account) {
		return a, fmt.Errorf("ARN %q: account %q must be 12 digits", s, a.Account)
	}
	if a.Resource == "" {
		return a, fmt.Errorf("ARN %q: resource is empty", s)
	}
	return a, nil
}

// parseService parses s and requires the given service with a region and,
// unless noAccount, an account.
func parseService(what, s, service string, noAccount bool) (ARN, error) {
	a, err := Parse(s)
	if err != nil {
		return a, err
	}
	switch {
	case a.Service != service:
		return a, fmt.Errorf("%s %q: service is %q, want %q", what, s, a.Service, service)
	case a.Region == "":
		return a, fmt.Errorf("%s %q: region is empty", what, s)
	case noAccount && a.Account != "":
		return a, fmt.Errorf("%s %q: account must be empty, got %q", what, s, a.Account)
	case !noAccount && a.Account == "":
		return a, fmt.Errorf("%s %q: account is empty", what, s)
	}
	return a, nil
}

func validRegion(r string) bool {
	if len(r) > 32 || r[0] < 'a' || r[0] > 'z' || r[len(r)-1] == '-' {
		return false
	}
	for i := 0; i < len(r); i++ {
		c := r[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

func validAccount(a string) bool {
	return len(a) == 12 && allDigits(a)
}

func allDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// nameChars reports whether every byte of s is in [a-zA-Z0-9_-] or, when
// colon is set, also ':'.
func nameChars(s string, colon bool) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || colon && c == ':') {
			return false
		}
	}
	return true
}

// Thing is a parsed AWS IoT thing ARN, arn:aws:iot:<region>:<account>:thing/<name>.
type Thing struct {
	ARN
	Name string
}

// MaxThingName is the AWS IoT limit on thing names.
const MaxThingName = 128

// ValidThingName applies the AWS IoT thing-name rules: 1 to 128 characters
// of [a-zA-Z0-9:_-].
func ValidThingName(name string) error {
	switch {
	case name == "":
		return errors.New("thing name is empty")
	case len(name) > MaxThingName:
		return fmt.Errorf("thing name is %d characters, the limit is %d", len(name), MaxThingName)
	case !nameChars(name, true):
		return fmt.Errorf("thing name %q may only contain letters, digits, ':', '_' and '-'", name)
	}
	return nil
}

// ParseThing parses a thing ARN.
func ParseThing(s string) (Thing, error) {
	a, err := parseService("thing ARN", s, "iot", false)
	if err != nil {
		return Thing{}, err
	}
	name, ok := strings.CutPrefix(a.Resource, "thing/")
	if !ok {
		return Thing{}, fmt.Errorf("thing ARN %q: resource %q does not start with \"thing/\"", s, a.Resource)
	}
	if err := ValidThingName(name); err != nil {
		return Thing{}, fmt.Errorf("thing ARN %q: %w", s, err)
	}
	return Thing{ARN: a, Name: name}, nil
}

// ThingName returns the thing name of a thing ARN.
func ThingName(thingARN string) (string, error) {
	t, err := ParseThing(thingARN)
	return t.Name, err
}

// Certificate is a parsed AWS IoT certificate ARN,
// arn:aws:iot:<region>:<account>:cert/<64 hex digit certificate id>.
type Certificate struct {
	ARN
	ID string
}

// ParseCertificate parses a certificate ARN.
func ParseCertificate(s string) (Certificate, error) {
	a, err := parseService("certificate ARN", s, "iot", false)
	if err != nil {
		return Certificate{}, err
	}
	id, ok := strings.CutPrefix(a.Resource, "cert/")
	if !ok {
		return Certificate{}, fmt.Errorf("certificate ARN %q: resource %q does not start with \"cert/\"", s, a.Resource)
	}
	if len(id) != 64 || !isHex(id) {
		return Certificate{}, fmt.Errorf("certificate ARN %q: certificate id must be 64 hex digits (the SHA-256 of the certificate)", s)
	}
	return Certificate{ARN: a, ID: id}, nil
}

func isHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
			return false
		}
	}
	return true
}

// Function is a parsed Lambda function ARN,
// arn:aws:lambda:<region>:<account>:function:<name>[:<qualifier>], or a
// system function ARN arn:aws:lambda:::function:GG<name>[:<qualifier>] whose
// region and account are empty.
type Function struct {
	ARN
	Name      string
	Qualifier string // version number or alias; "" when unqualified
	System    bool   // implemented by the core itself
}

// Latest is the qualifier Lambda gives the unpublished code of a function.
const Latest = "$LATEST"

// ParseFunction parses a function ARN the way a group needs it: user
// functions must carry a version or alias qualifier other than $LATEST,
// because a group pins the code it deploys; system functions may omit it.
func ParseFunction(s string) (Function, error) {
	a, err := Parse(s)
	if err != nil {
		return Function{}, err
	}
	if a.Service != "lambda" {
		return Function{}, fmt.Errorf("function ARN %q: service is %q, want \"lambda\"", s, a.Service)
	}
	rest, ok := strings.CutPrefix(a.Resource, "function:")
	if !ok {
		return Function{}, fmt.Errorf("function ARN %q: resource %q does not start with \"function:\"", s, a.Resource)
	}
	f := Function{ARN: a}
	f.Name, f.Qualifier, _ = strings.Cut(rest, ":")
	f.System = a.Region == "" && a.Account == ""
	switch {
	case f.System && !strings.HasPrefix(f.Name, "GG"):
		return Function{}, fmt.Errorf("function ARN %q: region and account are empty, which only system functions (arn:aws:lambda:::function:GG<name>) may do", s)
	case !f.System && (a.Region == "" || a.Account == ""):
		return Function{}, fmt.Errorf("function ARN %q: region and account must both be given", s)
	case f.Name == "" || len(f.Name) > 64 || !nameChars(f.Name, false):
		return Function{}, fmt.Errorf("function ARN %q: function name %q must be 1 to 64 letters, digits, '_' or '-'", s, f.Name)
	case f.Qualifier == Latest:
		return Function{}, fmt.Errorf("function ARN %q: qualifier $LATEST is not allowed in a group; use a published version or an alias", s)
	case f.Qualifier == "" && strings.HasSuffix(rest, ":"):
		return Function{}, fmt.Errorf("function ARN %q: qualifier is empty", s)
	case f.Qualifier == "" && !f.System:
		return Function{}, fmt.Errorf("function ARN %q: no version or alias qualifier; a group deploys a published version or an alias, not $LATEST", s)
	case f.Qualifier != "" && (len(f.Qualifier) > 128 || !nameChars(f.Qualifier, false)):
		return Function{}, fmt.Errorf("function ARN %q: qualifier %q must be a version number or an alias of letters, digits, '_' or '-'", s, f.Qualifier)
	}
	return f, nil
}

// Unqualified returns the ARN without its qualifier.
func (f Function) Unqualified() string {
	return "arn:" + f.Partition + ":lambda:" + f.Region + ":" + f.Account + ":function:" + f.Name
}

// IsSystemFunction reports whether s is written as a system function ARN
// (arn:aws:lambda:::function:GG...), without validating the rest.
func IsSystemFunction(s string) bool {
	a, err := Parse(s)
	return err == nil && a.Service == "lambda" && a.Region == "" && a.Account == "" &&
		strings.HasPrefix(a.Resource, "function:GG")
}

// Connector is a parsed connector ARN,
// arn:aws:greengrass:<region>::/connectors/<Name>/versions/<n>.
type Connector struct {
	ARN
	Name    string
	Version string
}

// ParseConnector parses a connector ARN.
func ParseConnector(s string) (Connector, error) {
	a, err := parseService("connector ARN", s, "greengrass", true)
	if err != nil {
		return Connector{}, err
	}
	rest, ok := strings.CutPrefix(a.Resource, "/connectors/")
	name, version, ok2 := strings.Cut(rest, "/versions/")
	if !ok || !ok2 {
		return Connector{}, fmt.Errorf("connector ARN %q: resource %q is not /connectors/<Name>/versions/<n>", s, a.Resource)
	}
	if name == "" || len(name) > 128 || !nameChars(name, false) {
		return Connector{}, fmt.Errorf("connector ARN %q: connector name %q must be 1 to 128 letters, digits, '_' or '-'", s, name)
	}
	if !allDigits(version) || version[0] == '0' {
		return Connector{}, fmt.Errorf("connector ARN %q: version %q is not a positive integer", s, version)
	}
	return Connector{ARN: a, Name: name, Version: version}, nil
}

// Kind classifies the Source or Target of a subscription.
type Kind int

const (
	KindInvalid       Kind = iota
	KindThing              // a device's or the core's thing ARN
	KindFunction           // a Lambda function ARN
	KindConnector          // a connector ARN
	KindCloud              // "cloud": AWS IoT Core
	KindShadowService      // "GGShadowService": the local shadow service
)

// Endpoint names that are not ARNs.
const (
	Cloud         = "cloud"
	ShadowService = "GGShadowService"
)

var kindNames = [...]string{"invalid", "thing", "function", "connector", "cloud", "shadow service"}

func (k Kind) String() string {
	if k < 0 || int(k) >= len(kindNames) {
		return fmt.Sprintf("Kind(%d)", int(k))
	}
	return kindNames[k]
}

// Classify returns the kind of a subscription endpoint, KindInvalid when s
// is none of them.
func Classify(endpoint string) Kind {
	k, _ := ParseEndpoint(endpoint)
	return k
}

// ParseEndpoint classifies a subscription endpoint and, when it is invalid,
// says why: an ARN of a known service gets that service's precise error.
func ParseEndpoint(s string) (Kind, error) {
	switch s {
	case Cloud:
		return KindCloud, nil
	case ShadowService:
		return KindShadowService, nil
	case "":
		return KindInvalid, errors.New("endpoint is empty")
	}
	a, err := Parse(s)
	if err != nil && strings.HasPrefix(s, "arn:") {
		return KindInvalid, err
	}
	if err != nil {
		return KindInvalid, fmt.Errorf("%q is not a thing, function or connector ARN, %q or %q", s, Cloud, ShadowService)
	}
	switch a.Service {
	case "iot":
		if _, err := ParseThing(s); err != nil {
			return KindInvalid, err
		}
		return KindThing, nil
	case "lambda":
		if _, err := ParseFunction(s); err != nil {
			return KindInvalid, err
		}
		return KindFunction, nil
	case "greengrass":
		if _, err := ParseConnector(s); err != nil {
			return KindInvalid, err
		}
		return KindConnector, nil
	}
	return KindInvalid, fmt.Errorf("%q: service %q cannot be a subscription endpoint; want a thing (iot), function (lambda) or connector (greengrass) ARN, %q or %q", s, a.Service, Cloud, ShadowService)
}
