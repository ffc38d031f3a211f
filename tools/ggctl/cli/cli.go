// Package cli is ggctl: the command line that talks to an Evergreen core's
// daemons over their gRPC unix sockets (DIR/run/<daemon>.sock).
//
// Run is the whole program; cmd/ggctl only wires it to the process. Tests
// call Run, RunContext and RunIO in-process against real gRPC servers.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/evergreen-edge/evergreen/services/kit/layout"
	"google.golang.org/grpc"
)

// Exit codes. They are part of ggctl's contract with scripts: keep them in
// step with usageText and tools/README.md.
const (
	ExitOK          = 0 // done; status: every daemon running and healthy
	ExitFailed      = 1 // the operation failed; status: not healthy; deployment FAILURE
	ExitUsage       = 2 // bad command line or invalid input (flag, name, file, group definition)
	ExitUnreachable = 3 // a daemon's socket is missing or refuses connections
	ExitNotFound    = 4 // the named daemon, device or deployment does not exist
)

const defaultTimeout = 10 * time.Second

// usageText is what `ggctl help` prints.
const usageText = `ggctl controls an Evergreen core through its daemons' gRPC sockets (DIR/run/*.sock).

Usage: ggctl [--root DIR] [--json] [--timeout D] COMMAND [ARGS]

Commands:
  status                             every daemon's state and health, certificate expiry
  device create NAME [--out DIR]     issue a key and certificate for a device and register it
  device register NAME --cert FILE   register a device certificate made elsewhere
  device list                        registered devices
  device remove NAME                 revoke a device's certificate and forget the device
  deploy FILE                        deploy a group definition file and follow its progress
  deploy --reset [--force]           remove the deployed group (--force: whatever daemons say)
  deploy --redeploy [--of ID]        deploy the group in force again under a new id
  deployments                        deployment history, newest first
  deployments show [ID]              one deployment (the current one without ID)
  deployments applied                which deployment every daemon runs
  deployments group                  the group definition in force, as indented JSON
  secret put NAME [--file F]         store a secret's new version (AWSCURRENT)
  secret list                        stored and deployed secrets (never their values)
  secret rm NAME [--force]           delete a secret
  stream list                        message streams: sequence range, messages, bytes
  stream create NAME [--strategy S]  create a message stream
  stream append NAME PAYLOAD         append a message
  stream read NAME [--from N] [-n C] read messages
  stream describe|delete NAME        a stream's definition and storage; delete it
  ota keygen --out PREFIX            make an ed25519 key pair to sign update bundles (offline)
  ota bundle --version V --out FILE  pack ggd, ggctl and ggd-containerd into an update bundle
  ota sign BUNDLE --key KEY          sign an update bundle (writes BUNDLE.sig)
  ota verify BUNDLE --pub FILE       check a bundle's signature, manifest and files as a core does
  ota apply BUNDLE|URL [--wait]      install an update on the core and restart into it (--force, --sig)
  ota status                         running, current, previous, pending and broken versions; last outcome
  pub TOPIC PAYLOAD [--as SOURCE]    route a message through the subscriptions as SOURCE
  sub FILTER [-n COUNT]              print the messages routed on topics matching FILTER
  subscriptions                      the subscription table in force
  clients                            devices connected to the broker
  cloud                              the cloud connection and its outbound queue
  shadow get THING [--name N]        a shadow's document (state, delta, metadata, version)
  shadow update THING DOC [--name N] apply an update document ({"state":{"desired":...}})
  shadow delete THING [--name N]     delete a shadow (its version numbering continues)
  shadow list [THING]                the shadows stored, with version, size and sync state
  fn list                            the group's functions (runtime, lifecycle, workers)
  fn workers [NAME]                  workers and their states (the v1 health API's view)
  fn invoke NAME [PAYLOAD] [--event] invoke a function and print its result
  fn restart NAME                    stop a function's workers (a pinned one starts again)
  fn logs NAME [-f] [-n N]           a function's log (DIR/logs/user/NAME.log)
  logs DAEMON [-f] [-n N]            a daemon's log: the last N lines; -f keeps following
  start DAEMON                       start a stopped daemon (supervisor)
  stop DAEMON                        stop a daemon and keep it stopped (supervisor)
  restart DAEMON                     restart a daemon and print its new pid (supervisor)
  version                            ggctl's version and the supervisor's
  help [COMMAND]                     this text, or one command's flags

Global flags (before or after the command):
  --root DIR      the suite's root directory (default $EVERGREEN_ROOT, else /var/lib/evergreen)
  --json          machine output on stdout (protojson of the API's messages; see tools/README.md)
  --timeout D     deadline of each request/response call (default 10s; streams have none)

Exit codes:
  0  ok (status: every daemon RUNNING and healthy; deploy: SUCCESS)
  1  the operation failed (status: a daemon is not healthy; deploy: FAILURE; pub: no group)
  2  usage error or invalid input (bad flag, name, topic, source or file; invalid group definition)
  3  daemon unreachable: its socket is missing or refuses connections (is the suite running?)
  4  not found: no such daemon, device, deployment, shadow or function

pub exits 0 also when no subscription matches: "no subscription matches: nothing delivered".
Errors are one line on stderr: "ggctl: <what is wrong>".
`

// command is one verb of ggctl. Two-word commands ("device create") are
// looked up before one-word ones.
type command struct {
	name    string
	args    string
	summary string
	run     func(a *app, args []string) error
}

var commands []command

func init() {
	commands = []command{
		{"status", "", "Show every daemon's state, pid, restarts, uptime and health, and certificate expiry.\nExits 0 only when every daemon is RUNNING and healthy.", cmdStatus},
		{"device create", "NAME [--out DIR] [--force]", "Issue a key and certificate for device NAME, register it, and write\nDIR/NAME.cert.pem, DIR/NAME.key.pem (0600) and DIR/ca.pem.", cmdDeviceCreate},
		{"device register", "NAME --cert FILE", "Register a device certificate (PEM) made elsewhere under NAME.", cmdDeviceRegister},
		{"device list", "", "List registered devices.", cmdDeviceList},
		{"device remove", "NAME", "Revoke device NAME's certificate at once and forget the device.", cmdDeviceRemove},
		{"deploy", "FILE | --reset", "Deploy a group definition file, showing progress on stderr; or remove the\ndeployed group with --reset. Exits 0 on SUCCESS, 1 on FAILURE, 2 when the\ndefinition is invalid.", cmdDeploy},
		{"deployments show", "[ID]", "Show one deployment with every daemon's result (the current one without ID).", cmdDeploymentsShow},
		{"deployments applied", "", "Show which deployment every daemon runs next to the one current.json names;\nexits 1 when one differs or does not answer.", cmdDeploymentsApplied},
		{"deployments group", "", "Print the group definition in force in canonical form (plain sections, API\nfield order), indented; a file deploy takes as it is. Exits 4 when no group is\nin force.", cmdDeploymentsGroup},
		{"deployments", "", "List the deployment history, newest first.", cmdDeployments},
		{"pub", "TOPIC PAYLOAD [--as SOURCE] [--qos 0|1] [--file F]", "Route one message through the deployed group's subscription table as if SOURCE\nhad published it, and print the targets it reached. PAYLOAD - (or --file -)\nreads standard input. SOURCE is cloud (the default), GGShadowService,\ndevice:NAME, function:ARN, connector:ARN, or a subscription's Source as the\ngroup writes it (a thing, function or connector ARN). Exits 0 also when no\nsubscription matches: \"no subscription matches: nothing delivered\".", cmdPub},
		{"sub", "FILTER [-n COUNT]", "Print every message the broker routes whose topic matches FILTER (MQTT\nwildcards + and #), one line each: TIME SOURCE -> TARGETS TOPIC PAYLOAD.\nA payload is shown as text when it is printable UTF-8 (cut at 200 characters\nwith …), else as <N bytes>. Runs until interrupted (Ctrl-C, exit 0) or until\nCOUNT messages have been printed. It only watches: routing does not change.", cmdSub},
		{"subscriptions", "", "Show the subscription table in force (ID SOURCE SUBJECT TARGET) and the\ndeployment it came from.", cmdSubscriptions},
		{"clients", "", "List the devices connected to the broker: client id, address, MQTT version,\nconnected since, subscriptions, messages in and out.", cmdClients},
		{"cloud", "", "Show the cloud connection (state, endpoint, last error, reconnects), the\nspooler's outbound queue (storage, depth, sent, dropped, in flight) and the\ncloud subscriptions.", cmdCloud},
		{"shadow get", "THING [--name N]", "Print the shadow's document as /get/accepted carries it: state (desired,\nreported, delta), metadata, version, timestamp. Exits 4 when it does not exist.", cmdShadowGet},
		{"shadow update", "THING DOCUMENT [--name N] [--file F]", "Apply an update request document ({\"state\":{\"desired\":{...}}}, optional\n\"version\" and \"clientToken\") and print /update/accepted. The change is\npublished through the subscriptions like a device's (delta, documents).\nDOCUMENT - (or --file -) reads standard input.", cmdShadowUpdate},
		{"shadow delete", "THING [--name N]", "Delete the shadow. Its version numbering continues with the next update.", cmdShadowDelete},
		{"shadow list", "[THING]", "List the shadows that exist (of THING, or all): version, state bytes, and for\nthings with SyncShadow the sync state (IN_SYNC or PENDING).", cmdShadowList},
		{"fn list", "", "List the user functions of the group in force: name, runtime, handler, pinned or\non-demand, isolation, timeout, workers, ARN.", cmdFnList},
		{"fn workers", "[NAME]", "List the workers (of NAME, or all) with pid and state: Starting, Initialized,\nWaiting, Working, FailedInitialization (the v1 health API's states).", cmdFnWorkers},
		{"fn invoke", "NAME [PAYLOAD] [--event] [--custom JSON] [--file F]", "Invoke a function (NAME, its ARN, or its unqualified ARN) and print the result;\nexits 1 on a function error. --event queues it and returns at once. PAYLOAD -\n(or --file -) reads standard input.", cmdFnInvoke},
		{"fn restart", "NAME", "Stop a function's workers: a pinned function's worker starts again at once,\non-demand ones when work comes.", cmdFnRestart},
		{"fn logs", "NAME [-f] [-n N]", "Print the last N lines of a function's log (its stdout, stderr and log lines);\nwith -f keep printing new lines until interrupted.", cmdFnLogs},
		{"logs", "DAEMON [-f] [-n N]", "Print the last N lines of a daemon's log; with -f keep printing new lines\nuntil interrupted.", cmdLogs},
		{"start", "DAEMON", "Start a stopped daemon and wait until it is healthy.", cmdStart},
		{"stop", "DAEMON", "Stop a daemon; the supervisor keeps it stopped until start or restart.", cmdStop},
		{"restart", "DAEMON", "Restart a daemon, wait until it is healthy, and print its new pid.", cmdRestart},
		{"version", "", "Print ggctl's version and, when reachable, the supervisor's.", cmdVersion},
		{"help", "[COMMAND]", "Print usage, commands and exit codes; or one command's flags.", cmdHelp},
	}
	commands = append(commands, secretCommands...)
	commands = append(commands, streamCommands...)
	commands = append(commands, command{"ota", "SUBCOMMAND [ARGS]", "Over-the-air updates of the core itself: make, sign, check and install update\nbundles (docs/ota.md).", cmdOta})
	commands = append(commands, otaCommands...)
}

// globals are the flags every command accepts.
type globals struct {
	root    string
	json    bool
	timeout time.Duration
}

func (g *globals) register(fs *flag.FlagSet) {
	fs.StringVar(&g.root, "root", g.root, "the suite's root directory")
	fs.BoolVar(&g.json, "json", g.json, "machine output on stdout")
	fs.DurationVar(&g.timeout, "timeout", g.timeout, "deadline of each request/response call")
}

func isGlobalFlag(name string) bool { return name == "root" || name == "json" || name == "timeout" }

func defaultRoot() string {
	if r := os.Getenv("EVERGREEN_ROOT"); r != "" {
		return r
	}
	return "/var/lib/evergreen"
}

// app is one invocation: its flags, its outputs and the connections it
// opened.
type app struct {
	ctx    context.Context
	g      globals
	root   layout.Root
	cmd    *command
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
	conns  []*grpc.ClientConn
}

// Run runs ggctl with args (without the program name) and returns the exit
// code. SIGINT and SIGTERM cancel it: `logs -f` then ends normally.
func Run(args []string, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return RunContext(ctx, args, stdout, stderr)
}

// RunContext is Run with the caller's context standing in for Ctrl-C.
func RunContext(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return RunIO(ctx, args, os.Stdin, stdout, stderr)
}

// RunIO is RunContext with the caller's reader standing in for standard
// input (`pub TOPIC -`).
func RunIO(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	a := &app{ctx: ctx, stdin: stdin, stdout: stdout, stderr: stderr, g: globals{root: defaultRoot(), timeout: defaultTimeout}}
	defer a.close()
	err := a.dispatch(args)
	var help *helpRequest
	if errors.As(err, &help) {
		fmt.Fprint(stdout, help.text)
		return ExitOK
	}
	if err == nil {
		return ExitOK
	}
	code, msg := ExitFailed, err.Error()
	var e *exitError
	if errors.As(err, &e) {
		code = e.code
	}
	if msg != "" {
		fmt.Fprintf(stderr, "ggctl: %s\n", oneLine(msg))
	}
	return code
}

func (a *app) dispatch(args []string) error {
	fs := flag.NewFlagSet("ggctl", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	a.g.register(fs)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return &helpRequest{text: usageText}
		}
		return usageErrorf("%v (see 'ggctl help')", err)
	}
	rest := fs.Args()
	if len(rest) == 0 {
		return usageErrorf("no command given (see 'ggctl help')")
	}
	c, n := lookup(rest)
	if c == nil {
		switch rest[0] {
		case "device":
			if len(rest) == 1 {
				return usageErrorf("device needs a subcommand: create, register, list or remove (see 'ggctl help')")
			}
			return usageErrorf("unknown command \"device %s\" (want create, register, list or remove)", rest[1])
		}
		return usageErrorf("unknown command %q (see 'ggctl help')", rest[0])
	}
	a.cmd = c
	return c.run(a, rest[n:])
}

// lookup finds the command named by the first one or two words of args and
// says how many words it used.
func lookup(args []string) (*command, int) {
	if len(args) >= 2 {
		two := args[0] + " " + args[1]
		for i := range commands {
			if commands[i].name == two {
				return &commands[i], 2
			}
		}
	}
	for i := range commands {
		if commands[i].name == args[0] {
			return &commands[i], 1
		}
	}
	return nil, 0
}

// flags returns the command's flag set with the global flags registered.
func (a *app) flags() *flag.FlagSet {
	fs := flag.NewFlagSet("ggctl "+a.cmd.name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	a.g.register(fs)
	return fs
}

// parse parses flags anywhere among the positional arguments ("device
// create NAME --out DIR"), checks the number of positional arguments
// (max < 0: no limit), and settles the root.
func (a *app) parse(fs *flag.FlagSet, args []string, min, max int) ([]string, error) {
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, &helpRequest{text: commandUsage(a.cmd, fs)}
		}
		return nil, usageErrorf("%s: %v (see 'ggctl help %s')", a.cmd.name, err, a.cmd.name)
	}
	switch {
	case len(pos) < min:
		return nil, usageErrorf("%s: missing argument: usage: ggctl %s %s", a.cmd.name, a.cmd.name, a.cmd.args)
	case max >= 0 && len(pos) > max:
		return nil, usageErrorf("%s: unexpected argument %q: usage: ggctl %s %s", a.cmd.name, pos[max], a.cmd.name, strings.TrimSpace(a.cmd.args))
	}
	if a.g.timeout <= 0 {
		return nil, usageErrorf("--timeout must be positive, got %s", a.g.timeout)
	}
	if a.g.root == "" {
		return nil, usageErrorf("--root is empty")
	}
	abs, err := filepath.Abs(a.g.root)
	if err != nil {
		return nil, usageErrorf("--root %s: %v", a.g.root, err)
	}
	a.root = layout.Root(abs)
	return pos, nil
}

func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		if used := len(args) - len(rest); used > 0 && args[used-1] == "--" {
			return append(pos, rest...), nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// helpRequest carries the usage text of -h/--help and `ggctl help`; it
// ends the run with exit 0.
type helpRequest struct{ text string }

func (h *helpRequest) Error() string { return "help requested" }

func commandUsage(c *command, fs *flag.FlagSet) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Usage: ggctl %s\n\n%s\n", strings.TrimSpace(c.name+" "+c.args), c.summary)
	var own []*flag.Flag
	fs.VisitAll(func(f *flag.Flag) {
		if !isGlobalFlag(f.Name) {
			own = append(own, f)
		}
	})
	if len(own) > 0 {
		b.WriteString("\nFlags:\n")
		for _, f := range own {
			name, usage := flag.UnquoteUsage(f)
			fmt.Fprintf(&b, "  %s\n    \t%s", strings.TrimSpace("--"+f.Name+" "+name), usage)
			if f.DefValue != "" && f.DefValue != "false" && f.DefValue != "0" {
				fmt.Fprintf(&b, " (default %s)", f.DefValue)
			}
			b.WriteString("\n")
		}
	}
	b.WriteString("\nGlobal flags --root, --json and --timeout apply too; exit codes: see 'ggctl help'.\n")
	return b.String()
}

func cmdHelp(a *app, args []string) error {
	pos, err := a.parse(a.flags(), args, 0, 2)
	if err != nil {
		return err
	}
	if len(pos) == 0 {
		if a.g.json {
			return a.printJSON(helpJSON())
		}
		return &helpRequest{text: usageText}
	}
	c, n := lookup(pos)
	if c == nil || n != len(pos) || c.name == "help" {
		return usageErrorf("help: unknown command %q (see 'ggctl help')", strings.Join(pos, " "))
	}
	// Every command answers -h with its own usage, built from the flags it
	// really defines.
	sub := &app{ctx: a.ctx, g: a.g, cmd: c, stdin: a.stdin, stdout: a.stdout, stderr: a.stderr}
	return c.run(sub, []string{"-h"})
}

type helpCommandJSON struct {
	Name    string `json:"name"`
	Args    string `json:"args"`
	Summary string `json:"summary"`
}

type helpDoc struct {
	Commands  []helpCommandJSON `json:"commands"`
	ExitCodes map[string]string `json:"exitCodes"`
}

func helpJSON() helpDoc {
	d := helpDoc{ExitCodes: map[string]string{
		"0": "ok",
		"1": "operation failed or not healthy",
		"2": "usage error or invalid input",
		"3": "daemon unreachable",
		"4": "not found",
	}}
	for _, c := range commands {
		d.Commands = append(d.Commands, helpCommandJSON{Name: c.name, Args: c.args, Summary: strings.ReplaceAll(c.summary, "\n", " ")})
	}
	return d
}

func (a *app) close() {
	for _, c := range a.conns {
		c.Close()
	}
}
