// Command ggd is Evergreen's multi-call binary:
//
//	ggd --root DIR              supervise the whole suite (v1's greengrassd)
//	ggd <daemon> --root DIR     run one daemon (systemd units, compose services)
//	ggd health --root DIR NAME  exit 0 when NAME's gRPC health is SERVING
//	ggd version
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/evergreen-edge/evergreen/ota/launch"
	"github.com/evergreen-edge/evergreen/services/kit/buildinfo"
	"github.com/evergreen-edge/evergreen/services/kit/daemon"
	"github.com/evergreen-edge/evergreen/services/kit/layout"
	"github.com/evergreen-edge/evergreen/services/kit/logging"
	"github.com/evergreen-edge/evergreen/services/kit/memtrim"
	"github.com/evergreen-edge/evergreen/services/kit/sdnotify"
	"github.com/evergreen-edge/evergreen/services/suite"
	"github.com/evergreen-edge/evergreen/services/supervisor"
)

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

func usage(w io.Writer) {
	var names []string
	for _, s := range suite.Specs() {
		names = append(names, s.Name)
	}
	fmt.Fprintf(w, `usage:
  ggd --root DIR              start and supervise the whole suite
  ggd DAEMON --root DIR       run one daemon (%s)
  ggd health --root DIR NAME  exit 0 when the daemon NAME is healthy
  ggd version                 print the version
DIR defaults to $EVERGREEN_ROOT, else /var/lib/evergreen.
`, strings.Join(names, ", "))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		// Before anything else: an installed update may take over.
		launch.Run(append([]string{os.Args[0]}, args...), launch.Options{})
		return supervise(args, stderr)
	}
	switch args[0] {
	case "version", "--version":
		// The version that runs: an installed update's (ota/launch).
		launch.Run(append([]string{os.Args[0]}, args...), launch.Options{Daemon: "version"})
		fmt.Fprintf(stdout, "ggd %s\n", buildinfo.String())
		return 0
	case "help", "-h", "--help":
		usage(stdout)
		return 0
	case "health":
		return health(args[1:], stdout, stderr)
	}
	spec, ok := suite.Lookup(args[0])
	if !ok {
		fmt.Fprintf(stderr, "ggd: unknown daemon or command %q (ggd help lists them)\n", args[0])
		return 2
	}
	launch.Run(append([]string{os.Args[0]}, args...), launch.Options{Daemon: spec.Name})
	return daemon.Main(spec, args[1:])
}

func defaultRoot() string {
	if r := os.Getenv("EVERGREEN_ROOT"); r != "" {
		return r
	}
	return "/var/lib/evergreen"
}

func health(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("ggd health", flag.ContinueOnError)
	fs.SetOutput(stderr)
	root := fs.String("root", defaultRoot(), "suite root directory")
	timeout := fs.Duration("timeout", 2*time.Second, "how long to wait for an answer")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() != 1 {
		fmt.Fprintln(stderr, "ggd health: name one daemon")
		return 2
	}
	abs, err := filepath.Abs(*root)
	if err != nil {
		fmt.Fprintf(stderr, "ggd health: %v\n", err)
		return 2
	}
	if supervisor.CheckHealth(layout.Root(abs), fs.Arg(0), *timeout) {
		fmt.Fprintf(stdout, "%s: SERVING\n", fs.Arg(0))
		return 0
	}
	fmt.Fprintf(stdout, "%s: not serving\n", fs.Arg(0))
	return 1
}

func supervise(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("ggd", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { usage(stderr) }
	root := fs.String("root", defaultRoot(), "suite root directory")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	abs, err := filepath.Abs(*root)
	if err != nil {
		fmt.Fprintf(stderr, "ggd: %v\n", err)
		return 2
	}
	r := layout.Root(abs)
	cfg, err := daemon.PrepareRoot(r)
	if err != nil {
		fmt.Fprintf(stderr, "ggd: %v\n", oneLine(err))
		return 2
	}
	lg := cfg.Evergreen.Logging
	log, closeLog, err := logging.New(supervisor.Name, logging.Options{File: r.LogFile(supervisor.Name), MaxFileBytes: lg.MaxFileBytes, MaxFiles: lg.MaxFiles, Level: lg.Level})
	if err != nil {
		fmt.Fprintf(stderr, "ggd: %v\n", err)
		return 2
	}
	defer closeLog.Close()
	// The group's GreengrassSystem logger as it stands at start; the
	// daemons follow later deployments themselves.
	if ls, err := daemon.LoggersInForce(r); err == nil {
		log.Info("group loggers in force", "loggers", closeLog.ApplyGroup(ls))
	}
	exe, err := os.Executable()
	if err != nil {
		fmt.Fprintf(stderr, "ggd: %v\n", err)
		return 1
	}
	sv, err := supervisor.New(supervisor.Options{Root: r, Config: cfg, Specs: suite.Specs(), Exe: exe, Log: log, Version: buildinfo.String(),
		ChildEnv: launch.ChildEnv()})
	if err != nil {
		fmt.Fprintf(stderr, "ggd: %v\n", oneLine(err))
		return 1
	}
	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer cancel()
	startCtx, startCancel := context.WithTimeout(ctx, time.Duration(cfg.Evergreen.Supervisor.StartTimeoutMs)*time.Millisecond*time.Duration(len(suite.Specs())))
	defer startCancel()
	started := make(chan struct{})
	// Started in the background: a restart request (an update that never
	// gets healthy, rolled back) must not wait for every daemon.
	go func() {
		defer close(started)
		if err := sv.Start(startCtx); err != nil && startCtx.Err() == nil {
			log.Error("suite did not come up healthy; still supervising", "err", err)
		} else if err != nil && ctx.Err() == nil {
			log.Error("suite did not come up healthy in time; still supervising", "err", err)
		}
		time.AfterFunc(daemon.TrimDelay, memtrim.Trim)
		log.Info("supervising", "root", abs, "http", sv.HTTPAddr(), "bus", sv.Endpoints().Bus, "version", buildinfo.Version)
		sdnotify.Ready()
	}()
	// The backstop of an update's health check (ota/launch).
	go launch.CommitWatchdog(ctx, abs, time.Duration(cfg.Runtime.PostStartHealthCheckTimeout)*time.Millisecond, log,
		func(reason string) { sv.RequestRestart(reason) })
	var restart *supervisor.Restart
	select {
	case <-ctx.Done():
	case r := <-sv.RestartRequested():
		restart = &r
	}
	startCancel()
	<-started
	if restart == nil || !restart.Exec {
		sdnotify.Stopping()
	}
	stop := time.Duration(cfg.Evergreen.Supervisor.StopTimeoutMs)*time.Millisecond*time.Duration(len(suite.Specs())) + time.Second
	sctx, scancel := context.WithTimeout(context.Background(), stop)
	defer scancel()
	sv.Shutdown(sctx)
	if restart == nil {
		return 0
	}
	if restart.Exec {
		// managedRespawn: the same process goes on as DIR/ota/current/ggd,
		// through the launcher (which counts the launch).
		log.Info("restarting in place", "reason", restart.Reason)
		closeLog.Close()
		err := launch.Reexec(append([]string{os.Args[0]}, args...))
		fmt.Fprintf(stderr, "ggd: re-exec failed, exiting for the service manager to restart: %v\n", err)
		return supervisor.RestartExitCode
	}
	log.Info("exiting for the service manager to restart the core", "reason", restart.Reason, "code", supervisor.RestartExitCode)
	return supervisor.RestartExitCode
}

func oneLine(err error) string { return strings.ReplaceAll(err.Error(), "\n", "; ") }
