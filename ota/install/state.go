package install

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"time"

	"github.com/evergreen-edge/evergreen/services/kit/atomicfile"
)

// Outcome statuses (the cloud statuses of docs/cloud.md).
const (
	Success  = "Success"
	Failure  = "Failure"
	Rejected = "Rejected"
)

// Sources of a job.
const (
	SourceLocal = "local"
	SourceCloud = "cloud"
)

// MaxBroken bounds the versions remembered as broken (oldest dropped).
const MaxBroken = 32

// State is DIR/ota/state.json.
type State struct {
	// Committed is the version last committed by a health check.
	Committed *Installed `json:"committed,omitempty"`
	// Pending is the version installed and switched to but not committed.
	Pending *Pending `json:"pending,omitempty"`
	// Broken versions are never installed again without force.
	Broken []Broken `json:"broken,omitempty"`
	// Last is the outcome of the last job.
	Last *Outcome `json:"last,omitempty"`
}

// Installed names a version and its folder under versions/.
type Installed struct {
	Version string    `json:"version"`
	Dir     string    `json:"dir"`
	At      time.Time `json:"at"`
}

// Pending is an update between its switch and its commit or rollback.
type Pending struct {
	Version string `json:"version"`
	Dir     string `json:"dir"`
	// PreviousVersion and PreviousDir are what a rollback restores (the
	// previous link names the same folder).
	PreviousVersion string `json:"previousVersion"`
	PreviousDir     string `json:"previousDir"`
	// Attempts counts the launches of Dir so far.
	Attempts int `json:"attempts"`
	// LaunchedAt is the last launch: the health check's clock starts here.
	LaunchedAt time.Time `json:"launchedAt,omitzero"`
	JobID      string    `json:"jobId"`
	Source     string    `json:"source"`
	StartedAt  time.Time `json:"startedAt"`
	SwitchedAt time.Time `json:"switchedAt,omitzero"`
	// RollingBack: the rollback is decided (Reason says why); whoever finds
	// it so finishes it.
	RollingBack bool   `json:"rollingBack,omitempty"`
	Reason      string `json:"reason,omitempty"`
}

// Broken is a version that failed after its switch.
type Broken struct {
	Version string    `json:"version"`
	Reason  string    `json:"reason"`
	At      time.Time `json:"at"`
}

// Outcome is how a job ended.
type Outcome struct {
	JobID       string    `json:"jobId"`
	Source      string    `json:"source"`
	Version     string    `json:"version,omitempty"`
	FromVersion string    `json:"fromVersion,omitempty"`
	Status      string    `json:"status"`
	Reason      string    `json:"reason,omitempty"`
	StartedAt   time.Time `json:"startedAt,omitzero"`
	FinishedAt  time.Time `json:"finishedAt"`
	// Reported: the final status went out to the cloud (cloud jobs).
	Reported bool `json:"reported,omitempty"`
}

// LoadState reads state.json; a missing file is an empty state.
func (l Layout) LoadState() (*State, error) {
	b, err := os.ReadFile(l.StateFile())
	if errors.Is(err, fs.ErrNotExist) {
		return &State{}, nil
	}
	if err != nil {
		return nil, err
	}
	var s State
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("%s: %w", l.StateFile(), err)
	}
	return &s, nil
}

// SaveState writes state.json atomically and durably.
func (l Layout) SaveState(s *State) error {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(l.StateFile(), append(b, '\n'), 0o600)
}

// IsBroken returns the record of version when it is marked broken.
func (s *State) IsBroken(version string) *Broken {
	for i := range s.Broken {
		if s.Broken[i].Version == version {
			return &s.Broken[i]
		}
	}
	return nil
}

// MarkBroken records version as broken (once; the newest reason wins).
func (s *State) MarkBroken(version, reason string, at time.Time) {
	s.Broken = slices.DeleteFunc(s.Broken, func(b Broken) bool { return b.Version == version })
	s.Broken = append(s.Broken, Broken{Version: version, Reason: reason, At: at})
	if len(s.Broken) > MaxBroken {
		s.Broken = s.Broken[len(s.Broken)-MaxBroken:]
	}
}

// Unbreak forgets that version was broken (a forced install that commits).
func (s *State) Unbreak(version string) {
	s.Broken = slices.DeleteFunc(s.Broken, func(b Broken) bool { return b.Version == version })
}

// RollBack carries out the rollback of the pending update and records its
// outcome: current back to the previous folder, the pending version marked
// broken, the outcome Failure with reason. It is idempotent: a rollback
// interrupted by a crash is finished by calling it again. hit is called at
// the points where a crash test may stop it (nil: none).
func (l Layout) RollBack(s *State, reason string, now time.Time, hit func(point string)) error {
	p := s.Pending
	if p == nil {
		return nil
	}
	if !p.RollingBack {
		p.RollingBack, p.Reason = true, reason
		if err := l.SaveState(s); err != nil {
			return err
		}
	}
	if hit != nil {
		hit(FPRollbackDecided)
	}
	if p.PreviousDir != "" {
		if cur, _ := l.ReadLink(CurrentLink); cur != p.PreviousDir {
			if err := l.SwitchLink(CurrentLink, p.PreviousDir); err != nil {
				return err
			}
		}
	}
	if hit != nil {
		hit(FPRollbackSwitched)
	}
	s.MarkBroken(p.Version, p.Reason, now)
	s.Last = &Outcome{JobID: p.JobID, Source: p.Source, Version: p.Version, FromVersion: p.PreviousVersion,
		Status: Failure, Reason: p.Reason, StartedAt: p.StartedAt, FinishedAt: now}
	s.Pending = nil
	return l.SaveState(s)
}

// Settle finishes what a crash left half done, before anything runs: a
// decided rollback is carried out, and an update whose current link was
// never switched is dropped (Failure, the version not marked broken: it
// never ran). It reports what it did ("" when nothing).
func (l Layout) Settle(s *State, now time.Time, hit func(string)) (string, error) {
	p := s.Pending
	if p == nil {
		return "", nil
	}
	if p.RollingBack {
		return "finished the rollback of " + p.Version + ": " + p.Reason, l.RollBack(s, p.Reason, now, hit)
	}
	cur, err := l.ReadLink(CurrentLink)
	if err != nil {
		return "", err
	}
	if cur == p.Dir {
		return "", nil
	}
	reason := "interrupted before the switch to " + p.Version + " (the core stopped); nothing changed"
	s.Last = &Outcome{JobID: p.JobID, Source: p.Source, Version: p.Version, FromVersion: p.PreviousVersion,
		Status: Failure, Reason: reason, StartedAt: p.StartedAt, FinishedAt: now}
	s.Pending = nil
	return reason, l.SaveState(s)
}
