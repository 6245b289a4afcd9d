"""The PN532 driver as a reader, on every host interface, against the frame-level emulator:
firmware version, card detection, APDU exchange (with chaining), release, and every link fault
ending in a retry that works or a clean error, never a hang (all waits are bounded)."""

import pytest
from pn532_helpers import KINDS, Echo, wire

from tapcash.firmware.core.hal import LinkError
from tapcash.firmware.hal.pn532 import (
    ERR_FRAME,
    ERR_NO_ACK,
    ERR_NO_RESPONSE,
    ERR_SYNTAX,
    ST_BAD_CONTEXT,
    PN532Error,
    PN532Timeout,
)
from tapcash.firmware.hal.pn532_reader import PN532ReaderLink
from tapcash.sim.nfc.pn532 import Faults, RfField, SimCard, SimUART

SELECT = bytes.fromhex("00a4040009f074617063617368" "01" "00")


def reader(kind: str, faults: Faults | None = None, **kw) -> tuple:
    w = wire(kind, faults=faults, **kw)
    link = PN532ReaderLink(w.pn532, timeout_ms=kw.get("timeout_ms", 1000))
    link.setup(passive_retries=1)
    return w, link


@pytest.mark.parametrize("kind", KINDS)
def test_firmware_version(kind: str) -> None:
    w = wire(kind)
    assert w.pn532.firmware_version() == (0x32, 1, 6, 7)
    assert w.chip.sam_configured


@pytest.mark.parametrize("kind", KINDS)
def test_detect_exchange_release(kind: str) -> None:
    w, link = reader(kind)
    assert link.wait_card(200) is None  # empty field: the chip's retries run out
    app = Echo()
    w.rf.place(SimCard(app))
    t = link.wait_card(200)
    assert t is not None and t.iso_dep
    assert (t.atqa, t.sak, t.uid.hex(), t.ats.hex()) == (b"\x00\x44", 0x20, "04a1b2c3d4e5f6",
                                                          "0578807002")  # fmt: skip
    assert link.transceive(SELECT) == SELECT[::-1] + b"\x90\x00"
    assert app.seen == [SELECT] and app.sessions == 1
    link.release()
    assert w.rf.active is None
    with pytest.raises(LinkError):
        link.transceive(SELECT)  # released: no card until the next wait_card


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("size", [262, 263, 700])
def test_chained_apdus_both_ways(kind: str, size: int) -> None:
    w, link = reader(kind)
    app = Echo()
    w.rf.place(SimCard(app))
    assert link.wait_card(200) is not None
    apdu = bytes(i * 7 & 0xFF for i in range(size))
    assert link.transceive(apdu) == apdu[::-1] + b"\x90\x00"  # answer of size + 2 bytes
    assert app.seen == [apdu]


@pytest.mark.parametrize("kind", ["i2c", "spi", "uart"])
def test_waiting_for_a_card_is_bounded_and_aborted(kind: str) -> None:
    w, link = reader(kind)
    link.setup(passive_retries=0xFF)  # the chip waits for a card forever
    assert link.wait_card(30) is None  # our timeout: the command is aborted with an ACK
    assert w.pn532.aborts == 1 and w.chip._pending is None
    w.rf.place(SimCard(Echo()))
    assert link.wait_card(200) is not None  # the chip is usable right after the abort


def test_a_card_arriving_while_the_chip_waits_is_reported() -> None:
    w, link = reader("i2c")
    link.setup(passive_retries=0xFF)
    w.pn532.send(0x4A, b"\x01\x00")
    assert not w.pn532.ready()
    w.rf.place(SimCard(Echo()))
    assert w.pn532.ready()
    r = w.pn532.receive(100)
    assert r[0] == 1


def test_non_iso_dep_cards_are_ignored() -> None:
    w, link = reader("i2c")
    w.rf.place(SimCard(Echo(), uid=b"\x01\x02\x03\x04", atqa=b"\x00\x04", sak=0x08))
    assert link.wait_card(200) is None
    assert w.rf.active is None  # released again


def test_exchange_without_target_is_refused_by_the_chip() -> None:
    w, _ = reader("i2c")
    with pytest.raises(PN532Error) as e:
        w.pn532.exchange(1, SELECT)
    assert e.value.code == ST_BAD_CONTEXT


def test_syntax_error_frame() -> None:
    w = wire("spi")
    with pytest.raises(PN532Error) as e:
        w.pn532.call(0x99)  # no such command: the chip answers with the error frame
    assert e.value.code == ERR_SYNTAX
    assert w.pn532.firmware_version()[0] == 0x32  # and the link is fine after it


def test_rf_commands_need_sam_configuration() -> None:
    w = wire("i2c", begin=False)
    with pytest.raises(PN532Error) as e:
        w.pn532.list_passive_target(100)
    assert e.value.code == ERR_SYNTAX
    w.pn532.begin()
    assert w.pn532.list_passive_target(100) is None


def test_hsu_needs_the_wake_up_preamble() -> None:
    w = wire("uart", begin=False, ack_timeout_ms=20)
    with pytest.raises(PN532Timeout) as e:
        w.pn532.sam_configuration()  # the chip sleeps: no ACK, ever (bounded resends)
    assert e.value.code == ERR_NO_ACK and w.pn532.resends == 2
    assert isinstance(w.bus, SimUART) and w.bus.dropped_asleep > 0
    w.pn532.begin()  # wake-up preamble, then SAMConfiguration
    assert w.pn532.firmware_version()[0] == 0x32


# ---- link faults: each ends in a working retry or a clean error ------------------------------
# Command numbers: begin() is command 1 (SAMConfiguration); the next command is 2.


@pytest.mark.parametrize("kind", KINDS)
def test_bad_length_checksum_is_nacked_and_resent(kind: str) -> None:
    w = wire(kind, faults=Faults(corrupt_lcs={2}))  # transmission 1 answered SAMConfiguration
    assert w.pn532.firmware_version()[0] == 0x32
    assert w.pn532.nacks == 1


@pytest.mark.parametrize("kind", KINDS)
def test_bad_data_checksum_is_nacked_and_resent(kind: str) -> None:
    w = wire(kind, faults=Faults(corrupt_dcs={2}))
    assert w.pn532.firmware_version()[0] == 0x32
    assert w.pn532.nacks == 1


@pytest.mark.parametrize("kind", KINDS)
def test_persistent_corruption_is_a_clean_error(kind: str) -> None:
    w = wire(kind, faults=Faults(corrupt_dcs=set(range(2, 40))))
    with pytest.raises(PN532Error) as e:
        w.pn532.firmware_version()
    assert e.value.code == ERR_FRAME and w.pn532.nacks == 2
    w.chip.faults.corrupt_dcs.clear()
    assert w.pn532.firmware_version()[0] == 0x32


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("fault", ["drop_command", "drop_ack"])
def test_missing_ack_makes_the_driver_send_again(kind: str, fault: str) -> None:
    w = wire(kind, faults=Faults(**{fault: {2}}))
    assert w.pn532.firmware_version()[0] == 0x32
    assert w.pn532.resends == 1


@pytest.mark.parametrize("kind", KINDS)
def test_no_ack_at_all_is_a_timeout(kind: str) -> None:
    w = wire(kind, faults=Faults(drop_command=set(range(2, 10))))
    with pytest.raises(PN532Timeout) as e:
        w.pn532.firmware_version()
    assert e.value.code == ERR_NO_ACK and w.pn532.resends == 2


@pytest.mark.parametrize("kind", KINDS)
def test_late_answer_times_out_then_the_chip_is_usable(kind: str) -> None:
    w = wire(kind, faults=Faults(delay_ms={2: 2000}))
    with pytest.raises(PN532Timeout) as e:
        w.pn532.call(0x02, timeout_ms=30)
    assert e.value.code == ERR_NO_RESPONSE and w.pn532.aborts == 1
    assert w.pn532.firmware_version()[0] == 0x32  # the abort cleared the late answer


@pytest.mark.parametrize("kind", ["i2c", "uart"])
def test_slow_answer_within_the_timeout_is_taken(kind: str) -> None:
    w = wire(kind, faults=Faults(delay_ms={2: 20}))
    assert w.pn532.call(0x02, timeout_ms=5000)[0] == 0x32


@pytest.mark.parametrize("kind", KINDS)
def test_silent_chip_times_out(kind: str) -> None:
    w = wire(kind, faults=Faults(silent={2}))
    with pytest.raises(PN532Timeout):
        w.pn532.call(0x02, timeout_ms=30)
    assert w.pn532.firmware_version()[0] == 0x32


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    "noise", [b"\x13\x37\xff\xfe\x00", b"\x00\x00\xff\x05\x10junk", b"\xff" * 40]
)
def test_garbage_on_the_line_is_survived(kind: str, noise: bytes) -> None:
    w = wire(kind, faults=Faults(garbage={2: noise}))
    assert w.pn532.firmware_version()[0] == 0x32


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("when", ["before", "after"])
def test_card_leaving_mid_exchange_is_a_link_error(kind: str, when: str) -> None:
    rf = RfField(leave_before=2) if when == "before" else RfField(leave_after=2)
    w = wire(kind, rf=rf)
    link = PN532ReaderLink(w.pn532, timeout_ms=500)
    link.setup(passive_retries=1)
    app = Echo()
    rf.place(SimCard(app))
    assert link.wait_card(200) is not None
    assert link.transceive(SELECT)[-2:] == b"\x90\x00"
    with pytest.raises(LinkError):
        link.transceive(b"\x80\x50\x00\x00")
    assert len(app.seen) == (1 if when == "before" else 2)
    with pytest.raises(LinkError):
        link.transceive(SELECT)  # the card is forgotten
    assert link.wait_card(100) is None  # and gone from the field
    rf.leave_before = rf.leave_after = None
    rf.place(SimCard(app))
    assert link.wait_card(200) is not None
    assert link.transceive(SELECT)[-2:] == b"\x90\x00"


@pytest.mark.parametrize("kind", ["i2c", "spi", "uart"])
def test_unanswered_exchange_is_a_link_error_not_a_hang(kind: str) -> None:
    w, link = reader(kind, timeout_ms=50)
    w.rf.place(SimCard(Echo()))
    assert link.wait_card(200) is not None
    w.chip.faults.silent.add(w.chip.commands + 1)
    with pytest.raises(LinkError):
        link.transceive(SELECT)
    assert w.pn532.pending == -1
