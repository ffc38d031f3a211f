package runtime

import (
	"context"

	runtimev1 "github.com/evergreen-edge/evergreen/proto/evergreen/runtime/v1"
	"github.com/evergreen-edge/evergreen/services/kit/errdefs"
	"google.golang.org/grpc"
)

// CheckToken resolves a worker's token (AWS_CONTAINER_AUTHORIZATION_TOKEN)
// to its function, as the IPC server does for the Authorization header.
// The stream manager calls it to authenticate its clients
// (STREAM_MANAGER_AUTHENTICATE_CLIENT); the token itself is never logged.
func (s *Service) CheckToken(_ context.Context, in *runtimev1.CheckTokenRequest, _ ...grpc.CallOption) (*runtimev1.CheckTokenResponse, error) {
	if in.GetToken() == "" {
		return nil, errdefs.InvalidArgument("token", "is empty")
	}
	if s.workers == nil {
		return nil, errdefs.NotFound("token", "(not shown)")
	}
	fn, _, ok := s.workers.Lookup(in.GetToken())
	if !ok {
		return nil, errdefs.NotFound("token", "(not shown)")
	}
	return &runtimev1.CheckTokenResponse{FunctionArn: fn}, nil
}

func (g *grpcServer) CheckToken(ctx context.Context, in *runtimev1.CheckTokenRequest) (*runtimev1.CheckTokenResponse, error) {
	r, err := g.local.CheckToken(ctx, in)
	return r, errdefs.ToGRPC(err)
}
