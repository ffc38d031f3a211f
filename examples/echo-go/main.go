// echo-go is an on-demand Go function for Evergreen: whatever a device
// publishes on echo/<thing>/in comes back to it on echo/<thing>/out, with
// the time the function saw it. Build it with `make examples` (or
// `go build -o examples/echo-go/function/echo-go ./examples/echo-go`).
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/evergreen-edge/evergreen/runtime/sdk/go/ggsdk"
)

func main() {
	err := ggsdk.Start(func(ctx ggsdk.Context, payload []byte) ([]byte, error) {
		parts := strings.Split(ctx.Subject(), "/")
		if len(parts) != 3 || parts[0] != "echo" || parts[2] != "in" {
			return payload, nil // a direct invoke: the payload back
		}
		out, _ := json.Marshal(map[string]any{"echo": string(payload), "at": time.Now().UTC().Format(time.RFC3339Nano)})
		return nil, ggsdk.Default.Publish(ctx, "echo/"+parts[1]+"/out", out)
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
