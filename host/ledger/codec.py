"""Wire helpers: base64 envelopes, hex ids, strict field checks that become 400s."""

from __future__ import annotations

import base64
import binascii

from tapcash.firmware.core import cbor

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
    """(body bytes, body, sig) of an envelope (bytes or the [body, sig] array), like
    `proto.open_envelope`; 400 when malformed."""
    env = decode_cbor(data, what) if isinstance(data, bytes | bytearray) else data
    if not isinstance(env, list) or len(env) != 2:
        raise LedgerError(400, f"{what}: malformed envelope")
    body_bytes, sig = env
    if not isinstance(body_bytes, bytes) or not isinstance(sig, bytes) or len(sig) != 64:
        raise LedgerError(400, f"{what}: malformed envelope")
    body = decode_cbor(body_bytes, what + " body")
    if not isinstance(body, dict):
        raise LedgerError(400, f"{what}: body is not a map")
    return body_bytes, body, sig


def env_bytes(value: object, what: str) -> bytes:
    """An envelope field of a CBOR message: byte string (normal) or the array form."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, list):
        try:
            return cbor.encode(value)
        except ValueError:
            raise LedgerError(400, f"{what}: malformed envelope") from None
    raise LedgerError(400, f"{what}: missing or not an envelope")


def field_int(m: dict, key: int, what: str, lo: int = 0, hi: int = MONEY_MAX) -> int:
    v = m.get(key)
    if not isinstance(v, int) or isinstance(v, bool) or v < lo or v > hi:
        raise LedgerError(400, f"{what}: field {key} must be an integer in [{lo}, {hi}]")
    return v


def field_bytes(m: dict, key: int, what: str, n: int | None = None) -> bytes:
    v = m.get(key)
    if not isinstance(v, bytes) or (n is not None and len(v) != n):
        size = f" of {n} bytes" if n is not None else ""
        raise LedgerError(400, f"{what}: field {key} must be a byte string{size}")
    return v


def check_amount(amount: object, what: str = "amount") -> int:
    if not isinstance(amount, int) or isinstance(amount, bool) or not 0 < amount <= MONEY_MAX:
        raise LedgerError(400, f"{what}: must be a positive integer of minor units")
    return amount
