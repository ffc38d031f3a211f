package cli

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	brokerv1 "github.com/evergreen-edge/evergreen/proto/evergreen/broker/v1"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

func device(name string) *brokerv1.Endpoint {
	return &brokerv1.Endpoint{Kind: brokerv1.EndpointKind_ENDPOINT_KIND_DEVICE, Name: name}
}

func function(a string) *brokerv1.Endpoint {
	return &brokerv1.Endpoint{Kind: brokerv1.EndpointKind_ENDPOINT_KIND_FUNCTION, Name: a}
}

func connector(a string) *brokerv1.Endpoint {
	return &brokerv1.Endpoint{Kind: brokerv1.EndpointKind_ENDPOINT_KIND_CONNECTOR, Name: a}
}

var (
	cloudEndpoint  = &brokerv1.Endpoint{Kind: brokerv1.EndpointKind_ENDPOINT_KIND_CLOUD}
	shadowEndpoint = &brokerv1.Endpoint{Kind: brokerv1.EndpointKind_ENDPOINT_KIND_SHADOW}
)

func TestParseSource(t *testing.T) {
	const sysFn = "arn:aws:lambda:::function:GGCloudSpooler:1"
	for _, tc := range []struct {
		in   string
		want *brokerv1.Endpoint
		err  string
	}{
		{"cloud", cloudEndpoint, ""},
		{"GGShadowService", shadowEndpoint, ""},
		{"device:sensor-1", device("sensor-1"), ""},
		{"device:a:b_c-1", device("a:b_c-1"), ""},
		{"function:" + helloARN, function(helloARN), ""},
		{"function:" + sysFn, function(sysFn), ""},
		{"connector:" + connectorARN, connector(connectorARN), ""},
		// A subscription's Source as the group writes it.
		{sensorARN, device("sensor-1"), ""},
		{"arn:aws-cn:iot:cn-north-1:123456789012:thing/core", device("core"), ""},
		{helloARN, function(helloARN), ""},
		{sysFn, function(sysFn), ""},
		{connectorARN, connector(connectorARN), ""},

		{"", nil, "source is empty"},
		{"Cloud", nil, `"Cloud" is not a source; want cloud, GGShadowService, device:NAME`},
		{"shadow", nil, `"shadow" is not a source`},
		{"sensor-1", nil, `"sensor-1" is not a source`},
		{"thing:sensor-1", nil, `"thing:sensor-1" is not a source`},
		{"device:", nil, "thing name is empty"},
		{"device:bad/name", nil, "may only contain letters"},
		{"device:" + strings.Repeat("x", 129), nil, "the limit is 128"},
		{"function:hello", nil, "is not an ARN"},
		{"function:arn:aws:lambda:eu-west-1:123456789012:function:hello", nil, "no version or alias qualifier"},
		{"function:" + sensorARN, nil, `service is "iot", want "lambda"`},
		{"connector:arn:aws:greengrass:eu-west-1::/connectors/X", nil, "is not /connectors/<Name>/versions/<n>"},
		{"arn:aws:iot:eu-west-1:123456789012:cert/abc", nil, `does not start with "thing/"`},
		{"arn:aws:s3:::bucket", nil, `service "s3" cannot be a subscription endpoint`},
		{"arn:aws:lambda:eu-west-1:123456789012:function:hello:$LATEST", nil, "$LATEST is not allowed"},
	} {
		got, err := parseSource(tc.in)
		switch {
		case tc.err == "" && err != nil:
			t.Errorf("parseSource(%q): %v", tc.in, err)
		case tc.err == "" && !proto.Equal(got, tc.want):
			t.Errorf("parseSource(%q) = %v, want %v", tc.in, got, tc.want)
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("parseSource(%q) = %v, %v; want error containing %q", tc.in, got, err, tc.err)
		}
	}
}

// Endpoints print in the form --as takes, so a source seen in `sub` can be
// published as again.
func TestEndpointStringRoundTrips(t *testing.T) {
	for _, tc := range []struct {
		e    *brokerv1.Endpoint
		want string
	}{
		{cloudEndpoint, "cloud"},
		{shadowEndpoint, "GGShadowService"},
		{device("sensor-1"), "device:sensor-1"},
		{function(helloARN), "function:" + helloARN},
		{connector(connectorARN), "connector:" + connectorARN},
	} {
		s := endpointString(tc.e)
		if s != tc.want {
			t.Errorf("endpointString(%v) = %q, want %q", tc.e, s, tc.want)
		}
		back, err := parseSource(s)
		if err != nil || !proto.Equal(back, tc.e) {
			t.Errorf("parseSource(%q) = %v, %v; want %v", s, back, err, tc.e)
		}
	}
	if got := endpointString(&brokerv1.Endpoint{}); got != "unspecified" {
		t.Errorf("unspecified endpoint: %q", got)
	}
	if got := endpointString(&brokerv1.Endpoint{Kind: 9, Name: "x"}); got != "9:x" {
		t.Errorf("unknown kind: %q", got)
	}
}

func TestPayloadText(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   []byte
		want string
	}{
		{"text", []byte(`{"t":21.5}`), `{"t":21.5}`},
		{"spaces", []byte("on air"), "on air"},
		{"unicode", []byte("température 21 °C"), "température 21 °C"},
		{"newlines escaped", []byte("{\n\t\"t\": 21\r\n}"), `{\n\t"t": 21\r\n}`},
		{"empty", nil, "<0 bytes>"},
		{"one byte binary", []byte{0}, "<1 byte>"},
		{"invalid UTF-8", []byte{0xff, 0xfe, 'a'}, "<3 bytes>"},
		{"control character", []byte("\x1b[31mred"), "<8 bytes>"},
		{"200 characters kept", []byte(strings.Repeat("x", 200)), strings.Repeat("x", 200)},
		{"201 characters cut", []byte(strings.Repeat("x", 201)), strings.Repeat("x", 200) + "…"},
		{"characters, not bytes", []byte(strings.Repeat("é", 300)), strings.Repeat("é", 200) + "…"},
		{"binary after the cut", append([]byte(strings.Repeat("x", 300)), 0), "<301 bytes>"},
	} {
		if got := payloadText(tc.in); got != tc.want {
			t.Errorf("%s: payloadText = %q, want %q", tc.name, got, tc.want)
		}
	}
}

func TestHumanBytesAndMQTTVersion(t *testing.T) {
	for n, want := range map[uint64]string{0: "0 B", 1023: "1023 B", 4096: "4.0 KiB", 262144: "256.0 KiB", 2621440: "2.5 MiB", 3 << 30: "3.0 GiB"} {
		if got := humanBytes(n); got != want {
			t.Errorf("humanBytes(%d) = %q, want %q", n, got, want)
		}
	}
	for v, want := range map[uint32]string{3: "3.1", 4: "3.1.1", 5: "5", 0: "", 6: "6"} {
		if got := mqttVersion(v); got != want {
			t.Errorf("mqttVersion(%d) = %q, want %q", v, got, want)
		}
	}
}

func TestPub(t *testing.T) {
	s := newSuite(t)
	b := s.broker(newFakeBroker())

	// Default source cloud; two overlapping subscriptions reach the sensor
	// once.
	r := s.ggctl("pub", "commands/sensor-1/reboot", "now")
	wantExit(t, r, ExitOK)
	if r.stdout != "delivered to 2 targets: device:sensor-1, function:"+helloARN+"\n" || r.stderr != "" {
		t.Fatalf("pub: %s", r)
	}
	want := &brokerv1.PublishRequest{Source: cloudEndpoint, Topic: "commands/sensor-1/reboot", Payload: []byte("now")}
	if got := b.lastRequest(); !proto.Equal(got, want) {
		t.Fatalf("broker received %v, want %v", got, want)
	}

	r = s.ggctl("pub", "--as", "device:sensor-1", "sensors/kitchen/temp", "21.5", "--qos", "1")
	wantExit(t, r, ExitOK)
	if r.stdout != "delivered to 1 target: cloud\n" {
		t.Fatalf("pub --as device: %s", r)
	}
	want = &brokerv1.PublishRequest{Source: device("sensor-1"), Topic: "sensors/kitchen/temp", Payload: []byte("21.5"), Qos: 1}
	if got := b.lastRequest(); !proto.Equal(got, want) {
		t.Fatalf("broker received %v, want %v", got, want)
	}

	// A Source copied from the group works as well.
	for _, tc := range []struct{ as, topic, out string }{
		{sensorARN, "sensors/hall/temp", "delivered to 1 target: cloud\n"},
		{helloARN, "hello/out", "delivered to 1 target: GGShadowService\n"},
		{"function:" + helloARN, "hello/out", "delivered to 1 target: GGShadowService\n"},
		{connectorARN, "alerts", "delivered to 1 target: device:sensor-1\n"},
		{"GGShadowService", "$aws/things/sensor-1/shadow/update/delta", "delivered to 1 target: device:sensor-1\n"},
	} {
		r = s.ggctl("pub", tc.topic, "x", "--as", tc.as)
		wantExit(t, r, ExitOK)
		if r.stdout != tc.out {
			t.Fatalf("pub --as %s %s: %s", tc.as, tc.topic, r)
		}
	}

	// No subscription matches: said plainly, and not an error.
	for _, args := range [][]string{
		{"pub", "nothing/here", "x"},
		{"pub", "sensors/kitchen/temp", "x"}, // from the cloud, not from the sensor
		{"pub", "--as", "device:sensor-2", "sensors/kitchen/temp", "x"},
	} {
		r = s.ggctl(args...)
		wantExit(t, r, ExitOK)
		if r.stdout != "no subscription matches: nothing delivered\n" || r.stderr != "" {
			t.Fatalf("%v: %s", args, r)
		}
	}
}

func TestPubJSON(t *testing.T) {
	s := newSuite(t)
	s.broker(newFakeBroker())
	r := s.ggctl("--json", "pub", "commands/sensor-1/reboot", "now")
	wantExit(t, r, ExitOK)
	var resp struct {
		Targets []struct {
			Kind string `json:"kind"`
			Name string `json:"name"`
		} `json:"targets"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &resp); err != nil || len(resp.Targets) != 2 ||
		resp.Targets[0].Kind != "ENDPOINT_KIND_DEVICE" || resp.Targets[0].Name != "sensor-1" ||
		resp.Targets[1].Kind != "ENDPOINT_KIND_FUNCTION" || resp.Targets[1].Name != helloARN {
		t.Fatalf("pub --json: %v %s", err, r)
	}
	r = s.ggctl("pub", "nothing/here", "x", "--json")
	wantExit(t, r, ExitOK)
	if strings.Join(strings.Fields(r.stdout), "") != `{"targets":[]}` {
		t.Fatalf("pub --json without targets: %s", r)
	}
}

func TestPubPayloadFromStdinAndFile(t *testing.T) {
	s := newSuite(t)
	b := s.broker(newFakeBroker())
	body := "{\n  \"t\": 21.5\n}\n"

	r := s.ggctlStdin(body, "pub", "sensors/kitchen/temp", "-", "--as", "device:sensor-1")
	wantExit(t, r, ExitOK)
	if got := b.lastRequest(); string(got.GetPayload()) != body {
		t.Fatalf("payload from stdin: %q, %s", got.GetPayload(), r)
	}
	r = s.ggctlStdin(body+"again", "pub", "sensors/kitchen/temp", "--file", "-", "--as", "device:sensor-1")
	wantExit(t, r, ExitOK)
	if got := b.lastRequest(); string(got.GetPayload()) != body+"again" {
		t.Fatalf("payload from --file -: %q", got.GetPayload())
	}
	// An empty payload is a payload.
	r = s.ggctlStdin("", "pub", "commands/all", "-")
	wantExit(t, r, ExitOK)
	if got := b.lastRequest(); got.GetTopic() != "commands/all" || len(got.GetPayload()) != 0 {
		t.Fatalf("empty payload: %v", got)
	}

	// Binary payloads go byte for byte.
	bin := []byte{0, 1, 2, 0xff, '\n', 0xfe}
	file := filepath.Join(t.TempDir(), "payload.bin")
	if err := os.WriteFile(file, bin, 0o644); err != nil {
		t.Fatal(err)
	}
	r = s.ggctl("pub", "commands/sensor-1/blob", "--file", file)
	wantExit(t, r, ExitOK)
	if got := b.lastRequest(); !bytes.Equal(got.GetPayload(), bin) {
		t.Fatalf("payload from --file: %v", got.GetPayload())
	}
}

func TestPubRefused(t *testing.T) {
	s := newSuite(t)
	b := s.broker(newFakeBroker())

	// The broker's INVALID_ARGUMENT exits 2 with its message.
	big := filepath.Join(t.TempDir(), "big")
	if err := os.WriteFile(big, bytes.Repeat([]byte("x"), fakeMaxPayload+1), 0o644); err != nil {
		t.Fatal(err)
	}
	r := s.ggctl("pub", "commands/all", "--file", big)
	wantExit(t, r, ExitUsage)
	wantOneErrorLine(t, r, "payload: 131073 bytes, the limit is 131072 (128 KB): invalid argument")
	if r.stdout != "" {
		t.Fatalf("refused pub wrote to stdout: %s", r)
	}

	// No group deployed: FAILED_PRECONDITION exits 1 with the broker's
	// message.
	b.mu.Lock()
	b.deploymentID = ""
	b.mu.Unlock()
	r = s.ggctl("pub", "commands/all", "x")
	wantExit(t, r, ExitFailed)
	wantOneErrorLine(t, r, "no group is deployed: failed precondition", "deploy a group first: ggctl deploy FILE")
}

// Routed messages stream as lines until -n COUNT of them have been printed;
// then ggctl ends by itself with exit 0.
func TestSubCount(t *testing.T) {
	s := newSuite(t)
	b := s.broker(newFakeBroker())

	var stdout, stderr syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- RunContext(t.Context(), []string{"--root", s.root, "sub", "-n", "4", "#"}, &stdout, &stderr)
	}()
	checkFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		if n := b.openTaps(); n != 1 {
			return fmt.Errorf("%d taps open", n)
		}
		return nil
	})

	wantExit(t, s.ggctl("pub", "sensors/kitchen/temp", "21.5", "--as", "device:sensor-1"), ExitOK)
	at := time.Date(2025, 11, 20, 9, 30, 1, 250_000_000, time.UTC)
	stamp := at.Local().Format("15:04:05.000")
	b.inject(&brokerv1.RoutedMessage{Topic: "commands/sensor-1/blob", Payload: []byte{0xff, 0, 1}, Source: cloudEndpoint,
		Targets: []*brokerv1.Endpoint{device("sensor-1"), function(helloARN)}, Time: timestamppb.New(at)})
	b.inject(&brokerv1.RoutedMessage{Topic: "logs/long", Payload: []byte(strings.Repeat("ab", 150)), Source: function(helloARN),
		Time: timestamppb.New(at)})
	b.inject(&brokerv1.RoutedMessage{Topic: "alerts", Payload: []byte("{\n\"level\": \"high\"\n}"), Source: connector(connectorARN),
		Targets: []*brokerv1.Endpoint{device("sensor-1")}, Time: timestamppb.New(at)})
	// Never printed: -n 4 has ended the stream.
	b.inject(&brokerv1.RoutedMessage{Topic: "alerts", Payload: []byte("fifth"), Source: connector(connectorARN)})

	select {
	case code := <-done:
		if code != ExitOK || stderr.String() != "" {
			t.Fatalf("sub -n 4: exit %d, stderr %q", code, stderr.String())
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("sub -n 4 did not end after 4 messages:\n%s", stdout.String())
	}
	lines := strings.Split(strings.TrimSuffix(stdout.String(), "\n"), "\n")
	if len(lines) != 4 {
		t.Fatalf("want 4 lines, got:\n%s", stdout.String())
	}
	if !regexp.MustCompile(`^\d\d:\d\d:\d\d\.\d{3} device:sensor-1 -> cloud sensors/kitchen/temp 21\.5$`).MatchString(lines[0]) {
		t.Fatalf("line 1: %q", lines[0])
	}
	for i, want := range []string{
		stamp + " cloud -> device:sensor-1,function:" + helloARN + " commands/sensor-1/blob <3 bytes>",
		stamp + " function:" + helloARN + " -> - logs/long " + strings.Repeat("ab", 100) + "…",
		stamp + " connector:" + connectorARN + ` -> device:sensor-1 alerts {\n"level": "high"\n}`,
	} {
		if lines[i+1] != want {
			t.Fatalf("line %d:\n got %q\nwant %q", i+2, lines[i+1], want)
		}
	}
	checkFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		if n := b.openTaps(); n != 0 {
			return fmt.Errorf("the tap is still open after sub ended (%d)", n)
		}
		return nil
	})
}

// sub --json prints one RoutedMessage per line, the payload in base64 as
// protojson writes bytes.
func TestSubJSONLines(t *testing.T) {
	s := newSuite(t)
	b := s.broker(newFakeBroker())
	var stdout, stderr syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- RunContext(t.Context(), []string{"--root", s.root, "--json", "sub", "sensors/+/temp", "-n", "2"}, &stdout, &stderr)
	}()
	checkFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		if n := b.openTaps(); n != 1 {
			return fmt.Errorf("%d taps open", n)
		}
		return nil
	})
	// Not matching the filter: not printed.
	wantExit(t, s.ggctl("pub", "commands/all", "x"), ExitOK)
	wantExit(t, s.ggctl("pub", "sensors/kitchen/temp", "21.5", "--as", "device:sensor-1", "--qos", "1"), ExitOK)
	wantExit(t, s.ggctl("pub", "sensors/hall/temp", "19", "--as", "device:sensor-2"), ExitOK)
	select {
	case code := <-done:
		if code != ExitOK {
			t.Fatalf("sub --json: exit %d, stderr %q", code, stderr.String())
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("sub --json -n 2 did not end:\n%s", stdout.String())
	}
	lines := strings.Split(strings.TrimSuffix(stdout.String(), "\n"), "\n")
	if len(lines) != 2 {
		t.Fatalf("want 2 JSON lines, got:\n%s", stdout.String())
	}
	type endpoint struct{ Kind, Name string }
	var m struct {
		Topic   string     `json:"topic"`
		Payload string     `json:"payload"`
		Source  endpoint   `json:"source"`
		Targets []endpoint `json:"targets"`
		Qos     int        `json:"qos"`
		Time    string     `json:"time"`
	}
	if err := json.Unmarshal([]byte(lines[0]), &m); err != nil {
		t.Fatalf("line 1 %q: %v", lines[0], err)
	}
	if m.Topic != "sensors/kitchen/temp" || m.Payload != base64.StdEncoding.EncodeToString([]byte("21.5")) || m.Qos != 1 ||
		m.Source != (endpoint{"ENDPOINT_KIND_DEVICE", "sensor-1"}) || len(m.Targets) != 1 || m.Targets[0].Kind != "ENDPOINT_KIND_CLOUD" || m.Time == "" {
		t.Fatalf("line 1: %+v", m)
	}
	m.Targets = nil
	if err := json.Unmarshal([]byte(lines[1]), &m); err != nil || m.Topic != "sensors/hall/temp" || len(m.Targets) != 0 {
		t.Fatalf("line 2 %q: %v %+v", lines[1], err, m)
	}
}

// Without -n, sub runs until Ctrl-C (the cancelled context), then exits 0
// and closes its tap.
func TestSubUntilInterrupted(t *testing.T) {
	s := newSuite(t)
	b := s.broker(newFakeBroker())
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var stdout, stderr syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- RunContext(ctx, []string{"--root", s.root, "sub", "commands/#"}, &stdout, &stderr)
	}()
	checkFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		if n := b.openTaps(); n != 1 {
			return fmt.Errorf("%d taps open", n)
		}
		return nil
	})
	for i := range 3 {
		wantExit(t, s.ggctl("pub", "commands/all", fmt.Sprint("msg ", i)), ExitOK)
	}
	checkFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		if n := strings.Count(stdout.String(), "\n"); n != 3 {
			return fmt.Errorf("%d lines printed:\n%s", n, stdout.String())
		}
		return nil
	})
	if !strings.HasSuffix(stdout.String(), " cloud -> device:sensor-1 commands/all msg 2\n") {
		t.Fatalf("sub output:\n%s", stdout.String())
	}
	select {
	case code := <-done:
		t.Fatalf("sub ended by itself with exit %d", code)
	default:
	}
	cancel()
	select {
	case code := <-done:
		if code != ExitOK || stderr.String() != "" {
			t.Fatalf("sub interrupted: exit %d, stderr %q", code, stderr.String())
		}
	case <-time.After(5 * time.Second):
		t.Fatal("sub did not stop on interrupt")
	}
	checkFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		if n := b.openTaps(); n != 0 {
			return fmt.Errorf("the tap is still open after the interrupt (%d)", n)
		}
		return nil
	})
}

func TestSubRefusedOrEnded(t *testing.T) {
	s := newSuite(t)
	b := newFakeBroker()
	b.maxTaps = 0
	s.broker(b)

	r := s.ggctl("sub", "#")
	wantExit(t, r, ExitFailed)
	wantOneErrorLine(t, r, "0 taps are already open: resource exhausted")

	// The broker ending the stream (shutdown) is not a normal end.
	b.mu.Lock()
	b.maxTaps = 16
	b.mu.Unlock()
	var stdout, stderr syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- RunContext(t.Context(), []string{"--root", s.root, "sub", "a/b"}, &stdout, &stderr)
	}()
	checkFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		if n := b.openTaps(); n != 1 {
			return fmt.Errorf("%d taps open", n)
		}
		return nil
	})
	b.endTaps()
	select {
	case code := <-done:
		if code != ExitFailed || stderr.String() != "ggctl: the broker ended the subscription to a/b after 0 messages (is it shutting down?)\n" {
			t.Fatalf("sub ended by the broker: exit %d, stderr %q", code, stderr.String())
		}
	case <-time.After(5 * time.Second):
		t.Fatal("sub did not end with the stream")
	}
}

func TestSubscriptions(t *testing.T) {
	s := newSuite(t)
	b := s.broker(newFakeBroker())
	r := s.ggctl("subscriptions")
	wantExit(t, r, ExitOK)
	lines := strings.Split(r.stdout, "\n")
	if lines[0] != "deployment dep-1: 7 subscriptions" || !regexp.MustCompile(`^ID +SOURCE +SUBJECT +TARGET$`).MatchString(lines[1]) {
		t.Fatalf("subscriptions header:\n%s", r.stdout)
	}
	for _, re := range []string{
		`(?m)^temp-up +` + regexp.QuoteMeta(sensorARN) + ` +sensors/\+/temp +cloud$`,
		`(?m)^cmd-hello +cloud +commands/sensor-1/\+ +` + regexp.QuoteMeta(helloARN) + `$`,
		`(?m)^shadow-sensor +GGShadowService +\$aws/things/sensor-1/shadow/# +` + regexp.QuoteMeta(sensorARN) + `$`,
	} {
		if !regexp.MustCompile(re).MatchString(r.stdout) {
			t.Fatalf("subscriptions lacks %s:\n%s", re, r.stdout)
		}
	}
	// The group's order is kept.
	if strings.Index(r.stdout, "temp-up") > strings.Index(r.stdout, "shadow-sensor") {
		t.Fatalf("subscriptions reordered:\n%s", r.stdout)
	}

	r = s.ggctl("subscriptions", "--json")
	wantExit(t, r, ExitOK)
	var resp struct {
		DeploymentID  string `json:"deploymentId"`
		Subscriptions []struct {
			ID, Source, Subject, Target string
		} `json:"subscriptions"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &resp); err != nil || resp.DeploymentID != "dep-1" || len(resp.Subscriptions) != 7 ||
		resp.Subscriptions[0].Source != sensorARN || resp.Subscriptions[0].Subject != "sensors/+/temp" {
		t.Fatalf("subscriptions --json: %v %s", err, r)
	}

	b.mu.Lock()
	b.subscriptions = nil
	b.mu.Unlock()
	r = s.ggctl("subscriptions")
	wantExit(t, r, ExitOK)
	if r.stdout != "deployment dep-1: no subscriptions, nothing is routed\n" {
		t.Fatalf("empty table: %s", r)
	}
	b.mu.Lock()
	b.deploymentID = ""
	b.mu.Unlock()
	r = s.ggctl("subscriptions")
	wantExit(t, r, ExitOK)
	if r.stdout != "no group is deployed: no subscriptions, nothing is routed\n" {
		t.Fatalf("no group: %s", r)
	}
	r = s.ggctl("subscriptions", "--json")
	wantExit(t, r, ExitOK)
	if strings.Join(strings.Fields(r.stdout), "") != `{"deploymentId":"","subscriptions":[]}` {
		t.Fatalf("no group --json: %s", r)
	}
}

func TestClients(t *testing.T) {
	s := newSuite(t)
	b := s.broker(newFakeBroker())
	r := s.ggctl("clients")
	wantExit(t, r, ExitOK)
	lines := strings.Split(strings.TrimSuffix(r.stdout, "\n"), "\n")
	if len(lines) != 3 || !regexp.MustCompile(`^CLIENT-ID +ADDRESS +PROTOCOL +CONNECTED-SINCE +SUBSCRIPTIONS +IN +OUT$`).MatchString(lines[0]) {
		t.Fatalf("clients:\n%s", r.stdout)
	}
	// Sorted by client id; 4 is MQTT 3.1.1; at most three subscriptions
	// shown.
	for i, re := range []string{
		`^sensor-1 +192\.0\.2\.11:50001 +3\.1\.1 +\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \(2h0[45]m\) +commands/#,\$aws/things/sensor-1/shadow/#,alerts \(\+2 more\) +1234 +56$`,
		`^sensor-2 +192\.0\.2\.12:51002 +5 +\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \(1h0[45]m\) +- +7 +0$`,
	} {
		if !regexp.MustCompile(re).MatchString(lines[i+1]) {
			t.Fatalf("clients row %d %q lacks %s", i+1, lines[i+1], re)
		}
	}
	// Columns line up.
	col := strings.Index(lines[0], "PROTOCOL")
	for _, l := range lines[1:] {
		if l[col-1] != ' ' || l[col] == ' ' {
			t.Fatalf("columns not aligned:\n%s", r.stdout)
		}
	}

	r = s.ggctl("clients", "--json")
	wantExit(t, r, ExitOK)
	var resp struct {
		Clients []struct {
			ClientID        string   `json:"clientId"`
			ProtocolVersion int      `json:"protocolVersion"`
			Subscriptions   []string `json:"subscriptions"`
			MessagesIn      string   `json:"messagesIn"`
		} `json:"clients"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &resp); err != nil || len(resp.Clients) != 2 ||
		resp.Clients[1].ClientID != "sensor-1" || len(resp.Clients[1].Subscriptions) != 5 || resp.Clients[1].MessagesIn != "1234" {
		t.Fatalf("clients --json: %v %s", err, r)
	}

	b.mu.Lock()
	b.clients = nil
	b.mu.Unlock()
	r = s.ggctl("clients")
	wantExit(t, r, ExitOK)
	if r.stdout != "no devices connected\n" {
		t.Fatalf("no clients: %s", r)
	}
}

func TestCloud(t *testing.T) {
	s := newSuite(t)
	b := s.broker(newFakeBroker())
	r := s.ggctl("cloud")
	wantExit(t, r, ExitOK)
	for _, re := range []string{
		`(?m)^State: +CONNECTED$`,
		`(?m)^Endpoint: +abc123-ats\.iot\.eu-west-1\.amazonaws\.com:8883$`,
		`(?m)^Last error: +connection lost: EOF$`,
		`(?m)^Reconnects: +3$`,
		`(?m)^Storage: +FileSystem$`,
		`(?m)^Queue: +12 messages, 4\.0 KiB of 2\.5 MiB \(0\.2% full\)$`,
		`(?m)^Sent: +98765$`,
		`(?m)^Dropped: +2$`,
		`(?m)^In flight: +5$`,
		`(?m)^Cloud subscriptions: +2\n  commands/#\n  commands/sensor-1/\+\n\z`,
	} {
		if !regexp.MustCompile(re).MatchString(r.stdout) {
			t.Fatalf("cloud lacks %s:\n%s", re, r.stdout)
		}
	}

	r = s.ggctl("cloud", "--json")
	wantExit(t, r, ExitOK)
	var st struct {
		State         string `json:"state"`
		QueueMaxBytes string `json:"queueMaxBytes"`
		Dropped       string `json:"dropped"`
		InFlight      int    `json:"inFlight"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &st); err != nil || st.State != "CLOUD_STATE_CONNECTED" || st.QueueMaxBytes != "2621440" || st.Dropped != "2" || st.InFlight != 5 {
		t.Fatalf("cloud --json: %v %s", err, r)
	}

	b.mu.Lock()
	b.cloud = &brokerv1.CloudStatus{State: brokerv1.CloudState_CLOUD_STATE_DISABLED, StorageType: "Memory", QueueMaxBytes: 2621440}
	b.mu.Unlock()
	r = s.ggctl("cloud")
	wantExit(t, r, ExitOK)
	for _, re := range []string{
		`(?m)^State: +DISABLED \(no coreThing\.iotHost: the core runs offline\)$`,
		`(?m)^Endpoint: +-$`,
		`(?m)^Last error: +-$`,
		`(?m)^Queue: +0 messages, 0 B of 2\.5 MiB \(0\.0% full\)$`,
		`(?m)^Cloud subscriptions: +0\n\z`,
	} {
		if !regexp.MustCompile(re).MatchString(r.stdout) {
			t.Fatalf("disabled cloud lacks %s:\n%s", re, r.stdout)
		}
	}
}

// Every broker command reports a missing or dead broker socket with exit 3
// and the usual hint.
func TestBrokerUnreachable(t *testing.T) {
	s := newSuite(t)
	commands := [][]string{
		{"pub", "commands/all", "x"},
		{"sub", "#"},
		{"subscriptions"},
		{"clients"},
		{"cloud"},
	}
	for _, args := range commands {
		r := s.ggctl(args...)
		wantExit(t, r, ExitUnreachable)
		wantOneErrorLine(t, r, "cannot reach broker: no socket at "+s.socket("broker"), "is the suite running? (ggd --root "+s.root+")")
	}
	s.staleSocket(brokerDaemon)
	for _, args := range commands {
		r := s.ggctl(args...)
		wantExit(t, r, ExitUnreachable)
		wantOneErrorLine(t, r, "cannot reach broker: connection refused", "is the suite running?")
	}
}
