"""Attacks on runs of payments (one `payment` posting `W:lo-hi` for consecutive counters of one
wallet to one payee, postings.Book.pay), with the real firmware over real HTTP on SQLite and
PostgreSQL: a cloned card's conflicting bodies for counters inside a run, a run broken by a
shortfall, the same run uploaded by the POS and by the wallet in overlapping parts. After each:
every posting is explained by its payments rows (ledger check), the wallet statement and the
merchant report show each payment once, and the books balance."""

from __future__ import annotations

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
