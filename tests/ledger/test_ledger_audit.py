"""The balance audit of a wallet's unsynced chain resumes where the last batch left it (issue
#15): a wallet that pays one POS after another while it never syncs made every POS upload read
(and decode) the wallet's whole chain since its last sync, so an upload cost more the longer the
wallet stayed offline. Now each batch reads the payments after the last one audited; a bad
balance field is found as before."""

from __future__ import annotations

from ledger_world import make_ledger

from tapcash.host.bench.ingest import OfflineWallet
from tapcash.host.issuer import Issuer
from tapcash.host.ledger import ingest as I


def _world(db_url: str):  # noqa: ANN202
    issuer = Issuer.generate()
    ledger = make_ledger(db_url, issuer)
    return ledger, OfflineWallet(ledger, issuer)


def test_audit_reads_each_batch_not_the_chain_since_the_last_sync(db_url, monkeypatch) -> None:
    ledger, w = _world(db_url)
    wid, pos = w.id, w.pos
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
    n, batches = 20, 8
    for i in range(batches):
        envs = w.pay(pos[i % 2].id, n)
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
    counter = w.counter
    envs = w.pay(pos[0].id, n, balance_off=7)
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
    """What the audit holds is only taken while what it was judged by stands: here the spend
    it started from is spoilt (as when an earmarked load changes how the main purse's spend is
    counted), and the next upload walks again from the synced counter (and still finds nothing
    wrong)."""
    ledger, w = _world(db_url)
    wid, pos = w.id, w.pos
    envs = w.pay(pos[0].id, 10)
    I.ingest(ledger, pos[0].id, *pos[0].batch(envs))

    def held(tx):  # noqa: ANN001, ANN202
        return tx.one("SELECT synced, upto, mode FROM chain_audits WHERE wallet = ?", (wid,))

    assert tuple(map(int, ledger.db.read(held))) == (0, 10, 1)
    ledger.db.write(lambda tx: tx.execute(
        "UPDATE chain_audits SET base = base + 1 WHERE wallet = ?", (wid,)))  # stale
    envs = w.pay(pos[1].id, 10)
    res = I.ingest(ledger, pos[1].id, *pos[1].batch(envs))
    assert res["accepted"] == 10 and res["conflicts"] == 0
    assert tuple(map(int, ledger.db.read(held))) == (0, 20, 1)
    base = ledger.db.read(lambda tx: tx.scalar(
        "SELECT base FROM chain_audits WHERE wallet = ?", (wid,)))
    assert int(base) == 0


def test_the_synced_counter_reads_nothing_past_a_gap(db_url, monkeypatch) -> None:
    """wallet_synced (what an update's synced counter is) stops reading at the first counter
    the ledger lacks: a chunk at a time, not every payment after it."""
    from tapcash.host.ledger import service

    monkeypatch.setattr(service, "SYNCED_CHUNK", 8)
    ledger, w = _world(db_url)
    pos = w.pos
    I.ingest(ledger, pos[0].id, *pos[0].batch(w.pay(pos[0].id, 12)))
    w.pay(pos[1].id, 1)  # counter 13: taken by a POS that has not uploaded yet
    I.ingest(ledger, pos[0].id, *pos[0].batch(w.pay(pos[0].id, 40)))
    read: list[int] = []

    def synced(tx):  # noqa: ANN001, ANN202
        real = tx.all

        def all_(sql, params=()):  # noqa: ANN001, ANN202
            rows = real(sql, params)
            read.append(len(rows))
            return rows

        tx.all = all_
        return ledger.wallet_synced(tx, service.get_device(tx, w.id))

    assert ledger.db.read(synced) == (12, 12)
    assert read == [8, 8]  # 1-8, then 9-12 and 14-17 (before: all 52)


def test_the_audit_walks_on_from_the_batchs_own_rows_into_stored_ones(db_url) -> None:
    """The audit takes the payments a batch inserted from the batch (not read back), then reads
    on from the database: here a POS uploads counters 6-7 first (no walk: 1-5 are missing),
    then the other POS brings 1-5, whose walk goes on into the stored 6-7 and finds their
    balance field wrong."""
    ledger, w = _world(db_url)
    pos = w.pos
    first = w.pay(pos[0].id, 5)
    late = w.pay(pos[1].id, 2, balance_off=7)
    res = I.ingest(ledger, pos[1].id, *pos[1].batch(late))
    assert res["accepted"] == 2 and res["conflicts"] == 0
    res = I.ingest(ledger, pos[0].id, *pos[0].batch(first))
    assert res["accepted"] == 5 and res["conflicts"] == 1 and res["revoked"] == [w.id.hex()]
    cases = ledger.db.read(lambda tx: tx.all(
        "SELECT kind, counter FROM fraud_cases WHERE wallet = ?", (w.id,)))
    assert [(k, int(c)) for k, c in cases] == [("balance", 6)]
    assert ledger.invariant()["ok"]
