//go:build failpoints

package daemon

// neverHealthy names a daemon that never reports SERVING in a build with
// -tags failpoints and -ldflags "-X
// github.com/evergreen-edge/evergreen/services/kit/daemon.neverHealthy=NAME":
// the version built to fail its health check in the OTA tests.
var neverHealthy string

func failsHealthForTest(name string) bool { return neverHealthy != "" && neverHealthy == name }
