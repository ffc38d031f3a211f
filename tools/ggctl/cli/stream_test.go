package cli

import (
	"context"
	"io"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/evergreen-edge/evergreen/services/kit/bustest"
	"github.com/evergreen-edge/evergreen/services/kit/config"
	"github.com/evergreen-edge/evergreen/services/kit/daemon"
	"github.com/evergreen-edge/evergreen/services/kit/layout"
	"github.com/evergreen-edge/evergreen/streammgr"
)

// streamsDaemon runs the real stream manager on the suite's root.
func (s *suite) streamsDaemon() {
	s.t.Helper()
	root := layout.Root(s.root)
	if err := root.Create(); err != nil {
		s.t.Fatal(err)
	}
	bus := bustest.Start(s.t)
	bustest.WriteCreds(s.t, root, streammgr.Name)
	cfg := config.Default()
	cfg.Evergreen.Listen.Streams = "127.0.0.1:0"
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	run, err := daemon.Start(ctx, streammgr.Spec(), daemon.Options{Root: s.root, BusURL: bus, Config: cfg, LogStderr: io.Discard})
	if err != nil {
		s.t.Fatal(err)
	}
	s.t.Cleanup(func() { run.Shutdown(context.Background()) })
}

func TestStreamCommands(t *testing.T) {
	s := newSuite(t)
	s.streamsDaemon()

	wantExit(t, s.ggctl("stream", "create", "telemetry.log", "--max-size", "1048576", "--segment-size", "65536", "--strategy", "overwrite", "--ttl", "1h"), ExitOK)
	for _, p := range []string{"21.5", "22.0"} {
		r := s.ggctl("stream", "append", "telemetry.log", p)
		wantExit(t, r, ExitOK)
	}
	r := s.ggctl("stream", "append", "telemetry.log", "23.1")
	if wantExit(t, r, ExitOK); r.stdout != "appended to telemetry.log: sequence number 2\n" {
		t.Fatalf("append: %q", r.stdout)
	}
	r = s.ggctl("stream", "list")
	wantExit(t, r, ExitOK)
	if !regexp.MustCompile(`(?m)^telemetry\.log +0 +2 +3 +\d+ B +FILE +OVERWRITE_OLDEST_DATA +-$`).MatchString(r.stdout) {
		t.Fatalf("list:\n%s", r.stdout)
	}
	r = s.ggctl("stream", "read", "telemetry.log", "--from", "1", "-n", "5")
	wantExit(t, r, ExitOK)
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "1 ") || !strings.HasSuffix(lines[0], " 22.0") || !strings.HasSuffix(lines[1], " 23.1") {
		t.Fatalf("read:\n%s", r.stdout)
	}
	r = s.ggctl("stream", "describe", "telemetry.log")
	if wantExit(t, r, ExitOK); !strings.Contains(r.stdout, "time to live:    1h0m0s") || !strings.Contains(r.stdout, "messages:        3 (sequence numbers 0 to 2)") {
		t.Fatalf("describe:\n%s", r.stdout)
	}
	// Errors: one line each, the right exit.
	wantExit(t, s.ggctl("stream", "create", "x", "--strategy", "sometimes"), ExitUsage)
	wantExit(t, s.ggctl("stream", "append", "nope", "x"), ExitNotFound)
	wantExit(t, s.ggctl("stream", "read", "telemetry.log", "-n", "0"), ExitUsage)
	wantExit(t, s.ggctl("stream", "delete", "telemetry.log"), ExitOK)
	wantExit(t, s.ggctl("stream", "describe", "telemetry.log"), ExitNotFound)
}
