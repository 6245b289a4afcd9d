"""A run of payments is one posting (postings.Book.pay, docs/LEDGER.md §2): consecutive counters
of one wallet to one payee, each covered in full, posted in one batch as ONE `payment` posting
`W:lo-hi` whose amount is their sum. The books still explain every unit: the run's payments are
exactly the `payments` rows lo..hi of W, each credited to the posting's account, and the wallet
statement lists them one by one."""

from __future__ import annotations

import base64

from tapcash.host.bench.ingest import Fleet
from tapcash.host.issuer import Issuer
from tapcash.host.ledger import postings as P
from tapcash.host.ledger import reports
from tapcash.host.ledger.db import Database
from tapcash.host.ledger.ingest import ingest
from tapcash.host.ledger.migrations import migrate
from tapcash.host.ledger.service import Ledger


def _upload(ledger: Ledger, wid: bytes, records: list, status: bytes) -> dict:
    body = [{"seq": s, "record": base64.b64encode(r).decode()} for s, r in records]
    return ingest(ledger, wid, body, base64.b64encode(status).decode())


def test_a_batch_of_one_wallet_is_one_posting_that_explains_every_payment(db_url: str) -> None:
    db = Database(db_url)
    try:
        migrate(db)
        issuer = Issuer.generate()
        ledger = Ledger(db, issuer)
        fleet = Fleet(ledger, issuer, 2)
        batches = list(fleet.batches(120, 30))  # wallets a, b, a, b: 30 payments each
        for wid, records, status in batches:
            assert _upload(ledger, wid, records, status)["accepted"] == 30
        merchant = db.read(lambda tx: tx.scalar(
            "SELECT merchant FROM devices WHERE id = ?", (fleet.pos_id,)))
        dst = P.merchant_acct(bytes(merchant))
        for w in fleet.wallets:
            h = w["id"].hex()
            rows = db.read(lambda tx, h=h: tx.all(
                "SELECT src, dst, amount, ref FROM postings WHERE kind = 'payment' AND ref >= ? "
                "AND ref < ? ORDER BY id", (h + ":", h + ";")))
            assert [(s, d, int(a), r) for s, d, a, r in rows] == [
                (P.wallet_acct(w["id"]), dst, 30, f"{h}:1-30"),
                (P.wallet_acct(w["id"]), dst, 30, f"{h}:31-60")]
            for _s, _d, amount, ref in rows:
                run = P.parse_run(ref)
                assert run is not None
                got = db.read(lambda tx, r=run, w=w: tx.all(
                    "SELECT amount, credited, status FROM payments WHERE wallet = ? AND "
                    "counter BETWEEN ? AND ?", (w["id"], r[1], r[2])))
                assert len(got) == run[2] - run[1] + 1
                assert sum(int(a) for a, _c, _st in got) == int(amount)
                assert {(c, st) for _a, c, st in got} == {(dst, "posted")}
            st = db.read(lambda tx, w=w: reports.wallet_statement(tx, w["id"]))
            pays = [ln for ln in st["lines"] if ln["kind"] == "payment"]
            assert [ln["ref"] for ln in pays] == [f"{h}:{c}" for c in range(1, 61)]
            assert all(ln["amount"] == -1 and ln["counterparty"] == dst for ln in pays)
            assert st["lines"][-1]["balance"] == st["balance"]
        assert ledger.invariant()["ok"]
        # `ledger check` holds each run to its payments: a payments row changed is found
        w, h = fleet.wallets[0]["id"], fleet.wallets[0]["id"].hex()
        db.write(lambda tx: tx.execute(
            "UPDATE payments SET amount = 2 WHERE wallet = ? AND counter = 7", (w,)))
        inv = ledger.invariant()
        assert not inv["ok"] and [(r["ref"], r["amount"], r["from_payments"])
                                  for r in inv["runs"]] == [(f"{h}:1-30", 30, 31)]
        assert any(f"({h}:1-30) is not its payments" in v for v in inv["violations"])
        db.write(lambda tx: tx.execute(
            "UPDATE payments SET amount = 1, credited = NULL WHERE wallet = ? AND counter = 7",
            (w,)))
        assert [r["ref"] for r in ledger.invariant()["runs"]] == [f"{h}:1-30"]
        db.write(lambda tx: tx.execute(
            "UPDATE payments SET credited = ? WHERE wallet = ? AND counter = 7", (dst, w)))
        assert ledger.invariant()["ok"]
    finally:
        db.close()


def test_parse_run_reads_only_payment_refs() -> None:
    assert P.parse_run("ab:7") == ("ab", 7, 7)
    assert P.parse_run("ab:3-9") == ("ab", 3, 9)
    assert P.run_ref("ab", 3, 9) == "ab:3-9" and P.run_ref("ab", 4, 4) == "ab:4"
    assert P.parse_run("ab:3:0123456789abcdef") is None  # a conflicting body's posting
    assert P.parse_run("ab:x-1") is None and P.parse_run("ab:") is None
