package router

import (
	"slices"
	"strings"
)

// node is one level of a source's filter trie. A filter "a/+/#" is stored as
// root.child("a").plus with its target on hash: the '#' level is not a node,
// because it can only be last and matches whatever is left of the topic.
type node struct {
	// Literal children: in kids while there are few, which is nearly
	// always and is faster to search than a map; in lit once there are more
	// than smallFanout.
	kids  []edge
	lit   map[string]*node
	plus  *node   // child for a '+' level
	exact []int32 // targets of filters that end at this node
	hash  []int32 // targets of filters that end with '#' after this node
}

type edge struct {
	label string
	node  *node
}

// smallFanout is the number of literal children kept in slices.
const smallFanout = 8

func (n *node) child(label string) *node {
	if n.lit != nil {
		return n.lit[label]
	}
	for _, e := range n.kids {
		if e.label == label {
			return e.node
		}
	}
	return nil
}

// nodeSlab hands out nodes from chunks, so that compiling 10,000
// subscriptions does not cost one allocation per node.
type nodeSlab []node

func (s *nodeSlab) alloc() *node {
	if len(*s) == 0 {
		*s = make([]node, 256)
	}
	n := &(*s)[0]
	*s = (*s)[1:]
	return n
}

// insert adds a route to target for filter, which topic.ValidateFilter has
// accepted.
func (n *node) insert(filter string, target int32, slab *nodeSlab) {
	for {
		level, rest, more := strings.Cut(filter, "/")
		switch level {
		case "#":
			n.hash = append(n.hash, target)
			return
		case "+":
			if n.plus == nil {
				n.plus = slab.alloc()
			}
			n = n.plus
		default:
			child := n.child(level)
			if child == nil {
				child = slab.alloc()
				n.addChild(level, child)
			}
			n = child
		}
		if !more {
			n.exact = append(n.exact, target)
			return
		}
		filter = rest
	}
}

func (n *node) addChild(label string, child *node) {
	if n.lit == nil && len(n.kids) < smallFanout {
		n.kids = append(n.kids, edge{label, child})
		return
	}
	if n.lit == nil {
		n.lit = make(map[string]*node, 2*smallFanout)
		for _, e := range n.kids {
			n.lit[e.label] = e.node
		}
		n.kids = nil
	}
	n.lit[label] = child
}

// seal sorts and deduplicates every target list below n, so that a list is
// already a set (Route may hand it out as is) and Allowed can binary-search it.
func (n *node) seal() {
	n.exact = asSet(n.exact)
	n.hash = asSet(n.hash)
	n.kids = slices.Clip(n.kids)
	if n.plus != nil {
		n.plus.seal()
	}
	for _, e := range n.kids {
		e.node.seal()
	}
	for _, c := range n.lit {
		c.seal()
	}
}

func asSet(ids []int32) []int32 {
	if len(ids) == 0 {
		return nil
	}
	slices.Sort(ids)
	return slices.Clip(slices.Compact(ids))
}

// frontierSize is how many trie nodes may be alive at one level, and how
// many target lists may match, before match spills to the heap. Ordinary
// tables keep a handful; it takes a source with dozens of overlapping
// wildcard subjects to go past it.
const frontierSize = 32

// match appends to hits the target list of every filter below n that
// matches topic, and returns hits. Each list is a set, but a target may be
// in several lists. topic is non-empty and has no wildcard characters.
//
// The walk keeps the frontier of nodes that match the levels consumed so
// far, so it visits only nodes on a matching path: its cost depends on the
// topic's depth and on the wildcards of this source's filters, never on how
// many subscriptions there are.
func (n *node) match(topic string, hits [][]int32) [][]int32 {
	var bufA, bufB [frontierSize]*node
	cur, next := append(bufA[:0], n), bufB[:0]
	// A filter whose first level is a wildcard does not match a topic
	// starting with '$': only the root's '+' and '#' are concerned.
	reserved := topic[0] == '$'
	for {
		level, rest, more := strings.Cut(topic, "/")
		next = next[:0]
		for _, c := range cur {
			if c.hash != nil && !reserved {
				hits = append(hits, c.hash)
			}
			if child := c.child(level); child != nil {
				next = append(next, child)
			}
			if c.plus != nil && !reserved {
				next = append(next, c.plus)
			}
		}
		reserved = false
		cur, next = next, cur
		if len(cur) == 0 {
			return hits
		}
		if !more {
			break
		}
		topic = rest
	}
	for _, c := range cur {
		if c.exact != nil {
			hits = append(hits, c.exact)
		}
		if c.hash != nil { // '#' matches zero levels: "a/#" matches "a"
			hits = append(hits, c.hash)
		}
	}
	return hits
}

// routable reports whether topic can match any filter: topic.Match never
// matches an empty topic or one holding a wildcard character.
func routable(topic string) bool {
	if topic == "" {
		return false
	}
	for i := 0; i < len(topic); i++ {
		if topic[i] == '+' || topic[i] == '#' {
			return false
		}
	}
	return true
}
