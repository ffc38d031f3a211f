"""greengrasssdk.stream_manager.cbor against RFC 8949's Appendix A and the
shapes the stream manager protocol carries."""
import math
import unittest

import support  # noqa: F401 (puts the shims on sys.path)
from greengrasssdk.stream_manager import cbor

# (value, encoding) pairs of RFC 8949 Appendix A our encoder writes the same
# way (it writes every float as a double, so floats are decode-only below).
ENCODED = [
    (0, '00'), (1, '01'), (10, '0a'), (23, '17'), (24, '1818'), (25, '1819'), (100, '1864'), (1000, '1903e8'),
    (1000000, '1a000f4240'), (1000000000000, '1b000000e8d4a51000'),
    (18446744073709551615, '1bffffffffffffffff'), (18446744073709551616, 'c249010000000000000000'),
    (-18446744073709551616, '3bffffffffffffffff'), (-18446744073709551617, 'c349010000000000000000'),
    (-1, '20'), (-10, '29'), (-100, '3863'), (-1000, '3903e7'),
    (False, 'f4'), (True, 'f5'), (None, 'f6'),
    (b'', '40'), (b'\x01\x02\x03\x04', '4401020304'),
    ('', '60'), ('a', '6161'), ('IETF', '6449455446'), ('"\\', '62225c'), ('\u00fc', '62c3bc'),
    ('\u6c34', '63e6b0b4'), ('\U00010151', '64f0908591'),
    ([], '80'), ([1, 2, 3], '83010203'), ([1, [2, 3], [4, 5]], '8301820203820405'),
    (list(range(1, 26)), '98190102030405060708090a0b0c0d0e0f101112131415161718181819'),
    ({}, 'a0'), ({1: 2, 3: 4}, 'a201020304'), ({'a': 1, 'b': [2, 3]}, 'a26161016162820203'),
    (['a', {'b': 'c'}], '826161a161626163'),
    ({'a': 'A', 'b': 'B', 'c': 'C', 'd': 'D', 'e': 'E'}, 'a56161614161626142616361436164614461656145'),
]

FLOATS = [
    (0.0, 'f90000'), (-0.0, 'f98000'), (1.0, 'f93c00'), (1.1, 'fb3ff199999999999a'), (1.5, 'f93e00'),
    (65504.0, 'f97bff'), (100000.0, 'fa47c35000'), (3.4028234663852886e+38, 'fa7f7fffff'),
    (1.0e+300, 'fb7e37e43c8800759c'), (5.960464477539063e-8, 'f90001'), (0.00006103515625, 'f90400'),
    (-4.0, 'f9c400'), (-4.1, 'fbc010666666666666'), (math.inf, 'f97c00'), (-math.inf, 'f9fc00'),
    (math.inf, 'fa7f800000'), (-math.inf, 'fbfff0000000000000'),
]

# Indefinite lengths (Appendix A), as a Jackson-based server may send.
INDEFINITE = [
    ('5f42010243030405ff', b'\x01\x02\x03\x04\x05'),
    ('7f657374726561646d696e67ff', 'streaming'),
    ('9fff', []),
    ('9f018202039f0405ffff', [1, [2, 3], [4, 5]]),
    ('9f01820203820405ff', [1, [2, 3], [4, 5]]),
    ('83018202039f0405ff', [1, [2, 3], [4, 5]]),
    ('83019f0203ff820405', [1, [2, 3], [4, 5]]),
    ('9f0102030405060708090a0b0c0d0e0f101112131415161718181819ff', list(range(1, 26))),
    ('bf61610161629f0203ffff', {'a': 1, 'b': [2, 3]}),
    ('826161bf61626163ff', ['a', {'b': 'c'}]),
    ('bf6346756ef563416d7421ff', {'Fun': True, 'Amt': -2}),
]


class EncodeTest(unittest.TestCase):
    def test_rfc_vectors(self):
        for value, hexed in ENCODED:
            with self.subTest(value=value):
                self.assertEqual(cbor.dumps(value).hex(), hexed)

    def test_floats_are_doubles(self):
        self.assertEqual(cbor.dumps(1.5).hex(), 'fb3ff8000000000000')
        self.assertEqual(cbor.dumps(1.1).hex(), 'fb3ff199999999999a')

    def test_bytes_like_and_tuples(self):
        self.assertEqual(cbor.dumps(bytearray(b'ab')), cbor.dumps(b'ab'))
        self.assertEqual(cbor.dumps(memoryview(b'ab')), cbor.dumps(b'ab'))
        self.assertEqual(cbor.dumps((1, 2)), cbor.dumps([1, 2]))

    def test_unsupported_types_are_refused(self):
        for v in (object(), {1, 2}, 1j):
            with self.assertRaises(cbor.CBOREncodeError):
                cbor.dumps(v)
        # A TypeError too, as json.dumps raises for what it cannot encode.
        with self.assertRaises(TypeError):
            cbor.dumps(object())


class DecodeTest(unittest.TestCase):
    def test_rfc_vectors(self):
        for value, hexed in ENCODED:
            with self.subTest(hexed=hexed):
                self.assertEqual(cbor.loads(bytes.fromhex(hexed)), value)

    def test_floats(self):
        for value, hexed in FLOATS:
            with self.subTest(hexed=hexed):
                got = cbor.loads(bytes.fromhex(hexed))
                self.assertIsInstance(got, float)
                self.assertEqual(got, value)
                self.assertEqual(math.copysign(1, got), math.copysign(1, value))
        for hexed in ('f97e00', 'fa7fc00000', 'fb7ff8000000000000'):
            self.assertTrue(math.isnan(cbor.loads(bytes.fromhex(hexed))))

    def test_indefinite_lengths(self):
        for hexed, value in INDEFINITE:
            with self.subTest(hexed=hexed):
                self.assertEqual(cbor.loads(bytes.fromhex(hexed)), value)

    def test_simple_values_tags_and_undefined(self):
        self.assertIs(cbor.loads(bytes.fromhex('f7')), cbor.UNDEFINED)
        self.assertEqual(cbor.loads(bytes.fromhex('f0')), cbor.Simple(16))
        self.assertEqual(cbor.loads(bytes.fromhex('f8ff')), cbor.Simple(255))
        self.assertEqual(cbor.loads(bytes.fromhex('c074323031332d30332d32315432303a30343a30305a')),
                         cbor.Tag(0, '2013-03-21T20:04:00Z'))
        self.assertEqual(cbor.loads(bytes.fromhex('c11a514b67b0')), cbor.Tag(1, 1363896240))
        self.assertEqual(cbor.loads(bytes.fromhex('d82076687474703a2f2f7777772e6578616d706c652e636f6d')),
                         cbor.Tag(32, 'http://www.example.com'))

    def test_array_map_keys_become_tuples(self):
        self.assertEqual(cbor.loads(bytes.fromhex('a182010203')), {(1, 2): 3})

    def test_malformed_input_is_a_decode_error(self):
        bad = {
            '': 'empty',
            '18': 'truncated argument',
            '1a0001': 'truncated argument',
            '43010203ff': 'trailing byte',
            '4401': 'truncated byte string',
            '62c3': 'truncated text string',
            '62c328': 'invalid UTF-8',
            '83 01 02'.replace(' ', ''): 'array shorter than announced',
            'a20102': 'map shorter than announced',
            '9f0102': 'indefinite array without break',
            'bf6161': 'indefinite map without value or break',
            'ff': 'break outside an indefinite item',
            '1c': 'reserved additional information',
            '5f4101610263ff': 'text chunk in a byte string',
            '5f5f4101ffff': 'nested indefinite string',
            '1f': 'indefinite integer',
            'c1ff': 'tag of a break',
            'a1a00101': 'map as a map key',
            '9b7fffffffffffffff': 'an array claiming 2^63 elements',
            'f818': 'simple value below 32 in two bytes',
        }
        for hexed, why in bad.items():
            with self.subTest(why=why):
                with self.assertRaises(cbor.CBORDecodeError):
                    cbor.loads(bytes.fromhex(hexed))

    def test_nesting_is_bounded(self):
        deep = b'\x81' * (cbor.MAX_DEPTH + 2) + b'\x00'
        with self.assertRaises(cbor.CBORDecodeError):
            cbor.loads(deep)
        ok = b'\x81' * 100 + b'\x00'
        v = cbor.loads(ok)
        for _ in range(100):
            v = v[0]
        self.assertEqual(v, 0)

    def test_input_must_be_bytes(self):
        with self.assertRaises(TypeError):
            cbor.loads('a0')


class RoundTripTest(unittest.TestCase):
    def test_protocol_shapes(self):
        values = [
            {'requestId': '0f8e7d6c-5b4a-4938-8271-605f4e3d2c1b', 'name': 'readings', 'payload': bytes(range(256)) * 4096},
            {'requestId': 'r', 'definition': {'name': 's', 'maxSize': 268435456, 'streamSegmentSize': 16777216,
                                              'timeToLiveMillis': 9223372036854, 'strategyOnFull': 1, 'persistence': 0,
                                              'flushOnWrite': False,
                                              'exportDefinition': {'http': [{'identifier': 'h', 'uri': 'http://x'}],
                                                                   'IotSitewise': []}}},
            {'messages': [{'streamName': 's', 'sequenceNumber': 2 ** 63 - 1, 'ingestTime': 1700000000000,
                           'payload': b''}], 'status': 0},
            [None, True, False, -2 ** 63, 2 ** 64 - 1, 2 ** 70, -2 ** 70, 0.1, 'caf\u00e9', ''],
        ]
        for v in values:
            self.assertEqual(cbor.loads(cbor.dumps(v)), v)

    def test_lengths_at_every_head_size(self):
        for n in (0, 23, 24, 255, 256, 65535, 65536):
            for v in (b'x' * n, 'y' * n, [0] * n, {i: i for i in range(n)} if n < 300 else {}):
                self.assertEqual(cbor.loads(cbor.dumps(v)), v)


if __name__ == '__main__':
    unittest.main()
