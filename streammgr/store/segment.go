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
	index    []indexEntry
	f        *os.File // the open file of the active segment
	mem      []byte   // memory segments
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

// seek returns the offset of the nearest indexed record at or before seq.
func (g *segment) seek(seq int64) (int64, int64) {
	lo, hi := 0, len(g.index)
	for lo < hi {
		m := (lo + hi) / 2
		if g.index[m].seq <= seq {
			lo = m + 1
		} else {
			hi = m
		}
	}
	if lo == 0 {
		return 0, g.first
	}
	e := g.index[lo-1]
	return e.off, e.seq
}

func segmentName(first int64) string { return fmt.Sprintf("%020d.seg", first) }

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
	p := make([]byte, n)
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
	rr := &recordReader{r: bufio.NewReaderSize(f, 256<<10), end: st.Size()}
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

func listSegments(dir string) (segs []int64, stray []string, err error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, nil, err
	}
	for _, e := range ents {
		switch n := e.Name(); {
		case n == metaFile || n == seqFile || strings.HasPrefix(n, ".") || isExportFile(n):
		default:
			if first, ok := parseSegmentName(n); ok && e.Type().IsRegular() {
				segs = append(segs, first)
			} else {
				stray = append(stray, filepath.Join(dir, n))
			}
		}
	}
	return segs, stray, nil
}
