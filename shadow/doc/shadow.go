// Package doc implements AWS IoT classic shadow documents exactly as the
// device shadow service does (spec section 6): request validation, merge,
// delta, metadata, versions, client tokens and error documents. It is pure:
// no I/O, the caller passes the time.
package doc

// Shadow is one stored shadow (classic or named). The zero value is a shadow
// that never existed.
//
// State trees hold what encoding/json produces with UseNumber:
// map[string]any, []any, json.Number, string, bool. A nil section means the
// section is absent; a stored section is never an empty map. Metadata trees
// mirror the state trees; every scalar leaf is
// map[string]any{"timestamp": json.Number(<unix seconds>)}. An array is an
// atomic value for merge and delta, but its metadata mirrors it element by
// element ([]any of leaf or object metadata), as the AWS IoT service sends it.
type Shadow struct {
	Desired      map[string]any
	Reported     map[string]any
	MetaDesired  map[string]any
	MetaReported map[string]any
	// Version is the version of the last accepted update. It survives a
	// delete: the next update continues the numbering.
	Version int64
	// Exists is false for a shadow that never existed or was deleted.
	Exists bool
}
