package router

import (
	"fmt"
	"strconv"

	"github.com/evergreen-edge/evergreen/services/kit/arn"
)

// Kind is what an endpoint of a subscription is.
type Kind uint8

// Endpoint kinds. The zero Kind is no endpoint at all, so a zero Endpoint
// never matches anything in a table.
const (
	KindDevice Kind = iota + 1
	KindFunction
	KindConnector
	KindCloud
	KindShadow
)

func (k Kind) String() string {
	switch k {
	case KindDevice:
		return "device"
	case KindFunction:
		return "function"
	case KindConnector:
		return "connector"
	case KindCloud:
		return "cloud"
	case KindShadow:
		return "shadow"
	}
	return "Kind(" + strconv.Itoa(int(k)) + ")"
}

// Endpoint is a source or target of a subscription. Name is the thing name
// for devices (the core's thing counts as a device: it is known by its
// thing name too), the ARN exactly as written in the group for functions and
// connectors, qualifier included, and "" for the cloud and the shadow service.
// Endpoints are comparable and are the keys of a Table.
type Endpoint struct {
	Kind Kind
	Name string
}

// The endpoints that have no name.
var (
	Cloud  = Endpoint{Kind: KindCloud}
	Shadow = Endpoint{Kind: KindShadow}
)

// Device returns the endpoint of the device (or core) whose thing name is name.
func Device(name string) Endpoint { return Endpoint{Kind: KindDevice, Name: name} }

// Function returns the endpoint of the function whose ARN is exactly functionARN.
func Function(functionARN string) Endpoint { return Endpoint{Kind: KindFunction, Name: functionARN} }

// Connector returns the endpoint of the connector whose ARN is exactly connectorARN.
func Connector(connectorARN string) Endpoint {
	return Endpoint{Kind: KindConnector, Name: connectorARN}
}

// String is meant for logs: "device:sensor-1", "function:arn:...",
// "connector:arn:...", "cloud", "GGShadowService".
func (e Endpoint) String() string {
	switch e.Kind {
	case KindDevice, KindFunction, KindConnector:
		return e.Kind.String() + ":" + e.Name
	case KindCloud:
		return arn.Cloud
	case KindShadow:
		return arn.ShadowService
	}
	return e.Kind.String() + ":" + e.Name
}

// ParseEndpoint turns the Source or Target of a group's subscription into an
// Endpoint: a thing ARN becomes Device(thing name), function and connector
// ARNs are kept as written, "cloud" and "GGShadowService" become Cloud and
// Shadow. Anything else is an error that says why.
func ParseEndpoint(s string) (Endpoint, error) {
	kind, err := arn.ParseEndpoint(s)
	if err != nil {
		return Endpoint{}, err
	}
	switch kind {
	case arn.KindThing:
		name, err := arn.ThingName(s)
		if err != nil {
			return Endpoint{}, err
		}
		return Device(name), nil
	case arn.KindFunction:
		return Function(s), nil
	case arn.KindConnector:
		return Connector(s), nil
	case arn.KindCloud:
		return Cloud, nil
	case arn.KindShadowService:
		return Shadow, nil
	}
	return Endpoint{}, fmt.Errorf("%q: endpoint kind %v is not routable", s, kind)
}
