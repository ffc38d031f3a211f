package streammgr

import (
	"github.com/evergreen-edge/evergreen/streammgr/export"
	"github.com/evergreen-edge/evergreen/streammgr/store"
)

// update replaces a stream's definition (UpdateMessageStream); call it
// under lifeMu. The store checks v1's rules on sizes and persistence; the
// rule on exports' startSequenceNumber needs the export definitions,
// which only package export reads. Checked before the store's update
// without one lock: no other update runs meanwhile (lifeMu), and appends
// only move the newest sequence number up, so what passed still holds.
func (s *Service) update(d store.Definition) error {
	in, err := s.store.Describe(d.Name)
	if err != nil {
		return err
	}
	newest := in.Newest
	if in.Count == 0 {
		newest = in.Oldest // what DescribeMessageStream reports (0 for a fresh stream)
	}
	if err := export.CheckStartChange(in.Definition.Export, d.Export, newest); err != nil {
		return err
	}
	return s.store.Update(d)
}
