"""A batch sent twice costs no signature work and changes nothing (issue #15): its payments
are recognised by their stored envelope bytes before any verify."""

from __future__ import annotations

import base64

from tapcash.firmware.core import ed25519
from tapcash.host.bench.ingest import Fleet
from tapcash.host.issuer import Issuer
from tapcash.host.ledger.db import Database
from tapcash.host.ledger.ingest import ingest
from tapcash.host.ledger.migrations import migrate
from tapcash.host.ledger.service import Ledger

TABLES = ("payments", "postings", "fraud_cases", "vouchers", "receipts")


def _snapshot(db: Database) -> dict:
    return db.read(lambda tx: {t: sorted(map(repr, tx.all(f"SELECT * FROM {t}")))
                               for t in TABLES})


def test_resent_batch_does_no_payment_verify(tmp_path, monkeypatch) -> None:
    db = Database(str(tmp_path / "l.db"))
    migrate(db)
    issuer = Issuer.generate()
    ledger = Ledger(db, issuer)
    fleet = Fleet(ledger, issuer, 1)
    wid, records, status = next(fleet.batches(50, 50))
    body = [{"seq": s, "record": base64.b64encode(r).decode()} for s, r in records]
    st = base64.b64encode(status).decode()
    calls = []
    real = ed25519.verify

    def counting(pk, msg, sig):  # noqa: ANN001, ANN202
        calls.append(msg[:1])
        return real(pk, msg, sig)

    monkeypatch.setattr(ed25519, "verify", counting)
    first = ingest(ledger, wid, body, st)
    assert first["accepted"] == 50
    assert len(calls) == 51  # the status + every payment
    before = _snapshot(db)
    calls.clear()
    again = ingest(ledger, wid, body, st)
    assert len(calls) == 1  # the status only: no payment signature checked again
    assert again["accepted"] == 0 and again["duplicates"] == 50
    assert again["upto"] == first["upto"]
    assert _snapshot(db) == before
    assert ledger.invariant()["ok"]
    db.close()
