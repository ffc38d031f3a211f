package streammgr_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	streammgrv1 "github.com/evergreen-edge/evergreen/proto/evergreen/streammgr/v1"
	"github.com/evergreen-edge/evergreen/streammgr"
	"github.com/evergreen-edge/evergreen/streammgr/protocol"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// Damaged stream files never stop the daemon's start-up (v1 1.11.6): the
// damage is reported (the gRPC DescribeStream's damage, for operators),
// the undamaged messages stay readable, nothing damaged is returned as a
// message, and sequence numbers never go back.

// streamDir finds the directory of stream name under the daemon's data.
func streamDir(t *testing.T, e *env, name string) string {
	t.Helper()
	metas, _ := filepath.Glob(filepath.Join(e.root.DataDir(streammgr.Name), "*", "stream.json"))
	for _, m := range metas {
		b, _ := os.ReadFile(m)
		var d struct{ Name string }
		if json.Unmarshal(b, &d) == nil && d.Name == name {
			return filepath.Dir(m)
		}
	}
	t.Fatalf("no directory holds stream %q", name)
	return ""
}

// segments lists a stream's segment files, oldest first.
func segments(t *testing.T, dir string) []string {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(dir, "*.seg"))
	slices.Sort(files)
	return files
}

func damageOf(t *testing.T, e *env, name string) []string {
	t.Helper()
	conn, err := grpc.NewClient("unix://"+e.root.Socket(streammgr.Name), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	info, err := streammgrv1.NewStreamManagerClient(conn).DescribeStream(ctx, &streammgrv1.DescribeStreamRequest{Name: name})
	if err != nil {
		t.Fatal(err)
	}
	return info.GetDamage()
}

// damagedEnv is a stopped daemon whose stream "d.log" holds 40 messages
// of numbered payloads in five segments, beside a healthy stream.
func damagedEnv(t *testing.T) (*env, string, uint64) {
	t.Helper()
	e := newEnv(t)
	e.start(t, false)
	w := dialWire(t, e.addr)
	rec := recordBytes(t, w)
	if 1024/rec != 8 {
		t.Skipf("this test lays out 8 messages per segment; a message costs %d bytes", rec)
	}
	createStream(t, w, "d.log", map[string]any{"streamSegmentSize": 1024})
	createStream(t, w, "healthy", map[string]any{"streamSegmentSize": 1024})
	for i := range 40 {
		mustAppend(t, w, "d.log", numbered(i))
		if i < 10 {
			mustAppend(t, w, "healthy", numbered(i))
		}
	}
	e.stop()
	dir := streamDir(t, e, "d.log")
	if n := len(segments(t, dir)); n != 5 {
		t.Fatalf("%d segment files, want 5", n)
	}
	return e, dir, rec
}

// checkAfterDamage starts the daemon and checks what a user sees:
// exactly want readable (each message as it was written), the healthy
// stream whole, appends continuing at or past next, and with report the
// damage reported.
func checkAfterDamage(t *testing.T, e *env, want []uint64, next uint64, report bool) {
	t.Helper()
	e.start(t, false)
	w := dialWire(t, e.addr)
	got := readAllWire(t, w, "d.log", 0)
	var seqs []uint64
	for s, p := range got {
		if string(p) != string(numbered(int(s))) {
			t.Fatalf("message %d read back as %q: damaged data returned as a message", s, p)
		}
		seqs = append(seqs, s)
	}
	slices.Sort(seqs)
	if !slices.Equal(seqs, want) {
		t.Fatalf("readable after the damage: %v\nwant %v", seqs, want)
	}
	// A read starting inside a lost range reads on from the next good one.
	if len(want) > 0 {
		f := must(t, "read from 0", readOpts(t, w, "d.log", map[string]any{"desiredStartSequenceNumber": 0, "maxMessageCount": 1}),
			protocol.OpReadMessagesResponse, protocol.Success, "r")
		if s := seqsOf(t, f); len(s) != 1 || s[0] != want[0] {
			t.Fatalf("read from 0: %v, want %d", s, want[0])
		}
	}
	if d := damageOf(t, e, "healthy"); len(d) != 0 {
		t.Fatalf("the healthy stream reports damage %q", d)
	}
	if n := len(readAllWire(t, w, "healthy", 0)); n != 10 {
		t.Fatalf("the healthy stream holds %d of 10 messages", n)
	}
	if seq := mustAppend(t, w, "d.log", numbered(99)); seq < next {
		t.Fatalf("append after the damage numbered %d; %d was already used", seq, next-1)
	}
	if d := damageOf(t, e, "d.log"); len(d) > 0 {
		t.Logf("damage reported: %q", d)
	} else if report {
		t.Fatal("damage not reported")
	}
	// A second start-up over what the first one left is as good.
	e.stop()
	e.start(t, false)
	w = dialWire(t, e.addr)
	if n := len(readAllWire(t, w, "d.log", 0)); n != len(want)+1 {
		t.Fatalf("after a second restart %d messages readable, want %d", n, len(want)+1)
	}
}

func span(from, to uint64) []uint64 {
	var out []uint64
	for s := from; s <= to; s++ {
		out = append(out, s)
	}
	return out
}

func TestDamagedSegmentsNeverStopStartUp(t *testing.T) {
	t.Run("bytes flipped mid-segment and a truncated tail", func(t *testing.T) {
		e, dir, rec := damagedEnv(t)
		segs := segments(t, dir)
		// 16 bytes of the second segment, from its middle: the records
		// wholly before the flip survive.
		b, _ := os.ReadFile(segs[1])
		off := len(b) / 2
		for i := off; i < off+16; i++ {
			b[i] ^= 0x5a
		}
		os.WriteFile(segs[1], b, 0o640)
		// The newest segment loses the last 10 bytes of its last record.
		fi, _ := os.Stat(segs[4])
		os.Truncate(segs[4], fi.Size()-10)
		kept := uint64(off) / rec
		want := append(append(span(0, 7+kept), span(16, 31)...), span(32, 38)...)
		checkAfterDamage(t, e, want, 40, true)
	})
	t.Run("a zero-filled tail (power loss)", func(t *testing.T) {
		e, dir, _ := damagedEnv(t)
		segs := segments(t, dir)
		f, _ := os.OpenFile(segs[4], os.O_WRONLY|os.O_APPEND, 0)
		f.Write(make([]byte, 4096))
		f.Close()
		checkAfterDamage(t, e, span(0, 39), 40, true)
	})
	t.Run("a record's length field made huge", func(t *testing.T) {
		e, dir, rec := damagedEnv(t)
		segs := segments(t, dir)
		b, _ := os.ReadFile(segs[2])
		// The length field of the third record (the first 4 bytes of a
		// record in this store; whatever they are, they are damaged).
		copy(b[2*rec:], []byte{0xff, 0xff, 0xff, 0x7f})
		os.WriteFile(segs[2], b, 0o640)
		want := append(span(0, 17), span(24, 39)...)
		checkAfterDamage(t, e, want, 40, true)
	})
	// Lost whole segments: the rest stays readable, the loss is
	// reported (TestLostSegmentReported).
	t.Run("a middle segment emptied", func(t *testing.T) {
		e, dir, _ := damagedEnv(t)
		os.Truncate(segments(t, dir)[2], 0)
		checkAfterDamage(t, e, append(span(0, 15), span(24, 39)...), 40, true)
	})
	t.Run("a middle segment gone", func(t *testing.T) {
		e, dir, _ := damagedEnv(t)
		os.Remove(segments(t, dir)[2])
		checkAfterDamage(t, e, append(span(0, 15), span(24, 39)...), 40, true)
	})
	t.Run("the newest segment emptied", func(t *testing.T) {
		e, dir, _ := damagedEnv(t)
		os.Truncate(segments(t, dir)[4], 0)
		// (An empty newest segment is also what a crash right after it
		// was created leaves: not necessarily damage.)
		checkAfterDamage(t, e, span(0, 31), 40, false)
	})
	t.Run("garbage appended to a sealed segment", func(t *testing.T) {
		e, dir, _ := damagedEnv(t)
		f, _ := os.OpenFile(segments(t, dir)[0], os.O_WRONLY|os.O_APPEND, 0)
		f.Write([]byte(strings.Repeat("garbage!", 20)))
		f.Close()
		checkAfterDamage(t, e, span(0, 39), 40, true)
		// Reported as what it is: nothing was lost.
		if d := strings.Join(damageOf(t, e, "d.log"), "; "); !strings.Contains(d, "no message lost") || strings.Contains(d, " lost)") {
			t.Fatalf("damage %q: garbage after the last record loses no message", d)
		}
	})
	t.Run("the sequence number file garbled", func(t *testing.T) {
		e, dir, _ := damagedEnv(t)
		os.WriteFile(filepath.Join(dir, "seq"), []byte("not a number"), 0o640)
		checkAfterDamage(t, e, span(0, 39), 40, true)
	})
}

// TestLostSegmentReported: a segment missing from the middle of a stream
// (its file emptied or gone) is reported like a bad record is, naming
// the lost range (here 16..23), at every start-up while its neighbours
// are kept: segments are dropped only from the oldest end, and the jumps
// in numbering a start-up after an unclean stop makes are recorded, so a
// gap between two segments is damage.
func TestLostSegmentReported(t *testing.T) {
	for what, harm := range map[string]func(p string){
		"emptied": func(p string) { os.Truncate(p, 0) },
		"gone":    func(p string) { os.Remove(p) },
	} {
		t.Run(what, func(t *testing.T) {
			e, dir, _ := damagedEnv(t)
			harm(segments(t, dir)[2])
			checkAfterDamage(t, e, append(span(0, 15), span(24, 39)...), 40, true)
			if d := strings.Join(damageOf(t, e, "d.log"), "; "); !strings.Contains(d, "messages 16..23 lost") {
				t.Fatalf("damage %q does not name the lost messages 16..23", d)
			}
		})
	}
}

// TestDamagedDefinitionSkipsOnlyItsStream: a stream whose stream.json is
// garbage is left out; start-up succeeds and the other streams work.
func TestDamagedDefinitionSkipsOnlyItsStream(t *testing.T) {
	e, dir, _ := damagedEnv(t)
	os.WriteFile(filepath.Join(dir, "stream.json"), []byte("{garbage"), 0o640)
	e.start(t, false)
	w := dialWire(t, e.addr)
	if n := len(readAllWire(t, w, "healthy", 0)); n != 10 {
		t.Fatalf("the healthy stream holds %d of 10 messages", n)
	}
	f := must(t, "list", w.call(protocol.OpListStreams, map[string]any{"requestId": "l"}), protocol.OpListStreamsResponse, protocol.Success, "l")
	if s := f.body["streams"].([]any); len(s) != 1 || s[0] != "healthy" {
		t.Fatalf("streams %v", s)
	}
}
