package export

import (
	"github.com/evergreen-edge/evergreen/streammgr/store"
)

// partial remembers, for the batch being delivered, which messages the
// destination already took (accepted, or refused for good), so that a
// retry of the batch sends only the others: the AWS batch APIs answer per
// record, and a record they accepted is never sent twice because another
// failed.
type partial struct {
	first, last int64
	done        map[int64]bool
}

// pending returns the messages of msgs not yet taken; fresh is true when
// msgs is a new batch (the previous one was delivered or abandoned).
func (p *partial) pending(msgs []store.Message) (out []store.Message, fresh bool) {
	if len(msgs) == 0 {
		return nil, false
	}
	if p.done == nil || p.first != msgs[0].Seq || p.last != msgs[len(msgs)-1].Seq {
		p.first, p.last, p.done, fresh = msgs[0].Seq, msgs[len(msgs)-1].Seq, map[int64]bool{}, true
	}
	for _, m := range msgs {
		if !p.done[m.Seq] {
			out = append(out, m)
		}
	}
	return out, fresh
}

// take marks message seq as taken.
func (p *partial) take(seq int64) { p.done[seq] = true }

// refuse records that the destination will never take message seq (it is
// malformed for it, or refused for good): the export moves past it without
// counting it as exported, and errorMessage says so until the next such
// message. Called on the exporter's goroutine, during a send.
func (e *exporter) refuse(seq int64, why string) {
	if e.refused == nil {
		e.refused = map[int64]bool{}
	}
	e.refused[seq] = true
	e.noteSkipped(why)
}

// noteSkipped records a loss that errorMessage keeps showing after
// successes (messages removed before export, values refused for good).
func (e *exporter) noteSkipped(why string) {
	e.log.Warn("export skipped data", "why", why)
	e.mu.Lock()
	e.skipped = why
	e.mu.Unlock()
}
