"""A caller's reference applied at most once: deposits, wallet loads (top-up vouchers) and
settlements (docs/LEDGER.md §4, "References: applied at most once").

The mechanism payroll batches and programme loads use: inside the operation's own write
transaction, an advisory lock (PostgreSQL; SQLite's writers are serialized already) and then a
table keyed by the reference (`operator_refs`, schema step 11, primary key (kind, scope,
reference)). What is new here is the replay: the first request and the answer it got are kept,
so the same reference with the same request is answered as the first time (nothing applied
again: what a client retrying after a timeout needs), and with a different request it is a 409
naming both. The lock makes a racing twin wait for the first to commit and then replay it; the
primary key is the guarantee even without it (a duplicate insert fails the transaction, which
Database.write retries, and the retry replays: db.py `_transient`).

An empty reference is no reference: such requests are applied each time, as before.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from tapcash.host.output import money

from .db import Tx
from .errors import LedgerError

TABLE = "operator_refs"


def lock_keys(kind: str, scope: str, reference: str) -> list[bytes]:
    """The advisory lock key of a reference (none for an empty one): take it in the same
    `tx.lock` call as the operation's other keys (they are locked in sorted order)."""
    if not reference:
        return []
    text = f"ref\x00{kind}\x00{scope}\x00{reference}".encode()
    return [hashlib.sha256(text).digest()[:8]]


def _shown(key: str, value: object) -> str:
    if value is None:
        return "none"
    if key == "amount" and isinstance(value, int):
        return money(value)
    return str(value)


def replay(tx: Tx, kind: str, scope: str, reference: str,
           request: dict[str, Any]) -> dict[str, Any] | None:
    """After the lock: None when the reference is new (or empty); the first answer (with
    `replayed` true) when it was applied to this same request; a 409 naming what differs
    when it was applied to another."""
    if not reference:
        return None
    row = tx.one(f"SELECT request, answer FROM {TABLE} WHERE kind = ? AND scope = ? "
                 "AND reference = ?", (kind, scope, reference))
    if row is None:
        return None
    first, answer = json.loads(row[0]), json.loads(row[1])
    if first != request:
        keys = sorted(set(first) | set(request))
        diff = "; ".join(f"{k} {_shown(k, first.get(k))} then, {_shown(k, request.get(k))} now"
                         for k in keys if first.get(k) != request.get(k))
        raise LedgerError(409, {
            "error": f"{kind} reference {reference!r} was already applied to another request "
                     f"({diff}): nothing was applied; use a new reference",
            "reference": reference, "applied": first})
    return answer | {"replayed": True}


def record(tx: Tx, kind: str, scope: str, reference: str, request: dict[str, Any],
           answer: dict[str, Any], at: int) -> dict[str, Any]:
    """Keep a reference's first request and answer (nothing for an empty reference); returns
    the answer, with `replayed` false."""
    answer = answer | {"replayed": False}
    if reference:
        tx.execute(f"INSERT INTO {TABLE} (kind, scope, reference, request, answer, at) "
                   "VALUES (?, ?, ?, ?, ?, ?)",
                   (kind, scope, reference, json.dumps(request, sort_keys=True),
                    json.dumps(answer, sort_keys=True), at))
    return answer
