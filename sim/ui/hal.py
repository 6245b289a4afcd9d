"""The HAL objects the terminal UI hands to the unchanged firmware apps.

Every firmware call runs in the checkout's terminal thread (`sim.ui.checkout`); these objects turn
what the firmware does into events for the UI (`Emit`, called from that thread) and feed it the
keys the person presses (an `Inbox` filled from the UI thread):

- `ScreenDisplay` (hal.Display): each `show(lines)` becomes an event carrying the lines;
- `InboxKeys` (hal.Keys): `get_key(timeout_ms)` blocks on the inbox, handling the field and
  control events that arrive meanwhile (a card tapped while the amount is typed);
- `CueSignal` (hal.Signal): the beep / LED of an approval or a decline, as an event;
- `CardButton` (hal.Keys): a visual card's button, pressed from the UI (`Press`);
- `TraceLink` (hal.Link): the POS's reader, wrapping the virtual field (`sim.nfc.field.Field`),
  reporting every command and response (or the tear) as it crosses.
"""

from __future__ import annotations

import queue
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from tapcash.firmware.core.hal import Display, Keys, Link, LinkError, Signal

Emit = Callable[[object], None]


# ---- what the HAL reports ------------------------------------------------------------------
@dataclass(frozen=True)
class ScreenShown:
    """A device showed `lines` on its screen (`device` is "pos" or a card's index)."""

    device: str | int
    lines: tuple[str, ...]


@dataclass(frozen=True)
class Cue:
    device: str
    ok: bool


@dataclass(frozen=True)
class Sent:
    """A command APDU leaves the reader (its answer, or the tear, follows as Exchanged)."""

    command: bytes


@dataclass(frozen=True)
class Exchanged:
    """One command APDU and its response, as the reader saw them (torn: `error` is set and
    `response` is empty)."""

    command: bytes
    response: bytes
    error: str = ""


# ---- what the UI sends ---------------------------------------------------------------------
@dataclass(frozen=True)
class Key:
    key: str


@dataclass(frozen=True)
class Tap:
    card: int


@dataclass(frozen=True)
class Remove:
    pass


@dataclass(frozen=True)
class Press:
    """The button of visual card `card` pressed (its next purse screen, wallet/screen.py)."""

    card: int


@dataclass(frozen=True)
class ArmTear:
    """Arm (or disarm) a tear of the next tap. `spec` (direction, command index, byte) picks
    it; None lets the checkout draw one from its seeded random source."""

    on: bool = True
    spec: tuple[str, int, int] | None = None


@dataclass(frozen=True)
class Sync:
    pass


@dataclass(frozen=True)
class Transfer:
    """A wallet-to-wallet transfer by a reader holding both cards (PROTOCOL.md §3.2, RECEIVE):
    card `payer` pays `amount` to card `receiver`, staged there until a sync releases it."""

    payer: int
    receiver: int
    amount: int
    pin: str = ""


@dataclass(frozen=True)
class Quit:
    pass


class Stopped(Exception):
    """The UI is closing: unwinds the firmware call that was waiting for a key."""


class Inbox:
    """Events from the UI thread to the terminal thread, in order."""

    def __init__(self) -> None:
        self._q: queue.Queue[object] = queue.Queue()

    def put(self, event: object) -> None:
        self._q.put(event)

    def get(self, timeout_s: float | None) -> object | None:
        try:
            return self._q.get(timeout=timeout_s)
        except queue.Empty:
            return None

    def empty(self) -> bool:
        return self._q.empty()


# ---- the HAL objects -----------------------------------------------------------------------
class ScreenDisplay(Display):
    def __init__(self, device: str | int, emit: Emit) -> None:
        self.device = device
        self.emit = emit
        self.lines: tuple[str, ...] = ()

    def show(self, lines: Iterable[str]) -> None:
        self.lines = tuple(str(s) for s in lines)
        self.emit(ScreenShown(self.device, self.lines))


class InboxKeys(Keys):
    """hal.Keys over the inbox. Non-key events are passed to `handle` (which may raise
    Stopped); `on_wait` is called each time the firmware starts waiting for a key. `push`
    hands a key back to the next get_key (the first key of a sale, as on the board)."""

    def __init__(
        self,
        inbox: Inbox,
        handle: Callable[[object], None],
        on_wait: Callable[[], None] | None = None,
        honour_timeout: bool = True,
    ) -> None:
        self.inbox = inbox
        self.handle = handle
        self.on_wait = on_wait
        self.honour_timeout = honour_timeout
        self.last: str | None = None  # the last key handed out
        self._back: str | None = None

    def push(self, key: str) -> None:
        self._back = key

    def get_key(self, timeout_ms: int) -> str | None:
        if self._back is not None:
            key, self._back = self._back, None
            self.last = key
            return key
        if self.on_wait is not None:
            self.on_wait()
        key = self._wait(timeout_ms / 1000 if self.honour_timeout else None)
        self.last = key
        return key

    def get_key_forever(self) -> str:
        """The next key, however long it takes (the idle terminal)."""
        key = self._wait(None)
        assert key is not None
        return key

    def _wait(self, timeout_s: float | None) -> str | None:
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return None
            event = self.inbox.get(left)
            if event is None:
                continue
            if isinstance(event, Key):
                return event.key
            self.handle(event)


class CardButton(Keys):
    """A visual card's one button (hal.Keys), as firmware/main.py's wallet_idle polls it
    between taps: the presses made and not yet read, each reported once as "#"."""

    def __init__(self) -> None:
        self.presses = 0

    def get_key(self, timeout_ms: int) -> str | None:
        if self.presses:
            self.presses -= 1
            return "#"
        return None


class CueSignal(Signal):
    def __init__(self, device: str, emit: Emit) -> None:
        self.device = device
        self.emit = emit
        self.oks = 0
        self.fails = 0

    def ok(self) -> None:
        self.oks += 1
        self.emit(Cue(self.device, True))

    def fail(self) -> None:
        self.fails += 1
        self.emit(Cue(self.device, False))


class TraceLink(Link):
    """hal.Link that reports every exchange of the link it wraps."""

    def __init__(self, inner: Link, emit: Emit) -> None:
        self.inner = inner
        self.emit = emit

    def transceive(self, apdu: bytes) -> bytes:
        apdu = bytes(apdu)
        self.emit(Sent(apdu))
        try:
            resp = self.inner.transceive(apdu)
        except LinkError as e:
            self.emit(Exchanged(apdu, b"", str(e) or "link error"))
            raise
        self.emit(Exchanged(apdu, bytes(resp)))
        return resp
