"""Wire helpers: base64 envelopes, hex ids, strict field checks that become 400s.

The protocol checks are the firmware's own (firmware/core/envelope.py, check.py: the card, the
POS and the ledger judge a message by the same code); here their ApduError (6A80) becomes a
LedgerError 400 naming what was wrong.
"""

from __future__ import annotations

import base64
import binascii
import csv
import io
from typing import Any

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


def hex_id(text: object) -> bytes | None:
    """A device or merchant id (16 hex digits) as its 8 bytes; None for anything else."""
    try:
        raw = bytes.fromhex(text)  # type: ignore[arg-type]
    except (ValueError, TypeError):
        return None
    return raw if len(raw) == 8 else None


def parse_id(text: str, what: str = "id") -> bytes:
    raw = hex_id(text)
    if raw is None:
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


# ---- the ingest fast path: the shapes devices send, read without a general decoder ----------
# Each returns exactly what the strict decoder (firmware/core/cbor.py) would for the inputs it
# takes, or None for anything else: the caller then decodes the general way, which decides and
# words the error (tests/ledger/test_ledger_codec.py checks the agreement on random and mutated
# input).
_MIN = {24: 24, 25: 0x100, 26: 0x10000, 27: 0x100000000}
_SIZE = {24: 1, 25: 2, 26: 4, 27: 8}


def flat_map(data: bytes) -> dict[int, int | bytes] | None:
    """A map of at most 23 entries, keys small uints (0..23) in increasing order, every value
    an unsigned int or a byte string, in deterministic encoding: records, payment bodies,
    receipts, vouchers."""
    n = len(data)
    if not n or type(data) is not bytes:
        return None
    h = data[0]
    count = h - 0xA0
    if not 0 <= count <= 23:
        return None
    out: dict[int, int | bytes] = {}
    i = 1
    last = -1
    try:
        for _ in range(count):
            k = data[i]
            b = data[i + 1]
            if k > 23 or k <= last:
                return None
            last = k
            i += 2
            ai = b & 31
            if ai < 24:
                v = ai
            else:
                size = _SIZE.get(ai)
                if size is None:
                    return None
                v = int.from_bytes(data[i : i + size], "big")
                i += size
                if v < _MIN[ai] or i > n:
                    return None
            major = b >> 5
            if major == 0:
                out[k] = v
            elif major == 2:
                end = i + v
                if end > n:
                    return None
                out[k] = data[i:end]
                i = end
            else:
                return None
    except IndexError:
        return None
    return out if i == n else None


def split_envelope(env: bytes) -> tuple[bytes, bytes] | None:
    """(body bytes, signature) of an envelope `[bstr body, bstr sig(64)]` in deterministic
    encoding, or None (not that shape: `open_env` decides)."""
    n = len(env)
    if n < 68 or env[0] != 0x82 or type(env) is not bytes:
        return None
    b = env[1]
    if 0x40 <= b <= 0x57:
        size, i = b - 0x40, 2
    elif b == 0x58:
        size, i = env[2], 3
        if size < 24:
            return None
    elif b == 0x59:
        size, i = (env[2] << 8) | env[3], 4
        if size < 0x100:
            return None
    else:
        return None
    j = i + size
    if j + 66 != n or env[j] != 0x58 or env[j + 1] != 0x40:
        return None
    return env[i:j], env[j + 2 :]


def open_env(data: bytes | list, what: str) -> tuple[bytes, dict, bytes]:
    """(body bytes, body, sig) of an envelope (bytes or the [body, sig] array):
    `envelope.open_envelope`; 400 when malformed."""
    if type(data) is bytes:
        parts = split_envelope(data)
        if parts is not None:
            body = flat_map(parts[0])
            if body is not None:
                return parts[0], body, parts[1]
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


def parse_load_csv(
    csv_text: str, what: str, *, refuse_bare_cr: bool = False, once_per_wallet: bool = False
) -> list[tuple[int, bytes, int]]:
    """A bulk load's CSV (`wallet id hex, amount` a line; blank, `#` and a header line skipped)
    -> [(line number, wallet id, amount)], all lines or none: one 400 names every bad line.
    `what` ('payroll', 'programme load') starts each message. refuse_bare_cr: a lone CR is a
    400 of its own (otherwise it ends a line); once_per_wallet: a wallet named twice is bad."""
    lines: list[tuple[int, bytes, int]] = []
    errors: list[dict[str, Any]] = []
    seen: set[bytes] = set()
    refused = f"{what} refused: nothing was loaded"
    if refuse_bare_cr:
        bare_cr = csv_text.replace("\r\n", "\n").find("\r")
        if bare_cr >= 0:
            line = csv_text[:bare_cr].replace("\r\n", "\n").count("\n") + 1
            problem = {"line": line, "error": "a bare CR: lines end with LF or CRLF"}
            raise LedgerError(400, {"error": refused, "lines": [problem]})
    try:
        text = io.StringIO(csv_text, newline="") if refuse_bare_cr else io.StringIO(csv_text)
        rows = list(csv.reader(text))
    except csv.Error as e:  # e.g. a bare CR inside a line
        raise LedgerError(400, f"{what} csv: {e}") from None
    for lineno, row in enumerate(rows, start=1):
        if not row or all(not c.strip() for c in row) or row[0].strip().startswith("#"):
            continue
        if len(row) != 2:
            errors.append({"line": lineno, "error": "expected 2 fields: wallet id, amount"})
            continue
        wid_text, amt_text = row[0].strip(), row[1].strip()
        ascii_digits = amt_text.isascii() and amt_text.isdigit()  # not '²' or '٣'
        wid = hex_id(wid_text)
        if lineno == 1 and wid is None and not ascii_digits:
            continue  # a header line (`wallet,amount`): no wallet id, no amount
        if wid is None:
            errors.append({"line": lineno, "error": f"bad wallet id {wid_text!r}"})
            continue
        if not ascii_digits or not 0 < int(amt_text) <= MONEY_MAX:
            error = f"amount {amt_text!r} is not a positive integer of minor units"
            if "." in amt_text or "," in amt_text:  # 25.00, as a command line takes it
                error += " (write minor units, without a decimal point)"
            errors.append({"line": lineno, "error": error})
            continue
        if once_per_wallet and wid in seen:
            errors.append({"line": lineno, "error": f"wallet {wid_text} twice in one load"})
            continue
        seen.add(wid)
        lines.append((lineno, wid, int(amt_text)))
    if errors:
        raise LedgerError(400, {"error": refused, "lines": errors})
    if not lines:
        raise LedgerError(400, f"{what}: no lines")
    return lines

# A wallet journal's payment record as the firmware writes it (wallet/pay.py): {0: 1, 1: envelope}
# with the envelope [body, sig(64)] and a main-purse body of exactly the keys 0..9 (purse 0), in
# deterministic encoding, matched whole by one regular expression (C speed) instead of three
# general reads. The groups' lengths and minimal encodings are checked here or in the pattern;
# every other input is None and goes the general way. `payment_record` returns exactly what
# flat_map(record) -> flat_map(body) would give (tests/ledger/test_ledger_codec.py).
_UINT = (rb"([\x00-\x17]|\x18[\x18-\xff]|\x19[\x01-\xff].|\x1a(?!\x00\x00)....|"
         rb"\x1b(?!\x00\x00\x00\x00)........)")
_PAYMENT_RECORD = __import__("re").compile(
    rb"\xa2\x00\x01\x01(?:\x58(.)|\x59(?=[\x01-\xff])(..))\x82\x58(.)"
    rb"(\xaa\x00\x48(.{8})\x01" + _UINT + rb"\x02" + _UINT + rb"\x03\x48(.{8})"
    rb"\x04\x50(.{16})\x05\x58\x20(.{32})\x06\x00\x07" + _UINT + rb"\x08" + _UINT +
    rb"\x09([\x01\x02]))\x58\x40(.{64})", __import__("re").S)


def _uint(g: bytes) -> int:
    h = g[0]
    return h if h < 24 else int.from_bytes(g[1:], "big")


def payment_record(raw: bytes) -> tuple[bytes, bytes, bytes, tuple] | None:
    """(envelope, body bytes, signature, (wallet, counter, amount, payee, challenge, prev,
    time, balance, kind)) of a wallet's main-purse payment record, or None."""
    m = _PAYMENT_RECORD.fullmatch(raw)
    if m is None or type(raw) is not bytes:
        return None
    g = m.groups()
    body = g[3]
    n_env = len(raw) - (6 if g[0] is not None else 7)
    if (g[2][0] != len(body) or
            n_env != (g[0][0] if g[0] is not None else int.from_bytes(g[1], "big"))):
        return None
    if g[0] is not None and n_env < 24:
        return None
    return (raw[-n_env:], body, g[13], (g[4], _uint(g[5]), _uint(g[6]), g[7], g[8], g[9],
                                        _uint(g[10]), _uint(g[11]), g[12][0]))
