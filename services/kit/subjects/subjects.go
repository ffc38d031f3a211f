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
	// RuntimeRoutePlan is the runtime's request for a function's publish
	// with queueFullPolicy AllOrError: a RoutedMessage; the broker replies
	// a RoutePlan (every target, and those without room) and delivers
	// nothing. With a RoutePlan without full targets, the runtime queues
	// the function and connector targets itself and publishes the message
	// on RuntimePublish with Targets = the plan's targets, which the
	// broker delivers to exactly those targets except the runtime's.
	RuntimeRoutePlan = "evergreen.runtime.route.plan" // runtime -> broker, request/reply

	// Shadow sync with the cloud (things with SyncShadow: true). These
	// bypass the subscription table: they are the core's own traffic with
	// its cloud, as v1's GGShadowSyncManager's was.
	//
	// ShadowCloud carries a RoutedMessage whose topic is a shadow request
	// ($aws/things/<thing>/shadow[/name/<name>]/{get,update,delete}) of a
	// synced thing; the broker queues it for the cloud.
	ShadowCloud = "evergreen.shadow.cloud"
	// BrokerCloudShadow carries what the cloud publishes on the shadow
	// response topics (accepted, rejected, delta, documents) of synced
	// things, as a RoutedMessage with source cloud.
	BrokerCloudShadow = "evergreen.broker.cloud.shadow"
	// BrokerCloudReady carries a CloudStatus each time a cloud connection
	// has (re)made its subscriptions: a moment to resync.
	BrokerCloudReady = "evergreen.broker.events.cloud"

	// Cloud deployments (services/kit/clouddeploy, docs/cloud.md). These
	// too bypass the subscription table.
	//
	// BrokerCloudDeploy carries what the cloud publishes on the core's
	// deployment request topic, as a RoutedMessage with source cloud; the
	// deployagent runs it.
	BrokerCloudDeploy = "evergreen.broker.cloud.deploy"
	// DeployCloud carries a RoutedMessage of the deployagent on the core's
	// deployment status topic; the broker queues it for the cloud.
	DeployCloud = "evergreen.deploy.cloud"

	// Cloud update jobs (services/kit/cloudota, docs/ota.md), outside the
	// subscription table as well.
	//
	// BrokerCloudOTA carries what the cloud publishes on the core's update
	// request topic, as a RoutedMessage with source cloud; the ota daemon
	// runs it.
	BrokerCloudOTA = "evergreen.broker.cloud.ota"
	// OTACloud carries a RoutedMessage of the ota daemon on the core's
	// update status topic; the broker queues it for the cloud.
	OTACloud = "evergreen.ota.cloud"

	// IPConnectivity carries ipdetectorv1.Connectivity whenever the core's
	// addresses change; certmgr re-issues the MQTT server certificate.
	IPConnectivity = "evergreen.ipdetector.events.connectivity"
)

// DeployApply is the apply subject of one daemon.
func DeployApply(daemon string) string { return DeployApplyPrefix + daemon }
