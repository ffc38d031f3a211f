package export

import (
	"context"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
)

// AWS service names, the keys of AWSOptions.Endpoints.
const (
	ServiceS3           = "s3"
	ServiceKinesis      = "kinesis"
	ServiceIoTAnalytics = "iotanalytics"
	ServiceIoTSiteWise  = "iotsitewise"
)

// AWSOptions configure the AWS exports (S3, Kinesis, IoT Analytics, IoT
// SiteWise). Credentials always come from the AWS SDKs' standard chain
// (environment, shared credentials and config files, container and
// instance roles; see awscreds.go): v1 took them from the group role
// through TES.
type AWSOptions struct {
	// Region is the AWS region; empty means the environment's (AWS_REGION,
	// AWS_DEFAULT_REGION, the shared config's profile), and the daemon
	// passes the core thing ARN's region.
	Region string
	// Endpoints override a service's endpoint URL (an S3-compatible store,
	// a VPC endpoint, a test server), keyed by the Service* names.
	Endpoints map[string]string
	// S3ForcePathStyle addresses buckets as https://host/bucket/key, as
	// most S3-compatible servers need.
	S3ForcePathStyle bool
}

// awsState loads the AWS configuration once, on first use: a core without
// AWS exports never reads the shared files or probes instance metadata.
type awsState struct {
	once sync.Once
	cfg  aws.Config
	err  error
}

// awsConfig returns the region and credentials of the AWS exports.
func (m *Manager) awsConfig(ctx context.Context) (aws.Config, error) {
	m.aws.once.Do(func() {
		m.aws.cfg, m.aws.err = loadAWSConfig(context.WithoutCancel(ctx), m.o.AWS.Region)
	})
	return m.aws.cfg, m.aws.err
}

// awsEndpoint is the configured endpoint override of service, or nil for
// the SDK's own resolution.
func (m *Manager) awsEndpoint(service string) *string {
	if u := m.o.AWS.Endpoints[service]; u != "" {
		return aws.String(u)
	}
	return nil
}
