"""The ledger killed (SIGKILL) in the middle of ingesting a large batch keeps nothing of it.

The server is a real `tapcash ledger serve` subprocess (tests/support/ledger_process.py).
`TAPCASH_LEDGER_FAULT_PAUSE` makes it stop inside the batch's transaction after every row is
written and before COMMIT (it touches a file, then sleeps), so the kill lands deterministically
mid-transaction; a second case kills at a moment picked by a seeded random delay, whatever the
server is doing then. After a restart the ledger
holds either the whole batch or none of it, and the same batch then goes through whole."""

from __future__ import annotations

import os
import random
import threading
import time
from pathlib import Path

import ledger_world as lw
import pytest
from ledger_process import LedgerServe
from ledger_world import TOKEN

from tapcash.firmware.core import ed25519
from tapcash.host.bench.ingest import NO_LIMITS, synthetic_wallet_log
from tapcash.host.issuer import Issuer
from tapcash.host.ledger.client import LedgerClient
from tapcash.host.ledger.db import Database
from tapcash.host.ledger.ingest import FAULT_PAUSE_ENV
from tapcash.host.ledger.migrations import migrate

N = 3000  # payments in the batch


def _serve(db: str, key: Path, env: dict[str, str] | None = None) -> LedgerServe:
    """`tapcash ledger serve` on `db`, without a fault pause unless `env` sets one."""
    environ = {k: v for k, v in os.environ.items() if k != FAULT_PAUSE_ENV}
    return LedgerServe(db, key, TOKEN, environ=environ, env=env, args=["--log-level", "warning"])


def _setup(db: str, tmp: Path) -> tuple[Path, bytes, bytes, list, bytes]:
    issuer = Issuer.generate()
    key = tmp / "issuer.key"
    issuer.save(key)
    migrate(Database(db, pool_size=1))
    seed, wid, pos_id = os.urandom(32), os.urandom(8), os.urandom(8)
    srv = _serve(db, key)
    try:
        with LedgerClient(srv.url, TOKEN) as c:
            c.register(issuer.certify_pos(pos_id, ed25519.public_key(os.urandom(32)),
                                          os.urandom(8), expires=2**40))
            c.register(issuer.certify_wallet(
                wid, ed25519.public_key(seed), expires=2**40,
                limits=NO_LIMITS), "alice")
            c.deposit("alice", 10**9)
            c.load(wid, 10**9)
    finally:
        srv.kill()
    records, status, _ = synthetic_wallet_log(seed, wid, pos_id, 1, N, bytes(32), 1)
    return key, wid, pos_id, records, status


def _counts(db: str) -> tuple[int, int, int]:
    d = Database(db, pool_size=1)
    try:
        return d.read(lambda tx: (
            int(tx.scalar("SELECT COUNT(*) FROM payments")),
            # units posted as payments (amount 1 each; a run of them is one posting)
            int(tx.scalar("SELECT COALESCE(SUM(amount), 0) FROM postings "
                          "WHERE kind = 'payment'")),
            int(tx.scalar("SELECT COALESCE(MAX(acked_upto), 0) FROM devices")),
        ))
    finally:
        d.close()


def _upload_in_background(url: str, wid: bytes, records: list, status: bytes) -> threading.Thread:
    def go() -> None:
        try:
            with LedgerClient(url, TOKEN, timeout=120) as c:
                c.ingest(wid, records, status)
        except Exception:  # noqa: BLE001 - the server dies under it: expected
            pass

    t = threading.Thread(target=go, daemon=True)
    t.start()
    return t


def _finish(db: str, key: Path, wid: bytes, records: list, status: bytes) -> None:
    srv = _serve(db, key)
    try:
        with LedgerClient(srv.url, TOKEN, timeout=120) as c:
            res = c.ingest(wid, records, status)
            assert res.upto == N
            assert c.invariant()["ok"]
            assert c.report("merchants")[0]["payments"] == N
    finally:
        srv.kill()
    assert _counts(db) == (N, N, N)
    lw.make_ledger(db, Issuer.load(key))  # the autouse fixture checks its books


def test_kill_inside_the_transaction_keeps_nothing(db_url: str, tmp_path: Path) -> None:
    key, wid, _pos, records, status = _setup(db_url, tmp_path)
    flag = tmp_path / "paused"
    srv = _serve(db_url, key, {FAULT_PAUSE_ENV: str(flag)})
    t = _upload_in_background(srv.url, wid, records, status)
    deadline = time.monotonic() + 120
    while not flag.exists():
        assert time.monotonic() < deadline, "the batch never reached its commit point"
        time.sleep(0.01)
    srv.kill()
    t.join(30)
    assert _counts(db_url) == (0, 0, 0)
    _finish(db_url, key, wid, records, status)


@pytest.mark.parametrize("seed", [1, 2])
def test_kill_at_a_random_moment_is_all_or_nothing(db_url: str, tmp_path: Path,
                                                   seed: int) -> None:
    key, wid, _pos, records, status = _setup(db_url, tmp_path)
    srv = _serve(db_url, key)
    t = _upload_in_background(srv.url, wid, records, status)
    time.sleep(random.Random(seed).uniform(0.05, 0.6))
    srv.kill()
    t.join(30)
    payments, postings, acked = _counts(db_url)
    assert (payments, postings, acked) in ((0, 0, 0), (N, N, N))
    _finish(db_url, key, wid, records, status)
