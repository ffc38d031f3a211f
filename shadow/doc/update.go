package doc

import (
	"encoding/json"
	"math"
	"strconv"
	"time"
	"unicode/utf8"
)

// Limits bound what an update may store (spec 6.4).
type Limits struct {
	MaxStateBytes       int // desired+reported JSON, excluding metadata; default 8192
	MaxDepth            int // nesting under desired/reported; default 6
	MaxClientTokenBytes int // default 64
}

// DefaultLimits are the AWS IoT classic shadow limits.
func DefaultLimits() Limits {
	return Limits{MaxStateBytes: 8192, MaxDepth: 6, MaxClientTokenBytes: 64}
}

// orDefaults fills fields left zero, so Limits{} means the AWS limits.
func (l Limits) orDefaults() Limits {
	d := DefaultLimits()
	if l.MaxStateBytes <= 0 {
		l.MaxStateBytes = d.MaxStateBytes
	}
	if l.MaxDepth <= 0 {
		l.MaxDepth = d.MaxDepth
	}
	if l.MaxClientTokenBytes <= 0 {
		l.MaxClientTokenBytes = d.MaxClientTokenBytes
	}
	return l
}

// UpdateResult is what one accepted /update produces.
type UpdateResult struct {
	Next        Shadow
	Accepted    []byte // /update/accepted payload
	Delta       []byte // /update/delta payload, nil when there is no delta to publish
	Documents   []byte // /update/documents payload
	ClientToken string
}

// request is a validated /update request.
type request struct {
	state       map[string]any // the request's state node; nil for "state": null
	stateNull   bool
	clientToken string
	version     *int64
}

// parseUpdate validates an /update payload in the order the service does:
// encoding, JSON, clientToken (so later errors can echo it), version, then
// the state tree.
func parseUpdate(payload []byte, lim Limits) (request, *Error) {
	var req request
	if !utf8.Valid(payload) {
		return req, &Error{Code: 415, Message: MsgUnsupportedUTF8}
	}
	v, err := decode(payload)
	if err != nil {
		return req, &Error{Code: 400, Message: MsgInvalidJSON}
	}
	doc, ok := v.(map[string]any)
	if !ok {
		return req, &Error{Code: 400, Message: MsgInvalidJSON}
	}

	if tv, present := doc["clientToken"]; present && tv != nil {
		tok, ok := tv.(string)
		if !ok || len(tok) > lim.MaxClientTokenBytes {
			return req, &Error{Code: 400, Message: MsgInvalidToken}
		}
		req.clientToken = tok
	}
	fail := func(code int, msg string) (request, *Error) {
		return req, &Error{Code: code, Message: msg, ClientToken: req.clientToken}
	}

	if vv, present := doc["version"]; present && vv != nil {
		n, ok := vv.(json.Number)
		if !ok {
			return fail(400, MsgInvalidVersion)
		}
		ver, err := strconv.ParseInt(string(n), 10, 64)
		if err != nil || ver < 0 {
			return fail(400, MsgInvalidVersion)
		}
		req.version = &ver
	}

	sv, present := doc["state"]
	if !present {
		return fail(400, MsgMissingState)
	}
	if sv == nil {
		// {"state": null} clears both sections; the shadow stays.
		req.stateNull = true
		return req, nil
	}
	state, ok := sv.(map[string]any)
	if !ok {
		return fail(400, MsgStateNotObject)
	}
	if d, present := state["desired"]; present && d != nil {
		if _, ok := d.(map[string]any); !ok {
			return fail(400, MsgDesiredNotObject)
		}
	}
	if r, present := state["reported"]; present && r != nil {
		if _, ok := r.(map[string]any); !ok {
			return fail(400, MsgReportedNotObject)
		}
	}
	for k := range state {
		// "delta" is computed by the service; a client may not write it.
		if k != "desired" && k != "reported" {
			return fail(400, MsgInvalidNode)
		}
	}
	for _, section := range []string{"desired", "reported"} {
		if tooDeep(state[section], 0, lim.MaxDepth) {
			return fail(400, msgTooDeep(lim.MaxDepth))
		}
	}
	for _, section := range []string{"desired", "reported"} {
		if nullInArray(state[section], false) {
			return fail(400, MsgInvalidNode)
		}
	}
	req.state = state
	return req, nil
}

// tooDeep reports whether v nests deeper than max levels; the section object
// itself is level 1, so {"a":{"b":1}} under desired is 2 levels deep. Arrays
// count as a level, like objects.
func tooDeep(v any, level, max int) bool {
	switch t := v.(type) {
	case map[string]any:
		if level+1 > max {
			return true
		}
		for _, c := range t {
			if tooDeep(c, level+1, max) {
				return true
			}
		}
	case []any:
		if level+1 > max {
			return true
		}
		for _, c := range t {
			if tooDeep(c, level+1, max) {
				return true
			}
		}
	}
	return false
}

// nullInArray finds a null anywhere inside an array ("Arrays can't have null
// values"); nulls in objects are deletions and are fine.
func nullInArray(v any, inArray bool) bool {
	switch t := v.(type) {
	case nil:
		return inArray
	case map[string]any:
		for _, c := range t {
			if nullInArray(c, inArray) {
				return true
			}
		}
	case []any:
		for _, c := range t {
			if nullInArray(c, true) {
				return true
			}
		}
	}
	return false
}

// stateSize is the size that counts toward MaxStateBytes: the JSON of the
// desired and reported sections, without metadata.
func stateSize(s Shadow) (int, error) {
	n := 0
	for _, sec := range []map[string]any{s.Desired, s.Reported} {
		if len(sec) == 0 {
			continue
		}
		b, err := encode(sec)
		if err != nil {
			return 0, err
		}
		n += len(b)
	}
	return n, nil
}

// Update applies an /update request payload to cur. An update on a shadow
// that does not exist (never created, or deleted) creates it, continuing the
// version numbering. Every accepted update increments the version, even one
// that changes nothing.
func Update(cur Shadow, payload []byte, now time.Time, lim Limits) (UpdateResult, *Error) {
	lim = lim.orDefaults()
	req, e := parseUpdate(payload, lim)
	if e != nil {
		return UpdateResult{}, e
	}
	internal := func() (UpdateResult, *Error) {
		return UpdateResult{}, &Error{Code: 500, Message: MsgInternal, ClientToken: req.clientToken}
	}
	if req.version != nil && *req.version != cur.Version {
		return UpdateResult{}, &Error{Code: 409, Message: MsgVersionConflict, ClientToken: req.clientToken}
	}
	if cur.Version == math.MaxInt64 {
		return internal()
	}

	ts := timestampOf(now)
	next := Shadow{Version: cur.Version + 1, Exists: true}
	if cur.Exists {
		next.Desired = copyMap(cur.Desired)
		next.Reported = copyMap(cur.Reported)
		next.MetaDesired = copyMap(cur.MetaDesired)
		next.MetaReported = copyMap(cur.MetaReported)
	}
	if !req.stateNull {
		applySection(&next.Desired, &next.MetaDesired, req.state, "desired", ts)
		applySection(&next.Reported, &next.MetaReported, req.state, "reported", ts)
	} else {
		next.Desired, next.MetaDesired, next.Reported, next.MetaReported = nil, nil, nil, nil
	}

	size, err := stateSize(next)
	if err != nil {
		return internal()
	}
	if size > lim.MaxStateBytes {
		return UpdateResult{}, &Error{Code: 413, Message: MsgTooLarge, ClientToken: req.clientToken}
	}

	res := UpdateResult{Next: next, ClientToken: req.clientToken}
	withToken := func(m map[string]any) map[string]any {
		if req.clientToken != "" {
			m["clientToken"] = req.clientToken
		}
		return m
	}

	// The accepted echo carries only what the request named, nulls included,
	// with a fresh timestamp for each of those fields.
	var echoState any = req.state
	if req.stateNull {
		echoState = nil
	}
	if res.Accepted, err = encode(withToken(map[string]any{
		"state":     echoState,
		"metadata":  metadataFor(echoState, ts),
		"version":   next.Version,
		"timestamp": now.Unix(),
	})); err != nil {
		return internal()
	}

	if d, dm := computeDelta(next); d != nil {
		if res.Delta, err = encode(withToken(map[string]any{
			"state":     d,
			"metadata":  dm,
			"version":   next.Version,
			"timestamp": now.Unix(),
		})); err != nil {
			return internal()
		}
	}

	// A shadow that did not exist before has "previous": null, as the
	// service sends for the first update of a new shadow.
	var previous any
	if cur.Exists {
		previous = snapshot(cur)
	}
	if res.Documents, err = encode(withToken(map[string]any{
		"previous":  previous,
		"current":   snapshot(next),
		"timestamp": now.Unix(),
	})); err != nil {
		return internal()
	}
	return res, nil
}

// applySection merges the named request section into a stored section.
func applySection(sec, meta *map[string]any, state map[string]any, name string, ts json.Number) {
	v, present := state[name]
	if !present {
		return
	}
	patch, _ := v.(map[string]any)
	if patch == nil {
		// "desired": null removes the whole section.
		*sec, *meta = nil, nil
		return
	}
	if *sec == nil {
		*sec = map[string]any{}
	}
	if *meta == nil {
		*meta = map[string]any{}
	}
	merge(*sec, *meta, patch, ts)
	if len(*sec) == 0 {
		*sec, *meta = nil, nil
	}
}

// snapshot is one side of /update/documents: state, metadata and version,
// without delta.
func snapshot(s Shadow) map[string]any {
	state, meta := stateAndMetadata(s, false)
	return map[string]any{"state": state, "metadata": meta, "version": s.Version}
}
