"""The columns each ledger report shows in a table and in CSV (host/output.py renders them):
money in major units in a table, minor units in CSV and JSON; times ISO 8601; proofs and
records (CBOR bytes) only in JSON, where `tapcash ledger fraud show` and scripts read them."""

from __future__ import annotations

from tapcash.host.output import Col

OWNERS = [
    Col("owner", "owner"),
    Col("balance", "balance", "money"),
    Col("wallets", "wallets", "int"),
    Col("created_at", "opened", "time"),
]
DEVICES = [
    Col("id", "device"),
    Col("kind", "kind"),
    Col("owner", "owner"),
    Col("merchant", "merchant"),
    Col("revoked", "revoked"),
    Col("expires", "expires", "time"),
    Col("registered_at", "registered", "time"),
]
MERCHANTS = [
    Col("merchant", "merchant"),
    Col("payments", "payments", "int"),
    Col("credited", "credited", "money"),
    Col("settled", "settled", "money"),
    Col("owed", "owed", "money"),
    Col("of_which_guaranteed", "of which guaranteed", "money"),
]
SETTLEMENTS = [
    Col("settlement", "settlement", "int"),
    Col("merchant", "merchant"),
    Col("amount", "amount", "money"),
    Col("reference", "reference"),
    Col("at", "at", "time"),
]
PAYROLL = [
    Col("line", "line", "int"),
    Col("wallet", "wallet"),
    Col("number", "voucher", "int"),
    Col("amount", "amount", "money"),
]
FRAUD = [
    Col("case", "case", "int"),
    Col("kind", "kind"),
    Col("wallet", "device"),
    Col("counter", "counter", "int"),
    Col("amount_b", "amount b", "money"),
    Col("credited_b", "b credited to"),
    Col("loss", "loss", "money"),
    Col("detected_at", "detected", "time"),
    Col("via", "via"),
]
REFUSED = [
    Col("wallet", "wallet"),
    Col("counter", "counter", "int"),
    Col("amount", "amount", "money"),
    Col("payee", "payee"),
    Col("status", "status"),
]
SET_ASIDE = [
    Col("device", "device"),
    Col("seq", "seq", "int"),
    Col("type", "type", "int"),
    Col("reason", "reason"),
    Col("at", "at", "time"),
]
ACCOUNTS = [Col("account", "account"), Col("kind", "kind"), Col("balance", "balance", "money")]

REPORTS = {
    "merchants": MERCHANTS,
    "settlements": SETTLEMENTS,
    "fraud": FRAUD,
    "refused": REFUSED,
    "set_aside": SET_ASIDE,
    "accounts": ACCOUNTS,
}
