"""The ledger checks the certificate hash of a POS journal record (PROTOCOL.md 2 rev 1.1 §3.4,
issue #14: it was never checked). It must name a certificate the ledger registered or renewed
for the payer; one it does not know is kept as evidence (set aside, the payment stands: the
wallet signed it); a record without it is malformed (400, nothing stored)."""

from __future__ import annotations

import pytest
from ledger_world import Dev, World

from tapcash.firmware.core import cbor, proto
from tapcash.host.ledger.client import LedgerHTTPError


def _records_with(records: list[tuple[int, bytes]], change) -> list[tuple[int, bytes]]:
    out = []
    for seq, raw in records:
        rec = cbor.decode(raw)
        change(rec)
        out.append((seq, cbor.encode(rec)))
    return out


def _status_for(shop: Dev, records: list) -> bytes:
    """The status a tampered POS signs over `records` with its own key (seq 1 on)."""
    digest = bytes(32)
    for seq, raw in records:
        digest = proto.journal_link(digest, seq, raw)
    body = {proto.ST_DEVICE: shop.id, proto.ST_SEQ: records[-1][0], proto.ST_DIGEST: digest}
    return proto.seal(proto.TAG_STATUS, body, shop.app.cf[1])


def test_an_honest_pos_names_the_registered_or_a_renewed_certificate(world: World) -> None:
    w = world
    a = w.wallet(1, load=3000)
    shop = w.pos(1)
    assert w.pay(a, shop, 500).approved
    w.client.renew(a.id)
    w.sync(a)  # the renewed certificate reaches the card
    assert w.pay(a, shop, 700).approved  # under the new certificate
    records, _status = w.export(shop)
    assert len({cbor.decode(raw)[proto.REC_CERT_HASH] for _s, raw in records}) == 2
    res = w.sync(shop)
    assert (res.accepted + res.duplicates, res.raw["set_aside"]) == (2, 0)
    assert w.client.report("set_aside") == []


def test_a_certificate_hash_the_ledger_does_not_know_is_set_aside(world: World) -> None:
    w = world
    a = w.wallet(1, load=3000)
    shop = w.pos(1)
    assert w.pay(a, shop, 500).approved
    records, _status = w.export(shop)
    # the POS's own journal says another certificate (a tampered POS: its key signs the chain)
    bad = _records_with(records, lambda r: r.__setitem__(proto.REC_CERT_HASH, b"\x01" * 32))
    status = _status_for(shop, bad)
    res = w.client.ingest(shop.id, bad, status)
    assert (res.accepted, res.raw["set_aside"]) == (1, 1)  # credited all the same
    rows = w.client.report("set_aside")
    assert len(rows) == 1 and "names no certificate" in rows[0]["reason"]


def test_a_pos_record_without_a_certificate_hash_is_malformed(world: World) -> None:
    w = world
    a = w.wallet(1, load=3000)
    shop = w.pos(1)
    assert w.pay(a, shop, 500).approved
    records, _status = w.export(shop)
    bad = _records_with(records, lambda r: r.pop(proto.REC_CERT_HASH))
    status = _status_for(shop, bad)
    with pytest.raises(LedgerHTTPError) as e:
        w.client.ingest(shop.id, bad, status)
    assert e.value.status == 400 and "certificate hash" in str(e.value)
    assert all(m["credited"] == 0 for m in w.client.report("merchants"))
