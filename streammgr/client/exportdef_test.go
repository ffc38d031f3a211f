package client

import (
	"reflect"
	"testing"

	"github.com/evergreen-edge/evergreen/streammgr/protocol"
	"github.com/fxamacker/cbor/v2"
)

// A kind of export this package has no type for survives a describe
// followed by an update of the same definition.
func TestExportDefinitionKeepsOtherKinds(t *testing.T) {
	in := map[string]any{
		"http":      []any{map[string]any{"identifier": "h", "uri": "http://x/", "exportFormat": 1}},
		"jetstream": []any{map[string]any{"identifier": "j", "subject": "s.>", "batchSize": 5}},
	}
	b, err := protocol.Encode(in)
	if err != nil {
		t.Fatal(err)
	}
	d, err := definitionOf(&protocol.MessageStreamDefinition{Name: "s", ExportDefinition: b})
	if err != nil {
		t.Fatal(err)
	}
	if h := d.ExportDefinition.HTTP; len(h) != 1 || h[0] != (HTTPConfig{Identifier: "h", URI: "http://x/", ExportFormat: JSONBatched}) {
		t.Fatalf("http %+v", h)
	}
	w, err := d.wire()
	if err != nil {
		t.Fatal(err)
	}
	var got, want map[string]any
	if err := cbor.Unmarshal(w.ExportDefinition, &got); err != nil {
		t.Fatal(err)
	}
	cbor.Unmarshal(b, &want)
	if !reflect.DeepEqual(got["jetstream"], want["jetstream"]) || got["http"] == nil {
		t.Fatalf("written back %v, read %v", got, want)
	}
}
