"""A rogue reader makes an honest card pay a payee id that is no registered terminal (below
the no-CVM limit, so no PIN): the ledger refuses the payment and credits nobody. The value
never left the wallet's account, but it left the card: the payer gets it back as a voucher at
its next sync, once (issue #10: nothing a reader without the issuer's trust can send may change
money). SQLite and PostgreSQL, the real ledger over HTTP, the real firmware."""

from __future__ import annotations

from ledger_world import World, apdu, balance_of

from tapcash.firmware.core import cbor, proto
from tapcash.sim.device import provision as pv


def _pay_a_stranger(w, amount: int) -> None:
    pv.select(w.app)
    req = {proto.REQ_CHALLENGE: b"\x07" * 16, proto.REQ_AMOUNT: amount,
           proto.REQ_PAYEE: b"\xee" * 8, proto.REQ_TIME: 0, proto.REQ_KIND: proto.PAYKIND_POS}
    _d, sw = apdu(w.app, proto.INS_PAY, cbor.encode(req))
    assert sw == proto.SW_OK  # the card cannot tell: it checks no payee certificate


def test_a_payment_to_nobody_comes_back_to_the_card(world: World) -> None:
    w = world.wallet(1, load=10000)
    p = world.pos(1)
    _pay_a_stranger(w, 700)
    assert world.pay(w, p, 300).approved
    assert balance_of(w.app) == 9000
    res = world.sync(w)  # the card's own journal shows the payment to nobody
    assert res.refused == 1
    refunds = [v for v in world.client.books()["vouchers"] if v[3].startswith("refund:")]
    assert [(v[1], v[2]) for v in refunds] == [(700, proto.VSRC_TOPUP)]
    assert balance_of(w.app) == 9700  # loaded by the sync
    again = world.sync(w)
    assert again.vouchers == []  # once
    world.sync(p)
    books = world.client.books()
    assert books["balances"][f"wallet:{w.id.hex()}"] == 9700 == balance_of(w.app)
    assert world.client.report("merchants")[0]["owed"] == 300
    assert world.client.invariant()["ok"]


def test_a_revoked_payer_gets_no_refund(world: World) -> None:
    w = world.wallet(1, load=10000)
    _pay_a_stranger(w, 500)
    world.client.revoke(w.id, "stolen")
    records, status = world.export(w)
    world.client.ingest(w.id, records, status)
    assert not [v for v in world.client.books()["vouchers"] if v[3].startswith("refund:")]
