# The APDU layer of the card protocol, implemented once: the application identifier,
# instruction bytes, status words, ApduError and ISO 7816-4 command/response framing.
# One job of the protocol (core/proto.py gathers all of them in one namespace for hosts);
# firmware imports only the parts it uses. docs/PROTOCOL.md describes the same in prose.
from .runtime import const

VERSION = const(2)  # docs/PROTOCOL.md "Changes since version 1"

# Application identifier: proprietary RID F0 + "tapcash" + protocol version.
AID = b"\xf0tapcash\x01"

# ---- instruction bytes -------------------------------------------------------------------
CLA_ISO = const(0x00)
CLA_PROP = const(0x80)

INS_SELECT = const(0xA4)  # CLA 00
INS_VERIFY_PIN = const(0x20)  # CLA 00, P2 = 0x80
INS_RESET_RETRY = const(0x2C)  # CLA 00: unblock PIN with PUK
INS_GET_INFO = const(0xCA)
INS_PAY = const(0x50)
INS_RECEIPT = const(0x52)
INS_GET_LAST = const(0x54)
INS_CHALLENGE = const(0x84)  # CLA 00 GET CHALLENGE: receiver side of a transfer
INS_RECEIVE = const(0x56)
INS_LOAD = const(0x58)
INS_EXPORT = const(0x60)
INS_ACK = const(0x62)
INS_APPLY = const(0x64)
INS_PERSO_KEYGEN = const(0xE0)
INS_PERSO_FINISH = const(0xE2)

# ---- status words ------------------------------------------------------------------------
SW_OK = const(0x9000)
SW_WRONG_LENGTH = const(0x6700)
SW_SECURITY = const(0x6982)  # PIN required / not verified
SW_PIN_BLOCKED = const(0x6983)
SW_CONDITIONS = const(0x6985)  # wrong state: not selected, not personalised, challenge reused
SW_BAD_SIGNATURE = const(0x6988)
SW_DATA_INVALID = const(0x6984)  # signed object for another device, stale, out of order
SW_WRONG_DATA = const(0x6A80)  # malformed CBOR or schema
SW_NOT_FOUND = const(0x6A82)  # unknown AID, no such record
SW_FULL = const(0x6A84)  # journal full: sync first
SW_WRONG_P1P2 = const(0x6B00)
SW_INS = const(0x6D00)
SW_CLA = const(0x6E00)
SW_MEMORY = const(0x6581)  # flash write failed
SW_INTERNAL = const(0x6F00)
SW_NO_RAM = const(0x6F01)  # out of RAM (after one collection and retry): nothing decided
SW_FUNDS = const(0x6910)  # balance too low
SW_OVER_PAYMENT_MAX = const(0x6911)
SW_OFFLINE_COUNT = const(0x6912)  # too many offline payments since the last sync
SW_OFFLINE_AMOUNT = const(0x6913)  # cumulative offline amount reached
SW_BALANCE_CAP = const(0x6914)
SW_EXPIRED = const(0x6915)
SW_REPLAY = const(0x6916)  # voucher / update already applied
SW_REVOKED = const(0x6917)
SW_PURSE = const(0x6918)  # earmarked purse: its rule does not allow this payee, time or amount
SW_PURSE_FULL = const(0x6919)  # LOAD of a new earmarked purse: every purse slot is taken


def sw_pin_wrong(tries_left):
    return 0x63C0 | (tries_left & 0x0F)


class ApduError(Exception):
    """A command ends with this status word. Carries no secrets, only the code."""

    def __init__(self, sw):
        super().__init__(sw)  # MicroPython: Exception has no __init__ attribute to call
        self.sw = sw


# ---- APDUs (ISO 7816-4, short and extended length) ---------------------------------------
def parse_command(apdu):
    """Return (cla, ins, p1, p2, data, le) or raise ApduError(SW_WRONG_LENGTH)."""
    n = len(apdu)
    if n < 4:
        raise ApduError(SW_WRONG_LENGTH)
    cla, ins, p1, p2 = apdu[0], apdu[1], apdu[2], apdu[3]
    if n == 4:
        return cla, ins, p1, p2, b"", 0
    if n == 5:
        return cla, ins, p1, p2, b"", apdu[4] or 256
    if apdu[4] != 0:  # short Lc
        lc = apdu[4]
        if n == 5 + lc:
            return cla, ins, p1, p2, bytes(apdu[5:]), 0
        if n == 6 + lc:
            return cla, ins, p1, p2, bytes(apdu[5 : 5 + lc]), apdu[-1] or 256
        raise ApduError(SW_WRONG_LENGTH)
    # extended: 00 then two bytes
    if n == 7:
        return cla, ins, p1, p2, b"", (apdu[5] << 8 | apdu[6]) or 65536
    if n < 8:
        raise ApduError(SW_WRONG_LENGTH)
    lc = apdu[5] << 8 | apdu[6]
    if lc == 0:
        raise ApduError(SW_WRONG_LENGTH)
    if n == 7 + lc:
        return cla, ins, p1, p2, bytes(apdu[7:]), 0
    if n == 9 + lc:
        return cla, ins, p1, p2, bytes(apdu[7 : 7 + lc]), (apdu[-2] << 8 | apdu[-1]) or 65536
    raise ApduError(SW_WRONG_LENGTH)


def build_command(cla, ins, p1, p2, data=b"", le=True):
    """Encode a command APDU, short form when it fits, extended otherwise."""
    head = bytes((cla, ins, p1, p2))
    n = len(data)
    if n == 0:
        return head + (b"\x00" if le else b"")
    if n <= 255:
        return head + bytes((n,)) + data + (b"\x00" if le else b"")
    return head + bytes((0, n >> 8, n & 0xFF)) + data + (b"\x00\x00" if le else b"")


def response(data=b"", sw=SW_OK):
    """data || SW1 SW2. data may be a list of byte strings (cbor.encode_parts): joined once."""
    tail = bytes((sw >> 8, sw & 0xFF))
    if type(data) is list:
        data.append(tail)
        return b"".join(data)
    return bytes(data) + tail


def split_response(resp):
    """Return (data, sw); a response shorter than 2 bytes is a broken link."""
    if len(resp) < 2:
        raise ApduError(SW_WRONG_LENGTH)
    return resp[:-2], resp[-2] << 8 | resp[-1]
