package doc

import "time"

// Get answers a /get request (payload may be empty or {"clientToken":".."}):
// the /get/accepted payload with full state, computed state.delta and
// metadata.delta, version, timestamp and clientToken. name is the shadow's
// name as used in the 404 message (the thing name for a classic shadow).
// The payload is otherwise ignored: a token that is not a string of at most
// 64 bytes is simply not echoed.
func Get(cur Shadow, name string, payload []byte, now time.Time) ([]byte, *Error) {
	tok := looseClientToken(payload, DefaultLimits().MaxClientTokenBytes)
	if !cur.Exists {
		return nil, &Error{Code: 404, Message: msgNoShadow(name), ClientToken: tok}
	}
	m := fullDocument(cur, now)
	if tok != "" {
		m["clientToken"] = tok
	}
	b, err := encode(m)
	if err != nil {
		return nil, &Error{Code: 500, Message: MsgInternal, ClientToken: tok}
	}
	return b, nil
}

// Delete answers a /delete request: the next stored Shadow (Exists=false,
// Version kept) and the /delete/accepted payload
// {"version":N,"timestamp":T(,"clientToken")}. The payload is ignored except
// for its clientToken.
func Delete(cur Shadow, name string, payload []byte, now time.Time) (Shadow, []byte, *Error) {
	tok := looseClientToken(payload, DefaultLimits().MaxClientTokenBytes)
	if !cur.Exists {
		return cur, nil, &Error{Code: 404, Message: msgNoShadow(name), ClientToken: tok}
	}
	m := map[string]any{"version": cur.Version, "timestamp": now.Unix()}
	if tok != "" {
		m["clientToken"] = tok
	}
	b, err := encode(m)
	if err != nil {
		return cur, nil, &Error{Code: 500, Message: MsgInternal, ClientToken: tok}
	}
	return Shadow{Version: cur.Version}, b, nil
}

// Document is the full current document as get would return it, without
// clientToken (used by gRPC/CLI):
// {"state":{desired,reported,delta},"metadata":{...},"version":N,"timestamp":T}.
// It is nil for a shadow that does not exist, or one holding values JSON
// cannot encode.
func Document(cur Shadow, now time.Time) []byte {
	if !cur.Exists {
		return nil
	}
	b, err := encode(fullDocument(cur, now))
	if err != nil {
		return nil
	}
	return b
}

func fullDocument(cur Shadow, now time.Time) map[string]any {
	state, meta := stateAndMetadata(cur, true)
	return map[string]any{
		"state":     state,
		"metadata":  meta,
		"version":   cur.Version,
		"timestamp": now.Unix(),
	}
}
