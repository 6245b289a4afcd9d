# The ESP32 HAL: builds hal.Hal members from a board profile (boards/profiles/*.json, deployed to
# the board inside /board.json). This is the only firmware module that imports `machine`, and only
# inside the functions that need it, so importing it elsewhere (CPython, the desktop VM) is fine.
#
#   board = Board(profile)
#   hal = board.hal("pos")          # flash, clock, rng, link (POS), display, keys, signal
#   pn532 = board.pn532()           # PN532Reader or PN532Card by the profile's nfc "mode"
#
# Profile keys used (see boards/profile.py for validation):
#   buses.<name>: {"type": "i2c", "id", "sda", "scl", "freq"} | {"type": "spi", "id", "sck", "mosi",
#                 "miso", "baud"?} | {"type": "uart", "id", "tx", "rx", "baud"}
#   peripherals.nfc: {"chip": "pn532", "bus", "address"? (I2C), "cs" (SPI), "irq"?, "reset"?}
#   peripherals.display: {"chip": "ssd1306", "bus", "address", "width", "height"}
#   peripherals.keypad: {"rows", "cols", "keys"}   peripherals.button: {"pin", "pull", "active"}
#   peripherals.buzzer: {"pin"}   peripherals.led: {"pin"}
import os
import time

from ..core.hal import Clock, Hal, Rng

FLASH_ROOT = "/data"
# A clock before this (2024-01-01) was never set: an ESP32 RTC starts at its epoch after power-up.
CLOCK_VALID_FROM = 1704067200
SPI_BAUD = 1000000  # the PN532 takes up to 5 MHz; 1 MHz is robust on jumper wires


def _machine():
    import machine

    return machine


def _epoch_offset():
    """Seconds to add to time.time() for unix time: 946684800 on ports whose epoch is 2000."""
    try:
        return 946684800 if time.gmtime(0)[0] == 2000 else 0
    except (AttributeError, OverflowError):
        return 0


class RtcClock(Clock):
    """hal.Clock on the ESP32 RTC (kept across deep sleep, lost on power-off): unix seconds,
    0 while the clock was never set."""

    def __init__(self):
        self.offset = _epoch_offset()

    def now(self):
        t = int(time.time()) + self.offset
        return t if t >= CLOCK_VALID_FROM else 0

    def set(self, unix):
        tm = time.gmtime(unix - self.offset)
        # RTC.datetime: (year, month, day, weekday, hours, minutes, seconds, subseconds)
        _machine().RTC().datetime((tm[0], tm[1], tm[2], tm[6], tm[3], tm[4], tm[5], 0))


class UrandomRng(Rng):
    """hal.Rng on os.urandom: the ESP32 hardware RNG (true random with the radio or bootloader
    entropy source enabled; see the ESP-IDF notes on esp_random)."""

    def random(self, n):
        return os.urandom(n)


class StdioSerial:
    """The USB serial (the REPL's UART) as a non-blocking port for the sync frame server:
    any(), read(n) -> bytes or None, write(data)."""

    def __init__(self):
        import select
        import sys

        self._in = sys.stdin.buffer
        self._out = sys.stdout.buffer
        self._poll = select.poll()
        self._poll.register(sys.stdin, select.POLLIN)

    def any(self):
        return 1 if self._poll.poll(0) else 0

    def read(self, n):
        out = bytearray()
        while len(out) < n and self._poll.poll(0):
            b = self._in.read(1)
            if not b:
                break
            out += b
        return bytes(out) if out else None

    def write(self, data):
        self._out.write(data)


class Board:
    """The buses and peripherals of one board profile, created on first use."""

    def __init__(self, profile):
        self.profile = profile
        self.peripherals = profile.get("peripherals", {})
        self._buses = {}
        self._pn532 = None

    def pin(self, n, mode="out", pull=None, value=None):
        m = _machine()
        Pin = m.Pin
        if mode == "out":
            return Pin(n, Pin.OUT, value=1 if value is None else value)
        p = Pin.PULL_UP if pull == "up" else (Pin.PULL_DOWN if pull == "down" else None)
        return Pin(n, Pin.IN, p)

    def bus(self, name):
        b = self._buses.get(name)
        if b is not None:
            return b
        cfg = self.profile["buses"][name]
        m = _machine()
        kind = cfg["type"]
        if kind == "i2c":
            b = m.I2C(cfg.get("id", 0), scl=m.Pin(cfg["scl"]), sda=m.Pin(cfg["sda"]),
                      freq=cfg.get("freq", 400000))  # fmt: skip
        elif kind == "spi":
            # The PN532 shifts LSB first: ESP32 hardware SPI does it (firstbit=SPI.LSB).
            b = m.SPI(cfg.get("id", 2), baudrate=cfg.get("baud", SPI_BAUD), polarity=0, phase=0,
                      firstbit=m.SPI.LSB, sck=m.Pin(cfg["sck"]), mosi=m.Pin(cfg["mosi"]),
                      miso=m.Pin(cfg["miso"]))  # fmt: skip
        elif kind == "uart":
            b = m.UART(cfg.get("id", 2), baudrate=cfg.get("baud", 115200), tx=cfg["tx"],
                       rx=cfg["rx"], timeout=0, rxbuf=1024)  # fmt: skip
        else:
            raise ValueError("unknown bus type " + str(kind))
        self._buses[name] = b
        return b

    def pn532(self):
        if self._pn532 is not None:
            return self._pn532
        from .pn532_transport import PN532_I2C, PN532_SPI, PN532_UART

        nfc = self.peripherals["nfc"]
        if nfc.get("mode") == "target":
            from .pn532_card import PN532Card as chip
        else:
            from .pn532_reader import PN532Reader as chip
        bus_cfg = self.profile["buses"][nfc["bus"]]
        bus = self.bus(nfc["bus"])
        reset = self.pin(nfc["reset"], "out", value=1) if "reset" in nfc else None
        irq = self.pin(nfc["irq"], "in", "up") if "irq" in nfc else None
        kind = bus_cfg["type"]
        if kind == "i2c":
            t = PN532_I2C(bus, nfc.get("address", 0x24), reset=reset, irq=irq)
        elif kind == "spi":
            t = PN532_SPI(bus, self.pin(nfc["cs"], "out", value=1), reset=reset, irq=irq)
        else:
            t = PN532_UART(bus, reset=reset)
        self._pn532 = chip(t)
        return self._pn532

    def display(self):
        d = self.peripherals.get("display")
        if d is None:
            return None
        from .ssd1306 import SSD1306

        return SSD1306(self.bus(d["bus"]), d.get("width", 128), d.get("height", 64),
                       d.get("address", 0x3C))  # fmt: skip

    def keys(self):
        k = self.peripherals.get("keypad")
        if k is not None:
            from .keypad import Keypad

            rows = [self.pin(n, "out", value=1) for n in k["rows"]]
            cols = [self.pin(n, "in", "up") for n in k["cols"]]
            return Keypad(rows, cols, k["keys"])
        b = self.peripherals.get("button")
        if b is not None:
            from .keypad import Button

            active = 0 if b.get("active", "low") == "low" else 1
            return Button(self.pin(b["pin"], "in", b.get("pull", "up")), active=active)
        return None

    def signal(self):
        from .signal import PinSignal

        led = self.peripherals.get("led")
        buzzer = self.peripherals.get("buzzer")
        return PinSignal(
            self.pin(led["pin"], "out", value=0) if led else None,
            self.pin(buzzer["pin"], "out", value=0) if buzzer else None,
        )

    def hal(self, role, flash_root=FLASH_ROOT):
        """The Hal for `role` ("wallet" or "pos"). The POS gets a PN532ReaderLink as hal.link;
        the wallet's chip is a card, driven by pn532.serve_card, so its hal.link is None."""
        from ..core.fileflash import FileFlash

        link = None
        if role == "pos":
            from .pn532_reader import PN532ReaderLink

            link = PN532ReaderLink(self.pn532())
        return Hal(
            flash=FileFlash(flash_root, sync=False),
            clock=RtcClock(),
            rng=UrandomRng(),
            link=link,
            display=self.display(),
            keys=self.keys(),
            signal=self.signal(),
        )
