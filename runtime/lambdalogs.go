package runtime

import (
	"log/slog"
	"strings"
	"time"

	"github.com/evergreen-edge/evergreen/runtime/ipc"
	"github.com/evergreen-edge/evergreen/services/kit/arn"
)

// Function log lines for the group's Lambda AWSCloudWatch logger. The
// language runtimes post each record of the function's logging to the
// local log sink (IPC G) as "[LEVEL]-file:line,message" (the v1 format,
// WARN and FATAL spelled as v1 does), so the sink knows each line's level;
// stdout and stderr carry none and are not forwarded (they go whole to
// DIR/logs/user/<function>.log, capped by the Lambda FileSystem logger's
// Space). Lines at or above the logger's Level go, with the runtime's own
// records, to the broker and the cloud as component Lambda/<name>
// (services/kit/logging).

// forwardFunctionLogs offers a sink request's events to the Lambda
// AWSCloudWatch logger; it does nothing unless one is in force and a cloud
// is configured.
func (s *Service) forwardFunctionLogs(fn string, events []ipc.LogEvent) {
	if s.env == nil || s.env.Logs == nil {
		return
	}
	if _, lam := s.env.Logs.Cloud(); !lam.On {
		return
	}
	name := fn
	if f, err := arn.ParseFunction(fn); err == nil {
		name = f.Name
	}
	for _, e := range events {
		t := time.UnixMilli(e.Timestamp)
		if e.Timestamp <= 0 {
			t = time.Now()
		}
		s.env.Logs.ForwardLambda(name, t, lineLevel(e.Message), e.Message)
	}
}

// lineLevel reads the level of a "[LEVEL]-..." line; a line without one
// is INFO. FATAL and CRITICAL are errors (see logging.ParseGroupLevel).
func lineLevel(line string) slog.Level {
	rest, ok := strings.CutPrefix(line, "[")
	if !ok {
		return slog.LevelInfo
	}
	name, _, ok := strings.Cut(rest, "]")
	if !ok {
		return slog.LevelInfo
	}
	switch name {
	case "DEBUG":
		return slog.LevelDebug
	case "WARN", "WARNING":
		return slog.LevelWarn
	case "ERROR", "FATAL", "CRITICAL":
		return slog.LevelError
	}
	return slog.LevelInfo
}
