package cli

import (
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// Every usage mistake exits 2 with one line on stderr, before any daemon is
// contacted (the root here has no sockets at all).
func TestUsageErrorsExit2(t *testing.T) {
	root := t.TempDir()
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no command", nil, "no command given"},
		{"unknown command", []string{"frobnicate"}, `unknown command "frobnicate"`},
		{"device without subcommand", []string{"device"}, "device needs a subcommand"},
		{"unknown device subcommand", []string{"device", "rename"}, `"device rename"`},
		{"device create without name", []string{"device", "create"}, "missing argument"},
		{"device create two names", []string{"device", "create", "a", "b"}, `unexpected argument "b"`},
		{"device create path-like name", []string{"device", "create", "../evil"}, "invalid device name"},
		{"device register without --cert", []string{"device", "register", "d1"}, "--cert FILE is required"},
		{"device register missing file", []string{"device", "register", "d1", "--cert", filepath.Join(root, "nope.pem")}, "no such file"},
		{"device remove without name", []string{"device", "remove"}, "missing argument"},
		{"deploy without file", []string{"deploy"}, "missing argument"},
		{"deploy file and reset", []string{"deploy", "--reset", "group.json"}, "not both"},
		{"deploy missing file", []string{"deploy", filepath.Join(root, "nope.json")}, "no such file"},
		{"deployments show two ids", []string{"deployments", "show", "a", "b"}, "unexpected argument"},
		{"logs without daemon", []string{"logs"}, "missing argument"},
		{"logs bad -n", []string{"logs", "certmgr", "-n", "0"}, "-n must be at least 1"},
		{"logs -n not a number", []string{"logs", "certmgr", "-n", "ten"}, "invalid value"},
		{"restart without daemon", []string{"restart"}, "missing argument"},
		{"status extra argument", []string{"status", "now"}, `unexpected argument "now"`},
		{"unknown flag", []string{"status", "--colour"}, "flag provided but not defined: -colour"},
		{"unknown global flag", []string{"--colour", "status"}, "flag provided but not defined"},
		{"bad timeout", []string{"--timeout", "soon", "status"}, "invalid value"},
		{"zero timeout", []string{"--timeout", "0s", "status"}, "--timeout must be positive"},
		{"help for unknown command", []string{"help", "frobnicate"}, "unknown command"},
		{"pub without arguments", []string{"pub"}, "missing argument"},
		{"pub without payload", []string{"pub", "a/b"}, "missing argument: usage: ggctl pub TOPIC PAYLOAD (or --file F; - reads standard input)"},
		{"pub payload and --file", []string{"pub", "a/b", "x", "--file", "p.bin"}, "give PAYLOAD or --file F, not both"},
		{"pub three arguments", []string{"pub", "a/b", "x", "y"}, `unexpected argument "y"`},
		{"pub wildcard topic", []string{"pub", "a/+/b", "x"}, "pub: topic contains wildcard '+' at byte 2"},
		{"pub empty topic", []string{"pub", "", "x"}, "pub: topic is empty"},
		{"pub topic with 8 slashes", []string{"pub", "a/b/c/d/e/f/g/h/i", "x"}, "topic has 8 slashes, the limit is 7"},
		{"pub long topic", []string{"pub", strings.Repeat("t", 257), "x"}, "topic is 257 bytes, the limit is 256"},
		{"pub unknown source", []string{"pub", "a/b", "x", "--as", "lambda"}, `pub: --as: "lambda" is not a source; want cloud, GGShadowService`},
		{"pub bad device name", []string{"pub", "a/b", "x", "--as", "device:a b"}, "may only contain letters"},
		{"pub bad qos", []string{"pub", "a/b", "x", "--qos", "2"}, "--qos must be 0 or 1, got 2"},
		{"pub missing file", []string{"pub", "a/b", "--file", filepath.Join(root, "nope.bin")}, "no such file"},
		{"sub without filter", []string{"sub"}, "missing argument: usage: ggctl sub FILTER [-n COUNT]"},
		{"sub bad filter", []string{"sub", "a/#/b"}, "sub: filter level 2 is '#', which is only allowed as the last level"},
		{"sub partial wildcard", []string{"sub", "a/b+"}, "'+' must occupy a whole level"},
		{"sub negative count", []string{"sub", "#", "-n", "-1"}, "-n must not be negative"},
		{"subscriptions extra argument", []string{"subscriptions", "all"}, `unexpected argument "all"`},
		{"clients extra argument", []string{"clients", "sensor-1"}, `unexpected argument "sensor-1"`},
		{"cloud extra argument", []string{"cloud", "status"}, `unexpected argument "status"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := runGgctl(t.Context(), append([]string{"--root", root}, tc.args...)...)
			wantExit(t, r, ExitUsage)
			wantOneErrorLine(t, r, tc.want)
			if r.stdout != "" {
				t.Fatalf("usage error wrote to stdout: %s", r)
			}
		})
	}
}

func TestHelpDocumentsCommandsAndExitCodes(t *testing.T) {
	for _, args := range [][]string{{"help"}, {"--help"}, {"-h"}} {
		r := runGgctl(t.Context(), args...)
		wantExit(t, r, ExitOK)
		for _, want := range []string{
			"status", "device create NAME", "device register NAME --cert FILE", "device list", "device remove NAME",
			"deploy FILE", "deploy --reset", "deployments", "logs DAEMON [-f] [-n N]", "restart DAEMON", "version",
			"pub TOPIC PAYLOAD [--as SOURCE]", "sub FILTER [-n COUNT]", "subscriptions", "clients", "cloud",
			"no subscription matches: nothing delivered",
			"--root DIR", "--json", "--timeout",
			"0  ok", "1  the operation failed", "2  usage error or invalid input", "3  daemon unreachable", "4  not found",
		} {
			if !strings.Contains(r.stdout, want) {
				t.Fatalf("%v: help lacks %q:\n%s", args, want, r.stdout)
			}
		}
	}
}

func TestCommandHelpListsItsFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"help", "device", "create"}, []string{"Usage: ggctl device create NAME", "--out DIR", "--force\n"}},
		{[]string{"device", "create", "-h"}, []string{"Usage: ggctl device create NAME", "--out"}},
		{[]string{"logs", "--help"}, []string{"Usage: ggctl logs DAEMON", "--f", "--n N"}},
		{[]string{"help", "deploy"}, []string{"--reset", "--id"}},
		{[]string{"help", "pub"}, []string{"Usage: ggctl pub TOPIC PAYLOAD [--as SOURCE] [--qos 0|1] [--file F]", "--as SOURCE", "--qos 0|1", "--file F",
			"device:NAME", "function:ARN", "connector:ARN", "(default cloud)", "PAYLOAD - (or --file -)", "no subscription matches: nothing delivered"}},
		{[]string{"sub", "-h"}, []string{"Usage: ggctl sub FILTER [-n COUNT]", "--n COUNT", "TIME SOURCE -> TARGETS TOPIC PAYLOAD", "<N bytes>", "Ctrl-C"}},
		{[]string{"help", "cloud"}, []string{"Usage: ggctl cloud\n"}},
	} {
		r := runGgctl(t.Context(), tc.args...)
		wantExit(t, r, ExitOK)
		for _, w := range tc.want {
			if !strings.Contains(r.stdout, w) {
				t.Fatalf("%v: lacks %q:\n%s", tc.args, w, r.stdout)
			}
		}
		if strings.Contains(r.stdout, "the suite's root directory") {
			t.Fatalf("%v: command help repeats the global flags:\n%s", tc.args, r.stdout)
		}
	}
}

func TestHelpJSON(t *testing.T) {
	r := runGgctl(t.Context(), "--json", "help")
	wantExit(t, r, ExitOK)
	var doc helpDoc
	if err := json.Unmarshal([]byte(r.stdout), &doc); err != nil {
		t.Fatalf("help --json is not JSON: %v\n%s", err, r.stdout)
	}
	if len(doc.Commands) != len(commands) || doc.ExitCodes["3"] != "daemon unreachable" {
		t.Fatalf("help --json: %+v", doc)
	}
}

// Flags may come before or after positional arguments, and global flags
// after the command.
func TestFlagsAnywhere(t *testing.T) {
	for _, tc := range []struct {
		args    []string
		out     string
		json    bool
		pos     []string
		timeout time.Duration
	}{
		{[]string{"d1", "--out", "certs"}, "certs", false, []string{"d1"}, defaultTimeout},
		{[]string{"--out", "certs", "d1", "--json"}, "certs", true, []string{"d1"}, defaultTimeout},
		{[]string{"d1", "--timeout", "3s"}, ".", false, []string{"d1"}, 3 * time.Second},
		{[]string{"--", "-d1"}, ".", false, []string{"-d1"}, defaultTimeout},
		{[]string{"d1", "--", "--out"}, ".", false, []string{"d1", "--out"}, defaultTimeout},
	} {
		g := globals{root: "/r", timeout: defaultTimeout}
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		g.register(fs)
		out := fs.String("out", ".", "")
		pos, err := parseInterspersed(fs, tc.args)
		if err != nil {
			t.Fatalf("%v: %v", tc.args, err)
		}
		if *out != tc.out || g.json != tc.json || g.timeout != tc.timeout || !reflect.DeepEqual(pos, tc.pos) {
			t.Fatalf("%v: out=%q json=%v timeout=%v pos=%q", tc.args, *out, g.json, g.timeout, pos)
		}
	}
}

func TestRootDefaultsToEnvironmentThenVarLib(t *testing.T) {
	t.Setenv("EVERGREEN_ROOT", "")
	if got := defaultRoot(); got != "/var/lib/evergreen" {
		t.Fatalf("default root %q", got)
	}
	root := t.TempDir()
	t.Setenv("EVERGREEN_ROOT", root)
	// Nothing runs there: the error names the root from the environment.
	r := runGgctl(t.Context(), "device", "list")
	wantExit(t, r, ExitUnreachable)
	wantOneErrorLine(t, r, filepath.Join(root, "run", "certmgr.sock"), "ggd --root "+root)
	// --root wins over the environment.
	other := t.TempDir()
	r = runGgctl(t.Context(), "--root", other, "device", "list")
	wantOneErrorLine(t, r, "ggd --root "+other)
}

func TestRelativeRootIsResolved(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	if err := os.Mkdir("var", 0o755); err != nil {
		t.Fatal(err)
	}
	r := runGgctl(t.Context(), "--root", "var", "deployments")
	wantExit(t, r, ExitUnreachable)
	wantOneErrorLine(t, r, filepath.Join(dir, "var", "run", "deployagent.sock"))
}

func TestHumanDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		7*24*time.Hour - 30*time.Minute: "6d23h",
		3650 * 24 * time.Hour:           "3650d0h",
		3*time.Hour + 5*time.Minute:     "3h05m",
		90 * time.Second:                "1m30s",
		12 * time.Second:                "12s",
		-2 * time.Hour:                  "2h00m",
	} {
		if got := humanDuration(d); got != want {
			t.Errorf("humanDuration(%v) = %q, want %q", d, got, want)
		}
	}
	now := time.Now()
	if got := expiry(now.Add(-3*time.Hour), now); got != "EXPIRED 3h00m ago" {
		t.Errorf("expired: %q", got)
	}
}

func TestValidationErrorsSplit(t *testing.T) {
	for _, tc := range []struct {
		msg  string
		want []string
	}{
		{"group definition has 2 errors:\nSubscriptions[3].Target: unknown target \"x\"\nFunctions[0].Id: duplicate", []string{`Subscriptions[3].Target: unknown target "x"`, "Functions[0].Id: duplicate"}},
		{"Subscriptions[3].Target: unknown; Devices[1].ThingArn: not an ARN", []string{"Subscriptions[3].Target: unknown", "Devices[1].ThingArn: not an ARN"}},
		{"- Core: missing\n- Loggers[0].Type: bad\n", []string{"Core: missing", "Loggers[0].Type: bad"}},
		{"", []string{"the deployagent gave no details"}},
	} {
		if got := validationErrors(tc.msg); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("validationErrors(%q) = %q, want %q", tc.msg, got, tc.want)
		}
	}
}
