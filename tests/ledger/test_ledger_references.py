"""A caller's reference is applied at most once (host/ledger/once.py, docs/LEDGER.md §4): a
deposit, a wallet load and a settlement retried under the same reference are answered as the
first time (200, `replayed`) and nothing is applied twice; another request under it is a 409
problem naming what differs. Over real HTTP on SQLite and PostgreSQL, and on PostgreSQL with
identical requests racing each other through two server processes.

Found: 16 identical concurrent deposits under one reference gave 16 x 200 and 16 credits; a
script retrying a deposit or a load after a timeout credited twice."""

from __future__ import annotations

import base64
import threading
from pathlib import Path

import httpx
import ledger_world as lw
import pytest
from cli_run import run_cli
from ledger_process import LedgerServe
from ledger_world import TOKEN, World

from tapcash.firmware.core import ed25519, proto
from tapcash.host.bench.ingest import NO_LIMITS
from tapcash.host.issuer import Issuer
from tapcash.host.ledger.client import LedgerClient, LedgerHTTPError
from tapcash.host.ledger.db import Database
from tapcash.host.ledger.migrations import STEPS, migrate

pg_admin = lw.pg_admin
RACERS = 16


def _refused(fn) -> LedgerHTTPError:
    with pytest.raises(LedgerHTTPError) as e:
        fn()
    return e.value


def test_a_deposit_retried_under_its_reference_is_credited_once(world: World) -> None:
    c = world.client
    first = c.deposit("acme", 5000, "bank-4711")
    assert first["balance"] == 5000 and first["replayed"] is False
    again = c.deposit("acme", 5000, "bank-4711")
    assert again == first | {"replayed": True}  # the first answer, balance and posting ref
    assert c.owner("acme")["balance"] == 5000
    other = _refused(lambda: c.deposit("acme", 6000, "bank-4711"))
    assert other.status == 409
    assert "bank-4711" in other.detail and "amount 50.00 then, 60.00 now" in other.detail
    assert other.problem["applied"] == {"owner": "acme", "amount": 5000}
    moved = _refused(lambda: c.deposit("bob", 5000, "bank-4711"))
    assert moved.status == 409 and "owner acme then, bob now" in moved.detail
    assert c.owner("acme")["balance"] == 5000
    assert _refused(lambda: c.owner("bob")).status == 404  # the refused deposit opened nothing
    # Without a reference nothing is remembered: each deposit is its own (as before).
    c.deposit("acme", 100)
    c.deposit("acme", 100)
    assert c.owner("acme")["balance"] == 5200
    assert c.invariant()["ok"]


def test_a_load_retried_under_its_reference_is_one_voucher(world: World) -> None:
    c = world.client
    w = world.wallet(1, owner="alice")
    c.deposit("alice", 10000)
    c.deposit("payco", 10000)
    first = c.top_up(w.id, 2500, "desk-1")
    again = c.top_up(w.id, 2500, "desk-1")
    assert again == first | {"replayed": True}  # the same voucher, the same number
    # owner named or left to the wallet's: the same payer, the same load
    assert c.top_up(w.id, 2500, "desk-1", "alice")["voucher"] == first["voucher"]
    pending = world.ledger.pending(w.id)["vouchers"]
    assert [v["number"] for v in pending] == [first["number"]]
    assert c.owner("alice")["balance"] == 7500
    e = _refused(lambda: c.top_up(w.id, 2600, "desk-1"))
    assert e.status == 409 and "amount 25.00 then, 26.00 now" in e.detail
    e = _refused(lambda: c.top_up(w.id, 2500, "desk-1", "payco"))
    assert e.status == 409 and "owner alice then, payco now" in e.detail
    # the card takes the voucher once: the replayed one is the very voucher it holds
    voucher = base64.b64decode(again["voucher"])
    assert lw.apdu(w.app, proto.INS_LOAD, voucher)[1] == proto.SW_OK
    assert lw.apdu(w.app, proto.INS_LOAD, voucher)[1] == proto.SW_REPLAY
    assert lw.balance_of(w.app) == 2500
    assert c.device(w.id)["next_voucher"] == first["number"] + 1
    assert c.owner("payco")["balance"] == 10000
    # a reference is per wallet: cards loaded under one label ("first load") are a load each
    w2 = world.wallet(2, owner="alice")
    second = c.top_up(w2.id, 2500, "desk-1")
    assert second["replayed"] is False and second["voucher"] != first["voucher"]
    assert c.owner("alice")["balance"] == 5000
    assert c.invariant()["ok"]


def test_a_settlement_retried_under_its_reference_pays_nothing_more(world: World) -> None:
    c = world.client
    wal, pos = world.wallet(1, load=5000), world.pos(1)
    assert world.pay(wal, pos, 1200).approved
    world.sync(pos)
    first = c.settle(pos.merchant, "batch-7")
    assert first["amount"] == 1200 and first["replayed"] is False
    assert world.pay(wal, pos, 300).approved  # owed again when the retry comes
    world.sync(pos)
    again = c.settle(pos.merchant, "batch-7")
    assert again == first | {"replayed": True}
    done = run_cli("ledger", "settle", pos.merchant.hex(), "--reference", "batch-7", "--url",
                   world.server.url, "--token", TOKEN)
    assert done.returncode == 0, done.stderr
    assert (f"already applied: reference batch-7 is settlement {first['settlement']} of "
            f"merchant {pos.merchant.hex()}: 12.00; nothing paid now") in done.stdout
    assert "0 settlements, total 0.00" in done.stdout
    assert len(c.report("settlements")) == 1
    assert c.report("merchants")[0]["owed"] == 300
    assert c.settle(pos.merchant, "batch-8")["amount"] == 300  # a new payout: a new reference
    assert c.invariant()["ok"]


def test_the_openapi_document_names_the_replay_and_the_conflict(world: World) -> None:
    spec = httpx.get(world.server.url + "/openapi.json").json()
    for path in ("/v1/owners/{owner}/deposit", "/v1/wallets/{wallet_id}/load"):
        resp = spec["paths"][path]["post"]["responses"]
        assert "replayed" in resp["200"]["description"]
        assert "already applied to another request" in resp["409"]["description"]
    settle = spec["paths"]["/v1/merchants/{merchant_id}/settle"]["post"]["responses"]
    assert "replayed" in settle["200"]["description"]
    assert "replayed" in spec["components"]["schemas"]["DepositOut"]["properties"]


def _racers(url: str, fire) -> list[object]:
    """RACERS threads, each with its own connection, released together: their answers."""
    out: list[object] = [None] * RACERS
    go = threading.Barrier(RACERS)

    def run(i: int) -> None:
        with LedgerClient(url, TOKEN, timeout=120) as cl:
            go.wait()
            try:
                out[i] = fire(cl, i)
            except LedgerHTTPError as e:
                out[i] = e
            except BaseException as e:  # noqa: BLE001 - asserted below
                out[i] = e

    threads = [threading.Thread(target=run, args=(i,)) for i in range(RACERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out


def test_identical_requests_racing_on_postgresql_are_applied_once(pg_admin: str,
                                                                  tmp_path: Path) -> None:
    issuer = Issuer.generate()
    key = tmp_path / "issuer.key"
    issuer.save(key)
    with lw.pg_schema(pg_admin) as db:
        migrate(Database(db, pool_size=1))
        srv = LedgerServe(db, key, TOKEN, args=["--workers", "2", "--pool", "8",
                                                "--log-level", "warning"])
        try:
            wid = bytes.fromhex("00000000000000b1")
            with LedgerClient(srv.url, TOKEN) as c:
                c.register(issuer.certify_wallet(wid, ed25519.public_key(bytes(32)),
                                                 expires=2**40, limits=NO_LIMITS), "alice")
            deps = _racers(srv.url, lambda cl, i: cl.deposit("alice", 70000, "wire-1"))
            assert all(isinstance(d, dict) for d in deps), deps
            assert sum(not d["replayed"] for d in deps) == 1  # type: ignore[index]
            assert {d["ref"] for d in deps} == {deps[0]["ref"]}  # type: ignore[index]
            loads = _racers(srv.url, lambda cl, i: cl.top_up(wid, 1000, "desk-9"))
            assert all(isinstance(v, dict) for v in loads), loads
            assert sum(not v["replayed"] for v in loads) == 1  # type: ignore[index]
            assert len({v["voucher"] for v in loads}) == 1  # type: ignore[index]
            # different contents racing under one reference: one applied, the others 409
            mixed = _racers(srv.url, lambda cl, i: cl.deposit("alice", 100 + i, "wire-2"))
            won = [m for m in mixed if isinstance(m, dict)]
            assert len(won) == 1 and not won[0]["replayed"], mixed
            assert all(isinstance(m, LedgerHTTPError) and m.status == 409
                       for m in mixed if m is not won[0]), mixed
            # one payroll reference from two payers at once: one paid, the others a 409 (the
            # reference's lock; before it the primary key failed the loser: a 500)
            wid2 = bytes.fromhex("00000000000000b2")  # each payer's own card: no lock shared
            with LedgerClient(srv.url, TOKEN) as c:
                c.deposit("bob", 5000)
                c.register(issuer.certify_wallet(wid2, ed25519.public_key(bytes(32)),
                                                 expires=2**40, limits=NO_LIMITS), "bob")
            pays = _racers(srv.url, lambda cl, i: cl.payroll(
                ("alice", "bob")[i % 2], f"{(wid, wid2)[i % 2].hex()},100\n", "pay-1"))
            paid = [p for p in pays if isinstance(p, dict)]
            assert len(paid) == 1, pays
            assert all(isinstance(p, LedgerHTTPError) and p.status == 409
                       for p in pays if p is not paid[0]), pays
            with LedgerClient(srv.url, TOKEN) as c:
                amount = next(100 + i for i, m in enumerate(mixed) if m is won[0])
                alice = 70000 - 1000 + amount - (100 if paid[0]["payer"] == "alice" else 0)
                assert c.owner("alice")["balance"] == alice
                assert c.owner("bob")["balance"] == 5000 - (100 if paid[0]["payer"] == "bob"
                                                            else 0)
                lines = [len(c.wallet_statement(w)["lines"]) for w in (wid, wid2)]
                assert lines == ([2, 0] if paid[0]["payer"] == "alice" else [1, 1])
                assert c.invariant()["ok"]
        finally:
            srv.stop()
        done = run_cli("ledger", "check", "--db", db)
        assert done.returncode == 0, done.stdout + done.stderr


def test_an_old_database_with_a_repeated_reference_migrates(tmp_path: Path) -> None:
    """Before step 11 a reference could be applied twice; such a database migrates (the new
    table starts empty: the history is not re-examined) and the reference is applied once
    more at most from then on."""
    db = Database(str(tmp_path / "old.db"), pool_size=1)
    try:
        def upto10(tx):
            from tapcash.host.ledger import migrations as m

            tx.execute("CREATE TABLE schema_version (version INTEGER PRIMARY KEY, "
                       "name TEXT NOT NULL, applied_at INTEGER NOT NULL)")
            for version, name, sql in STEPS[:10]:
                for stmt in m._statements(sql, "sqlite"):
                    tx.execute(stmt)
                tx.execute("INSERT INTO schema_version VALUES (?, ?, 0)", (version, name))
            for n in (1, 2):  # two settlements under one reference, as the old code allowed
                tx.execute("INSERT INTO settlements (merchant, amount, reference, at) VALUES "
                           "(?, 0, 'batch-1', ?)", (bytes(8), n))

        db.write(upto10)
        assert migrate(db)[0] == 11  # and any later step
        assert db.read(lambda tx: tx.scalar("SELECT COUNT(*) FROM operator_refs")) == 0
    finally:
        db.close()
