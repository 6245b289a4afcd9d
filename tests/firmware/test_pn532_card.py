"""The PN532 driver as a card (ISO/IEC 14443-4 PICC emulation) on every host interface: a reader
in the emulated field activates it, exchanges APDUs (chained ones too), releases it or leaves;
serve_card answers with the app, notices the end of every session and listens again."""

import pytest
from pn532_helpers import KINDS, Background, Echo, wire

from tapcash.firmware.core.hal import LinkError
from tapcash.firmware.hal.pn532 import ST_RELEASED, PN532Error
from tapcash.firmware.hal.pn532_card import TargetReleased, serve_card, serve_session
from tapcash.sim.nfc.pn532 import Faults, SimReaderLink

SELECT = bytes.fromhex("00a4040009f07461706361736801" "00")


def card(kind: str, app, faults: Faults | None = None, **serve_kw) -> tuple:
    w = wire(kind, faults=faults)
    w.rf.place(w.chip)  # the chip is the card in this field
    kw = {"session_timeout_ms": 5000, "poll_ms": 1, **serve_kw}
    bg = Background(lambda stop: serve_card(w.pn532, app, stop=stop, **kw))
    return w, bg


@pytest.mark.parametrize("kind", KINDS)
def test_reader_sees_an_iso_dep_card_and_gets_answers(kind: str) -> None:
    app = Echo()
    w, bg = card(kind, app, nfcid=b"\xca\xfe\x01")
    reader = SimReaderLink(w.rf)
    info = reader.wait_card(5)
    assert info is not None
    assert (info.atqa, info.sak, info.uid) == (b"\x00\x04", 0x20, b"\x08\xca\xfe\x01")
    assert info.ats[0] == len(info.ats)
    for apdu in (SELECT, b"\x80\xca\x00\x00", bytes(range(200))):
        assert reader.transceive(apdu) == apdu[::-1] + b"\x90\x00"
    reader.release()
    assert bg.stop() == 1
    assert app.seen == [SELECT, b"\x80\xca\x00\x00", bytes(range(200))]
    assert app.sessions == 1


@pytest.mark.parametrize("kind", KINDS)
def test_chained_commands_and_answers(kind: str) -> None:
    app = Echo()
    w, bg = card(kind, app)
    reader = SimReaderLink(w.rf)
    assert reader.wait_card(5) is not None
    for size in (261, 262, 263, 600):  # answers of size + 2: chained from 261 on
        apdu = bytes((i * 13) & 0xFF for i in range(size))
        assert reader.transceive(apdu) == apdu[::-1] + b"\x90\x00"
    reader.release()
    bg.stop()
    assert [len(a) for a in app.seen] == [261, 262, 263, 600]


@pytest.mark.parametrize("kind", ["i2c", "spi", "uart"])
def test_every_tap_is_a_new_session_with_a_fresh_uid(kind: str) -> None:
    app = Echo()
    uids = iter([b"\x01\x01\x01", b"\x02\x02\x02", b"\x03\x03\x03"])
    w, bg = card(kind, app, rng=lambda n: next(uids))
    reader = SimReaderLink(w.rf)
    seen = []
    for _ in range(2):
        info = reader.wait_card(5)
        assert info is not None
        seen.append(info.uid)
        assert reader.transceive(SELECT)[-2:] == b"\x90\x00"
        reader.release()
    assert bg.stop() == 2
    assert seen == [b"\x08\x01\x01\x01", b"\x08\x02\x02\x02"]
    assert app.sessions == 2


@pytest.mark.parametrize("kind", ["i2c", "spi-msb", "uart"])
def test_card_taken_out_of_the_field_ends_the_session(kind: str) -> None:
    app = Echo()
    w, bg = card(kind, app)
    reader = SimReaderLink(w.rf, timeout_s=1)
    assert reader.wait_card(5) is not None
    assert reader.transceive(SELECT)[-2:] == b"\x90\x00"
    w.rf.remove()  # the wallet leaves the reader
    with pytest.raises(LinkError):
        reader.transceive(SELECT)
    w.rf.place(w.chip)  # and comes back: a new activation
    assert reader.wait_card(5) is not None
    assert reader.transceive(b"\x01\x02\x03\x04")[-2:] == b"\x90\x00"
    reader.release()
    assert bg.stop() == 2
    assert app.sessions == 2


def test_released_status_from_the_chip() -> None:
    w = wire("i2c")
    w.rf.place(w.chip)
    w.pn532.setup_target()
    w.pn532.listen_as_target(b"\x00\x00\x01")
    reader = SimReaderLink(w.rf)
    assert reader.wait_card(1) is not None
    mode, initiator = w.pn532.activated(1000)
    assert mode & 0x08 and initiator == b"\xe0\x80"  # ISO/IEC 14443-4 PICC, the reader's RATS
    reader.release()
    with pytest.raises(TargetReleased) as e:
        w.pn532.get_data(1000)
    assert e.value.code == ST_RELEASED
    with pytest.raises(TargetReleased):
        w.pn532.set_data(b"\x90\x00")


def test_silent_reader_ends_the_session_after_the_timeout() -> None:
    w = wire("uart")
    w.rf.place(w.chip)
    w.pn532.setup_target()
    w.pn532.listen_as_target(b"\x00\x00\x02")
    reader = SimReaderLink(w.rf)
    assert reader.wait_card(1) is not None
    assert w.pn532.activated(1000) is not None
    app = Echo()
    assert serve_session(w.pn532, app, timeout_ms=30) == 0  # nobody talks: the wait is bounded
    assert w.pn532.pending == -1 and app.sessions == 1


@pytest.mark.parametrize("kind", ["i2c", "spi", "uart"])
def test_corrupted_frames_on_the_card_side_are_recovered(kind: str) -> None:
    # response transmissions: 1 SAMConfiguration, 2 SetParameters, 3 TgInitAsTarget,
    # then TgGetData / TgSetData answers (a resend after a NACK counts as one more)
    faults = Faults(corrupt_lcs={3}, corrupt_dcs={5}, garbage={8: b"\x00\xff\x10"})
    app = Echo()
    w, bg = card(kind, app, faults=faults)
    reader = SimReaderLink(w.rf, timeout_s=5)
    assert reader.wait_card(5) is not None
    apdus = [bytes((0x80, 0x10 + i, 0, 0)) for i in range(4)]
    for apdu in apdus:
        assert reader.transceive(apdu) == apdu[::-1] + b"\x90\x00"
    reader.release()
    bg.stop()
    assert w.pn532.nacks >= 2
    assert app.seen == apdus  # nothing lost, nothing twice


@pytest.mark.parametrize("kind", ["i2c", "uart"])
def test_lost_ack_of_get_data_loses_that_apdu_and_the_next_tap_works(kind: str) -> None:
    # The chip took the reader's APDU for a TgGetData whose ACK never reached the host: the
    # driver aborts and asks again, the APDU is gone, the reader times out (a torn tap for the
    # POS); the card listens again and the next tap works.
    app = Echo()
    w, bg = card(kind, app, faults=Faults(drop_ack={6}), session_timeout_ms=300)
    reader = SimReaderLink(w.rf, timeout_s=0.5)
    assert reader.wait_card(5) is not None
    assert reader.transceive(SELECT)[-2:] == b"\x90\x00"  # commands 4 and 5
    with pytest.raises(LinkError):
        reader.transceive(b"\x80\x50\x00\x00")  # taken by command 6, then lost
    reader.release()
    assert reader.wait_card(5) is not None
    assert reader.transceive(SELECT)[-2:] == b"\x90\x00"
    reader.release()
    assert bg.stop() == 2
    assert w.pn532.resends >= 1


def test_stop_while_listening_aborts_the_target_command() -> None:
    w, bg = card("spi", Echo())
    assert bg.stop() == 0
    assert w.pn532.pending == -1 and w.chip._pending is None
    assert w.pn532.firmware_version()[0] == 0x32


def test_get_data_without_activation_is_refused() -> None:
    w = wire("i2c")
    with pytest.raises(PN532Error):
        w.pn532.get_data(100)


def test_an_answer_later_than_the_frame_waiting_time_is_lost() -> None:
    # The PN532 running ISO-DEP as a card never sends S(WTX): a wallet slower than the frame
    # waiting time of the chip's ATS loses the exchange. Here the FWT is 40 ms and PAY takes 150.
    import time

    class Slow(Echo):
        def process(self, apdu: bytes) -> bytes:
            if apdu[1] == 0x50:
                time.sleep(0.15)
            return super().process(apdu)

    app = Slow()
    w, bg = card("i2c", app, session_timeout_ms=500)
    w.rf.fwt_ms = 40
    reader = SimReaderLink(w.rf, timeout_s=5)
    assert reader.wait_card(5) is not None
    assert reader.transceive(SELECT)[-2:] == b"\x90\x00"
    with pytest.raises(LinkError):
        reader.transceive(b"\x80\x50\x00\x00")
    reader.release()
    bg.stop()
    assert w.rf.late == 1 and len(app.seen) == 2  # the card did the work; the answer was lost
