"""The RF side of the emulated PN532: the field between one reader and at most one card, a
card answering through an app's process(apdu), and a plain reader as a hal.Link."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from tapcash.firmware.core.hal import Link, LinkError


# --- the RF side -------------------------------------------------------------------------------
@dataclass(frozen=True)
class CardInfo:
    """What a reader learns when it activates a type A card."""

    atqa: bytes  # SENS_RES as the reader chip reports it (2 bytes)
    sak: int
    uid: bytes
    ats: bytes  # including TL, or b""


class Card(Protocol):
    """The card side of the field: a SimCard, or a PN532Emulator listening as a target."""

    def rf_info(self) -> CardInfo | None: ...
    def rf_activate(self) -> None: ...
    def rf_command(self, apdu: bytes) -> bytes | None: ...
    def rf_release(self) -> None: ...
    def rf_field_off(self) -> None: ...


class App(Protocol):
    def process(self, apdu: bytes) -> bytes: ...


class SimCard:
    """An ISO/IEC 14443-4 type A card whose APDUs are answered by ``app.process(apdu)``.

    ``power_on`` (if the app has it) runs on every activation: a tap is a new session."""

    def __init__(
        self,
        app: App,
        uid: bytes = bytes.fromhex("04a1b2c3d4e5f6"),
        atqa: bytes = b"\x00\x44",
        sak: int = 0x20,
        ats: bytes = bytes.fromhex("0578807002"),
    ) -> None:
        self.app = app
        self.info = CardInfo(atqa, sak, uid, ats if sak & 0x20 else b"")
        self.commands: list[bytes] = []

    def rf_info(self) -> CardInfo | None:
        return self.info

    def rf_activate(self) -> None:
        power_on = getattr(self.app, "power_on", None)
        if power_on is not None:
            power_on()

    def rf_command(self, apdu: bytes) -> bytes | None:
        self.commands.append(apdu)
        return bytes(self.app.process(apdu))

    def rf_release(self) -> None:
        pass

    def rf_field_off(self) -> None:
        pass


class RfField:
    """The RF field between one reader and at most one card.

    The reader side (a PN532Emulator in reader mode, or SimReaderLink) activates the card and
    sends whole APDUs; a SimCard answers at once, an emulated PN532 target answers later, when its
    host has called TgSetData. ``lock`` is shared by every emulator on this field (thread safe:
    a reader and a card driver may run on two threads)."""

    def __init__(
        self,
        leave_before: int | None = None,
        leave_after: int | None = None,
        tear: Callable[[int, bytes], str | None] | None = None,
        fwt_ms: float | None = None,
    ) -> None:
        self.lock = threading.RLock()
        self.changed = threading.Condition(self.lock)
        self.card: Card | None = None
        self.active: Card | None = None  # activated by a reader, ISO-DEP session open
        self.leave_before = leave_before
        self.leave_after = leave_after
        # tear(exchange number, APDU) -> "before" | "after" | None: a card pulled away at an
        # APDU chosen by content (e.g. the PAY command)
        self.tear = tear
        # frame waiting time: an answer later than this is lost, the reader times out (the
        # PN532 running ISO-DEP as a card never asks for more time with S(WTX)); None: no limit
        self.fwt_ms = fwt_ms
        self.late = 0  # answers that missed the frame waiting time
        self._sent_at = 0.0
        self.exchanges = 0
        self._answer: bytes | None = None
        self._waiting = False  # an APDU is with the card, its answer not yet back

    def place(self, card: Card) -> None:
        with self.lock:
            if self.card is not None:
                self._remove()
            self.card = card
            self.changed.notify_all()

    def remove(self) -> None:
        with self.lock:
            self._remove()

    def _remove(self) -> None:
        card, self.card, self.active = self.card, None, None
        self._waiting = False
        self._answer = None
        if card is not None:
            card.rf_field_off()
        self.changed.notify_all()

    @property
    def present(self) -> bool:
        return self.card is not None

    # reader side
    def reader_activate(self) -> CardInfo | None:
        """Activate the card in the field (REQA .. RATS/ATS), or None when there is none yet."""
        with self.lock:
            card = self.card
            if card is None:
                return None
            info = card.rf_info()
            if info is None:
                return None
            self.active = card
            self._waiting = False
            self._answer = None
            card.rf_activate()
            self.changed.notify_all()
            return info

    def reader_send(self, apdu: bytes) -> bool:
        """Give the active card an APDU. False when there is no card to give it to."""
        with self.lock:
            card = self.active
            if card is None or card is not self.card:
                return False
            self.exchanges += 1
            torn = self.tear(self.exchanges, apdu) if self.tear is not None else None
            if torn == "after":
                self.leave_after = self.exchanges
            if self.leave_before == self.exchanges or torn == "before":
                self._remove()
                return False
            self._waiting = True
            self._answer = None
            self._sent_at = time.monotonic()
            answer = card.rf_command(apdu)
            if answer is not None:
                self._deliver(card, answer)
            return True

    def reader_answer(self) -> tuple[bool, bytes | None]:
        """(an answer can still come, the answer or None while the card works on it). False
        when the card left, or the frame waiting time passed (the exchange is lost)."""
        with self.lock:
            if self.active is None or self.active is not self.card:
                return False, None
            if self._answer is None:
                if self._waiting and self._overdue():
                    self._waiting = False
                    self.late += 1
                    return False, None
                return self._waiting, None
            answer, self._answer = self._answer, None
            self._waiting = False
            return True, answer

    def reader_release(self) -> None:
        with self.lock:
            card, self.active = self.active, None
            self._waiting = False
            self._answer = None
            if card is not None and card is self.card:
                card.rf_release()
            self.changed.notify_all()

    # card side
    def card_answer(self, card: Card, answer: bytes) -> bool:
        """The card sends its answer to the reader. False when nobody waits for it any more."""
        with self.lock:
            if card is not self.active or not self._waiting:
                return False
            if self._overdue():
                self._waiting = False
                self.late += 1
                self.changed.notify_all()
                return False
            self._deliver(card, answer)
            return True

    def _overdue(self) -> bool:
        return self.fwt_ms is not None and (time.monotonic() - self._sent_at) * 1000 > self.fwt_ms

    def _deliver(self, card: Card, answer: bytes) -> None:
        if self.leave_after == self.exchanges:
            self._remove()
            return
        self._answer = bytes(answer)
        self.changed.notify_all()


class SimReaderLink(Link):
    """A plain reader in the field (no PN532 of its own), as a hal.Link: for driving a card
    emulated by the firmware. ``transceive`` waits at most ``timeout_s`` for the answer."""

    def __init__(self, rf: RfField, timeout_s: float = 5.0) -> None:
        self.rf = rf
        self.timeout_s = timeout_s
        self.card: CardInfo | None = None

    def wait_card(self, timeout_s: float = 5.0) -> CardInfo | None:
        deadline = time.monotonic() + timeout_s
        with self.rf.lock:
            while True:
                info = self.rf.reader_activate()
                if info is not None:
                    self.card = info
                    return info
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self.rf.changed.wait(min(left, 0.05))

    def transceive(self, apdu: bytes) -> bytes:
        deadline = time.monotonic() + self.timeout_s
        with self.rf.lock:
            if not self.rf.reader_send(bytes(apdu)):
                self.card = None
                raise LinkError("card gone")
            while True:
                present, answer = self.rf.reader_answer()
                if not present:
                    self.card = None
                    raise LinkError("card gone or too slow")
                if answer is not None:
                    return answer
                left = deadline - time.monotonic()
                if left <= 0:
                    raise LinkError("card timeout")
                self.rf.changed.wait(min(left, 0.05))

    def release(self) -> None:
        self.rf.reader_release()
        self.card = None


