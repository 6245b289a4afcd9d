"""Typed HTTP client of the ledger (httpx). The sync tool and the tests use it.

    from tapcash.host.ledger.client import LedgerClient
    with LedgerClient("http://127.0.0.1:8700", token="...") as lc:
        res = lc.ingest_export(device_id, [export_response_bytes, ...])
        for v in res.vouchers: ...            # voucher envelopes to LOAD (wallet), in order
        for u in res.updates: ...             # update envelopes to APPLY (6916 = already applied)
        ...                                   # then ACK res.ack on the device

Envelopes travel as bytes on the Python side and as base64 strings on the wire. A refusal
raises LedgerHTTPError with the HTTP status and the ledger's reason.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx

from tapcash.firmware.core import cbor, proto


class LedgerHTTPError(Exception):
    """A refusal: HTTP `status`, the reason `detail` (a string) and the whole RFC 9457 problem
    details body (`problem`: extension members such as a payroll's `lines`)."""

    def __init__(self, status: int, detail: Any, problem: dict[str, Any] | None = None) -> None:
        super().__init__(f"{status}: {detail}")
        self.status = status
        self.detail = detail
        self.problem = problem or {"status": status, "detail": detail}


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _seg(text: str) -> str:
    """One path segment, escaped: an owner name cannot reach another route."""
    return quote(text, safe="")


def _unb64(text: str | None) -> bytes | None:
    return None if text is None else base64.b64decode(text)


@dataclass
class IngestResult:
    device: bytes
    upto: int  # the ledger stored every journal record up to this seq
    ack: bytes  # ledger-signed ack envelope: send it to the device (ACK)
    vouchers: list[bytes]  # voucher envelopes not yet applied, in number order (LOAD each)
    update: bytes | None  # latest update envelope
    updates: list[bytes] = field(default_factory=list)  # APPLY each in order; 6916 = applied
    accepted: int = 0  # new payments credited
    duplicates: int = 0  # payments already known (replays)
    conflicts: int = 0  # new fraud cases
    refused: int = 0  # new payments not credited (outside the rules)
    released: int = 0  # staged transfers released to this wallet
    loss: int = 0  # value guaranteed beyond the payers' funds in this batch
    revoked: list[str] = field(default_factory=list)
    hotlist_version: int = 0
    raw: dict[str, Any] = field(default_factory=dict)


@dataclass
class Pending:
    device: bytes
    vouchers: list[bytes]
    updates: list[bytes]  # APPLY each in order (6916 = already applied)
    update_number: int


@dataclass
class Hotlist:
    version: int
    issued: int
    revoked: list[bytes]
    envelope: bytes


def export_to_batch(pages: Iterable[bytes | dict]) -> tuple[list[tuple[int, bytes]], bytes]:
    """Turn EXPORT response pages (CBOR bytes or decoded maps) into (records, last status).

    Each record is re-encoded with the deterministic CBOR encoder: the same bytes the device
    journaled."""
    records: list[tuple[int, bytes]] = []
    status = None
    for page in pages:
        m = cbor.decode(page) if isinstance(page, bytes | bytearray) else page
        for seq, rec in m.get(proto.EXP_RECORDS, []):
            records.append((seq, rec if isinstance(rec, bytes) else cbor.encode(rec)))
        st = m.get(proto.EXP_STATUS)
        if st is not None:
            status = st if isinstance(st, bytes) else cbor.encode(st)
    if status is None:
        raise ValueError("no status envelope in the export")
    return records, status


def _refusal(r: httpx.Response) -> LedgerHTTPError:
    try:
        body = r.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        return LedgerHTTPError(r.status_code, r.text.strip() or r.reason_phrase)
    return LedgerHTTPError(r.status_code, body.get("detail"), body)


class LedgerClient:
    def __init__(self, base_url: str, token: str | None = None, timeout: float = 60.0,
                 transport: httpx.BaseTransport | None = None) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(base_url=base_url.rstrip("/"), headers=headers,
                                  timeout=timeout, transport=transport)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> LedgerClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- plumbing ----------------------------------------------------------------------
    def _call(self, method: str, path: str, json: Any = None,
              params: dict[str, Any] | None = None,
              headers: dict[str, str] | None = None) -> Any:
        r = self._http.request(method, path, json=json, params=params, headers=headers)
        if r.status_code >= 400:
            raise _refusal(r)
        if r.headers.get("content-type", "").startswith("text/csv"):
            return r.text
        return r.json()

    # ---- public ------------------------------------------------------------------------
    def health(self) -> dict[str, Any]:
        return self._call("GET", "/v1/health")

    def issuer(self) -> dict[str, Any]:
        """{key_id, public_key} (hex) of the issuer key the ledger signs with."""
        return self._call("GET", "/v1/issuer")

    def hotlist(self) -> Hotlist:
        h = self._call("GET", "/v1/hotlist")
        return Hotlist(h["version"], h["issued"], [bytes.fromhex(x) for x in h["revoked"]],
                       base64.b64decode(h["envelope"]))

    # ---- devices (authenticated by signatures) -----------------------------------------
    def ingest(self, device_id: bytes, records: Sequence[tuple[int, bytes]],
               status: bytes) -> IngestResult:
        """Upload journal records [(seq, CBOR record bytes)] and the device-signed status."""
        body = {
            "device": device_id.hex(),
            "records": [{"seq": s, "record": _b64(r)} for s, r in records],
            "status": _b64(status),
        }
        d = self._call("POST", "/v1/ingest", json=body)
        return IngestResult(
            device=bytes.fromhex(d["device"]),
            upto=d["upto"],
            ack=base64.b64decode(d["ack"]),
            vouchers=[base64.b64decode(v["voucher"]) for v in d["vouchers"]],
            update=_unb64(d["update"]),
            updates=[base64.b64decode(u) for u in d["updates"]],
            accepted=d["accepted"],
            duplicates=d["duplicates"],
            conflicts=d["conflicts"],
            refused=d["refused"],
            released=d["released"],
            loss=d["loss"],
            revoked=d["revoked"],
            hotlist_version=d["hotlist_version"],
            raw=d,
        )

    def ingest_export(self, device_id: bytes, pages: Iterable[bytes | dict]) -> IngestResult:
        """Upload the EXPORT response pages of one device as one batch."""
        records, status = export_to_batch(pages)
        return self.ingest(device_id, records, status)

    def pending(self, device_id: bytes, status: bytes) -> Pending:
        """Vouchers and updates waiting for a device (read only). `status` is the device-signed
        status envelope of its last EXPORT: the device authenticates itself with it."""
        d = self._call("GET", f"/v1/devices/{device_id.hex()}/pending",
                       headers={"X-Tapcash-Status": _b64(status)})
        return Pending(bytes.fromhex(d["device"]),
                       [base64.b64decode(v["voucher"]) for v in d["vouchers"]],
                       [base64.b64decode(u) for u in d["updates"]], d["update_number"])

    # ---- operator ----------------------------------------------------------------------
    def register(self, cert: bytes, owner: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"cert": _b64(cert)}
        if owner is not None:
            body["owner"] = owner
        return self._call("POST", "/v1/devices", json=body)

    def device(self, device_id: bytes) -> dict[str, Any]:
        return self._call("GET", f"/v1/devices/{device_id.hex()}")

    def revoke(self, device_id: bytes, reason: str = "operator") -> dict[str, Any]:
        return self._call("POST", f"/v1/devices/{device_id.hex()}/revoke",
                          json={"reason": reason})

    def reinstate(self, device_id: bytes, reason: str = "operator",
                  force: bool = False) -> dict[str, Any]:
        return self._call("POST", f"/v1/devices/{device_id.hex()}/reinstate",
                          json={"reason": reason, "force": force})

    def devices(self, kind: str | None = None) -> list[dict[str, Any]]:
        return self._call("GET", "/v1/devices", params={"kind": kind} if kind else None)

    def owners(self) -> list[dict[str, Any]]:
        return self._call("GET", "/v1/owners")

    def check_token(self) -> None:
        """Raise LedgerHTTPError (401) unless the token is the operator token."""
        self._call("GET", "/v1/whoami")

    def renew(self, device_id: bytes, expires: int | None = None,
              limits: dict[int, int] | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {}
        if expires is not None:
            body["expires"] = expires
        if limits is not None:
            body["limits"] = {str(k): v for k, v in limits.items()}
        return self._call("POST", f"/v1/devices/{device_id.hex()}/renew", json=body)

    def add_owner(self, owner: str) -> dict[str, Any]:
        """Open an owner's online account; {owner, balance, wallets, created}."""
        return self._call("POST", "/v1/owners", json={"owner": owner})

    def deposit(self, owner: str, amount: int, reference: str = "") -> dict[str, Any]:
        return self._call("POST", f"/v1/owners/{_seg(owner)}/deposit",
                          json={"amount": amount, "reference": reference})

    def owner(self, owner: str) -> dict[str, Any]:
        return self._call("GET", f"/v1/owners/{_seg(owner)}")

    def load(self, wallet_id: bytes, amount: int, reference: str = "",
             owner: str | None = None) -> bytes:
        """Issue the wallet's next top-up voucher; returns the voucher envelope."""
        return base64.b64decode(self.top_up(wallet_id, amount, reference, owner)["voucher"])

    def top_up(self, wallet_id: bytes, amount: int, reference: str = "",
               owner: str | None = None) -> dict[str, Any]:
        """Like `load`, with the whole answer: {wallet, number, amount, voucher, owner_balance}."""
        body: dict[str, Any] = {"amount": amount, "reference": reference}
        if owner is not None:
            body["owner"] = owner
        return self._call("POST", f"/v1/wallets/{wallet_id.hex()}/load", json=body)

    def payroll(self, payer: str, csv_text: str, reference: str) -> dict[str, Any]:
        return self._call("POST", "/v1/payroll",
                          json={"payer": payer, "csv": csv_text, "reference": reference})

    def settle(self, merchant_id: bytes, reference: str = "") -> dict[str, Any]:
        return self._call("POST", f"/v1/merchants/{merchant_id.hex()}/settle",
                          json={"reference": reference})

    def invariant(self) -> dict[str, Any]:
        """The books' invariant (`ok` False and `violations` when they do not balance: 409)."""
        r = self._http.get("/v1/invariant")
        if r.status_code not in (200, 409):
            raise _refusal(r)
        body = r.json()
        if "ok" not in body:
            raise _refusal(r)
        return body

    def report(self, name: str, format: str = "json") -> Any:
        """merchants | settlements | fraud | refused | set_aside | accounts; format json or csv."""
        return self._call("GET", f"/v1/reports/{name}", params={"format": format})

    def wallet_statement(self, wallet_id: bytes, format: str = "json") -> Any:
        return self._call("GET", f"/v1/reports/wallets/{wallet_id.hex()}",
                          params={"format": format})

    def books(self) -> dict[str, Any]:
        """Canonical dump of the ledger (equal for equal content, whatever the order)."""
        return self._call("GET", "/v1/reports/books")

    # -- programmes (earmarked purses, docs/LEDGER.md §6)
    def program_create(self, name: str, funder: str, kind: str, *, expires: int,
                       merchants: list[bytes] | None = None, categories: list[int] | None = None,
                       valid_from: int | None = None, cap: int = 0,
                       unit: int = 0) -> dict[str, Any]:
        return self._call("POST", "/v1/programs", json={
            "name": name, "funder": funder, "kind": kind, "expires": expires,
            "valid_from": valid_from, "merchants": [m.hex() for m in merchants or []],
            "categories": list(categories or []), "cap": cap, "unit": unit})

    def program_load(self, name: str, csv_text: str, reference: str) -> dict[str, Any]:
        """Load purses in bulk (all lines or none); the answer lists each card's voucher."""
        return self._call("POST", f"/v1/programs/{name}/load",
                          json={"csv": csv_text, "reference": reference})

    def program_cancel(self, name: str) -> dict[str, Any]:
        return self._call("POST", f"/v1/programs/{name}/cancel")

    def program_sweep(self) -> dict[str, Any]:
        """Refund the purses of expired programmes in the books."""
        return self._call("POST", "/v1/programs/sweep")

    def programs(self, name: str | None = None) -> Any:
        """The programme report: one programme (a dict) or all (a list)."""
        return self._call("GET", "/v1/programs" + (f"/{name}" if name else ""))
