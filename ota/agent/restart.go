package agent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"time"

	supervisorv1 "github.com/evergreen-edge/evergreen/proto/evergreen/supervisor/v1"
	"github.com/evergreen-edge/evergreen/services/kit/config"
	"github.com/evergreen-edge/evergreen/services/kit/layout"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// Restarter restarts the whole core after an update or a rollback.
type Restarter interface {
	// Available says why a restart cannot be asked for (nil: it can),
	// before anything is installed.
	Available() error
	// Restart asks for it; the core goes down soon after.
	Restart(ctx context.Context, reason string) error
}

// defaultRestarter is the supervisor under `ggd --root DIR`; the systemd
// target when the daemons run as units.
func defaultRestarter(root layout.Root) Restarter {
	if os.Getenv("EVERGREEN_SUPERVISED") != "" {
		return supervisorRestarter{root: root}
	}
	return systemdRestarter{}
}

type supervisorRestarter struct{ root layout.Root }

func (r supervisorRestarter) Available() error {
	if _, err := os.Stat(r.root.Socket("supervisor")); err != nil {
		return errors.New("no supervisor to restart the core (DIR/run/supervisor.sock is missing)")
	}
	return nil
}

func (r supervisorRestarter) Restart(ctx context.Context, reason string) error {
	conn, err := grpc.NewClient("unix://"+r.root.Socket("supervisor"), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	_, err = supervisorv1.NewSupervisorClient(conn).RequestRestart(ctx, &supervisorv1.RequestRestartRequest{Reason: reason}, grpc.WaitForReady(true))
	return err
}

// systemdRestarter restarts evergreen.target when every daemon is its own
// systemd unit: every unit then starts DIR/ota/current/ggd.
type systemdRestarter struct{}

func (systemdRestarter) Available() error {
	if os.Getenv("INVOCATION_ID") == "" {
		return errors.New("no supervisor to restart the core: run the suite with `ggd --root DIR` (evergreen.service) or as the systemd units of evergreen.target")
	}
	if _, err := exec.LookPath("systemctl"); err != nil {
		return errors.New("running as a systemd unit, but systemctl is not on PATH to restart evergreen.target")
	}
	return nil
}

func (systemdRestarter) Restart(ctx context.Context, reason string) error {
	out, err := exec.CommandContext(ctx, "systemctl", "--no-block", "restart", "evergreen.target").CombinedOutput()
	if err != nil {
		return fmt.Errorf("systemctl restart evergreen.target: %v: %s", err, out)
	}
	return nil
}

// daemonHealth is one daemon's health as the health check sees it.
type daemonHealth struct {
	name, state, lastError string
	healthy                bool
}

// listDaemons asks the supervisor for every daemon's health; without one
// (units), each daemon's own health endpoint.
func (a *Agent) listDaemons(ctx context.Context) ([]daemonHealth, error) {
	if _, ok := a.restarter.(supervisorRestarter); ok || os.Getenv("EVERGREEN_SUPERVISED") != "" {
		conn, err := grpc.NewClient("unix://"+a.env.Root.Socket("supervisor"), grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			return nil, err
		}
		defer conn.Close()
		resp, err := supervisorv1.NewSupervisorClient(conn).ListDaemons(ctx, &supervisorv1.ListDaemonsRequest{})
		if err != nil {
			return nil, err
		}
		var out []daemonHealth
		for _, d := range resp.GetDaemons() {
			out = append(out, daemonHealth{name: d.GetName(), healthy: d.GetHealthy(), state: d.GetState().String(), lastError: d.GetLastError()})
		}
		return out, nil
	}
	names := a.env.Config.Evergreen.Daemons
	if len(names) == 0 {
		names = config.KnownDaemons()
	}
	var out []daemonHealth
	for _, n := range names {
		out = append(out, daemonHealth{name: n, healthy: socketHealthy(ctx, a.env.Root.Socket(n)), state: "unit"})
	}
	return out, nil
}

func socketHealthy(ctx context.Context, sock string) bool {
	conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return false
	}
	defer conn.Close()
	resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
	return err == nil && resp.GetStatus() == healthpb.HealthCheckResponse_SERVING
}
