"""The protocol's checks (docs/PROTOCOL.md), run against any card or terminal through an APDU link
(`transceive(apdu) -> response`): PC/SC, a serial line with the sync frames, or an app in process.

Each check is one function taking a `Session` and raising `Failed("what was expected, what came")`;
they run in order and each names the section of the spec it checks. Nothing needs the issuer's key:
certificates are checked for form, signatures under the keys the device itself presents (a card's
payment under its certificate key, a device status under the device's key). The card checks spend
0.01 of the card's balance (one payment to the payee id below, which a ledger refunds: no POS of
that id exists) and one offline payment.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tapcash.firmware.core import cbor, ed25519, proto

PAYEE = b"CONFORM!"  # the payee id of the conformance payment (no POS has it)
AMOUNT = 1  # what the card checks spend, in minor units


class Failed(Exception):
    """A check failed: what the spec asks and what the device did (one line)."""


class Skipped(Exception):
    """A check that does not apply to this device (why)."""


Transceive = Callable[[bytes], bytes]


@dataclass
class Session:
    transceive: Transceive
    facts: dict[str, Any] = field(default_factory=dict)  # what earlier checks learned
    log: list[tuple[bytes, bytes]] = field(default_factory=list)

    def send(
        self,
        cla: int,
        ins: int,
        p1: int = 0,
        p2: int = 0,
        data: bytes = b"",
        raw: bytes | None = None,
    ) -> tuple[bytes, int]:
        apdu = raw if raw is not None else proto.build_command(cla, ins, p1, p2, data)
        resp = bytes(self.transceive(apdu))
        self.log.append((apdu, resp))
        if len(resp) < 2:
            raise Failed(f"{apdu[:4].hex()}: a response of {len(resp)} bytes (no status word)")
        return proto.split_response(resp)

    def ok(
        self, what: str, cla: int, ins: int, p1: int = 0, p2: int = 0, data: bytes = b""
    ) -> bytes:
        out, sw = self.send(cla, ins, p1, p2, data)
        if sw != proto.SW_OK:
            raise Failed(f"{what}: expected 9000, got {sw:04X}")
        return out

    def expect(
        self,
        what: str,
        sws: tuple[int, ...],
        cla: int,
        ins: int,
        p1: int = 0,
        p2: int = 0,
        data: bytes = b"",
        raw: bytes | None = None,
    ) -> int:
        out, sw = self.send(cla, ins, p1, p2, data, raw)
        if sw not in sws:
            want = " or ".join(f"{s:04X}" for s in sws)
            raise Failed(f"{what}: expected {want}, got {sw:04X}")
        if out:
            raise Failed(f"{what}: a refusal ({sw:04X}) must carry no data, got {len(out)} bytes")
        return sw

    def select(self) -> dict[int, Any]:
        out = self.ok("SELECT of the tapcash AID", proto.CLA_ISO, proto.INS_SELECT, 4, 0, proto.AID)
        return decode_map(out, "INFO (SELECT answer)")


def decode_map(data: bytes, what: str) -> dict[int, Any]:
    try:
        m = cbor.decode(data)
    except Exception as e:  # noqa: BLE001 - any decoder complaint is the device's fault
        raise Failed(f"{what}: not deterministic CBOR ({e})") from None
    if not isinstance(m, dict):
        raise Failed(f"{what}: not a CBOR map")
    return m


def _uint(m: dict, k: int, what: str) -> int:
    v = m.get(k)
    if not isinstance(v, int) or isinstance(v, bool) or v < 0:
        raise Failed(f"{what}: field {k} must be an unsigned integer, got {v!r}")
    return v


def _bstr(m: dict, k: int, what: str, n: int | None = None) -> bytes:
    v = m.get(k)
    if not isinstance(v, bytes) or (n is not None and len(v) != n):
        size = f" of {n} bytes" if n is not None else ""
        raise Failed(f"{what}: field {k} must be a byte string{size}, got {_kind(v)}")
    return v


def _kind(v: Any) -> str:
    """What a CBOR value is, in words (for messages: never a dump of the bytes)."""
    if v is None:
        return "nothing (the field is absent)"
    if isinstance(v, bytes):
        return f"a byte string of {len(v)} bytes"
    if isinstance(v, list):
        return f"an array of {len(v)} elements"
    return f"{type(v).__name__} {v!r:.40}"


def open_env(env: bytes, what: str) -> tuple[bytes, dict, bytes]:
    try:
        return proto.open_envelope(env)
    except proto.ApduError:
        raise Failed(f"{what}: not a [body, sig] envelope (§1.1)") from None


def check_cert(env: bytes, kind: int, what: str) -> dict:
    """§2.1: a certificate's form (its issuer signature needs the issuer key: not checked)."""
    _b, body, _s = open_env(env, what)
    if body.get(proto.CERT_KIND) != kind:
        raise Failed(f"{what}: kind must be {kind}, got {body.get(proto.CERT_KIND)!r}")
    _bstr(body, proto.CERT_ID, what, 8)
    _bstr(body, proto.CERT_KEY, what, 32)
    _bstr(body, proto.CERT_ISSUER, what, 8)
    _uint(body, proto.CERT_EXPIRES, what)
    if kind == proto.KIND_WALLET:
        limits = body.get(proto.CERT_LIMITS)
        if not isinstance(limits, dict):
            raise Failed(f"{what}: field 5 (limits) must be a map")
        for k in proto.DEFAULT_LIMITS:
            if k in limits:
                _uint(limits, k, what + " limits")
    else:
        _bstr(body, proto.CERT_MERCHANT, what, 8)
    return body


def check_status(env: Any, key: bytes, device: bytes, records: list, what: str) -> dict:
    """§2.8: the device status is signed by the device key and its digest is the journal chain
    over the records exported (from seq 1: a journal never pruned)."""
    if not isinstance(env, bytes):
        raise Failed(f"{what}: the status must be a byte string envelope (§1.1)")
    body_bytes, body, sig = open_env(env, what)
    if not ed25519.verify(key, proto.TAG_STATUS + body_bytes, sig):
        raise Failed(f"{what}: not signed by the device's certificate key")
    if _bstr(body, proto.ST_DEVICE, what, 8) != device:
        raise Failed(f"{what}: field 0 names another device")
    seq = _uint(body, proto.ST_SEQ, what)
    digest = _bstr(body, proto.ST_DIGEST, what, 32)
    if records and records[0][0] == 1:
        d = bytes(32)
        for s, raw in records:
            d = proto.journal_link(d, s, raw)
        if records[-1][0] != seq:
            raise Failed(
                f"{what}: last seq {seq}, but the last record exported is {records[-1][0]}"
            )
        if d != digest:
            raise Failed(f"{what}: journal digest is not the chain over the exported records")
    return body


def export_all(s: Session, what: str) -> tuple[list[tuple[int, bytes]], Any]:
    """EXPORT from 0 until `more` is false (§3.2 / §3.4): [(seq, record bytes)], status."""
    records: list[tuple[int, bytes]] = []
    since = 0
    for _page in range(1000):
        out = s.ok(
            what,
            proto.CLA_PROP,
            proto.INS_EXPORT,
            data=cbor.encode({proto.EXP_SINCE: since, proto.EXP_MAX: 16}),
        )
        m = decode_map(out, what)
        recs = m.get(proto.EXP_RECORDS)
        if not isinstance(recs, list) or not isinstance(m.get(proto.EXP_MORE), bool):
            raise Failed(f"{what}: fields 0 (records) and 1 (more) are required")
        for r in recs:
            if (
                not isinstance(r, list)
                or len(r) != 2
                or not isinstance(r[0], int)
                or not isinstance(r[1], bytes)
            ):
                raise Failed(f"{what}: each record is [seq, record bytes]")
            if r[0] <= since:
                raise Failed(f"{what}: record seq {r[0]} not above since {since}")
            records.append((r[0], r[1]))
            since = r[0]
        if not m[proto.EXP_MORE]:
            return records, m.get(proto.EXP_STATUS)
        if not recs:
            raise Failed(f"{what}: `more` is true on a page without records")
    raise Failed(f"{what}: more than 1000 pages")


# ---- checks common to both --------------------------------------------------------------------
def routing(s: Session) -> None:
    """§3.2.1 routing: CLA 6E00, INS 6D00, P1/P2 6B00, no data where none is taken 6700."""
    s.expect("CLA 0x90", (proto.SW_CLA,), 0x90, proto.INS_GET_INFO)
    s.expect("INS 0x7E under CLA 80", (proto.SW_INS,), proto.CLA_PROP, 0x7E)
    s.expect("GET INFO with P1 = 1", (proto.SW_WRONG_P1P2,), proto.CLA_PROP, proto.INS_GET_INFO, 1)
    try:
        s.expect("a 3-byte APDU", (proto.SW_WRONG_LENGTH,), 0, 0, raw=b"\x80\xca\x00")
    except (OSError, ConnectionError, RuntimeError) as e:  # a reader that will not send it
        s.facts.setdefault("notes", []).append(f"3-byte APDU not sent by the link: {e}")


def malformed_export(s: Session) -> None:
    """§3.1: EXPORT with data that is no CBOR map is 6A80."""
    s.expect(
        "EXPORT with bytes that are no CBOR",
        (proto.SW_WRONG_DATA,),
        proto.CLA_PROP,
        proto.INS_EXPORT,
        data=b"\xff\xff",
    )


def bad_ack(s: Session) -> None:
    """§2.7: an ACK that is no envelope is 6A80 (and prunes nothing); one signed by nobody is
    6988."""
    s.expect(
        "ACK with bytes that are no envelope",
        (proto.SW_WRONG_DATA,),
        proto.CLA_PROP,
        proto.INS_ACK,
        data=b"\x01",
    )
    dev = s.facts["id"]
    fake = proto.seal(
        proto.TAG_ACK,
        {proto.ACK_DEVICE: dev, proto.ACK_UPTO: 0, proto.ACK_TIME: 0, proto.ACK_DIGEST: bytes(32)},
        os.urandom(32),
    )
    s.expect(
        "ACK signed by an unknown key",
        (proto.SW_BAD_SIGNATURE,),
        proto.CLA_PROP,
        proto.INS_ACK,
        data=fake,
    )


# ---- the card --------------------------------------------------------------------------------
def card_info(s: Session) -> None:
    """§3.2 INFO: version 2, flags, and on a personalised card id, certificate, counter."""
    info = s.select()
    if info.get(proto.INFO_VERSION) != proto.VERSION:
        raise Failed(f"INFO field 0 must be {proto.VERSION}, got {info.get(proto.INFO_VERSION)!r}")
    flags = _uint(info, proto.INFO_FLAGS, "INFO")
    if flags & proto.FLAG_BLANK:
        raise Skipped("the card is not personalised (INFO flags bit 7): personalise it first")
    wid = _bstr(info, proto.INFO_ID, "INFO", 8)
    cert_env = _bstr(info, proto.INFO_CERT, "INFO (the certificate as a byte string, §1.1)")
    cert = check_cert(cert_env, proto.KIND_WALLET, "INFO certificate")
    if cert[proto.CERT_ID] != wid:
        raise Failed("INFO field 1 is not the certificate's id (§3.2.2: the card adopts it)")
    counter = _uint(info, proto.INFO_COUNTER, "INFO")
    if counter and proto.INFO_LAST_CHALLENGE in info:
        _bstr(info, proto.INFO_LAST_CHALLENGE, "INFO", 16)
    if proto.INFO_OFFLINE_LEFT in info:
        _uint(info, proto.INFO_OFFLINE_LEFT, "INFO")
    limits = dict(proto.DEFAULT_LIMITS)
    limits.update({k: v for k, v in cert[proto.CERT_LIMITS].items() if k in limits})
    s.facts.update(
        id=wid,
        key=cert[proto.CERT_KEY],
        counter=counter,
        limits=limits,
        info=info,
        blocked=bool(flags & proto.FLAG_PIN_BLOCKED),
    )
    again = decode_map(s.ok("GET INFO", proto.CLA_PROP, proto.INS_GET_INFO), "GET INFO")
    if again != info:
        raise Failed("GET INFO must answer the INFO of SELECT")


def _pay_req(s: Session, amount: int, challenge: bytes, **extra: Any) -> bytes:
    req = {
        proto.REQ_CHALLENGE: challenge,
        proto.REQ_AMOUNT: amount,
        proto.REQ_PAYEE: PAYEE,
        proto.REQ_TIME: 0,
        proto.REQ_KIND: proto.PAYKIND_POS,
        proto.REQ_PURSE: 0,
    }
    req.update(extra)
    return cbor.encode(req)


def card_pay_refusals(s: Session) -> None:
    """§5.1 PAY checks that refuse without spending: malformed, amount 0, over payment max,
    above no-CVM without a PIN; each with no data and no state change (INFO unchanged)."""
    lim = s.facts["limits"]
    chal = os.urandom(16)
    s.expect(
        "PAY with bytes that are no CBOR map",
        (proto.SW_WRONG_DATA,),
        proto.CLA_PROP,
        proto.INS_PAY,
        data=b"\x01",
    )
    s.expect(
        "PAY with a 15-byte challenge",
        (proto.SW_WRONG_DATA,),
        proto.CLA_PROP,
        proto.INS_PAY,
        data=_pay_req(s, 1, chal[:15]),
    )
    s.expect(
        "PAY of amount 0",
        (proto.SW_WRONG_DATA,),
        proto.CLA_PROP,
        proto.INS_PAY,
        data=_pay_req(s, 0, chal),
    )
    s.expect(
        "PAY above the certificate's payment max",
        (proto.SW_OVER_PAYMENT_MAX,),
        proto.CLA_PROP,
        proto.INS_PAY,
        data=_pay_req(s, lim[proto.LIM_PAYMENT_MAX] + 1, chal),
    )
    no_cvm = lim[proto.LIM_NO_CVM]
    if no_cvm + 1 <= lim[proto.LIM_PAYMENT_MAX]:
        want = (proto.SW_PIN_BLOCKED,) if s.facts["blocked"] else (proto.SW_SECURITY,)
        s.expect(
            "PAY above the no-CVM limit without a PIN",
            want,
            proto.CLA_PROP,
            proto.INS_PAY,
            data=_pay_req(s, no_cvm + 1, chal),
        )
    s.expect(
        "VERIFY PIN of 3 digits (no try spent)",
        (proto.SW_WRONG_DATA, proto.SW_PIN_BLOCKED),
        proto.CLA_ISO,
        proto.INS_VERIFY_PIN,
        0,
        0x80,
        b"123",
    )
    if (
        decode_map(s.ok("GET INFO", proto.CLA_PROP, proto.INS_GET_INFO), "GET INFO")
        != s.facts["info"]
    ):
        raise Failed(
            "a refused PAY or VERIFY PIN changed the card's INFO (§3.1: every error "
            "leaves the state unchanged)"
        )


def card_payment(s: Session) -> None:
    """§2.2, §4.1: a payment of 0.01 is signed by the certificate key with exactly the fields
    asked for, counter INFO + 1 and prev chained; the same PAY again returns the identical
    envelope; the same challenge with another amount is 6985; INFO then shows the new counter and
    the challenge."""
    chal = os.urandom(16)
    req = _pay_req(s, AMOUNT, chal)
    out, sw = s.send(proto.CLA_PROP, proto.INS_PAY, data=req)
    if sw in (proto.SW_FUNDS, proto.SW_OFFLINE_COUNT, proto.SW_OFFLINE_AMOUNT, proto.SW_FULL):
        raise Skipped(f"the card refuses to pay 0.01 ({sw:04X}): load or sync it first")
    if sw != proto.SW_OK:
        raise Failed(f"PAY of 0.01: expected 9000, got {sw:04X}")
    s.facts["paid"] = True  # the card's counter moved, whatever the checks below find
    body_bytes, body, sig = open_env(out, "PAY answer")
    if not ed25519.verify(s.facts["key"], proto.TAG_PAYMENT + body_bytes, sig):
        raise Failed("payment: not signed (tag tapcash/payment/v1) by the certificate key")
    want = {
        proto.PAY_WALLET: s.facts["id"],
        proto.PAY_COUNTER: s.facts["counter"] + 1,
        proto.PAY_AMOUNT: AMOUNT,
        proto.PAY_PAYEE: PAYEE,
        proto.PAY_CHALLENGE: chal,
        proto.PAY_PURSE: 0,
        proto.PAY_TIME: 0,
        proto.PAY_KIND: proto.PAYKIND_POS,
    }
    for k, v in want.items():
        if body.get(k) != v:
            raise Failed(f"payment field {k} must be {v!r}, got {body.get(k)!r}")
    _bstr(body, proto.PAY_PREV, "payment", 32)
    _uint(body, proto.PAY_BALANCE, "payment")
    again, sw = s.send(proto.CLA_PROP, proto.INS_PAY, data=req)
    if sw != proto.SW_OK or again != out:
        raise Failed(
            "the same PAY again must return the identical envelope (§4.1 idempotent "
            f"retry), got SW {sw:04X}" + (" and other bytes" if sw == 0x9000 else "")
        )
    s.expect(
        "the same challenge with another amount",
        (proto.SW_CONDITIONS,),
        proto.CLA_PROP,
        proto.INS_PAY,
        data=_pay_req(s, AMOUNT + 1, chal),
    )
    info = decode_map(s.ok("GET INFO", proto.CLA_PROP, proto.INS_GET_INFO), "GET INFO")
    if info.get(proto.INFO_COUNTER) != s.facts["counter"] + 1:
        raise Failed("INFO field 3 must be the new payment's counter")
    if info.get(proto.INFO_LAST_CHALLENGE) != chal:
        raise Failed("INFO field 4 must be the last payment's challenge (recovery, §4.1)")
    last = s.ok("GET LAST", proto.CLA_PROP, proto.INS_GET_LAST)
    if last != out:
        raise Failed("GET LAST must return the last payment envelope")
    s.facts["payment"] = out


def card_export(s: Session) -> None:
    """§2.8, §3.2.1 EXPORT: records as journaled, the status signed by the card and binding
    them; the payment just made is the last record."""
    records, status = export_all(s, "EXPORT")
    body = check_status(status, s.facts["key"], s.facts["id"], records, "wallet status")
    counter = s.facts["counter"] + (1 if s.facts.get("paid") else 0)
    if _uint(body, proto.ST_COUNTER, "wallet status") != counter:
        raise Failed("wallet status field 2 must be the card's counter")
    if "payment" in s.facts and records:
        rec = decode_map(records[-1][1], "last journal record")
        if rec.get(proto.REC_SIGNED) != s.facts["payment"]:
            raise Failed("the last journal record must be the payment just made (as signed)")


def card_signed_refusals(s: Session) -> None:
    """§3.2.1: objects not signed by a trusted issuer are refused and change nothing: LOAD and
    APPLY under an unknown key 6988; RECEIPT that is no envelope 6A80, one for another wallet
    6984; RECEIVE that is no [payment, certificate] pair 6A80; GET CHALLENGE 16 bytes."""
    wid = s.facts["id"]
    before = decode_map(s.ok("GET INFO", proto.CLA_PROP, proto.INS_GET_INFO), "GET INFO")
    stranger = os.urandom(32)
    voucher = proto.seal(
        proto.TAG_VOUCHER,
        {
            proto.VCH_WALLET: wid,
            proto.VCH_NUMBER: 1,
            proto.VCH_AMOUNT: 1,
            proto.VCH_SOURCE: 1,
            proto.VCH_REF: b"",
            proto.VCH_PURSE: 0,
        },
        stranger,
    )
    s.expect(
        "LOAD of a voucher signed by an unknown key",
        (proto.SW_BAD_SIGNATURE,),
        proto.CLA_PROP,
        proto.INS_LOAD,
        data=voucher,
    )
    update = proto.seal(
        proto.TAG_UPDATE, {proto.UPD_DEVICE: wid, proto.UPD_NUMBER: 10**6}, stranger
    )
    s.expect(
        "APPLY of an update signed by an unknown key",
        (proto.SW_BAD_SIGNATURE,),
        proto.CLA_PROP,
        proto.INS_APPLY,
        data=update,
    )
    s.expect(
        "RECEIPT that is no envelope",
        (proto.SW_WRONG_DATA,),
        proto.CLA_PROP,
        proto.INS_RECEIPT,
        data=b"\x01",
    )
    other = proto.seal(
        proto.TAG_RECEIPT,
        {
            proto.RCPT_POS: PAYEE,
            proto.RCPT_WALLET: b"OTHERWAL",
            proto.RCPT_COUNTER: 1,
            proto.RCPT_AMOUNT: AMOUNT,
            proto.RCPT_PAYMENT_HASH: bytes(32),
            proto.RCPT_SEQ: 1,
            proto.RCPT_TIME: 0,
        },
        stranger,
    )
    s.expect(
        "RECEIPT naming another wallet",
        (proto.SW_DATA_INVALID,),
        proto.CLA_PROP,
        proto.INS_RECEIPT,
        data=other,
    )
    s.expect(
        "RECEIVE that is no [payment, certificate] pair",
        (proto.SW_WRONG_DATA,),
        proto.CLA_PROP,
        proto.INS_RECEIVE,
        data=cbor.encode([1]),
    )
    chal = s.ok("GET CHALLENGE", proto.CLA_ISO, proto.INS_CHALLENGE)
    if len(chal) != 16:
        raise Failed(f"GET CHALLENGE must answer 16 bytes, got {len(chal)}")
    info = decode_map(s.ok("GET INFO", proto.CLA_PROP, proto.INS_GET_INFO), "GET INFO")
    for k in (proto.INFO_COUNTER, proto.INFO_OFFLINE_LEFT, proto.INFO_FLAGS):
        if info.get(k) != before.get(k):
            raise Failed(f"a refused command changed INFO field {k} (§3.1)")


CARD_CHECKS: list[tuple[str, Callable[[Session], None]]] = [
    ("select-info", card_info),
    ("routing", routing),
    ("pay-refusals", card_pay_refusals),
    ("payment", card_payment),
    ("export-status", card_export),
    ("export-malformed", malformed_export),
    ("ack-refusals", bad_ack),
    ("signed-refusals", card_signed_refusals),
]


# ---- the terminal (its serial side, §3.4) --------------------------------------------------------
def pos_info(s: Session) -> None:
    """§3.4 POS INFO: version 2, POS id, a POS certificate of that id with a merchant id."""
    info = decode_map(s.ok("GET INFO", proto.CLA_PROP, proto.INS_GET_INFO), "POS INFO")
    if info.get(proto.INFO_VERSION) != proto.VERSION:
        raise Failed(f"POS INFO field 0 must be {proto.VERSION}")
    flags = _uint(info, proto.INFO_FLAGS, "POS INFO")
    if flags & proto.FLAG_BLANK:
        raise Skipped("the terminal is not personalised (flags bit 7)")
    pid = _bstr(info, proto.INFO_ID, "POS INFO", 8)
    cert = check_cert(_bstr(info, proto.INFO_CERT, "POS INFO"), proto.KIND_POS, "POS certificate")
    if cert[proto.CERT_ID] != pid:
        raise Failed("POS INFO field 1 is not its certificate's id")
    for k in (
        proto.INFO_SEQ,
        proto.INFO_RECORDS,
        proto.INFO_HOT_VERSION,
        proto.INFO_UPDATE,
        proto.INFO_TORN,
    ):
        _uint(info, k, "POS INFO")
    sel = decode_map(s.ok("SELECT", proto.CLA_ISO, proto.INS_SELECT, 4, 0, proto.AID), "SELECT")
    if sel != info:
        raise Failed("SELECT must answer the POS INFO map")
    s.facts.update(id=pid, key=cert[proto.CERT_KEY], info=info)


def pos_export(s: Session) -> None:
    """§3.4 EXPORT: payment records with receipts signed by the POS key, the status binding
    them."""
    records, status = export_all(s, "EXPORT")
    check_status(status, s.facts["key"], s.facts["id"], records, "POS status")
    for seq, raw in records:
        rec = decode_map(raw, f"POS record {seq}")
        if rec.get(proto.REC_TYPE) != proto.RT_PAYMENT:
            raise Failed(f"POS record {seq}: type must be 1 (payment)")
        _bstr(rec, proto.REC_CERT_HASH, f"POS record {seq} (certificate hash)", 32)
        rb, rbody, rsig = open_env(
            _bstr(rec, proto.REC_RECEIPT, f"POS record {seq}"), f"POS record {seq} receipt"
        )
        if not ed25519.verify(s.facts["key"], proto.TAG_RECEIPT + rb, rsig):
            raise Failed(f"POS record {seq}: receipt not signed by the POS key")
        if rbody.get(proto.RCPT_SEQ) != seq:
            raise Failed(f"POS record {seq}: receipt field 5 must be the journal seq")


def pos_apply_refusals(s: Session) -> None:
    """§3.4 APPLY: no envelope 6A80, signed by nobody 6988 (nothing applied)."""
    s.expect(
        "APPLY with bytes that are no envelope",
        (proto.SW_WRONG_DATA,),
        proto.CLA_PROP,
        proto.INS_APPLY,
        data=b"\x01",
    )
    fake = proto.seal(
        proto.TAG_UPDATE, {proto.UPD_DEVICE: s.facts["id"], proto.UPD_NUMBER: 1}, os.urandom(32)
    )
    s.expect(
        "APPLY signed by an unknown key",
        (proto.SW_BAD_SIGNATURE,),
        proto.CLA_PROP,
        proto.INS_APPLY,
        data=fake,
    )
    after = decode_map(s.ok("GET INFO", proto.CLA_PROP, proto.INS_GET_INFO), "POS INFO")
    if after != s.facts["info"]:
        raise Failed(
            "a refused command changed the terminal's INFO (§3.4: every error leaves "
            "the persistent state unchanged)"
        )


POS_CHECKS: list[tuple[str, Callable[[Session], None]]] = [
    ("info", pos_info),
    ("routing", routing),
    ("export-status", pos_export),
    ("export-malformed", malformed_export),
    ("ack-refusals", bad_ack),
    ("apply-refusals", pos_apply_refusals),
]


@dataclass
class Outcome:
    name: str
    status: str  # "pass", "FAIL", "skip", "not run"
    doc: str
    detail: str = ""


def run(checks: list[tuple[str, Callable[[Session], None]]], s: Session) -> list[Outcome]:
    """Every check in order; after a failure or a skip of the first (the device could not be
    identified) the rest are "not run"."""
    out: list[Outcome] = []
    stop = False
    for i, (name, fn) in enumerate(checks):
        text = " ".join((fn.__doc__ or "").split())
        doc = text.split(". ")[0].rstrip(".") + "."
        if stop:
            out.append(Outcome(name, "not run", doc))
            continue
        try:
            fn(s)
            out.append(Outcome(name, "pass", doc))
        except Skipped as e:
            out.append(Outcome(name, "skip", doc, str(e)))
            stop = i == 0
        except Failed as e:
            out.append(Outcome(name, "FAIL", doc, str(e)))
            stop = i == 0
    return out
