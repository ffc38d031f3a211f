package shadow

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	brokerv1 "github.com/evergreen-edge/evergreen/proto/evergreen/broker/v1"
	"github.com/evergreen-edge/evergreen/proto/evergreen/shadow/v1"
	"github.com/evergreen-edge/evergreen/services/kit/arn"
	"github.com/evergreen-edge/evergreen/services/kit/errdefs"
	"github.com/evergreen-edge/evergreen/services/kit/topic"
	"github.com/evergreen-edge/evergreen/shadow/doc"
	"github.com/evergreen-edge/evergreen/shadow/store"
	"github.com/nats-io/nats.go"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
)

// MaxShadowNameBytes is AWS IoT's limit on a named shadow's name.
const MaxShadowNameBytes = 64

// validShadowName checks a named shadow's name as AWS IoT does:
// letters, digits, ':', '_', '-', at most 64 bytes.
func validShadowName(name string) error {
	if len(name) > MaxShadowNameBytes {
		return fmt.Errorf("%d bytes is over the %d-byte limit", len(name), MaxShadowNameBytes)
	}
	for _, c := range name {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == ':' || c == '_' || c == '-') {
			return fmt.Errorf("%q: only letters, digits, ':', '_' and '-' are allowed", name)
		}
	}
	return nil
}

// onDeliver takes a request the router sent to GGShadowService. The
// operation comes from the topic; anything but a request topic of a valid
// shadow is dropped (nothing can be answered).
func (s *Service) onDeliver(msg *nats.Msg) {
	rm := &brokerv1.RoutedMessage{}
	if err := proto.Unmarshal(msg.Data, rm); err != nil {
		s.log.Warn("malformed RoutedMessage from the broker", "err", err)
		return
	}
	sh, ok := topic.ParseShadow(rm.GetTopic())
	if !ok || sh.Result != "" || arn.ValidThingName(sh.Thing) != nil || (sh.Name != "" && validShadowName(sh.Name) != nil) {
		s.log.Debug("message to GGShadowService on a topic that is no shadow request; dropped", "topic", rm.GetTopic(), "source", describeSource(rm.GetSource()))
		return
	}
	r := &request{
		key:     store.Key{Thing: sh.Thing, Name: sh.Name},
		op:      map[string]op{"get": opGet, "update": opUpdate, "delete": opDelete}[sh.Op],
		payload: rm.GetPayload(),
		client:  describeSource(rm.GetSource()),
		routed:  true,
	}
	if derr := s.eng.submit(r); derr != nil {
		s.eng.publish(sh.Topic(sh.Op, "rejected"), derr.Document(s.opts.Now()))
	}
}

func describeSource(e *brokerv1.Endpoint) string {
	return strings.ToLower(strings.TrimPrefix(e.GetKind().String(), "ENDPOINT_KIND_")) + ":" + e.GetName()
}

// call runs one API request and waits for its answer.
func (s *Service) call(ctx context.Context, thing, name, client string, o op, payload []byte) (*shadowv1.Document, error) {
	if err := arn.ValidThingName(thing); err != nil {
		return nil, errdefs.InvalidArgument("thing", "%v", err)
	}
	if name != "" {
		if err := validShadowName(name); err != nil {
			return nil, errdefs.InvalidArgument("name", "%v", err)
		}
	}
	if client == "" {
		client = "api"
	} else {
		client = "api:" + client
	}
	r := &request{key: store.Key{Thing: thing, Name: name}, op: o, payload: payload, client: client, done: make(chan result, 1)}
	if derr := s.eng.submit(r); derr != nil {
		return nil, statusOf(derr)
	}
	select {
	case res := <-r.done:
		if res.err != nil {
			return nil, statusOf(res.err)
		}
		return &shadowv1.Document{Document: res.document, Version: res.version}, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// statusOf maps a shadow error to the kit's error kinds (gRPC codes at
// the adapter), keeping "<code> <message>".
func statusOf(e *doc.Error) error {
	msg := fmt.Sprintf("%d %s", e.Code, e.Message)
	switch e.Code {
	case 400, 413, 415:
		return fmt.Errorf("%s: %w", msg, errdefs.ErrInvalidArgument)
	case 404:
		return fmt.Errorf("%s: %w", msg, errdefs.ErrNotFound)
	case 409:
		return fmt.Errorf("%s: %w", msg, errdefs.ErrAborted)
	case 429:
		return fmt.Errorf("%s: %w", msg, errdefs.ErrResourceExhausted)
	default:
		return fmt.Errorf("%s: %w", msg, errdefs.ErrInternal)
	}
}

// Get returns a shadow's full document.
func (s *Service) Get(ctx context.Context, in *shadowv1.GetRequest, _ ...grpc.CallOption) (*shadowv1.Document, error) {
	return s.call(ctx, in.GetThing(), in.GetName(), in.GetClient(), opGet, nil)
}

// Update applies an update request document.
func (s *Service) Update(ctx context.Context, in *shadowv1.UpdateRequest, _ ...grpc.CallOption) (*shadowv1.Document, error) {
	return s.call(ctx, in.GetThing(), in.GetName(), in.GetClient(), opUpdate, in.GetDocument())
}

// Delete deletes a shadow.
func (s *Service) Delete(ctx context.Context, in *shadowv1.DeleteRequest, _ ...grpc.CallOption) (*shadowv1.Document, error) {
	return s.call(ctx, in.GetThing(), in.GetName(), in.GetClient(), opDelete, nil)
}

// List lists the shadows that exist.
func (s *Service) List(ctx context.Context, in *shadowv1.ListRequest, _ ...grpc.CallOption) (*shadowv1.ListResponse, error) {
	if t := in.GetThing(); t != "" {
		if err := arn.ValidThingName(t); err != nil {
			return nil, errdefs.InvalidArgument("thing", "%v", err)
		}
	}
	out := &shadowv1.ListResponse{}
	err := s.db.List(in.GetThing(), func(k store.Key, v []byte) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		r, err := unmarshalRecord(v)
		if err != nil {
			s.log.Warn("damaged shadow record skipped in List", "thing", k.Thing, "name", k.Name, "err", err)
			return nil
		}
		if !r.Shadow.Exists {
			return nil
		}
		info := &shadowv1.ShadowInfo{Thing: k.Thing, Name: k.Name, Version: r.Shadow.Version, Synced: s.synced(k.Thing)}
		info.StateBytes = uint32(stateBytes(r.Shadow))
		if info.Synced {
			info.SyncState = "IN_SYNC"
			if r.Sync.Pending || r.Sync.Base == nil {
				info.SyncState = "PENDING"
			}
		}
		out.Shadows = append(out.Shadows, info)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// grpcServer adapts Service to the generated server interface.
type grpcServer struct {
	shadowv1.UnimplementedShadowServer
	local *Service
}

func (g *grpcServer) Get(ctx context.Context, in *shadowv1.GetRequest) (*shadowv1.Document, error) {
	d, err := g.local.Get(ctx, in)
	return d, errdefs.ToGRPC(err)
}

func (g *grpcServer) Update(ctx context.Context, in *shadowv1.UpdateRequest) (*shadowv1.Document, error) {
	d, err := g.local.Update(ctx, in)
	return d, errdefs.ToGRPC(err)
}

func (g *grpcServer) Delete(ctx context.Context, in *shadowv1.DeleteRequest) (*shadowv1.Document, error) {
	d, err := g.local.Delete(ctx, in)
	return d, errdefs.ToGRPC(err)
}

func (g *grpcServer) List(ctx context.Context, in *shadowv1.ListRequest) (*shadowv1.ListResponse, error) {
	r, err := g.local.List(ctx, in)
	return r, errdefs.ToGRPC(err)
}

// stateBytes is the size of desired and reported as JSON.
func stateBytes(sh doc.Shadow) int {
	n := 0
	for _, m := range []map[string]any{sh.Desired, sh.Reported} {
		if m != nil {
			b, _ := json.Marshal(m)
			n += len(b)
		}
	}
	return n
}
