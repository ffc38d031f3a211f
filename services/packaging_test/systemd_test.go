package packaging_test

import (
	"bufio"
	"context"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"
)

const installedGGD = "/usr/local/bin/ggd"

// unitFile is a parsed systemd unit: section -> key -> values in order.
type unitFile map[string]map[string][]string

func parseUnit(t *testing.T, path string) unitFile {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	u := unitFile{}
	section := ""
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";"):
		case strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]"):
			section = line[1 : len(line)-1]
			if u[section] == nil {
				u[section] = map[string][]string{}
			}
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok || section == "" {
				t.Fatalf("%s:%d: not a key=value line inside a section: %q", path, n, line)
			}
			u[section][strings.TrimSpace(k)] = append(u[section][strings.TrimSpace(k)], strings.TrimSpace(v))
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return u
}

// get is the last value of key (systemd's rule for single-valued keys).
func (u unitFile) get(section, key string) string {
	vs := u[section][key]
	if len(vs) == 0 {
		return ""
	}
	return vs[len(vs)-1]
}

// list is every space-separated word of a list-valued key (Wants=, After=).
func (u unitFile) list(section, key string) []string {
	var out []string
	for _, v := range u[section][key] {
		out = append(out, strings.Fields(v)...)
	}
	return out
}

func unitName(daemon string) string { return "evergreen-" + daemon + ".service" }

// TestSystemdUnitsMirrorSupervisor checks, without systemd, that every
// daemon of the suite has a unit that runs it the way the supervisor would,
// in the same order, that evergreen.target pulls each one in, and that the
// supervisor's own unit (evergreen.service) excludes them.
func TestSystemdUnitsMirrorSupervisor(t *testing.T) {
	dir := filepath.Join(repoRoot(t), "deploy", "systemd")
	target := parseUnit(t, filepath.Join(dir, "evergreen.target"))
	wants := target.list("Unit", "Wants")
	ds := daemons(t)
	known := map[string]bool{}
	for _, d := range ds {
		known[unitName(d.Name)] = true
		t.Run(d.Name, func(t *testing.T) {
			path := filepath.Join(dir, unitName(d.Name))
			if _, err := os.Stat(path); err != nil {
				t.Fatalf("daemon %q has no systemd unit: %v", d.Name, err)
			}
			u := parseUnit(t, path)
			for _, c := range []struct{ section, key, want string }{
				{"Service", "Type", "notify"},
				{"Service", "NotifyAccess", "main"},
				{"Service", "ExecStart", installedGGD + " " + d.Name + " --root /var/lib/evergreen"},
				{"Service", "Restart", "always"},
				{"Unit", "PartOf", "evergreen.target"},
				{"Install", "WantedBy", "evergreen.target"},
			} {
				if got := u.get(c.section, c.key); got != c.want {
					t.Errorf("%s: [%s] %s=%q, want %q", unitName(d.Name), c.section, c.key, got, c.want)
				}
			}
			if !contains(u.list("Unit", "Conflicts"), "evergreen.service") {
				t.Errorf("%s: no Conflicts=evergreen.service (never run a daemon beside the supervisor on one root)", unitName(d.Name))
			}
			if !contains(u.list("Unit", "After"), "evergreen.service") {
				t.Errorf("%s: no After=evergreen.service (a switch from the supervisor must stop it before the daemon starts)", unitName(d.Name))
			}
			if u.get("Service", "TimeoutStopSec") == "" {
				t.Errorf("%s: no TimeoutStopSec", unitName(d.Name))
			}
			after, want := u.list("Unit", "After"), u.list("Unit", "Wants")
			for _, dep := range d.after() {
				if !contains(after, unitName(dep)) {
					t.Errorf("%s: After= lacks %s (the supervisor starts %s after %s)", unitName(d.Name), unitName(dep), d.Name, dep)
				}
				if !contains(want, unitName(dep)) && !contains(u.list("Unit", "Requires"), unitName(dep)) && !contains(u.list("Unit", "BindsTo"), unitName(dep)) {
					t.Errorf("%s: neither Wants=, Requires= nor BindsTo= pulls in %s", unitName(d.Name), unitName(dep))
				}
			}
			if !contains(wants, unitName(d.Name)) {
				t.Errorf("evergreen.target: Wants= lacks %s", unitName(d.Name))
			}
		})
	}
	if !contains(target.list("Unit", "Conflicts"), "evergreen.service") {
		t.Errorf("evergreen.target: no Conflicts=evergreen.service")
	}

	// The supervisor's unit, the other way to run the suite.
	sup := parseUnit(t, filepath.Join(dir, "evergreen.service"))
	for _, c := range []struct{ section, key, want string }{
		{"Service", "Type", "notify"},
		{"Service", "NotifyAccess", "main"},
		{"Service", "ExecStart", installedGGD + " --root /var/lib/evergreen"},
		{"Service", "KillMode", "mixed"},
		{"Service", "Restart", "always"},
	} {
		if got := sup.get(c.section, c.key); got != c.want {
			t.Errorf("evergreen.service: [%s] %s=%q, want %q", c.section, c.key, got, c.want)
		}
	}
	if !contains(sup.list("Unit", "Conflicts"), "evergreen.target") {
		t.Errorf("evergreen.service: no Conflicts=evergreen.target")
	}

	// No stale unit for a daemon that no longer exists.
	files, err := filepath.Glob(filepath.Join(dir, "evergreen-*.service"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if !known[filepath.Base(f)] {
			t.Errorf("%s is not a daemon of the suite (services/suite lists %d)", filepath.Base(f), len(ds))
		}
	}
	for _, w := range wants {
		if strings.HasPrefix(w, "evergreen-") && !known[w] {
			t.Errorf("evergreen.target wants %s, which is not a daemon of the suite", w)
		}
	}
}

// copyUnits copies deploy/systemd's units to a temporary directory with
// ExecStart pointing at the built binary, so that verify finds an
// executable without installing anything.
func copyUnits(t *testing.T, ggd string) (string, []string) {
	t.Helper()
	src := filepath.Join(repoRoot(t), "deploy", "systemd")
	dst := t.TempDir()
	var units []string
	for _, pat := range []string{"*.target", "*.service"} {
		files, err := filepath.Glob(filepath.Join(src, pat))
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			exe := ggd
			if strings.ContainsAny(exe, " \t") {
				exe = `"` + exe + `"`
			}
			b = []byte(strings.ReplaceAll(string(b), installedGGD, exe))
			p := filepath.Join(dst, filepath.Base(f))
			if err := os.WriteFile(p, b, 0o644); err != nil {
				t.Fatal(err)
			}
			units = append(units, p)
		}
	}
	sort.Strings(units)
	if len(units) < 2 {
		t.Fatalf("no units in %s", src)
	}
	return dst, units
}

// verifyUnits runs systemd-analyze verify on units and returns what it found
// wrong with them. verify exits 0 on many problems it only warns about
// ("Unknown key ..., ignoring"), so any line naming one of our units or the
// directory counts; other lines (about the host's own units) are logged.
func verifyUnits(t *testing.T, dir string, units []string) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	args := append([]string{"verify", "--man=no"}, units...)
	out, err := run(ctx, dir, []string{"SYSTEMD_LOG_COLOR=0", "SYSTEMD_PAGER=cat"}, "systemd-analyze", args...)
	var problems []string
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if line == "" {
			continue
		}
		if strings.Contains(line, "evergreen") || strings.Contains(line, dir) {
			problems = append(problems, line)
		} else {
			t.Logf("systemd-analyze (not about our units): %s", line)
		}
	}
	if err != nil {
		problems = append(problems, "systemd-analyze verify: "+err.Error())
	}
	return problems
}

// TestSystemdUnitsVerify runs systemd-analyze verify on the shipped units
// (no running systemd is needed), and proves the check catches a broken
// unit.
func TestSystemdUnitsVerify(t *testing.T) {
	requireTool(t, "systemd-analyze")
	ggd := ggdPath(t)

	dir, units := copyUnits(t, ggd)
	if problems := verifyUnits(t, dir, units); len(problems) > 0 {
		t.Fatalf("systemd-analyze verify rejects deploy/systemd:\n%s", strings.Join(problems, "\n"))
	}

	// The same check must fail on broken copies.
	for _, c := range []struct{ name, old, new string }{
		{"bad Type", "Type=notify", "Type=bogus"},
		{"unknown key", "Restart=always", "Restart=always\nRestartt=always"},
		{"missing binary", ggd, filepath.Join(t.TempDir(), "no-such-ggd")},
	} {
		t.Run("broken/"+c.name, func(t *testing.T) {
			dir, units := copyUnits(t, ggd)
			victim := filepath.Join(dir, unitName(daemons(t)[1].Name))
			b, err := os.ReadFile(victim)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(string(b), c.old) {
				t.Fatalf("%s has no %q to break", victim, c.old)
			}
			if err := os.WriteFile(victim, []byte(strings.Replace(string(b), c.old, c.new, 1)), 0o644); err != nil {
				t.Fatal(err)
			}
			problems := verifyUnits(t, dir, units)
			if len(problems) == 0 {
				t.Fatalf("systemd-analyze verify accepted a unit with %s", c.name)
			}
			t.Logf("caught: %s", strings.Join(problems, " | "))
		})
	}
}
