// Package errdefs holds the domain errors every daemon returns. Services wrap
// one of the sentinels (fmt.Errorf("device %q: %w", name, ErrNotFound)); the
// gRPC edge turns them into status codes with ToGRPC, and clients turn status
// codes back into the same sentinels with FromGRPC, so errors.Is works on both
// sides of a socket.
package errdefs

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

var (
	ErrInvalidArgument    = errors.New("invalid argument")
	ErrNotFound           = errors.New("not found")
	ErrAlreadyExists      = errors.New("already exists")
	ErrFailedPrecondition = errors.New("failed precondition")
	ErrUnavailable        = errors.New("unavailable")
	ErrResourceExhausted  = errors.New("resource exhausted")
	ErrAborted            = errors.New("aborted")
	ErrPermissionDenied   = errors.New("permission denied")
	ErrDeadlineExceeded   = errors.New("deadline exceeded")
	ErrInternal           = errors.New("internal")
)

var codeOf = []struct {
	err  error
	code codes.Code
}{
	{ErrInvalidArgument, codes.InvalidArgument},
	{ErrNotFound, codes.NotFound},
	{ErrAlreadyExists, codes.AlreadyExists},
	{ErrFailedPrecondition, codes.FailedPrecondition},
	{ErrUnavailable, codes.Unavailable},
	{ErrResourceExhausted, codes.ResourceExhausted},
	{ErrAborted, codes.Aborted},
	{ErrPermissionDenied, codes.PermissionDenied},
	{ErrDeadlineExceeded, codes.DeadlineExceeded},
	{ErrInternal, codes.Internal},
}

// InvalidArgument builds an ErrInvalidArgument naming the field at fault.
func InvalidArgument(field, format string, args ...any) error {
	return fmt.Errorf("%s: %s: %w", field, fmt.Sprintf(format, args...), ErrInvalidArgument)
}

// NotFound builds an ErrNotFound for a kind and name ("device \"x\"").
func NotFound(kind, name string) error {
	return fmt.Errorf("%s %q: %w", kind, name, ErrNotFound)
}

// AlreadyExists builds an ErrAlreadyExists for a kind and name.
func AlreadyExists(kind, name string) error {
	return fmt.Errorf("%s %q: %w", kind, name, ErrAlreadyExists)
}

// Code returns the gRPC code for err (Unknown for errors outside this
// package, Canceled/DeadlineExceeded for context errors).
func Code(err error) codes.Code {
	if err == nil {
		return codes.OK
	}
	if s, ok := status.FromError(err); ok {
		return s.Code()
	}
	for _, c := range codeOf {
		if errors.Is(err, c.err) {
			return c.code
		}
	}
	switch {
	case errors.Is(err, context.Canceled):
		return codes.Canceled
	case errors.Is(err, context.DeadlineExceeded):
		return codes.DeadlineExceeded
	}
	return codes.Unknown
}

// ToGRPC converts a domain error into a gRPC status error. The message keeps
// the error's text minus the trailing sentinel text, which the code already
// says.
func ToGRPC(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	code := Code(err)
	msg := err.Error()
	for _, c := range codeOf {
		if c.code == code {
			msg = strings.TrimSuffix(msg, ": "+c.err.Error())
			break
		}
	}
	return status.Error(code, msg)
}

// FromGRPC converts a gRPC status error back into a domain error that wraps
// the matching sentinel; the message is the server's.
func FromGRPC(err error) error {
	if err == nil {
		return nil
	}
	s, ok := status.FromError(err)
	if !ok {
		return err
	}
	for _, c := range codeOf {
		if c.code == s.Code() {
			return &remoteError{msg: s.Message(), sentinel: c.err, code: s.Code()}
		}
	}
	switch s.Code() {
	case codes.Canceled:
		return &remoteError{msg: s.Message(), sentinel: context.Canceled, code: s.Code()}
	}
	return err
}

type remoteError struct {
	msg      string
	sentinel error
	code     codes.Code
}

func (e *remoteError) Error() string { return e.msg }
func (e *remoteError) Unwrap() error { return e.sentinel }

// GRPCStatus keeps the code when the error is passed through another gRPC
// server unchanged.
func (e *remoteError) GRPCStatus() *status.Status { return status.New(e.code, e.msg) }
