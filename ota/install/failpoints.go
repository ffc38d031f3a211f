package install

// Failpoints of an update, in the order an update reaches them. They are
// armed with EVERGREEN_FAILPOINT=<name> in a build with `-tags failpoints`
// (services/kit/deployment/failpoint: the process writes
// DIR/run/failpoint-<name> and blocks there, for a test to SIGKILL the
// suite); in other builds they compile to nothing.
const (
	// FPVerified: signature and hashes checked; nothing on disk changed.
	FPVerified = "ota-verified"
	// FPExtracted: the bundle is extracted to versions/<dir>.
	FPExtracted = "ota-extracted"
	// FPPending: state.json records the pending version (attempts 0).
	FPPending = "ota-pending"
	// FPSwitched: current names the new version, previous the old one.
	FPSwitched = "ota-switched"
	// FPBeforeRestart: just before the restart request.
	FPBeforeRestart = "ota-before-restart"
	// FPLaunchCounted: the launcher recorded one more launch attempt.
	FPLaunchCounted = "ota-launch-counted"
	// FPBeforeCommit: every daemon healthy; the commit is not written.
	FPBeforeCommit = "ota-before-commit"
	// FPCommitted: state.json records the commit; not reported yet.
	FPCommitted = "ota-committed"
	// FPRollbackDecided: state.json says rolling back; current still
	// names the failed version.
	FPRollbackDecided = "ota-rollback-decided"
	// FPRollbackSwitched: current names the previous version again; the
	// outcome is not recorded yet.
	FPRollbackSwitched = "ota-rollback-switched"
)

// Failpoints lists them all in order.
var Failpoints = []string{FPVerified, FPExtracted, FPPending, FPSwitched, FPBeforeRestart, FPLaunchCounted,
	FPBeforeCommit, FPCommitted, FPRollbackDecided, FPRollbackSwitched}
