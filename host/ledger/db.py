"""Storage: one small connection layer over SQLite (default) and PostgreSQL (psycopg 3).

SQL is written once with `?` placeholders; for PostgreSQL they become `%s`. Each write runs in
one transaction:

* SQLite: `BEGIN IMMEDIATE` (one writer at a time, other processes wait on `busy_timeout`),
  WAL journal, `foreign_keys=ON`, `synchronous=FULL`, 64 MB page cache. FULL, not NORMAL: an
  ack tells a device it may delete journal records, so a committed batch must survive a power
  cut; NORMAL in WAL mode may lose the last commits on power loss. The cost is one fsync per
  commit, amortised by batches.
* PostgreSQL: READ COMMITTED plus transaction-scoped advisory locks on the device ids a
  transaction touches (taken in sorted order, so two transactions never wait on each other in a
  cycle); account rows are updated in sorted order too. Deadlock or serialization failures are
  retried by `Database.write`.
"""

from __future__ import annotations

import math
import os
import queue
import re
import sqlite3
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from itertools import chain
from typing import Any, TypeVar

from .env import DB_WAIT_S, ENV_DB_WAIT

T = TypeVar("T")
# Parameters per multi-row INSERT on SQLite: under 999, the smallest SQLITE_MAX_VARIABLE_NUMBER
# a build may have (3.32+ default to 32766).
SQLITE_ROWS_MAX_PARAMS = 990
# PostgreSQL: the rows every payment writes go by binary COPY (no bytea hex text to make on
# this side: ~0.5 us a payment of the client's CPU); the column types, exactly as the schema's.
COPY_BINARY: dict[tuple[str, tuple[str, ...]], list[str]] = {
    ("payments", ("wallet", "counter", "hash", "prev", "envelope", "amount", "payee", "kind",
                  "time", "status", "credited", "via", "at")):
        ["bytea", "int8", "bytea", "bytea", "bytea", "int8", "bytea", "int4", "int8", "text",
         "text", "text", "int8"],
    ("journal_links", ("device", "seq", "rhash", "link")): ["bytea", "int8", "bytea", "bytea"],
}


class Tx:
    """One open transaction. `?` placeholders on both back ends."""

    def __init__(self, conn: Any, dialect: str) -> None:
        self.conn = conn
        self.dialect = dialect
        self._cache: dict[str, str] = {}

    def _sql(self, sql: str) -> str:
        if self.dialect == "sqlite":
            return sql
        out = self._cache.get(sql)
        if out is None:
            out = sql.replace("%", "%%").replace("?", "%s")
            self._cache[sql] = out
        return out

    def ignoring_conflict(self, sql: str, target: str = "") -> str:
        """`sql` (an INSERT) made to skip a row whose key is already there: SQLite's INSERT OR
        IGNORE, PostgreSQL's ON CONFLICT [target] DO NOTHING."""
        if self.dialect == "sqlite":
            return sql.replace("INSERT", "INSERT OR IGNORE", 1)
        return f"{sql} ON CONFLICT {target + ' ' if target else ''}DO NOTHING"

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        if self.dialect == "sqlite":
            return self.conn.execute(sql, params)
        cur = self.conn.cursor()
        cur.execute(self._sql(sql), params, prepare=False)
        return cur

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        rows = list(rows)
        if not rows:
            return
        if self.dialect == "sqlite":
            self.conn.executemany(sql, rows)
        else:
            with self.conn.cursor() as cur:
                cur.executemany(self._sql(sql), rows)

    def insert_many(self, table: str, columns: Sequence[str],
                    rows: Sequence[Sequence[Any]]) -> None:
        """Bulk insert: executemany on SQLite, COPY on PostgreSQL (several times faster than
        row-by-row inserts there). Constraint violations fail the transaction on both."""
        if not rows:
            return
        cols = ", ".join(columns)
        if self.dialect == "sqlite":
            self._insert_rows(f"INSERT INTO {table} ({cols}) VALUES ", len(columns), rows)
            return
        types = COPY_BINARY.get((table, tuple(columns)))
        fmt = " (FORMAT BINARY)" if types else ""
        with self.conn.cursor() as cur, cur.copy(f"COPY {table} ({cols}) FROM STDIN{fmt}") as cp:
            if types:
                cp.set_types(types)
            for row in rows:
                cp.write_row(row)

    def _insert_rows(self, head: str, ncols: int, rows: Sequence[Sequence[Any]]) -> None:
        """SQLite: the rows as multi-row VALUES statements of up to SQLITE_ROWS_MAX_PARAMS
        parameters each (one statement step per ~70 payments instead of per row: about 0.6 us
        a row less than executemany, `tapcash bench ingest --profile --db sqlite`)."""
        per = max(1, SQLITE_ROWS_MAX_PARAMS // ncols)
        one = "(" + ",".join("?" * ncols) + ")"
        full = len(rows) - len(rows) % per
        if full:
            sql = head + ",".join([one] * per)
            self.conn.executemany(sql, [list(chain.from_iterable(rows[i : i + per]))
                                        for i in range(0, full, per)])
        if full < len(rows):
            rest = rows[full:]
            self.conn.execute(head + ",".join([one] * len(rest)),
                              list(chain.from_iterable(rest)))

    def in_list(self, column: str, values: Sequence[Any]) -> tuple[str, list[Any]]:
        """(SQL condition, params) for `column IN values`: one array parameter on PostgreSQL,
        a list of placeholders on SQLite (callers chunk to <= 500 values)."""
        if self.dialect == "postgresql":
            if values and all(type(v) is bytes for v in values):
                # One bytea[] literal ({\\x<hex>,...}): psycopg adapts a list of bytes element
                # by element, ~3 us each (1,000 prevs a batch); this is ~0.3 us each.
                text = "{" + ",".join(["\\\\x" + v.hex() for v in values]) + "}"
                return f"{column} = ANY(?::bytea[])", [text]
            return f"{column} = ANY(?)", [list(values)]
        return f"{column} IN ({','.join('?' * len(values))})", list(values)

    def one(self, sql: str, params: Sequence[Any] = ()) -> tuple | None:
        return self.execute(sql, params).fetchone()

    def all(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        return list(self.execute(sql, params).fetchall())

    def scalar(self, sql: str, params: Sequence[Any] = (), default: Any = None) -> Any:
        row = self.one(sql, params)
        return default if row is None else row[0]

    def lock(self, keys: Iterable[bytes]) -> None:
        """Serialize with other transactions touching the same devices (PostgreSQL only;
        SQLite transactions are already serialized by BEGIN IMMEDIATE)."""
        if self.dialect != "postgresql":
            return
        for k in sorted(set(keys)):
            self.execute(
                "SELECT pg_advisory_xact_lock(?)", (int.from_bytes(k[:8], "big", signed=True),)
            )


class Conflict(Exception):
    """A transient concurrency failure: the whole transaction is retried."""


def _is_sqlite(url: str) -> bool:
    return not url.startswith(("postgresql://", "postgres://"))


def redact(url: str) -> str:
    """The database URL fit for a log line: a PostgreSQL password replaced by ***."""
    return re.sub(r"^(postgres(?:ql)?://[^:/@]*):[^@]*@", r"\1:***@", url)


def sqlite_path(url: str) -> str:
    if url.startswith("sqlite:///"):
        return url[len("sqlite:///") :]
    if url.startswith("sqlite://"):
        return url[len("sqlite://") :]
    return url


class DatabaseUnavailable(Exception):
    """The database cannot be used: a SQLite file that is not there (or not a database), a
    PostgreSQL server that is down, refuses the login or has no such database. `str()` is one
    line for the operator (no traceback); the HTTP API answers 503."""


class BadSetting(ValueError):
    """A database setting from the environment that is no such setting (one line, exit 2)."""


def db_wait_from_env() -> float:
    """TAPCASH_LEDGER_DB_WAIT: seconds (0.1 to 600), DB_WAIT_S when unset."""
    text = os.environ.get(ENV_DB_WAIT, "").strip()
    if not text:
        return DB_WAIT_S
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.1 <= value <= 600:  # also NaN
        raise BadSetting(f"{ENV_DB_WAIT}={text!r}: seconds to wait for the database, 0.1 to 600")
    return value


class NoDatabase(DatabaseUnavailable):
    """The database named is not a ledger database: no such SQLite file (with `create=False`),
    a file that is not a database, no ledger schema in it."""


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    line = text[0] if text else type(exc).__name__
    return line.removeprefix("connection failed: ").strip()


class Database:
    """Connections to one database and transaction helpers.

    SQLite: a small pool of connections kept here (a LIFO queue). PostgreSQL: a psycopg_pool
    ConnectionPool, opened at first use (one connection, growing to `pool_size`), after one
    direct connection attempt so that a server that is down is reported in one line.
    `create=False` never creates a SQLite file: a path that is not there is DatabaseUnavailable
    (the operator commands use it; only `migrate` and `serve` create a database).
    """

    POOL_TIMEOUT_S = 60.0  # PostgreSQL: longest wait for a free connection of a busy pool

    def __init__(self, url: str, pool_size: int = 8, create: bool = True,
                 wait_s: float | None = None) -> None:
        self.url = url
        # PostgreSQL: how long a request waits on a database that does not answer: the connect
        # timeout (unless the URL sets connect_timeout) and the pool's wait before it checks
        # whether the server is there at all (a busy pool then waits on, to POOL_TIMEOUT_S)
        self.wait_s = db_wait_from_env() if wait_s is None else wait_s
        self._probe_lock = threading.Lock()
        self._probed: tuple[float, str | None] = (0.0, None)  # (when, why unreachable)
        self.dialect = "sqlite" if _is_sqlite(url) else "postgresql"
        self.create = create
        self._pool: queue.LifoQueue[Any] = queue.LifoQueue()
        self._created = 0
        self._pool_size = pool_size
        self._pool_lock = threading.Lock()
        self._pg_pool: Any = None
        # SQLite has one writer; inside a process we queue writers here instead of spinning
        # on SQLITE_BUSY.
        self._write_lock = threading.Lock() if self.dialect == "sqlite" else None

    # ---- connections -------------------------------------------------------------------
    def _connect(self) -> Any:
        """A new SQLite connection (PostgreSQL connections come from the pool)."""
        path = sqlite_path(self.url)
        memory = path in ("", ":memory:")
        if not memory and self.create:
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        if not memory and not self.create and not os.path.isfile(path):
            raise NoDatabase(
                f"no ledger database at {path} (a new one: tapcash ledger migrate --db {path})")
        try:
            if memory or self.create:
                conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False,
                                       timeout=60.0)
            else:  # read-write, never create: a file deleted meanwhile is not made again
                uri = "file:" + urllib.parse.quote(os.path.abspath(path)) + "?mode=rw"
                conn = sqlite3.connect(uri, uri=True, isolation_level=None,
                                       check_same_thread=False, timeout=60.0)
        except sqlite3.OperationalError as e:
            raise DatabaseUnavailable(f"cannot open the database {path}: {e}") from None
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute("PRAGMA busy_timeout=60000")
            # 64 MB page cache per connection (default 2 MB): index inserts stay in memory
            # as the tables grow to millions of rows.
            conn.execute("PRAGMA cache_size=-65536")
        except sqlite3.DatabaseError as e:  # "file is not a database"
            conn.close()
            raise NoDatabase(f"{path} is not a ledger database ({e})") from None
        return conn

    def _pg(self) -> Any:
        with self._pool_lock:
            if self._pg_pool is None:
                import psycopg
                from psycopg_pool import ConnectionPool

                try:  # one direct attempt: the pool itself would only time out, reasonless
                    psycopg.connect(self.url, **self._pg_kwargs()).close()
                except psycopg.Error as e:
                    raise DatabaseUnavailable(
                        f"PostgreSQL {redact(self.url)} is unavailable: {_first_line(e)}"
                    ) from None
                self._pg_pool = ConnectionPool(
                    self.url, min_size=1, max_size=max(1, self._pool_size),
                    kwargs=self._pg_kwargs(), timeout=self.wait_s, name="tapcash-ledger",
                    open=True)
            return self._pg_pool

    def _pg_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"autocommit": True}
        if "connect_timeout" not in self.url:  # libpq: whole seconds, 2 at least
            kwargs["connect_timeout"] = max(2, math.ceil(self.wait_s))
        return kwargs

    def _unreachable(self) -> str | None:
        """Why the PostgreSQL server cannot be reached now (None: it answers), by one direct
        connection; one probe at a time, its verdict shared for `wait_s`."""
        import psycopg

        with self._probe_lock:
            when, why = self._probed
            if time.monotonic() - when < self.wait_s:
                return why
            try:
                psycopg.connect(self.url, **self._pg_kwargs()).close()
                why = None
            except psycopg.Error as e:
                why = _first_line(e)
            self._probed = (time.monotonic(), why)
            return why

    def _acquire(self) -> Any:
        if self.dialect == "postgresql":
            from psycopg_pool import PoolTimeout

            pool = self._pg()
            try:
                return pool.getconn()
            except PoolTimeout:
                pass
            # No connection within wait_s: a server that is gone is a 503 now, not after a
            # minute; one that answers has only a busy pool, which is waited on.
            why = self._unreachable()
            if why is not None:
                raise DatabaseUnavailable(
                    f"PostgreSQL {redact(self.url)} is unreachable: {why}") from None
            try:
                return pool.getconn(timeout=max(0.0, self.POOL_TIMEOUT_S - self.wait_s))
            except PoolTimeout as e:
                raise DatabaseUnavailable(
                    f"PostgreSQL {redact(self.url)}: no connection ({_first_line(e)})"
                ) from None
        try:
            return self._pool.get_nowait()
        except queue.Empty:
            pass
        with self._pool_lock:
            grow = self._created < self._pool_size
            if grow:
                self._created += 1
        if not grow:
            return self._pool.get()
        try:
            return self._connect()
        except BaseException:
            with self._pool_lock:
                self._created -= 1
            raise

    def _release(self, conn: Any, broken: bool) -> None:
        if self.dialect == "postgresql":
            if broken:  # rollback failed: unknown state, the pool replaces it
                conn.close()
            self._pg_pool.putconn(conn)
            return
        if not broken:
            self._pool.put(conn)
            return
        # A connection whose rollback failed is in an unknown state: drop it.
        try:
            conn.close()
        except Exception:  # noqa: BLE001
            pass
        with self._pool_lock:
            self._created -= 1

    def close(self) -> None:
        with self._pool_lock:
            pg, self._pg_pool = self._pg_pool, None
        if pg is not None:
            pg.close()
        while True:
            try:
                conn = self._pool.get_nowait()
            except queue.Empty:
                break
            conn.close()
            with self._pool_lock:
                self._created -= 1

    # ---- transactions ------------------------------------------------------------------
    @contextmanager
    def transaction(self, write: bool = True) -> Iterator[Tx]:
        held = self._write_lock if (write and self._write_lock is not None) else None
        conn = self._acquire()
        broken = True
        if held is not None:
            held.acquire()
        try:
            if self.dialect == "sqlite":
                conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            else:
                conn.execute("BEGIN")
            try:
                yield Tx(conn, self.dialect)
            except BaseException:
                conn.execute("ROLLBACK")
                broken = False
                raise
            conn.execute("COMMIT")
            broken = False
        finally:
            if held is not None:
                held.release()
            self._release(conn, broken)

    def write(self, fn: Callable[[Tx], T], attempts: int = 8) -> T:
        """Run fn in a write transaction, retrying on deadlocks and serialization failures."""
        for attempt in range(attempts):
            try:
                with self.transaction(write=True) as tx:
                    return fn(tx)
            except Exception as exc:  # noqa: BLE001 - classified below
                if attempt + 1 < attempts and self._transient(exc):
                    time.sleep(0.01 * (attempt + 1))
                    continue
                raise
        raise AssertionError("unreachable")

    def read(self, fn: Callable[[Tx], T]) -> T:
        with self.transaction(write=False) as tx:
            return fn(tx)

    def _transient(self, exc: BaseException) -> bool:
        if isinstance(exc, Conflict):
            return True
        if self.dialect == "sqlite":
            return isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc)
        import psycopg

        errs = psycopg.errors
        if isinstance(exc, errs.UniqueViolation):  # a twin's reference committed first: the
            return exc.diag.table_name == "operator_refs"  # retry replays it (once.py)
        return isinstance(exc, errs.SerializationFailure | errs.DeadlockDetected)
