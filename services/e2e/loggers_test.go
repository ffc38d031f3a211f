package e2e

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	pahov3 "github.com/eclipse/paho.mqtt.golang"
	"github.com/evergreen-edge/evergreen/services/internal/suitetest"
	"github.com/evergreen-edge/evergreen/services/kit/bustest"
	"github.com/evergreen-edge/evergreen/services/kit/layout"
)

// deployLoggers deploys a group with only a core and these loggers.
func deployLoggers(t *testing.T, root layout.Root, loggers ...map[string]any) {
	t.Helper()
	ls := make([]any, len(loggers))
	for i, l := range loggers {
		l["Id"] = fmt.Sprintf("logger-%d", i)
		ls[i] = l
	}
	g := map[string]any{
		"Core":    map[string]any{"Cores": []any{map[string]any{"Id": "core", "ThingArn": thing("test-core"), "CertificateArn": acct + "cert/" + strings.Repeat("ab", 32)}}},
		"Loggers": map[string]any{"Loggers": ls},
	}
	b, _ := json.MarshalIndent(g, "", " ")
	f := filepath.Join(t.TempDir(), "group.json")
	os.WriteFile(f, b, 0o600)
	if r := ggctl(t, root, "deploy", f); r.code != 0 {
		t.Fatalf("deploy: %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}

func systemLog(root layout.Root, daemon string) string {
	b, _ := os.ReadFile(root.LogFile(daemon))
	return string(b)
}

// The group's GreengrassSystem FileSystem logger at DEBUG puts every
// daemon's log at DEBUG once deployed (and not before); an AWSCloudWatch
// logger without a cloud is reported once by the broker and breaks
// nothing.
func TestLoggersWithoutCloud(t *testing.T) {
	root := suitetest.ShortRoot(t)
	s := suitetest.Launch(t, root)
	if err := s.WaitHealthy(20 * time.Second); err != nil {
		t.Fatal(err)
	}
	// gRPC calls are logged at DEBUG by every daemon.
	if r := ggctl(t, root, "cloud"); r.code != 0 {
		t.Fatalf("ggctl cloud: %d %s", r.code, r.stderr)
	}
	for _, d := range []string{"broker", "deployagent"} {
		if strings.Contains(systemLog(root, d), "level=DEBUG") {
			t.Fatalf("%s logged DEBUG records under config.json's INFO", d)
		}
	}

	deployLoggers(t, root,
		map[string]any{"Component": "GreengrassSystem", "Level": "DEBUG", "Type": "FileSystem", "Space": 2048},
		map[string]any{"Component": "GreengrassSystem", "Level": "INFO", "Type": "AWSCloudWatch"},
	)
	if r := ggctl(t, root, "cloud"); r.code != 0 {
		t.Fatalf("ggctl cloud after the deployment: %d %s", r.code, r.stderr)
	}
	ggctl(t, root, "deployments")
	for _, d := range []string{"broker", "deployagent"} {
		bustest.CheckFor(t, waitLimit, 50*time.Millisecond, func() error {
			if !strings.Contains(systemLog(root, d), "level=DEBUG") {
				return fmt.Errorf("no DEBUG record in %s's log after the deployment", d)
			}
			return nil
		})
	}
	warning := "group has an AWSCloudWatch logger for GreengrassSystem but no cloud is configured (coreThing.iotHost); its records are not forwarded"
	if n := strings.Count(systemLog(root, "broker"), warning); n != 1 {
		t.Errorf("the broker's log has the no-cloud warning %d times, want once", n)
	}
	if err := s.WaitHealthy(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	// The space: 2048 KB for the file and its rotated copies together.
	if !strings.Contains(systemLog(root, "broker"), "system log: group logger DEBUG, 2048 KB") {
		t.Errorf("the broker does not say which loggers are in force")
	}
}

// With a cloud, the records of an AWSCloudWatch logger reach it on
// evergreen/things/<thing>/logs/GreengrassSystem/<daemon>, in JSON
// batches, at or above the logger's level.
func TestLoggersToCloud(t *testing.T) {
	needMosquitto(t)
	cloud := newAWSCloud(t)
	cloud.start()
	root := suitetest.ShortRoot(t)
	cloud.writeConfig(root)
	s := suitetest.Launch(t, root)
	if err := s.WaitHealthy(20 * time.Second); err != nil {
		t.Fatal(err)
	}

	type batch struct {
		topic     string
		Component string           `json:"component"`
		Dropped   int              `json:"dropped"`
		Records   []map[string]any `json:"records"`
	}
	var mu sync.Mutex
	var got []batch
	pool := x509.NewCertPool()
	pool.AddCert(cloud.ca.Cert)
	ops := pahov3.NewClient(pahov3.NewClientOptions().AddBroker("ssl://127.0.0.1:" + strconv.Itoa(cloud.port)).SetClientID("log-reader").
		SetTLSConfig(&tls.Config{RootCAs: pool}))
	if tok := ops.Connect(); !tok.WaitTimeout(waitLimit) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	defer ops.Disconnect(0)
	if tok := ops.Subscribe("evergreen/things/test-core/logs/#", 1, func(_ pahov3.Client, m pahov3.Message) {
		var b batch
		if err := json.Unmarshal(m.Payload(), &b); err != nil {
			t.Errorf("batch on %s is not JSON: %v", m.Topic(), err)
			return
		}
		b.topic = m.Topic()
		mu.Lock()
		got = append(got, b)
		mu.Unlock()
	}); !tok.WaitTimeout(waitLimit) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}

	deployLoggers(t, root, map[string]any{"Component": "GreengrassSystem", "Level": "INFO", "Type": "AWSCloudWatch"})
	ggctl(t, root, "cloud") // a DEBUG record in the broker: below the level
	find := func(daemon, msg string) (map[string]any, error) {
		mu.Lock()
		defer mu.Unlock()
		for _, b := range got {
			for _, r := range b.Records {
				if r["daemon"] == daemon && r["msg"] == msg {
					if want := "evergreen/things/test-core/logs/GreengrassSystem/" + daemon; b.topic != want || b.Component != "GreengrassSystem/"+daemon {
						return nil, fmt.Errorf("%s's record on %s (component %s), want %s", daemon, b.topic, b.Component, want)
					}
					return r, nil
				}
			}
		}
		return nil, fmt.Errorf("no %q record of %s in the cloud yet (%d batches)", msg, daemon, len(got))
	}
	// Every daemon that publishes on the bus says, at INFO, which loggers
	// it put in force; the deployagent says the deployment succeeded.
	for _, w := range [][2]string{{"broker", "group loggers in force"}, {"shadow", "group loggers in force"}, {"deployagent", "deployment succeeded"}} {
		bustest.CheckFor(t, 30*time.Second, 200*time.Millisecond, func() error {
			r, err := find(w[0], w[1])
			if err == nil && (r["level"] != "INFO" || r["time"] == nil) {
				err = fmt.Errorf("record %v", r)
			}
			return err
		})
	}
	mu.Lock()
	defer mu.Unlock()
	for _, b := range got {
		for _, r := range b.Records {
			if r["level"] == "DEBUG" {
				t.Errorf("a DEBUG record went to the cloud under an INFO logger: %v", r)
			}
		}
	}
}

// A function's log records reach the cloud under the group's Lambda
// AWSCloudWatch logger, on evergreen/things/<thing>/logs/Lambda/<name>, at
// or above the logger's level; the function's FileSystem log keeps both.
func TestLambdaLogsToCloud(t *testing.T) {
	needMosquitto(t)
	needPython(t)
	cloud := newAWSCloud(t)
	cloud.start()
	root := suitetest.ShortRoot(t)
	cloud.writeConfig(root)
	s := suitetest.Launch(t, root)
	if err := s.WaitHealthy(20 * time.Second); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	type line struct{ topic, component, level, msg string }
	var got []line
	pool := x509.NewCertPool()
	pool.AddCert(cloud.ca.Cert)
	ops := pahov3.NewClient(pahov3.NewClientOptions().AddBroker("ssl://127.0.0.1:" + strconv.Itoa(cloud.port)).SetClientID("lambda-log-reader").
		SetTLSConfig(&tls.Config{RootCAs: pool}))
	if tok := ops.Connect(); !tok.WaitTimeout(waitLimit) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	defer ops.Disconnect(0)
	if tok := ops.Subscribe("evergreen/things/test-core/logs/Lambda/#", 1, func(_ pahov3.Client, m pahov3.Message) {
		var b struct {
			Component string           `json:"component"`
			Records   []map[string]any `json:"records"`
		}
		if err := json.Unmarshal(m.Payload(), &b); err != nil {
			t.Errorf("batch on %s is not JSON: %v", m.Topic(), err)
			return
		}
		mu.Lock()
		defer mu.Unlock()
		for _, r := range b.Records {
			l, _ := r["level"].(string)
			msg, _ := r["msg"].(string)
			got = append(got, line{m.Topic(), b.Component, l, msg})
		}
	}); !tok.WaitTimeout(waitLimit) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}

	fnDir, _ := filepath.Abs("testdata/fns/logger")
	g := map[string]any{
		"Core": map[string]any{"Cores": []any{map[string]any{"Id": "core", "ThingArn": thing("test-core"), "CertificateArn": acct + "cert/" + strings.Repeat("ab", 32)}}},
		"Functions": map[string]any{
			"DefaultConfig": map[string]any{"Execution": map[string]any{"IsolationMode": "NoContainer"}},
			"Functions": []any{map[string]any{"Id": "logger", "FunctionArn": "arn:aws:lambda:us-east-1:123456789012:function:logger:1",
				"FunctionConfiguration": map[string]any{"Pinned": false, "Timeout": 10, "EncodingType": "json"},
				"Evergreen":             map[string]any{"Runtime": "python3.8", "Handler": "main.handler", "CodeUri": fnDir}}}},
		"Loggers": map[string]any{"Loggers": []any{
			map[string]any{"Id": "l1", "Component": "Lambda", "Level": "WARN", "Type": "AWSCloudWatch"},
			map[string]any{"Id": "l2", "Component": "Lambda", "Level": "INFO", "Type": "FileSystem", "Space": 1024},
		}},
	}
	b, _ := json.Marshal(g)
	gf := filepath.Join(t.TempDir(), "group.json")
	os.WriteFile(gf, b, 0o600)
	if r := ggctl(t, root, "deploy", gf); r.code != 0 {
		t.Fatalf("deploy: %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if r := ggctl(t, root, "fn", "invoke", "logger", `{"n":7}`); r.code != 0 || !strings.Contains(r.stdout, `"logged": 7`) && !strings.Contains(r.stdout, `"logged":7`) {
		t.Fatalf("invoke: %d %s%s", r.code, r.stdout, r.stderr)
	}
	bustest.CheckFor(t, 30*time.Second, 200*time.Millisecond, func() error {
		mu.Lock()
		defer mu.Unlock()
		for _, l := range got {
			if strings.Contains(l.msg, "lambda-warn-7") {
				if l.topic != "evergreen/things/test-core/logs/Lambda/logger" || l.component != "Lambda/logger" || l.level != "WARN" {
					return fmt.Errorf("the WARN line arrived as %+v", l)
				}
				return nil
			}
		}
		return fmt.Errorf("no lambda-warn-7 in the cloud yet: %+v", got)
	})
	time.Sleep(500 * time.Millisecond) // a later batch would carry the INFO line
	mu.Lock()
	for _, l := range got {
		if strings.Contains(l.msg, "lambda-info-7") {
			t.Errorf("an INFO line went to the cloud under a WARN logger: %+v", l)
		}
	}
	mu.Unlock()
	fileLog, _ := os.ReadFile(filepath.Join(root.LogsDir(), "user", "logger.log"))
	if !strings.Contains(string(fileLog), "lambda-info-7") || !strings.Contains(string(fileLog), "lambda-warn-7") {
		t.Errorf("the function's log file lacks a line:\n%s", fileLog)
	}
}
