package runtime

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	brokerv1 "github.com/evergreen-edge/evergreen/proto/evergreen/broker/v1"
	secretsv1 "github.com/evergreen-edge/evergreen/proto/evergreen/secrets/v1"
	shadowv1 "github.com/evergreen-edge/evergreen/proto/evergreen/shadow/v1"
	"github.com/evergreen-edge/evergreen/runtime/dispatch"
	"github.com/evergreen-edge/evergreen/runtime/shims/nodejs"
	"github.com/evergreen-edge/evergreen/runtime/shims/python"
	"github.com/evergreen-edge/evergreen/services/kit/subjects"
	"github.com/evergreen-edge/evergreen/services/kit/topic"
	"github.com/nats-io/nats.go"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// clientContext is the JSON inside X-Amz-Client-Context (spec 1.6).
type clientContext struct {
	Custom map[string]any `json:"custom"`
}

func encodeContext(custom map[string]any) string {
	b, _ := json.Marshal(clientContext{Custom: custom})
	return base64.StdEncoding.EncodeToString(b)
}

func decodeContext(s string) map[string]any {
	if s == "" {
		return nil
	}
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil
	}
	var cc clientContext
	if json.Unmarshal(b, &cc) != nil {
		return nil
	}
	return cc.Custom
}

var dropped atomic.Uint64

// onDeliver turns a message the router sent to a function (or connector)
// into a work item whose client context carries custom.subject (the
// topic) and custom.source (who published it), as v1 did.
func (s *Service) onDeliver(msg *nats.Msg) {
	rm := &brokerv1.RoutedMessage{}
	if err := proto.Unmarshal(msg.Data, rm); err != nil || len(rm.GetTargets()) == 0 {
		s.log.Warn("malformed RoutedMessage from the broker", "err", err)
		return
	}
	cc := encodeContext(map[string]any{"subject": rm.GetTopic(), "source": s.sourceName(rm.GetSource())})
	for _, t := range rm.GetTargets() {
		if _, err := s.disp.Invoke(RouterARN, t.GetName(), dispatch.Event, cc, rm.GetPayload()); err != nil {
			if n := dropped.Add(1); n == 1 || n%1000 == 0 {
				s.log.Warn("message for a function dropped", "function", t.GetName(), "topic", rm.GetTopic(), "err", err, "dropped_so_far", n)
			}
		}
	}
}

// sourceName is how a function sees who published: the device's thing
// ARN as the group names it, a function's or connector's ARN, "cloud",
// or "GGShadowService".
func (s *Service) sourceName(e *brokerv1.Endpoint) string {
	switch e.GetKind() {
	case brokerv1.EndpointKind_ENDPOINT_KIND_DEVICE:
		s.mu.Lock()
		g := s.group
		s.mu.Unlock()
		if g != nil && g.Devices != nil {
			for _, d := range g.Devices.Devices {
				if strings.HasSuffix(d.ThingArn, ":thing/"+e.GetName()) {
					return d.ThingArn
				}
			}
		}
		if g != nil && g.CoreThingName() == e.GetName() && g.Core != nil && len(g.Core.Cores) > 0 {
			return g.Core.Cores[0].ThingArn
		}
		return e.GetName()
	case brokerv1.EndpointKind_ENDPOINT_KIND_CLOUD:
		return "cloud"
	case brokerv1.EndpointKind_ENDPOINT_KIND_SHADOW:
		return "GGShadowService"
	}
	return e.GetName()
}

// routerCall is GGRouter: a function publishes. The source is the caller
// as its token says, never what the request claims.
func (s *Service) routerCall(caller, cc string, payload []byte) dispatch.Result {
	custom := decodeContext(cc)
	subject, _ := custom["subject"].(string)
	if err := topic.ValidateTopic(subject); err != nil {
		return coreError("InvalidTopic", fmt.Sprintf("publish: topic %q: %v", subject, err))
	}
	rm := &brokerv1.RoutedMessage{
		Topic:   subject,
		Payload: payload,
		Source:  &brokerv1.Endpoint{Kind: brokerv1.EndpointKind_ENDPOINT_KIND_FUNCTION, Name: caller},
		Time:    timestamppb.Now(),
	}
	if policy, _ := custom["queueFullPolicy"].(string); policy == dispatch.AllOrError {
		if err := s.publishAll(caller, rm); err != nil {
			return dispatch.Result{Err: err}
		}
		return dispatch.Result{}
	}
	b, _ := proto.Marshal(rm)
	if err := s.env.Bus.Publish(subjects.RuntimePublish, b); err != nil {
		return coreError("PublishFailed", "publish: "+err.Error())
	}
	return dispatch.Result{}
}

// planTimeout bounds the broker's answer to a route plan.
const planTimeout = 2 * time.Second

// publishAll publishes rm to every target or to none (queueFullPolicy
// AllOrError, spec 1.4): the broker names the targets and those of its
// own without room (RoutePlan); the functions and connectors among them
// are queued here, all or none; only then does the broker get the
// message with the plan's targets and deliver to the rest. Between the
// plan and the delivery another message may take a device's last slot:
// the check is a snapshot, not a reservation. A refusal wraps
// dispatch.ErrQueueFull (HTTP 429 to the caller, the C SDK's
// GG_REQUEST_AGAIN); a broker that does not answer, ErrUnavailable.
func (s *Service) publishAll(caller string, rm *brokerv1.RoutedMessage) error {
	b, _ := proto.Marshal(rm)
	reply, err := s.env.Bus.Request(subjects.RuntimeRoutePlan, b, planTimeout)
	if err != nil {
		return fmt.Errorf("publish %q with queueFullPolicy AllOrError: the router did not answer: %v: %w", rm.GetTopic(), err, dispatch.ErrUnavailable)
	}
	plan := &brokerv1.RoutePlan{}
	if err := proto.Unmarshal(reply.Data, plan); err != nil {
		return fmt.Errorf("publish %q with queueFullPolicy AllOrError: malformed RoutePlan from the router: %v: %w", rm.GetTopic(), err, dispatch.ErrUnavailable)
	}
	if len(plan.GetFull()) > 0 {
		reasons := make([]string, len(plan.GetFull()))
		for i, f := range plan.GetFull() {
			reasons[i] = f.GetReason()
		}
		return fmt.Errorf("publish %q with queueFullPolicy AllOrError: delivered to none: %s: %w", rm.GetTopic(), strings.Join(reasons, "; "), dispatch.ErrQueueFull)
	}
	var ours []string
	for _, t := range plan.GetTargets() {
		switch t.GetKind() {
		case brokerv1.EndpointKind_ENDPOINT_KIND_FUNCTION, brokerv1.EndpointKind_ENDPOINT_KIND_CONNECTOR:
			ours = append(ours, t.GetName())
		}
	}
	if len(ours) > 0 {
		cc := encodeContext(map[string]any{"subject": rm.GetTopic(), "source": caller})
		if _, err := s.disp.InvokeAll(ours, dispatch.AllOrError, cc, rm.GetPayload()); err != nil {
			return fmt.Errorf("publish %q with queueFullPolicy AllOrError: delivered to none: %w", rm.GetTopic(), err)
		}
	}
	rm.Targets = plan.GetTargets()
	b, _ = proto.Marshal(rm)
	if err := s.env.Bus.Publish(subjects.RuntimePublish, b); err != nil {
		// The functions have it already; the rest cannot be taken back.
		return fmt.Errorf("publish %q with queueFullPolicy AllOrError: to the router: %v: %w", rm.GetTopic(), err, dispatch.ErrUnavailable)
	}
	return nil
}

// shadowTimeout bounds a shadow call of a function.
const shadowTimeout = 5 * time.Second

// shadowCall is GGShadowService: the operation comes from custom.subject
// ($aws/things/<thing>/shadow/<get|update|delete>). The answer is the
// /accepted document, or the shadow error document ({"code","message"}),
// which the SDKs turn into ShadowError (spec 1.8).
func (s *Service) shadowCall(caller, cc string, payload []byte) dispatch.Result {
	custom := decodeContext(cc)
	subject, _ := custom["subject"].(string)
	sh, ok := topic.ParseShadow(subject)
	if !ok || sh.Result != "" {
		return shadowError(400, fmt.Sprintf("%q is not a shadow request topic", subject))
	}
	ctx, cancel := context.WithTimeout(context.Background(), shadowTimeout)
	defer cancel()
	var d *shadowv1.Document
	var err error
	switch sh.Op {
	case "get":
		d, err = s.shadow.Get(ctx, &shadowv1.GetRequest{Thing: sh.Thing, Name: sh.Name, Client: caller})
	case "update":
		d, err = s.shadow.Update(ctx, &shadowv1.UpdateRequest{Thing: sh.Thing, Name: sh.Name, Document: payload, Client: caller})
	case "delete":
		d, err = s.shadow.Delete(ctx, &shadowv1.DeleteRequest{Thing: sh.Thing, Name: sh.Name, Client: caller})
	}
	if err != nil {
		msg := status.Convert(err).Message()
		if len(msg) > 4 && msg[3] == ' ' {
			if code, cerr := strconv.Atoi(msg[:3]); cerr == nil {
				return shadowError(code, msg[4:])
			}
		}
		return shadowError(500, "Internal service failure")
	}
	return dispatch.Result{Payload: d.GetDocument()}
}

func shadowError(code int, msg string) dispatch.Result {
	b, _ := json.Marshal(map[string]any{"code": code, "message": msg, "timestamp": time.Now().Unix()})
	return dispatch.Result{Payload: b}
}

// secretsCall is GGSecretManager: the secrets daemon decides whether the
// caller (as its token says) may read the secret and answers in the shape
// of spec 1.8, success or {"Status","Message"}, which goes back as is.
func (s *Service) secretsCall(caller, _ string, payload []byte) dispatch.Result {
	ctx, cancel := context.WithTimeout(context.Background(), shadowTimeout)
	defer cancel()
	res, err := s.secrets.GetSecretValue(ctx, &secretsv1.GetSecretValueRequest{FunctionArn: caller, Request: payload})
	if err != nil {
		b, _ := json.Marshal(map[string]any{"Status": 500, "Message": "Internal error: the secrets service did not answer: " + status.Convert(err).Message()})
		return dispatch.Result{Payload: b}
	}
	return dispatch.Result{Payload: res.GetPayload()}
}

func coreError(typ, msg string) dispatch.Result {
	b, _ := json.Marshal(map[string]string{"errorType": typ, "errorMessage": msg})
	return dispatch.Result{Payload: b, FunctionError: dispatch.Unhandled}
}

// installShims writes the language runtimes shipped in the binary under
// dir/python and dir/nodejs (replacing what an older binary left).
func installShims(dir string) (string, error) {
	for _, x := range []struct {
		name  string
		files fs.FS
	}{
		{"python", python.Files},
		{"nodejs", nodejs.Files},
	} {
		if err := installTree(filepath.Join(dir, x.name), x.files); err != nil {
			return "", err
		}
	}
	return dir, nil
}

func installTree(dest string, files fs.FS) error {
	tmp := dest + ".tmp"
	os.RemoveAll(tmp)
	err := fs.WalkDir(files, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		target := filepath.Join(tmp, p)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		b, err := fs.ReadFile(files, p)
		if err != nil {
			return err
		}
		return os.WriteFile(target, b, 0o644)
	})
	if err != nil {
		return err
	}
	os.RemoveAll(dest)
	return os.Rename(tmp, dest)
}
