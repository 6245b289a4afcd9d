"""In-process HAL objects: the NFC field between a POS and a card, a settable clock, a seeded
random source, and recording display / keys / signal.

`DirectLink` is the reader side of the field (`hal.Link`): the POS calls `transceive(apdu)`,
the card object in the field answers through its `process(apdu)`. Faults are injected at the
byte level, deterministically:

- `tear_at("command", k, n)`: the k-th command of the current tap (0-based, counted from the
  last `tap()`) breaks after n of its bytes reached the card: the card never sees it.
- `tear_at("response", k, n)`: the card processes the k-th command, and its response breaks
  after n bytes: the POS never gets the whole answer.

Either way the POS gets `hal.LinkError` and the card is out of the field until the next
`tap()` (a card is powered by the field: every tap is a power-on, a new session). A power cut
on the card's own flash during `process` is a tear too (the card vanished mid-command).

Every exchange is recorded: `transcript` holds (command, response) pairs as the bytes that
crossed the air (a torn one keeps its prefix), `bytes_on_air` their total.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Literal, Protocol

from tapcash.firmware.core.hal import Clock, Display, Keys, Link, LinkError, PowerCut, Rng, Signal

Direction = Literal["command", "response"]


class Card(Protocol):
    """What sits in the field: the wallet app (or anything answering APDUs)."""

    def power_on(self) -> object: ...

    def process(self, apdu: bytes) -> bytes: ...


@dataclass(frozen=True)
class Exchange:
    tap: int  # tap number (1 for the first tap)
    index: int  # command index within the tap
    command: bytes  # bytes of the command that reached the air
    response: bytes  # bytes of the response that reached the air
    torn: Direction | None = None  # where the link broke, if it did


class DirectLink(Link):
    """hal.Link straight into a card object, with tears and a transcript.

    `alter_command(index, apdu) -> apdu` and `alter_response(index, apdu, resp) -> resp`
    (optional) let a test play a man in the middle: what the card / the POS receives is
    what they return.
    """

    def __init__(
        self,
        card: Card | None = None,
        *,
        alter_command: Callable[[int, bytes], bytes] | None = None,
        alter_response: Callable[[int, bytes, bytes], bytes] | None = None,
    ) -> None:
        self.card = card
        self.present = card is not None
        self.alter_command = alter_command
        self.alter_response = alter_response
        self.exchanges: list[Exchange] = []
        self.taps = 1 if card is not None else 0
        self.index = 0  # commands sent in the current tap
        self._tear: tuple[Direction, int, int] | None = None

    # ---- the field -----------------------------------------------------------------------
    def tap(self, card: Card | None = None) -> None:
        """Bring a card (this one, or the same as before) into the field: power-on, new session."""
        if card is not None:
            self.card = card
        if self.card is None:
            raise ValueError("no card to tap")
        self.card.power_on()
        self.present = True
        self.taps += 1
        self.index = 0

    def remove(self) -> None:
        self.present = False

    # ---- faults --------------------------------------------------------------------------
    def tear_at(self, direction: Direction, command_index: int, byte_index: int) -> None:
        """Break the link after `byte_index` bytes of command / response number
        `command_index` of the current tap. A command tear at or past the command's length
        means the card got all of it and the response is lost at byte 0; a response tear at
        or past the response's length does not fire (the whole answer got through)."""
        if direction not in ("command", "response"):
            raise ValueError(direction)
        if command_index < 0 or byte_index < 0:
            raise ValueError("indexes are >= 0")
        self._tear = (direction, command_index, byte_index)

    def cancel_tear(self) -> None:
        self._tear = None

    @property
    def tear_pending(self) -> bool:
        return self._tear is not None

    # ---- hal.Link ------------------------------------------------------------------------
    def transceive(self, apdu: bytes) -> bytes:
        if not self.present or self.card is None:
            raise LinkError("no card in the field")
        k = self.index
        self.index += 1
        apdu = bytes(apdu)
        tear = self._tear if self._tear is not None and self._tear[1] == k else None
        if tear is not None and tear[0] == "command" and tear[2] < len(apdu):
            raise self._break(k, apdu[: tear[2]], b"", "command")
        if tear is not None and tear[0] == "command":
            tear = ("response", k, 0)
        received = self.alter_command(k, apdu) if self.alter_command else apdu
        try:
            resp = bytes(self.card.process(received))
        except PowerCut:
            raise self._break(k, apdu, b"", "response") from None
        if self.alter_response:
            resp = bytes(self.alter_response(k, received, resp))
        if tear is not None and tear[2] < len(resp):
            raise self._break(k, apdu, resp[: tear[2]], "response")
        if tear is not None:
            self._tear = None
        self.exchanges.append(Exchange(self.taps, k, apdu, resp))
        return resp

    def _break(self, k: int, cmd: bytes, resp: bytes, where: Direction) -> LinkError:
        self._tear = None
        self.present = False
        self.exchanges.append(Exchange(self.taps, k, cmd, resp, where))
        return LinkError(f"link torn in the {where} of command {k}")

    # ---- records -------------------------------------------------------------------------
    @property
    def transcript(self) -> list[tuple[bytes, bytes]]:
        return [(e.command, e.response) for e in self.exchanges]

    @property
    def bytes_on_air(self) -> int:
        return sum(len(e.command) + len(e.response) for e in self.exchanges)

    def clear_records(self) -> None:
        self.exchanges = []


class SimClock(Clock):
    """Wall clock in whole seconds, set by the test or the simulator (0 = unset)."""

    def __init__(self, now: int = 0) -> None:
        self.t = int(now)

    def now(self) -> int:
        return self.t

    def set(self, t: int) -> None:
        self.t = int(t)

    def advance(self, seconds: int) -> int:
        self.t += int(seconds)
        return self.t


class SeededRng(Rng):
    """Deterministic random bytes: SHA-256(b"tapcash/rng" || seed || block counter) blocks.

    The same construction is easy to run on MicroPython, so a seeded device run can be
    replayed in any runtime byte for byte."""

    def __init__(self, seed: int | bytes = 0) -> None:
        self.seed = seed if isinstance(seed, bytes) else int(seed).to_bytes(8, "big")
        self.block = 0
        self._buf = b""

    def random(self, n: int) -> bytes:
        while len(self._buf) < n:
            h = hashlib.sha256(b"tapcash/rng\x00" + self.seed + self.block.to_bytes(8, "big"))
            self._buf += h.digest()
            self.block += 1
        out, self._buf = self._buf[:n], self._buf[n:]
        return out


class RecordingDisplay(Display):
    """Keeps every screen shown (the last one is `lines`)."""

    def __init__(self) -> None:
        self.history: list[list[str]] = []

    @property
    def lines(self) -> list[str]:
        return self.history[-1] if self.history else []

    def show(self, lines: Iterable[str]) -> None:
        self.history.append(list(lines))


class ScriptedKeys(Keys):
    """Returns the scripted keys in order, then None (a timeout)."""

    def __init__(self, keys: Iterable[str] = ()) -> None:
        self.queue: list[str] = list(keys)

    def type(self, keys: Iterable[str]) -> None:
        self.queue.extend(keys)

    def get_key(self, timeout_ms: int) -> str | None:
        return self.queue.pop(0) if self.queue else None


class CountingSignal(Signal):
    def __init__(self) -> None:
        self.oks = 0
        self.fails = 0
        self.last: str | None = None

    def ok(self) -> None:
        self.oks += 1
        self.last = "ok"

    def fail(self) -> None:
        self.fails += 1
        self.last = "fail"
