// echo is a test function: a routed message is published back on
// echo/out with the topic it came on; a direct invoke gets its payload
// back; a payload "fail" is a handled error; "shadow:<thing>" reads a
// shadow; "publish-all:<topic>" publishes with queueFullPolicy
// AllOrError and says "ok", "again: <why>" or "error: <why>";
// "sleep:<ms>" sleeps.
package main

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/evergreen-edge/evergreen/runtime/sdk/go/ggsdk"
)

func main() {
	err := ggsdk.Start(func(ctx ggsdk.Context, payload []byte) ([]byte, error) {
		p := string(payload)
		switch {
		case p == "fail":
			return nil, errors.New("asked to fail")
		case p == "oom":
			b := make([]byte, 256<<20) // past any test's memory limit
			for i := range b {
				if i%4096 == 0 {
					b[i] = 1
				}
			}
			return b[:1], nil
		case p == "whoami":
			f, err := os.Create("/usr/evergreen-write-test")
			if err == nil {
				f.Close()
				return []byte(fmt.Sprintf("uid=%d rootfs=writable", os.Getuid())), nil
			}
			return []byte(fmt.Sprintf("uid=%d rootfs=read-only", os.Getuid())), nil
		case strings.HasPrefix(p, "publish-all:"):
			err := ggsdk.Default.PublishWithPolicy(ctx, strings.TrimPrefix(p, "publish-all:"), []byte("all"), ggsdk.AllOrError)
			switch {
			case errors.Is(err, ggsdk.ErrRequestAgain):
				return []byte("again: " + err.Error()), nil
			case err != nil:
				return []byte("error: " + err.Error()), nil
			}
			return []byte("ok"), nil
		case strings.HasPrefix(p, "sleep:"):
			ms, _ := strconv.Atoi(strings.TrimPrefix(p, "sleep:"))
			time.Sleep(time.Duration(ms) * time.Millisecond)
			return payload, nil
		case strings.HasPrefix(p, "shadow:"):
			return ggsdk.Default.Shadow(ctx, strings.TrimPrefix(p, "shadow:"), "get", nil)
		case ctx.Subject() != "":
			src, _ := ctx.Custom["source"].(string)
			return nil, ggsdk.Default.Publish(ctx, "echo/out", []byte(fmt.Sprintf("%s|%s|%s", ctx.Subject(), src, p)))
		}
		return payload, nil
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
