"""The ledger's database as the `tapcash ledger` commands open it, and their database failures
as one line on stderr with a non-zero exit (never a traceback).

* `open_db(url)`: an existing ledger database, its schema current; nothing is created (a
  mistyped `--db` leaves no file behind). `open_db(url, create=True)` (`migrate`, `serve`) may
  create a new SQLite file, in a folder that exists.
* `describe(exc)`: the (message, exit code) of a database failure, None for anything else.
  Exit 2: the `--db` given is no ledger database (no such file or folder, not a database, no
  schema). Exit 5: the database is unavailable (PostgreSQL down, refusing the login, no such
  database), as remote.py's "ledger unreachable".
"""

from __future__ import annotations

import os
import sqlite3
import sys

from .db import BadSetting, Database, DatabaseUnavailable, NoDatabase, redact, sqlite_path

EXIT_NO_DATABASE = 2
EXIT_UNAVAILABLE = 5


def open_db(url: str, *, create: bool = False, pool_size: int = 1) -> Database:
    from .migrations import LATEST, current_version

    db = Database(url, pool_size=pool_size, create=create)
    if db.dialect == "sqlite":
        path = sqlite_path(url)
        folder = os.path.dirname(os.path.abspath(path))
        if path not in ("", ":memory:") and not os.path.isdir(folder):
            raise NoDatabase(f"no folder {folder} for the database {path}")
        if not create and not os.path.isfile(path):
            raise NoDatabase(
                f"no ledger database at {path} (a new one: tapcash ledger migrate --db {path})"
            )
    if create:
        return db
    version = db.read(current_version)
    if version == 0:
        db.close()
        raise NoDatabase(
            f"{redact(url)} is not a ledger database (no ledger schema; a new "
            f"one: tapcash ledger migrate --db {redact(url)})"
        )
    if version < LATEST:
        db.close()
        raise NoDatabase(
            f"{redact(url)} has schema version {version}, this tapcash needs "
            f"{LATEST}: tapcash ledger migrate --db {redact(url)}"
        )
    return db


def describe(exc: BaseException) -> tuple[str, int] | None:
    """One line and an exit code for a database failure; None when `exc` is something else."""
    if isinstance(exc, BadSetting):
        return str(exc), EXIT_NO_DATABASE
    if isinstance(exc, NoDatabase):
        return str(exc), EXIT_NO_DATABASE
    if isinstance(exc, DatabaseUnavailable):
        return str(exc), EXIT_UNAVAILABLE
    if isinstance(exc, sqlite3.DatabaseError):
        return f"database: {exc}", EXIT_UNAVAILABLE
    psycopg = sys.modules.get("psycopg")
    if psycopg is not None and isinstance(exc, psycopg.OperationalError):
        lines = str(exc).strip().splitlines() or [type(exc).__name__]
        return f"PostgreSQL: {lines[0]}", EXIT_UNAVAILABLE
    pool = sys.modules.get("psycopg_pool")
    if pool is not None and isinstance(exc, pool.PoolTimeout):
        return f"PostgreSQL: {exc}", EXIT_UNAVAILABLE
    return None
