"""The ledger's tests (host/ledger/): the ledger over real HTTP on SQLite and PostgreSQL, fed by
the real firmware (tests/support/ledger_world.py).

Every test here gets the bank invariant checked after it (`books_balance`, autouse): every
ledger a test built through ledger_world.make_ledger must balance, with no negative account.
A new module needs no line of its own for it. The database fixtures (`db_url`, `pg_admin`,
`db_url_factory`) and `world` are here for every module too.
"""

from ledger_world import books_balance, db_url, db_url_factory, pg_admin, world

__all__ = ["books_balance", "db_url", "db_url_factory", "pg_admin", "world"]
