"""Schema migrations: numbered steps applied in order, recorded in `schema_version`.

Each step is SQL written once for both back ends; `{blob}`, `{serial}` and `{bigint}` are the only
dialect differences and are filled in per back end (a step may also give one text per back end).
Append new steps, never edit an applied one.
"""

from __future__ import annotations

import time

from .codec import MONEY_MAX
from .db import Database, Tx

_TYPES = {
    "sqlite": {"blob": "BLOB", "bigint": "INTEGER", "serial": "INTEGER PRIMARY KEY"},
    "postgresql": {"blob": "BYTEA", "bigint": "BIGINT", "serial": "BIGSERIAL PRIMARY KEY"},
}

# Balances may be negative only on the issuer's own contra accounts (kind 'issuer'); the CHECK
# makes the database refuse any transaction that would break that rule.
def _money_guards() -> dict[str, str]:
    """Step 3: no stored amount or balance can be anything but an integer within +-MONEY_MAX.

    PostgreSQL: CHECK constraints (validated against the rows already there). SQLite cannot add a
    CHECK to an existing table, and its integer overflow silently turns `balance + x` into a
    REAL: triggers refuse any row whose value is not an integer in range (`typeof` is checked
    first, so 9.2e18 stored as REAL is refused too), on new and upgraded databases alike."""
    m = MONEY_MAX
    money = {"accounts": ("balance", -m), "postings": ("amount", 1), "vouchers": ("amount", 1),
             "payments": ("amount", 0), "settlements": ("amount", 0),
             "payroll_batches": ("total", 0)}
    pairs = list(money.items()) + [("fraud_cases", ("loss", 0)), ("fraud_cases", ("amount_b", 0))]
    pg, lite = [], []
    for table, (col, lo) in pairs:
        pg.append(f"ALTER TABLE {table} ADD CONSTRAINT {table}_{col}_range "
                  f"CHECK ({col} BETWEEN {lo} AND {m})")
        for op in ("INSERT", "UPDATE"):
            lite.append(
                f"CREATE TRIGGER {table}_{col}_{op.lower()}_guard BEFORE {op} ON {table} "
                f"WHEN typeof(NEW.{col}) <> 'integer' OR NEW.{col} NOT BETWEEN {lo} AND {m} "
                f"BEGIN SELECT RAISE(ABORT, '{table}.{col}: not an integer in [{lo}, {m}]'); END")
    return {"postgresql": ";\n".join(pg), "sqlite": ";\n".join(lite)}


# Step 8: on PostgreSQL, the references of the three tables every payment writes a row to are
# checked once per statement, not once per row. A foreign key checks each row inserted with its
# own query and row lock on the parent (SELECT ... FOR KEY SHARE): for a batch of 1,000
# payments that was 4,000 of them (postings src and dst, payments wallet, journal_links
# device), about 18 us of server CPU per payment, 40% of what its inserts cost the server.
# These triggers check the whole statement's new rows in one anti-join (COPY fires them too);
# the parent rows they name cannot be deleted or renamed while referenced (nothing in the
# ledger ever deletes an account or a device). SQLite keeps its foreign keys: there a check
# is one lookup in the parent's primary key, in-process, and costs next to nothing.
_REFS = {  # child table: (parent table, parent key, [child columns])
    "postings": ("accounts", "name", ["src", "dst"]),
    "payments": ("devices", "id", ["wallet"]),
    "journal_links": ("devices", "id", ["device"]),
}


def _statement_refs() -> dict[str, str]:
    pg = []
    for child, (parent, key, cols) in _REFS.items():
        for col in cols:
            pg.append(f"ALTER TABLE {child} DROP CONSTRAINT IF EXISTS {child}_{col}_fkey")
        # the distinct keys first: a batch names a few parents, thousands of times
        keys = " UNION ".join(f"SELECT DISTINCT {col} FROM new_rows" for col in cols)
        # one line per function body: statements are split at ';' + newline
        pg.append(
            f"CREATE FUNCTION tapcash_{child}_refs() RETURNS trigger LANGUAGE plpgsql "
            f"SET search_path FROM CURRENT AS $$ BEGIN IF EXISTS (SELECT 1 FROM ({keys}) n (k) "
            f"WHERE NOT EXISTS (SELECT 1 FROM {parent} p WHERE p.{key} = n.k)) THEN RAISE "
            f"foreign_key_violation USING MESSAGE = "
            f"'{child}: a row names no {parent} row ({', '.join(cols)})'; END IF; "
            f"RETURN NULL; END $$")
        for op in ("INSERT", "UPDATE"):  # a trigger with a transition table has one event
            pg.append(f"CREATE TRIGGER {child}_refs_{op.lower()} AFTER {op} ON {child} "
                      f"REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT "
                      f"EXECUTE FUNCTION tapcash_{child}_refs()")
    for parent, key in (("accounts", "name"), ("devices", "id")):
        used = " OR ".join(
            f"EXISTS (SELECT 1 FROM {child} c WHERE "
            + " OR ".join(f"c.{col} = OLD.{key}" for col in cols) + ")"
            for child, (par, _k, cols) in _REFS.items() if par == parent)
        pg.append(
            f"CREATE FUNCTION tapcash_{parent}_kept() RETURNS trigger LANGUAGE plpgsql "
            f"SET search_path FROM CURRENT AS $$ BEGIN IF {used} THEN RAISE "
            f"foreign_key_violation USING MESSAGE = '{parent} ' || TG_OP || ': the row is "
            f"referenced'; END IF; IF TG_OP = 'DELETE' THEN RETURN OLD; END IF; RETURN NEW; "
            f"END $$")
        pg.append(f"CREATE TRIGGER {parent}_kept_delete BEFORE DELETE ON {parent} FOR EACH ROW "
                  f"EXECUTE FUNCTION tapcash_{parent}_kept()")
        pg.append(f"CREATE TRIGGER {parent}_kept_update BEFORE UPDATE OF {key} ON {parent} "
                  f"FOR EACH ROW WHEN (OLD.{key} IS DISTINCT FROM NEW.{key}) "
                  f"EXECUTE FUNCTION tapcash_{parent}_kept()")
    return {"postgresql": ";\n".join(pg), "sqlite": ""}


# Step 10: SQLite's payments table rebuilt with its money guard as a CHECK instead of the
# step 3 triggers (a trigger program runs per row inserted: ~0.7 us a payment of the ~5 us its
# row costs). Same columns, key, index and foreign key; the rows copied as they are.
# PostgreSQL has had a CHECK since step 3: nothing to do there.
_PAYMENT_COLS = ("wallet, counter, hash, prev, envelope, amount, payee, kind, time, status, "
                 "credited, via, at")


def _payments_check() -> dict[str, str]:
    m = MONEY_MAX
    lite = [
        "CREATE TABLE payments_v10 (wallet BLOB NOT NULL REFERENCES devices(id), "
        "counter INTEGER NOT NULL, hash BLOB NOT NULL, prev BLOB NOT NULL, "
        "envelope BLOB NOT NULL, amount INTEGER NOT NULL CONSTRAINT payments_amount_range "
        f"CHECK (typeof(amount) = 'integer' AND amount BETWEEN 0 AND {m}), "
        "payee BLOB NOT NULL, kind INTEGER NOT NULL, time INTEGER NOT NULL, "
        "status TEXT NOT NULL, credited TEXT, via TEXT NOT NULL, at INTEGER NOT NULL, "
        "PRIMARY KEY (wallet, counter))",
        f"INSERT INTO payments_v10 ({_PAYMENT_COLS}) SELECT {_PAYMENT_COLS} FROM payments "
        "ORDER BY wallet, counter",
        "DROP TABLE payments",  # its guard triggers and the (wallet, prev) index with it
        "ALTER TABLE payments_v10 RENAME TO payments",
        "CREATE INDEX payments_prev ON payments(wallet, prev)",
    ]
    return {"postgresql": "", "sqlite": ";\n".join(lite)}


STEPS: list[tuple[int, str, str | dict[str, str]]] = [
    (
        1,
        "initial schema",
        """
CREATE TABLE accounts (
    name TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    balance {bigint} NOT NULL DEFAULT 0,
    CHECK (kind = 'issuer' OR balance >= 0)
);
CREATE TABLE postings (
    id {serial},
    src TEXT NOT NULL REFERENCES accounts(name),
    dst TEXT NOT NULL REFERENCES accounts(name),
    amount {bigint} NOT NULL CHECK (amount > 0),
    kind TEXT NOT NULL,
    ref TEXT NOT NULL,
    at {bigint} NOT NULL
);
CREATE UNIQUE INDEX postings_kind_ref ON postings(kind, ref);
CREATE INDEX postings_src ON postings(src);
CREATE INDEX postings_dst ON postings(dst);
CREATE TABLE owners (
    name TEXT PRIMARY KEY,
    created_at {bigint} NOT NULL
);
CREATE TABLE devices (
    id {blob} PRIMARY KEY,
    kind INTEGER NOT NULL,
    pubkey {blob} NOT NULL,
    cert {blob} NOT NULL,
    serial {bigint} NOT NULL,
    expires {bigint} NOT NULL,
    merchant {blob},
    owner TEXT REFERENCES owners(name),
    limits TEXT NOT NULL DEFAULT '{{}}',
    revoked INTEGER NOT NULL DEFAULT 0,
    revoked_at {bigint},
    revoke_reason TEXT,
    renewed INTEGER NOT NULL DEFAULT 0,
    next_voucher {bigint} NOT NULL DEFAULT 1,
    vouchers_applied {bigint} NOT NULL DEFAULT 0,
    next_update {bigint} NOT NULL DEFAULT 1,
    synced_counter {bigint} NOT NULL DEFAULT 0,
    synced_spent {bigint} NOT NULL DEFAULT 0,
    upd_hotlist {bigint} NOT NULL DEFAULT 0,
    upd_serial {bigint} NOT NULL DEFAULT 0,
    acked_upto {bigint},
    last_status {blob},
    registered_at {bigint} NOT NULL
);
CREATE INDEX devices_merchant ON devices(merchant);
CREATE TABLE payments (
    wallet {blob} NOT NULL REFERENCES devices(id),
    counter {bigint} NOT NULL,
    hash {blob} NOT NULL,
    prev {blob} NOT NULL,
    envelope {blob} NOT NULL,
    amount {bigint} NOT NULL,
    payee {blob} NOT NULL,
    kind INTEGER NOT NULL,
    time {bigint} NOT NULL,
    status TEXT NOT NULL,
    credited TEXT,
    via TEXT NOT NULL,
    at {bigint} NOT NULL,
    PRIMARY KEY (wallet, counter)
);
CREATE INDEX payments_prev ON payments(wallet, prev);
CREATE TABLE fraud_cases (
    id {serial},
    wallet {blob} NOT NULL REFERENCES devices(id),
    kind TEXT NOT NULL,
    counter {bigint} NOT NULL,
    proof_a {blob} NOT NULL,
    proof_b {blob} NOT NULL,
    hash_b {blob} NOT NULL,
    amount_b {bigint} NOT NULL,
    credited_b TEXT,
    loss {bigint} NOT NULL DEFAULT 0,
    detected_at {bigint} NOT NULL,
    via {blob} NOT NULL
);
CREATE UNIQUE INDEX fraud_cases_proof ON fraud_cases(wallet, kind, hash_b);
CREATE TABLE receipts (
    pos {blob} NOT NULL,
    seq {bigint} NOT NULL,
    wallet {blob} NOT NULL,
    counter {bigint} NOT NULL,
    hash {blob} NOT NULL,
    envelope {blob} NOT NULL,
    PRIMARY KEY (pos, seq)
);
CREATE TABLE vouchers (
    wallet {blob} NOT NULL REFERENCES devices(id),
    number {bigint} NOT NULL,
    amount {bigint} NOT NULL,
    source INTEGER NOT NULL,
    ref TEXT NOT NULL,
    envelope {blob} NOT NULL,
    applied INTEGER NOT NULL DEFAULT 0,
    at {bigint} NOT NULL,
    PRIMARY KEY (wallet, number)
);
CREATE UNIQUE INDEX vouchers_source_ref ON vouchers(source, ref);
CREATE TABLE updates (
    device {blob} NOT NULL REFERENCES devices(id),
    number {bigint} NOT NULL,
    envelope {blob} NOT NULL,
    has_cert INTEGER NOT NULL DEFAULT 0,
    at {bigint} NOT NULL,
    PRIMARY KEY (device, number)
);
CREATE TABLE journal_ranges (
    device {blob} NOT NULL REFERENCES devices(id),
    lo {bigint} NOT NULL,
    hi {bigint} NOT NULL,
    at {bigint} NOT NULL
);
CREATE INDEX journal_ranges_device ON journal_ranges(device, lo);
CREATE TABLE hotlists (
    version {bigint} PRIMARY KEY,
    issued {bigint} NOT NULL,
    envelope {blob} NOT NULL
);
CREATE TABLE settlements (
    id {serial},
    merchant {blob} NOT NULL,
    amount {bigint} NOT NULL,
    reference TEXT NOT NULL,
    at {bigint} NOT NULL
);
CREATE TABLE payroll_batches (
    reference TEXT PRIMARY KEY,
    payer TEXT NOT NULL REFERENCES owners(name),
    lines {bigint} NOT NULL,
    total {bigint} NOT NULL,
    at {bigint} NOT NULL
);
INSERT INTO accounts (name, kind, balance) VALUES ('issuer:float', 'issuer', 0);
INSERT INTO accounts (name, kind, balance) VALUES ('issuer:loss', 'issuer', 0);
""",
    ),
    (
        2,
        "drop postings_src: a wallet's outgoing postings are found by (kind, ref)",
        """
DROP INDEX postings_src;
""",
    ),
    (3, "money columns: integers within +-MONEY_MAX only (CHECK / guard triggers)",
     _money_guards()),
    (
        4,
        "journal hash chain per device (acks cover exactly the records held), rollback "
        "evidence, records set aside",
        """
CREATE TABLE journal_links (
    device {blob} NOT NULL REFERENCES devices(id),
    seq {bigint} NOT NULL,
    rhash {blob} NOT NULL,
    link {blob} NOT NULL,
    PRIMARY KEY (device, seq)
);
CREATE TABLE journal_pending (
    device {blob} NOT NULL REFERENCES devices(id),
    seq {bigint} NOT NULL,
    rhash {blob} NOT NULL,
    PRIMARY KEY (device, seq)
);
DROP TABLE journal_ranges;
ALTER TABLE devices ADD COLUMN top_status {blob};
ALTER TABLE fraud_cases ADD COLUMN evidence {blob};
CREATE TABLE set_aside (
    device {blob} NOT NULL REFERENCES devices(id),
    seq {bigint} NOT NULL,
    record {blob} NOT NULL,
    type INTEGER,
    reason TEXT NOT NULL,
    at {bigint} NOT NULL,
    PRIMARY KEY (device, seq)
);
""",
    ),
    (
        5,
        "programmes: earmarked purses (programs, purses, programme loads, purse payments)",
        """
CREATE TABLE programs (
    id {blob} PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    funder TEXT NOT NULL REFERENCES owners(name),
    kind INTEGER NOT NULL,
    rule {blob} NOT NULL,
    valid_from {bigint} NOT NULL,
    expires {bigint} NOT NULL,
    cancelled_at {bigint},
    created_at {bigint} NOT NULL
);
CREATE TABLE purses (
    program {blob} NOT NULL REFERENCES programs(id),
    wallet {blob} NOT NULL REFERENCES devices(id),
    loaded {bigint} NOT NULL DEFAULT 0 CHECK (loaded >= 0),
    closed_at {bigint},
    clear_update {bigint},
    cleared_counter {bigint},
    PRIMARY KEY (program, wallet)
);
CREATE INDEX purses_wallet ON purses(wallet);
CREATE TABLE program_loads (
    reference TEXT PRIMARY KEY,
    program {blob} NOT NULL REFERENCES programs(id),
    lines INTEGER NOT NULL,
    total {bigint} NOT NULL CHECK (total > 0),
    at {bigint} NOT NULL
);
CREATE TABLE purse_payments (
    wallet {blob} NOT NULL,
    counter {bigint} NOT NULL,
    hash {blob} NOT NULL,
    program {blob} NOT NULL,
    earmarked {bigint} NOT NULL CHECK (earmarked > 0),
    merchant {blob},
    category {bigint},
    status TEXT NOT NULL,
    at {bigint} NOT NULL,
    PRIMARY KEY (wallet, counter, hash)
);
CREATE INDEX purse_payments_program ON purse_payments(program, status)
""",
    ),
    (
        6,
        "batches acked whole, by a digest of their bytes: a batch sent again is answered "
        "without decoding or verifying it",
        """
CREATE TABLE ingested_batches (
    device {blob} NOT NULL REFERENCES devices(id),
    digest {blob} NOT NULL,
    seq {bigint} NOT NULL,
    payments {bigint} NOT NULL,
    set_aside {bigint} NOT NULL,
    at {bigint} NOT NULL,
    PRIMARY KEY (device, digest)
)
""",
    ),
    (
        7,
        "cert_hashes: the body hashes of a device's certificates replaced by renewals (a POS "
        "journal names the certificate it accepted a payment under: PROTOCOL.md §3.4)",
        """
CREATE TABLE cert_hashes (
    device {blob} NOT NULL REFERENCES devices(id),
    hash {blob} NOT NULL,
    serial {bigint} NOT NULL,
    PRIMARY KEY (device, hash)
)
""",
    ),    (8, "PostgreSQL: the references of postings, payments and journal_links checked once per "
        "statement (triggers), not by a foreign key's query per row", _statement_refs()),
    (
        9,
        "chain_audits: how far the balance audit of a wallet's unsynced chain got, so a batch "
        "checks only the payments after it (ingest.py audit_chain)",
        """
CREATE TABLE chain_audits (
    wallet {blob} PRIMARY KEY REFERENCES devices(id),
    synced {bigint} NOT NULL,
    base {bigint} NOT NULL,
    mode {bigint} NOT NULL,
    upto {bigint} NOT NULL,
    spent {bigint} NOT NULL,
    need {bigint} NOT NULL
)
""",
    ),
    (10, "SQLite: the payments table's money guard is a CHECK, not two triggers per row (the "
         "table rebuilt; PostgreSQL has its CHECK since step 3)", _payments_check()),
    (
        11,
        "operator_refs: a deposit's, a wallet load's and a settlement's caller reference "
        "applied at most once (the same request again gets the first answer; new rows only)",
        # kind: deposit | load | settle; scope: '' (deposit), the wallet (load) or the
        # merchant (settle: `settle --all` pays every merchant under one); request: what was
        # asked (JSON), answer: what the first request was answered (JSON). Existing
        # databases start with it empty: what they applied before is not re-examined.
        """
CREATE TABLE operator_refs (
    kind TEXT NOT NULL,
    scope TEXT NOT NULL,
    reference TEXT NOT NULL,
    request TEXT NOT NULL,
    answer TEXT NOT NULL,
    at {bigint} NOT NULL,
    PRIMARY KEY (kind, scope, reference)
)
""",
    ),
    (
        12,
        "journal_blocks: a device's held journal chain as one row per batch acked (seqs lo..hi, "
        "record hashes and chain values packed), not one journal_links row per record",
        """
CREATE TABLE journal_blocks (
    device {blob} NOT NULL REFERENCES devices(id),
    lo {bigint} NOT NULL,
    hi {bigint} NOT NULL,
    rhashes {blob} NOT NULL,
    links {blob} NOT NULL,
    PRIMARY KEY (device, hi)
)
""",
    ),
    (
        13,
        "programs.return_window: each programme's settling window (the hot-list age of the "
        "ledger that created it), so every reader of the database states one returns_at",
        # NULL for programmes created before: the default hot-list age (7 days), the only one
        # a served ledger had then.
        "ALTER TABLE programs ADD COLUMN return_window {bigint}",
    ),
]

LATEST = STEPS[-1][0]


def _statements(sql: str | dict[str, str], dialect: str) -> list[str]:
    if isinstance(sql, dict):
        return [s.strip() for s in sql[dialect].split(";\n") if s.strip()]
    text = sql.format(**_TYPES[dialect])
    return [s.strip() for s in text.split(";") if s.strip()]


def current_version(tx: Tx) -> int:
    if tx.dialect == "sqlite":
        exists = tx.one("SELECT 1 FROM sqlite_master WHERE type='table' AND name='schema_version'")
    else:
        exists = tx.one("SELECT 1 FROM pg_tables WHERE tablename='schema_version' "
                        "AND schemaname = current_schema()")
    if not exists:
        return 0
    return int(tx.scalar("SELECT COALESCE(MAX(version), 0) FROM schema_version", default=0))


def migrate(db: Database) -> list[int]:
    """Apply every pending step, each in its own transaction. Safe to run from several
    processes at once (a lock serializes them). Returns the versions applied."""
    applied: list[int] = []

    def step(tx: Tx) -> int | None:
        if tx.dialect == "postgresql":
            tx.execute("SELECT pg_advisory_xact_lock(?)", (0x74617063617368,))  # "tapcash"
        tx.execute(
            "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, "
            "name TEXT NOT NULL, applied_at " + _TYPES[tx.dialect]["bigint"] + " NOT NULL)"
        )
        have = current_version(tx)
        for version, name, sql in STEPS:
            if version <= have:
                continue
            for stmt in _statements(sql, tx.dialect):
                tx.execute(stmt)
            tx.execute(
                "INSERT INTO schema_version (version, name, applied_at) VALUES (?, ?, ?)",
                (version, name, int(time.time())),
            )
            return version
        return None

    while True:
        v = db.write(step, attempts=1)
        if v is None:
            return applied
        applied.append(v)
