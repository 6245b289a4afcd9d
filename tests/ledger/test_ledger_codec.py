"""The ingest fast path reads records, envelopes and payment bodies without the general decoder
(host/ledger/codec.py: flat_map, split_envelope). Whatever it accepts, the strict decoder
(firmware/core/cbor.py) accepts with the same value; whatever it declines goes to the strict
decoder, which decides. Checked on valid encodings and on mutations of them. Likewise a wallet's
payment record read whole (codec.payment_record) against the general reads, and an upload's
records checked as a whole (models.IngestIn) against one pydantic model per record."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import Field, ValidationError

from tapcash.firmware.core import cbor
from tapcash.host.ledger.codec import flat_map, payment_record, split_envelope
from tapcash.host.ledger.models import RECORDS_MAX, In, IngestIn, RecordIn

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


# ---- a wallet's payment record read whole (codec.payment_record) ------------------------------
def _general(raw: bytes) -> tuple | None:
    """What flat_map(record) -> split_envelope -> flat_map(body) gives for a record of the
    firmware's main-purse layout (keys 0..9, purse 0, no programme), else None."""
    rec = flat_map(raw)
    if rec is None or sorted(rec) != [0, 1] or rec[0] != 1 or type(rec[1]) is not bytes:
        return None
    parts = split_envelope(rec[1])
    body = flat_map(parts[0]) if parts is not None else None
    if body is None or sorted(body) != list(range(10)) or body[6] != 0:
        return None
    sizes = {0: 8, 3: 8, 4: 16, 5: 32}
    if any(type(body[k]) is not bytes or len(body[k]) != n for k, n in sizes.items()):
        return None
    if any(type(body[k]) is not int for k in (1, 2, 6, 7, 8)) or body[9] not in (1, 2):
        return None
    return (rec[1], parts[0], parts[1], (body[0], body[1], body[2], body[3], body[4], body[5],
                                         body[7], body[8], body[9]))


u64 = st.one_of(st.integers(0, 2**64 - 1),
                st.sampled_from([0, 1, 23, 24, 255, 256, 65535, 65536, 2**32 - 1, 2**32]))


@st.composite
def payment_records(draw: st.DrawFn) -> bytes:
    body = {0: draw(st.binary(min_size=8, max_size=8)), 1: draw(u64), 2: draw(u64),
            3: draw(st.binary(min_size=8, max_size=8)), 4: draw(st.binary(min_size=16,
                                                                          max_size=16)),
            5: draw(st.binary(min_size=32, max_size=32)), 6: 0, 7: draw(u64), 8: draw(u64),
            9: draw(st.sampled_from([1, 2]))}
    env = cbor.encode([cbor.encode(body), draw(st.binary(min_size=64, max_size=64))])
    return cbor.encode({0: 1, 1: env})


@FUZZ
@given(payment_records())
def test_payment_records_read_whole_as_the_general_path_reads_them(raw: bytes) -> None:
    assert payment_record(raw) == _general(raw) is not None


@FUZZ
@given(mutated(payment_records()))
def test_mutated_payment_records_are_declined_or_read_alike(raw: bytes) -> None:
    got = payment_record(raw)
    if got is not None:
        assert got == _general(raw)
        assert _strict(raw)[0] == "ok"


# ---- an upload's records checked as a whole (models._records) --------------------------------
class _PerRecord(In):
    """IngestIn as it was validated before: one RecordIn per record."""

    device: str = IngestIn.model_fields["device"]
    records: list[RecordIn] = Field(default_factory=list, max_length=RECORDS_MAX)
    status: str = IngestIn.model_fields["status"]


def _outcome(model: type, records: object) -> object:
    try:
        got = model.model_validate({"device": "00" * 8, "records": records,
                                    "status": "QUJD"}).records
    except ValidationError as e:
        return ("422", [(err["type"], err["loc"]) for err in e.errors()])
    return [r if type(r) is dict else r.model_dump() for r in got]


text = st.one_of(st.text(max_size=8), st.sampled_from(["QUJD", "a\x00b", "\ud800", "é", ""]),
                 st.just("A" * 65536), st.just("A" * 65537))
seq = st.one_of(st.integers(-2, 2**53 + 1), st.booleans(), st.floats(allow_nan=False,
                                                                      max_value=1e16),
                st.sampled_from([1, 2**53 - 1, 2**53, 3.0, "3"]), st.none())
item = st.one_of(st.fixed_dictionaries({"seq": seq, "record": text}),
                 st.fixed_dictionaries({"seq": seq, "record": text},
                                       optional={"extra": st.integers()}),
                 st.dictionaries(st.sampled_from(["seq", "record", "x"]), st.one_of(seq, text),
                                 max_size=3),
                 st.integers(), st.lists(st.integers(), max_size=2), st.text(max_size=3))


@FUZZ
@given(st.one_of(st.lists(item, max_size=6), st.dictionaries(st.text(max_size=2), item,
                                                             max_size=2), st.integers()))
def test_records_checked_as_a_whole_as_one_model_per_record(records: object) -> None:
    assert _outcome(IngestIn, records) == _outcome(_PerRecord, records)


def test_a_batch_over_the_records_max_is_the_same_422() -> None:
    records = [{"seq": 1, "record": "QUJD"}] * (RECORDS_MAX + 1)
    assert _outcome(IngestIn, records) == _outcome(_PerRecord, records)
    assert _outcome(IngestIn, records)[0] == "422"  # type: ignore[index]
