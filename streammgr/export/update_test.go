package export_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/evergreen-edge/evergreen/services/kit/errdefs"
	"github.com/evergreen-edge/evergreen/streammgr/export"
	"github.com/evergreen-edge/evergreen/streammgr/store"
	"github.com/fxamacker/cbor/v2"
)

// TestCheckStartChange: v1's rule that an update may move an export's
// startSequenceNumber up to the stream's newest message only; an export
// is known by its identifier whatever its kind.
func TestCheckStartChange(t *testing.T) {
	def := func(kind string, start int) []byte {
		c := map[string]any{"identifier": "x", "startSequenceNumber": start}
		switch kind {
		case "http":
			c["uri"] = "http://127.0.0.1:9/"
		case "kinesis":
			c["kinesisStreamName"] = "k"
		}
		b, _ := cbor.Marshal(map[string]any{kind: []any{c}})
		return b
	}
	for _, c := range []struct {
		what    string
		old, nu []byte
		newest  int64
		refused string // the field named, "" for allowed
	}{
		{"unchanged beyond the newest", def("http", 10), def("http", 10), 4, ""},
		{"moved to the newest", def("http", 10), def("http", 4), 4, ""},
		{"moved back", def("http", 3), def("http", 0), 4, ""},
		{"moved past the newest", def("http", 3), def("http", 5), 4, "definition.exportDefinition.http[0].startSequenceNumber"},
		{"another kind, same identifier", def("http", 3), def("kinesis", 9), 4, "definition.exportDefinition.kinesis[0].startSequenceNumber"},
		{"a new export", nil, def("http", 100), 4, ""},
		{"IotSitewise", def("IotSitewise", 0), def("IotSitewise", 5), 4, "IotSitewise[0]"},
	} {
		err := export.CheckStartChange(c.old, c.nu, c.newest)
		switch {
		case c.refused == "" && err != nil:
			t.Errorf("%s: %v", c.what, err)
		case c.refused != "" && (!errors.Is(err, store.ErrUpdateNotAllowed) || !strings.Contains(err.Error(), c.refused)):
			t.Errorf("%s: %v, want UpdateNotAllowed naming %s", c.what, err, c.refused)
		}
	}
}

// TestExportDefinitionMustBeAMap: CBOR null, an array or a byte string
// (the gRPC API takes the definition as raw CBOR) is no export
// definition.
func TestExportDefinitionMustBeAMap(t *testing.T) {
	for _, raw := range [][]byte{{0xf6}, {0x80}, {0x42, 1, 2}, {0x00}} {
		if _, err := export.Parse(raw); !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("% x: %v, want invalid argument", raw, err)
		}
	}
	if d, err := export.Parse([]byte{0xa0}); err != nil || len(d.HTTP) != 0 {
		t.Errorf("an empty map: %+v %v", d, err)
	}
}
