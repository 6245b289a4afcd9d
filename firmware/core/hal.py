# The one seam between firmware logic and hardware.
#
# Apps (wallet, pos) receive a Hal whose members are objects with the methods below; the
# simulator (sim/), the in-process test HAL and the ESP32 drivers (firmware/hal/esp32, behind
# main.py) each provide their own. No logic module imports `machine`: only HAL implementations do.
#
# These classes document the interfaces and give safe defaults; implementations subclass them.


class LinkError(Exception):
    """The NFC link failed mid-exchange (card removed, torn frame, timeout)."""


class PowerCut(Exception):
    """Raised by a fault-injecting flash when the simulated power goes away mid-write."""


class Link:
    """Reader side of an ISO 14443-4 link: send one command APDU, get one response APDU."""

    def transceive(self, apdu):
        raise NotImplementedError


class Flash:
    """Named blobs on flash (littlefs on ESP32, files on desktop).

    `write` replaces a blob and `append` extends one; either may be torn by a power cut,
    leaving any prefix of the new bytes. Storage built on top (core/storage.py) must survive that.
    """

    def read(self, name):
        raise NotImplementedError

    def read_at(self, name, offset, n):
        """Up to `n` bytes of blob `name` from `offset` (fewer at its end, b"" past it or for
        a missing blob). Backends that can seek override this: the Journal reads one frame at
        a time, so a segment is never in RAM whole (#16)."""
        data = self.read(name)
        return bytes(data[offset : offset + n]) if data else b""

    def write(self, name, data):
        raise NotImplementedError

    def append(self, name, data):
        raise NotImplementedError

    def remove(self, name):
        raise NotImplementedError

    def size(self, name):
        data = self.read(name)
        return 0 if data is None else len(data)


class Clock:
    """Wall clock in whole seconds (an RTC on ESP32; may be unset, then it returns 0)."""

    def now(self):
        raise NotImplementedError

    def set(self, unix):
        """Set the clock (a POS takes the ledger's time from a signed ACK); no-op if fixed."""


class Rng:
    def random(self, n):
        raise NotImplementedError


class Display:
    """A few short text lines (SSD1306 on a visual card or POS, a screen widget in the sim)."""

    def show(self, lines):
        pass


class Keys:
    """Keypad: one key ("0".."9", "#" enter, "*" clear/cancel), or None at the timeout."""

    def get_key(self, timeout_ms):
        return None


class Signal:
    """LED / buzzer: a short success or failure cue."""

    def ok(self):
        pass

    def fail(self):
        pass


class Hal:
    """Bundle handed to an app. Only the members the app's role needs must be set."""

    def __init__(self, flash=None, clock=None, rng=None, link=None, display=None, keys=None,
                 signal=None):
        self.flash = flash
        self.clock = clock
        self.rng = rng
        self.link = link
        self.display = display or Display()
        self.keys = keys or Keys()
        self.signal = signal or Signal()
