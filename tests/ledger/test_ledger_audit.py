"""The balance audit of a wallet's unsynced chain resumes where the last batch left it (issue
#15): a wallet that pays one POS after another while it never syncs made every POS upload read
(and decode) the wallet's whole chain since its last sync, so an upload cost more the longer the
wallet stayed offline. Now each batch reads the payments after the last one audited; a bad
balance field is found as before."""

from __future__ import annotations

import base64
import os

from ledger_world import make_ledger

from tapcash.firmware.core import cbor, ed25519, proto
from tapcash.host.bench.ingest import BIG, NO_LIMITS, synthetic_wallet_log
from tapcash.host.issuer import Issuer
from tapcash.host.ledger import ingest as I
from tapcash.host.ledger.chain import records_digest

LOAD = 10**9


class _Pos:
    """A POS that takes a wallet's payments and uploads its journal (synthetic records)."""

    def __init__(self, ledger, issuer, wallet_cert: bytes) -> None:  # noqa: ANN001
        self.seed, self.id = os.urandom(32), os.urandom(8)
        ledger.register(issuer.certify_pos(self.id, ed25519.public_key(self.seed),
                                           os.urandom(8), expires=2**40))
        self.cert_hash = proto.body_hash(proto.open_envelope(wallet_cert)[0])
        self.seq, self.journal = 0, bytes(32)

    def batch(self, payments: list[bytes]) -> tuple[list[dict], str]:
        records = []
        for env in payments:
            self.seq += 1
            body = cbor.decode(cbor.decode(env)[0])
            receipt = proto.seal(proto.TAG_RECEIPT, {
                proto.RCPT_POS: self.id, proto.RCPT_WALLET: body[proto.PAY_WALLET],
                proto.RCPT_COUNTER: body[proto.PAY_COUNTER],
                proto.RCPT_AMOUNT: body[proto.PAY_AMOUNT],
                proto.RCPT_PAYMENT_HASH: proto.body_hash(cbor.decode(env)[0]),
                proto.RCPT_SEQ: self.seq}, self.seed)
            records.append((self.seq, cbor.encode({
                proto.REC_TYPE: proto.RT_PAYMENT, proto.REC_SIGNED: env,
                proto.REC_RECEIPT: receipt, proto.REC_CERT_HASH: self.cert_hash})))
        self.journal = records_digest(records, self.journal)
        status = proto.seal(proto.TAG_STATUS, {proto.ST_DEVICE: self.id, proto.ST_SEQ: self.seq,
                                               proto.ST_DIGEST: self.journal}, self.seed)
        return ([{"seq": s, "record": base64.b64encode(r).decode()} for s, r in records],
                base64.b64encode(status).decode())


def _world(db_url: str):  # noqa: ANN202
    issuer = Issuer.generate()
    ledger = make_ledger(db_url, issuer)
    ledger.deposit("bench", BIG)
    seed, wid = os.urandom(32), os.urandom(8)
    cert = issuer.certify_wallet(wid, ed25519.public_key(seed), expires=2**40, limits=NO_LIMITS)
    ledger.register(cert, "bench")
    ledger.load(wid, LOAD, owner="bench")
    pos = [_Pos(ledger, issuer, cert) for _ in range(2)]
    return ledger, seed, wid, pos


def _payments(seed: bytes, wid: bytes, payee: bytes, counter: int, n: int, prev: bytes,
              balance: int) -> tuple[list[bytes], bytes]:
    records, _status, prev = synthetic_wallet_log(seed, wid, payee, counter, n, prev, 1,
                                                  start_balance=balance)
    return [cbor.decode(r)[proto.REC_SIGNED] for _s, r in records], prev


def test_audit_reads_each_batch_not_the_chain_since_the_last_sync(db_url, monkeypatch) -> None:
    ledger, seed, wid, pos = _world(db_url)
    read: list[int] = []  # payments the audit reads, per batch
    real = I._Apply._chain_rows

    def rows(self, w, after):  # noqa: ANN001, ANN202
        got = real(self, w, after)
        read[-1] += len(got)
        return got

    decoded: list[int] = []
    real_env = I._Apply.envelope_of

    def envelope_of(self, w, c):  # noqa: ANN001, ANN202
        decoded[-1] += 1
        return real_env(self, w, c)

    monkeypatch.setattr(I._Apply, "_chain_rows", rows)
    monkeypatch.setattr(I._Apply, "envelope_of", envelope_of)
    n, batches, prev, counter = 20, 8, bytes(32), 1
    for i in range(batches):
        envs, prev = _payments(seed, wid, pos[i % 2].id, counter, n, prev, LOAD - counter + 1)
        counter += n
        read.append(0)
        decoded.append(0)
        res = I.ingest(ledger, pos[i % 2].id, *pos[i % 2].batch(envs))
        assert res["accepted"] == n and res["conflicts"] == 0
    # the wallet never synced: every payment since counter 0 is unsynced, yet each upload reads
    # its own 20 (before: 20, 40, ... 160, and decoded every stored one again)
    assert ledger.db.read(lambda tx: tx.scalar(
        "SELECT synced_counter FROM devices WHERE id = ?", (wid,))) == 0
    assert read == [n] * batches
    assert decoded == [0] * batches
    # A body whose balance field disagrees with the books: a balance case, as before.
    envs, prev = _payments(seed, wid, pos[0].id, counter, n, prev, LOAD - counter + 1 + 7)
    read.append(0)
    decoded.append(0)
    res = I.ingest(ledger, pos[0].id, *pos[0].batch(envs))
    assert res["conflicts"] == 1 and res["revoked"] == [wid.hex()]
    cases = ledger.db.read(lambda tx: tx.all(
        "SELECT kind, counter FROM fraud_cases WHERE wallet = ?", (wid,)))
    assert [(k, int(c)) for k, c in cases] == [("balance", counter)]
    assert read[-1] <= n
    assert ledger.invariant()["ok"]


def test_a_stale_audit_walks_again_from_the_synced_counter(db_url) -> None:
    """What the audit holds is only taken while what it was judged by stands: here a later
    voucher of a programme changes how the main purse's spend is counted, and the next
    upload walks again from the synced counter (and still finds nothing wrong)."""
    ledger, seed, wid, pos = _world(db_url)
    envs, prev = _payments(seed, wid, pos[0].id, 1, 10, bytes(32), LOAD)
    I.ingest(ledger, pos[0].id, *pos[0].batch(envs))

    def held(tx):  # noqa: ANN001, ANN202
        return tx.one("SELECT synced, upto, mode FROM chain_audits WHERE wallet = ?", (wid,))

    assert tuple(map(int, ledger.db.read(held))) == (0, 10, 1)
    ledger.db.write(lambda tx: tx.execute(
        "UPDATE chain_audits SET base = base + 1 WHERE wallet = ?", (wid,)))  # stale
    envs, prev = _payments(seed, wid, pos[1].id, 11, 10, prev, LOAD - 10)
    res = I.ingest(ledger, pos[1].id, *pos[1].batch(envs))
    assert res["accepted"] == 10 and res["conflicts"] == 0
    assert tuple(map(int, ledger.db.read(held))) == (0, 20, 1)
    base = ledger.db.read(lambda tx: tx.scalar(
        "SELECT base FROM chain_audits WHERE wallet = ?", (wid,)))
    assert int(base) == 0
