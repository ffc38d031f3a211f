// Package subjects names every subject on the internal bus. A daemon owns
// the subjects under evergreen.<daemon>.; the bus lets it publish only
// there (see each daemon's BusRole and docs/ARCHITECTURE.md).
package subjects

const (
	// DeployApplyPrefix + <daemon>: the deployagent's ApplyGroup request to a
	// daemon that consumes the group; the daemon replies ApplyResult.
	DeployApplyPrefix = "evergreen.deploy.apply."
	// DeployEvents carries DeploymentFinished after every deployment.
	DeployEvents = "evergreen.deploy.events.deployment"
	// CertServerRenewed carries ServerCertificateRenewed when certmgr issues
	// a new MQTT server certificate.
	CertServerRenewed = "evergreen.certmgr.events.server"
	// CertDeviceRemoved carries DeviceRemoved when a device is revoked.
	CertDeviceRemoved = "evergreen.certmgr.events.device"
)

// DeployApply is the apply subject of one daemon.
func DeployApply(daemon string) string { return DeployApplyPrefix + daemon }
