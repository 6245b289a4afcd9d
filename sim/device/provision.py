"""Provisioned devices for tests and the simulator: an issuer, wallets and POS terminals
personalised through their real APDUs by the same steps `tapcash provision` takes on a board
(host/device/provision.py `personalise`: PERSO KEYGEN / FINISH), loaded (LOAD), on simulated flash
with a settable clock and seeded randomness, and the host-side reader steps a terminal does
not do (load a voucher, a wallet-to-wallet transfer, an export).

Everything is deterministic given the seeds: `make_pair(seed)` twice gives byte-identical
devices and APDU transcripts.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from tapcash.firmware.core import cbor, proto
from tapcash.firmware.core.hal import Hal
from tapcash.firmware.pos.app import PosApp
from tapcash.firmware.wallet.app import WalletApp
from tapcash.host.device import apdu
from tapcash.host.device.apdu import AppLink
from tapcash.host.device.provision import personalise
from tapcash.host.issuer import YEAR_S, Issuer
from tapcash.sim.device.flash import SimFlash
from tapcash.sim.device.hal import SeededRng, SimClock
from tapcash.sim.nfc.field import DirectLink

T0 = 1_800_000_000  # 2027-01-15, the default simulated "now"
PIN = b"1234"
PUK = b"12345678"


def device_id(kind: str, n: int) -> bytes:
    """A stable 8-byte id: device_id("wallet", 1), device_id("pos", 1), device_id("merchant", 1)."""
    return hashlib.sha256(f"tapcash/sim/{kind}/{n}".encode()).digest()[:8]


def issuer_from_seed(seed: int = 0) -> Issuer:
    return Issuer(hashlib.sha256(b"tapcash/sim/issuer" + seed.to_bytes(8, "big")).digest())


def call(app: Any, ins: int, data: bytes = b"", **kw: Any) -> bytes:
    """`host.device.apdu.call` on a device app's `process` (cla, p1, p2, what as there)."""
    return apdu.call(app.process, ins, data, **kw)


def select(app: Any) -> dict[int, Any]:
    info = cbor.decode(
        call(app, proto.INS_SELECT, proto.AID, cla=proto.CLA_ISO, p1=4, what="SELECT")
    )
    assert isinstance(info, dict)
    return info


# ---- wallets -------------------------------------------------------------------------------
def provision_wallet(
    issuer: Issuer,
    wallet_id: bytes,
    hal: Hal,
    *,
    limits: dict[int, int] | None = None,
    pin: bytes = PIN,
    puk: bytes = PUK,
    balance: int = 0,
    expires: int | None = None,
    config: dict[str, Any] | None = None,
) -> WalletApp:
    """A personalised wallet on `hal` (its flash blank), loaded with `balance` by voucher 1."""
    app = WalletApp(hal, config)
    select(app)
    now = hal.clock.now() if hal.clock is not None else T0
    personalise(
        AppLink(app), "wallet", issuer, wallet_id, now=now, pin=pin, puk=puk, limits=limits,
        expires=expires if expires is not None else (now or T0) + YEAR_S,
    )
    if balance:
        load(app, issuer, wallet_id, 1, balance)
    app.power_on()
    return app


def load(
    app: WalletApp,
    issuer: Issuer,
    wallet_id: bytes,
    number: int,
    amount: int,
    source: int = proto.VSRC_TOPUP,
) -> int:
    """Apply voucher `number` to a wallet; returns the new balance."""
    select(app)
    out = cbor.decode(
        call(
            app,
            proto.INS_LOAD,
            issuer.voucher(wallet_id, number, amount, source=source),
            what="LOAD",
        )
    )
    return int(out[0])


# ---- POS terminals -------------------------------------------------------------------------
def provision_pos(
    issuer: Issuer,
    pos_id: bytes,
    merchant_id: bytes,
    hal: Hal,
    *,
    config: dict[int, int] | None = None,
    hotlist: bytes | None = None,
    expires: int | None = None,
    category: int = 0,
) -> PosApp:
    """A personalised POS on `hal` (its flash blank). `hotlist` None: an empty hot list,
    version 1, issued now; b"": none at all (the POS then refuses payments)."""
    app = PosApp(hal)
    app.power_on()
    now = hal.clock.now() if hal.clock is not None else 0
    personalise(
        AppLink(app), "pos", issuer, pos_id, now=now, merchant=merchant_id, config=config,
        hotlist=hotlist, category=category,
        expires=expires if expires is not None else (now or T0) + YEAR_S,
    )
    return app


def export_all(app: Any, since: int = 0) -> tuple[list[tuple[int, dict[int, Any]]], bytes]:
    """Every journal record after `since` (EXPORT until `more` is false) and the last status
    envelope. Works for wallets (selected first) and POS terminals alike."""
    if isinstance(app, WalletApp):
        select(app)
    records: list[tuple[int, dict[int, Any]]] = []
    while True:
        req = cbor.encode({proto.EXP_SINCE: since, proto.EXP_MAX: 64})
        out = cbor.decode(call(app, proto.INS_EXPORT, req, what="EXPORT"))
        for seq, rec in out[proto.EXP_RECORDS]:  # the bytes journaled, decoded here
            records.append((seq, cbor.decode(rec) if isinstance(rec, bytes) else rec))
            since = seq
        if not out[proto.EXP_MORE]:
            return records, out[proto.EXP_STATUS]


def export_raw(app: Any, since: int = 0) -> tuple[list[tuple[int, bytes]], bytes]:
    """Like export_all, with each record as the bytes the device journaled (and exported)."""
    if isinstance(app, WalletApp):
        select(app)
    records: list[tuple[int, bytes]] = []
    while True:
        req = cbor.encode({proto.EXP_SINCE: since, proto.EXP_MAX: 64})
        out = cbor.decode(call(app, proto.INS_EXPORT, req, what="EXPORT"))
        for seq, rec in out[proto.EXP_RECORDS]:
            records.append((seq, rec))
            since = seq
        if not out[proto.EXP_MORE]:
            return records, out[proto.EXP_STATUS]


def journal_digest(app: Any, upto: int) -> bytes:
    """The journal chain value at `upto` (proto.journal_link), computed here from the records
    the device exports. When its journal was pruned the chain starts from the value at its
    floor, which only the device (and the ledger) hold: then the device's own is taken."""
    records, _status = export_raw(app)
    if records and records[0][0] != 1:
        own = app.journal.link_at(upto)
        return own if own is not None else bytes(32)
    d = bytes(32)
    for seq, rec in records:
        if seq > upto:
            break
        d = proto.journal_link(d, seq, rec)
    return d


def ack_for(issuer: Issuer, app: Any, device: bytes, upto: int, time: int = T0) -> bytes:
    """The ledger's ack of `app`'s journal up to `upto`, with the digest of the records there."""
    return issuer.ack(device, upto, time, journal_digest(app, upto))


# ---- wallet to wallet ----------------------------------------------------------------------
def transfer(
    payer: DirectLink, receiver: DirectLink, amount: int, *, time: int = 0, pin: bytes | None = None
) -> bytes:
    """A staged wallet-to-wallet transfer run by a reader holding both cards: the receiver's
    challenge, the payer's PAY kind 2 to it, the receiver's RECEIVE. Returns the payment
    envelope; DeviceRefused on a refusal, hal.LinkError on a tear."""
    aid, iso = proto.AID, proto.CLA_ISO
    rx_info = cbor.decode(apdu.call(receiver.transceive, proto.INS_SELECT, aid, cla=iso, p1=4))
    challenge = apdu.call(receiver.transceive, proto.INS_CHALLENGE, cla=iso)
    px_info = cbor.decode(apdu.call(payer.transceive, proto.INS_SELECT, aid, cla=iso, p1=4))
    req: dict[int, Any] = {
        proto.REQ_CHALLENGE: challenge,
        proto.REQ_AMOUNT: amount,
        proto.REQ_PAYEE: rx_info[proto.INFO_ID],
        proto.REQ_TIME: time,
        proto.REQ_KIND: proto.PAYKIND_TRANSFER,
    }
    if pin is not None:
        req[proto.REQ_PIN] = pin
    payment = apdu.call(payer.transceive, proto.INS_PAY, cbor.encode(req))
    apdu.call(receiver.transceive, proto.INS_RECEIVE,
              cbor.encode([payment, px_info[proto.INFO_CERT]]))
    return payment


# ---- a wallet and a POS, ready to pay ---------------------------------------------------------
@dataclass(frozen=True)
class PairImage:
    wallet: dict[str, bytes]
    pos: dict[str, bytes]
    time: int


@dataclass
class Pair:
    issuer: Issuer
    clock: SimClock
    wallet: WalletApp
    wallet_id: bytes
    wallet_flash: SimFlash
    pos: PosApp
    pos_id: bytes
    pos_flash: SimFlash
    link: DirectLink
    initial: int
    extra: dict[str, Any] = field(default_factory=dict)

    def snapshot(self) -> PairImage:
        """Both flash images and the clock: `restore` forks a run from here."""
        return PairImage(self.wallet_flash.snapshot(), self.pos_flash.snapshot(), self.clock.now())

    def restore(self, image: PairImage) -> None:
        """Both devices as they were at `image`: flash restored, new app objects (RAM gone),
        the wallet tapped into the POS's field, the link's records and faults cleared."""
        self.wallet_flash.restore(image.wallet)
        self.pos_flash.restore(image.pos)
        self.clock.set(image.time)
        self.link.cancel_tear()
        self.link.clear_records()
        self.reboot_pos()
        self.reboot_wallet()

    def reboot_wallet(self) -> WalletApp:
        """A new wallet app object on the same flash (power restored), put in the field."""
        self.wallet_flash.power_on()
        self.wallet = WalletApp(Hal(flash=self.wallet_flash, clock=None, rng=self.wallet.hal.rng))
        self.link.tap(self.wallet)
        return self.wallet

    def reboot_pos(self) -> PosApp:
        """A new POS app object on the same flash (power restored), recovered."""
        self.pos_flash.power_on()
        hal = self.pos.hal
        self.pos = PosApp(hal, self.pos.base_config)
        self.pos.power_on()
        return self.pos


def make_wallet(
    issuer: Issuer,
    n: int,
    *,
    seed: int = 0,
    balance: int = 0,
    limits: dict[int, int] | None = None,
    clock: SimClock | None = None,
    pin: bytes = PIN,
) -> tuple[WalletApp, SimFlash]:
    """Wallet number n (id device_id("wallet", n)) on a fresh SimFlash. The card has no clock
    (cards are field-powered): certificate expiry is the POS's check."""
    flash = SimFlash(seed=seed * 1000 + n)
    hal = Hal(
        flash=flash, clock=None, rng=SeededRng(b"wallet" + (seed * 1000 + n).to_bytes(8, "big"))
    )
    app = provision_wallet(
        issuer,
        device_id("wallet", n),
        hal,
        balance=balance,
        limits=limits,
        pin=pin,
        expires=(clock.now() if clock else T0) + YEAR_S,
    )
    return app, flash


def make_pos(
    issuer: Issuer,
    n: int,
    clock: SimClock,
    link: DirectLink,
    *,
    seed: int = 0,
    config: dict[int, int] | None = None,
    hotlist: bytes | None = None,
    **hal_extra: Any,
) -> tuple[PosApp, SimFlash]:
    """POS number n (id device_id("pos", n), merchant device_id("merchant", n))."""
    flash = SimFlash(seed=seed * 1000 + 500 + n)
    hal = Hal(
        flash=flash,
        clock=clock,
        rng=SeededRng(b"pos" + (seed * 1000 + n).to_bytes(8, "big")),
        link=link,
        **hal_extra,
    )
    app = provision_pos(
        issuer, device_id("pos", n), device_id("merchant", n), hal, config=config, hotlist=hotlist
    )
    return app, flash


def make_pair(
    seed: int = 0,
    *,
    balance: int = 50_000,
    limits: dict[int, int] | None = None,
    config: dict[int, int] | None = None,
    now: int = T0,
    **hal_extra: Any,
) -> Pair:
    """An issuer, wallet 1 loaded with `balance`, POS 1 with an empty hot list, the wallet in
    the POS's field. Deterministic in `seed`."""
    issuer = issuer_from_seed(seed)
    clock = SimClock(now)
    wallet, wflash = make_wallet(issuer, 1, seed=seed, balance=balance, limits=limits, clock=clock)
    link = DirectLink(wallet)
    pos, pflash = make_pos(issuer, 1, clock, link, seed=seed, config=config, **hal_extra)
    return Pair(
        issuer,
        clock,
        wallet,
        device_id("wallet", 1),
        wflash,
        pos,
        device_id("pos", 1),
        pflash,
        link,
        balance,
    )
