"""HTTP API of the ledger (FastAPI). Routes are thin: parse, call the Ledger, render.

Device batches (`POST /v1/ingest`) and a device's pending updates are authenticated by the
device's own signature (host/ledger/auth.py); operator routes need `Authorization: Bearer
<token>`, checked before the body is read; the hot list, the issuer key and health are public.
Bodies are limited in size before they are read (1 MiB, 16 MiB for ingest), parsed strictly
(host/ledger/models.py), and every refusal is an RFC 9457 problem details body with a 4xx
status that changes nothing (host/ledger/problems.py). docs/LEDGER.md lists the routes;
/openapi.json and /docs publish the schema, with every status each route can answer.
"""

from __future__ import annotations

import gc
import os
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, Header, Query
from fastapi import Path as PathParam
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from tapcash.host.issuer import Issuer

from . import models as M
from . import reports
from .auth import STATUS_HEADER, OperatorAuth, authenticate_device
from .codec import b64d, parse_id
from .db import Database
from .env import ENV_DB, ENV_KEY, ENV_POOL, ENV_TOKEN
from .ingest import ingest
from .limits import BodyLimit
from .problems import install_problem_handlers, problem_response, responses
from .service import Ledger

API_VERSION = "1"
BODY_MAX = 1 << 20  # bytes of a request body (operator routes)
INGEST_BODY_MAX = 16 << 20  # bytes of one uploaded batch (20,000 records at most)

DeviceId = Annotated[str, PathParam(pattern="^[0-9a-fA-F]{16}$",
                                    description="device id, 16 hex digits")]
Format = Annotated[Literal["json", "csv"], Query(description="json (default) or csv")]
_bearer = HTTPBearer(auto_error=False, description="the operator token")
# Deposits, loads, settlements: a caller's reference is applied at most once (once.py)
REPLAY_200 = {200: {"description": "applied; or, with `replayed` true, the answer the first "
                    "request under this reference got (the same request again: nothing is "
                    "applied twice)"}}
REF_409 = {409: {"model": M.Problem, "description": "conflicts with the ledger's state; or the "
                 "reference was already applied to another request: `detail` names what "
                 "differs, `applied` is that request, nothing was applied"}}
INVARIANT_409 = {"model": M.Problem, "description": "the books do not balance: `detail` names "
                 "the first violations, `violations` all of them, with the check's figures"}


def operator(_cred: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> None:
    """Operator routes: the token itself is checked by the OperatorAuth middleware (every path
    but auth.PUBLIC_PATHS), before the body is read; this dependency documents the scheme."""


OP = [Depends(operator)]


def _csv(rows: list[dict[str, Any]], columns: list[str] | None = None) -> Response:
    return PlainTextResponse(reports.to_csv(rows, columns), media_type="text/csv")


def create_app(ledger: Ledger, token: str) -> FastAPI:
    if not token:
        raise ValueError("an operator token is required")
    app = FastAPI(
        title="tapcash ledger",
        version=API_VERSION,
        description="Online ledger of tapcash: device registration, loads, journal ingest "
        "with double-spend detection, hot lists, settlement and reports. Errors are RFC 9457 "
        "problem details. Text fields are valid Unicode without U+0000 (NUL): 422 otherwise. "
        "See docs/LEDGER.md.",
    )
    app.state.ledger = ledger
    install_problem_handlers(app)
    # Added last = runs first: the token is checked, then the body is read (up to its limit).
    app.add_middleware(BodyLimit, limit_for=lambda path: INGEST_BODY_MAX
                       if path == "/v1/ingest" else BODY_MAX)
    app.add_middleware(OperatorAuth, token=token)

    def op_json(tags: list[str] | None = None) -> dict[str, Any]:
        return {"dependencies": OP, "tags": tags or ["operator"]}

    # -- public
    @app.get("/v1/health", tags=["public"], response_model=M.HealthOut)
    def health() -> dict[str, Any]:
        return {"ok": True, "db": ledger.db.dialect}

    @app.get("/v1/issuer", tags=["public"], response_model=M.IssuerOut)
    def issuer_info() -> dict[str, Any]:
        return ledger.issuer_info()

    @app.get("/v1/hotlist", tags=["public"], response_model=M.HotlistOut,
             responses=responses(503))
    def hotlist() -> dict[str, Any]:
        return ledger.hotlist()

    # -- devices (authenticated by their own signatures)
    @app.post("/v1/ingest", tags=["devices"], response_model=M.IngestOut,
              responses=responses(400, 403, 409, 413, 415, 422))
    def ingest_batch(body: M.IngestIn) -> dict[str, Any]:
        """Upload one EXPORT of a device's journal; returns a signed ack and pending updates.
        Authenticated by the status envelope, signed by the device."""
        dev_id = parse_id(body.device, "device")
        dev = authenticate_device(ledger, dev_id, body.status, fresh=False)
        # the status's signature is checked once: here, not again by prepare
        return ingest(ledger, dev_id, body.records, body.status,  # plain dicts (M._records)
                      status_key=bytes(dev["pubkey"]))

    @app.get("/v1/devices/{device_id}/pending", tags=["devices"], response_model=M.PendingOut,
             responses=responses(401, 403, 422))
    def pending(
        device_id: DeviceId,
        status: Annotated[str | None, Header(alias=STATUS_HEADER, description=(
            "base64 of the device-signed status envelope of its last EXPORT"))] = None,
    ) -> dict[str, Any]:
        """Vouchers not yet applied and the updates for a device (read only, but a wallet with
        a purse closed since its last update gets a new update clearing it). The device
        authenticates: its signed status, no older than the last one the ledger holds."""
        dev_id = parse_id(device_id, "device")
        authenticate_device(ledger, dev_id, status, fresh=True)
        return ledger.pending(dev_id)

    # -- operator
    @app.get("/v1/whoami", response_model=M.WhoamiOut, responses=responses(401), **op_json())
    def whoami() -> dict[str, Any]:
        """200 when the bearer token is the operator token (tools check it with this)."""
        return {"role": "operator", "db": ledger.db.dialect}

    @app.post("/v1/devices", response_model=M.DeviceOut,
              responses=responses(400, 401, 409, 413, 415, 422), **op_json())
    def register(body: M.RegisterIn) -> dict[str, Any]:
        return ledger.register(b64d(body.cert, "cert"), body.owner)

    @app.get("/v1/devices", response_model=list[M.DeviceOut], responses=responses(401),
             **op_json())
    def devices(kind: Annotated[Literal["wallet", "pos"] | None, Query()] = None
                ) -> list[dict[str, Any]]:
        return ledger.db.read(lambda tx: reports.devices(tx, kind))

    @app.get("/v1/devices/{device_id}", response_model=M.DeviceOut,
             responses=responses(401, 404, 422), **op_json())
    def device(device_id: DeviceId) -> dict[str, Any]:
        return ledger.device(parse_id(device_id, "device"))

    @app.post("/v1/devices/{device_id}/revoke", response_model=M.RevokeOut,
              responses=responses(401, 404, 413, 415, 422), **op_json())
    def revoke(device_id: DeviceId, body: M.RevokeIn) -> dict[str, Any]:
        return ledger.revoke(parse_id(device_id, "device"), body.reason)

    @app.post("/v1/devices/{device_id}/reinstate", response_model=M.RevokeOut,
              responses=responses(401, 404, 409, 413, 415, 422), **op_json())
    def reinstate(device_id: DeviceId, body: M.ReinstateIn) -> dict[str, Any]:
        """Take a revoked device off the hot list (409 for a wallet with fraud cases unless
        `force`)."""
        return ledger.reinstate(parse_id(device_id, "device"), body.reason, body.force)

    @app.post("/v1/devices/{device_id}/renew", response_model=M.RenewOut,
              responses=responses(400, 401, 404, 409, 413, 415, 422), **op_json())
    def renew(device_id: DeviceId, body: M.RenewIn) -> dict[str, Any]:
        limits = None if body.limits is None else {int(k): v for k, v in body.limits.items()}
        return ledger.renew(parse_id(device_id, "device"), body.expires, limits)

    @app.get("/v1/owners", response_model=list[M.OwnerRow], responses=responses(401),
             **op_json())
    def owners() -> list[dict[str, Any]]:
        return ledger.db.read(reports.owners)

    @app.post("/v1/owners", response_model=M.OwnerAdded,
              responses=responses(400, 401, 413, 415, 422), **op_json())
    def add_owner(body: M.OwnerIn) -> dict[str, Any]:
        """Open an owner's online account (idempotent: an existing owner is unchanged)."""
        return ledger.add_owner(body.owner)

    @app.post("/v1/owners/{owner}/deposit", response_model=M.DepositOut,
              responses=responses(400, 401, 413, 415, 422) | REPLAY_200 | REF_409,
              **op_json())
    def deposit(owner: M.OwnerName, body: M.DepositIn) -> dict[str, Any]:
        return ledger.deposit(owner, body.amount, body.reference)

    @app.get("/v1/owners/{owner}", response_model=M.OwnerOut,
             responses=responses(400, 401, 404), **op_json())
    def owner_info(owner: M.OwnerName) -> dict[str, Any]:
        return ledger.owner(owner)

    @app.post("/v1/wallets/{wallet_id}/load", response_model=M.LoadOut,
              responses=responses(400, 401, 404, 413, 415, 422) | REPLAY_200 | REF_409,
              **op_json())
    def load(wallet_id: DeviceId, body: M.LoadIn) -> dict[str, Any]:
        return ledger.load(parse_id(wallet_id, "wallet"), body.amount, body.reference,
                           body.owner)

    @app.post("/v1/payroll", response_model=M.PayrollOut,
              responses=responses(400, 401, 404, 409, 413, 415, 422), **op_json())
    def payroll(body: M.PayrollIn) -> dict[str, Any]:
        return ledger.payroll(body.payer, body.csv, body.reference)

    @app.post("/v1/merchants/{merchant_id}/settle", response_model=M.SettleOut,
              responses=responses(401, 404, 409, 413, 415, 422) | REPLAY_200, **op_json())
    def settle(merchant_id: DeviceId, body: M.SettleIn) -> dict[str, Any]:
        return ledger.settle(parse_id(merchant_id, "merchant"), body.reference)

    @app.get("/v1/invariant", response_model=M.InvariantOut,
             responses=responses(401) | {409: INVARIANT_409}, **op_json())
    def invariant() -> JSONResponse:
        """The books' invariant: 200 when they balance; 409, a problem naming the violations
        (with every figure of the check), when they do not (host/ledger/invariant.py)."""
        from .invariant import summary

        inv = ledger.invariant()
        if inv["ok"]:
            return JSONResponse(inv)
        return problem_response(409, summary(inv["violations"]), **inv)

    # -- reports (json or csv)
    csv_ok = {200: {"content": {"text/csv": {}}}}

    @app.get("/v1/reports/wallets/{wallet_id}", response_model=M.StatementOut,
             responses=responses(401, 404, 422) | csv_ok, **op_json(tags=["reports"]))
    def wallet_statement(wallet_id: DeviceId, format: Format = "json") -> Any:
        wid = parse_id(wallet_id, "wallet")
        st = ledger.db.read(lambda tx: reports.wallet_statement(tx, wid))
        if format == "csv":
            return _csv(st["lines"], ["posting", "kind", "ref", "counterparty", "amount",
                                      "balance", "at"])
        return st

    @app.get("/v1/reports/books", response_model=M.BooksOut, responses=responses(401),
             **op_json(tags=["reports"]))
    def books() -> dict[str, Any]:
        return ledger.db.read(reports.books)

    def report_route(name: str, row: type, doc: str) -> None:
        def route(format: Format = "json") -> Any:
            rows = ledger.db.read(lambda tx: reports.report(tx, name))
            if format == "csv":  # the header even without a row (the model's fields)
                return _csv(rows, list(rows[0]) if rows else list(row.model_fields))
            return rows

        route.__doc__ = doc
        app.get(f"/v1/reports/{name}", response_model=list[row], name=f"report_{name}",
                responses=responses(401, 422) | csv_ok, **op_json(tags=["reports"]))(route)

    report_route("merchants", M.MerchantRow, "Per merchant: credited, settled, owed.")
    report_route("settlements", M.SettlementRow, "Every settlement paid out.")
    report_route("fraud", M.FraudRow, "Fraud cases with both wallet-signed proofs.")
    report_route("refused", M.RefusedRow, "Payments outside the rules, credited to nobody.")
    report_route("accounts", M.AccountRow, "Every account and its balance.")
    report_route("set_aside", M.SetAsideRow, "Journal records kept as evidence instead of "
                 "refusing their batch.")

    from . import programs_routes

    app.include_router(programs_routes.router(ledger, OP))

    from .console import mount as mount_console

    mount_console(app, ledger, token)  # the operator console: /console (HTML, its own auth)

    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


def _openapi(app: FastAPI) -> dict[str, Any]:
    from .problems import fix_openapi

    if app.openapi_schema is None:
        from fastapi.openapi.utils import get_openapi

        spec = get_openapi(title=app.title, version=app.version, description=app.description,
                           routes=app.routes)
        app.openapi_schema = fix_openapi(spec)
    return app.openapi_schema


# ---- configuration from the environment (uvicorn --factory, several workers) -------------

# The garbage collector of a serving process. One uploaded batch of 1,000 records makes tens of
# thousands of container objects (the JSON's dicts, decoded CBOR maps, rows), each freed by its
# reference count; at CPython's default threshold (a young collection every 700 allocations)
# the collector ran every few records and, every so often, over the whole heap of the app
# (routes, pydantic schemas). After startup that heap is frozen out of the collector's sight
# and the young generation is collected every 50,000 allocations: about 3 us less server CPU
# per payment of about 72 (tapcash bench servers, its per-process CPU, 40,000 payments,
# alternated with the defaults). Reference cycles are still collected.
GC_THRESHOLD = (50_000, 20, 10)


def tune_gc() -> None:
    """A serving process's collector: startup objects frozen, young collections rarer."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLD)



def app_from_env() -> FastAPI:
    """`uvicorn --factory tapcash.host.ledger.app:app_from_env`: each worker process builds
    its own app and connection pool from TAPCASH_LEDGER_DB / _ISSUER_KEY / _TOKEN."""
    db = Database(os.environ.get(ENV_DB, "ledger.db"), pool_size=int(os.environ.get(ENV_POOL,
                                                                                     "8")))
    # (TAPCASH_LEDGER_DB_WAIT, `serve --db-wait`: how long a request waits on a gone database)
    issuer = Issuer.load(Path(os.environ[ENV_KEY]))
    app = create_app(Ledger(db, issuer), os.environ[ENV_TOKEN])
    tune_gc()
    return app

