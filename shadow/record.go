package shadow

import (
	"bytes"
	"encoding/json"
	"fmt"

	"github.com/evergreen-edge/evergreen/shadow/cloudsync"
	"github.com/evergreen-edge/evergreen/shadow/doc"
	"github.com/evergreen-edge/evergreen/shadow/store"
)

// record is what the store keeps per shadow: the document and, for synced
// things, the sync state. Both change in one Put, so a crash never leaves
// a document without the sync state that explains it.
type record struct {
	Shadow doc.Shadow
	Sync   syncState
}

// syncState is the cloud side of a synced shadow.
type syncState struct {
	// Base is the cloud document as last received and reconciled; local
	// changes are what differs from it. Nil before the first sync.
	Base *cloudsync.State `json:"base,omitempty"`
	// CloudVersion is the cloud's version of Base; older cloud documents
	// (arriving out of order) are ignored. The local version is the
	// document's own: the two numberings never mix.
	CloudVersion int64 `json:"cloudVersion,omitempty"`
	// Pending says local changes may not have reached the cloud yet.
	Pending bool `json:"pending,omitempty"`
	// Sent is the last patch sent to the cloud (SentDelete: a delete);
	// the next cloud document confirms what of it the cloud holds (see
	// cloudsync.Confirm).
	Sent       json.RawMessage `json:"sent,omitempty"`
	SentDelete bool            `json:"sentDelete,omitempty"`
}

type storedRecord struct {
	V      int             `json:"v"`
	Shadow json.RawMessage `json:"shadow"`
	Sync   *syncState      `json:"sync,omitempty"`
}

func (r *record) marshal() ([]byte, error) {
	sh, err := r.Shadow.MarshalBinary()
	if err != nil {
		return nil, err
	}
	sr := storedRecord{V: 1, Shadow: sh}
	if r.Sync.Base != nil || r.Sync.Pending || r.Sync.CloudVersion != 0 || r.Sync.Sent != nil || r.Sync.SentDelete {
		sr.Sync = &r.Sync
	}
	return json.Marshal(sr)
}

func unmarshalRecord(b []byte) (record, error) {
	var sr storedRecord
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if err := dec.Decode(&sr); err != nil {
		return record{}, fmt.Errorf("stored record: %w", err)
	}
	if sr.V != 1 {
		return record{}, fmt.Errorf("stored record: format version %d is not 1", sr.V)
	}
	var r record
	if err := r.Shadow.UnmarshalBinary(sr.Shadow); err != nil {
		return record{}, err
	}
	if sr.Sync != nil {
		r.Sync = *sr.Sync
	}
	return r, nil
}

func displayName(k store.Key) string {
	if k.Name == "" {
		return k.Thing
	}
	return k.Name
}
