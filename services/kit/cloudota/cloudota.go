// Package cloudota is the contract of over-the-air update jobs that arrive
// over the cloud connection (docs/cloud.md, docs/ota.md): the topics under
// the core's thing name and the JSON documents on them. The broker carries
// them between the cloud and the bus; the ota daemon runs them.
//
// A request, cloud -> core, on evergreen/things/<thing>/ota/request:
//
//	{"jobId": "ota-7", "url": "https://updates.example.com/evergreen-1.2.0-linux-arm64.tar.gz",
//	 "sha256": "<hex of the bundle>", "size": 9123456,
//	 "signature": { ...the bundle's .sig file, inline... },
//	 "targetVersion": "1.2.0", "force": false}
//
// Status, core -> cloud, on evergreen/things/<thing>/ota/status, QoS 1,
// through the broker's spooler (so it survives a disconnection), at every
// step and again after the restart for the job in flight:
//
//	{"jobId": "ota-7", "status": "Downloading", "version": "1.2.0",
//	 "progress": 42, "timestamp": 1795000000000}
//	{"jobId": "ota-7", "status": "Success", "version": "1.2.0", "timestamp": ...}
//	{"jobId": "ota-7", "status": "Rejected", "reason": "bad signature: ...", "timestamp": ...}
package cloudota

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/url"

	"github.com/evergreen-edge/evergreen/services/kit/clouddeploy"
	"github.com/evergreen-edge/evergreen/services/kit/errdefs"
)

// RequestTopic is where the cloud asks thing's core to update itself.
func RequestTopic(thing string) string { return "evergreen/things/" + thing + "/ota/request" }

// StatusTopic is where thing's core reports update jobs.
func StatusTopic(thing string) string { return "evergreen/things/" + thing + "/ota/status" }

// Statuses of a job as the cloud sees them.
const (
	InProgress  = "InProgress"
	Downloading = "Downloading"
	Verifying   = "Verifying"
	Installing  = "Installing"
	Restarting  = "Restarting"
	Success     = "Success"
	Failure     = "Failure"
	Rejected    = "Rejected"
)

// MaxSignatureBytes bounds the inline signature.
const MaxSignatureBytes = 16 << 10

// Request is an update job the cloud asks for.
type Request struct {
	JobID  string `json:"jobId"`
	URL    string `json:"url"`
	SHA256 string `json:"sha256"`
	Size   int64  `json:"size,omitempty"`
	// Signature is the bundle's signature file (`ggctl ota sign`), inline.
	Signature json.RawMessage `json:"signature"`
	// TargetVersion, when set, must be the bundle's version.
	TargetVersion string `json:"targetVersion,omitempty"`
	// Force installs a downgrade, the same version or a broken version.
	Force bool `json:"force,omitempty"`
}

// Status is what the core reports about a job.
type Status struct {
	JobID   string `json:"jobId"`
	Status  string `json:"status"`
	Version string `json:"version,omitempty"`
	Reason  string `json:"reason,omitempty"`
	// Progress is the download's percentage while Downloading.
	Progress int `json:"progress,omitempty"`
	// Timestamp is in epoch milliseconds.
	Timestamp int64 `json:"timestamp"`
}

// ParseRequest decodes and checks a request; errors name the field.
func ParseRequest(b []byte) (*Request, error) {
	var r Request
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, errdefs.InvalidArgument("request", "not a JSON update request: %v", err)
	}
	if !clouddeploy.ValidID(r.JobID) {
		return nil, errdefs.InvalidArgument("jobId", "%q: 1 to 128 of A-Z a-z 0-9 _ . : -, starting with a letter or digit", r.JobID)
	}
	u, err := url.Parse(r.URL)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return nil, errdefs.InvalidArgument("url", "%q: an https:// URL", r.URL)
	}
	if b, err := hex.DecodeString(r.SHA256); err != nil || len(b) != 32 {
		return nil, errdefs.InvalidArgument("sha256", "%q: 64 hex digits", r.SHA256)
	}
	if r.Size < 0 {
		return nil, errdefs.InvalidArgument("size", "%d: 0 (unknown) or the bundle's size in bytes", r.Size)
	}
	sig := bytes.TrimSpace(r.Signature)
	if len(sig) == 0 || string(sig) == "null" || sig[0] != '{' {
		return nil, errdefs.InvalidArgument("signature", "required: the bundle's signature file as a JSON object")
	}
	if len(sig) > MaxSignatureBytes {
		return nil, errdefs.InvalidArgument("signature", "%d bytes: at most %d", len(sig), MaxSignatureBytes)
	}
	return &r, nil
}

// JobID is the jobId of a request that may not parse ("" when none).
func JobID(b []byte) string {
	var r struct {
		JobID string `json:"jobId"`
	}
	json.Unmarshal(b, &r)
	if !clouddeploy.ValidID(r.JobID) {
		return ""
	}
	return r.JobID
}

// String is a short description for logs.
func (r *Request) String() string { return fmt.Sprintf("update job %s (%s)", r.JobID, r.TargetVersion) }
