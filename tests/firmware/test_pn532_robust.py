"""The PN532 driver never hangs and never raises anything but PN532Error (issue #16, item 6).

Each test is one finding of a coverage-guided fuzz of firmware/hal/pn532.py + pn532_transport.py,
replayed on the fake buses of pn532_fakes.py: a scripted chip, a simulated clock (the driver's own,
injected through the transport), and a guard that turns a driver that would spin for ever into a
failure (Runaway). "Within its timeout" is checked on that clock, so it is a property of the code,
not a timing of this machine; with bus costs of zero (cost=False) only sleeps move the clock, and
the driver must still stop: its reads are bounded by counts, not only by the deadline.
The random search itself is tests/firmware/test_pn532_fuzz.py.
"""

import pytest
from pn532_fakes import ACK, KINDS, Outcome, Resp, Rig, frame, rig

from tapcash.firmware.hal.pn532 import ERR_FRAME, PN532Timeout
from tapcash.firmware.hal.pn532_card import PN532Card
from tapcash.firmware.hal.pn532_reader import PN532Reader

GET_FIRMWARE_VERSION = 0x02


def check_bounded(r: Rig, out: Outcome, timeout_ms: int = 50) -> None:
    assert out.error is not None, "a chip that never answers cannot give a result"
    assert out.ms <= r.budget_ms(timeout_ms), (out.ms, r.budget_ms(timeout_ms))


@pytest.mark.parametrize("cost", [True, False], ids=["bus-time", "free-reads"])
@pytest.mark.parametrize("kind", ["i2c", "spi", "spi-msb"])
def test_chip_that_keeps_answering_ack_does_not_hang(kind: str, cost: bool) -> None:
    # I2C: the repeated ACK `continue`d past both the bad-frame count and the deadline, and the
    # poll looked at the deadline only when the chip was not ready: call() spun for ever.
    r = rig(kind, tail=[ACK], cost=cost)
    out = r.run(r.pn.call, GET_FIRMWARE_VERSION, timeout_ms=50)
    check_bounded(r, out)
    assert out.error.code == ERR_FRAME  # type: ignore[union-attr]
    assert r.chip.host[-1] == ACK  # the command was aborted


@pytest.mark.parametrize("cost", [True, False], ids=["bus-time", "free-reads"])
def test_uart_repeated_ack_does_not_hang(cost: bool) -> None:
    r = rig("uart", tail=[ACK], cost=cost)
    out = r.run(r.pn.call, GET_FIRMWARE_VERSION, timeout_ms=50)
    check_bounded(r, out)
    assert out.error.code == ERR_FRAME  # type: ignore[union-attr]


@pytest.mark.parametrize("cost", [True, False], ids=["bus-time", "free-reads"])
def test_uart_endless_zeros_do_not_hang(cost: bool) -> None:
    # zeros never counted as skipped bytes, so the FRAME_MAX bound on the search for a start code
    # never tripped while the line kept them coming
    r = rig("uart", tail=[bytes(64)], cost=cost)
    out = r.run(r.pn.call, GET_FIRMWARE_VERSION, timeout_ms=50)
    check_bounded(r, out)
    r2 = rig("uart", items=[ACK], tail=[bytes(64)], cost=cost)
    out = r2.run(r2.pn.call, GET_FIRMWARE_VERSION, timeout_ms=50)
    check_bounded(r2, out)


@pytest.mark.parametrize("cost", [True, False], ids=["bus-time", "free-reads"])
def test_uart_bad_header_on_a_babbling_line_does_not_hang(cost: bool) -> None:
    # a start code with a broken length checksum, then noise that never stops: draining "until
    # the line is quiet" must stop after one frame's worth of bytes when reads cost no time
    noise = b"\x00\xff\x12\x34" + bytes(range(1, 200))
    r = rig("uart", items=[ACK], tail=[noise], cost=cost)
    out = r.run(r.pn.call, GET_FIRMWARE_VERSION, timeout_ms=50)
    check_bounded(r, out)


def test_uart_that_says_bytes_are_there_and_has_none() -> None:
    # any() > 0 but read/readinto give None (a UART timeout): not a TypeError, not a spin
    r = rig("uart", items=[ACK, Resp(b"\x32\x01\x06\x07")], lie=True)
    out = r.run(r.pn.firmware_version)
    assert out.error is None and tuple(out.value) == (0x32, 1, 6, 7)
    r = rig("uart", lie=True, cost=False)
    out = r.run(r.pn.call, GET_FIRMWARE_VERSION, timeout_ms=50)
    check_bounded(r, out)
    assert isinstance(out.error, PN532Timeout)


@pytest.mark.parametrize("kind", KINDS)
def test_extended_frame_with_four_preamble_zeros_and_len_265(kind: str) -> None:
    # 4 zeros + FF + FF FF LM LL LCS + 265 + DCS 00 = 277 bytes: the I2C buffer held 275 and the
    # checksum loop raised IndexError. The frame is well formed (frame_length accepts up to four
    # leading zeros), so it is taken whole on every transport.
    data = bytes((i * 7 + 3) & 0xFF for i in range(263))
    resp = Resp(data, zeros=4, ext=True)
    assert len(resp.build(GET_FIRMWARE_VERSION)) == 277
    r = rig(kind, items=[ACK, resp])
    out = r.run(r.pn.call, GET_FIRMWARE_VERSION)
    assert out.error is None, out.error
    assert bytes(out.value) == data


@pytest.mark.parametrize("kind", KINDS)
def test_reader_chained_answer_of_empty_parts_ends(kind: str) -> None:
    # InDataExchange status 0x40 (MI: more follows) with no data, again and again: each frame
    # had its timeout, the chain had no end (no byte ever counted towards MAX_APDU)
    r = rig(kind, tail=[ACK, Resp(b"\x40")], cls=PN532Reader)
    out = r.run(r.pn.exchange, 1, b"\x00\xa4\x04\x00\x00")
    assert out.error is not None and out.error.code == ERR_FRAME
    assert out.ms <= r.budget_ms(calls=2)


@pytest.mark.parametrize("kind", KINDS)
def test_card_chained_command_of_empty_parts_ends(kind: str) -> None:
    r = rig(kind, tail=[ACK, Resp(b"\x40")], cls=PN532Card)
    out = r.run(r.pn.get_data)
    assert out.error is not None and out.error.code == ERR_FRAME
    assert out.ms <= r.budget_ms(calls=2)


@pytest.mark.parametrize("kind", KINDS)
def test_silent_chip_times_out_within_the_timeout(kind: str) -> None:
    # the reference case: nothing at all comes back; the resends' ACK waits and the abort
    r = rig(kind, cost=False)
    out = r.run(r.pn.call, GET_FIRMWARE_VERSION)
    assert isinstance(out.error, PN532Timeout)
    nominal = (r.pn.retries + 1) * r.pn.ack_timeout_ms
    assert nominal <= out.ms <= r.budget_ms(0)


@pytest.mark.parametrize("kind", KINDS)
def test_response_that_keeps_failing_its_checksum_is_nacked_then_refused(kind: str) -> None:
    bad = Resp(b"\x32\x01\x06\x07", flip=(-2, 0x01))  # DCS broken
    r = rig(kind, items=[ACK], tail=[bad], cost=False)
    out = r.run(r.pn.firmware_version)
    assert out.error is not None and out.error.code == ERR_FRAME
    assert r.pn.nacks == r.pn.retries
    assert out.ms <= r.budget_ms()


def test_fakes_frames_are_the_manuals() -> None:
    # the fakes build frames themselves: check them against the manual's fixed frames
    assert frame(b"\x7f") == bytes.fromhex("0000ff01ff7f8100")  # the error frame
    assert frame(bytes.fromhex("d515")) == bytes.fromhex("0000ff02fed5151600")
    assert frame(bytes.fromhex("d402"), ext=True) == bytes.fromhex("0000ffffff0002fed4022a00")
