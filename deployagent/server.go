package deployagent

import (
	"context"
	"errors"
	"io"

	deployv1 "github.com/evergreen-edge/evergreen/proto/evergreen/deploy/v1"
)

// NewServer adapts a Deployer (the Local service, or anything that
// implements the client interface) to the gRPC server. Domain errors pass
// through; the kit's interceptor turns them into status codes.
func NewServer(d deployv1.DeployerClient) deployv1.DeployerServer {
	return &grpcServer{d: d}
}

type grpcServer struct {
	deployv1.UnimplementedDeployerServer
	d deployv1.DeployerClient
}

func (s *grpcServer) Deploy(req *deployv1.DeployRequest, stream deployv1.Deployer_DeployServer) error {
	events, err := s.d.Deploy(stream.Context(), req)
	if err != nil {
		return err
	}
	for {
		ev, err := events.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if err := stream.Send(ev); err != nil {
			return err
		}
	}
}

func (s *grpcServer) GetDeployment(ctx context.Context, req *deployv1.GetDeploymentRequest) (*deployv1.Deployment, error) {
	return s.d.GetDeployment(ctx, req)
}

func (s *grpcServer) ListDeployments(ctx context.Context, req *deployv1.ListDeploymentsRequest) (*deployv1.ListDeploymentsResponse, error) {
	return s.d.ListDeployments(ctx, req)
}

func (s *grpcServer) GetCurrentGroup(ctx context.Context, req *deployv1.GetCurrentGroupRequest) (*deployv1.GetCurrentGroupResponse, error) {
	return s.d.GetCurrentGroup(ctx, req)
}

func (s *grpcServer) GetApplied(ctx context.Context, req *deployv1.GetAppliedRequest) (*deployv1.GetAppliedResponse, error) {
	return s.d.GetApplied(ctx, req)
}
