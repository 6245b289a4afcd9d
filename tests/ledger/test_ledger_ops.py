"""The ledger as an operator runs it (issue #11): `tapcash ledger serve` says where it listens
and logs each request (uvicorn's own logging); a mistyped database, a database that is down and
a wrong operator token are one line on stderr and a non-zero exit, never a traceback, and leave
nothing behind. Real subprocesses of the installed CLI."""

from __future__ import annotations

import logging
import sqlite3
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from ledger_process import LedgerServe

from tapcash.host.issuer import Issuer
from tapcash.host.ledger.loopback import free_port

TAPCASH = [sys.executable, "-c", "from tapcash.host.cli import main; main()"]
TOKEN = "ops-operator-token"


def tapcash(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*TAPCASH, *args], capture_output=True, text=True, timeout=timeout)


def test_serve_logs_where_it_listens_the_docs_and_each_request(tmp_path: Path) -> None:
    """Found: `tapcash ledger serve` printed nothing: no URL, no docs link, no access log."""
    key = tmp_path / "issuer.key"
    Issuer.generate().save(key)
    server = LedgerServe(str(tmp_path / "ledger.db"), key, TOKEN, tmp_path / "serve.log",
                         access_log=True)
    try:
        assert httpx.get(server.url + "/v1/health").status_code == 200
        assert (
            httpx.get(
                server.url + "/v1/whoami", headers={"Authorization": "Bearer nope"}
            ).status_code
            == 401
        )
        assert (
            httpx.get(
                server.url + "/v1/whoami", headers={"Authorization": f"Bearer {TOKEN}"}
            ).status_code
            == 200
        )
    finally:
        server.stop()
    log = server.log.read_text()
    assert f"serving {server.url}" in log and "new ledger database (schema " in log
    assert f"API docs {server.url}/docs" in log and f"{server.url}/openapi.json" in log
    assert f"Uvicorn running on {server.url}" in log  # uvicorn's own startup line
    assert '"GET /v1/health HTTP/1.1" 200' in log  # uvicorn's access log, one line a request
    assert '"GET /v1/whoami HTTP/1.1" 401' in log
    assert '"GET /v1/whoami HTTP/1.1" 200' in log
    assert TOKEN not in log


# ---- the database: mistyped, not a ledger, down --------------------------------------------
DB_COMMANDS = [  # every `tapcash ledger` command that opens the database itself
    ["check"],
    ["report", "merchants"],
    ["program", "report"],
    ["program", "sweep", "--issuer-key", "{key}"],
    [
        "program",
        "create",
        "p",
        "--funder",
        "f",
        "--kind",
        "subsidy",
        "--expires",
        "2099-01-01",
        "--category",
        "1",
        "--issuer-key",
        "{key}",
    ],
]
CREATING = [["migrate"], ["serve", "--issuer-key", "{key}", "--token", "t", "--port", "1"]]


def _one_line_error(done: subprocess.CompletedProcess[str], code: int, *needles: str) -> str:
    assert done.returncode == code, (done.returncode, done.stdout, done.stderr)
    assert "Traceback" not in done.stderr + done.stdout
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("error: "), line
    for needle in needles:
        assert needle in line, (needle, line)
    return line


def _args(cmd: list[str], key: Path, db: str) -> list[str]:
    return ["ledger", *(a.replace("{key}", str(key)) for a in cmd), "--db", db]


def test_a_mistyped_database_is_one_line_and_leaves_nothing_behind(tmp_path: Path) -> None:
    """Found: a mistyped `--db` printed a sqlite3.OperationalError traceback and left an empty
    file behind. Now: one line naming the path, exit 2, no file, no folder."""
    key = tmp_path / "issuer.key"
    Issuer.generate().save(key)
    for cmd in DB_COMMANDS:
        typo = tmp_path / "ledgr.db"
        _one_line_error(
            tapcash(*_args(cmd, key, str(typo))),
            2,
            f"no ledger database at {typo}",
            "tapcash ledger migrate",
        )
        assert not typo.exists()
    for cmd in DB_COMMANDS + CREATING:  # a folder that is not there: not even migrate makes it
        typo = tmp_path / "nodir" / "ledger.db"
        _one_line_error(tapcash(*_args(cmd, key, str(typo))), 2, f"no folder {typo.parent}")
        assert not typo.parent.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["issuer.key"]
    # a file that is no database, a database with no ledger schema, an old schema
    (tmp_path / "notes.txt").write_text("not a database\n")
    sqlite3.connect(tmp_path / "other.db").execute("CREATE TABLE t (x)").connection.close()
    old = tmp_path / "old.db"
    assert tapcash("ledger", "migrate", "--db", str(old)).returncode == 0
    with sqlite3.connect(old) as c:
        c.execute("DELETE FROM schema_version WHERE version > 2")
    for cmd in DB_COMMANDS:
        _one_line_error(
            tapcash(*_args(cmd, key, str(tmp_path / "notes.txt"))), 2, "is not a ledger database"
        )
        _one_line_error(
            tapcash(*_args(cmd, key, str(tmp_path / "other.db"))),
            2,
            "is not a ledger database (no ledger schema",
        )
        _one_line_error(
            tapcash(*_args(cmd, key, str(old))),
            2,
            "schema version 2",
            f"tapcash ledger migrate --db {old}",
        )
    assert (tmp_path / "notes.txt").read_text() == "not a database\n"
    # migrate creates a new one where the folder exists; then every command works
    new = tmp_path / "new.db"
    assert tapcash("ledger", "migrate", "--db", str(new)).returncode == 0
    assert tapcash("ledger", "check", "--db", str(new)).returncode == 0


def test_postgresql_down_is_one_line(tmp_path: Path) -> None:
    """Found: PostgreSQL down printed a psycopg traceback. Now: one line naming the server (its
    password hidden) and the reason, exit 5, on every command, `serve` and `migrate` too."""
    key = tmp_path / "issuer.key"
    Issuer.generate().save(key)
    down = f"postgresql://tapcash:s3cret@127.0.0.1:{free_port()}/test"
    for cmd in DB_COMMANDS + CREATING:
        line = _one_line_error(
            tapcash(*_args(cmd, key, down)), 5, "PostgreSQL", "is unavailable", "Connection refused"
        )
        assert "s3cret" not in line and "tapcash:***@" in line


def test_no_such_postgresql_database_or_role_is_one_line(tmp_path: Path, pg_admin: str) -> None:
    base = pg_admin.rsplit("/", 1)[0]
    _one_line_error(
        tapcash("ledger", "check", "--db", f"{base}/tapcash_no_such_db"),
        5,
        'database "tapcash_no_such_db" does not exist',
    )
    host = base.split("@", 1)[1]
    _one_line_error(
        tapcash("ledger", "migrate", "--db", f"postgresql://no_such_role@{host}/test"),
        5,
        'role "no_such_role" does not exist',
    )


# ---- a wrong operator token ----------------------------------------------------------------
OPERATOR_COMMANDS = [  # every `tapcash ledger` command that calls the HTTP API
    ["owner", "list"],
    ["owner", "show", "alice"],
    ["owner", "add", "bob"],
    ["device", "list"],
    ["device", "show", "00" * 8],
    ["deposit", "alice", "5"],
    ["load", "00" * 8, "5"],
    ["merchants"],
    ["settlements"],
    ["settle", "--all"],
    ["revoke", "00" * 8],
    ["reinstate", "00" * 8],
    ["fraud", "list"],
    ["fraud", "show", "1"],
    ["statement", "00" * 8],
    ["device", "renew", "00" * 8, "--expires-days", "30"],
    ["device", "register", "{cert}"],
    ["payroll", "{csv}", "--payer", "alice", "--reference", "r1"],
]


def test_a_wrong_token_is_called_wrong_on_every_operator_command(tmp_path: Path) -> None:
    """Found: a wrong operator token was reported as "token required". Now every command that
    calls the ledger says the token is wrong (exit 1, one line), and changes nothing."""
    key = tmp_path / "issuer.key"
    Issuer.generate().save(key)
    db = tmp_path / "ledger.db"
    cert, csv = tmp_path / "wallet.cert", tmp_path / "payroll.csv"
    cert.write_bytes(Issuer.load(key).certify_wallet(b"\x01" * 8, b"\x02" * 32, expires=2**32 - 1))
    csv.write_text(f"{'01' * 8},500\n")
    server = LedgerServe(str(db), key, TOKEN, tmp_path / "serve.log")
    try:
        for cmd in OPERATOR_COMMANDS:
            cmd = [a.replace("{cert}", str(cert)).replace("{csv}", str(csv)) for a in cmd]
            done = tapcash("ledger", *cmd, "--url", server.url, "--token", "not-the-token")
            line = _one_line_error(done, 1, "operator token is wrong", "HTTP 401")
            assert "required" not in line, (cmd, line)
        op = {"Authorization": f"Bearer {TOKEN}"}
        owners = httpx.get(server.url + "/v1/owners", headers=op).json()
        settlements = httpx.get(server.url + "/v1/reports/settlements", headers=op).json()
        devices = httpx.get(server.url + "/v1/devices", headers=op).json()
    finally:
        server.stop()
    assert owners == [] and settlements == []  # no deposit, no owner, no settlement
    assert devices == []  # no device registered
    assert tapcash("ledger", "check", "--db", str(db)).returncode == 0


def test_a_database_gone_while_serving_is_a_503_not_a_500(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The API over a PostgreSQL that is down: 503 problem details naming no internals, and
    the public routes that need no database still answer. The audit of #11 (a database dropped
    under a live `ledger serve`): each 503 also logged uvicorn's "Exception in ASGI application"
    with a traceback, and the operator CLI called it a refusal (exit 1); now one log line per
    request and exit 5, as for a ledger that is unreachable (sync spools on it too)."""
    from tapcash.host.ledger.db import Database
    from tapcash.host.ledger.loopback import LoopbackLedger
    from tapcash.host.ledger.migrations import migrate
    from tapcash.host.ledger.service import Ledger

    uvicorn_errors = logging.getLogger("uvicorn.error")  # does not propagate to caplog's
    db = Database(str(tmp_path / "ledger.db"))
    migrate(db)
    ledger = Ledger(db, Issuer.generate())
    # the server went away after the ledger started: every connection attempt is refused
    ledger.db = Database(f"postgresql://tapcash:s3cret@127.0.0.1:{free_port()}/test")
    with LoopbackLedger(ledger, TOKEN) as srv:
        uvicorn_errors.addHandler(caplog.handler)  # after uvicorn configured its loggers
        op = {"Authorization": f"Bearer {TOKEN}"}
        r = httpx.get(srv.url + "/v1/owners", headers=op)
        assert r.status_code == 503 and r.headers["content-type"] == "application/problem+json"
        assert r.json()["detail"] == "database unreachable, try again later"
        assert "s3cret" not in r.text
        r = httpx.post(srv.url + "/v1/owners/alice/deposit", json={"amount": 5}, headers=op)
        assert r.status_code == 503
        assert httpx.get(srv.url + "/v1/health").status_code == 200
        done = tapcash("ledger", "owner", "list", "--url", srv.url, "--token", TOKEN)
        _one_line_error(done, 5, "database unreachable, try again later (HTTP 503)")
    uvicorn_errors.removeHandler(caplog.handler)
    logged = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert logged and all(r.exc_info is None for r in logged), [r.getMessage() for r in logged]
    assert all(r.getMessage().startswith("database unreachable") for r in logged)


def test_a_postgresql_database_dropped_under_serve_is_a_503_within_db_wait(
    tmp_path: Path, pg_admin: str
) -> None:
    """A `ledger serve` whose PostgreSQL database goes away (dropped, its connections ended):
    each request waited psycopg_pool's 60 s for a connection before its 503 (the operator CLI
    gave up first, at its own 30 s). Now the pool waits --db-wait (TAPCASH_LEDGER_DB_WAIT,
    default 5 s), then one direct attempt tells a database that is gone from a busy pool: 503
    `database unreachable`, logged with the server's reason; the operator commands end on it with
    exit 5 and one line, as the --db commands do on the dropped database."""
    import uuid

    import psycopg

    name = "tapcash_gone_" + uuid.uuid4().hex[:12]
    with psycopg.connect(pg_admin, autocommit=True) as c:
        c.execute(f"CREATE DATABASE {name}")
    url = pg_admin.rsplit("/", 1)[0] + "/" + name
    key = tmp_path / "issuer.key"
    Issuer.generate().save(key)
    op = {"Authorization": f"Bearer {TOKEN}"}
    server = None
    try:
        server = LedgerServe(url, key, TOKEN, tmp_path / "serve.log", args=["--db-wait", "1"])
        assert httpx.get(server.url + "/v1/owners", headers=op).status_code == 200
        with psycopg.connect(pg_admin, autocommit=True) as c:
            c.execute(f"DROP DATABASE {name} WITH (FORCE)")
        for _ in range(4):  # the pool's dead connections, then no connection to be had
            # (a generous guard against the old minute's wait, not a speed figure)
            r = httpx.get(server.url + "/v1/owners", headers=op, timeout=25)
            assert r.status_code == 503, r.text
            assert r.headers["content-type"] == "application/problem+json"
            assert r.json()["detail"] == "database unreachable, try again later"
        assert httpx.get(server.url + "/v1/health").status_code == 200
        done = tapcash("ledger", "owner", "list", "--url", server.url, "--token", TOKEN)
        _one_line_error(done, 5, "database unreachable, try again later (HTTP 503)")
        done = tapcash("ledger", "check", "--db", url)
        _one_line_error(done, 5, f"PostgreSQL {url} is unavailable", f'"{name}" does not exist')
    finally:
        if server is not None:
            server.stop()
        with psycopg.connect(pg_admin, autocommit=True) as c:
            c.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    log = server.log.read_text()
    assert "Traceback" not in log and "Exception in ASGI" not in log, log[-3000:]
    assert f"PostgreSQL {url} is unreachable: " in log and "does not exist" in log, log[-3000:]


def test_a_bad_db_wait_is_one_line(tmp_path: Path) -> None:
    """TAPCASH_LEDGER_DB_WAIT that is no number of seconds: one line, exit 2, as --db-wait."""
    import os

    db = tmp_path / "ledger.db"
    assert tapcash("ledger", "migrate", "--db", str(db)).returncode == 0
    env = {**os.environ, "TAPCASH_LEDGER_DB_WAIT": "soon"}
    done = subprocess.run([*TAPCASH, "ledger", "check", "--db", str(db)], capture_output=True,
                          text=True, timeout=60, env=env)
    _one_line_error(done, 2, "TAPCASH_LEDGER_DB_WAIT='soon': seconds to wait for the database")
    done = tapcash("ledger", "serve", "--db", str(db), "--issuer-key", str(db), "--token", "t",
                   "--db-wait", "0")
    assert done.returncode == 2 and "--db-wait" in done.stderr, done.stderr


# ---- a key file that is no issuer key ------------------------------------------------------
KEY_COMMANDS = [  # every command an operator gives an issuer key file
    ["ledger", "serve", "--token", "t", "--port", "1", "--db", "{db}", "--issuer-key", "{key}"],
    ["ledger", "program", "sweep", "--db", "{db}", "--issuer-key", "{key}"],
    ["ledger", "program", "create", "p", "--funder", "f", "--kind", "subsidy", "--expires",
     "2099-01-01", "--category", "1", "--db", "{db}", "--issuer-key", "{key}"],
    ["sim", "serve", "smoke", "--ledger", "http://127.0.0.1:1", "--token", "t", "--out",
     "{db}.fleet", "--issuer-key", "{key}"],
    ["issuer", "show", "--issuer-key", "{key}"],
    ["issuer", "certify", "wallet", "--id", "00" * 8, "--public-key", "00" * 32,
     "--issuer-key", "{key}"],
    ["issuer", "voucher", "--wallet", "00" * 8, "--number", "1", "--amount", "1",
     "--issuer-key", "{key}"],
]


def test_a_bad_issuer_key_file_is_one_line_and_makes_no_database(tmp_path: Path) -> None:
    """Found in the audit of #11: `tapcash ledger serve --issuer-key` on a file that is no key
    (a typo'd path to another file, a truncated copy) created the database, printed "serving",
    then a ValueError traceback; `ledger program ...`, `sim serve --ledger` and `issuer ...` a
    traceback too. Now one line naming the file and the reason, exit 2, nothing created."""
    keys = {
        "junk.key": ("not a key\n", "non-hexadecimal number"),
        "empty.key": ("", "issuer seed must be 32 bytes"),
        "noseed.key": ('{"key_id": "00"}\n', "no 'seed' field"),
        "intseed.key": ('{"seed": 5}\n', "not a readable issuer key file"),
    }
    for name, (text, _) in keys.items():
        (tmp_path / name).write_text(text)
    db = tmp_path / "ledger.db"
    for cmd in KEY_COMMANDS:
        for name, (_, reason) in keys.items():
            key = tmp_path / name
            args = [a.replace("{key}", str(key)).replace("{db}", str(db)) for a in cmd]
            _one_line_error(tapcash(*args), 2, f"{key}: not a readable issuer key file",
                            reason)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(keys)  # no database, no fleet


def test_an_empty_or_unsendable_token_is_a_usage_error(tmp_path: Path) -> None:
    """Found in the audit of #11: `ledger serve --token ""` (an `export TAPCASH_LEDGER_TOKEN=$(...)`
    that failed) created the database, then each worker died with a ValueError traceback; a
    token with a space or a non-ASCII letter started a ledger no client could ever log in to."""
    key = tmp_path / "issuer.key"
    Issuer.generate().save(key)
    db = tmp_path / "ledger.db"
    for token in ("", "two words", "pässword"):
        done = tapcash("ledger", "serve", "--db", str(db), "--issuer-key", str(key), "--port",
                       "1", "--token", token)
        assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
        assert "Invalid value for --token: the operator token must be printable ASCII" in \
            done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["issuer.key"]


def test_a_busy_pool_is_waited_on_past_db_wait(pg_admin: str) -> None:
    """--db-wait bounds the wait on a database that is gone, not on one that is busy: with
    every connection of the pool held longer than db-wait, the next transaction still gets one
    (the direct attempt finds the server there) instead of a 503."""
    import threading

    import ledger_world as lw

    from tapcash.host.ledger.db import Database

    with lw.pg_schema(pg_admin, "tapcash_busy_") as url:
        db = Database(url, pool_size=1, wait_s=0.2)
        held, release = threading.Event(), threading.Event()

        def hold() -> None:
            with db.transaction(write=False):
                held.set()
                release.wait(30)

        t = threading.Thread(target=hold)
        t.start()
        try:
            assert held.wait(30)
            timer = threading.Timer(1.0, release.set)  # past db-wait: five times over
            timer.start()
            assert db.read(lambda tx: tx.scalar("SELECT 1")) == 1
        finally:
            release.set()
            t.join(30)
            db.close()
