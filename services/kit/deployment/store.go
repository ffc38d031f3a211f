// Package deployment is the on-disk and on-the-bus contract of deployments.
//
// The deployagent owns DIR/deployments/. Every daemon that consumes the group
// reads the group in force with LoadCurrent when it starts and follows later
// deployments with Serve. Files (all written with atomicfile, so a power cut
// leaves the old content or the new one):
//
//	current.json   the deployment in force: Record. This is the pointer: a
//	               deployment is committed the moment its record is renamed
//	               over current.json, and not before.
//	previous.json  the one it replaced: Record; also the last good copy that
//	               LoadCurrent falls back to when current.json is unreadable
//	staged.json    the deployment in flight: State (its stage, the record it
//	               puts in force, the records it replaces); removed when the
//	               outcome is in history.json
//	history.json   the last HistoryLimit deployments, newest first, each a
//	               deployv1.Deployment in protojson; history.json.bak is the
//	               copy before the last write
package deployment

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	deployv1 "github.com/evergreen-edge/evergreen/proto/evergreen/deploy/v1"
	"github.com/evergreen-edge/evergreen/services/kit/atomicfile"
	"github.com/evergreen-edge/evergreen/services/kit/deployment/failpoint"
	"github.com/evergreen-edge/evergreen/services/kit/groupdef"
	"github.com/evergreen-edge/evergreen/services/kit/layout"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// HistoryLimit bounds history.json; the oldest records are dropped first.
const HistoryLimit = 100

// File names under DIR/deployments/.
const (
	CurrentFile  = "current.json"
	PreviousFile = "previous.json"
	StagedFile   = "staged.json"
	HistoryFile  = "history.json"
	// HistoryBackup is history.json before its last write.
	HistoryBackup = "history.json.bak"
)

// The files hold the group definition, which may name secrets' ARNs and
// device identities: readable by the suite's user only.
const fileMode = 0o600

// Path is the path of one of the files above.
func Path(root layout.Root, file string) string {
	return filepath.Join(root.DeploymentsDir(), file)
}

// Record is the content of current.json, previous.json and staged.json.
type Record struct {
	DeploymentID string `json:"deploymentId"`
	// GroupSHA256 is the hex sha256 of the group file as it was submitted;
	// empty for a reset.
	GroupSHA256 string    `json:"groupSha256"`
	DeployedAt  time.Time `json:"deployedAt"`
	// Reset records a deployment that removed the group; Group is then null.
	Reset bool `json:"reset"`
	// Group is the canonical group JSON (groupdef.Marshal), or null.
	Group json.RawMessage `json:"group"`
}

// Decode parses the recorded group; nil when the record is a reset.
func (r *Record) Decode() (*groupdef.Group, error) {
	if r == nil || r.Reset || len(r.Group) == 0 || bytes.Equal(bytes.TrimSpace(r.Group), []byte("null")) {
		return nil, nil
	}
	return groupdef.Parse(r.Group)
}

// HasGroup reports whether the record puts a group in force.
func (r *Record) HasGroup() bool {
	return r != nil && !r.Reset && len(r.Group) > 0 && !bytes.Equal(bytes.TrimSpace(r.Group), []byte("null"))
}

// ReadRecord reads one record file. It returns (nil, nil) when the file does
// not exist.
func ReadRecord(path string) (*Record, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var r Record
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("%s: corrupt: %w", path, err)
	}
	if r.DeploymentID == "" {
		return nil, fmt.Errorf("%s: corrupt: deploymentId is empty", path)
	}
	return &r, nil
}

// WriteRecord replaces a record file atomically.
func WriteRecord(path string, r *Record) error {
	return writeRecord(path, r, nil)
}

func writeRecord(path string, r *Record, beforeRename func()) error {
	parts, err := recordParts(nil, r)
	if err != nil {
		return err
	}
	return atomicfile.WritePartsHook(path, append(parts, []byte("\n")), fileMode, beforeRename)
}

// recordHead is a Record without its group.
type recordHead struct {
	DeploymentID string    `json:"deploymentId"`
	GroupSHA256  string    `json:"groupSha256"`
	DeployedAt   time.Time `json:"deployedAt"`
	Reset        bool      `json:"reset"`
}

// recordParts appends r, as compact JSON in pieces, to parts. The group is
// one of the pieces, the caller's own slice, checked by json.Valid (which
// allocates nothing): encoding/json would compact it into a pooled buffer
// of its own size and copy it twice more, tens of MB of garbage per write
// at v1's limits, and staged.json (three records) is written at every
// stage of a deployment.
func recordParts(parts [][]byte, r *Record) ([][]byte, error) {
	if r == nil {
		return append(parts, []byte("null")), nil
	}
	head, err := json.Marshal(recordHead{DeploymentID: r.DeploymentID, GroupSHA256: r.GroupSHA256, DeployedAt: r.DeployedAt, Reset: r.Reset})
	if err != nil {
		return nil, err
	}
	head = append(head[:len(head)-1], `,"group":`...)
	g := bytes.TrimSpace(r.Group)
	switch {
	case len(g) == 0:
		return append(parts, append(head, "null}"...)), nil
	case !json.Valid(g):
		return nil, fmt.Errorf("deployment %s: the group is not valid JSON", r.DeploymentID)
	}
	return append(parts, head, g, []byte("}")), nil
}

// ReadCurrent returns the record in force, nil when nothing was ever
// deployed.
func ReadCurrent(root layout.Root) (*Record, error) {
	return ReadRecord(Path(root, CurrentFile))
}

// LoadCurrent returns the group in force and the id of the deployment that
// put it there. The group is nil when nothing was ever deployed (id "") or
// when the last deployment was a reset (id of the reset).
//
// When current.json is unreadable (a torn or corrupted last write), the
// record of previous.json, the last good one, is in force instead; the
// deployagent rewrites current.json from it when it starts.
func LoadCurrent(root layout.Root) (*groupdef.Group, string, error) {
	r, _, err := ReadInForce(root)
	if err != nil || r == nil {
		return nil, "", err
	}
	g, err := r.Decode()
	if err != nil {
		return nil, "", fmt.Errorf("%s: group: %w", Path(root, CurrentFile), err)
	}
	return g, r.DeploymentID, nil
}

// ReadInForce returns the record in force: current.json, or, when
// current.json is unreadable, previous.json (the last good record; nil when
// there is none). fallback then says why current.json was not used. err is
// set when neither can be read, or current.json is unreadable and there is
// no previous.json.
func ReadInForce(root layout.Root) (r *Record, fallback string, err error) {
	r, err = ReadCurrent(root)
	if err == nil {
		return r, "", nil
	}
	prev, perr := ReadRecord(Path(root, PreviousFile))
	switch {
	case perr != nil:
		return nil, "", fmt.Errorf("%w; the last good copy is unreadable too: %v", err, perr)
	case prev == nil:
		// No last good copy: which group should run is unknown, and
		// silently running none would drop the user's group.
		return nil, "", fmt.Errorf("%w; there is no last good copy (%s)", err, PreviousFile)
	}
	return prev, err.Error(), nil
}

// Commit puts next in force: the old current.json becomes previous.json,
// then next becomes current.json. A power cut between the two renames
// leaves the old group in force in both files, never a mix.
func Commit(root layout.Root, next *Record) error {
	old, _, err := ReadInForce(root)
	if err != nil {
		return err
	}
	if old != nil {
		if err := WriteRecord(Path(root, PreviousFile), old); err != nil {
			return err
		}
	}
	failpoint.Hit(root.RunDir(), failpoint.CommitPreviousWritten)
	return writeRecord(Path(root, CurrentFile), next, func() {
		failpoint.Hit(root.RunDir(), failpoint.CommitTempWritten)
	})
}

// Restore puts back the files a commit replaced: current.json becomes cur
// (removed when nil: nothing was ever deployed), then previous.json becomes
// prev (removed when nil). The pointer switches first, so a power cut in
// between leaves cur in force.
func Restore(root layout.Root, cur, prev *Record) error {
	if err := putRecord(Path(root, CurrentFile), cur); err != nil {
		return err
	}
	return putRecord(Path(root, PreviousFile), prev)
}

func putRecord(path string, r *Record) error {
	if r != nil {
		return WriteRecord(path, r)
	}
	err := os.Remove(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	return atomicfile.SyncDir(filepath.Dir(path))
}

// ReadHistory returns the recorded deployments, newest first; none when
// history.json does not exist. When history.json is unreadable (or missing
// while its backup exists: a stop between the two steps of WriteHistory),
// the backup is read instead, one write behind.
func ReadHistory(root layout.Root) ([]*deployv1.Deployment, error) {
	ds, err := readHistory(Path(root, HistoryFile))
	if err == nil && ds != nil {
		return ds, nil
	}
	bak, berr := readHistory(Path(root, HistoryBackup))
	switch {
	case berr == nil && bak != nil:
		return bak, nil
	case err != nil:
		return nil, err
	}
	return ds, nil
}

func readHistory(path string) ([]*deployv1.Deployment, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var raw []json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		return nil, fmt.Errorf("%s: corrupt: %w", path, err)
	}
	out := make([]*deployv1.Deployment, 0, len(raw))
	for i, m := range raw {
		d := &deployv1.Deployment{}
		if err := protojson.Unmarshal(m, d); err != nil {
			return nil, fmt.Errorf("%s: corrupt record %d: %w", path, i, err)
		}
		out = append(out, d)
	}
	if len(out) > HistoryLimit {
		out = out[:HistoryLimit]
	}
	return out, nil
}

// WriteHistory replaces history.json with the first HistoryLimit of ds
// (newest first). The current flag is not stored: it follows current.json.
func WriteHistory(root layout.Root, ds []*deployv1.Deployment) error {
	if len(ds) > HistoryLimit {
		ds = ds[:HistoryLimit]
	}
	raw := make([]json.RawMessage, 0, len(ds))
	for _, d := range ds {
		c := proto.Clone(d).(*deployv1.Deployment)
		c.Current = false
		b, err := protojson.Marshal(c)
		if err != nil {
			return err
		}
		raw = append(raw, b)
	}
	b, err := json.MarshalIndent(raw, "", "  ")
	if err != nil {
		return err
	}
	// The last good copy first: a rename, so it costs no data write.
	path := Path(root, HistoryFile)
	if err := os.Rename(path, Path(root, HistoryBackup)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return atomicfile.WriteFile(path, append(b, '\n'), fileMode)
}

// RemoveStaleTemps deletes the temp files an interrupted atomic write left
// next to the deployment files and returns their paths. The targets
// themselves are intact (the rename never happened), so this loses nothing.
func RemoveStaleTemps(root layout.Root) ([]string, error) {
	entries, err := os.ReadDir(root.DeploymentsDir())
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var removed []string
	for _, e := range entries {
		if e.IsDir() || !isTempOfOurs(e.Name()) {
			continue
		}
		p := filepath.Join(root.DeploymentsDir(), e.Name())
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return removed, err
		}
		removed = append(removed, p)
	}
	if len(removed) > 0 {
		if err := atomicfile.SyncDir(root.DeploymentsDir()); err != nil {
			return removed, err
		}
	}
	return removed, nil
}

// isTempOfOurs matches atomicfile's temp names for our files:
// ".current.json.tmp-123".
func isTempOfOurs(name string) bool {
	for _, f := range []string{CurrentFile, PreviousFile, StagedFile, HistoryFile, HistoryBackup} {
		if strings.HasPrefix(name, "."+f+".tmp-") {
			return true
		}
	}
	return false
}
