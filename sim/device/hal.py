"""In-process HAL objects: a settable clock, a seeded random source, and recording display /
keys / signal. The NFC field between a POS and a card is sim/nfc/field.py (`Field`, and
`DirectLink`, re-exported here for the code that imported it from this module).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from tapcash.firmware.core.hal import Clock, Display, Keys, Rng, Signal
from tapcash.sim.nfc.field import DirectLink, Exchange

__all__ = [  # DirectLink and Exchange live in sim/nfc/field.py (the one field model)
    "CountingSignal", "DirectLink", "Exchange", "RecordingDisplay", "ScriptedKeys", "SeededRng",
    "SimClock",
]


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
