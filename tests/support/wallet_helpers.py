"""Test helpers for the wallet app: a card on simulated flash, driven with real APDUs.

Nothing here stands in for the wallet: `Card` builds a real `WalletApp` on a real `SimFlash`
(through core.storage), with the test issuer (host/issuer.py) and real Ed25519.
"""

from __future__ import annotations

import hashlib
import random

from tapcash.firmware.core import cbor, ed25519, proto
from tapcash.firmware.core.hal import Clock, Display, Hal, Rng
from tapcash.firmware.wallet import state as st
from tapcash.firmware.wallet.app import WalletApp
from tapcash.host.device.apdu import exchange
from tapcash.host.issuer import Issuer
from tapcash.sim.device.flash import SimFlash

NOW = 1_800_000_000
ISSUER = Issuer(bytes(range(32)))
PIN = b"1234"
PUK = b"12345678"
POS_ID = b"POS-0001"
POS_SEED = hashlib.sha256(b"test pos").digest()


class SeededRng(Rng):
    def __init__(self, seed: int) -> None:
        self.r = random.Random(seed)

    def random(self, n: int) -> bytes:
        return self.r.randbytes(n)


class SetClock(Clock):
    def __init__(self, now: int = NOW) -> None:
        self.t = now

    def now(self) -> int:
        return self.t


class Screen(Display):
    def __init__(self) -> None:
        self.shown: list[list[str]] = []

    def show(self, lines: list[str]) -> None:
        self.shown.append(list(lines))


def apdu(cla: int, ins: int, p1: int = 0, p2: int = 0, data: bytes = b"") -> bytes:
    return proto.build_command(cla, ins, p1, p2, data)


class Card:
    """A wallet card on SimFlash. `send` returns (data, sw)."""

    def __init__(
        self,
        wallet_id: bytes = b"WALLET01",
        *,
        limits: dict[int, int] | None = None,
        seed: int = 1,
        flash: SimFlash | None = None,
        display: Display | None = None,
        clock: Clock | None = None,
        clockless: bool = False,
        config: dict | None = None,
        personalise: bool = True,
    ) -> None:
        self.id = wallet_id
        self.flash = flash if flash is not None else SimFlash(seed=seed)
        self.rng = SeededRng(seed)
        self.clock = None if clockless else clock if clock is not None else SetClock()
        self.display = display
        self.config = config
        self.boot()
        if personalise:
            self.personalise(limits)
            self.select()

    # ---- device life ---------------------------------------------------------------------
    def boot(self) -> None:
        """Power on a new WalletApp on the same flash (RAM is gone)."""
        self.flash.power_on()
        hal = Hal(flash=self.flash, clock=self.clock, rng=self.rng, display=self.display)
        self.app = WalletApp(hal, self.config)

    def send(self, cla: int, ins: int, p1: int = 0, p2: int = 0, data: bytes = b"") -> tuple:
        return exchange(self.app.process, ins, data, cla=cla, p1=p1, p2=p2)

    def ok(self, cla: int, ins: int, p1: int = 0, p2: int = 0, data: bytes = b"") -> bytes:
        out, sw = self.send(cla, ins, p1, p2, data)
        assert sw == proto.SW_OK, hex(sw)
        return out

    # ---- commands --------------------------------------------------------------------------
    def select(self) -> dict:
        return cbor.decode(self.ok(0x00, proto.INS_SELECT, 4, 0, proto.AID))

    def info(self) -> dict:
        return cbor.decode(self.ok(0x80, proto.INS_GET_INFO))

    def personalise(self, limits: dict[int, int] | None = None) -> None:
        self.select()
        self.public_key = self.ok(0x80, proto.INS_PERSO_KEYGEN)
        self.cert = ISSUER.certify_wallet(
            self.id, self.public_key, expires=NOW + 365 * 86400, limits=limits
        )
        self.ok(0x80, proto.INS_PERSO_FINISH, data=self.perso_data(self.cert))

    @staticmethod
    def perso_data(cert: bytes, pin: bytes = PIN, puk: bytes = PUK, keys=None) -> bytes:
        return cbor.encode(
            {
                proto.PF_CERT: cert,
                proto.PF_ISSUERS: keys if keys is not None else [ISSUER.public_key],
                proto.PF_PIN: pin,
                proto.PF_PUK: puk,
            }
        )

    def pay_request(
        self,
        amount: int,
        *,
        challenge: bytes | None = None,
        payee: bytes = POS_ID,
        kind: int = proto.PAYKIND_POS,
        pin: bytes | None = None,
        time: int = NOW,
        purse: int | None = None,
    ) -> bytes:
        req: dict = {
            proto.REQ_CHALLENGE: challenge if challenge is not None else random.randbytes(16),
            proto.REQ_AMOUNT: amount,
            proto.REQ_PAYEE: payee,
            proto.REQ_TIME: time,
            proto.REQ_KIND: kind,
        }
        if pin is not None:
            req[proto.REQ_PIN] = pin
        if purse is not None:
            req[proto.REQ_PURSE] = purse
        return cbor.encode(req)

    def pay(self, amount: int, **kw) -> tuple:
        return self.send(0x80, proto.INS_PAY, data=self.pay_request(amount, **kw))

    def load(self, number: int, amount: int, **kw) -> tuple:
        return self.send(0x80, proto.INS_LOAD, data=ISSUER.voucher(self.id, number, amount, **kw))

    def verify_pin(self, pin: bytes = PIN) -> int:
        return self.send(0x00, proto.INS_VERIFY_PIN, 0, 0x80, pin)[1]

    def apply(self, number: int, fields: dict) -> int:
        return self.send(0x80, proto.INS_APPLY, data=ISSUER.update(self.id, number, fields))[1]

    def export(self, since: int = 0, most: int = 64) -> dict:
        req = cbor.encode({proto.EXP_SINCE: since, proto.EXP_MAX: most})
        return cbor.decode(self.ok(0x80, proto.INS_EXPORT, data=req))

    def digest(self, upto: int) -> bytes:
        """The journal chain value at `upto`, from the exported record bytes (from the floor's
        value, which only the card holds, when its journal was pruned)."""
        recs = self.export()[proto.EXP_RECORDS]
        d = bytes(32)
        if recs and recs[0][0] != 1:
            d = self.app.journal.floor_digest
        for seq, rec in recs:
            if seq > upto:
                break
            d = proto.journal_link(d, seq, rec)
        return d

    def ack(self, upto: int, issuer=None, device: bytes | None = None) -> bytes:
        """The ledger's ack up to `upto` with the digest of the records the card exports."""
        return (issuer or ISSUER).ack(device or self.id, upto, NOW, self.digest(upto))

    # ---- inspection (what the flash holds, read as the device would at power-on) ------------
    def state_bytes(self) -> bytes | None:
        return self.app.store.load()

    def state(self) -> dict:
        return st.load(self.app.store)

    def journal(self) -> list[tuple[int, dict]]:
        return [(seq, cbor.decode(rec)) for seq, rec in self.app.journal.records(0)]

    def snapshot(self) -> tuple:
        """Everything persistent: state payload and journal records (seq + bytes)."""
        return self.state_bytes(), list(self.app.journal.records(0))


def open_payment(env: bytes, public_key: bytes) -> tuple[bytes, dict]:
    """Verify a payment envelope with ed25519 and return (body bytes, body)."""
    body_bytes, sig = cbor.decode(env)
    assert ed25519.verify(public_key, proto.TAG_PAYMENT + body_bytes, sig)
    return body_bytes, cbor.decode(body_bytes)


def receipt_for(
    payment_env: bytes, override: dict | None = None, seq: int = 7, pos_seed: bytes = POS_SEED
) -> bytes:
    body_bytes = cbor.decode(payment_env)[0]
    body = cbor.decode(body_bytes)
    r = {
        proto.RCPT_POS: body[proto.PAY_PAYEE],
        proto.RCPT_WALLET: body[proto.PAY_WALLET],
        proto.RCPT_COUNTER: body[proto.PAY_COUNTER],
        proto.RCPT_AMOUNT: body[proto.PAY_AMOUNT],
        proto.RCPT_PAYMENT_HASH: hashlib.sha256(body_bytes).digest(),
        proto.RCPT_SEQ: seq,
        proto.RCPT_TIME: NOW,
    }
    r.update(override or {})
    return proto.seal(proto.TAG_RECEIPT, r, pos_seed)
