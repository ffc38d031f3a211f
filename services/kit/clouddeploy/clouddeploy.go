// Package clouddeploy is the contract of deployments that arrive over the
// cloud connection (docs/cloud.md): the topics under the core's thing name
// and the JSON documents on them. The broker carries them between the
// cloud and the bus; the deployagent runs them.
//
// A request, cloud -> core, on evergreen/things/<thing>/deployments/request:
//
//	{"deploymentId": "d-42", "deploymentType": "NewDeployment",
//	 "group": { ...group definition, as `ggctl deploy FILE` takes... }}
//
// or, for a group too large for one MQTT message, a URL to fetch it from:
//
//	{"deploymentId": "d-43", "deploymentType": "NewDeployment",
//	 "groupUrl": "https://example.com/groups/g-7.json",
//	 "sha256": "<hex of the file>", "size": 12345}
//
// ResetDeployment and ForceResetDeployment carry no group. A request may
// also carry secrets sealed to the core's key:
//
//	"secrets": [{"name": "plant/db", "sealedValue": "<base64 EGS1 envelope>",
//	             "labels": ["blue"], "versionId": "v7"}]
//
// Status, core -> cloud, on evergreen/things/<thing>/deployments/status,
// QoS 1, through the spooler (so it survives a disconnection):
//
//	{"deploymentId": "d-42", "status": "InProgress", "stage": "validated",
//	 "timestamp": 1795000000000}
//	{"deploymentId": "d-42", "status": "Failure",
//	 "reasons": ["runtime: Functions[0] ...: CodeUri ... does not exist"],
//	 "timestamp": 1795000000123}
package clouddeploy

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/url"

	"github.com/evergreen-edge/evergreen/services/kit/errdefs"
)

// RequestTopic is where the cloud asks thing's core to deploy.
func RequestTopic(thing string) string { return "evergreen/things/" + thing + "/deployments/request" }

// StatusTopic is where thing's core reports deployments.
func StatusTopic(thing string) string { return "evergreen/things/" + thing + "/deployments/status" }

// Deployment types (v1's CreateDeployment DeploymentType).
const (
	NewDeployment        = "NewDeployment"
	Redeployment         = "Redeployment"
	ResetDeployment      = "ResetDeployment"
	ForceResetDeployment = "ForceResetDeployment"
)

// Statuses of a deployment as the cloud sees them (v1's GetDeploymentStatus).
const (
	InProgress = "InProgress"
	Building   = "Building"
	Success    = "Success"
	Failure    = "Failure"
)

// MaxGroupBytes bounds a group fetched from GroupURL.
const MaxGroupBytes = 64 << 20

// Request is a deployment the cloud asks for.
type Request struct {
	DeploymentID   string          `json:"deploymentId"`
	DeploymentType string          `json:"deploymentType,omitempty"`
	Group          json.RawMessage `json:"group,omitempty"`
	GroupURL       string          `json:"groupUrl,omitempty"`
	SHA256         string          `json:"sha256,omitempty"`
	Size           int64           `json:"size,omitempty"`
	// Secrets are stored before the group is deployed, each sealed to the
	// core's key (services/secrets/envelope; `ggctl secret list --json`
	// shows the key). A value never travels in clear.
	Secrets []Secret `json:"secrets,omitempty"`
}

// Secret is one secret value of a request.
type Secret struct {
	// Name is the secret's name or ARN.
	Name string `json:"name"`
	// SealedValue is the sealed value, base64 in JSON.
	SealedValue []byte `json:"sealedValue"`
	// Binary stores the value as SecretBinary.
	Binary bool `json:"binary,omitempty"`
	// Labels are staging labels besides AWSCURRENT.
	Labels []string `json:"labels,omitempty"`
	// VersionID makes a redelivered value idempotent.
	VersionID string `json:"versionId,omitempty"`
}

// MaxSecrets bounds the secrets of one request.
const MaxSecrets = 64

// Status is what the core reports about a deployment.
type Status struct {
	DeploymentID string   `json:"deploymentId"`
	Status       string   `json:"status"`
	Stage        string   `json:"stage,omitempty"`
	Reasons      []string `json:"reasons,omitempty"`
	// Timestamp is in epoch milliseconds.
	Timestamp int64 `json:"timestamp"`
}

// ValidID reports whether id is 1 to 128 of [A-Za-z0-9._:-] starting with
// a letter or digit (the deployagent's rule for deployment ids). By hand:
// a package-level regexp would cost heap in every process of ggd.
func ValidID(id string) bool {
	if len(id) == 0 || len(id) > 128 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		alnum := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
		if !alnum && (i == 0 || (c != '.' && c != '_' && c != ':' && c != '-')) {
			return false
		}
	}
	return true
}

// ParseRequest decodes and checks a request; errors name the field.
func ParseRequest(b []byte) (*Request, error) {
	var r Request
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, errdefs.InvalidArgument("request", "not a JSON deployment request: %v", err)
	}
	if !ValidID(r.DeploymentID) {
		return nil, errdefs.InvalidArgument("deploymentId", "%q: 1 to 128 of A-Z a-z 0-9 _ . : -, starting with a letter or digit", r.DeploymentID)
	}
	switch r.DeploymentType {
	case "":
		r.DeploymentType = NewDeployment
	case NewDeployment, Redeployment, ResetDeployment, ForceResetDeployment:
	default:
		return nil, errdefs.InvalidArgument("deploymentType", "%q: one of NewDeployment, Redeployment, ResetDeployment, ForceResetDeployment", r.DeploymentType)
	}
	if len(r.Secrets) > MaxSecrets {
		return nil, errdefs.InvalidArgument("secrets", "%d secrets: at most %d", len(r.Secrets), MaxSecrets)
	}
	for i, s := range r.Secrets {
		switch {
		case s.Name == "":
			return nil, errdefs.InvalidArgument(fmt.Sprintf("secrets[%d].name", i), "required")
		case len(s.SealedValue) == 0:
			return nil, errdefs.InvalidArgument(fmt.Sprintf("secrets[%d].sealedValue", i), "required: the value sealed to the core's key, base64")
		}
	}
	reset := r.DeploymentType == ResetDeployment || r.DeploymentType == ForceResetDeployment
	hasGroup, hasURL := len(r.Group) > 0 && string(r.Group) != "null", r.GroupURL != ""
	switch {
	case reset && (hasGroup || hasURL):
		return nil, errdefs.InvalidArgument("group", "a %s carries no group", r.DeploymentType)
	case reset:
		return &r, nil
	case hasGroup && hasURL:
		return nil, errdefs.InvalidArgument("groupUrl", "give group or groupUrl, not both")
	case !hasGroup && !hasURL && r.DeploymentType == NewDeployment:
		return nil, errdefs.InvalidArgument("group", "a NewDeployment needs group or groupUrl")
	case hasURL:
		u, err := url.Parse(r.GroupURL)
		if err != nil || u.Scheme != "https" || u.Host == "" {
			return nil, errdefs.InvalidArgument("groupUrl", "%q: an https:// URL", r.GroupURL)
		}
		if b, err := hex.DecodeString(r.SHA256); err != nil || len(b) != 32 {
			return nil, errdefs.InvalidArgument("sha256", "%q: 64 hex digits", r.SHA256)
		}
		if r.Size < 0 || r.Size > MaxGroupBytes {
			return nil, errdefs.InvalidArgument("size", "%d: 0 (unknown) to %d bytes", r.Size, MaxGroupBytes)
		}
	}
	return &r, nil
}

// String is a short description for logs.
func (r *Request) String() string {
	return fmt.Sprintf("%s %s", r.DeploymentType, r.DeploymentID)
}
