"""A small CBOR (RFC 8949) codec, standard library only, for the stream
manager protocol: the v1 SDK used cbor2, which a function that does not
bundle its own SDK cannot be assumed to have.

    dumps({'requestId': 'a', 'payload': b'x'}) -> bytes
    loads(data) -> the Python value

Encodes None, bool, int (bignums as tags 2 and 3), float (as doubles),
bytes-like, str, list/tuple and dict. Decodes every major type, definite
and indefinite lengths (as Jackson may send), half, single and double
floats, bignum tags; other tags come back as Tag, simple values as Simple.
"""
import struct
from collections import namedtuple

__all__ = ['dumps', 'loads', 'CBORError', 'CBORDecodeError', 'CBOREncodeError', 'Tag', 'Simple', 'UNDEFINED']

# Nesting bound: deeper input is refused rather than blowing the stack.
MAX_DEPTH = 256

_BREAK = object()

Tag = namedtuple('Tag', 'tag value')
Simple = namedtuple('Simple', 'value')


class _Undefined(object):
    __slots__ = ()

    def __repr__(self):
        return 'UNDEFINED'

    def __bool__(self):
        return False


UNDEFINED = _Undefined()


class CBORError(ValueError):
    pass


class CBORDecodeError(CBORError):
    pass


class CBOREncodeError(CBORError, TypeError):
    pass


# --- encoding -----------------------------------------------------------

def _head(major, n):
    m = major << 5
    if n < 24:
        return bytes((m | n,))
    if n < 0x100:
        return bytes((m | 24, n))
    if n < 0x10000:
        return struct.pack('>BH', m | 25, n)
    if n < 0x100000000:
        return struct.pack('>BI', m | 26, n)
    return struct.pack('>BQ', m | 27, n)


def _encode(out, v, depth):
    if depth > MAX_DEPTH:
        raise CBOREncodeError('value nested deeper than {} levels'.format(MAX_DEPTH))
    # bool before int: True is an int.
    if v is None:
        out.append(b'\xf6')
    elif v is True:
        out.append(b'\xf5')
    elif v is False:
        out.append(b'\xf4')
    elif isinstance(v, int):
        if 0 <= v < 1 << 64:
            out.append(_head(0, v))
        elif -(1 << 64) <= v < 0:
            out.append(_head(1, -1 - v))
        else:
            tag, n = (2, v) if v > 0 else (3, -1 - v)
            out.append(_head(6, tag))
            raw = n.to_bytes((n.bit_length() + 7) // 8, 'big')
            out.append(_head(2, len(raw)))
            out.append(raw)
    elif isinstance(v, float):
        out.append(struct.pack('>Bd', 0xfb, v))
    elif isinstance(v, (bytes, bytearray, memoryview)):
        raw = bytes(v)
        out.append(_head(2, len(raw)))
        out.append(raw)
    elif isinstance(v, str):
        raw = v.encode('utf-8')
        out.append(_head(3, len(raw)))
        out.append(raw)
    elif isinstance(v, (list, tuple)):
        out.append(_head(4, len(v)))
        for item in v:
            _encode(out, item, depth + 1)
    elif isinstance(v, dict):
        out.append(_head(5, len(v)))
        for k, item in v.items():
            _encode(out, k, depth + 1)
            _encode(out, item, depth + 1)
    elif isinstance(v, Tag):
        out.append(_head(6, v.tag))
        _encode(out, v.value, depth + 1)
    elif v is UNDEFINED:
        out.append(b'\xf7')
    else:
        raise CBOREncodeError('cannot encode {} as CBOR'.format(type(v).__name__))


def dumps(value):
    """Encodes value as CBOR (definite lengths, as cbor2 does)."""
    out = []
    _encode(out, value, 0)
    return b''.join(out)


# --- decoding -----------------------------------------------------------

class _Decoder(object):
    __slots__ = ('data', 'pos')

    def __init__(self, data):
        self.data = data
        self.pos = 0

    def take(self, n):
        end = self.pos + n
        if end > len(self.data):
            raise CBORDecodeError('truncated CBOR: {} bytes wanted at offset {}, {} left'.format(
                n, self.pos, len(self.data) - self.pos))
        b = self.data[self.pos:end]
        self.pos = end
        return b

    def argument(self, info):
        """The head's argument; None for an indefinite length (31)."""
        if info < 24:
            return info
        if info == 24:
            return self.take(1)[0]
        if info == 25:
            return struct.unpack('>H', self.take(2))[0]
        if info == 26:
            return struct.unpack('>I', self.take(4))[0]
        if info == 27:
            return struct.unpack('>Q', self.take(8))[0]
        if info == 31:
            return None
        raise CBORDecodeError('reserved additional information {} at offset {}'.format(info, self.pos - 1))

    def item(self, depth, allow_break=False):
        if depth > MAX_DEPTH:
            raise CBORDecodeError('CBOR nested deeper than {} levels'.format(MAX_DEPTH))
        start = self.pos
        initial = self.take(1)[0]
        major, info = initial >> 5, initial & 0x1f
        if major == 7:
            return self.simple(info, start, allow_break)
        n = self.argument(info)
        if major == 0:
            self.definite(n, major, start)
            return n
        if major == 1:
            self.definite(n, major, start)
            return -1 - n
        if major in (2, 3):
            raw = self.string(major, n, depth, start)
            if major == 2:
                return raw
            try:
                return raw.decode('utf-8')
            except UnicodeDecodeError as e:
                raise CBORDecodeError('text string at offset {} is not UTF-8: {}'.format(start, e))
        if major == 4:
            out = []
            if n is None:
                while True:
                    v = self.item(depth + 1, allow_break=True)
                    if v is _BREAK:
                        return out
                    out.append(v)
            self.bound(n, start)
            for _ in range(n):
                out.append(self.item(depth + 1))
            return out
        if major == 5:
            out = {}
            if n is None:
                while True:
                    k = self.item(depth + 1, allow_break=True)
                    if k is _BREAK:
                        return out
                    out[self.key(k, start)] = self.item(depth + 1)
            self.bound(2 * n, start)
            for _ in range(n):
                k = self.item(depth + 1)
                out[self.key(k, start)] = self.item(depth + 1)
            return out
        # major 6: a tag
        self.definite(n, major, start)
        v = self.item(depth + 1)
        if n in (2, 3) and isinstance(v, bytes):
            big = int.from_bytes(v, 'big')
            return big if n == 2 else -1 - big
        return Tag(n, v)

    def definite(self, n, major, start):
        if n is None:
            raise CBORDecodeError('major type {} cannot have an indefinite length (offset {})'.format(major, start))

    def bound(self, n, start):
        # Each element takes a byte at least: a count beyond what is left
        # is malformed, and must not size an allocation.
        if n > len(self.data) - self.pos:
            raise CBORDecodeError('truncated CBOR: {} elements announced at offset {}'.format(n, start))

    def string(self, major, n, depth, start):
        if n is not None:
            return bytes(self.take(n))
        chunks = []
        while True:
            at = self.pos
            initial = self.take(1)[0]
            if initial == 0xff:
                return b''.join(chunks)
            if initial >> 5 != major:
                raise CBORDecodeError('chunk of major type {} inside an indefinite string of major type {} (offset {})'
                                      .format(initial >> 5, major, at))
            m = self.argument(initial & 0x1f)
            if m is None:
                raise CBORDecodeError('nested indefinite string at offset {}'.format(at))
            chunks.append(bytes(self.take(m)))

    def key(self, k, start):
        if isinstance(k, list):
            return tuple(k)
        if isinstance(k, dict):
            raise CBORDecodeError('map key of map type in the map at offset {}'.format(start))
        return k

    def simple(self, info, start, allow_break):
        if info == 20:
            return False
        if info == 21:
            return True
        if info == 22:
            return None
        if info == 23:
            return UNDEFINED
        if info == 25:
            return struct.unpack('>e', self.take(2))[0]
        if info == 26:
            return struct.unpack('>f', self.take(4))[0]
        if info == 27:
            return struct.unpack('>d', self.take(8))[0]
        if info == 31:
            if allow_break:
                return _BREAK
            raise CBORDecodeError('unexpected break at offset {}'.format(start))
        if info < 24:
            return Simple(info)
        if info == 24:
            v = self.take(1)[0]
            if v < 32:
                raise CBORDecodeError('simple value {} in two bytes at offset {}'.format(v, start))
            return Simple(v)
        raise CBORDecodeError('reserved simple value {} at offset {}'.format(info, start))


def loads(data):
    """Decodes one CBOR item that must span all of data."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError('CBOR input must be bytes-like, not {}'.format(type(data).__name__))
    d = _Decoder(bytes(data))
    v = d.item(0)
    if d.pos != len(d.data):
        raise CBORDecodeError('{} bytes after the CBOR item'.format(len(d.data) - d.pos))
    return v
