"""Fake PN532 buses for the driver's robustness tests: a chip that sends whatever a test (or
Hypothesis) scripts, on a simulated clock, and a guard that stops a driver that would not return.

Unlike sim/nfc/pn532/ (a faithful chip), the chip here follows no protocol: it sends the scripted
frames in order whatever the host writes, and then its `tail` again and again for ever (a chip
that keeps answering ACK, a line of zeros) or nothing (a silent chip). Only the bus mechanics are
those of the real interfaces (UM0701-02 6.2.3-6.2.5), as the driver sees them through machine.I2C /
machine.SPI + Pin / machine.UART shaped objects:

- I2C: every read starts with the status byte (bit 0: a frame is ready) followed by the frame from
  its first byte; the frame is taken off the chip by a read that covers it whole.
- SPI: CS low, then DW + frame, SR -> status byte, or DR -> the frame's bytes in order; raising CS
  after a DR read releases the frame.
- UART: one byte stream; once the host has written, the scripted frames are always buffered
  ("bytes stay buffered": the worst case, a driver never has to wait for them).

Time is SimClock: it moves only when the driver sleeps (sleep_ms) and by the cost each bus
transaction is given (bus time: bytes at the bus rate). With costs of zero a driver that loops on
reads without sleeping never sees its deadline pass, so a bound on reads is needed as well as one
on time; `Guard` raises Runaway (a BaseException the driver cannot catch) once a driver call has
made more than `max_ops` bus transactions or run past `max_ms` of simulated time: the test fails
instead of hanging.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from tapcash.firmware.hal.pn532 import PN532, PN532Error
from tapcash.firmware.hal.pn532_transport import PN532_I2C, PN532_SPI, PN532_UART
from tapcash.sim.nfc.pn532.bus import UartReadInto

ACK = bytes.fromhex("0000ff00ff00")
NACK = bytes.fromhex("0000ffff0000")
ERROR_FRAME = bytes.fromhex("0000ff01ff7f8100")
FRAME_MAX = 277  # the longest frame the driver takes (4 leading zeros, extended, 265 body bytes)
KINDS = ("i2c", "spi", "spi-msb", "uart")

MAX_OPS = 50_000  # bus transactions one driver call may make: "bounded reads"
MAX_MS = 60_000  # simulated time after which a driver call counts as hung


class Runaway(BaseException):
    """The driver did not return: it made MAX_OPS bus transactions or ran for MAX_MS."""


def frame(body: bytes, zeros: int = 2, ext: bool | None = None) -> bytes:
    """An information frame around body (TFI + PD), written here from the manual (6.2.1), with
    `zeros` leading zeros (2 = the normal 00 00 FF) and the extended form when asked or needed."""
    n = len(body)
    if ext is None:
        ext = n > 255
    head = bytes(zeros) + b"\xff"
    if ext:
        hi, lo = n >> 8, n & 0xFF
        head += bytes((0xFF, 0xFF, hi, lo, -(hi + lo) & 0xFF))
    else:
        head += bytes((n & 0xFF, -n & 0xFF))
    return head + body + bytes((-sum(body) & 0xFF, 0x00))


@dataclass
class Resp:
    """A response frame to whatever command the host sent last: D5, code + 1, data."""

    data: bytes = b""
    zeros: int = 2
    ext: bool | None = None
    delta: int = 1  # response code - command code (1 is right)
    flip: tuple[int, int] | None = None  # (position, xor) corrupts one byte

    def build(self, cmd: int) -> bytes:
        out = bytearray(frame(bytes((0xD5, (cmd + self.delta) & 0xFF)) + self.data,
                              self.zeros, self.ext))  # fmt: skip
        if self.flip is not None:
            pos, xor = self.flip
            out[pos % len(out)] ^= xor
        return bytes(out)


Item = bytes | Resp


@dataclass
class Entry:
    item: Item
    wait: int = 0  # status polls that say "not ready" before this one is ready


def entries(items: Iterable[Item | tuple[Item, int]]) -> list[Entry]:
    return [Entry(*i) if isinstance(i, tuple) else Entry(i) for i in items]


class SimClock:
    """The driver's clock (transport `clock=`): microseconds, moved by sleeps and by bus time."""

    def __init__(self) -> None:
        self.us = 0

    def ticks_ms(self) -> int:
        return self.us // 1000

    def sleep_ms(self, ms: int) -> None:
        self.us += max(0, int(ms)) * 1000

    @property
    def ms(self) -> float:
        return self.us / 1000


@dataclass
class Guard:
    clock: SimClock
    max_ops: int = MAX_OPS
    max_ms: int = MAX_MS
    ops: int = 0
    start_ops: int = 0
    start_us: int = 0
    refused_writes: int = 0
    write_us: float = 0.0  # bus time of the host's own writes in this call
    read_us: float = 0.0  # bus time of reads that carried a frame the chip had ready

    def arm(self) -> None:
        self.start_ops = self.ops
        self.start_us = self.clock.us
        self.refused_writes = 0
        self.write_us = 0.0
        self.read_us = 0.0

    def write(self, cost_us: float) -> int:
        self.write_us += int(cost_us)
        return self.op(cost_us)

    def op(self, cost_us: float) -> int:
        self.ops += 1
        self.clock.us += int(cost_us)
        if self.ops - self.start_ops > self.max_ops:
            raise Runaway(f"{self.max_ops} bus transactions in one driver call")
        if self.clock.us - self.start_us > self.max_ms * 1000:
            raise Runaway(f"{self.max_ms} ms in one driver call")
        return self.ops

    @property
    def call_ops(self) -> int:
        return self.ops - self.start_ops

    @property
    def call_ms(self) -> float:
        return (self.clock.us - self.start_us) / 1000


class Chip:
    """The scripted chip: `items` in order, then `tail` for ever (or silence when it is empty)."""

    def __init__(self, items: Sequence[Entry], tail: Sequence[Entry] = ()) -> None:
        self.items = list(items)
        self.tail = list(tail)
        self.pos = 0
        self.wait = self._entry().wait if self._entry() else 0
        self.last_cmd = 0x00
        self.host: list[bytes] = []  # frames the host wrote

    def _entry(self) -> Entry | None:
        if self.pos < len(self.items):
            return self.items[self.pos]
        if self.tail:
            return self.tail[(self.pos - len(self.items)) % len(self.tail)]
        return None

    def poll(self) -> bool:
        """One status poll: True when a frame is ready (a poll that says no uses up a wait)."""
        e = self._entry()
        if e is None:
            return False
        if self.wait > 0:
            self.wait -= 1
            return False
        return True

    def head(self) -> bytes:
        e = self._entry()
        assert e is not None
        return e.item.build(self.last_cmd) if isinstance(e.item, Resp) else e.item

    def advance(self) -> None:
        self.pos += 1
        e = self._entry()
        self.wait = e.wait if e is not None else 0

    def host_frame(self, data: bytes) -> None:
        data = bytes(data)
        self.host.append(data)
        i = 0
        while i < len(data) and data[i] == 0:
            i += 1
        if i + 4 < len(data) and data[i] == 0xFF and data[i + 1] not in (0x00, 0xFF):
            if data[i + 3] == 0xD4 and i + 4 < len(data):
                self.last_cmd = data[i + 4]  # a normal command frame: remember its code
        elif i + 7 < len(data) and data[i + 1 : i + 3] == b"\xff\xff" and data[i + 6] == 0xD4:
            self.last_cmd = data[i + 7]


class FakeI2C:
    """machine.I2C shape. `errors`: numbers of bus transactions (from 1) that raise OSError."""

    def __init__(self, chip: Chip, guard: Guard, byte_us: float = 25.0,
                 errors: Iterable[int] = ()) -> None:  # fmt: skip
        self.chip = chip
        self.guard = guard
        self.byte_us = byte_us  # 400 kHz: 9 clocks a byte
        self.errors = set(errors)

    def writeto(self, addr: int, buf: Any, stop: bool = True) -> int:
        if self.guard.write(self.byte_us * (1 + len(buf))) in self.errors:
            self.guard.refused_writes += 1
            raise OSError(19)
        self.chip.host_frame(bytes(buf))
        return len(buf)

    def readfrom_into(self, addr: int, buf: Any, stop: bool = True) -> None:
        cost = self.byte_us * (1 + len(buf))
        if self.guard.op(cost) in self.errors:
            raise OSError(116)
        chip = self.chip
        n = len(buf)
        if not chip.poll():
            buf[0:n] = bytes(n)  # status 00: not ready, the rest means nothing
            return
        self.guard.read_us += cost
        data = chip.head()
        k = min(len(data), n - 1)
        buf[0] = 0x01
        buf[1 : 1 + k] = data[:k]
        buf[1 + k : n] = bytes(n - 1 - k)
        if n - 1 >= len(data):
            chip.advance()


class FakePin:
    def __init__(self, on_change: Callable[[int], None] | None = None) -> None:
        self.level = 1
        self.on_change = on_change

    def value(self, v: int | None = None) -> int | None:
        if v is None:
            return self.level
        old, self.level = self.level, 1 if v else 0
        if self.on_change is not None and old != self.level:
            self.on_change(self.level)
        return None


def _rev(b: int) -> int:
    return int(f"{b:08b}"[::-1], 2)


class FakeSPI:
    """machine.SPI shape with its chip-select `cs`; lsb=False is an MSB-only bus (the driver
    reverses the bits itself), so the bytes on this bus are reversed here too."""

    def __init__(self, chip: Chip, guard: Guard, byte_us: float = 2.0, lsb: bool = True) -> None:
        self.chip = chip
        self.guard = guard
        self.byte_us = byte_us  # 5 MHz
        self.lsb = lsb
        self.cs = FakePin(self._select)
        self.opcode: int | None = None
        self.dw = bytearray()
        self.dr = 0

    def _wire(self, b: int) -> int:
        return b if self.lsb else _rev(b)

    def _select(self, level: int) -> None:
        if level == 0:
            self.opcode, self.dw, self.dr = None, bytearray(), 0
            return
        if self.opcode == 0x01 and self.dw:
            self.chip.host_frame(bytes(self.dw))
        elif self.opcode == 0x03 and self.dr and self.chip._entry() is not None:
            self.chip.advance()  # CS up after a data read releases the frame
        self.opcode = None

    def write(self, buf: Any) -> None:
        self.guard.write(self.byte_us * len(buf))
        data = [self._wire(b) for b in bytes(buf)]
        if self.cs.level:
            return  # not selected: nobody listens
        if self.opcode is None and data:
            self.opcode, data = data[0], data[1:]
        if self.opcode == 0x01:
            self.dw += bytes(data)

    def readinto(self, buf: Any, write: int = 0x00) -> None:
        self.guard.op(self.byte_us * len(buf))
        n = len(buf)
        out = bytearray(n)
        if not self.cs.level and self.opcode == 0x02:
            out[0:n] = bytes([0x01 if self.chip.poll() else 0x00]) * n
        elif not self.cs.level and self.opcode == 0x03 and self.chip._entry() is not None:
            self.guard.read_us += self.byte_us * n
            data = self.chip.head()
            part = data[self.dr : self.dr + n]
            out[: len(part)] = part
            self.dr += n
        buf[0:n] = bytes(self._wire(b) for b in out)


class FakeUART(UartReadInto):
    """machine.UART shape: the scripted frames are one byte stream, always buffered."""

    def __init__(self, chip: Chip, guard: Guard, call_us: float = 1.0,
                 lie: bool = False) -> None:  # fmt: skip
        self.chip = chip
        self.guard = guard
        self.call_us = call_us
        self.lie = lie  # any() says bytes are there, readinto finds none (every other call)
        self.buf = bytearray()
        self._lies = 0

    def _pull(self) -> None:
        # the chip starts talking once the host has written (the driver drops stale input first)
        if not self.buf and self.chip.host and self.chip.poll():
            self.buf += self.chip.head()
            self.chip.advance()

    def write(self, buf: Any) -> int:
        self.guard.write(self.call_us)
        self.chip.host_frame(bytes(buf))
        return len(buf)

    def any(self) -> int:
        self.guard.op(self.call_us)
        self._pull()
        return len(self.buf) or (1 if self.lie else 0)

    def read(self, n: int | None = None) -> bytes | None:
        self.guard.op(self.call_us)
        self._pull()
        self._lies += 1
        if not self.buf or (self.lie and self._lies % 2):
            return None
        self.guard.read_us += self.call_us
        n = len(self.buf) if n is None else n
        data = bytes(self.buf[:n])
        del self.buf[:n]
        return data


@dataclass
class Outcome:
    value: Any
    error: PN532Error | None
    ms: float  # simulated time the call took
    ops: int  # bus transactions it made


@dataclass
class Rig:
    kind: str
    pn: PN532
    chip: Chip
    clock: SimClock
    guard: Guard
    bus: Any
    t: Any = field(default=None)
    last: str = ""  # how the last run() ended: "ok" or the error code

    def __repr__(self) -> str:  # what a failing Hypothesis example shows: enough to replay it
        pn, c = self.pn, self.chip
        extra = f", errors={sorted(self.bus.errors)}" if isinstance(self.bus, FakeI2C) else ""
        extra += ", lie=True" if getattr(self.bus, "lie", False) else ""
        cost = any(getattr(self.bus, a, 0) for a in ("byte_us", "call_us"))
        return (f"rig({self.kind!r}, {[(e.item, e.wait) for e in c.items]!r}, "
                f"{[(e.item, e.wait) for e in c.tail]!r}, timeout_ms={pn.timeout_ms}, "
                f"ack_timeout_ms={pn.ack_timeout_ms}, retries={pn.retries}, "
                f"cost={cost}{extra})")  # fmt: skip

    def run(self, fn: Callable[..., Any], *args: Any, **kw: Any) -> Outcome:
        """Call a driver method; only PN532Error is caught (anything else fails the test, and a
        driver that does not return is stopped by the guard with Runaway)."""
        self.guard.arm()
        try:
            value, error = fn(*args, **kw), None
        except PN532Error as e:
            value, error = None, e
        self.last = "ok" if error is None else f"{type(error).__name__} {error.code:#x}"
        return Outcome(value, error, self.guard.call_ms, self.guard.call_ops)

    def budget_ms(self, timeout_ms: int | None = None, calls: int = 1) -> float:
        """The longest a driver call may take by its contract: the ACK waits of the resends
        plus the response timeout, per command, plus what no timeout can cut short: the bus
        time of the driver's own writes (commands, ACK, NACK), the 2 ms pauses of an I2C write
        the chip refused, one poll interval, the HSU quiet gap, and a frame already being
        transferred when the deadline passes - and, per command, the frames the chip had ready
        (a chained answer of thousands of chunks reads each one, whatever the timeouts)."""
        pn = self.pn
        t = pn.timeout_ms if timeout_ms is None else timeout_ms
        per_call = (pn.retries + 1) * pn.ack_timeout_ms + t
        frame_ms = FRAME_MAX * 25 / 1000  # the slowest bus here: I2C at 400 kHz
        slack = self.t.poll_ms + getattr(self.t, "quiet_ms", 0) + 2 * frame_ms + 2
        g = self.guard
        return calls * per_call + slack + 6 * g.refused_writes + (g.write_us + g.read_us) / 1000


def rig(kind: str, items: Iterable[Item | tuple[Item, int]] = (),
        tail: Iterable[Item | tuple[Item, int]] = (), *, cls: type = PN532,
        timeout_ms: int = 50, ack_timeout_ms: int = 20, retries: int = 2,
        cost: bool = True, errors: Iterable[int] = (), lie: bool = False,
        max_ops: int = MAX_OPS) -> Rig:  # fmt: skip
    """The driver on a scripted chip over one fake bus, on a simulated clock. cost=False makes
    every bus transaction free (only sleeps move the clock): bounds must come from counts."""
    clock = SimClock()
    guard = Guard(clock, max_ops=max_ops)
    chip = Chip(entries(items), entries(tail))
    bus: Any
    if kind == "i2c":
        bus = FakeI2C(chip, guard, 25.0 if cost else 0.0, errors)
        t: Any = PN532_I2C(bus, clock=clock)
    elif kind in ("spi", "spi-msb"):
        lsb = kind == "spi"
        bus = FakeSPI(chip, guard, 2.0 if cost else 0.0, lsb=lsb)
        t = PN532_SPI(bus, bus.cs, lsb_first=lsb, clock=clock)
    elif kind == "uart":
        bus = FakeUART(chip, guard, 1.0 if cost else 0.0, lie=lie)
        t = PN532_UART(bus, clock=clock)
    else:
        raise ValueError(kind)
    pn = cls(t, timeout_ms=timeout_ms, ack_timeout_ms=ack_timeout_ms, retries=retries)
    return Rig(kind, pn, chip, clock, guard, bus, t)
