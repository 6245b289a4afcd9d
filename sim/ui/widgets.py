"""Widgets of `tapcash sim ui`: an SSD1306-like screen, the POS's 4x4 keypad, a card panel and
the PIN prompt."""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text
from textual import events
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Static

from .apdu_text import money

CHAR_PX = 8  # the firmware's SSD1306 driver draws 8x8 characters


def screen_rows(lines: Sequence[str], width_px: int = 128, height_px: int = 64) -> list[str]:
    """The text rows an SSD1306 of that size shows for `lines`, as the firmware driver
    (firmware/hal/ssd1306.py) lays them out: width/8 columns (longer lines are cut),
    height/8 rows, double spacing when the lines fill at most half the rows."""
    cols = width_px // CHAR_PX
    rows = height_px // CHAR_PX
    shown = [str(s)[:cols] for s in list(lines)[:rows]]
    step = 2 if len(shown) <= rows // 2 else 1
    out = [""] * rows
    for i, line in enumerate(shown):
        out[i * step] = line
    return [r.ljust(cols) for r in out]


class Lcd(Static):
    """A device's screen: the firmware's `hal.display.show(lines)`, drawn like the OLED."""

    DEFAULT_CSS = """
    Lcd {
        width: auto;
        height: auto;
        background: #05080a;
        color: #8fe3ff;
        border: round #3a4a55;
        padding: 0 1;
        text-style: bold;
    }
    """

    def __init__(
        self,
        *,
        width_px: int = 128,
        height_px: int = 64,
        visible_rows: int | None = None,
        id: str | None = None,
        classes: str | None = None,
    ) -> None:
        super().__init__("", id=id, classes=classes)
        self.width_px = width_px
        self.height_px = height_px
        self.visible_rows = visible_rows or height_px // CHAR_PX
        self.lines: tuple[str, ...] = ()
        self.show_lines(())

    def show_lines(self, lines: Sequence[str]) -> None:
        self.lines = tuple(lines)
        rows = screen_rows(self.lines, self.width_px, self.height_px)[: self.visible_rows]
        self.update(Text("\n".join(rows)))

    @property
    def text(self) -> str:
        """What the screen shows now (rows joined by newlines, trailing blanks stripped)."""
        rows = screen_rows(self.lines, self.width_px, self.height_px)[: self.visible_rows]
        return "\n".join(r.rstrip() for r in rows).rstrip()


class NoFocusButton(Button, can_focus=False):
    """A button that never takes the focus: Enter and the digits stay with the terminal."""


class KeyCap(Static, can_focus=False):
    """A key or a small button (keypad keys, a card's Tap / Remove). Unlike a Button it takes
    every click, however fast: a Button ignores clicks while its press animation runs, which
    loses the second 0 of "00" or a quick re-tap."""

    DEFAULT_CSS = """
    KeyCap {
        width: 5; height: 1; margin: 0 1 0 0;
        content-align: center middle; text-style: bold;
        background: $panel; color: $text;
    }
    KeyCap:hover { background: $panel-lighten-2; }
    KeyCap.enter { background: $success; }
    KeyCap.clear { background: $error; }
    KeyCap.letter { color: $text-muted; }
    KeyCap.primary { background: $primary; width: auto; padding: 0 1; }
    KeyCap.plain { width: auto; padding: 0 1; }
    KeyCap.-pressed { background: $accent; }
    """

    class Pressed(Message):
        def __init__(self, key: str) -> None:
            super().__init__()
            self.key = key

    def __init__(
        self,
        key: str,
        label: str | None = None,
        *,
        id: str | None = None,
        classes: str | None = None,
    ) -> None:
        super().__init__(label if label is not None else key, id=id, classes=classes)
        self.key = key

    def on_click(self, event: events.Click) -> None:
        event.stop()
        self.add_class("-pressed")
        self.set_timer(0.15, lambda: self.remove_class("-pressed"))
        self.post_message(self.Pressed(self.key))


class Keypad(Vertical):
    """The POS's matrix keypad, laid out from the board profile's keymap."""

    DEFAULT_CSS = """
    Keypad { width: auto; height: auto; }
    Keypad Horizontal { width: auto; height: 1; margin-bottom: 1; }
    """

    class Pressed(Message):
        def __init__(self, key: str) -> None:
            super().__init__()
            self.key = key

    def __init__(self, keymap: Sequence[str], *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.keymap = list(keymap)

    def compose(self) -> ComposeResult:
        for row in self.keymap:
            with Horizontal():
                for key in row:
                    kind = {"#": "enter", "*": "clear"}.get(key, "" if key.isdigit() else "letter")
                    yield KeyCap(key, id=f"key-{_key_id(key)}", classes=kind or None)

    def on_key_cap_pressed(self, event: KeyCap.Pressed) -> None:
        event.stop()
        self.post_message(self.Pressed(event.key))


def _key_id(key: str) -> str:
    return {"*": "star", "#": "hash"}.get(key, key)


class CardPanel(Vertical):
    """One visual card wallet: its own screen, what the simulator knows of it, Tap / Remove,
    and its button (each press: the card's next purse screen)."""

    DEFAULT_CSS = """
    CardPanel { width: 1fr; height: auto; border: round $secondary; padding: 0 1; }
    CardPanel.in-field { border: heavy $success; }
    CardPanel .facts { color: $text-muted; height: 4; }
    CardPanel Horizontal { height: 1; width: auto; margin-top: 1; }

    """

    class Action(Message):
        def __init__(self, card: int, action: str) -> None:
            super().__init__()
            self.card = card
            self.action = action

    def __init__(
        self, index: int, label: str, holder: str, width_px: int = 128, height_px: int = 64
    ) -> None:
        super().__init__(id=f"card-{index}")
        self.index = index
        self.label = label
        self.holder = holder
        self.border_title = f"Card {label} · {holder}"
        self.lcd = Lcd(
            width_px=width_px, height_px=height_px, visible_rows=6, id=f"card-lcd-{index}"
        )
        self.facts = Static("", classes="facts", id=f"card-facts-{index}")
        self.facts.tooltip = "What the simulator reads in the card's state (not its screen)"

    def compose(self) -> ComposeResult:
        yield self.lcd
        yield self.facts
        with Horizontal():
            yield KeyCap("tap", "Tap", id=f"tap-{self.index}", classes="primary")
            yield KeyCap("remove", "Remove", id=f"remove-{self.index}", classes="plain")
            yield KeyCap("press", "Button", id=f"press-{self.index}", classes="plain")

    def set_facts(
        self,
        balance: int,
        counter: int,
        offline_left: int,
        pin: str,
        in_field: bool,
        purses: tuple[tuple[int, int], ...] = (),
    ) -> None:
        self.set_class(in_field, "in-field")
        self.border_subtitle = "in the field" if in_field else ""
        extra = "".join(f"\npurse {n} {money(b)}" for n, b in purses)
        self.facts.update(
            f"balance {money(balance)}{extra}\noffline left {offline_left}\ncounter {counter}"
            f"\nPIN {pin}"
        )

    def on_key_cap_pressed(self, event: KeyCap.Pressed) -> None:
        event.stop()
        self.post_message(self.Action(self.index, event.key))


class PinPrompt(ModalScreen[str | None]):
    """The PIN a card asks for above its no-CVM limit: digits, or None to cancel."""

    DEFAULT_CSS = """
    PinPrompt { align: center middle; }
    PinPrompt > Vertical {
        width: 50; height: auto; border: thick $warning; background: $surface; padding: 1 2;
    }
    PinPrompt Input { margin: 1 0; }
    PinPrompt Horizontal { height: auto; width: auto; }
    PinPrompt Button { margin-right: 2; }
    """

    BINDINGS = [("escape", "cancel", "Cancel")]

    def __init__(self, amount: int, card: str) -> None:
        super().__init__()
        self.amount = amount
        self.card = card

    def compose(self) -> ComposeResult:
        with Vertical():
            what = f" for {money(self.amount)} with {self.card}"
            yield Static(Text.assemble(("PIN", "bold"), what))
            yield Static("Above the card's no-CVM limit: enter its PIN (4-8 digits).")
            yield Input(
                placeholder="PIN", password=True, restrict=r"[0-9]*", max_length=8, id="pin"
            )
            with Horizontal():
                yield Button("OK", variant="success", id="pin-ok")
                yield Button("Cancel", variant="error", id="pin-cancel")

    def on_mount(self) -> None:
        self.query_one(Input).focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.dismiss(event.value)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "pin-ok":
            self.dismiss(self.query_one(Input).value)
        else:
            self.dismiss(None)

    def action_cancel(self) -> None:
        self.dismiss(None)


def parse_money(text: str) -> int | None:
    """Minor units of "12.50", "12" (whole units) or None when it is not an amount."""
    t = text.strip()
    if not t:
        return None
    units, _, cents = t.partition(".")
    if not units.isdigit() or (cents and (not cents.isdigit() or len(cents) > 2)):
        return None
    return int(units) * 100 + int((cents + "00")[:2] if cents else 0)


class TransferPrompt(ModalScreen["tuple[int, int, int, str] | None"]):
    """A wallet-to-wallet transfer: from card, to card, amount, and the payer's PIN when the
    amount is above its no-CVM limit. Dismissed with (payer, receiver, amount, pin) or None."""

    DEFAULT_CSS = """
    TransferPrompt { align: center middle; }
    TransferPrompt > Vertical {
        width: 60; height: auto; border: thick $accent; background: $surface; padding: 1 2;
    }
    TransferPrompt Input { margin: 0 0 1 0; }
    TransferPrompt Horizontal { height: auto; width: auto; }
    TransferPrompt Button { margin-right: 2; }
    """

    BINDINGS = [("escape", "cancel", "Cancel")]

    def __init__(self, labels: list[str]) -> None:
        super().__init__()
        self.labels = labels

    def compose(self) -> ComposeResult:
        cards = "".join(self.labels)
        with Vertical():
            yield Static(
                Text.assemble(("Transfer", "bold"), " card to card (a reader holding both)")
            )
            yield Static("Staged: the receiver may spend it only after its sync.", id="tx-note")
            yield Input(
                placeholder=f"from card ({'/'.join(self.labels)})",
                id="tx-from",
                restrict=f"[{cards}{cards.lower()}]",
                max_length=1,
            )
            yield Input(
                placeholder="to card",
                id="tx-to",
                restrict=f"[{cards}{cards.lower()}]",
                max_length=1,
            )
            yield Input(
                placeholder="amount, e.g. 5.00", id="tx-amount", restrict=r"[0-9.]*", max_length=9
            )
            yield Input(
                placeholder="payer's PIN (above its no-CVM limit)",
                id="tx-pin",
                password=True,
                restrict=r"[0-9]*",
                max_length=8,
            )
            yield Static("", id="tx-error")
            with Horizontal():
                yield Button("Send", variant="success", id="tx-ok")
                yield Button("Cancel", variant="error", id="tx-cancel")

    def on_mount(self) -> None:
        self.query_one("#tx-from", Input).focus()

    def _value(self, wid: str) -> str:
        return self.query_one(f"#{wid}", Input).value.strip()

    def _submit(self) -> None:
        labels = [x.upper() for x in self.labels]
        a, b = self._value("tx-from").upper(), self._value("tx-to").upper()
        amount = parse_money(self._value("tx-amount"))
        err = self.query_one("#tx-error", Static)
        if a not in labels or b not in labels or a == b:
            err.update("choose two different cards")
            return
        if not amount:
            err.update("enter an amount above 0.00")
            return
        self.dismiss((labels.index(a), labels.index(b), amount, self._value("tx-pin")))

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        order = ["tx-from", "tx-to", "tx-amount", "tx-pin"]
        i = order.index(event.input.id or "tx-pin")
        if i + 1 < len(order) and not self._value(order[i + 1]) and i < 2:
            self.query_one(f"#{order[i + 1]}", Input).focus()
            return
        self._submit()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "tx-ok":
            self._submit()
        else:
            self.dismiss(None)

    def action_cancel(self) -> None:
        self.dismiss(None)
