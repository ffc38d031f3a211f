package client

import (
	"errors"
	"fmt"

	"github.com/evergreen-edge/evergreen/streammgr/protocol"
)

// Status is a response status code (spec §2.6); the constants are in
// package protocol (protocol.ResourceNotFound, ...).
type Status = protocol.Status

// StatusError is a response the stream manager answered with a status
// other than Success, or a failure the v1 clients report with a status
// (a request frame over 2^30 bytes: RequestPayloadTooLarge).
type StatusError struct {
	Status  Status
	Message string
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("stream manager: %s (status %d): %s", statusName(e.Status), int(e.Status), e.Message)
}

// Is matches the sentinel of e's status, so that errors.Is(err,
// ErrResourceNotFound) holds for every ResourceNotFound answer. As in
// the v1 SDKs, where UpdateNotAllowedException is an
// InvalidRequestException, UpdateNotAllowed also matches
// ErrInvalidRequest.
func (e *StatusError) Is(target error) bool {
	t, ok := target.(*StatusError)
	if !ok {
		return false
	}
	return t.Status == e.Status || (t.Status == protocol.InvalidRequest && e.Status == protocol.UpdateNotAllowed)
}

// The sentinels of v1's exception classes, one per status code
// (InvalidRequestException is ErrInvalidRequest, ...). Codes v1 has no
// class for (UnsupportedConnectVersion, UnexpectedOperation,
// UnsupportedProtocolVersion, InvalidProtocolVersion, FailedToConnect)
// still come back as a *StatusError: v1's generic StreamManagerException.
var (
	ErrUnknownFailure          = &StatusError{Status: protocol.UnknownFailure}
	ErrUnauthorized            = &StatusError{Status: protocol.Unauthorized}
	ErrInvalidRequest          = &StatusError{Status: protocol.InvalidRequest}
	ErrRequestPayloadTooLarge  = &StatusError{Status: protocol.RequestPayloadTooLarge}
	ErrResourceNotFound        = &StatusError{Status: protocol.ResourceNotFound}
	ErrServerTimeout           = &StatusError{Status: protocol.ServerTimeout}
	ErrResponsePayloadTooLarge = &StatusError{Status: protocol.ResponsePayloadTooLarge}
	ErrNotEnoughMessages       = &StatusError{Status: protocol.NotEnoughMessages}
	ErrMessageStoreReadError   = &StatusError{Status: protocol.MessageStoreReadError}
	ErrServerOutOfMemory       = &StatusError{Status: protocol.OutOfMemoryError}
	ErrUpdateFailed            = &StatusError{Status: protocol.UpdateFailed}
	ErrUpdateNotAllowed        = &StatusError{Status: protocol.UpdateNotAllowed}
	ErrUnknownOperation        = &StatusError{Status: protocol.UnknownOperation}
)

// Failures on the client's side (v1's ClientException family).
var (
	// ErrConnectFailed: the TCP connection or the handshake failed
	// before a ConnectResponse arrived (v1's ConnectFailedException).
	ErrConnectFailed = errors.New("stream manager: connect failed")
	// ErrConnectionLost fails the calls in flight when the connection
	// drops; the next call connects again.
	ErrConnectionLost = errors.New("stream manager: connection lost")
	// ErrClosed: the client was closed.
	ErrClosed = errors.New("stream manager: client closed")
	// ErrValidation: a request the client refuses to send (v1's
	// ValidationException).
	ErrValidation = errors.New("stream manager: invalid argument")
)

func statusName(s Status) string {
	names := [...]string{"Success", "UnknownFailure", "Unauthorized", "InvalidRequest", "RequestPayloadTooLarge",
		"ResourceNotFound", "ServerTimeout", "ResponsePayloadTooLarge", "UnsupportedConnectVersion",
		"UnexpectedOperation", "UnsupportedProtocolVersion", "InvalidProtocolVersion", "FailedToConnect",
		"NotEnoughMessages", "MessageStoreReadError", "OutOfMemoryError", "UpdateFailed", "UpdateNotAllowed",
		"UnknownOperation"}
	if s >= 0 && int(s) < len(names) {
		return names[s]
	}
	return "UnknownStatus"
}
