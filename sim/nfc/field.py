"""The virtual NFC field of one reader: tap a card, remove it, tear the link at a chosen byte,
and account for the time the card spends in the field.

`Field` is the reader side (`hal.Link`) a POS app transceives through; the card in it is
anything with `power_on()` and `process(apdu)` (a `sim.device.build.Device`, or a firmware app).
It is the simulator's one NFC field: the scenario runner, the checkout of `tapcash sim ui`, the
tests' POS-and-card pairs (`DirectLink`, below: the same field keeping every exchange) all
use it. Faults are injected at the byte level, deterministically:

- `tear("command", k, n)`: the k-th command of the current tap (0-based, counted from the
  last `tap()`) breaks after n of its bytes reached the card: the card never sees it. At or
  past the command's length the card got all of it and its response is lost at byte 0.
- `tear("response", k, n)`: the card processes the k-th command, and its response breaks
  after n bytes: the POS never gets the whole answer (at or past its length: no tear).

Either way the POS gets `hal.LinkError` and the card is out of the field until the next
`tap()` (a card is powered by the field: every tap is a power-on, a new session). A power cut
on the card's own flash during `process` is a tear too (the card vanished mid-command). A tear
is of the current tap: `remove()` drops one that has not fired.

With `keep`, every exchange is recorded (`exchanges`, `transcript`: the bytes that crossed the
air, a torn one keeps its prefix); `alter_command` / `alter_response` let a test play a man in
the middle.

Time on air is modelled on ISO/IEC 14443 type A at 106 kbit/s (`AirModel`):

- one bit is 128/fc = 9.44 us (fc = 13.56 MHz); a standard frame is SOF + 9 bits per byte
  (8 data bits and odd parity) + EOF;
- an APDU travels in ISO 14443-4 I-blocks: PCB byte + INF + CRC_A (2 bytes); an APDU longer
  than the frame size (FSC towards the card, FSD towards the reader, 256 by default) is
  chained, and every chained block but the last is answered by an R(ACK) block (3 bytes);
- between two frames the frame delay time passes (1172/fc = 86.4 us minimum, both ways);
- a tap starts with the card's power-up (5 ms, ISO 14443-3 t_reset) and the type A activation:
  REQA/ATQA, anticollision and SELECT of a 4-byte UID, RATS/ATS.

On top of the air time come the card's processing time for each command and the reader's
processing between commands (verify the card's answer, write its journal): `ComputeModel`,
either a fixed table (deterministic, the default) or the measured wall time of the simulated
device scaled by a factor (`measured=True`: real, but not reproducible). The card-in-field
time of a tap is activation + air time + card time + reader time, from power-up to the end of
the last answer: it is what the 500 ms of the card schemes is compared with.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal, Protocol

from tapcash.firmware.core.hal import Link, LinkError, PowerCut

Direction = Literal["command", "response"]

FC_HZ = 13_560_000
BIT_US_106 = 128 / FC_HZ * 1e6  # 9.4395 us


class Card(Protocol):
    def power_on(self) -> object: ...

    def process(self, apdu: bytes) -> bytes: ...


# ---- air time ---------------------------------------------------------------------------
@dataclass(frozen=True)
class AirModel:
    """ISO 14443 type A framing and timing at 106 kbit/s (every figure is configurable)."""

    bit_us: float = BIT_US_106
    frame_overhead_bits: int = 2  # SOF + EOF
    bits_per_byte: int = 9  # 8 data bits + odd parity
    pcb_bytes: int = 1  # ISO 14443-4 block prologue (no CID, no NAD)
    crc_bytes: int = 2  # CRC_A
    fsc: int = 256  # max frame size the card accepts (FSCI 8)
    fsd: int = 256  # max frame size the reader accepts (FSDI 8)
    fdt_us: float = 1172 / FC_HZ * 1e6  # frame delay time, each turn of the link
    power_up_us: float = 5000.0  # ISO 14443-3 t_reset: field on to first command
    uid_bytes: int = 4  # single-size UID (one cascade level)

    def frame_us(self, nbytes: int) -> float:
        """Time of one standard frame of nbytes (CRC included in nbytes)."""
        return (self.frame_overhead_bits + self.bits_per_byte * nbytes) * self.bit_us

    def blocks(self, nbytes: int, frame_size: int) -> int:
        inf = frame_size - self.pcb_bytes - self.crc_bytes
        return max(1, -(-nbytes // inf))

    def message_us(self, nbytes: int, frame_size: int) -> tuple[float, int]:
        """(air time, frames) of one APDU of nbytes in I-blocks, chained when needed, with the
        R(ACK) answers to chained blocks and the frame delay time before each frame."""
        n = self.blocks(nbytes, frame_size)
        wrap = self.pcb_bytes + self.crc_bytes
        t = self.frame_us(nbytes + n * wrap) + n * self.fdt_us
        if n > 1:  # each non-last block is acknowledged by an R(ACK) from the other side
            t += (n - 1) * (self.frame_us(self.pcb_bytes + self.crc_bytes) + self.fdt_us)
        return t, 2 * n - 1

    def activation_us(self) -> float:
        """Power-up, REQA/ATQA, anticollision + SELECT (one cascade level), RATS/ATS."""
        short = (1 + 7 + 1) * self.bit_us  # REQA: short frame, 7 data bits
        frames = [
            2,  # ATQA
            2,  # ANTICOLLISION: SEL, NVB
            self.uid_bytes + 1,  # UID + BCC
            7 + self.crc_bytes,  # SELECT: SEL, NVB, UID, BCC, CRC
            1 + self.crc_bytes,  # SAK
            2 + self.crc_bytes,  # RATS
            5 + self.crc_bytes,  # ATS: TL T0 TA TB TC
        ]
        t = self.power_up_us + short + self.fdt_us
        for nbytes in frames:
            t += self.frame_us(nbytes) + self.fdt_us
        return t

    def exchange_us(self, command: int, response: int) -> tuple[float, int]:
        """(air time, frames) of one command APDU and its response."""
        tc, fc = self.message_us(command, self.fsc)
        tr, fr = self.message_us(response, self.fsd) if response else (0.0, 0)
        return tc + tr, fc + fr


# ---- processing time ------------------------------------------------------------------------
# Card processing per command (INS -> ms) and reader processing after a command's answer,
# before it sends the next one: the firmware's own cost in the desktop MicroPython VM, as
# measured by `tapcash bench sim --calibrate` (100 wallets x 10 POS, 300 payments; host round
# trip included), i.e. a fast card. `scale` stretches them: an ESP32 running the pure-Python
# firmware is about 50-100x slower than the desktop VM.
DEFAULT_CARD_MS: dict[int, float] = {
    0xA4: 0.5,  # SELECT: INFO map with the certificate
    0x50: 6.5,  # PAY: checks, one flash commit, one Ed25519 signature
    0x52: 1.0,  # RECEIPT: field checks, one journal append
    0x84: 0.3,  # GET CHALLENGE (not calibrated)
    0x56: 18.0,  # RECEIVE: two signature checks, one commit (not calibrated)
}
DEFAULT_READER_MS: dict[int, float] = {
    0xA4: 5.7,  # after INFO: certificate (8-entry cache), limits, torn-log write
    0x50: 10.0,  # after PAY: verify the payment, journal append, sign the receipt
}
OTHER_CARD_MS = 1.0


@dataclass(frozen=True)
class ComputeModel:
    card_ms: Mapping[int, float] = field(default_factory=lambda: dict(DEFAULT_CARD_MS))
    reader_ms: Mapping[int, float] = field(default_factory=lambda: dict(DEFAULT_READER_MS))
    other_card_ms: float = OTHER_CARD_MS
    scale: float = 1.0
    measured: bool = False  # use the simulated card's wall time (x scale) instead of card_ms

    def card_us(self, ins: int, wall_us: float) -> float:
        if self.measured:
            return wall_us * self.scale
        return self.card_ms.get(ins, self.other_card_ms) * self.scale * 1000.0

    def reader_us(self, ins: int, wall_us: float = 0.0) -> float:
        if self.measured:
            return wall_us * self.scale
        return self.reader_ms.get(ins, 0.0) * self.scale * 1000.0


# ---- records --------------------------------------------------------------------------------
@dataclass
class TapRecord:
    """One card presence in the field, from power-up to removal (or tear)."""

    tap: int
    exchanges: int = 0
    frames: int = 0
    bytes_on_air: int = 0  # APDU bytes both ways (no framing)
    activation_us: float = 0.0
    air_us: float = 0.0
    card_us: float = 0.0
    reader_us: float = 0.0
    torn: Direction | None = None

    @property
    def in_field_us(self) -> float:
        return self.activation_us + self.air_us + self.card_us + self.reader_us

    @property
    def in_field_ms(self) -> float:
        return self.in_field_us / 1000.0


@dataclass(frozen=True)
class Exchange:
    tap: int  # tap number (1 for the first tap)
    index: int  # command index within the tap
    command: bytes  # bytes of the command that reached the air
    response: bytes  # bytes of the response that reached the air
    torn: Direction | None = None  # where the link broke, if it did


class Field(Link):
    """One reader's field. `exchanges` (and `transcript`) keep every exchange when `keep` is
    set; `digest` always hashes the whole transcript (for cheap determinism checks).

    `card` puts a card in the field from the start (no power-on: it is already running).
    `power_cut_raises`: a power cut while the card powers up at `tap()` reaches the caller
    (otherwise the card stays silent, its tap torn)."""

    def __init__(
        self,
        air: AirModel | None = None,
        compute: ComputeModel | None = None,
        *,
        keep: bool = False,
        name: str = "",
        card: Card | None = None,
        alter_command: Callable[[int, bytes], bytes] | None = None,
        alter_response: Callable[[int, bytes, bytes], bytes] | None = None,
        power_cut_raises: bool = False,
    ) -> None:
        self.air = air or AirModel()
        self.compute = compute or ComputeModel()
        self.name = name
        self.keep = keep
        self.alter_command = alter_command
        self.alter_response = alter_response
        self.power_cut_raises = power_cut_raises
        self.card: Card | None = card
        self.present = card is not None
        self.taps = 1 if card is not None else 0
        self.index = 0
        self.current: TapRecord | None = None
        self.exchanges: list[Exchange] = []
        self._hash = hashlib.sha256()
        self._tear: tuple[Direction, int, int] | None = None
        self._last_ins: int | None = None
        self._activation_us = self.air.activation_us()
        self._air_of: AirModel | None = None  # the model _air_times are of
        self._air_times: dict[tuple[int, int], tuple[float, int]] = {}
        self._t_answer = 0.0  # when the last answer reached the reader (measured mode)
        # per INS: [commands, card us, reader us after its answer] (calibration figures)
        self.per_ins: dict[int, list[float]] = {}
        if card is not None:
            self.current = TapRecord(1, activation_us=self._activation_us)

    # ---- the field ----------------------------------------------------------------------
    def tap(self, card: Card | None = None) -> TapRecord:
        """Bring `card` (or the one tapped before) into the field: it powers up (a new
        session) and is activated."""
        if card is not None:
            self.card = card
        card = self.card
        if card is None:
            raise ValueError("no card to tap")
        self.taps += 1
        self.index = 0
        self._last_ins = None
        rec = TapRecord(self.taps, activation_us=self._activation_us)
        self.current = rec
        try:
            card.power_on()
        except PowerCut:  # its flash cannot even be read: it never answers
            self.present = False
            rec.torn = "command"
            if self.power_cut_raises:
                raise
            return rec
        self.present = True
        return rec

    def remove(self) -> TapRecord | None:
        """The card leaves the field; returns the record of its tap."""
        self.present = False
        rec, self.current = self.current, None
        self._tear = None
        return rec

    def tear(self, direction: Direction, command_index: int, byte_index: int) -> None:
        """Break the link after `byte_index` bytes of command / response `command_index`
        (0-based, counted from the last tap); the rules are in the module's docstring."""
        if direction not in ("command", "response"):
            raise ValueError(direction)
        if command_index < 0 or byte_index < 0:
            raise ValueError("indexes are >= 0")
        self._tear = (direction, command_index, byte_index)

    tear_at = tear  # the name the tests' pairs use

    def cancel_tear(self) -> None:
        self._tear = None

    @property
    def tear_pending(self) -> bool:
        return self._tear is not None

    @property
    def digest(self) -> str:
        return self._hash.hexdigest()

    # ---- hal.Link -----------------------------------------------------------------------
    def transceive(self, apdu: bytes) -> bytes:
        card = self.card
        if not self.present or card is None:
            raise LinkError("no card in the field")
        rec = self.current
        assert rec is not None
        k = self.index
        self.index += 1
        apdu = bytes(apdu)
        ins = apdu[1] if len(apdu) > 1 else 0
        measured = self.compute.measured
        t0 = time.perf_counter() if measured else 0.0
        last = self._last_ins
        if last is not None:  # the reader worked on the previous answer
            reader = self.compute.reader_us(last, (t0 - self._t_answer) * 1e6)
            rec.reader_us += reader
            self._count(last, 0, 0.0, reader)
        self._last_ins = ins
        tear = self._tear if self._tear is not None and self._tear[1] == k else None
        if tear is not None and tear[0] == "command" and tear[2] < len(apdu):
            raise self._break(rec, apdu[: tear[2]], b"", "command", 0.0)
        if tear is not None and tear[0] == "command":
            tear = ("response", k, 0)
        received = self.alter_command(k, apdu) if self.alter_command else apdu
        try:
            resp = bytes(card.process(received))
        except PowerCut:
            raise self._break(rec, apdu, b"", "response", 0.0) from None
        if self.alter_response:
            resp = bytes(self.alter_response(k, received, resp))
        if measured:
            self._t_answer = time.perf_counter()
            card_us = self.compute.card_us(ins, (self._t_answer - t0) * 1e6)
        else:
            card_us = self.compute.card_us(ins, 0.0)
        self._count(ins, 1, card_us, 0.0)
        if tear is not None and tear[2] < len(resp):
            raise self._break(rec, apdu, resp[: tear[2]], "response", card_us)
        if tear is not None:
            self._tear = None
        self._record(rec, apdu, resp, card_us)
        return resp

    # ---- records ------------------------------------------------------------------------
    @property
    def transcript(self) -> list[tuple[bytes, bytes]]:
        return [(e.command, e.response) for e in self.exchanges]

    @property
    def bytes_on_air(self) -> int:
        return sum(len(e.command) + len(e.response) for e in self.exchanges)

    def clear_records(self) -> None:
        self.exchanges = []

    def _count(self, ins: int, n: int, card_us: float, reader_us: float) -> None:
        c = self.per_ins.get(ins)
        if c is None:
            c = self.per_ins[ins] = [0, 0.0, 0.0]
        c[0] += n
        c[1] += card_us
        c[2] += reader_us

    def _record(
        self, rec: TapRecord, cmd: bytes, resp: bytes, card_us: float, torn: Direction | None = None
    ) -> None:
        key = (len(cmd), len(resp))
        air = self.air
        if self._air_of is not air:  # (a field given another model later starts afresh)
            self._air_of, self._air_times = air, {}
        got = self._air_times.get(key)  # a pure function of the two lengths: computed once
        if got is None:
            got = self._air_times[key] = air.exchange_us(*key)
        air_us, frames = got
        rec.exchanges += 1
        rec.frames += frames
        rec.bytes_on_air += len(cmd) + len(resp)
        rec.air_us += air_us
        rec.card_us += card_us
        self._hash.update(
            b"".join((len(cmd).to_bytes(4, "big"), cmd, len(resp).to_bytes(4, "big"), resp))
        )
        if self.keep:
            self.exchanges.append(Exchange(self.taps, rec.exchanges - 1, cmd, resp, torn))

    def _break(
        self, rec: TapRecord, cmd: bytes, resp: bytes, where: Direction, card_us: float
    ) -> LinkError:
        self._tear = None
        self.present = False
        rec.torn = where
        self._record(rec, cmd, resp, card_us, where)
        return LinkError(f"link torn in the {where} of command {rec.exchanges - 1}")


class DirectLink(Field):
    """The field of the tests' POS-and-card pairs: every exchange kept, the card (if given)
    already in it, a power cut at power-up raised to the caller."""

    def __init__(
        self,
        card: Card | None = None,
        *,
        alter_command: Callable[[int, bytes], bytes] | None = None,
        alter_response: Callable[[int, bytes, bytes], bytes] | None = None,
    ) -> None:
        super().__init__(
            keep=True,
            card=card,
            alter_command=alter_command,
            alter_response=alter_response,
            power_cut_raises=True,
        )
