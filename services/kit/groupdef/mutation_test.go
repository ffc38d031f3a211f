package groupdef

import (
	"errors"
	"math/rand"
	"reflect"
	"testing"
)

// TestParseMutatedInputs runs the FuzzParse properties over a fixed set of
// damaged copies of the examples, so every `go test` run, not only fuzzing
// sessions, checks that broken input yields a ValidationError and that
// whatever parses also round-trips.
func TestParseMutatedInputs(t *testing.T) {
	seeds := [][]byte{readFile(t, examplePath), readFile(t, "testdata/full.json")}
	r := rand.New(rand.NewSource(7))
	const punctuation = "{}[]\",:0 n"
	parsed := 0
	for i := 0; i < 3000; i++ {
		d := append([]byte(nil), seeds[r.Intn(len(seeds))]...)
		for k := 0; k < 1+r.Intn(4); k++ {
			pos := r.Intn(len(d))
			switch r.Intn(4) {
			case 0:
				d[pos] = byte(r.Intn(256))
			case 1:
				d = append(d[:pos], d[min(len(d), pos+1+r.Intn(40)):]...)
			case 2:
				d = append(d[:pos], append([]byte{punctuation[r.Intn(len(punctuation))]}, d[pos:]...)...)
			case 3:
				d[pos] = punctuation[r.Intn(len(punctuation))]
			}
			if len(d) == 0 {
				break
			}
		}
		g, err := Parse(d)
		if err != nil {
			var ve *ValidationError
			if !errors.As(err, &ve) || len(ve.Errors) == 0 {
				t.Fatalf("error is not a non-empty *ValidationError: %v", err)
			}
			continue
		}
		parsed++
		out, err := Marshal(g)
		if err != nil {
			t.Fatalf("Marshal of a parsed group: %v\ninput: %s", err, d)
		}
		back, err := Parse(out)
		if err != nil || !reflect.DeepEqual(g, back) {
			t.Fatalf("round trip failed (%v)\ninput: %s", err, d)
		}
	}
	if parsed == 0 {
		t.Fatal("no mutated input parsed; the mutations are too coarse to test round trips")
	}
}
