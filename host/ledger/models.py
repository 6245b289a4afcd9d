"""The HTTP API's request and response bodies (pydantic, strict).

Requests are strict: `"7"` and `true` are not amounts, `true` is not a seq, unknown fields are
refused, strings carry no lone surrogates, every integer has the range the ledger can store.
Responses are typed too, so /openapi.json describes exactly what each route answers."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import Path as PathParam
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidatorFunctionWrapHandler,
    WrapValidator,
)

TIME_MAX = (1 << 32) - 1  # unix seconds a certificate may carry (year 2106)
# Integers an operator sends: exact in every JSON parser (IEEE doubles included), far below the
# ledger's balance maximum (MONEY_MAX, 2^62 - 1).
AMOUNT_MAX = (1 << 53) - 1
LIMIT_MAX = AMOUNT_MAX
SEQ_MAX = AMOUNT_MAX
OWNER_PATTERN = "^[A-Za-z0-9._@-]{1,64}$"


def _no_surrogates(text: str) -> str:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("not valid Unicode text (lone surrogate)") from None
    if "\x00" in text:  # PostgreSQL text cannot hold it (a 500 there); refused on both
        raise ValueError("no NUL character (U+0000) in text")
    return text


def _integral(value: object) -> object:
    """A JSON number with an integral value (216.0) is an integer, as JSON Schema says; strings
    and booleans never are (strict mode refuses them after this)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


# Text: valid Unicode without NUL (U+0000), which PostgreSQL text cannot hold. The API's
# description says so (a JSON Schema pattern would say it too, but makes every string of a
# generated body a regex search: schemathesis ran twice as long); NO_NUL is for path params.
NO_NUL = "^[^\\u0000]*$"
Text = Annotated[str, AfterValidator(_no_surrogates)]
def Int(**constraints: Any) -> Any:  # noqa: N802 - a type
    """An integer field with its JSON Schema bounds (the bounds before the validator, or
    pydantic drops them from the schema)."""
    return Annotated[int, Field(**constraints), BeforeValidator(_integral)]
Amount = Int(gt=0, le=AMOUNT_MAX, description="minor units")
OwnerName = Annotated[str, PathParam(pattern=OWNER_PATTERN, description="owner account name")]
Owner = Annotated[str, Field(pattern=OWNER_PATTERN, description="owner account name")]
Money = Annotated[int, Field(description="minor units")]
Hex16 = Annotated[str, Field(pattern="^[0-9a-f]{16}$", description="8-byte id, 16 hex digits")]
B64 = Annotated[str, Field(description="base64 of CBOR bytes")]


class In(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")


class Out(BaseModel):
    # Answers may grow fields (other work adds them): they pass through, typed ones are checked.
    model_config = ConfigDict(extra="allow")


# ---- request bodies ----------------------------------------------------------------------
class RegisterIn(In):
    cert: Text = Field(description="issuer-signed certificate envelope, base64", max_length=4096)
    owner: Owner | None = Field(None, description="wallets: the owner's online account name")


class OwnerIn(In):
    owner: Owner


REF_DOC = ("your reference (bank transfer id, ...): applied at most once; the same request "
           "under it again is answered as the first time, another one is a 409")


class DepositIn(In):
    amount: Amount
    reference: Text = Field("", max_length=200, description=REF_DOC)


class LoadIn(In):
    amount: Amount
    reference: Text = Field("", max_length=200, description=REF_DOC)
    owner: Owner | None = Field(None, description="payer account; default: the wallet's owner")


class PayrollIn(In):
    payer: Owner = Field(description="owner account paying the payroll")
    reference: Text = Field(description="unique per payroll batch: a second upload is refused",
                            min_length=1, max_length=64)
    csv: Text = Field(description="lines `wallet id hex, amount`; optional header; # comments",
                      max_length=1 << 20)


RECORDS_MAX = 20000  # records of one uploaded batch (host/ledger/ingest.py MAX_RECORDS)
RECORD_MAX = 65536  # characters of one record's base64


class RecordIn(In):
    seq: Int(ge=1, le=SEQ_MAX, description="journal sequence number on the device")
    record: Text = Field(description="CBOR of the journal record map, base64",
                         max_length=RECORD_MAX)


def _records(value: object, full: ValidatorFunctionWrapHandler) -> list[dict[str, Any]]:
    """A batch's records as plain `{"seq": int, "record": str}` dicts (what ingest reads).

    The records of one upload are checked as a whole, in one loop of type checks: a list of at
    most RECORDS_MAX objects with exactly `seq` (int, not bool, in [1, SEQ_MAX]) and `record`
    (ASCII without NUL, at most RECORD_MAX characters: base64 is ASCII). That is a subset of
    what RecordIn accepts, so whatever passes it RecordIn would accept as is; anything else
    (an integral float seq, non-ASCII text, a missing or extra key, ...) goes through the
    per-record model, which accepts it or words the same 422 as before. A pydantic model per
    record cost about 15 us (validation and model_dump) of a payment's ingest."""
    if type(value) is list and len(value) <= RECORDS_MAX:
        for item in value:
            if type(item) is not dict or len(item) != 2:
                break
            seq, rec = item.get("seq"), item.get("record")
            if (type(seq) is not int or not 1 <= seq <= SEQ_MAX or type(rec) is not str
                    or len(rec) > RECORD_MAX or not rec.isascii() or "\x00" in rec):
                break
        else:
            return value  # type: ignore[return-value]
    return [r.model_dump() for r in full(value)]


class IngestIn(In):
    device: str = Field(description="id of the device whose journal this is, 16 hex digits",
                         pattern="^[0-9a-fA-F]{16}$")
    # list[RecordIn] in the schema and for every input the batch check declines (_records)
    records: Annotated[list[RecordIn], WrapValidator(_records)] = Field(
        default_factory=list, max_length=RECORDS_MAX)
    status: Text = Field(description="device-signed status envelope closing the export, base64",
                         min_length=1, max_length=4096)


class RevokeIn(In):
    reason: Text = Field("operator", max_length=200)


class ReinstateIn(In):
    reason: Text = Field("operator", max_length=200)
    force: bool = Field(False, description="reinstate even a wallet with fraud cases")


class RenewIn(In):
    expires: Int(ge=1, le=TIME_MAX, description="unix seconds; default two years from now"
                 ) | None = None
    limits: Annotated[dict[Annotated[str, Field(pattern="^[0-9]{1,3}$")],
                           Int(ge=0, le=LIMIT_MAX)],
                      # no key outside the pattern: the schema says what the model checks
                      Field(json_schema_extra={"additionalProperties": False})] | None = Field(
        None, description='wallet limits to change: {"<LIM_* number>": value}')


class SettleIn(In):
    reference: Text = Field("", max_length=200, description=(
        "payout reference, per merchant: a settlement made under it is answered again, "
        "nothing more is paid"))


# ---- responses ---------------------------------------------------------------------------
class Problem(BaseModel):
    """RFC 9457 problem details (`application/problem+json`)."""

    model_config = ConfigDict(extra="allow")
    type: str = "about:blank"
    title: str
    status: int
    detail: str


class HealthOut(Out):
    ok: bool
    db: str


class WhoamiOut(Out):
    role: Literal["operator"]
    db: str


class IssuerOut(Out):
    key_id: str
    public_key: str


class HotlistOut(Out):
    version: int
    issued: int
    revoked: list[str]
    envelope: B64


class VoucherOut(Out):
    number: int
    amount: Money
    source: int
    voucher: B64


class PendingOut(Out):
    device: Hex16
    vouchers: list[VoucherOut]
    updates: list[B64]
    update: B64 | None
    update_number: int


class IngestOut(PendingOut):
    upto: int
    ack: B64
    accepted: int
    duplicates: int
    conflicts: int
    refused: int
    released: int
    loss: Money
    revoked: list[str]
    hotlist_version: int


class DeviceOut(Out):
    id: Hex16
    kind: Literal["wallet", "pos"]
    public_key: str
    cert: B64
    serial: int
    expires: int
    revoked: bool
    revoked_at: int | None
    revoke_reason: str | None
    acked_upto: int
    next_update: int
    owner: str | None = None
    limits: dict[str, int] | None = None
    next_voucher: int | None = None
    vouchers_applied: int | None = None
    synced_counter: int | None = None
    merchant: Hex16 | None = None
    registered_at: int | None = None


class RevokeOut(Out):
    device: Hex16
    revoked: bool
    changed: bool
    hotlist_version: int


class RenewOut(Out):
    device: Hex16
    serial: int
    cert: B64
    update: B64 | None


class DepositOut(Out):
    owner: str
    balance: Money
    ref: str
    replayed: bool = Field(False, description="true: this reference was already applied to "
                           "this same request, and this is its first answer again (nothing was "
                           "applied now)")


class OwnerOut(Out):
    owner: str
    balance: Money
    wallets: list[Hex16]


class OwnerAdded(OwnerOut):
    created: bool = Field(description="false when the owner existed already (nothing changed)")


class OwnerRow(Out):
    owner: str
    balance: Money
    wallets: int
    created_at: int


class LoadOut(Out):
    wallet: Hex16
    number: int
    amount: Money
    voucher: B64
    owner_balance: Money
    replayed: bool = Field(False, description="true: this reference was already applied to "
                           "this same request, and this is its first answer again (nothing was "
                           "applied now)")


class PayrollLine(Out):
    line: int
    wallet: Hex16
    number: int
    amount: Money
    voucher: B64


class PayrollOut(Out):
    reference: str
    payer: str
    total: Money
    vouchers: list[PayrollLine]
    payer_balance: Money


class SettleOut(Out):
    merchant: Hex16
    amount: Money
    settlement: int | None
    reference: str
    replayed: bool = Field(False, description="true: this reference was already applied to "
                           "this same request, and this is its first answer again (nothing was "
                           "applied now)")


class AccountBalance(Out):
    account: str
    balance: Money


class Mismatch(Out):
    account: str
    balance: Money
    from_postings: Money


class InvariantOut(Out):
    ok: bool
    issued: Money
    backed: Money
    fraud_loss: Money
    held: Money
    by_kind: dict[str, Money]
    negative: list[AccountBalance]
    mismatched: list[Mismatch]
    postings: int
    programs: dict[str, Any] = Field(description="per programme: funded = spent + refunded + "
                                     "outstanding (docs/LEDGER.md section 6)")
    violations: list[str] = Field(description="what is wrong, one line each: empty when ok")


class MerchantRow(Out):
    merchant: Hex16
    credited: Money
    settled: Money
    owed: Money
    of_which_guaranteed: Money
    payments: int


class SettlementRow(Out):
    settlement: int
    merchant: Hex16
    amount: Money
    reference: str
    at: int


class FraudRow(Out):
    case: int
    wallet: Hex16
    kind: str
    counter: int
    proof_a: B64
    proof_b: B64
    amount_b: Money
    credited_b: str | None
    loss: Money
    detected_at: int
    via: Hex16
    evidence: B64 | None = Field(None, description="rollback cases: the chain evidence (CBOR)")


class RefusedRow(Out):
    wallet: Hex16
    counter: int
    amount: Money
    payee: Hex16
    status: str
    envelope: B64


class SetAsideRow(Out):
    device: Hex16
    seq: int
    type: int | None
    reason: str
    record: B64
    at: int


class AccountRow(Out):
    account: str
    kind: str
    balance: Money


class StatementLine(Out):
    posting: int
    kind: str
    ref: str
    counterparty: str
    amount: Money
    balance: Money
    at: int


class Reported(Out):
    seq: int | None
    counter: int | None
    balance: Money | None
    pending: Money | None
    vouchers_applied: int | None


class StatementOut(Out):
    wallet: Hex16
    owner: str | None
    revoked: bool
    balance: Money
    staged: Money
    vouchers_unapplied: Money
    expected_device_balance: Money
    reported: Reported | None
    lines: list[StatementLine]


class BooksOut(Out):
    balances: dict[str, Money]
    payments: list[list[Any]]
    fraud_cases: list[list[Any]]
    vouchers: list[list[Any]]
    revoked: list[Hex16]
    acked: dict[str, int]
