package agent

import (
	"context"

	otav1 "github.com/evergreen-edge/evergreen/proto/evergreen/ota/v1"
	"google.golang.org/grpc"
)

// server adapts the Agent to gRPC; the kit's interceptor turns domain
// errors into status codes.
type server struct {
	otav1.UnimplementedOTAServer
	a *Agent
}

func (s *server) Apply(r *otav1.ApplyRequest, stream grpc.ServerStreamingServer[otav1.ApplyEvent]) error {
	var sendErr error
	err := s.a.Apply(stream.Context(), r, func(ev *otav1.ApplyEvent) {
		if sendErr == nil {
			// A client that went away does not stop the job once it
			// installs; its events are dropped.
			sendErr = stream.Send(ev)
		}
	})
	return err
}

func (s *server) GetStatus(ctx context.Context, _ *otav1.GetStatusRequest) (*otav1.Status, error) {
	return s.a.Status(), nil
}
