"""The ingest fast path reads records, envelopes and payment bodies without the general decoder
(host/ledger/codec.py: flat_map, split_envelope). Whatever it accepts, the strict decoder
(firmware/core/cbor.py) accepts with the same value; whatever it declines goes to the strict
decoder, which decides. Checked on valid encodings and on mutations of them."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tapcash.firmware.core import cbor
from tapcash.host.ledger.codec import flat_map, split_envelope

FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])

leaf = st.one_of(st.integers(0, 2**64 - 1), st.binary(max_size=300),
                 st.sampled_from([0, 23, 24, 255, 256, 65535, 65536, 2**32 - 1, 2**32]))
other = st.one_of(st.integers(-(2**64), -1), st.text(max_size=5), st.booleans(), st.none(),
                  st.lists(st.integers(0, 5), max_size=3))
flat = st.dictionaries(st.integers(0, 23), leaf, max_size=12)
mixed = st.dictionaries(st.integers(0, 40), st.one_of(leaf, other), max_size=8)


def _strict(data: bytes) -> object:
    try:
        return ("ok", cbor.decode(data))
    except ValueError:
        return ("error", None)


@FUZZ
@given(flat)
def test_flat_maps_read_as_the_strict_decoder_reads_them(m: dict) -> None:
    data = cbor.encode(m)
    assert flat_map(data) == m == cbor.decode(data)


@FUZZ
@given(mixed)
def test_other_maps_are_declined_or_read_alike(m: dict) -> None:
    data = cbor.encode(m)
    got = flat_map(data)
    assert got is None or got == cbor.decode(data)


@st.composite
def mutated(draw: st.DrawFn, base: st.SearchStrategy[bytes]) -> bytes:
    data = bytearray(draw(base))
    for _ in range(draw(st.integers(1, 3))):
        op = draw(st.sampled_from(["flip", "cut", "insert", "drop"]))
        i = draw(st.integers(0, max(0, len(data) - 1)))
        if op == "flip" and data:
            data[i] ^= 1 << draw(st.integers(0, 7))
        elif op == "cut":
            del data[i:]
        elif op == "insert":
            data[i:i] = bytes([draw(st.integers(0, 255))])
        elif op == "drop" and data:
            del data[i]
    return bytes(data)


maps = flat.map(cbor.encode)
envelopes = st.tuples(st.binary(max_size=300), st.binary(min_size=64, max_size=64)).map(
    lambda t: cbor.encode([t[0], t[1]]))


@FUZZ
@given(mutated(maps))
def test_mutated_maps_are_declined_or_read_alike(data: bytes) -> None:
    got = flat_map(data)
    if got is not None:
        assert _strict(data) == ("ok", got)


@FUZZ
@given(envelopes)
def test_envelopes_split_as_the_strict_decoder_reads_them(data: bytes) -> None:
    assert list(split_envelope(data)) == cbor.decode(data)


@FUZZ
@given(mutated(envelopes))
def test_mutated_envelopes_are_declined_or_read_alike(data: bytes) -> None:
    got = split_envelope(data)
    if got is not None:
        status, value = _strict(data)
        assert status == "ok" and value == list(got) and len(got[1]) == 64
