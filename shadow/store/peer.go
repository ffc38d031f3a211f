package store

import (
	"log/slog"

	"github.com/dgraph-io/badger/v4"
)

// BadgerOptions are the badger options the store opens dir with (SyncWrites
// included), for benchmarks that measure raw badger as the store's peer.
func BadgerOptions(dir string) badger.Options {
	return badgerOptions(dir, &badgerLogger{log: slog.New(slog.DiscardHandler)})
}
