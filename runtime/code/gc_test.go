package code

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/evergreen-edge/evergreen/services/kit/groupdef"
)

const (
	arnV1 = "arn:aws:lambda:us-east-1:123456789012:function:echo:1"
	arnV2 = "arn:aws:lambda:us-east-1:123456789012:function:echo:2"
	arnV3 = "arn:aws:lambda:us-east-1:123456789012:function:echo:3"
)

// installVersion installs the executable function "echo" whose data file
// holds v, from a source directory of its own.
func installVersion(t *testing.T, functions, v string) Package {
	t.Helper()
	src := t.TempDir()
	os.WriteFile(filepath.Join(src, "echo"), []byte("#!/bin/sh\necho "+v+"\n"), 0o755)
	p, err := Install(functions, "echo", &groupdef.FunctionExtension{Runtime: "executable", Handler: "echo", CodeUri: src}, "")
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func installed(t *testing.T, functions string) []string {
	t.Helper()
	m, _ := filepath.Glob(filepath.Join(functions, "*", "*"))
	slices.Sort(m)
	return m
}

func sorted(s ...string) []string { slices.Sort(s); return s }

// Three versions applied one after the other: after each apply only the
// code of the group in force and of the one before (a rollback's target)
// remains; code installed by a PREPARE that never applied, and what an
// interrupted Install left, go at the next apply; the ledger survives a
// reopen; a live worker keeps its code; foreign files stay.
func TestCollectKeepsInForceAndPrevious(t *testing.T) {
	functions := t.TempDir()
	ledgerPath := filepath.Join(t.TempDir(), "state", "code-ledger.json")
	l, err := OpenLedger(ledgerPath)
	if err != nil {
		t.Fatal(err)
	}
	foreign := filepath.Join(functions, "echo", "README")
	apply := func(id, previous string, live map[string]bool, uses map[string]string) []string {
		t.Helper()
		if err := l.Record(Use{Deployment: id, Dirs: uses}); err != nil {
			t.Fatal(err)
		}
		if _, err := Collect(functions, l.Keep(previous, live)); err != nil {
			t.Fatal(err)
		}
		return installed(t, functions)
	}

	v1 := installVersion(t, functions, "1")
	v2 := installVersion(t, functions, "2")
	v3 := installVersion(t, functions, "3")
	os.WriteFile(foreign, []byte("not code"), 0o644)
	if got := apply("d-1", "", nil, map[string]string{v1.Dir: arnV1}); !slices.Equal(got, sorted(v1.Dir, foreign)) {
		t.Fatalf("after d-1: %v", got)
	}
	// v2 and v3 were installed before their deployments: install them again
	// (Install is idempotent; a PREPARE does it).
	v2 = installVersion(t, functions, "2")
	if got := apply("d-2", "d-1", nil, map[string]string{v2.Dir: arnV2}); !slices.Equal(got, sorted(v1.Dir, v2.Dir, foreign)) {
		t.Fatalf("after d-2: %v", got)
	}

	// Reopened (a restart), with a PREPARE of a refused deployment (v9)
	// and a half-done install between.
	if l, err = OpenLedger(ledgerPath); err != nil || len(l.Uses()) != 2 {
		t.Fatalf("reopened ledger: %+v %v", l.Uses(), err)
	}
	v9 := installVersion(t, functions, "9")
	os.MkdirAll(filepath.Join(functions, "echo", strings.Repeat("c", 64)+".tmp"), 0o755)
	v3 = installVersion(t, functions, "3")
	// A worker of v1 is still stopping: its code stays until it is gone.
	got := apply("d-3", "d-2", map[string]bool{arnV1: true}, map[string]string{v3.Dir: arnV3})
	if !slices.Equal(got, sorted(v1.Dir, v2.Dir, v3.Dir, foreign)) {
		t.Fatalf("after d-3 with a live v1 worker: %v (v9 %s must be gone)", got, v9.Dir)
	}
	if got := apply("d-3", "d-2", nil, map[string]string{v3.Dir: arnV3}); !slices.Equal(got, sorted(v2.Dir, v3.Dir, foreign)) {
		t.Fatalf("after d-3 again: %v", got)
	}
	// A rollback from d-4 to d-3: the group in force is d-3 again, and
	// previous.json names d-2 again, whose code went when d-4 applied (a
	// rollback returns one step only); d-4's code goes.
	v4 := installVersion(t, functions, "4")
	if got := apply("d-4", "d-3", nil, map[string]string{v4.Dir: arnV3}); !slices.Equal(got, sorted(v3.Dir, v4.Dir, foreign)) {
		t.Fatalf("after d-4: %v", got)
	}
	if got := apply("d-3", "d-2", nil, map[string]string{v3.Dir: arnV3}); !slices.Equal(got, sorted(v3.Dir, foreign)) {
		t.Fatalf("after the rollback to d-3: %v", got)
	}
	// A reset: nothing in force; the previous group's code stays.
	if got := apply("d-5", "d-3", nil, nil); !slices.Equal(got, sorted(v3.Dir, foreign)) {
		t.Fatalf("after a reset: %v", got)
	}
	if got := apply("d-6", "d-5", nil, nil); !slices.Equal(got, []string{foreign}) {
		t.Fatalf("after a second reset: %v", got)
	}
	os.Remove(foreign)
	apply("d-7", "d-6", nil, nil)
	if _, err := os.Stat(filepath.Join(functions, "echo")); !os.IsNotExist(err) {
		t.Fatalf("the empty function directory stays: %v", err)
	}
	if n := len(l.Uses()); n != LedgerEntries {
		t.Fatalf("ledger holds %d uses, want %d", n, LedgerEntries)
	}
}

// A corrupt ledger opens empty with an error naming the file.
func TestLedgerCorrupt(t *testing.T) {
	p := filepath.Join(t.TempDir(), "code-ledger.json")
	os.WriteFile(p, []byte("{torn"), 0o600)
	l, err := OpenLedger(p)
	if err == nil || !strings.Contains(err.Error(), p) || l == nil || len(l.Uses()) != 0 {
		t.Fatalf("OpenLedger of a corrupt file: %v %v", l, err)
	}
}
