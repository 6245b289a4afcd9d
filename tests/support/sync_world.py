"""Test support for the sync tests: a real ledger on loopback (uvicorn in a thread, SQLite in a
temporary folder) and a deterministic world of provisioned devices that have paid each other.

Nothing here stands in for the code under test: the ledger is the real FastAPI app over HTTP,
the devices are the real WalletApp / PosApp on SimFlash, the line is a real pseudo-terminal.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tapcash.firmware.core import cbor, proto
from tapcash.firmware.core.hal import Hal
from tapcash.firmware.pos.app import PosApp
from tapcash.firmware.wallet.app import WalletApp
from tapcash.host.issuer import Issuer
from tapcash.host.ledger.client import LedgerClient
from tapcash.host.ledger.loopback import LoopbackLedger
from tapcash.sim.device import provision as pv
from tapcash.sim.device.flash import SimFlash
from tapcash.sim.device.hal import SimClock
from tapcash.sim.nfc.field import DirectLink

OWNER = "alice"


def serve_ledger(db_path: Path, issuer: Issuer, now: int = pv.T0) -> LoopbackLedger:
    """A fresh SQLite ledger at `db_path` on a fixed clock, served on loopback (started)."""
    return LoopbackLedger.on_sqlite(db_path, issuer, clock=lambda: now, log_level="error").start()


@dataclass
class World:
    """An issuer, wallets and POS terminals on simulated flash, registered with a ledger."""

    seed: int
    issuer: Issuer
    clock: SimClock
    wallets: dict[int, tuple[WalletApp, SimFlash]] = field(default_factory=dict)
    pos: dict[int, tuple[PosApp, SimFlash]] = field(default_factory=dict)
    links: dict[int, DirectLink] = field(default_factory=dict)

    def wallet(self, n: int = 1) -> WalletApp:
        return self.wallets[n][0]

    def terminal(self, n: int = 1) -> PosApp:
        return self.pos[n][0]

    def reboot_wallet(self, n: int = 1) -> WalletApp:
        """A new app object on the same flash: the board plugged back in."""
        old, flash = self.wallets[n]
        flash.power_on()
        app = WalletApp(Hal(flash=flash, clock=None, rng=old.hal.rng))
        self.wallets[n] = (app, flash)
        return app

    def reboot_pos(self, n: int = 1) -> PosApp:
        old, flash = self.pos[n]
        flash.power_on()
        app = PosApp(old.hal, old.base_config)
        app.power_on()
        self.pos[n] = (app, flash)
        return app

    def pay(self, wallet: int, pos: int, amount: int) -> Any:
        """The wallet taps POS `pos` and pays `amount` (the real three-round-trip flow)."""
        link = self.links[pos]
        link.tap(self.wallet(wallet))
        result = self.terminal(pos).take_payment(amount)
        link.remove()
        return result


def make_world(seed: int, wallets: int = 1, terminals: int = 1) -> World:
    issuer = pv.issuer_from_seed(seed)
    clock = SimClock(pv.T0)
    w = World(seed, issuer, clock)
    for n in range(1, wallets + 1):
        w.wallets[n] = pv.make_wallet(issuer, n, seed=seed, balance=0, clock=clock)
    for n in range(1, terminals + 1):
        link = DirectLink(None)
        w.links[n] = link
        w.pos[n] = pv.make_pos(issuer, n, clock, link, seed=seed)
    return w


def register(world: World, lc: LedgerClient, funds: int = 1_000_000) -> None:
    """Register every device with the ledger and fund the owner's online account."""
    lc.deposit(OWNER, funds, "initial")
    for app, _flash in world.wallets.values():
        lc.register(cert_of(app), owner=OWNER)
    for app, _flash in world.pos.values():
        lc.register(cert_of(app))


def cert_of(app: Any) -> bytes:
    if isinstance(app, WalletApp):
        info = pv.select(app)
    else:
        info = cbor.decode(pv.call(app, proto.INS_GET_INFO, what="GET INFO"))
    cert = info[proto.INFO_CERT]
    return cert if isinstance(cert, bytes) else cbor.encode(cert)


def device_state(app: Any) -> dict[str, Any]:
    """What a device holds after a sync, through its own APDUs: the INFO map and every journal
    record it still keeps, with the signed status (deterministic: Ed25519 is)."""
    if isinstance(app, WalletApp):
        info = pv.select(app)
    else:
        info = cbor.decode(pv.call(app, proto.INS_GET_INFO, what="GET INFO"))
    records, status = pv.export_all(app)
    return {"info": info, "records": records, "status": status}


# ---- a scenario: a wallet that loaded, paid a POS three times, and has a top-up waiting ------
W1 = pv.device_id("wallet", 1)
P1 = pv.device_id("pos", 1)
PAYMENTS = (1250, 399, 2000)


@dataclass
class Scenario:
    world: World
    server: LoopbackLedger
    client: LedgerClient
    root: Path

    @property
    def outbox_dir(self) -> Path:
        return self.root / "outbox"

    def close(self) -> None:
        self.client.close()
        self.server.stop()


def prepared(root: Path, seed: int = 7) -> Scenario:
    """Devices registered with a fresh ledger; the wallet got voucher 1 (30000) through a first
    sync, paid the POS three times offline, and voucher 2 (5000) waits at the ledger."""
    from tapcash.host.sync.ledger_link import LedgerLink
    from tapcash.host.sync.outbox import Outbox

    root.mkdir(parents=True, exist_ok=True)
    world = make_world(seed)
    server = serve_ledger(root / "ledger.db", world.issuer)
    lc = server.client()
    register(world, lc)
    lc.load(W1, 30000, "first")
    with LedgerLink(server.url, server.token) as link:
        res = pty_sync(world.wallet(), link, Outbox(root / "first-outbox"))
    assert res.outcome == "synced" and res.vouchers_loaded == 1
    for amount in PAYMENTS:
        assert world.pay(1, 1, amount).approved
    lc.load(W1, 5000, "second")
    return Scenario(world, server, lc, root)


def pty_sync(app: Any, link: Any, outbox: Any, faults: Any = None, **kw: Any) -> Any:
    """One in-process `sync_device` against `app` served on a fresh pseudo-terminal."""
    from tapcash.host.sync.session import sync_device
    from tapcash.host.sync.transport import SerialTransport
    from tapcash.sim.device.serial_pty import SerialDevice

    page_records = kw.pop("page_records", 2)
    with SerialDevice(app, faults) as dev:
        with SerialTransport(dev.path, timeout_s=kw.pop("timeout_s", 0.5), **kw) as t:
            return sync_device(t, ledger=link, outbox=outbox, page_records=page_records)


def snapshot(scn: Scenario) -> dict[str, Any]:
    """Everything that must be identical after a sync, however it was interrupted."""
    inv = scn.client.invariant()
    assert inv["ok"], inv
    return {
        "books": scn.client.books(),
        "wallet": device_state(scn.world.wallet()),
        "pos": device_state(scn.world.terminal()),
        "outbox": sorted(p.name for p in scn.outbox_dir.glob("*"))
        if scn.outbox_dir.exists()
        else [],
    }
