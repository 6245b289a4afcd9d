"""What `tapcash ledger check` prints: the books' invariant as a short table (money in major
units, host/output.py), or the invariant itself with `--json` (minor units)."""

from __future__ import annotations

from typing import Any

import click

from tapcash.host.output import Col, money, table

from .invariant import violations


def show(inv: dict[str, Any]) -> None:
    progs = inv.get("programs") or {}
    if inv["ok"]:
        click.echo(f"the books balance: issued {money(inv['issued'])} = held {money(inv['held'])}")
    else:
        click.echo(
            f"THE BOOKS DO NOT BALANCE: issued {money(inv['issued'])}, held {money(inv['held'])}"
        )
    click.echo(
        f"  backed {money(inv['backed'])}, fraud loss {money(inv['fraud_loss'])}, "
        f"{inv['postings']} postings, {progs.get('programs', 0)} programmes"
    )
    rows = [{"kind": k, "amount": v} for k, v in sorted(inv.get("by_kind", {}).items())]
    table(rows, [Col("kind", "held by"), Col("amount", "amount", "money")])
    for b in progs.get("books", []):  # funded = spent (or released) + refunded + outstanding
        mark = "=" if b["funded"] == b["used"] + b["refunded"] + b["outstanding"] else "!="
        used = "released" if b["kind"] == "prepaid" else "spent"
        click.echo(
            f"  programme {b['program']}: funded {money(b['funded'])} {mark} {used} "
            f"{money(b['used'])} + refunded {money(b['refunded'])} + outstanding "
            f"{money(b['outstanding'])}"
            + (f" (refunded: returned {money(b['returned'])}, held {money(b['held'])}"
               + (f", late {money(b['late'])}" if b.get("late") else "") + ")"
               if b.get("returned") or b.get("held") else "")
        )
    for line in violations(inv, money):  # the lines GET /v1/invariant's 409 names
        click.echo(f"  {line}")
