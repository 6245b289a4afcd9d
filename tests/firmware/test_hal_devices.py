"""ESP32 peripheral drivers on CPython, through bus and pin stand-ins that record what the driver
does (stand-ins for the wires, not for the drivers): the SSD1306 command bytes, the keypad scan
and debounce, the LED/buzzer cues, and how esp32.Board wires each board profile to `machine`.
Pixel rendering needs framebuf and runs in the MicroPython VM
(tests/firmware/portable/test_hal_ssd1306.py).
"""

from __future__ import annotations

import ast
import sys
import time
import types
from pathlib import Path

import pytest

from tapcash.boards.profile import apply_option, load_profile
from tapcash.firmware.hal import esp32
from tapcash.firmware.hal.keypad import Button, Keypad
from tapcash.firmware.hal.pn532_card import PN532Card
from tapcash.firmware.hal.pn532_reader import PN532Reader, PN532ReaderLink
from tapcash.firmware.hal.pn532_transport import PN532_I2C, PN532_SPI, PN532_UART
from tapcash.firmware.hal.signal import PinSignal
from tapcash.firmware.hal.ssd1306 import SSD1306
from tapcash.sim.nfc.pn532 import SimPin
from tapcash.sim.vm.mpvm import firmware_dir


class RecordingI2C:
    def __init__(self) -> None:
        self.writes: list[tuple[int, bytes]] = []

    def writeto(self, addr: int, buf: bytes) -> None:
        self.writes.append((addr, bytes(buf)))

    def writevto(self, addr: int, bufs: list[bytes]) -> None:
        self.writes.append((addr, b"".join(bytes(b) for b in bufs)))


INIT_128X64 = bytes.fromhex(
    "00"  # control byte: a command stream
    "ae" "2000" "40" "a1" "a83f" "c8" "d300" "da12" "d580" "d9f1" "db30" "81ff" "a4" "a6" "ad30"
    "8d14" "af"
)


def test_ssd1306_init_and_first_frame() -> None:
    i2c = RecordingI2C()
    oled = SSD1306(i2c, 128, 64, addr=0x3C)
    assert [a for a, _ in i2c.writes] == [0x3C, 0x3C, 0x3C]
    assert i2c.writes[0][1] == INIT_128X64
    assert i2c.writes[1][1] == bytes.fromhex("00" "21007f" "220007")  # columns 0-127, pages 0-7
    assert i2c.writes[2][1] == b"\x40" + bytes(1024)  # data: the cleared buffer
    assert len(oled.buffer) == 1024


def test_ssd1306_128x32_and_commands() -> None:
    i2c = RecordingI2C()
    oled = SSD1306(i2c, 128, 32, addr=0x3D, external_vcc=True)
    init = i2c.writes[0][1]
    assert init[init.index(0xA8) + 1] == 31  # multiplex ratio = height - 1
    assert init[init.index(0xDA) + 1] == 0x02  # sequential COM pins for 128x32
    assert init[init.index(0xD9) + 1] == 0x22 and init[init.index(0x8D) + 1] == 0x10
    assert i2c.writes[1][1] == bytes.fromhex("00" "21007f" "220003")
    assert len(i2c.writes[2][1]) == 1 + 512
    i2c.writes.clear()
    oled.contrast(0x40)
    oled.invert(True)
    oled.poweroff()
    oled.poweron()
    assert [w for _, w in i2c.writes] == [
        b"\x00\x81\x40", b"\x80\xa7", b"\x80\xae", b"\x80\xaf",
    ]  # fmt: skip


# ---- keypad -----------------------------------------------------------------------------------
class Matrix:
    """A 4x4 key matrix: row pins are driven by the driver, column pins read low when a pressed
    key connects them to a row that is driven low. `bounce` keys read pressed every other time."""

    def __init__(self, nrows: int = 4, ncols: int = 4) -> None:
        self.pressed: set[tuple[int, int]] = set()
        self.bounce: set[tuple[int, int]] = set()
        self._flip = 0
        self.rows = [SimPin(1) for _ in range(nrows)]
        self.cols = [SimPin(source=self._reader(c)) for c in range(ncols)]
        self.low_rows_seen: list[int] = []

    def _reader(self, c: int):
        def read() -> int:
            low = [r for r, pin in enumerate(self.rows) if pin.value() == 0]
            self.low_rows_seen.append(len(low))
            for r in low:
                if (r, c) in self.pressed:
                    return 0
                if (r, c) in self.bounce:
                    self._flip ^= 1
                    return self._flip
            return 1

        return read


KEYMAP = ["123A", "456B", "789C", "*0#D"]


def test_keypad_reports_each_press_once() -> None:
    m = Matrix()
    kp = Keypad(m.rows, m.cols, KEYMAP, debounce_ms=5, scan_ms=1)
    assert kp.get_key(20) is None
    m.pressed = {(1, 1)}
    assert kp.get_key(1000) == "5"
    assert kp.get_key(30) is None  # still held: not repeated
    m.pressed = set()
    assert kp.get_key(20) is None
    m.pressed = {(3, 2)}
    assert kp.get_key(1000) == "#"
    m.pressed = {(3, 2), (0, 0)}
    assert kp.get_key(1000) == "1"  # pressed while "#" is held: 2-key rollover
    assert kp.get_key(30) is None  # both held
    m.pressed = {(3, 2)}
    assert kp.get_key(30) is None  # "1" released, "#" still held
    m.pressed = {(3, 2), (0, 0)}
    assert kp.get_key(1000) == "1"
    assert set(m.low_rows_seen) == {1}  # one row driven low at a time
    assert all(p.value() == 1 for p in m.rows)  # rows idle high after every scan


def test_keypad_bounce_is_not_a_key() -> None:
    m = Matrix()
    kp = Keypad(m.rows, m.cols, KEYMAP, debounce_ms=5, scan_ms=1)
    m.bounce = {(2, 3)}
    assert kp.get_key(60) is None
    m.bounce = set()
    m.pressed = {(2, 3)}
    assert kp.get_key(1000) == "C"


def test_keypad_rejects_a_wrong_keymap() -> None:
    m = Matrix()
    with pytest.raises(ValueError):
        Keypad(m.rows, m.cols, ["123", "456", "789", "*0#"])


def test_button() -> None:
    level = [1]
    b = Button(SimPin(source=lambda: level[0]), key="#", active=0, debounce_ms=5, scan_ms=1)
    assert b.get_key(20) is None
    level[0] = 0
    assert b.get_key(1000) == "#"
    assert b.get_key(20) is None  # held
    level[0] = 1
    assert b.get_key(10) is None
    level[0] = 0
    assert b.get_key(1000) == "#"


def test_button_polled_with_no_wait_debounces_across_calls() -> None:
    """A wallet's idle loop polls its button with get_key(0) between taps (firmware/main.py
    wallet_idle): the debounce carries from one call to the next, and a press counts once."""
    level = [1]
    b = Button(SimPin(source=lambda: level[0]), key="#", active=0, debounce_ms=5, scan_ms=1)
    assert b.get_key(0) is None
    level[0] = 0
    assert b.get_key(0) is None  # the press has just begun: not a key yet
    got = []
    for _ in range(2000):
        k = b.get_key(0)
        if k is not None:
            got.append(k)
            if len(got) == 1:
                for _ in range(20):  # held: reported once
                    assert b.get_key(0) is None
                level[0] = 1
                assert b.get_key(0) is None  # released
                level[0] = 0
        time.sleep(0.001)
        if len(got) == 2:
            break
    assert got == ["#", "#"]


# ---- signal -------------------------------------------------------------------------------------
class PWM:
    def __init__(self) -> None:
        self.duties: list[int] = []

    def duty_u16(self, d: int) -> None:
        self.duties.append(d)


def test_signal_cues() -> None:
    led, buzzer, slept = SimPin(0), SimPin(0), []
    s = PinSignal(led, buzzer, sleep=slept.append)
    led.writes.clear()
    buzzer.writes.clear()
    s.ok()
    assert led.writes == [1, 0] and buzzer.writes == [1, 0] and len(slept) == 1
    s.fail()
    assert led.writes == [1, 0] + [1, 0] * 3
    assert len(slept) == 1 + 3 + 2  # three beeps, two gaps
    pwm = PWM()
    PinSignal(None, pwm, sleep=slept.append).ok()
    assert pwm.duties == [0, 32768, 0]
    low = SimPin(1)
    PinSignal(low, None, active_high=False, sleep=slept.append).ok()
    assert low.writes == [1, 0, 1]


# ---- esp32.Board: profiles wired to `machine` ----------------------------------------------
class Rec:
    """Records every construction: (class name, args, kwargs)."""

    log: list[tuple[str, tuple, dict]] = []

    def __init__(self, *args, **kwargs) -> None:
        Rec.log.append((type(self).__name__, args, kwargs))
        self.args = args
        self.kwargs = kwargs


class FakePin(Rec):
    OUT, IN, PULL_UP, PULL_DOWN = 3, 1, 2, 4

    def value(self, v=None):
        return 1 if v is None else None


class FakeI2C(Rec):
    def writeto(self, addr, buf):
        Rec.log.append(("i2c.writeto", (addr, bytes(buf)), {}))

    def writevto(self, addr, bufs):
        Rec.log.append(("i2c.writevto", (addr,), {}))


class FakeSPI(Rec):
    MSB, LSB = 0, 1


class FakeUART(Rec):
    pass


@pytest.fixture
def machine(monkeypatch: pytest.MonkeyPatch):
    Rec.log = []
    mod = types.ModuleType("machine")
    mod.Pin, mod.I2C, mod.SPI, mod.UART = FakePin, FakeI2C, FakeSPI, FakeUART
    monkeypatch.setitem(sys.modules, "machine", mod)
    return mod


def made(name: str) -> list[tuple[tuple, dict]]:
    return [(a, k) for n, a, k in Rec.log if n == name]


def test_board_pos_profile(machine, tmp_path: Path) -> None:
    board = esp32.Board(load_profile("devkitc-pn532-pos"))
    hal = board.hal("pos", flash_root=str(tmp_path / "data"))
    assert isinstance(hal.link, PN532ReaderLink) and isinstance(hal.link.pn532, PN532Reader)
    t = hal.link.pn532.t
    assert isinstance(t, PN532_SPI) and t._rev is None  # hardware LSB first, no reversal
    ((args, kw),) = made("FakeSPI")
    assert args == (2,)
    assert kw["firstbit"] == FakeSPI.LSB and kw["polarity"] == 0 and kw["phase"] == 0
    assert kw["baudrate"] <= 5_000_000
    assert [a[0].args[0] for a in [(kw["sck"],), (kw["mosi"],), (kw["miso"],)]] == [18, 23, 19]
    assert t.cs.args[0] == 5 and t.reset_pin.args[0] == 16 and t.irq.args[0] == 4
    ((args, kw),) = made("FakeI2C")
    assert args == (0,) and kw["freq"] == 400000
    assert kw["scl"].args[0] == 22 and kw["sda"].args[0] == 21
    writes = [a for n, a, _ in Rec.log if n == "i2c.writeto"]
    assert writes[0] == (60, INIT_128X64)  # the display was initialised at 0x3C
    assert isinstance(hal.keys, Keypad)
    assert [p.args[0] for p in hal.keys.rows] == [32, 33, 25, 26]
    assert [p.args[0] for p in hal.keys.cols] == [27, 14, 13, 17]
    assert all(p.args[1:] == (FakePin.IN, FakePin.PULL_UP) for p in hal.keys.cols)
    assert hal.keys.keymap == ["123A", "456B", "789C", "*0#D"]
    assert hal.signal.buzzer.args[0] == 15 and hal.signal.led.args[0] == 2
    assert (tmp_path / "data").is_dir()
    assert hal.rng.random(16) != hal.rng.random(16)


def test_board_wallet_profiles(machine, tmp_path: Path) -> None:
    profile = load_profile("devkitc-pn532-wallet")
    hal = esp32.Board(profile).hal("wallet", flash_root=str(tmp_path))
    assert hal.link is None  # the wallet's chip is a card, run by serve_card
    board = esp32.Board(profile)
    assert isinstance(board.pn532(), PN532Card)
    t = board.pn532().t
    assert isinstance(t, PN532_I2C) and t.addr == 0x24
    assert board.pn532() is board.pn532()
    Rec.log = []
    t = esp32.Board(apply_option(profile, "nfc_uart")).pn532().t
    assert isinstance(t, PN532_UART)
    ((args, kw),) = made("FakeUART")
    assert args == (2,) and kw["baudrate"] == 115200 and (kw["tx"], kw["rx"]) == (17, 25)
    assert kw["rxbuf"] >= 275 + 6  # an extended frame and an ACK fit the receive buffer
    t = esp32.Board(apply_option(profile, "nfc_spi")).pn532().t
    assert isinstance(t, PN532_SPI)
    visual = esp32.Board(load_profile("devkitc-pn532-visual-wallet"))
    keys = visual.keys()
    assert isinstance(keys, Button) and keys.pin.args[0] == 13 and keys.active == 0
    assert isinstance(visual.display(), SSD1306)


def test_rtc_clock_reads_unix_time_or_zero() -> None:
    clock = esp32.RtcClock()
    assert clock.offset == 0  # CPython's epoch is 1970
    assert clock.now() >= esp32.CLOCK_VALID_FROM


def test_only_esp32_imports_machine() -> None:
    root = firmware_dir()
    offenders = []
    for path in sorted(root.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
            if any(n == "machine" or n.startswith("machine.") for n in names):
                offenders.append(path.relative_to(root).as_posix())
    assert offenders == ["hal/esp32.py"]
