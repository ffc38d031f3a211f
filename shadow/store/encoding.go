package store

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
)

// Badger keys: a keyspace byte, then the thing and the name, each escaped so
// that a 0x00 byte becomes 0x00 0xFF, with 0x00 0x01 closing the thing. The
// name runs to the end of the key. Any bytes round-trip, no two keys share an
// encoding, and badger's bytewise order is the order of (thing, name), so a
// thing's shadows form one contiguous prefix and the classic shadow (name "")
// sorts first.
const (
	keyspaceShadow = 's'

	escByte    = 0x00
	escZero    = 0xFF // 0x00 0xFF stands for a 0x00 byte
	escEnd     = 0x01 // 0x00 0x01 ends the thing
	maxKeySize = 1024 // encoded; AWS caps things at 128 bytes, names at 64
)

// MaxValueSize bounds one value. Shadow documents stay under ~40 KB with
// their metadata; the bound keeps a single Put from pinning megabytes.
const MaxValueSize = 256 << 10

func appendEscaped(dst []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if s[i] == escByte {
			dst = append(dst, escByte, escZero)
			continue
		}
		dst = append(dst, s[i])
	}
	return dst
}

// thingPrefix is the key prefix of every shadow of thing.
func thingPrefix(thing string) []byte {
	p := make([]byte, 0, 3+len(thing)+len(thing)/8)
	p = append(p, keyspaceShadow)
	p = appendEscaped(p, thing)
	return append(p, escByte, escEnd)
}

func encodeKey(k Key) []byte {
	b := thingPrefix(k.Thing)
	return appendEscaped(b, k.Name)
}

var errBadKey = errors.New("not a shadow key")

func decodeKey(b []byte) (Key, error) {
	if len(b) == 0 || b[0] != keyspaceShadow {
		return Key{}, errBadKey
	}
	b = b[1:]
	var thing, name []byte
	inThing := true
	for i := 0; i < len(b); i++ {
		c := b[i]
		if c != escByte {
			if inThing {
				thing = append(thing, c)
			} else {
				name = append(name, c)
			}
			continue
		}
		if i+1 == len(b) {
			return Key{}, errBadKey
		}
		i++
		switch {
		case b[i] == escZero && inThing:
			thing = append(thing, 0)
		case b[i] == escZero:
			name = append(name, 0)
		case b[i] == escEnd && inThing:
			inThing = false
		default:
			return Key{}, errBadKey
		}
	}
	if inThing {
		return Key{}, errBadKey
	}
	return Key{Thing: string(thing), Name: string(name)}, nil
}

// Every stored value is an envelope:
//
//	magic   4  envelopeMagic
//	klen    2  big-endian length of the badger key
//	vlen    4  big-endian length of the caller's value
//	key     klen  the badger key, so a value can never be served for
//	              another key, and a salvage can find its key without badger
//	value   vlen
//	seq     8  big-endian write sequence: the newest copy wins a salvage
//	crc     4  big-endian CRC-32C of everything above
//
// seq sits after the value so a writer can checksum the bulk before it
// takes its place in the commit queue and finish the checksum over 8 bytes
// once the sequence is known.
var envelopeMagic = [4]byte{0xEE, 'S', 'H', 0x01}

const (
	envHeaderSize  = 4 + 2 + 4
	envTrailerSize = 8 + 4
	envOverhead    = envHeaderSize + envTrailerSize
	maxEnvelope    = envOverhead + maxKeySize + MaxValueSize
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// envelope is an encoded value whose sequence is not yet assigned.
type envelope struct {
	buf []byte
	crc uint32 // CRC-32C of buf[:len(buf)-envTrailerSize]
}

func newEnvelope(key, value []byte) envelope {
	buf := make([]byte, envHeaderSize+len(key)+len(value)+envTrailerSize)
	copy(buf, envelopeMagic[:])
	binary.BigEndian.PutUint16(buf[4:], uint16(len(key)))
	binary.BigEndian.PutUint32(buf[6:], uint32(len(value)))
	n := envHeaderSize
	n += copy(buf[n:], key)
	n += copy(buf[n:], value)
	return envelope{buf: buf, crc: crc32.Checksum(buf[:n], castagnoli)}
}

// seal writes the sequence and the checksum; the envelope is then final.
func (e envelope) seal(seq uint64) []byte {
	n := len(e.buf) - envTrailerSize
	binary.BigEndian.PutUint64(e.buf[n:], seq)
	crc := crc32.Update(e.crc, castagnoli, e.buf[n:n+8])
	binary.BigEndian.PutUint32(e.buf[n+8:], crc)
	return e.buf
}

// openEnvelope checks env and returns the key and value inside it (aliasing
// env) and its sequence. The error says what is wrong, for the report.
func openEnvelope(env []byte) (key, value []byte, seq uint64, err error) {
	if len(env) == 0 {
		// What badger hands over when it cannot read a value-log entry: it
		// logs the failure and returns an empty value.
		return nil, nil, 0, errors.New("value missing: badger could not read it from the value log")
	}
	if len(env) < envOverhead {
		return nil, nil, 0, fmt.Errorf("envelope of %d bytes is shorter than its %d-byte frame", len(env), envOverhead)
	}
	if !bytes.Equal(env[:4], envelopeMagic[:]) {
		return nil, nil, 0, fmt.Errorf("envelope magic %x, want %x", env[:4], envelopeMagic)
	}
	klen := int(binary.BigEndian.Uint16(env[4:]))
	vlen := int(binary.BigEndian.Uint32(env[6:]))
	if want := envOverhead + klen + vlen; want != len(env) {
		return nil, nil, 0, fmt.Errorf("envelope frames %d bytes but holds %d", want, len(env))
	}
	n := len(env) - 4
	if got, want := crc32.Checksum(env[:n], castagnoli), binary.BigEndian.Uint32(env[n:]); got != want {
		return nil, nil, 0, fmt.Errorf("checksum mismatch (stored %08x, computed %08x)", want, got)
	}
	key = env[envHeaderSize : envHeaderSize+klen]
	value = env[envHeaderSize+klen : envHeaderSize+klen+vlen]
	seq = binary.BigEndian.Uint64(env[n-8:])
	return key, value, seq, nil
}

// envelopeLenAt returns the length of the envelope framed at b[0:], if b
// starts with the magic and a plausible frame; b may hold more or less than
// the envelope. Used by the salvage scan, which has no badger to frame values.
func envelopeLenAt(b []byte) (int, bool) {
	if len(b) < envHeaderSize || !bytes.Equal(b[:4], envelopeMagic[:]) {
		return 0, false
	}
	klen := int(binary.BigEndian.Uint16(b[4:]))
	vlen := int(binary.BigEndian.Uint32(b[6:]))
	if klen == 0 || klen > maxKeySize || vlen > MaxValueSize {
		return 0, false
	}
	return envOverhead + klen + vlen, true
}
