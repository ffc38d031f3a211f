package streammgr

import (
	"context"
	"errors"
	"time"

	streammgrv1 "github.com/evergreen-edge/evergreen/proto/evergreen/streammgr/v1"
	"github.com/evergreen-edge/evergreen/services/kit/errdefs"
	"github.com/evergreen-edge/evergreen/streammgr/export"
	"github.com/evergreen-edge/evergreen/streammgr/protocol"
	"github.com/evergreen-edge/evergreen/streammgr/store"
	"google.golang.org/grpc"
)

// checkName maps a protocol name error to INVALID_ARGUMENT.
func checkName(field, name string) error {
	if err := protocol.CheckName(field, name); err != nil {
		_, msg := protocol.StatusOf(err)
		return errdefs.InvalidArgument(field, "%s", msg)
	}
	return nil
}

// apiErr gives store errors that carry no errdefs kind one.
func apiErr(err error) error {
	if err == nil {
		return nil
	}
	if store.IsInvalid(err) {
		return errors.Join(err, errdefs.ErrInvalidArgument)
	}
	return err
}

// ListStreams lists the streams.
func (s *Service) ListStreams(_ context.Context, _ *streammgrv1.ListStreamsRequest, _ ...grpc.CallOption) (*streammgrv1.ListStreamsResponse, error) {
	return &streammgrv1.ListStreamsResponse{Streams: s.store.List()}, nil
}

// DescribeStream describes a stream, damage included.
func (s *Service) DescribeStream(_ context.Context, in *streammgrv1.DescribeStreamRequest, _ ...grpc.CallOption) (*streammgrv1.StreamInfo, error) {
	if err := checkName("name", in.GetName()); err != nil {
		return nil, err
	}
	info, err := s.store.Describe(in.GetName())
	if err != nil {
		return nil, err
	}
	return infoPB(info, s.exports.Statuses(info.Definition.Name)), nil
}

func infoPB(in store.Info, exports []export.Status) *streammgrv1.StreamInfo {
	d := in.Definition
	out := &streammgrv1.StreamInfo{
		Definition: &streammgrv1.StreamDefinition{Name: d.Name, MaxSize: d.MaxSize, StreamSegmentSize: d.SegmentSize,
			TimeToLiveMillis: d.TTLMillis, StrategyOnFull: streammgrv1.StrategyOnFull(d.Strategy + 1),
			Persistence: streammgrv1.Persistence(d.Persistence + 1), FlushOnWrite: d.FlushOnWrite, ExportDefinitionCbor: d.Export},
		OldestSequenceNumber: in.Oldest, NewestSequenceNumber: in.Newest, TotalBytes: in.TotalBytes,
		MessageCount: in.Count, Damage: in.Damage,
	}
	for _, x := range exports {
		out.ExportStatuses = append(out.ExportStatuses, &streammgrv1.ExportStatus{ExportConfigIdentifier: x.Identifier,
			LastExportedSequenceNumber: x.LastExportedSequenceNumber, LastExportTimeMillis: x.LastExportTime,
			ErrorMessage: x.ErrorMessage, ExportedBytesFromStream: x.ExportedBytesFromStream, ExportedMessagesCount: x.ExportedMessagesCount})
	}
	return out
}

// CreateStream creates a stream.
func (s *Service) CreateStream(_ context.Context, in *streammgrv1.CreateStreamRequest, _ ...grpc.CallOption) (*streammgrv1.StreamInfo, error) {
	pd := in.GetDefinition()
	if pd == nil {
		return nil, errdefs.InvalidArgument("definition", "is required")
	}
	if err := checkName("definition.name", pd.GetName()); err != nil {
		return nil, err
	}
	if pd.GetStrategyOnFull() == streammgrv1.StrategyOnFull_STRATEGY_ON_FULL_UNSPECIFIED {
		return nil, errdefs.InvalidArgument("definition.strategy_on_full", "is required (REJECT_NEW_DATA or OVERWRITE_OLDEST_DATA)")
	}
	d := store.Definition{Name: pd.GetName(), MaxSize: pd.GetMaxSize(), SegmentSize: pd.GetStreamSegmentSize(),
		TTLMillis: pd.GetTimeToLiveMillis(), Strategy: store.Strategy(pd.GetStrategyOnFull() - 1),
		FlushOnWrite: pd.GetFlushOnWrite(), Export: pd.GetExportDefinitionCbor()}
	if p := pd.GetPersistence(); p != streammgrv1.Persistence_PERSISTENCE_UNSPECIFIED {
		d.Persistence = store.Persistence(p - 1)
	}
	if _, err := export.Parse(d.Export); err != nil {
		return nil, err
	}
	s.lifeMu.Lock()
	err := s.store.Create(d)
	if err == nil {
		s.syncExports(d.Name)
	}
	s.lifeMu.Unlock()
	if err != nil {
		return nil, apiErr(err)
	}
	info, err := s.store.Describe(d.Name)
	if err != nil {
		return nil, err
	}
	return infoPB(info, s.exports.Statuses(d.Name)), nil
}

// AppendMessage appends one message.
func (s *Service) AppendMessage(_ context.Context, in *streammgrv1.AppendMessageRequest, _ ...grpc.CallOption) (*streammgrv1.AppendMessageResponse, error) {
	if err := checkName("name", in.GetName()); err != nil {
		return nil, err
	}
	if len(in.GetPayload()) == 0 {
		return nil, errdefs.InvalidArgument("payload", "is empty")
	}
	seq, err := s.store.Append(in.GetName(), in.GetPayload())
	if err != nil {
		return nil, apiErr(err)
	}
	return &streammgrv1.AppendMessageResponse{SequenceNumber: seq}, nil
}

// ReadMessages reads messages.
func (s *Service) ReadMessages(ctx context.Context, in *streammgrv1.ReadMessagesRequest, _ ...grpc.CallOption) (*streammgrv1.ReadMessagesResponse, error) {
	if err := checkName("name", in.GetName()); err != nil {
		return nil, err
	}
	if in.GetStartSequenceNumber() < 0 || in.GetMinMessageCount() < 0 || in.GetMaxMessageCount() < 0 || in.GetReadTimeoutMillis() < 0 {
		return nil, errdefs.InvalidArgument("read options", "negative values are not allowed")
	}
	o := store.ReadOptions{Start: in.GetStartSequenceNumber(), Min: max(in.GetMinMessageCount(), 1), Max: in.GetMaxMessageCount(),
		Timeout: time.Duration(in.GetReadTimeoutMillis()) * time.Millisecond}
	if o.Max != 0 && o.Max < o.Min {
		return nil, errdefs.InvalidArgument("max_message_count", "%d is below min_message_count %d", o.Max, o.Min)
	}
	msgs, err := s.store.Read(ctx, in.GetName(), o)
	if err != nil {
		return nil, apiErr(err)
	}
	out := &streammgrv1.ReadMessagesResponse{}
	for _, m := range msgs {
		out.Messages = append(out.Messages, &streammgrv1.Message{StreamName: in.GetName(), SequenceNumber: m.Seq, IngestTimeMillis: m.Time, Payload: m.Payload})
	}
	return out, nil
}

// DeleteStream deletes a stream.
func (s *Service) DeleteStream(_ context.Context, in *streammgrv1.DeleteStreamRequest, _ ...grpc.CallOption) (*streammgrv1.DeleteStreamResponse, error) {
	if err := checkName("name", in.GetName()); err != nil {
		return nil, err
	}
	if err := s.deleteStream(in.GetName()); err != nil {
		return nil, err
	}
	return &streammgrv1.DeleteStreamResponse{}, nil
}

type grpcServer struct {
	streammgrv1.UnimplementedStreamManagerServer
	local *Service
}

func (g *grpcServer) ListStreams(ctx context.Context, in *streammgrv1.ListStreamsRequest) (*streammgrv1.ListStreamsResponse, error) {
	r, err := g.local.ListStreams(ctx, in)
	return r, errdefs.ToGRPC(err)
}

func (g *grpcServer) DescribeStream(ctx context.Context, in *streammgrv1.DescribeStreamRequest) (*streammgrv1.StreamInfo, error) {
	r, err := g.local.DescribeStream(ctx, in)
	return r, errdefs.ToGRPC(err)
}

func (g *grpcServer) CreateStream(ctx context.Context, in *streammgrv1.CreateStreamRequest) (*streammgrv1.StreamInfo, error) {
	r, err := g.local.CreateStream(ctx, in)
	return r, errdefs.ToGRPC(err)
}

func (g *grpcServer) AppendMessage(ctx context.Context, in *streammgrv1.AppendMessageRequest) (*streammgrv1.AppendMessageResponse, error) {
	r, err := g.local.AppendMessage(ctx, in)
	return r, errdefs.ToGRPC(err)
}

func (g *grpcServer) ReadMessages(ctx context.Context, in *streammgrv1.ReadMessagesRequest) (*streammgrv1.ReadMessagesResponse, error) {
	r, err := g.local.ReadMessages(ctx, in)
	return r, errdefs.ToGRPC(err)
}

func (g *grpcServer) DeleteStream(ctx context.Context, in *streammgrv1.DeleteStreamRequest) (*streammgrv1.DeleteStreamResponse, error) {
	r, err := g.local.DeleteStream(ctx, in)
	return r, errdefs.ToGRPC(err)
}
