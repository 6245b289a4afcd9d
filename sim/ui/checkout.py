"""The checkout behind `tapcash sim ui`: one POS terminal, a few visual card wallets, the virtual
NFC field between them and (optionally) the real ledger on loopback, driven by a person.

    co = Checkout(emit, cards=DEFAULT_CARDS, ledger=True)
    co.start()                       # builds everything, then runs the terminal loop in a thread
    co.send(Key("5")); co.send(Tap(0)); co.send(ArmTear()); co.send(Sync())
    co.stop()

The POS and the cards are the unchanged firmware apps (`PosApp`, `WalletApp`) on simulated
flash, personalised through their own APDUs (`sim.device.provision`). The terminal loop is the
POS app's own (`firmware.pos.loop.Terminal`, which `firmware.main.run_pos` drives on a board),
with this checkout answering its hooks: the first key starts a sale, the firmware reads the
amount from the keypad (`PosApp.read_amount`), checks it (`precheck`), waits for a card and runs
`take_payment`, which asks the keypad for a PIN above the card's no-CVM limit. A torn tap keeps
the sale open until the card is tapped again (the POS's torn log completes it) or '*' cancels.

Every firmware call happens in the one terminal thread; the UI thread only sends events
(`sim.ui.hal`) and receives `emit(event)` calls from that thread: screens, cues, APDUs, log
lines, payment outcomes and a `Status` snapshot after each step.
"""

from __future__ import annotations

import random
import shutil
import tempfile
import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tapcash.firmware.core import proto
from tapcash.firmware.core.hal import Hal
from tapcash.firmware.main import wallet_idle
from tapcash.firmware.pos import loop
from tapcash.firmware.pos.app import PosApp
from tapcash.firmware.pos.loop import Terminal
from tapcash.firmware.pos.pay import TORN, PaymentResult
from tapcash.firmware.wallet import state as wst
from tapcash.firmware.wallet.app import WalletApp
from tapcash.sim.device import provision as pv
from tapcash.sim.device.flash import SimFlash
from tapcash.sim.device.hal import SeededRng, SimClock
from tapcash.sim.nfc.field import Field

from .apdu_text import command_text, money, reason_text, response_text, sw_text
from .hal import (
    ArmTear,
    CardButton,
    CueSignal,
    Emit,
    Exchanged,
    Inbox,
    InboxKeys,
    Key,
    Press,
    Quit,
    Remove,
    ScreenDisplay,
    Sent,
    Stopped,
    Sync,
    Tap,
    TraceLink,
    Transfer,
)

VISUAL = {"visual": True}  # the cards are visual cards (their screens show the balance)
DESK = "desk"  # the ledger account that funds the first loads
POS_NAME = "pos-1"
TEAR_COMMANDS = ((0, "SELECT"), (1, "PAY"), (1, "PAY"), (2, "RECEIPT"))  # PAY twice as likely
TEAR_BYTE_MAX = 40

# Terminal phases (Status.phase)
STARTING = "starting"
IDLE = "idle"  # result or "Ready" on screen, waiting for the first key; sync allowed
AMOUNT = "amount"  # the firmware reads the amount
CARD = "card"  # waiting for a card in the field ('*' cancels)
PAYING = "paying"  # take_payment runs
PIN = "pin"  # take_payment waits for the PIN on the keypad
SYNCING = "syncing"
STOPPED = "stopped"


@dataclass(frozen=True)
class CardSpec:
    label: str  # "A"
    holder: str  # "Ana"
    balance: int  # first load, minor units
    pin: bytes = pv.PIN
    purse: int = 0  # an earmarked purse (prepaid at this POS's merchant), minor units


DEFAULT_CARDS = (
    CardSpec("A", "Ana", 15_000),
    CardSpec("B", "Ben", 8_000),
    CardSpec("C", "Caro", 2_500),
)


# ---- what the checkout reports (besides sim.ui.hal's ScreenShown, Cue, Exchanged) ---------------
@dataclass(frozen=True)
class LogLine:
    kind: str  # out, in, torn, ok, decline, field, info, sync, error
    text: str


@dataclass(frozen=True)
class CardStatus:
    label: str
    holder: str
    pin: str
    balance: int
    counter: int
    offline_left: int
    in_field: bool
    purses: tuple[tuple[int, int], ...] = ()  # (purse number, balance) of earmarked purses


@dataclass(frozen=True)
class Status:
    phase: str
    amount: int  # the sale's amount (0: none yet)
    journal: int  # POS journal records not yet synced
    torn: int  # POS torn-log entries
    hot_version: int
    cards: tuple[CardStatus, ...]
    tear_armed: bool
    ledger: str  # off | ready | error text
    tear_mode: str = "off"  # off | random | before commit | after commit


@dataclass(frozen=True)
class PinRequest:
    amount: int
    card: int  # index of the card in the field


@dataclass(frozen=True)
class PaymentDone:
    card: int
    status: str  # approved | declined | torn
    reason: str
    amount: int
    balance: int
    counter: int
    seq: int
    recovered: bool
    in_field_ms: float
    purse: int = 0  # the earmarked purse that paid part (0: the main purse alone)
    earmarked: int = 0


@dataclass(frozen=True)
class Ready:
    pos_id: str
    cards: tuple[CardSpec, ...]
    ledger_url: str


@dataclass(frozen=True)
class Failed:
    text: str


class _AppTransport:
    """The sync tool's Transport straight onto a firmware app (no serial line)."""

    def __init__(self, app: Any, name: str) -> None:
        self.app = app
        self.port = f"sim:{name}"

    def transceive(self, apdu: bytes, *, retries: int | None = None) -> bytes:
        return bytes(self.app.process(apdu))


class _Ledger:
    """The real ledger service on loopback (host.ledger.loopback) with the sync tool's link
    and outbox, in a folder of its own."""

    def __init__(self, workdir: Path, issuer: Any, clock: SimClock) -> None:
        from tapcash.host.ledger.client import LedgerClient
        from tapcash.host.ledger.loopback import LoopbackLedger
        from tapcash.host.sync.ledger_link import LedgerLink
        from tapcash.host.sync.outbox import Outbox
        from tapcash.sim.run.runner import TOKEN

        self.server = LoopbackLedger.on_sqlite(
            workdir / "ledger.db", issuer, TOKEN, clock=lambda: float(clock.now()), pool_size=4
        ).start()
        self.url = self.server.url
        self.client = LedgerClient(self.url, TOKEN)
        self.link = LedgerLink(self.url, TOKEN)
        self.outbox = Outbox(workdir / "outbox")

    def close(self) -> None:
        self.link.close()
        self.client.close()
        self.server.stop()


class Checkout:
    def __init__(
        self,
        emit: Emit,
        *,
        cards: tuple[CardSpec, ...] = DEFAULT_CARDS,
        seed: int = 0,
        ledger: bool = False,
        workdir: Path | None = None,
        key_timeouts: bool = True,
        realtime_clock: bool = True,
    ) -> None:
        if not cards:
            raise ValueError("at least one card")
        self.emit = emit
        self.specs = tuple(cards)
        self.purse_program: str | None = None  # the ledger programme of the cards' purses
        self.seed = seed
        self.use_ledger = ledger
        self.workdir = workdir
        self.key_timeouts = key_timeouts
        self.realtime_clock = realtime_clock
        self.inbox = Inbox()
        self.rng = random.Random(f"tapcash/sim/ui/{seed}")
        self.phase = STARTING
        self.amount = 0
        self.in_field: int | None = None
        self.tear_armed = False
        self.tear_spec: tuple[str, int, int] | None = None
        self.ledger: _Ledger | None = None
        self.ledger_state = "off"
        self.pos: PosApp | None = None
        self.cards: list[WalletApp] = []
        self.buttons: list[CardButton] = []  # each card's button, and what a press runs:
        self.card_idle: list[Any] = []  # firmware/main.py's wallet_idle, as on a board
        self.field: Field | None = None
        self.keys: InboxKeys | None = None
        self._thread: threading.Thread | None = None
        self._tmp: str | None = None

    # ---- driving it ------------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._main, name="checkout-terminal", daemon=True)
        self._thread.start()

    def send(self, event: object) -> None:
        self.inbox.put(event)

    def stop(self, timeout_s: float = 10.0) -> None:
        self.inbox.put(Quit())
        if self._thread is not None:
            self._thread.join(timeout_s)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # ---- the terminal thread -----------------------------------------------------------------
    def _main(self) -> None:
        try:
            self._build()
            self.emit(
                Ready(
                    self.pos_id.hex(),
                    self.specs,
                    self.ledger.url if self.ledger is not None else "",
                )
            )
            self._loop()
        except Stopped:
            pass
        except Exception as e:  # a simulator bug: say so in the UI rather than die silently
            self.emit(LogLine("error", "".join(traceback.format_exception(e)).rstrip()))
            self.emit(Failed(f"{type(e).__name__}: {e}"))
        finally:
            self.phase = STOPPED
            self._close()

    def _build(self) -> None:
        seed = self.seed
        self.issuer = pv.issuer_from_seed(seed)
        self.clock = SimClock(pv.T0)
        self._t0 = time.monotonic()
        if self.use_ledger:
            if self.workdir is None:
                self._tmp = tempfile.mkdtemp(prefix="tapcash-ui-")
                workdir = Path(self._tmp)
            else:
                workdir = Path(self.workdir)
                workdir.mkdir(parents=True, exist_ok=True)
                for suffix in ("", "-wal", "-shm"):
                    Path(str(workdir / "ledger.db") + suffix).unlink(missing_ok=True)
                shutil.rmtree(workdir / "outbox", ignore_errors=True)
            self.emit(LogLine("info", f"starting the ledger service (SQLite in {workdir})"))
            self.ledger = _Ledger(workdir, self.issuer, self.clock)
            self.ledger_state = "ready"
            total = sum(s.balance for s in self.specs)
            if total:
                self.ledger.client.deposit(DESK, total, "first loads")

        # the POS: its reader is the virtual field, traced for the log
        self.field = Field(name=POS_NAME)
        self.keys = InboxKeys(self.inbox, self._handle, self._on_key_wait, self.key_timeouts)
        pos_hal = Hal(
            flash=SimFlash(),
            clock=self.clock,
            rng=SeededRng(b"pos" + (seed * 1000 + 1).to_bytes(8, "big")),
            link=TraceLink(self.field, self._on_exchange),
            display=ScreenDisplay("pos", self.emit),
            keys=self.keys,
            signal=CueSignal("pos", self.emit),
        )
        self.pos_id = pv.device_id("pos", 1)
        hotlist = self.ledger.client.hotlist().envelope if self.ledger is not None else None
        self.pos = pv.provision_pos(
            self.issuer, self.pos_id, pv.device_id("merchant", 1), pos_hal, hotlist=hotlist
        )
        if self.ledger is not None:
            info = _info(self.pos)
            self.ledger.client.register(info[proto.INFO_CERT])

        # the cards: visual wallets (a screen each), no clock (field-powered)
        for n, spec in enumerate(self.specs, start=1):
            hal = Hal(
                flash=SimFlash(),
                clock=None,
                rng=SeededRng(b"wallet" + (seed * 1000 + n).to_bytes(8, "big")),
                display=ScreenDisplay(n - 1, self.emit),
                keys=CardButton(),
                signal=CueSignal(f"card-{n - 1}", self.emit),
            )
            wid = pv.device_id("wallet", n)
            if self.ledger is None:
                app = pv.provision_wallet(
                    self.issuer, wid, hal, balance=spec.balance, pin=spec.pin, config=VISUAL
                )
            else:
                app = pv.provision_wallet(
                    self.issuer, wid, hal, balance=0, pin=spec.pin, config=VISUAL
                )
                cert = pv.select(app)[proto.INFO_CERT]
                self.ledger.client.register(cert, owner=DESK)
                if spec.balance:
                    voucher = self.ledger.client.load(wid, spec.balance, "first load", DESK)
                    pv.select(app)
                    pv.call(app, proto.INS_LOAD, voucher, what="LOAD")
                    app.power_on()
            if spec.purse:
                self._load_purse(app, wid, spec.purse)
            self.cards.append(app)
            self.buttons.append(hal.keys)
            self.card_idle.append(wallet_idle(app))
        where = f"ledger {self.ledger.url}" if self.ledger is not None else "no ledger"
        self._log(
            "info",
            f"POS {self.pos_id.hex()} and {len(self.cards)} cards personalised ({where}); "
            "type an amount in cents, # to confirm, then tap a card",
        )

    def _load_purse(self, app: Any, wid: bytes, amount: int) -> None:
        """An earmarked purse on a card: prepaid at this POS's merchant (docs/PROGRAMMES.md),
        through the ledger's programme when it runs, else straight from the issuer."""
        import base64

        merchant = pv.device_id("merchant", 1)
        expires = self.clock.now() + 365 * 86400
        if self.ledger is not None:
            c = self.ledger.client
            if self.purse_program is None:
                c.deposit("funder", 1, "programme account")
                c.program_create("ui-prepaid", "funder", "prepaid", expires=expires,
                                 merchants=[merchant], valid_from=self.clock.now() - 60)
                self.purse_program = "ui-prepaid"
            c.deposit("funder", amount, f"purse of {wid.hex()}")
            out = c.program_load("ui-prepaid", f"{wid.hex()},{amount}\n", f"ui-{wid.hex()}")
            voucher = base64.b64decode(out["vouchers"][0]["voucher"])
        else:
            rule = self.issuer.rule(b"UIPREPAI", kind=proto.PROG_PREPAID, expires=expires,
                                    merchants=[merchant], valid_from=self.clock.now() - 60)
            number = int(app.state[wst.S_LOADS]) + 1
            voucher = self.issuer.purse_voucher(wid, number, amount, rule)
        pv.select(app)
        pv.call(app, proto.INS_LOAD, voucher, what="LOAD")
        app.power_on()

    def _close(self) -> None:
        if self.ledger is not None:
            try:
                self.ledger.close()
            except Exception:  # closing down: nothing left to report to
                pass
            self.ledger = None
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    def _loop(self) -> None:
        assert self.pos is not None and self.keys is not None
        _Terminal(self).run()

    def _wait_card(self) -> int | None:
        assert self.keys is not None
        while self.in_field is None:
            event = self.inbox.get(None)
            if isinstance(event, Key):
                if event.key == "*":
                    return None
                continue
            self._handle(event)
        return self.in_field

    def _pay(self, card: int, amount: int) -> PaymentResult:
        assert self.pos is not None and self.field is not None
        self._set_phase(PAYING)
        self._tick()
        if self.tear_armed:
            where, k, n = self.tear_spec or self._draw_tear()
            self.field.tear(where, k, n)  # type: ignore[arg-type]
            self.tear_armed = False
            self.tear_spec = None
            self._log("torn", f"tear armed for this tap: the {where} of "
                              f"{_command_name(k)} breaks after {n} bytes")
        r = self.pos.take_payment(amount)
        rec = self.field.remove()
        self.in_field = None
        in_field_ms = rec.in_field_ms if rec is not None else 0.0
        self._report(card, r, in_field_ms, rec)
        self.emit(
            PaymentDone(card, r.status, r.reason, r.amount, r.balance, r.counter, r.seq,
                        r.recovered, in_field_ms, r.purse, r.earmarked)
        )
        self._status()
        return r

    def _report(self, card: int, r: PaymentResult, in_field_ms: float, rec: Any) -> None:
        spec = self.specs[card]
        who = f"card {spec.label} ({spec.holder})"
        if r.approved:
            text = (
                f"APPROVED {money(r.amount)} {who}: counter {r.counter}, POS journal seq "
                f"{r.seq}, card balance {money(r.balance)}"
            )
            if r.earmarked:
                main = money(r.amount - r.earmarked)
                text += (f"; purse {r.purse} paid {money(r.earmarked)} (left "
                         f"{money(r.purse_balance)}), the main purse {main}")
            if r.recovered:
                text += "; recovered: the card had signed it on the torn tap, the POS asked again"
            if not r.receipt_sent:
                text += "; receipt not delivered (the card left), the payment stands"
            self._log("ok", text)
        elif r.status == TORN:
            self._log(
                "torn",
                f"TORN {money(r.amount)} {who}: the link broke; the POS keeps a torn entry. "
                "Tap the card again (the same card completes it), * cancels",
            )
        else:
            text = f"DECLINED {money(r.amount)} {who}: {reason_text(r.reason)} [{r.reason}]"
            if r.sw:
                text += f", status {sw_text(r.sw)}"
            if r.tries_left >= 0:
                text += f", {r.tries_left} PIN tries left"
            self._log("decline", text)
        if rec is not None:
            self._log(
                "field",
                f"card {spec.label} left the field: {rec.exchanges} exchanges, "
                f"{rec.bytes_on_air} B on air, {in_field_ms:.1f} ms in the field "
                "(ISO 14443 model)",
            )

    # ---- events from the UI (any phase; keys are consumed by the firmware) ------------------
    def _handle(self, event: object) -> None:
        assert self.field is not None
        if isinstance(event, Quit):
            raise Stopped()
        if isinstance(event, Tap):
            i = event.card
            if not 0 <= i < len(self.cards):
                return
            if self.phase in (PAYING, PIN) and self.in_field is not None and self.in_field != i:
                self._log("info", f"card {self.specs[i].label} ignored: the POS is busy with "
                                  f"card {self.specs[self.in_field].label}")
                return
            if self.in_field is not None:
                self.field.remove()
            self.field.tap(self.cards[i])
            self.in_field = i
            self._log("field", f"card {self.specs[i].label} ({self.specs[i].holder}) tapped: "
                               "in the POS's field")
        elif isinstance(event, Remove):
            if self.in_field is not None:
                label = self.specs[self.in_field].label
                self.field.remove()
                self.in_field = None
                self._log("field", f"card {label} removed from the field")
        elif isinstance(event, Press):
            i = event.card
            if not 0 <= i < len(self.cards):
                return
            if self.in_field == i:  # a board polls its button only while no reader is there
                self._log("info", f"card {self.specs[i].label} is in the POS's field: its "
                                  "button waits until it leaves")
            else:
                self.buttons[i].presses += 1
                self.card_idle[i]()
        elif isinstance(event, ArmTear):
            self.tear_armed = event.on
            self.tear_spec = event.spec if event.on else None
            self._log("info", "tear armed for the next tap" if event.on else "tear disarmed")
        elif isinstance(event, Transfer):
            if self.phase not in (IDLE, AMOUNT):
                self._log("info", "a transfer waits until the sale is over")
            else:
                self._transfer(event)
        elif isinstance(event, Sync):
            if self.phase != IDLE:
                self._log("info", "sync waits until the sale is over")
            else:
                self._sync()
        self._status()

    def _on_key_wait(self) -> None:
        """The firmware waits for a key: during take_payment that is the PIN prompt."""
        assert self.keys is not None
        if self.phase == PAYING or (self.phase == PIN and self.keys.last == "#"):
            self._set_phase(PIN)
            self.emit(PinRequest(self.amount, self.in_field if self.in_field is not None else -1))

    def _on_exchange(self, ex: Sent | Exchanged) -> None:
        if isinstance(ex, Sent):
            self._log("out", "→ " + command_text(ex.command))
        elif ex.error:
            self._log("torn", f"✗ {ex.error}")
        else:
            self._log("in", "← " + response_text(ex.response))

    # ---- wallet to wallet ----------------------------------------------------------------------
    def _transfer(self, ev: Transfer) -> None:
        """Card `payer` pays card `receiver` through a reader holding both (GET CHALLENGE, PAY
        kind 2, RECEIVE): the receiver holds the value as pending until its sync."""
        from tapcash.host.device.errors import DeviceRefused
        from tapcash.sim.device.hal import DirectLink

        n = len(self.cards)
        if not (0 <= ev.payer < n and 0 <= ev.receiver < n) or ev.payer == ev.receiver:
            self._log("error", "transfer: choose two different cards")
            return
        if ev.amount <= 0:
            self._log("error", "transfer: the amount must be above 0.00")
            return
        if self.in_field in (ev.payer, ev.receiver):
            assert self.field is not None
            self.field.remove()  # the reader takes both cards: out of the POS's field
            self.in_field = None
        self._tick()
        a, b = self.specs[ev.payer], self.specs[ev.receiver]
        what = f"{money(ev.amount)} card {a.label} ({a.holder}) -> card {b.label} ({b.holder})"
        try:
            pv.transfer(
                DirectLink(self.cards[ev.payer]),
                DirectLink(self.cards[ev.receiver]),
                ev.amount,
                time=self.clock.now(),
                pin=ev.pin.encode() if ev.pin else None,
            )
        except DeviceRefused as e:
            self._log("decline", f"TRANSFER {what} refused: {sw_text(e.sw) if e.sw else e}")
            return
        self._log("ok", f"TRANSFER {what}: pending on card {b.label} until it syncs")

    # ---- sync ------------------------------------------------------------------------------
    def _sync(self) -> None:
        if self.ledger is None:
            self._log("sync", "sync: no ledger (the UI was started with --no-ledger)")
            return
        from tapcash.host.device.errors import ToolError
        from tapcash.host.sync.session import sync_device

        assert self.pos is not None
        self._set_phase(SYNCING)
        self._tick()
        devices: list[tuple[str, Any]] = [(POS_NAME, self.pos)]
        devices += [(f"card {s.label}", app) for s, app in zip(self.specs, self.cards, strict=True)]
        for name, app in devices:
            try:
                res = sync_device(
                    _AppTransport(app, name),
                    ledger=self.ledger.link,
                    outbox=self.ledger.outbox,
                    clock=lambda: float(self.clock.now()),
                )
            except ToolError as e:
                self._log("error", f"sync {name}: {e}")
                continue
            lr = res.ledger_result or {}
            parts = [f"{res.outcome}", f"{res.exported} records uploaded"]
            for key in ("accepted", "duplicates", "conflicts", "refused"):
                if lr.get(key):
                    parts.append(f"{lr[key]} {key}")
            if res.vouchers_loaded:
                parts.append(f"{res.vouchers_loaded} vouchers loaded")
            if res.update:
                parts.append(f"update {res.update}")
            if res.ack_upto is not None:
                parts.append(f"ack up to {res.ack_upto}")
            self._log("sync", f"sync {name}: " + ", ".join(parts))
        self._set_phase(IDLE)

    # ---- helpers -----------------------------------------------------------------------------
    def _draw_tear(self) -> tuple[str, int, int]:
        where = self.rng.choice(("command", "response"))
        k, _name = self.rng.choice(TEAR_COMMANDS)
        return where, k, self.rng.randrange(TEAR_BYTE_MAX)

    def _tick(self) -> None:
        if self.realtime_clock:
            self.clock.set(pv.T0 + int(time.monotonic() - self._t0))

    def _set_phase(self, phase: str) -> None:
        self.phase = phase
        self._status()

    def _log(self, kind: str, text: str) -> None:
        self.emit(LogLine(kind, text))

    def _status(self) -> None:
        pos = self.pos
        cards = []
        for i, (spec, app) in enumerate(zip(self.specs, self.cards, strict=True)):
            s = app.state
            cards.append(
                CardStatus(
                    spec.label,
                    spec.holder,
                    spec.pin.decode(),
                    s.get(wst.S_BALANCE, 0),
                    s.get(wst.S_COUNTER, 0),
                    app.offline_left() if s.get(wst.S_PHASE) == wst.PHASE_PERSO else 0,
                    self.in_field == i,
                    tuple((k + 1, int(p[wst.P_BALANCE]))
                          for k, p in enumerate(s.get(wst.S_PURSES) or ())),
                )
            )
        info = _info(pos) if pos is not None and pos.personalised else {}
        self.emit(
            Status(
                self.phase,
                self.amount,
                info.get(proto.INFO_RECORDS, 0),
                info.get(proto.INFO_TORN, 0),
                info.get(proto.INFO_HOT_VERSION, 0),
                tuple(cards),
                self.tear_armed,
                self.ledger_state,
                tear_mode(self.tear_armed, self.tear_spec),
            )
        )


# Where the cashier can make the next tap break (the Tear button cycles through them): before
# the card commits (the PAY command is cut: the card never sees it, the POS drops its torn entry
# at the re-tap) or after (the PAY answer is cut: the card has committed and signed, the re-tap
# recovers the same payment: PROTOCOL.md §4.1).
TEAR_BEFORE_COMMIT = ("command", 1, 8)
TEAR_AFTER_COMMIT = ("response", 1, 10)


def tear_mode(armed: bool, spec: tuple[str, int, int] | None) -> str:
    if not armed:
        return "off"
    if spec is None:
        return "random"
    if tuple(spec) == TEAR_BEFORE_COMMIT:
        return "before commit"
    if tuple(spec) == TEAR_AFTER_COMMIT:
        return "after commit"
    return f"{spec[0]} {spec[1]} byte {spec[2]}"


def _info(pos: PosApp) -> dict[int, Any]:
    """The POS's GET INFO map (its serial side; read-only)."""
    from tapcash.firmware.core import cbor

    out = pv.call(pos, proto.INS_GET_INFO, what="GET INFO")
    info = cbor.decode(out)
    assert isinstance(info, dict)
    return info


def _command_name(k: int) -> str:
    return {0: "SELECT", 1: "PAY", 2: "RECEIPT"}.get(k, f"command {k}")


class _Terminal(Terminal):
    """The POS app's own loop (firmware/pos/loop.py) with the checkout's card source, phases
    and log: "Ready" only at the start and after a cancelled amount (a result stays on
    screen); a torn tap or a wrong PIN (tries left) keeps the sale open for the next tap."""

    ready_each_sale = False

    def __init__(self, co: Checkout) -> None:
        assert co.pos is not None and co.keys is not None
        super().__init__(co.pos, co.keys)
        self.co = co

    def first_key(self, stop: Any) -> str:
        assert self.co.keys is not None
        return self.co.keys.get_key_forever()

    def phase(self, name: str) -> None:
        co = self.co
        if name == loop.IDLE:
            co.amount = 0
            co._set_phase(IDLE)
        elif name == loop.AMOUNT:
            co._set_phase(AMOUNT)
            co._tick()
        elif name == loop.CARD:
            co._set_phase(CARD)

    def sale_amount(self, amount: int) -> None:
        self.co.amount = amount

    def declined(self, amount: int, reason: str) -> None:
        self.co._log("decline", f"DECLINED {money(amount)} before any tap: "
                                f"{reason_text(reason)} [{reason}]")  # fmt: skip

    def cancelled(self, amount: int, where: str) -> None:
        if where == loop.AMOUNT:
            self.co._log("info", "sale cancelled")
        else:
            self.co._log("info", f"sale of {money(amount)} cancelled")

    def wait_card(self, amount: int) -> int | None:
        return self.co._wait_card()

    def pay(self, card: int, amount: int) -> PaymentResult:
        return self.co._pay(card, amount)

    def again(self, card: int, r: PaymentResult) -> bool:
        co = self.co
        if r.reason == "pin_wrong" and r.tries_left > 0 and co.field is not None:
            # a wrong PIN asks again: the card stays in the field, the sale goes on
            co._log("info", f"wrong PIN, {r.tries_left} tries left: enter it again "
                            "(* cancels the sale)")  # fmt: skip
            co.field.tap(co.cards[card])
            co.in_field = card
            return True
        return r.status == TORN  # a torn tap: the sale stays open for the card's return
