package errdefs

import (
	"errors"
	"fmt"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestRoundTrip(t *testing.T) {
	for _, c := range codeOf {
		err := fmt.Errorf("device %q: %w", "x", c.err)
		g := ToGRPC(err)
		s, _ := status.FromError(g)
		if s.Code() != c.code {
			t.Fatalf("%v: code %v, want %v", c.err, s.Code(), c.code)
		}
		if s.Message() != `device "x"` {
			t.Fatalf("%v: message %q", c.err, s.Message())
		}
		back := FromGRPC(g)
		if !errors.Is(back, c.err) {
			t.Fatalf("%v: FromGRPC lost the sentinel: %v", c.err, back)
		}
		if Code(back) != c.code {
			t.Fatalf("%v: Code(back) = %v", c.err, Code(back))
		}
	}
}

func TestUnknownStaysUnknown(t *testing.T) {
	if Code(errors.New("boom")) != codes.Unknown {
		t.Fatal("plain error should map to Unknown")
	}
	if got := InvalidArgument("name", "must not be empty").Error(); got != "name: must not be empty: invalid argument" {
		t.Fatalf("InvalidArgument text: %q", got)
	}
}
