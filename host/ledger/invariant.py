"""The books' invariant, one implementation for `GET /v1/invariant`, `tapcash ledger check` and
the console's Books page: postings.check_invariant (issued = held, every balance its postings,
nothing negative) and programs.check (per programme funded = spent + refunded + outstanding),
`ok` only when both hold, and `violations`: one line per thing that is wrong, the same lines the
API's 409 problem names and the CLI prints (money as `fmt` renders it: minor units by default).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from . import postings as P
from . import programs
from .db import Tx


def check(tx: Tx) -> dict[str, Any]:
    """The whole invariant, read in one transaction: the figures, `ok`, `violations`."""
    inv = P.check_invariant(tx)
    inv["programs"] = programs.check(tx)
    inv["ok"] = bool(inv["ok"] and inv["programs"]["ok"])
    inv["violations"] = violations(inv)
    return inv


def violations(inv: dict[str, Any], fmt: Callable[[int], str] = str) -> list[str]:
    """What is wrong with the books, one line each (empty when they balance)."""
    out: list[str] = []
    if inv["issued"] != inv["held"]:
        out.append(f"issued {fmt(inv['issued'])} != held {fmt(inv['held'])}")
    for a in inv.get("negative", []):
        out.append(f"negative balance: {a['account']} {fmt(a['balance'])}")
    for a in inv.get("mismatched", []):
        out.append(f"balance is not its postings: {a['account']} {fmt(a['balance'])} "
                   f"(postings say {fmt(a['from_postings'])})")
    for r in inv.get("runs", []):
        out.append(f"run posting {r['posting']} ({r['ref']}) is not its payments: "
                   f"{fmt(r['amount'])} (payments say {fmt(r['from_payments'])})")
    for p in (inv.get("programs") or {}).get("problems", []):
        extra = ", ".join(f"{k} {fmt(v) if isinstance(v, int) else v}"
                          for k, v in p.items() if k not in ("program", "error"))
        out.append(f"programme {p.get('program')}: {p.get('error')}"
                   + (f" ({extra})" if extra else ""))
    return out


def summary(lines: list[str], most: int = 3) -> str:
    """The problem detail of a failed check: the first violations, and how many more."""
    text = "; ".join(lines[:most])
    if len(lines) > most:
        text += f"; and {len(lines) - most} more"
    return f"the books do not balance: {text}"
