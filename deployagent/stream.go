package deployagent

import (
	"context"
	"errors"
	"io"
	"sync"

	deployv1 "github.com/evergreen-edge/evergreen/proto/evergreen/deploy/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"
)

// eventStream hands a deployment's events to an in-process caller the way a
// gRPC client stream would. Pushing never blocks: a deployment must not
// stall because its caller stopped reading. A deployment pushes a bounded
// number of events (two per consuming daemon, plus a few), so the queue is
// bounded too.
type eventStream struct {
	ctx  context.Context
	wake chan struct{}

	mu     sync.Mutex
	queue  []*deployv1.DeployEvent
	closed bool
}

var _ grpc.ServerStreamingClient[deployv1.DeployEvent] = (*eventStream)(nil)

func newEventStream(ctx context.Context) *eventStream {
	return &eventStream{ctx: ctx, wake: make(chan struct{}, 1)}
}

func (s *eventStream) push(ev *deployv1.DeployEvent) {
	s.mu.Lock()
	s.queue = append(s.queue, ev)
	s.mu.Unlock()
	s.notify()
}

func (s *eventStream) close() {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.notify()
}

func (s *eventStream) notify() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Recv returns the next event, io.EOF after the terminal one, or the
// caller's context error.
func (s *eventStream) Recv() (*deployv1.DeployEvent, error) {
	for {
		s.mu.Lock()
		if len(s.queue) > 0 {
			ev := s.queue[0]
			s.queue[0] = nil
			s.queue = s.queue[1:]
			s.mu.Unlock()
			return ev, nil
		}
		closed := s.closed
		s.mu.Unlock()
		if closed {
			return nil, io.EOF
		}
		select {
		case <-s.wake:
		case <-s.ctx.Done():
			return nil, s.ctx.Err()
		}
	}
}

func (s *eventStream) Header() (metadata.MD, error) { return metadata.MD{}, nil }
func (s *eventStream) Trailer() metadata.MD         { return metadata.MD{} }
func (s *eventStream) CloseSend() error             { return nil }
func (s *eventStream) Context() context.Context     { return s.ctx }

func (s *eventStream) SendMsg(any) error {
	return errors.New("Deploy streams from the server only: nothing to send")
}

func (s *eventStream) RecvMsg(m any) error {
	ev, err := s.Recv()
	if err != nil {
		return err
	}
	dst, ok := m.(*deployv1.DeployEvent)
	if !ok {
		return errors.New("RecvMsg: want *DeployEvent")
	}
	proto.Reset(dst)
	proto.Merge(dst, ev)
	return nil
}
