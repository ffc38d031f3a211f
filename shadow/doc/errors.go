package doc

import (
	"fmt"
	"time"
)

// Messages of the device shadow service (spec 6.4). Tests and callers compare
// against these, so they are the exact strings AWS IoT sends.
const (
	MsgInvalidJSON       = "Invalid JSON"
	MsgMissingState      = "Missing required node: state"
	MsgStateNotObject    = "State node must be an object"
	MsgDesiredNotObject  = "Desired node must be an object"
	MsgReportedNotObject = "Reported node must be an object"
	MsgInvalidVersion    = "Invalid version"
	MsgInvalidToken      = "Invalid clientToken"
	MsgInvalidNode       = "State contains an invalid node"
	MsgUnauthorized      = "Unauthorized"
	MsgForbidden         = "Forbidden"
	MsgThingNotFound     = "Thing not found"
	MsgVersionConflict   = "Version conflict"
	MsgTooLarge          = "The payload exceeds the maximum size allowed"
	MsgUnsupportedUTF8   = "Unsupported documented encoding; supported encoding is UTF-8"
	MsgTooManyRequests   = "Too Many Requests"
	MsgInternal          = "Internal service failure"
)

// msgTooDeep is the nesting message for a depth limit.
func msgTooDeep(max int) string {
	return fmt.Sprintf("JSON contains too many levels of nesting; maximum is %d", max)
}

// msgNoShadow is the 404 message for a missing shadow. The AWS IoT service
// quotes the name (device shadow simulation walkthrough, get/rejected sample).
func msgNoShadow(name string) string {
	return fmt.Sprintf("No shadow exists with name: '%s'", name)
}

// Error is a shadow error response (spec 6.4).
type Error struct {
	Code        int
	Message     string
	ClientToken string
}

func (e *Error) Error() string {
	return fmt.Sprintf("shadow: %d %s", e.Code, e.Message)
}

// Document is the /rejected payload:
// {"code":..,"message":"..","timestamp":..,"clientToken":".." (only if set)}.
func (e *Error) Document(now time.Time) []byte {
	m := map[string]any{
		"code":      e.Code,
		"message":   e.Message,
		"timestamp": now.Unix(),
	}
	if e.ClientToken != "" {
		m["clientToken"] = e.ClientToken
	}
	b, err := encode(m)
	if err != nil {
		// Only strings and ints above: encoding cannot fail.
		panic(err)
	}
	return b
}

func standardMessage(code int) string {
	switch code {
	case 400:
		return MsgInvalidJSON
	case 401:
		return MsgUnauthorized
	case 403:
		return MsgForbidden
	case 404:
		return MsgThingNotFound
	case 409:
		return MsgVersionConflict
	case 413:
		return MsgTooLarge
	case 415:
		return MsgUnsupportedUTF8
	case 429:
		return MsgTooManyRequests
	default:
		return MsgInternal
	}
}

// ErrorFor builds an *Error for a code with the standard message (e.g. 429,
// 500) when message is empty, and a client token extracted best-effort from
// payload: a valid token is echoed, anything else is dropped.
func ErrorFor(code int, message string, payload []byte) *Error {
	if message == "" {
		message = standardMessage(code)
	}
	return &Error{Code: code, Message: message, ClientToken: looseClientToken(payload, DefaultLimits().MaxClientTokenBytes)}
}
