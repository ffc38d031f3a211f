package store_test

import (
	"bufio"
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/evergreen-edge/evergreen/services/secrets/store"
)

// TestMain lets the test binary act as a writer process that a test kills.
func TestMain(m *testing.M) {
	if dir := os.Getenv("SECRETS_STORE_WRITER"); dir != "" {
		writer(dir)
		return
	}
	os.Exit(m.Run())
}

// writer puts values as fast as it can and prints each one once Put has
// returned (durable), until it is killed.
func writer(dir string) {
	b, err := os.ReadFile(filepath.Join(dir, "key.pem"))
	if err != nil {
		panic(err)
	}
	blk, _ := pem.Decode(b)
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		panic(err)
	}
	s, _, err := store.Open(store.Options{Dir: filepath.Join(dir, "store"), Key: func() (crypto.Signer, error) { return k.(crypto.Signer), nil }})
	if err != nil {
		panic(err)
	}
	for i := 0; ; i++ {
		name := fmt.Sprintf("s%d", i%5)
		if _, _, err := s.Put(store.Put{Name: name, Value: []byte(fmt.Sprintf("value-%d-%s", i, strings.Repeat("x", i%3000)))}); err != nil {
			panic(err)
		}
		fmt.Printf("%d\n", i)
	}
}

func TestKillDuringWritesKeepsEveryAcknowledgedPut(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns a writer process")
	}
	dir := t.TempDir()
	k := ecKey(t)
	der, _ := x509.MarshalPKCS8PrivateKey(k)
	os.WriteFile(filepath.Join(dir, "key.pem"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
	h := &keyHolder{key: k}
	last := -1
	for round := 0; round < 3; round++ {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), "SECRETS_STORE_WRITER="+dir)
		out, _ := cmd.StdoutPipe()
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(out)
		acked := 0
		for sc.Scan() {
			n, err := strconv.Atoi(sc.Text())
			if err != nil {
				t.Fatalf("writer printed %q", sc.Text())
			}
			last, acked = n, acked+1
			if acked == 40+round*17 {
				cmd.Process.Signal(syscall.SIGKILL)
				break
			}
		}
		cmd.Wait()
		if acked == 0 {
			t.Fatal("the writer acknowledged nothing")
		}
		s, rep := open(t, filepath.Join(dir, "store"), h)
		if len(rep.Damaged) != 0 {
			t.Fatalf("round %d: damaged after kill -9: %v", round, rep.Damaged)
		}
		// The last acknowledged put is there, or a later one to the same
		// name (the writer runs on until the kill lands: on a loaded
		// machine that can be several puts).
		name := fmt.Sprintf("s%d", last%5)
		_, got, err := s.Value(name, store.Current)
		if err != nil {
			t.Fatal(err)
		}
		i, _ := strconv.Atoi(strings.SplitN(string(got), "-", 3)[1])
		if i < last || (i-last)%5 != 0 {
			t.Fatalf("round %d: %s holds put %d, the last acknowledged was %d", round, name, i, last)
		}
	}
}
