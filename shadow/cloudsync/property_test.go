package cloudsync

import (
	"encoding/json"
	"math/rand/v2"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

// TestReconcileProperties runs the rule on random histories: a random base,
// and each side a random edit of it (fields and objects changed, added,
// removed, types changed, sections and whole shadows deleted), with
// timestamps from a small range so that ties happen.
func TestReconcileProperties(t *testing.T) {
	g := gen{rand.New(rand.NewPCG(1, 2))}
	runs := 20000
	if testing.Short() {
		runs = 2000
	}
	for i := range runs {
		base := g.state()
		local := g.edit(base)
		cloud := g.edit(base)
		p := Reconcile(base, local, cloud)

		// Checked in line, not as subtests: twenty thousand of those would
		// drown -v output.
		checkMeta(t, p.Merged)
		checkConverges(t, local, cloud, p)

		// Once both sides hold Merged, the next sync has nothing to do.
		l2, c2 := apply(t, local, p.LocalPatch), apply(t, cloud, p.CloudPatch)
		if p.DeleteLocal {
			l2 = State{}
		}
		if p.DeleteCloud {
			c2 = State{}
		}
		if again := Reconcile(p.Merged, l2, c2); again.LocalPatch != nil || again.CloudPatch != nil || again.DeleteLocal || again.DeleteCloud {
			t.Errorf("second sync is not a no-op: %+v", again)
		}

		// A side nobody touched simply takes the other side's document.
		if sameDoc(cloud, normalize(base)) && (!sameDoc(p.Merged, local) || p.LocalPatch != nil || p.DeleteLocal) {
			t.Errorf("cloud untouched, yet merged %s != local %s or local is patched", show(p.Merged), show(local))
		}
		if sameDoc(local, normalize(base)) && (!sameDoc(p.Merged, cloud) || p.CloudPatch != nil || p.DeleteCloud) {
			t.Errorf("local untouched, yet merged %s != cloud %s or cloud is patched", show(p.Merged), show(cloud))
		}

		// A field one side modified is never lost because the other
		// side removed it (unless that side put a value of its own
		// on the way, which is a conflict, not a removal).
		checkKept(t, "local", base, local, cloud, p.Merged)
		checkKept(t, "cloud", base, cloud, local, p.Merged)
		if t.Failed() {
			t.Fatalf("run %d:\nbase  %s\nlocal %s\ncloud %s\nplan  merged %s local %s cloud %s delete %v/%v",
				i, show(base), show(local), show(cloud), show(p.Merged), p.LocalPatch, p.CloudPatch, p.DeleteLocal, p.DeleteCloud)
		}
	}
}

func checkKept(t *testing.T, name string, base, mine, other, merged State) {
	t.Helper()
	if !mine.Exists {
		return
	}
	for _, sec := range []struct {
		label                  string
		base, mine, other, out map[string]any
	}{
		{"desired", base.Desired, mine.Desired, other.Desired, merged.Desired},
		{"reported", base.Reported, mine.Reported, other.Reported, merged.Reported},
	} {
		if !base.Exists {
			sec.base = nil
		}
		if !other.Exists {
			sec.other = nil
		}
		for path, v := range leaves(sec.mine, "") {
			keys := strings.Split(path, "/")
			if bv, ok := lookup(sec.base, keys); ok && reflect.DeepEqual(bv, v) {
				continue // not modified
			}
			if blocked(sec.other, keys) {
				continue
			}
			if got, ok := lookup(sec.out, keys); !ok || !reflect.DeepEqual(got, v) {
				t.Errorf("%s modified %s.%s to %v and the other side removed it, merged has %v", name, sec.label, path, v, got)
			}
		}
	}
}

func leaves(obj map[string]any, prefix string) map[string]any {
	out := map[string]any{}
	for k, v := range obj {
		if o, ok := v.(map[string]any); ok {
			for p, lv := range leaves(o, prefix+k+"/") {
				out[p] = lv
			}
			continue
		}
		out[prefix+k] = v
	}
	return out
}

func lookup(obj map[string]any, keys []string) (any, bool) {
	var v any = obj
	for _, k := range keys {
		o, ok := v.(map[string]any)
		if !ok {
			return nil, false
		}
		if v, ok = o[k]; !ok {
			return nil, false
		}
	}
	return v, obj != nil
}

// blocked reports whether obj holds something at the path or a leaf on the
// way to it.
func blocked(obj map[string]any, keys []string) bool {
	cur := obj
	for _, k := range keys {
		v, ok := cur[k]
		if !ok {
			return false
		}
		o, isObj := v.(map[string]any)
		if !isObj {
			return true
		}
		cur = o
	}
	return true
}

type gen struct{ r *rand.Rand }

var genKeys = []string{"a", "b", "c"}

func (g gen) num() json.Number { return json.Number(strconv.Itoa(g.r.IntN(4))) }

func (g gen) leaf() any {
	switch g.r.IntN(6) {
	case 0:
		return []string{"x", "y"}[g.r.IntN(2)]
	case 1:
		return g.r.IntN(2) == 0
	case 2:
		arr := []any{}
		for range g.r.IntN(3) {
			arr = append(arr, g.num())
		}
		return arr
	case 3:
		return []any{map[string]any{"k": g.num()}}
	default:
		return g.num()
	}
}

func (g gen) value(depth int) any {
	if depth > 0 && g.r.IntN(3) == 0 {
		return g.object(depth - 1)
	}
	return g.leaf()
}

func (g gen) object(depth int) map[string]any {
	m := map[string]any{}
	for _, k := range genKeys {
		if g.r.IntN(2) == 0 {
			m[k] = g.value(depth)
		}
	}
	return m
}

func (g gen) section() map[string]any {
	if g.r.IntN(5) == 0 {
		return nil
	}
	return g.object(2)
}

func (g gen) state() State {
	if g.r.IntN(8) == 0 {
		return State{}
	}
	s := State{Desired: g.section(), Reported: g.section(), Exists: true}
	s.MetaDesired = g.stamp(s.Desired, nil, nil)
	s.MetaReported = g.stamp(s.Reported, nil, nil)
	return s
}

// edit changes base the way one side might while offline.
func (g gen) edit(base State) State {
	switch {
	case !base.Exists && g.r.IntN(2) == 0:
		return State{}
	case !base.Exists:
		return g.state()
	case g.r.IntN(8) == 0:
		return State{}
	case g.r.IntN(4) == 0:
		return cloneState(base)
	}
	s := State{Exists: true, Desired: g.editSection(base.Desired), Reported: g.editSection(base.Reported)}
	s.MetaDesired = g.stamp(s.Desired, base.Desired, base.MetaDesired)
	s.MetaReported = g.stamp(s.Reported, base.Reported, base.MetaReported)
	return s
}

func (g gen) editSection(sec map[string]any) map[string]any {
	switch {
	case sec == nil && g.r.IntN(3) == 0:
		return g.object(2)
	case sec == nil:
		return nil
	case g.r.IntN(10) == 0:
		return nil
	}
	return g.editObject(sec, 2)
}

func (g gen) editObject(obj map[string]any, depth int) map[string]any {
	out := cloneObject(obj)
	for _, k := range genKeys {
		switch g.r.IntN(8) {
		case 0:
			delete(out, k)
		case 1:
			out[k] = g.value(depth)
		case 2, 3:
			if o, ok := out[k].(map[string]any); ok && depth > 0 {
				out[k] = g.editObject(o, depth-1)
			}
		}
	}
	return out
}

// stamp builds the metadata of tree: a leaf the side left as in base keeps
// base's timestamp (now and then it was rewritten with the same value and
// got a new one), anything else gets a new timestamp from 1 to 3.
func (g gen) stamp(tree, base, baseMeta map[string]any) map[string]any {
	if tree == nil {
		return nil
	}
	m := map[string]any{}
	for k, v := range tree {
		bm, _ := baseMeta[k].(map[string]any)
		if o, ok := v.(map[string]any); ok {
			bo, _ := base[k].(map[string]any)
			m[k] = g.stamp(o, bo, bm)
			continue
		}
		if bv, ok := base[k]; ok && reflect.DeepEqual(bv, v) && bm != nil && g.r.IntN(10) != 0 {
			m[k] = bm
			continue
		}
		m[k] = map[string]any{"timestamp": json.Number(strconv.Itoa(1 + g.r.IntN(3)))}
	}
	return m
}
