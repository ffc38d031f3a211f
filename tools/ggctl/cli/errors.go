package cli

import (
	"errors"
	"fmt"
	"strings"

	"github.com/evergreen-edge/evergreen/services/kit/errdefs"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// exitError is an error that ends ggctl with a specific exit code.
type exitError struct {
	code int
	msg  string
}

func (e *exitError) Error() string { return e.msg }

func usageErrorf(format string, args ...any) error {
	return &exitError{code: ExitUsage, msg: fmt.Sprintf(format, args...)}
}

func failf(format string, args ...any) error {
	return &exitError{code: ExitFailed, msg: fmt.Sprintf(format, args...)}
}

// silentFailure ends the run with code after the command already said
// everything worth saying (a status table, a deployment's results).
func silentFailure(code int) error { return &exitError{code: code} }

func (a *app) unreachable(daemon, why string) error {
	return &exitError{code: ExitUnreachable, msg: fmt.Sprintf("cannot reach %s: %s; is the suite running? (ggd --root %s)", daemon, why, a.root)}
}

// sentinels are the domain errors a status code maps back to (errdefs), in
// the order their text is appended to a server message that lacks it.
var sentinels = []error{
	errdefs.ErrInvalidArgument, errdefs.ErrNotFound, errdefs.ErrAlreadyExists,
	errdefs.ErrFailedPrecondition, errdefs.ErrUnavailable, errdefs.ErrResourceExhausted,
	errdefs.ErrAborted, errdefs.ErrPermissionDenied, errdefs.ErrDeadlineExceeded, errdefs.ErrInternal,
}

// rpcError turns a failed call to daemon into an exit code and one line.
// Servers strip the code's words from their messages (errdefs.ToGRPC:
// `device "x"` for NotFound), so they are put back here.
func (a *app) rpcError(daemon string, err error) error {
	st, ok := status.FromError(err)
	if !ok {
		return failf("%s: %v", daemon, err)
	}
	msg := st.Message()
	switch st.Code() {
	case codes.Unavailable:
		if why, transport := transportFailure(msg); transport {
			return a.unreachable(daemon, fmt.Sprintf("%s (%s)", why, a.root.Socket(daemon)))
		}
		return &exitError{code: ExitUnreachable, msg: fmt.Sprintf("%s is not ready: %s", daemon, msg)}
	case codes.DeadlineExceeded:
		// The client's own deadline (or the server's transport cancelling
		// the stream at it) says only that; a daemon's reason says more.
		m := strings.ToLower(msg)
		if msg == "" || strings.Contains(m, "deadline exceeded") || strings.Contains(m, "rst_stream") {
			return failf("%s did not answer within %s (raise --timeout)", daemon, a.g.timeout)
		}
		return failf("%s: %s (deadline %s; raise --timeout)", daemon, msg, a.g.timeout)
	case codes.Canceled:
		return failf("interrupted")
	case codes.Unimplemented:
		return failf("%s does not support this request (%s); is ggd older than ggctl?", daemon, msg)
	}
	derr := errdefs.FromGRPC(err)
	code := ExitFailed
	switch {
	case errors.Is(derr, errdefs.ErrInvalidArgument), st.Code() == codes.OutOfRange:
		code = ExitUsage
	case errors.Is(derr, errdefs.ErrNotFound):
		code = ExitNotFound
	}
	for _, s := range sentinels {
		if !errors.Is(derr, s) || shadowCoded(msg) {
			continue
		}
		switch {
		case msg == "":
			msg = daemon + ": " + s.Error()
		case !strings.Contains(strings.ToLower(msg), s.Error()):
			msg += ": " + s.Error()
		}
		break
	}
	if msg == "" {
		msg = fmt.Sprintf("%s: %s", daemon, st.Code())
	}
	return &exitError{code: code, msg: msg}
}

// streamError ends a stream that follows until Ctrl-C (`logs -f`, `sub`):
// the interrupt is its normal end (exit 0), anything else an error.
func (a *app) streamError(daemon string, err error) error {
	if status.Code(err) == codes.Canceled && a.ctx.Err() != nil {
		return nil
	}
	return a.rpcError(daemon, err)
}

// transportFailure says whether an UNAVAILABLE status came from the
// connection rather than from the daemon, and why in a few words.
func transportFailure(msg string) (string, bool) {
	m := strings.ToLower(msg)
	switch {
	case strings.Contains(m, "connection refused"):
		return "connection refused", true
	case strings.Contains(m, "no such file or directory"):
		return "socket missing", true
	case strings.Contains(m, "permission denied"):
		return "permission denied on the socket (run as root or as a member of its group)", true
	case strings.Contains(m, "connection reset"), strings.Contains(m, "broken pipe"), strings.Contains(m, "eof"):
		return "connection lost", true
	case strings.Contains(m, "connection error"), strings.Contains(m, "error while dialing"), strings.Contains(m, "transport"):
		return "connection failed", true
	}
	return "", false
}

// oneLine keeps an error message on one line of the terminal.
func oneLine(s string) string {
	s = strings.TrimSpace(s)
	s = strings.ReplaceAll(s, "\r", "")
	return strings.ReplaceAll(s, "\n", "; ")
}

// shadowCoded says msg is the shadow service's "<code> <message>", which
// says it all (AWS IoT's text, kept exact).
func shadowCoded(msg string) bool {
	return len(msg) > 4 && msg[3] == ' ' && msg[0] >= '1' && msg[0] <= '5' &&
		msg[1] >= '0' && msg[1] <= '9' && msg[2] >= '0' && msg[2] <= '9'
}
