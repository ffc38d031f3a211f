package runtime

import (
	"github.com/evergreen-edge/evergreen/runtime/dispatch"
	"github.com/evergreen-edge/evergreen/runtime/ipc"
)

// initialized is IPC F: the language runtime says whether the handler
// loaded; the health API shows it (FailedInitialization for an import
// failure).
func (s *Service) initialized(fn string, w dispatch.WorkerID, success bool, response string) {
	if success {
		s.workers.SetState(w, "Initialized")
		return
	}
	s.workers.SetState(w, "FailedInitialization")
	s.log.Warn("function failed to initialize", "function", fn, "worker", w, "response", response)
}

// functionLogs is IPC G, the local log sink. The language runtimes also
// write each line to stdout, which goes to DIR/logs/user/<function>.log;
// the sink's copy is kept at debug level in the runtime's log, and goes to
// the cloud under the group's Lambda AWSCloudWatch logger (lambdalogs.go).
func (s *Service) functionLogs(fn, group, stream string, events []ipc.LogEvent) {
	for _, e := range events {
		s.log.Debug("function log", "function", fn, "group", group, "stream", stream, "message", e.Message)
	}
	s.forwardFunctionLogs(fn, events)
}

// health is IPC I.
func (s *Service) health() []ipc.WorkerInfo {
	ws := s.workers.Workers()
	out := make([]ipc.WorkerInfo, 0, len(ws))
	for _, w := range ws {
		out = append(out, ipc.WorkerInfo{FuncArn: w.FuncArn, WorkerId: string(w.WorkerID), ProcessId: w.ProcessID, WorkerState: w.WorkerState})
	}
	return out
}
