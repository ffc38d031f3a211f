package cli

import (
	"context"
	"errors"
	"io/fs"
	"os"

	brokerv1 "github.com/evergreen-edge/evergreen/proto/evergreen/broker/v1"
	certmgrv1 "github.com/evergreen-edge/evergreen/proto/evergreen/certmgr/v1"
	deployv1 "github.com/evergreen-edge/evergreen/proto/evergreen/deploy/v1"
	supervisorv1 "github.com/evergreen-edge/evergreen/proto/evergreen/supervisor/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// Daemon names whose sockets ggctl talks to.
const (
	supervisorDaemon  = "supervisor"
	certmgrDaemon     = "certmgr"
	deployagentDaemon = "deployagent"
	brokerDaemon      = "broker"
)

// dial connects to DIR/run/<daemon>.sock. A missing socket is reported
// here, before any call, so the user learns which daemon is not running.
func (a *app) dial(daemon string) (*grpc.ClientConn, error) {
	sock := a.root.Socket(daemon)
	if _, err := os.Stat(sock); err != nil {
		switch {
		case errors.Is(err, fs.ErrNotExist):
			return nil, a.unreachable(daemon, "no socket at "+sock)
		case errors.Is(err, fs.ErrPermission):
			return nil, &exitError{code: ExitUnreachable, msg: "cannot reach " + daemon + ": permission denied on " + sock + " (run as root or as a member of its group)"}
		}
		return nil, a.unreachable(daemon, err.Error())
	}
	cc, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, a.unreachable(daemon, err.Error())
	}
	a.conns = append(a.conns, cc)
	return cc, nil
}

func (a *app) supervisor() (supervisorv1.SupervisorClient, error) {
	cc, err := a.dial(supervisorDaemon)
	if err != nil {
		return nil, err
	}
	return supervisorv1.NewSupervisorClient(cc), nil
}

func (a *app) certmgr() (certmgrv1.CertManagerClient, error) {
	cc, err := a.dial(certmgrDaemon)
	if err != nil {
		return nil, err
	}
	return certmgrv1.NewCertManagerClient(cc), nil
}

func (a *app) deployer() (deployv1.DeployerClient, error) {
	cc, err := a.dial(deployagentDaemon)
	if err != nil {
		return nil, err
	}
	return deployv1.NewDeployerClient(cc), nil
}

func (a *app) broker() (brokerv1.BrokerClient, error) {
	cc, err := a.dial(brokerDaemon)
	if err != nil {
		return nil, err
	}
	return brokerv1.NewBrokerClient(cc), nil
}

// unary bounds one request/response call by --timeout.
func (a *app) unary() (context.Context, context.CancelFunc) {
	return context.WithTimeout(a.ctx, a.g.timeout)
}
