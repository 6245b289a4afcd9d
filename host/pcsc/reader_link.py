"""`hal.Link` over PC/SC (pyscard's `smartcard.scard`, i.e. pcsc-lite / WinSCard): any
contactless reader pcscd knows (ACR122U, SCL3711, Identiv, ...) or vsmartcard's vpcd.

    link = PcscLink(resolve_reader("0"))    # reader index or part of its name
    if link.wait_for_card(30):
        result = pos.take_payment(1250)     # the POS's hal.link is this link
        link.disconnect()                   # end of the tap: the card is reset

One connection is one tap: `connect()` (done by the first `transceive` when needed) powers the
card up, a new session; `disconnect()` resets it. Every failure while exchanging (card removed,
reset by someone else, reader gone, transmit error) drops the connection and raises
`hal.LinkError`, which the POS treats as a tear; `ReaderError` (a LinkError) marks problems of
the reader or pcscd rather than the card. A 61xx answer is completed with GET RESPONSE and a
6Cxx answer is re-sent with the right Le, for readers that pass T=0 card behaviour through.
"""

from __future__ import annotations

import time

from tapcash.firmware.core.hal import Link, LinkError

GET_RESPONSE_MAX = 64  # 61xx rounds for one command (at most ~16 KB)
STATUS_WAIT_MS = 500  # one SCardGetStatusChange wait; the loop checks the deadline between


class ReaderError(LinkError):
    """pcscd is not running, the reader is unknown or gone: not the card's fault."""


def _scard():
    try:
        from smartcard import scard
    except ImportError as e:  # pragma: no cover - depends on the install
        raise ReaderError(
            "pyscard is not installed: pip install 'tapcash[pcsc]' "
            "(it builds with swig and libpcsclite-dev)"
        ) from e
    return scard


def _message(sc, hresult: int) -> str:
    try:
        text = sc.SCardGetErrorMessage(hresult)
    except Exception:  # noqa: BLE001 - only for a message
        text = ""
    return f"{text.strip() or 'PC/SC error'} (0x{hresult & 0xFFFFFFFF:08X})"


class Context:
    """A PC/SC context (SCardEstablishContext); ReaderError when pcscd is not there."""

    def __init__(self) -> None:
        self.sc = _scard()
        hr, ctx = self.sc.SCardEstablishContext(self.sc.SCARD_SCOPE_USER)
        if hr != self.sc.SCARD_S_SUCCESS:
            raise ReaderError(
                f"cannot reach pcscd: {_message(self.sc, hr)}; start it (`systemctl start pcscd`,"
                " or `pcscd` as root where there is no systemd; Debian: apt-get install pcscd"
                " vsmartcard-vpcd)"
            )
        self.handle = ctx

    def readers(self) -> list[str]:
        sc = self.sc
        hr, names = sc.SCardListReaders(self.handle, [])
        if hr == sc.SCARD_E_NO_READERS_AVAILABLE:
            return []
        if hr != sc.SCARD_S_SUCCESS:
            raise ReaderError(f"cannot list readers: {_message(sc, hr)}")
        return list(names)

    def state(self, reader: str, known: int, timeout_ms: int) -> tuple[int, bytes]:
        """(event state, ATR) of `reader` once it differs from `known` or after the timeout."""
        sc = self.sc
        hr, states = sc.SCardGetStatusChange(self.handle, timeout_ms, [(reader, known)])
        if hr == sc.SCARD_E_TIMEOUT:
            return known, b""
        if hr != sc.SCARD_S_SUCCESS:
            raise ReaderError(f"{reader}: {_message(sc, hr)}")
        _name, event, atr = states[0]
        if event & sc.SCARD_STATE_UNKNOWN:
            raise ReaderError(f"{reader}: no such reader")
        return event, bytes(atr)

    def close(self) -> None:
        if self.handle is not None:
            self.sc.SCardReleaseContext(self.handle)
            self.handle = None


def list_readers() -> list[str]:
    ctx = Context()
    try:
        return ctx.readers()
    finally:
        ctx.close()


def reader_states() -> list[tuple[str, bool, bytes]]:
    """(name, card present, ATR) of every reader."""
    ctx = Context()
    try:
        out = []
        for name in ctx.readers():
            event, atr = ctx.state(name, ctx.sc.SCARD_STATE_UNAWARE, 0)
            present = bool(event & ctx.sc.SCARD_STATE_PRESENT) and not (
                event & ctx.sc.SCARD_STATE_MUTE
            )
            out.append((name, present, atr if present else b""))
        return out
    finally:
        ctx.close()


def resolve_reader(spec: str | int | None, readers: list[str] | None = None) -> str:
    """A reader name from an index ("0"), an exact name or a unique part of one; None: the only
    reader (or the first one). ReaderError when nothing or more than one matches."""
    names = list_readers() if readers is None else readers
    if not names:
        raise ReaderError("no PC/SC reader (is pcscd running and the reader plugged in?)")
    if spec is None:
        return names[0]
    text = str(spec)
    if text.isdigit():
        i = int(text)
        if i >= len(names):
            raise ReaderError(f"reader {i}: only {len(names)} reader(s): {', '.join(names)}")
        return names[i]
    if text in names:
        return text
    hits = [n for n in names if text.lower() in n.lower()]
    if len(hits) != 1:
        what = "no" if not hits else "more than one"
        raise ReaderError(f"{what} reader matches {text!r}: {', '.join(names)}")
    return hits[0]


class PcscLink(Link):
    """The reader side of a contactless link through one PC/SC reader.

    `exclusive`: hold the card for this process during a tap (SCARD_SHARE_EXCLUSIVE) instead
    of sharing it. `get_response`: complete 61xx / 6Cxx answers (on by default).
    """

    def __init__(self, reader: str, *, exclusive: bool = False, get_response: bool = True) -> None:
        self.reader = reader
        self.exclusive = exclusive
        self.get_response = get_response
        self.ctx = Context()
        self.sc = self.ctx.sc
        self.card = None  # SCARDHANDLE while connected
        self.protocol = 0  # SCARD_PROTOCOL_T0 / T1 of the connection
        self.atr = b""
        self.exchanges = 0  # command APDUs sent (GET RESPONSE rounds included)

    # ---- the field -------------------------------------------------------------------------
    @property
    def connected(self) -> bool:
        return self.card is not None

    def card_present(self) -> bool:
        event, _atr = self.ctx.state(self.reader, self.sc.SCARD_STATE_UNAWARE, 0)
        return bool(event & self.sc.SCARD_STATE_PRESENT) and not (
            event & self.sc.SCARD_STATE_MUTE
        )

    def _wait(self, want_present: bool, timeout_s: float) -> bool:
        sc = self.sc
        deadline = time.monotonic() + timeout_s
        known, wait_ms = sc.SCARD_STATE_UNAWARE, 0  # first ask: the state right now
        while True:
            event, atr = self.ctx.state(self.reader, known, wait_ms)
            present = bool(event & sc.SCARD_STATE_PRESENT) and not (event & sc.SCARD_STATE_MUTE)
            if present == want_present:
                if present:
                    self.atr = atr
                return True
            if time.monotonic() >= deadline:
                return False
            known, wait_ms = event & ~sc.SCARD_STATE_CHANGED, self._slice(deadline)

    @staticmethod
    def _slice(deadline: float) -> int:
        left_ms = int((deadline - time.monotonic()) * 1000)
        return max(0, min(STATUS_WAIT_MS, left_ms))

    def wait_for_card(self, timeout_s: float) -> bool:
        """True once a (responsive) card is in the reader; False after the timeout."""
        return self._wait(True, timeout_s)

    def wait_for_removal(self, timeout_s: float) -> bool:
        return self._wait(False, timeout_s)

    def connect(self) -> None:
        """Start a tap: connect to the card in the reader (pcscd powers it up)."""
        if self.card is not None:
            return
        sc = self.sc
        share = sc.SCARD_SHARE_EXCLUSIVE if self.exclusive else sc.SCARD_SHARE_SHARED
        hr, card, protocol = sc.SCardConnect(
            self.ctx.handle, self.reader, share, sc.SCARD_PROTOCOL_T0 | sc.SCARD_PROTOCOL_T1
        )
        if hr != sc.SCARD_S_SUCCESS:
            raise self._error(hr, "connect")
        self.card = card
        self.protocol = protocol
        hr, _name, _state, _proto, atr = sc.SCardStatus(card)
        if hr == sc.SCARD_S_SUCCESS:
            self.atr = bytes(atr)

    def disconnect(self, reset: bool = True) -> None:
        """End the tap. `reset`: the card is reset, so its next session starts fresh."""
        card, self.card = self.card, None
        if card is not None:
            sc = self.sc
            sc.SCardDisconnect(card, sc.SCARD_RESET_CARD if reset else sc.SCARD_LEAVE_CARD)

    def close(self) -> None:
        self.disconnect()
        self.ctx.close()

    def __enter__(self) -> PcscLink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- hal.Link ------------------------------------------------------------------------------
    def transceive(self, apdu: bytes) -> bytes:
        self.connect()
        resp = self._transmit(bytes(apdu))
        if not self.get_response:
            return resp
        if resp[-2] == 0x6C and _short_le(apdu):  # wrong Le: the card says how many
            resp = self._transmit(bytes(apdu[:-1]) + resp[-1:])
        data = b""
        rounds = 0
        while resp[-2] == 0x61:
            rounds += 1
            if rounds > GET_RESPONSE_MAX:
                self.disconnect(reset=False)
                raise LinkError("too many GET RESPONSE rounds")
            data += resp[:-2]
            resp = self._transmit(b"\x00\xc0\x00\x00" + resp[-1:])
        return data + resp if data else resp

    def _transmit(self, apdu: bytes) -> bytes:
        sc = self.sc
        hr, resp = sc.SCardTransmit(self.card, self.protocol, list(apdu))
        self.exchanges += 1
        if hr != sc.SCARD_S_SUCCESS:
            err = self._error(hr, "transmit")
            self._drop()
            raise err
        if len(resp) < 2:
            self._drop()
            raise LinkError(f"{self.reader}: response of {len(resp)} bytes")
        return bytes(resp)

    def _drop(self) -> None:
        """Forget a connection that failed (the card is gone or was reset under us)."""
        card, self.card = self.card, None
        if card is not None:
            self.sc.SCardDisconnect(card, self.sc.SCARD_LEAVE_CARD)

    def _error(self, hr: int, what: str) -> LinkError:
        sc = self.sc
        text = f"{self.reader}: {what}: {_message(sc, hr)}"
        reader_side = (
            sc.SCARD_E_NO_SERVICE,
            sc.SCARD_E_SERVICE_STOPPED,
            sc.SCARD_E_UNKNOWN_READER,
            sc.SCARD_E_READER_UNAVAILABLE,
            sc.SCARD_E_NO_READERS_AVAILABLE,
            sc.SCARD_E_INVALID_HANDLE,
            sc.SCARD_E_SHARING_VIOLATION,
        )
        return ReaderError(text) if hr in reader_side else LinkError(text)


def _short_le(apdu: bytes) -> bool:
    """The APDU ends with a short Le byte (case 2 or 4, short form)."""
    n = len(apdu)
    return n == 5 or (n > 5 and apdu[4] != 0 and n == 6 + apdu[4])
