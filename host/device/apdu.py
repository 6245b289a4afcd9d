"""Send one command APDU and split the answer into data and status word: the one helper every
host-side caller uses (the sync tool, provisioning, the simulator's host steps, tests).

It takes the sending function, not a link type, so the same call works on every transport:
`link.transceive` (serial frames, PC/SC, a raw REPL, the simulated NFC field) and `app.process`
(a firmware app object driven directly). Commands and answers are built and parsed by the
firmware's own `core.proto` (build_command / split_response).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from tapcash.firmware.core import proto

from .errors import DeviceRefused

Send = Callable[[bytes], bytes]  # one command APDU out, its response APDU (data || SW) back


class ApduLink(Protocol):
    """A transport to one device: serial frames, PC/SC, the REPL, the simulated field."""

    port: str

    def transceive(self, apdu: bytes) -> bytes: ...


def exchange(
    send: Send, ins: int, data: bytes = b"", *, cla: int = proto.CLA_PROP, p1: int = 0, p2: int = 0
) -> tuple[bytes, int]:
    """(data, SW) of one command; DeviceRefused when the answer has no status word."""
    resp = send(proto.build_command(cla, ins, p1, p2, data))
    if len(resp) < 2:
        raise DeviceRefused(f"short answer to INS {ins:02X}", 0)
    return proto.split_response(resp)


def call(
    send: Send,
    ins: int,
    data: bytes = b"",
    *,
    cla: int = proto.CLA_PROP,
    p1: int = 0,
    p2: int = 0,
    what: str = "",
) -> bytes:
    """The data of one command that must answer 9000; DeviceRefused (with `.sw`) otherwise."""
    out, sw = exchange(send, ins, data, cla=cla, p1=p1, p2=p2)
    if sw != proto.SW_OK:
        raise DeviceRefused(f"{what or f'INS {ins:02X}'}: SW {sw:04X}", sw)
    return out


def select_tapcash(send: Send) -> tuple[bytes, int]:
    """(INFO bytes, SW) of SELECT by the tapcash AID."""
    return exchange(send, proto.INS_SELECT, proto.AID, cla=proto.CLA_ISO, p1=0x04)


class AppLink:
    """An ApduLink straight into a firmware app object (`process()` is the wire): how the
    simulator and tests use the host-side steps (personalisation) without a transport."""

    def __init__(self, app: object, port: str = "the simulated device") -> None:
        self.port = port
        self.transceive: Send = app.process  # type: ignore[attr-defined]
