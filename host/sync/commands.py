"""The sync commands of a device (wallet or POS), as typed calls over a transport.

Only the APDUs a sync needs: SELECT (INFO), EXPORT, APPLY, LOAD, ACK (docs/PROTOCOL.md §3.2,
§3.4). Each checks the status word; the ones a rerun after an interruption can meet are
answers, not errors: APPLY and LOAD of something already applied give 6916 and return False.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from tapcash.firmware.core import cbor, proto
from tapcash.host.device.apdu import exchange, select_tapcash
from tapcash.host.device.errors import DeviceRefused, NoAnswer, NotADevice

EXPORT_PAGE_RECORDS = 16  # records asked per EXPORT; the device also bounds a page to ~3000 bytes
KIND_NAMES = {proto.KIND_WALLET: "wallet", proto.KIND_POS: "pos"}


class Transport(Protocol):
    port: str

    def transceive(self, apdu: bytes, *, retries: int | None = None) -> bytes: ...


@dataclass
class DeviceInfo:
    id: bytes
    kind: int
    cert: bytes
    info: dict[int, Any]

    @property
    def kind_name(self) -> str:
        return KIND_NAMES.get(self.kind, str(self.kind))


@dataclass
class ExportPage:
    records: list[tuple[int, bytes]]  # (seq, record CBOR bytes)
    more: bool
    last_seq: int  # the device's last journal seq (unsigned, for progress)
    status: bytes | None  # device-signed status envelope: the last page only
    status_body: dict[int, Any]  # empty before the last page


def sw_text(sw: int) -> str:
    return f"{sw:04X}"


class DeviceCommands:
    def __init__(self, transport: Transport) -> None:
        self.t = transport

    def command(
        self, ins: int, data: bytes = b"", *, cla: int = proto.CLA_PROP, p1: int = 0
    ) -> tuple[bytes, int]:
        return exchange(self.t.transceive, ins, data, cla=cla, p1=p1)

    def select(self) -> DeviceInfo:
        """SELECT the tapcash AID; NotADevice when nothing on the port speaks tapcash."""
        try:
            data, sw = select_tapcash(self.t.transceive)
        except NoAnswer:
            raise NotADevice(
                f"no tapcash device answers on {self.t.port} (is the sync firmware running, "
                "and is this its port?)"
            ) from None
        if sw != proto.SW_OK:
            raise NotADevice(f"the device on {self.t.port} refused SELECT tapcash (SW {sw:04X})")
        try:
            info = cbor.decode(data)
        except ValueError:
            raise NotADevice(f"the answer on {self.t.port} is not a tapcash INFO map") from None
        if not isinstance(info, dict) or info.get(proto.INFO_VERSION) != proto.VERSION:
            raise NotADevice(f"the device on {self.t.port} speaks another protocol version")
        if info.get(proto.INFO_FLAGS, 0) & proto.FLAG_BLANK:
            raise DeviceRefused("the device is not personalised yet", proto.SW_CONDITIONS)
        dev = info.get(proto.INFO_ID)
        cert = info.get(proto.INFO_CERT)
        if not isinstance(dev, bytes) or len(dev) != 8 or not isinstance(cert, bytes | list):
            raise NotADevice("INFO without a device id and certificate")
        if isinstance(cert, list):
            cert = cbor.encode(cert)
        try:
            _bb, body, _sig = proto.open_envelope(cert)
        except proto.ApduError:
            raise NotADevice("INFO with a malformed certificate") from None
        kind = body.get(proto.CERT_KIND)
        if body.get(proto.CERT_ID) != dev or kind not in KIND_NAMES:
            raise NotADevice("INFO certificate does not match the device id")
        return DeviceInfo(dev, kind, cert, info)

    def export(self, since: int, max_records: int) -> ExportPage:
        data, sw = self.command(
            proto.INS_EXPORT, cbor.encode({proto.EXP_SINCE: since, proto.EXP_MAX: max_records})
        )
        if sw != proto.SW_OK:
            raise DeviceRefused(f"EXPORT refused (SW {sw:04X})", sw)
        try:
            m = cbor.decode(data)
            recs = m[proto.EXP_RECORDS]
            more = m[proto.EXP_MORE]
            last_seq = m.get(proto.EXP_LAST, 0)
            status, status_body = None, {}
            if not more:  # the last page is closed by the signed status
                status = m[proto.EXP_STATUS]
                if isinstance(status, list):
                    status = cbor.encode(status)
                _bb, status_body, _sig = proto.open_envelope(status)
            records = [
                (int(seq), rec if isinstance(rec, bytes) else cbor.encode(rec)) for seq, rec in recs
            ]
        except (ValueError, KeyError, TypeError, proto.ApduError):
            raise DeviceRefused("malformed EXPORT answer", proto.SW_WRONG_DATA) from None
        if not isinstance(more, bool) or not isinstance(last_seq, int) or any(
            b <= a for (a, _), (b, _) in zip(records, records[1:], strict=False)
        ):
            raise DeviceRefused("malformed EXPORT answer", proto.SW_WRONG_DATA)
        return ExportPage(records, more, last_seq, status, status_body)

    def _applied(self, what: str, ins: int, env: bytes) -> tuple[bytes, bool]:
        data, sw = self.command(ins, env)
        if sw == proto.SW_OK:
            return data, True
        if sw == proto.SW_REPLAY:
            return data, False
        raise DeviceRefused(f"{what} refused by the device (SW {sw:04X})", sw)

    def apply(self, update: bytes) -> bool:
        """True: applied now; False: this update (or a later one) was applied before."""
        return self._applied("update (APPLY)", proto.INS_APPLY, update)[1]

    def load(self, voucher: bytes) -> bool:
        """True: loaded now; False: applied before (6916)."""
        return self._applied("voucher (LOAD)", proto.INS_LOAD, voucher)[1]

    def ack(self, ack: bytes) -> None:
        _data, sw = self.command(proto.INS_ACK, ack)
        if sw != proto.SW_OK:
            raise DeviceRefused(f"the device refused the ledger's ACK (SW {sw:04X})", sw)
