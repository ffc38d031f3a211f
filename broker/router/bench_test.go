package router

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/evergreen-edge/evergreen/services/kit/groupdef"
)

const (
	fleetDevices = 2500
	ingestARN    = lambdaPrefix + "ingest:prod"
	rulesARN     = lambdaPrefix + "rules:7"
)

func fleetDevice(i int) string { return fmt.Sprintf("dev-%04d", i) }
func fleetZone(i int) string   { return fmt.Sprintf("z%02d", i%25) }

// fleetGroup is a group at v1's quotas: 2,500 devices and 10,000
// subscriptions, 50 of them from the cloud. Every device reports telemetry
// to the cloud and, through a wildcard subject, to an ingest function, and
// receives its shadow documents; the first 50 take commands from the cloud,
// the others alternately send shadow updates or take commands from a rules
// function whose subjects hold '+'.
func fleetGroup() *groupdef.Group {
	g := &groupdef.Group{
		Core: &groupdef.CoreDefinitionVersion{Cores: []groupdef.Core{{Id: "core", ThingArn: thingPrefix + "fleet-core", CertificateArn: certARN("fleet-core")}}},
		Functions: &groupdef.FunctionDefinitionVersion{Functions: []groupdef.Function{
			{Id: "ingest", FunctionArn: ingestARN, Evergreen: &groupdef.FunctionExtension{Runtime: "python3.8", Handler: "ingest.handler", CodeUri: "functions/ingest"}},
			{Id: "rules", FunctionArn: rulesARN, Evergreen: &groupdef.FunctionExtension{Runtime: "python3.8", Handler: "rules.handler", CodeUri: "functions/rules"}},
		}},
		Devices:       &groupdef.DeviceDefinitionVersion{},
		Subscriptions: &groupdef.SubscriptionDefinitionVersion{},
	}
	subs := &g.Subscriptions.Subscriptions
	add := func(src, subject, dst string) {
		*subs = append(*subs, groupdef.Subscription{Id: fmt.Sprintf("s%d", len(*subs)), Source: src, Subject: subject, Target: dst})
	}
	for i := range fleetDevices {
		d := fleetDevice(i)
		thing := thingPrefix + d
		g.Devices.Devices = append(g.Devices.Devices, groupdef.Device{Id: d, ThingArn: thing, CertificateArn: certARN(d)})
		add(thing, "fleet/"+fleetZone(i)+"/"+d+"/telemetry/+", "cloud")
		add(thing, "fleet/+/+/telemetry/#", ingestARN)
		add("GGShadowService", "$aws/things/"+d+"/shadow/#", thing)
		switch {
		case i < 50:
			add("cloud", "fleet/"+fleetZone(i)+"/"+d+"/cmd/#", thing)
		case i%2 == 0:
			add(thing, "$aws/things/"+d+"/shadow/update", "GGShadowService")
		default:
			add(rulesARN, "fleet/+/"+d+"/cmd/+", thing)
		}
	}
	return g
}

func certARN(thing string) string {
	sum := sha256.Sum256([]byte(thing))
	return "arn:aws:iot:eu-central-1:123456789012:cert/" + hex.EncodeToString(sum[:])
}

type probe struct {
	src   Endpoint
	topic string
}

// fleetProbes is the traffic of the benchmark: telemetry (two targets),
// shadow documents, shadow updates, commands from the rules function and
// the cloud, and publishes no subscription allows, from random devices.
func fleetProbes(n int) []probe {
	rng := rand.New(rand.NewPCG(1, 2))
	out := make([]probe, n)
	for k := range out {
		i := rng.IntN(fleetDevices)
		d, z := fleetDevice(i), fleetZone(i)
		switch k % 6 {
		case 0:
			out[k] = probe{Device(d), "fleet/" + z + "/" + d + "/telemetry/temperature"}
		case 1:
			out[k] = probe{Shadow, "$aws/things/" + d + "/shadow/update/accepted"}
		case 2:
			i = i &^ 1
			d = fleetDevice(max(i, 50))
			out[k] = probe{Device(d), "$aws/things/" + d + "/shadow/update"}
		case 3:
			i = max(i|1, 51)
			out[k] = probe{Function(rulesARN), "fleet/" + fleetZone(i) + "/" + fleetDevice(i) + "/cmd/open"}
		case 4:
			i %= 50
			out[k] = probe{Cloud, "fleet/" + fleetZone(i) + "/" + fleetDevice(i) + "/cmd/reboot"}
		case 5:
			out[k] = probe{Device(d), "fleet/" + z + "/" + fleetDevice((i+1)%fleetDevices) + "/cmd/open"}
		}
	}
	return out
}

// wildcardGroup is one function with 10,000 subscriptions whose subjects are
// mostly wildcards over up to eight levels, to 2,500 devices: a publish
// matches many filters along many trie paths, and many targets twice.
func wildcardGroup() *groupdef.Group {
	rng := rand.New(rand.NewPCG(3, 4))
	subs := make([]groupdef.Subscription, 0, 10000)
	for k := range 10000 {
		n := 3 + rng.IntN(6)
		levels := make([]string, n)
		for j := range levels {
			if rng.IntN(2) == 0 {
				levels[j] = "+"
			} else {
				levels[j] = string(rune('a' + rng.IntN(4)))
			}
		}
		if rng.IntN(3) == 0 {
			levels[n-1] = "#"
		}
		subs = append(subs, groupdef.Subscription{Id: fmt.Sprintf("w%d", k), Source: rulesARN, Subject: strings.Join(levels, "/"), Target: thingPrefix + fleetDevice(k%fleetDevices)})
	}
	return &groupdef.Group{Subscriptions: &groupdef.SubscriptionDefinitionVersion{Subscriptions: subs}}
}

func wildcardProbes(n int) []probe {
	rng := rand.New(rand.NewPCG(5, 6))
	out := make([]probe, n)
	for k := range out {
		levels := make([]string, 3+rng.IntN(6))
		for j := range levels {
			levels[j] = string(rune('a' + rng.IntN(4)))
		}
		out[k] = probe{Function(rulesARN), strings.Join(levels, "/")}
	}
	return out
}

func TestFleetGroupIsValidAndRoutes(t *testing.T) {
	g := fleetGroup()
	if err := g.Validate(); err != nil {
		t.Fatalf("the benchmark group is not a deployable group: %v", err)
	}
	if n := len(g.Subscriptions.Subscriptions); n != groupdef.MaxSubscriptions {
		t.Fatalf("%d subscriptions, want %d", n, groupdef.MaxSubscriptions)
	}
	tbl, err := Compile(g)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(tbl.CloudSubjects()); n != groupdef.MaxCloudSourceSubscriptions {
		t.Fatalf("%d cloud subjects, want %d", n, groupdef.MaxCloudSourceSubscriptions)
	}
	for name, c := range map[string]struct {
		g      *groupdef.Group
		probes []probe
	}{"fleet": {g, fleetProbes(600)}, "wildcard": {wildcardGroup(), wildcardProbes(100)}} {
		tbl, err := Compile(c.g)
		if err != nil {
			t.Fatal(err)
		}
		scan := newScanTable(t, c.g.Subscriptions.Subscriptions)
		delivered := 0
		for _, p := range c.probes {
			got, want := route(tbl, p.src, p.topic), scan.route(p.src, p.topic)
			if !slices.Equal(got, want) {
				t.Fatalf("%s: Route(%v, %q) = %v, scan gives %v", name, p.src, p.topic, got, want)
			}
			delivered += len(got)
		}
		// The traffic must exercise delivery, not only denial.
		if delivered < len(c.probes)*2/3 {
			t.Fatalf("%s: %d deliveries for %d publishes", name, delivered, len(c.probes))
		}
	}
}

// benchRoute routes the probes round robin and reports the targets per
// publish and, measured once in the same run, how many times faster the
// table is than scanning every subscription with topic.Match.
func benchRoute(b *testing.B, g *groupdef.Group, probes []probe, peerOnce *sync.Once, peerNs *float64) {
	tbl, err := Compile(g)
	if err != nil {
		b.Fatal(err)
	}
	peerOnce.Do(func() {
		scan := newScanTable(b, g.Subscriptions.Subscriptions)
		n := min(len(probes), 1000)
		start := time.Now()
		for _, p := range probes[:n] {
			scan.route(p.src, p.topic)
		}
		*peerNs = float64(time.Since(start).Nanoseconds()) / float64(n)
	})
	targets := 0
	visit := func(Endpoint) { targets++ }
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		p := probes[i%len(probes)]
		tbl.Route(p.src, p.topic, visit)
	}
	b.StopTimer()
	perOp := float64(b.Elapsed().Nanoseconds()) / float64(b.N)
	b.ReportMetric(float64(targets)/float64(b.N), "targets/op")
	b.ReportMetric(*peerNs/perOp, "x-scan-peer")
}

var (
	fleetPeerOnce, wildcardPeerOnce sync.Once
	fleetPeerNs, wildcardPeerNs     float64
)

func BenchmarkRoute10kSubscriptions(b *testing.B) {
	benchRoute(b, fleetGroup(), fleetProbes(4096), &fleetPeerOnce, &fleetPeerNs)
}

func BenchmarkRouteWildcardHeavy(b *testing.B) {
	benchRoute(b, wildcardGroup(), wildcardProbes(4096), &wildcardPeerOnce, &wildcardPeerNs)
}

func BenchmarkAllowed10kSubscriptions(b *testing.B) {
	tbl, err := Compile(fleetGroup())
	if err != nil {
		b.Fatal(err)
	}
	probes := fleetProbes(4096)
	dsts := make([]Endpoint, len(probes))
	for i, p := range probes {
		dsts[i] = Cloud
		tbl.Route(p.src, p.topic, func(d Endpoint) { dsts[i] = d })
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		k := i % len(probes)
		tbl.Allowed(probes[k].src, dsts[k], probes[k].topic)
	}
}

func BenchmarkCompile10k(b *testing.B) {
	g := fleetGroup()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Compile(g); err != nil {
			b.Fatal(err)
		}
	}
}
