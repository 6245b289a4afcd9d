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
from .models import (
    AMOUNT_MAX,
    B64,
    NO_NUL,
    OWNER_PATTERN,
    TIME_MAX,
    Hex16,
    In,
    Int,
    Money,
    Out,
    PayrollLine,
    Text,
)
from .problems import responses
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


# ---- answers (typed, so /openapi.json says what each route returns) --------------------
class ProgramOut(Out):
    id: Hex16
    name: str
    funder: str
    kind: Literal["subsidy", "prepaid"]
    state: Literal["active", "expired", "cancelled"]
    valid_from: int = Field(description="unix seconds")
    expires: int = Field(description="unix seconds")
    merchants: list[Hex16]
    categories: list[int]
    cap: Money
    unit: Money
    rule: B64 = Field(description="the issuer-signed rule envelope")
    cancelled_at: int | None


class ProgramByMerchant(Out):
    merchant: Hex16
    category: int
    payments: int
    amount: Money


class ProgramReportRow(Out):
    program: str
    id: Hex16
    kind: Literal["subsidy", "prepaid"]
    state: Literal["active", "expired", "cancelled"]
    funder: str
    expires: int
    funded: Money
    spent: Money
    released: Money
    refunded: Money = Field(description="refunded from purses and not spent since: returned + "
                            "held - late_after_return")
    outstanding: Money
    returned: Money = Field(description="returned to the funder's account (program_return)")
    held: Money = Field(description="refunded value still in the programme account, until "
                        "returns_at")
    late_after_return: Money = Field(description="late honest payments credited after the "
                                     "return, covered by issuer:loss (purse_late)")
    returns_at: int | None = Field(description="when the held value goes back to the funder "
                                   "(the end plus return_window); null while active")
    return_window: int = Field(description="the programme's settling window in seconds: the "
                               "hot-list age of the ledger that created it, recorded with it")
    guaranteed_beyond_purse: Money
    programme_account: Money
    by_merchant: list[ProgramByMerchant]
    refused_payments: int
    refused_amount: Money
    purses: int
    purses_closed: int
    purses_cleared_on_card: int
    balanced: bool = Field(description="funded = spent + released + refunded + outstanding, "
                           "and refunded + late_after_return = returned + held")


class ProgramLoadOut(Out):
    program: str
    reference: str
    total: Money
    vouchers: list[PayrollLine]
    funder_balance: Money


class ProgramCancelOut(Out):
    program: str
    cancelled_at: int
    closed: int = Field(description="purses closed now")
    refunded: Money
    returned: Money = Field(description="returned to the funder now (a programme ended "
                            "longer ago than the settling window)")
    returns_at: int


class SweepOut(Out):
    closed: int
    refunded: Money
    returned: Money = Field(description="returned to funders: programmes ended longer ago "
                            "than the settling window")


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

    @r.post("/v1/programs", response_model=ProgramOut,
            responses=responses(400, 401, 404, 409, 413, 415, 422))
    def create(body: ProgramIn) -> dict[str, Any]:
        return programs.create(ledger, body.name, body.funder, body.kind, expires=body.expires,
                               merchants=_merchant_ids(body.merchants),
                               categories=body.categories, valid_from=body.valid_from,
                               cap=body.cap, unit=body.unit)

    @r.get("/v1/programs", response_model=list[ProgramReportRow], responses=responses(401))
    def report_all() -> list[dict[str, Any]]:
        return ledger.db.read(lambda tx: programs.report(tx, ledger.now()))

    @r.post("/v1/programs/sweep", response_model=SweepOut, responses=responses(401, 413))
    def sweep() -> dict[str, Any]:
        return programs.sweep(ledger)

    @r.get("/v1/programs/{name}", response_model=ProgramReportRow,
           responses=responses(401, 404, 422))
    def report_one(name: ProgramRef) -> dict[str, Any]:
        return ledger.db.read(lambda tx: programs.report(tx, ledger.now(), name))[0]

    @r.post("/v1/programs/{name}/load", response_model=ProgramLoadOut,
            responses=responses(400, 401, 404, 409, 413, 415, 422))
    def load(name: ProgramRef, body: ProgramLoadIn) -> dict[str, Any]:
        return programs.load(ledger, name, body.csv, body.reference)

    @r.post("/v1/programs/{name}/cancel", response_model=ProgramCancelOut,
            responses=responses(401, 404, 413, 422))
    def cancel(name: ProgramRef) -> dict[str, Any]:
        return programs.cancel(ledger, name)

    return r
