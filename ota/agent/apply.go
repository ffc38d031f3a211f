package agent

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/evergreen-edge/evergreen/ota/bundle"
	"github.com/evergreen-edge/evergreen/ota/install"
	otav1 "github.com/evergreen-edge/evergreen/proto/evergreen/ota/v1"
	"github.com/evergreen-edge/evergreen/services/kit/atomicfile"
	"github.com/evergreen-edge/evergreen/services/kit/clouddeploy"
	"github.com/evergreen-edge/evergreen/services/kit/errdefs"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// An update job, in order: check the request; get the signature; check it
// against the trusted keys; fetch the bundle (https) or take it where it
// lies (a local path); check the whole bundle (sha256, size, signature,
// manifest, every file), its platform and its version; only then extract
// it, record it pending, switch the links and ask for the restart. Every
// refusal happens before the extraction and leaves DIR/ota as it was.

// jobSpec is one job: the request and where it came from.
type jobSpec struct {
	id     string
	source string // install.SourceLocal or SourceCloud
	req    *otav1.ApplyRequest
	// target, when set, must be the bundle's version (cloud jobs).
	target string
	// started is when the job began (set: a job resumed after a restart).
	started time.Time
	// resumes counts the restarts this job was picked up after.
	resumes int
}

// Apply runs a local job (ggctl ota apply), sending its progress to send.
// It returns once the restart is requested, or with the refusal.
func (a *Agent) Apply(ctx context.Context, r *otav1.ApplyRequest, send func(*otav1.ApplyEvent)) error {
	id := r.GetJobId()
	if id == "" {
		id = "local-" + strconv.FormatInt(a.o.Now().UnixMilli(), 10)
	} else if !clouddeploy.ValidID(id) {
		return errdefs.InvalidArgument("job_id", "%q: 1 to 128 of A-Z a-z 0-9 _ . : -, starting with a letter or digit", id)
	}
	return a.run(ctx, jobSpec{id: id, source: install.SourceLocal, req: r}, send)
}

// refusal is a job refused before anything changed.
type refusal struct{ err error }

func (r *refusal) Error() string { return r.err.Error() }
func (r *refusal) Unwrap() error { return r.err }

func (a *Agent) run(ctx context.Context, j jobSpec, send func(*otav1.ApplyEvent)) error {
	if !a.busy.TryLock() {
		return fmt.Errorf("%w (one at a time): %w", errBusy, errdefs.ErrAborted)
	}
	defer a.busy.Unlock()
	// A local job ends with its ggctl call, and every job with the daemon.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(a.ctx, cancel)()
	started := j.started
	if started.IsZero() {
		started = a.o.Now()
	}
	a.mu.Lock()
	a.job = &otav1.Job{JobId: j.id, Source: j.source, Status: otav1.JobStatus_JOB_STATUS_IN_PROGRESS, StartedAt: timestamppb.New(started), BytesTotal: -1}
	a.mu.Unlock()
	defer func() {
		a.mu.Lock()
		a.job = nil
		a.mu.Unlock()
	}()
	emit := func(st otav1.JobStatus, version, msg string, done, total int64) {
		a.mu.Lock()
		if a.job != nil {
			a.job.Status, a.job.Message, a.job.BytesDone, a.job.BytesTotal = st, msg, done, total
			if version != "" {
				a.job.Version = version
			}
		}
		a.mu.Unlock()
		if send != nil {
			send(&otav1.ApplyEvent{JobId: j.id, Status: st, Message: msg, Version: version, BytesDone: done, BytesTotal: total})
		}
	}
	log := a.log.With("job", j.id, "source", j.source)
	log.Info("update requested", "bundle", shownSource(j.req.GetSource()), "force", j.req.GetForce())
	j.started = started
	err := a.runSteps(ctx, j, emit)
	if err == nil {
		return nil
	}
	if a.ctx.Err() == nil {
		// The job is over: it is not picked up at the next start. (A job
		// cut by the daemon stopping keeps its record: a cloud job is
		// resumed, a local one reported interrupted.)
		a.dropJob(j.id)
	}
	// Nothing was installed (the install step's own failures aside): the
	// outcome lives in memory only, for GetStatus.
	out := &install.Outcome{JobID: j.id, Source: j.source, Status: install.Failure, Reason: reason(err), StartedAt: started, FinishedAt: a.o.Now()}
	var ref *refusal
	if errors.As(err, &ref) {
		out.Status = install.Rejected
		log.Warn("update refused", "err", ref.err)
	} else {
		log.Error("update failed", "err", err)
	}
	a.mu.Lock()
	out.Version = a.job.GetVersion()
	a.rejected = out
	a.mu.Unlock()
	return err
}

func (a *Agent) runSteps(ctx context.Context, j jobSpec, emit func(otav1.JobStatus, string, string, int64, int64)) error {
	r := j.req
	refuse := func(err error) error { return &refusal{err: err} }
	src, isURL, err := parseSource(r.GetSource())
	if err != nil {
		return refuse(err)
	}
	wantSHA := strings.ToLower(r.GetSha256())
	if wantSHA != "" {
		if b, err := hex.DecodeString(wantSHA); err != nil || len(b) != sha256.Size {
			return refuse(errdefs.InvalidArgument("sha256", "%q is not 64 hex digits", r.GetSha256()))
		}
	}
	if r.GetSize() < 0 {
		return refuse(errdefs.InvalidArgument("size", "%d is negative", r.GetSize()))
	}
	if len(r.GetSignature()) == 0 && r.GetSignatureUrl() == "" {
		what := "the bundle"
		if isURL && wantSHA == "" {
			what = "a URL source (give its sha256 and its signature, or the signature's URL)"
		}
		return refuse(fmt.Errorf("%s comes without a signature: an update is installed only when a trusted key signed it (ggctl ota sign): %w", what, errdefs.ErrPermissionDenied))
	}
	if a.keyProblem != "" {
		return refuse(fmt.Errorf("%s: %w", a.keyProblem, errdefs.ErrPermissionDenied))
	}
	if err := a.restarter.Available(); err != nil {
		return refuse(fmt.Errorf("%v: %w", err, errdefs.ErrFailedPrecondition))
	}
	state, err := a.state()
	if err != nil {
		return refuse(err)
	}
	if p := state.Pending; p != nil {
		return refuse(fmt.Errorf("version %s is installed and waits for its health check (job %s): %w", p.Version, p.JobID, errdefs.ErrAborted))
	}

	// The signature first: a bundle from a key we do not trust is not
	// downloaded at all.
	emit(otav1.JobStatus_JOB_STATUS_VERIFYING, "", "checking the signature", 0, -1)
	sigBytes := r.GetSignature()
	if len(sigBytes) == 0 {
		if sigBytes, err = a.fetchSmall(ctx, r.GetSignatureUrl(), bundle.MaxSignatureSize); err != nil {
			err = fmt.Errorf("signature_url: %w", err)
			if errors.Is(err, errdefs.ErrUnavailable) {
				return err // a retry may do: nothing to refuse
			}
			return refuse(classify(err))
		}
	}
	sig, err := bundle.ParseSignature(sigBytes)
	if err != nil {
		return refuse(classify(err))
	}
	if err := bundle.VerifySignature(sig, a.trusted, sig.SHA256, sig.Size); err != nil {
		return refuse(classify(err))
	}
	if wantSHA != "" && wantSHA != sig.SHA256 {
		return refuse(classify(fmt.Errorf("%w: the request says sha256 %s, the signature signs %s", bundle.ErrHashMismatch, wantSHA, sig.SHA256)))
	}
	if r.GetSize() > 0 && r.GetSize() != sig.Size {
		return refuse(classify(fmt.Errorf("%w: the request says %d bytes, the signature signs %d", bundle.ErrHashMismatch, r.GetSize(), sig.Size)))
	}
	maxBytes := a.env.Config.Evergreen.OTA.MaxBundleBytes
	if sig.Size > maxBytes {
		return refuse(fmt.Errorf("the bundle is %d bytes, over evergreen.ota.maxBundleBytes (%d): %w", sig.Size, maxBytes, errdefs.ErrResourceExhausted))
	}

	// From here on the job survives a restart of the core: a cloud job is
	// picked up again (the download resumes), a local one is reported
	// interrupted. The signature is kept as fetched.
	if err := a.l.Create(); err != nil {
		return err
	}
	rec := &install.Job{JobID: j.id, Source: j.source, Bundle: r.GetSource(), SHA256: wantSHA, Size: r.GetSize(),
		Signature: sigBytes, TargetVersion: j.target, Force: r.GetForce(), StartedAt: j.started, Resumes: j.resumes}
	if err := a.l.SaveJob(rec); err != nil {
		return fmt.Errorf("record the job: %w", err)
	}

	path := src
	if isURL {
		have := a.partSize(sig.SHA256, sig.Size)
		msg := "downloading " + shownSource(src)
		if have > 0 {
			msg = fmt.Sprintf("resuming the download of %s at %d of %d bytes", shownSource(src), have, sig.Size)
		}
		emit(otav1.JobStatus_JOB_STATUS_DOWNLOADING, "", msg, have, sig.Size)
		path, err = a.download(ctx, src, sig.SHA256, sig.Size, maxBytes, func(done, total int64) {
			emit(otav1.JobStatus_JOB_STATUS_DOWNLOADING, "", "downloading "+shownSource(src), done, total)
		})
		if err != nil {
			a.tidyDownloads()
			if errors.Is(err, errdefs.ErrUnavailable) || errors.Is(err, context.Canceled) {
				// A retry resumes the download: nothing to refuse.
				return err
			}
			return refuse(classify(err))
		}
	} else if fi, err := os.Stat(path); err != nil {
		return refuse(fmt.Errorf("source %s: %v (the ota daemon reads it; under systemd, /tmp is private: use a path under the root, or https): %w", path, errors.Unwrap(err), errdefs.ErrInvalidArgument))
	} else if fi.Size() > maxBytes {
		return refuse(fmt.Errorf("the bundle is %d bytes, over evergreen.ota.maxBundleBytes (%d): %w", fi.Size(), maxBytes, errdefs.ErrResourceExhausted))
	}

	emit(otav1.JobStatus_JOB_STATUS_VERIFYING, "", "checking the bundle", sig.Size, sig.Size)
	m, err := bundle.Open(path, sig, a.trusted)
	if err != nil {
		if isURL {
			os.Remove(path)
			a.tidyDownloads()
		}
		return refuse(classify(err))
	}
	if err := a.checkVersion(m, state, j); err != nil {
		if isURL {
			os.Remove(path)
			a.tidyDownloads()
		}
		return refuse(err)
	}
	a.hit(install.FPVerified)

	emit(otav1.JobStatus_JOB_STATUS_INSTALLING, m.Version, "installing "+m.Version, sig.Size, sig.Size)
	p, err := a.install(path, m, j)
	if isURL {
		os.Remove(path)
		a.tidyDownloads()
	}
	if err != nil {
		return err
	}
	emit(otav1.JobStatus_JOB_STATUS_RESTARTING, m.Version, fmt.Sprintf("restarting into %s (previous: %s)", p.Version, p.PreviousVersion), sig.Size, sig.Size)
	a.hit(install.FPBeforeRestart)
	if err := a.restarter.Restart(context.Background(), "update to "+m.Version); err != nil {
		// Installed and switched: the next start of ggd runs it anyway.
		return fmt.Errorf("installed %s, but the restart request failed (the next start of ggd runs it): %v: %w", m.Version, err, errdefs.ErrUnavailable)
	}
	a.log.Info("restart requested", "version", m.Version, "job", j.id)
	return nil
}

// state reads state.json (an empty state before the first update).
func (a *Agent) state() (*install.State, error) {
	if !a.l.Exists() {
		return &install.State{}, nil
	}
	s, err := a.l.LoadState()
	if err != nil {
		return nil, fmt.Errorf("%v (fix or remove it): %w", err, errdefs.ErrFailedPrecondition)
	}
	return s, nil
}

// checkVersion refuses another platform, a version that is not the job's
// target, and, unless forced, a downgrade, the same version, a version
// that cannot be ordered, and a broken one.
func (a *Agent) checkVersion(m bundle.Manifest, s *install.State, j jobSpec) error {
	if err := bundle.CheckPlatform(m, runtime.GOOS, runtime.GOARCH); err != nil {
		return classify(err)
	}
	if j.target != "" && m.Version != j.target {
		return errdefs.InvalidArgument("targetVersion", "the bundle is version %s, the job wants %s", m.Version, j.target)
	}
	force := j.req.GetForce()
	running := a.o.Version
	if b := s.IsBroken(m.Version); b != nil && !force {
		return fmt.Errorf("version %s is marked broken (%s, %s): it is never retried automatically; force installs it: %w",
			m.Version, b.Reason, b.At.UTC().Format(time.RFC3339), errdefs.ErrFailedPrecondition)
	}
	if _, err := bundle.CompareVersions(m.Version, m.Version); err != nil {
		if force {
			return nil
		}
		return fmt.Errorf("the bundle's version %q cannot be ordered (a development build); force installs it: %w", m.Version, errdefs.ErrFailedPrecondition)
	}
	c, err := bundle.CompareVersions(m.Version, running)
	switch {
	case err != nil:
		// The running build cannot be ordered ("dev", a commit hash):
		// any release may replace it.
		a.log.Info("the running version cannot be ordered; not a downgrade check", "running", running, "bundle", m.Version)
	case c == 0 && !force:
		return fmt.Errorf("version %s is the one running: nothing to do; force reinstalls it: %w", m.Version, errdefs.ErrFailedPrecondition)
	case c < 0 && !force && !a.env.Config.Evergreen.OTA.AllowDowngrade:
		return fmt.Errorf("version %s is older than the running %s (a downgrade); force, or evergreen.ota.allowDowngrade, installs it: %w", m.Version, running, errdefs.ErrFailedPrecondition)
	}
	return nil
}

// install extracts the bundle, records it pending and switches the links.
func (a *Agent) install(path string, m bundle.Manifest, j jobSpec) (*install.Pending, error) {
	fail := func(err error) (*install.Pending, error) {
		return nil, fmt.Errorf("install %s: %w", m.Version, err)
	}
	if err := a.l.Create(); err != nil {
		return fail(err)
	}
	unlock, err := a.l.Lock()
	if err != nil {
		return fail(err)
	}
	defer unlock()
	s, err := a.l.LoadState()
	if err != nil {
		return fail(err)
	}
	if s.Pending != nil {
		return nil, fmt.Errorf("version %s was installed meanwhile: %w", s.Pending.Version, errdefs.ErrAborted)
	}
	a.l.RemoveLeftovers()
	curDir, err := a.l.ReadLink(install.CurrentLink)
	if err != nil {
		return fail(err)
	}
	curVersion := a.o.Version
	if curDir == "" {
		// The first update: keep the running binaries as a version of
		// their own, so that there is always something to go back to.
		if curDir, err = a.snapshotRunning(); err != nil {
			return fail(fmt.Errorf("keep the running version: %w", err))
		}
	} else {
		curVersion = a.versionOf(curDir)
	}
	prevDir, _ := a.l.ReadLink(install.PreviousLink)
	dir := m.Version
	for n := 2; dir == curDir || dir == prevDir; n++ {
		dir = m.Version + "-" + strconv.Itoa(n) // a forced reinstall beside the running copy
	}
	final := a.l.VersionDir(dir)
	if err := os.RemoveAll(final); err != nil { // an old copy neither link names
		return fail(err)
	}
	tmp := a.l.VersionDir(".extract-" + dir)
	os.RemoveAll(tmp)
	if err := bundle.Extract(path, tmp, m); err != nil {
		return nil, fmt.Errorf("install %s: %w", m.Version, classify(err))
	}
	if _, err := os.Stat(filepath.Join(tmp, install.Binary)); err != nil {
		os.RemoveAll(tmp)
		return nil, fmt.Errorf("install %s: the bundle has no %s: %w", m.Version, install.Binary, errdefs.ErrInvalidArgument)
	}
	if err := os.Rename(tmp, final); err != nil {
		os.RemoveAll(tmp)
		return fail(err)
	}
	if err := atomicfile.SyncDir(a.l.VersionsDir()); err != nil {
		return fail(err)
	}
	a.hit(install.FPExtracted)

	p := &install.Pending{Version: m.Version, Dir: dir, PreviousVersion: curVersion, PreviousDir: curDir,
		JobID: j.id, Source: j.source, StartedAt: j.started}
	s.Pending = p
	if err := a.l.SaveState(s); err != nil {
		return fail(err)
	}
	// pending carries the job on from here.
	if err := a.l.RemoveJob(); err != nil {
		a.log.Warn("forget the job record", "err", err)
	}
	a.hit(install.FPPending)
	if err := a.l.SwitchLink(install.PreviousLink, curDir); err != nil {
		return fail(err)
	}
	if err := a.l.SwitchLink(install.CurrentLink, dir); err != nil {
		return fail(err)
	}
	a.hit(install.FPSwitched)
	p.SwitchedAt = a.o.Now()
	if err := a.l.SaveState(s); err != nil {
		a.log.Warn("record the switch time", "err", err)
	}
	a.log.Info("update installed and switched", "version", m.Version, "dir", dir, "previous", curVersion, "previous_dir", curDir)
	return p, nil
}

// snapshotRunning copies the running ggd (and ggctl, ggd-containerd beside
// it) into versions/<running version> (or versions/base) with a manifest.
func (a *Agent) snapshotRunning() (string, error) {
	dir := a.o.Version
	if !install.ValidDirName(dir) || bundle.ValidVersionName(dir) != nil {
		dir = "base"
	}
	final := a.l.VersionDir(dir)
	if m := manifestVersion(final); m != "" {
		if _, err := bundle.Installed(final); err == nil {
			return dir, nil // an intact copy is there already
		}
	}
	os.RemoveAll(final)
	tmp := a.l.VersionDir(".snapshot-" + dir)
	os.RemoveAll(tmp)
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		return "", err
	}
	m := bundle.Manifest{Format: bundle.Format, Version: a.o.Version, OS: runtime.GOOS, Arch: runtime.GOARCH, Created: a.o.Now().UTC().Truncate(time.Second)}
	if bundle.ValidVersionName(m.Version) != nil {
		m.Version = "base"
	}
	files := map[string]string{install.Binary: a.o.Executable}
	for _, extra := range []string{"ggctl", "ggd-containerd"} {
		p := filepath.Join(filepath.Dir(a.o.Executable), extra)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() {
			files[extra] = p
		}
	}
	for _, name := range []string{install.Binary, "ggctl", "ggd-containerd"} {
		from, ok := files[name]
		if !ok {
			continue
		}
		f, err := copyFile(from, filepath.Join(tmp, name))
		if err != nil {
			os.RemoveAll(tmp)
			return "", err
		}
		f.Path = name
		m.Files = append(m.Files, f)
	}
	b, _ := json.MarshalIndent(m, "", "  ")
	if err := atomicfile.WriteFile(filepath.Join(tmp, install.ManifestFile), append(b, '\n'), 0o644); err != nil {
		os.RemoveAll(tmp)
		return "", err
	}
	if err := os.Rename(tmp, final); err != nil {
		os.RemoveAll(tmp)
		return "", err
	}
	if err := atomicfile.SyncDir(a.l.VersionsDir()); err != nil {
		return "", err
	}
	a.log.Info("running version kept for rollbacks", "dir", dir, "from", a.o.Executable)
	return dir, nil
}

// copyFile copies from to a new file to (0755: programs), fsynced, and
// describes it.
func copyFile(from, to string) (bundle.File, error) {
	in, err := os.Open(from)
	if err != nil {
		return bundle.File{}, err
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o755)
	if err != nil {
		return bundle.File{}, err
	}
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(out, h), in)
	if err == nil {
		err = out.Chmod(0o755)
	}
	if err == nil {
		err = out.Sync()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return bundle.File{}, fmt.Errorf("copy %s: %w", from, err)
	}
	return bundle.File{Size: n, SHA256: hex.EncodeToString(h.Sum(nil)), Mode: 0o755}, nil
}

// manifestVersion is the version in dir/manifest.json ("" when none).
func manifestVersion(dir string) string {
	b, err := os.ReadFile(filepath.Join(dir, install.ManifestFile))
	if err != nil {
		return ""
	}
	var m struct {
		Version string `json:"version"`
	}
	if json.Unmarshal(b, &m) != nil {
		return ""
	}
	return m.Version
}

// parseSource tells a URL from a local path and checks either.
func parseSource(s string) (string, bool, error) {
	if s == "" {
		return "", false, errdefs.InvalidArgument("source", "required: a bundle's path or https:// URL")
	}
	if !strings.Contains(s, "://") {
		if !filepath.IsAbs(s) {
			return "", false, errdefs.InvalidArgument("source", "%q: a local path must be absolute (the ota daemon does not share your directory)", s)
		}
		return filepath.Clean(s), false, nil
	}
	u, err := url.Parse(s)
	if err != nil {
		return "", false, errdefs.InvalidArgument("source", "not a URL: %v", err)
	}
	switch u.Scheme {
	case "https":
		if u.Host == "" {
			return "", false, errdefs.InvalidArgument("source", "%q has no host", shownSource(s))
		}
		return s, true, nil
	case "file":
		if (u.Host != "" && u.Host != "localhost") || !filepath.IsAbs(u.Path) {
			return "", false, errdefs.InvalidArgument("source", "file URLs take an absolute path (file:///path/to/bundle)")
		}
		return filepath.Clean(u.Path), false, nil
	case "http":
		return "", false, errdefs.InvalidArgument("source", "plain http is refused, use https")
	}
	return "", false, errdefs.InvalidArgument("source", "scheme %q is not supported: https://, file:// or a path", u.Scheme)
}

// shownSource drops what may be secret in a URL: user info and the query.
func shownSource(s string) string {
	u, err := url.Parse(s)
	if err != nil || u.Scheme == "" {
		return s
	}
	u.User = nil
	if u.RawQuery != "" {
		u.RawQuery = ""
		return u.String() + "?…"
	}
	return u.String()
}

// classify maps the bundle's errors to domain errors: a signature that
// does not hold is PERMISSION_DENIED, a bundle that is not the signed one
// or cannot run here INVALID_ARGUMENT.
func classify(err error) error {
	if errdefs.Code(err) != codes.Unknown {
		return err
	}
	switch {
	case errors.Is(err, bundle.ErrBadSignature), errors.Is(err, bundle.ErrUnknownKey):
		return fmt.Errorf("%w: %w", err, errdefs.ErrPermissionDenied)
	case errors.Is(err, bundle.ErrHashMismatch), errors.Is(err, bundle.ErrTruncated),
		errors.Is(err, bundle.ErrWrongArch), errors.Is(err, bundle.ErrBadManifest):
		return fmt.Errorf("%w: %w", err, errdefs.ErrInvalidArgument)
	}
	return err
}
