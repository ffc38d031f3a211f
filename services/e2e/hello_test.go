package e2e

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/evergreen-edge/evergreen/services/internal/suitetest"
	"github.com/evergreen-edge/evergreen/services/kit/bustest"
)

// The README's quick start with real processes: make run's suite, device
// sensor-1 created and named in the hello-world example's group (v1's
// classic hello world: a pinned Python function written against the v1
// SDK, in a GreengrassContainer through containerd, as nobody), deployed;
// the README's mosquitto_sub as sensor-1 gets v1's greeting on hello/world;
// a ping brings one more at once, and sensor-1's shadow answers through the
// example's routes.
func TestHelloWorldExample(t *testing.T) {
	needContainerd(t)
	needMosquitto(t)
	needPython(t)
	root := suitetest.ShortRoot(t)
	suitetest.WriteConfig(t, root, func(cfg map[string]any) {
		cfg["coreThing"] = map[string]any{"thingArn": "arn:aws:iot:us-east-1:123456789012:thing/evergreen-core"}
	})
	s := suitetest.Start(t, root)
	sensor := createDevice(t, root, "sensor-1")
	repo, _ := suitetest.RepoRoot()
	group := exampleGroup(t)
	group = bytes.Replace(group, []byte(`"CodeUri": "function"`), []byte(`"CodeUri": "`+filepath.Join(repo, "examples", "hello-world", "function")+`"`), 1)
	group = bytes.Replace(group, []byte("75fcce4506e2b49c935ad64e43250abe43de607c55200dc94f52c7bf2e180e4d"), []byte(sensor.certID), 1)
	gf := filepath.Join(t.TempDir(), "group.json")
	os.WriteFile(gf, group, 0o600)
	if r := ggctl(t, root, "deploy", gf); r.code != 0 {
		t.Fatalf("deploy: %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	bustest.CheckFor(t, waitLimit, 100*time.Millisecond, func() error {
		r := ggctl(t, root, "fn", "workers", "hello-world")
		if !strings.Contains(r.stdout, "Waiting") && !strings.Contains(r.stdout, "Initialized") {
			return fmt.Errorf("fn workers: %s%s", r.stdout, r.stderr)
		}
		return nil
	})

	// The container shares the host's kernel: platform.release() is ours.
	release, err := os.ReadFile("/proc/sys/kernel/osrelease")
	if err != nil {
		t.Fatal(err)
	}
	want := "Hello world! Sent from Greengrass Core running on platform: Linux-" + strings.TrimSpace(string(release))
	// The README's command: mosquitto_sub as sensor-1 on hello/world. The
	// greeting comes every 5 s, so one arrives within two periods.
	sub := subscribe(t, s.Endpoints().MQTT, sensor, "hello/world")
	var greetings []string
	bustest.CheckFor(t, 2*waitLimit, 50*time.Millisecond, func() error {
		greetings = greetings[:0]
		for _, l := range sub.snapshot() {
			if p, ok := strings.CutPrefix(l, "hello/world "); ok {
				greetings = append(greetings, p)
			}
		}
		if len(greetings) == 0 {
			return fmt.Errorf("no greeting on hello/world yet; mosquitto_sub printed %q", sub.snapshot())
		}
		return nil
	})
	if greetings[0] != want {
		t.Fatalf("greeting %q, want %q", greetings[0], want)
	}
	sub.cmd.Process.Kill()
	sub.cmd.Wait()

	// The ping route reaches the handler, which greets at once (the
	// periodic greeting may come first; either is v1's text).
	c, in := pahoDevice(t, s.Endpoints().MQTT, sensor, "#")
	pahoPublish(t, c, "hello/sensor-1/ping", `{"n":1}`)
	if got := in.wait(t, "hello/world", 1); got[0] != want {
		t.Fatalf("greeting after ping %q, want %q", got[0], want)
	}
	pahoPublish(t, c, "$aws/things/sensor-1/shadow/update", `{"state":{"reported":{"online":true}}}`)
	acc := in.wait(t, "$aws/things/sensor-1/shadow/update/accepted", 1)
	if jsonAt(t, acc[0], "state", "reported", "online") != true {
		t.Fatalf("shadow accepted = %s", acc[0])
	}
	// The function runs as nobody in its container.
	r := ggctl(t, root, "fn", "list")
	if r.code != 0 || !strings.Contains(r.stdout, "GreengrassContainer") {
		t.Fatalf("fn list: %d %s%s", r.code, r.stdout, r.stderr)
	}
}

// The echo-go example: an on-demand Go function answers a device.
func TestEchoGoExample(t *testing.T) {
	root := suitetest.ShortRoot(t)
	suitetest.WriteConfig(t, root, func(cfg map[string]any) {
		cfg["coreThing"] = map[string]any{"thingArn": "arn:aws:iot:us-east-1:123456789012:thing/evergreen-core"}
	})
	s := suitetest.Start(t, root)
	repo, _ := suitetest.RepoRoot()
	code := t.TempDir()
	build := exec.Command("go", "build", "-o", filepath.Join(code, "echo-go"), "./examples/echo-go")
	build.Dir = repo
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build echo-go: %v\n%s", err, out)
	}
	os.Chmod(code, 0o755)
	sensor := createDevice(t, root, "sensor-1")
	group, err := os.ReadFile(filepath.Join(repo, "examples", "echo-go", "group.json"))
	if err != nil {
		t.Fatal(err)
	}
	group = bytes.Replace(group, []byte(`"CodeUri": "function"`), []byte(`"CodeUri": "`+code+`"`), 1)
	group = bytes.Replace(group, []byte("75fcce4506e2b49c935ad64e43250abe43de607c55200dc94f52c7bf2e180e4d"), []byte(sensor.certID), 1)
	gf := filepath.Join(t.TempDir(), "group.json")
	os.WriteFile(gf, group, 0o600)
	if r := ggctl(t, root, "deploy", gf); r.code != 0 {
		t.Fatalf("deploy: %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	c, in := pahoDevice(t, s.Endpoints().MQTT, sensor, "echo/#")
	pahoPublish(t, c, "echo/sensor-1/in", "hi")
	out := in.wait(t, "echo/sensor-1/out", 1)
	if jsonAt(t, out[0], "echo") != "hi" {
		t.Fatalf("echo = %s", out[0])
	}
	if r := ggctl(t, root, "fn", "invoke", "echo-go", "direct"); r.code != 0 || r.stdout != "direct\n" {
		t.Fatalf("fn invoke: %d %q %s", r.code, r.stdout, r.stderr)
	}
}
