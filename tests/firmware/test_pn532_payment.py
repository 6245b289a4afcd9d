"""Real payments through emulated PN532 chips: the firmware PosApp and WalletApp (provisioned by
sim/device/provision.py through their real APDUs) talk through the driver and the frame-level
emulator.

- reader side on a PN532 (SPI, as the POS board profile), the wallet a plain card in the field;
- card side on a PN532 (I2C, as the wallet board profile) run by serve_card, a plain reader;
- both sides on PN532s: two drivers, two emulated chips, one field;
- a tap torn right after PAY, recovered on the next tap;
- the board loops of firmware/main.py (run_pos, run_wallet) and the idle sync pump.
"""

from __future__ import annotations

import pytest
from pn532_helpers import Background, wire

from tapcash.firmware.core import frame, proto
from tapcash.firmware.hal.pn532_reader import PN532ReaderLink
from tapcash.firmware.main import SyncPump, run_pos, run_wallet
from tapcash.firmware.pos.loop import PushbackKeys
from tapcash.sim.device.provision import make_pair
from tapcash.sim.nfc.pn532 import RfField, SimCard, SimReaderLink

AMOUNT = 1250


def pos_on_pn532(pair, rf: RfField, kind: str = "spi") -> PN532ReaderLink:
    w = wire(kind, rf=rf)
    link = PN532ReaderLink(w.pn532, timeout_ms=2000)
    link.setup(passive_retries=1)
    pair.pos.hal.link = link
    return link


def wallet_on_pn532(pair, rf: RfField, kind: str = "i2c", **kw) -> tuple:
    w = wire(kind, rf=rf)
    rf.place(w.chip)
    args = {"session_timeout_ms": 5000, "poll_ms": 1, **kw}
    bg = Background(lambda stop: run_wallet(w.pn532, pair.wallet, stop=stop, **args))
    return w, bg


def test_pos_reader_on_pn532_pays_from_a_card() -> None:
    pair = make_pair(1)
    rf = RfField()
    link = pos_on_pn532(pair, rf)
    rf.place(SimCard(pair.wallet))
    assert link.wait_card(500) is not None
    r = pair.pos.take_payment(AMOUNT)
    link.release()
    assert r.approved, r
    assert r.balance == pair.initial - AMOUNT
    assert r.receipt_sent


@pytest.mark.parametrize("kind", ["i2c", "spi", "uart"])
def test_wallet_card_on_pn532_pays_a_reader(kind: str) -> None:
    pair = make_pair(2)
    rf = RfField()
    w, bg = wallet_on_pn532(pair, rf, kind)
    reader = SimReaderLink(rf, timeout_s=10)
    pair.pos.hal.link = reader
    assert reader.wait_card(10) is not None
    r = pair.pos.take_payment(AMOUNT)
    reader.release()
    assert bg.stop() == 1
    assert r.approved, r
    assert r.balance == pair.initial - AMOUNT


def test_both_sides_on_pn532s() -> None:
    pair = make_pair(3)
    rf = RfField()
    w, bg = wallet_on_pn532(pair, rf, "i2c")
    link = pos_on_pn532(pair, rf, "spi")
    results = []
    for amount in (AMOUNT, 99):
        assert link.wait_card(5000) is not None
        results.append(pair.pos.take_payment(amount))
        link.release()
    assert bg.stop() == 2
    assert [r.approved for r in results] == [True, True]
    assert results[1].balance == pair.initial - AMOUNT - 99
    assert results[1].counter == results[0].counter + 1


def test_tap_torn_after_pay_is_recovered_on_the_next_tap() -> None:
    pair = make_pair(4)
    torn = []

    def tear(n: int, apdu: bytes) -> str | None:
        if apdu[1] == proto.INS_PAY and not torn:
            torn.append(n)
            return "after"  # the wallet signed and committed; its answer never arrives
        return None

    rf = RfField(tear=tear)
    w, bg = wallet_on_pn532(pair, rf, "i2c")
    link = pos_on_pn532(pair, rf, "spi")
    assert link.wait_card(5000) is not None
    first = pair.pos.take_payment(AMOUNT)
    link.release()
    assert not first.approved and first.reason == "link"
    rf.place(w.chip)  # the customer taps again
    assert link.wait_card(5000) is not None
    again = pair.pos.take_payment(AMOUNT)
    link.release()
    bg.stop()
    assert again.approved and again.recovered, again
    assert again.balance == pair.initial - AMOUNT  # paid once


class ScriptedKeys:
    """A keypad stand-in that types a script; after the last key it calls `then()` once and
    then reports no key (timeouts)."""

    def __init__(self, keys: str, then=None) -> None:
        self.keys = list(keys)
        self.then = then

    def get_key(self, timeout_ms: int) -> str | None:
        if self.keys:
            return self.keys.pop(0)
        if self.then is not None:
            then, self.then = self.then, None
            then()
        return None


def test_run_pos_sale_loop_on_a_pn532() -> None:
    pair = make_pair(5)
    rf = RfField()
    w = wire("spi", rf=rf, begin=False)
    link = PN532ReaderLink(w.pn532, timeout_ms=2000)
    card = SimCard(pair.wallet)
    keys = PushbackKeys(ScriptedKeys("1250#", then=lambda: rf.place(card)))
    pair.pos.hal.link = link
    pair.pos.hal.keys = keys
    out = run_pos(pair.pos, link, keys, stop=lambda: bool(card.commands) and link.target is None,
                  card_timeout_ms=5000)  # fmt: skip
    assert len(out) == 1 and out[0].approved and out[0].amount == 1250
    assert rf.active is None  # released after the payment


def _request(rid: int, apdu: bytes) -> bytes:
    enc = getattr(frame, "encode_request", None) or frame.encode_message  # API before / after
    return enc(rid, apdu)


def _answer(payload: bytes) -> tuple:
    dec = getattr(frame, "decode_answer", None) or frame.decode_message
    return dec(payload)


class LoopPort:
    """Both ends of a serial line: the host writes to `to_device`, reads `from_device`."""

    def __init__(self) -> None:
        self.to_device = bytearray()
        self.from_device = bytearray()

    def any(self) -> int:
        return len(self.to_device)

    def read(self, n: int) -> bytes | None:
        data = bytes(self.to_device[:n])
        del self.to_device[:n]
        return data or None

    def write(self, data: bytes) -> None:
        self.from_device += data


def test_sync_pump_serves_frames_between_taps() -> None:
    pair = make_pair(6)
    port = LoopPort()
    pump = SyncPump(port, pair.wallet)
    assert pump.poll() is False
    select = proto.build_command(proto.CLA_ISO, proto.INS_SELECT, 4, 0, proto.AID)
    port.to_device += _request(7, select)
    assert pump.poll() is True
    dec = frame.Decoder()
    (payload,) = dec.feed(bytes(port.from_device))
    rid, resp = _answer(payload)
    assert rid == 7 and resp[-2:] == b"\x90\x00"
    port.to_device += b"\r\x03\x03"  # mpremote's interrupt: leave the loop for the REPL
    with pytest.raises(KeyboardInterrupt):
        pump.poll()


def test_run_wallet_serves_sync_while_idle() -> None:
    pair = make_pair(7)
    rf = RfField()
    w = wire("uart", rf=rf, begin=False)
    rf.place(w.chip)
    port = LoopPort()
    select = proto.build_command(proto.CLA_ISO, proto.INS_SELECT, 4, 0, proto.AID)
    port.to_device += _request(1, select)
    pump = SyncPump(port, pair.wallet)
    n = run_wallet(w.pn532, pair.wallet, sync=pump, stop=lambda: bool(port.from_device),
                   session_timeout_ms=100)  # fmt: skip
    assert n == 0
    (payload,) = frame.Decoder().feed(bytes(port.from_device))
    assert _answer(payload)[1][-2:] == b"\x90\x00"
