"""The held journal chain across schema step 12 (host/ledger/chain.py): a device synced by a
ledger before it (one journal_links row per seq), then by this one (one journal_blocks row per
batch). A rollback to a seq either kind of row holds is a case whose proof verifies, with the
evidence path read across both; an honest sync after the boundary acks as before."""

from __future__ import annotations

import base64

import pytest
from ledger_world import World

from tapcash.firmware.core import proto
from tapcash.host.ledger import chain
from tapcash.host.ledger.chain import verify_rollback
from tapcash.sim.device import provision as pv


def _as_old_rows(world: World, dev: bytes) -> int:
    """Rewrite a device's journal_blocks as the journal_links rows a ledger before step 12
    stored; the number of rows."""
    def fn(tx):
        rows = []
        for lo, _hi, rh, lk in tx.all("SELECT lo, hi, rhashes, links FROM journal_blocks WHERE "
                                      "device = ?", (dev,)):
            rh, lk = bytes(rh), bytes(lk)
            for i in range(len(rh) // 32):
                rows.append((dev, int(lo) + i, rh[32 * i: 32 * i + 32], lk[32 * i: 32 * i + 32]))
        tx.execute("DELETE FROM journal_blocks WHERE device = ?", (dev,))
        tx.executemany("INSERT INTO journal_links (device, seq, rhash, link) VALUES (?, ?, ?, ?)",
                       rows)
        return len(rows)

    return world.ledger.db.write(fn)


@pytest.mark.parametrize("back_to", ["old", "new"])
def test_a_rollback_across_old_links_and_new_blocks_is_a_case_with_proof(
        world: World, back_to: str) -> None:
    w = world.wallet(1, load=10000)
    p1, p2 = world.pos(1), world.pos(2)
    flash = w.app.hal.flash
    assert world.pay(w, p1, 100).approved
    if back_to == "old":
        image = flash.snapshot()
    assert world.pay(w, p1, 200).approved
    first = world.sync(w)
    assert first.upto >= 3
    assert _as_old_rows(world, w.id) == first.upto
    if back_to == "new":
        image = flash.snapshot()
    for amount in (300, 400):
        assert world.pay(w, p1, amount).approved
    second = world.sync(w)  # on top of the old rows: a block
    assert second.upto > first.upto and second.raw["ack_note"] is None
    held = world.ledger.db.read(lambda tx: chain.held_hashes(tx, w.id))
    assert sorted(held) == list(range(1, second.upto + 1))
    world.reflash(w, image)
    assert world.pay(w, p2, 700).approved  # a counter again, at a terminal that never saw it
    records, status = world.export(w, since=0)
    res = world.client.ingest(w.id, records, status)
    assert res.upto == 0 and res.raw["rollback"] is True
    cases = [c for c in world.client.report("fraud") if c["kind"] == "rollback"]
    assert len(cases) == 1
    _b, cert, _s = proto.open_envelope(pv.select(w.app)[proto.INFO_CERT])
    a, b, ev = (base64.b64decode(cases[0][k]) for k in ("proof_a", "proof_b", "evidence"))
    assert verify_rollback(cert[proto.CERT_KEY], a, b, ev)
    assert not verify_rollback(cert[proto.CERT_KEY], a, b, ev[:-1])
    assert world.client.hotlist().revoked == [w.id]
    assert world.ledger.invariant()["ok"]
