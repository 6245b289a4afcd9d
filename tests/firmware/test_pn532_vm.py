"""The PN532 driver compiled to .mpy, running in the real MicroPython 1.27 VM, on the emulated chip:
every bus transaction crosses into the host (sim/vm/pn532_vm.py) where sim/nfc/pn532/ answers it.
Same scenarios as the CPython tests: reader (detection, chained APDUs), faults, card emulation."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator

import pytest

from tapcash.sim.nfc.pn532 import (
    Faults,
    PN532Emulator,
    RfField,
    SimCard,
    SimI2C,
    SimReaderLink,
    SimSPI,
    SimUART,
    irq_pin,
)
from tapcash.sim.vm.pn532_vm import BusVM


class Echo:
    def process(self, apdu: bytes) -> bytes:
        return bytes(apdu[::-1]) + b"\x90\x00"


@pytest.fixture(scope="module")
def vm() -> Iterator[BusVM]:
    with BusVM(compiled=True) as v:
        yield v


TRANSPORT = {
    "i2c": "PN532_I2C(vm_bus.I2C())",
    "i2c-irq": "PN532_I2C(vm_bus.I2C(), irq=vm_bus.Pin(1))",
    "spi": "PN532_SPI(vm_bus.SPI(), vm_bus.Pin(0))",
    "spi-msb": "PN532_SPI(vm_bus.SPI(), vm_bus.Pin(0), lsb_first=False)",
    "uart": "PN532_UART(vm_bus.UART())",
}

SETUP = """
import json, gc
from firmware.hal.pn532 import PN532Error
from firmware.hal.pn532_reader import PN532Reader, PN532ReaderLink
from firmware.hal.pn532_card import PN532Card, serve_card
from firmware.hal.pn532_transport import PN532_I2C, PN532_SPI, PN532_UART
pn = {cls}({transport}, timeout_ms=1000, ack_timeout_ms=50)
pn.begin()
"""


def attach(vm: BusVM, kind: str, rf: RfField, faults: Faults | None = None) -> PN532Emulator:
    chip = PN532Emulator(rf, faults=faults)
    base = kind.split("-")[0]
    if base == "i2c":
        vm.attach(SimI2C(chip), pins={1: irq_pin(chip)})
    elif base == "spi":
        vm.attach(SimSPI(chip, firstbit=SimSPI.MSB if kind == "spi-msb" else SimSPI.LSB))
    else:
        vm.attach(SimUART(chip))
    return chip


@pytest.mark.parametrize("kind", list(TRANSPORT))
def test_reader_in_micropython(vm: BusVM, kind: str) -> None:
    rf = RfField()
    chip = attach(vm, kind, rf)
    rf.place(SimCard(Echo()))
    big = bytes(i * 5 & 0xFF for i in range(600))
    code = SETUP.format(cls="PN532Reader", transport=TRANSPORT[kind]) + f"""
fw = pn.firmware_version()
link = PN532ReaderLink(pn)
link.setup(1)
t = link.wait_card(500)
a = link.transceive(bytes.fromhex("00a4040000"))
big = bytes.fromhex({big.hex()!r})
b = link.transceive(big)
link.release()
_r = json.dumps([list(fw), t.uid.hex(), t.ats.hex(), a.hex(), b.hex()])
"""
    fw, uid, ats, a, b = json.loads(vm.run(code, "_r"))
    assert fw == [0x32, 1, 6, 7]
    assert (uid, ats) == ("04a1b2c3d4e5f6", "0578807002")
    assert a == bytes.fromhex("00a4040000")[::-1].hex() + "9000"
    assert bytes.fromhex(b) == big[::-1] + b"\x90\x00"
    assert chip.sam_configured and rf.active is None


@pytest.mark.parametrize("kind", ["i2c", "spi", "uart"])
def test_faults_in_micropython(vm: BusVM, kind: str) -> None:
    faults = Faults(corrupt_lcs={2}, corrupt_dcs={3}, drop_ack={4}, garbage={5: b"\x00\xff\x07"})
    attach(vm, kind, RfField(), faults)
    code = SETUP.format(cls="PN532Reader", transport=TRANSPORT[kind]) + """
out = [pn.firmware_version()[0] for _ in range(4)]
_r = json.dumps([out, pn.nacks, pn.resends])
"""
    out, nacks, resends = json.loads(vm.run(code, "_r"))
    assert out == [0x32] * 4
    assert nacks >= 3 and resends == 1


@pytest.mark.parametrize("kind", ["i2c", "uart"])
def test_timeout_in_micropython_is_bounded(vm: BusVM, kind: str) -> None:
    attach(vm, kind, RfField(), Faults(silent={2}))
    code = SETUP.format(cls="PN532Reader", transport=TRANSPORT[kind]) + """
try:
    pn.call(0x02, timeout_ms=40)
    got = "answer"
except PN532Error as e:
    got = type(e).__name__
_r = json.dumps([got, pn.firmware_version()[0]])
"""
    assert json.loads(vm.run(code, "_r")) == ["PN532Timeout", 0x32]


@pytest.mark.parametrize("kind", ["i2c", "spi", "uart"])
def test_card_emulation_in_micropython(vm: BusVM, kind: str) -> None:
    rf = RfField()
    chip = attach(vm, kind, rf)
    rf.place(chip)
    answers: list[bytes] = []
    errors: list[BaseException] = []

    def reader() -> None:
        try:
            link = SimReaderLink(rf, timeout_s=20)
            assert link.wait_card(30) is not None
            for apdu in (b"\x00\xa4\x04\x00\x00", bytes(range(256)) * 2):
                answers.append(link.transceive(apdu))
            link.release()
        except BaseException as e:  # reported below
            errors.append(e)

    th = threading.Thread(target=reader, daemon=True)
    th.start()
    code = SETUP.format(cls="PN532Card", transport=TRANSPORT[kind]) + """
class App:
    def __init__(self):
        self.sessions = 0
        self.n = 0
    def power_on(self):
        self.sessions += 1
    def process(self, apdu):
        self.n += 1
        return bytes(apdu[i] for i in range(len(apdu) - 1, -1, -1)) + b"\\x90\\x00"
app = App()
n = serve_card(pn, app, stop=lambda: app.n >= 2, session_timeout_ms=20000, poll_ms=1)
_r = json.dumps([app.sessions, app.n])
"""
    result = json.loads(vm.run(code, "_r"))
    th.join(30)
    assert not errors, errors
    assert result == [1, 2]
    assert answers == [
        b"\x00\xa4\x04\x00\x00"[::-1] + b"\x90\x00",
        (bytes(range(256)) * 2)[::-1] + b"\x90\x00",
    ]
