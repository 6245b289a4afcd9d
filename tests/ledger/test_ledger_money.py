"""Money that cannot overflow (issue #11): every sum checked, the database refuses a wrong
balance, a total past the maximum is a clear 4xx. Both back ends, over real HTTP."""

from __future__ import annotations

import sqlite3

import pytest
from ledger_world import World

from tapcash.host.ledger.client import LedgerHTTPError
from tapcash.host.ledger.codec import MONEY_MAX
from tapcash.host.ledger.db import Database
from tapcash.host.ledger.migrations import STEPS, migrate
from tapcash.host.ledger.postings import check_invariant


def test_deposits_past_the_maximum_are_refused_and_the_books_stay_exact(world: World) -> None:
    """Found: three deposits of the largest amount overflowed the 64-bit balance (SQLite stored
    a REAL, `ledger check` crashed; PostgreSQL answered 500)."""
    # Over HTTP an amount is at most 2^53 - 1 (exact in any JSON parser): more is a 422.
    from tapcash.host.ledger.models import AMOUNT_MAX

    with pytest.raises(LedgerHTTPError) as e:
        world.client.deposit("big", AMOUNT_MAX + 1)
    assert e.value.status == 422
    # The ledger itself (and ingest) takes amounts up to MONEY_MAX: sums are checked there.
    from tapcash.host.ledger.errors import LedgerError

    led = world.ledger
    led.deposit("big", MONEY_MAX - 10)
    for owner in ("big", "other", "big", "other"):  # the owner's balance, the issuer's total
        with pytest.raises(LedgerError) as le:
            led.deposit(owner, 11 if owner == "other" else MONEY_MAX)
        assert le.value.status == 409 and "maximum" in str(le.value.detail)
    with pytest.raises(LedgerHTTPError) as e:
        world.client.deposit("other", 11)
    assert e.value.status == 409 and "maximum" in str(e.value.detail)
    world.client.deposit("other", 10)  # what still fits goes through
    assert world.client.owner("big")["balance"] == MONEY_MAX - 10
    assert world.client.owner("other")["balance"] == 10
    inv = world.client.invariant()
    assert inv["ok"] and inv["issued"] == MONEY_MAX


def test_sums_of_many_large_postings_stay_exact(db_url: str) -> None:
    """Money that went round (in, out, in again) sums past 2^63 in the postings of one account
    while every balance stays in range: the invariant and the reports must stay exact (SQLite's
    SUM failed with "integer overflow")."""
    db = Database(db_url, pool_size=1)
    try:
        migrate(db)

        def book(tx):
            tx.execute("INSERT INTO accounts (name, kind, balance) VALUES ('merchant:00', "
                       "'merchant', ?)", (MONEY_MAX,))
            tx.execute("UPDATE accounts SET balance = ? WHERE name = 'issuer:float'",
                       (-MONEY_MAX,))
            moves = [("issuer:float", "merchant:00"), ("merchant:00", "issuer:float")] * 2
            for i, (src, dst) in enumerate(moves + [("issuer:float", "merchant:00")]):
                tx.execute("INSERT INTO postings (src, dst, amount, kind, ref, at) "
                           "VALUES (?, ?, ?, 'test', ?, 0)", (src, dst, MONEY_MAX, str(i)))

        db.write(book)
        inv = db.read(check_invariant)
        assert inv["ok"], inv
        assert inv["issued"] == MONEY_MAX and inv["by_kind"]["merchant"] == MONEY_MAX
        from tapcash.host.ledger import reports

        (m,) = db.read(reports.merchants)
        assert m["credited"] == 3 * MONEY_MAX and m["owed"] == MONEY_MAX
    finally:
        db.close()


def test_database_refuses_a_balance_that_is_not_an_integer_in_range(db_url: str) -> None:
    db = Database(db_url, pool_size=1)
    try:
        migrate(db)
        # (PostgreSQL's bigint rounds 1.5 to 2: still an integer; SQLite would store a REAL)
        extra = ("1.5",) if db.dialect == "sqlite" else ()
        for value in ("9.3e18", str(MONEY_MAX + 1), "'seven'", *extra):
            with pytest.raises(Exception) as e:
                db.write(lambda tx, v=value: tx.execute(
                    f"UPDATE accounts SET balance = {v} WHERE name = 'issuer:float'"))
            msg = str(e.value).lower()
            assert any(w in msg for w in ("balance", "check", "out of range", "invalid input"))
        with pytest.raises(Exception):  # noqa: B017 - either driver's integrity error
            db.write(lambda tx: tx.execute(
                "UPDATE accounts SET balance = balance + ? WHERE name = 'issuer:float'",
                (MONEY_MAX,)) and tx.execute(
                "UPDATE accounts SET balance = balance + ? WHERE name = 'issuer:float'",
                (MONEY_MAX,)))
        assert db.read(check_invariant)["ok"]
    finally:
        db.close()


def test_migration_guards_an_existing_database(tmp_path) -> None:
    """A database made by the schema of version 2 gets the guards by `migrate`."""
    path = tmp_path / "old.db"
    db = Database(str(path), pool_size=1)
    try:
        def upto2(tx):
            from tapcash.host.ledger import migrations as m

            tx.execute("CREATE TABLE schema_version (version INTEGER PRIMARY KEY, "
                       "name TEXT NOT NULL, applied_at INTEGER NOT NULL)")
            for version, name, sql in STEPS[:2]:
                for stmt in m._statements(sql, "sqlite"):
                    tx.execute(stmt)
                tx.execute("INSERT INTO schema_version VALUES (?, ?, 0)", (version, name))

        db.write(upto2)
        db.write(lambda tx: tx.execute("UPDATE accounts SET balance = 9.3e18 "
                                       "WHERE name = 'issuer:loss'"))  # what old code allowed
        db.write(lambda tx: tx.execute("UPDATE accounts SET balance = 0 "
                                       "WHERE name = 'issuer:loss'"))
        assert migrate(db) == [s[0] for s in STEPS[2:]]  # 3 (the guards) and later steps
        with pytest.raises(sqlite3.IntegrityError):
            db.write(lambda tx: tx.execute("UPDATE accounts SET balance = 9.3e18 "
                                           "WHERE name = 'issuer:loss'"))
    finally:
        db.close()
