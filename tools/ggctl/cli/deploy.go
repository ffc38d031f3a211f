package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	deployv1 "github.com/evergreen-edge/evergreen/proto/evergreen/deploy/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// invalidDefinition is `ggctl deploy --json` for a definition the
// deployagent refused: every validation error, one per element.
type invalidDefinition struct {
	Code   string   `json:"code"`
	File   string   `json:"file"`
	Errors []string `json:"errors"`
}

func cmdDeploy(a *app, args []string) error {
	fset := a.flags()
	reset := fset.Bool("reset", false, "remove the deployed group instead of deploying a file (v1 ResetDeployment)")
	force := fset.Bool("force", false, "with --reset: reset even when daemons refuse or do not answer (v1 ForceResetDeployment)")
	redeploy := fset.Bool("redeploy", false, "deploy the group in force again (v1 Redeployment)")
	of := fset.String("of", "", "with --redeploy: the deployment to redeploy (default: the one in force)")
	id := fset.String("id", "", "deployment id to use (the deployagent generates one when empty)")
	pos, err := a.parse(fset, args, 0, 1)
	if err != nil {
		return err
	}
	req := &deployv1.DeployRequest{DeploymentId: *id}
	file := ""
	switch {
	case *force && !*reset:
		return usageErrorf("deploy: --force goes with --reset")
	case *of != "" && !*redeploy:
		return usageErrorf("deploy: --of goes with --redeploy")
	case *reset && len(pos) > 0:
		return usageErrorf("deploy: give FILE or --reset, not both")
	case *redeploy && len(pos) > 0, *reset && *redeploy:
		return usageErrorf("deploy: give one of FILE, --reset or --redeploy, not several")
	case *reset && *force:
		req.Reset_ = true
		req.Type = deployv1.DeploymentType_DEPLOYMENT_TYPE_FORCE_RESET
	case *reset:
		req.Reset_ = true
	case *redeploy:
		req.Type = deployv1.DeploymentType_DEPLOYMENT_TYPE_REDEPLOY
		req.RedeployOf = *of
	case len(pos) == 0:
		return usageErrorf("deploy: missing argument: usage: ggctl deploy FILE | --reset [--force] | --redeploy [--of ID]")
	default:
		file = pos[0]
		b, err := os.ReadFile(file)
		if err != nil {
			return usageErrorf("deploy: read group definition: %v", err)
		}
		if len(strings.TrimSpace(string(b))) == 0 {
			return usageErrorf("deploy: %s is empty", file)
		}
		if b, err = resolveCodeURIs(b, file); err != nil {
			return usageErrorf("deploy: %v", err)
		}
		req.GroupJson = b
	}

	d, err := a.deployer()
	if err != nil {
		return err
	}
	// A deployment takes as long as the daemons need to apply it, so the
	// stream has no --timeout; Ctrl-C stops following it.
	ctx, cancel := context.WithCancel(a.ctx)
	defer cancel()
	start := time.Now()
	stream, err := d.Deploy(ctx, req)
	if err != nil {
		return a.deployError(file, "", err)
	}
	var final *deployv1.DeployEvent
	deploymentID := req.GetDeploymentId()
	bar := &progressBar{w: a.stderr, on: isTerminal(a.stderr)}
	defer bar.end()
	for final == nil {
		ev, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return a.deployError(file, deploymentID, err)
		}
		if ev.GetDeploymentId() != "" {
			deploymentID = ev.GetDeploymentId()
		}
		msg := oneLine(ev.GetMessage())
		if bar.draw(msg) {
			continue
		}
		bar.end()
		if st := ev.GetStage(); st != "" {
			msg = fmt.Sprintf("%-12s %s", st, msg)
		}
		fmt.Fprintf(a.stderr, "%8.2fs  %-11s  %s\n", time.Since(start).Seconds(),
			enumName(ev.GetStatus().String(), "DEPLOYMENT_STATUS_"), msg)
		switch ev.GetStatus() {
		case deployv1.DeploymentStatus_DEPLOYMENT_STATUS_SUCCESS, deployv1.DeploymentStatus_DEPLOYMENT_STATUS_FAILURE:
			final = ev
		}
	}
	if final == nil {
		return failf("deployment %s: the deployagent ended the stream without a result (see 'ggctl deployments show %s')", deploymentID, deploymentID)
	}
	took := time.Since(start)
	success := final.GetStatus() == deployv1.DeploymentStatus_DEPLOYMENT_STATUS_SUCCESS

	if a.g.json {
		if err := a.printProto(final); err != nil {
			return err
		}
	} else {
		what := "deployment " + deploymentID
		if req.GetReset_() {
			what = "reset " + deploymentID
		}
		switch {
		case success && req.GetReset_():
			fmt.Fprintf(a.stdout, "%s: SUCCESS in %s; no group is deployed\n", what, seconds(took))
		case success:
			fmt.Fprintf(a.stdout, "%s: SUCCESS in %s\n", what, seconds(took))
		default:
			fmt.Fprintf(a.stdout, "%s: FAILURE after %s; the previous group stays in force\n", what, seconds(took))
		}
		if success && final.GetMessage() != "" && strings.Contains(final.GetMessage(), "forced:") {
			fmt.Fprintf(a.stdout, "%s\n", oneLine(final.GetMessage()))
		}
		if err := printResults(a.stdout, final.GetResults()); err != nil {
			return err
		}
	}
	if success {
		return nil
	}
	refused := 0
	for _, r := range final.GetResults() {
		if !r.GetOk() {
			refused++
		}
	}
	if refused > 0 {
		return failf("deployment %s failed: %d of %d daemons refused it", deploymentID, refused, len(final.GetResults()))
	}
	return failf("deployment %s failed: %s", deploymentID, final.GetMessage())
}

func seconds(d time.Duration) string { return fmt.Sprintf("%.2fs", d.Seconds()) }

// deployError reports a Deploy call that ended with an error status;
// INVALID_ARGUMENT lists every validation error.
func (a *app) deployError(file, id string, err error) error {
	st, _ := status.FromError(err)
	switch {
	case st.Code() == codes.InvalidArgument && file != "":
		errs := validationErrors(st.Message())
		if a.g.json {
			if err := a.printJSON(invalidDefinition{Code: codes.InvalidArgument.String(), File: file, Errors: errs}); err != nil {
				return err
			}
		}
		noun := "errors"
		if len(errs) == 1 {
			noun = "error"
		}
		fmt.Fprintf(a.stderr, "ggctl: %s is not a valid group definition (%d %s):\n", file, len(errs), noun)
		for _, e := range errs {
			fmt.Fprintf(a.stderr, "  %s\n", e)
		}
		return silentFailure(ExitUsage)
	case st.Code() == codes.Aborted:
		return failf("another deployment is in progress; try again when it ends (%s)", st.Message())
	case st.Code() == codes.Canceled && a.ctx.Err() != nil:
		if id == "" {
			return failf("interrupted; the deployment may go on in the core (see 'ggctl deployments')")
		}
		return failf("interrupted; deployment %s may go on in the core (see 'ggctl deployments show %s')", id, id)
	}
	return a.rpcError(deployagentDaemon, err)
}

// validationErrors splits the deployagent's INVALID_ARGUMENT message into
// one error per line. The message lists every error; a headline of its own
// (a first line ending in ':') gives way to ggctl's.
func validationErrors(msg string) []string {
	var lines []string
	for _, l := range strings.Split(msg, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			lines = append(lines, strings.TrimPrefix(strings.TrimPrefix(l, "- "), "* "))
		}
	}
	if len(lines) > 1 && strings.HasSuffix(lines[0], ":") {
		lines = lines[1:]
	}
	if len(lines) == 1 {
		var parts []string
		for _, p := range strings.Split(lines[0], "; ") {
			if p = strings.TrimSpace(p); p != "" {
				parts = append(parts, p)
			}
		}
		lines = parts
	}
	if len(lines) == 0 {
		lines = []string{"the deployagent gave no details"}
	}
	return lines
}

func printResults(w io.Writer, results []*deployv1.DaemonResult) error {
	if len(results) == 0 {
		return nil
	}
	t := newTable(w, "DAEMON", "RESULT", "REASON")
	for _, r := range results {
		res := "ok"
		if !r.GetOk() {
			res = "FAILED"
		}
		t.row(r.GetDaemon(), res, r.GetReason())
	}
	return t.flush()
}

// resolveCodeURIs makes every relative Evergreen.CodeUri of the group
// absolute, from the directory of the group file (docs/group-definition.md):
// the daemons do not know where the file was. Anything it cannot read is
// left as it is for the deployagent to report with its path.
func resolveCodeURIs(b []byte, file string) ([]byte, error) {
	var g map[string]json.RawMessage
	if json.Unmarshal(b, &g) != nil {
		return b, nil
	}
	var fns struct {
		DefaultConfig json.RawMessage   `json:"DefaultConfig,omitempty"`
		Functions     []json.RawMessage `json:"Functions"`
	}
	raw, ok := g["Functions"]
	if !ok || json.Unmarshal(raw, &fns) != nil {
		return b, nil
	}
	base, err := filepath.Abs(filepath.Dir(file))
	if err != nil {
		return nil, err
	}
	changed := false
	for i, f := range fns.Functions {
		var fn map[string]json.RawMessage
		if json.Unmarshal(f, &fn) != nil {
			continue
		}
		var ext map[string]any
		if json.Unmarshal(fn["Evergreen"], &ext) != nil || ext == nil {
			continue
		}
		uri, _ := ext["CodeUri"].(string)
		if uri == "" || strings.Contains(uri, ":") || filepath.IsAbs(uri) {
			continue
		}
		ext["CodeUri"] = filepath.Join(base, uri)
		fn["Evergreen"], _ = json.Marshal(ext)
		fns.Functions[i], _ = json.Marshal(fn)
		changed = true
	}
	if !changed {
		return b, nil
	}
	var all map[string]json.RawMessage
	json.Unmarshal(raw, &all)
	all["Functions"], _ = json.Marshal(fns.Functions)
	g["Functions"], _ = json.Marshal(all)
	return json.Marshal(g)
}

// progressBar draws a download's "artifact URL: X of Y" events as one
// line that fills, on a terminal; elsewhere each event is a plain line.
type progressBar struct {
	w       io.Writer
	on      bool
	drawing bool
}

func (b *progressBar) draw(msg string) bool {
	if !b.on || !strings.HasPrefix(msg, "artifact ") {
		return false
	}
	i := strings.LastIndex(msg, ": ")
	done, total, ok := strings.Cut(msg[i+2:], " of ")
	if i < 0 || !ok {
		return false
	}
	d, t := parseSize(done), parseSize(total)
	if t <= 0 {
		return false
	}
	frac := min(d/t, 1)
	const width = 30
	n := int(frac * width)
	url := msg[len("artifact "):i]
	if len(url) > 40 {
		url = "…" + url[len(url)-39:]
	}
	fmt.Fprintf(b.w, "\r  [%s%s] %3.0f%%  %s of %s  %s\x1b[K", strings.Repeat("#", n), strings.Repeat(".", width-n), frac*100, done, total, url)
	b.drawing = true
	return true
}

func (b *progressBar) end() {
	if b.drawing {
		fmt.Fprintln(b.w)
		b.drawing = false
	}
}

// parseSize reads the deployagent's "12.3 MiB" sizes; -1 when it cannot.
func parseSize(s string) float64 {
	num, unit, ok := strings.Cut(strings.TrimSpace(s), " ")
	v, err := strconv.ParseFloat(num, 64)
	if !ok || err != nil {
		return -1
	}
	switch unit {
	case "B":
		return v
	case "KiB":
		return v * (1 << 10)
	case "MiB":
		return v * (1 << 20)
	}
	return -1
}

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
