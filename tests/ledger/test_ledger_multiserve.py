"""Several `tapcash ledger serve` processes on different ports (as a load balancer spreads them)
against one PostgreSQL database ingest concurrently with the same exactness as one ledger
(issue #15 item 2; docs/LEDGER.md, "Several ledger servers on one PostgreSQL").

Real processes, a real database: five wallets' payments at one terminal arrive twice each (the
wallet's own journal and the terminal's, with its receipts), every batch is sent to two servers
at once, and a cloned card pays one counter at two terminals. Afterwards `tapcash ledger check`
passes and the books are exactly those of one in-process ledger fed the same batches one by one:
every payment posted once, one fraud case, the clone revoked, every journal acked to its end."""

from __future__ import annotations

import base64
import os
import random
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import ledger_world as lw
import pytest
from ledger_process import LedgerServe
from ledger_world import TOKEN

from tapcash.firmware.core import cbor, ed25519, proto
from tapcash.host.bench.ingest import NO_LIMITS, synthetic_wallet_log
from tapcash.host.issuer import Issuer
from tapcash.host.ledger.client import LedgerClient
from tapcash.host.ledger.db import Database
from tapcash.host.ledger.ingest import ingest
from tapcash.host.ledger.migrations import migrate
from tapcash.host.ledger.reports import books
from tapcash.host.ledger.service import Ledger

SERVERS = 3
WALLETS = 5
PAYS = 120  # per honest wallet, in two batches of its own journal
LOAD = 10**6


@pytest.fixture
def pg_url(pg_admin: str) -> Iterator[str]:
    yield from lw._pg_schema(pg_admin)


def _wallet_envs(records: list[tuple[int, bytes]]) -> list[tuple[bytes, bytes]]:
    out = []
    for _seq, rec in records:
        env = cbor.decode(rec)[proto.REC_SIGNED]
        out.append((env, proto.body_hash(cbor.decode(env)[0])))
    return out


def _world(issuer: Issuer) -> tuple[list[tuple[str, tuple]], list[tuple[bytes, list, bytes]], dict]:
    """The set-up calls (same on every ledger) and the batches to upload."""
    calls: list[tuple[str, tuple]] = [("deposit", ("alice", 10**9))]
    poses = []
    for _ in range(2):
        seed, pid = os.urandom(32), os.urandom(8)
        calls.append(("register", (issuer.certify_pos(pid, ed25519.public_key(seed),
                                                      os.urandom(8), expires=2**40),)))
        poses.append((seed, pid))
    wallets = []
    for _ in range(WALLETS + 1):
        seed, wid = os.urandom(32), os.urandom(8)
        cert = issuer.certify_wallet(wid, ed25519.public_key(seed), expires=2**40,
                                     limits=NO_LIMITS)
        calls += [("register", (cert, "alice")), ("load", (wid, LOAD))]
        wallets.append((seed, wid, proto.body_hash(proto.open_envelope(cert)[0])))
    batches = []
    at_pos: list[tuple[bytes, bytes, bytes]] = []
    half = PAYS // 2
    for seed, wid, ch in wallets[:WALLETS]:
        r1, s1, head = synthetic_wallet_log(seed, wid, poses[0][1], 1, half, bytes(32), 1,
                                            start_balance=LOAD)
        j1 = cbor.decode(cbor.decode(s1)[0])[proto.ST_DIGEST]
        r2, s2, _ = synthetic_wallet_log(seed, wid, poses[0][1], half + 1, half, head, half + 1,
                                         start_balance=LOAD - half, journal=j1)
        batches += [(wid, r1, s1), (wid, r2, s2)]
        at_pos += [(env, h, ch) for env, h in _wallet_envs(r1 + r2)]
    random.Random(15).shuffle(at_pos)  # the terminal took them in some interleaved order
    # The clone: counter 1 of the last wallet paid at both terminals.
    cseed, cwid, cch = wallets[WALLETS]
    clone = []
    for (_pseed, pid), amount in zip(poses, (700, 900), strict=True):
        body = {proto.PAY_WALLET: cwid, proto.PAY_COUNTER: 1, proto.PAY_AMOUNT: amount,
                proto.PAY_PAYEE: pid, proto.PAY_CHALLENGE: os.urandom(16),
                proto.PAY_PREV: bytes(32), proto.PAY_PURSE: 0, proto.PAY_TIME: 0,
                proto.PAY_BALANCE: LOAD - amount, proto.PAY_KIND: proto.PAYKIND_POS}
        clone.append((proto.seal(proto.TAG_PAYMENT, body, cseed),
                      proto.body_hash(cbor.encode(body)), cch))
    at_pos.append(clone[0])
    journal, seq = bytes(32), 1
    for i in range(0, len(at_pos), 150):
        part = at_pos[i : i + 150]
        recs, st, journal = lw.pos_journal(poses[0][0], poses[0][1], part, seq, journal)
        batches.append((poses[0][1], recs, st))
        seq += len(part)
    recs, st, _ = lw.pos_journal(poses[1][0], poses[1][1], [clone[1]], 1, bytes(32))
    batches.append((poses[1][1], recs, st))
    return calls, batches, {"clone": cwid, "honest": WALLETS * PAYS, "at_pos": len(at_pos)}


def test_several_servers_on_one_postgresql_keep_exact_books(pg_url: str, tmp_path: Path) -> None:
    issuer = Issuer.generate()
    key = tmp_path / "issuer.key"
    issuer.save(key)
    migrate(Database(pg_url, pool_size=1))
    calls, batches, expect = _world(issuer)
    # server 0 checks signatures in a helper process, the others inline: both kinds mix
    procs = [{"TAPCASH_LEDGER_VERIFY_PROCS": "1"} if i == 0 else None for i in range(SERVERS)]
    servers = [LedgerServe(pg_url, key, TOKEN, env=env, wait=False) for env in procs]
    try:
        for s in servers:
            s.wait()
        with LedgerClient(servers[0].url, TOKEN) as c:
            for name, args in calls:
                getattr(c, name)(*args)
        # Every batch goes to two different servers at once; threads take them in different
        # orders, so journals arrive out of order, split and repeated.
        rng = random.Random(7)
        plan = [(b, rng.sample(range(SERVERS), 2)) for b in batches]
        work: list[list[tuple[tuple, int]]] = [[] for _ in range(4)]
        for n, (b, (s1, s2)) in enumerate(plan):
            work[n % 2].append((b, s1))
            work[2 + n % 2].append((b, s2))
        work[2].reverse()
        errors: list[BaseException] = []

        def upload(jobs: list[tuple[tuple, int]]) -> None:
            clients = [LedgerClient(s.url, TOKEN, timeout=300) for s in servers]
            try:
                for (dev, recs, st), i in jobs:
                    clients[i].ingest(dev, recs, st)
            except BaseException as e:  # noqa: BLE001 - reported below
                errors.append(e)
            finally:
                for cl in clients:
                    cl.close()

        threads = [threading.Thread(target=upload, args=(w,)) for w in work]
        for t in threads:
            t.start()
        for t in threads:
            t.join(600)
        assert errors == []
        # The sync tool's retry: each batch once more, now that its predecessors are held.
        for n, (dev, recs, st) in enumerate(batches):
            with LedgerClient(servers[n % SERVERS].url, TOKEN, timeout=300) as c:
                c.ingest(dev, recs, st)
        with LedgerClient(servers[1].url, TOKEN) as c:
            cases = c.report("fraud")
            assert [(k["kind"], k["wallet"]) for k in cases] == [("counter_conflict",
                                                                  expect["clone"].hex())]
            assert c.hotlist().revoked == [expect["clone"]]
            got = c.books()
    finally:
        for s in servers:
            s.stop()
    done = subprocess.run([sys.executable, "-c", "from tapcash.host.cli import main; main()",
                           "ledger", "check", "--db", pg_url], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert len(got["payments"]) == expect["honest"] + 1
    assert all(p[3] == "posted" for p in got["payments"])
    # every journal acked to its end (the clone's own card never synced)
    assert sorted(got["acked"].values()) == sorted([PAYS] * WALLETS + [0, expect["at_pos"], 1])
    # One in-process ledger fed the same batches one by one has exactly these books.
    ref_db = Database(str(tmp_path / "ref.db"))
    migrate(ref_db)
    ref = Ledger(ref_db, issuer)
    for name, args in calls:
        getattr(ref, name)(*args)
    for dev, recs, st in batches:
        ingest(ref, dev, [{"seq": s, "record": base64.b64encode(r).decode()} for s, r in recs],
               base64.b64encode(st).decode())
    want = ref.db.read(books)
    ref.db.close()
    clone = expect["clone"].hex()
    assert _order_free(got, clone) == _order_free(want, clone)


def _order_free(b: dict[str, Any], clone: str) -> dict[str, Any]:
    """The books without the one thing arrival order decides: which of the clone's two bodies
    is its payments row (the other is the case's second proof; both are credited either way)."""
    out = dict(b)
    out["payments"] = [p[:2] + p[3:4] if p[0] == clone else p for p in b["payments"]]
    return out
