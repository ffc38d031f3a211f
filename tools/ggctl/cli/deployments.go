package cli

import (
	"bytes"
	"encoding/json"
	"fmt"

	deployv1 "github.com/evergreen-edge/evergreen/proto/evergreen/deploy/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func cmdDeployments(a *app, args []string) error {
	if _, err := a.parse(a.flags(), args, 0, 0); err != nil {
		return err
	}
	d, err := a.deployer()
	if err != nil {
		return err
	}
	ctx, cancel := a.unary()
	defer cancel()
	resp, err := d.ListDeployments(ctx, &deployv1.ListDeploymentsRequest{})
	if err != nil {
		return a.rpcError(deployagentDaemon, err)
	}
	if a.g.json {
		return a.printProto(resp)
	}
	if len(resp.GetDeployments()) == 0 {
		fmt.Fprintln(a.stdout, "no deployments yet")
		return nil
	}
	t := newTable(a.stdout, "ID", "TYPE", "STATUS", "STAGE", "CREATED", "FINISHED", "CURRENT", "ERROR")
	for _, dep := range resp.GetDeployments() {
		current := ""
		if dep.GetCurrent() {
			current = "yes"
		}
		t.row(dep.GetDeploymentId(),
			enumName(dep.GetType().String(), "DEPLOYMENT_TYPE_"),
			enumName(dep.GetStatus().String(), "DEPLOYMENT_STATUS_"), dep.GetStage(),
			humanTime(dep.GetCreatedAt()), humanTime(dep.GetFinishedAt()), current, dep.GetError())
	}
	return t.flush()
}

func cmdDeploymentsShow(a *app, args []string) error {
	pos, err := a.parse(a.flags(), args, 0, 1)
	if err != nil {
		return err
	}
	id := ""
	if len(pos) == 1 {
		id = pos[0]
	}
	d, err := a.deployer()
	if err != nil {
		return err
	}
	ctx, cancel := a.unary()
	defer cancel()
	dep, err := d.GetDeployment(ctx, &deployv1.GetDeploymentRequest{DeploymentId: id})
	if err != nil {
		if id == "" && status.Code(err) == codes.NotFound {
			return &exitError{code: ExitNotFound, msg: "nothing has been deployed yet"}
		}
		return a.rpcError(deployagentDaemon, err)
	}
	if a.g.json {
		return a.printProto(dep)
	}
	t := newTable(a.stdout)
	t.row("ID:", dep.GetDeploymentId())
	t.row("Type:", enumName(dep.GetType().String(), "DEPLOYMENT_TYPE_"))
	t.row("Status:", enumName(dep.GetStatus().String(), "DEPLOYMENT_STATUS_"))
	t.row("Created:", humanTime(dep.GetCreatedAt()))
	t.row("Finished:", humanTime(dep.GetFinishedAt()))
	t.row("Stage:", dep.GetStage())
	if dep.GetRedeployOf() != "" {
		t.row("Redeploy of:", dep.GetRedeployOf())
	}
	t.row("Current:", yesNo(dep.GetCurrent()))
	t.row("Group sha256:", dep.GetGroupSha256())
	t.row("Error:", dep.GetError())
	if err := t.flush(); err != nil {
		return err
	}
	if len(dep.GetResults()) > 0 {
		fmt.Fprintln(a.stdout)
	}
	return printResults(a.stdout, dep.GetResults())
}

// cmdDeploymentsApplied asks every consuming daemon which deployment it
// runs; exits 1 when one runs another than current.json names, or does not
// answer.
func cmdDeploymentsApplied(a *app, args []string) error {
	if _, err := a.parse(a.flags(), args, 0, 0); err != nil {
		return err
	}
	d, err := a.deployer()
	if err != nil {
		return err
	}
	ctx, cancel := a.unary()
	defer cancel()
	resp, err := d.GetApplied(ctx, &deployv1.GetAppliedRequest{})
	if err != nil {
		return a.rpcError(deployagentDaemon, err)
	}
	off := 0
	for _, dm := range resp.GetDaemons() {
		if dm.GetError() != "" || dm.GetDeploymentId() != resp.GetDeploymentId() {
			off++
		}
	}
	if a.g.json {
		if err := a.printProto(resp); err != nil {
			return err
		}
	} else {
		in := resp.GetDeploymentId()
		if in == "" {
			in = "none"
		}
		fmt.Fprintf(a.stdout, "current.json: deployment %s %s\n", in, resp.GetGroupSha256())
		t := newTable(a.stdout, "DAEMON", "DEPLOYMENT", "GROUP SHA256", "ERROR")
		for _, dm := range resp.GetDaemons() {
			t.row(dm.GetDaemon(), dm.GetDeploymentId(), dm.GetGroupSha256(), dm.GetError())
		}
		if err := t.flush(); err != nil {
			return err
		}
	}
	if off > 0 {
		return failf("%d of %d daemons do not run deployment %s", off, len(resp.GetDaemons()), resp.GetDeploymentId())
	}
	return nil
}

// cmdDeploymentsGroup prints the group in force, indented (the deployagent
// keeps it compact).
func cmdDeploymentsGroup(a *app, args []string) error {
	if _, err := a.parse(a.flags(), args, 0, 0); err != nil {
		return err
	}
	d, err := a.deployer()
	if err != nil {
		return err
	}
	ctx, cancel := a.unary()
	defer cancel()
	resp, err := d.GetCurrentGroup(ctx, &deployv1.GetCurrentGroupRequest{})
	if err != nil {
		if status.Code(err) == codes.NotFound {
			return &exitError{code: ExitNotFound, msg: "no group is in force: " + status.Convert(err).Message()}
		}
		return a.rpcError(deployagentDaemon, err)
	}
	if a.g.json {
		_, err = fmt.Fprintf(a.stdout, "%s\n", bytes.TrimSpace(resp.GetGroupJson()))
		return err
	}
	var out bytes.Buffer
	if err := json.Indent(&out, bytes.TrimSpace(resp.GetGroupJson()), "", "  "); err != nil {
		return failf("the deployagent sent a group that is not JSON: %v", err)
	}
	out.WriteByte('\n')
	_, err = a.stdout.Write(out.Bytes())
	return err
}
