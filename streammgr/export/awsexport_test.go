package export_test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/evergreen-edge/evergreen/services/kit/errdefs"
	"github.com/evergreen-edge/evergreen/streammgr/export"
	"github.com/fxamacker/cbor/v2"
)

// TestAWSExportsLoseNothingInAnOutage: each AWS kind against its service
// answering 503 for a while: the progress stops, the status says why,
// and after the recovery every message is in the service exactly once and
// in order (a 503 accepted nothing, so at-least-once resends nothing
// twice).
func TestAWSExportsLoseNothingInAnOutage(t *testing.T) {
	for _, kind := range []struct {
		name, service string
		cfg           map[string]any
		payload       func(i int) []byte
		// answer answers like the service, down or not; stored lists what
		// it holds, one string per message. Both under the fake's lock.
		answer func(down *bool) (func(c awsCall) awsAnswer, func() []string)
	}{
		{"kinesis", export.ServiceKinesis,
			map[string]any{"identifier": "k", "kinesisStreamName": "cloud-stream", "batchSize": 2},
			func(i int) []byte { return payload(int64(i)) },
			func(down *bool) (func(c awsCall) awsAnswer, func() []string) {
				k := &kinesisService{}
				return func(c awsCall) awsAnswer { k.down = *down; return k.answer(c) }, func() []string {
					var out []string
					for _, r := range k.accepted {
						out = append(out, r.data)
					}
					return out
				}
			}},
		{"iotAnalytics", export.ServiceIoTAnalytics,
			map[string]any{"identifier": "a", "iotChannel": "ch", "batchSize": 2},
			func(i int) []byte { return payload(int64(i)) },
			func(down *bool) (func(c awsCall) awsAnswer, func() []string) {
				a := &iotAnalyticsService{}
				return func(c awsCall) awsAnswer { a.down = *down; return a.answer(c) }, func() []string {
					var out []string
					for _, m := range a.accepted {
						out = append(out, m.payload)
					}
					return out
				}
			}},
		{"IotSitewise", export.ServiceIoTSiteWise,
			map[string]any{"identifier": "w", "batchSize": 2},
			func(i int) []byte {
				return entry("e", alias("/line/temp"), tqv{map[string]any{"doubleValue": float64(i)}, 1700000000 + int64(i), 0, "GOOD"})
			},
			func(down *bool) (func(c awsCall) awsAnswer, func() []string) {
				sw := &siteWiseService{}
				return func(c awsCall) awsAnswer { sw.down = *down; return sw.answer(c) }, func() []string {
					var out []string
					for _, v := range sw.stored {
						out = append(out, fmt.Sprint(v.seconds-1700000000))
					}
					return out
				}
			}},
	} {
		t.Run(kind.name, func(t *testing.T) {
			down := false
			answer, stored := kind.answer(&down)
			f := newAWSFake(t, kind.service, answer)
			r := newAWSRig(t, export.Options{AWS: export.AWSOptions{Endpoints: map[string]string{kind.service: f.url()}}})
			r.stream("s")
			r.export("s", map[string]any{kind.name: []any{kind.cfg}})
			want := func(n int) []string {
				var out []string
				for i := range n {
					if kind.name == "IotSitewise" {
						out = append(out, fmt.Sprint(i))
					} else {
						out = append(out, string(payload(int64(i))))
					}
				}
				return out
			}
			for i := range 3 {
				r.append("s", kind.payload(i))
			}
			r.waitStatus("s", func(s export.Status) bool { return s.LastExportedSequenceNumber == 2 })

			f.mu.Lock()
			down = true
			f.mu.Unlock()
			for i := 3; i < 8; i++ {
				r.append("s", kind.payload(i))
			}
			s := r.waitStatus("s", func(s export.Status) bool { return strings.Contains(s.ErrorMessage, "503") })
			if s.LastExportedSequenceNumber != 2 || s.ExportedMessagesCount != 3 {
				t.Fatalf("progress moved during the outage: %+v", s)
			}
			f.mu.Lock()
			down = false
			f.mu.Unlock()
			r.waitStatus("s", func(s export.Status) bool {
				return s.LastExportedSequenceNumber == 7 && s.ExportedMessagesCount == 8 && s.ErrorMessage == ""
			})
			f.mu.Lock()
			got := stored()
			f.mu.Unlock()
			if !slices.Equal(got, want(8)) {
				t.Fatalf("the service holds %q, want %q", got, want(8))
			}
			for _, c := range f.recorded() {
				f.checkCall(c)
			}
		})
	}
}

// TestAWSDefaultEndpoints: without an endpoint override each export
// reaches AWS's own host for the configured region (SiteWise's data plane
// under the "data." prefix), over TLS; here a client that dials a local
// TLS server whatever the host stands in for the network.
func TestAWSDefaultEndpoints(t *testing.T) {
	var mu sync.Mutex
	hosts := map[string]string{} // signing service -> Host
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		scope, problem := verifySigV4(r, nil)
		if len(scope) != 5 {
			t.Errorf("request to %s unsigned: %s", r.Host, problem)
			return
		}
		mu.Lock()
		hosts[scope[3]] = r.Host
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		switch scope[3] {
		case "kinesis":
			fmt.Fprint(w, `{"FailedRecordCount":0,"Records":[{"SequenceNumber":"1","ShardId":"shardId-000000000000"}]}`)
		default:
			fmt.Fprint(w, `{}`)
		}
	}))
	t.Cleanup(srv.Close)
	dial := &net.Dialer{}
	client := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return dial.DialContext(ctx, network, srv.Listener.Addr().String())
		},
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true},
	}}
	r := newAWSRig(t, export.Options{Client: client, AWS: export.AWSOptions{Region: "eu-central-1"}})
	r.stream("s")
	r.append("s", entry("e", alias("/a"), tqv{map[string]any{"doubleValue": 1}, 1700000000, 0, ""}))
	r.export("s", map[string]any{
		"kinesis":      []any{map[string]any{"identifier": "k", "kinesisStreamName": "ks"}},
		"iotAnalytics": []any{map[string]any{"identifier": "a", "iotChannel": "ch"}},
		"IotSitewise":  []any{map[string]any{"identifier": "w"}},
	})
	checkFor(t, wait, func() error {
		for _, s := range r.m.Statuses("s") {
			if s.LastExportedSequenceNumber != 0 {
				return fmt.Errorf("statuses %+v", r.m.Statuses("s"))
			}
		}
		return nil
	})
	mu.Lock()
	defer mu.Unlock()
	want := map[string]string{
		"kinesis":      "kinesis.eu-central-1.amazonaws.com",
		"iotanalytics": "iotanalytics.eu-central-1.amazonaws.com",
		"iotsitewise":  "data.iotsitewise.eu-central-1.amazonaws.com",
	}
	for svc, host := range want {
		if hosts[svc] != host {
			t.Errorf("%s went to %q, want %q", svc, hosts[svc], host)
		}
	}
}

// TestAWSExportWithoutRegionSaysSo: no region anywhere is a status, not
// a crash, and the export retries (a region set later is not picked up
// before a restart; the status says what to set).
func TestAWSExportWithoutRegionSaysSo(t *testing.T) {
	r := newAWSRig(t, export.Options{})
	t.Setenv("AWS_REGION", "")
	t.Setenv("AWS_DEFAULT_REGION", "")
	r.stream("s")
	r.append("s", payload(0))
	r.export("s", map[string]any{"iotAnalytics": []any{map[string]any{"identifier": "a", "iotChannel": "ch"}}})
	r.waitStatus("s", func(s export.Status) bool {
		return strings.Contains(s.ErrorMessage, "no AWS region") && s.LastExportedSequenceNumber == -1
	})
}

func TestParseAWSKindsNamingTheField(t *testing.T) {
	valid := map[string]map[string]any{
		"kinesis":      {"identifier": "k", "kinesisStreamName": "ks"},
		"iotAnalytics": {"identifier": "a", "iotChannel": "ch"},
		"IotSitewise":  {"identifier": "w"},
	}
	with := func(kind, k string, v any) map[string]any {
		c := map[string]any{}
		for k, v := range valid[kind] {
			c[k] = v
		}
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
		return map[string]any{kind: []any{c}}
	}
	for _, tc := range []struct {
		field string
		def   map[string]any
	}{
		{"kinesis[0].identifier", with("kinesis", "identifier", nil)},
		{"kinesis[0].kinesisStreamName", with("kinesis", "kinesisStreamName", nil)},
		{"kinesis[0].kinesisStreamName", with("kinesis", "kinesisStreamName", "no spaces")},
		{"kinesis[0].batchSize", with("kinesis", "batchSize", 0)},
		{"kinesis[0].batchSize", with("kinesis", "batchSize", 501)},
		{"kinesis[0].batchIntervalMillis", with("kinesis", "batchIntervalMillis", 59999)},
		{"kinesis[0].priority", with("kinesis", "priority", 0)},
		{"kinesis[0].startSequenceNumber", with("kinesis", "startSequenceNumber", -1)},
		{"iotAnalytics[0].iotChannel", with("iotAnalytics", "iotChannel", nil)},
		{"iotAnalytics[0].iotChannel", with("iotAnalytics", "iotChannel", "__reserved")},
		{"iotAnalytics[0].iotChannel", with("iotAnalytics", "iotChannel", "has-dash")},
		{"iotAnalytics[0].iotMsgIdPrefix", with("iotAnalytics", "iotMsgIdPrefix", strings.Repeat("p", 33))},
		{"iotAnalytics[0].iotMsgIdPrefix", with("iotAnalytics", "iotMsgIdPrefix", "préfixe")},
		{"iotAnalytics[0].batchSize", with("iotAnalytics", "batchSize", 101)},
		{"iotAnalytics[0].batchIntervalMillis", with("iotAnalytics", "batchIntervalMillis", 1000)},
		{"IotSitewise[0].batchSize", with("IotSitewise", "batchSize", 11)},
		{"IotSitewise[0].batchIntervalMillis", with("IotSitewise", "batchIntervalMillis", int64(9223372036855))},
		{"IotSitewise[0].identifier", with("IotSitewise", "identifier", "a/b")},
		// An identifier names the progress file: unique across kinds.
		{"kinesis[0].identifier", map[string]any{"http": []any{map[string]any{"identifier": "k", "uri": "http://127.0.0.1:1/x"}},
			"kinesis": []any{valid["kinesis"]}}},
	} {
		raw, _ := cbor.Marshal(tc.def)
		_, err := export.Parse(raw)
		if err == nil || !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), "definition.exportDefinition."+tc.field) {
			t.Errorf("%s %v: err %v", tc.field, tc.def, err)
		}
	}

	// v1's defaults: each kind's largest batch, the lowest priority (10),
	// no interval; a Python SDK's nulls are unset fields.
	raw, _ := cbor.Marshal(map[string]any{
		"kinesis": []any{map[string]any{"identifier": "k", "kinesisStreamName": "ks", "batchSize": nil, "batchIntervalMillis": nil,
			"priority": nil, "startSequenceNumber": nil, "disabled": nil}},
		"iotAnalytics": []any{map[string]any{"identifier": "a", "iotChannel": "ch", "iotMsgIdPrefix": nil}},
		"IotSitewise":  []any{map[string]any{"identifier": "w", "batchIntervalMillis": 60000, "priority": 1, "startSequenceNumber": 7, "disabled": true}},
		"http":         []any{}, "s3TaskExecutor": []any{},
	})
	d, err := export.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	if want := (export.KinesisConfig{Identifier: "k", StreamName: "ks", BatchSize: 500, Priority: 10}); len(d.Kinesis) != 1 || d.Kinesis[0] != want {
		t.Errorf("kinesis %+v", d.Kinesis)
	}
	if want := (export.IoTAnalyticsConfig{Identifier: "a", Channel: "ch", BatchSize: 100, Priority: 10}); len(d.IoTAnalytics) != 1 || d.IoTAnalytics[0] != want {
		t.Errorf("iotAnalytics %+v", d.IoTAnalytics)
	}
	if want := (export.IoTSiteWiseConfig{Identifier: "w", BatchSize: 10, BatchInterval: 60000 * 1e6, Priority: 1, StartSequenceNumber: 7, Disabled: true}); len(d.IoTSiteWise) != 1 || d.IoTSiteWise[0] != want {
		t.Errorf("IotSitewise %+v", d.IoTSiteWise)
	}
}
