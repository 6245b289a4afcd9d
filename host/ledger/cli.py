"""`tapcash ledger ...`: run the ledger service, migrate its database, check its books."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import click

from tapcash.host.lazy_group import Lazy, LazyGroup
from tapcash.host.output import format_options, render

from .env import DB_WAIT_S, ENV_DB, ENV_DB_WAIT, ENV_KEY, ENV_POOL, ENV_TOKEN, ENV_VERIFY_PROCS

DB_HELP = "SQLite file (default ledger.db) or postgresql://user@host/db"
_OP = "tapcash.host.ledger.operator_cli"
# The operator's commands (over the HTTP API), imported only when one runs (host/lazy_group.py).
COMMANDS: dict[str, Lazy] = {
    "owner": Lazy(f"{_OP}:owner", "Owners' online accounts: open one, list them, show one."),
    "device": Lazy(f"{_OP}:device",
                   "Devices: register a certificate, list them, show one, renew one."),
    "deposit": Lazy(f"{_OP}:deposit", "Credit AMOUNT (major units: 500, 12.50) to an owner's "
                    "online account; opens it if new."),
    "load": Lazy(f"{_OP}:load", "Top up a wallet by AMOUNT (major units) from an owner's "
                 "account: the card applies the voucher at its next sync."),
    "payroll": Lazy(f"{_OP}:payroll", "Load every wallet of a CSV of `wallet id hex,amount in "
                    "minor units` lines from one owner: all lines or none (a bad line is named, "
                    "nothing is posted)."),
    "merchants": Lazy(f"{_OP}:merchants", "Per merchant: payments, credited, settled, owed "
                      "(what the next settlement pays)."),
    "settle": Lazy(f"{_OP}:settle", "Pay out what the ledger owes each MERCHANT (or --all): "
                   "its whole balance."),
    "settlements": Lazy(f"{_OP}:settlements", "Every settlement paid out."),
    "revoke": Lazy(f"{_OP}:revoke", "Put a device on the hot list: every POS refuses it after "
                   "its next sync."),
    "reinstate": Lazy(f"{_OP}:reinstate", "Take a device off the hot list (a wallet with fraud "
                      "cases only with --force)."),
    "statement": Lazy("tapcash.host.ledger.books_cli:statement", "One wallet's books: postings "
                      "with running balance, what is staged, vouchers not yet applied, and what "
                      "the card should show against what it last reported."),
    "hotlist": Lazy("tapcash.host.ledger.books_cli:hotlist", "The signed hot list every POS "
                    "applies: version, when issued, the revoked devices; the issuer's signature "
                    "checked against the key the ledger publishes."),
    "fraud": Lazy("tapcash.host.ledger.fraud_cli:fraud",
                  "Fraud cases: list them, show one with both proofs decoded."),
}


class LedgerGroup(LazyGroup):
    """Every `tapcash ledger` command: a database failure (no such --db, PostgreSQL down) is one
    line on stderr and a non-zero exit, never a traceback (host/ledger/dbcli.py)."""

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except Exception as e:  # noqa: BLE001 - only database and key file failures here
            from tapcash.host.issuer import KeyFileError

            from .dbcli import describe

            known = (str(e), 2) if isinstance(e, KeyFileError) else describe(e)
            if known is None:
                raise
            click.echo(f"error: {known[0]}", err=True)
            raise click.exceptions.Exit(known[1]) from None


@click.group(cls=LedgerGroup, lazy=COMMANDS)
def ledger() -> None:
    """The online ledger service (HTTP, SQLite or PostgreSQL).

    The operator's commands (owner, device, deposit, load, payroll, merchants, settle,
    settlements, revoke, reinstate, hotlist, statement, fraud) talk to a running ledger over its
    API: --url / TAPCASH_LEDGER_URL and --token / TAPCASH_LEDGER_TOKEN. serve, migrate, check,
    report and program work on the database itself (--db). Tables by default, --json / --csv
    for scripts. docs/LEDGER.md §1a walks through a day of the pilot."""


@ledger.command()
@click.option("--db", "db_url", envvar=ENV_DB, default="ledger.db", show_default=True,
              help=DB_HELP)
def migrate(db_url: str) -> None:
    """Create or upgrade the database schema."""
    from .dbcli import open_db
    from .migrations import migrate as run

    db = open_db(db_url, create=True)
    applied = run(db)
    click.echo(f"applied {applied}" if applied else "schema up to date")


@ledger.command()
@click.option("--db", "db_url", envvar=ENV_DB, default="ledger.db", show_default=True,
              help=DB_HELP)
@click.option("--issuer-key", envvar=ENV_KEY, required=True, type=click.Path(exists=True),
              help="issuer key file (tapcash issuer init)")
@click.option("--token", envvar=ENV_TOKEN, required=True, help="operator bearer token")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8700, show_default=True, type=int)
@click.option("--workers", default=1, show_default=True, type=int,
              help="uvicorn worker processes (PostgreSQL: one per core; SQLite: 1)")
@click.option("--pool", default=8, show_default=True, type=int,
              help="database connections per worker")
@click.option("--db-wait", envvar=ENV_DB_WAIT, default=DB_WAIT_S, show_default=True,
              type=click.FloatRange(0.1, 600), metavar="SECONDS",
              help="PostgreSQL: how long a request waits on a database that does not answer "
                   "before its 503 (a busy pool is still waited on)")
@click.option("--verify-procs", envvar=ENV_VERIFY_PROCS, default=0, show_default=True,
              type=click.IntRange(0, 64),
              help="signature helper processes per worker: a batch's signatures are checked "
                   "in them while its transaction runs (0: in the worker's own thread)")
@click.option("--log-level", default="info", show_default=True,
              type=click.Choice(["critical", "error", "warning", "info", "debug"]),
              help="uvicorn's log level (info: where it listens, then one line per request)")
@click.option("--access-log/--no-access-log", default=True, show_default=True,
              help="uvicorn's access log: one line per request on stdout")
def serve(db_url: str, issuer_key: str, token: str, host: str, port: int, workers: int,
          pool: int, db_wait: float, verify_procs: int, log_level: str,
          access_log: bool) -> None:
    """Run the HTTP API under uvicorn (migrates the schema first).

    --workers uvicorn processes (one per core on PostgreSQL), each with --pool database
    connections and --verify-procs signature helper processes (host/ledger/verify.py, started
    at the first large batch). docs/LEDGER.md §1 and §8 show the deployments and their figures.

    Logs (uvicorn's own logging, on stderr) the database, where it listens, the API docs and
    console URLs, then each request (access log, on stdout)."""
    import uvicorn

    from tapcash.host.issuer import load_key_file

    from .db import redact
    from .dbcli import open_db
    from .migrations import migrate as run

    if not token or not all("!" <= c <= "~" for c in token):
        # empty (an `export TAPCASH_LEDGER_TOKEN=$(...)` that failed) or what no HTTP header
        # can carry exactly (spaces, non-ASCII): no client could ever present it
        raise click.BadParameter("the operator token must be printable ASCII without spaces, "
                                 "and not empty", param_hint="--token")
    load_key_file(issuer_key)  # a bad key file is one line before any database is made
    db = open_db(db_url, create=True)
    applied = run(db)
    db.close()
    os.environ.update({ENV_DB: db_url, ENV_KEY: str(Path(issuer_key).resolve()),
                       ENV_TOKEN: token, ENV_POOL: str(pool), ENV_DB_WAIT: str(db_wait),
                       ENV_VERIFY_PROCS: str(verify_procs)})
    base = f"http://{f'[{host}]' if ':' in host else host}:{port}"
    if log_level in ("info", "debug"):
        schema = ("schema up to date" if not applied else f"new ledger database (schema "
                  f"{applied[-1]})" if applied[0] == 1 else f"schema migrated to {applied[-1]}")
        click.echo(f"tapcash ledger: database {redact(db_url)}, {schema}; serving {base}\n"
                   f"  API docs {base}/docs (OpenAPI {base}/openapi.json), "
                   f"console {base}/console/\n"
                   f"  {workers} worker(s), {pool} database connection(s) and {verify_procs} "
                   f"signature helper(s) each", err=True)
    uvicorn.run("tapcash.host.ledger.app:app_from_env", factory=True, host=host, port=port,
                workers=workers, log_level=log_level, access_log=access_log)


@ledger.command()
@click.option("--db", "db_url", envvar=ENV_DB, default="ledger.db", show_default=True,
              help=DB_HELP)
@click.option("--json", "as_json", is_flag=True, help="the invariant as JSON (minor units)")
def check(db_url: str, as_json: bool) -> None:
    """Check the books: issued = held, postings add up, nothing negative, and per programme
    funded = spent + refunded + outstanding. Exit 1 if not."""
    from .dbcli import open_db
    from .invariant import check as check_books

    inv = open_db(db_url).read(check_books)  # the same check as GET /v1/invariant
    if as_json:
        click.echo(json.dumps(inv, indent=2))
    else:
        from .check_view import show

        show(inv)
    sys.exit(0 if inv["ok"] else 1)


@ledger.command()
@click.argument("name", type=click.Choice(["merchants", "settlements", "fraud", "refused",
                                           "set_aside", "accounts"]))
@click.option("--db", "db_url", envvar=ENV_DB, default="ledger.db", show_default=True,
              help=DB_HELP)
@format_options
@click.option("--format", "legacy", type=click.Choice(["table", "csv", "json"]), default=None,
              help="same as --json / --csv")
def report(name: str, db_url: str, fmt: str, legacy: str | None) -> None:
    """Print a report straight from the database: a table, or --json / --csv (minor units,
    ISO 8601 times; proofs and records only in JSON)."""
    from . import reports
    from .columns import REPORTS
    from .dbcli import open_db

    rows = open_db(db_url).read(lambda tx: reports.report(tx, name))
    render(rows, REPORTS[name], legacy or fmt, title=name)


def _attach_programs() -> None:
    from .programs_cli import program

    ledger.add_command(program)


_attach_programs()
