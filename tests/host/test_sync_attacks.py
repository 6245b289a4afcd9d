"""Attacks from the sync side and from rogue readers (issue #10, items 3 and 4), against the
real firmware, the real sync tool over a pseudo-terminal and the real ledger over HTTP.

* A **malicious sync host** is the real `sync_device` whose upload is edited on the way to
  the ledger: it substitutes a journal record, or uploads nothing after the card's flash was
  rolled back. The device's signed status binds the exported records (a hash chain over the
  journal as stored), the ledger acks only a chain it holds, and the device prunes only what
  an ack proves: nothing the ledger lacks is ever pruned, and a rollback is a fraud case.
* A **rogue reader** is a program sending APDUs a real POS would not: receipts with bad
  signatures, the same receipt field-shifted over and over. It can neither make the wallet
  unsyncable (the ledger sets a bad record aside and syncs the rest) nor fill its journal.

Each test reproduces the audit's attack and fails on the code before the fix.
"""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path
from typing import Any

import sync_world as sw
from wallet_helpers import receipt_for

from tapcash.firmware.core import cbor, proto
from tapcash.host.ledger.chain import verify_rollback
from tapcash.host.ledger.client import IngestResult
from tapcash.host.sync.ledger_link import LedgerLink
from tapcash.host.sync.outbox import Batch, Outbox
from tapcash.sim.device import provision as pv
from tapcash.sim.nfc.field import DirectLink

SEED = 31
PAY_INDEX = 1  # command index of PAY within a tap (SELECT 0, PAY 1, RECEIPT 2)
RECEIPT_INDEX = 2


# ---- the malicious sync host: the real sync tool, its upload edited -------------------------
class EditingLink(LedgerLink):
    """A compromised sync host: it runs the real sync tool but edits each batch before it
    reaches the ledger (`edit(batch) -> batch`). The ledger's answer goes back unchanged:
    the host cannot forge the ledger's signature."""

    def __init__(self, url: str, token: str, edit: Any) -> None:
        super().__init__(url, token)
        self.edit = edit
        self.replies: list[IngestResult] = []

    def submit(self, batch: Batch) -> IngestResult:
        res = super().submit(self.edit(batch))
        self.replies.append(res)
        return res


def edited(batch: Batch, records: list[tuple[int, bytes]]) -> Batch:
    return Batch(batch.device, batch.kind, batch.cert, records, batch.status, batch.created)


def record_map(raw: bytes) -> dict[int, Any]:
    return cbor.decode(raw)


def payment_counter(raw: bytes) -> int | None:
    rec = record_map(raw)
    if rec.get(proto.REC_TYPE) != proto.RT_PAYMENT:
        return None
    _b, body, _s = proto.open_envelope(rec[proto.REC_SIGNED])
    return body[proto.PAY_COUNTER]


def sync(scn: sw.Scenario, app: Any, link: Any, name: str = "outbox") -> Any:
    return sw.pty_sync(app, link, Outbox(scn.root / name))


def honest_sync(scn: sw.Scenario, app: Any) -> Any:
    with LedgerLink(scn.server.url, scn.server.token) as link:
        res = sync(scn, app, link, "honest-outbox")
    assert res.outcome == "synced", res
    return res


def wallet_payments(scn: sw.Scenario, wallet: bytes) -> set[int]:
    """The counters of every payment of `wallet` the ledger holds (from its books)."""
    return {int(c) for w, c, _h, _s, _cr in scn.client.books()["payments"] if w == wallet.hex()}


def merchant_balance(scn: sw.Scenario) -> int:
    bal = scn.client.books()["balances"]
    return sum(v for k, v in bal.items() if k.startswith("merchant:"))


def journal(app: Any) -> list[tuple[int, dict[int, Any]]]:
    return pv.export_all(app)[0]


def pay_walk_away(world: sw.World, wallet: int, pos: int, amount: int) -> None:
    """The card signs a payment but the terminal never gets the answer (the customer walked
    away mid-tap): the wallet's journal holds the only copy of it."""
    link = world.links[pos]

    def lose_pay_answer(k: int, apdu: bytes, resp: bytes) -> bytes:
        return b"\x6f\x00" if k == PAY_INDEX else resp

    link.alter_response = lose_pay_answer
    try:
        r = world.pay(wallet, pos, amount)
    finally:
        link.alter_response = None
    assert not r.approved


# ---- item 3: an ACK covers exactly what the ledger stored -----------------------------------
def test_host_substituting_a_wallet_record_cannot_make_the_card_prune_a_payment(
    scn: sw.Scenario,
) -> None:
    """The wallet's fourth payment exists only on the card. The host replaces that record with
    a copy of the third payment's (validly signed, already known). Before the fix the ledger
    acked the whole export, the card pruned the only copy, the merchant was never paid and
    the ledger's synced counter stuck below it: the card never got offline payments back."""
    pay_walk_away(scn.world, 1, 1, 700)
    recs = journal(scn.world.wallet())
    counters = {seq: payment_counter(cbor.encode(r)) for seq, r in recs}
    seq4 = next(s for s, c in counters.items() if c == 4)
    seq3 = next(s for s, c in counters.items() if c == 3)

    def substitute(batch: Batch) -> Batch:
        raw = dict(batch.records)
        return edited(batch, [(s, raw[seq3] if s == seq4 else r) for s, r in batch.records])

    with EditingLink(scn.server.url, scn.server.token, substitute) as bad:
        sync(scn, scn.world.wallet(), bad)
    # the card still holds the payment the ledger never received
    assert any(payment_counter(cbor.encode(r)) == 4 for _s, r in journal(scn.world.wallet()))
    assert 4 not in wallet_payments(scn, sw.W1)

    honest_sync(scn, scn.world.wallet())
    assert wallet_payments(scn, sw.W1) == {1, 2, 3, 4}
    assert merchant_balance(scn) == sum(sw.PAYMENTS) + 700
    info = pv.select(scn.world.wallet())
    assert info[proto.INFO_OFFLINE_LEFT] == proto.DEFAULT_LIMITS[proto.LIM_OFFLINE_COUNT]
    assert scn.client.invariant()["ok"]


def test_host_substituting_a_pos_record_cannot_make_the_terminal_prune_it(
    scn: sw.Scenario,
) -> None:
    """The POS journal's last payment is replaced by a copy of an earlier one. Before the fix
    the terminal pruned it on the ledger's ack and the merchant was never credited for it
    (the payer's card had not synced yet)."""
    pos = scn.world.terminal()
    recs = [(s, cbor.encode(r)) for s, r in journal(pos)]
    assert len(recs) == 3
    (s1, r1), _x, (s3, _r3) = recs

    def substitute(batch: Batch) -> Batch:
        return edited(batch, [(s, r1 if s == s3 else r) for s, r in batch.records])

    with EditingLink(scn.server.url, scn.server.token, substitute) as bad:
        sync(scn, pos, bad)
    assert [s for s, _r in journal(pos)][-1] == s3  # not pruned: the ledger lacks it
    assert merchant_balance(scn) == sum(sw.PAYMENTS[:2])

    honest_sync(scn, pos)
    assert merchant_balance(scn) == sum(sw.PAYMENTS)
    assert journal(pos) == []
    assert scn.client.invariant()["ok"]


def test_host_dropping_a_record_gets_no_ack_past_it(scn: sw.Scenario) -> None:
    """Uploading the export without its first record: the ledger holds the rest, but an ack
    means "every record up to here, exactly these": nothing is pruned."""
    pos = scn.world.terminal()
    before = journal(pos)

    def drop_first(batch: Batch) -> Batch:
        return edited(batch, batch.records[1:])

    with EditingLink(scn.server.url, scn.server.token, drop_first) as bad:
        sync(scn, pos, bad)
    assert journal(pos) == before
    honest_sync(scn, pos)
    assert journal(pos) == [] and merchant_balance(scn) == sum(sw.PAYMENTS)


def assert_rollback_proof(app: Any, case: dict[str, Any]) -> None:
    """The case proves the rollback from its own bytes and the device's certified key: two
    statuses the device signed, and a chain path that puts them on two journal histories."""
    _b, cert, _s = proto.open_envelope(sw.cert_of(app))
    key = cert[proto.CERT_KEY]
    a, b, ev = (base64.b64decode(case[k]) for k in ("proof_a", "proof_b", "evidence"))
    assert verify_rollback(key, a, b, ev)
    assert not verify_rollback(key, b, a, ev)  # the proof is not symmetric in its parts
    assert not verify_rollback(hashlib.sha256(b"another key").digest(), a, b, ev)
    _x, body_a, _y = proto.open_envelope(a)
    assert case["counter"] == body_a[proto.ST_SEQ]


def _rolled_back_world(root: Path) -> tuple[sw.Scenario, dict[str, bytes]]:
    """A wallet loaded and synced (image taken), then it pays twice and syncs again (the card
    prunes both payments). The attacker writes the image back: counter 0 again."""
    scn = sw.prepared(root, SEED)
    world = scn.world
    world.links[2] = DirectLink(None)  # a second terminal: the first knows counter 4 was used
    world.pos[2] = pv.make_pos(world.issuer, 2, world.clock, world.links[2], seed=SEED)
    scn.client.register(sw.cert_of(world.terminal(2)))
    honest_sync(scn, scn.world.wallet())  # the three payments reach the ledger; voucher 2
    image = scn.world.wallets[1][1].snapshot()
    assert scn.world.pay(1, 1, 500).approved
    honest_sync(scn, scn.world.wallet())
    assert journal(scn.world.wallet()) == []
    scn.world.wallets[1][1].restore(image)
    scn.world.reboot_wallet()
    return scn, image


def test_host_uploading_nothing_after_a_rollback_cannot_erase_the_evidence(
    tmp_path: Path,
) -> None:
    """After the rollback the card signs a payment again under the counter it already used
    (its journal holds the only copy: the reader never got the answer). The colluding host
    uploads no records, only the card's status. Before the fix the ledger acked the status's
    seq and the card pruned the evidence of its own double spend; now that status is a
    rollback report (the ledger's signed statuses disagree with it) and nothing is pruned."""
    scn, _image = _rolled_back_world(tmp_path)
    try:
        world = scn.world
        pay_walk_away(world, 1, 2, 900)  # counter 4 again, other content
        evidence = [r for _s, r in journal(world.wallet())]
        assert any(payment_counter(cbor.encode(r)) == 4 for r in evidence)

        def nothing(batch: Batch) -> Batch:
            return edited(batch, [])

        with EditingLink(scn.server.url, scn.server.token, nothing) as bad:
            sync(scn, world.wallet(), bad)
        assert [r for _s, r in journal(world.wallet())] == evidence  # nothing pruned
        cases = scn.client.report("fraud")
        mine = [c for c in cases if c["wallet"] == sw.W1.hex()]
        assert [c["kind"] for c in mine] == ["rollback"], cases
        assert_rollback_proof(world.wallet(), mine[0])
        assert scn.client.hotlist().revoked == [sw.W1]
        assert scn.client.invariant()["ok"]
    finally:
        scn.close()


def test_rolled_back_card_synced_honestly_is_a_rollback_case_too(tmp_path: Path) -> None:
    """The same rolled-back card, synced by an honest host: its new records reach the ledger
    (the double spend is a counter conflict) and its status, whose journal history forks from
    the one the ledger holds, is a rollback case with both signed statuses as proof."""
    scn, _image = _rolled_back_world(tmp_path)
    try:
        pay_walk_away(scn.world, 1, 2, 900)
        with LedgerLink(scn.server.url, scn.server.token) as link:
            sync(scn, scn.world.wallet(), link)
        mine = [c for c in scn.client.report("fraud") if c["wallet"] == sw.W1.hex()]
        kinds = sorted(c["kind"] for c in mine)
        assert "rollback" in kinds and "counter_conflict" in kinds, kinds
        assert_rollback_proof(scn.world.wallet(), next(c for c in mine
                                                       if c["kind"] == "rollback"))
        assert scn.client.invariant()["ok"]
    finally:
        scn.close()


def test_card_state_written_back_without_its_journal_is_a_rollback_case(tmp_path: Path) -> None:
    """Only the state record is written back (counter and balance of an old image), the
    journal is left as it is: the card's next export is genuine and extends the ledger's
    chain, but its signed counter went down along that chain. A rollback case, with proof."""
    scn = sw.prepared(tmp_path, SEED)
    try:
        world = scn.world
        world.links[2] = DirectLink(None)
        world.pos[2] = pv.make_pos(world.issuer, 2, world.clock, world.links[2], seed=SEED)
        scn.client.register(sw.cert_of(world.terminal(2)))
        flash = world.wallets[1][1]
        honest_sync(scn, world.wallet())  # counter 3 on the ledger's chain
        old = {k: v for k, v in flash.snapshot().items() if k.startswith("wallet.")}
        assert old  # the state's two slots
        assert world.pay(1, 1, 100).approved and world.pay(1, 1, 100).approved
        honest_sync(scn, world.wallet())  # counter 5
        image = flash.snapshot()
        image.update(old)
        flash.restore(image)
        world.reboot_wallet()
        assert pv.select(world.wallet())[proto.INFO_COUNTER] == 3
        assert world.pay(1, 2, 100).approved  # counter 4 again, at a terminal that never saw it
        with LedgerLink(scn.server.url, scn.server.token) as link:
            sync(scn, world.wallet(), link)
        mine = [c for c in scn.client.report("fraud") if c["wallet"] == sw.W1.hex()]
        rollback = [c for c in mine if c["kind"] == "rollback"]
        assert len(rollback) == 1, mine
        assert_rollback_proof(world.wallet(), rollback[0])
        assert scn.client.invariant()["ok"]
    finally:
        scn.close()


# ---- item 4: a rogue reader can neither block a sync nor fill the journal -----------------
def forged_receipt(wallet: Any, seq: int = 1, key_seed: bytes = b"rogue") -> bytes:
    """A receipt naming the wallet's last payment, signed by a key no issuer certified."""
    pv.select(wallet)
    last = pv.call(wallet, proto.INS_GET_LAST, what="GET LAST")
    rogue = hashlib.sha256(key_seed).digest()
    return receipt_for(last, {proto.RCPT_TIME: pv.T0}, seq=seq, pos_seed=rogue)


def rogue_receipt_sw(wallet: Any, receipt: bytes) -> int:
    pv.select(wallet)
    resp = wallet.process(proto.build_command(proto.CLA_PROP, proto.INS_RECEIPT, 0, 0, receipt))
    return proto.split_response(resp)[1]


def test_a_forged_receipt_on_the_card_does_not_block_its_sync(scn: sw.Scenario) -> None:
    """The genuine receipt never reached the card (it left the field); a rogue reader then
    hands it a receipt signed by nobody the issuer trusts. The card cannot check POS
    signatures and keeps it. Before the fix the ledger refused the whole batch for it, at
    every sync, forever: the card's payments never reached the ledger from the card."""
    world = scn.world
    link = world.links[1]

    def lose_receipt(k: int, apdu: bytes) -> bytes:
        return b"\x80\xff\x00\x00" if k == RECEIPT_INDEX else apdu  # the card never sees it

    link.alter_command = lose_receipt
    try:
        assert world.pay(1, 1, 650).approved
    finally:
        link.alter_command = None
    assert rogue_receipt_sw(world.wallet(), forged_receipt(world.wallet())) == proto.SW_OK

    res = honest_sync(scn, world.wallet())
    assert res.ledger_result["accepted"] == len(sw.PAYMENTS) + 1
    assert journal(world.wallet()) == []
    assert wallet_payments(scn, sw.W1) == {1, 2, 3, 4}
    assert merchant_balance(scn) == sum(sw.PAYMENTS) + 650
    aside = scn.client.report("set_aside")
    assert [(r["device"], r["type"]) for r in aside] == [(sw.W1.hex(), proto.RT_RECEIPT)]
    assert "signature" in aside[0]["reason"]
    assert scn.client.invariant()["ok"]


def test_a_rogue_reader_cannot_fill_the_journal_with_receipts(scn: sw.Scenario) -> None:
    """A reader sends receipt after receipt naming the last payment (each with another seq,
    so none is byte-identical to the one before). Before the fix every one was journaled
    until the journal was full, and the next honest payment was declined `card_full`."""
    wallet = scn.world.wallet()
    stored = 0
    for i in range(80):
        if rogue_receipt_sw(wallet, forged_receipt(wallet, seq=1000 + i)) == proto.SW_OK:
            stored += 1
    assert stored <= 1  # at most one receipt per payment, ever
    r = scn.world.pay(1, 1, 100)
    assert r.approved, r.reason
    honest_sync(scn, wallet)
    assert scn.client.invariant()["ok"]
