package cloud

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"github.com/evergreen-edge/evergreen/services/kit/atomicfile"
	"github.com/evergreen-edge/evergreen/services/kit/errdefs"
)

// The FileSystem spool is a log of segment files in one directory, named
// by a 16-digit hex number that orders them (the Seq of their first record
// when they were created). Each file starts with segMagic and holds records:
//
//	u32 body length | u32 CRC32C(body) | body
//
// A PUT body is  1 | u64 seq | u8 qos | u16 topic length | topic | payload
// An ACK body is 2 | u64 first seq | u64 last seq   (acked or dropped)
//
// Integers are big-endian. Records are only ever appended; a record that is
// short or fails its checksum is a torn write and ends its file.
const (
	segMagic     = "EGSPOOL1"
	segExt       = ".seg"
	lockFileName = "LOCK"
	headerLen    = int64(len(segMagic))
	recHeaderLen = 8

	recPut byte = 1
	recAck byte = 2

	putFixedLen   = 1 + 8 + 1 + 2
	ackBodyLen    = 1 + 8 + 8
	maxRecordBody = putFixedLen + 65535 + maxMessageBytes
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// segmentSizeFor sizes segments at an eighth of the spool, so that a fully
// acked segment is freed long before the spool fills, within 64 KB..64 MB.
func segmentSizeFor(maxBytes int64) int64 {
	return min(max(maxBytes/8, 64<<10), 64<<20)
}

type segment struct {
	base uint64
	path string
	f    *os.File
	size int64
	// live counts the queued messages whose PUT is in this segment.
	live int
}

// segmentLog is the disk side of a FileSystem spool. The spool's mu guards
// it; only the fsync of a segment runs without mu (see spool.syncTo).
type segmentLog struct {
	dir  string
	lock *os.File
	// segs is oldest first; the last one is the active segment that takes
	// every append.
	segs    []*segment
	segSize int64
	// written counts the bytes appended since open, across segments: the
	// clock of group commit. synced is how far of it is on stable storage.
	written int64
	synced  int64
	// syncing is the segment being fsynced, which must not be deleted.
	syncing *segment
	// needRotate starts a new segment on the next Put after an fsync error.
	needRotate bool
	buf        []byte
}

func (l *segmentLog) active() *segment { return l.segs[len(l.segs)-1] }

// openSegmentLog locks dir, recovers its segments and starts a new active
// segment. It returns the recovered queue and the next Seq.
func openSegmentLog(dir string, segSize int64) (*segmentLog, index, uint64, error) {
	var x index
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, x, 0, fmt.Errorf("cloud spool: %w", err)
	}
	lock, err := os.OpenFile(filepath.Join(dir, lockFileName), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, x, 0, fmt.Errorf("cloud spool: %w", err)
	}
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		lock.Close()
		return nil, x, 0, fmt.Errorf("cloud spool %s is in use by another process: %w", dir, errdefs.ErrFailedPrecondition)
	}
	l := &segmentLog{dir: dir, lock: lock, segSize: segSize}
	next, err := l.recover(&x)
	if err != nil {
		l.close()
		return nil, index{}, 0, err
	}
	s, err := createSegment(dir, next)
	if err != nil {
		l.close()
		return nil, index{}, 0, err
	}
	l.segs = append(l.segs, s)
	return l, x, next, nil
}

// recover reads every segment into x, truncates torn tails and deletes
// segments that hold nothing queued any more.
func (l *segmentLog) recover(x *index) (uint64, error) {
	dirents, err := os.ReadDir(l.dir)
	if err != nil {
		return 0, fmt.Errorf("cloud spool: %w", err)
	}
	var segs []*segment
	for _, d := range dirents {
		name, ok := strings.CutSuffix(d.Name(), segExt)
		if !ok || len(name) != 16 || !d.Type().IsRegular() {
			continue
		}
		base, err := strconv.ParseUint(name, 16, 64)
		if err != nil {
			continue
		}
		segs = append(segs, &segment{base: base, path: filepath.Join(l.dir, d.Name())})
	}
	slices.SortFunc(segs, func(a, b *segment) int { return cmp.Compare(a.base, b.base) })

	var lastSeq, maxBase uint64
	for i, s := range segs {
		maxBase = max(maxBase, s.base)
		if err := l.readSegment(s, x, &lastSeq, i == len(segs)-1); err != nil {
			for _, o := range segs {
				if o.f != nil {
					o.f.Close()
				}
			}
			return 0, err
		}
	}
	// Keep the segments from the first one that still holds a queued
	// message; the acks in a kept segment only ever refer to messages in
	// it or in older segments, so nothing a kept message needs is lost.
	// Empty ones (a crash right after creating them) go too.
	for _, s := range segs {
		if len(l.segs) == 0 && s.live == 0 || s.size <= headerLen {
			s.f.Close()
			// A failed delete only leaves a file of acked messages.
			os.Remove(s.path)
			continue
		}
		l.segs = append(l.segs, s)
	}
	// Seq never goes back, and the new active segment's name must sort
	// after every file left.
	return max(lastSeq+1, maxBase+1), nil
}

// readSegment adds the records of s to x up to the first bad one. In the
// last segment that is a torn tail, a crash in the middle of an append,
// which is cut off. Elsewhere it is damage (segments are fsynced before the
// next one starts), left on disk as found.
func (l *segmentLog) readSegment(s *segment, x *index, lastSeq *uint64, last bool) error {
	data, err := os.ReadFile(s.path)
	if err != nil {
		return fmt.Errorf("cloud spool: %w", err)
	}
	if s.f, err = os.OpenFile(s.path, os.O_RDWR, 0); err != nil {
		return fmt.Errorf("cloud spool: %w", err)
	}
	if int64(len(data)) < headerLen || string(data[:headerLen]) != segMagic {
		if int64(len(data)) < headerLen && segMagic[:len(data)] == string(data) {
			// Torn while being created: it never held a record.
			s.size = 0
			return nil
		}
		return fmt.Errorf("cloud spool: %s is not a spool segment (no %q header)", s.path, segMagic)
	}
	off := headerLen
	for off < int64(len(data)) {
		body, ok := parseRecord(data[off:])
		if !ok {
			break
		}
		n := int64(recHeaderLen + len(body))
		if body[0] == recPut {
			seq := binary.BigEndian.Uint64(body[1:])
			if seq <= *lastSeq {
				break // not written by us in this order: treat as torn
			}
			x.push(entry{seq: seq, size: int64(len(body) - putFixedLen), seg: s, off: off, n: int32(n)})
			s.live++
			*lastSeq = seq
		} else {
			first, last := binary.BigEndian.Uint64(body[1:]), binary.BigEndian.Uint64(body[9:])
			for seq := first; seq <= last; {
				i := x.search(seq)
				if i >= len(x.e) || x.e[i].seq > last {
					break
				}
				seq = x.e[i].seq + 1
				if !x.e[i].done {
					x.removeAt(i).seg.live--
				}
			}
		}
		off += n
	}
	s.size = off
	if off < int64(len(data)) && last {
		if err := s.f.Truncate(off); err != nil {
			return fmt.Errorf("cloud spool: truncate torn tail of %s: %w", s.path, err)
		}
		if err := s.f.Sync(); err != nil {
			return fmt.Errorf("cloud spool: fsync %s: %w", s.path, err)
		}
	}
	return nil
}

// parseRecord returns the body of the record at the start of b, or false if
// it is short, implausible or fails its checksum.
func parseRecord(b []byte) ([]byte, bool) {
	if len(b) < recHeaderLen {
		return nil, false
	}
	n := binary.BigEndian.Uint32(b)
	if n < putFixedLen || n > maxRecordBody || uint64(len(b)-recHeaderLen) < uint64(n) {
		return nil, false
	}
	body := b[recHeaderLen : recHeaderLen+int(n)]
	if crc32.Checksum(body, castagnoli) != binary.BigEndian.Uint32(b[4:]) {
		return nil, false
	}
	switch body[0] {
	case recPut:
		if len(body) < putFixedLen || len(body) < putFixedLen+int(binary.BigEndian.Uint16(body[10:])) {
			return nil, false
		}
	case recAck:
		if len(body) != ackBodyLen {
			return nil, false
		}
	default:
		return nil, false
	}
	return body, true
}

func createSegment(dir string, base uint64) (*segment, error) {
	path := filepath.Join(dir, fmt.Sprintf("%016x%s", base, segExt))
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("cloud spool: %w", err)
	}
	if _, err := f.WriteAt([]byte(segMagic), 0); err != nil {
		f.Close()
		return nil, fmt.Errorf("cloud spool: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return nil, fmt.Errorf("cloud spool: fsync %s: %w", path, err)
	}
	// The new name must survive a power cut, or the records in it would.
	if err := atomicfile.SyncDir(dir); err != nil {
		f.Close()
		return nil, fmt.Errorf("cloud spool: %w", err)
	}
	return &segment{base: base, path: path, f: f, size: headerLen}, nil
}

// appendPut writes the PUT record of e and points e at it. It returns the
// log position to sync for the record to be durable.
func (l *segmentLog) appendPut(e *entry, topic string, payload []byte) (int64, error) {
	n := recHeaderLen + putFixedLen + len(topic) + len(payload)
	rec := l.record(n)
	body := rec[recHeaderLen:]
	body[0] = recPut
	binary.BigEndian.PutUint64(body[1:], e.seq)
	body[9] = 1
	binary.BigEndian.PutUint16(body[10:], uint16(len(topic)))
	copy(body[putFixedLen:], topic)
	copy(body[putFixedLen+len(topic):], payload)
	seal(rec)
	if err := l.makeRoom(int64(n), e.seq); err != nil {
		return 0, err
	}
	s := l.active()
	off, err := l.write(s, rec)
	if err != nil {
		return 0, err
	}
	s.live++
	e.seg, e.off, e.n = s, off, int32(n)
	return l.written, nil
}

// appendAck records that first..last are no longer queued. Acks are never
// waited for: the next Put, the periodic flush or Close syncs them.
func (l *segmentLog) appendAck(first, last uint64) (int64, error) {
	rec := l.record(recHeaderLen + ackBodyLen)
	body := rec[recHeaderLen:]
	body[0] = recAck
	binary.BigEndian.PutUint64(body[1:], first)
	binary.BigEndian.PutUint64(body[9:], last)
	seal(rec)
	if _, err := l.write(l.active(), rec); err != nil {
		return 0, err
	}
	return l.written, nil
}

func (l *segmentLog) record(n int) []byte {
	if cap(l.buf) < n {
		l.buf = make([]byte, n)
	}
	rec := l.buf[:n]
	if cap(l.buf) > 1<<20 {
		l.buf = nil // do not pin one huge message's buffer
	}
	return rec
}

func seal(rec []byte) {
	body := rec[recHeaderLen:]
	binary.BigEndian.PutUint32(rec, uint32(len(body)))
	binary.BigEndian.PutUint32(rec[4:], crc32.Checksum(body, castagnoli))
}

// write appends rec at the end of s. A failed write leaves s.size where it
// was, so the next record overwrites the partial one; if the process dies
// first, recovery cuts the partial record off as a torn tail.
func (l *segmentLog) write(s *segment, rec []byte) (int64, error) {
	off := s.size
	if _, err := s.f.WriteAt(rec, off); err != nil {
		return 0, fmt.Errorf("cloud spool: write %s: %w", s.path, err)
	}
	s.size += int64(len(rec))
	l.written += int64(len(rec))
	return off, nil
}

// makeRoom starts a new segment when the active one is full (or suspect).
// The old one is fsynced first, so every segment but the active one is
// always entirely on stable storage.
func (l *segmentLog) makeRoom(n int64, seq uint64) error {
	s := l.active()
	if !l.needRotate && (s.size <= headerLen || s.size+n <= l.segSize) {
		return nil
	}
	if err := s.f.Sync(); err != nil {
		l.needRotate = true
		return fmt.Errorf("cloud spool: fsync %s: %w", s.path, err)
	}
	ns, err := createSegment(l.dir, max(seq, s.base+1))
	if err != nil {
		return err
	}
	l.segs = append(l.segs, ns)
	l.synced = l.written
	l.needRotate = false
	l.collect()
	return nil
}

// collect deletes the oldest segments while nothing queued is left in
// them. Only the oldest go: a younger segment may hold the acks of
// messages in an older one.
func (l *segmentLog) collect() {
	for len(l.segs) > 1 && l.segs[0].live == 0 && l.segs[0] != l.syncing {
		s := l.segs[0]
		s.f.Close()
		// A failed delete leaves a file whose messages are all acked:
		// recovery deletes it.
		os.Remove(s.path)
		l.segs[0] = nil
		l.segs = l.segs[1:]
	}
}

// readMessage reads e's record back and checks it.
func (l *segmentLog) readMessage(e *entry) (string, []byte, error) {
	rec := make([]byte, e.n)
	if _, err := e.seg.f.ReadAt(rec, e.off); err != nil {
		return "", nil, fmt.Errorf("cloud spool: read %s: %w", e.seg.path, err)
	}
	body, ok := parseRecord(rec)
	if !ok || body[0] != recPut || binary.BigEndian.Uint64(body[1:]) != e.seq {
		return "", nil, fmt.Errorf("cloud spool: record of message %d in %s is corrupt", e.seq, e.seg.path)
	}
	tlen := int(binary.BigEndian.Uint16(body[10:]))
	return string(body[putFixedLen : putFixedLen+tlen]), body[putFixedLen+tlen:], nil
}

func (l *segmentLog) close() error {
	var first error
	for _, s := range l.segs {
		if err := s.f.Close(); err != nil && first == nil {
			first = err
		}
	}
	l.segs = nil
	if l.lock != nil {
		syscall.Flock(int(l.lock.Fd()), syscall.LOCK_UN)
		l.lock.Close()
		l.lock = nil
	}
	return first
}

// removeFiles deletes the spool's files after close, and dir if that leaves
// it empty.
func (l *segmentLog) removeFiles() error {
	dirents, err := os.ReadDir(l.dir)
	if err != nil {
		return fmt.Errorf("cloud spool: %w", err)
	}
	for _, d := range dirents {
		if strings.HasSuffix(d.Name(), segExt) || d.Name() == lockFileName {
			if err := os.Remove(filepath.Join(l.dir, d.Name())); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("cloud spool: %w", err)
			}
		}
	}
	os.Remove(l.dir)
	return nil
}
