"""A simulated device: one unchanged firmware app (wallet or POS) and its HAL objects.

    dev = make_device(spec, clock, runtime="cpython", isolation="inproc")
    dev.process(apdu)                 # any command APDU (provisioning, sync, a reader)
    dev.power_on()                    # field on / reboot (after a power cut: power restored)
    pos.field = Field(...)            # a POS reads cards through its field
    pos.take_payment(amount, pin)     # the POS's payment flow over that field -> Payment
    dev.cut_after(k, keep_permille)   # power cut during the k-th flash write from now
    dev.snapshot() / dev.restore(img) # whole flash image (clone / rollback attacks)

Three implementations of one interface:

- `LocalDevice`: the app object in this process, on CPython (`SimFlash`, `SeededRng`, the
  scenario's `SimClock`). The fast path, used for the 10,000-wallet benchmark.
- `ProcessDevice`: the same `LocalDevice` in a child Python process of its own
  (`python -m tapcash.sim.device.build`), driven over pipes. A POS's NFC link calls back into the
  parent, where its `Field` (tears, air time, transcript) and the wallet device live.
- `sim.vm.runtime.MpDevice`: the app inside the real MicroPython VM.

Every device hashes the APDUs it is sent through `process` (`digest`), so two runs can be
compared cheaply: a fixed seed gives byte-identical transcripts in every runtime, because
all randomness comes from the seeded HAL RNG and all time from the scenario clock.
"""

from __future__ import annotations

import hashlib
import os
import struct
import subprocess
import sys
import traceback
from dataclasses import asdict, dataclass, field
from typing import Any

import cbor2

from tapcash.firmware.core.hal import Hal, Link, LinkError, PowerCut
from tapcash.sim.device.flash import SimFlash
from tapcash.sim.device.hal import SeededRng, SimClock

WALLET = "wallet"
POS = "pos"


@dataclass(frozen=True)
class DeviceSpec:
    """Everything needed to build the same device in any runtime."""

    role: str  # WALLET or POS
    number: int  # 1-based within its role (clones get their own numbers)
    rng_seed: bytes  # SeededRng seed
    flash_dir: str | None = None  # None: flash in memory; else persistent files there
    pos_config: dict[int, int] | None = None  # PosApp base config (proto.CFG_*)
    label: str = ""  # name override (a clone: "wallet-7-clone")

    @property
    def name(self) -> str:
        return self.label or f"{self.role}-{self.number}"


def spec_seed(seed: int, role: str, number: int, salt: str = "") -> bytes:
    """The RNG seed of a device, from the scenario seed."""
    return hashlib.sha256(f"tapcash/sim/{seed}/{role}/{number}/{salt}".encode()).digest()[:16]


@dataclass
class Payment:
    """What a POS's take_payment returned (pay.PaymentResult, runtime-neutral)."""

    status: str  # approved / declined / torn / power_cut
    reason: str
    amount: int
    sw: int = 0
    wallet: bytes | None = None
    counter: int = 0
    seq: int = 0
    balance: int = -1
    recovered: bool = False
    receipt_sent: bool = False
    payment: bytes | None = None
    receipt: bytes | None = None
    purse: int = 0  # earmarked purse that paid part (0: the main purse alone)
    earmarked: int = 0  # the part it paid
    purse_balance: int = -1

    @property
    def approved(self) -> bool:
        return self.status == "approved"

    @classmethod
    def from_result(cls, r: Any) -> Payment:
        return cls(
            r.status,
            r.reason,
            r.amount,
            r.sw,
            r.wallet,
            r.counter,
            r.seq,
            r.balance,
            r.recovered,
            r.receipt_sent,
            r.payment,
            r.receipt,
            getattr(r, "purse", 0),
            getattr(r, "earmarked", 0),
            getattr(r, "purse_balance", -1),
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


POWER_CUT = "power_cut"


# ---- the interface ---------------------------------------------------------------------------
class Device:
    """One simulated device. Subclasses implement the `_`-methods."""

    runtime = "cpython"

    def __init__(self, spec: DeviceSpec) -> None:
        self.spec = spec
        self.role = spec.role
        self.name = spec.name
        self.field: Link | None = None  # a POS's reader field
        self.commands = 0
        self._hash = hashlib.sha256()

    # -- commands ------------------------------------------------------------------------
    def process(self, apdu: bytes) -> bytes:
        """One command APDU in, one response APDU out. Raises PowerCut when the device's
        flash lost power during it (the device is then off until power_on)."""
        self.commands += 1
        h = self._hash
        apdu = bytes(apdu)
        try:
            resp = self._process(apdu)
        except PowerCut:
            h.update(b"".join((len(apdu).to_bytes(4, "big"), apdu, b"\xff\xff\xff\xff")))
            raise
        h.update(b"".join((len(apdu).to_bytes(4, "big"), apdu, len(resp).to_bytes(4, "big"), resp)))
        return resp

    @property
    def digest(self) -> str:
        return self._hash.hexdigest()

    def power_on(self) -> None:
        self._power_on()

    def take_payment(self, amount: int, pin: bytes | None = None) -> Payment:
        if self.role != POS:
            raise TypeError(f"{self.name} is not a POS")
        if self.field is None:
            raise RuntimeError(f"{self.name} has no field")
        return self._take_payment(amount, pin)

    # -- flash ---------------------------------------------------------------------------
    def cut_after(self, k: int, keep_permille: int = 0) -> None:
        """Cut the power during the k-th flash write/append from now (k >= 1)."""
        self._cut_after(k, keep_permille)

    def snapshot(self) -> dict[str, bytes]:
        return self._snapshot()

    def restore(self, image: dict[str, bytes]) -> None:
        self._restore(image)

    def flash_stats(self) -> dict[str, int]:
        """{writes, appends, bytes, cuts} of the device's flash since it was built."""
        return self._flash_stats()

    def close(self) -> None:
        pass

    # -- to implement ----------------------------------------------------------------------
    def _process(self, apdu: bytes) -> bytes:
        raise NotImplementedError

    def _power_on(self) -> None:
        raise NotImplementedError

    def _take_payment(self, amount: int, pin: bytes | None) -> Payment:
        raise NotImplementedError

    def _cut_after(self, k: int, keep_permille: int) -> None:
        raise NotImplementedError

    def _snapshot(self) -> dict[str, bytes]:
        raise NotImplementedError

    def _restore(self, image: dict[str, bytes]) -> None:
        raise NotImplementedError

    def _flash_stats(self) -> dict[str, int]:
        raise NotImplementedError


# ---- in this process ---------------------------------------------------------------------------
class _FieldPort(Link):
    """The POS's hal.link: whatever field the device is attached to now."""

    def __init__(self, dev: Device) -> None:
        self.dev = dev

    def transceive(self, apdu: bytes) -> bytes:
        f = self.dev.field
        if f is None:
            raise LinkError("no field")
        return f.transceive(apdu)


class LocalDevice(Device):
    """The firmware app object itself, in this Python process."""

    def __init__(self, spec: DeviceSpec, clock: SimClock, link: Link | None = None) -> None:
        super().__init__(spec)
        self.clock = clock
        self.flash = SimFlash(spec.flash_dir)
        self.rng = SeededRng(spec.rng_seed)
        # Cards are powered by the field and have no clock; a terminal has an RTC.
        self.hal = Hal(
            flash=self.flash,
            clock=clock if spec.role == POS else None,
            rng=self.rng,
            link=(link or _FieldPort(self)) if spec.role == POS else None,
        )
        self.app: Any = None
        self._boot()

    def _boot(self) -> None:
        if self.role == WALLET:
            from tapcash.firmware.wallet.app import WalletApp

            self.app = WalletApp(self.hal)
        else:
            from tapcash.firmware.pos.app import PosApp

            self.app = PosApp(self.hal, self.spec.pos_config)
            self.app.power_on()

    def _process(self, apdu: bytes) -> bytes:
        if self.app is None:
            raise PowerCut("device is off")
        try:
            return bytes(self.app.process(apdu))  # EXPORT answers a bytearray built in place
        except PowerCut:
            self.app = None
            raise

    def _power_on(self) -> None:
        if self.app is None or not self.flash.powered:
            self.flash.power_on()
            self.app = None
            self._boot()
        elif self.role == WALLET:
            self.app.power_on()
        else:  # a POS reboot: a new app object on the same flash
            self._boot()

    def _take_payment(self, amount: int, pin: bytes | None) -> Payment:
        if self.app is None:
            return Payment(POWER_CUT, "off", amount)
        try:
            return Payment.from_result(self.app.take_payment(amount, pin))
        except PowerCut:
            self.app = None
            return Payment(POWER_CUT, "power_cut", amount)

    def _cut_after(self, k: int, keep_permille: int) -> None:
        self.flash.cut_after(k, keep_permille=keep_permille)

    def _snapshot(self) -> dict[str, bytes]:
        return self.flash.snapshot()

    def _restore(self, image: dict[str, bytes]) -> None:
        self.flash.restore(image)
        if self.app is not None:
            self._boot()

    def _flash_stats(self) -> dict[str, int]:
        st = self.flash.stats.values()
        return {
            "writes": sum(s.writes for s in st),
            "appends": sum(s.appends for s in st),
            "bytes": sum(s.bytes_written for s in st),
            "cuts": len(self.flash.cuts),
        }


# ---- in a child process ---------------------------------------------------------------------
_LEN = struct.Struct(">I")


def _send(fd: int, obj: Any) -> None:
    data = cbor2.dumps(obj)
    view = memoryview(_LEN.pack(len(data)) + data)
    while view:
        view = view[os.write(fd, view) :]


def _recv(fd: int) -> Any:
    def exact(n: int) -> bytes:
        chunks = []
        while n:
            chunk = os.read(fd, n)
            if not chunk:
                raise EOFError("pipe closed")
            chunks.append(chunk)
            n -= len(chunk)
        return b"".join(chunks)

    (n,) = _LEN.unpack(exact(4))
    return cbor2.loads(exact(n))


class RemoteError(RuntimeError):
    """The device process failed (a bug in the simulator, not a firmware refusal)."""


class ProcessDevice(Device):
    """A LocalDevice in its own Python process: "each wallet and POS as its own process"."""

    runtime = "cpython"

    def __init__(self, spec: DeviceSpec, clock: SimClock) -> None:
        super().__init__(spec)
        self.clock = clock
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tapcash.sim.device.build"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self._out = self.proc.stdin.fileno()
        self._in = self.proc.stdout.fileno()
        spec_map = asdict(spec)
        self._call("init", spec=spec_map)

    def _call(self, op: str, **args: Any) -> Any:
        args["op"] = op
        args["now"] = self.clock.now()
        _send(self._out, args)
        while True:
            msg = _recv(self._in)
            if "cb" in msg:  # the POS's link, served by the field in this process
                try:
                    assert self.field is not None
                    _send(self._out, {"resp": self.field.transceive(msg["apdu"])})
                except LinkError as e:
                    _send(self._out, {"error": str(e)})
                continue
            if msg.get("ok"):
                return msg.get("value")
            if msg.get("error") == "PowerCut":
                raise PowerCut("device flash lost power")
            raise RemoteError(f"{self.name}: {msg.get('error')}")

    def _process(self, apdu: bytes) -> bytes:
        return bytes(self._call("process", apdu=apdu))

    def _power_on(self) -> None:
        self._call("power_on")

    def _take_payment(self, amount: int, pin: bytes | None) -> Payment:
        return Payment(**self._call("take_payment", amount=amount, pin=pin))

    def _cut_after(self, k: int, keep_permille: int) -> None:
        self._call("cut_after", k=k, keep=keep_permille)

    def _snapshot(self) -> dict[str, bytes]:
        return dict(self._call("snapshot"))

    def _restore(self, image: dict[str, bytes]) -> None:
        self._call("restore", image=image)

    def _flash_stats(self) -> dict[str, int]:
        return dict(self._call("flash_stats"))

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                _send(self._out, {"op": "quit", "now": 0})
                self.proc.wait(5)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
        for f in (self.proc.stdin, self.proc.stdout):
            if f is not None:
                f.close()


class _CallbackLink(Link):
    """Child side of a POS's NFC link: every APDU goes to the parent's field."""

    def __init__(self, out_fd: int, in_fd: int) -> None:
        self.out_fd = out_fd
        self.in_fd = in_fd

    def transceive(self, apdu: bytes) -> bytes:
        _send(self.out_fd, {"cb": "link", "apdu": bytes(apdu)})
        msg = _recv(self.in_fd)
        if "resp" in msg:
            return bytes(msg["resp"])
        raise LinkError(msg.get("error", "link"))


def _serve(in_fd: int, out_fd: int) -> None:
    """The child process: one LocalDevice, one request at a time."""
    clock = SimClock(0)
    dev: LocalDevice | None = None
    while True:
        try:
            req = _recv(in_fd)
        except EOFError:
            return
        op = req["op"]
        clock.set(req.get("now", 0))
        try:
            if op == "quit":
                return
            if op == "init":
                s = req["spec"]
                spec = DeviceSpec(
                    s["role"],
                    s["number"],
                    bytes(s["rng_seed"]),
                    s["flash_dir"],
                    s["pos_config"],
                    s["label"],
                )
                dev = LocalDevice(spec, clock, _CallbackLink(out_fd, in_fd))
                value: Any = None
            else:
                assert dev is not None, "init first"
                value = _dispatch(dev, op, req)
        except PowerCut:
            _send(out_fd, {"ok": False, "error": "PowerCut"})
            continue
        except Exception:
            _send(out_fd, {"ok": False, "error": traceback.format_exc()})
            continue
        _send(out_fd, {"ok": True, "value": value})


def _dispatch(dev: LocalDevice, op: str, req: dict[str, Any]) -> Any:
    if op == "process":
        return dev.process(req["apdu"])
    if op == "power_on":
        dev.power_on()
        return None
    if op == "take_payment":
        pin = req.get("pin")
        # the hal.link is the callback link; take_payment needs a field attached
        dev.field = dev.hal.link
        return dev.take_payment(req["amount"], pin).to_dict()
    if op == "cut_after":
        dev.cut_after(req["k"], req["keep"])
        return None
    if op == "snapshot":
        return dev.snapshot()
    if op == "restore":
        dev.restore({k: bytes(v) for k, v in req["image"].items()})
        return None
    if op == "flash_stats":
        return dev.flash_stats()
    raise ValueError(f"unknown op {op!r}")


# ---- factory ---------------------------------------------------------------------------------
@dataclass
class DeviceFactory:
    """Builds devices for one run: runtime "cpython" or "micropython", isolation "inproc"
    (all devices in this process) or "process" (one process per device; in the MicroPython
    runtime one VM per device instead of one VM per role). `crypto`, MicroPython runtime only:
    "host" or "pure" Ed25519 in the VMs (sim/vm/runtime.py), None for its default."""

    clock: SimClock
    runtime: str = "cpython"
    isolation: str = "inproc"
    crypto: str | None = None
    _mp: Any = field(default=None, repr=False)

    def make(self, spec: DeviceSpec) -> Device:
        if self.runtime == "micropython":
            if self._mp is None:
                from tapcash.sim.vm.runtime import VmPool

                self._mp = VmPool(
                    self.clock, per_device=self.isolation == "process", crypto=self.crypto
                )
            return self._mp.make(spec)
        if self.runtime != "cpython":
            raise ValueError(f"unknown runtime {self.runtime!r}")
        if self.isolation == "process":
            return ProcessDevice(spec, self.clock)
        if self.isolation != "inproc":
            raise ValueError(f"unknown isolation {self.isolation!r}")
        return LocalDevice(spec, self.clock)

    def close(self) -> None:
        if self._mp is not None:
            self._mp.close()
            self._mp = None


if __name__ == "__main__":
    _serve(sys.stdin.fileno(), sys.stdout.fileno())
