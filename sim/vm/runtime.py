"""Simulated devices inside the real MicroPython VM (`--runtime micropython`).

The unchanged firmware is installed in a MicroPython 1.27 VM (WebAssembly under Node,
`sim.vm.mpvm`) together with `sim/vm/vm_device.py`, which builds each device's HAL there: core
FileFlash on the VM's filesystem with power-cut injection, a seeded RNG, and a clock the host
sets before every call. The host drives `process(apdu)` through `exec`; a POS's NFC link calls
back into the host (the `simhost` JS module of `mpvm_link_plugin.mjs`), where the virtual field
and the card live, so tears, air time and transcripts are the CPython simulator's own.

`VmPool` places devices: by default one VM for all wallets and one for all POS terminals (a
POS VM waits in a link call while the wallet VM answers, so the two must differ); with
`per_device=True` every device gets a VM - a Node process - of its own.

Crypto (`crypto=`): "host" (the default) selects the firmware's Ed25519 backend "host"
(firmware/core/ed25519_vmhost.py): each signature, verification and key derivation is one call
to this process, answered by PyNaCl as on the CPython runtime, and SHA-512 is Node's; "pure"
keeps the firmware's own pure-Python Ed25519 and SHA-512 in the VM, as on a board. Both sign
the same bytes and decide every signature alike, so a run's transcripts do not depend on it;
only its wall time does. TAPCASH_CRYPTO=pure in the environment makes "pure" the default.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import nacl.bindings as _nacl

from tapcash.firmware.core.hal import LinkError, PowerCut
from tapcash.sim.device.build import POS, Device, DeviceSpec, Payment, RemoteError
from tapcash.sim.device.hal import SimClock
from tapcash.sim.vm.mpvm import MicroPythonError, MicroPythonVM

_HERE = Path(__file__).resolve().parent
PLUGIN_PATH = _HERE / "mpvm_link_plugin.mjs"
CRYPTO_PLUGIN_PATH = _HERE / "mpvm_crypto_plugin.mjs"
CRYPTO = ("host", "pure")
VM_DEVICE_PATH = _HERE / "vm_device.py"
CUTFLASH_PATH = _HERE.parent / "device" / "cutflash.py"  # imported by vm_device
VM_DIR = "/simdev"


def default_crypto() -> str:
    """"pure" when TAPCASH_CRYPTO=pure is set (the firmware's own crypto everywhere), else
    "host"."""
    return "pure" if os.environ.get("TAPCASH_CRYPTO") == "pure" else "host"


def _host_crypto(op: str, a: bytes, b: bytes) -> bytes:
    """The libsodium calls of firmware/core/ed25519.py's PyNaCl path, for a VM device."""
    if op == "seed_keypair":
        return bytes(_nacl.crypto_sign_seed_keypair(a)[1])
    if op == "sign":
        return bytes(_nacl.crypto_sign(a, b)[:64])
    if op == "open":
        return bytes(_nacl.crypto_sign_open(a, b))
    if op == "base_noclamp":
        return bytes(_nacl.crypto_scalarmult_ed25519_base_noclamp(a))
    raise ValueError(f"no such crypto call {op!r}")


class DeviceVM(MicroPythonVM):
    """One Node process hosting the VM, with the firmware and vm_device installed; `crypto`:
    "host" or "pure" (the module docstring), None for default_crypto()."""

    def __init__(self, crypto: str | None = None) -> None:
        crypto = crypto or default_crypto()
        if crypto not in CRYPTO:
            raise ValueError(f"crypto must be one of {CRYPTO}, not {crypto!r}")
        super().__init__(plugins=[PLUGIN_PATH, CRYPTO_PLUGIN_PATH])
        self.crypto = crypto
        self.link_handler: Any = None  # callable(apdu) -> bytes, raises LinkError
        self.calls = 0

    def boot(self) -> DeviceVM:
        self.start()
        self.install_firmware()
        self.put_file(f"{VM_DIR}/cutflash.py", CUTFLASH_PATH.read_bytes())
        self.put_file(f"{VM_DIR}/vm_device.py", VM_DEVICE_PATH.read_bytes())
        self.exec(f"import sys\nsys.path.append({VM_DIR!r})\nimport vm_device as _simdev")
        self.call(0, "use_crypto", self.crypto)
        return self

    def call(self, now: int, op: str, *args: Any, before: list[list[Any]] | None = None) -> str:
        """Set the clock, run vm_device's OPS[op](*args) in the VM (JSON-able args), after the
        calls in `before` ([op, *args] each) in the same request, and return its str result.
        Link and crypto calls made meanwhile are served by serve_call."""
        self.calls += 1
        batch = [int(now), *(before or ()), [op, *args]]
        return self.call_serving("_simdev.run", json.dumps(batch), self.serve_call)

    def serve_call(self, reply: dict[str, Any]) -> dict[str, str]:
        cb = reply.get("cb")
        if cb == "crypto":
            try:
                a, b = bytes.fromhex(reply["a"]), bytes.fromhex(reply["b"])
                return {"r": _host_crypto(reply["op"], a, b).hex()}
            except Exception as e:  # PyNaCl's refusals: the VM raises them as ValueError
                return {"error": f"{type(e).__name__}: {e}"}
        try:
            if cb != "link":
                raise LinkError(f"no such host call {cb!r}")
            if self.link_handler is None:
                raise LinkError("no field")
            return {"resp": self.link_handler(bytes.fromhex(reply["apdu"])).hex()}
        except LinkError as e:
            return {"error": str(e) or "link"}


class MpDevice(Device):
    runtime = "micropython"

    def __init__(self, spec: DeviceSpec, clock: SimClock, vm: DeviceVM) -> None:
        super().__init__(spec)
        self.clock = clock
        self.vm = vm
        self.key = spec.name
        root = f"/flash/{spec.name}"
        cfg = json.dumps({str(k): v for k, v in spec.pos_config.items()}) if spec.pos_config else ""
        # A card's power-up is sent with its next command (one request less a tap) while no
        # power cut was ever armed on it: then nothing it does at power-up can be cut, and a
        # card has no clock to read, so the deferral cannot be seen (the host never looks at
        # its flash in between: every op goes after the pending power-up, in order).
        self._defer_power_on = spec.role != POS
        self._pending: list[list[Any]] = []
        self._call("new", self.key, spec.role, root, spec.rng_seed.hex(), cfg)

    def _call(self, op: str, *args: Any) -> str:
        before, self._pending = self._pending, []
        try:
            return self.vm.call(self.clock.now(), op, *args, before=before)
        except MicroPythonError as e:
            raise RemoteError(f"{self.name}: {e.traceback}") from None

    def _process(self, apdu: bytes) -> bytes:
        r = self._call("process", self.key, apdu.hex())
        if r == "!cut":
            raise PowerCut("device flash lost power")
        return bytes.fromhex(r)

    def _power_on(self) -> None:
        if self._defer_power_on:
            self._pending.append(["power_on", self.key])
            return
        if self._call("power_on", self.key) == "!cut":
            raise PowerCut("device flash lost power")

    def _take_payment(self, amount: int, pin: bytes | None) -> Payment:
        field = self.field
        assert field is not None
        self.vm.link_handler = field.transceive
        try:
            pin_hex = pin.hex() if pin else ""
            r = json.loads(self._call("take_payment", self.key, int(amount), pin_hex))
        finally:
            self.vm.link_handler = None
        for k in ("wallet", "payment", "receipt"):
            if r.get(k) is not None:
                r[k] = bytes.fromhex(r[k])
        return Payment(**r)

    def _cut_after(self, k: int, keep_permille: int) -> None:
        self._defer_power_on = False  # from now on a power-up may be cut: it goes when asked
        self._call("cut_after", self.key, int(k), int(keep_permille))

    def _snapshot(self) -> dict[str, bytes]:
        image = json.loads(self._call("snapshot", self.key))
        return {k: bytes.fromhex(v) for k, v in image.items()}

    def _restore(self, image: dict[str, bytes]) -> None:
        self._call("restore", self.key, json.dumps({k: v.hex() for k, v in image.items()}))

    def _flash_stats(self) -> dict[str, int]:
        return dict(json.loads(self._call("flash_stats", self.key)))


class VmPool:
    """Starts VMs on demand and places devices in them."""

    def __init__(
        self, clock: SimClock, *, per_device: bool = False, crypto: str | None = None
    ) -> None:
        self.clock = clock
        self.per_device = per_device
        self.crypto = crypto or default_crypto()
        self.vms: list[DeviceVM] = []
        self._shared: dict[str, DeviceVM] = {}

    def _new_vm(self) -> DeviceVM:
        vm = DeviceVM(self.crypto).boot()
        self.vms.append(vm)
        return vm

    def make(self, spec: DeviceSpec) -> MpDevice:
        if self.per_device:
            vm = self._new_vm()
        else:
            group = "pos" if spec.role == POS else "wallet"
            vm = self._shared.get(group) or self._new_vm()
            self._shared[group] = vm
        return MpDevice(spec, self.clock, vm)

    def close(self) -> None:
        for vm in self.vms:
            vm.close()
        self.vms = []
        self._shared = {}
