"""HTTP routes for programmes (earmarked purses): create, load in bulk, cancel, sweep,
report. Operator routes; the operations are in programs.py (docs/LEDGER.md §6)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import Field

from . import programs
from .errors import LedgerError
from .models import In, Int
from .service import Ledger


class ProgramIn(In):  # strict, like every request body
    name: str = Field(description="programme name (its id is derived from it)")
    funder: str = Field(description="owner account that funds it and gets refunds")
    kind: str = Field(description="subsidy | prepaid")
    expires: Int(description="unix seconds: the purses' value returns after this")
    valid_from: Int(description="unix seconds; default now") | None = None
    merchants: list[str] = Field(default_factory=list, description="merchant ids, 16 hex")
    categories: list[Int()] = Field(default_factory=list, description="merchant categories")
    cap: Int(ge=0, description="most one payment takes from a purse (0: none)") = 0
    unit: Int(ge=0, description="unit price: purses pay whole units (0: any)") = 0


class ProgramLoadIn(In):
    reference: str = Field(description="unique per load: a second upload is refused")
    csv: str = Field(description="lines `wallet id hex, amount`; optional header; # comments")


def _merchant_ids(values: list[str]) -> list[bytes]:
    out = []
    for v in values:
        try:
            m = bytes.fromhex(v)
        except ValueError:
            m = b""
        if len(m) != 8:
            raise LedgerError(400, f"merchants: {v!r} is not 16 hex digits")
        out.append(m)
    return out


def router(ledger: Ledger, op: list[Any]) -> APIRouter:
    r = APIRouter(tags=["programmes"], dependencies=op)

    @r.post("/v1/programs")
    def create(body: ProgramIn) -> dict[str, Any]:
        return programs.create(ledger, body.name, body.funder, body.kind, expires=body.expires,
                               merchants=_merchant_ids(body.merchants),
                               categories=body.categories, valid_from=body.valid_from,
                               cap=body.cap, unit=body.unit)

    @r.get("/v1/programs")
    def report_all() -> list[dict[str, Any]]:
        return ledger.db.read(lambda tx: programs.report(tx, ledger.now()))

    @r.post("/v1/programs/sweep")
    def sweep() -> dict[str, Any]:
        return programs.sweep(ledger)

    @r.get("/v1/programs/{name}")
    def report_one(name: str) -> dict[str, Any]:
        return ledger.db.read(lambda tx: programs.report(tx, ledger.now(), name))[0]

    @r.post("/v1/programs/{name}/load")
    def load(name: str, body: ProgramLoadIn) -> dict[str, Any]:
        return programs.load(ledger, name, body.csv, body.reference)

    @r.post("/v1/programs/{name}/cancel")
    def cancel(name: str) -> dict[str, Any]:
        return programs.cancel(ledger, name)

    return r
