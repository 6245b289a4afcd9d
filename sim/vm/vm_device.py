# Runs INSIDE the MicroPython VM, never on CPython: sim/vm/runtime.py copies this file into
# the VM as /simdev/vm_device.py next to the firmware (/firmware) and drives it with exec.
#
# One VM hosts one or more simulated devices, each an unchanged WalletApp / PosApp on the
# HAL objects below - the MicroPython twins of the CPython simulator's:
#   Flash  core FileFlash on the VM's filesystem + power-cut injection (sim/device/cutflash.py,
#          copied into the VM as /simdev/cutflash.py; the host's SimFlash is the same class)
#   Rng    SHA-256 counter-mode bytes from a seed (sim.device.hal.SeededRng, same construction)
#   CLOCK  one clock for every device in the VM, set by the host before each call
#   HostLink  a POS's NFC link: every APDU goes to the host's virtual field (JS module simhost)
# The host calls run(): one JSON list [now, [name, *args], ...] in (the clock, then one or
# more of OPS in order), the last one's str out. Bytes cross the VM boundary as hex text,
# structured results as JSON.
import binascii
import hashlib
import json
import os

from cutflash import CutFlash

from firmware.core import hal
from firmware.core.fileflash import FileFlash


class Clock(hal.Clock):
    def __init__(self):
        self.t = 0

    def now(self):
        return self.t


CLOCK = Clock()


class Rng(hal.Rng):
    def __init__(self, seed):
        self.seed = seed
        self.block = 0
        self.buf = b""

    def random(self, n):
        while len(self.buf) < n:
            h = hashlib.sha256(b"tapcash/rng\x00" + self.seed + self.block.to_bytes(8, "big"))
            self.buf += h.digest()
            self.block += 1
        out = self.buf[:n]
        self.buf = self.buf[n:]
        return out


class Flash(CutFlash):
    """Core FileFlash on the VM's filesystem with the power cuts of sim/device/cutflash.py (the
    simulator's one fault-injecting flash; the host's SimFlash does the same arithmetic)."""

    def __init__(self, root):
        CutFlash.__init__(self, FileFlash(root, False))
        self.root = root

    def names(self):
        return sorted(os.listdir(self.root))


class HostLink(hal.Link):
    def transceive(self, apdu):
        import simhost

        r = simhost.link(binascii.hexlify(bytes(apdu)).decode())
        if r[:1] == "!":
            raise hal.LinkError(r[1:])
        return binascii.unhexlify(r)


class Dev:
    def __init__(self, role, root, seed, pos_config):
        self.role = role
        self.pos_config = pos_config
        self.flash = Flash(root)
        self.hal = hal.Hal(
            flash=self.flash,
            clock=CLOCK if role == "pos" else None,
            rng=Rng(seed),
            link=HostLink() if role == "pos" else None,
        )
        self.app = None
        self.boot()

    def boot(self):
        if self.role == "wallet":
            from firmware.wallet.app import WalletApp

            self.app = WalletApp(self.hal)
        else:
            from firmware.pos.app import PosApp

            self.app = PosApp(self.hal, self.pos_config)
            self.app.power_on()


DEVS = {}


def use_crypto(name):
    """The firmware's Ed25519 backend for every device of this VM: "host" (the simulator's
    host answers, firmware/core/ed25519_vmhost.py) or "pure" (the firmware's own code)."""
    from firmware.core import ed25519

    ed25519.set_backend(name)


def _hex(b):
    return binascii.hexlify(b).decode() if b is not None else None


def new(name, role, root, seed_hex, config_json):
    cfg = None
    if config_json:
        cfg = {}
        for k, v in json.loads(config_json).items():
            cfg[int(k)] = v
    DEVS[name] = Dev(role, root, binascii.unhexlify(seed_hex), cfg)


def process(name, apdu_hex):
    d = DEVS[name]
    if d.app is None:
        return "!cut"
    try:
        return _hex(d.app.process(binascii.unhexlify(apdu_hex)))
    except hal.PowerCut:
        d.app = None
        return "!cut"


def power_on(name):
    d = DEVS[name]
    try:
        if d.app is None or not d.flash.powered:
            d.flash.power_on()
            d.app = None
            d.boot()
        elif d.role == "wallet":
            d.app.power_on()
        else:
            d.boot()
    except hal.PowerCut:  # its flash lost power while it started (a catch-up write)
        d.app = None
        return "!cut"


def take_payment(name, amount, pin_hex):
    d = DEVS[name]
    if d.app is None:
        return json.dumps({"status": "power_cut", "reason": "off", "amount": amount})
    pin = binascii.unhexlify(pin_hex) if pin_hex else None
    try:
        r = d.app.take_payment(amount, pin)
    except hal.PowerCut:
        d.app = None
        return json.dumps({"status": "power_cut", "reason": "power_cut", "amount": amount})
    return json.dumps(
        {
            "status": r.status,
            "reason": r.reason,
            "amount": r.amount,
            "sw": r.sw,
            "wallet": _hex(r.wallet),
            "counter": r.counter,
            "seq": r.seq,
            "balance": r.balance,
            "recovered": r.recovered,
            "receipt_sent": r.receipt_sent,
            "payment": _hex(r.payment),
            "receipt": _hex(r.receipt),
            "purse": r.purse,
            "earmarked": r.earmarked,
            "purse_balance": r.purse_balance,
        }
    )


def cut_after(name, k, keep):
    DEVS[name].flash.cut_after(k, None, keep)


def snapshot(name):
    f = DEVS[name].flash
    out = {}
    for n in f.names():
        data = f.inner.read(n)
        if data is not None:
            out[n] = _hex(data)
    return json.dumps(out)


def restore(name, image_json):
    d = DEVS[name]
    f = d.flash
    image = json.loads(image_json)
    for n in f.names():
        if n not in image:
            f.inner.remove(n)
    for n in image:
        f.inner.write(n, binascii.unhexlify(image[n]))
    if d.app is not None:
        d.boot()


def flash_stats(name):
    f = DEVS[name].flash
    return json.dumps(
        {"writes": f.writes, "appends": f.appends, "bytes": f.bytes_written, "cuts": f.torn}
    )


OPS = {
    "new": new,
    "process": process,
    "power_on": power_on,
    "take_payment": take_payment,
    "cut_after": cut_after,
    "snapshot": snapshot,
    "restore": restore,
    "flash_stats": flash_stats,
    "use_crypto": use_crypto,
}


def run(arg):
    """The host's one entry (the bridge's call op): arg is the JSON text of
    [now, [name, *args], ...]: set the clock, run each OPS[name](*args) in order, give back the
    last one's str result ("" for None). One that answers "!cut" ends the batch with it."""
    a = json.loads(arg)
    CLOCK.t = a[0]
    r = None
    for c in a[1:]:
        r = OPS[c[0]](*c[1:])
        if r == "!cut":
            break
    return "" if r is None else r
