package broker

import (
	"context"
	"fmt"
	"strconv"
	"time"

	brokerv1 "github.com/evergreen-edge/evergreen/proto/evergreen/broker/v1"
	"github.com/evergreen-edge/evergreen/services/kit/errdefs"
	"github.com/evergreen-edge/evergreen/services/kit/topic"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// DroppedTrailer is the trailer of a Subscribe stream that counts the
// messages the tap dropped because its client read too slowly.
const DroppedTrailer = "evergreen-dropped"

// Publish routes one message as if source had sent it.
func (s *Service) Publish(_ context.Context, in *brokerv1.PublishRequest) (*brokerv1.PublishResponse, error) {
	src, err := endpointFromProto(in.GetSource())
	if err != nil {
		return nil, err
	}
	if err := checkMessage(in.GetTopic(), in.GetPayload(), in.GetQos()); err != nil {
		return nil, err
	}
	if !s.deployed.Load().hasGroup {
		return nil, fmt.Errorf("no group is deployed, so no subscription can route a message: %w", errdefs.ErrFailedPrecondition)
	}
	targets := s.route(message{src: src, topic: in.GetTopic(), payload: in.GetPayload(), qos: byte(in.GetQos()), time: time.Now()}, true)
	return &brokerv1.PublishResponse{Targets: endpointsProto(targets)}, nil
}

// ListClients returns the connected devices.
func (s *Service) ListClients(context.Context, *brokerv1.ListClientsRequest) (*brokerv1.ListClientsResponse, error) {
	out := &brokerv1.ListClientsResponse{}
	for _, c := range s.mqtt.Clients() {
		out.Clients = append(out.Clients, &brokerv1.Client{
			ClientId:        c.ClientID,
			RemoteAddress:   c.Remote,
			ProtocolVersion: uint32(c.Protocol),
			ConnectedAt:     timestamppb.New(c.ConnectedAt),
			CleanSession:    c.Clean,
			Subscriptions:   c.Subscriptions,
			MessagesIn:      c.In,
			MessagesOut:     c.Out,
		})
	}
	return out, nil
}

// ListSubscriptions returns the subscription table in force.
func (s *Service) ListSubscriptions(context.Context, *brokerv1.ListSubscriptionsRequest) (*brokerv1.ListSubscriptionsResponse, error) {
	out := &brokerv1.ListSubscriptionsResponse{DeploymentId: s.deployed.Load().id}
	for _, sub := range s.router.Table().Subscriptions() {
		out.Subscriptions = append(out.Subscriptions, &brokerv1.Subscription{Id: sub.Id, Source: sub.Source, Subject: sub.Subject, Target: sub.Target})
	}
	return out, nil
}

// GetCloudStatus returns the cloud connection's state; DISABLED when the
// core runs offline.
func (s *Service) GetCloudStatus(context.Context, *brokerv1.GetCloudStatusRequest) (*brokerv1.CloudStatus, error) {
	if s.cloud == nil {
		return &brokerv1.CloudStatus{State: brokerv1.CloudState_CLOUD_STATE_DISABLED, Dropped: s.stats.cloudDropped.Load()}, nil
	}
	st := s.cloud.Status()
	// Messages the spooler refused (RefuseNew when full) never entered it.
	st.Dropped += s.stats.cloudDropped.Load()
	return st, nil
}

// grpcServer is the thin adapter from the gRPC server interface to the
// service; the daemon's interceptor turns domain errors into status codes.
type grpcServer struct {
	brokerv1.UnimplementedBrokerServer
	s *Service
}

func (g *grpcServer) Publish(ctx context.Context, in *brokerv1.PublishRequest) (*brokerv1.PublishResponse, error) {
	return g.s.Publish(ctx, in)
}

func (g *grpcServer) ListClients(ctx context.Context, in *brokerv1.ListClientsRequest) (*brokerv1.ListClientsResponse, error) {
	return g.s.ListClients(ctx, in)
}

func (g *grpcServer) ListSubscriptions(ctx context.Context, in *brokerv1.ListSubscriptionsRequest) (*brokerv1.ListSubscriptionsResponse, error) {
	return g.s.ListSubscriptions(ctx, in)
}

func (g *grpcServer) GetCloudStatus(ctx context.Context, in *brokerv1.GetCloudStatusRequest) (*brokerv1.CloudStatus, error) {
	return g.s.GetCloudStatus(ctx, in)
}

// Subscribe is a tap on the router: every message whose topic matches the
// filter, with its source and the targets it reached. A client reading too
// slowly loses messages (counted in the DroppedTrailer trailer), never
// slows routing.
func (g *grpcServer) Subscribe(in *brokerv1.SubscribeRequest, stream grpc.ServerStreamingServer[brokerv1.RoutedMessage]) error {
	if err := topic.ValidateFilter(in.GetFilter()); err != nil {
		return errdefs.InvalidArgument("filter", "%v", err)
	}
	tp, err := g.s.taps.add(in.GetFilter())
	if err != nil {
		return err
	}
	defer func() {
		g.s.taps.remove(tp)
		if n := tp.dropped.Load(); n > 0 {
			stream.SetTrailer(metadata.Pairs(DroppedTrailer, strconv.FormatUint(n, 10)))
			g.s.log.Info("tap closed; it dropped messages its client did not read in time", "filter", in.GetFilter(), "dropped", n)
		}
	}()
	ctx := stream.Context()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tp.done:
			return fmt.Errorf("the broker is stopping: %w", errdefs.ErrUnavailable)
		case m := <-tp.ch:
			if err := stream.Send(m); err != nil {
				return err
			}
		}
	}
}
