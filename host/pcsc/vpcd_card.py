"""A card app (the wallet) presented to PC/SC as a smart card through vsmartcard's vpcd driver.

pcscd loads vpcd (Debian: `vsmartcard-vpcd`, `/etc/reader.conf.d/vpcd`, driver
`/usr/lib/pcsc/drivers/serial/libifdvpcd.so`), which shows readers "Virtual PCD 00 00" and
"Virtual PCD 00 01" and listens on TCP 35963 and 35964 for one virtual card each. The card
CONNECTS to that port; connected means "card in the field", a closed connection "card removed".

Wire protocol (vsmartcard `vpcd.c`): every message is a 2-byte big-endian length and that many
bytes. vpcd -> card:

    length 1, 0x00   power off        no answer
    length 1, 0x01   power on         no answer
    length 1, 0x02   reset            no answer
    length 1, 0x04   get ATR          answered with the ATR (vpcd asks this to poll presence)
    length > 1       a command APDU   answered with the response APDU (data || SW1 SW2)

Power on and reset start a new card session (`app.power_on()`: a contactless card is powered by
the field, every tap is a power-up). The ATR is a PC/SC part 3 pseudo-ATR of an ISO 14443-4
card, what a contactless reader reports for a tapped card.

Latency: the exchange is a ping-pong of small messages, the worst case for Nagle's algorithm and
delayed ACKs; without TCP_NODELAY and TCP_QUICKACK (Linux, and re-armed after every recv since
the kernel clears it) a round trip can wait for the peer's delayed-ACK timer.

Faults for tests: `remove()` closes the connection now (the card leaves the field);
`remove_on(ins, processed)` closes it when a command with that INS arrives, after the card
processed it (its answer is lost: a torn payment) or before (the card never saw it).
`insert()` reconnects (a re-tap).
"""

from __future__ import annotations

import select
import socket
import struct
import threading
import time
from collections.abc import Callable
from typing import Protocol

VPCD_HOST = "127.0.0.1"
VPCD_PORT = 35963  # reader "Virtual PCD 00 00"; the second reader is on 35964

CTRL_OFF = 0x00
CTRL_ON = 0x01
CTRL_RESET = 0x02
CTRL_ATR = 0x04

MAX_MESSAGE = 0xFFFF  # the 2-byte length field
POLL_S = 0.2  # how often the serving thread looks at stop / insert requests
CONNECT_RETRY_S = 0.2


def pseudo_atr(historical: bytes) -> bytes:
    """PC/SC part 3 ATR of an ISO 14443-4 card: 3B 8n 80 01 <historical bytes> TCK
    (T=0 indicated in TD1, T=1 in TD2, n historical bytes from the ATS, TCK = XOR of T0..)."""
    if len(historical) > 15:
        raise ValueError("at most 15 historical bytes")
    body = bytes((0x80 | len(historical), 0x80, 0x01)) + historical
    tck = 0
    for b in body:
        tck ^= b
    return b"\x3b" + body + bytes((tck,))


ATR = pseudo_atr(b"tapcash")  # 3B 87 80 01 74 61 70 63 61 73 68 TCK


class CardApp(Protocol):
    def power_on(self) -> object: ...

    def process(self, apdu: bytes) -> bytes: ...


class GetResponseCard:
    """A card that answers like a T=0 card: a response longer than `chunk` data bytes comes as
    `chunk` bytes + 61xx, the rest through GET RESPONSE (00 C0 00 00 Le). Wraps any app; used
    to test readers that need GET RESPONSE handling."""

    def __init__(self, app: CardApp, chunk: int) -> None:
        if not 1 <= chunk <= 255:
            raise ValueError("chunk is 1..255")
        self.app = app
        self.chunk = chunk
        self._rest = b""  # data bytes not fetched yet, then the final SW

    def power_on(self) -> object:
        self._rest = b""
        return self.app.power_on()

    def process(self, apdu: bytes) -> bytes:
        if len(apdu) >= 4 and apdu[:4] == b"\x00\xc0\x00\x00":
            if not self._rest:
                return b"\x69\x85"
            return self._next()
        self._rest = bytes(self.app.process(apdu))
        if len(self._rest) - 2 <= self.chunk:
            out, self._rest = self._rest, b""
            return out
        return self._next()

    def _next(self) -> bytes:
        data, sw = self._rest[:-2], self._rest[-2:]
        if len(data) <= self.chunk:
            self._rest = b""
            return data + sw
        part, rest = data[: self.chunk], data[self.chunk :]
        self._rest = rest + sw
        return part + bytes((0x61, min(len(rest), 256) & 0xFF))


def tune_socket(sock: socket.socket, nodelay: bool, quickack: bool) -> None:
    """TCP_NODELAY (no Nagle wait on small writes) and TCP_QUICKACK (no delayed ACK; Linux
    only, and one-shot: call again after every recv)."""
    if nodelay:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if quickack and hasattr(socket, "TCP_QUICKACK"):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)


class VpcdCard:
    """Serve `app` as the card in the vpcd reader on `port`, on a background thread.

        card = VpcdCard(wallet_app).start()     # connects (retrying) = card inserted
        ...                                     # pyscard / pcsc_scan / scriptor see the card
        card.stop()

    `app` is touched only by the serving thread, under `card.lock`: hold it to look at the
    app's state from another thread. `error` holds an exception that stopped the thread.
    `nodelay` / `quickack` False are for measuring what they save.
    """

    def __init__(
        self,
        app: CardApp,
        *,
        host: str = VPCD_HOST,
        port: int = VPCD_PORT,
        atr: bytes = ATR,
        nodelay: bool = True,
        quickack: bool = True,
        on_event: Callable[[str], None] | None = None,
    ) -> None:
        self.app = app
        self.host = host
        self.port = port
        self.atr = bytes(atr)
        self.nodelay = nodelay
        self.quickack = quickack
        self.on_event = on_event
        self.lock = threading.RLock()
        self.error: BaseException | None = None
        self.apdus = 0  # command APDUs answered
        self.power_ons = 0  # power on / reset requests (new sessions)
        self.connected = threading.Event()
        self._want_in = True
        self._stop = threading.Event()
        self._sock: socket.socket | None = None
        self._remove_on: tuple[int, bool] | None = None
        self._wake_r, self._wake_w = socket.socketpair()
        self._thread: threading.Thread | None = None

    # ---- life cycle --------------------------------------------------------------------
    def start(self) -> VpcdCard:
        self._thread = threading.Thread(target=self._run, name=f"vpcd-card:{self.port}",
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        self._wake()
        if self._thread is not None:
            self._thread.join(timeout_s)
        self._close()
        self._wake_r.close()
        self._wake_w.close()

    def __enter__(self) -> VpcdCard:
        return self if self._thread is not None else self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def wait_connected(self, timeout_s: float) -> bool:
        return self.connected.wait(timeout_s)

    # ---- the field -----------------------------------------------------------------------
    def insert(self) -> None:
        """Put the card (back) into the reader: connect to vpcd."""
        self._want_in = True
        self._wake()

    def remove(self) -> None:
        """Take the card out of the reader now: close the connection."""
        self._want_in = False
        self._wake()

    def remove_on(self, ins: int, processed: bool = True) -> None:
        """Take the card out when the next command with this INS arrives: after processing it
        (`processed`, the answer is lost) or before (the card never sees it). One shot."""
        self._remove_on = (ins, processed)

    # ---- serving thread --------------------------------------------------------------------
    def _wake(self) -> None:
        try:
            self._wake_w.send(b"\x00")
        except OSError:
            pass

    def _event(self, what: str) -> None:
        if self.on_event is not None:
            self.on_event(what)

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                if self._sock is None:
                    if self._want_in:
                        self._connect()
                    else:
                        self._idle(POLL_S)
                    continue
                if not self._want_in:
                    self._close()
                    self._event("removed")
                    continue
                if self._serve_one() is False:
                    self._close()
                    self._event("disconnected")
        except BaseException as e:  # noqa: BLE001 - reported through .error
            self.error = e
        finally:
            self._close()

    def _idle(self, seconds: float) -> None:
        r, _w, _x = select.select([self._wake_r], [], [], seconds)
        if r:
            self._wake_r.recv(256)

    def _connect(self) -> None:
        try:
            sock = socket.create_connection((self.host, self.port), timeout=2.0)
        except OSError:
            self._idle(CONNECT_RETRY_S)
            return
        sock.settimeout(None)
        tune_socket(sock, self.nodelay, self.quickack)
        self._sock = sock
        self.connected.set()
        self._event("inserted")

    def _close(self) -> None:
        sock, self._sock = self._sock, None
        self.connected.clear()
        if sock is not None:
            try:
                sock.close()
            except OSError:
                pass

    def _recv_exact(self, n: int) -> bytes | None:
        assert self._sock is not None
        buf = b""
        while len(buf) < n:
            try:
                part = self._sock.recv(n - len(buf))
            except OSError:
                return None
            if not part:
                return None
            buf += part
        if self.quickack:  # the kernel clears QUICKACK as it goes: re-arm after every read
            tune_socket(self._sock, False, True)
        return buf

    def _send(self, payload: bytes) -> bool:
        assert self._sock is not None
        try:
            self._sock.sendall(struct.pack(">H", len(payload)) + payload)
            return True
        except OSError:
            return False

    def _serve_one(self) -> bool | None:
        """Wait for one message and answer it. False: the connection is gone."""
        sock = self._sock
        assert sock is not None
        r, _w, _x = select.select([sock, self._wake_r], [], [], POLL_S)
        if self._wake_r in r:
            self._wake_r.recv(256)
        if sock not in r:
            return None
        head = self._recv_exact(2)
        if head is None:
            return False
        (n,) = struct.unpack(">H", head)
        msg = self._recv_exact(n) if n else b""
        if msg is None:
            return False
        if n == 1:
            return self._control(msg[0])
        return self._apdu(msg)

    def _control(self, code: int) -> bool:
        if code == CTRL_ATR:
            return self._send(self.atr)
        if code in (CTRL_ON, CTRL_RESET):
            with self.lock:
                self.app.power_on()
            self.power_ons += 1
            self._event("power on" if code == CTRL_ON else "reset")
        elif code == CTRL_OFF:
            self._event("power off")
        return True  # unknown control codes are ignored, as vpcd expects no answer

    def _apdu(self, apdu: bytes) -> bool:
        fault = self._remove_on
        hit = fault is not None and len(apdu) >= 2 and apdu[1] == fault[0]
        if hit:
            self._remove_on = None
            assert fault is not None
            if not fault[1]:
                self._want_in = False
                self._event("removed before command")
                return False
        with self.lock:
            resp = bytes(self.app.process(apdu))
        self.apdus += 1
        if hit:
            self._want_in = False
            self._event("removed before answer")
            return False
        return self._send(resp)


def wait_until(cond: Callable[[], bool], timeout_s: float, step_s: float = 0.05) -> bool:
    """Poll `cond` until true or the timeout; returns its last value."""
    end = time.monotonic() + timeout_s
    while True:
        if cond():
            return True
        if time.monotonic() >= end:
            return False
        time.sleep(step_s)
