"""The issuer: root key, device certificates, vouchers, updates, hot lists and acks.

Every object is built with the firmware's own `proto.seal`, so host and devices share one
encoding. The key file is written owner-only; its key id (SHA-256(public key)[:8]) travels in
every certificate, so a second key can be added to devices before the first is retired.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from tapcash.firmware.core import ed25519, proto

YEAR_S = 365 * 24 * 3600
DAY_S = 24 * 3600
CERT_DAYS = 730  # default certificate lifetime, the same for every command that certifies


class KeyFileError(ValueError):
    """A key file that cannot be read as an issuer key: its path and the reason, one line."""


def load_key_file(path: str | Path) -> Issuer:
    """`Issuer.load` for command lines: any failure (no file, unreadable, not a key, a key id
    that does not match) is one KeyFileError naming the path, never a traceback."""
    try:
        return Issuer.load(Path(path))
    except (OSError, ValueError, KeyError, TypeError) as e:
        reason = (e.strerror if isinstance(e, OSError) and e.strerror
                  else f"no {e} field" if isinstance(e, KeyError) else str(e))
        raise KeyFileError(f"{path}: not a readable issuer key file ({reason})") from None


class Issuer:
    def __init__(self, seed: bytes) -> None:
        if len(seed) != 32:
            raise ValueError("issuer seed must be 32 bytes")
        self._seed = seed
        self.public_key = ed25519.public_key(seed)
        self.key_id = proto.key_id(self.public_key)

    @classmethod
    def generate(cls) -> Issuer:
        return cls(os.urandom(32))

    @classmethod
    def load(cls, path: Path) -> Issuer:
        """Read a key file: JSON `{"seed", "key_id", "public_key"}` (hex) as `save` writes it,
        or a bare hex seed. The key id in the file must match the seed."""
        text = Path(path).read_text().strip()
        if not text.startswith("{"):
            return cls(bytes.fromhex(text))
        data = json.loads(text)
        issuer = cls(bytes.fromhex(data["seed"]))
        if "key_id" in data and bytes.fromhex(data["key_id"]) != issuer.key_id:
            raise ValueError(f"{path}: key_id does not match the seed")
        return issuer

    def save(self, path: Path, *, exist_ok: bool = False) -> None:
        """Write the key file owner-only (0600), created with those permissions: the seed is
        never readable by others, not even briefly. The file appears whole or not at all (a
        temporary file linked into place), so a process reading it meanwhile never sees half
        a key; without `exist_ok` an existing file is kept (FileExistsError)."""
        path = Path(path)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w") as f:
                os.fchmod(f.fileno(), 0o600)
                json.dump({"key_id": self.key_id.hex(), "public_key": self.public_key.hex(),
                           "seed": self._seed.hex()}, f, indent=1)
                f.write("\n")
                f.flush()
                os.fsync(f.fileno())
            if exist_ok:
                os.replace(tmp, path)
            else:
                os.link(tmp, path)  # atomic, and refuses a name that exists
        finally:
            if tmp.exists():
                tmp.unlink()

    @property
    def trusted_keys(self) -> dict[bytes, bytes]:
        return {self.key_id: self.public_key}

    def _seal(self, tag: bytes, body: dict) -> bytes:
        return proto.seal(tag, body, self._seed)

    def certify_wallet(
        self,
        wallet_id: bytes,
        public_key: bytes,
        *,
        expires: int,
        limits: dict[int, int] | None = None,
        serial: int = 1,
    ) -> bytes:
        merged = dict(proto.DEFAULT_LIMITS)
        merged.update(limits or {})
        return self._seal(
            proto.TAG_CERT,
            {
                proto.CERT_KIND: proto.KIND_WALLET,
                proto.CERT_ID: wallet_id,
                proto.CERT_KEY: public_key,
                proto.CERT_ISSUER: self.key_id,
                proto.CERT_EXPIRES: expires,
                proto.CERT_LIMITS: merged,
                proto.CERT_SERIAL: serial,
            },
        )

    def certify_pos(
        self,
        pos_id: bytes,
        public_key: bytes,
        merchant_id: bytes,
        *,
        expires: int,
        category: int = 0,
        serial: int = 1,
    ) -> bytes:
        return self._seal(
            proto.TAG_CERT,
            {
                proto.CERT_KIND: proto.KIND_POS,
                proto.CERT_ID: pos_id,
                proto.CERT_KEY: public_key,
                proto.CERT_ISSUER: self.key_id,
                proto.CERT_EXPIRES: expires,
                proto.CERT_MERCHANT: merchant_id,
                proto.CERT_SERIAL: serial,
                proto.CERT_CATEGORY: category,
            },
        )

    def voucher(
        self,
        wallet_id: bytes,
        number: int,
        amount: int,
        *,
        source: int = proto.VSRC_TOPUP,
        ref: bytes = b"",
        purse: int = 0,
    ) -> bytes:
        return self._seal(
            proto.TAG_VOUCHER,
            {
                proto.VCH_WALLET: wallet_id,
                proto.VCH_NUMBER: number,
                proto.VCH_AMOUNT: amount,
                proto.VCH_SOURCE: source,
                proto.VCH_REF: ref,
                proto.VCH_PURSE: purse,
            },
        )

    def rule(
        self,
        program: bytes,
        *,
        kind: int,
        expires: int,
        merchants: list[bytes] | None = None,
        categories: list[int] | None = None,
        valid_from: int = 0,
        cap: int = 0,
        unit: int = 0,
        funder: str = "",
    ) -> bytes:
        """An earmarked purse rule (PROTOCOL.md §2.9): which payees may take the purse's
        value, when, in what shares, and whose account the rest returns to."""
        body: dict[int, object] = {
            proto.RULE_PROGRAM: program,
            proto.RULE_KIND: kind,
            proto.RULE_FROM: valid_from,
            proto.RULE_EXPIRES: expires,
            proto.RULE_FUNDER: funder,
        }
        if merchants:
            body[proto.RULE_MERCHANTS] = sorted(merchants)
        if categories:
            body[proto.RULE_CATEGORIES] = sorted(categories)
        if cap:
            body[proto.RULE_CAP] = cap
        if unit:
            body[proto.RULE_UNIT] = unit
        return self._seal(proto.TAG_RULE, body)

    def purse_voucher(
        self, wallet_id: bytes, number: int, amount: int, rule: bytes, *, ref: bytes = b""
    ) -> bytes:
        """A voucher loading `amount` into the earmarked purse of `rule` (exactly once, in the
        wallet's one voucher sequence)."""
        return self._seal(
            proto.TAG_VOUCHER,
            {
                proto.VCH_WALLET: wallet_id,
                proto.VCH_NUMBER: number,
                proto.VCH_AMOUNT: amount,
                proto.VCH_SOURCE: proto.VSRC_PROGRAM,
                proto.VCH_REF: ref,
                proto.VCH_PURSE: 1,
                proto.VCH_RULE: rule,
            },
        )

    def update(self, device_id: bytes, number: int, fields: dict[int, object]) -> bytes:
        body: dict[int, object] = {proto.UPD_DEVICE: device_id, proto.UPD_NUMBER: number}
        body.update(fields)
        return self._seal(proto.TAG_UPDATE, body)

    def hotlist(self, version: int, issued: int, revoked: list[bytes]) -> bytes:
        body = {
            proto.HOT_VERSION: version,
            proto.HOT_ISSUED: issued,
            proto.HOT_REVOKED: sorted(revoked),
        }
        return self._seal(proto.TAG_HOTLIST, body)

    def ack(self, device_id: bytes, upto: int, time: int, digest: bytes) -> bytes:
        """The ledger holds the device's journal records 1..upto exactly: `digest` is the
        journal chain value at `upto` (proto.journal_link; 32 zero bytes for upto 0)."""
        return self._seal(
            proto.TAG_ACK,
            {proto.ACK_DEVICE: device_id, proto.ACK_UPTO: upto, proto.ACK_TIME: time,
             proto.ACK_DIGEST: digest},
        )
