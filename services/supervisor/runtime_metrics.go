package supervisor

import (
	"bytes"
	"context"
	"fmt"
	"time"

	runtimev1 "github.com/evergreen-edge/evergreen/proto/evergreen/runtime/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// runtimeMetrics asks the runtime for each function's counters and
// workers. A runtime that is stopped or not enabled leaves the series out,
// as certMetrics does for certmgr.
func (s *Supervisor) runtimeMetrics(ctx context.Context, b *bytes.Buffer, help func(string, string, string)) {
	p := s.byName["runtime"]
	if p == nil || !p.isHealthy() {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	conn, err := grpc.NewClient("unix://"+s.o.Root.Socket("runtime"), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return
	}
	defer conn.Close()
	fl, err := runtimev1.NewRuntimeClient(conn).ListFunctions(ctx, &runtimev1.ListFunctionsRequest{})
	if err != nil {
		return
	}
	fns := fl.GetFunctions()
	series := []struct {
		name, typ, text string
		v               func(*runtimev1.Function) uint64
	}{
		{"evergreen_function_workers", "gauge", "Live workers of the function.", func(f *runtimev1.Function) uint64 { return uint64(f.GetWorkers()) }},
		{"evergreen_function_invocations_total", "counter", "Work items accepted for the function.", (*runtimev1.Function).GetInvocations},
		{"evergreen_function_handled_errors_total", "counter", "Invocations that ended in a Handled error.", (*runtimev1.Function).GetHandledErrors},
		{"evergreen_function_unhandled_errors_total", "counter", "Invocations that ended in an Unhandled error (timeouts, deaths and OOM kills included).", (*runtimev1.Function).GetUnhandledErrors},
		{"evergreen_function_timeouts_total", "counter", "Invocations that ran past the function's Timeout.", (*runtimev1.Function).GetTimeouts},
		{"evergreen_function_out_of_memory_kills_total", "counter", "Workers the kernel killed at their memory limit.", (*runtimev1.Function).GetOutOfMemoryKills},
		{"evergreen_function_worker_deaths_total", "counter", "Invocations lost because their worker exited.", (*runtimev1.Function).GetWorkerDeaths},
		{"evergreen_function_rejected_total", "counter", "Work items refused because the work queue was full.", (*runtimev1.Function).GetRejected},
	}
	for _, m := range series {
		help(m.name, m.typ, m.text)
		for _, f := range fns {
			fmt.Fprintf(b, "%s{function=%q} %d\n", m.name, f.GetName(), m.v(f))
		}
	}
}
