"""One emulated PN532 chip: its command frames, ACK/NACK, faults, and the command handlers
(reader mode: InListPassiveTarget, InDataExchange; target mode: TgInitAsTarget, TgGetData, ...)."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from .frames import (
    ACK_FRAME,
    ERROR_FRAME,
    FIRMWARE,
    MAX_DATA,
    PICC_ATS_TAIL,
    ST_BAD_CONTEXT,
    ST_MI,
    ST_OK,
    ST_RELEASED,
    ST_TIMEOUT,
    TFI_CHIP,
    TFI_HOST,
    info_frame,
    parse_frame,
)
from .rf import CardInfo, RfField


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
            from .bus import SimUART  # (bus imports this module)

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


