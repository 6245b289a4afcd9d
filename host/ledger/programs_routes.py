"""HTTP routes for programmes (earmarked purses): create, load in bulk, cancel, sweep,
report. Operator routes; the operations are in programs.py (docs/LEDGER.md §6)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter
from fastapi import Path as PathParam
from pydantic import Field

from . import programs
from .codec import hex_id
from .errors import LedgerError
from .models import AMOUNT_MAX, NO_NUL, OWNER_PATTERN, TIME_MAX, In, Int, Text
from .service import Ledger

NAME_PATTERN = "^[A-Za-z0-9_.-]{1,64}$"
CATEGORY_MAX = (1 << 32) - 1


class ProgramIn(In):  # strict, like every request body; every bound is in the OpenAPI schema
    name: str = Field(description="programme name (its id is derived from it)",
                      pattern=NAME_PATTERN)
    funder: str = Field(description="owner account that funds it and gets refunds",
                        pattern=OWNER_PATTERN)
    kind: Literal["subsidy", "prepaid"]
    expires: Int(ge=1, le=TIME_MAX, description="unix seconds: the purses' value returns "
                 "after this")
    valid_from: Int(ge=0, le=TIME_MAX, description="unix seconds; default now") | None = None
    merchants: list[Annotated[str, Field(pattern="^[0-9a-fA-F]{16}$")]] = Field(
        default_factory=list, max_length=1000, description="merchant ids, 16 hex")
    categories: list[Int(ge=0, le=CATEGORY_MAX)] = Field(
        default_factory=list, max_length=1000, description="merchant categories")
    cap: Int(ge=0, le=AMOUNT_MAX, description="most one payment takes from a purse (0: none)"
             ) = 0
    unit: Int(ge=0, le=AMOUNT_MAX, description="unit price: purses pay whole units (0: any)"
              ) = 0


class ProgramLoadIn(In):
    reference: Text = Field(description="unique per load: a second upload is refused",
                            min_length=1, max_length=64)
    csv: Text = Field(description="lines `wallet id hex, amount`; optional header; # comments",
                      max_length=1 << 20)


ProgramRef = Annotated[str, PathParam(pattern=NO_NUL,
                                      description="programme name or id (16 hex digits)")]


def _merchant_ids(values: list[str]) -> list[bytes]:
    out = []
    for v in values:
        m = hex_id(v)
        if m is None:
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
    def report_one(name: ProgramRef) -> dict[str, Any]:
        return ledger.db.read(lambda tx: programs.report(tx, ledger.now(), name))[0]

    @r.post("/v1/programs/{name}/load")
    def load(name: ProgramRef, body: ProgramLoadIn) -> dict[str, Any]:
        return programs.load(ledger, name, body.csv, body.reference)

    @r.post("/v1/programs/{name}/cancel")
    def cancel(name: ProgramRef) -> dict[str, Any]:
        return programs.cancel(ledger, name)

    return r
