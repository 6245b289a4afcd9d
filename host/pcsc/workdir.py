"""A desktop POS and simulated wallet cards kept in a local folder, state in files (FileFlash):

    WORKDIR/
      issuer.key     issuer key, created on first use (0600) unless another key file is given;
                     it certifies the POS and the cards below, so they accept each other
      pos/           the POS terminal's flash; personalised on first use (random POS and
                     merchant ids, default POS config, an empty hot list issued now)
      wallets/N/     simulated wallet card N's flash; personalised on first use (PIN 1234,
                     PUK 12345678, default limits) and loaded with the initial balance

This is a bench for a real reader and a pilot's desktop terminal, not an issuer back office:
the issuer key sits next to the devices, and `refresh_hotlist` lets the desktop POS sign
itself a fresh empty hot list when its own one is stale (a synced POS gets it from the ledger).
Every device is personalised through its real APDUs (PERSO KEYGEN / FINISH, LOAD, APPLY).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from tapcash.firmware.core import cbor, proto
from tapcash.firmware.core.fileflash import FileFlash
from tapcash.firmware.core.hal import Clock, Hal, Rng
from tapcash.firmware.pos.app import PosApp
from tapcash.firmware.wallet.app import WalletApp
from tapcash.host.device.apdu import call
from tapcash.host.issuer import CERT_DAYS, DAY_S, Issuer
from tapcash.sim.device import provision as pv

DEFAULT_WORKDIR = "tapcash-pcsc"
DEFAULT_BALANCE = 50_000


class SystemClock(Clock):
    def now(self) -> int:
        return int(time.time())


class OsRng(Rng):
    def random(self, n: int) -> bytes:
        return os.urandom(n)


def load_issuer(workdir: Path, key_path: Path | None = None) -> Issuer:
    """The issuer of this folder: `key_path` if given, else WORKDIR/issuer.key (made on first
    use; two processes making it at once end up with the same key)."""
    if key_path is not None:
        return Issuer.load(key_path)
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / "issuer.key"
    if not path.exists():
        try:
            Issuer.generate().save(path)
        except FileExistsError:
            pass
    return Issuer.load(path)


def _info(app: PosApp | WalletApp) -> dict:
    info = cbor.decode(call(app.process, proto.INS_GET_INFO, what="GET INFO"))
    assert isinstance(info, dict)
    return info


def open_pos(workdir: Path, issuer: Issuer) -> tuple[PosApp, bool]:
    """(the POS of this folder, powered on, True if it was personalised just now). Set
    `pos.hal.link` before taking a payment."""
    hal = Hal(flash=FileFlash(str(workdir / "pos")), clock=SystemClock(), rng=OsRng())
    pos = PosApp(hal).power_on()
    if pos.personalised:
        return pos, False
    pos = pv.provision_pos(issuer, os.urandom(8), os.urandom(8), hal)
    return pos.power_on(), True


def refresh_hotlist(pos: PosApp, issuer: Issuer) -> int | None:
    """When the POS's hot list is missing or stale, APPLY an issuer update carrying a fresh
    empty one; returns its version (None: nothing to do)."""
    now = pos.now()
    if not pos.hot_stale(now):
        return None
    info = _info(pos)
    version = int(info.get(proto.INFO_HOT_VERSION, 0)) + 1
    update = issuer.update(
        pos.pos_id,
        int(info.get(proto.INFO_UPDATE, 0)) + 1,
        {proto.UPD_HOTLIST: issuer.hotlist(version, now, [])},
    )
    pv.call(pos, proto.INS_APPLY, update, what="APPLY hot list")
    return version


def open_wallet(
    workdir: Path, issuer: Issuer, number: int = 1, balance: int = DEFAULT_BALANCE
) -> tuple[WalletApp, bool]:
    """(simulated wallet card `number` of this folder, True if personalised just now with
    `balance`). The card has no clock, like a field-powered card."""
    hal = Hal(flash=FileFlash(str(workdir / "wallets" / str(number))), clock=None, rng=OsRng())
    wallet = WalletApp(hal)
    pv.select(wallet)
    if not _info(wallet).get(proto.INFO_FLAGS, 0) & proto.FLAG_BLANK:
        wallet.power_on()
        return wallet, False
    wallet_id = os.urandom(8)
    wallet = pv.provision_wallet(
        issuer, wallet_id, hal, balance=balance, expires=int(time.time()) + CERT_DAYS * DAY_S
    )
    return wallet, True


def wallet_summary(wallet: WalletApp) -> tuple[bytes, int, int]:
    """(wallet id, payment counter, balance) from the card's committed state (the simulated
    card is ours to look into; a POS only learns the balance from the signed payment)."""
    from tapcash.firmware.wallet import state as wst

    s = wallet.state
    return s[wst.S_ID], s[wst.S_COUNTER], s[wst.S_BALANCE]
