package groupdef

import (
	"encoding/json"
	"math/rand"
	"reflect"
	"testing"
)

// The fast tree is the decoder's tree, for every valid document: the
// examples and thousands of damaged copies of them that stay valid JSON.
func TestFastTreeMatchesDecoder(t *testing.T) {
	seeds := [][]byte{readFile(t, examplePath), readFile(t, "testdata/full.json"),
		[]byte(`{"a":"\u00e9\n\"x\"","b":[1,-2.5e3,true,false,null,{}],"c":"\xff\xfe"}`)}
	r := rand.New(rand.NewSource(11))
	const punctuation = "{}[]\",:0 n\\u"
	checked := 0
	for i := 0; i < 5000; i++ {
		d := append([]byte(nil), seeds[r.Intn(len(seeds))]...)
		if i >= len(seeds) {
			for k := 0; k < 1+r.Intn(3); k++ {
				pos := r.Intn(len(d))
				if r.Intn(2) == 0 {
					d[pos] = byte(r.Intn(256))
				} else {
					d[pos] = punctuation[r.Intn(len(punctuation))]
				}
			}
		} else {
			d = seeds[i]
		}
		if !json.Valid(d) {
			continue
		}
		fast := fastTree(d)
		slow, err := slowTree(d)
		if err != nil {
			continue // e.g. too deep: the fast path gives up too
		}
		if fast == nil {
			t.Fatalf("the fast path gave up on a document the decoder reads:\n%s", d)
		}
		if !reflect.DeepEqual(fast, slow) {
			t.Fatalf("trees differ for:\n%s", d)
		}
		checked++
	}
	if checked < 100 {
		t.Fatalf("only %d valid documents checked", checked)
	}
}

func BenchmarkReadTree(b *testing.B) {
	data := readFile(b, "testdata/full.json")
	b.Run("fast", func(b *testing.B) {
		b.ReportAllocs()
		for range b.N {
			fastTree(data)
		}
	})
	b.Run("decoder", func(b *testing.B) {
		b.ReportAllocs()
		for range b.N {
			slowTree(data)
		}
	})
}
