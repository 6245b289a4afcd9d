"""Reconciliation rules that need a card whose key has been extracted (forks, chain breaks,
payments outside the rules), the strict CBOR fast path, migrations, the issuer key file and
the command lines. The forged objects are signed with the card's own seed, read from its
flash state (what an attacker who extracted the key would do)."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import ledger_world as lw
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as hs
from ledger_world import World

from tapcash.firmware.core import cbor, proto
from tapcash.firmware.wallet import state as wst
from tapcash.host.cli import cli
from tapcash.host.issuer import Issuer
from tapcash.host.ledger.chain import records_digest
from tapcash.host.ledger.codec import strict_decode
from tapcash.host.ledger.db import Database
from tapcash.host.ledger.migrations import LATEST, current_version, migrate
from tapcash.host.ledger.postings import check_invariant

_forged: dict[bytes, dict[int, int]] = {}  # wallet -> counter -> amount forged at it


def forge(w: lw.Dev, counter: int, amount: int, payee: bytes, prev: bytes,
          kind: int = proto.PAYKIND_POS, time: int = 0, purse: int = 0,
          balance: int | None = None) -> tuple[bytes, bytes]:
    """(envelope, body hash) of a payment signed with the wallet's extracted seed. Its balance
    field is the one an honest card would sign (the card's balance less what was forged at
    counters 1..counter), unless given: the ledger checks it against its books."""
    spent = _forged.setdefault(w.id + w.app.state[wst.S_SEED], {})
    spent[counter] = amount
    if balance is None:
        balance = w.app.state[wst.S_BALANCE] - sum(a for c, a in spent.items() if c <= counter)
    body = {proto.PAY_WALLET: w.id, proto.PAY_COUNTER: counter, proto.PAY_AMOUNT: amount,
            proto.PAY_PAYEE: payee, proto.PAY_CHALLENGE: os.urandom(16), proto.PAY_PREV: prev,
            proto.PAY_PURSE: purse, proto.PAY_TIME: time, proto.PAY_BALANCE: balance,
            proto.PAY_KIND: kind}
    env = proto.seal(proto.TAG_PAYMENT, body, w.app.state[wst.S_SEED])
    return env, proto.body_hash(cbor.encode(body))


def upload_as_wallet(world: World, w: lw.Dev, envs: list[bytes], first_seq: int = 1):
    records = [(first_seq + i, cbor.encode({proto.REC_TYPE: proto.RT_PAYMENT,
                                            proto.REC_SIGNED: e})) for i, e in enumerate(envs)]
    # The status chains these records only: a batch that does not start at seq 1 is not one
    # the ledger can ack (these tests are about the payment rules, not about acks).
    status = proto.seal(proto.TAG_STATUS, {proto.ST_DEVICE: w.id,
                                           proto.ST_SEQ: first_seq + len(envs) - 1,
                                           proto.ST_DIGEST: records_digest(records)},
                        w.app.state[wst.S_SEED])
    return world.client.ingest(w.id, records, status)


def test_fork_same_prev_other_counter(world: World) -> None:
    w = world.wallet(1, load=10000)
    p = world.pos(1)
    e1, h1 = forge(w, 1, 100, p.id, bytes(32))
    e2, _h2 = forge(w, 2, 200, p.id, h1)
    e3, _h3 = forge(w, 3, 300, p.id, h1)  # same prev as counter 2: a fork
    r = upload_as_wallet(world, w, [e1, e2, e3])
    assert r.accepted == 3 and r.conflicts >= 1 and r.revoked == [w.id.hex()]
    kinds = {c["kind"] for c in world.client.report("fraud")}
    assert "fork" in kinds
    assert w.id in world.client.hotlist().revoked


def test_chain_break_between_neighbours(world: World) -> None:
    w = world.wallet(1, load=10000)
    p = world.pos(1)
    e1, h1 = forge(w, 1, 100, p.id, bytes(32))
    e2, _ = forge(w, 2, 100, p.id, os.urandom(32))  # prev is not body 1
    assert upload_as_wallet(world, w, [e1]).conflicts == 0
    r = upload_as_wallet(world, w, [e2], first_seq=2)
    assert r.conflicts == 1
    case = world.client.report("fraud")[0]
    assert case["kind"] == "chain_break" and case["counter"] == 2


def test_payments_outside_the_rules_are_refused_not_credited(world: World) -> None:
    w = world.wallet(1, load=60000, limits={proto.LIM_PAYMENT_MAX: 1000})
    p = world.pos(1)
    stranger_payee = b"\x42" * 8
    e1, h1 = forge(w, 1, 5000, p.id, bytes(32))  # over the payment max
    e2, h2 = forge(w, 2, 100, stranger_payee, h1)  # unknown payee
    e3, h3 = forge(w, 3, 100, p.id, h2, purse=7)  # unknown purse
    e4, h4 = forge(w, 4, 100, p.id, h3)  # fine
    # No honest card signs counter 15 before a sync (synced 0 + offline count 10).
    chain, prev = [], h4
    for c in range(5, 16):
        e, prev = forge(w, c, 10, p.id, prev)
        chain.append(e)
    r = upload_as_wallet(world, w, [e1, e2, e3, e4, *chain])
    assert (r.accepted, r.refused, r.conflicts) == (7, 8, 0)
    refused = {x["counter"]: x["status"] for x in world.client.report("refused")}
    assert refused == {1: "refused:over payment max", 2: "refused:unknown payee",
                       3: "refused:unknown purse", 11: "refused:over offline count",
                       12: "refused:over offline count", 13: "refused:over offline count",
                       14: "refused:over offline count", 15: "refused:over offline count"}
    assert world.client.report("merchants")[0]["owed"] == 160
    # The wallet still spent them all: its offline counters are synced over all fifteen.
    assert world.client.device(w.id)["synced_counter"] == 15


def test_payment_signed_after_revocation_is_refused_without_a_pos_proof(world: World) -> None:
    """From the payer's own log a revoked wallet's new payment proves no time (the body's time
    is what the payer signed): refused whatever it says. docs/LEDGER.md §3 rule 5; the POS's
    signed receipt time decides (tests/ledger/test_ledger_attacks.py)."""
    w = world.wallet(1, load=10000)
    p = world.pos(1)
    world.client.revoke(w.id, "stolen")
    revoked_at = world.client.device(w.id)["revoked_at"]
    max_age = proto.DEFAULT_POS_CONFIG[proto.CFG_HOT_MAX_AGE_S]
    e1, h1 = forge(w, 1, 100, p.id, bytes(32), time=revoked_at + 10)  # POS may not know yet
    e2, _ = forge(w, 2, 100, p.id, h1, time=revoked_at + max_age + 1)  # no POS may take it
    r = upload_as_wallet(world, w, [e1, e2])
    assert (r.accepted, r.refused) == (0, 2)
    assert {x["status"] for x in world.client.report("refused")} == {"refused:after revocation"}


def test_invariant_catches_tampered_books(db_url: str) -> None:
    w = World(db_url, serve=False)
    led = w.ledger
    led.deposit("alice", 500)
    assert led.invariant()["ok"]
    led.db.write(lambda tx: tx.execute(
        "UPDATE accounts SET balance = balance + 1 WHERE name = 'owner:alice'"))
    inv = led.invariant()
    assert not inv["ok"] and inv["mismatched"][0]["account"] == "owner:alice"
    led.db.write(lambda tx: tx.execute(
        "UPDATE accounts SET balance = balance - 1 WHERE name = 'owner:alice'"))
    # A negative holder balance is refused by the schema itself.
    with pytest.raises(Exception):  # noqa: B017 - sqlite3 / psycopg integrity errors
        led.db.write(lambda tx: tx.execute(
            "UPDATE accounts SET balance = -1 WHERE name = 'owner:alice'"))
    assert led.invariant()["ok"]


def test_broken_books_are_a_409_naming_the_violations_not_a_500(world: World,
                                                                db_url: str) -> None:
    """`GET /v1/invariant` on books out of balance answered 500 (a server error, which monitoring
    cannot tell from a crash and which said nothing but the figures). Now a 409 problem whose
    detail names the violations, with every figure of the check; `tapcash ledger check` on the
    same database prints the same lines (one implementation, host/ledger/invariant.py), exit 1."""
    import httpx

    world.ledger.deposit("alice", 500)
    url, op = world.server.url, {"Authorization": f"Bearer {lw.TOKEN}"}
    ok = httpx.get(f"{url}/v1/invariant", headers=op)
    assert ok.status_code == 200 and ok.json()["ok"] and ok.json()["violations"] == []
    world.ledger.db.write(lambda tx: tx.execute(
        "UPDATE accounts SET balance = balance + 1 WHERE name = 'owner:alice'"))
    try:
        r = httpx.get(f"{url}/v1/invariant", headers=op)
        check = CliRunner().invoke(cli, ["ledger", "check", "--db", db_url])
        by_client = world.client.invariant()
    finally:
        world.ledger.db.write(lambda tx: tx.execute(
            "UPDATE accounts SET balance = balance - 1 WHERE name = 'owner:alice'"))
    assert r.status_code == 409, r.text
    assert r.headers["content-type"] == "application/problem+json"
    body = r.json()
    wrong = "balance is not its postings: owner:alice 501 (postings say 500)"
    assert body["detail"] == f"the books do not balance: issued 500 != held 501; {wrong}"
    assert body["violations"] == ["issued 500 != held 501", wrong]
    assert body["ok"] is False and body["mismatched"][0]["account"] == "owner:alice"
    assert by_client["violations"] == body["violations"]
    assert check.exit_code == 1, check.output
    assert "  issued 5.00 != held 5.01\n" in check.output
    assert "  balance is not its postings: owner:alice 5.01 (postings say 5.00)" in check.output
    assert httpx.get(f"{url}/v1/invariant", headers=op).status_code == 200


def test_migrations_are_idempotent_and_versioned(db_url: str) -> None:
    db = Database(db_url, pool_size=1)
    try:
        assert migrate(db) == list(range(1, LATEST + 1))
        assert migrate(db) == []
        assert db.read(current_version) == LATEST
        assert db.read(check_invariant)["ok"]
    finally:
        db.close()



def _upto(db: Database, version: int) -> None:
    """The schema as the steps up to `version` made it (a database of an older ledger)."""
    from tapcash.host.ledger import migrations as m

    def make(tx):  # noqa: ANN001, ANN202
        tx.execute("CREATE TABLE schema_version (version INTEGER PRIMARY KEY, "
                   "name TEXT NOT NULL, applied_at BIGINT NOT NULL)")
        for v, name, sql in m.STEPS[:version]:
            for stmt in m._statements(sql, tx.dialect):
                tx.execute(stmt)
            tx.execute("INSERT INTO schema_version VALUES (?, ?, 0)", (v, name))

    db.write(make)


@pytest.mark.parametrize("from_version", [0, 7])
def test_references_hold_on_both_back_ends(db_url: str, from_version: int) -> None:
    """Postings name accounts, payments and journal links name devices, on a new database and
    on one of schema 7 migrated (PostgreSQL checks them per statement since step 8, COPY
    included; SQLite by its foreign keys): a row naming nothing is refused and stores
    nothing, and a referenced account or device can be neither deleted nor renamed."""
    from tapcash.host.ledger.migrations import STEPS

    db = Database(db_url, pool_size=1)
    try:
        if from_version:
            _upto(db, from_version)
        assert migrate(db) == [s[0] for s in STEPS[from_version:]]
        if db.dialect == "postgresql":  # no foreign key's query per row left on these
            assert db.read(lambda tx: tx.scalar(
                "SELECT COUNT(*) FROM pg_constraint WHERE contype = 'f' AND conrelid::regclass"
                "::text IN ('postings', 'payments', 'journal_links')")) == 0
        wid, ghost = b"\x01" * 8, b"\x02" * 8

        def setup(tx):  # noqa: ANN001, ANN202
            tx.execute("INSERT INTO devices (id, kind, pubkey, cert, serial, expires, "
                       "registered_at) VALUES (?, 1, ?, ?, 1, 1, 0)", (wid, bytes(32), b""))
            tx.execute("INSERT INTO accounts (name, kind, balance) VALUES ('wallet:01', "
                       "'wallet', 0)")
            tx.execute("INSERT INTO accounts (name, kind, balance) VALUES ('merchant:01', "
                       "'merchant', 0)")

        db.write(setup)
        pay = ("counter", "hash", "prev", "envelope", "amount", "payee", "kind", "time",
               "status", "via", "at")

        def payment(w, counter):  # noqa: ANN001, ANN202
            return (w, counter, bytes(32), bytes(32), b"e", 1, bytes(8), 1, 0, "posted",
                    "pos", 0)

        bad = [
            ("postings", ("src", "dst", "amount", "kind", "ref", "at"),
             [("wallet:01", "merchant:01", 1, "payment", "ok", 0),
              ("wallet:01", "merchant:99", 1, "payment", "bad", 0)]),
            ("payments", ("wallet", *pay), [payment(wid, 1), payment(ghost, 1)]),
            ("journal_links", ("device", "seq", "rhash", "link"),
             [(wid, 1, bytes(32), bytes(32)), (ghost, 1, bytes(32), bytes(32))]),
        ]
        for table, cols, rows in bad:
            for how in ("insert_many", "executemany"):  # COPY and INSERT on PostgreSQL
                def put(tx, table=table, cols=cols, rows=rows, how=how):  # noqa: ANN001, ANN202
                    if how == "insert_many":
                        tx.insert_many(table, cols, rows)
                    else:
                        tx.executemany(f"INSERT INTO {table} ({', '.join(cols)}) VALUES "
                                       f"({', '.join('?' * len(cols))})", rows)

                with pytest.raises(Exception):  # noqa: B017 - sqlite3 / psycopg errors
                    db.write(put, attempts=1)
                assert db.read(lambda tx, t=table: tx.scalar(f"SELECT COUNT(*) FROM {t}")) == 0
        for table, cols, rows in bad:
            db.write(lambda tx, t=table, c=cols, r=rows: tx.insert_many(t, c, r[:1]))
        with pytest.raises(Exception):  # noqa: B017 - an update to a row naming nothing
            db.write(lambda tx: tx.execute("UPDATE postings SET dst = 'merchant:99'"),
                     attempts=1)
        for sql in ("DELETE FROM devices", "UPDATE devices SET id = X'03'",
                    "DELETE FROM accounts WHERE name = 'merchant:01'",
                    "UPDATE accounts SET name = 'merchant:02' WHERE name = 'merchant:01'"):
            if db.dialect == "postgresql":
                sql = sql.replace("X'03'", "'\\x03'::bytea")
            with pytest.raises(Exception):  # noqa: B017 - referenced: kept
                db.write(lambda tx, q=sql: tx.execute(q), attempts=1)
        assert db.read(lambda tx: tx.scalar("SELECT COUNT(*) FROM devices")) == 1
        # rows nothing references are still free to go
        db.write(lambda tx: tx.execute("DELETE FROM accounts WHERE name = 'issuer:loss' AND "
                                       "balance = 1"))
    finally:
        db.close()

# ---- strict CBOR: the fast path decides exactly like the firmware decoder ------------------
_values = hs.recursive(
    hs.none() | hs.booleans() | hs.integers(-(2**64), 2**64 - 1) | hs.binary(max_size=40)
    | hs.text(max_size=10),
    lambda kids: hs.lists(kids, max_size=4) | hs.dictionaries(hs.integers(0, 30), kids,
                                                              max_size=4),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(_values, hs.lists(hs.tuples(hs.integers(0, 10**6), hs.integers(0, 255)), max_size=3))
def test_strict_decode_agrees_with_the_firmware_decoder(value, edits) -> None:  # noqa: ANN001
    data = bytearray(cbor.encode(value))
    for pos, byte in edits:
        if data:
            data[pos % len(data)] = byte
    data = bytes(data)
    try:
        want = ("ok", repr(cbor._decode_strict(data)))  # the boards' decoder
    except ValueError:
        want = ("error",)
    try:
        got = ("ok", repr(strict_decode(data)))
    except ValueError:
        got = ("error",)
    assert got == want


# ---- issuer key file and command lines -----------------------------------------------------
def test_issuer_init_writes_an_owner_only_key_file(tmp_path: Path) -> None:
    runner = CliRunner()
    key = tmp_path / "issuer.key"
    r = runner.invoke(cli, ["issuer", "init", str(key)])
    assert r.exit_code == 0, r.output
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    data = json.loads(key.read_text())
    iss = Issuer.load(key)
    assert data["key_id"] == iss.key_id.hex() and f"key id {iss.key_id.hex()}" in r.output
    # never overwritten by accident
    assert runner.invoke(cli, ["issuer", "init", str(key)]).exit_code != 0
    assert Issuer.load(key).key_id == iss.key_id
    # certify + voucher print envelopes the firmware verifies
    r = runner.invoke(cli, ["issuer", "certify", "wallet", "--key", str(key), "--id", "11" * 8,
                            "--public-key", "22" * 32, "--limit", "2=7.77"])
    assert r.exit_code == 0, r.output
    body = proto.verify_cert(bytes.fromhex(r.output.strip()), iss.trusted_keys,
                             proto.KIND_WALLET)
    assert body[proto.CERT_LIMITS][proto.LIM_PAYMENT_MAX] == 777
    r = runner.invoke(cli, ["issuer", "voucher", "--key", str(key), "--wallet", "11" * 8,
                            "--number", "1", "--amount", "5.00"])
    assert r.exit_code == 0, r.output
    v = proto.verify_envelope(proto.TAG_VOUCHER, bytes.fromhex(r.output.strip()),
                              iss.public_key)
    assert v[proto.VCH_AMOUNT] == 500


def test_payroll_and_check_commands(world: World, tmp_path: Path, db_url: str) -> None:
    w1 = world.wallet(1, owner="w1")
    world.client.deposit("acme", 9000)
    csv_file = tmp_path / "pay.csv"
    csv_file.write_text(f"wallet,amount\n{w1.id.hex()},1234\nnot-a-wallet,5\n")
    runner = CliRunner()
    args = ["issuer", "payroll", str(csv_file), "--ledger", world.server.url, "--token",
            lw.TOKEN, "--payer", "acme", "--reference", "r1"]
    r = runner.invoke(cli, args)
    assert r.exit_code == 1 and "line 3" in r.output
    csv_file.write_text(f"{w1.id.hex()},1234\n")
    r = runner.invoke(cli, args)
    assert r.exit_code == 0 and "total 12.34" in r.output
    r = runner.invoke(cli, ["ledger", "check", "--db", db_url, "--json"])
    assert r.exit_code == 0 and json.loads(r.output)["issued"] == 9000
    r = runner.invoke(cli, ["ledger", "report", "accounts", "--db", db_url, "--csv"])
    assert r.exit_code == 0 and f"wallet:{w1.id.hex()},wallet,1234" in r.output


def test_revoked_receiver_still_syncs_and_its_transfer_stays_staged(world: World) -> None:
    a = world.wallet(1, load=5000)
    b = world.wallet(2, owner="bob")
    world.transfer(a, b, 1500)
    world.client.revoke(b.id, "lost")
    records, status = world.export(b)
    r = world.client.ingest(b.id, records, status)
    assert (r.accepted, r.released, r.vouchers, r.updates) == (1, 0, [], [])
    assert r.upto == len(records)
    assert world.client.invariant()["by_kind"]["staged"] == 1500
    assert world.client.wallet_statement(b.id)["staged"] == 1500
