// Package store is the stream manager's message store: per stream, a
// directory of append-only segment files named by their first sequence
// number, records with a CRC each, a definition file and a sequence-number
// floor kept apart from the data. See README.md for the format.
package store

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/evergreen-edge/evergreen/services/kit/atomicfile"
)

const (
	metaFile = "stream.json"
	seqFile  = "seq"
	// seqReserve is how many sequence numbers one write of the seq file
	// covers: after a crash a stream continues at most this far ahead.
	seqReserve = 1 << 16
	// syncDelay bounds how long an append to a stream without flushOnWrite
	// stays in the page cache only.
	syncDelay = time.Second
	// sweepEvery is how often streams with a time to live are trimmed.
	sweepEvery = 30 * time.Second
	// DefaultMaxReadBytes bounds the payload bytes of one read beyond its
	// minimum message count.
	DefaultMaxReadBytes = 16 << 20
	// writeBuffer is how many bytes of records a stream gathers before
	// handing them to the OS in one write; an Ack hands them over sooner.
	writeBuffer = 128 << 10
	// keepLost bounds the failed-write ranges a stream remembers for the
	// acks still to be waited for.
	keepLost = 16
)

// Options configure Open.
type Options struct {
	Dir    string
	Logger *slog.Logger
	// Now replaces time.Now (tests).
	Now func() time.Time
	// MaxReadBytes bounds one read (DefaultMaxReadBytes when 0).
	MaxReadBytes int64
}

// Store holds every stream. Lock order: Store.mu, then stream.exportMu,
// then stream.syncMu, then stream.mu.
type Store struct {
	dir  string
	log  *slog.Logger
	now  func() time.Time
	maxR int64

	mu      sync.RWMutex
	streams map[string]*stream
	closed  bool
	sweeper *time.Timer
}

// Info describes a stream.
type Info struct {
	Definition Definition
	// Oldest and Newest are the stored range; with nothing stored Oldest
	// is the next sequence number and Newest Oldest-1 (v1 reports 0, 0
	// for a fresh stream; Describe does the same).
	Oldest, Newest int64
	Count          int64
	TotalBytes     int64
	Damage         []string
}

type stream struct {
	st  *Store
	dir string

	exportMu sync.Mutex // serialises export progress files against Delete
	syncMu   sync.Mutex // serialises fsyncs (group commit)
	synced   int64      // bytes appended that are known synced

	mu       sync.Mutex
	def      Definition
	segs     []*segment // oldest first
	next     int64      // next sequence number
	reserved int64      // every sequence number handed out is below it; persisted
	total    int64
	// Positions (Acks) count the bytes ever appended: written; of them
	// the first flushed were handed to the OS (or lost: see lost), the
	// rest wait in buf, records of the active segment bufSeg.
	written int64
	flushed int64
	buf     []byte
	bufSeg  *segment
	lost    []lostSpan
	retired []sealed
	racy    []*segment // sealed, their index files to be written again (racy)
	notify  chan struct{}
	waiting bool // a reader waits on notify
	damage  []string
	deleted bool
	timer   *time.Timer
	// syncPending: a background fsync is scheduled.
	syncPending bool
}

// sealed is a segment no longer appended to, whose file the next sync
// makes durable and closes, then indexes (index false: damaged by a
// failed write, left for start-up to scan).
type sealed struct {
	g     *segment
	f     *os.File
	index bool
}

// lostSpan is a range of positions whose records a failed write lost.
type lostSpan struct {
	from, to int64
	err      error
}

// Open loads every stream under o.Dir. Damage (torn tails, bad records,
// unreadable files) never fails it: it is logged and reported by Describe.
func Open(o Options) (*Store, error) {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.MaxReadBytes <= 0 {
		o.MaxReadBytes = DefaultMaxReadBytes
	}
	s := &Store{dir: o.Dir, log: o.Logger, now: o.Now, maxR: o.MaxReadBytes, streams: map[string]*stream{}}
	if err := os.MkdirAll(o.Dir, 0o750); err != nil {
		return nil, err
	}
	ents, err := os.ReadDir(o.Dir)
	if err != nil {
		return nil, err
	}
	for _, e := range ents {
		p := filepath.Join(o.Dir, e.Name())
		if strings.HasPrefix(e.Name(), ".trash-") {
			os.RemoveAll(p) // a delete interrupted by a crash
			continue
		}
		if !e.IsDir() {
			continue
		}
		st, err := s.load(p)
		if err != nil {
			s.log.Error("stream directory unreadable; skipped", "dir", p, "err", err)
			continue
		}
		if other, dup := s.streams[st.def.Name]; dup {
			s.log.Error("two directories hold one stream; the second is skipped", "stream", st.def.Name, "kept", other.dir, "skipped", p)
			continue
		}
		s.streams[st.def.Name] = st
	}
	s.mu.Lock()
	s.armSweeperLocked()
	s.mu.Unlock()
	return s, nil
}

// dirName keeps any valid stream name (dots, spaces, ".log" and all) out
// of the file system's way.
func dirName(name string) string {
	h := sha256.Sum256([]byte(name))
	return "s-" + hex.EncodeToString(h[:12])
}

func (s *Store) load(dir string) (*stream, error) {
	b, err := os.ReadFile(filepath.Join(dir, metaFile))
	if err != nil {
		return nil, err
	}
	st := &stream{st: s, dir: dir, notify: make(chan struct{})}
	if err := json.Unmarshal(b, &st.def); err != nil {
		return nil, fmt.Errorf("%s: %w", metaFile, err)
	}
	if err := st.def.Validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", metaFile, err)
	}
	floor, err := readSeq(filepath.Join(dir, seqFile))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		st.report(fmt.Sprintf("sequence number file unreadable (%v); continuing after the newest stored message", err))
	}
	firsts, indexes, stray, err := listSegments(dir)
	if err != nil {
		return nil, err
	}
	for _, p := range stray {
		st.report(fmt.Sprintf("unexpected file %s ignored", filepath.Base(p)))
	}
	slices.Sort(firsts)
	for _, first := range indexes {
		if _, ok := slices.BinarySearch(firsts, first); !ok {
			os.Remove(filepath.Join(dir, indexName(first))) // its segment was dropped
		}
	}
	if st.def.Persistence == Memory {
		// A restart empties a Memory stream; files left by a File stream
		// updated to Memory cannot exist (persistence never changes).
		firsts = nil
	}
	jumps, err := readJumps(filepath.Join(dir, jumpsFile))
	if err != nil {
		st.report(fmt.Sprintf("jumps file unreadable (%v): sequence numbers skipped after an unclean stop may be reported as lost", err))
		os.Remove(filepath.Join(dir, jumpsFile)) // written afresh when needed
	}
	// Between one kept segment and the next: the damaged tail of the
	// first (sealed segments keep theirs), and the files that held
	// nothing readable. Told once the next segment's start shows what
	// was lost.
	var tail *damagedTail
	var between []droppedFile
	for i, first := range firsts {
		p := filepath.Join(dir, segmentName(first))
		newest := i == len(firsts)-1
		g, size, err := st.loadSegment(p, first, newest)
		if g == nil {
			st.report(fmt.Sprintf("segment %s unreadable: %v", filepath.Base(p), err))
			between = append(between, droppedFile{first, "segment " + filepath.Base(p) + " is unreadable"})
			continue
		}
		if n := len(st.segs); n > 0 && g.count > 0 && g.first <= st.segs[n-1].last() {
			st.report(fmt.Sprintf("segment %s overlaps the one before it; ignored", filepath.Base(p)))
			continue
		}
		var damaged *damagedTail
		if err != nil {
			lost := size - g.size
			if newest {
				// The newest segment: a torn tail of a crash. Cut it so
				// that appends continue after the last good record.
				s.log.Warn("stream: torn or damaged tail cut", "stream", st.def.Name, "segment", filepath.Base(p), "bytes", lost, "err", err)
				if terr := os.Truncate(p, g.size); terr != nil {
					st.report(fmt.Sprintf("segment %s: cannot cut the damaged tail: %v", filepath.Base(p), terr))
				}
				st.damage = append(st.damage, fmt.Sprintf("segment %s: %v; %d bytes after it dropped", filepath.Base(p), err, lost))
			} else {
				damaged = &damagedTail{g: g, err: err, bytes: lost}
			}
		}
		if g.count == 0 && !newest {
			// Nothing readable in it: what it held shows as a gap
			// between its neighbours.
			what := "segment " + filepath.Base(p) + " is empty"
			if damaged != nil {
				what = fmt.Sprintf("segment %s is unreadable from its first record (%v)", filepath.Base(p), damaged.err)
			}
			between = append(between, droppedFile{first, what})
			os.Remove(p)
			continue
		}
		st.checkGap(g, tail, between, jumps)
		tail, between = damaged, nil
		st.segs = append(st.segs, g)
		st.total += g.size
	}
	if tail != nil {
		st.report(fmt.Sprintf("segment %s: %v; %d bytes after its message %d unreadable (the messages they held are lost)",
			filepath.Base(tail.g.path), tail.err, tail.bytes, tail.g.last()))
	}
	st.next = floor
	if n := len(st.segs); n > 0 {
		st.next = max(st.next, st.segs[n-1].first+st.segs[n-1].count)
	}
	if st.def.Persistence == File {
		st.noteJumps(jumps)
	}
	st.reserved = st.next
	if st.def.Persistence == File {
		if n := len(st.segs); n > 0 {
			a := st.segs[n-1]
			// Appends will change it: its index file would go stale.
			os.Remove(indexPath(a.path))
			if a.f, err = os.OpenFile(a.path, os.O_WRONLY|os.O_APPEND, 0o640); err != nil {
				st.report(fmt.Sprintf("segment %s cannot be opened for appending: %v", filepath.Base(a.path), err))
			}
		}
	}
	st.mu.Lock()
	st.expireLocked(s.now())
	st.mu.Unlock()
	return st, nil
}

// loadSegment reads a segment's index file, or when it has none that
// describes the segment as it is, scans the segment; a sealed segment
// found whole gets an index file for the next start-up. The newest
// segment (appended to next) keeps its index entries in memory.
func (st *stream) loadSegment(p string, first int64, newest bool) (*segment, int64, error) {
	if fi, err := os.Stat(p); err == nil {
		if g, err := readIndex(p, first, fi, newest); err == nil {
			return g, fi.Size(), nil
		}
	}
	g, size, err := scanSegment(p, first, st.def.SegmentSize+st.def.MaxSize)
	if err == nil && !newest && g.count > 0 {
		st.racy = append(st.racy, g)
		st.indexSealedLocked()
	}
	return g, size, err
}

func (st *stream) report(msg string) {
	st.st.log.Error("stream store damage", "stream", st.def.Name, "what", msg)
	if len(st.damage) < 100 {
		st.damage = append(st.damage, msg)
	}
}

// The seq file: 8-byte floor and its CRC-32C.
func readSeq(path string) (int64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	if len(b) != 12 || crc32.Checksum(b[:8], castagnoli) != binary.LittleEndian.Uint32(b[8:]) {
		return 0, errors.New("checksum mismatch")
	}
	return int64(binary.LittleEndian.Uint64(b)), nil
}

func writeSeq(path string, v int64) error {
	b := binary.LittleEndian.AppendUint64(nil, uint64(v))
	b = binary.LittleEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
	return atomicfile.WriteFile(path, b, 0o640)
}

// Create creates a stream.
func (s *Store) Create(d Definition) error {
	if err := d.Validate(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	if _, ok := s.streams[d.Name]; ok {
		return ErrExists
	}
	dir := filepath.Join(s.dir, dirName(d.Name))
	os.RemoveAll(dir) // leftovers of a create cut short
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return err
	}
	b, _ := json.Marshal(d)
	if err := atomicfile.WriteFile(filepath.Join(dir, metaFile), b, 0o640); err != nil {
		os.RemoveAll(dir)
		return err
	}
	if err := syncDir(s.dir); err != nil {
		return err
	}
	s.streams[d.Name] = &stream{st: s, dir: dir, def: d, notify: make(chan struct{})}
	s.armSweeperLocked()
	return nil
}

// Update replaces a stream's definition within v1's rules.
func (s *Store) Update(d Definition) error {
	if err := d.Validate(); err != nil {
		return err
	}
	st, err := s.get(d.Name)
	if err != nil {
		return err
	}
	st.mu.Lock()
	if st.deleted {
		st.mu.Unlock()
		return ErrNotFound
	}
	if err := checkUpdate(st.def, d, st.total); err != nil {
		st.mu.Unlock()
		return err
	}
	b, _ := json.Marshal(d)
	if err := atomicfile.WriteFile(filepath.Join(st.dir, metaFile), b, 0o640); err != nil {
		st.mu.Unlock()
		return err
	}
	st.def = d
	st.expireLocked(s.now())
	st.mu.Unlock()
	s.mu.Lock()
	s.armSweeperLocked()
	s.mu.Unlock()
	return nil
}

// Delete removes a stream and its data.
func (s *Store) Delete(name string) error {
	s.mu.Lock()
	st, ok := s.streams[name]
	if !ok {
		s.mu.Unlock()
		return ErrNotFound
	}
	delete(s.streams, name)
	s.mu.Unlock()
	st.exportMu.Lock()
	st.syncMu.Lock()
	st.mu.Lock()
	st.deleted = true
	st.closeFilesLocked()
	close(st.notify)
	st.mu.Unlock()
	st.syncMu.Unlock()
	st.exportMu.Unlock()
	trash := filepath.Join(s.dir, ".trash-"+filepath.Base(st.dir))
	if err := os.Rename(st.dir, trash); err != nil {
		return err
	}
	syncDir(s.dir)
	return os.RemoveAll(trash)
}

func (st *stream) closeFilesLocked() {
	if st.timer != nil {
		st.timer.Stop()
	}
	for _, g := range st.segs {
		if g.f != nil {
			g.f.Close()
			g.f = nil
		}
	}
	for _, o := range st.retired {
		o.f.Close()
	}
	st.retired = nil
	if st.buf != nil {
		st.releaseBufferLocked()
	}
}

// List returns the stream names, sorted.
func (s *Store) List() []string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]string, 0, len(s.streams))
	for n := range s.streams {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

func (s *Store) get(name string) (*stream, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return nil, ErrClosed
	}
	st, ok := s.streams[name]
	if !ok {
		return nil, ErrNotFound
	}
	return st, nil
}

// Describe returns a stream's definition and storage status.
func (s *Store) Describe(name string) (Info, error) {
	st, err := s.get(name)
	if err != nil {
		return Info{}, err
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.deleted {
		return Info{}, ErrNotFound
	}
	st.expireLocked(s.now())
	in := Info{Definition: st.def, Oldest: st.oldestLocked(), Newest: st.next - 1, TotalBytes: st.total,
		Damage: slices.Clone(st.damage)}
	for _, g := range st.segs {
		in.Count += g.count
	}
	return in, nil
}

func (st *stream) oldestLocked() int64 {
	for _, g := range st.segs {
		if g.count > 0 {
			return g.first
		}
	}
	return st.next
}

// Append stores payload and returns its sequence number once the record
// is the OS's (a kill -9 keeps it); with flushOnWrite once it is on disk.
// Appends that arrive together share one write and one fsync.
func (s *Store) Append(name string, payload []byte) (int64, error) {
	seq, ack, err := s.AppendNoWait(name, payload)
	if err != nil {
		return seq, err
	}
	return seq, ack.Wait()
}

// AppendNoWait stores payload in order and returns its sequence number at
// once, the record still in the stream's buffer; the append must not be
// acknowledged before ack.Wait returns nil. Callers append in request
// order and wait for the acks of a batch together (Merge).
func (s *Store) AppendNoWait(name string, payload []byte) (seq int64, ack Ack, err error) {
	st, err := s.get(name)
	if err != nil {
		return 0, Ack{}, err
	}
	return st.append(payload, s.now())
}

// Ack is what an append waits for before it is acknowledged: its record
// handed to the OS, and for a flushOnWrite stream synced to disk. The
// zero Ack (Memory streams) waits for nothing.
type Ack struct {
	st       *stream
	from, to int64 // positions: the records after from, up to to
	// Sync: the wait includes an fsync (flushOnWrite).
	Sync bool
}

// Merge folds b into a when both are of the same stream (true); waiting
// for a then covers b's record too.
func (a *Ack) Merge(b Ack) bool {
	if a.st != b.st {
		return false
	}
	a.from, a.to, a.Sync = min(a.from, b.from), max(a.to, b.to), a.Sync || b.Sync
	return true
}

// Wait returns once the records of a are handed to the OS (and synced
// with Sync); an error when any of them was lost (a failed write or
// fsync, the stream deleted).
func (a Ack) Wait() error {
	switch {
	case a.st == nil:
		return nil
	case a.Sync:
		return a.st.sync(a.from, a.to)
	}
	return a.st.writeOut(a.from, a.to)
}

func (st *stream) append(payload []byte, now time.Time) (seq int64, ack Ack, err error) {
	if len(payload) == 0 {
		return 0, Ack{}, fmt.Errorf("payload: is empty: %w", errInvalid)
	}
	rec := recordSize(len(payload))
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.deleted {
		return 0, Ack{}, ErrNotFound
	}
	d := st.def
	if rec > d.MaxSize {
		return 0, Ack{}, fmt.Errorf("payload: %d bytes do not fit in maxSize %d: %w", len(payload), d.MaxSize, errInvalid)
	}
	if d.TTLMillis > 0 {
		st.expireLocked(now)
	}
	for st.total+rec > d.MaxSize {
		if d.Strategy == RejectNewData || len(st.segs) == 0 {
			return 0, Ack{}, ErrFull
		}
		st.dropOldestLocked()
	}
	if st.next >= st.reserved {
		if err := writeSeq(filepath.Join(st.dir, seqFile), st.next+seqReserve); err != nil {
			return 0, Ack{}, fmt.Errorf("sequence number file: %w", err)
		}
		st.reserved = st.next + seqReserve
	}
	g, err := st.activeLocked(rec)
	if err != nil {
		return 0, Ack{}, err
	}
	seq = st.next
	ms := now.UnixMilli()
	off := g.size
	if d.Persistence == Memory {
		g.mem = encodeRecord(g.mem, seq, ms, payload)
	} else {
		if st.buf == nil {
			st.buf, st.bufSeg = getBuffer(), g
		}
		st.buf = encodeRecord(st.buf, seq, ms, payload)
	}
	g.noteRecord(off, seq, ms, rec)
	st.next++
	st.total += rec
	st.written += rec
	if st.waiting {
		close(st.notify)
		st.notify, st.waiting = make(chan struct{}), false
	}
	if d.Persistence == Memory {
		st.flushed = st.written
		return seq, Ack{}, nil
	}
	ack = Ack{st: st, from: st.written - rec, to: st.written, Sync: d.FlushOnWrite}
	if len(st.buf) >= writeBuffer {
		st.writeOutLocked()
	}
	if !d.FlushOnWrite {
		st.scheduleSyncLocked()
	}
	return seq, ack, nil
}

var buffers = sync.Pool{New: func() any { b := make([]byte, 0, writeBuffer+64<<10); return &b }}

func getBuffer() []byte { return (*buffers.Get().(*[]byte))[:0] }

// writeOut hands the records up to position to to the OS.
func (st *stream) writeOut(from, to int64) error {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.flushed < to {
		if st.deleted {
			return ErrNotFound
		}
		st.writeOutLocked()
	}
	return st.lostLocked(from, to)
}

// writeOutLocked writes the buffered records to the active segment's
// file in one write. A failed write loses them (and retires the segment,
// whose file then ends with what was written: start-up cuts or reports
// a torn record); their acks fail.
func (st *stream) writeOutLocked() {
	if len(st.buf) == 0 {
		return
	}
	g, b := st.bufSeg, st.buf
	n, err := g.f.Write(b)
	if err == nil {
		st.flushed += int64(n)
		st.releaseBufferLocked()
		return
	}
	// Keep the records written whole; forget the others.
	good, kept := 0, int64(0)
	for good+headerSize <= n {
		r := headerSize + int(binary.LittleEndian.Uint32(b[good:]))
		if good+r > n {
			break
		}
		good += r
		kept++
	}
	records := kept
	for i := good; i+headerSize <= len(b); records++ {
		i += headerSize + int(binary.LittleEndian.Uint32(b[i:]))
	}
	start := g.size - int64(len(b))
	st.report(fmt.Sprintf("write to %s failed: %v; messages %d..%d lost", filepath.Base(g.path), err, g.first+g.count-(records-kept), g.first+g.count-1))
	st.lost = append(st.lost, lostSpan{from: st.flushed + int64(good), to: st.written, err: fmt.Errorf("write: %w", err)})
	if len(st.lost) > keepLost {
		st.lost = st.lost[1:]
	}
	st.total -= int64(len(b) - good)
	g.count -= records - kept
	g.size = start + int64(good)
	for len(g.index) > 0 && g.index[len(g.index)-1].off >= g.size {
		g.index = g.index[:len(g.index)-1]
	}
	st.flushed = st.written
	st.releaseBufferLocked()
	if g.f != nil {
		st.retired = append(st.retired, sealed{g: g, f: g.f})
		g.f = nil
		st.scheduleSyncLocked()
	}
}

func (st *stream) releaseBufferLocked() {
	if cap(st.buf) <= writeBuffer+64<<10 {
		b := st.buf[:0]
		buffers.Put(&b)
	}
	st.buf, st.bufSeg = nil, nil
}

// lostLocked is the error of a failed write that lost any record after
// position from up to to.
func (st *stream) lostLocked(from, to int64) error {
	for _, l := range st.lost {
		if from < l.to && to > l.from {
			return l.err
		}
	}
	return nil
}

// scheduleSyncLocked makes sure a background fsync runs within syncDelay.
func (st *stream) scheduleSyncLocked() {
	if st.syncPending {
		return
	}
	st.syncPending = true
	st.timer = time.AfterFunc(syncDelay, func() {
		st.mu.Lock()
		st.syncPending = false
		st.mu.Unlock()
		st.sync(-1, -1)
	})
}

var errInvalid = errors.New("invalid argument")

// IsInvalid reports a request the store refused as malformed.
func IsInvalid(err error) bool { return errors.Is(err, errInvalid) }

// activeLocked returns the segment to append rec bytes to, starting a new
// one when the newest is full (or there is none).
func (st *stream) activeLocked(rec int64) (*segment, error) {
	if n := len(st.segs); n > 0 {
		a := st.segs[n-1]
		usable := st.def.Persistence == Memory || a.f != nil
		// A segment holds consecutive sequence numbers: after a jump (a
		// start-up after an unclean stop, a failed write) the next
		// message starts a segment of its own.
		follows := a.first+a.count == st.next
		switch {
		case usable && follows && (a.count == 0 || a.size+rec <= st.def.SegmentSize):
			return a, nil
		case a.count == 0:
			// Empty, and unusable or numbered before the jump: replaced
			// by the new one; its file goes first should the names
			// differ (the new file's directory sync makes both durable).
			st.retireLocked(a)
			st.segs = st.segs[:n-1]
			if a.path != "" && a.first != st.next {
				// (Its file descriptor, retired, is closed by the next sync.)
				os.Remove(a.path)
			}
		default:
			st.retireLocked(a)
		}
	}
	g := &segment{first: st.next}
	if st.def.Persistence == File {
		g.path = filepath.Join(st.dir, segmentName(st.next))
		f, err := os.OpenFile(g.path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC|os.O_APPEND, 0o640)
		if err != nil {
			return nil, err
		}
		os.Remove(indexPath(g.path)) // of an earlier file of that name, if any
		if err := syncDir(st.dir); err != nil {
			f.Close()
			return nil, err
		}
		g.f = f
	} else {
		g.mem = make([]byte, 0, min(st.def.SegmentSize, 64<<10))
	}
	st.segs = append(st.segs, g)
	return g, nil
}

// retireLocked seals g: its buffered records are written, its file is
// synced, closed and indexed by the next sync.
func (st *stream) retireLocked(g *segment) {
	if g == st.bufSeg {
		st.writeOutLocked()
	}
	if g.f != nil {
		st.retired = append(st.retired, sealed{g: g, f: g.f, index: true})
		g.f = nil
		if !st.def.FlushOnWrite {
			st.scheduleSyncLocked()
		}
	}
}

// dropOldestLocked removes the oldest segment (a whole segment at a time).
func (st *stream) dropOldestLocked() {
	g := st.segs[0]
	st.retireLocked(g)
	g.dropped = true
	st.segs = st.segs[1:]
	st.total -= g.size
	if g.path != "" {
		if err := os.Remove(g.path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			st.report(fmt.Sprintf("cannot remove segment %s: %v", filepath.Base(g.path), err))
		}
		os.Remove(indexPath(g.path))
	}
}

// expireLocked drops the oldest segments whose newest message is older
// than the time to live: the TTL is a floor, data goes a segment at a time.
func (st *stream) expireLocked(now time.Time) {
	ttl := st.def.TTLMillis
	if ttl == 0 {
		return
	}
	cut := now.UnixMilli() - ttl
	for len(st.segs) > 0 && st.segs[0].count > 0 && st.segs[0].lastTime < cut {
		st.dropOldestLocked()
	}
}

// sync makes every record up to position to durable (to < 0:
// everything) and reports whether any after from was lost. Callers that
// arrive while an fsync runs wait for it and are usually covered by the
// next one: one write and one fsync per group.
func (st *stream) sync(from, to int64) error {
	st.syncMu.Lock()
	defer st.syncMu.Unlock()
	if to >= 0 && st.synced >= to {
		st.mu.Lock()
		defer st.mu.Unlock()
		return st.lostLocked(from, to)
	}
	st.mu.Lock()
	if st.deleted {
		st.mu.Unlock()
		return ErrNotFound
	}
	st.writeOutLocked()
	target := st.written
	old := st.retired
	st.retired = nil
	var f *os.File
	if n := len(st.segs); n > 0 {
		f = st.segs[n-1].f
	}
	st.mu.Unlock()
	var err error
	for _, o := range old {
		err = errors.Join(err, o.f.Sync(), o.f.Close())
	}
	if f != nil {
		// Appends keep writing to f meanwhile; a rollover retires it but
		// only the next sync (after this one, under syncMu) closes it.
		err = errors.Join(err, f.Sync())
	}
	if err != nil {
		st.st.log.Error("stream store: fsync failed", "dir", st.dir, "err", err)
		return err
	}
	st.synced = target
	st.mu.Lock()
	defer st.mu.Unlock()
	for _, o := range old {
		if o.index {
			st.racy = append(st.racy, o.g)
		}
	}
	st.indexSealedLocked()
	return st.lostLocked(from, to)
}

// indexSealedLocked writes the index files of the segments sealed and
// synced since (and of those whose index came out racy), so that
// start-up need not read them and memory need not hold their indexes.
func (st *stream) indexSealedLocked() {
	todo := st.racy
	st.racy = nil
	for _, g := range todo {
		if g.dropped || g.count == 0 {
			continue
		}
		err := writeIndex(g)
		switch {
		case err == nil:
			g.index, g.indexed = nil, true
		case errors.Is(err, errRacyIndex):
			st.racy = append(st.racy, g)
		}
	}
}

// ReadOptions are v1's ReadMessagesOptions with defaults applied.
type ReadOptions struct {
	Start   int64
	Min     int64
	Max     int64
	Timeout time.Duration
}

// Read returns messages from o.Start on (from the oldest when o.Start is
// below it): at least o.Min, at most o.Max. With fewer available it waits
// up to o.Timeout for them, then fails with ErrNotEnough.
func (s *Store) Read(ctx context.Context, name string, o ReadOptions) ([]Message, error) {
	st, err := s.get(name)
	if err != nil {
		return nil, err
	}
	if o.Min < 1 {
		o.Min = 1
	}
	if o.Max < o.Min {
		o.Max = o.Min
	}
	var deadline <-chan time.Time
	if o.Timeout > 0 {
		t := time.NewTimer(o.Timeout)
		defer t.Stop()
		deadline = t.C
	}
	whole := false // plan every segment from the start on
	for {
		st.mu.Lock()
		if st.deleted {
			st.mu.Unlock()
			return nil, ErrNotFound
		}
		st.expireLocked(s.now())
		start := max(o.Start, st.oldestLocked())
		var plan []segment
		cut := false
		if st.next-start >= o.Min {
			// Readers see every record appended, acknowledged or not yet.
			st.writeOutLocked()
			// The segments the read may need, and one more in case damage
			// found on the way makes it short: not the whole stream.
			var counted, bytes int64
			enough := false
			for _, g := range st.segs {
				if g.count == 0 || g.last() < start {
					continue
				}
				plan = append(plan, segment{path: g.path, first: g.first, count: g.count, size: g.size,
					index: g.index, indexed: g.indexed, mem: g.mem[:len(g.mem):len(g.mem)]})
				if enough && !whole {
					cut = true
					break
				}
				counted += g.last() - max(start, g.first) + 1
				bytes += g.size
				enough = counted >= o.Max || (counted >= o.Min && bytes >= s.maxR)
			}
		}
		wait := st.notify
		if deadline != nil {
			st.waiting = true
		}
		maxPayload := st.def.MaxSize
		st.mu.Unlock()
		if plan != nil {
			msgs, err := st.readPlan(plan, start, maxPayload, o)
			if err != nil {
				return nil, err
			}
			if int64(len(msgs)) >= o.Min {
				return msgs, nil
			}
			if cut {
				// Damage beyond the margin: read on through all of it.
				whole = true
				continue
			}
			// Fewer than counted: segments dropped meanwhile, or damage.
			o.Start = start
		}
		if deadline == nil {
			return nil, ErrNotEnough
		}
		select {
		case <-wait:
		case <-deadline:
			return nil, ErrNotEnough
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

func (st *stream) readPlan(plan []segment, start, maxPayload int64, o ReadOptions) ([]Message, error) {
	var out []Message
	var bytes int64
	rr := &recordReader{}
	br := readers.Get().(*bufio.Reader)
	defer readers.Put(br)
	for i := range plan {
		g := &plan[i]
		from := max(start, g.first)
		index := g.index
		if g.indexed {
			index = loadEntries(g.path)
		}
		off := seek(index, from)
		if g.path == "" {
			br.Reset(&sliceReader{b: g.mem, off: off})
		} else {
			f, err := os.Open(g.path)
			if errors.Is(err, fs.ErrNotExist) {
				continue // dropped (full, TTL) since planned
			}
			if err != nil {
				return nil, err
			}
			defer f.Close()
			if _, err := f.Seek(off, io.SeekStart); err != nil {
				return nil, err
			}
			br.Reset(f)
		}
		rr.r, rr.off, rr.end, rr.below = br, off, g.size, from
		for {
			m, _, err := rr.next(maxPayload)
			if err == io.EOF {
				break
			}
			if err != nil {
				st.mu.Lock()
				st.report(fmt.Sprintf("segment %020d: %v (found on read; the rest of the segment is skipped)", g.first, err))
				st.mu.Unlock()
				break
			}
			if m.Seq < from {
				continue
			}
			out = append(out, m)
			bytes += int64(len(m.Payload))
			if int64(len(out)) >= o.Max || (bytes >= st.st.maxR && int64(len(out)) >= o.Min) {
				return out, nil
			}
		}
	}
	return out, nil
}

// readers are the buffered readers of reads (64 KiB each).
var readers = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 64<<10) }}

type sliceReader struct {
	b   []byte
	off int64
}

func (r *sliceReader) Read(p []byte) (int, error) {
	if r.off >= int64(len(r.b)) {
		return 0, io.EOF
	}
	n := copy(p, r.b[r.off:])
	r.off += int64(n)
	return n, nil
}

func (s *Store) armSweeperLocked() {
	if s.closed || s.sweeper != nil {
		return
	}
	for _, st := range s.streams {
		st.mu.Lock()
		ttl := st.def.TTLMillis
		st.mu.Unlock()
		if ttl > 0 {
			s.sweeper = time.AfterFunc(sweepEvery, s.sweep)
			return
		}
	}
}

// sweep trims expired segments of idle streams.
func (s *Store) sweep() {
	s.mu.Lock()
	s.sweeper = nil
	list := make([]*stream, 0, len(s.streams))
	for _, st := range s.streams {
		list = append(list, st)
	}
	s.mu.Unlock()
	now := s.now()
	for _, st := range list {
		st.mu.Lock()
		if !st.deleted {
			st.expireLocked(now)
		}
		st.mu.Unlock()
	}
	s.mu.Lock()
	s.armSweeperLocked()
	s.mu.Unlock()
}

// Sweep trims expired data now (tests, and after a clock jump).
func (s *Store) Sweep() {
	s.mu.Lock()
	if s.sweeper != nil {
		s.sweeper.Stop()
		s.sweeper = nil
	}
	s.mu.Unlock()
	s.sweep()
}

// Close syncs and closes every stream; the next sequence number of each is
// recorded so that a clean restart continues without a gap.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	if s.sweeper != nil {
		s.sweeper.Stop()
	}
	list := make([]*stream, 0, len(s.streams))
	for _, st := range s.streams {
		list = append(list, st)
	}
	s.mu.Unlock()
	var errs []error
	for _, st := range list {
		var synced error
		st.mu.Lock()
		file := st.def.Persistence == File
		st.mu.Unlock()
		if file {
			synced = st.sync(-1, -1)
			errs = append(errs, synced)
		}
		st.exportMu.Lock()
		st.syncMu.Lock()
		st.mu.Lock()
		if !st.deleted {
			var active *segment
			if n := len(st.segs); n > 0 && st.segs[n-1].f != nil && synced == nil {
				active = st.segs[n-1]
			}
			st.closeFilesLocked()
			if active != nil {
				// A clean stop: the next start-up need not read it either.
				st.racy = append(st.racy, active)
			}
			st.indexSealedLocked()
			if st.reserved != st.next {
				errs = append(errs, writeSeq(filepath.Join(st.dir, seqFile), st.next))
			}
			st.deleted = true
			close(st.notify)
		}
		st.mu.Unlock()
		st.syncMu.Unlock()
		st.exportMu.Unlock()
	}
	// Index files written in the tick their segments last changed in are
	// written again once the file clock moved on (a few ms; a file system
	// with coarser times gets scans at the next start-up instead).
	for range 10 {
		racy := false
		for _, st := range list {
			st.mu.Lock()
			if len(st.racy) > 0 {
				st.indexSealedLocked()
				racy = racy || len(st.racy) > 0
			}
			st.mu.Unlock()
		}
		if !racy {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	return errors.Join(errs...)
}
