"""The host end of the serial framing (docs/PROTOCOL.md §3.3): one APDU out, one APDU back.

Frames are built and parsed by the firmware's own `core.frame`, so both ends share one
implementation. Each request carries an id; the first id of a session is random, so answers
left in the line by an earlier, interrupted session (or a device's replay cache) are never
taken for this session's. A request without an answer in time is resent with the same id
(the device replays its cached answer if it had already run it) up to `retries` times.
"""

from __future__ import annotations

import errno
import os
import secrets
import time
from dataclasses import dataclass

import serial

from tapcash.firmware.core import frame
from tapcash.host.device.errors import (
    LinkLost,
    NoAnswer,
    NoSuchPort,
    PortBusy,
    PortError,
    PortPermission,
)

DEFAULT_BAUD = 115200
DEFAULT_TIMEOUT_S = 2.0  # a board signs the export status with Ed25519: ~0.5 s on an ESP32
DEFAULT_RETRIES = 3
POLL_S = 0.05

try:  # tcdrain on a line that went away raises termios.error, not OSError
    import termios

    LINE_ERRORS: tuple[type[BaseException], ...] = (
        OSError,
        serial.SerialException,
        termios.error,
    )
except ImportError:  # Windows
    LINE_ERRORS = (OSError, serial.SerialException)


@dataclass
class LinkStats:
    requests: int = 0
    resends: int = 0
    bytes_out: int = 0
    bytes_in: int = 0
    stale_answers: int = 0  # good frames with another request's id (an earlier session's)


class SerialTransport:
    """`transceive(apdu) -> response` over a serial port opened exclusively."""

    def __init__(
        self,
        port: str,
        baud: int = DEFAULT_BAUD,
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        retries: int = DEFAULT_RETRIES,
    ) -> None:
        self.port = port
        self.baud = baud
        self.timeout_s = timeout_s
        self.retries = retries
        self.stats = LinkStats()
        self._decoder = frame.Decoder()
        self._next_id = secrets.randbelow(frame.ID_MAX) + 1  # 0 is the "unreadable" answer id
        self._ser = _open(port, baud)

    # -- lifecycle -------------------------------------------------------------------------
    def close(self) -> None:
        if self._ser is not None:
            try:
                self._ser.close()
            except LINE_ERRORS:
                pass
            self._ser = None

    def __enter__(self) -> SerialTransport:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- exchange --------------------------------------------------------------------------
    def transceive(self, apdu: bytes, *, retries: int | None = None) -> bytes:
        """Send one command APDU and return the device's response APDU (data || SW).

        Raises NoAnswer after 1 + retries silent attempts, LinkLost when the line fails."""
        rid = self._next_id
        self._next_id = self._next_id % frame.ID_MAX + 1
        out = frame.encode_request(rid, apdu)
        self.stats.requests += 1
        # time on the wire for the request and the largest answer, at this baud rate
        wire_s = (len(out) + frame.MAX_FRAME) * 10 / self.baud
        attempts = 1 + (self.retries if retries is None else retries)
        for attempt in range(attempts):
            if attempt:
                self.stats.resends += 1
                self._decoder.reset()
            self._write(out)
            answer = self._await(rid, time.monotonic() + self.timeout_s + wire_s)
            if answer is not None:
                return answer
        raise NoAnswer(f"no answer from {self.port} after {attempts} attempts")

    def _write(self, data: bytes) -> None:
        assert self._ser is not None
        try:
            self._ser.write(data)
            self._ser.flush()
        except LINE_ERRORS as e:
            raise LinkLost(f"serial line {self.port} failed while sending: {e}") from None
        self.stats.bytes_out += len(data)

    def _await(self, rid: int, deadline: float) -> bytes | None:
        assert self._ser is not None
        while True:
            if time.monotonic() >= deadline:
                return None
            try:  # returns what is there, or after POLL_S with nothing (the port's timeout)
                chunk = self._ser.read(max(1, self._ser.in_waiting))
            except LINE_ERRORS as e:
                raise LinkLost(f"serial line {self.port} failed: {e}") from None
            if not chunk:
                continue
            self.stats.bytes_in += len(chunk)
            for payload in self._decoder.feed(chunk):
                msg = frame.decode_answer(payload)
                if msg is not None and msg[0] == rid:
                    return msg[1]
                self.stats.stale_answers += 1


def _open(port: str, baud: int) -> serial.Serial:
    if not port.startswith(("socket://", "rfc2217://", "loop://")) and not os.path.exists(port):
        raise NoSuchPort(f"no such port: {port}")
    ser = serial.Serial()
    ser.port = port
    ser.baudrate = baud
    ser.timeout = POLL_S
    ser.write_timeout = 5.0
    ser.exclusive = True  # flock: a second sync on the same port fails fast instead of interleaving
    try:
        ser.open()
    except serial.SerialException as e:
        code = e.errno
        text = str(e)
        if code == errno.ENOENT:
            raise NoSuchPort(f"no such port: {port}") from None
        if code in (errno.EACCES, errno.EPERM):
            raise PortPermission(
                f"permission denied on {port} (add yourself to the 'dialout' group "
                "or run with access to the device)"
            ) from None
        if code in (errno.EBUSY, errno.EAGAIN) or "lock" in text.lower():
            raise PortBusy(f"port {port} is busy: another program has it open") from None
        raise PortError(f"cannot open {port}: {text}") from None
    try:
        ser.reset_input_buffer()  # whatever a previous session left unread
    except LINE_ERRORS:
        pass
    return ser
