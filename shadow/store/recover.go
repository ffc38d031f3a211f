package store

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	badger "github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/fb"
	"github.com/dgraph-io/badger/v4/pb"
	"github.com/dgraph-io/badger/v4/table"
	"github.com/dgraph-io/badger/v4/y"
)

// lockDir flocks "<dir>.lock", next to dir, for as long as a Store has dir
// open: Open cuts torn log tails before badger runs and may swap the whole
// directory, which must never happen under another process's feet. The
// lock lives outside dir so that it stays put while dir is swapped, and
// because badger flocks dir itself.
func lockDir(dir string) (*os.File, error) {
	f, err := os.OpenFile(dir+".lock", os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		_ = f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("store: %s is in use by another process", dir)
		}
		return nil, fmt.Errorf("store: lock %s: %w", dir, err)
	}
	return f, nil
}

// environmental tells an open failure that moving the directory aside would
// not cure (no permission, no space, no descriptors, read-only filesystem,
// another badger holding it) from damage. Badger flattens most errors to
// text, hence the second test.
func environmental(err error) bool {
	for _, e := range []syscall.Errno{
		syscall.EACCES, syscall.EPERM, syscall.EAGAIN, syscall.ENOSPC, syscall.EDQUOT,
		syscall.EMFILE, syscall.ENFILE, syscall.ENOMEM, syscall.EROFS,
	} {
		if errors.Is(err, e) || strings.Contains(err.Error(), e.Error()) {
			return true
		}
	}
	return false
}

// Badger's write-ahead logs (memtable .mem files, value-log .vlog files)
// start with a 20-byte header, then hold entries framed as
//
//	meta 1, userMeta 1, uvarint key length, uvarint value length,
//	uvarint expiry, key, value, big-endian CRC-32C of all of the above.
//
// At open badger replays every .mem file and the newest .vlog and cuts each
// at its first bad entry, which is how a torn tail is meant to heal. Two
// kinds of garbage defeat that: a length varint that overflows makes badger
// fail the open, and a plausible varint claiming gigabytes makes badger
// allocate that much before it finds the file is shorter, which on a small
// device ends the process. guardLogTails walks those logs first, cuts such a
// tail itself, and reports every tail that is not clean.
const (
	logHeaderSize = 20
	logMaxKey     = 1 << 16 // badger stops (without allocating) past this
)

func guardLogTails(dir string) (notes []string) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	var logs []string
	newestVlog, newestFid := "", -1
	for _, e := range entries {
		name := e.Name()
		switch filepath.Ext(name) {
		case ".mem":
			// A crash between creating a memtable log and sizing it leaves
			// it empty, and badger then refuses to open ("Create a new
			// file"). It holds nothing.
			if fi, err := e.Info(); err == nil && fi.Size() == 0 {
				path := filepath.Join(dir, name)
				if err := os.Remove(path); err != nil {
					notes = append(notes, fmt.Sprintf("%s: empty memtable log, and removing it failed: %v", path, err))
				} else {
					notes = append(notes, fmt.Sprintf("%s: empty memtable log left by a crash while creating it; removed", path))
				}
				continue
			}
			logs = append(logs, name)
		case ".vlog":
			if fid, err := strconv.Atoi(strings.TrimSuffix(name, ".vlog")); err == nil && fid > newestFid {
				newestVlog, newestFid = name, fid
			}
		}
	}
	if newestVlog != "" {
		logs = append(logs, newestVlog)
	}
	for _, name := range logs {
		if note := guardLogTail(filepath.Join(dir, name)); note != "" {
			notes = append(notes, note)
		}
	}
	// Badger indexes DISCARD (16-byte slots of value-log GC statistics)
	// without bounds checks from a compaction goroutine. The statistics only
	// steer GC, so a file that is not whole slots is dropped, not trusted.
	discard := filepath.Join(dir, "DISCARD")
	if fi, err := os.Stat(discard); err == nil && (fi.Size() < 16 || fi.Size()%16 != 0) {
		if err := os.Remove(discard); err != nil {
			notes = append(notes, fmt.Sprintf("%s: %d bytes, not whole 16-byte slots, and removing it failed: %v", discard, fi.Size(), err))
		} else {
			notes = append(notes, fmt.Sprintf("%s: %d bytes, not whole 16-byte slots; removed (value-log GC statistics start over)", discard, fi.Size()))
		}
	}
	return notes
}

func guardLogTail(path string) string {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return fmt.Sprintf("%s: cannot check its tail: %v", path, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil || fi.Size() <= logHeaderSize {
		return ""
	}
	size := fi.Size()
	end, cut := walkLog(bufio.NewReaderSize(io.NewSectionReader(f, logHeaderSize, size-logHeaderSize), 32<<10), size)
	if cut != "" {
		if err := f.Truncate(end); err != nil {
			return fmt.Sprintf("%s: %s at offset %d, and cutting it there failed: %v", path, cut, end, err)
		}
		if err := f.Sync(); err != nil {
			return fmt.Sprintf("%s: %s at offset %d, and syncing the cut failed: %v", path, cut, end, err)
		}
		return fmt.Sprintf("%s: %s at offset %d; cut there (%d bytes dropped)", path, cut, end, size-end)
	}
	garbage, err := nonZeroFrom(f, end, size)
	if err != nil {
		return fmt.Sprintf("%s: cannot read its tail: %v", path, err)
	}
	if garbage {
		return fmt.Sprintf("%s: %d bytes from offset %d are not a complete log entry (torn write); badger drops them", path, size-end, end)
	}
	return ""
}

// walkLog reads entries from r (positioned just after the file header of a
// file of size bytes) and returns the offset where the valid entries end.
// cut is non-empty when the entry there must be cut before badger reads it.
func walkLog(r *bufio.Reader, size int64) (end int64, cut string) {
	end = logHeaderSize
	var hdr, body []byte
	for {
		hdr = hdr[:0]
		readByte := func() (byte, error) {
			c, err := r.ReadByte()
			if err == nil {
				hdr = append(hdr, c)
			}
			return c, err
		}
		uvarint := func() (uint64, error) {
			return binary.ReadUvarint(byteReaderFunc(readByte))
		}
		if _, err := readByte(); err != nil { // meta
			return end, ""
		}
		if _, err := readByte(); err != nil { // userMeta
			return end, ""
		}
		var lens [3]uint64
		for i := range lens {
			v, err := uvarint()
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				return end, ""
			}
			if err != nil {
				return end, "an entry header that badger cannot decode (" + err.Error() + ")"
			}
			lens[i] = v
		}
		klen, vlen := int64(uint32(lens[0])), int64(uint32(lens[1]))
		if klen > logMaxKey {
			return end, ""
		}
		frame := int64(len(hdr)) + klen + vlen + crc32.Size
		if end+frame > size {
			return end, fmt.Sprintf("an entry claiming %d bytes with %d left in the file", frame, size-end)
		}
		crc := crc32.Update(0, castagnoli, hdr)
		body = slices.Grow(body[:0], int(klen+vlen+crc32.Size))[:klen+vlen+crc32.Size]
		if _, err := io.ReadFull(r, body); err != nil {
			return end, ""
		}
		crc = crc32.Update(crc, castagnoli, body[:klen+vlen])
		if crc != binary.BigEndian.Uint32(body[klen+vlen:]) {
			return end, ""
		}
		end += frame
	}
}

type byteReaderFunc func() (byte, error)

func (f byteReaderFunc) ReadByte() (byte, error) { return f() }

// nonZeroFrom reports whether any byte of f in [from, size) is not zero.
// Badger preallocates its logs, so a clean tail is all zeros.
func nonZeroFrom(f *os.File, from, size int64) (bool, error) {
	buf := make([]byte, 32<<10)
	for off := from; off < size; {
		n, err := f.ReadAt(buf[:min(int64(len(buf)), size-off)], off)
		if slices.ContainsFunc(buf[:n], func(b byte) bool { return b != 0 }) {
			return true, nil
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				return false, nil
			}
			return false, err
		}
		off += int64(n)
	}
	return false, nil
}

// salvageSuffix names the directory a quarantine builds the fresh store in
// before swapping it in place of the damaged one.
const salvageSuffix = ".salvage"

// finishSwap completes or discards a quarantine that a crash interrupted:
// with dir gone, the salvaged store was complete and only its rename is
// missing; with dir present, the salvage was unfinished and is redone.
func finishSwap(dir string) (note string) {
	tmp := dir + salvageSuffix
	if _, err := os.Stat(tmp); err != nil {
		return ""
	}
	if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
		if err := os.Rename(tmp, dir); err != nil {
			return fmt.Sprintf("%s: finishing an interrupted quarantine failed: %v", tmp, err)
		}
		syncDir(filepath.Dir(dir))
		return fmt.Sprintf("%s: finished an interrupted quarantine by moving the salvaged store into place", dir)
	}
	_ = os.RemoveAll(tmp)
	return ""
}

// quarantine replaces the directory badger refused with a fresh store
// holding what could be salvaged from it, and moves the damaged directory
// aside to <dir>.corrupt-<unix time>. The fresh store is built and closed
// in <dir>.salvage first, so a crash at any point leaves either the damaged
// directory in place (and the next Open starts over) or the salvaged one
// (finishSwap).
func (s *Store) quarantine(rep *Report, blog *badgerLogger, cause error) (*badger.DB, scanResult, error) {
	tmp := s.dir + salvageSuffix
	if err := os.RemoveAll(tmp); err != nil {
		return nil, scanResult{}, fmt.Errorf("store: %w", err)
	}
	if err := os.MkdirAll(tmp, 0o700); err != nil {
		return nil, scanResult{}, fmt.Errorf("store: %w", err)
	}
	fresh, err := badger.Open(badgerOptions(tmp, blog))
	if err != nil {
		return nil, scanResult{}, fmt.Errorf("store: badger cannot open a fresh %s either: %w", tmp, err)
	}
	salvaged, notes, err := salvage(s.dir, fresh)
	if err != nil {
		notes = append(notes, fmt.Sprintf("%s: salvage stopped: %v", s.dir, err))
	}
	if err := fresh.Close(); err != nil {
		return nil, scanResult{}, fmt.Errorf("store: closing the salvaged %s: %w", tmp, err)
	}

	q := quarantineName(s.dir, time.Now())
	if err := os.Rename(s.dir, q); err != nil {
		return nil, scanResult{}, fmt.Errorf("store: badger cannot open %s (%v) and moving it aside failed: %w", s.dir, cause, err)
	}
	if err := os.Rename(tmp, s.dir); err != nil {
		return nil, scanResult{}, fmt.Errorf("store: moving the salvaged %s into place: %w", tmp, err)
	}
	syncDir(filepath.Dir(s.dir))
	rep.Quarantined = q
	rep.Salvaged = salvaged
	rep.Corrupt = append(rep.Corrupt, fmt.Sprintf("%s: badger cannot open it (%v); moved aside to %s, %d entries salvaged from it", s.dir, cause, q, len(salvaged)))
	rep.Corrupt = append(rep.Corrupt, notes...)
	pruneQuarantines(s.dir, 2)

	db, res, err := openAndScan(s.dir, blog)
	if err != nil {
		return nil, scanResult{}, fmt.Errorf("store: badger cannot open the salvaged %s: %w", s.dir, err)
	}
	return db, res, nil
}

func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		_ = d.Close()
	}
}

// salvage scans every file of the quarantined directory q for envelopes,
// without badger: an envelope frames itself and names its key, and badger
// stores values as contiguous bytes in all its files (nothing is compressed
// or encrypted). The newest intact envelope of each key is written to db.
func salvage(q string, db *badger.DB) (keys []Key, notes []string, err error) {
	type found struct {
		seq  uint64
		path string
		off  int64
		n    int
	}
	best := map[string]found{}
	entries, err := os.ReadDir(q)
	if err != nil {
		return nil, nil, err
	}
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue
		}
		path := filepath.Join(q, e.Name())
		err := scanEnvelopes(path, func(off int64, env []byte) {
			key, _, seq, _ := openEnvelope(env)
			if f, ok := best[string(key)]; !ok || seq > f.seq {
				best[string(key)] = found{seq: seq, path: path, off: off, n: len(env)}
			}
		})
		if err != nil {
			notes = append(notes, fmt.Sprintf("%s: salvage read failed: %v", path, err))
		}
	}

	sorted := make([]string, 0, len(best))
	for k := range best {
		sorted = append(sorted, k)
	}
	slices.Sort(sorted)
	var group []*write
	flush := func() error {
		commitWrites(db, group, func() {})
		for _, w := range group {
			if w.err != nil {
				return w.err
			}
			k, _ := decodeKey(w.key)
			keys = append(keys, k)
		}
		group = group[:0]
		return nil
	}
	for _, key := range sorted {
		f := best[key]
		env, err := readAt(f.path, f.off, f.n)
		if err != nil {
			notes = append(notes, fmt.Sprintf("%s: rereading an envelope at offset %d failed: %v", f.path, f.off, err))
			continue
		}
		group = append(group, &write{key: []byte(key), val: env})
		if len(group) == maxGroup {
			if err := flush(); err != nil {
				return keys, notes, err
			}
		}
	}
	if err := flush(); err != nil {
		return keys, notes, err
	}
	return keys, notes, nil
}

func readAt(path string, off int64, n int) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b := make([]byte, n)
	if _, err := f.ReadAt(b, off); err != nil {
		return nil, err
	}
	return b, nil
}

// scanEnvelopes calls fn for every intact envelope with a valid key in the
// file, reading it in 1 MiB chunks that overlap by the largest envelope.
func scanEnvelopes(path string, fn func(off int64, env []byte)) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	const chunk = 1 << 20
	buf := make([]byte, 0, chunk+maxEnvelope)
	var base int64 // file offset of buf[0]
	for {
		n, err := io.ReadFull(f, buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		eof := errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
		if err != nil && !eof {
			return err
		}
		// Envelopes starting before limit lie wholly inside buf.
		limit := len(buf) - maxEnvelope
		if eof {
			limit = len(buf)
		}
		i := 0
		for i < limit {
			j := bytes.Index(buf[i:], envelopeMagic[:])
			if j < 0 || i+j >= limit {
				i = limit // keep the unscanned tail for the next chunk
				break
			}
			p := i + j
			if n, ok := envelopeLenAt(buf[p:]); ok && p+n <= len(buf) {
				env := buf[p : p+n]
				if key, _, _, err := openEnvelope(env); err == nil {
					if _, err := decodeKey(key); err == nil {
						fn(base+int64(p), env)
						i = p + n
						continue
					}
				}
			}
			i = p + 1
		}
		if eof {
			return nil
		}
		rest := copy(buf, buf[i:])
		buf = buf[:rest]
		base += int64(i)
	}
}

// pruneQuarantines removes all but the newest keep quarantined copies of
// dir, so repeated damage cannot fill the disk.
func pruneQuarantines(dir string, keep int) {
	matches, err := filepath.Glob(dir + ".corrupt-*")
	if err != nil || len(matches) <= keep {
		return
	}
	type q struct {
		path     string
		sec, seq int64
	}
	var qs []q
	for _, m := range matches {
		parts := strings.SplitN(strings.TrimPrefix(m, dir+".corrupt-"), "-", 2)
		sec, err := strconv.ParseInt(parts[0], 10, 64)
		if err != nil {
			continue
		}
		var seq int64
		if len(parts) == 2 {
			if seq, err = strconv.ParseInt(parts[1], 10, 64); err != nil {
				continue
			}
		}
		qs = append(qs, q{m, sec, seq})
	}
	slices.SortFunc(qs, func(a, b q) int {
		if a.sec != b.sec {
			return int(b.sec - a.sec)
		}
		return int(b.seq - a.seq)
	})
	for _, old := range qs[min(keep, len(qs)):] {
		_ = os.RemoveAll(old.path)
	}
}

// verifyTables checks every table the MANIFEST lists before badger opens
// them. Badger opens tables in goroutines of its own and decodes their
// footers and blocks without bounds checks, so a damaged table panics where
// no recover can reach and the process dies, at every start. A table that
// fails here gets the directory quarantined instead. Tables the MANIFEST
// does not list are left alone: they are what a crash during a flush or a
// compaction leaves, possibly empty, and badger deletes them.
func verifyTables(dir string, blog *badgerLogger) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("MANIFEST undecodable: %v", p)
		}
	}()
	fp, err := os.Open(filepath.Join(dir, "MANIFEST"))
	if errors.Is(err, os.ErrNotExist) {
		// Badger would start a new MANIFEST and delete every table.
		if tables, _ := filepath.Glob(filepath.Join(dir, "*.sst")); len(tables) > 0 {
			return fmt.Errorf("MANIFEST is missing but %d tables exist", len(tables))
		}
		return nil
	}
	if err != nil {
		return err
	}
	defer fp.Close()
	m, _, err := badger.ReplayManifestFile(fp, badgerOptions(dir, blog).ExternalMagicVersion, badgerOptions(dir, blog))
	if err != nil {
		return fmt.Errorf("MANIFEST: %w", err)
	}
	for id := range m.Tables {
		path := table.NewFilename(id, dir)
		if err := verifyTable(path); err != nil {
			return fmt.Errorf("table %s: %w", path, err)
		}
	}
	return nil
}

// verifyTable checks a badger table: its footer, the checksum of its index,
// and the bounds and checksum of every block the index lists. Layout (badger
// v4 table/builder.go, uncompressed and unencrypted):
//
//	blocks | index | u32 index length | checksum | u32 checksum length
//	block: entries | u32 offsets... | u32 entry count | checksum | u32 checksum length
//
// Checksums are protobuf-encoded pb.Checksum messages; lengths big-endian.
func verifyTable(path string) (err error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("undecodable: %v", p)
		}
	}()
	pos := len(data)
	chk, pos, err := trailingChecksum(data, pos)
	if err != nil {
		return fmt.Errorf("footer: %w", err)
	}
	if pos < 4 {
		return errors.New("footer: no index length")
	}
	pos -= 4
	indexLen := int(binary.BigEndian.Uint32(data[pos:]))
	if indexLen > pos {
		return fmt.Errorf("footer: index of %d bytes in %d", indexLen, pos)
	}
	indexStart := pos - indexLen
	index := data[indexStart:pos]
	if err := y.VerifyChecksum(index, chk); err != nil {
		return fmt.Errorf("index: %v", err)
	}
	ti := fb.GetRootAsTableIndex(index, 0)
	var bo fb.BlockOffset
	for i := range ti.OffsetsLength() {
		if !ti.Offsets(&bo, i) {
			return fmt.Errorf("index: no block %d", i)
		}
		off, n := int(bo.Offset()), int(bo.Len())
		if off+n > indexStart || n < 0 {
			return fmt.Errorf("block %d [%d, %d) overlaps the index at %d", i, off, off+n, indexStart)
		}
		block := data[off : off+n]
		chk, end, err := trailingChecksum(block, len(block))
		if err != nil {
			return fmt.Errorf("block %d: %w", i, err)
		}
		if end < 4 {
			return fmt.Errorf("block %d: no entry count", i)
		}
		if entries := int(binary.BigEndian.Uint32(block[end-4:])); entries*4 > end-4 {
			return fmt.Errorf("block %d: %d entries do not fit", i, entries)
		}
		if err := y.VerifyChecksum(block[:end], chk); err != nil {
			return fmt.Errorf("block %d: %v", i, err)
		}
	}
	return nil
}

// trailingChecksum decodes the "checksum | u32 length" that ends b[:end] and
// returns it with the offset where it starts.
func trailingChecksum(b []byte, end int) (*pb.Checksum, int, error) {
	if end < 4 {
		return nil, 0, errors.New("no checksum length")
	}
	end -= 4
	n := int(binary.BigEndian.Uint32(b[end:]))
	if n > end {
		return nil, 0, fmt.Errorf("checksum of %d bytes in %d", n, end)
	}
	chk, err := decodeChecksum(b[end-n : end])
	return chk, end - n, err
}

// decodeChecksum decodes a pb.Checksum (algo = 1, sum = 2, both varints)
// without a protobuf library: two fields are all there is.
func decodeChecksum(b []byte) (*pb.Checksum, error) {
	var c pb.Checksum
	for len(b) > 0 {
		tag, n := binary.Uvarint(b)
		if n <= 0 || tag&7 != 0 {
			return nil, errors.New("checksum: not a varint field")
		}
		b = b[n:]
		v, n := binary.Uvarint(b)
		if n <= 0 {
			return nil, errors.New("checksum: bad varint")
		}
		b = b[n:]
		switch tag >> 3 {
		case 1:
			c.Algo = pb.Checksum_Algorithm(v)
		case 2:
			c.Sum = v
		default:
			return nil, fmt.Errorf("checksum: unknown field %d", tag>>3)
		}
	}
	if c.Algo != pb.Checksum_CRC32C && c.Algo != pb.Checksum_XXHash64 {
		return nil, fmt.Errorf("checksum: unknown algorithm %d", c.Algo)
	}
	return &c, nil
}
