package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/evergreen-edge/evergreen/services/kit/atomicfile"
)

// Segments are dropped only from the oldest end, so the sequence numbers
// of consecutive segments follow each other, but for one case: a start-up
// after an unclean stop continues at the seq file's floor, ahead of the
// newest stored message (numbers handed out before the crash may have
// been seen, then lost), and the next segment starts there. Such jumps are
// recorded in the jumps file before any segment starts past them, so that
// start-up tells them from segments lost in between, which are damage.
const jumpsFile = "jumps"

// span is a range of sequence numbers, from included, to excluded.
type span struct {
	From int64 `json:"from"`
	To   int64 `json:"to"`
}

func readJumps(path string) ([]span, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []span
	if err := json.Unmarshal(b, &out); err != nil {
		return nil, err
	}
	return out, nil
}

func writeJumps(path string, jumps []span) error {
	if len(jumps) == 0 {
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		return nil
	}
	b, _ := json.Marshal(jumps)
	return atomicfile.WriteFile(path, b, 0o640)
}

// uncovered returns the parts of s that no span of cover holds.
func uncovered(s span, cover []span) []span {
	out := []span{s}
	for _, c := range cover {
		var next []span
		for _, o := range out {
			if c.To <= o.From || c.From >= o.To {
				next = append(next, o)
				continue
			}
			if o.From < c.From {
				next = append(next, span{o.From, c.From})
			}
			if c.To < o.To {
				next = append(next, span{c.To, o.To})
			}
		}
		out = next
	}
	return out
}

func (s span) String() string {
	if s.To-s.From == 1 {
		return fmt.Sprintf("%d", s.From)
	}
	return fmt.Sprintf("%d..%d", s.From, s.To-1)
}

func spansString(ss []span) string {
	out := ""
	for i, s := range ss {
		if i > 0 {
			out += ", "
		}
		out += s.String()
	}
	return out
}

// noteJumps records, at start-up, the jump from the newest stored message
// to st.next (the seq file's floor after an unclean stop), and forgets the
// jumps below the oldest segment.
func (st *stream) noteJumps(jumps []span) {
	var keep []span
	if n := len(st.segs); n > 0 {
		for _, j := range jumps {
			if j.To > st.segs[0].first {
				keep = append(keep, j)
			}
		}
		last := st.segs[n-1]
		if end := last.first + last.count; st.next > end && len(uncovered(span{end, st.next}, keep)) > 0 {
			keep = append(keep, span{end, st.next})
		}
	}
	if slices.Equal(keep, jumps) {
		return
	}
	if err := writeJumps(filepath.Join(st.dir, jumpsFile), keep); err != nil {
		st.report(fmt.Sprintf("jumps file not written (%v): sequence numbers skipped after an unclean stop may be reported as lost at a later start-up", err))
	}
}

// damagedTail is a sealed segment whose records stop being readable
// before its file ends.
type damagedTail struct {
	g     *segment
	err   error
	bytes int64 // unreadable bytes from the first bad record on
}

// droppedFile is a segment file start-up found nothing readable in.
type droppedFile struct {
	first int64 // from its name
	what  string
}

// checkGap reports, as start-up keeps segment g, what was lost since the
// segment kept before it: the sequence numbers between them that no
// recorded jump explains, with what start-up saw there (the damaged tail
// of the one before, files with nothing readable, or no file at all).
func (st *stream) checkGap(g *segment, tail *damagedTail, between []droppedFile, jumps []span) {
	var from int64
	switch n := len(st.segs); {
	case n > 0:
		from = st.segs[n-1].first + st.segs[n-1].count
	case len(between) > 0:
		// Nothing kept before: the oldest files held nothing readable.
		from = between[0].first
	default:
		return
	}
	var lost []span
	if from < g.first {
		lost = uncovered(span{from, g.first}, jumps)
	}
	var whats []string
	for _, d := range between {
		whats = append(whats, d.what)
	}
	name := func(g *segment) string { return filepath.Base(g.path) }
	switch {
	case tail != nil && len(lost) == 0:
		// Nothing is missing: bytes were added after its last record.
		st.report(fmt.Sprintf("segment %s: %d bytes after its last message (%d) are not a record (%v); ignored, no message lost",
			name(tail.g), tail.bytes, tail.g.last(), tail.err))
	case tail != nil:
		msg := fmt.Sprintf("segment %s: %v; %d bytes from there unreadable: messages %s lost", name(tail.g), tail.err, tail.bytes, spansString(lost))
		if len(whats) > 0 {
			msg += " (and " + strings.Join(whats, "; ") + ")"
		}
		st.report(msg)
	case len(lost) > 0 && len(whats) > 0:
		st.report(fmt.Sprintf("messages %s lost: %s", spansString(lost), strings.Join(whats, "; ")))
	case len(lost) > 0:
		st.report(fmt.Sprintf("messages %s lost: no segment file holds them (one between %s and %s was deleted, or their write failed)",
			spansString(lost), name(st.segs[len(st.segs)-1]), name(g)))
	}
}
