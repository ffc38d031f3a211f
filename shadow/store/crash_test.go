package store

import (
	"bufio"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// A writer killed with SIGKILL at a random point loses nothing it
// acknowledged: every Put that returned is there, intact, after reopen.
func TestKill9LosesNoAcknowledgedWrite(t *testing.T) {
	dir := t.TempDir()
	acked := map[uint64]bool{}
	hot := map[int]uint64{} // goroutine -> last acknowledged seq of its hot key
	next := uint64(0)
	const rounds = 5
	for round := range rounds {
		cmd := helperCmd(t, "writer", dir, fmt.Sprintf("%s=%d", helperStartEnv, next))
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		lines := make(chan string, 1024)
		go func() {
			defer close(lines)
			sc := bufio.NewScanner(out)
			for sc.Scan() {
				lines <- sc.Text()
			}
		}()
		// Kill once the writer is open and has acknowledged a random
		// number of writes, so the kill lands anywhere in the write path.
		killAfter := 5 + rand.IntN(1500)
		n := 0
		var killed bool
		record := func(line string) {
			var seq uint64
			var g int
			switch {
			case strings.HasPrefix(line, "ack "):
				fmt.Sscanf(line, "ack %d", &seq)
				acked[seq] = true
			case strings.HasPrefix(line, "hot "):
				fmt.Sscanf(line, "hot %d %d", &g, &seq)
				hot[g] = max(hot[g], seq)
			default:
				t.Fatalf("writer said %q", line)
			}
			next = max(next, seq+1)
			n++
		}
		timeout := time.After(30 * time.Second)
	read:
		for {
			select {
			case line, ok := <-lines:
				if !ok {
					break read
				}
				record(line)
				if !killed && n >= killAfter {
					time.Sleep(time.Duration(rand.IntN(3000)) * time.Microsecond)
					if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
						t.Fatal(err)
					}
					killed = true
				}
			case <-timeout:
				_ = cmd.Process.Kill()
				t.Fatal("writer produced too little output")
			}
		}
		err = cmd.Wait()
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
			t.Fatalf("round %d: writer ended with %v, want SIGKILL", round, err)
		}

		s, rep := mustOpen(t, dir)
		if len(rep.Damaged) != 0 || rep.Quarantined != "" {
			t.Fatalf("round %d: after kill -9: %v", round, rep.Corrupt)
		}
		for _, line := range rep.Corrupt {
			t.Logf("round %d: report: %s", round, line)
		}
		for seq := range acked {
			mustGet(t, s, seqKey(seq), testValue(seq))
		}
		for g, seq := range hot {
			v, ok, err := s.Get(hotKey(g))
			if err != nil || !ok {
				t.Fatalf("round %d: hot key %d: ok %v err %v", round, g, ok, err)
			}
			if got := valueSeq(v); got < seq || string(v) != string(testValue(got)) {
				t.Fatalf("round %d: hot key %d holds seq %d, acknowledged %d", round, g, got, seq)
			}
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		t.Logf("round %d: killed after %d acknowledgements; %d distinct keys checked", round, n, len(acked))
	}
}

// Damage to the tail of the logs badger replays at open (the newest value
// log, the memtable WAL), as a torn write or a power cut leaves it, does not
// stop Open; it is reported, and every entry before it is kept.
func TestTornTail(t *testing.T) {
	const n = 40
	cases := []struct {
		name string
		// clean: the store is closed before the damage (memtable flushed,
		// value log trimmed); otherwise the damage hits a copy taken while
		// the store was open, i.e. the state after a crash.
		clean  bool
		ext    string
		damage func(t *testing.T, path string)
		// lastKey: what must become of the last key written.
		lastKey string // "intact", "missing", "damaged"
		note    string // in the report; "a|b" for either
	}{
		{"vlog truncated", false, ".vlog", truncateTail(100), "damaged", "cut there"},
		{"vlog garbage", false, ".vlog", appendGarbage(randomBytes(4096)), "intact", "torn write|cut there"},
		{"vlog truncated after close", true, ".vlog", truncateTail(100), "damaged", "cut there"},
		{"vlog garbage after close", true, ".vlog", appendGarbage(randomBytes(4096)), "intact", "torn write|cut there"},
		{"mem truncated", false, ".mem", truncateTail(10), "missing", "cut there"},
		{"mem garbage", false, ".mem", appendGarbage(randomBytes(4096)), "intact", "torn write|cut there"},
		// Garbage whose length varints overflow: badger fails the open.
		{"mem overflowing header", false, ".mem", appendGarbage([]byte("\x00\x00\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01")), "intact", "cannot decode"},
		// Garbage that claims a 4 GB value: badger would allocate it.
		{"vlog huge claim", false, ".vlog", appendGarbage([]byte("\x00\x00\x0a\xf0\xff\xff\xff\x0f\x00garbage")), "intact", "claiming"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			live := filepath.Join(t.TempDir(), "live")
			s, _ := mustOpen(t, live)
			for i := range n {
				seq := uint64(3*i + 1) // values of 4 KB+: in the value log
				mustPut(t, s, seqKey(seq), testValue(seq))
			}
			dir := live
			if c.clean {
				if err := s.Close(); err != nil {
					t.Fatal(err)
				}
			} else {
				dir = filepath.Join(t.TempDir(), "crashed")
				copyDir(t, live, dir)
				defer s.Close()
			}
			c.damage(t, newestFile(t, dir, c.ext))

			s2, rep := mustOpen(t, dir)
			defer s2.Close()
			if rep.Quarantined != "" {
				t.Fatalf("a damaged tail got the directory quarantined: %v", rep.Corrupt)
			}
			report := strings.Join(rep.Corrupt, "\n")
			if !slices.ContainsFunc(strings.Split(c.note, "|"), func(n string) bool { return strings.Contains(report, n) }) {
				t.Fatalf("report %q does not mention %q", rep.Corrupt, c.note)
			}
			for i := range n - 1 {
				seq := uint64(3*i + 1)
				mustGet(t, s2, seqKey(seq), testValue(seq))
			}
			last := seqKey(uint64(3*(n-1) + 1))
			v, ok, err := s2.Get(last)
			switch c.lastKey {
			case "intact":
				if err != nil || !ok || string(v) != string(testValue(uint64(3*(n-1)+1))) {
					t.Fatalf("last key: ok %v, err %v", ok, err)
				}
			case "missing":
				if err != nil || ok {
					t.Fatalf("last key: ok %v, err %v; want it gone with the torn commit", ok, err)
				}
			case "damaged":
				if !errors.Is(err, ErrCorrupt) || len(rep.Damaged) != 1 || rep.Damaged[0] != last {
					t.Fatalf("last key: err %v, report %v; want it reported damaged", err, rep.Damaged)
				}
			}
			// The store goes on working.
			mustPut(t, s2, last, []byte("rewritten"))
			mustGet(t, s2, last, []byte("rewritten"))
		})
	}
}

func truncateTail(by int64) func(t *testing.T, path string) {
	return func(t *testing.T, path string) {
		end := dataEnd(t, path)
		if err := os.Truncate(path, end-by); err != nil {
			t.Fatal(err)
		}
	}
}

// appendGarbage writes garbage just past the last entry, where the next
// write would have gone.
func appendGarbage(garbage []byte) func(t *testing.T, path string) {
	return func(t *testing.T, path string) {
		end := dataEnd(t, path)
		f, err := os.OpenFile(path, os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if _, err := f.WriteAt(garbage, end); err != nil {
			t.Fatal(err)
		}
	}
}

// A crash between badger creating a memtable log and sizing it leaves an
// empty .mem file, which badger refuses; Open drops it.
func TestEmptyMemtableLog(t *testing.T) {
	dir := t.TempDir()
	s, _ := mustOpen(t, dir)
	mustPut(t, s, Key{Thing: "x"}, testValue(1))
	crashed := filepath.Join(t.TempDir(), "crashed")
	copyDir(t, dir, crashed)
	s.Close()
	next := filepath.Base(newestFile(t, crashed, ".mem"))
	n := 0
	fmt.Sscanf(next, "%d.mem", &n)
	if err := os.WriteFile(filepath.Join(crashed, fmt.Sprintf("%05d.mem", n+1)), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	s, rep := mustOpen(t, crashed)
	defer s.Close()
	if rep.Quarantined != "" || len(rep.Corrupt) != 1 || !strings.Contains(rep.Corrupt[0], "empty memtable log") {
		t.Fatalf("report %+v", rep)
	}
	mustGet(t, s, Key{Thing: "x"}, testValue(1))
}
