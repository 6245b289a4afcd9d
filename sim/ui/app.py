"""`tapcash sim ui`: the Textual app in which a person runs a checkout by hand.

    CheckoutApp(ledger=True).run()

Left, the POS terminal: its screen (what the firmware shows, laid out like the board's SSD1306)
and its 4x4 keypad (the board profile's keymap; the keyboard works too: digits, Enter = '#',
Backspace / Escape = '*'). Right, the card wallets, each with its own screen and Tap / Remove
buttons (keys a, b, c tap; r removes), the tear and sync controls, and the event log: every
APDU on the air with its status word decoded, approvals, declines with their reason, torn taps
and their recovery, syncs.

The firmware runs in the checkout's terminal thread (`sim.ui.checkout.Checkout`); this app only
sends it events and draws what it reports.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.text import Text
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.widgets import Button, Footer, Header, RichLog, Static

from tapcash.boards.profile import load_profile

from .apdu_text import money
from .checkout import (
    AMOUNT,
    CARD,
    DEFAULT_CARDS,
    IDLE,
    PAYING,
    PIN,
    STARTING,
    SYNCING,
    TEAR_AFTER_COMMIT,
    TEAR_BEFORE_COMMIT,
    CardSpec,
    Checkout,
    Failed,
    LogLine,
    PaymentDone,
    PinRequest,
    Ready,
    Status,
)
from .hal import ArmTear, Cue, Key, Press, Remove, ScreenShown, Sync, Tap, Transfer
from .widgets import CardPanel, Keypad, Lcd, NoFocusButton, PinPrompt, TransferPrompt

POS_PROFILE = "devkitc-pn532-pos"
CARD_PROFILE = "devkitc-pn532-visual-wallet"

LOG_STYLES = {
    "out": "cyan",
    "in": "bright_blue",
    "torn": "bold yellow",
    "ok": "bold green",
    "decline": "bold red",
    "field": "medium_purple1",
    "info": "white",
    "sync": "bold cyan",
    "error": "bold white on red",
}

HINTS = {
    STARTING: "Personalising the POS and the cards…",
    IDLE: "Type an amount in cents, then # (Enter).",
    AMOUNT: "# / Enter confirms, * / Backspace clears.",
    CARD: "Tap a card (a, b, c) to pay {amount}; * cancels.",
    PAYING: "Paying…",
    PIN: "PIN needed: type it, then # / Enter.",
    SYNCING: "Syncing with the ledger…",
}


class CheckoutEvent(Message):
    """Something the checkout's terminal thread reported (posted thread-safely)."""

    def __init__(self, event: object) -> None:
        super().__init__()
        self.event = event


def _display_size(profile: dict[str, Any]) -> tuple[int, int]:
    d = profile.get("peripherals", {}).get("display", {})
    return int(d.get("width", 128)), int(d.get("height", 64))


class CheckoutApp(App[None]):
    CSS_PATH = "app.tcss"
    TITLE = "tapcash checkout"
    SUB_TITLE = "offline tap-to-pay, by hand"
    # Best from 110x36 up; narrower or shorter terminals get a tighter layout (app.tcss).
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (110, "-wide")]
    VERTICAL_BREAKPOINTS = [(0, "-short"), (34, "-tall")]

    BINDINGS = [
        Binding("a", "tap(0)", "Tap A"),
        Binding("b", "tap(1)", "Tap B"),
        Binding("c", "tap(2)", "Tap C"),
        Binding("d", "tap(3)", "Tap D", show=False),
        Binding("r", "remove", "Remove card"),
        Binding("t", "tear", "Tear next tap"),
        Binding("s", "sync", "Sync"),
        Binding("x", "transfer", "Transfer"),
        Binding("q", "quit", "Quit"),
        Binding("enter", "key('#')", "#", show=False),
        Binding("backspace", "key('*')", "*", show=False),
        Binding("escape", "key('*')", "*", show=False),
        *(Binding(str(d), f"key('{d}')", str(d), show=False) for d in range(10)),
    ]

    def __init__(
        self,
        *,
        cards: tuple[CardSpec, ...] = DEFAULT_CARDS,
        seed: int = 0,
        ledger: bool = True,
        workdir: Path | None = None,
        key_timeouts: bool = True,
    ) -> None:
        super().__init__()
        self.specs = tuple(cards)
        pos_profile = load_profile(POS_PROFILE)
        self.keymap = pos_profile["peripherals"]["keypad"]["keys"]
        self.pos_size = _display_size(pos_profile)
        self.card_size = _display_size(load_profile(CARD_PROFILE))
        self.checkout = Checkout(
            self._emit,
            cards=self.specs,
            seed=seed,
            ledger=ledger,
            workdir=workdir,
            key_timeouts=key_timeouts,
        )
        self.status: Status | None = None
        self.ready: Ready | None = None
        self.failed: str | None = None
        self.payments: list[PaymentDone] = []
        self.log_text: list[str] = []  # every event log line, plain
        self._pin_open = False

    # ---- layout ------------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="main"):
            with Vertical(id="pos-panel") as pos:
                pos.border_title = "POS terminal"
                w, h = self.pos_size
                yield Lcd(width_px=w, height_px=h, id="pos-lcd")
                yield Static(HINTS[STARTING], id="hint")
                yield Keypad(self.keymap, id="keypad")
                yield Static("", id="pos-status")
            with Vertical(id="right"):
                with Horizontal(id="cards"):
                    w, h = self.card_size
                    for i, spec in enumerate(self.specs):
                        yield CardPanel(i, spec.label, spec.holder, w, h)
                with Horizontal(id="controls"):
                    yield NoFocusButton("Tear next tap: off", id="tear", compact=True)
                    yield NoFocusButton(
                        "Sync with ledger", id="sync", variant="primary", compact=True
                    )
                    yield NoFocusButton("Transfer", id="transfer", compact=True)
                    yield Static("", id="ledger-status")
                log = RichLog(id="log", wrap=True, markup=False, highlight=False)
                log.border_title = "Events"
                log.can_focus = False
                yield log
        yield Footer()

    def on_mount(self) -> None:
        self.checkout.start()

    def on_unmount(self) -> None:
        self.checkout.stop()

    # ---- from the terminal thread --------------------------------------------------------------
    def _emit(self, event: object) -> None:
        self.post_message(CheckoutEvent(event))

    def on_checkout_event(self, message: CheckoutEvent) -> None:
        ev = message.event
        if isinstance(ev, ScreenShown):
            if ev.device == "pos":
                self.query_one("#pos-lcd", Lcd).show_lines(ev.lines)
            else:
                self.query_one(f"#card-lcd-{ev.device}", Lcd).show_lines(ev.lines)
        elif isinstance(ev, LogLine):
            self._write_log(ev.kind, ev.text)
        elif isinstance(ev, Status):
            self._show_status(ev)
        elif isinstance(ev, Cue):
            self._cue(ev.ok)
        elif isinstance(ev, PinRequest):
            self._ask_pin(ev)
        elif isinstance(ev, PaymentDone):
            self.payments.append(ev)
        elif isinstance(ev, Ready):
            self.ready = ev
            self.sub_title = f"POS {ev.pos_id}" + (f" · ledger {ev.ledger_url}"
                                                   if ev.ledger_url else " · no ledger")
        elif isinstance(ev, Failed):
            self.failed = ev.text
            self.notify(ev.text, title="simulator error", severity="error", timeout=30)

    def _write_log(self, kind: str, text: str) -> None:
        self.log_text.append(text)
        line = Text()
        line.append(f"{len(self.log_text):>3} ", style="dim")
        line.append(text, style=LOG_STYLES.get(kind, ""))
        self.query_one("#log", RichLog).write(line)

    def _show_status(self, st: Status) -> None:
        self.status = st
        hint = HINTS.get(st.phase, "")
        self.query_one("#hint", Static).update(hint.format(amount=money(st.amount)))
        self.query_one("#pos-status", Static).update(
            f"journal: {st.journal} to sync\ntorn log: {st.torn} · hot list v{st.hot_version}"
        )
        for i, c in enumerate(st.cards):
            panel = self.query_one(f"#card-{i}", CardPanel)
            panel.set_facts(c.balance, c.counter, c.offline_left, c.pin, c.in_field, c.purses)
            panel.border_subtitle = (
                "in the field" if c.in_field
                else f"tap to pay {money(st.amount)}" if st.phase == CARD else ""
            )
        tear = self.query_one("#tear", Button)
        tear.label = (f"Tear next tap: ARMED ({st.tear_mode})" if st.tear_armed
                      else "Tear next tap: off")
        tear.variant = "warning" if st.tear_armed else "default"
        if self._pin_open and st.phase != PIN and isinstance(self.screen, PinPrompt):
            # the firmware stopped waiting (its keypad timeout): the prompt is stale
            self._pin_open = False
            self.pop_screen()
        sync = self.query_one("#sync", Button)
        sync.disabled = st.ledger != "ready" or st.phase != IDLE
        self.query_one("#ledger-status", Static).update(
            f"ledger: {st.ledger}" if st.ledger != "off" else "ledger: off (--no-ledger)"
        )

    def _cue(self, ok: bool) -> None:
        panel = self.query_one("#pos-panel")
        panel.remove_class("cue-ok", "cue-fail")
        panel.add_class("cue-ok" if ok else "cue-fail")
        self.set_timer(1.5, lambda: panel.remove_class("cue-ok", "cue-fail"))

    def _ask_pin(self, req: PinRequest) -> None:
        if self._pin_open:
            return
        self._pin_open = True
        card = f"card {self.specs[req.card].label}" if 0 <= req.card < len(self.specs) else "card"
        self.push_screen(PinPrompt(req.amount, card), self._pin_done)

    def _pin_done(self, pin: str | None) -> None:
        self._pin_open = False
        if pin:
            for d in pin:
                self.checkout.send(Key(d))
            self.checkout.send(Key("#"))
        else:
            self.checkout.send(Key("*"))

    # ---- from the person -----------------------------------------------------------------------
    def on_keypad_pressed(self, message: Keypad.Pressed) -> None:
        self.checkout.send(Key(message.key))

    def on_card_panel_action(self, message: CardPanel.Action) -> None:
        if message.action == "tap":
            self.action_tap(message.card)
        elif message.action == "press":
            self.checkout.send(Press(message.card))
        else:
            self.action_remove()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "tear":
            self.action_tear()
        elif event.button.id == "sync":
            self.action_sync()
        elif event.button.id == "transfer":
            self.action_transfer()

    def action_key(self, key: str) -> None:
        self.checkout.send(Key(key))

    def action_tap(self, card: int) -> None:
        if 0 <= card < len(self.specs):
            self.checkout.send(Tap(card))

    def action_remove(self) -> None:
        self.checkout.send(Remove())

    def action_tear(self, spec: tuple[str, int, int] | None = None) -> None:
        """With `spec`: arm that tear. Without (the Tear button, key t): the next choice of
        off -> random -> before the card commits -> after it commits -> off."""
        if spec is not None:
            self.checkout.send(ArmTear(True, spec))
            return
        mode = self.status.tear_mode if self.status is not None else "off"
        nxt = {"off": (True, None), "random": (True, TEAR_BEFORE_COMMIT),
               "before commit": (True, TEAR_AFTER_COMMIT)}.get(mode, (False, None))
        self.checkout.send(ArmTear(*nxt))

    def action_sync(self) -> None:
        self.checkout.send(Sync())

    def action_transfer(self) -> None:
        """Card to card: the prompt asks from, to, amount (and the payer's PIN)."""
        if isinstance(self.screen, (PinPrompt, TransferPrompt)):
            return

        def done(choice: tuple[int, int, int, str] | None) -> None:
            if choice is not None:
                self.checkout.send(Transfer(*choice))

        self.push_screen(TransferPrompt([s.label for s in self.specs]), done)

    async def action_quit(self) -> None:
        self.checkout.stop()
        self.exit()
