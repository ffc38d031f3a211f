package router

import (
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/evergreen-edge/evergreen/services/kit/groupdef"
	"github.com/evergreen-edge/evergreen/services/kit/topic"
)

const (
	lambdaPrefix = "arn:aws:lambda:eu-central-1:123456789012:function:"
	thingPrefix  = "arn:aws:iot:eu-central-1:123456789012:thing/"
	twilioARN    = "arn:aws:greengrass:eu-central-1::/connectors/TwilioNotifications/versions/5"
)

// The endpoints of testdata/hall.json, plus some that are not in it.
var (
	sensor1    = Device("sensor-1")
	sensor2    = Device("sensor-2")
	sensor3    = Device("sensor-3")
	actuator   = Device("actuator-1")
	gateway    = Device("gateway-1")
	hallCore   = Device("hall-core")
	intruder   = Device("intruder")
	filterProd = Function(lambdaPrefix + "filter:prod")
	filter2    = Function(lambdaPrefix + "filter:2")
	aggregate  = Function(lambdaPrefix + "aggregate:3")
	alerts     = Function(lambdaPrefix + "alerts:live")
	spooler    = Function("arn:aws:lambda:::function:GGCloudSpooler:1")
	twilio     = Connector(twilioARN)

	universe = []Endpoint{sensor1, sensor2, sensor3, actuator, gateway, hallCore, intruder,
		filterProd, filter2, aggregate, alerts, spooler, twilio, Cloud, Shadow,
		{Kind: KindFunction, Name: "gateway-1"}, {}}
)

func hallGroup(t testing.TB) *groupdef.Group {
	t.Helper()
	data, err := os.ReadFile("testdata/hall.json")
	if err != nil {
		t.Fatal(err)
	}
	g, err := groupdef.Parse(data)
	if err != nil {
		t.Fatalf("testdata/hall.json is not a valid group: %v", err)
	}
	return g
}

func hallTable(t testing.TB) *Table {
	t.Helper()
	tbl, err := Compile(hallGroup(t))
	if err != nil {
		t.Fatalf("Compile: %v", err)
	}
	return tbl
}

func route(tbl *Table, src Endpoint, topic string) []Endpoint {
	var got []Endpoint
	tbl.Route(src, topic, func(dst Endpoint) { got = append(got, dst) })
	return got
}

type routeCase struct {
	name  string
	src   Endpoint
	topic string
	want  []Endpoint // in order of the target's first appearance in the group
}

// Targets first appear in hall.json in this order: cloud, filter:prod,
// aggregate:3, actuator-1, gateway-1, alerts:live, sensor-1,
// GGShadowService, the Twilio connector.
var hallCases = []routeCase{
	{"device to cloud and function: exact and + subjects", sensor1, "hall/sensor-1/telemetry", []Endpoint{Cloud, filterProd}},
	{"device to cloud through # and to function through +", sensor2, "hall/sensor-2/telemetry", []Endpoint{Cloud, filterProd}},
	{"# matches the parent level", sensor2, "hall/sensor-2", []Endpoint{Cloud}},
	{"# matches several trailing levels", sensor2, "hall/sensor-2/a/b/c", []Endpoint{Cloud}},
	{"+ matches any level, not just the publisher's", sensor2, "hall/sensor-1/telemetry", []Endpoint{filterProd}},
	{"+ is exactly one level", sensor1, "hall/sensor-1/telemetry/extra", nil},
	{"exact subject needs every level", sensor1, "hall/sensor-1", nil},
	{"levels are case sensitive", sensor1, "Hall/sensor-1/telemetry", nil},
	{"a trailing slash adds an empty level", sensor1, "hall/sensor-1/telemetry/", nil},
	{"function to function", filterProd, "filtered/temperature", []Endpoint{aggregate}},
	{"another version of a function is another source", filter2, "filtered/temperature", nil},
	{"function to device", aggregate, "hall/actuator-1/set", []Endpoint{actuator}},
	{"function to cloud", aggregate, "hall/summary", []Endpoint{Cloud}},
	{"cloud to device once when an exact and a # subject overlap", Cloud, "hall/actuator-1/cmd/reboot", []Endpoint{actuator}},
	{"cloud to device through # on the parent", Cloud, "hall/actuator-1/cmd", []Endpoint{actuator}},
	{"cloud to a device and a function", Cloud, "hall/gateway-1/config", []Endpoint{gateway, alerts}},
	{"device to cloud does not imply cloud to device", Cloud, "hall/sensor-1/telemetry", nil},
	{"function to device does not imply device to function", actuator, "hall/actuator-1/set", nil},
	{"device to device once when + and # subjects overlap", gateway, "hall/actuator-1/cmd/open", []Endpoint{Cloud, actuator}},
	{"device to device through #", gateway, "hall/lights", []Endpoint{Cloud, actuator}},
	{"a lone # matches any topic", gateway, "factory/other", []Endpoint{Cloud}},
	{"a leading # does not match a $ topic", gateway, "$aws/things/gateway-1/shadow/update", nil},
	{"a leading # does not match $SYS", gateway, "$SYS/broker/load", nil},
	{"+ matches empty levels", gateway, "//ping", []Endpoint{Cloud, sensor1}},
	{"+/+/ping", gateway, "a/b/ping", []Endpoint{Cloud, sensor1}},
	{"+/+/ping needs three levels", gateway, "a/ping", []Endpoint{Cloud}},
	{"one publish fans out to two targets", actuator, "hall/actuator-1/state", []Endpoint{Cloud, gateway}},
	{"device to shadow service: update", sensor1, "$aws/things/sensor-1/shadow/update", []Endpoint{Shadow}},
	{"device to shadow service: get", sensor1, "$aws/things/sensor-1/shadow/get", []Endpoint{Shadow}},
	{"a device cannot reach another thing's shadow", sensor1, "$aws/things/sensor-2/shadow/update", nil},
	{"shadow service to device: a literal $ subject with #", Shadow, "$aws/things/sensor-1/shadow/update/accepted", []Endpoint{sensor1}},
	{"shadow delta to the device and, through +, to a function", Shadow, "$aws/things/sensor-1/shadow/update/delta", []Endpoint{filterProd, sensor1}},
	{"shadow delta of another thing reaches only the function", Shadow, "$aws/things/sensor-2/shadow/update/delta", []Endpoint{filterProd}},
	{"# after a $ level matches the parent", Shadow, "$aws/things/sensor-1/shadow", []Endpoint{sensor1}},
	{"shadow service to an unsubscribed topic", Shadow, "hall/lights", nil},
	{"the core's thing to the shadow service", hallCore, "$aws/things/hall-core/shadow/update", []Endpoint{Shadow}},
	{"function to connector", alerts, "twilio/txt", []Endpoint{twilio}},
	{"connector to function", twilio, "twilio/message/status", []Endpoint{alerts}},
	{"a function subscribed to itself", filterProd, "filter/retry", []Endpoint{filterProd}},
	{"a device of the group with no subscriptions", sensor3, "hall/sensor-3/telemetry", nil},
	{"a system function with no subscriptions", spooler, "hall/lights", nil},
	{"unknown device", intruder, "hall/lights", nil},
	{"unknown function", Function(lambdaPrefix + "filter:prod2"), "filtered/temperature", nil},
	{"a known name under the wrong kind", Endpoint{Kind: KindFunction, Name: "gateway-1"}, "hall/lights", nil},
	{"the zero endpoint", Endpoint{}, "hall/lights", nil},
	{"a topic holding + is never routed", gateway, "hall/+/x", nil},
	{"a topic holding # is never routed", gateway, "hall/#", nil},
	{"a topic level holding # is never routed", gateway, "hall/a#b", nil},
	{"the empty topic is never routed", gateway, "", nil},
	{"a longer level is not a match", Cloud, "hall/actuator-1/cmdx", nil},
}

func hallCasesNamed(t *testing.T, names ...string) []routeCase {
	t.Helper()
	var out []routeCase
	for _, name := range names {
		i := slices.IndexFunc(hallCases, func(c routeCase) bool { return c.name == name })
		if i < 0 {
			t.Fatalf("no case %q", name)
		}
		out = append(out, hallCases[i])
	}
	return out
}

func TestRouteHall(t *testing.T) {
	tbl := hallTable(t)
	for _, c := range hallCases {
		t.Run(c.name, func(t *testing.T) {
			got := route(tbl, c.src, c.topic)
			if !slices.Equal(got, c.want) {
				t.Fatalf("Route(%v, %q) visited %v, want %v", c.src, c.topic, got, c.want)
			}
			for _, dst := range universe {
				if want := slices.Contains(c.want, dst); tbl.Allowed(c.src, dst, c.topic) != want {
					t.Errorf("Allowed(%v, %v, %q) = %v, want %v", c.src, dst, c.topic, !want, want)
				}
			}
		})
	}
}

func TestEmptyTablesDenyEverything(t *testing.T) {
	fromNil, err := Compile(nil)
	if err != nil {
		t.Fatal(err)
	}
	noSubs, err := Compile(&groupdef.Group{Devices: hallGroup(t).Devices})
	if err != nil {
		t.Fatal(err)
	}
	var zero Router
	tables := map[string]*Table{
		"Compile(nil)":            fromNil,
		"group without subs":      noSubs,
		"New().Table()":           New().Table(),
		"zero Router":             zero.Table(),
		"nil *Table":              nil,
		"Swap(nil) puts in force": func() *Table { r := New(); r.Swap(hallTable(t)); r.Swap(nil); return r.Table() }(),
	}
	for name, tbl := range tables {
		for _, c := range hallCases {
			if got := route(tbl, c.src, c.topic); got != nil {
				t.Errorf("%s: Route(%v, %q) visited %v", name, c.src, c.topic, got)
			}
			for _, dst := range universe {
				if tbl.Allowed(c.src, dst, c.topic) {
					t.Errorf("%s: Allowed(%v, %v, %q) = true", name, c.src, dst, c.topic)
				}
			}
		}
		if tbl.Len() != 0 || len(tbl.Subscriptions()) != 0 || len(tbl.CloudSubjects()) != 0 {
			t.Errorf("%s: Len %d, %d subscriptions, cloud subjects %q; want none", name, tbl.Len(), len(tbl.Subscriptions()), tbl.CloudSubjects())
		}
	}
}

// scanTable routes by scanning every subscription with topic.Match: the
// definition the trie must agree with, and the peer benchmarks measure
// against.
type scanTable struct {
	subs    []scanSub
	targets []Endpoint // in order of first appearance
}

type scanSub struct {
	src     Endpoint
	dst     int // index in targets
	subject string
}

func newScanTable(t testing.TB, subs []groupdef.Subscription) *scanTable {
	t.Helper()
	st := &scanTable{}
	for _, s := range subs {
		src, err := ParseEndpoint(s.Source)
		if err != nil {
			t.Fatal(err)
		}
		dst, err := ParseEndpoint(s.Target)
		if err != nil {
			t.Fatal(err)
		}
		i := slices.Index(st.targets, dst)
		if i < 0 {
			i = len(st.targets)
			st.targets = append(st.targets, dst)
		}
		st.subs = append(st.subs, scanSub{src, i, s.Subject})
	}
	return st
}

func (st *scanTable) route(src Endpoint, tp string) []Endpoint {
	var seen []bool
	for _, s := range st.subs {
		if s.src == src && topic.Match(s.subject, tp) {
			if seen == nil {
				seen = make([]bool, len(st.targets))
			}
			seen[s.dst] = true
		}
	}
	var out []Endpoint
	for i, ok := range seen {
		if ok {
			out = append(out, st.targets[i])
		}
	}
	return out
}

var levelAlphabet = []string{"a", "b", "", "$aws", "$x", "things", "+", "#"}

func randomFilter(rng *rand.Rand) string {
	for {
		n := 1 + rng.IntN(5)
		levels := make([]string, n)
		for i := range levels {
			levels[i] = levelAlphabet[rng.IntN(len(levelAlphabet))]
			if levels[i] == "#" && i != n-1 {
				levels[i] = "+"
			}
		}
		if f := strings.Join(levels, "/"); topic.ValidateFilter(f) == nil {
			return f
		}
	}
}

func randomTopic(rng *rand.Rand, alphabet []string) string {
	n := 1 + rng.IntN(6)
	levels := make([]string, n)
	for i := range levels {
		levels[i] = alphabet[rng.IntN(len(alphabet))]
	}
	return strings.Join(levels, "/")
}

// TestRouteAgreesWithTopicMatch compares Route and Allowed with a scan of
// every subscription using topic.Match, over random groups and topics.
func TestRouteAgreesWithTopicMatch(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 11))
	endpoints := []string{thingPrefix + "d1", thingPrefix + "d2", thingPrefix + "d3",
		lambdaPrefix + "f:1", lambdaPrefix + "f:prod", twilioARN, "cloud", "GGShadowService"}
	var probe []Endpoint
	for _, s := range endpoints {
		e, err := ParseEndpoint(s)
		if err != nil {
			t.Fatal(err)
		}
		probe = append(probe, e)
	}
	probe = append(probe, Device("d4"))
	topicAlphabet := []string{"a", "b", "c", "", "$aws", "$x", "things", "+", "#", "a+"}

	check := func(t *testing.T, tbl *Table, scan *scanTable, tp string) {
		t.Helper()
		for _, src := range probe {
			want := scan.route(src, tp)
			if got := route(tbl, src, tp); !slices.Equal(got, want) {
				t.Fatalf("Route(%v, %q) = %v, scan with topic.Match gives %v; subscriptions %v", src, tp, got, want, scan.subs)
			}
			for _, dst := range probe {
				if got, want := tbl.Allowed(src, dst, tp), slices.Contains(want, dst); got != want {
					t.Fatalf("Allowed(%v, %v, %q) = %v, Route says %v", src, dst, tp, got, want)
				}
			}
		}
	}

	for range 300 {
		subs := make([]groupdef.Subscription, 1+rng.IntN(30))
		for i := range subs {
			subs[i] = groupdef.Subscription{
				Id:      "s" + string(rune('a'+i%26)),
				Source:  endpoints[rng.IntN(len(endpoints))],
				Subject: randomFilter(rng),
				Target:  endpoints[rng.IntN(len(endpoints))],
			}
		}
		tbl, err := Compile(&groupdef.Group{Subscriptions: &groupdef.SubscriptionDefinitionVersion{Subscriptions: subs}})
		if err != nil {
			t.Fatal(err)
		}
		scan := newScanTable(t, subs)
		for range 100 {
			check(t, tbl, scan, randomTopic(rng, topicAlphabet))
		}
	}

	// The hall group, with topics made of the levels its subjects use.
	g := hallGroup(t)
	tbl := hallTable(t)
	hallLevels := []string{"", "+", "#", "x"}
	for _, s := range g.Subscriptions.Subscriptions {
		hallLevels = append(hallLevels, strings.Split(s.Subject, "/")...)
	}
	probe = universe
	scan := newScanTable(t, g.Subscriptions.Subscriptions)
	for range 20000 {
		check(t, tbl, scan, randomTopic(rng, hallLevels))
	}
}

// TestRouteWideFanOut sends one publish to more targets than Route's stack
// buffers hold, through two overlapping subjects per target.
func TestRouteWideFanOut(t *testing.T) {
	for _, n := range []int{40, 1000, 5000} {
		var subs []groupdef.Subscription
		var want []Endpoint
		for i := range n {
			d := fmt.Sprintf("d%d", i)
			want = append(want, Device(d))
			subs = append(subs,
				groupdef.Subscription{Id: d + "-hash", Source: "cloud", Subject: "fan/#", Target: thingPrefix + d},
				groupdef.Subscription{Id: d + "-plus", Source: "cloud", Subject: "fan/+", Target: thingPrefix + d},
				groupdef.Subscription{Id: d + "-other", Source: "cloud", Subject: "other", Target: thingPrefix + d})
		}
		tbl, err := Compile(&groupdef.Group{Subscriptions: &groupdef.SubscriptionDefinitionVersion{Subscriptions: subs}})
		if err != nil {
			t.Fatal(err)
		}
		if got := route(tbl, Cloud, "fan/out"); !slices.Equal(got, want) {
			t.Fatalf("%d targets: Route visited %d endpoints, want each of the %d once in group order", n, len(got), n)
		}
		if got := route(tbl, Cloud, "fan/out/deeper"); !slices.Equal(got, want) {
			t.Fatalf("%d targets through '#' only: Route visited %d endpoints, want %d", n, len(got), n)
		}
		if !tbl.Allowed(Cloud, Device(fmt.Sprintf("d%d", n-1)), "fan/out") || tbl.Allowed(Cloud, Device("d0"), "fanout") {
			t.Fatalf("%d targets: Allowed disagrees with Route", n)
		}
	}
}

func TestRouteDoesNotAllocate(t *testing.T) {
	tbl := hallTable(t)
	sink := 0
	visit := func(Endpoint) { sink++ }
	for _, c := range hallCasesNamed(t,
		"device to cloud and function: exact and + subjects",
		"cloud to device once when an exact and a # subject overlap",
		"device to device once when + and # subjects overlap",
		"shadow delta to the device and, through +, to a function",
		"+ is exactly one level",
		"unknown device") {
		if n := testing.AllocsPerRun(100, func() { tbl.Route(c.src, c.topic, visit) }); n != 0 {
			t.Errorf("Route(%v, %q): %v allocations per call, want 0", c.src, c.topic, n)
		}
		if n := testing.AllocsPerRun(100, func() { tbl.Allowed(c.src, Cloud, c.topic) }); n != 0 {
			t.Errorf("Allowed(%v, cloud, %q): %v allocations per call, want 0", c.src, c.topic, n)
		}
	}
}

func TestCompileIsASnapshot(t *testing.T) {
	g := hallGroup(t)
	tbl, err := Compile(g)
	if err != nil {
		t.Fatal(err)
	}
	want := slices.Clone(g.Subscriptions.Subscriptions)
	if got := tbl.Subscriptions(); !slices.Equal(got, want) {
		t.Fatalf("Subscriptions() = %v, want the group's list %v", got, want)
	}
	if tbl.Len() != len(want) {
		t.Fatalf("Len() = %d, want %d", tbl.Len(), len(want))
	}
	// Neither the group nor what the table hands out reaches the table.
	g.Subscriptions.Subscriptions[0].Target = "GGShadowService"
	g.Subscriptions.Subscriptions = append(g.Subscriptions.Subscriptions, groupdef.Subscription{Id: "late", Source: "cloud", Subject: "#", Target: "cloud"})
	g.Devices.Devices[0].CertificateArn = ""
	tbl.Subscriptions()[1].Subject = "#"
	tbl.CloudSubjects()[0] = "#"
	tbl.Devices()["sensor-1"] = "forged"
	if got := tbl.Subscriptions(); !slices.Equal(got, want) {
		t.Fatalf("Subscriptions() changed to %v", got)
	}
	if got := route(tbl, sensor1, "hall/sensor-1/telemetry"); !slices.Equal(got, []Endpoint{Cloud, filterProd}) {
		t.Fatalf("routes changed with the group: %v", got)
	}
	if got := tbl.CloudSubjects()[0]; got != "hall/actuator-1/cmd/#" {
		t.Fatalf("CloudSubjects()[0] changed to %q", got)
	}
	if got := tbl.Devices()["sensor-1"]; got != "75fcce4506e2b49c935ad64e43250abe43de607c55200dc94f52c7bf2e180e4d" {
		t.Fatalf("Devices()[sensor-1] changed to %q", got)
	}
}

func TestCloudSubjects(t *testing.T) {
	got := hallTable(t).CloudSubjects()
	want := []string{"hall/actuator-1/cmd/#", "hall/actuator-1/cmd/reboot", "hall/+/config"}
	if !slices.Equal(got, want) {
		t.Fatalf("CloudSubjects() = %q, want %q (distinct, in group order)", got, want)
	}
}

func TestDevices(t *testing.T) {
	got := hallTable(t).Devices()
	want := map[string]string{
		"sensor-1":   "75fcce4506e2b49c935ad64e43250abe43de607c55200dc94f52c7bf2e180e4d",
		"sensor-2":   "45366849ffd75b4cad725450f0569d11fedbaa6dd747d4480b1d1abb8ba5e305", // upper case in the group
		"sensor-3":   "88047a95f918ef6a6599a546943a5cac70fdc916a511efe9a8f6046b19922488",
		"actuator-1": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
		"gateway-1":  "60303ae22b998861bce3b28f33eec1be758a213c86c93c076dbe9f558c11c752",
	}
	if len(got) != len(want) {
		t.Fatalf("Devices() = %v, want %v (the core is not a device)", got, want)
	}
	for name, id := range want {
		if got[name] != id {
			t.Errorf("Devices()[%q] = %q, want %q", name, got[name], id)
		}
	}

	// Compile does not validate certificate ARNs; one without an id maps to "".
	g := &groupdef.Group{Devices: &groupdef.DeviceDefinitionVersion{Devices: []groupdef.Device{
		{Id: "a", ThingArn: thingPrefix + "a", CertificateArn: "arn:aws:iot:eu-central-1:123456789012:cert/short"},
		{Id: "b", ThingArn: thingPrefix + "b"},
	}}}
	tbl, err := Compile(g)
	if err != nil {
		t.Fatal(err)
	}
	if d := tbl.Devices(); len(d) != 2 || d["a"] != "" || d["b"] != "" {
		t.Fatalf("Devices() = %q, want a and b with empty ids", d)
	}
}

func TestCompileRefuses(t *testing.T) {
	sub := func(src, subject, dst string) *groupdef.Group {
		return &groupdef.Group{Subscriptions: &groupdef.SubscriptionDefinitionVersion{Subscriptions: []groupdef.Subscription{
			{Id: "ok", Source: "cloud", Subject: "a", Target: thingPrefix + "d1"},
			{Id: "bad", Source: src, Subject: subject, Target: dst},
		}}}
	}
	twins := hallGroup(t)
	twins.Devices.Devices = append(twins.Devices.Devices, groupdef.Device{Id: "twin", ThingArn: "arn:aws:iot:us-east-1:123456789012:thing/sensor-1"})
	coreTwin := hallGroup(t)
	coreTwin.Devices.Devices[0].ThingArn = "arn:aws:iot:eu-central-1:210987654321:thing/hall-core"
	for _, c := range []struct {
		name string
		g    *groupdef.Group
		want string // in the error
	}{
		{"source that is no endpoint", sub("Cloud", "a", "cloud"), "Subscriptions[1].Source"},
		{"empty target", sub("cloud", "a", ""), "Subscriptions[1].Target"},
		{"thing ARN with a bad name", sub(thingPrefix+"a b", "a", "cloud"), "Subscriptions[1].Source"},
		{"ARN of a service that is no endpoint", sub("cloud", "a", "arn:aws:s3:::bucket"), "Subscriptions[1].Target"},
		{"function without qualifier", sub(lambdaPrefix+"f", "a", "cloud"), "Subscriptions[1].Source"},
		{"# not last", sub("cloud", "a/#/b", "cloud"), "Subscriptions[1].Subject"},
		{"+ inside a level", sub("cloud", "a/b+", "cloud"), "Subscriptions[1].Subject"},
		{"empty subject", sub("cloud", "", "cloud"), "Subscriptions[1].Subject"},
		{"subject over 7 slashes", sub("cloud", "a/b/c/d/e/f/g/h/i", "cloud"), "Subscriptions[1].Subject"},
		{"subscription thing with a device's name", sub("arn:aws:iot:eu-west-1:123456789012:thing/d1", "a", "cloud"), "same name"},
		{"two devices with one thing name", twins, "same name"},
		{"a device with the core's thing name", coreTwin, "same name"},
	} {
		t.Run(c.name, func(t *testing.T) {
			tbl, err := Compile(c.g)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Compile = %v, %v; want an error mentioning %q", tbl, err, c.want)
			}
		})
	}
}

func TestParseEndpoint(t *testing.T) {
	for _, c := range []struct {
		in   string
		want Endpoint
		str  string
	}{
		{thingPrefix + "sensor-1", sensor1, "device:sensor-1"},
		{"arn:aws-cn:iot:cn-north-1:123456789012:thing/ns:thing_1", Device("ns:thing_1"), "device:ns:thing_1"},
		{lambdaPrefix + "filter:prod", filterProd, "function:" + lambdaPrefix + "filter:prod"},
		{"arn:aws:lambda:::function:GGCloudSpooler", Function("arn:aws:lambda:::function:GGCloudSpooler"), "function:arn:aws:lambda:::function:GGCloudSpooler"},
		{twilioARN, twilio, "connector:" + twilioARN},
		{"cloud", Cloud, "cloud"},
		{"GGShadowService", Shadow, "GGShadowService"},
	} {
		got, err := ParseEndpoint(c.in)
		if err != nil || got != c.want {
			t.Errorf("ParseEndpoint(%q) = %v, %v; want %v", c.in, got, err, c.want)
		}
		if got.String() != c.str {
			t.Errorf("%#v.String() = %q, want %q", got, got.String(), c.str)
		}
	}
	for _, in := range []string{"", "Cloud", "shadow", "sensor-1", "arn:aws:iot:eu-central-1:123456789012:cert/ab",
		lambdaPrefix + "f:$LATEST", "arn:aws:sqs:eu-central-1:123456789012:q"} {
		if got, err := ParseEndpoint(in); err == nil {
			t.Errorf("ParseEndpoint(%q) = %v, want an error", in, got)
		}
	}
	if s := (Endpoint{}).String(); s != "Kind(0):" {
		t.Errorf("zero Endpoint String() = %q", s)
	}
}

func TestSwapReturnsPrevious(t *testing.T) {
	r := New()
	first := r.Table()
	hall := hallTable(t)
	if prev := r.Swap(hall); prev != first {
		t.Fatalf("first Swap returned %p, want the initial table %p", prev, first)
	}
	if r.Table() != hall {
		t.Fatal("Table() is not the table swapped in")
	}
	if prev := r.Swap(nil); prev != hall {
		t.Fatal("Swap(nil) did not return the table in force")
	}
	var zero Router
	if prev := zero.Swap(hall); prev == nil || prev.Len() != 0 {
		t.Fatalf("zero Router's Swap returned %v, want an empty table", prev)
	}
}

// TestSwapWhileRouting routes from several goroutines while deployments
// swap two tables in and out; every answer must be one table's whole
// answer. Run with -race.
func TestSwapWhileRouting(t *testing.T) {
	a := hallTable(t)
	g := hallGroup(t)
	g.Subscriptions.Subscriptions = g.Subscriptions.Subscriptions[7:] // drops sensor-1's telemetry routes, keeps the cloud's
	b, err := Compile(g)
	if err != nil {
		t.Fatal(err)
	}
	probes := hallCasesNamed(t,
		"device to cloud and function: exact and + subjects",
		"cloud to device once when an exact and a # subject overlap",
		"device to device once when + and # subjects overlap",
		"shadow delta to the device and, through +, to a function")
	answers := func(tbl *Table) [][]Endpoint {
		var out [][]Endpoint
		for _, p := range probes {
			out = append(out, route(tbl, p.src, p.topic))
		}
		return out
	}
	wantA, wantB := answers(a), answers(b)
	if slices.EqualFunc(wantA, wantB, slices.Equal) {
		t.Fatal("the two tables answer alike; the test would not notice a mix-up")
	}

	r := New()
	r.Swap(a)
	var done atomic.Bool
	var wg sync.WaitGroup
	errs := make(chan string, 8)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; !done.Load() || n < 100; n++ {
				tbl := r.Table()
				got := answers(tbl)
				if !slices.EqualFunc(got, wantA, slices.Equal) && !slices.EqualFunc(got, wantB, slices.Equal) {
					errs <- "a table answered neither like the old nor like the new deployment"
					return
				}
			}
		}()
	}
	next, other := b, a
	for range 2000 {
		if prev := r.Swap(next); prev != other {
			t.Errorf("Swap returned %p, want the table in force %p", prev, other)
		}
		next, other = other, next
	}
	done.Store(true)
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
}
