package export

import (
	"fmt"

	"github.com/evergreen-edge/evergreen/streammgr/store"
)

// CheckStartChange applies v1's rule on startSequenceNumber in
// UpdateMessageStream (GGDG "Update message stream": to update the start
// sequence number of an export configuration, specify a value less than
// the latest sequence number). A configuration of the new definition nu
// whose identifier the stored definition old has too, in any kind, and
// whose startSequenceNumber differs, may not start past newest, the
// stream's newest sequence number as DescribeMessageStream reports it;
// newest itself is allowed (re-exporting the newest message is a change
// a user can mean). An unchanged value and a new configuration are free,
// as at create. s3TaskExecutor has no startSequenceNumber. The error
// names the field and wraps store.ErrUpdateNotAllowed.
func CheckStartChange(old, nu []byte, newest int64) error {
	nd, err := Parse(nu)
	if err != nil {
		return err
	}
	od, err := Parse(old)
	if err != nil {
		// Stored under rules that changed since: nothing to compare.
		return nil
	}
	was := map[string]int64{}
	for _, s := range od.starts() {
		was[s.id] = s.start
	}
	for _, s := range nd.starts() {
		if w, ok := was[s.id]; ok && w != s.start && s.start > newest {
			return fmt.Errorf("%s %d is beyond the stream's newest sequence number %d (it was %d): %w",
				s.field, s.start, newest, w, store.ErrUpdateNotAllowed)
		}
	}
	return nil
}

type startOf struct {
	field, id string
	start     int64
}

// starts lists the configurations that have a startSequenceNumber.
func (d Definition) starts() []startOf {
	var out []startOf
	add := func(kind string, i int, c config) {
		cm := c.common()
		out = append(out, startOf{fmt.Sprintf("definition.exportDefinition.%s[%d].startSequenceNumber", kind, i), cm.Identifier, cm.StartSequenceNumber})
	}
	for i, c := range d.HTTP {
		add("http", i, c)
	}
	for i, c := range d.JetStream {
		add("jetstream", i, c)
	}
	for i, c := range d.Kinesis {
		add("kinesis", i, c)
	}
	for i, c := range d.IoTAnalytics {
		add("iotAnalytics", i, c)
	}
	for i, c := range d.IoTSiteWise {
		add("IotSitewise", i, c)
	}
	return out
}
