# Runs INSIDE the MicroPython VM of `tapcash sim board` (sim/vm/repl_pty.py installs it as
# /home/simboard/machine.py; never imported on CPython): the `machine` module of the simulated
# board, so the deployed firmware's ESP32 HAL (firmware/hal/esp32.py) runs unchanged. Buses and
# pins are sim/vm/vm_bus.py's: every transaction is served by the host (an emulated PN532 with
# an empty RF field; other I2C devices, e.g. the display, take writes and read zeros; unknown
# inputs read high, as with a pull-up). The PN532's IRQ and chip-select lines are wired to the
# GPIOs the deployed /board.json names. reset() is a hard reset: the board reboots and runs
# /boot.py and /main.py, as `mpremote reset` expects.
import time

import simboard
import vm_bus

_IRQ_PID = 200  # the host's PN532 IRQ line
_CS_PID = 201  # the host's PN532 SPI chip select
_nfc_pins = None


def _nfc():
    global _nfc_pins
    if _nfc_pins is None:
        _nfc_pins = {}
        try:
            import json

            with open("/board.json") as f:
                nfc = json.load(f).get("profile", {}).get("peripherals", {}).get("nfc", {})
            _nfc_pins = {nfc.get("irq"): _IRQ_PID, nfc.get("cs"): _CS_PID}
        except (OSError, ValueError):
            pass
    return _nfc_pins


class Pin(vm_bus.Pin):
    IN = 1
    OUT = 3
    OPEN_DRAIN = 7
    PULL_UP = 1
    PULL_DOWN = 2
    IRQ_FALLING = 2
    IRQ_RISING = 1

    def __init__(self, n, mode=-1, pull=-1, value=None):
        vm_bus.Pin.__init__(self, _nfc().get(n, n))
        self.id = n
        if value is not None:
            self.value(value)

    def init(self, mode=-1, pull=-1, value=None):
        if value is not None:
            self.value(value)

    def irq(self, handler=None, trigger=3):
        return None


class I2C(vm_bus.I2C):
    def __init__(self, *args, **kwargs):
        pass

    def scan(self):
        return [0x24]


class SPI(vm_bus.SPI):
    def __init__(self, *args, **kwargs):
        pass


class UART(vm_bus.UART):
    def __init__(self, *args, **kwargs):
        pass


class RTC:
    _offset = 0

    def datetime(self, dt=None):
        if dt is None:
            t = time.localtime(time.time() + RTC._offset)
            return (t[0], t[1], t[2], t[6], t[3], t[4], t[5], 0)
        secs = time.mktime((dt[0], dt[1], dt[2], dt[4], dt[5], dt[6], 0, 0))
        RTC._offset = secs - int(time.time())
        return None


def freq(hz=None):
    return 240000000


def unique_id():
    return b"\x24\x0a\xc4\x00\x00\x01"


def reset():
    """Hard reset: the board reboots (boot.py, then main.py in the friendly REPL)."""
    simboard.hard_reset()
    raise SystemExit


def soft_reset():
    raise SystemExit
