# Portable tests for firmware/core/cbor.py: run by pytest on CPython and, unchanged, inside
# the MicroPython VM (plain asserts, no pytest features, no CPython-only modules).
try:
    from tapcash.firmware.core import cbor
except ImportError:  # on a board / in the VM the firmware tree is importable as `firmware`
    from firmware.core import cbor

# RFC 8949 Appendix A, the part inside our data model: (value, hex encoding).
VECTORS = [
    (0, "00"),
    (1, "01"),
    (10, "0a"),
    (23, "17"),
    (24, "1818"),
    (25, "1819"),
    (100, "1864"),
    (1000, "1903e8"),
    (1000000, "1a000f4240"),
    (1000000000000, "1b000000e8d4a51000"),
    (18446744073709551615, "1bffffffffffffffff"),
    (-18446744073709551616, "3bffffffffffffffff"),
    (-1, "20"),
    (-10, "29"),
    (-100, "3863"),
    (-1000, "3903e7"),
    (False, "f4"),
    (True, "f5"),
    (None, "f6"),
    (b"", "40"),
    (b"\x01\x02\x03\x04", "4401020304"),
    ("", "60"),
    ("a", "6161"),
    ("IETF", "6449455446"),
    ('"\\', "62225c"),
    ("\u00fc", "62c3bc"),
    ("\u6c34", "63e6b0b4"),
    ("\U00010151", "64f0908591"),
    ([], "80"),
    ([1, 2, 3], "83010203"),
    ([1, [2, 3], [4, 5]], "8301820203820405"),
    (list(range(1, 26)), "98190102030405060708090a0b0c0d0e0f101112131415161718181819"),
    ({}, "a0"),
    ({1: 2, 3: 4}, "a201020304"),
    ({"a": 1, "b": [2, 3]}, "a26161016162820203"),
    (["a", {"b": "c"}], "826161a161626163"),
    (
        {"a": "A", "b": "B", "c": "C", "d": "D", "e": "E"},
        "a56161614161626142616361436164614461656145",
    ),
]

# RFC 8949 Appendix A items outside the data model: each must be rejected.
REJECTED_VECTORS = [
    "c249010000000000000000",  # bignum tag
    "c349010000000000000000",
    "f90000",  # floats, all three widths
    "f98000",
    "f93c00",
    "fb3ff199999999999a",
    "fa47c35000",
    "fb7e37e43c8800759c",
    "f97c00",
    "f97e00",
    "fa7fc00000",
    "fbfff0000000000000",
    "f7",  # undefined
    "f0",  # simple(16)
    "f8ff",  # simple(255)
    "c074323031332d30332d32315432303a30343a30305a",  # tags
    "c11a514b67b0",
    "d74401020304",
    "d818456449455446",
    "5f42010243030405ff",  # indefinite lengths
    "7f657374726561646d696e67ff",
    "9fff",
    "9f018202039f0405ffff",
    "83018202039f0405ff",
    "83019f0203ff820405",
    "bf61610161629f0203ffff",
    "826161bf61626163ff",
    "bf6346756ef563416d7421ff",
]

MALFORMED = [
    "",  # empty
    "18",  # truncated argument
    "1817",  # non-shortest int
    "190017",
    "1a0000ffff",
    "1b00000000ffffffff",
    "3817",  # non-shortest negative
    "5801ff",  # non-shortest byte string length
    "780161",  # non-shortest text length
    "980101",  # non-shortest array length
    "b80101f6",  # non-shortest map length
    "1c",  # reserved additional info
    "3d",
    "5e",
    "ff",  # lone break
    "0000",  # trailing byte
    "5b00000000ffffffff",  # byte string declaring 4 GB in a 9-byte input
    "5affffffff",
    "7bffffffffffffffff",
    "9bffffffffffffffff",  # array declaring 2**64-1 items
    "bbffffffffffffffff",
    "9a7fffffff",
    "a2010201",  # map truncated
    "a201020102",  # duplicate key
    "a203040102",  # keys out of order
    "a1f501",  # bool key
    "a1f601",  # null key
    "a18001",  # array key
    "a1a001",  # map key
    "a2616101186161",  # 24 (1818) sorts before "a" (6161)... given after it: unsorted
    "6180",  # lone continuation byte
    "62c080",  # overlong NUL
    "62c1bf",  # overlong
    "63e08080",  # overlong 3-byte
    "64f0808080",  # overlong 4-byte
    "63eda080",  # surrogate U+D800
    "63edbfbf",  # surrogate U+DFFF
    "64f4908080",  # U+110000
    "61f8",  # invalid start bytes
    "61ff",
    "62e282",  # truncated sequence
    "61c3",
    "63f09080",
    "63e2282c",  # bad continuation
]


def _raises(exc, fn, *args):
    try:
        fn(*args)
    except exc:
        return True
    return False


def test_vectors_encode():
    for value, hexed in VECTORS:
        assert cbor.encode(value).hex() == hexed, hexed


def test_vectors_decode():
    for value, hexed in VECTORS:
        got = cbor.decode(bytes.fromhex(hexed))
        assert got == value, hexed
        assert type(got) is type(value), hexed


def test_decode_accepts_bytearray_and_memoryview():
    data = bytes.fromhex("a26161016162820203")
    assert cbor.decode(bytearray(data)) == {"a": 1, "b": [2, 3]}
    assert cbor.decode(memoryview(data)) == {"a": 1, "b": [2, 3]}
    assert cbor.decode(memoryview(b"\x00" + data)[1:]) == {"a": 1, "b": [2, 3]}


def test_rejected_vectors():
    for hexed in REJECTED_VECTORS:
        assert _raises(cbor.DecodeError, cbor.decode, bytes.fromhex(hexed)), hexed


def test_malformed():
    for hexed in MALFORMED:
        assert _raises(cbor.DecodeError, cbor.decode, bytes.fromhex(hexed)), hexed


def test_truncation_of_valid_encodings():
    for _, hexed in VECTORS:
        data = bytes.fromhex(hexed)
        for cut in range(len(data)):
            assert _raises(cbor.DecodeError, cbor.decode, data[:cut]), hexed


def test_deep_nesting_fails_fast():
    for head in (b"\x81", b"\xa1\x00"):
        data = head * 100000 + b"\x00"
        assert _raises(cbor.DecodeError, cbor.decode, data)
    # the limit is exact and a parameter
    assert cbor.decode(b"\x81" * 16 + b"\x00") is not None
    assert _raises(cbor.DecodeError, cbor.decode, b"\x81" * 17 + b"\x00")
    assert cbor.decode(b"\x81" * 17 + b"\x00", 17) is not None
    assert _raises(cbor.DecodeError, cbor.decode, b"\x81\x80", 1)


def test_decode_prefix():
    value, used = cbor.decode_prefix(bytes.fromhex("8301020300ff"))
    assert value == [1, 2, 3]
    assert used == 4


def test_bool_is_not_int():
    assert cbor.encode(True) == b"\xf5"
    assert cbor.encode(1) == b"\x01"
    assert cbor.encode([True, 1, False, 0]) == bytes.fromhex("84f501f400")
    assert _raises(cbor.EncodeError, cbor.encode, {True: 1})
    assert _raises(cbor.EncodeError, cbor.encode, {None: 1})


def test_encode_errors():
    for bad in (1.5, 2**64, -(2**64) - 1, object(), {1, 2}, {(1,): 2}):
        assert _raises(cbor.EncodeError, cbor.encode, bad)
    assert _raises(ValueError, cbor.encode, 0.0)  # EncodeError is a ValueError
    # a lone surrogate is not Unicode (MicroPython stores it as ED A0 80; CPython cannot encode it)
    assert _raises(cbor.EncodeError, cbor.encode, "a\ud800")
    deep = [0]
    for _ in range(16):
        deep = [deep]
    assert _raises(cbor.EncodeError, cbor.encode, deep)
    loop = []
    loop.append(loop)
    assert _raises(cbor.EncodeError, cbor.encode, loop)


def test_bytes_like_encode_as_bytes():
    assert cbor.encode(bytearray(b"\x01\x02")) == b"\x42\x01\x02"
    assert cbor.encode(memoryview(b"\x01\x02")) == b"\x42\x01\x02"
    assert cbor.encode((1, (2,))) == bytes.fromhex("82018102")


def test_keys_sorted_bytewise():
    value = {"a": 1, 1000: 2, b"": 3, -1: 4, 10: 5}
    data = cbor.encode(value)
    assert data.hex() == "a50a051903e80220044003616101"
    assert cbor.decode(data) == value


def test_int_keys_of_every_width():
    value = {2**64 - 1: 0, 1000: 1, 24: 2, 23: 3, 0: 4, 255: 5, 256: 6, 2**32: 7}
    data = cbor.encode(value)
    assert data.hex() == (
        "a80004170318180218ff05190100061903e8011b0000000100000000071bffffffffffffffff00"
    )
    assert cbor.decode(data) == value
    value = {-1: 0, -25: 1, 0: 2, -(2**64): 3, "": 4, b"": 5}
    data = cbor.encode(value)
    assert data.hex() == "a6000220003818013bffffffffffffffff0340056004"
    assert cbor.decode(data) == value
    assert _raises(cbor.EncodeError, cbor.encode, {2**64: 0})
    assert _raises(cbor.EncodeError, cbor.encode, {-(2**64) - 1: 0})


def test_protocol_shaped_round_trip():
    msg = {
        1: "payment",
        2: 1250,
        3: b"\x00" * 32,
        4: [True, None, -7],
        5: {1: b"\xff" * 64, 2: "caf\u00e9"},
    }
    data = cbor.encode(msg)
    assert cbor.decode(data) == msg
    assert cbor.encode(cbor.decode(data)) == data


def test_utf8_valid_direct():
    good = ["", "abc", "\u00fc", "\u6c34", "\U00010151", "\U0010ffff", "\ud7ff", "\ue000"]
    for s in good:
        b = s.encode("utf-8")
        assert cbor.utf8_valid(b, 0, len(b)), b
    for hexed in ("80", "c080", "e08080", "eda080", "f4908080", "f5808080", "e282", "ff"):
        b = bytes.fromhex(hexed)
        assert not cbor.utf8_valid(b, 0, len(b)), hexed


def test_encode_parts_join_to_encode():
    big = bytes(range(200))
    values = [v for v, _ in VECTORS] + [
        {0: [[1, big], [2, big[:63]], [3, big[:64]]], 1: False, 3: 70000, 2: big[:100]},
        [big, 1, "a", {b"k": 2, "t": [big]}, {}, []],
        {300: big, 24: [big, big], 2: {1: big}},
        big,
    ]
    for v in values:
        parts = cbor.encode_parts(v)
        assert b"".join(parts) == cbor.encode(v), v
    # the big byte strings are in the list themselves (referenced, not copied)
    parts = cbor.encode_parts({0: [[1, big]], 1: big[:10]})
    assert any(p is big for p in parts)
