"""Wire helpers: base64 envelopes, hex ids, strict field checks that become 400s.

The protocol checks are the firmware's own (firmware/core/envelope.py, check.py: the card, the
POS and the ledger judge a message by the same code); here their ApduError (6A80) becomes a
LedgerError 400 naming what was wrong.
"""

from __future__ import annotations

import base64
import binascii

from tapcash.firmware.core import cbor, check, envelope
from tapcash.firmware.core.apdu import ApduError

from .errors import LedgerError

MONEY_MAX = (1 << 62) - 1  # amounts must fit a signed 64-bit column with room for sums


def b64d(text: object, what: str) -> bytes:
    if not isinstance(text, str):
        raise LedgerError(400, f"{what}: expected a base64 string")
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, ValueError, UnicodeEncodeError):
        raise LedgerError(400, f"{what}: bad base64") from None


def b64e(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def parse_id(text: str, what: str = "id") -> bytes:
    try:
        raw = bytes.fromhex(text)
    except (ValueError, TypeError):
        raise LedgerError(400, f"{what}: expected 16 hex digits") from None
    if len(raw) != 8:
        raise LedgerError(400, f"{what}: expected 16 hex digits")
    return raw


def strict_decode(data: bytes) -> object:
    """`firmware.core.cbor.decode`: deterministic and strict (on CPython cbor2 parses, the
    firmware's rules decide; see firmware/core/cbor_cpython.py)."""
    return cbor.decode(data)


def decode_cbor(data: bytes, what: str) -> object:
    try:
        return strict_decode(data)
    except ValueError:
        raise LedgerError(400, f"{what}: malformed CBOR") from None


def open_env(data: bytes | list, what: str) -> tuple[bytes, dict, bytes]:
    """(body bytes, body, sig) of an envelope (bytes or the [body, sig] array):
    `envelope.open_envelope`; 400 when malformed."""
    if not isinstance(data, bytes | bytearray | list):
        raise LedgerError(400, f"{what}: malformed envelope")
    try:
        return envelope.open_envelope(bytes(data) if isinstance(data, bytearray) else data)
    except ApduError:
        raise LedgerError(400, f"{what}: malformed envelope") from None


def env_bytes(value: object, what: str) -> bytes:
    """An envelope field of a CBOR message: byte string (normal) or the array form
    (`envelope.envelope_bytes`)."""
    try:
        return envelope.envelope_bytes(value)
    except ApduError:
        if isinstance(value, list):
            raise LedgerError(400, f"{what}: malformed envelope") from None
        raise LedgerError(400, f"{what}: missing or not an envelope") from None


def field_int(m: dict, key: int, what: str, lo: int = 0, hi: int = MONEY_MAX) -> int:
    """`check.need_int` with the ledger's default bound (MONEY_MAX); 400 when off."""
    try:
        return check.need_int(m, key, lo, hi)
    except ApduError:
        raise LedgerError(400, f"{what}: field {key} must be an integer in [{lo}, {hi}]") from None


def field_bytes(m: dict, key: int, what: str, n: int | None = None) -> bytes:
    """`check.need_bytes`; 400 when off."""
    try:
        return check.need_bytes(m, key, n)
    except ApduError:
        size = f" of {n} bytes" if n is not None else ""
        raise LedgerError(400, f"{what}: field {key} must be a byte string{size}") from None


def check_amount(amount: object, what: str = "amount") -> int:
    if not isinstance(amount, int) or isinstance(amount, bool) or not 0 < amount <= MONEY_MAX:
        raise LedgerError(400, f"{what}: must be a positive integer of minor units")
    return amount
