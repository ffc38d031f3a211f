package logging

import (
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/evergreen-edge/evergreen/services/kit/groupdef"
)

// A chatty daemon forwarding to the cloud holds a bounded number of
// records: the oldest go first and are counted, and every batch fits an
// MQTT message.
func TestForwardingIsBounded(t *testing.T) {
	log, c, err := New("d", Options{Level: "info", Stderr: &strings.Builder{}})
	if err != nil {
		t.Fatal(err)
	}
	c.AllowForward()
	c.ApplyGroup(&groupdef.LoggerDefinitionVersion{Loggers: []groupdef.Logger{
		{Id: "cw", Component: "GreengrassSystem", Level: "DEBUG", Type: "AWSCloudWatch"},
		{Id: "lcw", Component: "Lambda", Level: "WARN", Type: "AWSCloudWatch"},
	}})
	const n = 5000
	for i := 0; i < n; i++ {
		log.Debug("record", "i", i, "pad", strings.Repeat("é", 400))
	}
	if c.ForwardLambda("fn", time.Now(), slog.LevelInfo, "[INFO]-below") {
		t.Error("a Lambda line below the logger's level was kept")
	}
	c.ForwardLambda("fn", time.Now(), slog.LevelError, "[ERROR]-kept")
	var kept, dropped int
	var comps []string
	last := -1
	for _, b := range c.Batches() {
		if len(b.Data) > BatchBytes {
			t.Errorf("batch of %d bytes", len(b.Data))
		}
		var v struct {
			Component string
			Dropped   int
			Records   []map[string]any
		}
		if err := json.Unmarshal(b.Data, &v); err != nil {
			t.Fatalf("batch: %v", err)
		}
		comps = append(comps, v.Component)
		kept += len(v.Records)
		dropped += v.Dropped
		if v.Component == "GreengrassSystem/d" {
			last = int(v.Records[len(v.Records)-1]["i"].(float64))
		}
	}
	if kept+dropped != n+1 || kept > ringRecords || last != n-1 {
		t.Errorf("kept %d, dropped %d of %d (last %d): want the newest kept within %d records", kept, dropped, n+1, last, ringRecords)
	}
	if comps[len(comps)-1] != "Lambda/fn" {
		t.Errorf("components %v", comps)
	}
	if b := c.Batches(); b != nil {
		t.Errorf("a second drain returned %d batches", len(b))
	}
}
