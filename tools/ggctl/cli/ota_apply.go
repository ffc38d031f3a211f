package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	otav1 "github.com/evergreen-edge/evergreen/proto/evergreen/ota/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// The `ota` verbs that talk to the core's ota daemon (DIR/run/ota.sock).

const otaDaemon = "ota"

// defaultOTAWait bounds --wait: a restart plus the health check
// (runtime.postStartHealthCheckTimeout, 30 s by default) and a rollback.
const defaultOTAWait = 5 * time.Minute

var _ = addOtaCommands(
	command{"ota apply", "BUNDLE|URL [--sig F|URL] [--sha256 H] [--force] [--wait] [--id ID]", "Install an update bundle on the core: the ota daemon checks its signature against\nthe trusted keys (evergreen.ota.trustedKeys), its sha256, size, files, platform\nand version before touching anything, installs it beside the running version,\nand restarts the core into it. BUNDLE is a path the daemon can read (its\nsignature BUNDLE.sig is read here unless --sig says otherwise); URL is https://\n(its signature defaults to URL.sig). Progress goes to stderr, one line per step\nwhen stderr is not a terminal. Without --wait it returns once the restart is\nrequested; with --wait it follows the core through the restart until the new\nversion is committed (exit 0) or rolled back (exit 1). A refusal exits 2 (bad\nbundle or request), 1 (signature, version, broken) with the reason; nothing\nchanged then. --force installs a downgrade, the same version or a version\nmarked broken.", cmdOtaApply},
	command{"ota status", "", "Show the running version, the versions DIR/ota/current and previous name, the\nupdate waiting for its health check, the versions marked broken, and the last\noutcome (Success, Failure with the reason, Rejected).", cmdOtaStatus},
)

func (a *app) ota() (otav1.OTAClient, error) {
	cc, err := a.dial(otaDaemon)
	if err != nil {
		return nil, err
	}
	return otav1.NewOTAClient(cc), nil
}

func cmdOtaApply(a *app, args []string) error {
	fs := a.flags()
	sig := fs.String("sig", "", "the signature: a file, or an https:// URL (default BUNDLE.sig, or URL.sig)")
	sum := fs.String("sha256", "", "the bundle's expected sha256 (hex), checked besides the signature")
	force := fs.Bool("force", false, "install a downgrade, the same version, or a version marked broken")
	wait := fs.Bool("wait", false, "follow the core through the restart until the update is committed or rolled back")
	waitFor := fs.Duration("wait-timeout", defaultOTAWait, "with --wait: how long to follow it")
	id := fs.String("id", "", "the job's `ID` (default local-<time>)")
	pos, err := a.parse(fs, args, 1, 1)
	if err != nil {
		return err
	}
	req := &otav1.ApplyRequest{Sha256: *sum, Force: *force, JobId: *id}
	if req.JobId == "" {
		req.JobId = "local-" + strconv.FormatInt(time.Now().UnixMilli(), 10)
	}
	src := pos[0]
	isURL := strings.Contains(src, "://")
	if isURL {
		req.Source = src
	} else {
		abs, err := filepath.Abs(src)
		if err != nil {
			return usageErrorf("ota apply: %v", err)
		}
		if _, err := os.Stat(abs); err != nil {
			return usageErrorf("ota apply: bundle: %v", err)
		}
		req.Source = abs
	}
	switch {
	case strings.HasPrefix(*sig, "https://") || strings.HasPrefix(*sig, "file://"):
		req.SignatureUrl = *sig
	case *sig != "":
		if req.Signature, err = readSignature(*sig); err != nil {
			return err
		}
	case isURL:
		req.SignatureUrl = stripQuery(src) + ".sig"
	default:
		if req.Signature, err = readSignature(req.Source + ".sig"); err != nil {
			return err
		}
	}
	c, err := a.ota()
	if err != nil {
		return err
	}
	// A download takes what it takes: no --timeout on the stream.
	ctx, cancel := context.WithCancel(a.ctx)
	defer cancel()
	start := time.Now()
	stream, err := c.Apply(ctx, req)
	if err != nil {
		return a.otaError(err)
	}
	p := &otaProgress{w: a.stderr, tty: isTerminal(a.stderr), start: start}
	var last *otav1.ApplyEvent
	for {
		ev, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			p.end()
			return a.otaError(err)
		}
		last = ev
		p.show(ev)
	}
	p.end()
	if last.GetStatus() != otav1.JobStatus_JOB_STATUS_RESTARTING {
		return failf("ota apply: the ota daemon ended without restarting the core (last: %s %s)", enumName(last.GetStatus().String(), "JOB_STATUS_"), last.GetMessage())
	}
	if !*wait {
		if a.g.json {
			return a.printProto(last)
		}
		fmt.Fprintf(a.stdout, "job %s: %s installed; the core restarts into it (ggctl ota status shows the outcome)\n", req.JobId, last.GetVersion())
		return nil
	}
	out, err := a.waitOutcome(req.JobId, *waitFor, p)
	if err != nil {
		return err
	}
	took := time.Since(start)
	if a.g.json {
		if err := a.printProto(out); err != nil {
			return err
		}
	}
	if out.GetStatus() == otav1.JobStatus_JOB_STATUS_SUCCESS {
		if !a.g.json {
			fmt.Fprintf(a.stdout, "job %s: SUCCESS in %s: %s committed (previous: %s)\n", req.JobId, seconds(took), out.GetVersion(), out.GetFromVersion())
		}
		return nil
	}
	if a.g.json {
		return silentFailure(ExitFailed)
	}
	return failf("job %s: %s after %s: %s; %s runs", req.JobId, enumName(out.GetStatus().String(), "JOB_STATUS_"), seconds(took), out.GetReason(), out.GetFromVersion())
}

// waitOutcome polls GetStatus, through the restart (the socket goes away
// and comes back), until the job's outcome is recorded.
func (a *app) waitOutcome(jobID string, limit time.Duration, p *otaProgress) (*otav1.Outcome, error) {
	deadline := time.Now().Add(limit)
	shown := ""
	for {
		st, err := a.otaStatusOnce()
		if err == nil {
			if o := st.GetLastOutcome(); o.GetJobId() == jobID && o.GetStatus() != otav1.JobStatus_JOB_STATUS_REJECTED {
				return o, nil
			}
			if pe := st.GetPending(); pe.GetJobId() == jobID {
				msg := fmt.Sprintf("running %s (launch %d); waiting for every daemon to be healthy", pe.GetVersion(), pe.GetLaunchAttempts())
				if pe.GetRollingBack() {
					msg = "rolling back: " + pe.GetReason()
				}
				if msg != shown {
					p.line("HEALTH", msg)
					shown = msg
				}
			}
		} else if shown != "restarting" {
			p.line("RESTARTING", "the core is restarting")
			shown = "restarting"
		}
		if time.Now().After(deadline) {
			return nil, failf("job %s: no outcome within %s (see 'ggctl ota status')", jobID, limit)
		}
		select {
		case <-a.ctx.Done():
			return nil, failf("interrupted; the update goes on in the core (see 'ggctl ota status')")
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// otaStatusOnce asks the ota daemon once, on a fresh connection (the old
// one may be to a daemon that is gone).
func (a *app) otaStatusOnce() (*otav1.Status, error) {
	sub := &app{ctx: a.ctx, g: a.g, root: a.root, cmd: a.cmd, stdout: a.stdout, stderr: a.stderr}
	defer sub.close()
	c, err := sub.ota()
	if err != nil {
		return nil, err
	}
	ctx, cancel := sub.unary()
	defer cancel()
	return c.GetStatus(ctx, &otav1.GetStatusRequest{})
}

func readSignature(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, usageErrorf("ota apply: signature: %v (give it with --sig)", err)
	}
	return b, nil
}

func stripQuery(u string) string {
	if i := strings.IndexByte(u, '?'); i >= 0 {
		return u[:i]
	}
	return u
}

// otaError reports a refused or failed Apply.
func (a *app) otaError(err error) error {
	st, _ := status.FromError(err)
	switch st.Code() {
	case codes.PermissionDenied, codes.FailedPrecondition, codes.ResourceExhausted:
		return failf("update refused: %s", st.Message())
	case codes.InvalidArgument:
		return usageErrorf("update refused: %s", st.Message())
	case codes.Aborted:
		return failf("update refused: %s; try again when it ends", st.Message())
	case codes.Canceled:
		if a.ctx.Err() != nil {
			return failf("interrupted (a download resumes with the next apply)")
		}
	case codes.Unavailable:
		// The daemon's own word on a download, not a transport failure.
		if m := st.Message(); strings.HasPrefix(m, "download ") || strings.HasPrefix(m, "signature_url: ") {
			return failf("update failed, nothing changed: %s", m)
		}
	}
	return a.rpcError(otaDaemon, err)
}

// otaProgress prints an update's steps: one redrawn line for the download
// on a terminal, plain lines otherwise (a download line per 10 percent).
type otaProgress struct {
	w       io.Writer
	tty     bool
	start   time.Time
	drawing bool
	lastPct int
	status  otav1.JobStatus
}

func (p *otaProgress) show(ev *otav1.ApplyEvent) {
	if ev.GetStatus() == otav1.JobStatus_JOB_STATUS_DOWNLOADING && ev.GetBytesTotal() > 0 {
		pct := int(ev.GetBytesDone() * 100 / ev.GetBytesTotal())
		if p.tty {
			const width = 30
			n := pct * width / 100
			fmt.Fprintf(p.w, "\r  [%s%s] %3d%%  %s of %s\x1b[K", strings.Repeat("#", n), strings.Repeat(".", width-n), pct,
				byteSize(ev.GetBytesDone()), byteSize(ev.GetBytesTotal()))
			p.drawing = true
			return
		}
		if p.status == ev.GetStatus() && pct/10 == p.lastPct/10 && pct != 100 {
			return
		}
		p.lastPct, p.status = pct, ev.GetStatus()
		p.line("DOWNLOADING", fmt.Sprintf("%3d%%  %s of %s", pct, byteSize(ev.GetBytesDone()), byteSize(ev.GetBytesTotal())))
		return
	}
	if ev.GetStatus() == p.status && ev.GetStatus() == otav1.JobStatus_JOB_STATUS_DOWNLOADING {
		return
	}
	p.status = ev.GetStatus()
	p.line(enumName(ev.GetStatus().String(), "JOB_STATUS_"), ev.GetMessage())
}

func (p *otaProgress) line(what, msg string) {
	p.end()
	fmt.Fprintf(p.w, "%8.2fs  %-11s  %s\n", time.Since(p.start).Seconds(), what, oneLine(msg))
}

func (p *otaProgress) end() {
	if p.drawing {
		fmt.Fprintln(p.w)
		p.drawing = false
	}
}

func byteSize(n int64) string {
	switch {
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

func cmdOtaStatus(a *app, args []string) error {
	if _, err := a.parse(a.flags(), args, 0, 0); err != nil {
		return err
	}
	c, err := a.ota()
	if err != nil {
		return err
	}
	ctx, cancel := a.unary()
	defer cancel()
	st, err := c.GetStatus(ctx, &otav1.GetStatusRequest{})
	if err != nil {
		return a.rpcError(otaDaemon, err)
	}
	if a.g.json {
		return a.printProto(st)
	}
	w := a.stdout
	none := func(s string) string {
		if s == "" {
			return "-"
		}
		return s
	}
	cur := st.GetCurrentVersion()
	if cur == "" {
		cur = "- (no update installed yet: the binary started runs)"
	}
	fmt.Fprintf(w, "running:    %s\n", none(st.GetRunningVersion()))
	fmt.Fprintf(w, "current:    %s\n", cur)
	fmt.Fprintf(w, "previous:   %s\n", none(st.GetPreviousVersion()))
	fmt.Fprintf(w, "committed:  %s\n", none(st.GetCommittedVersion()))
	if p := st.GetPending(); p != nil {
		what := fmt.Sprintf("%s (job %s, launch %d of 3, waiting for its health check; rollback to %s)", p.GetVersion(), p.GetJobId(), p.GetLaunchAttempts(), p.GetPreviousVersion())
		if p.GetRollingBack() {
			what = fmt.Sprintf("%s rolling back to %s: %s", p.GetVersion(), p.GetPreviousVersion(), p.GetReason())
		}
		fmt.Fprintf(w, "pending:    %s\n", what)
	} else {
		fmt.Fprintf(w, "pending:    -\n")
	}
	if j := st.GetJob(); j != nil {
		fmt.Fprintf(w, "in flight:  job %s %s %s %s\n", j.GetJobId(), enumName(j.GetStatus().String(), "JOB_STATUS_"), j.GetVersion(), oneLine(j.GetMessage()))
	}
	if len(st.GetBroken()) == 0 {
		fmt.Fprintf(w, "broken:     -\n")
	}
	for _, b := range st.GetBroken() {
		fmt.Fprintf(w, "broken:     %s (%s): %s\n", b.GetVersion(), humanTime(b.GetMarkedAt()), oneLine(b.GetReason()))
	}
	if o := st.GetLastOutcome(); o != nil {
		fmt.Fprintf(w, "last:       job %s (%s) %s %s", o.GetJobId(), o.GetSource(), enumName(o.GetStatus().String(), "JOB_STATUS_"), none(o.GetVersion()))
		if o.GetFromVersion() != "" {
			fmt.Fprintf(w, " from %s", o.GetFromVersion())
		}
		fmt.Fprintf(w, " at %s", humanTime(o.GetFinishedAt()))
		if o.GetReason() != "" {
			fmt.Fprintf(w, ": %s", oneLine(o.GetReason()))
		}
		fmt.Fprintln(w)
	} else {
		fmt.Fprintf(w, "last:       -\n")
	}
	if len(st.GetInstalled()) > 0 {
		fmt.Fprintf(w, "installed:  %s\n", strings.Join(st.GetInstalled(), " "))
	}
	return nil
}
