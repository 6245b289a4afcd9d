"""A batch sent twice costs no signature work and changes nothing (issue #15): a batch acked
whole is recognised by a digest of its bytes before anything is decoded; a payment already
stored (brought again in another batch) by its stored envelope bytes before any verify."""

from __future__ import annotations

import base64

from tapcash.firmware.core import ed25519
from tapcash.host.bench.ingest import Fleet
from tapcash.host.issuer import Issuer
from tapcash.host.ledger import verify as ledger_verify
from tapcash.host.ledger.db import Database
from tapcash.host.ledger.errors import LedgerError
from tapcash.host.ledger.ingest import ingest
from tapcash.host.ledger.migrations import migrate
from tapcash.host.ledger.service import Ledger

TABLES = ("payments", "postings", "fraud_cases", "vouchers", "receipts")


def _count_verifies(monkeypatch, calls: list) -> None:  # noqa: ANN001
    """Every signature check the ledger makes appended to `calls`: ed25519.verify, and the
    batch checks that go to libsodium directly (ledger/verify.py, PyNaCl backend)."""
    real, real_many = ed25519.verify, ledger_verify._first_bad_sodium

    def one(pk, msg, sig):  # noqa: ANN001, ANN202
        calls.append(msg[:1])
        return real(pk, msg, sig)

    def many(checks):  # noqa: ANN001, ANN202
        calls.extend(m[:1] for _pk, m, _s in checks)
        return real_many(checks)

    monkeypatch.setattr(ed25519, "verify", one)
    monkeypatch.setattr(ledger_verify, "_first_bad_sodium", many)


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
    calls: list = []
    _count_verifies(monkeypatch, calls)
    first = ingest(ledger, wid, body, st)
    assert first["accepted"] == 50
    assert len(calls) == 51  # the status + every payment
    before = _snapshot(db)
    calls.clear()
    again = ingest(ledger, wid, body, st)
    assert calls == []  # recognised by its bytes: no signature checked again, none decoded
    assert again["accepted"] == 0 and again["duplicates"] == 50
    assert again["upto"] == first["upto"]
    assert _snapshot(db) == before
    assert ledger.invariant()["ok"]
    db.close()


def _world(tmp_path):  # noqa: ANN001, ANN202
    db = Database(str(tmp_path / "l.db"))
    migrate(db)
    issuer = Issuer.generate()
    ledger = Ledger(db, issuer)
    return db, ledger, Fleet(ledger, issuer, 1)


def _wire(records, status):  # noqa: ANN001, ANN202
    return ([{"seq": s, "record": base64.b64encode(r).decode()} for s, r in records],
            base64.b64encode(status).decode())


def test_stored_payments_in_a_new_batch_skip_their_verify(tmp_path, monkeypatch) -> None:
    db, ledger, fleet = _world(tmp_path)
    gen = fleet.batches(60, 30)
    wid, rec1, st1 = next(gen)
    _wid, rec2, st2 = next(gen)
    ingest(ledger, wid, *_wire(rec1, st1))
    calls: list = []
    _count_verifies(monkeypatch, calls)
    # The export re-read from seq 1: the 30 payments stored plus 30 new ones.
    res = ingest(ledger, wid, *_wire(rec1 + rec2, st2))
    assert res["accepted"] == 30 and res["duplicates"] == 30 and res["upto"] == 60
    assert len(calls) == 1 + 30  # the status and the new payments only
    assert ledger.invariant()["ok"]
    db.close()


def test_a_batch_sent_again_gets_todays_answer(tmp_path) -> None:
    """The fast path answers with the device's current pending vouchers and a fresh ack, not
    a stale copy of the first answer."""
    db, ledger, fleet = _world(tmp_path)
    wid, records, status = next(fleet.batches(20, 20))
    body, st = _wire(records, status)
    first = ingest(ledger, wid, body, st)
    ledger.load(wid, 5, owner="bench")
    again = ingest(ledger, wid, body, st)
    assert again["upto"] == first["upto"] == 20 and again["duplicates"] == 20
    assert len(again["vouchers"]) == len(first["vouchers"]) + 1
    # The same batch with one record changed is no replay: refused as ever.
    bad = [dict(r) for r in body]
    bad[3]["record"] = base64.b64encode(b"\xff").decode()
    try:
        ingest(ledger, wid, bad, st)
    except LedgerError as e:
        assert e.status == 400
    else:
        raise AssertionError("a changed batch was taken for a replay")
    assert ledger.invariant()["ok"]
    db.close()


def test_an_upload_over_http_checks_its_status_once(tmp_path, monkeypatch) -> None:
    """POST /v1/ingest: authenticate_device checks the status's signature, and prepare does
    not check it a second time (it did before: the status + every payment + the status). A
    status the device did not sign is refused as before: 403, without a word more."""
    from fastapi.testclient import TestClient

    from tapcash.host.ledger import auth
    from tapcash.host.ledger.app import create_app

    db, ledger, fleet = _world(tmp_path)
    gen = fleet.batches(40, 20)
    wid, rec1, st1 = next(gen)
    _wid, rec2, st2 = next(gen)
    calls: list = []
    _count_verifies(monkeypatch, calls)
    real_auth = auth._verify

    def auth_verify(pk, tag, body, sig):  # noqa: ANN001, ANN202
        calls.append(tag[:1])
        return real_auth(pk, tag, body, sig)

    monkeypatch.setattr(auth, "_verify", auth_verify)
    with TestClient(create_app(ledger, "t")) as api:
        body, st = _wire(rec1, st1)
        r = api.post("/v1/ingest", json={"device": wid.hex(), "records": body, "status": st})
        assert r.status_code == 200 and r.json()["accepted"] == 20
        assert len(calls) == 1 + 20  # the status once, every payment
        calls.clear()
        forged = bytearray(st2)
        forged[-1] ^= 1  # the status's signature, spoilt
        body, st = _wire(rec2, bytes(forged))
        r = api.post("/v1/ingest", json={"device": wid.hex(), "records": body, "status": st})
        assert (r.status_code, r.json()["detail"]) == (403, auth.DEVICE_AUTH_FAILED)
        assert len(calls) == 1
    # called directly (no caller checked the status), ingest checks it itself
    calls.clear()
    body, st = _wire(rec2, bytes(forged))
    try:
        ingest(ledger, wid, body, st)
    except LedgerError as e:
        assert e.status == 400 and "status: bad signature" in str(e.detail)
    else:
        raise AssertionError("a forged status was taken")
    assert len(calls) == 1
    res = ingest(ledger, wid, *_wire(rec2, st2))
    assert res["accepted"] == 20 and len(calls) == 2 + 20
    assert ledger.invariant()["ok"]
    db.close()


def test_an_uploads_authentication_reads_no_device_row_once_its_key_is_known(
    tmp_path, monkeypatch,  # noqa: ANN001
) -> None:
    """POST /v1/ingest authenticates with the device's key from the server's cache of device
    keys (a device id's key never changes): no read transaction of its own before the ingest
    once the key is known (one was about 160 us of CPU, client and PostgreSQL, per batch). An
    unknown device is still the uniform 403, and GET pending still reads the device row (its
    last stored status)."""
    from fastapi.testclient import TestClient

    from tapcash.host.ledger import app as app_mod
    from tapcash.host.ledger import auth

    db, ledger, fleet = _world(tmp_path)
    gen = fleet.batches(40, 20)
    wid, rec1, st1 = next(gen)
    _wid, rec2, st2 = next(gen)
    in_auth: list = []
    reads: list = []  # the read transactions authentication opened
    real_auth, real_read = app_mod.authenticate_device, db.read

    def spy_auth(*a, **k):  # noqa: ANN002, ANN003, ANN202
        in_auth.append(1)
        try:
            return real_auth(*a, **k)
        finally:
            in_auth.pop()

    monkeypatch.setattr(app_mod, "authenticate_device", spy_auth)
    monkeypatch.setattr(db, "read", lambda fn: (reads.append(1) if in_auth else None)
                        or real_read(fn))
    with TestClient(app_mod.create_app(ledger, "t")) as api:
        for n, (rec, st) in enumerate(((rec1, st1), (rec2, st2))):
            body, s = _wire(rec, st)
            r = api.post("/v1/ingest", json={"device": wid.hex(), "records": body, "status": s})
            assert r.status_code == 200 and r.json()["accepted"] == 20
            assert len(reads) == 0 or (n == 0 and len(reads) == 1)  # at most the first, once
            reads.clear()
        assert ledger._keys[wid][1] == ed25519.public_key(fleet.wallets[0]["seed"])
        body, s = _wire(rec2, st2)
        r = api.post("/v1/ingest", json={"device": "00" * 8, "records": body, "status": s})
        assert (r.status_code, r.json()["detail"]) == (403, auth.DEVICE_AUTH_FAILED)
        reads.clear()
        r = api.get(f"/v1/devices/{wid.hex()}/pending", headers={auth.STATUS_HEADER: s})
        assert r.status_code == 200 and len(reads) == 1
    assert ledger.invariant()["ok"]
    db.close()


def test_a_batch_whose_signers_keys_are_cached_reads_none_of_them(tmp_path, monkeypatch) -> None:  # noqa: ANN001
    """prepare takes the payers' and terminals' keys from the cache of device keys without a
    query once it holds them all (Ledger.device_keys, in prepare's one read transaction); a
    signer it does not hold yet is read, once."""
    from tapcash.host.ledger.db import Tx

    db, ledger, fleet = _world(tmp_path)
    gen = fleet.batches(40, 20)
    wid, rec1, st1 = next(gen)
    _wid, rec2, st2 = next(gen)
    lookups: list = []
    real = Tx.all

    def spy(tx: Tx, sql: str, params=()) -> list:  # noqa: ANN001
        if sql.startswith("SELECT id, kind, pubkey FROM devices"):
            lookups.append({bytes(p) for p in params})
        return real(tx, sql, params)

    monkeypatch.setattr(Tx, "all", spy)
    ledger._keys.clear()  # as in a server that has just started
    assert ingest(ledger, wid, *_wire(rec1, st1))["accepted"] == 20
    assert lookups == [{wid}]
    lookups.clear()
    assert ingest(ledger, wid, *_wire(rec2, st2))["accepted"] == 20
    assert lookups == []
    assert ledger.invariant()["ok"]
    db.close()
