"""The journal chain at the ledger, on SQLite and PostgreSQL (issue #10 items 3 and 4): an ack
covers exactly the records the ledger holds, a rolled-back device is a fraud case with a proof
that needs no trust in the ledger, and a receipt a rogue reader planted is set aside.

Real firmware (WalletApp / PosApp on SimFlash), the real ledger over HTTP; the sync host's edits
are made to what it uploads, the way a compromised host would."""

from __future__ import annotations

import base64
import hashlib
import os
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as hs
from ledger_world import World, apdu

from tapcash.firmware.core import cbor, proto
from tapcash.host.ledger import chain
from tapcash.host.ledger.chain import records_digest, verify_rollback
from tapcash.sim.device import provision as pv


def test_an_edited_upload_gets_no_ack_and_the_device_prunes_nothing(world: World) -> None:
    w = world.wallet(1, load=10000)
    p = world.pos(1)
    for amount in (100, 200, 300):
        assert world.pay(w, p, amount).approved
    records, status = world.export(p)
    # the chain the device signed is the one recomputed here from the bytes it exported
    _b, st, _s = proto.open_envelope(status)
    assert st[proto.ST_DIGEST] == records_digest(records)
    swapped = [records[0], records[1], (records[2][0], records[0][1])]
    res = world.client.ingest(p.id, swapped, status)
    assert res.upto == 0 and "not the ones the device journaled" in res.raw["ack_note"]
    assert apdu(p.app, proto.INS_ACK, res.ack)[1] == proto.SW_OK  # an ack of nothing
    assert [s for s, _r in world.export(p, since=0)[0]] == [1, 2, 3]
    assert world.client.report("merchants")[0]["owed"] == 300  # payments 1 and 2 are real
    res = world.sync(p)  # the honest upload
    assert res.upto == 3 and res.raw["ack_note"] is None and res.accepted == 1
    assert world.export(p, since=0)[0] == []
    assert world.client.report("fraud") == []


def test_a_status_without_its_records_after_a_rollback_is_a_rollback_case(world: World) -> None:
    w = world.wallet(1, load=10000)
    p1, p2 = world.pos(1), world.pos(2)
    flash = w.app.hal.flash
    image = flash.snapshot()
    for amount in (100, 200):
        assert world.pay(w, p1, amount).approved
    assert world.sync(w).upto >= 3
    world.reflash(w, image)  # the card's flash written back
    assert world.pay(w, p2, 700).approved  # counter 1 again, at a terminal that never saw it
    _records, status = world.export(w, since=0)
    res = world.client.ingest(w.id, [], status)  # the colluding host uploads no records
    assert res.upto == 0 and res.raw["rollback"] is True
    cases = world.client.report("fraud")
    assert [c["kind"] for c in cases] == ["rollback"]
    case = cases[0]
    _b, cert, _s = proto.open_envelope(pv.select(w.app)[proto.INFO_CERT])
    a, b, ev = (base64.b64decode(case[k]) for k in ("proof_a", "proof_b", "evidence"))
    assert verify_rollback(cert[proto.CERT_KEY], a, b, ev)
    assert not verify_rollback(cert[proto.CERT_KEY], a, b, ev[:-1])
    # the simulator's oracle, which shares no code with the ledger, agrees (sim/run/oracle.py)
    from tapcash.sim.run.oracle import Certs
    from tapcash.sim.run.oracle import verify_rollback as oracle_rollback

    certs = Certs(world.issuer.public_key)
    certs.add(pv.select(w.app)[proto.INFO_CERT])
    assert oracle_rollback(a, b, ev, certs) == (True, "two journal histories signed by one "
                                                      "device")
    assert not oracle_rollback(a, b, ev[:-1], certs)[0]
    assert not oracle_rollback(b, a, ev, certs)[0]
    assert world.client.hotlist().revoked == [w.id]
    # the card kept its evidence; uploaded later, it is a double spend as well
    res = world.client.ingest(w.id, world.export(w, since=0)[0], status)
    assert res.upto == 0
    kinds = sorted(c["kind"] for c in world.client.report("fraud"))
    assert kinds == ["counter_conflict", "rollback"]


def test_a_receipt_from_nobody_is_set_aside_and_the_sync_goes_on(world: World) -> None:
    w = world.wallet(1, load=10000)
    p = world.pos(1)
    assert p.link is not None
    p.link.alter_command = lambda k, a: b"\x80\xff\x00\x00" if k == 2 else a  # receipt lost
    assert world.pay(w, p, 450).approved
    p.link.alter_command = None
    last = pv.call(w.app, proto.INS_GET_LAST)
    body_bytes, body, _s = proto.open_envelope(last)
    rogue = proto.seal(proto.TAG_RECEIPT, {
        proto.RCPT_POS: p.id, proto.RCPT_WALLET: w.id, proto.RCPT_COUNTER: 1,
        proto.RCPT_AMOUNT: 450, proto.RCPT_PAYMENT_HASH: hashlib.sha256(body_bytes).digest(),
        proto.RCPT_SEQ: 1, proto.RCPT_TIME: 0}, hashlib.sha256(b"rogue").digest())
    assert apdu(w.app, proto.INS_RECEIPT, rogue)[1] == proto.SW_OK
    other = cbor.encode([cbor.decode(rogue)[0], b"\x00" * 64])
    assert apdu(w.app, proto.INS_RECEIPT, other)[1] == proto.SW_CONDITIONS  # one per payment
    res = world.sync(w)
    assert res.accepted == 1 and res.raw["set_aside"] == 1 and res.upto == 3
    aside = world.client.report("set_aside")
    assert [(r["seq"], r["type"]) for r in aside] == [(3, proto.RT_RECEIPT)]
    assert base64.b64decode(aside[0]["record"]) == cbor.encode(
        {proto.REC_TYPE: proto.RT_RECEIPT, proto.REC_RECEIPT: rogue})
    assert world.export(w, since=0)[0] == []


def test_a_terminal_written_back_is_a_rollback_case_and_its_payments_still_count(
    world: World,
) -> None:
    """A POS's flash written back after a sync (its last-counter table with it): the journal
    it then writes reuses seqs the ledger holds. The terminal is a rollback case and revoked;
    the payments it took are wallet-signed and still credited once."""
    w = world.wallet(1, load=10000)
    p = world.pos(1)
    flash = p.app.hal.flash
    image = flash.snapshot()
    assert world.pay(w, p, 100).approved
    assert world.sync(p).upto == 1
    world.reflash(p, image)
    assert world.pay(w, p, 250).approved  # seq 1 again, another record
    res = world.sync(p)  # from seq 2 on, as the host last saw it: only the status
    assert res.upto == 0 and res.raw["rollback"] is True
    records, status = world.export(p, since=0)  # the terminal kept its record: evidence
    assert [s for s, _r in records] == [1]
    res = world.client.ingest(p.id, records, status)
    assert res.upto == 0 and res.accepted == 1
    case = world.client.report("fraud")[0]
    assert (case["kind"], case["wallet"], case["counter"]) == ("rollback", p.id.hex(), 1)
    _b, cert, _s = proto.open_envelope(cbor.decode(pv.call(p.app, proto.INS_GET_INFO))[
        proto.INFO_CERT])
    a, b, ev = (base64.b64decode(case[k]) for k in ("proof_a", "proof_b", "evidence"))
    assert verify_rollback(cert[proto.CERT_KEY], a, b, ev)
    assert world.client.hotlist().revoked == [p.id]
    assert world.client.report("merchants")[0]["owed"] == 350


def test_a_receipt_the_host_made_up_is_not_kept_as_the_devices_evidence(world: World) -> None:
    """A sync host puts a garbage receipt record in place of a real record: it is not what
    the device journaled (the chain says so), so it is neither set aside in the device's name
    nor acked; the honest upload then goes through."""
    w = world.wallet(1, load=10000)
    p = world.pos(1)
    assert world.pay(w, p, 300).approved
    records, status = world.export(w)
    fake = cbor.encode({proto.REC_TYPE: proto.RT_RECEIPT, proto.REC_RECEIPT: b"\x82\x41\x00"})
    assert cbor.decode(records[-1][1])[proto.REC_TYPE] == proto.RT_RECEIPT  # the POS's
    res = world.client.ingest(w.id, [*records[:-1], (records[-1][0], fake)], status)
    assert res.upto == 0 and res.raw["set_aside"] == 0 and res.accepted == 1  # a real payment
    assert world.client.report("set_aside") == []
    res = world.client.ingest(w.id, records, status)
    assert res.upto == records[-1][0] and res.duplicates == 1
    assert world.client.report("set_aside") == []


# ---- property: whatever the host does to the upload, nothing the ledger lacks is pruned ----------
EDITS = ("pay", "pay", "honest", "drop", "swap", "reorder", "split", "replay", "nothing")


@settings(max_examples=int(os.environ.get("TAPCASH_CHAIN_EXAMPLES", "12")), deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(hs.lists(hs.tuples(hs.sampled_from(EDITS), hs.integers(0, 10**6)), min_size=3,
                max_size=12))
def test_no_edit_of_an_upload_makes_a_device_prune_what_the_ledger_lacks(steps) -> None:
    """A sync host that drops, swaps, reorders, splits or replays what it uploads, at random,
    among honest payments and syncs (SQLite; TAPCASH_CHAIN_EXAMPLES sets the examples): every
    ack the ledger signs is taken by the device, every record a device pruned is one the ledger
    holds byte for byte, no honest device is ever a fraud case, and a final honest sync of each
    device credits the merchant exactly what was paid."""
    with tempfile.TemporaryDirectory() as tmp:
        world = World(str(Path(tmp) / "ledger.db"))
        try:
            _edited_uploads(world, steps)
        finally:
            world.close()


def _edited_uploads(world: World, steps) -> None:
    w = world.wallet(1, load=50000)
    p = world.pos(1)
    journaled: dict[bytes, dict[int, bytes]] = {w.id: {}, p.id: {}}
    seen: dict[bytes, list] = {w.id: [], p.id: []}
    paid = 0
    for action, r in steps:
        if action == "pay":
            amount = 100 + r % 900
            if world.pay(w, p, amount).approved:
                paid += amount
            continue
        dev = w if r % 2 else p
        records, status = pv.export_raw(dev.app)
        for s, rec in records:
            assert journaled[dev.id].setdefault(s, rec) == rec
        seen[dev.id].append((records, status))
        n = len(records)
        uploads = [(records, status)]
        if action == "drop" and n:
            uploads = [([x for i, x in enumerate(records) if i != r % n], status)]
        elif action == "swap" and n > 1:
            i, j = r % n, (r // n) % (n - 1)
            j = j + 1 if j >= i else j
            swapped = [(s, records[j][1] if k == i else rec) for k, (s, rec) in enumerate(records)]
            uploads = [(swapped, status)]
        elif action == "reorder":
            uploads = [(records[::-1], status)]
        elif action == "split" and n > 1:
            cut = 1 + r % (n - 1)
            uploads = [(records[cut:], status), (records[:cut], status)]
        elif action == "replay":
            uploads = [seen[dev.id][r % len(seen[dev.id])]]
        elif action == "nothing":
            uploads = [([], status)]
        res = None
        for recs, st in uploads:
            res = world.client.ingest(dev.id, recs, st)
        world.deliver(dev, res)  # the device takes every ack the ledger signs
        held = world.ledger.db.read(lambda tx, d=dev.id: chain.held_hashes(tx, d))
        for s in range(1, dev.app.journal.floor + 1):
            assert held.get(s) == hashlib.sha256(journaled[dev.id][s]).digest(), (action, s)
        assert world.client.report("fraud") == []
    for dev in (p, w, w):  # the wallet twice: a sync that loads vouchers journals them
        records, status = pv.export_raw(dev.app)
        world.deliver(dev, world.client.ingest(dev.id, records, status))
    assert p.app.journal.count() == 0 and w.app.journal.count() == 0
    assert world.client.report("fraud") == []
    owed = world.client.report("merchants")[0]["owed"]
    assert owed == paid
