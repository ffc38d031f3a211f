package deployment_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	deployv1 "github.com/evergreen-edge/evergreen/proto/evergreen/deploy/v1"
	"github.com/evergreen-edge/evergreen/services/kit/bustest"
	"github.com/evergreen-edge/evergreen/services/kit/config"
	"github.com/evergreen-edge/evergreen/services/kit/daemon"
	"github.com/evergreen-edge/evergreen/services/kit/deployment"
	"github.com/evergreen-edge/evergreen/services/kit/groupdef"
	"github.com/evergreen-edge/evergreen/services/kit/layout"
	"github.com/evergreen-edge/evergreen/services/kit/subjects"
	"github.com/nats-io/nats.go"
	"google.golang.org/protobuf/proto"
)

// follower is a daemon that consumes the group and does nothing with it
// but what the kit does for every daemon.
type follower struct{ stop func() }

// applied hears, for every APPLY or ROLLBACK a follower accepts, the
// deployment its context names.
var applied = make(chan string, 16)

func (f *follower) Start(_ context.Context, env *daemon.Env) (err error) {
	f.stop, err = deployment.Serve(env, func(ctx context.Context, _ *groupdef.Group, rollback bool) error {
		heard := "apply " + deployment.ID(ctx)
		if rollback {
			heard = "rollback to " + deployment.ID(ctx)
		}
		select {
		case applied <- heard:
		default: // other tests do not listen
		}
		return nil
	})
	return err
}

func (f *follower) Stop(context.Context) error {
	if f.stop != nil {
		f.stop()
	}
	return nil
}

const followerName = "follower"

func startFollower(t *testing.T, root string, busURL string, cloud bool) *daemon.Running {
	t.Helper()
	cfg := config.Default()
	cfg.Evergreen.Listen = config.Listen{MQTT: "127.0.0.1:0", IPC: "127.0.0.1:0", Streams: "127.0.0.1:0", Bus: "127.0.0.1:0", HTTP: "127.0.0.1:0"}
	cfg.Evergreen.Logging.MaxFileBytes = 1 << 20
	cfg.Evergreen.Logging.MaxFiles = 3
	if cloud {
		cfg.CoreThing.IotHost = "cloud.invalid"
	}
	bustest.WriteCreds(t, layout.Root(root), followerName)
	spec := daemon.Spec{
		Name: followerName,
		Bus: &daemon.BusRole{
			Publish:        []string{"evergreen." + followerName + ".>"},
			Subscribe:      []string{subjects.DeployApply(followerName)},
			AllowResponses: true,
		},
		ConsumesGroup: true,
		New:           func() daemon.Service { return &follower{} },
	}
	r, err := daemon.Start(context.Background(), spec, daemon.Options{Root: root, Config: cfg, BusURL: busURL, LogStderr: discard{}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Shutdown(context.Background()) })
	return r
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

func applyGroup(t *testing.T, nc *nats.Conn, id, group string, phase deployv1.ApplyPhase) {
	t.Helper()
	req := &deployv1.ApplyGroup{DeploymentId: id, Phase: phase}
	if group == "" {
		req.Reset_ = true
	} else {
		req.GroupJson = []byte(group)
	}
	b, _ := proto.Marshal(req)
	msg, err := nc.Request(subjects.DeployApply(followerName), b, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var res deployv1.ApplyResult
	if err := proto.Unmarshal(msg.Data, &res); err != nil || !res.Ok {
		t.Fatalf("apply %s: %v %s", id, err, res.Reason)
	}
}

func groupWithLoggers(loggers string) string {
	return `{"Core": {"Cores": [{"Id": "core", "ThingArn": "arn:aws:iot:us-east-1:123456789012:thing/core", "CertificateArn": "arn:aws:iot:us-east-1:123456789012:cert/` +
		strings.Repeat("a", 64) + `"}]}, "Loggers": {"Loggers": [` + loggers + `]}}`
}

func logBytes(t *testing.T, file string) (total int64, files int) {
	t.Helper()
	matches, _ := filepath.Glob(file + "*")
	for _, m := range matches {
		if st, err := os.Stat(m); err == nil {
			total += st.Size()
			files++
		}
	}
	return total, files
}

// A group's GreengrassSystem FileSystem logger changes a running daemon's
// level and caps its files (the file and its rotated copies together);
// a reset goes back to config.json's settings.
func TestGroupSystemLoggerAppliesToRunningDaemon(t *testing.T) {
	busURL := bustest.Start(t)
	root := t.TempDir()
	r := startFollower(t, root, busURL, false)
	nc, err := nats.Connect(busURL)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	file := layout.Root(root).LogFile(followerName)

	r.Env.Log.Debug("before the deployment")
	applyGroup(t, nc, "d-1", groupWithLoggers(`{"Id": "sys", "Component": "GreengrassSystem", "Level": "DEBUG", "Type": "FileSystem", "Space": 128}`), deployv1.ApplyPhase_APPLY_PHASE_APPLY)
	if got := r.Env.Logs.Level(); got != slog.LevelDebug {
		t.Fatalf("level after the deployment = %v, want DEBUG", got)
	}
	r.Env.Log.Debug("after the deployment")
	if b, _ := os.ReadFile(file); !strings.Contains(string(b), "after the deployment") || strings.Contains(string(b), "before the deployment") {
		t.Errorf("DEBUG records in the file: want the one after the deployment only:\n%s", b)
	}
	for i := 0; i < 4000; i++ {
		r.Env.Log.Debug("filler", "i", i, "pad", strings.Repeat("x", 100))
	}
	if total, files := logBytes(t, file); total > 128<<10+4096 || files < 2 {
		t.Errorf("%d files hold %d bytes under a Space of 128 KB", files, total)
	}

	// A group without loggers: config.json's level and size again.
	applyGroup(t, nc, "d-2", groupWithLoggers(""), deployv1.ApplyPhase_APPLY_PHASE_APPLY)
	if got := r.Env.Logs.Level(); got != slog.LevelInfo {
		t.Errorf("level after a group without loggers = %v, want INFO", got)
	}
	if got := r.Env.Logs.Space(); got != 4<<20 {
		t.Errorf("space after a group without loggers = %d, want 4 MiB (1 MiB x 4 files)", got)
	}

	// Loggers in force when the daemon starts hold from its first record.
	if err := deployment.Commit(layout.Root(root), &deployment.Record{DeploymentID: "d-3", Group: json.RawMessage(groupWithLoggers(`{"Id": "sys", "Component": "GreengrassSystem", "Level": "WARN", "Type": "FileSystem", "Space": 256}`))}); err != nil {
		t.Fatal(err)
	}
	r.Shutdown(context.Background())
	r = startFollower(t, root, busURL, false)
	if got, space := r.Env.Logs.Level(), r.Env.Logs.Space(); got != slog.LevelWarn || space != 256<<10 {
		t.Errorf("at start: level %v space %d, want WARN and 256 KiB", got, space)
	}
}

// With a cloud configured, records at or above the GreengrassSystem
// AWSCloudWatch logger's level are published in batches on the daemon's
// logs subject; below it, and before the group asks, nothing is.
func TestGroupCloudLoggerPublishesBatches(t *testing.T) {
	busURL := bustest.Start(t)
	root := t.TempDir()
	r := startFollower(t, root, busURL, true)
	nc, err := nats.Connect(busURL)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	subject := daemon.LogsSubject(&daemon.BusRole{Publish: []string{"evergreen." + followerName + ".>"}})
	sub, err := nc.SubscribeSync(subject)
	if err != nil {
		t.Fatal(err)
	}
	nc.Flush()

	r.Env.Log.Warn("before the group asks")
	applyGroup(t, nc, "d-1", groupWithLoggers(`{"Id": "cw", "Component": "GreengrassSystem", "Level": "WARN", "Type": "AWSCloudWatch"}`), deployv1.ApplyPhase_APPLY_PHASE_APPLY)
	r.Env.Log.Info("below the level")
	r.Env.Log.Warn("forwarded", "sensor", "s1", "n", 3)
	msg, err := sub.NextMsg(daemon.LogFlushInterval + 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var batch struct {
		Component string           `json:"component"`
		Dropped   int              `json:"dropped"`
		Records   []map[string]any `json:"records"`
	}
	if err := json.Unmarshal(msg.Data, &batch); err != nil {
		t.Fatalf("batch %q: %v", msg.Data, err)
	}
	if batch.Component != "GreengrassSystem/"+followerName || len(batch.Records) != 1 {
		t.Fatalf("batch %s", msg.Data)
	}
	rec := batch.Records[0]
	if rec["msg"] != "forwarded" || rec["level"] != "WARN" || rec["daemon"] != followerName || rec["sensor"] != "s1" || rec["n"] != 3.0 || rec["time"] == nil {
		t.Errorf("record %v", rec)
	}
}

// An apply func learns which deployment it puts in force, or returns to,
// from its context; PREPARE and QUERY do not call it.
func TestApplyFuncIsToldItsDeployment(t *testing.T) {
	busURL := bustest.Start(t)
	startFollower(t, t.TempDir(), busURL, false)
	nc, err := nats.Connect(busURL)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	for len(applied) > 0 {
		<-applied
	}
	g := groupWithLoggers("")
	applyGroup(t, nc, "d-2", g, deployv1.ApplyPhase_APPLY_PHASE_PREPARE)
	applyGroup(t, nc, "d-2", g, deployv1.ApplyPhase_APPLY_PHASE_APPLY)
	applyGroup(t, nc, "d-1", "", deployv1.ApplyPhase_APPLY_PHASE_ROLLBACK)
	applyGroup(t, nc, "", "", deployv1.ApplyPhase_APPLY_PHASE_QUERY)
	var got []string
	for len(applied) > 0 {
		got = append(got, <-applied)
	}
	if want := []string{"apply d-2", "rollback to d-1"}; strings.Join(got, ", ") != strings.Join(want, ", ") {
		t.Fatalf("the apply func heard %q, want %q", got, want)
	}
}
