"""Several uvicorn worker processes on one database: concurrent uploads of the same journals
and of conflicting journals from two terminals give one set of books and exactly one fraud case
(advisory locks on PostgreSQL, BEGIN IMMEDIATE on SQLite)."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import ledger_world as lw
from ledger_process import LedgerServe
from ledger_world import TOKEN

from tapcash.firmware.core import cbor, ed25519, proto
from tapcash.host.bench.ingest import NO_LIMITS, synthetic_wallet_log
from tapcash.host.issuer import Issuer
from tapcash.host.ledger.client import LedgerClient
from tapcash.host.ledger.db import Database
from tapcash.host.ledger.migrations import migrate


def _pay(seed: bytes, wid: bytes, pos_id: bytes, counter: int, amount: int, prev: bytes):
    body = {proto.PAY_WALLET: wid, proto.PAY_COUNTER: counter, proto.PAY_AMOUNT: amount,
            proto.PAY_PAYEE: pos_id, proto.PAY_CHALLENGE: os.urandom(16), proto.PAY_PREV: prev,
            proto.PAY_PURSE: 0, proto.PAY_TIME: 0, proto.PAY_BALANCE: 10**6 - amount,
            proto.PAY_KIND: proto.PAYKIND_POS}
    return proto.seal(proto.TAG_PAYMENT, body, seed), proto.body_hash(cbor.encode(body))


def test_two_workers_concurrent_uploads(db_url: str, tmp_path: Path) -> None:
    issuer = Issuer.generate()
    key = tmp_path / "issuer.key"
    issuer.save(key)
    migrate(Database(db_url, pool_size=1))
    srv = LedgerServe(db_url, key, TOKEN, args=["--workers", "2", "--log-level", "warning"])
    try:
        with LedgerClient(srv.url, TOKEN) as c:
            poses = []
            for _ in range(2):
                pseed, pid = os.urandom(32), os.urandom(8)
                c.register(issuer.certify_pos(pid, ed25519.public_key(pseed), os.urandom(8),
                                              expires=2**40))
                poses.append((pseed, pid))
            wallets = []
            c.deposit("alice", 10**9)
            for _ in range(6):
                wseed, wid = os.urandom(32), os.urandom(8)
                c.register(issuer.certify_wallet(wid, ed25519.public_key(wseed), expires=2**40,
                                                 limits=NO_LIMITS), "alice")
                c.load(wid, 10**6)
                wallets.append((wseed, wid))
        # Honest wallet logs (300 payments each) and, for the last wallet, a clone: the same
        # counter 1 paid at both terminals.
        batches = []
        for wseed, wid in wallets[:-1]:
            recs, st, _ = synthetic_wallet_log(wseed, wid, poses[0][1], 1, 300, bytes(32), 1,
                                               start_balance=10**6)
            batches.append((wid, recs, st))
        cseed, cwid = wallets[-1]
        a = _pay(cseed, cwid, poses[0][1], 1, 700, bytes(32))
        b = _pay(cseed, cwid, poses[1][1], 1, 900, bytes(32))
        for (pseed, pid), pay in zip(poses, (a, b), strict=True):
            records, status, _digest = lw.pos_journal(pseed, pid, [(*pay, bytes(32))])
            batches.append((pid, records, status))

        errors: list[BaseException] = []

        def upload(order: list) -> None:
            try:
                with LedgerClient(srv.url, TOKEN, timeout=120) as cl:
                    for dev, recs, st in order:
                        cl.ingest(dev, recs, st)
            except BaseException as e:  # noqa: BLE001 - reported below
                errors.append(e)

        threads = [threading.Thread(target=upload, args=(o,))
                   for o in (batches, batches[::-1], batches[1:] + batches[:1])]
        for t in threads:
            t.start()
        for t in threads:
            t.join(300)
        assert errors == []
        with LedgerClient(srv.url, TOKEN) as c:
            cases = c.report("fraud")
            assert len(cases) == 1 and cases[0]["kind"] == "counter_conflict"
            assert c.hotlist().revoked == [cwid]
            books = c.books()
            assert len(books["payments"]) == 5 * 300 + 1
            merchant_total = sum(m["owed"] for m in c.report("merchants"))
            assert merchant_total == 5 * 300 + 700 + 900
            assert c.invariant()["ok"]
    finally:
        srv.stop()
    lw.make_ledger(db_url, Issuer.load(key))  # the autouse fixture checks its books
