package store

import (
	"fmt"
	"log/slog"
	"strings"

	badger "github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/options"
)

// badgerOptions is badger configured for a small device holding a few
// thousand documents of ~4 KB (~10 MB live), not badger's server defaults
// (64 MB memtables, 256 MB block cache, 1 GB value-log files, 4 compactors).
// README.md repeats these choices in short.
//
//   - SyncWrites: every commit msyncs (MS_SYNC, an fsync of the range) the
//     value log and the memtable WAL before it returns, including the files
//     it rotates away from. The store commits one badger transaction per
//     group of concurrent writes, so a group pays for two syncs, not two per
//     write. Raw badger batches concurrent transactions into one value-log
//     sync but still syncs the WAL once per transaction.
//   - ValueThreshold 1 KiB: documents of 1 KiB and more go to the value log
//     and the LSM tree holds only their key and a 12-byte pointer, so
//     compaction moves bytes, not documents (less flash wear) and the whole
//     tree of a few thousand keys stays in the hundreds of KB. Smaller
//     documents stay in the tree, where compaction reclaims them and a read
//     costs no second lookup.
//   - MemTableSize 64 KiB: with values in the value log a memtable entry is
//     about 60 bytes, so a memtable holds ~1,000 writes. Value-log GC only
//     learns that a value is garbage when compaction drops the pointer to it,
//     which needs a memtable flush first: the memtable size bounds how much
//     overwritten data waits unnoticed (~4 MB of 4 KB documents; with
//     256 KiB it was four times that). It also sets badger's largest
//     transaction (15%, ~10 KB of entries, ~100 pointers); bigger groups are
//     split into several commits.
//   - NumMemtables 2: one being written, one being flushed.
//   - ValueLogFileSize 1 MiB, the least badger accepts: GC rewrites a whole
//     file, so small files reclaim in small steps, and open re-reads the
//     newest file to find its end. The price is a file descriptor and a
//     mapping per MiB of values.
//   - BlockCacheSize 0, Compression None: uncompressed blocks are read
//     straight from the mapped table, so a cache would be a second copy.
//     Compression would force a cache (badger refuses to run without one),
//     spawn 2×NumCPU goroutines per table build, and gain little on keys and
//     pointers. Documents in the value log are never compressed by badger.
//   - IndexCacheSize 0: the table indexes and bloom filters of so small a
//     tree weigh kilobytes and stay in memory; a cache adds ristretto's
//     fixed cost.
//   - NumLevelZeroTables 2, NumLevelZeroTablesStall 8: compact level 0 early
//     (a small tree, and the discard statistics value-log GC needs), but let
//     bursts queue a few tables before writers stall.
//   - NumCompactors 2: the fewest badger accepts (it refuses 1; 0 turns
//     compaction off, and value-log GC with it).
//   - BaseTableSize 256 KiB, BaseLevelSize 1 MiB: a table builder allocates
//     twice the table size up front; the tree is tiny anyway.
//   - DetectConflicts false: the store never reads inside a badger write
//     transaction, so conflict tracking would be pure cost.
//   - ChecksumVerificationMode NoVerification (the default): Open verifies
//     every table itself before badger sees it (verifyTables), because
//     badger's own verification runs after it has already decoded the
//     table, which panics on garbage.
//   - MetricsEnabled false: badger's expvar maps are global and never read.
//   - Logger: badger's warnings and errors go to slog; its info and debug
//     chatter is dropped.
func badgerOptions(dir string, log *badgerLogger) badger.Options {
	return badger.DefaultOptions(dir).
		WithSyncWrites(true).
		WithValueThreshold(1 << 10).
		WithMemTableSize(64 << 10).
		WithNumMemtables(2).
		WithValueLogFileSize(1 << 20).
		WithBlockCacheSize(0).
		WithIndexCacheSize(0).
		WithCompression(options.None).
		WithNumLevelZeroTables(2).
		WithNumLevelZeroTablesStall(8).
		WithNumCompactors(2).
		WithBaseTableSize(256 << 10).
		WithBaseLevelSize(1 << 20).
		WithDetectConflicts(false).
		WithMetricsEnabled(false).
		WithLogger(log)
}

// badgerLogger routes badger's log to slog at warning level and above.
type badgerLogger struct {
	log *slog.Logger
	// syncFailed is called when badger reports a failed value-log sync.
	// Badger logs that failure instead of returning it to the committer, so
	// the log line is the only way to learn that a write was not durable.
	syncFailed func(msg string)
}

// badgerVlogSyncFailure starts the message badger logs when the value-log
// sync of a commit fails (badger v4 value.go, valueLog.write).
const badgerVlogSyncFailure = "Error while curlf sync"

func (l *badgerLogger) Errorf(format string, args ...any) {
	msg := strings.TrimSpace(fmt.Sprintf(format, args...))
	l.log.Error(msg, "component", "badger")
	if strings.HasPrefix(msg, badgerVlogSyncFailure) && l.syncFailed != nil {
		l.syncFailed(msg)
	}
}

func (l *badgerLogger) Warningf(format string, args ...any) {
	l.log.Warn(strings.TrimSpace(fmt.Sprintf(format, args...)), "component", "badger")
}

func (*badgerLogger) Infof(string, ...any)  {}
func (*badgerLogger) Debugf(string, ...any) {}
