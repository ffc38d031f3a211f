package store

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// The test binary doubles as the subprocess some tests need: a writer to
// SIGKILL, and a process whose memory is measured. helperEnv selects it.
const (
	helperEnv      = "SHADOW_STORE_TEST_HELPER"
	helperDirEnv   = "SHADOW_STORE_TEST_DIR"
	helperStartEnv = "SHADOW_STORE_TEST_START"
)

func TestMain(m *testing.M) {
	switch os.Getenv(helperEnv) {
	case "":
		os.Exit(m.Run())
	case "writer":
		os.Exit(runWriter(os.Getenv(helperDirEnv), os.Getenv(helperStartEnv)))
	case "hold":
		os.Exit(runHolder(os.Getenv(helperDirEnv)))
	default:
		fmt.Fprintln(os.Stderr, "unknown helper", os.Getenv(helperEnv))
		os.Exit(2)
	}
}

// helperCmd runs the test binary as helper mode.
func helperCmd(t testing.TB, mode, dir string, extraEnv ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"="+mode, helperDirEnv+"="+dir)
	cmd.Env = append(cmd.Env, extraEnv...)
	cmd.Stderr = os.Stderr
	return cmd
}

const writerGoroutines = 4

// runWriter puts keys with increasing sequence numbers from 4 goroutines
// and prints "ack <seq>" once each Put has returned, until it is killed.
// Each goroutine also overwrites its own hot key, printing "hot <g> <seq>".
func runWriter(dir, startText string) int {
	start, err := strconv.ParseUint(startText, 10, 64)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bad start:", err)
		return 2
	}
	s, _, err := Open(Options{Dir: dir})
	if err != nil {
		fmt.Fprintln(os.Stderr, "open:", err)
		return 1
	}
	var out sync.Mutex
	ack := func(format string, args ...any) {
		out.Lock()
		defer out.Unlock()
		fmt.Fprintf(os.Stdout, format, args...)
	}
	var next atomic.Uint64
	next.Store(start)
	var wg sync.WaitGroup
	for g := range writerGoroutines {
		wg.Go(func() {
			for i := 0; ; i++ {
				seq := next.Add(1) - 1
				if i%2 == 0 {
					if err := s.Put(seqKey(seq), testValue(seq)); err != nil {
						fmt.Fprintln(os.Stderr, "put:", err)
						os.Exit(1)
					}
					ack("ack %d\n", seq)
				} else {
					if err := s.Put(hotKey(g), testValue(seq)); err != nil {
						fmt.Fprintln(os.Stderr, "put:", err)
						os.Exit(1)
					}
					ack("hot %d %d\n", g, seq)
				}
			}
		})
	}
	wg.Wait()
	return 0
}

func seqKey(seq uint64) Key { return Key{Thing: "kill", Name: fmt.Sprintf("%010d", seq)} }
func hotKey(g int) Key      { return Key{Thing: "hot", Name: strconv.Itoa(g)} }

// testValue is a deterministic value for seq that names seq in its first 8
// bytes. One in three stays under badger's value threshold (kept in the
// tree), the rest go to the value log.
func testValue(seq uint64) []byte {
	n := 4096 + int(seq%512)
	if seq%3 == 0 {
		n = 200 + int(seq%300)
	}
	v := make([]byte, n)
	binary.BigEndian.PutUint64(v, seq)
	r := rand.NewPCG(seq, 0x5eed)
	for i := 8; i < n; i += 8 {
		var w [8]byte
		binary.LittleEndian.PutUint64(w[:], r.Uint64())
		copy(v[i:], w[:])
	}
	return v
}

func valueSeq(v []byte) uint64 {
	if len(v) < 8 {
		return 0
	}
	return binary.BigEndian.Uint64(v)
}

const (
	holdValues    = 2500
	holdValueSize = 4 << 10
	holdWriters   = 16
)

// runHolder fills a store with 2,500 values of 4 KB, then reopens it (as a
// restarted daemon would) and idles so its parent can measure its memory.
// It prints "started" (no store yet), "written" and "ready", each time
// waiting for a line on stdin before going on.
func runHolder(dir string) int {
	in := bufio.NewReader(os.Stdin)
	runtime.GC()
	debug.FreeOSMemory()
	fmt.Println("started")
	if _, err := in.ReadString('\n'); err != nil {
		return 1
	}
	s, _, err := Open(Options{Dir: dir})
	if err != nil {
		fmt.Fprintln(os.Stderr, "open:", err)
		return 1
	}
	var wg sync.WaitGroup
	var next atomic.Int64
	for range holdWriters {
		wg.Go(func() {
			v := make([]byte, holdValueSize)
			for i := next.Add(1) - 1; i < holdValues; i = next.Add(1) - 1 {
				binary.BigEndian.PutUint64(v, uint64(i))
				if err := s.Put(Key{Thing: fmt.Sprintf("thing-%04d", i)}, v); err != nil {
					fmt.Fprintln(os.Stderr, "put:", err)
					os.Exit(1)
				}
			}
		})
	}
	wg.Wait()
	fmt.Println("written")
	if _, err := in.ReadString('\n'); err != nil {
		return 1
	}
	if err := s.Close(); err != nil {
		fmt.Fprintln(os.Stderr, "close:", err)
		return 1
	}
	s, rep, err := Open(Options{Dir: dir})
	if err != nil || len(rep.Corrupt) > 0 {
		fmt.Fprintln(os.Stderr, "reopen:", err, rep.Corrupt)
		return 1
	}
	defer s.Close()
	// What an idle daemon converges to: the runtime's periodic GC and
	// scavenger return the garbage of open and of the list.
	runtime.GC()
	debug.FreeOSMemory()
	fmt.Println("ready")
	if _, err := in.ReadString('\n'); err != nil && !errors.Is(err, io.EOF) {
		return 1
	}
	return 0
}

// pss reads the proportional set sizes of pid, in kB.
func pss(pid int) (map[string]int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	if err != nil {
		return nil, err
	}
	out := map[string]int64{}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) == 3 && strings.HasPrefix(f[0], "Pss") {
			n, err := strconv.ParseInt(f[1], 10, 64)
			if err != nil {
				return nil, err
			}
			out[strings.TrimSuffix(f[0], ":")] = n
		}
	}
	return out, nil
}

// testLogger logs through t, so badger's warnings show up with the test.
func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

func mustOpen(t testing.TB, dir string) (*Store, Report) {
	t.Helper()
	s, rep, err := Open(Options{Dir: dir, Logger: testLogger(t)})
	if err != nil {
		t.Fatalf("Open(%s): %v", dir, err)
	}
	return s, rep
}

func mustPut(t testing.TB, s *Store, k Key, v []byte) {
	t.Helper()
	if err := s.Put(k, v); err != nil {
		t.Fatalf("Put(%v): %v", k, err)
	}
}

// mustGet fails unless k holds want.
func mustGet(t testing.TB, s *Store, k Key, want []byte) {
	t.Helper()
	got, ok, err := s.Get(k)
	if err != nil || !ok {
		t.Fatalf("Get(%v) = ok %v, err %v; want the value", k, ok, err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("Get(%v) = %d bytes (seq %d), want %d bytes (seq %d)", k, len(got), valueSeq(got), len(want), valueSeq(want))
	}
}

// checkFor polls fn every 20 ms until it returns nil or total has passed.
func checkFor(t testing.TB, total time.Duration, fn func() error) {
	t.Helper()
	deadline := time.Now().Add(total)
	for {
		err := fn()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// copyDir copies the regular files of src into a new dst. Taken while a
// store is open, it is what a power cut leaves once the writes were synced:
// badger writes through shared mappings, which read(2) sees.
func copyDir(t testing.TB, src, dst string) {
	t.Helper()
	if err := os.MkdirAll(dst, 0o700); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, e.Name()), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// newestFile is the badger file with extension ext and the highest number.
func newestFile(t testing.TB, dir, ext string) string {
	t.Helper()
	matches, _ := filepath.Glob(filepath.Join(dir, "*"+ext))
	best, bestN := "", -1
	for _, m := range matches {
		n, err := strconv.Atoi(strings.TrimSuffix(filepath.Base(m), ext))
		if err == nil && n > bestN {
			best, bestN = m, n
		}
	}
	if best == "" {
		t.Fatalf("no %s file in %s", ext, dir)
	}
	return best
}

// dataEnd is the offset just past the last non-zero byte of path.
func dataEnd(t testing.TB, path string) int64 {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	end := len(b)
	for end > 0 && b[end-1] == 0 {
		end--
	}
	return int64(end)
}
