"""Fixtures and helpers of the ledger tests (no tests here).

A `World` is one ledger served over real HTTP on loopback (uvicorn in a thread, or a subprocess
for the kill test) plus real firmware devices: wallets and POS terminals from sim/device/provision,
registered with the ledger, loaded through it, paying each other, exported and synced.
Both back ends: SQLite (a temp file) and PostgreSQL (127.0.0.1:5432, a fresh schema per test,
dropped after; with CI set and no server reachable the PG tests FAIL instead of skipping).
After every test each ledger built here must pass its invariant (autouse fixture).
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest

from tapcash.firmware.core import cbor, proto
from tapcash.firmware.pos.app import PosApp
from tapcash.firmware.wallet.app import WalletApp
from tapcash.host.device.apdu import exchange
from tapcash.host.issuer import Issuer
from tapcash.host.ledger.chain import records_digest
from tapcash.host.ledger.client import IngestResult, LedgerClient
from tapcash.host.ledger.db import Database
from tapcash.host.ledger.loopback import LoopbackLedger
from tapcash.host.ledger.migrations import migrate
from tapcash.host.ledger.postings import check_invariant
from tapcash.host.ledger.service import Ledger
from tapcash.sim.device import provision as pv
from tapcash.sim.device.hal import SimClock
from tapcash.sim.nfc.field import DirectLink

TOKEN = "test-operator-token-" + uuid.uuid4().hex
PG_USERS = ("postgres", "root")
_ledgers: list[Ledger] = []


# ---- databases -----------------------------------------------------------------------------
def _pg_admin_url() -> str | None:
    import psycopg

    for user in PG_USERS:
        url = f"postgresql://{user}@127.0.0.1:5432/test"
        try:
            with psycopg.connect(url, connect_timeout=3):
                return url
        except psycopg.OperationalError:
            continue
    return None


@pytest.fixture(scope="session")
def pg_admin() -> str:
    url = _pg_admin_url()
    if url is None:
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL at 127.0.0.1:5432 (database test) is unreachable in CI")
        pytest.skip("PostgreSQL at 127.0.0.1:5432 is not reachable")
    return url


@contextmanager
def pg_schema(admin: str, prefix: str = "tapcash_t_") -> Iterator[str]:
    """A PostgreSQL schema of its own on `admin`'s database, dropped after: its URL."""
    import psycopg

    schema = prefix + uuid.uuid4().hex[:12]
    with psycopg.connect(admin, autocommit=True) as c:
        c.execute(f"CREATE SCHEMA {schema}")
    try:
        yield f"{admin}?options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(admin, autocommit=True) as c:
            c.execute(f"DROP SCHEMA {schema} CASCADE")


def _pg_schema(admin: str) -> Iterator[str]:
    with pg_schema(admin) as url:
        try:
            yield url
            check_books(url)
        finally:
            close_ledgers(url)


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[str]:
    """A fresh, empty database of each back end."""
    if request.param == "sqlite":
        url = str(tmp_path / "ledger.db")
        yield url
        check_books(url)
        close_ledgers(url)
    else:
        yield from _pg_schema(request.getfixturevalue("pg_admin"))


@pytest.fixture
def db_url_factory(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[Any]:
    """More fresh databases of the same back end as `db_url` (for comparing two ledgers)."""
    backend = request.node.callspec.params["db_url"]
    gens: list[Iterator[str]] = []

    def make() -> str:
        if backend == "sqlite":
            return str(tmp_path / f"ledger-{uuid.uuid4().hex[:8]}.db")
        g = _pg_schema(request.getfixturevalue("pg_admin"))
        gens.append(g)
        return next(g)

    urls: list[str] = []

    def make_checked() -> str:
        urls.append(make())
        return urls[-1]

    yield make_checked
    for url in urls:
        if backend == "sqlite":
            check_books(url)
            close_ledgers(url)
    for g in gens:
        for _ in g:
            pass


def make_ledger(url: str, issuer: Issuer, **kw: Any) -> Ledger:
    db = Database(url)
    migrate(db)
    ledger = Ledger(db, issuer, **kw)
    _ledgers.append(ledger)
    return ledger


def check_books(url: str | None = None) -> None:
    """The bank invariant holds and no balance is negative, for every ledger (on `url`)."""
    for ledger in list(_ledgers):
        if url is None or ledger.db.url == url:
            inv = ledger.db.read(check_invariant)
            assert inv["ok"], inv
            assert inv["negative"] == []
            assert inv["issued"] == inv["held"]


def close_ledgers(url: str | None = None) -> None:
    for ledger in list(_ledgers):
        if url is None or ledger.db.url == url:
            ledger.db.close()
            _ledgers.remove(ledger)


@pytest.fixture(autouse=True)
def books_balance() -> Iterator[None]:
    """After every test: the bank invariant holds and no balance is negative. (Ledgers on a
    database fixture are checked by that fixture, before it drops the database.)"""
    close_ledgers()
    yield
    try:
        check_books()
    finally:
        close_ledgers()


# ---- devices -------------------------------------------------------------------------------
def apdu(app: Any, ins: int, data: bytes = b"", what: str = "") -> tuple[bytes, int]:
    """(data, SW) of one command, selecting a wallet first."""
    if isinstance(app, WalletApp):
        pv.select(app)
    return exchange(app.process, ins, data)


@dataclass
class Dev:
    app: Any
    id: bytes
    kind: str
    link: DirectLink | None = None
    merchant: bytes | None = None
    flash: Any = None  # the device's SimFlash (read out / written back by attack tests)
    acked: int = 0
    syncs: list[IngestResult] = field(default_factory=list)


class World:
    """An issuer, a ledger over HTTP, and devices made with the real firmware."""

    def __init__(self, url: str, seed: int = 0, serve: bool = True,
                 ledger_on_sim_clock: bool = False) -> None:
        self.issuer = pv.issuer_from_seed(seed)
        self.seed = seed
        self.clock = SimClock(int(time.time()))
        kw = {"clock": self.clock.now} if ledger_on_sim_clock else {}
        self.ledger = make_ledger(url, self.issuer, **kw)
        self.server = LoopbackLedger(self.ledger, TOKEN).start() if serve else None
        self.client = LedgerClient(self.server.url, TOKEN) if self.server else None
        self.wallets: dict[int, Dev] = {}
        self.poses: dict[int, Dev] = {}

    def close(self) -> None:
        if self.client:
            self.client.close()
        if self.server:
            self.server.stop()

    # -- provisioning through the ledger
    def wallet(
        self, n: int, *, owner: str = "alice", load: int = 0, limits: dict[int, int] | None = None
    ) -> Dev:
        app, flash = pv.make_wallet(
            self.issuer, n, seed=self.seed, limits=limits, clock=self.clock
        )
        info = pv.select(app)
        cert = info[proto.INFO_CERT]
        self.client.register(cert, owner)
        dev = Dev(app, pv.device_id("wallet", n), "wallet", flash=flash)
        self.wallets[n] = dev
        if load:
            self.client.deposit(owner, load)
            self.top_up(dev, load)
        return dev

    def top_up(self, dev: Dev, amount: int) -> None:
        voucher = self.client.load(dev.id, amount)
        _d, sw = apdu(dev.app, proto.INS_LOAD, voucher)
        assert sw == proto.SW_OK, hex(sw)

    def pos(self, n: int, config: dict[int, int] | None = None) -> Dev:
        link = DirectLink(None)
        app, flash = pv.make_pos(self.issuer, n, self.clock, link, seed=self.seed, config=config)
        info = cbor.decode(pv.call(app, proto.INS_GET_INFO, what="GET INFO"))
        self.client.register(info[proto.INFO_CERT])
        dev = Dev(
            app, pv.device_id("pos", n), "pos", link=link, merchant=pv.device_id("merchant", n),
            flash=flash,
        )
        self.poses[n] = dev
        return dev

    def reflash(self, dev: Dev, image: dict[str, bytes]) -> None:
        """The device's flash written back with a programmer (a clone or a rollback): the board
        restarts with it, so nothing the old app kept in RAM survives."""
        old = dev.app
        flash = old.hal.flash
        flash.restore(image)
        flash.power_on()
        dev.app = WalletApp(old.hal) if dev.kind == "wallet" else PosApp(old.hal, old.base_config)
        dev.app.power_on()

    # -- payments
    def pay(self, wallet: Dev, pos: Dev, amount: int) -> Any:
        assert pos.link is not None
        pos.link.tap(wallet.app)
        r = pos.app.take_payment(amount, pin=pv.PIN if amount > 5000 else None)
        pos.link.remove()
        return r

    def transfer(self, payer: Dev, receiver: Dev, amount: int) -> bytes:
        return pv.transfer(
            DirectLink(payer.app),
            DirectLink(receiver.app),
            amount,
            time=self.clock.now(),
            pin=pv.PIN if amount > 5000 else None,
        )

    # -- sync
    def export(self, dev: Dev, since: int | None = None) -> tuple[list[tuple[int, bytes]], bytes]:
        # the records as the device journaled them: the status's digest covers those bytes
        return pv.export_raw(dev.app, dev.acked if since is None else since)

    def sync(self, dev: Dev, client: LedgerClient | None = None) -> IngestResult:
        """EXPORT -> ingest -> LOAD vouchers -> APPLY updates -> ACK, like the sync tool."""
        records, status = self.export(dev)
        res = (client or self.client).ingest(dev.id, records, status)
        self.deliver(dev, res)
        return res

    def deliver(self, dev: Dev, res: IngestResult) -> None:
        # in the sync tool's order (host/sync/session.py): the updates, then the vouchers
        for u in res.updates:
            _d, sw = apdu(dev.app, proto.INS_APPLY, u)
            assert sw in (proto.SW_OK, proto.SW_REPLAY), hex(sw)
        for v in res.vouchers:
            _d, sw = apdu(dev.app, proto.INS_LOAD, v)
            assert sw in (proto.SW_OK, proto.SW_REPLAY), hex(sw)
        _d, sw = apdu(dev.app, proto.INS_ACK, res.ack)
        assert sw == proto.SW_OK, hex(sw)
        dev.acked = res.upto
        dev.syncs.append(res)


@pytest.fixture
def world(db_url: str) -> Iterator[World]:
    w = World(db_url)
    try:
        yield w
    finally:
        w.close()


def balance_of(app: WalletApp) -> int:
    from tapcash.firmware.wallet import state as wst

    return int(app.state[wst.S_BALANCE])


__all__ = [
    "PosApp", "World", "books_balance", "db_url", "db_url_factory", "pg_admin", "pg_schema",
    "pos_journal", "world",
]  # fmt: skip


def pos_journal(
    seed: bytes, pos_id: bytes, pays: list[tuple[bytes, bytes, bytes]], first_seq: int = 1,
    journal: bytes = bytes(32),
) -> tuple[list[tuple[int, bytes]], bytes, bytes]:
    """A terminal's journal records for `pays` [(payment envelope, body hash, payer cert hash)]
    from `first_seq` (after the chain value `journal`), signed with the POS key `seed`: the
    records, its status and the new journal digest. For batches made without a POS app."""
    records = []
    for i, (env, body_hash, cert_hash) in enumerate(pays):
        seq = first_seq + i
        body = cbor.decode(cbor.decode(env)[0])
        receipt = proto.seal(proto.TAG_RECEIPT, {
            proto.RCPT_POS: pos_id, proto.RCPT_WALLET: body[proto.PAY_WALLET],
            proto.RCPT_COUNTER: body[proto.PAY_COUNTER], proto.RCPT_AMOUNT: body[proto.PAY_AMOUNT],
            proto.RCPT_PAYMENT_HASH: body_hash, proto.RCPT_SEQ: seq, proto.RCPT_TIME: 0}, seed)
        records.append((seq, cbor.encode({proto.REC_TYPE: proto.RT_PAYMENT, proto.REC_SIGNED: env,
                                          proto.REC_RECEIPT: receipt,
                                          proto.REC_CERT_HASH: cert_hash})))
    digest = records_digest(records, journal)
    status = proto.seal(proto.TAG_STATUS, {proto.ST_DEVICE: pos_id,
                                           proto.ST_SEQ: first_seq + len(pays) - 1,
                                           proto.ST_DIGEST: digest}, seed)
    return records, status, digest
