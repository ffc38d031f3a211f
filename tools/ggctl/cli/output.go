package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// protoJSON marshals m with every field present, so scripts can rely on a
// key being there (healthy: false, pid: 0).
func protoJSON(m proto.Message) (json.RawMessage, error) {
	b, err := protojson.MarshalOptions{EmitUnpopulated: true}.Marshal(m)
	if err != nil {
		return nil, failf("encode %T as JSON: %v", m, err)
	}
	// protojson varies its whitespace on purpose; compact it so the output
	// is stable and json.Indent lays it out the same way every time.
	var c bytes.Buffer
	if err := json.Compact(&c, b); err != nil {
		return nil, failf("encode %T as JSON: %v", m, err)
	}
	return c.Bytes(), nil
}

func (a *app) printProto(m proto.Message) error {
	b, err := protoJSON(m)
	if err != nil {
		return err
	}
	return a.writeJSON(b)
}

// printProtoLine writes m as one line of JSON (JSON lines for streams).
func (a *app) printProtoLine(m proto.Message) error {
	b, err := protoJSON(m)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(a.stdout, "%s\n", b)
	return err
}

func (a *app) printJSON(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return failf("encode JSON: %v", err)
	}
	return a.writeJSON(b)
}

func (a *app) writeJSON(b []byte) error {
	var out bytes.Buffer
	if err := json.Indent(&out, b, "", "  "); err != nil {
		return failf("encode JSON: %v", err)
	}
	out.WriteByte('\n')
	_, err := a.stdout.Write(out.Bytes())
	return err
}

// table lays out rows in aligned columns for people.
type table struct{ tw *tabwriter.Writer }

func newTable(w io.Writer, header ...string) *table {
	t := &table{tw: tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)}
	if len(header) > 0 {
		t.row(header...)
	}
	return t
}

func (t *table) row(cells ...string) {
	for i, c := range cells {
		if c == "" {
			c = "-"
		}
		cells[i] = strings.ReplaceAll(oneLine(c), "\t", " ")
	}
	fmt.Fprintln(t.tw, strings.Join(cells, "\t"))
}

func (t *table) flush() error { return t.tw.Flush() }

// humanDuration is a short duration for tables: "6d23h", "4h05m", "3m20s",
// "12s".
func humanDuration(d time.Duration) string {
	if d < 0 {
		d = -d
	}
	switch {
	case d >= 24*time.Hour:
		days := d / (24 * time.Hour)
		return fmt.Sprintf("%dd%dh", days, (d-days*24*time.Hour)/time.Hour)
	case d >= time.Hour:
		return fmt.Sprintf("%dh%02dm", d/time.Hour, (d%time.Hour)/time.Minute)
	case d >= time.Minute:
		return fmt.Sprintf("%dm%02ds", d/time.Minute, (d%time.Minute)/time.Second)
	}
	return fmt.Sprintf("%ds", d/time.Second)
}

// expiry says when a certificate expires relative to now.
func expiry(notAfter, now time.Time) string {
	left := notAfter.Sub(now)
	if left <= 0 {
		return "EXPIRED " + humanDuration(left) + " ago"
	}
	return "expires in " + humanDuration(left)
}

func humanTime(ts *timestamppb.Timestamp) string {
	if ts == nil || (ts.Seconds == 0 && ts.Nanos == 0) {
		return ""
	}
	return ts.AsTime().Local().Format("2006-01-02 15:04:05")
}

// enumName drops an enum's type prefix: DAEMON_STATE_RUNNING -> RUNNING.
func enumName(s, prefix string) string { return strings.TrimPrefix(s, prefix) }

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}
