package install

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/evergreen-edge/evergreen/services/kit/atomicfile"
)

// JobFile is DIR/ota/job.json: the job in flight before its install (the
// signature checked, the bundle being downloaded or verified). It is
// written, atomically and durably, before the download starts, and removed
// when the job ends: refused, failed, or installed (state.json's pending
// takes over). A start of the ota daemon that finds it resumes a cloud job
// and records a local one as interrupted.
const JobFile = "job.json"

// MaxResumes bounds how often a job is picked up again after a restart: a
// job that keeps the core from staying up ends as a Failure.
const MaxResumes = 5

// Job is an update job as it was asked for, enough to run it again.
type Job struct {
	JobID  string `json:"jobId"`
	Source string `json:"source"` // SourceLocal or SourceCloud
	// Bundle is the https URL (or the path) of the bundle.
	Bundle       string `json:"bundle"`
	SHA256       string `json:"sha256,omitempty"`
	Size         int64  `json:"size,omitempty"`
	Signature    []byte `json:"signature,omitempty"`
	SignatureURL string `json:"signatureUrl,omitempty"`
	// TargetVersion, when set, must be the bundle's version (cloud jobs).
	TargetVersion string    `json:"targetVersion,omitempty"`
	Force         bool      `json:"force,omitempty"`
	StartedAt     time.Time `json:"startedAt"`
	// Resumes counts the starts that picked the job up again.
	Resumes int `json:"resumes,omitempty"`
}

// JobPath is DIR/ota/job.json.
func (l Layout) JobPath() string { return filepath.Join(l.dir, JobFile) }

// SaveJob records the job in flight (atomically, fsynced).
func (l Layout) SaveJob(j *Job) error {
	b, err := json.MarshalIndent(j, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(l.JobPath(), append(b, '\n'), 0o600)
}

// LoadJob reads the job in flight (nil when there is none).
func (l Layout) LoadJob() (*Job, error) {
	b, err := os.ReadFile(l.JobPath())
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var j Job
	if err := json.Unmarshal(b, &j); err != nil {
		return nil, fmt.Errorf("%s: %w", l.JobPath(), err)
	}
	return &j, nil
}

// RemoveJob forgets the job in flight (durably; nothing when none).
func (l Layout) RemoveJob() error {
	if err := os.Remove(l.JobPath()); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return err
	}
	return atomicfile.SyncDir(l.dir)
}
