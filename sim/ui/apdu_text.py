"""Short, human text for APDUs and status words (the event log of `tapcash sim ui`)."""

from __future__ import annotations

from tapcash.firmware.core import proto, units

INS_NAMES: dict[int, str] = {
    proto.INS_SELECT: "SELECT",
    proto.INS_VERIFY_PIN: "VERIFY PIN",
    proto.INS_RESET_RETRY: "RESET RETRY",
    proto.INS_GET_INFO: "GET INFO",
    proto.INS_PAY: "PAY",
    proto.INS_RECEIPT: "RECEIPT",
    proto.INS_GET_LAST: "GET LAST",
    proto.INS_CHALLENGE: "GET CHALLENGE",
    proto.INS_RECEIVE: "RECEIVE",
    proto.INS_LOAD: "LOAD",
    proto.INS_EXPORT: "EXPORT",
    proto.INS_ACK: "ACK",
    proto.INS_APPLY: "APPLY",
    proto.INS_PERSO_KEYGEN: "PERSO KEYGEN",
    proto.INS_PERSO_FINISH: "PERSO FINISH",
}

SW_TEXT: dict[int, str] = {
    proto.SW_OK: "OK",
    proto.SW_WRONG_LENGTH: "wrong length",
    proto.SW_SECURITY: "PIN required",
    proto.SW_PIN_BLOCKED: "PIN blocked",
    proto.SW_CONDITIONS: "conditions not satisfied",
    proto.SW_BAD_SIGNATURE: "bad signature",
    proto.SW_DATA_INVALID: "data invalid",
    proto.SW_WRONG_DATA: "wrong data",
    proto.SW_NOT_FOUND: "not found",
    proto.SW_FULL: "journal full",
    proto.SW_WRONG_P1P2: "wrong P1/P2",
    proto.SW_INS: "INS not supported",
    proto.SW_CLA: "CLA not supported",
    proto.SW_MEMORY: "flash write failed",
    proto.SW_INTERNAL: "internal error",
    proto.SW_FUNDS: "insufficient funds",
    proto.SW_OVER_PAYMENT_MAX: "over payment max",
    proto.SW_OFFLINE_COUNT: "offline payment count reached",
    proto.SW_OFFLINE_AMOUNT: "offline amount reached",
    proto.SW_BALANCE_CAP: "balance cap",
    proto.SW_EXPIRED: "expired",
    proto.SW_REPLAY: "already applied",
    proto.SW_REVOKED: "revoked",
}

REASON_TEXT: dict[str, str] = {
    "ok": "ok",
    "recovered": "completed the torn payment of an earlier tap",
    "pos_blank": "POS not personalised",
    "amount": "invalid amount",
    "journal_full": "POS journal full: sync the POS",
    "floor_limit": "over the POS floor limit",
    "hotlist_stale": "hot list stale: sync the POS",
    "link": "link broke mid-exchange",
    "no_app": "no tapcash app on the card",
    "bad_info": "card INFO unreadable",
    "card_blank": "card not personalised",
    "cert_invalid": "card certificate invalid",
    "cert_expired": "card certificate expired",
    "revoked": "card revoked (hot list)",
    "counter": "counter already seen here (clone or rollback)",
    "velocity": "velocity limit at this POS",
    "over_payment_max": "over the card's per-payment max",
    "offline_count": "offline payments used up: sync the card",
    "offline_amount": "offline amount used up: sync the card",
    "pin_required": "PIN required (none given)",
    "pin_wrong": "wrong PIN",
    "pin_blocked": "PIN blocked",
    "funds": "insufficient funds",
    "card_full": "card journal full: sync the card",
    "card_refused": "card refused",
    "bad_payment": "payment signature or fields wrong",
    "memory": "flash write failed",
}


def sw_text(sw: int) -> str:
    """'9000 OK', '63C2 wrong PIN, 2 tries left', '6910 insufficient funds'."""
    if sw & 0xFFF0 == 0x63C0:
        return f"{sw:04X} wrong PIN, {sw & 0x0F} tries left"
    return f"{sw:04X} {SW_TEXT.get(sw, 'unknown status')}"


def short_hex(data: bytes, limit: int = 12) -> str:
    """Hex of the first `limit` bytes, '…' when there is more."""
    text = data[:limit].hex()
    return text + "…" if len(data) > limit else text


def command_text(apdu: bytes) -> str:
    """'PAY 80500000 (58 B) 80500000 35a5…' for a command APDU."""
    if len(apdu) < 4:
        return f"({len(apdu)} B) {apdu.hex()}"
    name = INS_NAMES.get(apdu[1], f"INS {apdu[1]:02X}")
    return f"{name} ({len(apdu)} B) {short_hex(apdu)}"


def response_text(resp: bytes) -> str:
    """'9000 OK (142 B) a501…' for a response APDU (data || SW)."""
    if len(resp) < 2:
        return f"({len(resp)} B) {resp.hex()}"
    sw = int.from_bytes(resp[-2:], "big")
    data = resp[:-2]
    tail = f" {short_hex(data)}" if data else ""
    return f"{sw_text(sw)} ({len(resp)} B){tail}"


def reason_text(reason: str) -> str:
    return REASON_TEXT.get(reason, reason)


def money(amount: int) -> str:
    """Minor units as text: 1250 -> '12.50', -5 -> '-0.05' (the firmware's own, core/units.py)."""
    return units.money(amount)
