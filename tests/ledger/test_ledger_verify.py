"""Signatures checked in helper processes while the batch's transaction runs
(host/ledger/verify.py) give the answers of inline checks: a bad signature anywhere in the batch
is the same 400 and stores nothing; a helper that dies is a 503 and the next batch goes through."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from tapcash.firmware.core import cbor, proto
from tapcash.host.bench.ingest import Fleet
from tapcash.host.issuer import Issuer
from tapcash.host.ledger.db import Database
from tapcash.host.ledger.errors import LedgerError
from tapcash.host.ledger.ingest import ingest
from tapcash.host.ledger.migrations import migrate
from tapcash.host.ledger.service import Ledger

TABLES = ("payments", "postings", "fraud_cases", "vouchers", "journal_links", "journal_blocks",
          "accounts")


def _world(path: Path, procs: int) -> tuple[Database, Ledger, Fleet]:
    db = Database(str(path))
    migrate(db)
    issuer = Issuer.generate()
    ledger = Ledger(db, issuer, verify_procs=procs)
    return db, ledger, Fleet(ledger, issuer, 2)


def _wire(records: list[tuple[int, bytes]], status: bytes) -> tuple[list[dict], str]:
    return ([{"seq": s, "record": base64.b64encode(r).decode()} for s, r in records],
            base64.b64encode(status).decode())


def _bad_sig(record: bytes) -> bytes:
    rec = cbor.decode(record)
    body, sig = cbor.decode(rec[proto.REC_SIGNED])
    rec[proto.REC_SIGNED] = cbor.encode([body, bytes([sig[0] ^ 1]) + sig[1:]])
    return cbor.encode(rec)


def _snapshot(db: Database) -> dict:
    return db.read(lambda tx: {t: sorted(map(repr, tx.all(f"SELECT * FROM {t}")))
                               for t in TABLES})


@pytest.mark.parametrize("where", [3, 150, 199])
def test_a_bad_signature_is_the_same_400_with_helpers(tmp_path: Path, where: int) -> None:
    answers = []
    for procs in (0, 2):
        db, ledger, fleet = _world(tmp_path / f"l{procs}.db", procs)
        gen = fleet.batches(400, 200)
        wid, records, status = next(gen)
        assert ingest(ledger, wid, *_wire(records, status))["accepted"] == 200
        wid, records, status = next(gen)  # the other wallet
        records[where] = (records[where][0], _bad_sig(records[where][1]))
        before = _snapshot(db)
        with pytest.raises(LedgerError) as e:
            ingest(ledger, wid, *_wire(records, status))
        answers.append((e.value.status, e.value.detail))
        assert _snapshot(db) == before  # nothing of the batch stored
        assert ledger.invariant()["ok"]
        if ledger.verifier is not None:
            ledger.verifier.close()
        db.close()
    assert answers[0] == answers[1]
    assert answers[0] == (400, f"record {where + 1} payment: bad signature")


def test_a_helper_that_dies_is_a_503_and_the_next_batch_goes_through(tmp_path: Path) -> None:
    db, ledger, fleet = _world(tmp_path / "l.db", 1)
    assert ledger.verifier is not None
    gen = fleet.batches(600, 200)
    wid, records, status = next(gen)
    assert ingest(ledger, wid, *_wire(records, status))["accepted"] == 200
    for h in list(ledger.verifier._idle):
        h.proc.kill()
        h.proc.wait()
    wid, records, status = next(gen)
    body, st = _wire(records, status)
    with pytest.raises(LedgerError) as e:
        ingest(ledger, wid, body, st)
    assert e.value.status == 503
    res = ingest(ledger, wid, body, st)  # the upload retried: a new helper checks it
    assert res["accepted"] == 200 and res["upto"] == 200
    assert ledger.invariant()["ok"]
    ledger.verifier.close()
    db.close()


def test_batch_checks_answer_as_ed25519_verify() -> None:
    """verify.first_bad (libsodium called directly on the PyNaCl backend) fails exactly the
    checks ed25519.verify fails: a flipped bit in key, message or signature, a key or a
    signature of the wrong size, a bytearray, an empty message; the first failing index."""
    import os

    from tapcash.firmware.core import ed25519
    from tapcash.host.ledger.verify import first_bad

    seed = os.urandom(32)
    pk = ed25519.public_key(seed)
    good = []
    for n in (0, 1, 90, 300):
        msg = os.urandom(n)
        good.append((pk, msg, ed25519.sign(seed, msg)))
    pk0, m0, s0 = good[2]
    flip = bytes([s0[0] ^ 1]) + s0[1:]
    bad = [(pk0, m0 + b"x", s0), (pk0, m0, flip), (bytes([pk0[0] ^ 1]) + pk0[1:], m0, s0),
           (pk0[:31], m0, s0), (pk0, m0, s0[:63]), (pk0, m0, s0 + b"\0"), (b"", m0, s0),
           (bytearray(pk0), m0, flip)]
    assert first_bad(good) == -1 and first_bad([]) == -1
    assert first_bad(good + [(bytearray(pk0), bytearray(m0), bytearray(s0))]) == -1
    for b in bad:
        assert not ed25519.verify(*b)
        for at in range(len(good) + 1):
            checks = good[:at] + [b] + good[at:] + [b]
            assert first_bad(checks) == at
