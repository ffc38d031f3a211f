package export

import (
	"context"
	"fmt"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
)

// AWS service names, the keys of AWSOptions.Endpoints.
const (
	ServiceS3           = "s3"
	ServiceKinesis      = "kinesis"
	ServiceIoTAnalytics = "iotanalytics"
	ServiceIoTSiteWise  = "iotsitewise"
)

// AWSOptions configure the AWS exports (S3, Kinesis, IoT Analytics, IoT
// SiteWise). Credentials always come from the SDK's standard chain
// (environment, shared config and credentials files, container and
// instance roles): v1 took them from the group role through TES.
type AWSOptions struct {
	// Region is the AWS region; empty means the chain's (AWS_REGION, the
	// shared config), and the daemon passes the core thing ARN's region.
	Region string
	// Endpoints override a service's endpoint URL (an S3-compatible store,
	// a VPC endpoint, a test server), keyed by the Service* names.
	Endpoints map[string]string
	// S3ForcePathStyle addresses buckets as https://host/bucket/key, as
	// most S3-compatible servers need.
	S3ForcePathStyle bool
}

// awsState loads the SDK configuration once, on first use: a core without
// AWS exports never reads the shared files or probes instance metadata.
type awsState struct {
	once sync.Once
	cfg  aws.Config
	err  error
}

// awsConfig returns the SDK configuration for the AWS exports.
func (m *Manager) awsConfig(ctx context.Context) (aws.Config, error) {
	m.aws.once.Do(func() {
		var opts []func(*awsconfig.LoadOptions) error
		if m.o.AWS.Region != "" {
			opts = append(opts, awsconfig.WithRegion(m.o.AWS.Region))
		}
		// The exporter retries with its own backoff; the SDK retrying
		// inside one attempt would only hide the failure from the status.
		opts = append(opts, awsconfig.WithRetryMaxAttempts(1))
		m.aws.cfg, m.aws.err = awsconfig.LoadDefaultConfig(context.WithoutCancel(ctx), opts...)
		if m.aws.err == nil && m.aws.cfg.Region == "" {
			m.aws.err = fmt.Errorf("no AWS region: set evergreen.streams.aws.region or AWS_REGION")
		}
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
