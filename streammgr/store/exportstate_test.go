package store

import (
	"errors"
	"testing"
)

// Export progress files live in the stream's directory: they survive a
// reopen without being reported as damage and go with the stream.
func TestExportStateBesideTheStream(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Create(Definition{Name: "a.log"}); err != nil {
		t.Fatal(err)
	}
	if b, err := s.ReadExportState("a.log", "web 1"); err != nil || b != nil {
		t.Fatalf("before any write: %q %v", b, err)
	}
	if err := s.WriteExportState("a.log", "web 1", []byte(`{"x":1}`)); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if s, err = Open(Options{Dir: dir}); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	in, err := s.Describe("a.log")
	if err != nil || len(in.Damage) != 0 {
		t.Fatalf("describe after reopen: %+v %v", in, err)
	}
	if b, err := s.ReadExportState("a.log", "web 1"); err != nil || string(b) != `{"x":1}` {
		t.Fatalf("after reopen: %q %v", b, err)
	}
	if err := s.Delete("a.log"); err != nil {
		t.Fatal(err)
	}
	if err := s.WriteExportState("a.log", "web 1", []byte(`{}`)); !errors.Is(err, ErrNotFound) {
		t.Fatalf("write after delete: %v", err)
	}
	if err := s.Create(Definition{Name: "a.log"}); err != nil {
		t.Fatal(err)
	}
	if b, err := s.ReadExportState("a.log", "web 1"); err != nil || b != nil {
		t.Fatalf("a stream created again inherited %q %v", b, err)
	}
}
