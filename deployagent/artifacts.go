package deployagent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/evergreen-edge/evergreen/deployagent/artifact"
	"github.com/evergreen-edge/evergreen/services/kit/atomicfile"
	"github.com/evergreen-edge/evergreen/services/kit/deployment"
	"github.com/evergreen-edge/evergreen/services/kit/groupdef"
	"github.com/evergreen-edge/evergreen/services/kit/layout"
)

// The artifacts stage fetches what a group names by URL, before any daemon
// sees the group:
//
//   - a function's code with an https:// CodeUri (and CodeSha256): fetched
//     into the artifact cache; the group the daemons get names the cached
//     file (file:///…/artifacts/sha256/<hex>), which the runtime installs
//     like any local .zip;
//   - a model (S3MachineLearningModelResourceData) with an Evergreen
//     source: fetched, then unpacked with its OwnerSetting into
//     DIR/data/deployagent/models/<sha256>-<gid>-<ro|rw>; after the commit,
//     DestinationPath becomes a symbolic link to that tree (switched
//     atomically), and a rollback points it back.
//
// Nothing outside DIR changes before the commit, and a bad artifact fails
// the deployment with nothing left behind (package artifact). The cache
// keeps what the group in force and the previous one reference; the rest
// is collected after each deployment.

// progressEvery spaces a download's progress events.
const progressEvery = time.Second

type artifacts struct {
	fetch  *artifact.Fetcher
	cache  string
	models string
}

func newArtifacts(root layout.Root, opts ...artifact.Option) (*artifacts, error) {
	dir := root.DataDir(Name)
	f, err := artifact.NewFetcher(filepath.Join(dir, "artifacts"), opts...)
	if err != nil {
		return nil, err
	}
	models := filepath.Join(dir, "models")
	if err := os.MkdirAll(models, 0o755); err != nil {
		return nil, err
	}
	return &artifacts{fetch: f, cache: filepath.Join(dir, "artifacts"), models: models}, nil
}

// stage fetches and unpacks what g names by URL and returns the group the
// daemons get. progress gets one line per artifact event.
func (a *artifacts) stage(ctx context.Context, g *groupdef.Group, progress func(string)) (*groupdef.Group, error) {
	if g == nil {
		return nil, nil
	}
	b, err := groupdef.MarshalValid(g)
	if err != nil {
		return nil, err
	}
	out, err := groupdef.Parse(b) // a copy to rewrite
	if err != nil {
		return nil, err
	}
	var last time.Time
	report := func(p artifact.Progress) {
		if progress == nil {
			return
		}
		switch {
		case p.Cached:
			progress(fmt.Sprintf("artifact %s: cached", p.URL))
		case p.Finished:
			progress(fmt.Sprintf("artifact %s: %s fetched", p.URL, sizeText(p.Bytes)))
		case p.ResumedFrom > 0 && p.Bytes == p.ResumedFrom:
			progress(fmt.Sprintf("artifact %s: resuming at %s", p.URL, sizeText(p.ResumedFrom)))
			last = time.Now()
		case time.Since(last) >= progressEvery:
			// "<done> of <total>" is what ggctl deploy draws as a bar.
			if p.Total > 0 {
				progress(fmt.Sprintf("artifact %s: %s of %s", p.URL, sizeText(p.Bytes), sizeText(p.Total)))
			} else {
				progress(fmt.Sprintf("artifact %s: %s so far", p.URL, sizeText(p.Bytes)))
			}
			last = time.Now()
		}
	}
	if out.Functions != nil {
		for i := range out.Functions.Functions {
			f := &out.Functions.Functions[i]
			e := f.Evergreen
			if e == nil || !strings.HasPrefix(e.CodeUri, "https://") {
				continue
			}
			path, err := a.fetch.Fetch(ctx, artifact.Spec{URL: e.CodeUri, SHA256: e.CodeSha256}, report)
			if err != nil {
				return nil, fmt.Errorf("Functions[%d] (%s): CodeUri: %w", i, f.FunctionArn, err)
			}
			e.CodeUri = "file://" + path
		}
	}
	for i, r := range resources(out) {
		d := r.ResourceDataContainer.S3MachineLearningModelResourceData
		if d == nil || d.Evergreen == nil {
			continue
		}
		at := fmt.Sprintf("Resources[%d] (%s)", i, r.Id)
		owner, key, err := modelOwner(d.OwnerSetting)
		if err != nil {
			return nil, fmt.Errorf("%s: OwnerSetting: %w", at, err)
		}
		if err := checkModelDestination(d.DestinationPath, a.models); err != nil {
			return nil, fmt.Errorf("%s: %w", at, err)
		}
		path, err := a.fetch.Fetch(ctx, artifact.Spec{URL: d.Evergreen.Url, SHA256: d.Evergreen.Sha256, Size: int64(d.Evergreen.Size)}, report)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", at, err)
		}
		tree := filepath.Join(a.models, d.Evergreen.Sha256+"-"+key)
		if _, err := os.Stat(tree); err == nil {
			continue
		}
		if err := artifact.Unpack(ctx, path, tree, artifact.UnpackOptions{Owner: owner}); err != nil {
			return nil, fmt.Errorf("%s: %w", at, err)
		}
		if progress != nil {
			progress(fmt.Sprintf("model %s unpacked for %s", r.Id, d.DestinationPath))
		}
	}
	return out, nil
}

// switchModels points the DestinationPath of every model g names to its
// unpacked tree, and removes the links of models in old that g does not
// have (only links into our models directory are ever touched).
func (a *artifacts) switchModels(g, old *groupdef.Group) error {
	want := map[string]string{}
	for _, r := range resources(g) {
		d := r.ResourceDataContainer.S3MachineLearningModelResourceData
		if d == nil || d.Evergreen == nil {
			continue
		}
		_, key, err := modelOwner(d.OwnerSetting)
		if err != nil {
			return err
		}
		want[d.DestinationPath] = filepath.Join(a.models, d.Evergreen.Sha256+"-"+key)
	}
	var errs []error
	for dest, tree := range want {
		if err := a.link(dest, tree); err != nil {
			errs = append(errs, err)
		}
	}
	for _, r := range resources(old) {
		d := r.ResourceDataContainer.S3MachineLearningModelResourceData
		if d == nil || d.Evergreen == nil || want[d.DestinationPath] != "" {
			continue
		}
		if target, err := os.Readlink(d.DestinationPath); err == nil && filepath.Dir(target) == a.models {
			err := os.Remove(d.DestinationPath)
			if err == nil {
				err = atomicfile.SyncDir(filepath.Dir(d.DestinationPath))
			}
			if err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// link makes dest a symbolic link to tree, replacing our own earlier link
// in one rename.
func (a *artifacts) link(dest, tree string) error {
	if err := checkModelDestination(dest, a.models); err != nil {
		return err
	}
	if target, err := os.Readlink(dest); err == nil && target == tree {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(dest), 0o755); err != nil {
		return fmt.Errorf("model DestinationPath %s: %w", dest, err)
	}
	tmp := filepath.Join(filepath.Dir(dest), "."+filepath.Base(dest)+".evergreen-link")
	os.Remove(tmp)
	if err := os.Symlink(tree, tmp); err != nil {
		return fmt.Errorf("model DestinationPath %s: %w", dest, err)
	}
	if err := os.Rename(tmp, dest); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("model DestinationPath %s: %w", dest, err)
	}
	// The rename is the switch: durable before the deployment goes on.
	if err := atomicfile.SyncDir(filepath.Dir(dest)); err != nil {
		return fmt.Errorf("model DestinationPath %s: sync %s: %w", dest, filepath.Dir(dest), err)
	}
	return nil
}

// keep lists the cached artifacts and model trees the groups reference.
func (a *artifacts) keep(groups ...*groupdef.Group) (map[string]bool, map[string]bool) {
	shas, trees := map[string]bool{}, map[string]bool{}
	for _, g := range groups {
		if g == nil {
			continue
		}
		if g.Functions != nil {
			for _, f := range g.Functions.Functions {
				if e := f.Evergreen; e != nil && e.CodeSha256 != "" {
					shas[e.CodeSha256] = true
				}
			}
		}
		for _, r := range resources(g) {
			if d := r.ResourceDataContainer.S3MachineLearningModelResourceData; d != nil && d.Evergreen != nil {
				shas[d.Evergreen.Sha256] = true
				if _, key, err := modelOwner(d.OwnerSetting); err == nil {
					trees[d.Evergreen.Sha256+"-"+key] = true
				}
			}
		}
	}
	return shas, trees
}

// collect removes cached artifacts and model trees no group in groups
// references; it returns what it removed.
func (a *artifacts) collect(groups ...*groupdef.Group) ([]string, error) {
	shas, trees := a.keep(groups...)
	removed, err := a.fetch.GC(shas)
	entries, rerr := os.ReadDir(a.models)
	for _, e := range entries {
		if !trees[e.Name()] && !strings.HasPrefix(e.Name(), ".") {
			p := filepath.Join(a.models, e.Name())
			if os.RemoveAll(p) == nil {
				removed = append(removed, p)
			}
		}
	}
	return removed, errors.Join(err, rerr)
}

func resources(g *groupdef.Group) []groupdef.Resource {
	if g == nil || g.Resources == nil {
		return nil
	}
	return g.Resources.Resources
}

// modelOwner maps a model's OwnerSetting to the unpack owner and the key
// of its tree.
func modelOwner(o *groupdef.ResourceDownloadOwnerSetting) (*artifact.Owner, string, error) {
	if o == nil || o.GroupOwner == "" {
		return nil, "default", nil
	}
	gid, err := artifact.LookupGroup(o.GroupOwner)
	if err != nil {
		return nil, "", err
	}
	perm := artifact.ReadOnly
	if o.GroupPermission == "rw" {
		perm = artifact.ReadWrite
	}
	return &artifact.Owner{GID: gid, Permission: perm}, fmt.Sprintf("%d-%s", gid, perm), nil
}

// checkModelDestination refuses a DestinationPath that holds something
// this core did not put there: a model never overwrites a user's files.
func checkModelDestination(dest, models string) error {
	st, err := os.Lstat(dest)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return nil
	case err != nil:
		return fmt.Errorf("model DestinationPath %s: %w", dest, err)
	case st.Mode()&os.ModeSymlink != 0:
		if target, err := os.Readlink(dest); err == nil && filepath.Dir(target) == models {
			return nil
		}
	}
	return fmt.Errorf("model DestinationPath %s exists and is not a model link of this core; remove it or choose another path", dest)
}

func sizeText(n int64) string {
	switch {
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

// Record-level hooks of the state machine (Config.Artifacts, Switch,
// Finished).

// stageRecord is the artifacts stage: next.Group becomes the group the
// daemons get.
func (a *artifacts) stageRecord(ctx context.Context, _ string, next *deployment.Record, progress func(string)) error {
	if !fetches(next) {
		return nil // a group at v1's limits parses in ~60 MB of garbage: skip it when nothing is fetched
	}
	g, err := next.Decode()
	if err != nil || g == nil {
		return err
	}
	staged, err := a.stage(ctx, g, progress)
	if err != nil {
		return err
	}
	b, err := groupdef.Marshal(staged)
	if err != nil {
		return err
	}
	next.Group = b
	return nil
}

func (a *artifacts) switchRecords(next, prev *deployment.Record) error {
	if !hasModels(next) && !hasModels(prev) {
		return nil
	}
	gn, err := next.Decode()
	if err != nil {
		return err
	}
	gp, _ := prev.Decode() // a previous group that no longer parses has no links to remove
	return a.switchModels(gn, gp)
}

func (a *artifacts) collectRecords(log *slog.Logger) func(current, previous *deployment.Record) {
	return func(current, previous *deployment.Record) {
		if a.empty() {
			return
		}
		gc, _ := current.Decode()
		gp, _ := previous.Decode()
		removed, err := a.collect(gc, gp)
		if len(removed) > 0 {
			log.Info("unused artifacts removed", "count", len(removed))
		}
		if err != nil {
			log.Warn("artifact collection", "err", err)
		}
	}
}

// fetches reports whether r's group may name something to fetch (a cheap
// look at the bytes before parsing).
func fetches(r *deployment.Record) bool {
	return r.HasGroup() && (bytes.Contains(r.Group, []byte(`"https://`)) || hasModels(r))
}

func hasModels(r *deployment.Record) bool {
	return r.HasGroup() && bytes.Contains(r.Group, []byte(`"S3MachineLearningModelResourceData"`))
}

// empty reports whether nothing is cached: nothing to collect.
func (a *artifacts) empty() bool {
	for _, dir := range []string{filepath.Join(a.cache, "sha256"), filepath.Join(a.cache, "partial"), a.models} {
		if es, err := os.ReadDir(dir); err == nil && len(es) > 0 {
			return false
		}
	}
	return true
}
