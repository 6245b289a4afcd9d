"""How a run reaches its devices: the host's own APDUs to a simulated device (`call`, `select`,
`device_status`), the sync tool's transport straight onto a device (`DeviceTransport`), and the
tap that shows every exchange of a sync to the oracle and the adversary (`SyncTap`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tapcash.firmware.core import cbor, proto
from tapcash.host.device import apdu
from tapcash.sim.device.build import WALLET, Device


def call(dev: Device, ins: int, data: bytes = b"", cla: int = proto.CLA_PROP, p1: int = 0,
          what: str = "") -> bytes:
    return apdu.call(dev.process, ins, data, cla=cla, p1=p1, what=f"{dev.name}: {what or hex(ins)}")


def select(dev: Device) -> dict[int, Any]:
    info = cbor.decode(call(dev, proto.INS_SELECT, proto.AID, proto.CLA_ISO, 4, "SELECT"))
    assert isinstance(info, dict)
    return info


class DeviceTransport:
    """The sync tool's Transport straight onto a simulated device (no serial line)."""

    def __init__(self, dev: Any) -> None:
        self.dev = dev
        self.port = f"sim:{dev.name}"

    def transceive(self, apdu: bytes, *, retries: int | None = None) -> bytes:
        return self.dev.process(apdu)


class SyncTap:
    """A device as the sync tool reaches it, with every command and answer shown to
    `seen(name, apdu, response)` first: the oracle reads what the card itself exported (a
    payment signed at power-on after a cut shows up only there), the adversary keeps what
    a compromised host could replay."""

    def __init__(self, dev: Device, seen: Callable[[str, bytes, bytes], None]) -> None:
        self.dev = dev
        self.name = dev.name
        self.seen = seen

    def process(self, apdu: bytes) -> bytes:
        resp = self.dev.process(apdu)
        self.seen(self.name, apdu, resp)
        return resp

    def __getattr__(self, name: str) -> Any:
        return getattr(self.dev, name)


def device_status(dev: Device) -> dict[str, Any]:
    """A device's own signed status (EXPORT of nothing): balance, counter, staged value."""
    if dev.role == WALLET:
        select(dev)
    req = cbor.encode({proto.EXP_SINCE: 2**31, proto.EXP_MAX: 1})
    out = cbor.decode(call(dev, proto.INS_EXPORT, req, what="EXPORT"))
    _b, body, _s = proto.open_envelope(out[proto.EXP_STATUS])
    return {
        "balance": body.get(proto.ST_BALANCE, 0),
        "counter": body.get(proto.ST_COUNTER, 0),
        "pending": body.get(proto.ST_PENDING, 0),
        "vouchers_applied": body.get(proto.ST_LOADS, 0),
        "last_seq": body.get(proto.ST_SEQ, 0),
    }
