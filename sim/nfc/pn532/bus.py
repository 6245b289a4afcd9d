"""Bus adapters with the shapes of MicroPython's machine classes (Pin, I2C, SPI, UART), each
serving one emulated PN532 (UM0701-02 6.2.3-6.2.5)."""

from __future__ import annotations

from collections.abc import Callable

from .chip import PN532Emulator
from .frames import reverse_bits
from .uart_shape import UartReadInto


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


class SimUART(UartReadInto):
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
