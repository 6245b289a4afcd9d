"""Attacks on runs of payments (one `payment` posting `W:lo-hi` for consecutive counters of one
wallet to one payee, postings.Book.pay), with the real firmware over real HTTP on SQLite and
PostgreSQL: a cloned card's conflicting bodies for counters inside a run, a run broken by a
shortfall, the same run uploaded by the POS and by the wallet in overlapping parts. After each:
every posting is explained by its payments rows (ledger check), the wallet statement and the
merchant report show each payment once, and the books balance."""

from __future__ import annotations

import ledger_world as lw
from ledger_world import World
from test_ledger_attacks import rewrite_state, roll_back

from tapcash.firmware.wallet import state as wst
from tapcash.host.ledger import postings as P
from tapcash.host.ledger import reports


def _payment_postings(w: World, wid: bytes) -> list[tuple[str, str, int, str]]:
    h = wid.hex()
    return w.ledger.db.read(lambda tx: [(s, d, int(a), r) for s, d, a, r in tx.all(
        "SELECT src, dst, amount, ref FROM postings WHERE kind = 'payment' AND ref >= ? AND "
        "ref < ? ORDER BY id", (h + ":", h + ";"))])


def _statement_payments(w: World, wid: bytes) -> list[tuple[str, int, str]]:
    st = w.ledger.db.read(lambda tx: reports.wallet_statement(tx, wid))
    assert st["lines"][-1]["balance"] == st["balance"] if st["lines"] else True
    return sorted((ln["ref"], ln["amount"], ln["counterparty"]) for ln in st["lines"]
                  if ln["kind"] == "payment")


def _checked(w: World) -> dict:
    inv = w.ledger.invariant()
    assert inv["ok"] and inv["runs"] == [], inv
    return inv


def test_a_clone_spending_counters_of_a_run_again_at_another_pos(world: World) -> None:
    """Counters 1..3 paid at POS 1 (a run), the card rolled back and 1..4 paid at POS 2: POS 2
    uploads first (its 1..4 is the run), then POS 1 (1..3 conflicting bodies: each guaranteed
    once to its POS under its own ref, a case each), then the card."""
    w = world
    a = w.wallet(1, load=2000)
    p1, p2 = w.pos(1), w.pos(2)
    image = a.flash.snapshot()
    for _ in range(3):
        assert w.pay(a, p1, 100).approved
    roll_back(a, image)
    for _ in range(4):
        assert w.pay(a, p2, 100).approved
    r2 = w.sync(p2)
    assert r2.accepted == 4
    h = a.id.hex()
    m1, m2 = P.merchant_acct(p1.merchant), P.merchant_acct(p2.merchant)
    assert [(d, am, r) for _s, d, am, r in _payment_postings(w, a.id)] == [(m2, 400, f"{h}:1-4")]
    r1 = w.sync(p1)
    assert r1.conflicts == 3
    w.sync(a)
    _checked(w)
    credited = {m["merchant"]: m["credited"] for m in w.client.report("merchants")}
    assert credited[p2.merchant.hex()] == 400 and credited[p1.merchant.hex()] == 300
    # the statement: the run payment by payment, and each conflicting body the wallet's books
    # covered under its own ref
    lines = _statement_payments(w, a.id)
    assert [x for x in lines if x[0].count(":") == 1] == sorted(
        [(f"{h}:{c}", -100, m2) for c in range(1, 5)])
    assert sorted((r.split(":")[1], am, d) for r, am, d in lines if r.count(":") == 2) == [
        (str(c), -100, m1) for c in range(1, 4)]
    assert w.ledger.db.read(lambda tx: int(tx.scalar(
        "SELECT balance FROM accounts WHERE name = ?", (P.wallet_acct(a.id),)))) == 1300


def test_a_run_broken_by_a_shortfall_then_uploaded_again_by_the_card(world: World) -> None:
    """A card loaded with 2.50 whose flash says 100.00 pays 1.00 four times: 1..2 are a run,
    3 is covered 0.50 (its own posting and a guarantee), 4 is all guarantee. The card's own
    upload of the same counters changes nothing."""
    w = world
    a = w.wallet(1, load=250)
    p = w.pos(1)
    s = a.app.state
    rewrite_state(a, balance=10_000, sync_counter=s[wst.S_COUNTER], sync_spent=s[wst.S_SPENT])
    for _ in range(4):
        assert w.pay(a, p, 100).approved
    res = w.sync(p)
    assert res.loss == 150
    h, m = a.id.hex(), P.merchant_acct(p.merchant)
    want = [(P.wallet_acct(a.id), m, 200, f"{h}:1-2"), (P.wallet_acct(a.id), m, 50, f"{h}:3")]
    assert sorted(_payment_postings(w, a.id)) == sorted(want)
    before = w.client.report("merchants")
    w.sync(a)
    assert w.client.report("merchants") == before
    assert sorted(_payment_postings(w, a.id)) == sorted(want)
    assert _statement_payments(w, a.id) == sorted(
        [(f"{h}:1", -100, m), (f"{h}:2", -100, m), (f"{h}:3", -50, m)])
    # in the statement's order, each line's balance is the wallet's after that payment
    st = w.ledger.db.read(lambda tx: reports.wallet_statement(tx, a.id))
    pays = [(ln["ref"], ln["balance"]) for ln in st["lines"] if ln["kind"] == "payment"]
    assert pays == [(f"{h}:1", 150), (f"{h}:2", 50), (f"{h}:3", 0)], pays
    inv = _checked(w)
    assert inv["fraud_loss"] == 150
    assert w.client.report("merchants")[0]["credited"] == 400


def test_overlapping_uploads_of_one_run_by_the_pos_and_the_card(world: World) -> None:
    """The card uploads counters 1..3 before the POS; then it pays 4..6; the POS uploads
    1..6 (1..3 duplicates, 4..6 a new run); the card again. Each counter is posted once."""
    w = world
    a = w.wallet(1, load=2000)
    p = w.pos(1)
    for _ in range(3):
        assert w.pay(a, p, 100).approved
    w.sync(a)
    for _ in range(3):
        assert w.pay(a, p, 100).approved
    res = w.sync(p)
    assert (res.accepted, res.duplicates) == (3, 3)
    w.sync(a)
    h, m = a.id.hex(), P.merchant_acct(p.merchant)
    assert [r for _s, _d, _a, r in _payment_postings(w, a.id)] == [f"{h}:1-3", f"{h}:4-6"]
    assert _statement_payments(w, a.id) == sorted(
        [(f"{h}:{c}", -100, m) for c in range(1, 7)])
    assert w.client.report("merchants")[0]["credited"] == 600
    assert w.client.report("merchants")[0]["payments"] == 6
    _checked(w)


def test_a_wallet_revoked_in_the_middle_of_a_batchs_run(world: World) -> None:
    """A clone pays POS 2 counters 1..2, the card rolled back pays POS 1 counters 1..5: POS 2
    uploads first (run 1..2); in POS 1's batch counters 1..2 conflict (a case: the wallet is
    revoked mid-batch), 3 breaks the stored chain (a case), 4..5 follow POS 1's own body 3.
    Every payment is posted once at most, every posting explained, the books balance."""
    w = world
    a = w.wallet(1, load=3000)
    p1, p2 = w.pos(1), w.pos(2)
    image = a.flash.snapshot()
    for _ in range(2):
        assert w.pay(a, p2, 100).approved
    roll_back(a, image)
    for _ in range(5):
        assert w.pay(a, p1, 100).approved
    assert w.sync(p2).accepted == 2
    res = w.sync(p1)
    assert a.id.hex() in res.revoked
    inv = _checked(w)
    h = a.id.hex()
    refs = [r for _s, _d, _a, r in _payment_postings(w, a.id)]
    assert refs[0] == f"{h}:1-2" and len(refs) == len(set(refs))
    rows = w.ledger.db.read(lambda tx: {int(c): (st, cr) for c, st, cr in tx.all(
        "SELECT counter, status, credited FROM payments WHERE wallet = ?", (a.id,))})
    assert sorted(rows) == [1, 2, 3, 4, 5]
    st = _statement_payments(w, a.id)
    posted = {f"{h}:{c}" for c, (s, _cr) in rows.items() if s == "posted"}
    assert {r for r, _am, _d in st if r.count(":") == 1} == posted
    credited = sum(m["credited"] for m in w.client.report("merchants"))
    owed = sum(m["owed"] for m in w.client.report("merchants"))
    assert credited == owed == 3000 - w.ledger.db.read(lambda tx: int(tx.scalar(
        "SELECT balance FROM accounts WHERE name = ?", (P.wallet_acct(a.id),)))) + inv[
            "fraud_loss"]


def test_a_double_spend_inside_one_batchs_run(world: World) -> None:
    """A rogue terminal (its key extracted) uploads in ONE batch a cloned card's two bodies for
    counter 2 amid its run: 1, 2, 2', 3. One body of counter 2 is credited, the other is a case
    and refused (one POS takes a counter once); each counter is paid once; the books balance."""
    from tapcash.firmware.core import cbor, proto

    w = world
    a = w.wallet(1, load=3000)
    p = w.pos(1)
    wimage, pimage = a.flash.snapshot(), p.flash.snapshot()
    first = [w.pay(a, p, 100).payment for _ in range(3)]
    records, _st = w.export(p, since=0)
    cert_hash = cbor.decode(records[0][1])[proto.REC_CERT_HASH]
    roll_back(a, wimage)
    w.reflash(p, pimage)
    second = [w.pay(a, p, 100).payment for _ in range(3)]
    assert first[1] != second[1]

    def item(env: bytes) -> tuple[bytes, bytes, bytes]:
        return env, proto.body_hash(proto.open_envelope(env)[0]), cert_hash

    recs, status, _d = lw.pos_journal(p.app.cf[1], p.id,
                                      [item(first[0]), item(first[1]), item(second[1]),
                                       item(first[2])])
    res = w.client.ingest(p.id, recs, status)
    assert res.conflicts >= 1 and a.id.hex() in res.revoked
    inv = _checked(w)
    m = P.merchant_acct(p.merchant)
    merchants = w.client.report("merchants")
    wallet = w.ledger.db.read(lambda tx: int(tx.scalar(
        "SELECT balance FROM accounts WHERE name = ?", (P.wallet_acct(a.id),))))
    assert merchants[0]["credited"] == 3000 - wallet + inv["fraud_loss"]
    assert merchants[0]["credited"] <= 300  # counters 1..3, each once
    st = _statement_payments(w, a.id)
    assert len({r for r, _am, _d in st}) == len(st)
    assert all(d == m for _r, _am, d in st)
