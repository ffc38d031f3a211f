package shadow

import (
	"bytes"
	"encoding/json"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	brokerv1 "github.com/evergreen-edge/evergreen/proto/evergreen/broker/v1"
	"github.com/evergreen-edge/evergreen/services/kit/subjects"
	"github.com/evergreen-edge/evergreen/services/kit/topic"
	"github.com/evergreen-edge/evergreen/shadow/cloudsync"
	"github.com/evergreen-edge/evergreen/shadow/doc"
	"github.com/evergreen-edge/evergreen/shadow/store"
	"github.com/nats-io/nats.go"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// Cloud sync (things with SyncShadow: true), the rule of cloudsync/RULE.md:
//
//   - Every decision is taken by reconcile on a fresh cloud document: a
//     local change does not push anything by itself, it asks the cloud for
//     its document (/get), and the answer is reconciled with the local
//     document against the base (the cloud document last reconciled). So
//     a change made offline can never overwrite a newer change the cloud
//     made meanwhile: both are compared field by field when the cloud
//     answers.
//   - What the cloud publishes on /update/documents (any writer's update,
//     ours included) and /delete/accepted is reconciled the same way.
//   - When a cloud connection is (re)made, every synced shadow is
//     reconciled again (/get for each).
//   - The cloud's version is recorded per shadow to ignore documents that
//     arrive out of order; it never becomes the local version.
//
// The requests go to the broker on evergreen.shadow.cloud and the cloud's
// answers come back on evergreen.broker.cloud.shadow.

// getRetryAfter is how long a /get to the cloud is trusted to be in flight
// before a new local change asks again.
const getRetryAfter = 10 * time.Second

// resyncDelay gathers the ready events of several cloud connections into
// one resync.
const resyncDelay = 200 * time.Millisecond

type syncer struct {
	s     *Service
	token atomic.Uint64

	mu       sync.Mutex
	asked    map[store.Key]time.Time // /get in flight
	resyncAt *time.Timer

	reconciled atomic.Uint64
	conflicts  atomic.Uint64
}

func newSyncer(s *Service) *syncer {
	return &syncer{s: s, asked: map[store.Key]time.Time{}}
}

func (y *syncer) nextToken() string {
	return "evergreen-sync-" + strconv.FormatUint(y.token.Add(1), 10)
}

// cloudRequest sends a shadow request to the cloud through the broker.
func (y *syncer) cloudRequest(k store.Key, op string, payload []byte) {
	sh := topic.Shadow{Thing: k.Thing, Name: k.Name}
	y.s.busPublish(subjects.ShadowCloud, &brokerv1.RoutedMessage{
		Topic:   sh.Topic(op, ""),
		Payload: payload,
		Source:  &brokerv1.Endpoint{Kind: brokerv1.EndpointKind_ENDPOINT_KIND_SHADOW},
		Qos:     1,
		Time:    timestamppb.Now(),
	})
}

// ask sends /get for k unless one is in flight (force: always). Without
// a cloud (no coreThing.iotHost) nothing is sent: the broker would only
// drop it, and count it as a message lost for the cloud.
func (y *syncer) ask(k store.Key, force bool) {
	if y.s.env.Config.CoreThing.IotHost == "" {
		return
	}
	now := time.Now()
	y.mu.Lock()
	if t, ok := y.asked[k]; ok && !force && now.Sub(t) < getRetryAfter {
		y.mu.Unlock()
		return
	}
	y.asked[k] = now
	y.mu.Unlock()
	y.cloudRequest(k, "get", []byte(`{"clientToken":"`+y.nextToken()+`"}`))
}

// push is called after a local change of a synced shadow.
func (y *syncer) push(k store.Key, _ *record) { y.ask(k, false) }

// resyncAll asks the cloud for every synced shadow: the classic shadow of
// each synced thing and every named shadow stored for it.
func (y *syncer) resyncAll(why string) {
	ts := y.s.things.Load()
	if len(ts.synced) == 0 || y.s.env.Config.CoreThing.IotHost == "" {
		return
	}
	var keys []store.Key
	for thing := range ts.synced {
		keys = append(keys, store.Key{Thing: thing})
		y.s.db.Sizes(thing, func(k store.Key, _ int) {
			if k.Name != "" {
				keys = append(keys, k)
			}
		})
	}
	y.s.log.Info("resyncing shadows with the cloud", "why", why, "shadows", len(keys))
	for _, k := range keys {
		y.ask(k, true)
	}
}

// onCloudReady resyncs shortly after a cloud connection made its
// subscriptions.
func (y *syncer) onCloudReady(*nats.Msg) {
	y.mu.Lock()
	defer y.mu.Unlock()
	if y.resyncAt != nil {
		y.resyncAt.Reset(resyncDelay)
		return
	}
	y.resyncAt = time.AfterFunc(resyncDelay, func() {
		y.mu.Lock()
		y.resyncAt = nil
		y.mu.Unlock()
		y.resyncAll("cloud connected")
	})
}

// cloudDocument is the part of the cloud's shadow documents sync reads.
type cloudDocument struct {
	State struct {
		Desired  map[string]any `json:"desired"`
		Reported map[string]any `json:"reported"`
	} `json:"state"`
	Metadata struct {
		Desired  map[string]any `json:"desired"`
		Reported map[string]any `json:"reported"`
	} `json:"metadata"`
	Version int64 `json:"version"`
}

func (d *cloudDocument) toState() *cloudsync.State {
	return &cloudsync.State{
		Desired: d.State.Desired, Reported: d.State.Reported,
		MetaDesired: d.Metadata.Desired, MetaReported: d.Metadata.Reported,
		Exists: true,
	}
}

func decodeJSON(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	return dec.Decode(v)
}

// onCloudMessage takes what the cloud said about a synced shadow.
func (y *syncer) onCloudMessage(msg *nats.Msg) {
	rm := &brokerv1.RoutedMessage{}
	if err := proto.Unmarshal(msg.Data, rm); err != nil {
		y.s.log.Warn("malformed RoutedMessage from the broker", "err", err)
		return
	}
	sh, ok := topic.ParseShadow(rm.GetTopic())
	if !ok || !y.s.synced(sh.Thing) {
		return
	}
	k := store.Key{Thing: sh.Thing, Name: sh.Name}
	r := &request{key: k, op: opCloud}
	switch sh.Op + "/" + sh.Result {
	case "get/accepted":
		var d cloudDocument
		if err := decodeJSON(rm.GetPayload(), &d); err != nil {
			y.s.log.Warn("cloud shadow document is not valid JSON", "topic", rm.GetTopic(), "err", err)
			return
		}
		r.cloud, r.cloudVersion = d.toState(), d.Version
	case "update/documents":
		var d struct {
			Current *cloudDocument `json:"current"`
		}
		if err := decodeJSON(rm.GetPayload(), &d); err != nil || d.Current == nil {
			y.s.log.Warn("cloud /update/documents without a current document", "topic", rm.GetTopic(), "err", err)
			return
		}
		r.cloud, r.cloudVersion = d.Current.toState(), d.Current.Version
	case "delete/accepted":
		var d struct {
			Version int64 `json:"version"`
		}
		decodeJSON(rm.GetPayload(), &d)
		r.cloudVersion = d.Version
	case "get/rejected":
		var e struct {
			Code    int    `json:"code"`
			Message string `json:"message"`
		}
		decodeJSON(rm.GetPayload(), &e)
		if e.Code != 404 {
			y.s.log.Warn("the cloud refused a shadow get", "thing", k.Thing, "name", k.Name, "code", e.Code, "message", e.Message)
			y.forget(k)
			return
		}
	case "update/rejected", "delete/rejected":
		var e struct {
			Code        int    `json:"code"`
			Message     string `json:"message"`
			ClientToken string `json:"clientToken"`
		}
		decodeJSON(rm.GetPayload(), &e)
		y.s.log.Warn("the cloud refused a shadow change; the local shadow stays ahead until the next change or reconnect",
			"thing", k.Thing, "name", k.Name, "op", sh.Op, "code", e.Code, "message", e.Message, "client_token", e.ClientToken)
		return
	default: // update/accepted, update/delta, requests echoed back: documents say it all
		return
	}
	if derr := y.s.eng.submit(r); derr != nil {
		y.s.log.Warn("cloud shadow document dropped: queues full", "thing", k.Thing, "name", k.Name)
		y.forget(k)
	}
}

func (y *syncer) forget(k store.Key) {
	y.mu.Lock()
	delete(y.asked, k)
	y.mu.Unlock()
}

// reconcile runs in the shadow's queue: it merges the cloud's document r
// with the local record, saves, then tells both sides.
func (y *syncer) reconcile(r *request, rec *record, now time.Time) {
	s := y.s
	k := r.key
	if r.cloud != nil || r.cloudVersion != 0 {
		y.forget(k)
	}
	if r.cloudVersion != 0 && r.cloudVersion < rec.Sync.CloudVersion {
		s.log.Debug("stale cloud shadow document ignored", "thing", k.Thing, "name", k.Name, "version", r.cloudVersion, "seen", rec.Sync.CloudVersion)
		return
	}
	base := cloudsync.State{}
	if rec.Sync.Base != nil {
		base = *rec.Sync.Base
	}
	cloud := cloudsync.State{}
	if r.cloud != nil {
		cloud = *r.cloud
	}
	base = cloudsync.Confirm(base, rec.Sync.Sent, rec.Sync.SentDelete, cloud)
	plan := cloudsync.Reconcile(base, cloudsync.FromShadow(rec.Shadow), cloud)
	y.reconciled.Add(1)

	sh := topic.Shadow{Thing: k.Thing, Name: k.Name}
	var publish func()
	switch {
	case plan.DeleteLocal && rec.Shadow.Exists:
		next, out, derr := doc.Delete(rec.Shadow, displayName(k), nil, now)
		if derr != nil {
			s.log.Warn("cloud delete not applied locally", "thing", k.Thing, "name", k.Name, "err", derr)
			return
		}
		rec.Shadow = next
		publish = func() { s.eng.publish(sh.Topic("delete", "accepted"), out) }
	case plan.LocalPatch != nil:
		req := withToken(plan.LocalPatch, y.nextToken())
		res, derr := doc.Update(rec.Shadow, req, now, s.lim)
		if derr != nil {
			s.log.Warn("cloud shadow change not applied locally", "thing", k.Thing, "name", k.Name, "err", derr)
			return
		}
		rec.Shadow = res.Next
		publish = func() {
			s.eng.publish(sh.Topic("update", "accepted"), res.Accepted)
			s.eng.publishChange(sh, res.Delta, res.Documents)
		}
	}
	rec.Sync.Base = &cloud
	rec.Sync.CloudVersion = max(r.cloudVersion, rec.Sync.CloudVersion)
	rec.Sync.Pending = plan.CloudPatch != nil || plan.DeleteCloud
	rec.Sync.Sent, rec.Sync.SentDelete = plan.CloudPatch, plan.DeleteCloud
	if err := s.eng.save(k, rec); err != nil {
		s.log.Error("save synced shadow", "thing", k.Thing, "name", k.Name, "err", err)
		return
	}
	if publish != nil {
		publish()
	}
	switch {
	case plan.DeleteCloud:
		y.cloudRequest(k, "delete", []byte(`{"clientToken":"`+y.nextToken()+`"}`))
	case plan.CloudPatch != nil:
		y.cloudRequest(k, "update", withToken(plan.CloudPatch, y.nextToken()))
	}
	if plan.LocalPatch != nil || plan.DeleteLocal {
		if plan.CloudPatch != nil || plan.DeleteCloud {
			y.conflicts.Add(1)
		}
		s.log.Info("shadow synced from the cloud", "thing", k.Thing, "name", k.Name, "cloud_version", r.cloudVersion, "local_version", rec.Shadow.Version)
	}
}

// withToken adds a clientToken to an update request document.
func withToken(patch []byte, token string) []byte {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(patch, &m); err != nil {
		return patch
	}
	m["clientToken"], _ = json.Marshal(token)
	b, err := json.Marshal(m)
	if err != nil {
		return patch
	}
	return b
}
