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

import os
import queue
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

T = TypeVar("T")


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
            marks = ", ".join("?" * len(columns))
            self.conn.executemany(f"INSERT INTO {table} ({cols}) VALUES ({marks})", rows)
            return
        with self.conn.cursor() as cur, cur.copy(f"COPY {table} ({cols}) FROM STDIN") as cp:
            for row in rows:
                cp.write_row(row)

    def in_list(self, column: str, values: Sequence[Any]) -> tuple[str, list[Any]]:
        """(SQL condition, params) for `column IN values`: one array parameter on PostgreSQL,
        a list of placeholders on SQLite (callers chunk to <= 500 values)."""
        if self.dialect == "postgresql":
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


class Database:
    """A small pool of connections to one database and transaction helpers."""

    def __init__(self, url: str, pool_size: int = 8) -> None:
        self.url = url
        self.dialect = "sqlite" if _is_sqlite(url) else "postgresql"
        self._pool: queue.LifoQueue[Any] = queue.LifoQueue()
        self._created = 0
        self._pool_size = pool_size
        self._pool_lock = threading.Lock()
        # SQLite has one writer; inside a process we queue writers here instead of spinning
        # on SQLITE_BUSY.
        self._write_lock = threading.Lock() if self.dialect == "sqlite" else None

    # ---- connections -------------------------------------------------------------------
    def _connect(self) -> Any:
        if self.dialect == "sqlite":
            path = sqlite_path(self.url)
            if path not in ("", ":memory:"):
                os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
            conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False,
                                   timeout=60.0)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute("PRAGMA busy_timeout=60000")
            # 64 MB page cache per connection (default 2 MB): index inserts stay in memory
            # as the tables grow to millions of rows.
            conn.execute("PRAGMA cache_size=-65536")
            return conn
        import psycopg

        return psycopg.connect(self.url, autocommit=True)

    def _acquire(self) -> Any:
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
        return isinstance(exc, errs.SerializationFailure | errs.DeadlockDetected)
