package deployment

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"time"

	"github.com/evergreen-edge/evergreen/services/kit/atomicfile"
	"github.com/evergreen-edge/evergreen/services/kit/layout"
)

// The stages of a deployment, in order. A deployment is committed when
// current.json names it (the rename is the commit), whatever staged.json
// says; the stage says what happened around that.
const (
	StageReceived  = "received"
	StageValidated = "validated"
	// StageArtifacts: the group's artifacts are fetched and verified
	// (deployagent/artifact: https:// function code into the artifact
	// cache, model archives unpacked; nothing outside DIR changes).
	StageArtifacts = "artifacts"
	// StagePrepared: every daemon checked and staged its slice.
	StagePrepared = "prepared"
	// StageCommitted: current.json names the deployment.
	StageCommitted = "committed"
	// StageApplied: every daemon switched and confirmed.
	StageApplied = "applied"
	StageDone    = "done"
	// StageRollingBack: failed after the commit; every daemon is being put
	// back on the previous group and current.json back to it.
	StageRollingBack = "rolling_back"
	// StageRolledBack: the previous group is in force again everywhere.
	StageRolledBack = "rolled_back"
)

// State is staged.json: the deployment in flight.
type State struct {
	DeploymentID string `json:"deploymentId"`
	// Type is the deployv1.DeploymentType name (DEPLOYMENT_TYPE_NEW...).
	Type       string    `json:"type"`
	Stage      string    `json:"stage"`
	CreatedAt  time.Time `json:"createdAt"`
	RedeployOf string    `json:"redeployOf,omitempty"`
	// Next is the record the deployment puts in force.
	Next *Record `json:"next"`
	// Previous is current.json before the commit and PreviousFile
	// previous.json before it (nil: the file did not exist): what a
	// rollback puts back.
	Previous     *Record `json:"previous"`
	PreviousFile *Record `json:"previousFile"`
	// Reason is why the deployment fails (set from rolling_back on).
	Reason  string         `json:"reason,omitempty"`
	Results []DaemonResult `json:"results,omitempty"`
}

// DaemonResult is one daemon's answer, as staged.json keeps it.
type DaemonResult struct {
	Daemon string `json:"daemon"`
	Ok     bool   `json:"ok"`
	Reason string `json:"reason,omitempty"`
}

// legacyStaged is staged.json as written before stages existed: the Record
// the deployment would put in force, written before any daemon was asked.
type legacyStaged struct {
	Record
	Stage *string `json:"stage"`
}

// ReadState reads staged.json; (nil, nil) when there is none. A staged.json
// of the format before stages comes back with an empty Stage and Next set.
func ReadState(root layout.Root) (*State, error) {
	path := Path(root, StagedFile)
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var legacy legacyStaged
	if err := json.Unmarshal(b, &legacy); err != nil {
		return nil, fmt.Errorf("%s: corrupt: %w", path, err)
	}
	if legacy.Stage == nil {
		if legacy.DeploymentID == "" {
			return nil, fmt.Errorf("%s: corrupt: deploymentId is empty", path)
		}
		r := legacy.Record
		return &State{DeploymentID: r.DeploymentID, CreatedAt: r.DeployedAt, Next: &r}, nil
	}
	var st State
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("%s: corrupt: %w", path, err)
	}
	if st.DeploymentID == "" || st.Next == nil {
		return nil, fmt.Errorf("%s: corrupt: deploymentId or next is missing", path)
	}
	return &st, nil
}

// WriteState replaces staged.json atomically.
func WriteState(root layout.Root, st *State) error {
	parts, err := stateParts(st)
	if err != nil {
		return err
	}
	return atomicfile.WritePartsHook(Path(root, StagedFile), parts, fileMode, nil)
}

// stateHead is a State without its records.
type stateHead struct {
	DeploymentID string         `json:"deploymentId"`
	Type         string         `json:"type"`
	Stage        string         `json:"stage"`
	CreatedAt    time.Time      `json:"createdAt"`
	RedeployOf   string         `json:"redeployOf,omitempty"`
	Reason       string         `json:"reason,omitempty"`
	Results      []DaemonResult `json:"results,omitempty"`
}

// stateParts is st as compact JSON and a newline, in pieces (see
// recordParts): its three records may each hold a whole group.
func stateParts(st *State) ([][]byte, error) {
	head, err := json.Marshal(stateHead{DeploymentID: st.DeploymentID, Type: st.Type, Stage: st.Stage, CreatedAt: st.CreatedAt,
		RedeployOf: st.RedeployOf, Reason: st.Reason, Results: st.Results})
	if err != nil {
		return nil, err
	}
	parts := [][]byte{head[:len(head)-1]}
	for _, f := range []struct {
		name string
		r    *Record
	}{{"next", st.Next}, {"previous", st.Previous}, {"previousFile", st.PreviousFile}} {
		parts = append(parts, []byte(`,"`+f.name+`":`))
		if parts, err = recordParts(parts, f.r); err != nil {
			return nil, err
		}
	}
	return append(parts, []byte("}\n")), nil
}

// RemoveState removes staged.json durably.
func RemoveState(root layout.Root) error {
	return putRecord(Path(root, StagedFile), nil)
}
