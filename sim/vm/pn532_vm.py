"""The firmware's PN532 driver running in the real MicroPython VM, its bus served by the emulator.

A ``BusVM`` is a MicroPythonVM with ``mpvm_bus_plugin.mjs`` loaded and ``vm_bus.py`` installed:
inside the VM, ``vm_bus.I2C()`` / ``SPI()`` / ``UART()`` / ``Pin(n)`` behave like the machine
classes, and every transaction is served here, synchronously, by the bus adapters of
``sim/nfc/pn532/`` (SimI2C, SimSPI, SimUART, SimPin) wired to a PN532Emulator:

    with BusVM(compiled=True) as vm:
        chip = PN532Emulator(field)
        vm.attach(SimI2C(chip))
        vm.run("from firmware.hal.pn532_reader import PN532Reader\\n"
               "from firmware.hal.pn532_transport import PN532_I2C\\n"
               "pn = PN532Reader(PN532_I2C(vm_bus.I2C()))\\npn.begin()\\n"
               "r = repr(pn.firmware_version())", "r")

Pins: id 0 is the SPI chip select (the adapter's ``cs``), ids from 1 are those given to
``attach(..., pins=...)`` (e.g. the IRQ line from ``irq_pin``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tapcash.sim.nfc.pn532 import SimI2C, SimPin, SimSPI, SimUART
from tapcash.sim.vm.mpvm import MicroPythonVM

_HERE = Path(__file__).resolve().parent
PLUGIN_PATH = _HERE / "mpvm_bus_plugin.mjs"
VM_BUS_PATH = _HERE / "vm_bus.py"
# what vm_bus.py imports besides the VM's own `simbus` module
VM_BUS_FILES = (VM_BUS_PATH, _HERE.parent / "nfc" / "pn532" / "uart_shape.py")
VM_DIR = "/simbus"


class BusVM(MicroPythonVM):
    def __init__(self, compiled: bool = False, timeout_s: float = 120.0) -> None:
        super().__init__(plugins=[PLUGIN_PATH], timeout_s=timeout_s)
        self.compiled = compiled
        self.bus: Any = None
        self.pins: dict[int, SimPin] = {}
        self.calls = 0

    def start(self) -> None:
        super().start()
        self.install_firmware(compiled=self.compiled)
        for path in VM_BUS_FILES:
            self.put_file(f"{VM_DIR}/{path.name}", path.read_bytes())
        self.exec(f"import sys\nif {VM_DIR!r} not in sys.path: sys.path.append({VM_DIR!r})")

    def attach(self, bus: SimI2C | SimSPI | SimUART, pins: dict[int, SimPin] | None = None) -> None:
        """Serve the VM's bus calls with this adapter (and these pins) from now on."""
        self.bus = bus
        self.pins = dict(pins or {})
        if isinstance(bus, SimSPI):
            self.pins[0] = bus.cs

    def run(self, code: str, result: str | None = None) -> str:
        """exec code in the VM's __main__ (vm_bus imported), serving bus calls until it ends;
        returns the str global `result` (or "")."""
        return self.exec_serving("import vm_bus\n" + code, self._answer, result)

    def _answer(self, reply: dict[str, Any]) -> dict[str, str]:
        if reply.get("cb") != "bus":
            return {"error": f"no such host call {reply.get('cb')!r}"}
        self.calls += 1
        try:
            return {"r": self._serve(reply["op"], bytes.fromhex(reply["data"])).hex()}
        except OSError as e:
            return {"error": str(e.errno or e)}

    def _serve(self, op: str, d: bytes) -> bytes:
        bus = self.bus
        if op == "i2c_w":
            bus.writeto(d[0], d[1:])
            return b""
        if op == "i2c_r":
            buf = bytearray(d[1] << 8 | d[2])
            bus.readfrom_into(d[0], buf)
            return bytes(buf)
        if op == "spi_w":
            bus.write(d)
            return b""
        if op == "spi_r":
            buf = bytearray(d[0] << 8 | d[1])
            bus.readinto(buf, d[2])
            return bytes(buf)
        if op == "spi_wr":
            buf = bytearray(len(d))
            bus.write_readinto(d, buf)
            return bytes(buf)
        if op == "uart_w":
            bus.write(d)
            return b""
        if op == "uart_any":
            n = min(bus.any(), 0xFFFF)
            return bytes((n >> 8, n & 0xFF))
        if op == "uart_r":
            return bus.read(d[0] << 8 | d[1]) or b""
        if op == "pin_set":
            self.pins[d[0]].value(d[1])
            return b""
        if op == "pin_get":
            return bytes((self.pins[d[0]].value() or 0,))
        raise OSError(22, f"unknown bus op {op}")
