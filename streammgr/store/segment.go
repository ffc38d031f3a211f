package store

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Record layout in a segment file (little-endian):
//
//	0  u32 payload length
//	4  u32 CRC-32C of bytes 8..end (sequence number, time, payload)
//	8  i64 sequence number
//	16 i64 ingest time (Unix ms)
//	24 payload
const headerSize = 24

// indexEvery is the spacing, in bytes, of the sparse index of a segment:
// finding a sequence number reads at most this much before it.
const indexEvery = 64 << 10

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func recordSize(payload int) int64 { return headerSize + int64(payload) }

func encodeRecord(dst []byte, seq, ms int64, payload []byte) []byte {
	off := len(dst)
	dst = append(dst, make([]byte, headerSize)...)
	h := dst[off:]
	binary.LittleEndian.PutUint32(h[0:], uint32(len(payload)))
	binary.LittleEndian.PutUint64(h[8:], uint64(seq))
	binary.LittleEndian.PutUint64(h[16:], uint64(ms))
	dst = append(dst, payload...)
	crc := crc32.Update(crc32.Checksum(dst[off+8:off+headerSize], castagnoli), castagnoli, payload)
	binary.LittleEndian.PutUint32(dst[off+4:], crc)
	return dst
}

// Message is one stored message.
type Message struct {
	Seq     int64
	Time    int64 // ingest time, Unix ms
	Payload []byte
}

type indexEntry struct{ seq, off int64 }

// segment is a run of consecutive sequence numbers in one file (or one
// buffer for Memory streams). Only the newest segment of a stream is
// appended to.
type segment struct {
	path     string // "" for memory segments
	first    int64  // first sequence number (the file's name)
	count    int64
	size     int64 // bytes of good records
	lastTime int64 // ingest time of the newest record
	// index is nil for a sealed segment whose index is in its index file
	// (indexed): reads load it, memory holds nothing per 64 KiB stored.
	index   []indexEntry
	indexed bool
	dropped bool     // removed (full, TTL) while a sync was sealing it
	f       *os.File // the open file of the active segment
	mem     []byte   // memory segments
}

func (g *segment) last() int64 { return g.first + g.count - 1 }

// noteRecord accounts a record written at offset off.
func (g *segment) noteRecord(off, seq, ms, rec int64) {
	if len(g.index) == 0 || off-g.index[len(g.index)-1].off >= indexEvery {
		g.index = append(g.index, indexEntry{seq, off})
	}
	g.count++
	g.size = off + rec
	g.lastTime = ms
}

// seek returns the offset of the nearest indexed record at or before seq
// (0 without an index: the segment is read from its start).
func seek(index []indexEntry, seq int64) int64 {
	lo, hi := 0, len(index)
	for lo < hi {
		m := (lo + hi) / 2
		if index[m].seq <= seq {
			lo = m + 1
		} else {
			hi = m
		}
	}
	if lo == 0 {
		return 0
	}
	return index[lo-1].off
}

func segmentName(first int64) string { return fmt.Sprintf("%020d.seg", first) }

func indexName(first int64) string { return fmt.Sprintf("%020d.idx", first) }

func indexPath(segPath string) string { return strings.TrimSuffix(segPath, ".seg") + ".idx" }

// The index file of a sealed segment ("<first>.idx") holds what start-up
// would otherwise learn by reading the whole segment (little-endian):
//
//	0  u32 magic "EGI1"
//	4  u32 number of index entries n
//	8  i64 first sequence number, count, size, ingest time of the newest
//	   record, and the segment file's size and modification time (ns)
//	56 n × (i64 sequence number, i64 offset)
//	.. u32 CRC-32C of everything before
//
// It is trusted only while the segment file has exactly that size and
// modification time, and that time is older than the index file's: any
// later change to the segment (a torn tail, an edit) makes start-up scan
// the segment again. File times tick coarsely (a few ms, a second on some
// file systems): a change within the tick the index was written in would
// keep the time, so an index written in its segment's last tick is
// "racy" (as git's index calls it) and not trusted; it is written again
// once the clock moved on. It is written without an fsync: a lost or
// torn index only costs a scan.
const (
	indexMagic  = 0x31494745 // "EGI1"
	indexHeader = 56
)

func encodeIndex(g *segment, fileSize, mtime int64) []byte {
	b := make([]byte, 0, indexHeader+16*len(g.index)+4)
	b = binary.LittleEndian.AppendUint32(b, indexMagic)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(g.index)))
	for _, v := range []int64{g.first, g.count, g.size, g.lastTime, fileSize, mtime} {
		b = binary.LittleEndian.AppendUint64(b, uint64(v))
	}
	for _, e := range g.index {
		b = binary.LittleEndian.AppendUint64(b, uint64(e.seq))
		b = binary.LittleEndian.AppendUint64(b, uint64(e.off))
	}
	return binary.LittleEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
}

// errRacyIndex: the index file was written in the tick its segment was
// last changed in; it is not trusted until written again later.
var errRacyIndex = errors.New("index file written as its segment changed")

// writeIndex writes g's index file; g is sealed (its file is synced and
// no longer written).
func writeIndex(g *segment) error {
	fi, err := os.Stat(g.path)
	if err != nil {
		return err
	}
	p := indexPath(g.path)
	if err := os.WriteFile(p, encodeIndex(g, fi.Size(), fi.ModTime().UnixNano()), 0o640); err != nil {
		return err
	}
	ii, err := os.Stat(p)
	if err != nil {
		return err
	}
	if !fi.ModTime().Before(ii.ModTime()) {
		return errRacyIndex
	}
	return nil
}

var errStaleIndex = errors.New("index file does not describe the segment")

// parseIndex checks an index file's framing and checksum and returns its
// header fields (first, count, size, last time, file size, mtime) and its
// entries.
func parseIndex(b []byte) (h [6]int64, entries []indexEntry, ok bool) {
	if len(b) < indexHeader+4 || binary.LittleEndian.Uint32(b) != indexMagic {
		return h, nil, false
	}
	n := int(binary.LittleEndian.Uint32(b[4:]))
	if len(b) != indexHeader+16*n+4 || crc32.Checksum(b[:len(b)-4], castagnoli) != binary.LittleEndian.Uint32(b[len(b)-4:]) {
		return h, nil, false
	}
	for i := range h {
		h[i] = int64(binary.LittleEndian.Uint64(b[8+8*i:]))
	}
	entries = make([]indexEntry, n)
	for i := range entries {
		e := b[indexHeader+16*i:]
		entries[i] = indexEntry{int64(binary.LittleEndian.Uint64(e)), int64(binary.LittleEndian.Uint64(e[8:]))}
	}
	return h, entries, true
}

// readIndex loads the index file of the segment at path if it describes
// the segment as it is (fi). Without keepEntries the segment is left
// indexed: reads load its entries when they need them.
func readIndex(path string, first int64, fi os.FileInfo, keepEntries bool) (*segment, error) {
	f, err := os.Open(indexPath(path))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	ii, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.ModTime().Before(ii.ModTime()) {
		return nil, errRacyIndex
	}
	b, err := io.ReadAll(io.LimitReader(f, indexHeader+16*(fi.Size()/indexEvery+2)+4))
	if err != nil {
		return nil, err
	}
	h, entries, ok := parseIndex(b)
	if !ok {
		return nil, errStaleIndex
	}
	g := &segment{path: path, first: h[0], count: h[1], size: h[2], lastTime: h[3]}
	if g.first != first || g.count < 0 || g.size < 0 || g.size > fi.Size() || h[4] != fi.Size() || h[5] != fi.ModTime().UnixNano() {
		return nil, errStaleIndex
	}
	if keepEntries {
		g.index = entries
	} else {
		g.indexed = true
	}
	return g, nil
}

// loadEntries returns the index entries of an indexed segment (nil when
// its index file is unreadable: the segment is then read from its start,
// slower but right).
func loadEntries(path string) []indexEntry {
	b, err := os.ReadFile(indexPath(path))
	if err != nil {
		return nil
	}
	_, entries, _ := parseIndex(b)
	return entries
}

func parseSegmentName(name string) (int64, bool) {
	s, ok := strings.CutSuffix(name, ".seg")
	if !ok || len(s) != 20 {
		return 0, false
	}
	n, err := strconv.ParseInt(s, 10, 64)
	return n, err == nil && n >= 0
}

// errBadRecord marks damage found while reading records.
var errBadRecord = errors.New("damaged record")

// recordReader reads records from an offset.
type recordReader struct {
	r   *bufio.Reader
	off int64
	end int64
	hdr [headerSize]byte
	// scratch: payloads are only checked (start-up), each read into the
	// same buffer tmp; so are those of records below the sequence number
	// below (a read skipping to its start). Otherwise small payloads are
	// cut from a shared slab.
	scratch bool
	below   int64
	tmp     []byte
	slab    []byte
}

const slabSize = 64 << 10

func (rr *recordReader) payload(seq, n int64) []byte {
	switch {
	case rr.scratch || seq < rr.below:
		if int64(cap(rr.tmp)) < n {
			rr.tmp = make([]byte, n)
		}
		return rr.tmp[:n]
	case n > slabSize/8:
		return make([]byte, n)
	}
	if int64(cap(rr.slab)-len(rr.slab)) < n {
		rr.slab = make([]byte, 0, slabSize)
	}
	k := len(rr.slab)
	rr.slab = rr.slab[:k+int(n)]
	return rr.slab[k : k+int(n) : k+int(n)]
}

// next returns the record at the reader's offset; io.EOF at end, or
// errBadRecord (with the offset of the bad record left in off).
func (rr *recordReader) next(maxPayload int64) (Message, int64, error) {
	if rr.off >= rr.end {
		return Message{}, 0, io.EOF
	}
	if rr.end-rr.off < headerSize {
		return Message{}, 0, fmt.Errorf("%w: %d bytes of a header at offset %d", errBadRecord, rr.end-rr.off, rr.off)
	}
	if _, err := io.ReadFull(rr.r, rr.hdr[:]); err != nil {
		return Message{}, 0, fmt.Errorf("%w: header at offset %d: %v", errBadRecord, rr.off, err)
	}
	n := int64(binary.LittleEndian.Uint32(rr.hdr[0:]))
	if n > maxPayload || rr.off+headerSize+n > rr.end {
		return Message{}, 0, fmt.Errorf("%w: length %d at offset %d runs past the segment", errBadRecord, n, rr.off)
	}
	p := rr.payload(int64(binary.LittleEndian.Uint64(rr.hdr[8:])), n)
	if _, err := io.ReadFull(rr.r, p); err != nil {
		return Message{}, 0, fmt.Errorf("%w: payload at offset %d: %v", errBadRecord, rr.off, err)
	}
	crc := crc32.Update(crc32.Checksum(rr.hdr[8:], castagnoli), castagnoli, p)
	if crc != binary.LittleEndian.Uint32(rr.hdr[4:]) {
		return Message{}, 0, fmt.Errorf("%w: checksum mismatch at offset %d", errBadRecord, rr.off)
	}
	m := Message{Seq: int64(binary.LittleEndian.Uint64(rr.hdr[8:])), Time: int64(binary.LittleEndian.Uint64(rr.hdr[16:])), Payload: p}
	rec := headerSize + n
	rr.off += rec
	return m, rec, nil
}

// scanSegment reads a segment file whole at start-up: it rebuilds the
// sparse index and stops at the first bad record (a torn tail or damage),
// returning what is good and the damage.
func scanSegment(path string, first int64, maxPayload int64) (*segment, int64, error) {
	g := &segment{path: path, first: first}
	f, err := os.Open(path)
	if err != nil {
		return nil, 0, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, 0, err
	}
	rr := &recordReader{r: bufio.NewReaderSize(f, 256<<10), end: st.Size(), scratch: true}
	for {
		off := rr.off
		m, rec, err := rr.next(maxPayload)
		if err == io.EOF {
			return g, st.Size(), nil
		}
		if err == nil && m.Seq != first+g.count {
			err = fmt.Errorf("%w: sequence number %d at offset %d where %d was due", errBadRecord, m.Seq, off, first+g.count)
		}
		if err != nil {
			return g, st.Size(), err
		}
		g.noteRecord(off, m.Seq, m.Time, rec)
	}
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

func listSegments(dir string) (segs, idx []int64, stray []string, err error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, nil, nil, err
	}
	for _, e := range ents {
		switch n := e.Name(); {
		case n == metaFile || n == seqFile || n == jumpsFile || strings.HasPrefix(n, ".") || isExportFile(n):
		case strings.HasSuffix(n, ".idx"):
			if first, ok := parseSegmentName(strings.TrimSuffix(n, ".idx") + ".seg"); ok {
				idx = append(idx, first)
			} else {
				stray = append(stray, filepath.Join(dir, n))
			}
		default:
			if first, ok := parseSegmentName(n); ok && e.Type().IsRegular() {
				segs = append(segs, first)
			} else {
				stray = append(stray, filepath.Join(dir, n))
			}
		}
	}
	return segs, idx, stray, nil
}
