"""`tapcash ledger program ...`: programmes of earmarked purses, straight on the ledger's
database (like `ledger check`): create one (the issuer key signs its rule), load purses in bulk
from a CSV (as payroll does), cancel, sweep expired ones, report. docs/PROGRAMMES.md is the
pilot team's guide."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from typing import Any

import click

from tapcash.host.output import AMOUNT_OR_ZERO, iso, jsonable, money

from .env import ENV_DB, ENV_KEY

DB_HELP = "SQLite file (default ledger.db) or postgresql://user@host/db"


def _ledger(db_url: str, issuer_key: str | None) -> Any:
    return _open(db_url, issuer_key)[0]


def _open(db_url: str, issuer_key: str | None) -> tuple[Any, int]:
    """(the ledger of this database, the books' latest time). The ledger runs on the ledger's
    time for the database (programs.ledger_time: the wall clock, or the books' latest stamp
    when later, as on a simulated ledger whose clock runs ahead), the time `program report`
    judges by; a live ledger's books are never ahead of the wall clock: there it is that."""
    import time

    from tapcash.host.issuer import load_key_file

    from . import programs
    from .dbcli import open_db
    from .service import Ledger

    if not issuer_key:
        _fail("--issuer-key (or TAPCASH_LEDGER_ISSUER_KEY) is required: it signs the rule and "
              "the vouchers")
    issuer = load_key_file(issuer_key)  # a bad one: one line, exit 2 (cli.LedgerGroup)
    db = open_db(db_url)
    books = db.read(programs.books_time)
    return Ledger(db, issuer, clock=lambda: max(time.time(), books)), books


def _fail(message: str) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(1)


def _run(fn: Any) -> Any:
    """Run a ledger operation; a refusal is one line on stderr (and its lines) and exit 1."""
    from .errors import LedgerError

    try:
        return fn()
    except LedgerError as e:
        detail = e.detail
        if isinstance(detail, dict):
            for line in detail.get("lines", []):
                click.echo(f"  line {line['line']}: {line['error']}", err=True)
            detail = detail.get("error", detail)
        _fail(str(detail))


def _when(text: str) -> int:
    """Unix seconds from an integer or an ISO date / date-time (UTC)."""
    if text.isdigit():
        return int(text)
    try:
        t = datetime.fromisoformat(text)
    except ValueError:
        raise click.BadParameter(f"{text!r}: unix seconds or an ISO date (2026-12-31)") from None
    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    if len(text) == 10:  # a date: valid through the end of that day
        return int(t.timestamp()) + 86399
    return int(t.timestamp())


db_option = click.option("--db", "db_url", envvar=ENV_DB, default="ledger.db",
                         show_default=True, help=DB_HELP)
key_option = click.option("--issuer-key", envvar=ENV_KEY, type=click.Path(exists=True),
                          help="issuer key file (signs the rule and the vouchers)")


@click.group()
def program() -> None:
    """Programmes of earmarked purses: subsidies and prepaid packages."""


@program.command()
@click.argument("name")
@click.option("--funder", required=True, help="owner account that pays and gets the refunds")
@click.option("--kind", type=click.Choice(["subsidy", "prepaid"]), required=True)
@click.option("--expires", required=True, help="unix seconds or ISO date (end of that day, UTC)")
@click.option("--valid-from", default=None, help="unix seconds or ISO date; default now")
@click.option("--merchant", "merchants", multiple=True, help="allowed merchant id (16 hex)")
@click.option("--category", "categories", multiple=True, type=int,
              help="allowed merchant category")
@click.option("--cap", default=0, type=AMOUNT_OR_ZERO,
              help="most one payment takes from a purse (major units: 5.00; 0: no cap)")
@click.option("--unit", default=0, type=AMOUNT_OR_ZERO,
              help="unit price (major units: 25.00): purses pay whole units only; 0: any")
@db_option
@key_option
def create(name: str, funder: str, kind: str, expires: str, valid_from: str | None,
           merchants: tuple[str, ...], categories: tuple[int, ...], cap: int, unit: int,
           db_url: str, issuer_key: str | None) -> None:
    """Create a programme; its rule is signed with the issuer key."""
    from . import programs
    from .codec import hex_id

    ids = []
    for m in merchants:
        mid = hex_id(m)
        if mid is None:
            _fail(f"--merchant {m!r}: a merchant id is 16 hex digits")
        ids.append(mid)
    led = _ledger(db_url, issuer_key)
    out = _run(lambda: programs.create(
        led, name, funder, kind, expires=_when(expires), merchants=ids,
        categories=list(categories), valid_from=_when(valid_from) if valid_from else None,
        cap=cap, unit=unit))
    click.echo(f"programme {out['name']} ({out['kind']}) id {out['id']}, funder {out['funder']}, "
               f"valid {iso(out['valid_from'])} .. {iso(out['expires'])}")


@program.command()
@click.argument("name")
@click.argument("csv_file", type=click.File("r"))
@click.option("--reference", required=True, help="unique per load: a second run is refused")
@click.option("--vouchers", "vouchers_out", type=click.File("w"), default=None,
              help="also write the vouchers as JSON lines (the sync tool delivers them anyway)")
@db_option
@key_option
def load(name: str, csv_file: Any, reference: str, vouchers_out: Any, db_url: str,
         issuer_key: str | None) -> None:
    """Load purses from a CSV of `wallet id hex,amount` lines: all lines or none."""
    from . import programs

    led = _ledger(db_url, issuer_key)
    try:
        text = csv_file.read()
    except UnicodeDecodeError:
        _fail(f"{csv_file.name}: not UTF-8 text")
    out = _run(lambda: programs.load(led, name, text, reference))
    if vouchers_out is not None:
        for v in out["vouchers"]:
            vouchers_out.write(json.dumps(v) + "\n")
    click.echo(f"programme {out['program']} load {out['reference']}: {len(out['vouchers'])} "
               f"purses, total {money(out['total'])}; funder balance "
               f"{money(out['funder_balance'])}")


@program.command()
@click.argument("name")
@db_option
@key_option
def cancel(name: str, db_url: str, issuer_key: str | None) -> None:
    """Cancel a programme: purse value back to the funder's programme account now, purses
    cleared on the cards at their next sync."""
    from . import programs

    led = _ledger(db_url, issuer_key)
    out = _run(lambda: programs.cancel(led, name))
    click.echo(f"programme {out['program']} cancelled: {out['closed']} purses closed, "
               f"{money(out['refunded'])} refunded, {money(out['returned'])} returned to the "
               f"funder (the programme account's value returns at {iso(out['returns_at'])})")


@program.command()
@db_option
@key_option
@click.option("--at", "at", default=None,
              help="judge expiry at this time (unix seconds or an ISO date), no later than the "
                   "ledger's time; default: the ledger's time for this database, as `program "
                   "report` (the wall clock, or the books' latest time when later)")
def sweep(db_url: str, issuer_key: str | None, at: str | None) -> None:
    """Refund the purses of expired programmes in the books (run it daily)."""
    import time

    from . import programs

    given = _when(at) if at is not None else None
    led, books = _open(db_url, issuer_key)
    wall = int(time.time())
    now = max(wall, books)
    if given is not None:
        if given > now:  # purses refunded before their programme expired
            raise click.BadParameter(
                f"{at!r} is later than the ledger's time for this database ({iso(now)}): a "
                f"sweep refunds only programmes that have expired", param_hint="--at")
        led.clock = lambda: float(given)
    how = "--at" if given is not None else (
        "the wall clock" if now == wall else "the books' latest time")
    out = _run(lambda: programs.sweep(led))
    click.echo(f"swept as of {iso(led.now())} ({how}): {out['closed']} purses closed, "
               f"{money(out['refunded'])} refunded, {money(out['returned'])} returned to "
               f"funders")


@program.command()
@click.argument("name", required=False)
@db_option
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text",
              show_default=True)
@click.option("--json", "as_json", is_flag=True, help="same as --format json")
@click.option("--at", "at", default=None,
              help="judge each programme's state (active, expired) at this time: unix seconds "
                   "or an ISO date; default: the ledger's time for this database (the wall "
                   "clock, or the books' latest time when later, as on a simulated ledger)")
def report(name: str | None, db_url: str, fmt: str, as_json: bool, at: str | None) -> None:
    """Per programme: funded, spent or released by merchant and category, refunded,
    outstanding; exit 1 when a programme's books do not balance."""
    import time

    from . import programs
    from .dbcli import open_db

    db = open_db(db_url)
    wall = int(time.time())
    given = _when(at) if at is not None else None

    def read(tx: Any) -> list[dict[str, Any]]:
        when = given if given is not None else programs.ledger_time(tx, wall)
        return programs.report(tx, when, name)

    rows = _run(lambda: db.read(read))
    if fmt == "json" or as_json:
        click.echo(json.dumps(jsonable(rows), indent=2))
    else:
        if rows:
            how = "--at" if given is not None else (
                "the wall clock" if rows[0]["as_of"] == wall else "the books' latest time")
            click.echo(f"state as of {iso(rows[0]['as_of'])} ({how})")
        for r in rows:
            used = "released" if r["kind"] == "prepaid" else "spent"
            click.echo(f"{r['program']} ({r['kind']}, {r['state']}, funder {r['funder']}): "
                       f"funded {money(r['funded'])} = {used} "
                       f"{money(r['spent'] + r['released'])} + refunded {money(r['refunded'])} "
                       f"+ outstanding {money(r['outstanding'])}"
                       f"{'' if r['balanced'] else '  NOT BALANCED'}")
            if r["returns_at"] is not None:
                click.echo(f"  refunded: returned to the funder {money(r['returned'])}, held "
                           f"{money(r['held'])} (returns at {iso(r['returns_at'])})"
                           + (f", late payments after the return {money(r['late_after_return'])}"
                              f" (paid from issuer:loss)" if r["late_after_return"] else ""))
            for m in r["by_merchant"]:
                click.echo(f"  merchant {m['merchant']} category {m['category']}: "
                           f"{m['payments']} payments, {money(m['amount'])}")
            if r["guaranteed_beyond_purse"]:  # in the merchants' lines, not in `used`
                click.echo(f"  of which guaranteed beyond the purses: "
                           f"{money(r['guaranteed_beyond_purse'])} (a cloned card spent a purse "
                           f"twice: paid from issuer:loss, a fraud case)")
            click.echo(f"  purses: {r['purses']}, closed {r['purses_closed']}, cleared on the "
                       f"card {r['purses_cleared_on_card']}")
            if r["refused_payments"]:
                click.echo(f"  refused: {r['refused_payments']} payments, "
                           f"{money(r['refused_amount'])} (cases opened)")
    sys.exit(0 if all(r["balanced"] for r in rows) else 1)
