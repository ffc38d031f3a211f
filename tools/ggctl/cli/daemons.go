package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"runtime"
	"strings"

	supervisorv1 "github.com/evergreen-edge/evergreen/proto/evergreen/supervisor/v1"
	"github.com/evergreen-edge/evergreen/services/kit/buildinfo"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// control is start, stop and restart: one supervisor call on one daemon.
type control struct {
	verb string
	call func(c supervisorv1.SupervisorClient, ctx context.Context, name string) (*supervisorv1.Daemon, error)
}

var (
	startControl = control{"start", func(c supervisorv1.SupervisorClient, ctx context.Context, name string) (*supervisorv1.Daemon, error) {
		return c.StartDaemon(ctx, &supervisorv1.StartDaemonRequest{Name: name})
	}}
	stopControl = control{"stop", func(c supervisorv1.SupervisorClient, ctx context.Context, name string) (*supervisorv1.Daemon, error) {
		return c.StopDaemon(ctx, &supervisorv1.StopDaemonRequest{Name: name})
	}}
	restartControl = control{"restart", func(c supervisorv1.SupervisorClient, ctx context.Context, name string) (*supervisorv1.Daemon, error) {
		return c.RestartDaemon(ctx, &supervisorv1.RestartDaemonRequest{Name: name})
	}}
)

func cmdStart(a *app, args []string) error   { return a.control(startControl, args) }
func cmdStop(a *app, args []string) error    { return a.control(stopControl, args) }
func cmdRestart(a *app, args []string) error { return a.control(restartControl, args) }

func (a *app) control(op control, args []string) error {
	pos, err := a.parse(a.flags(), args, 1, 1)
	if err != nil {
		return err
	}
	name := pos[0]
	c, err := a.supervisorFor(name)
	if err != nil {
		return err
	}
	ctx, cancel := a.unary()
	defer cancel()
	d, err := op.call(c, ctx, name)
	if err != nil {
		if status.Code(err) == codes.DeadlineExceeded {
			return failf("%s %s: not healthy within %s; see 'ggctl logs %s' (or raise --timeout)", op.verb, name, a.g.timeout, name)
		}
		return a.rpcError(supervisorDaemon, err)
	}
	if a.g.json {
		return a.printProto(d)
	}
	state := enumName(d.GetState().String(), "DAEMON_STATE_")
	switch op.verb {
	case "stop":
		fmt.Fprintf(a.stdout, "%s stopped (%s)\n", d.GetName(), state)
	default:
		fmt.Fprintf(a.stdout, "%s %sed: pid %d (%s, healthy: %s)\n", d.GetName(), op.verb, d.GetPid(), state, yesNo(d.GetHealthy()))
	}
	return nil
}

// supervisorFor connects to the supervisor to act on daemon; without one,
// the daemon is under systemd's (or compose's) control instead.
func (a *app) supervisorFor(daemon string) (supervisorv1.SupervisorClient, error) {
	sock := a.root.Socket(supervisorDaemon)
	if _, err := os.Stat(sock); errors.Is(err, fs.ErrNotExist) {
		return nil, &exitError{code: ExitUnreachable, msg: fmt.Sprintf(
			"cannot reach the supervisor: no socket at %s; is the suite running? (ggd --root %s); under systemd use systemctl with evergreen-%s.service",
			sock, a.root, daemon)}
	}
	return a.supervisor()
}

func cmdLogs(a *app, args []string) error {
	fset := a.flags()
	follow := fset.Bool("f", false, "keep printing new lines until interrupted (Ctrl-C)")
	lines := fset.Int("n", 10, "print the last `N` lines first")
	pos, err := a.parse(fset, args, 1, 1)
	if err != nil {
		return err
	}
	if *lines < 1 {
		return usageErrorf("logs: -n must be at least 1, got %d", *lines)
	}
	name := pos[0]
	c, err := a.supervisorFor(name)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(a.ctx)
	defer cancel()
	stream, err := c.FollowLog(ctx, &supervisorv1.FollowLogRequest{Name: name, TailLines: int32(*lines), Follow: *follow})
	if err != nil {
		return a.logsError(err)
	}
	for {
		l, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return a.logsError(err)
		}
		if a.g.json {
			if err := a.printProtoLine(l); err != nil {
				return err
			}
			continue
		}
		if _, err := fmt.Fprintln(a.stdout, strings.TrimRight(l.GetLine(), "\r\n")); err != nil {
			return err
		}
	}
}

// logsError treats Ctrl-C as the normal end of `logs -f`.
func (a *app) logsError(err error) error { return a.streamError(supervisorDaemon, err) }

// versionReport is `ggctl version --json`.
type versionReport struct {
	Ggctl      versionInfo `json:"ggctl"`
	Supervisor *struct {
		Version string `json:"version"`
	} `json:"supervisor"`
	SupervisorError string `json:"supervisorError,omitempty"`
}

type versionInfo struct {
	Version string `json:"version"`
	Commit  string `json:"commit"`
	Go      string `json:"go"`
}

func cmdVersion(a *app, args []string) error {
	if _, err := a.parse(a.flags(), args, 0, 0); err != nil {
		return err
	}
	rep := versionReport{Ggctl: versionInfo{Version: buildinfo.Version, Commit: buildinfo.Commit, Go: runtime.Version()}}
	if v, err := a.supervisorVersion(); err != nil {
		rep.SupervisorError = err.Error()
	} else {
		rep.Supervisor = &struct {
			Version string `json:"version"`
		}{v}
	}
	if a.g.json {
		return a.printJSON(rep)
	}
	fmt.Fprintf(a.stdout, "ggctl %s\n", buildinfo.String())
	if rep.Supervisor != nil {
		fmt.Fprintf(a.stdout, "ggd (supervisor) %s\n", rep.Supervisor.Version)
	} else {
		fmt.Fprintf(a.stdout, "ggd (supervisor): not reachable: %s\n", oneLine(rep.SupervisorError))
	}
	return nil
}

func (a *app) supervisorVersion() (string, error) {
	c, err := a.supervisor()
	if err != nil {
		return "", err
	}
	ctx, cancel := a.unary()
	defer cancel()
	resp, err := c.ListDaemons(ctx, &supervisorv1.ListDaemonsRequest{})
	if err != nil {
		return "", a.rpcError(supervisorDaemon, err)
	}
	if resp.GetVersion() == "" {
		return "unknown", nil
	}
	return resp.GetVersion(), nil
}
