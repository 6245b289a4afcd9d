# Hardware drivers for the ESP32 boards: the one implementation of core/hal.py that touches pins.
#
#   pn532.py            PN532 chip logic (frames, commands), PN532ReaderLink, serve_card
#   pn532_transport.py  the PN532's I2C / SPI / HSU (UART) host interfaces, bus passed in
#   ssd1306.py          SSD1306 OLED (I2C) implementing hal.Display
#   keypad.py           matrix keypad implementing hal.Keys, GPIO button
#   signal.py           LED / buzzer implementing hal.Signal
#   esp32.py            builds a Hal from a board profile: the ONLY module that imports `machine`
#
# Every driver takes its bus or Pin objects as arguments (micropython-lib style), so the same code
# runs on a board, in the desktop MicroPython VM and on CPython against sim/nfc/pn532/ and
# recording stand-ins for buses and pins.
from ..core.runtime import ticks_diff, ticks_ms

try:
    from time import sleep_ms  # noqa: F401  (MicroPython)
except ImportError:
    from time import sleep as _sleep

    def sleep_ms(ms):
        """CPython stand-in for MicroPython's time.sleep_ms."""
        if ms > 0:
            _sleep(ms / 1000)


try:
    from time import ticks_add  # noqa: F401  (MicroPython: wraps like ticks_ms)
except ImportError:

    def ticks_add(ticks, delta):
        """CPython: runtime.ticks_ms never wraps there."""
        return ticks + delta


def expired(deadline):
    """True once ticks_ms() has reached `deadline` (from ticks_add)."""
    return ticks_diff(deadline, ticks_ms()) <= 0

