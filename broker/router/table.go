package router

import (
	"fmt"
	"maps"
	"math/bits"
	"slices"
	"strings"

	"github.com/evergreen-edge/evergreen/services/kit/arn"
	"github.com/evergreen-edge/evergreen/services/kit/groupdef"
	"github.com/evergreen-edge/evergreen/services/kit/topic"
)

// Table is a compiled subscription table. It is never modified once Compile
// returns it, so any number of goroutines may use it at once. The nil *Table
// denies everything, like an empty one.
type Table struct {
	sources   map[Endpoint]*node // per source, the trie of its subscriptions' subjects
	targets   []Endpoint         // target id -> endpoint, in order of first appearance
	targetIDs map[Endpoint]int32
	subs      []groupdef.Subscription
	cloudSubj []string
	devices   map[string]string // thing name -> lowercase certificate id
}

// Route removes duplicate targets without allocating: up to routeBuffer
// matched ids by sorting a stack buffer, more with a bit set on the stack
// when the table has at most 64*bitSetWords targets (a group within v1's
// quotas of 2,500 devices and 200 functions does), and only beyond that with
// a bit set on the heap.
const (
	routeBuffer = 64
	bitSetWords = 64
)

// Compile builds the table of g. A nil g gives the empty table, which denies
// everything.
//
// Compile does not repeat groupdef's checks (quotas, endpoints that are not
// in the group): a group groupdef accepts always compiles, and a subscription
// naming an endpoint that is not in the group simply routes to nobody who can
// connect. It refuses what would make the table wrong rather than merely
// unusual: a Source, Target, thing ARN or Subject it cannot parse (a group
// built in code that was never validated), and two different thing ARNs with
// the same thing name, which groupdef allows but the broker cannot tell
// apart, since it knows a device by its thing name alone (the MQTT client id).
func Compile(g *groupdef.Group) (*Table, error) {
	t := &Table{
		sources:   map[Endpoint]*node{},
		targetIDs: map[Endpoint]int32{},
		devices:   map[string]string{},
	}
	if g == nil {
		return t, nil
	}
	things := map[string]string{} // thing name -> the ARN that claimed it
	claim := func(thingARN string) (string, error) {
		name, err := arn.ThingName(thingARN)
		if err != nil {
			return "", err
		}
		if prev, ok := things[name]; ok && prev != thingARN {
			return "", fmt.Errorf("thing %q has the same name as %q; the broker knows a device only by its thing name, so one group cannot hold both", thingARN, prev)
		}
		things[name] = thingARN
		return name, nil
	}
	if g.Core != nil {
		for i, c := range g.Core.Cores {
			if _, err := claim(c.ThingArn); err != nil {
				return nil, fmt.Errorf("router: Core.Cores[%d].ThingArn: %w", i, err)
			}
		}
	}
	if g.Devices != nil {
		for i, d := range g.Devices.Devices {
			name, err := claim(d.ThingArn)
			if err != nil {
				return nil, fmt.Errorf("router: Devices[%d].ThingArn: %w", i, err)
			}
			t.devices[name] = certificateID(d.CertificateArn)
		}
	}
	if g.Subscriptions == nil {
		return t, nil
	}
	t.subs = slices.Clone(g.Subscriptions.Subscriptions)
	// A group names each endpoint many times; parse each spelling once.
	parsed := map[string]Endpoint{}
	endpoint := func(i int, field, s string) (Endpoint, error) {
		if e, ok := parsed[s]; ok {
			return e, nil
		}
		e, err := ParseEndpoint(s)
		if err == nil && e.Kind == KindDevice {
			_, err = claim(s)
		}
		if err != nil {
			return e, fmt.Errorf("router: Subscriptions[%d].%s: %w", i, field, err)
		}
		parsed[s] = e
		return e, nil
	}
	cloudSeen := map[string]bool{}
	var slab nodeSlab
	for i, s := range t.subs {
		src, err := endpoint(i, "Source", s.Source)
		if err != nil {
			return nil, err
		}
		dst, err := endpoint(i, "Target", s.Target)
		if err != nil {
			return nil, err
		}
		if err := topic.ValidateFilter(s.Subject); err != nil {
			return nil, fmt.Errorf("router: Subscriptions[%d].Subject: %w", i, err)
		}
		id, ok := t.targetIDs[dst]
		if !ok {
			id = int32(len(t.targets))
			t.targets = append(t.targets, dst)
			t.targetIDs[dst] = id
		}
		root := t.sources[src]
		if root == nil {
			root = slab.alloc()
			t.sources[src] = root
		}
		root.insert(s.Subject, id, &slab)
		if src == Cloud && !cloudSeen[s.Subject] {
			cloudSeen[s.Subject] = true
			t.cloudSubj = append(t.cloudSubj, s.Subject)
		}
	}
	for _, root := range t.sources {
		root.seal()
	}
	return t, nil
}

// certificateID returns the lowercase id at the end of a certificate ARN, ""
// when there is none.
func certificateID(certificateARN string) string {
	c, err := arn.ParseCertificate(certificateARN)
	if err != nil {
		return ""
	}
	return strings.ToLower(c.ID)
}

// Route calls visit once for each distinct target that a subscription of
// the table authorises to receive topic from src, in the order the targets
// first appear in the group. Nothing is visited when no subscription
// matches (default deny), when src has none, or when topic is empty or holds
// a wildcard character. Matching follows topic.Match exactly.
//
// Route does not allocate, except for publishes that match more filters or
// walk more trie paths at once than its stack buffers hold (dozens: only
// heavily wildcarded tables get there).
func (t *Table) Route(src Endpoint, topic string, visit func(dst Endpoint)) {
	if t == nil || !routable(topic) {
		return
	}
	root := t.sources[src]
	if root == nil {
		return
	}
	var hitBuf [frontierSize][]int32
	hits := root.match(topic, hitBuf[:0])
	switch len(hits) {
	case 0:
		return
	case 1: // one list is already a set in first-appearance order
		for _, id := range hits[0] {
			visit(t.targets[id])
		}
		return
	}
	total := 0
	for _, h := range hits {
		total += len(h)
	}
	if total <= routeBuffer {
		var idBuf [routeBuffer]int32
		ids := idBuf[:0]
		for _, h := range hits {
			ids = append(ids, h...)
		}
		slices.Sort(ids)
		prev := int32(-1)
		for _, id := range ids {
			if id != prev {
				visit(t.targets[id])
				prev = id
			}
		}
		return
	}
	// A wide fan-out: mark the targets in a bit set instead of sorting.
	var setBuf [bitSetWords]uint64
	var set []uint64
	if words := (len(t.targets) + 63) / 64; words <= bitSetWords {
		set = setBuf[:words]
	} else {
		set = make([]uint64, words)
	}
	for _, h := range hits {
		for _, id := range h {
			set[id>>6] |= 1 << (id & 63)
		}
	}
	for w, word := range set {
		for word != 0 {
			visit(t.targets[w*64+bits.TrailingZeros64(word)])
			word &= word - 1
		}
	}
}

// Allowed reports whether a subscription of the table lets src send topic
// to dst: exactly when Route(src, topic, ...) would visit dst. The MQTT
// server checks it again at delivery. It does not allocate.
func (t *Table) Allowed(src, dst Endpoint, topic string) bool {
	if t == nil || !routable(topic) {
		return false
	}
	root := t.sources[src]
	if root == nil {
		return false
	}
	id, ok := t.targetIDs[dst]
	if !ok {
		return false
	}
	var hitBuf [frontierSize][]int32
	for _, h := range root.match(topic, hitBuf[:0]) {
		if _, found := slices.BinarySearch(h, id); found {
			return true
		}
	}
	return false
}

// Len returns the number of subscriptions in the table.
func (t *Table) Len() int {
	if t == nil {
		return 0
	}
	return len(t.subs)
}

// Subscriptions returns the subscriptions as deployed, in group order. The
// slice is a copy.
func (t *Table) Subscriptions() []groupdef.Subscription {
	if t == nil {
		return nil
	}
	return slices.Clone(t.subs)
}

// CloudSubjects returns the distinct Subjects of the subscriptions whose
// Source is the cloud, in group order: the filters the cloud connection
// subscribes to upstream. The slice is a copy.
func (t *Table) CloudSubjects() []string {
	if t == nil {
		return nil
	}
	return slices.Clone(t.cloudSubj)
}

// Devices returns the group's devices: thing name -> lowercase certificate
// id, the 64 hex digits at the end of the device's CertificateArn ("" when
// the ARN has none). The MQTT server admits a device of the group whose
// client certificate's SHA-256 equals that id. The map is a copy, so
// callers should keep it per table rather than ask per connection.
func (t *Table) Devices() map[string]string {
	if t == nil {
		return map[string]string{}
	}
	return maps.Clone(t.devices)
}
