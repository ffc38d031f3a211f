package groupdef

// The types below mirror the Greengrass v1 API (2017-06-07) definition
// versions field for field, with the API's own names, so a definition taken
// from `aws greengrass get-*-definition-version` reads the same here. The
// JSON tags drive both Parse and Marshal, so the two cannot drift apart.
//
// Optional integers are pointers because zero is meaningful (Uid 0 is root)
// or wrong (Timeout 0), and must stay distinguishable from "not given".

// Group is a whole group: one definition version of each kind.
type Group struct {
	GroupId        string                         `json:"GroupId,omitempty"`
	GroupVersionId string                         `json:"GroupVersionId,omitempty"`
	Name           string                         `json:"Name,omitempty"`
	Core           *CoreDefinitionVersion         `json:"Core,omitempty"`
	Functions      *FunctionDefinitionVersion     `json:"Functions,omitempty"`
	Subscriptions  *SubscriptionDefinitionVersion `json:"Subscriptions,omitempty"`
	Devices        *DeviceDefinitionVersion       `json:"Devices,omitempty"`
	Resources      *ResourceDefinitionVersion     `json:"Resources,omitempty"`
	Connectors     *ConnectorDefinitionVersion    `json:"Connectors,omitempty"`
	Loggers        *LoggerDefinitionVersion       `json:"Loggers,omitempty"`
}

// CoreDefinitionVersion holds the group's core; a group has exactly one.
type CoreDefinitionVersion struct {
	Cores []Core `json:"Cores,omitempty"`
}

// Core is the thing that runs the group.
type Core struct {
	Id             string `json:"Id,omitempty"`
	ThingArn       string `json:"ThingArn,omitempty"`
	CertificateArn string `json:"CertificateArn,omitempty"`
	SyncShadow     bool   `json:"SyncShadow,omitempty"`
}

// FunctionDefinitionVersion holds the group's Lambda functions.
type FunctionDefinitionVersion struct {
	DefaultConfig *FunctionDefaultConfig `json:"DefaultConfig,omitempty"`
	Functions     []Function             `json:"Functions,omitempty"`
}

// FunctionDefaultConfig is the group-wide default for functions that do not
// set their own execution configuration.
type FunctionDefaultConfig struct {
	Execution *FunctionDefaultExecutionConfig `json:"Execution,omitempty"`
}

// FunctionDefaultExecutionConfig is the default isolation mode and identity.
type FunctionDefaultExecutionConfig struct {
	IsolationMode string               `json:"IsolationMode,omitempty"`
	RunAs         *FunctionRunAsConfig `json:"RunAs,omitempty"`
}

// Function is one Lambda function of the group.
type Function struct {
	Id                    string                 `json:"Id,omitempty"`
	FunctionArn           string                 `json:"FunctionArn,omitempty"`
	FunctionConfiguration *FunctionConfiguration `json:"FunctionConfiguration,omitempty"`
	// Evergreen carries what v1 kept in the Lambda service rather than in
	// the group: the runtime, handler and code. Required for user
	// functions, refused for system functions.
	Evergreen *FunctionExtension `json:"Evergreen,omitempty"`
}

// FunctionConfiguration is the group-specific configuration of a function.
type FunctionConfiguration struct {
	EncodingType            string                            `json:"EncodingType,omitempty"`
	Environment             *FunctionConfigurationEnvironment `json:"Environment,omitempty"`
	ExecArgs                string                            `json:"ExecArgs,omitempty"`
	Executable              string                            `json:"Executable,omitempty"`
	MemorySize              *int                              `json:"MemorySize,omitempty"` // KB
	Pinned                  bool                              `json:"Pinned,omitempty"`
	Timeout                 *int                              `json:"Timeout,omitempty"` // seconds
	FunctionRuntimeOverride string                            `json:"FunctionRuntimeOverride,omitempty"`
}

// FunctionConfigurationEnvironment is what the function's process sees.
type FunctionConfigurationEnvironment struct {
	AccessSysfs            bool                     `json:"AccessSysfs,omitempty"`
	Execution              *FunctionExecutionConfig `json:"Execution,omitempty"`
	ResourceAccessPolicies []ResourceAccessPolicy   `json:"ResourceAccessPolicies,omitempty"`
	Variables              map[string]string        `json:"Variables,omitempty"`
}

// FunctionExecutionConfig overrides the group default for one function.
type FunctionExecutionConfig struct {
	IsolationMode string               `json:"IsolationMode,omitempty"`
	RunAs         *FunctionRunAsConfig `json:"RunAs,omitempty"`
}

// FunctionRunAsConfig is the identity a function runs as; either id may be
// given alone.
type FunctionRunAsConfig struct {
	Uid *int `json:"Uid,omitempty"`
	Gid *int `json:"Gid,omitempty"`
}

// ResourceAccessPolicy attaches a resource of the group to a function.
type ResourceAccessPolicy struct {
	ResourceId string `json:"ResourceId,omitempty"`
	Permission string `json:"Permission,omitempty"`
}

// FunctionExtension is the Evergreen block of a user function.
type FunctionExtension struct {
	Runtime    string `json:"Runtime,omitempty"`
	Handler    string `json:"Handler,omitempty"`
	CodeUri    string `json:"CodeUri,omitempty"`
	CodeSha256 string `json:"CodeSha256,omitempty"`
}

// SubscriptionDefinitionVersion holds the routing table.
type SubscriptionDefinitionVersion struct {
	Subscriptions []Subscription `json:"Subscriptions,omitempty"`
}

// Subscription lets messages whose topic matches Subject flow from Source to
// Target, in that direction only.
type Subscription struct {
	Id      string `json:"Id,omitempty"`
	Source  string `json:"Source,omitempty"`
	Subject string `json:"Subject,omitempty"`
	Target  string `json:"Target,omitempty"`
}

// DeviceDefinitionVersion holds the client devices of the group.
type DeviceDefinitionVersion struct {
	Devices []Device `json:"Devices,omitempty"`
}

// Device is a client device allowed to connect to the core.
type Device struct {
	Id             string `json:"Id,omitempty"`
	ThingArn       string `json:"ThingArn,omitempty"`
	CertificateArn string `json:"CertificateArn,omitempty"`
	SyncShadow     bool   `json:"SyncShadow,omitempty"`
}

// ResourceDefinitionVersion holds the resources functions may attach.
type ResourceDefinitionVersion struct {
	Resources []Resource `json:"Resources,omitempty"`
}

// Resource is one local, machine-learning or secret resource.
type Resource struct {
	Id                    string                 `json:"Id,omitempty"`
	Name                  string                 `json:"Name,omitempty"`
	ResourceDataContainer *ResourceDataContainer `json:"ResourceDataContainer,omitempty"`
}

// ResourceDataContainer holds exactly one of its fields.
type ResourceDataContainer struct {
	LocalDeviceResourceData                   *LocalDeviceResourceData                   `json:"LocalDeviceResourceData,omitempty"`
	LocalVolumeResourceData                   *LocalVolumeResourceData                   `json:"LocalVolumeResourceData,omitempty"`
	S3MachineLearningModelResourceData        *S3MachineLearningModelResourceData        `json:"S3MachineLearningModelResourceData,omitempty"`
	SageMakerMachineLearningModelResourceData *SageMakerMachineLearningModelResourceData `json:"SageMakerMachineLearningModelResourceData,omitempty"`
	SecretsManagerSecretResourceData          *SecretsManagerSecretResourceData          `json:"SecretsManagerSecretResourceData,omitempty"`
}

// LocalDeviceResourceData is a character or block device under /dev.
type LocalDeviceResourceData struct {
	SourcePath        string             `json:"SourcePath,omitempty"`
	GroupOwnerSetting *GroupOwnerSetting `json:"GroupOwnerSetting,omitempty"`
}

// LocalVolumeResourceData is a host file or directory mounted into the
// function's container.
type LocalVolumeResourceData struct {
	SourcePath        string             `json:"SourcePath,omitempty"`
	DestinationPath   string             `json:"DestinationPath,omitempty"`
	GroupOwnerSetting *GroupOwnerSetting `json:"GroupOwnerSetting,omitempty"`
}

// GroupOwnerSetting adds the Linux group owning a local resource to the
// function's process.
type GroupOwnerSetting struct {
	AutoAddGroupOwner bool   `json:"AutoAddGroupOwner,omitempty"`
	GroupOwner        string `json:"GroupOwner,omitempty"`
}

// S3MachineLearningModelResourceData is a model archive downloaded from S3.
type S3MachineLearningModelResourceData struct {
	DestinationPath string                        `json:"DestinationPath,omitempty"`
	S3Uri           string                        `json:"S3Uri,omitempty"`
	OwnerSetting    *ResourceDownloadOwnerSetting `json:"OwnerSetting,omitempty"`
	// Evergreen says where this core fetches the model from (a core has
	// no AWS credentials for S3Uri).
	Evergreen *ArtifactSource `json:"Evergreen,omitempty"`
}

// ArtifactSource is where the deployagent fetches an artifact from: an
// https:// or file:/// URL, the SHA-256 of the file (required), and its
// size in bytes (optional; checked when given).
type ArtifactSource struct {
	Url    string `json:"Url,omitempty"`
	Sha256 string `json:"Sha256,omitempty"`
	Size   int    `json:"Size,omitempty"`
}

// SageMakerMachineLearningModelResourceData is the output of a SageMaker
// training job.
type SageMakerMachineLearningModelResourceData struct {
	DestinationPath string                        `json:"DestinationPath,omitempty"`
	SageMakerJobArn string                        `json:"SageMakerJobArn,omitempty"`
	OwnerSetting    *ResourceDownloadOwnerSetting `json:"OwnerSetting,omitempty"`
}

// ResourceDownloadOwnerSetting owns downloaded model files.
type ResourceDownloadOwnerSetting struct {
	GroupOwner      string `json:"GroupOwner,omitempty"`
	GroupPermission string `json:"GroupPermission,omitempty"`
}

// SecretsManagerSecretResourceData is a secret made available locally.
type SecretsManagerSecretResourceData struct {
	ARN                               string   `json:"ARN,omitempty"`
	AdditionalStagingLabelsToDownload []string `json:"AdditionalStagingLabelsToDownload,omitempty"`
}

// ConnectorDefinitionVersion holds the group's connectors.
type ConnectorDefinitionVersion struct {
	Connectors []Connector `json:"Connectors,omitempty"`
}

// Connector is one AWS-provided connector.
type Connector struct {
	Id           string            `json:"Id,omitempty"`
	ConnectorArn string            `json:"ConnectorArn,omitempty"`
	Parameters   map[string]string `json:"Parameters,omitempty"`
}

// LoggerDefinitionVersion holds the group's loggers.
type LoggerDefinitionVersion struct {
	Loggers []Logger `json:"Loggers,omitempty"`
}

// Logger sends one component's logs at one level to one place.
type Logger struct {
	Id        string `json:"Id,omitempty"`
	Component string `json:"Component,omitempty"`
	Level     string `json:"Level,omitempty"`
	Type      string `json:"Type,omitempty"`
	Space     *int   `json:"Space,omitempty"` // KB, FileSystem only
}
