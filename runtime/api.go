package runtime

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	runtimev1 "github.com/evergreen-edge/evergreen/proto/evergreen/runtime/v1"
	"github.com/evergreen-edge/evergreen/runtime/dispatch"
	"github.com/evergreen-edge/evergreen/services/kit/errdefs"
	"google.golang.org/grpc"
)

var _ runtimev1.RuntimeClient = (*Service)(nil)

// CLICaller is the caller ARN of invocations made through the API: the
// result goes to it alone.
const CLICaller = "arn:aws:lambda:::function:GGCtl"

// lookup finds a function by qualified ARN, unqualified ARN or name.
func (s *Service) lookup(name string) (*function, error) {
	if name == "" {
		return nil, errdefs.InvalidArgument("function", "is empty")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if f, ok := s.functions[name]; ok {
		return f, nil
	}
	var found []*function
	for _, f := range s.functions {
		if f.name == name || dispatch.Unqualified(f.arn) == name {
			found = append(found, f)
		}
	}
	switch len(found) {
	case 0:
		return nil, errdefs.NotFound("function", name)
	case 1:
		return found[0], nil
	}
	return nil, errdefs.InvalidArgument("function", "%q names %d functions of the group; give the qualified ARN", name, len(found))
}

// ListFunctions lists the group's user functions with their counters,
// and the deployment whose group is in force.
func (s *Service) ListFunctions(_ context.Context, _ *runtimev1.ListFunctionsRequest, _ ...grpc.CallOption) (*runtimev1.ListFunctionsResponse, error) {
	counts := map[string]uint32{}
	for _, w := range s.workers.Workers() {
		counts[w.FuncArn]++
	}
	stats := s.disp.FunctionStats()
	s.mu.Lock()
	out := &runtimev1.ListFunctionsResponse{DeploymentId: s.deploymentID}
	for _, f := range s.functions {
		st := stats[f.arn]
		out.Functions = append(out.Functions, &runtimev1.Function{
			Arn: f.arn, Name: f.name, Runtime: f.runtime, Handler: f.handler, Pinned: f.dispatch.Pinned,
			IsolationMode: f.isolation, TimeoutSeconds: uint32(f.dispatch.Timeout.Seconds()), EncodingType: f.dispatch.Encoding,
			CodeDir: f.pkg.Dir, Workers: counts[f.arn],
			Invocations: st.Invocations, HandledErrors: st.Handled, UnhandledErrors: st.Unhandled, Timeouts: st.Timeouts,
			OutOfMemoryKills: st.OutOfMemory, WorkerDeaths: st.WorkerDeaths, Rejected: st.Rejected,
		})
	}
	s.mu.Unlock()
	slices.SortFunc(out.Functions, func(a, b *runtimev1.Function) int { return strings.Compare(a.Arn, b.Arn) })
	return out, nil
}

// ListWorkers lists the workers, of one function or all.
func (s *Service) ListWorkers(_ context.Context, in *runtimev1.ListWorkersRequest, _ ...grpc.CallOption) (*runtimev1.ListWorkersResponse, error) {
	arn := ""
	if in.GetFunction() != "" {
		f, err := s.lookup(in.GetFunction())
		if err != nil {
			return nil, err
		}
		arn = f.arn
	}
	out := &runtimev1.ListWorkersResponse{}
	for _, w := range s.workers.Workers() {
		if arn == "" || w.FuncArn == arn {
			out.Workers = append(out.Workers, &runtimev1.Worker{FunctionArn: w.FuncArn, WorkerId: string(w.WorkerID), Pid: int32(w.ProcessID), State: w.WorkerState})
		}
	}
	slices.SortFunc(out.Workers, func(a, b *runtimev1.Worker) int {
		return strings.Compare(a.FunctionArn+a.WorkerId, b.FunctionArn+b.WorkerId)
	})
	return out, nil
}

// Invoke invokes a function as the CLI.
func (s *Service) Invoke(ctx context.Context, in *runtimev1.InvokeRequest, _ ...grpc.CallOption) (*runtimev1.InvokeResponse, error) {
	f, err := s.lookup(in.GetFunction())
	if err != nil {
		return nil, err
	}
	cc := ""
	if j := in.GetCustomJson(); j != "" {
		var custom map[string]any
		if err := json.Unmarshal([]byte(j), &custom); err != nil {
			return nil, errdefs.InvalidArgument("custom_json", "not a JSON object: %v", err)
		}
		cc = encodeContext(custom)
	}
	typ := dispatch.RequestResponse
	if in.GetEvent() {
		typ = dispatch.Event
	}
	id, err := s.disp.Invoke(CLICaller, f.arn, typ, cc, in.GetPayload())
	if err != nil {
		return nil, dispatchError(err)
	}
	out := &runtimev1.InvokeResponse{InvocationId: id}
	if in.GetEvent() {
		return out, nil
	}
	res, err := s.disp.Result(ctx, CLICaller, id)
	if err != nil {
		return nil, dispatchError(err)
	}
	out.Payload, out.FunctionError = res.Payload, res.FunctionError
	return out, nil
}

func dispatchError(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, dispatch.ErrUnknownFunction):
		return fmt.Errorf("%v: %w", err, errdefs.ErrNotFound)
	case errors.Is(err, dispatch.ErrQueueFull):
		return fmt.Errorf("%v: %w", err, errdefs.ErrResourceExhausted)
	case errors.Is(err, dispatch.ErrClosed), errors.Is(err, dispatch.ErrUnavailable):
		return fmt.Errorf("%v: %w", err, errdefs.ErrUnavailable)
	}
	return err
}

// RestartFunction stops the function's workers.
func (s *Service) RestartFunction(_ context.Context, in *runtimev1.RestartFunctionRequest, _ ...grpc.CallOption) (*runtimev1.RestartFunctionResponse, error) {
	f, err := s.lookup(in.GetFunction())
	if err != nil {
		return nil, err
	}
	n := uint32(0)
	for _, w := range s.workers.Workers() {
		if w.FuncArn == f.arn {
			// No new work for it while it dies (a container takes a
			// while): the next invocation waits for a new worker.
			s.disp.Retire(w.WorkerID)
			s.workers.Kill(w.WorkerID, "restart requested")
			n++
		}
	}
	s.log.Info("function restarted", "function", f.arn, "stopped_workers", n)
	return &runtimev1.RestartFunctionResponse{StoppedWorkers: n}, nil
}

type grpcServer struct {
	runtimev1.UnimplementedRuntimeServer
	local *Service
}

func (g *grpcServer) ListFunctions(ctx context.Context, in *runtimev1.ListFunctionsRequest) (*runtimev1.ListFunctionsResponse, error) {
	r, err := g.local.ListFunctions(ctx, in)
	return r, errdefs.ToGRPC(err)
}

func (g *grpcServer) ListWorkers(ctx context.Context, in *runtimev1.ListWorkersRequest) (*runtimev1.ListWorkersResponse, error) {
	r, err := g.local.ListWorkers(ctx, in)
	return r, errdefs.ToGRPC(err)
}

func (g *grpcServer) Invoke(ctx context.Context, in *runtimev1.InvokeRequest) (*runtimev1.InvokeResponse, error) {
	r, err := g.local.Invoke(ctx, in)
	return r, errdefs.ToGRPC(err)
}

func (g *grpcServer) RestartFunction(ctx context.Context, in *runtimev1.RestartFunctionRequest) (*runtimev1.RestartFunctionResponse, error) {
	r, err := g.local.RestartFunction(ctx, in)
	return r, errdefs.ToGRPC(err)
}
