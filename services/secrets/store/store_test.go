package store_test

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/evergreen-edge/evergreen/services/kit/errdefs"
	"github.com/evergreen-edge/evergreen/services/secrets/store"
)

// keyHolder is a sealing key that a test can replace.
type keyHolder struct {
	mu  sync.Mutex
	key crypto.Signer
	err error
}

func (h *keyHolder) get() (crypto.Signer, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.key, h.err
}

func (h *keyHolder) set(k crypto.Signer, err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.key, h.err = k, err
}

func ecKey(t *testing.T) crypto.Signer {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func rsaKey(t *testing.T) crypto.Signer {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func open(t *testing.T, dir string, h *keyHolder, o ...func(*store.Options)) (*store.Store, store.Report) {
	t.Helper()
	opts := store.Options{Dir: dir, Key: h.get}
	for _, f := range o {
		f(&opts)
	}
	s, rep, err := store.Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	return s, rep
}

func put(t *testing.T, s *store.Store, p store.Put) string {
	t.Helper()
	_, id, err := s.Put(p)
	if err != nil {
		t.Fatalf("put %s: %v", p.Name, err)
	}
	return id
}

func wantValue(t *testing.T, s *store.Store, name, stage, want string) store.Version {
	t.Helper()
	v, got, err := s.Value(name, stage)
	if err != nil || string(got) != want {
		t.Fatalf("value of %s %s = %q, %v; want %q", name, stage, got, err, want)
	}
	return v
}

// noPlaintext fails when any file under dir holds any of the values.
func noPlaintext(t *testing.T, dir string, values ...string) {
	t.Helper()
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range values {
			if bytes.Contains(b, []byte(v)) {
				t.Fatalf("%s holds the plaintext %q", p, v)
			}
		}
		return nil
	})
}

func TestRoundTripRSAandEC(t *testing.T) {
	for name, mk := range map[string]func(*testing.T) crypto.Signer{"RSA": rsaKey, "EC": ecKey} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			h := &keyHolder{key: mk(t)}
			s, _ := open(t, dir, h)
			put(t, s, store.Put{Name: "db", Value: []byte("s3cr3t-db-password")})
			bin := []byte{0, 1, 2, 0xff, 'b', 'i', 'n', 'a', 'r', 'y', '!'}
			put(t, s, store.Put{Name: "blob", ARN: "arn:aws:secretsmanager:us-east-1:123456789012:secret:blob-AbCdEf", Value: bin, Binary: true, Labels: []string{"beta"}})

			// A second process (the daemon restarted) reads the same.
			s2, rep := open(t, dir, h)
			if rep.Generation != 2 || len(rep.Damaged) != 0 {
				t.Fatalf("report %+v", rep)
			}
			wantValue(t, s2, "db", store.Current, "s3cr3t-db-password")
			v, got, err := s2.Value("blob", "beta")
			if err != nil || !bytes.Equal(got, bin) || !v.Binary || v.Size != len(bin) {
				t.Fatalf("blob = %v %+v %v", got, v, err)
			}
			sec, _ := s2.Get("blob")
			if sec.ARN != "arn:aws:secretsmanager:us-east-1:123456789012:secret:blob-AbCdEf" {
				t.Fatalf("arn %q", sec.ARN)
			}
			noPlaintext(t, dir, "s3cr3t-db-password", string(bin))
			for _, f := range []string{"store.a", "store.b"} {
				fi, err := os.Stat(filepath.Join(dir, f))
				if err != nil || fi.Mode().Perm() != 0o600 {
					t.Fatalf("%s: %v %v", f, fi, err)
				}
			}
		})
	}
}

func TestTornOrCorruptNewestSlotKeepsLastGoodState(t *testing.T) {
	h := &keyHolder{key: ecKey(t)}
	for _, damage := range []struct {
		name string
		do   func([]byte) []byte
	}{
		{"truncated", func(b []byte) []byte { return b[:len(b)/2] }},
		{"header only", func(b []byte) []byte { return b[:bytes.IndexByte(b, '\n')+1] }},
		{"bit flip", func(b []byte) []byte { b[len(b)-10] ^= 1; return b }},
		{"zeroed", func(b []byte) []byte { return make([]byte, len(b)) }},
		{"empty", func([]byte) []byte { return nil }},
	} {
		t.Run(damage.name, func(t *testing.T) {
			dir := t.TempDir()
			s, _ := open(t, dir, h)
			put(t, s, store.Put{Name: "a", Value: []byte("one")})   // gen 1 -> store.a
			put(t, s, store.Put{Name: "a", Value: []byte("two")})   // gen 2 -> store.b
			put(t, s, store.Put{Name: "b", Value: []byte("three")}) // gen 3 -> store.a
			p := filepath.Join(dir, "store.a")
			b, _ := os.ReadFile(p)
			os.WriteFile(p, damage.do(b), 0o600)

			s2, rep := open(t, dir, h)
			if rep.Generation != 2 || len(rep.Damaged) != 1 || !strings.Contains(rep.Damaged[0], "store.a") {
				t.Fatalf("report %+v", rep)
			}
			wantValue(t, s2, "a", store.Current, "two")
			wantValue(t, s2, "a", store.Previous, "one")
			if _, ok := s2.Get("b"); ok {
				t.Fatal("b came from the damaged generation")
			}
			// The next write replaces the damaged slot, never the good one.
			put(t, s2, store.Put{Name: "c", Value: []byte("four")})
			s3, rep := open(t, dir, h)
			if rep.Generation != 3 || len(rep.Damaged) != 0 {
				t.Fatalf("after rewrite: %+v", rep)
			}
			wantValue(t, s3, "c", store.Current, "four")
		})
	}
}

func TestBothSlotsDamagedOpensEmptyAndReports(t *testing.T) {
	dir := t.TempDir()
	h := &keyHolder{key: ecKey(t)}
	os.WriteFile(filepath.Join(dir, "store.a"), []byte("EGSTORE 1 gen=7 len=3 sha256=00\nabc"), 0o600)
	os.WriteFile(filepath.Join(dir, "store.b"), []byte("garbage"), 0o600)
	// A temp file of a write interrupted by a crash.
	os.WriteFile(filepath.Join(dir, ".store.b.tmp-123"), []byte("half"), 0o600)
	s, rep := open(t, dir, h)
	if len(rep.Damaged) != 2 || rep.Generation != 0 {
		t.Fatalf("report %+v", rep)
	}
	if n, _ := s.Usage(); n != 0 {
		t.Fatalf("%d secrets", n)
	}
	if _, err := os.Stat(filepath.Join(dir, ".store.b.tmp-123")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("leftover temp file: %v", err)
	}
}

func TestStagingLabels(t *testing.T) {
	s, _ := open(t, t.TempDir(), &keyHolder{key: ecKey(t)})
	put(t, s, store.Put{Name: "k", Value: []byte("v1"), Labels: []string{"beta", "AWSCURRENT", "beta"}})
	v2 := put(t, s, store.Put{Name: "k", Value: []byte("v2")})
	// v1 keeps beta and becomes AWSPREVIOUS.
	wantValue(t, s, "k", "beta", "v1")
	wantValue(t, s, "k", store.Previous, "v1")
	wantValue(t, s, "k", store.Current, "v2")
	v3 := put(t, s, store.Put{Name: "k", Value: []byte("v3"), Labels: []string{"beta"}})
	// v1 lost every label: dropped. v2 is AWSPREVIOUS.
	sec, _ := s.Get("k")
	var ids []string
	for _, v := range sec.Versions {
		ids = append(ids, v.ID+":"+strings.Join(v.Stages, ","))
	}
	want := []string{v3 + ":AWSCURRENT,beta", v2 + ":AWSPREVIOUS"}
	if !slices.Equal(ids, want) {
		t.Fatalf("versions %v, want %v", ids, want)
	}
	if _, _, err := s.Value("k", "gamma"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("unknown label: %v", err)
	}
	if _, _, err := s.Put(store.Put{Name: "k", Value: []byte("x"), Labels: []string{store.Previous}}); !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.HasPrefix(err.Error(), "labels: ") {
		t.Fatalf("AWSPREVIOUS asked for: %v", err)
	}

	// A version id put again with the same value only moves labels (back
	// to v2 as current); with another value it is refused.
	if got := put(t, s, store.Put{Name: "k", Value: []byte("v2"), VersionID: v2}); got != v2 {
		t.Fatalf("version %s, want %s", got, v2)
	}
	wantValue(t, s, "k", store.Current, "v2")
	wantValue(t, s, "k", store.Previous, "v3")
	if _, _, err := s.Put(store.Put{Name: "k", Value: []byte("other"), VersionID: v2}); !errors.Is(err, errdefs.ErrAlreadyExists) || !strings.HasPrefix(err.Error(), "version_id: ") {
		t.Fatalf("reused version id: %v", err)
	}

	var many []string
	for i := 0; i < store.MaxLabelsPerSecret; i++ {
		many = append(many, "l"+string(rune('a'+i)))
	}
	if _, _, err := s.Put(store.Put{Name: "k", Value: []byte("x"), Labels: many}); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Fatalf("too many labels: %v", err)
	}
}

func TestLimits(t *testing.T) {
	s, _ := open(t, t.TempDir(), &keyHolder{key: ecKey(t)}, func(o *store.Options) { o.MaxSecrets = 2; o.MaxStoredBytes = 100 })
	if _, _, err := s.Put(store.Put{Name: "big", Value: make([]byte, store.MaxValueBytes+1)}); !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), "65536-byte limit") {
		t.Fatalf("oversized value: %v", err)
	}
	put(t, s, store.Put{Name: "a", Value: make([]byte, 60)})
	if _, _, err := s.Put(store.Put{Name: "b", Value: make([]byte, 41)}); !errors.Is(err, errdefs.ErrResourceExhausted) || !strings.Contains(err.Error(), "over its limit of 100") {
		t.Fatalf("over the byte limit: %v", err)
	}
	put(t, s, store.Put{Name: "b", Value: make([]byte, 40)})
	if _, _, err := s.Put(store.Put{Name: "c", Value: []byte("x")}); !errors.Is(err, errdefs.ErrResourceExhausted) || !strings.Contains(err.Error(), "2 secrets") {
		t.Fatalf("over the secret limit: %v", err)
	}
	// Replacing a value counts the version it keeps as AWSPREVIOUS.
	if _, _, err := s.Put(store.Put{Name: "b", Value: make([]byte, 1)}); !errors.Is(err, errdefs.ErrResourceExhausted) {
		t.Fatalf("previous version not counted: %v", err)
	}
	if n, err := s.Delete("a"); err != nil || n != 1 {
		t.Fatalf("delete: %d %v", n, err)
	}
	put(t, s, store.Put{Name: "c", Value: []byte("x")})
	if _, err := s.Delete("nope"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("delete unknown: %v", err)
	}
}

func TestSealingKeyChange(t *testing.T) {
	dir := t.TempDir()
	old := rsaKey(t)
	h := &keyHolder{key: old}
	s, _ := open(t, dir, h)
	put(t, s, store.Put{Name: "a", Value: []byte("kept across the key change")})

	// The key is replaced while the store is open: CheckKey reseals.
	h.set(ecKey(t), nil)
	if ok, err := s.CheckKey(); !ok || err != nil {
		t.Fatalf("CheckKey = %v %v", ok, err)
	}
	if ok, err := s.CheckKey(); ok || err != nil {
		t.Fatalf("second CheckKey = %v %v", ok, err)
	}
	s2, _ := open(t, dir, h)
	wantValue(t, s2, "a", store.Current, "kept across the key change")

	// Replaced while closed: the store cannot be opened; it says why, and
	// deleting every secret makes it usable again.
	h.set(ecKey(t), nil)
	s3, _ := open(t, dir, h)
	if err := s3.Unlock(); !errors.Is(err, errdefs.ErrFailedPrecondition) || !strings.Contains(err.Error(), "sealed to sha256:") {
		t.Fatalf("Unlock with another key: %v", err)
	}
	if _, _, err := s3.Put(store.Put{Name: "b", Value: []byte("x")}); !errors.Is(err, errdefs.ErrFailedPrecondition) {
		t.Fatalf("put with another key: %v", err)
	}
	if _, err := s3.Delete("a"); err != nil {
		t.Fatal(err)
	}
	put(t, s3, store.Put{Name: "b", Value: []byte("fresh")})
	s4, _ := open(t, dir, h)
	wantValue(t, s4, "b", store.Current, "fresh")

	// No key at all: puts and reads fail with the key's error.
	h.set(nil, errdefs.ErrUnavailable)
	s5, _ := open(t, dir, h)
	if _, _, err := s5.Value("b", store.Current); !errors.Is(err, errdefs.ErrUnavailable) {
		t.Fatalf("read without key: %v", err)
	}
}

func TestSwappedCiphertextRefused(t *testing.T) {
	// A value moved to another secret's entry does not decrypt there: the
	// name and version are authenticated with it.
	dir := t.TempDir()
	h := &keyHolder{key: ecKey(t)}
	s, _ := open(t, dir, h)
	put(t, s, store.Put{Name: "a", Value: []byte("AAAA")})
	put(t, s, store.Put{Name: "b", Value: []byte("BBBB")})
	p := filepath.Join(dir, "store.b")
	raw, _ := os.ReadFile(p)
	body := raw[bytes.IndexByte(raw, '\n')+1:]
	swapped := bytes.Replace(body, []byte(`"name":"a"`), []byte(`"name":"x"`), 1)
	swapped = bytes.Replace(swapped, []byte(`"name":"b"`), []byte(`"name":"a"`), 1)
	swapped = bytes.Replace(swapped, []byte(`"name":"x"`), []byte(`"name":"b"`), 1)
	if bytes.Equal(swapped, body) {
		t.Fatal("nothing swapped")
	}
	// Rewrite with a valid header so that only the crypto can tell.
	os.WriteFile(p, rewrap(swapped), 0o600)
	s2, rep := open(t, dir, h)
	if len(rep.Damaged) != 0 || rep.Generation != 2 {
		t.Fatalf("report %+v", rep)
	}
	if _, _, err := s2.Value("a", store.Current); !errors.Is(err, errdefs.ErrInternal) {
		t.Fatalf("swapped value: %v", err)
	}
}

// rewrap gives a body a valid header of generation 2.
func rewrap(body []byte) []byte {
	sum := sha256.Sum256(body)
	return append([]byte(fmt.Sprintf("EGSTORE 1 gen=2 len=%d sha256=%s\n", len(body), hex.EncodeToString(sum[:]))), body...)
}
