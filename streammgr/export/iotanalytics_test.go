package export_test

import (
	stdbase64 "encoding/base64"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/evergreen-edge/evergreen/streammgr/export"
)

// iotAnalyticsMessage is one message BatchPutMessage carried.
type iotAnalyticsMessage struct{ id, payload string }

// iotAnalyticsService answers BatchPutMessage like IoT Analytics: every
// message is accepted unless fail names its id, which fails it once in
// batchPutMessageErrorEntries. Guarded by the fake's lock.
type iotAnalyticsService struct {
	accepted []iotAnalyticsMessage
	fail     map[string]bool
	down     bool
}

func (a *iotAnalyticsService) answer(c awsCall) awsAnswer {
	if a.down {
		return awsAnswer{status: 503, code: "ServiceUnavailableException"}
	}
	errs := []any{}
	for _, m := range messages(c) {
		if a.fail[m.id] {
			delete(a.fail, m.id)
			errs = append(errs, map[string]any{"messageId": m.id, "errorCode": "InternalFailureException", "errorMessage": "try again"})
			continue
		}
		a.accepted = append(a.accepted, m)
	}
	return awsAnswer{body: map[string]any{"batchPutMessageErrorEntries": errs}}
}

func messages(c awsCall) []iotAnalyticsMessage {
	var out []iotAnalyticsMessage
	ms, _ := c.body["messages"].([]any)
	for _, x := range ms {
		m, _ := x.(map[string]any)
		s, _ := m["payload"].(string)
		p, err := stdbase64.StdEncoding.DecodeString(s)
		if err != nil {
			panic(fmt.Sprintf("payload %q is not base64: %v", s, err))
		}
		id, _ := m["messageId"].(string)
		out = append(out, iotAnalyticsMessage{id, string(p)})
	}
	return out
}

// TestIoTAnalyticsBatchPutMessageRetriesOnlyFailedMessages: messageIds are
// the prefix and the sequence number; a message in
// batchPutMessageErrorEntries is sent again alone, the others once.
func TestIoTAnalyticsBatchPutMessageRetriesOnlyFailedMessages(t *testing.T) {
	a := &iotAnalyticsService{fail: map[string]bool{"dev-2": true}}
	f := newAWSFake(t, "iotanalytics", a.answer)
	r := newAWSRig(t, export.Options{AWS: export.AWSOptions{Endpoints: map[string]string{export.ServiceIoTAnalytics: f.url()}}})
	r.stream("s")
	r.append("s", payloads(0, 4)...)
	release := f.holdFrom(1)
	r.export("s", map[string]any{"iotAnalytics": []any{map[string]any{"identifier": "ita", "iotChannel": "telemetry_ch",
		"iotMsgIdPrefix": "dev-", "batchSize": 3, "priority": 2}}})
	r.waitStatus("s", func(s export.Status) bool {
		return strings.Contains(s.ErrorMessage, "1 of 3 messages failed") && strings.Contains(s.ErrorMessage, "dev-2: InternalFailureException") &&
			s.LastExportedSequenceNumber == -1
	})
	release()
	r.waitStatus("s", func(s export.Status) bool {
		return s.LastExportedSequenceNumber == 4 && s.ExportedMessagesCount == 5 && s.ErrorMessage == ""
	})

	calls := f.recorded()
	if len(calls) != 3 {
		t.Fatalf("%d BatchPutMessage calls, want 3: %+v", len(calls), calls)
	}
	want := [][]iotAnalyticsMessage{
		{{"dev-0", "message 0"}, {"dev-1", "message 1"}, {"dev-2", "message 2"}},
		{{"dev-2", "message 2"}},
		{{"dev-3", "message 3"}, {"dev-4", "message 4"}},
	}
	for i, c := range calls {
		f.checkCall(c)
		if c.method != "POST" || c.path != "/messages/batch" || c.ctype != "application/json" || c.body["channelName"] != "telemetry_ch" || len(c.body) != 2 {
			t.Errorf("call %d: %s %s type %q body %v", i, c.method, c.path, c.ctype, c.body)
		}
		if got := messages(c); !slices.Equal(got, want[i]) {
			t.Errorf("call %d carried %+v, want %+v", i, got, want[i])
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(a.accepted) != 5 {
		t.Fatalf("IoT Analytics holds %+v: each message exactly once expected", a.accepted)
	}
}

// TestIoTAnalyticsWithoutPrefix: the messageId is the sequence number.
func TestIoTAnalyticsWithoutPrefix(t *testing.T) {
	a := &iotAnalyticsService{}
	f := newAWSFake(t, "iotanalytics", a.answer)
	r := newAWSRig(t, export.Options{AWS: export.AWSOptions{Endpoints: map[string]string{export.ServiceIoTAnalytics: f.url()}}})
	r.stream("s")
	r.append("s", payloads(0, 1)...)
	r.export("s", map[string]any{"iotAnalytics": []any{map[string]any{"identifier": "ita", "iotChannel": "c"}}})
	r.waitStatus("s", func(s export.Status) bool { return s.LastExportedSequenceNumber == 1 })
	f.mu.Lock()
	defer f.mu.Unlock()
	if !slices.Equal(a.accepted, []iotAnalyticsMessage{{"0", "message 0"}, {"1", "message 1"}}) {
		t.Fatalf("IoT Analytics holds %+v", a.accepted)
	}
}
