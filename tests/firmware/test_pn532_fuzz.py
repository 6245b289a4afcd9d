"""Fuzz of the PN532 driver (firmware/hal/pn532*.py) on fake I2C, SPI and UART buses.

The chip (pn532_fakes.Chip) sends what Hypothesis draws: well-formed frames (ACK, NACK, the error
frame, responses to the last command with any data, extended or not, with 0-5 leading zeros),
frames with one byte flipped, wrong response codes, raw bytes, runs of zeros; each after a few
"not ready" polls; then a tail repeated for ever, or silence. I2C transactions may fail with
OSError. Against that, every driver call must:

- return, or raise PN532Error (LinkError from the hal.Link), and nothing else;
- within its timeout on the driver's own clock (a SimClock: no timing of this machine), see
  Rig.budget_ms for the slack allowed;
- with at most pn532_fakes.MAX_OPS bus transactions (the Guard stops it otherwise).

CI runs a fixed, small number of examples per transport (a few seconds in all); more with
TAPCASH_PN532_FUZZ_EXAMPLES=N. Coverage-guided, where atheris installs (pip install atheris, a
wheel for CPython 3.11 on x86-64 Linux), the same property runs under libFuzzer through
Hypothesis' fuzz_one_input:

    python tests/firmware/test_pn532_fuzz.py -runs=100000 [-max_len=4096] [corpus-dir]
    TAPCASH_PN532_ATHERIS=100000 pytest tests/firmware/test_pn532_fuzz.py -k atheris   # the same,
    in pytest
"""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

# pn532_fakes (tests/support/), also when run as a script
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "support"))

from pn532_fakes import ACK, ERROR_FRAME, KINDS, NACK, Resp, Rig, frame, rig  # noqa: E402

from tapcash.firmware.core.hal import LinkError  # noqa: E402
from tapcash.firmware.hal.pn532 import MAX_PARTS  # noqa: E402
from tapcash.firmware.hal.pn532_card import PN532Card  # noqa: E402
from tapcash.firmware.hal.pn532_reader import PN532Reader, PN532ReaderLink, Target  # noqa: E402

EXAMPLES = int(os.environ.get("TAPCASH_PN532_FUZZ_EXAMPLES", "100"))


class PN532Both(PN532Reader, PN532Card):
    """Both roles on one chip, so one rig can run either's calls."""


def _data() -> st.SearchStrategy[bytes]:
    status = st.sampled_from([0x00, 0x40, 0x29, 0x01, 0x00])  # ok, MI, released, timeout
    payload = st.one_of(st.binary(max_size=12), st.binary(min_size=250, max_size=262))
    return st.one_of(
        st.binary(max_size=12),
        st.tuples(status, payload).map(lambda sp: bytes((sp[0],)) + sp[1]),
        st.just(b"\x32\x01\x06\x07"),  # a firmware version
        st.just(bytes.fromhex("01010044200704a1b2c3d4e5f60578807002")),  # an ISO-DEP target
    )


def _resp() -> st.SearchStrategy[Resp]:
    return st.builds(
        Resp,
        data=_data(),
        zeros=st.sampled_from([2, 2, 2, 1, 3, 4, 5, 0]),
        ext=st.sampled_from([None, None, True]),
        delta=st.sampled_from([1, 1, 1, 1, 0, 2, 0x7E]),
        flip=st.none() | st.none() | st.tuples(st.integers(0, 300), st.integers(1, 255)),
    )


ITEM = st.one_of(
    st.just(ACK),
    _resp(),
    st.sampled_from([NACK, ERROR_FRAME, bytes.fromhex("0000ff00ff000000ff00ff00")]),
    st.binary(max_size=300),
    st.integers(1, 300).map(bytes),  # a line of zeros
    st.binary(max_size=20).map(lambda b: frame(b"\xd5" + b)),  # any response code
    st.binary(max_size=270).map(lambda b: frame(b, zeros=4, ext=True) if b else b""),
)
WAIT = st.sampled_from([0, 0, 0, 1, 3, 40])
ENTRY = st.tuples(ITEM, WAIT)
# a dialogue: ACK then a response, again, with noise in between now and then (deeper paths)
DIALOGUE = st.lists(
    st.tuples(st.tuples(st.just(ACK), WAIT), st.tuples(_resp(), WAIT), st.lists(ENTRY, max_size=1)),
    max_size=4,
).map(lambda steps: [e for ack, resp, noise in steps for e in (ack, resp, *noise)])
SCRIPT = st.one_of(st.lists(ENTRY, max_size=8), DIALOGUE)

OPS = st.one_of(
    st.tuples(st.just("call"), st.integers(0, 255), st.sampled_from([0, 5, 50, 200])),
    st.tuples(st.just("firmware_version")),
    st.tuples(st.just("begin")),
    st.tuples(st.just("list_passive_target"), st.sampled_from([10, 100])),
    st.tuples(st.just("activated"), st.sampled_from([0, 30])),
    st.tuples(st.just("exchange"), st.sampled_from([1, 300, 600])),
    st.tuples(st.just("get_data")),
    st.tuples(st.just("set_data"), st.sampled_from([2, 300])),
    st.tuples(st.just("wait_card"), st.sampled_from([0, 40])),
    st.tuples(st.just("transceive")),
)


def _commands(r: Rig, before: int) -> int:
    """Command frames the host wrote since `before` (resends included)."""
    n = 0
    for f in r.chip.host[before:]:
        if f not in (ACK, NACK) and b"\xff" in f[:6] and 0xD4 in f[:12]:
            n += 1
    return max(n, 1)


def run_op(r: Rig, op: tuple[Any, ...]) -> None:
    pn = r.pn
    name = op[0]
    link = PN532ReaderLink(pn, timeout_ms=pn.timeout_ms)
    before = len(r.chip.host)
    if name == "call":
        out = r.run(pn.call, op[1], timeout_ms=op[2])
        assert out.ms <= r.budget_ms(op[2]), (out.ms, r.budget_ms(op[2]))
    elif name == "firmware_version":
        out = r.run(pn.firmware_version)
        assert out.ms <= r.budget_ms()
    elif name == "begin":
        out = r.run(pn.begin)
        assert out.ms <= r.budget_ms() + 2  # + the HSU wake-up pause
    elif name == "list_passive_target":
        out = r.run(pn.list_passive_target, op[1])
        assert out.ms <= r.budget_ms(op[1])
    elif name == "activated":
        out = r.run(pn.listen_as_target, b"\x12\x34\x56")
        assert out.ms <= r.budget_ms(0)
        if out.error is None:
            out = r.run(pn.activated, op[1])
            assert out.ms <= r.budget_ms(op[1] or pn.timeout_ms)
    elif name in ("exchange", "get_data", "set_data"):
        if name == "exchange":
            out = r.run(pn.exchange, 1, bytes(range(256)) * (op[1] // 256) + bytes(op[1] % 256))
        elif name == "get_data":
            out = r.run(pn.get_data)
        else:
            out = r.run(pn.set_data, bytes(op[1]))
        assert out.ms <= r.budget_ms(calls=_commands(r, before))
    elif name == "wait_card":
        out = r.run(link.wait_card, op[1])
        # the last poll may have started just before the deadline: its ACK waits, and the
        # InRelease of a card that is not ISO-DEP
        extra = (pn.retries + 1) * pn.ack_timeout_ms + r.budget_ms() + 5
        assert out.error is None  # wait_card answers None, it does not raise
        assert out.ms <= op[1] + extra + r.budget_ms(0)
    else:  # the POS's hal.Link: transceive to a card it found
        link.target = Target(1, b"\x00\x44", 0x20, b"\x01\x02\x03\x04", b"")
        r.guard.arm()
        try:
            link.transceive(b"\x00\xa4\x04\x00\x00")
        except LinkError:
            pass  # any PN532Error becomes a LinkError there
        assert r.guard.call_ms <= r.budget_ms(calls=_commands(r, before))


@st.composite
def cases(draw: st.DrawFn, kind: str) -> tuple[Rig, list[tuple[Any, ...]]]:
    items = draw(SCRIPT)
    tail = draw(st.one_of(st.lists(ENTRY, max_size=3), DIALOGUE))
    errors = draw(st.sets(st.integers(1, 60), max_size=4)) if kind == "i2c" else set()
    r = rig(kind, items, tail, cls=PN532Both,
            timeout_ms=draw(st.sampled_from([0, 20, 100])),
            ack_timeout_ms=draw(st.sampled_from([0, 10, 50])),
            retries=draw(st.integers(0, 3)),
            cost=draw(st.booleans()), errors=errors,
            lie=kind == "uart" and draw(st.booleans()))  # fmt: skip
    ops = draw(st.lists(OPS, min_size=1, max_size=3))
    return r, ops


def check(case: tuple[Rig, list[tuple[Any, ...]]]) -> None:
    r, ops = case
    for op in ops:
        run_op(r, op)
        event(f"{op[0]}: {r.last}")  # --hypothesis-show-statistics: how far the chip got


def _fuzz_test(kind: str) -> Any:
    @settings(max_examples=EXAMPLES, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])  # fmt: skip
    @given(cases(kind))
    def test(case: tuple[Rig, list[tuple[Any, ...]]]) -> None:
        check(case)

    return test


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("op", [("exchange", 1), ("get_data",), ("transceive",)])
def test_a_chained_answer_of_thousands_of_chunks_is_bounded_by_its_reads(
    kind: str, op: tuple[Any, ...]
) -> None:
    """A chip that answers every InDataExchange "more to come" (status 0x40) at once, with no
    timeout and no resends. Hypothesis found it: the driver took 4,097 parts of one byte (until
    its 4,096-byte limit), 278 ms of reads where its budget counted one frame read per call.
    Now a message has at most MAX_PARTS parts, and the budget counts each frame read."""
    ack = b"\x00\x00\xff\x00\xff\x00"
    r = rig(kind, [], [(ack, 0), (Resp(data=b"@\x00", zeros=2, delta=1), 0)], cls=PN532Both,
            timeout_ms=0, ack_timeout_ms=0, retries=0, cost=True)  # fmt: skip
    run_op(r, op)
    assert 100 < _commands(r, 0) <= MAX_PARTS + 2  # chained, then cut off at the parts limit


@pytest.mark.parametrize("kind", KINDS)
def test_driver_survives_any_chip(kind: str) -> None:
    _fuzz_test(kind)()


@pytest.mark.skipif(
    not os.environ.get("TAPCASH_PN532_ATHERIS"),
    reason="coverage-guided run on request: TAPCASH_PN532_ATHERIS=<runs>",
)
def test_atheris_coverage_guided() -> None:
    pytest.importorskip("atheris")
    runs = int(os.environ["TAPCASH_PN532_ATHERIS"])
    # libFuzzer exits non-zero on the first input that breaks the property, printing it
    subprocess.run([sys.executable, __file__, f"-runs={runs}", "-max_len=4096"], check=True)


if __name__ == "__main__":  # coverage-guided: atheris drives Hypothesis' input bytes
    import atheris  # type: ignore[import-not-found]

    atheris.instrument_all()  # the driver's modules are loaded: their branches guide the search

    @given(st.sampled_from(KINDS).flatmap(cases))
    def target(case: tuple[Rig, list[tuple[Any, ...]]]) -> None:
        check(case)

    atheris.Setup(sys.argv, target.hypothesis.fuzz_one_input)
    atheris.Fuzz()
