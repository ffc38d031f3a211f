// streamfn is a test function that speaks to the stream manager with
// the Go client (streammgr/client): it connects with the function's
// token (AWS_CONTAINER_AUTHORIZATION_TOKEN) or, for the payload
// "badtoken", a made-up one, then creates the stream "fromfn" (already
// there from the second invocation on) and appends to it. It answers
// "connect=<status> append=<status> seq=<n>", or "connect=<status>" when
// the stream manager refuses the token.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/evergreen-edge/evergreen/runtime/sdk/go/ggsdk"
	"github.com/evergreen-edge/evergreen/streammgr/client"
)

func main() {
	if err := ggsdk.Start(handle); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func handle(_ ggsdk.Context, payload []byte) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var opts []client.Option
	if string(payload) == "badtoken" {
		opts = append(opts, client.WithAuthToken("not-a-token-of-this-core"))
	}
	c, err := client.New(ctx, opts...)
	var se *client.StatusError
	if errors.As(err, &se) {
		return []byte(fmt.Sprintf("connect=%d", se.Status)), nil
	}
	if err != nil {
		return nil, err
	}
	defer c.Close()
	err = c.CreateMessageStream(ctx, client.MessageStreamDefinition{Name: "fromfn", StrategyOnFull: client.RejectNewData, Persistence: client.File})
	if err != nil && !errors.Is(err, client.ErrInvalidRequest) {
		return nil, err
	}
	seq, err := c.AppendMessage(ctx, "fromfn", []byte("hello"))
	if errors.As(err, &se) {
		return []byte(fmt.Sprintf("connect=0 append=%d seq=0", se.Status)), nil
	}
	if err != nil {
		return nil, err
	}
	return []byte(fmt.Sprintf("connect=0 append=0 seq=%d", seq)), nil
}
