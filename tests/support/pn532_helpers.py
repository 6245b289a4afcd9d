"""The firmware PN532 driver wired to the frame-level emulator through each host interface.

Nothing here stands in for the driver or the chip model: `wire()` builds the real driver
(firmware/hal/pn532*.py) on the real emulator (sim/nfc/pn532/) through the machine-shaped bus
adapters, exactly as firmware/hal/esp32.py wires it to machine.I2C / SPI / UART on a board.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tapcash.firmware.hal.pn532_card import PN532Card
from tapcash.firmware.hal.pn532_reader import PN532Reader
from tapcash.firmware.hal.pn532_transport import PN532_I2C, PN532_SPI, PN532_UART
from tapcash.sim.nfc.pn532 import (
    Faults,
    PN532Emulator,
    RfField,
    SimI2C,
    SimSPI,
    SimUART,
    irq_pin,
)


# i2c / spi (LSB-first bus, as ESP32 hardware SPI) / spi-msb (an MSB-only bus: the driver
# reverses bits in software) / uart (HSU) / *-irq: readiness from the IRQ line, not the bus
class PN532Both(PN532Reader, PN532Card):
    """Both roles on one chip object, so a test can use either (boards import one)."""


KINDS = ["i2c", "i2c-irq", "spi", "spi-msb", "spi-irq", "uart"]


@dataclass
class Wired:
    kind: str
    chip: PN532Emulator
    pn532: PN532Both
    rf: RfField
    bus: Any


def wire(
    kind: str,
    rf: RfField | None = None,
    faults: Faults | None = None,
    *,
    timeout_ms: int = 1000,
    ack_timeout_ms: int = 50,
    retries: int = 2,
    begin: bool = True,
) -> Wired:
    rf = rf if rf is not None else RfField()
    chip = PN532Emulator(rf, faults=faults)
    base = kind.split("-")[0]
    irq = irq_pin(chip) if kind.endswith("-irq") else None
    bus: Any
    if base == "i2c":
        bus = SimI2C(chip)
        t: Any = PN532_I2C(bus, irq=irq)
    elif base == "spi":
        lsb = kind != "spi-msb"
        bus = SimSPI(chip, firstbit=SimSPI.LSB if lsb else SimSPI.MSB)
        t = PN532_SPI(bus, bus.cs, lsb_first=lsb, irq=irq)
    elif base == "uart":
        bus = SimUART(chip)
        t = PN532_UART(bus)
    else:
        raise ValueError(kind)
    pn = PN532Both(t, timeout_ms=timeout_ms, ack_timeout_ms=ack_timeout_ms, retries=retries)
    if begin:
        pn.begin()
    return Wired(kind, chip, pn, rf, bus)


class Echo:
    """A card app answering every APDU with its bytes reversed + 9000; counts sessions."""

    def __init__(self) -> None:
        self.seen: list[bytes] = []
        self.sessions = 0

    def power_on(self) -> None:
        self.sessions += 1

    def process(self, apdu: bytes) -> bytes:
        self.seen.append(bytes(apdu))
        return bytes(apdu[::-1]) + b"\x90\x00"


class Background:
    """Run fn(stop) on a thread; stop() sets the flag and joins (bounded)."""

    def __init__(self, fn: Callable[[Callable[[], bool]], Any]) -> None:
        self._stop = threading.Event()
        self.result: Any = None
        self.error: BaseException | None = None

        def body() -> None:
            try:
                self.result = fn(self._stop.is_set)
            except BaseException as e:  # surfaced by stop()
                self.error = e

        self.thread = threading.Thread(target=body, daemon=True)
        self.thread.start()

    def stop(self, timeout_s: float = 10.0) -> Any:
        self._stop.set()
        self.thread.join(timeout_s)
        assert not self.thread.is_alive(), "background loop did not stop"
        if self.error is not None:
            raise self.error
        return self.result
