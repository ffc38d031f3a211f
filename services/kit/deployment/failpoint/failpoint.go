// Package failpoint marks the stage boundaries of a deployment where a crash
// test may stop the core. The points are compiled in only with the build tag
// `failpoints` (go build -tags failpoints); in every other build Hit and
// RefuseApply are empty and inlined away.
//
// With the tag, EVERGREEN_FAILPOINT=<name> arms one point: the process that
// reaches it writes DIR/run/failpoint-<name> and blocks that goroutine
// forever, so the test can SIGKILL the whole suite exactly there.
// EVERGREEN_FAILPOINT_REFUSE_APPLY=<daemon>[,<daemon>] makes the kit refuse
// every APPLY (not PREPARE, not ROLLBACK) in the named daemons, so a test can
// make a deployment fail after its commit.
package failpoint

// Env arms one failpoint by name.
const Env = "EVERGREEN_FAILPOINT"

// RefuseEnv names the daemons whose kit refuses APPLY.
const RefuseEnv = "EVERGREEN_FAILPOINT_REFUSE_APPLY"

// The failpoints, in the order a deployment reaches them.
const (
	// Validated: staged.json records the validated deployment.
	Validated = "validated"
	// Artifacts: the artifacts stage is done (staged.json says so).
	Artifacts = "artifacts"
	// Prepared: every daemon prepared; staged.json says so; nothing switched.
	Prepared = "prepared"
	// CommitPreviousWritten: previous.json holds the old group, current.json
	// still names it too.
	CommitPreviousWritten = "commit-previous-written"
	// CommitTempWritten: the new current.json is written and synced as a
	// temp file, not yet renamed over current.json.
	CommitTempWritten = "commit-temp-written"
	// Committed: current.json names the new deployment; no daemon switched.
	Committed = "committed"
	// AppliedOne: the first daemon confirmed APPLY, the others not yet.
	AppliedOne = "applied-one"
	// Applied: every daemon confirmed; staged.json says so.
	Applied = "applied"
	// RollbackStarted: a daemon refused after the commit; staged.json says
	// rolling_back; current.json still names the new deployment.
	RollbackStarted = "rollback-started"
	// RollbackPointer: current.json names the previous deployment again; the
	// daemons have not been told.
	RollbackPointer = "rollback-pointer"
	// RolledBack: every daemon got the previous group back.
	RolledBack = "rolled-back"
	// Recorded: history.json records the outcome; staged.json is still there.
	Recorded = "recorded"
)

// All lists every failpoint in stage order.
var All = []string{Validated, Artifacts, Prepared, CommitPreviousWritten, CommitTempWritten, Committed,
	AppliedOne, Applied, RollbackStarted, RollbackPointer, RolledBack, Recorded}

// MarkerName is the file a failpoint writes under DIR/run when it is hit.
func MarkerName(name string) string { return "failpoint-" + name }
