"""HTTP API of the ledger (FastAPI). Routes are thin: parse, call the Ledger, render.

Device batches (`POST /v1/ingest`) are authenticated by the signatures they carry; operator
routes need `Authorization: Bearer <token>` (compared in constant time); the hot list, the
issuer key and health are public. Every refusal is a 4xx with `{"detail": ...}` and changes
nothing. docs/LEDGER.md lists the routes; /openapi.json and /docs publish the schema.
"""

from __future__ import annotations

import hmac
import os
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Header, Query, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from pydantic import BaseModel, Field

from tapcash.host.issuer import Issuer

from . import reports
from .codec import b64d, parse_id
from .db import Database
from .errors import LedgerError
from .ingest import ingest
from .service import Ledger

API_VERSION = "1"


# ---- request bodies ----------------------------------------------------------------------
class RegisterIn(BaseModel):
    cert: str = Field(description="issuer-signed certificate envelope, base64")
    owner: str | None = Field(None, description="wallets: the owner's online account name")


class DepositIn(BaseModel):
    amount: int = Field(gt=0, description="minor units")
    reference: str = Field("", max_length=200)


class LoadIn(BaseModel):
    amount: int = Field(gt=0, description="minor units")
    reference: str = Field("", max_length=200)
    owner: str | None = Field(None, description="payer account; default: the wallet's owner")


class PayrollIn(BaseModel):
    payer: str = Field(description="owner account paying the payroll")
    reference: str = Field(description="unique per payroll batch: a second upload is refused")
    csv: str = Field(description="lines `wallet id hex, amount`; optional header; # comments")


class RecordIn(BaseModel):
    seq: int = Field(description="journal sequence number on the device")
    record: str = Field(description="CBOR of the journal record map, base64")


class IngestIn(BaseModel):
    device: str = Field(description="id of the device whose journal this is, 16 hex digits")
    records: list[RecordIn] = Field(default_factory=list)
    status: str = Field(description="device-signed status envelope closing the export, base64")


class RevokeIn(BaseModel):
    reason: str = Field("operator", max_length=200)


class RenewIn(BaseModel):
    expires: int | None = Field(None, description="unix seconds; default two years from now")
    limits: dict[int, int] | None = Field(None, description="wallet limits to change (LIM_*)")


class SettleIn(BaseModel):
    reference: str = Field("", max_length=200)


# ---- app ---------------------------------------------------------------------------------
def create_app(ledger: Ledger, token: str) -> FastAPI:
    if not token:
        raise ValueError("an operator token is required")
    app = FastAPI(
        title="tapcash ledger",
        version=API_VERSION,
        description="Online ledger of tapcash: device registration, loads, journal ingest "
        "with double-spend detection, hot lists, settlement and reports. See docs/LEDGER.md.",
    )
    app.state.ledger = ledger
    expected = ("Bearer " + token).encode()

    def operator(authorization: Annotated[str | None, Header()] = None) -> None:
        got = (authorization or "").encode()
        if not hmac.compare_digest(got, expected):
            raise LedgerError(401, "operator token required (Authorization: Bearer ...)")

    op = [Depends(operator)]

    @app.exception_handler(LedgerError)
    def _ledger_error(_request: Request, exc: LedgerError) -> JSONResponse:
        return JSONResponse({"detail": exc.detail}, status_code=exc.status)

    def fmt(rows: Any, format: str, columns: list[str] | None = None) -> Response:
        if format == "csv":
            return PlainTextResponse(reports.to_csv(rows, columns), media_type="text/csv")
        if format != "json":
            raise LedgerError(400, "format: json or csv")
        return JSONResponse(rows)

    # -- public
    @app.get("/v1/health", tags=["public"])
    def health() -> dict[str, Any]:
        return {"ok": True, "db": ledger.db.dialect}

    @app.get("/v1/issuer", tags=["public"])
    def issuer_info() -> dict[str, Any]:
        return ledger.issuer_info()

    @app.get("/v1/hotlist", tags=["public"])
    def hotlist() -> dict[str, Any]:
        return ledger.hotlist()

    # -- devices
    @app.post("/v1/ingest", tags=["devices"])
    def ingest_batch(body: IngestIn) -> dict[str, Any]:
        """Upload one EXPORT of a device's journal; returns a signed ack and pending updates."""
        return ingest(ledger, parse_id(body.device, "device"),
                      [r.model_dump() for r in body.records], body.status)

    @app.get("/v1/devices/{device_id}/pending", tags=["devices"])
    def pending(device_id: str) -> dict[str, Any]:
        """Vouchers not yet applied and the latest update for a device (signed objects are
        only useful to that device, so this is public)."""
        return ledger.pending(parse_id(device_id, "device"))

    # -- operator
    @app.post("/v1/devices", tags=["operator"], dependencies=op)
    def register(body: RegisterIn) -> dict[str, Any]:
        return ledger.register(b64d(body.cert, "cert"), body.owner)

    @app.get("/v1/devices/{device_id}", tags=["operator"], dependencies=op)
    def device(device_id: str) -> dict[str, Any]:
        return ledger.device(parse_id(device_id, "device"))

    @app.post("/v1/devices/{device_id}/revoke", tags=["operator"], dependencies=op)
    def revoke(device_id: str, body: RevokeIn) -> dict[str, Any]:
        return ledger.revoke(parse_id(device_id, "device"), body.reason)

    @app.post("/v1/devices/{device_id}/renew", tags=["operator"], dependencies=op)
    def renew(device_id: str, body: RenewIn) -> dict[str, Any]:
        return ledger.renew(parse_id(device_id, "device"), body.expires, body.limits)

    @app.post("/v1/owners/{owner}/deposit", tags=["operator"], dependencies=op)
    def deposit(owner: str, body: DepositIn) -> dict[str, Any]:
        return ledger.deposit(owner, body.amount, body.reference)

    @app.get("/v1/owners/{owner}", tags=["operator"], dependencies=op)
    def owner_info(owner: str) -> dict[str, Any]:
        return ledger.owner(owner)

    @app.post("/v1/wallets/{wallet_id}/load", tags=["operator"], dependencies=op)
    def load(wallet_id: str, body: LoadIn) -> dict[str, Any]:
        return ledger.load(parse_id(wallet_id, "wallet"), body.amount, body.reference,
                           body.owner)

    @app.post("/v1/payroll", tags=["operator"], dependencies=op)
    def payroll(body: PayrollIn) -> dict[str, Any]:
        return ledger.payroll(body.payer, body.csv, body.reference)

    @app.post("/v1/merchants/{merchant_id}/settle", tags=["operator"], dependencies=op)
    def settle(merchant_id: str, body: SettleIn) -> dict[str, Any]:
        return ledger.settle(parse_id(merchant_id, "merchant"), body.reference)

    @app.get("/v1/invariant", tags=["operator"], dependencies=op)
    def invariant() -> JSONResponse:
        inv = ledger.invariant()
        return JSONResponse(inv, status_code=200 if inv["ok"] else 500)

    @app.get("/v1/reports/wallets/{wallet_id}", tags=["reports"], dependencies=op)
    def wallet_statement(wallet_id: str, format: str = Query("json")) -> Response:
        st = ledger.db.read(lambda tx: reports.wallet_statement(tx, parse_id(wallet_id,
                                                                             "wallet")))
        if format == "csv":
            return fmt(st["lines"], "csv",
                       ["posting", "kind", "ref", "counterparty", "amount", "balance", "at"])
        return fmt(st, format)

    @app.get("/v1/reports/books", tags=["reports"], dependencies=op)
    def books() -> dict[str, Any]:
        return ledger.db.read(reports.books)

    @app.get("/v1/reports/{name}", tags=["reports"], dependencies=op)
    def report(name: str, format: str = Query("json")) -> Response:
        """merchants | settlements | fraud | refused | set_aside | accounts"""
        return fmt(ledger.db.read(lambda tx: reports.report(tx, name)), format)

    from . import programs_routes

    app.include_router(programs_routes.router(ledger, op))
    return app


# ---- configuration from the environment (uvicorn --factory, several workers) -------------
ENV_DB = "TAPCASH_LEDGER_DB"
ENV_KEY = "TAPCASH_LEDGER_ISSUER_KEY"
ENV_TOKEN = "TAPCASH_LEDGER_TOKEN"
ENV_POOL = "TAPCASH_LEDGER_POOL"


def app_from_env() -> FastAPI:
    """`uvicorn --factory tapcash.host.ledger.app:app_from_env`: each worker process builds
    its own app and connection pool from TAPCASH_LEDGER_DB / _ISSUER_KEY / _TOKEN."""
    db = Database(os.environ.get(ENV_DB, "ledger.db"), pool_size=int(os.environ.get(ENV_POOL,
                                                                                     "8")))
    issuer = Issuer.load(Path(os.environ[ENV_KEY]))
    return create_app(Ledger(db, issuer), os.environ[ENV_TOKEN])
