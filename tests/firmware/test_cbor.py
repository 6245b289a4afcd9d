"""CPython tests for firmware/core/cbor.py: vectors, cbor2 agreement, properties, malformed input.

The MicroPython-compatible subset lives in tests/firmware/portable/test_core_cbor.py; its vector
tables are reused here so both runtimes check the same RFC 8949 Appendix A data.
"""

import importlib.util
import itertools
import pathlib
import tracemalloc

import cbor2
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from tapcash.firmware.core import cbor

_spec = importlib.util.spec_from_file_location(
    "_portable_cbor_vectors", pathlib.Path(__file__).parent / "portable" / "test_core_cbor.py"
)
portable = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(portable)

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# ------------------------------------------------------------------ strategies and helpers

ints = st.one_of(
    st.integers(min_value=-(2**64), max_value=2**64 - 1),
    st.integers(min_value=-30, max_value=30),
    st.sampled_from([23, 24, 255, 256, 65535, 65536, 2**32 - 1, 2**32, 2**64 - 1]),
    st.sampled_from([-24, -25, -256, -257, -65536, -65537, -(2**32), -(2**32) - 1, -(2**64)]),
)
keys = st.one_of(ints, st.text(max_size=6), st.binary(max_size=6))
scalars = st.one_of(ints, st.binary(max_size=40), st.text(max_size=20), st.booleans(), st.none())
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=6),
        st.lists(inner, max_size=4).map(tuple),
        st.dictionaries(keys, inner, max_size=6),
    ),
    max_leaves=25,
)
# Protocol-shaped: maps keyed by small ints (every key encodes to one byte).
small_key_maps = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=5), st.dictionaries(st.integers(0, 23), inner, max_size=8)
    ),
    max_leaves=25,
)


def normalise(x):
    """What decode gives back for x: tuples become lists, bytes-likes become bytes."""
    if isinstance(x, (list, tuple)):
        return [normalise(i) for i in x]
    if isinstance(x, dict):
        return {k: normalise(v) for k, v in x.items()}
    if isinstance(x, (bytearray, memoryview)):
        return bytes(x)
    return x


def depth(x):
    if isinstance(x, (list, tuple)):
        return 1 + max((depth(i) for i in x), default=0)
    if isinstance(x, dict):
        return 1 + max((depth(v) for v in x.values()), default=0)
    return 0


def uniform_key_lengths(x):
    """True if, in every map inside x, all keys encode to the same number of bytes."""
    if isinstance(x, (list, tuple)):
        return all(uniform_key_lengths(i) for i in x)
    if isinstance(x, dict):
        return len({len(cbor.encode(k)) for k in x}) <= 1 and all(
            uniform_key_lengths(v) for v in x.values()
        )
    return True


def rejects(data, **limits):
    """decode(data) raises DecodeError (and nothing else escapes)."""
    with pytest.raises(cbor.DecodeError):
        cbor.decode(data, **limits)
    return True


def peak_alloc(fn, *args):
    """Peak bytes allocated by Python while running fn(*args) (exceptions swallowed)."""
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        try:
            fn(*args)
        except cbor.DecodeError:
            pass
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def decode_or_none(data):
    """The strict decoder's contract: a value, or DecodeError - never any other exception."""
    try:
        return (cbor.decode(data),)
    except cbor.DecodeError:
        return None


# ------------------------------------------------------------------ RFC 8949 Appendix A


@pytest.mark.parametrize(("value", "hexed"), portable.VECTORS)
def test_appendix_a_vector(value, hexed):
    data = bytes.fromhex(hexed)
    assert cbor.encode(value) == data
    assert cbor.decode(data) == value
    assert cbor2.loads(data) == value
    assert cbor2.dumps(value, canonical=True) == data


@pytest.mark.parametrize("hexed", portable.REJECTED_VECTORS)
def test_appendix_a_outside_model_rejected(hexed):
    data = bytes.fromhex(hexed)
    cbor2.loads(data)  # well-formed CBOR ...
    assert rejects(data)  # ... that is not in our deterministic subset


def test_appendix_a_extremes():
    assert cbor.decode(bytes.fromhex("1bffffffffffffffff")) == 18446744073709551615
    assert cbor.decode(bytes.fromhex("3bffffffffffffffff")) == -18446744073709551616
    with pytest.raises(cbor.EncodeError):
        cbor.encode(18446744073709551616)
    with pytest.raises(cbor.EncodeError):
        cbor.encode(-18446744073709551617)


# ------------------------------------------------------------------ properties


@FUZZ
@given(values)
def test_round_trip(x):
    assume(depth(x) <= cbor.MAX_DEPTH)
    data = cbor.encode(x)
    assert cbor.decode(data) == normalise(x)
    assert cbor.encode(cbor.decode(data)) == data
    assert cbor2.loads(data) == normalise(x)
    if uniform_key_lengths(x):
        assert cbor2.dumps(x, canonical=True) == data


@FUZZ
@given(small_key_maps)
def test_small_int_keys_match_cbor2_canonical(x):
    assume(depth(x) <= cbor.MAX_DEPTH)
    data = cbor.encode(x)
    assert data == cbor2.dumps(x, canonical=True)
    assert cbor.decode(data) == x


@FUZZ
@given(st.dictionaries(keys, st.none(), min_size=2, max_size=12))
def test_map_keys_in_bytewise_order(m):
    data = cbor.encode(m)
    encoded_keys = sorted(cbor.encode(k) for k in m)
    # walk the map: skip its head, then read key, null, key, null, ...
    pos = len(data) - sum(len(k) + 1 for k in encoded_keys)
    seen = []
    while pos < len(data):
        _, used = cbor.decode_prefix(data[pos:])
        seen.append(data[pos : pos + used])
        pos += used + 1  # skip the null value
    assert seen == encoded_keys


def test_mixed_length_keys_differ_from_cbor2():
    # RFC 8949 bytewise order vs cbor2's RFC 7049 length-first order (see module docstring)
    value = {"a": 1, 1000: 2}
    ours = cbor.encode(value)
    theirs = cbor2.dumps(value, canonical=True)
    assert ours.hex() == "a21903e802616101"
    assert theirs.hex() == "a2616101" + "1903e802"
    assert cbor2.loads(ours) == value
    assert rejects(theirs)  # not in bytewise order, so not our canonical form


@FUZZ
@given(st.binary(max_size=64))
def test_fuzz_random_bytes(data):
    got = decode_or_none(data)
    if got is not None:
        assert cbor.encode(got[0]) == data  # canonical: one encoding per value


@st.composite
def mutated_encodings(draw):
    data = bytearray(cbor.encode(draw(values.filter(lambda v: depth(v) <= cbor.MAX_DEPTH))))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "set", "insert", "delete"]))
        i = draw(st.integers(0, max(len(data) - 1, 0)))
        if op == "flip" and data:
            data[i] ^= 1 << draw(st.integers(0, 7))
        elif op == "set" and data:
            data[i] = draw(st.integers(0, 255))
        elif op == "insert":
            data.insert(i, draw(st.integers(0, 255)))
        elif op == "delete" and data:
            del data[i]
    return bytes(data)


@FUZZ
@given(mutated_encodings())
def test_fuzz_mutated_encodings(data):
    got = decode_or_none(data)
    if got is not None:
        assert cbor.encode(got[0]) == data


@FUZZ
@given(values)
def test_every_truncation_rejected(x):
    assume(depth(x) <= cbor.MAX_DEPTH)
    data = cbor.encode(x)
    for cut in range(len(data)):
        assert rejects(data[:cut])
        assert rejects(memoryview(data)[:cut])


@FUZZ
@given(values, st.binary(min_size=1, max_size=4))
def test_trailing_bytes_rejected_but_prefix_decodes(x, extra):
    assume(depth(x) <= cbor.MAX_DEPTH)
    data = cbor.encode(x)
    assert rejects(data + extra)
    assert cbor.decode_prefix(data + extra) == (normalise(x), len(data))


def test_every_initial_byte():
    # Each of the 256 initial bytes plus filler: a value that re-encodes exactly, or DecodeError.
    for ib in range(256):
        for filler in (b"", b"\x00" * 9, b"\x01" * 9, b"\xff" * 9, b"\x18\x20" * 5):
            data = bytes([ib]) + filler
            try:
                value, used = cbor.decode_prefix(data)
            except cbor.DecodeError:
                continue
            assert cbor.encode(value) == data[:used]


# ------------------------------------------------------------------ malformed corpus


def _non_shortest_heads(major):
    """Heads of a major type whose argument fits a shorter form: (head, argument)."""
    mt = major << 5
    for ai, width, n in (
        (24, 1, 0),
        (24, 1, 23),
        (25, 2, 0),
        (25, 2, 5),
        (25, 2, 255),
        (26, 4, 5),
        (26, 4, 65535),
        (27, 8, 5),
        (27, 8, 2**32 - 1),
    ):
        yield bytes([mt | ai]) + n.to_bytes(width, "big"), n


def _shortest_head(major, n):
    mt = major << 5
    if n < 24:
        return bytes([mt | n])
    for ai, width in ((24, 1), (25, 2), (26, 4), (27, 8)):
        if n < 1 << (8 * width):
            return bytes([mt | ai]) + n.to_bytes(width, "big")
    raise AssertionError(n)


def _body(major, n):
    """n items of content for a head of the given major type (so only the head is wrong)."""
    if major in (2, 3):
        return b"a" * n
    if major == 4:
        return b"\x00" * n
    if major == 5:
        return b"".join(cbor.encode(i) + b"\x00" for i in range(n))
    return b""


@pytest.mark.parametrize("major", [0, 1, 2, 3, 4, 5])
def test_non_shortest_heads_rejected(major):
    for head, n in _non_shortest_heads(major):
        if n > 70000:
            body = b""  # too big to build: the head is rejected before the length is looked at
        else:
            body = _body(major, n)
        assert rejects(head + body), head.hex()
        # the shortest head with the same body is fine
        if n <= 70000:
            good = _shortest_head(major, n) + body
            assert cbor.encode(cbor.decode(good)) == good


@pytest.mark.parametrize("major", range(8))
def test_reserved_and_indefinite_additional_info_rejected(major):
    for ai in (28, 29, 30, 31):
        assert rejects(bytes([major << 5 | ai]) + b"\x00" * 9 + b"\xff")


def test_floats_tags_simple_values_break_rejected():
    for data in (
        b"\xf9\x00\x00",
        b"\xfa\x00\x00\x00\x00",
        b"\xfb" + b"\x00" * 8,
        b"\xf7",  # undefined
        b"\xf8\x20",  # simple(32)
        b"\xf8\x14",  # simple(20) in two bytes: also non-shortest
        b"\xff",
        b"\x81\xff",
        b"\xc0\x00",
        b"\xd8\x18\x40",
        b"\xdb" + b"\x00" * 8 + b"\x00",
    ):
        assert rejects(data), data.hex()
    for ai in range(20):
        assert rejects(bytes([0xE0 | ai]))


@pytest.mark.parametrize(
    "data",
    [
        bytes.fromhex("a2 0102 0103".replace(" ", "")),  # duplicate int key
        bytes.fromhex("a2 616101 616102".replace(" ", "")),  # duplicate text key
        bytes.fromhex("a2 0201 0102".replace(" ", "")),  # unsorted ints
        bytes.fromhex("a2 20 01 00 02".replace(" ", "")),  # -1 (0x20) before 0 (0x00)
        bytes.fromhex("a2 616201 616102".replace(" ", "")),  # "b" before "a"
        bytes.fromhex("a2 6161 01 1903e8 02".replace(" ", "")),  # cbor2 length-first order
        bytes.fromhex("a2 4100 01 4100 02".replace(" ", "")),  # duplicate bytes key
        bytes.fromhex("a3 00f6 01f6 00f6".replace(" ", "")),  # duplicate, not adjacent
    ],
)
def test_duplicate_and_unsorted_keys_rejected(data):
    assert rejects(data)


def test_sorted_equivalents_accepted():
    assert cbor.decode(bytes.fromhex("a2000201f6")) == {0: 2, 1: None}
    assert cbor.decode(bytes.fromhex("a2 00 02 20 01".replace(" ", ""))) == {0: 2, -1: 1}


@pytest.mark.parametrize(
    "hexed",
    [
        "61 80",  # lone continuation
        "62 c0 80",  # overlong U+0000
        "62 c1 bf",  # overlong U+007F
        "63 e0 80 80",
        "63 e0 9f bf",  # overlong U+07FF
        "64 f0 80 80 80",
        "64 f0 8f bf bf",  # overlong U+FFFF
        "63 ed a0 80",  # surrogate U+D800
        "63 ed bf bf",  # surrogate U+DFFF
        "66 ed a0 bd ed b2 a9",  # CESU-8 surrogate pair
        "64 f4 90 80 80",  # U+110000
        "64 f5 80 80 80",
        "61 f8",
        "61 fe",
        "61 ff",
        "61 c2",  # truncated 2-byte
        "62 e2 82",  # truncated 3-byte
        "63 f0 9f 98",  # truncated 4-byte
        "62 c3 28",  # bad continuation
        "63 e2 28 a1",
        "64 f0 28 8c bc",
        "a1 62 c0 80 00",  # as a map key
    ],
)
def test_bad_utf8_rejected(hexed):
    assert rejects(bytes.fromhex(hexed.replace(" ", "")))


def test_utf8_validator_matches_cpython_exhaustively():
    # The hand-written check MicroPython relies on, against CPython's strict codec:
    # every 1- and 2-byte string, every 3-byte string with an E0..EF lead and
    # continuation-ish tails, every 4-byte F0..F7 lead with each second byte.
    def agree(b):
        try:
            b.decode("utf-8")
            ok = True
        except UnicodeDecodeError:
            ok = False
        return cbor.utf8_valid(b, 0, len(b)) == ok

    for a in range(256):
        assert agree(bytes([a]))
        for b in range(256):
            assert agree(bytes([a, b]))
    tails = list(range(0x70, 0xD0)) + [0x00, 0xFF]
    for a in range(0xE0, 0xF0):
        for b in tails:
            for c in (0x7F, 0x80, 0xBF, 0xC0):
                assert agree(bytes([a, b, c]))
    for a in range(0xF0, 0xF8):
        for b in range(256):
            for tail in (b"\x80\x80", b"\xbf\xbf", b"\x80\x7f", b"\xc0\x80"):
                assert agree(bytes([a, b]) + tail)


@FUZZ
@given(st.binary(max_size=12).map(lambda b: bytes(x | 0x80 if x & 1 else x for x in b)))
def test_utf8_validator_matches_cpython_random(b):
    try:
        b.decode("utf-8")
        ok = True
    except UnicodeDecodeError:
        ok = False
    assert cbor.utf8_valid(b, 0, len(b)) == ok
    assert cbor.utf8_valid(b"xx" + b + b"yy", 2, 2 + len(b)) == ok


HUGE = [
    "5a ffffffff",  # bytes, 4-byte length
    "5b ffffffffffffffff",  # bytes, 8-byte length
    "5b 00000000ffffffff",
    "5a 7fffffff 00010203",
    "7a ffffffff",  # text
    "7b ffffffffffffffff",
    "7a 00100000 61",
    "9a ffffffff",  # array
    "9b ffffffffffffffff",
    "9a 00100000 00",
    "ba ffffffff",  # map
    "bb ffffffffffffffff",
    "ba 00100000 00",
    "bb 7fffffffffffffff 0000",
    "81 81 81 5a 7fffffff",  # nested
    "a1 00 9b 0000000100000000",
]


@pytest.mark.parametrize("hexed", HUGE)
def test_huge_declared_lengths_fail_fast_without_allocating(hexed):
    data = bytes.fromhex(hexed.replace(" ", ""))
    assert rejects(data)
    # The boards' decoder allocates nothing for the declared length; the host's fast path
    # (cbor2) reads at most one 64 KiB chunk before it finds the input too short.
    assert peak_alloc(cbor._decode_strict, data) < 64 * 1024
    assert peak_alloc(cbor.decode, data) < 80 * 1024


def test_item_count_checked_against_remaining_bytes():
    # 1000 items declared, 999 present: fails before building anything large
    data = b"\x99\x03\xe8" + b"\x00" * 999
    assert rejects(data)
    assert cbor.decode(data + b"\x00") == [0] * 1000
    # maps need two bytes per entry
    assert rejects(b"\xb9\x03\xe8" + b"\x00" * 1999)
    # and a per-container limit on top
    assert rejects(b"\x83\x00\x00\x00", max_items=2)
    assert cbor.decode(b"\x83\x00\x00\x00", max_items=3) == [0, 0, 0]
    assert rejects(b"\xa2\x00\x00\x01\x00", max_items=1)


@pytest.mark.parametrize("head", [b"\x81", b"\xa1\x00", b"\x9f", b"\xbf\x00"])
def test_100k_nested_containers_fail_fast(head):
    data = head * 100_000 + b"\x00"
    assert rejects(data)
    assert peak_alloc(cbor.decode, data) < 1024 * 1024


def test_depth_limit_is_a_parameter():
    deep = b"\x81" * 40 + b"\x00"
    assert rejects(deep)
    value = cbor.decode(deep, max_depth=40)
    assert rejects(deep, max_depth=39)
    assert cbor.encode(value, max_depth=40) == deep
    with pytest.raises(cbor.EncodeError):
        cbor.encode(value)
    # a deep limit costs heap, not C stack: no RecursionError however deep
    very = b"\x81" * 50_000 + b"\x00"
    assert cbor.decode(very, max_depth=50_000) is not None


def test_non_bytes_input_is_a_decode_error():
    strided = memoryview(b"\x82\xff\x00\xff\x00")[::2]  # 82 00 00 if it were read
    for bad in ("a0", 5, None, [0], strided):
        with pytest.raises(cbor.DecodeError):
            cbor.decode(bad)


def test_memoryview_of_other_formats_reads_bytes():
    import array

    arr = array.array("b", [-127])  # 0x81 as a signed char
    assert rejects(memoryview(arr))  # 0x81: array of one item, truncated
    arr = array.array("b", [-126, 1, 2])  # 82 01 02
    assert cbor.decode(memoryview(arr)) == [1, 2]


def test_decode_does_not_copy_the_input():
    payload = b"\xab" * 2_000_000
    data = bytearray(cbor.encode([payload, 1]))
    peak = peak_alloc(cbor.decode, data)
    assert peak < 2_000_000 + 256 * 1024  # the one bytes object it returns, plus small change


def test_encode_rejects_unsupported():
    for bad in (1.0, float("nan"), complex(1, 1), {1, 2}, frozenset(), object(), cbor2.undefined):
        with pytest.raises(cbor.EncodeError):
            cbor.encode(bad)
    for bad_key in (True, False, None, 1.5, (1, 2), frozenset()):
        with pytest.raises(cbor.EncodeError):
            cbor.encode({bad_key: 1})
    with pytest.raises(cbor.EncodeError):
        cbor.encode("\udc80")
    assert issubclass(cbor.EncodeError, ValueError)
    assert issubclass(cbor.DecodeError, ValueError)


def test_array_and_int_key_map_leaves_inline():
    # the encoder writes bytes and non-negative int leaves of arrays and int-key maps in
    # place: every head width, and the same errors as at the top level
    for n in (0, 23, 24, 255, 256, 65535, 65536):
        b = b"\x01" * n
        assert cbor.encode([b]) == cbor2.dumps([b], canonical=True)
        assert cbor.encode({5: b}) == cbor2.dumps({5: b}, canonical=True)
    for v in (0, 23, 24, 255, 256, 65535, 65536, 2**32 - 1, 2**32, 2**64 - 1, -1, -(2**64)):
        assert cbor.encode([v, (v,)]) == cbor2.dumps([v, [v]], canonical=True)
        assert cbor.encode({0: v, 30: v}) == cbor2.dumps({0: v, 30: v}, canonical=True)
    for bad in (2**64, -(2**64) - 1, 1.0):
        with pytest.raises(cbor.EncodeError):
            cbor.encode([0, bad])
        with pytest.raises(cbor.EncodeError):
            cbor.encode({1: bad})
    assert cbor.encode([True, None, False, bytearray(b"ab")]) == b"\x84\xf5\xf6\xf4\x42ab"


def test_int_subclasses_and_bools():
    import enum

    class Tag(enum.IntEnum):
        A = 7

    assert cbor.encode(Tag.A) == b"\x07"
    assert cbor.encode({Tag.A: True}) == b"\xa1\x07\xf5"
    assert cbor.encode([True, 1]) == b"\x82\xf5\x01"
    assert cbor.decode(b"\xf5") is True
    assert cbor.decode(b"\x01") == 1 and cbor.decode(b"\x01") is not True


# ------------------------------------------------------------------ the CPython fast path
# On CPython cbor.decode is cbor_cpython's: cbor2 parses, the firmware's rules decide. It must
# answer exactly like the strict decoder every board runs (cbor._decode_strict).


def _same_answer(data):
    try:
        want = ("ok", repr(cbor._decode_strict(data)))
    except cbor.DecodeError:
        want = ("error",)
    try:
        got = ("ok", repr(cbor.decode(data)))
    except cbor.DecodeError:
        got = ("error",)
    assert got == want, data.hex()


def test_the_host_decodes_through_the_fast_path():
    assert cbor.decode is not cbor._decode_strict


@FUZZ
@given(values, st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), max_size=3))
def test_fast_path_agrees_with_the_strict_decoder_on_edited_encodings(value, edits):
    data = bytearray(cbor.encode(value))
    for pos, byte in edits:
        if data:
            data[pos % len(data)] = byte
    _same_answer(bytes(data))


@FUZZ
@given(small_key_maps, st.booleans(), st.booleans(), st.booleans())
def test_fast_path_agrees_on_cbor2s_other_encodings(value, sharing, strings, indefinite):
    # Value sharing, string references and indefinite lengths make other encodings of the
    # same value; only the deterministic one may decode.
    try:
        data = cbor2.dumps(
            value,
            value_sharing=sharing,
            string_referencing=strings,
            indefinite_containers=indefinite,
        )
    except (ValueError, TypeError, cbor2.CBOREncodeError):
        return
    _same_answer(data)


# cbor.encode on CPython is cbor_cpython's too: cbor2's C encoder when the value is plain, the
# strict encoder (cbor._enc, what every board runs) otherwise; the same bytes or the same error.


def _encode_strict(x, max_depth=cbor.MAX_DEPTH):
    out = bytearray()
    cbor._enc(x, out, max_depth)
    return bytes(out)


def _same_encoding(x, max_depth=cbor.MAX_DEPTH):
    try:
        want = ("ok", _encode_strict(x, max_depth))
    except cbor.EncodeError as e:
        want = ("error", str(e))
    try:
        got = ("ok", cbor.encode(x, max_depth))
    except cbor.EncodeError as e:
        got = ("error", str(e))
    assert got == want, repr(x)
    return got


def test_the_host_encodes_through_the_fast_path():
    assert cbor.encode.__module__.endswith("cbor_cpython")
    assert cbor.encode_into.__module__.endswith("cbor_cpython")


# Protocol-shaped values with what the fast path must hand to the strict encoder: keys out of
# order, bool and negative keys, big ints, bools and int subclasses, bytearray, memoryview,
# floats, lone surrogates, deep nesting.
odd_scalars = st.one_of(
    scalars,
    st.integers(min_value=-(2**70), max_value=2**70),
    st.binary(max_size=30).map(bytearray),
    st.binary(max_size=30).map(memoryview),
    st.floats(allow_nan=False),
    st.sampled_from(["\ud800", "a\udfff", True, False, 1.0]),
)
odd_values = st.recursive(
    odd_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=5),
        st.lists(inner, max_size=4).map(tuple),
        st.dictionaries(st.integers(0, 40), inner, max_size=8),  # any insertion order
        st.dictionaries(st.one_of(st.integers(-3, 30), st.booleans()), inner, max_size=4),
        st.dictionaries(keys, inner, max_size=4),
    ),
    max_leaves=30,
)


@FUZZ
@given(odd_values, st.integers(0, 18))
def test_fast_encoder_agrees_with_the_strict_encoder(value, max_depth):
    _same_encoding(value)
    _same_encoding(value, max_depth)


@FUZZ
@given(odd_values, st.integers(0, 18))
def test_fast_encode_into_appends_the_strict_encoding(value, max_depth):
    try:
        want = ("ok", b"head" + _encode_strict(value, max_depth))
    except cbor.EncodeError as e:
        want = ("error", str(e))
    out = bytearray(b"head")
    try:
        assert cbor.encode_into(value, out, max_depth) is out
        got = ("ok", bytes(out))
    except cbor.EncodeError as e:
        got = ("error", str(e))
    assert got == want, repr(value)


@FUZZ
@given(small_key_maps)
def test_fast_encoder_agrees_on_protocol_shapes(value):
    assert _same_encoding(value)[0] == "ok" or depth(value) > cbor.MAX_DEPTH


def test_fast_encoder_edges():
    for value in (
        {1: 2, 0: 1},  # keys out of order: the strict encoder sorts them
        {True: 1},
        {-1: 0, 24: 1},
        [2**64 - 1, -(2**64)],
        [2**64],
        [-(2**64) - 1],
        "\ud800",
        [[[[]]]],
        (1, (2, b"x")),
        [bytearray(b"ab"), memoryview(b"cd")],
    ):
        _same_encoding(value)
        _same_encoding(value, 2)
    nested = []
    for _ in range(cbor.MAX_DEPTH):
        nested = [nested]
    assert _same_encoding(nested)[0] == "error"  # 17 deep


def _head(mt, n, ai):
    """A CBOR head with the argument in the chosen width (ai 0: inline; 24..27)."""
    if ai == 0:
        return bytes([mt | n])
    return bytes([mt | ai]) + n.to_bytes(1 << (ai - 24), "big")


def test_a_shared_value_padded_to_the_deterministic_length_is_refused():
    # [X, X] with X a 30-byte string is 65 bytes deterministically. Written as
    # [shareable(X), sharedref(0)] it is shorter; non-shortest heads pad it back to exactly 65
    # bytes. Length alone would take it for the deterministic encoding: tags must be refused.
    x = bytes(range(30))
    det = cbor.encode([x, x])
    widths = [0, 24, 25, 26, 27]
    for a_arr, a_tag, a_str, a_ref, a_idx in itertools.product(
        widths, widths[1:], widths[1:], widths[1:], widths
    ):
        data = (
            _head(0x80, 2, a_arr)
            + _head(0xC0, 28, a_tag)
            + _head(0x40, 30, a_str)
            + x
            + _head(0xC0, 29, a_ref)
            + _head(0, 0, a_idx)
        )
        if len(data) == len(det):
            assert cbor2.loads(data) == [x, x]  # what a plain cbor2 read gives
            with pytest.raises(cbor.DecodeError):
                cbor.decode(data)
            return
    raise AssertionError("no padding found")


def test_board_images_leave_the_host_accelerator_out():
    from tapcash.host.device.deploy import firmware_sources

    for role in ("wallet", "pos"):
        names = [rel for _, rel in firmware_sources(role)]
        assert "core/cbor.py" in names
        assert not [n for n in names if n.endswith("_cpython.py")]
