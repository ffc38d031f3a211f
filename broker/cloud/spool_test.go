package cloud

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"testing"

	"github.com/evergreen-edge/evergreen/services/kit/errdefs"
)

func spoolSettings(storage string) SpoolerSettings {
	s := DefaultSpoolerSettings()
	s.Storage = storage
	return s
}

func mustOpen(t testing.TB, dir string, s SpoolerSettings) *spool {
	t.Helper()
	sp, err := openSpool(dir, s)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sp.Close() })
	return sp
}

func putN(t testing.TB, sp Spool, from, to int) {
	t.Helper()
	for i := from; i < to; i++ {
		if err := sp.Put("t/"+strconv.Itoa(i%3), []byte(strconv.Itoa(i))); err != nil {
			t.Fatal(err)
		}
	}
}

// payloads returns the payloads of every queued message, oldest first.
func payloads(sp Spool) []string {
	var out []string
	for _, m := range sp.Peek(sp.Len()) {
		out = append(out, string(m.Payload))
	}
	return out
}

func seq(from, to int) []string {
	var out []string
	for i := from; i < to; i++ {
		out = append(out, strconv.Itoa(i))
	}
	return out
}

func segments(t testing.TB, dir string) []string {
	t.Helper()
	names, err := filepath.Glob(filepath.Join(dir, "*"+segExt))
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(names)
	return names
}

func TestSpoolFIFOAndAck(t *testing.T) {
	for _, storage := range []string{StorageMemory, StorageFileSystem} {
		t.Run(storage, func(t *testing.T) {
			sp := mustOpen(t, t.TempDir(), spoolSettings(storage))
			putN(t, sp, 0, 10)
			msgs := sp.Peek(3)
			if len(msgs) != 3 || string(msgs[0].Payload) != "0" || msgs[0].Topic != "t/0" || msgs[2].Seq != msgs[0].Seq+2 || msgs[0].QoS != 1 {
				t.Fatalf("Peek(3) = %+v", msgs)
			}
			// Acks out of order leave the rest in order.
			for _, i := range []int{1, 0, 5} {
				if err := sp.Ack(msgs[0].Seq + uint64(i)); err != nil {
					t.Fatal(err)
				}
			}
			want := []string{"2", "3", "4", "6", "7", "8", "9"}
			if got := payloads(sp); !slices.Equal(got, want) {
				t.Fatalf("after acks: %v, want %v", got, want)
			}
			if err := sp.Ack(msgs[0].Seq); !errors.Is(err, errdefs.ErrNotFound) {
				t.Errorf("second ack: %v, want NotFound", err)
			}
			if sp.Len() != 7 || sp.Bytes() != 7*(3+1) {
				t.Errorf("Len %d Bytes %d, want 7 and 28", sp.Len(), sp.Bytes())
			}
		})
	}
}

func TestSpoolReopenKeepsQueueAndAcks(t *testing.T) {
	dir := t.TempDir()
	s := spoolSettings(StorageFileSystem)
	s.MaxBytes = 4 << 20 // 512 KB segments
	sp, err := openSpool(dir, s)
	if err != nil {
		t.Fatal(err)
	}
	payload := make([]byte, 200)
	for i := 0; i < 6000; i++ {
		if _, err := sp.put([]Message{{Topic: "t", Payload: payload}}); err != nil {
			t.Fatal(err)
		}
	}
	first := sp.Peek(1)[0].Seq
	for i := uint64(0); i < 5000; i++ {
		if err := sp.Ack(first + i); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(segments(t, dir)); n > 2 {
		t.Errorf("%d segment files after acking all but the last 1,000 messages; fully acked ones should be gone", n)
	}
	if err := sp.Close(); err != nil {
		t.Fatal(err)
	}
	sp = mustOpen(t, dir, s) // Close released the lock
	if sp.Len() != 1000 || sp.Peek(1)[0].Seq != first+5000 {
		t.Fatalf("after reopening: %d messages, first %d; want 1000 from %d", sp.Len(), sp.Peek(1)[0].Seq, first+5000)
	}
	// Seq keeps growing across restarts.
	if err := sp.Put("t", nil); err != nil {
		t.Fatal(err)
	}
	if msgs := sp.Peek(1001); msgs[1000].Seq <= first+5999 {
		t.Errorf("new message got Seq %d, not after %d", msgs[1000].Seq, first+5999)
	}
}

func TestSpoolLockedAgainstSecondOpener(t *testing.T) {
	dir := t.TempDir()
	mustOpen(t, dir, spoolSettings(StorageFileSystem))
	if _, err := OpenSpool(dir, spoolSettings(StorageFileSystem)); !errors.Is(err, errdefs.ErrFailedPrecondition) {
		t.Errorf("second open of the same spool: %v, want FailedPrecondition", err)
	}
}

// Test 4: a torn tail (the last record cut short, then garbage) is cut
// off on open; everything before it is recovered.
func TestSpoolTornTail(t *testing.T) {
	for name, damage := range map[string]func(t *testing.T, path string){
		"truncated mid-record plus garbage": func(t *testing.T, path string) {
			st, _ := os.Stat(path)
			if err := os.Truncate(path, st.Size()-3); err != nil {
				t.Fatal(err)
			}
			f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			f.Write([]byte("\x00\x00\x01\x00garbage after a torn write"))
			f.Close()
		},
		"bad checksum in the last record": func(t *testing.T, path string) {
			data, _ := os.ReadFile(path)
			data[len(data)-1] ^= 0xff
			os.WriteFile(path, data, 0o600)
		},
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			s := spoolSettings(StorageFileSystem)
			sp, err := openSpool(dir, s)
			if err != nil {
				t.Fatal(err)
			}
			putN(t, sp, 0, 100)
			sp.Close()
			segs := segments(t, dir)
			damage(t, segs[len(segs)-1])

			sp = mustOpen(t, dir, s)
			if got := payloads(sp); !slices.Equal(got, seq(0, 99)) {
				t.Fatalf("recovered %d messages %v..., want 0..98", len(got), got[:min(3, len(got))])
			}
			// The log goes on cleanly after the cut.
			putN(t, sp, 100, 110)
			sp.Close()
			sp = mustOpen(t, dir, s)
			if got := payloads(sp); !slices.Equal(got, append(seq(0, 99), seq(100, 110)...)) {
				t.Fatalf("after appending past the cut and reopening: %v", got)
			}
		})
	}
}

// Test 5: a full spool drops the oldest and counts them (DropOldest), or
// refuses with ResourceExhausted (RefuseNew).
func TestSpoolFull(t *testing.T) {
	payload := make([]byte, 997) // 1000 bytes with the topic
	for _, storage := range []string{StorageMemory, StorageFileSystem} {
		t.Run(storage+"/DropOldest", func(t *testing.T) {
			s := spoolSettings(storage)
			s.MaxBytes = MinMaxBytes
			dir := t.TempDir()
			sp := mustOpen(t, dir, s)
			for i := 0; i < 300; i++ {
				if err := sp.Put("t/"+strconv.Itoa(i%10), payload); err != nil {
					t.Fatal(err)
				}
			}
			keep := int(MinMaxBytes / 1000)
			if sp.Len() != keep || sp.Dropped() != uint64(300-keep) || sp.Bytes() > MinMaxBytes {
				t.Fatalf("Len %d Dropped %d Bytes %d; want %d kept, %d dropped", sp.Len(), sp.Dropped(), sp.Bytes(), keep, 300-keep)
			}
			if oldest := sp.Peek(1)[0]; oldest.Seq != uint64(300-keep+1) {
				t.Errorf("oldest kept is Seq %d, want %d (the newest survive)", oldest.Seq, 300-keep+1)
			}
			if storage == StorageFileSystem {
				sp.Close()
				sp = mustOpen(t, dir, s)
				if sp.Len() != keep || sp.Peek(1)[0].Seq != uint64(300-keep+1) {
					t.Errorf("after reopening, %d messages from Seq %d: drops were not recorded", sp.Len(), sp.Peek(1)[0].Seq)
				}
			}
		})
		t.Run(storage+"/RefuseNew", func(t *testing.T) {
			s := spoolSettings(storage)
			s.MaxBytes, s.WhenFull = MinMaxBytes, WhenFullRefuseNew
			sp := mustOpen(t, t.TempDir(), s)
			var err error
			n := 0
			for ; n < 1000; n++ {
				if err = sp.Put("t/x", payload); err != nil {
					break
				}
			}
			if !errors.Is(err, errdefs.ErrResourceExhausted) || n != int(MinMaxBytes/1000) {
				t.Fatalf("after %d Puts: %v; want ResourceExhausted after %d", n, err, MinMaxBytes/1000)
			}
			if sp.Dropped() != 0 || sp.Len() != n {
				t.Errorf("RefuseNew dropped %d and holds %d", sp.Dropped(), sp.Len())
			}
			sp.Ack(sp.Peek(1)[0].Seq)
			if err := sp.Put("t/x", payload); err != nil {
				t.Errorf("Put after an ack made room: %v", err)
			}
		})
	}
	sp := mustOpen(t, "", spoolSettings(StorageMemory))
	if err := sp.Put("t", make([]byte, DefaultMaxBytes)); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("a message larger than the spool: %v, want InvalidArgument", err)
	}
}

// Concurrent Puts share fsyncs and all land, in a consistent order.
func TestSpoolConcurrentPuts(t *testing.T) {
	dir := t.TempDir()
	s := spoolSettings(StorageFileSystem)
	s.MaxBytes = 64 << 20
	sp := mustOpen(t, dir, s)
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 200; i++ {
				if err := sp.Put(fmt.Sprintf("g/%d", g), []byte(strconv.Itoa(i))); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	sp.Close()
	sp = mustOpen(t, dir, s)
	per := map[string][]string{}
	for _, m := range sp.Peek(sp.Len()) {
		per[m.Topic] = append(per[m.Topic], string(m.Payload))
	}
	for g := 0; g < 8; g++ {
		if got := per[fmt.Sprintf("g/%d", g)]; !slices.Equal(got, seq(0, 200)) {
			t.Errorf("g/%d: %d messages, out of order or missing", g, len(got))
		}
	}
}

// A power cut keeps what was fsynced and any prefix of what was not. Cut
// the log at every byte after the last fsync: every message whose Put
// returned and that was not acked survives, in order; acked ones may come
// back (delivered again), never the other way round.
func TestSpoolPowerCut(t *testing.T) {
	dir := t.TempDir()
	sp := mustOpen(t, dir, spoolSettings(StorageFileSystem))
	putN(t, sp, 0, 30) // each Put returns after its fsync
	sp.mu.Lock()
	synced := headerLen + sp.log.synced
	sp.mu.Unlock()
	first := sp.Peek(1)[0].Seq
	for i := uint64(0); i < 10; i++ {
		sp.Ack(first + i) // written, not yet fsynced
	}
	// Two Puts whose callers are still waiting for the fsync.
	if _, err := sp.put([]Message{{Topic: "t/x", Payload: []byte("30")}, {Topic: "t/x", Payload: []byte("31")}}); err != nil {
		t.Fatal(err)
	}
	segs := segments(t, dir)
	if len(segs) != 1 {
		t.Fatalf("%d segments, the test expects one", len(segs))
	}
	data, err := os.ReadFile(segs[0])
	if err != nil {
		t.Fatal(err)
	}
	for cut := synced; cut <= int64(len(data)); cut++ {
		d := t.TempDir()
		if err := os.WriteFile(filepath.Join(d, filepath.Base(segs[0])), data[:cut], 0o600); err != nil {
			t.Fatal(err)
		}
		got, err := openSpool(d, spoolSettings(StorageFileSystem))
		if err != nil {
			t.Fatalf("cut at %d: %v", cut, err)
		}
		p := payloads(got)
		got.Close()
		if len(p) == 0 {
			t.Fatalf("cut at %d: nothing recovered", cut)
		}
		// What survives is a run of the 0..31 sequence that holds 10..29.
		start, _ := strconv.Atoi(p[0])
		if start > 10 || start+len(p) < 30 || !slices.Equal(p, seq(start, start+len(p))) {
			t.Fatalf("cut at %d: recovered %v", cut, p)
		}
	}
}
