package streammgr_test

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/evergreen-edge/evergreen/streammgr"
	"github.com/evergreen-edge/evergreen/streammgr/protocol"
)

// TestKill9DuringCreateUpdateDelete kills the daemon (SIGKILL) while
// clients create, update, append to and delete streams, and one appends
// with flushOnWrite to a stream of its own: start-up succeeds, every
// stream listed works, every name is usable again, no deleted stream's
// files are left behind, and the flushOnWrite stream lost nothing it
// acknowledged.
func TestKill9DuringCreateUpdateDelete(t *testing.T) {
	e := newEnv(t)
	cmd, addr := startChild(t, e)
	w := dialWire(t, addr)
	createStream(t, w, "keep", map[string]any{"flushOnWrite": true, "streamSegmentSize": 4096})

	stop := make(chan struct{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	acked := map[uint64]string{}
	names := map[string]bool{}
	for worker := range 3 {
		wg.Go(func() {
			c, cr := connect(t, addr, "")
			if status(cr) != 0 {
				return
			}
			call := func(op protocol.Op, req map[string]any) (frame, bool) {
				select {
				case f, ok := <-c.send(op, req):
					return f, ok
				case <-time.After(5 * time.Second):
					return frame{}, false
				}
			}
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				name := fmt.Sprintf("w%d.%d.log", worker, i%5)
				mu.Lock()
				names[name] = true
				mu.Unlock()
				steps := []struct {
					op  protocol.Op
					req map[string]any
				}{
					{protocol.OpCreateMessageStream, map[string]any{"definition": def(name, map[string]any{"streamSegmentSize": 1024})}},
					{protocol.OpAppendMessage, map[string]any{"name": name, "payload": numbered(i)}},
					{protocol.OpAppendMessage, map[string]any{"name": name, "payload": numbered(i + 1)}},
					{protocol.OpUpdateMessageStream, map[string]any{"definition": def(name, map[string]any{"streamSegmentSize": 2048, "timeToLiveMillis": 600000})}},
					{protocol.OpAppendMessage, map[string]any{"name": name, "payload": numbered(i + 2)}},
					{protocol.OpDeleteMessageStream, map[string]any{"name": name}},
				}
				if i%3 == 0 {
					steps = steps[:len(steps)-1] // some survive
				}
				for _, s := range steps {
					if _, ok := call(s.op, s.req); !ok {
						return
					}
				}
			}
		})
	}
	wg.Go(func() {
		c, cr := connect(t, addr, "")
		if status(cr) != 0 {
			return
		}
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case f, ok := <-c.send(protocol.OpAppendMessage, map[string]any{"name": "keep", "payload": numbered(i)}):
				if !ok || status(f) != 0 {
					return
				}
				mu.Lock()
				acked[f.body["sequenceNumber"].(uint64)] = string(numbered(i))
				mu.Unlock()
			case <-time.After(5 * time.Second):
				return
			}
		}
	})
	// Kill once every kind of work is under way (a loaded machine may
	// take a while to get there).
	for end := time.Now().Add(20 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		mu.Lock()
		n, used := len(acked), len(names)
		mu.Unlock()
		if n >= 10 && used >= 6 {
			break
		}
		if time.Now().After(end) {
			t.Fatalf("only %d flushOnWrite appends and %d names used in 20 s", n, used)
		}
	}
	time.Sleep(50 * time.Millisecond)
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	close(stop)
	wg.Wait()

	e.start(t, false)
	w = dialWire(t, e.addr)
	f := must(t, "list", w.call(protocol.OpListStreams, map[string]any{"requestId": "l"}), protocol.OpListStreamsResponse, protocol.Success, "l")
	listed := map[string]bool{}
	for _, s := range f.body["streams"].([]any) {
		listed[s.(string)] = true
	}
	if !listed["keep"] {
		t.Fatalf("the flushOnWrite stream is gone: %v", listed)
	}
	for n := range listed {
		describeStorage(t, w, n)
		for seq, p := range readAllWire(t, w, n, 0) {
			var k int
			if fmt.Sscan(string(p), &k); string(numbered(k)) != string(p) {
				t.Fatalf("%s message %d reads back as %q, which no client appended", n, seq, p)
			}
		}
		mustAppend(t, w, n, []byte("after"))
	}
	got := readAllWire(t, w, "keep", 0)
	mu.Lock()
	for seq, p := range acked {
		if string(got[seq]) != p {
			t.Fatalf("acknowledged message %d of the flushOnWrite stream: %q after the kill, want %q", seq, got[seq], p)
		}
	}
	n := len(acked)
	mu.Unlock()
	// Every name can be created (or exists) and deleted again.
	for name := range names {
		f := w.call(protocol.OpCreateMessageStream, map[string]any{"requestId": "c", "definition": def(name, nil)})
		if st := status(f); st != 0 && !(listed[name] && st == int(protocol.InvalidRequest)) {
			t.Fatalf("create %q after the kill: %v", name, f.body)
		}
		must(t, "delete "+name, w.call(protocol.OpDeleteMessageStream, map[string]any{"requestId": "x", "name": name}),
			protocol.OpDeleteMessageStreamResponse, protocol.Success, "x")
	}
	// Only "keep" is left on disk, and nothing half-deleted.
	ents, _ := os.ReadDir(e.root.DataDir(streammgr.Name))
	var left []string
	for _, en := range ents {
		left = append(left, en.Name())
	}
	if len(left) != 1 || filepath.Base(streamDir(t, e, "keep")) != left[0] {
		t.Fatalf("data directory holds %v, want only the stream keep's", left)
	}
	t.Logf("%d flushOnWrite appends acknowledged, %d streams survived the kill", n, len(listed))
}
