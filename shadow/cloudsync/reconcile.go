// Package cloudsync decides how a local shadow and its cloud copy converge
// after they changed independently (a thing marked SyncShadow, a core that was
// offline). v1 never documented its conflict rule; ours is a three-way merge
// against the document both sides agreed on at the last sync, field by field,
// so that edits to different fields on the two sides both survive. RULE.md
// states the rule for users.
//
// The package is pure: it compares documents and writes /update requests; the
// daemon sends them, applies them and stores the new base.
package cloudsync

import (
	"math"

	"github.com/evergreen-edge/evergreen/shadow/doc"
)

// State is one side's shadow document as far as syncing cares: the two state
// sections, their metadata and whether the shadow exists. Versions are left
// out on purpose: each side numbers its own updates, so a version never
// crosses from one side to the other.
type State struct {
	Desired, Reported         map[string]any
	MetaDesired, MetaReported map[string]any
	Exists                    bool
}

// Record is what the daemon keeps per synced shadow after a successful sync:
// the agreed document and each side's version at that moment. The versions
// only tell the daemon whether a side moved since; they are never compared
// with each other.
type Record struct {
	Base         State
	LocalVersion int64
	CloudVersion int64
}

// FromShadow copies a stored shadow into a State. A deleted shadow becomes the
// zero State whatever its sections still hold.
func FromShadow(s doc.Shadow) State {
	if !s.Exists {
		return State{}
	}
	return State{
		Desired:      cloneObject(s.Desired),
		Reported:     cloneObject(s.Reported),
		MetaDesired:  cloneObject(s.MetaDesired),
		MetaReported: cloneObject(s.MetaReported),
		Exists:       true,
	}
}

// Plan is the outcome of one reconciliation.
type Plan struct {
	Merged      State  // the new base after both patches are applied
	LocalPatch  []byte // /update request for the local shadow; nil if nothing changes locally
	CloudPatch  []byte // the same for the cloud
	DeleteLocal bool   // delete the local shadow instead of patching
	DeleteCloud bool
}

// Reconcile merges local and cloud against base, the document both agreed on
// at the last sync (the zero State before the first sync).
//
// Merged metadata carries, for each field, the timestamp of the side whose
// value won; the patches themselves carry no metadata, so each side stamps
// the fields it receives with its own clock when it applies them.
func Reconcile(base, local, cloud State) Plan {
	base, local, cloud = normalize(base), normalize(local), normalize(cloud)
	switch {
	case !local.Exists && !cloud.Exists:
		return Plan{}
	case base.Exists && !local.Exists:
		if sameContent(cloud, base) {
			return Plan{DeleteCloud: true}
		}
		// Deleting is not allowed to lose the cloud's newer edits: the
		// cloud document survives whole and is recreated locally.
		merged := cloneState(cloud)
		return Plan{Merged: merged, LocalPatch: Patch(State{}, merged)}
	case base.Exists && !cloud.Exists:
		if sameContent(local, base) {
			return Plan{DeleteLocal: true}
		}
		merged := cloneState(local)
		return Plan{Merged: merged, CloudPatch: Patch(State{}, merged)}
	}
	// Both exist, or there is no base and at least one side exists: a
	// missing side then counts as an empty document that changed nothing.
	d := mergeNode(
		sectionNode(base.Desired, base.MetaDesired),
		sectionNode(local.Desired, local.MetaDesired),
		sectionNode(cloud.Desired, cloud.MetaDesired))
	r := mergeNode(
		sectionNode(base.Reported, base.MetaReported),
		sectionNode(local.Reported, local.MetaReported),
		sectionNode(cloud.Reported, cloud.MetaReported))
	merged := State{Exists: true}
	merged.Desired, merged.MetaDesired = d.section()
	merged.Reported, merged.MetaReported = r.section()
	merged = cloneState(merged)
	return Plan{
		Merged:     merged,
		LocalPatch: Patch(local, merged),
		CloudPatch: Patch(cloud, merged),
	}
}

func normalize(s State) State {
	if !s.Exists {
		return State{}
	}
	return s
}

// sameContent compares the state trees only: rewriting a field with the same
// value moves its timestamp but is not a change worth keeping a deleted
// shadow alive for.
func sameContent(a, b State) bool {
	return sameSection(a.Desired, b.Desired) && sameSection(a.Reported, b.Reported)
}

func sameSection(a, b map[string]any) bool {
	if (a == nil) != (b == nil) {
		return false
	}
	return equalValue(a, b)
}

// node is one path of one side: its value (an object, or a leaf: scalar or
// array), the metadata tree mirroring it, and whether the path exists at all.
type node struct {
	val  any
	meta any
	ok   bool
}

func sectionNode(sec, meta map[string]any) node {
	if sec == nil {
		return node{}
	}
	return node{val: sec, meta: meta, ok: true}
}

func (n node) object() (map[string]any, bool) {
	if !n.ok {
		return nil, false
	}
	m, ok := n.val.(map[string]any)
	return m, ok
}

func (n node) child(k string) node {
	m, ok := n.object()
	if !ok {
		return node{}
	}
	v, ok := m[k]
	if !ok || v == nil {
		return node{}
	}
	var meta any
	if mm, ok := n.meta.(map[string]any); ok {
		meta = mm[k]
	}
	return node{val: v, meta: meta, ok: true}
}

func (n node) section() (map[string]any, map[string]any) {
	if !n.ok {
		return nil, nil
	}
	v, _ := n.val.(map[string]any)
	m, _ := n.meta.(map[string]any)
	if m == nil {
		m = map[string]any{}
	}
	return v, m
}

// mergeNode applies the rule at one path. While neither side holds a leaf
// there, the decision is pushed down to the children, so edits to different
// fields of one object both survive, and a side that removed the object only
// removes the fields the other side left alone. A leaf on either side (a
// value, or a type change between object and leaf) makes the path one value.
func mergeNode(b, l, c node) node {
	if !l.ok && !c.ok {
		return node{}
	}
	lObj, lIsObj := l.object()
	cObj, cIsObj := c.object()
	if (l.ok && !lIsObj) || (c.ok && !cIsObj) {
		return mergeValue(b, l, c)
	}
	out := map[string]any{}
	outMeta := map[string]any{}
	for _, obj := range []map[string]any{lObj, cObj} {
		for k := range obj {
			if _, done := out[k]; done {
				continue
			}
			r := mergeNode(b.child(k), l.child(k), c.child(k))
			if r.ok {
				out[k] = r.val
				outMeta[k] = r.meta
			}
		}
	}
	if len(out) == 0 {
		// Nothing left inside: the object itself survives only if the
		// three-way rule on "there is an object here" keeps it.
		_, bIsObj := b.object()
		if !threeWay(bIsObj, lIsObj, cIsObj) {
			return node{}
		}
	}
	return node{val: out, meta: outMeta, ok: true}
}

func threeWay(base, local, cloud bool) bool {
	if local == base {
		return cloud
	}
	return local
}

func mergeValue(b, l, c node) node {
	changedL := !equalNode(l, b)
	changedC := !equalNode(c, b)
	switch {
	case !changedL && !changedC:
		return newer(l, c)
	case !changedC:
		return l
	case !changedL:
		return c
	case equalNode(l, c):
		return newer(l, c)
	case !l.ok: // a deletion never beats a modification
		return c
	case !c.ok:
		return l
	default:
		return newer(l, c)
	}
}

// newer picks the side whose value was written last; the cloud wins a tie
// because it is the copy every other core and app also sees.
func newer(l, c node) node {
	if timestamp(l) > timestamp(c) {
		return l
	}
	return c
}

func equalNode(a, b node) bool {
	if a.ok != b.ok {
		return false
	}
	return !a.ok || equalValue(a.val, b.val)
}

// timestamp is when a path was last written: its own timestamp for a leaf,
// the latest of its leaves for an object. Missing metadata counts as oldest.
func timestamp(n node) float64 {
	if !n.ok {
		return math.Inf(-1)
	}
	if obj, ok := n.object(); ok {
		t := math.Inf(-1)
		for k := range obj {
			t = max(t, timestamp(n.child(k)))
		}
		return t
	}
	return metaTime(n.meta)
}

// metaTime reads a leaf's metadata: {"timestamp": T}, or for an array the
// list AWS IoT keeps, one entry per element (the latest counts).
func metaTime(meta any) float64 {
	if list, ok := meta.([]any); ok {
		t := math.Inf(-1)
		for _, e := range list {
			t = max(t, metaTime(e))
		}
		return t
	}
	m, ok := meta.(map[string]any)
	if !ok {
		return math.Inf(-1)
	}
	t, ok := number(m["timestamp"])
	if !ok {
		return math.Inf(-1)
	}
	return t
}
