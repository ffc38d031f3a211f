// Package router decides, for every message the broker handles, who may
// receive it: the managed subscriptions of a Greengrass v1 group. A message
// moves from a source to a target only when a subscription {Source, Subject,
// Target} exists whose Subject, an MQTT filter, matches the message's topic.
// Nothing is implied: no subscription means no delivery, and a subscription
// works in its own direction only.
//
// # Data structure
//
// Compile turns the group's subscription list into a Table that is never
// modified afterwards:
//
//   - Targets are interned: each distinct target Endpoint gets a small
//     integer id, in order of first appearance in the group.
//   - Subscriptions are indexed by source: a map from source Endpoint to the
//     root of that source's filter trie. A publish only ever looks at the
//     subscriptions of its own source.
//   - A trie node is one topic level. It has a map of literal children, a '+'
//     child, the sorted set of target ids of filters ending at the node, and
//     the sorted set of target ids of filters ending with '#' right after it
//     ('#' is always last, so it needs no node of its own).
//
// Route looks the source up, then walks the trie level by level keeping the
// frontier of nodes that match the levels read so far (a literal child and
// the '+' child may both continue), collecting the '#' sets on the way and
// the exact and '#' sets of the nodes left at the end. Its cost grows with
// the topic's depth and the wildcards of that one source's filters, not with
// the size of the table; 10,000 subscriptions from 2,500 devices route in
// about 0.3 µs. When a single set matched it is already duplicate-free;
// otherwise the ids are gathered in a stack buffer and sorted (or, for a
// wide fan-out, marked in a bit set over the target ids) and visited once
// each, so a target matched by overlapping subscriptions receives the message
// once. The frontier, the matched sets and the dedup buffers live on the
// stack: Route does not allocate for ordinary traffic.
//
// Matching is exactly that of topic.Match, the rule groupdef validates
// subjects by: '+' is one level (possibly empty), '#' zero or more trailing
// levels, and a filter starting with a wildcard does not match a topic
// starting with '$' (shadow subjects such as $aws/things/sensor-1/shadow/#
// name '$aws' literally and do match).
//
// A Router holds the table in force. A deployment compiles the new table
// off to the side and swaps it in with one atomic store: a message is routed
// entirely by the old table or entirely by the new one, readers never wait,
// and connections are untouched.
package router

import "sync/atomic"

// empty is the table of a Router before its first deployment.
var empty, _ = Compile(nil)

// Router holds the table in force. The zero Router is ready to use and
// denies everything, as does New().
type Router struct {
	table atomic.Pointer[Table]
}

// New returns a Router holding the empty table.
func New() *Router {
	r := &Router{}
	r.table.Store(empty)
	return r
}

// Table returns the table in force. Route a whole message with the table one
// call returned, so that it sees a single deployment.
func (r *Router) Table() *Table {
	if t := r.table.Load(); t != nil {
		return t
	}
	return empty
}

// Swap puts t in force and returns the table it replaces. A nil t puts the
// empty table in force.
func (r *Router) Swap(t *Table) *Table {
	if t == nil {
		t = empty
	}
	if prev := r.table.Swap(t); prev != nil {
		return prev
	}
	return empty
}
