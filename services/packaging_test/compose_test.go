package packaging_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"
)

const composeRoot = "/var/lib/evergreen"

// flattenYAML reads the block-style YAML that `docker-compose config` prints
// into path -> values ("services/bus/command" -> ["bus", "--root", ...]).
// It understands exactly what that normalised output uses: nested mappings
// and lists of scalars.
func flattenYAML(s string) map[string][]string {
	type level struct {
		indent int
		key    string
	}
	var stack []level
	path := func() string {
		keys := make([]string, len(stack))
		for i, l := range stack {
			keys[i] = l.key
		}
		return strings.Join(keys, "/")
	}
	unquote := func(v string) string {
		v = strings.TrimSpace(v)
		if len(v) >= 2 && (v[0] == '\'' && v[len(v)-1] == '\'' || v[0] == '"' && v[len(v)-1] == '"') {
			return v[1 : len(v)-1]
		}
		return v
	}
	m := map[string][]string{}
	for _, line := range strings.Split(s, "\n") {
		trimmed := strings.TrimLeft(line, " ")
		if trimmed == "" || strings.HasPrefix(trimmed, "#") {
			continue
		}
		indent := len(line) - len(trimmed)
		if item, ok := strings.CutPrefix(trimmed, "- "); ok {
			for len(stack) > 0 && stack[len(stack)-1].indent > indent {
				stack = stack[:len(stack)-1]
			}
			m[path()] = append(m[path()], unquote(item))
			continue
		}
		k, v, _ := strings.Cut(trimmed, ":")
		for len(stack) > 0 && stack[len(stack)-1].indent >= indent {
			stack = stack[:len(stack)-1]
		}
		stack = append(stack, level{indent, unquote(k)})
		if v = unquote(v); v != "" {
			m[path()] = []string{v}
		}
	}
	return m
}

// composeConfig is docker-compose.yml as docker-compose resolves it, with
// env set in its environment.
func composeConfig(t *testing.T, env []string) map[string][]string {
	t.Helper()
	root := repoRoot(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := run(ctx, root, env, "docker-compose", "-f", filepath.Join(root, "docker-compose.yml"), "config")
	if err != nil {
		t.Fatalf("docker-compose config: %v\n%s", err, out)
	}
	return flattenYAML(out)
}

// TestComposeMirrorsSupervisor checks that docker-compose.yml runs every
// daemon of the suite once, the way the supervisor would, in its order.
func TestComposeMirrorsSupervisor(t *testing.T) {
	requireTool(t, "docker-compose")
	cfg := composeConfig(t, []string{"EVERGREEN_IMAGE=", "EVERGREEN_HEALTH_INTERVAL="})

	var services []string
	for k := range cfg {
		if parts := strings.Split(k, "/"); len(parts) >= 2 && parts[0] == "services" && !contains(services, parts[1]) {
			services = append(services, parts[1])
		}
	}
	var names []string
	for _, d := range daemons(t) {
		names = append(names, d.Name)
	}
	sort.Strings(services)
	sort.Strings(names)
	if !reflect.DeepEqual(services, names) {
		t.Fatalf("docker-compose.yml services %v, want one per daemon %v", services, names)
	}

	for _, d := range daemons(t) {
		svc := "services/" + d.Name + "/"
		want := map[string][]string{
			"image":            {"evergreen:dev"},
			"command":          {d.Name, "--root", composeRoot},
			"healthcheck/test": {"CMD", "/ggd", "health", "--root", composeRoot, d.Name},
			"restart":          {"unless-stopped"},
		}
		if d.Name != "bus" {
			want["environment/EVERGREEN_BUS_URL"] = []string{"nats://bus:4222"}
		}
		for _, dep := range d.after() {
			want["depends_on/"+dep+"/condition"] = []string{"service_healthy"}
		}
		for k, v := range want {
			if got := cfg[svc+k]; !reflect.DeepEqual(got, v) {
				t.Errorf("docker-compose.yml %s%s = %q, want %q", svc, k, got, v)
			}
		}
		var vols []string
		for _, v := range cfg[svc+"volumes"] {
			vols = append(vols, strings.SplitN(v, ":", 2)[1])
		}
		if !contains(vols, composeRoot+":rw") && !contains(vols, composeRoot) {
			t.Errorf("docker-compose.yml %s: the shared root volume is not mounted at %s (volumes %q)", d.Name, composeRoot, cfg[svc+"volumes"])
		}
	}
}

// TestComposeStackHealthy builds the image from the repository root, brings
// docker-compose.yml up as a uniquely named project on the real engine, and
// waits until every service is healthy. The stack, its volume and the image
// are removed whatever happens.
func TestComposeStackHealthy(t *testing.T) {
	if testing.Short() {
		t.Skip("brings a Docker stack up; not in -short")
	}
	requireDocker(t)
	root := repoRoot(t)
	// The Dockerfile copies bin/ggd from the build context, the repository root.
	ggd := filepath.Join(root, "bin", "ggd")
	if _, err := os.Stat(ggd); err != nil {
		skipOrFail(t, "%s is not built (run `make build`; the image copies bin/ggd from the repository root)", ggd)
	}
	requireStatic(t, ggd)

	id := randomSuffix(t)
	project := "evergreen-test-" + id
	image := "evergreen:test-" + id
	env := []string{"EVERGREEN_IMAGE=" + image, "EVERGREEN_HEALTH_INTERVAL=1s", "COMPOSE_INTERACTIVE_NO_CLI=1"}

	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if out, err := run(ctx, root, nil, "docker", "build", "-f", filepath.Join("deploy", "docker", "Dockerfile"), "-t", image, "."); err != nil {
		t.Fatalf("docker build: %v\n%s", err, out)
	}
	t.Logf("image %s built in %v", image, time.Since(start).Round(time.Millisecond))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if out, err := run(ctx, root, nil, "docker", "image", "rm", "-f", image); err != nil {
			t.Logf("docker image rm %s: %v\n%s", image, err, out)
		}
	})

	compose := func(ctx context.Context, args ...string) (string, error) {
		return run(ctx, root, env, "docker-compose", append([]string{"-p", project, "-f", filepath.Join(root, "docker-compose.yml")}, args...)...)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if t.Failed() {
			out, _ := compose(ctx, "ps")
			t.Logf("docker-compose ps:\n%s", out)
			out, _ = compose(ctx, "logs", "--no-color", "--timestamps")
			t.Logf("docker-compose logs:\n%s", out)
		}
		if out, err := compose(ctx, "down", "--volumes", "--remove-orphans", "--timeout", "20"); err != nil {
			t.Errorf("docker-compose down: %v\n%s", err, out)
		}
	})

	start = time.Now()
	if out, err := compose(ctx, "up", "-d", "--no-build"); err != nil {
		t.Fatalf("docker-compose up: %v\n%s", err, out)
	}
	var status map[string]serviceState
	deadline := time.Now().Add(60 * time.Second)
	for {
		var err error
		status, err = composeStatus(ctx, compose)
		if err == nil && allHealthy(t, status) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not every service healthy within 60 s (error: %v): %s", err, describe(status))
		}
		time.Sleep(500 * time.Millisecond)
	}
	t.Logf("all %d services healthy %v after up: %s", len(status), time.Since(start).Round(time.Millisecond), describe(status))
	probeComposeBus(t, compose, project)

	// A crashed daemon is restarted by the engine (restart: unless-stopped)
	// and the others ride through. `docker kill` would count as a manual
	// stop, so the bus's process is killed from the host.
	before, err := composeStatus(ctx, compose)
	if err != nil {
		t.Fatal(err)
	}
	pid := before["bus"].Pid
	if pid <= 0 { // never kill(0) or kill(-1)
		t.Fatalf("the bus container has no process: %s", describe(before))
	}
	// Only a process of this host that is the container's `/ggd bus` (the
	// pid of a remote engine's container means nothing here).
	if cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid)); err != nil || !strings.HasPrefix(string(cmdline), "/ggd\x00bus\x00") {
		t.Logf("crash check skipped: pid %d is not the bus container's process on this host (a remote engine?): %q %v", pid, cmdline, err)
		return
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Logf("crash check skipped: cannot kill the bus's process %d from here (a remote engine?): %v", pid, err)
		return
	}
	deadline = time.Now().Add(60 * time.Second)
	for {
		status, err = composeStatus(ctx, compose)
		if err == nil && status["bus"].Restarts > before["bus"].Restarts && allHealthy(t, status) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the bus was killed, not every service healthy again within 60 s (error: %v): %s", err, describe(status))
		}
		time.Sleep(500 * time.Millisecond)
	}
	for _, d := range daemons(t)[1:] {
		if status[d.Name].Restarts != before[d.Name].Restarts || status[d.Name].Pid != before[d.Name].Pid {
			t.Errorf("%s was restarted when the bus crashed: %s", d.Name, describe(status))
		}
	}
	t.Logf("the bus was killed, restarted by the engine, every service healthy again")
}

type serviceState struct {
	State    string // running, restarting, exited, ...
	Health   string // starting, healthy, unhealthy, or none
	Restarts int
	Pid      int
	Last     string // output of the last health check
}

// composeStatus reads the state of the project's containers, by service.
func composeStatus(ctx context.Context, compose func(context.Context, ...string) (string, error)) (map[string]serviceState, error) {
	out, err := compose(ctx, "ps", "-q")
	if err != nil {
		return nil, fmt.Errorf("docker-compose ps: %v: %s", err, out)
	}
	ids := strings.Fields(out)
	if len(ids) == 0 {
		return nil, fmt.Errorf("no containers yet")
	}
	ictx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	out, err = run(ictx, "", nil, "docker", append([]string{"inspect"}, ids...)...)
	if err != nil {
		return nil, fmt.Errorf("docker inspect: %v: %s", err, out)
	}
	var cs []struct {
		RestartCount int
		Config       struct{ Labels map[string]string }
		State        struct {
			Status string
			Pid    int
			Health *struct {
				Status string
				Log    []struct{ Output string }
			}
		}
	}
	if err := json.Unmarshal([]byte(out), &cs); err != nil {
		return nil, fmt.Errorf("docker inspect: %v", err)
	}
	st := map[string]serviceState{}
	for _, c := range cs {
		s := serviceState{State: c.State.Status, Health: "none", Restarts: c.RestartCount, Pid: c.State.Pid}
		if h := c.State.Health; h != nil {
			s.Health = h.Status
			if len(h.Log) > 0 {
				s.Last = strings.TrimSpace(h.Log[len(h.Log)-1].Output)
			}
		}
		st[c.Config.Labels["com.docker.compose.service"]] = s
	}
	return st, nil
}

// allHealthy is true when every daemon has a healthy container. A service
// without a healthcheck fails the test at once.
func allHealthy(t *testing.T, st map[string]serviceState) bool {
	t.Helper()
	ok := true
	for _, d := range daemons(t) {
		s, found := st[d.Name]
		if found && s.Health == "none" {
			t.Fatalf("service %s has no healthcheck", d.Name)
		}
		if !found || s.Health != "healthy" {
			ok = false
		}
	}
	return ok
}

func describe(st map[string]serviceState) string {
	var names []string
	for n := range st {
		names = append(names, n)
	}
	sort.Strings(names)
	var b strings.Builder
	for _, n := range names {
		s := st[n]
		fmt.Fprintf(&b, "\n  %s: %s, health %s, restarts %d", n, s.State, s.Health, s.Restarts)
		if s.Health != "healthy" && s.Last != "" {
			fmt.Fprintf(&b, ", last check: %q", s.Last)
		}
	}
	return b.String()
}

// TestComposeConfigIsDefault keeps deploy/compose/config.json complete: it
// must be the embedded default configuration (services/kit/config) with
// only the bus moved onto the stack's network.
func TestComposeConfigIsDefault(t *testing.T) {
	root := repoRoot(t)
	load := func(path string) map[string]any {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		return m
	}
	def := load(filepath.Join(root, "services", "kit", "config", "default.json"))
	got := load(filepath.Join(root, "deploy", "compose", "config.json"))
	listenOf := func(m map[string]any) map[string]any {
		eg, _ := m["evergreen"].(map[string]any)
		l, _ := eg["listen"].(map[string]any)
		return l
	}
	listen := listenOf(got)
	if listen == nil || listen["bus"] != "0.0.0.0:4222" {
		t.Fatalf("deploy/compose/config.json: evergreen.listen.bus must be \"0.0.0.0:4222\" (the other containers reach the bus over the stack's network)")
	}
	if listenOf(def) == nil {
		t.Fatalf("services/kit/config/default.json has no evergreen.listen block")
	}
	listen["bus"] = listenOf(def)["bus"]
	if !reflect.DeepEqual(got, def) {
		a, _ := json.MarshalIndent(got, "", "  ")
		b, _ := json.MarshalIndent(def, "", "  ")
		t.Fatalf("deploy/compose/config.json differs from services/kit/config/default.json in more than evergreen.listen.bus; regenerate it:\n"+
			"  sed 's/\"bus\": \"127.0.0.1:4222\"/\"bus\": \"0.0.0.0:4222\"/' services/kit/config/default.json > deploy/compose/config.json\n"+
			"compose (bus reset):\n%s\ndefault:\n%s", a, b)
	}
}
