# The PN532's three host interfaces (UM0701-02 6.2.3 HSU, 6.2.4 I2C, 6.2.5 SPI). Each takes the bus
# object as an argument (machine.I2C / machine.SPI + a chip-select Pin / machine.UART on a board,
# the sim/nfc/pn532/ adapters on a desktop) and moves whole frames; pn532.PN532 does the rest.
#
# Transport interface used by PN532:
#   write(frame)              send bytes as one host frame (command, ACK or NACK)
#   ready()                   True when the chip has a frame for us (never blocks)
#   read_frame(buf, deadline) wait until ticks `deadline` (raises PN532Timeout), read one frame
#                             into buf[0:n] and return n, or -1 when the bytes were not a frame
#   discard()                 drop whatever input is buffered (HSU)
#   reset(), wakeup()         hardware reset pulse (if a reset Pin is given), leave power-down
#   deadline(ms), expired(d)  the driver's clock: every timeout is measured on it
#
# Bounds (whatever the chip or the line sends): read_frame returns or raises within its deadline
# plus one frame's transfer, and reads at most one frame's worth of bytes (FRAME_MAX) looking for
# a start code, so a line that never stops (zeros, noise, the same frame again) cannot hold it.
# Bus errors become PN532Error. `clock` (an object with ticks_ms() and sleep_ms(ms)) replaces the
# real one: tests run the driver on a simulated clock to check its timeouts as a property.
#
# Optional `irq` Pin (PN532 P70_IRQ, active low): when given, readiness is read from it instead of
# polling the bus.
from ..core.runtime import const, ticks_diff, ticks_ms
from . import sleep_ms, ticks_add
from .pn532 import ERR_NO_RESPONSE, FRAME_MAX, NACK, PN532Error, PN532Timeout, frame_length

I2C_ADDRESS = const(0x24)  # 7-bit address (0x48 write / 0x49 read in the manual's 8-bit form)
_I2C_HEAD = const(16)  # bytes read after the status byte while polling: ACK and short answers fit
_SPI_DW = const(0x01)  # data write
_SPI_SR = const(0x02)  # status read
_SPI_DR = const(0x03)  # data read
_SPI_HEAD = const(10)  # bytes that always tell a frame's length: 00 00 00 00 FF FF FF LM LL LCS
_ERR_BUS = const(0x105)
_HSU_WAKEUP = b"\x55\x55" + bytes(14)  # long preamble: the chip leaves power-down on HSU (6.3.2.3)


def reverse_bits(b):
    """The byte with its bit order reversed (LSB-first SPI on an MSB-only bus)."""
    b = (b & 0xF0) >> 4 | (b & 0x0F) << 4
    b = (b & 0xCC) >> 2 | (b & 0x33) << 2
    return (b & 0xAA) >> 1 | (b & 0x55) << 1


class _Transport:
    def __init__(self, reset=None, irq=None, poll_ms=1, clock=None):
        self.reset_pin = reset
        self.irq = irq
        self.poll_ms = poll_ms
        if clock is None:
            self.ticks_ms = ticks_ms
            self.sleep_ms = sleep_ms
        else:
            self.ticks_ms = clock.ticks_ms
            self.sleep_ms = clock.sleep_ms

    def deadline(self, ms):
        """The ticks value `ms` milliseconds from now, on this transport's clock."""
        return ticks_add(self.ticks_ms(), ms)

    def expired(self, deadline):
        return ticks_diff(deadline, self.ticks_ms()) <= 0

    def reset(self):
        pin = self.reset_pin
        if pin is not None:
            pin.value(0)
            self.sleep_ms(20)
            pin.value(1)
            self.sleep_ms(50)  # oscillator start and firmware boot

    def wakeup(self):
        pass

    def discard(self):
        pass

    def _wait(self, deadline):
        if self.expired(deadline):
            raise PN532Timeout(ERR_NO_RESPONSE, "timeout")
        self.sleep_ms(self.poll_ms)


class PN532_I2C(_Transport):
    """I2C (6.2.4): every read starts with a status byte, bit 0 set when a frame follows.

    A frame longer than the polling read is read again whole after a NACK: on some chips a read
    that stops early loses the rest of the frame, and the NACK makes the chip send it again.
    """

    def __init__(self, i2c, addr=I2C_ADDRESS, reset=None, irq=None, poll_ms=1, clock=None):
        super().__init__(reset, irq, poll_ms, clock)
        self.i2c = i2c
        self.addr = addr
        self._buf = bytearray(1 + FRAME_MAX)
        self._mv = memoryview(self._buf)

    def write(self, frame):
        for _ in range(3):
            try:
                self.i2c.writeto(self.addr, frame)
                return
            except OSError:  # the chip holds off while it wakes up
                self.sleep_ms(2)
        raise PN532Error(_ERR_BUS, "i2c write")

    def ready(self):
        if self.irq is not None:
            return self.irq.value() == 0
        try:
            self.i2c.readfrom_into(self.addr, self._mv[:1])
        except OSError:
            return False
        return bool(self._buf[0] & 1)

    def _poll(self, n, deadline):
        """Read status + n bytes until the status says ready."""
        mv = self._mv[: 1 + n]
        while True:
            if self.irq is None or self.irq.value() == 0:
                try:
                    self.i2c.readfrom_into(self.addr, mv)
                    if self._buf[0] & 1:
                        return
                except OSError:
                    pass
            self._wait(deadline)

    def read_frame(self, buf, deadline):
        self._poll(_I2C_HEAD, deadline)
        body = self._mv[1:]
        total = frame_length(body, _I2C_HEAD)
        if total <= 0:
            return -1
        if total > _I2C_HEAD:
            self.write(NACK)
            self._poll(total, deadline)
            if frame_length(body, total) != total:
                return -1
        buf[:total] = body[:total]
        return total


class PN532_SPI(_Transport):
    """SPI mode 0, up to 5 MHz, LSB first (6.2.5): CS low, then DW + frame, SR -> status byte, or
    DR -> frame bytes. The whole frame is read within one CS-low period (raising CS releases it).

    `cs` is a Pin (driven here). On the ESP32 create the bus with machine.SPI(..., firstbit=SPI.LSB)
    (hardware SPI sets the ESP-IDF LSB-first flags); on an MSB-only bus (e.g. machine.SoftSPI, which
    only shifts MSB first) pass lsb_first=False and the bytes are bit-reversed here in software.
    """

    def __init__(self, spi, cs, lsb_first=True, reset=None, irq=None, poll_ms=1, clock=None):
        super().__init__(reset, irq, poll_ms, clock)
        self.spi = spi
        self.cs = cs
        self._rev = None if lsb_first else bytes(reverse_bits(i) for i in range(256))
        self._one = bytearray(1)
        self._out = None if lsb_first else bytearray(1 + FRAME_MAX)
        cs.value(1)

    def _op(self, code):
        self._one[0] = code if self._rev is None else self._rev[code]
        self.spi.write(self._one)

    def write(self, frame):
        rev = self._rev
        self.cs.value(0)
        try:
            if rev is None:
                self._op(_SPI_DW)
                self.spi.write(frame)
            else:
                n = len(frame)
                out = self._out
                out[0] = rev[_SPI_DW]
                for i in range(n):
                    out[i + 1] = rev[frame[i]]
                self.spi.write(memoryview(out)[: n + 1])
        finally:
            self.cs.value(1)

    def ready(self):
        if self.irq is not None:
            return self.irq.value() == 0
        self.cs.value(0)
        try:
            self._op(_SPI_SR)
            self.spi.readinto(self._one)
        finally:
            self.cs.value(1)
        st = self._one[0] if self._rev is None else self._rev[self._one[0]]
        return bool(st & 1)

    def _read(self, mv):
        self.spi.readinto(mv)
        rev = self._rev
        if rev is not None:
            for i in range(len(mv)):
                mv[i] = rev[mv[i]]

    def read_frame(self, buf, deadline):
        while not self.ready():
            self._wait(deadline)
        mv = memoryview(buf)
        self.cs.value(0)
        try:
            self._op(_SPI_DR)
            self._read(mv[:6])
            n = 6
            total = frame_length(mv, n)
            while total == 0 and n < _SPI_HEAD:  # extended header, or a longer preamble
                self._read(mv[n : n + 2])
                n += 2
                total = frame_length(mv, n)
            if total <= 0:
                return -1
            if total > n:
                self._read(mv[n:total])
            return total
        finally:
            self.cs.value(1)


class PN532_UART(_Transport):
    """HSU (6.2.3), 115200 8N1 by default: a byte stream. Before the first command after power-up
    (or power-down) the chip needs a long preamble to wake up (`wakeup`)."""

    def __init__(self, uart, reset=None, poll_ms=1, quiet_ms=3, clock=None):
        super().__init__(reset, None, poll_ms, clock)
        self.uart = uart
        self.quiet_ms = quiet_ms  # a gap this long ends a garbled frame when draining
        self._scratch = bytearray(32)  # discarded input lands here (no allocation per byte)
        self._sv = memoryview(self._scratch)
        self._one = self._sv[:1]

    def wakeup(self):
        self.uart.write(_HSU_WAKEUP)
        self.sleep_ms(2)
        self.discard()

    def write(self, frame):
        self.uart.write(frame)

    def ready(self):
        return self.uart.any() > 0

    def _drop(self, n):
        """Read and forget up to n buffered bytes (at most 32); the count read."""
        k = self.uart.readinto(self._sv[: min(n, 32)])
        return k or 0

    def discard(self):
        for _ in range(64):  # bounded: a babbling line cannot hold us here
            n = self.uart.any()
            if not n or not self._drop(n):
                return

    def _byte(self, deadline):
        uart = self.uart
        while True:
            if uart.any() and uart.readinto(self._one):
                return self._scratch[0]
            self._wait(deadline)

    def _fill(self, mv, deadline):
        uart = self.uart
        got = 0
        n = len(mv)
        while got < n:
            k = uart.any()
            if k:
                k = uart.readinto(mv[got : got + min(k, n - got)])
            if not k:
                self._wait(deadline)
                continue
            got += k

    def _drain(self, deadline):
        """Swallow the rest of a garbled frame: read until the line is quiet, at most one
        frame's worth of bytes (a line that never goes quiet is the next read's problem)."""
        quiet = 0
        left = FRAME_MAX
        while quiet < self.quiet_ms and left > 0 and not self.expired(deadline):
            n = self.uart.any()
            if n:
                left -= self._drop(min(n, left)) or 1
                quiet = 0
            else:
                self.sleep_ms(1)
                quiet += 1

    def read_frame(self, buf, deadline):
        zeros = 0
        for _ in range(FRAME_MAX):  # the start code 00 FF within one frame's worth of bytes
            b = self._byte(deadline)
            if b == 0:
                zeros += 1
            elif b == 0xFF and zeros:
                break
            else:
                zeros = 0
        else:
            return -1  # zeros or noise without a start code: not a frame
        buf[0] = 0
        buf[1] = 0
        buf[2] = 0xFF
        mv = memoryview(buf)
        self._fill(mv[3:5], deadline)
        n = 5
        total = frame_length(mv, n)
        if total == 0:
            self._fill(mv[5:8], deadline)
            n = 8
            total = frame_length(mv, n)
        if total <= 0:
            self._drain(deadline)
            return -1
        self._fill(mv[n:total], deadline)
        return total
