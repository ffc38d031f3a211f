package streammgr_test

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/evergreen-edge/evergreen/streammgr/protocol"
)

// startChild runs the daemon in a child process on e's root.
func startChild(t *testing.T, e *env) (*exec.Cmd, string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "STREAMMGR_TEST_CHILD="+e.root.Dir(), "STREAMMGR_TEST_BUS="+e.bus)
	out, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "ready ") {
		t.Fatalf("child: %q %v", line, err)
	}
	return cmd, strings.TrimSpace(strings.TrimPrefix(line, "ready "))
}

// TestKill9DuringAppends kills the daemon (SIGKILL) while 4 clients
// append. With flushOnWrite every acknowledged message is there after a
// restart; without, what is there is a prefix of what was written, and
// start-up succeeds.
func TestKill9DuringAppends(t *testing.T) {
	for _, flush := range []bool{true, false} {
		t.Run(fmt.Sprintf("flushOnWrite=%v", flush), func(t *testing.T) {
			e := newEnv(t)
			cmd, addr := startChild(t, e)
			c, _ := connect(t, addr, "")
			if f := c.call(protocol.OpCreateMessageStream, map[string]any{"definition": def("k", map[string]any{"flushOnWrite": flush, "streamSegmentSize": 64 << 10})}); status(f) != 0 {
				t.Fatal(f.body)
			}
			var mu sync.Mutex
			acked := map[uint64][]byte{}
			var wg sync.WaitGroup
			stop := make(chan struct{})
			for w := range 4 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					cl, cr := connect(t, addr, "")
					if status(cr) != 0 {
						return
					}
					for i := 0; ; i++ {
						select {
						case <-stop:
							return
						default:
						}
						p := []byte(fmt.Sprintf("w%d-%d-%s", w, i, strings.Repeat("x", 200)))
						select {
						case f, ok := <-cl.send(protocol.OpAppendMessage, map[string]any{"name": "k", "payload": p}):
							if !ok || status(f) != 0 {
								return
							}
							mu.Lock()
							acked[f.body["sequenceNumber"].(uint64)] = p
							mu.Unlock()
						case <-time.After(3 * time.Second):
							return
						}
					}
				}()
			}
			time.Sleep(400 * time.Millisecond)
			cmd.Process.Signal(syscall.SIGKILL)
			cmd.Wait()
			close(stop)
			wg.Wait()
			mu.Lock()
			n := len(acked)
			mu.Unlock()
			if n < 10 {
				t.Fatalf("only %d appends acknowledged before the kill", n)
			}

			e.start(t, false)
			r, _ := connect(t, e.addr, "")
			got := map[uint64][]byte{}
			next := uint64(0)
			for {
				f := r.call(protocol.OpReadMessages, map[string]any{"streamName": "k",
					"readMessagesOptions": map[string]any{"desiredStartSequenceNumber": next, "maxMessageCount": 1000}})
				if status(f) != 0 {
					break
				}
				for _, m := range f.body["messages"].([]any) {
					mm := m.(map[any]any)
					seq := mm["sequenceNumber"].(uint64)
					if seq != next {
						t.Fatalf("gap: read %d where %d was due (not a prefix)", seq, next)
					}
					got[seq] = mm["payload"].([]byte)
					next = seq + 1
				}
			}
			for seq, p := range got {
				if a, ok := acked[seq]; ok && !bytes.Equal(a, p) {
					t.Fatalf("message %d changed: %q vs %q", seq, p, a)
				}
			}
			if flush {
				for seq := range acked {
					if _, ok := got[seq]; !ok {
						t.Fatalf("acknowledged message %d (flushOnWrite) lost; %d of %d survive", seq, len(got), len(acked))
					}
				}
			}
			// Sequence numbers continue after the survivors, never reusing one.
			f := r.call(protocol.OpAppendMessage, map[string]any{"name": "k", "payload": []byte("after")})
			if seq := f.body["sequenceNumber"].(uint64); status(f) != 0 || seq < next {
				t.Fatalf("append after restart: %v", f.body)
			}
			t.Logf("acknowledged %d, survived %d", len(acked), len(got))
		})
	}
}
