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

	// Routed messages (brokerv1.RoutedMessage). The broker delivers to the
	// daemon that owns a target; those daemons hand messages back on their
	// own subjects, where the bus guarantees who published them, so the
	// broker takes the source identity from the subject's owner and the
	// name the owner set, never from a device.
	BrokerDeliverFunction  = "evergreen.broker.deliver.function"  // -> runtime
	BrokerDeliverConnector = "evergreen.broker.deliver.connector" // -> runtime
	BrokerDeliverShadow    = "evergreen.broker.deliver.shadow"    // -> shadow
	RuntimePublish         = "evergreen.runtime.publish"          // runtime -> broker (functions, connectors)
	ShadowPublish          = "evergreen.shadow.publish"           // shadow -> broker (GGShadowService)

	// IPConnectivity carries ipdetectorv1.Connectivity whenever the core's
	// addresses change; certmgr re-issues the MQTT server certificate.
	IPConnectivity = "evergreen.ipdetector.events.connectivity"
)

// DeployApply is the apply subject of one daemon.
func DeployApply(daemon string) string { return DeployApplyPrefix + daemon }
