"""`tapcash provision`: personalise a blank wallet or POS running the tapcash firmware.

    SELECT                 blank? (an already personalised device is refused); wallet or POS?
    PERSO KEYGEN           the device makes its Ed25519 key and returns the public key; the
                           private key never leaves it (asked again, it returns the same key,
                           so an interrupted provisioning can be run again)
    certify                the issuer signs the certificate on the host (host/issuer.py)
    PERSO FINISH           certificate, issuer key, PIN/PUK (wallet) or config and a first hot
                           list (POS)
    SELECT                 the device now says it is personalised, with that certificate
    register (--ledger)    the certificate is registered with the ledger

Transport: the sync frame protocol over serial (firmware/core/frame.py via
host/sync/transport.py), i.e. the firmware's own sync pump answers; it is what a deployed board
runs after reset and what `sim/device/serial_pty.py` serves. `ReplApduLink` is the other way for a
board sitting at the MicroPython REPL (firmware deployed, main loop not running, e.g. no NFC chip
wired yet): each APDU is one raw-REPL exec of the firmware's `process()` on the board, with the
same HAL (flash under /data) `firmware/main.py` builds.
"""

from __future__ import annotations

import difflib
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from tapcash.firmware.core import cbor, proto
from tapcash.host.issuer import YEAR_S, Issuer
from tapcash.host.output import parse_money

from .apdu import ApduLink, exchange, select_tapcash
from .errors import (
    AlreadyPersonalised,
    DeviceError,
    DeviceRefused,
    InputError,
    NotADevice,
)

LIMIT_NAMES = {n[4:].lower(): getattr(proto, n) for n in dir(proto) if n.startswith("LIM_")}
# The limits that are money: typed in major units ("200.00"), as every amount on a command line.
MONEY_LIMITS = frozenset(
    {
        proto.LIM_BALANCE_MAX,
        proto.LIM_PAYMENT_MAX,
        proto.LIM_OFFLINE_AMOUNT,
        proto.LIM_NO_CVM,
        proto.LIM_STAGED_SPEND,
    }
)
CONFIG_NAMES = {n[4:].lower(): getattr(proto, n) for n in dir(proto) if n.startswith("CFG_")}
KIND_NAMES = {proto.KIND_WALLET: "wallet", proto.KIND_POS: "pos"}

_SW_TEXT = {
    proto.SW_CONDITIONS: "the device is not in the state for this (already personalised?)",
    proto.SW_DATA_INVALID: "the certificate does not match the device's key or id",
    proto.SW_BAD_SIGNATURE: "the certificate signature does not verify with the issuer key",
    proto.SW_EXPIRED: "the certificate is expired by the device's clock",
    proto.SW_WRONG_DATA: "the device refused the data as malformed (PIN 4-8 digits, PUK 8-16)",
    proto.SW_WRONG_LENGTH: "wrong length",
    proto.SW_INS: "the device does not know this command",
    proto.SW_MEMORY: "the device could not write its flash",
    proto.SW_INTERNAL: "the device failed internally",
}


@dataclass
class ProvisionResult:
    role: str
    device_id: bytes
    public_key: bytes
    cert: bytes
    issuer_key_id: bytes
    expires: int
    merchant: bytes | None
    settings: dict[int, int]  # wallet: certificate limits; POS: config given
    info: dict[int, Any]  # INFO after personalisation
    registered: dict[str, Any] | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "role": self.role,
            "id": self.device_id.hex(),
            "public_key": self.public_key.hex(),
            "cert": self.cert.hex(),
            "issuer_key_id": self.issuer_key_id.hex(),
            "expires": self.expires,
            "merchant": self.merchant.hex() if self.merchant else None,
            "settings": {str(k): v for k, v in sorted(self.settings.items())},
            "registered": self.registered,
        }


def parse_settings(items: Iterable[str], names: dict[str, int], what: str) -> dict[int, int]:
    """["balance_max=1000.00", "3=20"] -> {1: 100000, 3: 20}: money limits in major units, the
    rest integers; InputError on anything else."""
    out: dict[int, int] = {}
    known = ", ".join(sorted(names))
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip().lower().replace("-", "_")
        if not sep:
            raise InputError(f"{what} {item!r}: expected NAME=VALUE ({known})")
        if key.isdigit() and int(key) in names.values():
            num = int(key)
        elif key in names:
            num = names[key]
        else:
            close = difflib.get_close_matches(key, list(names), n=1)
            hint = f"did you mean {close[0]!r}?" if close else f"one of {known}"
            raise InputError(f"{what} {item!r}: unknown name ({hint})")
        if names is LIMIT_NAMES and num in MONEY_LIMITS:
            try:
                val = parse_money(value)
            except ValueError as e:
                raise InputError(f"{what} {item!r}: {e}") from None
            out[num] = val
            continue
        try:
            val = int(value.strip().replace("_", ""))
        except ValueError:
            raise InputError(f"{what} {item!r}: the value must be an integer") from None
        if val < 0:
            raise InputError(f"{what} {item!r}: the value must not be negative")
        out[num] = val
    return out


def parse_id(text: str | None, what: str) -> bytes | None:
    if text is None:
        return None
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        raw = b""
    if len(raw) != 8:
        raise InputError(f"{what} must be 16 hex digits (8 bytes), got {text!r}")
    return raw


def check_secret(value: str | None, what: str, lo: int, hi: int) -> bytes:
    if value is None or not value.isdigit() or not lo <= len(value) <= hi or not value.isascii():
        raise InputError(f"the {what} must be {lo} to {hi} digits")
    return value.encode()


# --- the device side ---------------------------------------------------------------------


def select(link: ApduLink) -> dict[int, Any]:
    data, sw = select_tapcash(link.transceive)
    if sw != proto.SW_OK:
        raise NotADevice(f"the device on {link.port} refused SELECT tapcash (SW {sw:04X})")
    try:
        info = cbor.decode(data)
    except ValueError:
        info = None
    if not isinstance(info, dict) or info.get(proto.INFO_VERSION) != proto.VERSION:
        raise NotADevice(f"the device on {link.port} speaks another protocol version")
    return info


def identify(link: ApduLink) -> tuple[dict[int, Any], str]:
    """INFO of a blank device and its role; AlreadyPersonalised when it is not blank."""
    info = select(link)
    if not info.get(proto.INFO_FLAGS, 0) & proto.FLAG_BLANK:
        dev = info.get(proto.INFO_ID)
        kind = _cert_kind(info.get(proto.INFO_CERT))
        ident = dev.hex() if isinstance(dev, bytes) else "?"
        raise AlreadyPersonalised(
            f"the device on {link.port} is already personalised ({kind} {ident}); a device is "
            "provisioned once (its key and certificate are fixed; renew through the ledger)"
        )
    # VERIFY PIN without data changes nothing; only a wallet has it (a POS answers 6D00)
    _d, sw = exchange(link.transceive, proto.INS_VERIFY_PIN, cla=proto.CLA_ISO, p2=0x80)
    return info, ("pos" if sw == proto.SW_INS else "wallet")


def _cert_kind(cert: Any) -> str:
    try:
        env = cert if isinstance(cert, bytes) else cbor.encode(cert)
        _bb, body, _sig = proto.open_envelope(env)
        return KIND_NAMES.get(body.get(proto.CERT_KIND), "device")
    except (proto.ApduError, ValueError, TypeError):
        return "device"


def _refused(step: str, sw: int, port: str) -> DeviceError:
    if sw == proto.SW_CONDITIONS:
        return AlreadyPersonalised(
            f"{step} refused on {port} (SW 6985): the device is already personalised"
        )
    why = _SW_TEXT.get(sw, "refused")
    return DeviceRefused(f"{step} refused on {port} (SW {sw:04X}): {why}", sw)


def provision(
    link: ApduLink,
    role: str,
    issuer: Issuer,
    *,
    device_id: bytes | None = None,
    merchant: bytes | None = None,
    pin: bytes | None = None,
    puk: bytes | None = None,
    limits: dict[int, int] | None = None,
    config: dict[int, int] | None = None,
    expires: int | None = None,
    category: int = 0,
    hotlist: bytes | None = None,
    now: int | None = None,
    say: Callable[[str], None] | None = None,
) -> ProvisionResult:
    """Personalise the blank device behind `link` as `role`. Raises ToolError."""
    echo = say or (lambda _s: None)
    if role == "pos" and merchant is None:
        raise InputError("a POS needs --merchant (16 hex digits)")
    if role == "wallet" and (pin is None or puk is None):
        raise InputError("a wallet needs a PIN and a PUK")
    now = int(time.time()) if now is None else now
    _info, kind = identify(link)
    if kind != role:
        raise DeviceError(
            f"the device on {link.port} runs the {kind} firmware, not {role} (deployed with "
            f"--role {kind}?)"
        )
    if role == "wallet":
        # a wallet answers PERSO only inside a session: SELECT again (VERIFY PIN kept it)
        select(link)
    dev = device_id or secrets.token_bytes(8)
    exp = expires if expires is not None else now + YEAR_S
    pub, cert = personalise(
        link,
        role,
        issuer,
        dev,
        expires=exp,
        now=now,
        merchant=merchant,
        pin=pin,
        puk=puk,
        limits=limits,
        config=config,
        category=category,
        hotlist=hotlist or None,
        say=echo,
    )
    if role == "wallet":
        settings = dict(proto.DEFAULT_LIMITS)
        settings.update(limits or {})
    else:
        settings = dict(config or {})
    after = select(link)
    if after.get(proto.INFO_FLAGS, 0) & proto.FLAG_BLANK or after.get(proto.INFO_ID) != dev:
        raise DeviceError(f"the device on {link.port} does not report the new identity")
    return ProvisionResult(
        role=role,
        device_id=dev,
        public_key=pub,
        cert=cert,
        issuer_key_id=issuer.key_id,
        expires=exp,
        merchant=merchant,
        settings=settings,
        info=after,
    )


def personalise(
    link: ApduLink,
    role: str,
    issuer: Issuer,
    device_id: bytes,
    *,
    expires: int,
    now: int,
    merchant: bytes | None = None,
    pin: bytes | None = None,
    puk: bytes | None = None,
    limits: dict[int, int] | None = None,
    config: dict[int, int] | None = None,
    category: int = 0,
    hotlist: bytes | None = None,
    say: Callable[[str], None] | None = None,
) -> tuple[bytes, bytes]:
    """PERSO KEYGEN, the issuer's certificate, PERSO FINISH: the personalisation itself, the same
    for `tapcash provision` on a board and for the simulator's devices (sim/device/provision.py).

    The device is selected already (a wallet answers PERSO only inside a session). `hotlist`
    None: an empty one (version 1, issued `now`); b"": none at all. Returns (public key,
    certificate); AlreadyPersonalised / DeviceRefused when the device refuses a step."""
    pub, sw = exchange(link.transceive, proto.INS_PERSO_KEYGEN)
    if sw != proto.SW_OK:
        raise _refused("PERSO KEYGEN", sw, link.port)
    if len(pub) != 32:
        raise DeviceRefused(f"PERSO KEYGEN on {link.port} returned {len(pub)} bytes, not a key")
    if say is not None:
        say(f"{role} key generated on the device: {pub.hex()}")
    finish: dict[int, Any]
    if role == "wallet":
        cert = issuer.certify_wallet(device_id, pub, expires=expires, limits=limits)
        finish = {
            proto.PF_CERT: cert,
            proto.PF_ISSUERS: [issuer.public_key],
            proto.PF_PIN: pin,
            proto.PF_PUK: puk,
        }
    else:
        if merchant is None:
            raise InputError("a POS needs a merchant id")
        cert = issuer.certify_pos(device_id, pub, merchant, expires=expires, category=category)
        finish = {proto.PF_CERT: cert, proto.PF_ISSUERS: [issuer.public_key]}
        if config:
            finish[proto.PF_CONFIG] = dict(config)
        if hotlist is None:
            hotlist = issuer.hotlist(1, now, [])
        if hotlist:
            finish[proto.PF_HOTLIST] = hotlist
    _d, sw = exchange(link.transceive, proto.INS_PERSO_FINISH, cbor.encode(finish))
    if sw != proto.SW_OK:
        raise _refused("PERSO FINISH", sw, link.port)
    return pub, cert
