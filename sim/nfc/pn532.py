"""A PN532 NFC controller emulated at the frame level, on a virtual RF field.

The emulator speaks the bytes a real PN532 (firmware v1.6, NXP UM0701-02) exchanges with its host,
so the unchanged firmware driver (``firmware/hal/pn532.py`` + ``pn532_transport.py``) runs against
it on CPython through bus adapters with the method shapes of MicroPython's ``machine`` classes:

    field = RfField()
    chip = PN532Emulator(field)                      # one chip; pick one bus for it:
    i2c = SimI2C(chip)                               # machine.I2C: writeto / readfrom_into
    spi = SimSPI(chip)                               # machine.SPI + spi.cs (a Pin)
    uart = SimUART(chip)                             # machine.UART: write / read / readinto / any
    field.place(SimCard(wallet_app))                 # a card (anything with process(apdu))

Reader mode: the driver lists the card (InListPassiveTarget) and exchanges APDUs with it
(InDataExchange); ``field.remove()`` takes it away, also mid-exchange. Target mode: the driver
makes the chip a card (TgInitAsTarget) and a reader in the field sends APDUs: ``SimReaderLink``
(a ``hal.Link``), or a second PN532Emulator in reader mode on the same field.

Nothing here is shared with the firmware: frames are built and checked independently, so a
checksum or framing bug in the driver cannot cancel out against the same bug in the emulator.

Modelled per interface (UM0701-02 6.2): I2C reads begin with the status byte (bit 0 ready) and
a frame is taken off the chip only by a read that covers it whole (short status polls leave it);
SPI is LSB first with DW/SR/DR prefix bytes and a DR read releases the frame when CS rises; HSU
starts asleep and drops frames until the host sends the 0x55 wake-up preamble. A host NACK makes
the chip send its last response again (cleanly); a host ACK aborts the command in progress.

Assumptions where the manual leaves room (a real chip may differ): RF commands before
SAMConfiguration get the error frame; when the reader releases the emulated card or the field
goes away, TgGetData / TgSetData answer status 0x29 (a released target, as reported by users of
real chips); the ATS the chip sends as a card is 78 80 70 02 + the historical bytes.

Faults (``Faults``), keyed by the number of the valid command frame the chip received (from 1),
or of the response transmission (from 1; a resend after a NACK is a new transmission):

    drop_command   command frames ignored: no ACK, nothing done (lost on the way in)
    drop_ack       commands executed but their ACK never sent
    delay_ms       {command: ms} the response is ready only after ms
    silent         commands never answered (the host must time out and abort)
    corrupt_lcs    response transmissions whose length checksum is broken
    corrupt_dcs    response transmissions whose data checksum is broken
    garbage        {transmission: bytes} noise the host receives instead of (I2C, SPI) or before
                   (HSU) that transmission

The field has its own: ``RfField.leave_before`` / ``leave_after`` take the card away at the n-th
APDU, before it sees the APDU or after it answered (the answer is lost); ``RfField.tear``
picks the APDU by content; ``RfField.fwt_ms`` makes an answer later than the frame waiting time
a lost one (the reader times out), as on air when a card neither answers nor asks for more time.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from tapcash.firmware.core.hal import Link, LinkError

# --- frames (UM0701-02 6.2.1), built independently of the firmware ---------------------------
ACK_FRAME = bytes.fromhex("0000ff00ff00")
NACK_FRAME = bytes.fromhex("0000ffff0000")
ERROR_FRAME = bytes.fromhex("0000ff01ff7f8100")
TFI_HOST = 0xD4
TFI_CHIP = 0xD5
MAX_DATA = 262  # DataIn / DataOut per frame
FIRMWARE = bytes((0x32, 0x01, 0x06, 0x07))  # IC PN532, version 1.6, supports ISO 14443A/B, 18092

ST_OK = 0x00
ST_TIMEOUT = 0x01
ST_BAD_CONTEXT = 0x27
ST_RELEASED = 0x29
ST_MI = 0x40

PICC_ATS_TAIL = bytes.fromhex("78807002")  # T0 TA TB TC of the emulated card's ATS


def info_frame(body: bytes) -> bytes:
    """A normal (<= 255 bytes of TFI+PD) or extended information frame around body."""
    n = len(body)
    dcs = (-sum(body)) & 0xFF
    if n <= 255:
        head = bytes((0x00, 0x00, 0xFF, n, (-n) & 0xFF))
    else:
        hi, lo = n >> 8, n & 0xFF
        head = bytes((0x00, 0x00, 0xFF, 0xFF, 0xFF, hi, lo, (-(hi + lo)) & 0xFF))
    return head + body + bytes((dcs, 0x00))


def parse_frame(data: bytes) -> tuple[str, bytes]:
    """Classify one complete host frame: ("ack"|"nack"|"info"|"bad", body)."""
    i = 0
    while i < len(data) and data[i] == 0:
        i += 1
    if i == 0 or i >= len(data) or data[i] != 0xFF:
        return "bad", b""
    rest = data[i + 1 :]
    if rest[:3] == b"\x00\xff\x00" or rest[:2] == b"\x00\xff":
        return "ack", b""
    if rest[:2] == b"\xff\x00":
        return "nack", b""
    if len(rest) < 2:
        return "bad", b""
    if rest[0] == 0xFF and rest[1] == 0xFF:
        if len(rest) < 5 or (rest[2] + rest[3] + rest[4]) & 0xFF:
            return "bad", b""
        n = rest[2] << 8 | rest[3]
        start = 5
    else:
        if (rest[0] + rest[1]) & 0xFF:
            return "bad", b""
        n = rest[0]
        start = 2
    body = rest[start : start + n]
    if n == 0 or len(body) != n or len(rest) < start + n + 1:
        return "bad", b""
    if (sum(body) + rest[start + n]) & 0xFF:
        return "bad", b""
    return "info", bytes(body)


def reverse_bits(b: int) -> int:
    return int(f"{b:08b}"[::-1], 2)


# --- faults ------------------------------------------------------------------------------------
@dataclass
class Faults:
    drop_command: set[int] = field(default_factory=set)
    drop_ack: set[int] = field(default_factory=set)
    delay_ms: dict[int, int] = field(default_factory=dict)
    silent: set[int] = field(default_factory=set)
    corrupt_lcs: set[int] = field(default_factory=set)
    corrupt_dcs: set[int] = field(default_factory=set)
    garbage: dict[int, bytes] = field(default_factory=dict)


# --- the RF side -------------------------------------------------------------------------------
@dataclass(frozen=True)
class CardInfo:
    """What a reader learns when it activates a type A card."""

    atqa: bytes  # SENS_RES as the reader chip reports it (2 bytes)
    sak: int
    uid: bytes
    ats: bytes  # including TL, or b""


class Card(Protocol):
    """The card side of the field: a SimCard, or a PN532Emulator listening as a target."""

    def rf_info(self) -> CardInfo | None: ...
    def rf_activate(self) -> None: ...
    def rf_command(self, apdu: bytes) -> bytes | None: ...
    def rf_release(self) -> None: ...
    def rf_field_off(self) -> None: ...


class App(Protocol):
    def process(self, apdu: bytes) -> bytes: ...


class SimCard:
    """An ISO/IEC 14443-4 type A card whose APDUs are answered by ``app.process(apdu)``.

    ``power_on`` (if the app has it) runs on every activation: a tap is a new session."""

    def __init__(
        self,
        app: App,
        uid: bytes = bytes.fromhex("04a1b2c3d4e5f6"),
        atqa: bytes = b"\x00\x44",
        sak: int = 0x20,
        ats: bytes = bytes.fromhex("0578807002"),
    ) -> None:
        self.app = app
        self.info = CardInfo(atqa, sak, uid, ats if sak & 0x20 else b"")
        self.commands: list[bytes] = []

    def rf_info(self) -> CardInfo | None:
        return self.info

    def rf_activate(self) -> None:
        power_on = getattr(self.app, "power_on", None)
        if power_on is not None:
            power_on()

    def rf_command(self, apdu: bytes) -> bytes | None:
        self.commands.append(apdu)
        return bytes(self.app.process(apdu))

    def rf_release(self) -> None:
        pass

    def rf_field_off(self) -> None:
        pass


class RfField:
    """The RF field between one reader and at most one card.

    The reader side (a PN532Emulator in reader mode, or SimReaderLink) activates the card and
    sends whole APDUs; a SimCard answers at once, an emulated PN532 target answers later, when its
    host has called TgSetData. ``lock`` is shared by every emulator on this field (thread safe:
    a reader and a card driver may run on two threads)."""

    def __init__(
        self,
        leave_before: int | None = None,
        leave_after: int | None = None,
        tear: Callable[[int, bytes], str | None] | None = None,
        fwt_ms: float | None = None,
    ) -> None:
        self.lock = threading.RLock()
        self.changed = threading.Condition(self.lock)
        self.card: Card | None = None
        self.active: Card | None = None  # activated by a reader, ISO-DEP session open
        self.leave_before = leave_before
        self.leave_after = leave_after
        # tear(exchange number, APDU) -> "before" | "after" | None: a card pulled away at an
        # APDU chosen by content (e.g. the PAY command)
        self.tear = tear
        # frame waiting time: an answer later than this is lost, the reader times out (the
        # PN532 running ISO-DEP as a card never asks for more time with S(WTX)); None: no limit
        self.fwt_ms = fwt_ms
        self.late = 0  # answers that missed the frame waiting time
        self._sent_at = 0.0
        self.exchanges = 0
        self._answer: bytes | None = None
        self._waiting = False  # an APDU is with the card, its answer not yet back

    def place(self, card: Card) -> None:
        with self.lock:
            if self.card is not None:
                self._remove()
            self.card = card
            self.changed.notify_all()

    def remove(self) -> None:
        with self.lock:
            self._remove()

    def _remove(self) -> None:
        card, self.card, self.active = self.card, None, None
        self._waiting = False
        self._answer = None
        if card is not None:
            card.rf_field_off()
        self.changed.notify_all()

    @property
    def present(self) -> bool:
        return self.card is not None

    # reader side
    def reader_activate(self) -> CardInfo | None:
        """Activate the card in the field (REQA .. RATS/ATS), or None when there is none yet."""
        with self.lock:
            card = self.card
            if card is None:
                return None
            info = card.rf_info()
            if info is None:
                return None
            self.active = card
            self._waiting = False
            self._answer = None
            card.rf_activate()
            self.changed.notify_all()
            return info

    def reader_send(self, apdu: bytes) -> bool:
        """Give the active card an APDU. False when there is no card to give it to."""
        with self.lock:
            card = self.active
            if card is None or card is not self.card:
                return False
            self.exchanges += 1
            torn = self.tear(self.exchanges, apdu) if self.tear is not None else None
            if torn == "after":
                self.leave_after = self.exchanges
            if self.leave_before == self.exchanges or torn == "before":
                self._remove()
                return False
            self._waiting = True
            self._answer = None
            self._sent_at = time.monotonic()
            answer = card.rf_command(apdu)
            if answer is not None:
                self._deliver(card, answer)
            return True

    def reader_answer(self) -> tuple[bool, bytes | None]:
        """(an answer can still come, the answer or None while the card works on it). False
        when the card left, or the frame waiting time passed (the exchange is lost)."""
        with self.lock:
            if self.active is None or self.active is not self.card:
                return False, None
            if self._answer is None:
                if self._waiting and self._overdue():
                    self._waiting = False
                    self.late += 1
                    return False, None
                return self._waiting, None
            answer, self._answer = self._answer, None
            self._waiting = False
            return True, answer

    def reader_release(self) -> None:
        with self.lock:
            card, self.active = self.active, None
            self._waiting = False
            self._answer = None
            if card is not None and card is self.card:
                card.rf_release()
            self.changed.notify_all()

    # card side
    def card_answer(self, card: Card, answer: bytes) -> bool:
        """The card sends its answer to the reader. False when nobody waits for it any more."""
        with self.lock:
            if card is not self.active or not self._waiting:
                return False
            if self._overdue():
                self._waiting = False
                self.late += 1
                self.changed.notify_all()
                return False
            self._deliver(card, answer)
            return True

    def _overdue(self) -> bool:
        return self.fwt_ms is not None and (time.monotonic() - self._sent_at) * 1000 > self.fwt_ms

    def _deliver(self, card: Card, answer: bytes) -> None:
        if self.leave_after == self.exchanges:
            self._remove()
            return
        self._answer = bytes(answer)
        self.changed.notify_all()


class SimReaderLink(Link):
    """A plain reader in the field (no PN532 of its own), as a hal.Link: for driving a card
    emulated by the firmware. ``transceive`` waits at most ``timeout_s`` for the answer."""

    def __init__(self, rf: RfField, timeout_s: float = 5.0) -> None:
        self.rf = rf
        self.timeout_s = timeout_s
        self.card: CardInfo | None = None

    def wait_card(self, timeout_s: float = 5.0) -> CardInfo | None:
        deadline = time.monotonic() + timeout_s
        with self.rf.lock:
            while True:
                info = self.rf.reader_activate()
                if info is not None:
                    self.card = info
                    return info
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self.rf.changed.wait(min(left, 0.05))

    def transceive(self, apdu: bytes) -> bytes:
        deadline = time.monotonic() + self.timeout_s
        with self.rf.lock:
            if not self.rf.reader_send(bytes(apdu)):
                self.card = None
                raise LinkError("card gone")
            while True:
                present, answer = self.rf.reader_answer()
                if not present:
                    self.card = None
                    raise LinkError("card gone or too slow")
                if answer is not None:
                    return answer
                left = deadline - time.monotonic()
                if left <= 0:
                    raise LinkError("card timeout")
                self.rf.changed.wait(min(left, 0.05))

    def release(self) -> None:
        self.rf.reader_release()
        self.card = None


# --- the chip ------------------------------------------------------------------------------------
@dataclass
class _Out:
    data: bytes
    ready_at: float
    response: bool  # a response (NACK-able), not an ACK


class PN532Emulator:
    """One PN532 chip. Attach it to exactly one host bus adapter (SimI2C, SimSPI or SimUART)."""

    def __init__(
        self,
        rf: RfField | None = None,
        *,
        faults: Faults | None = None,
        hsu_asleep: bool = True,
        address: int = 0x24,
    ) -> None:
        self.rf = rf if rf is not None else RfField()
        self.lock = self.rf.lock
        self.faults = faults if faults is not None else Faults()
        self.address = address
        self.hsu_asleep = hsu_asleep  # only the HSU adapter honours it
        self.sam_configured = False
        self.params = 0x14  # SetParameters flags: fAutomaticATR_RES | fAutomaticRATS
        self.passive_retries = 0xFF
        # host link state
        self.out: deque[_Out] = deque()
        self.last_response: bytes | None = None
        self.commands = 0  # valid command frames received
        self.transmissions = 0  # response frames put on the wire
        # ("host"|"chip", frame bytes): the last frames on the wire, for tests and debugging
        self.log: deque[tuple[str, bytes]] = deque(maxlen=256)
        self._pending: Callable[[], bytes | None] | None = None
        self._pending_cmd = -1
        self._pending_n = 0
        # reader mode
        self.target: CardInfo | None = None
        self._chain_out = bytearray()  # host -> card APDU parts (Tg MI bit)
        self._chain_in = b""  # card -> host answer still to hand out (status MI bit)
        # target mode
        self.listening: dict | None = None  # TgInitAsTarget parameters while waiting
        self.session = False  # activated by a reader
        self.released = False
        self._rx_apdus: deque[bytes] = deque()  # from the reader, not yet taken by TgGetData
        self._tx_parts = bytearray()  # TgSetMetaData parts
        self.activations = 0

    # ---- host side: frames in ----------------------------------------------------------------
    def host_frame(self, data: bytes) -> None:
        """One complete frame written by the host."""
        with self.lock:
            self.log.append(("host", bytes(data)))
            kind, body = parse_frame(bytes(data))
            if kind == "ack":
                self._abort()
            elif kind == "nack":
                self._resend()
            elif kind == "info" and body[0] == TFI_HOST and len(body) >= 2:
                self._command(body[1], bytes(body[2:]))
            # a bad frame is ignored: no ACK, the host resends

    def _abort(self) -> None:
        self._pending = None
        self._pending_cmd = -1
        self.out.clear()

    def _resend(self) -> None:
        if self.last_response is None:
            return
        while self.out and self.out[0].response:
            self.out.popleft()
        self._transmit(self.last_response, time.monotonic(), front=True)

    def _command(self, cmd: int, params: bytes) -> None:
        self.commands += 1
        n = self.commands
        f = self.faults
        if n in f.drop_command:
            return
        self._abort()  # a new command replaces any unanswered one
        if n not in f.drop_ack:
            self.out.append(_Out(ACK_FRAME, time.monotonic(), False))
            self.log.append(("chip", ACK_FRAME))
        if n in f.silent:
            self._pending = lambda: None
            self._pending_cmd = cmd
            self._pending_n = n
            return
        handler = _HANDLERS.get(cmd)
        if handler is None or (cmd in _NEEDS_SAM and not self.sam_configured):
            self._respond_error()
            return
        try:
            result = handler(self, params)
        except _Syntax:
            self._respond_error()
            return
        if callable(result):
            self._pending = result
            self._pending_cmd = cmd
            self._pending_n = n
            self._poll()
        else:
            self._respond(cmd, n, result)

    def _respond(self, cmd: int, n: int, params: bytes) -> None:
        frame = info_frame(bytes((TFI_CHIP, cmd + 1)) + params)
        self.last_response = frame
        delay = self.faults.delay_ms.get(n, 0) / 1000
        self._transmit(frame, time.monotonic() + delay)

    def _respond_error(self) -> None:
        self.last_response = ERROR_FRAME
        self._transmit(ERROR_FRAME, time.monotonic())

    def _transmit(self, frame: bytes, ready_at: float, front: bool = False) -> None:
        self.transmissions += 1
        t = self.transmissions
        f = self.faults
        data = bytearray(frame)
        if t in f.corrupt_lcs:
            data[4 if data[3:5] != b"\xff\xff" else 7] ^= 0x5A
        if t in f.corrupt_dcs:
            data[-2] ^= 0xA5
        if t in f.garbage:
            data = bytearray(f.garbage[t]) + (data if isinstance(self._bus, SimUART) else b"")
        item = _Out(bytes(data), ready_at, True)
        if front:
            self.out.appendleft(item)
        else:
            self.out.append(item)
        self.log.append(("chip", bytes(data)))

    _bus: object = None  # set by the adapter

    def _poll(self) -> None:
        """Finish a pending command whose condition is met (RF activity)."""
        if self._pending is None:
            return
        result = self._pending()
        if result is not None:
            cmd, n = self._pending_cmd, self._pending_n
            self._pending = None
            self._pending_cmd = -1
            self._respond(cmd, n, result)

    # ---- host side: frames out ---------------------------------------------------------------
    def _head(self) -> _Out | None:
        self._poll()
        if self.out and self.out[0].ready_at <= time.monotonic():
            return self.out[0]
        return None

    def ready(self) -> bool:
        with self.lock:
            return self._head() is not None

    def take(self) -> bytes | None:
        """The next ready frame, removed from the chip (HSU / whole reads)."""
        with self.lock:
            head = self._head()
            if head is None:
                return None
            self.out.popleft()
            return head.data

    def peek(self) -> bytes | None:
        with self.lock:
            head = self._head()
            return None if head is None else head.data

    def drop_head(self) -> None:
        with self.lock:
            if self.out:
                self.out.popleft()

    # ---- RF side as a target (Card protocol) --------------------------------------------------
    def rf_info(self) -> CardInfo | None:
        with self.lock:
            p = self.listening
            if p is None or self._pending_cmd != 0x8C:
                return None
            hist = p["historical"]
            ats = bytes((5 + len(hist),)) + PICC_ATS_TAIL + hist
            sens = p["sens_res"]
            return CardInfo(bytes((sens[1], sens[0])), p["sel_res"], b"\x08" + p["nfcid"], ats)

    def rf_activate(self) -> None:
        with self.lock:
            self.activations += 1
            self.session = True
            self.released = False
            self._rx_apdus.clear()
            self._tx_parts = bytearray()

    def rf_command(self, apdu: bytes) -> bytes | None:
        with self.lock:
            self._rx_apdus.append(bytes(apdu))
            return None  # answered later, by TgSetData

    def rf_release(self) -> None:
        with self.lock:
            self.released = True

    def rf_field_off(self) -> None:
        with self.lock:
            if self.session:
                self.released = True


class _Syntax(Exception):
    """The command's parameters are malformed: the chip answers with the error frame."""


def _need(params: bytes, lo: int, hi: int | None = None) -> None:
    if len(params) < lo or (hi is not None and len(params) > hi):
        raise _Syntax


# ---- command handlers: return the response parameters, or a callable polled until it returns them
def _diagnose(chip: PN532Emulator, p: bytes) -> bytes:
    _need(p, 1)
    if p[0] != 0x00:  # only the communication line test: echo
        raise _Syntax
    return p


def _firmware(chip: PN532Emulator, p: bytes) -> bytes:
    _need(p, 0, 0)
    return FIRMWARE


def _set_parameters(chip: PN532Emulator, p: bytes) -> bytes:
    _need(p, 1, 1)
    chip.params = p[0]
    return b""


def _sam_configuration(chip: PN532Emulator, p: bytes) -> bytes:
    _need(p, 1, 3)
    if not 1 <= p[0] <= 4:
        raise _Syntax
    chip.sam_configured = True
    return b""


def _rf_configuration(chip: PN532Emulator, p: bytes) -> bytes:
    _need(p, 1)
    if p[0] == 0x05:
        _need(p, 4, 4)
        chip.passive_retries = p[3]
    return b""


def _target_data(info: CardInfo, with_ats: bool) -> bytes:
    data = bytes((0x01,)) + info.atqa + bytes((info.sak, len(info.uid))) + info.uid
    if with_ats and info.ats:
        data += info.ats
    return data


def _in_list_passive_target(chip: PN532Emulator, p: bytes) -> bytes | Callable[[], bytes | None]:
    _need(p, 2)
    if not 1 <= p[0] <= 2 or p[1] != 0x00:  # 106 kbps type A only
        raise _Syntax
    chip.target = None
    chip._chain_out = bytearray()
    chip._chain_in = b""

    def attempt() -> bytes | None:
        info = chip.rf.reader_activate()
        if info is None:
            return None
        chip.target = info
        return b"\x01" + _target_data(info, bool(chip.params & 0x10) and bool(info.sak & 0x20))

    found = attempt()
    if found is not None:
        return found
    if chip.passive_retries != 0xFF:
        return b"\x00"  # the retries ran out: no target
    return attempt  # wait for a card, as the chip does with infinite retries


def _in_data_exchange(chip: PN532Emulator, p: bytes) -> bytes | Callable[[], bytes | None]:
    _need(p, 1)
    tg, data = p[0], p[1:]
    if len(data) > MAX_DATA:
        raise _Syntax
    if chip.target is None or tg & 0x3F != 0x01:
        return bytes((ST_BAD_CONTEXT,))
    if chip._chain_in:  # the host collects the rest of a long answer
        return _answer_part(chip, b"")
    chip._chain_out += data
    if tg & ST_MI:
        if len(chip._chain_out) > 4096:
            raise _Syntax
        return bytes((ST_OK,))  # part taken; the card acknowledged the chained block
    apdu, chip._chain_out = bytes(chip._chain_out), bytearray()
    if not chip.rf.reader_send(apdu):
        chip.target = None
        return bytes((ST_TIMEOUT,))

    def wait() -> bytes | None:
        present, answer = chip.rf.reader_answer()
        if not present:
            chip.target = None
            return bytes((ST_TIMEOUT,))
        if answer is None:
            return None
        return _answer_part(chip, answer)

    return wait


def _answer_part(chip: PN532Emulator, answer: bytes) -> bytes:
    rest = chip._chain_in or answer
    part, chip._chain_in = rest[:MAX_DATA], rest[MAX_DATA:]
    return bytes((ST_MI if chip._chain_in else ST_OK,)) + part


def _in_release(chip: PN532Emulator, p: bytes) -> bytes:
    _need(p, 1, 1)
    if chip.target is not None:
        chip.rf.reader_release()
    chip.target = None
    return bytes((ST_OK,))


def _tg_init_as_target(chip: PN532Emulator, p: bytes) -> Callable[[], bytes | None]:
    _need(p, 37)
    gt_len = p[35]
    _need(p, 37 + gt_len)
    tk_len = p[36 + gt_len]
    _need(p, 37 + gt_len + tk_len, 37 + gt_len + tk_len)
    chip.listening = {
        "mode": p[0],
        "sens_res": p[1:3],
        "nfcid": p[3:6],
        "sel_res": p[6],
        "historical": p[37 + gt_len : 37 + gt_len + tk_len],
    }
    chip.session = False
    chip.released = False
    picc = bool(p[0] & 0x04) and bool(chip.params & 0x20) and bool(p[6] & 0x20)

    def activated() -> bytes | None:
        if not chip.session or chip.released:
            return None
        chip.listening = None
        return bytes((0x08 if picc else 0x00,)) + b"\xe0\x80"  # mode, the reader's RATS

    return activated


def _tg_get_data(chip: PN532Emulator, p: bytes) -> bytes | Callable[[], bytes | None]:
    _need(p, 0, 0)
    if not chip.session and not chip.released:
        return bytes((ST_BAD_CONTEXT,))

    def take() -> bytes | None:
        if chip._rx_apdus:
            apdu = chip._rx_apdus.popleft()
            if len(apdu) > MAX_DATA:
                chip._rx_apdus.appendleft(apdu[MAX_DATA:])
                return bytes((ST_MI,)) + apdu[:MAX_DATA]
            return bytes((ST_OK,)) + apdu
        if chip.released:
            chip.session = False
            return bytes((ST_RELEASED,))
        return None

    return take


def _tg_set_meta_data(chip: PN532Emulator, p: bytes) -> bytes:
    _need(p, 0, MAX_DATA)
    if chip.released or not chip.session:
        return bytes((ST_RELEASED,))
    chip._tx_parts += p
    return bytes((ST_OK,))


def _tg_set_data(chip: PN532Emulator, p: bytes) -> bytes:
    _need(p, 0, MAX_DATA)
    if chip.released or not chip.session:
        return bytes((ST_RELEASED,))
    answer, chip._tx_parts = bytes(chip._tx_parts) + p, bytearray()
    chip.rf.card_answer(chip, answer)
    return bytes((ST_OK,))


_HANDLERS: dict[int, Callable[[PN532Emulator, bytes], object]] = {
    0x00: _diagnose,
    0x02: _firmware,
    0x12: _set_parameters,
    0x14: _sam_configuration,
    0x32: _rf_configuration,
    0x4A: _in_list_passive_target,
    0x40: _in_data_exchange,
    0x52: _in_release,
    0x8C: _tg_init_as_target,
    0x86: _tg_get_data,
    0x8E: _tg_set_data,
    0x94: _tg_set_meta_data,
}
_NEEDS_SAM = {0x4A, 0x40, 0x52, 0x8C, 0x86, 0x8E, 0x94}


# --- bus adapters with the shapes of MicroPython's machine classes ------------------------------
class SimPin:
    """machine.Pin shape: value([x]), __call__([x]), on(), off(). ``on_change(v)`` sees writes;
    ``source()`` (if given) supplies the level an input reads."""

    def __init__(
        self,
        value: int = 1,
        on_change: Callable[[int], None] | None = None,
        source: Callable[[], int] | None = None,
    ) -> None:
        self._v = value
        self.on_change = on_change
        self.source = source
        self.writes: list[int] = []

    def value(self, v: int | None = None) -> int | None:
        if v is None:
            return self.source() if self.source is not None else self._v
        v = 1 if v else 0
        self.writes.append(v)
        if v != self._v:
            self._v = v
            if self.on_change is not None:
                self.on_change(v)
        return None

    __call__ = value

    def on(self) -> None:
        self.value(1)

    def off(self) -> None:
        self.value(0)


def irq_pin(chip: PN532Emulator) -> SimPin:
    """The chip's P70_IRQ line: low while a frame waits for the host."""
    return SimPin(source=lambda: 0 if chip.ready() else 1)


class SimI2C:
    """machine.I2C shape for one PN532 at ``chip.address``: every read returns the status byte
    first; the frame follows when the status says ready (UM0701-02 6.2.4)."""

    def __init__(self, chip: PN532Emulator) -> None:
        self.chip = chip
        chip._bus = self
        self.reads = 0
        self.writes = 0

    def scan(self) -> list[int]:
        return [self.chip.address]

    def _check(self, addr: int) -> None:
        if addr != self.chip.address:
            raise OSError(19, "ENODEV")  # what MicroPython raises when nobody ACKs the address

    def writeto(self, addr: int, buf: bytes, stop: bool = True) -> int:
        self._check(addr)
        self.writes += 1
        self.chip.host_frame(bytes(buf))
        return len(buf)

    def writevto(self, addr: int, bufs: list[bytes], stop: bool = True) -> int:
        return self.writeto(addr, b"".join(bytes(b) for b in bufs), stop)

    def readfrom_into(self, addr: int, buf: bytearray | memoryview, stop: bool = True) -> None:
        self._check(addr)
        self.reads += 1
        n = len(buf)
        chip = self.chip
        with chip.lock:
            frame = chip.peek()
            if frame is None:
                buf[:] = bytes(n)
                return
            data = b"\x01" + frame
            if n >= len(data):
                chip.drop_head()
                data += bytes(n - len(data))
            buf[:] = data[:n]

    def readfrom(self, addr: int, n: int, stop: bool = True) -> bytes:
        buf = bytearray(n)
        self.readfrom_into(addr, buf, stop)
        return bytes(buf)


class SimSPI:
    """machine.SPI shape (write / readinto / read / write_readinto) wired to one PN532, with
    its chip-select line as ``spi.cs`` (a SimPin). ``firstbit`` is how the bus shifts bits: the
    chip reads LSB first (UM0701-02 6.2.5), so an MSB-first bus shows it bit-reversed bytes."""

    MSB = 0
    LSB = 1

    def __init__(self, chip: PN532Emulator, firstbit: int = LSB) -> None:
        self.chip = chip
        chip._bus = self
        self.firstbit = firstbit
        self.cs = SimPin(1, on_change=self._select)
        self._op: int | None = None
        self._in = bytearray()
        self._frame: bytes | None = None
        self._pos = 0

    def _wire(self, b: int) -> int:
        return b if self.firstbit == self.LSB else reverse_bits(b)

    def _select(self, level: int) -> None:
        if level == 0:
            self._op = None
            self._in = bytearray()
            self._frame = None
            self._pos = 0
            return
        if self._op == 0x01 and self._in:
            self.chip.host_frame(bytes(self._in))
        elif self._op == 0x03 and self._frame is not None and self._pos > 0:
            self.chip.drop_head()  # CS up ends the data read: the frame is released
        self._op = None

    def _clock(self, out_byte: int) -> int:
        """One byte each way while CS is low."""
        if self.cs.value() != 0:
            return 0xFF  # not selected: MISO floats
        b = self._wire(out_byte)
        if self._op is None:
            self._op = b
            if b == 0x03:
                self._frame = self.chip.peek()
                self._pos = 0
            return 0x00
        if self._op == 0x01:
            self._in.append(b)
            return 0x00
        if self._op == 0x02:
            return self._wire(0x01 if self.chip.ready() else 0x00)
        if self._op == 0x03:
            frame = self._frame
            if frame is None or self._pos >= len(frame):
                return 0x00
            v = frame[self._pos]
            self._pos += 1
            return self._wire(v)
        return 0x00

    def write(self, buf: bytes) -> None:
        for b in bytes(buf):
            self._clock(b)

    def readinto(self, buf: bytearray | memoryview, write: int = 0x00) -> None:
        for i in range(len(buf)):
            buf[i] = self._clock(write)

    def read(self, n: int, write: int = 0x00) -> bytes:
        buf = bytearray(n)
        self.readinto(buf, write)
        return bytes(buf)

    def write_readinto(self, wbuf: bytes, rbuf: bytearray | memoryview) -> None:
        data = bytes(wbuf)
        for i in range(len(data)):
            rbuf[i] = self._clock(data[i])


class SimUART:
    """machine.UART shape (write / read / readinto / any) wired to one PN532 on HSU: the chip
    sleeps until it sees the 0x55 wake-up preamble; its frames come out as one byte stream."""

    def __init__(self, chip: PN532Emulator) -> None:
        self.chip = chip
        chip._bus = self
        self.asleep = chip.hsu_asleep
        self._in = bytearray()
        self._rx = bytearray()
        self.dropped_asleep = 0

    def write(self, buf: bytes) -> int:
        data = bytes(buf)
        with self.chip.lock:
            if self.asleep:
                if 0x55 not in data:
                    self.dropped_asleep += len(data)
                    return len(data)
                self.asleep = False
                data = data[data.index(0x55) :]
            self._in += data
            self._parse()
        return len(buf)

    def _parse(self) -> None:
        buf = self._in
        while True:
            i = 0
            while i < len(buf) and buf[i] in (0x00, 0x55):  # wake-up bytes and preambles
                i += 1
            if i == len(buf):
                del buf[: max(0, i - 1)]
                return
            if buf[i] != 0xFF or i == 0 or buf[i - 1] != 0x00:
                del buf[: i + 1]  # noise
                continue
            start = i - 1
            frame_end = self._frame_end(buf, start)
            if frame_end == 0:
                del buf[:start]
                return  # wait for more bytes
            frame = bytes(buf[start:frame_end]) if frame_end > 0 else b""
            del buf[: frame_end if frame_end > 0 else i + 1]
            if frame:
                self.chip.host_frame(b"\x00" + frame)

    @staticmethod
    def _frame_end(buf: bytearray, start: int) -> int:
        """End index of the frame at buf[start] (00 FF ...): 0 = incomplete, -1 = bad header."""
        p = start + 2
        if len(buf) < p + 2:
            return 0
        ln, lcs = buf[p], buf[p + 1]
        if (ln, lcs) in ((0x00, 0xFF), (0xFF, 0x00)):
            end = p + 3
        elif (ln, lcs) == (0xFF, 0xFF):
            if len(buf) < p + 5:
                return 0
            n = buf[p + 2] << 8 | buf[p + 3]
            end = p + 5 + n + 2
        elif (ln + lcs) & 0xFF:
            return -1
        else:
            end = p + 2 + ln + 2
        return end if len(buf) >= end else 0

    def _pump(self) -> None:
        while True:
            frame = self.chip.take()
            if frame is None:
                return
            self._rx += frame

    def any(self) -> int:
        with self.chip.lock:
            self._pump()
            return len(self._rx)

    def read(self, n: int | None = None) -> bytes | None:
        with self.chip.lock:
            self._pump()
            if not self._rx:
                return None
            n = len(self._rx) if n is None else n
            data = bytes(self._rx[:n])
            del self._rx[:n]
            return data

    def readinto(self, buf: bytearray | memoryview, nbytes: int | None = None) -> int | None:
        n = len(buf) if nbytes is None else min(nbytes, len(buf))
        data = self.read(n)
        if data is None:
            return None
        buf[: len(data)] = data
        return len(data)
