"""A fraud case's two proofs, decoded and judged again from the signed bytes alone.

The judge of the console's fraud page and of `tapcash ledger fraud show` (neither imports the
other) does not repeat the ledger's label: it checks the wallet's certificate against the
issuer key, both envelopes' signatures under the certified key (PyNaCl), and then the property
the case kind claims (docs/LEDGER.md "Fraud"), from the two bodies:

* `counter_conflict`: two different bodies for the same (wallet, counter);
* `fork`: two different bodies naming the same `prev`;
* `chain_break`: body b follows a (counter + 1) but its `prev` is not SHA-256(body a), or counter
  1 whose `prev` is not 32 zero bytes;
* `rollback`: two signed statuses and the chain evidence (chain.verify_rollback);
* `overspend`, `balance`, `purse_*`: the signatures prove the card signed the body; the case
  itself rests on the books (the wallet's vouchers, the programme's rule), which the page says.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import cbor2
from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey

from tapcash.firmware.core import proto

from . import chain

ZERO32 = bytes(32)

PAY_FIELDS = [
    (proto.PAY_WALLET, "wallet"), (proto.PAY_COUNTER, "counter"), (proto.PAY_AMOUNT, "amount"),
    (proto.PAY_PAYEE, "payee"), (proto.PAY_KIND, "kind"), (proto.PAY_TIME, "time"),
    (proto.PAY_CHALLENGE, "challenge"), (proto.PAY_PREV, "prev"), (proto.PAY_PURSE, "purse"),
    (proto.PAY_BALANCE, "balance"), (proto.PAY_PROGRAM, "programme"),
    (proto.PAY_EARMARKED, "earmarked"), (proto.PAY_PURSE_BALANCE, "purse balance"),
]
STATUS_FIELDS = [
    (proto.ST_DEVICE, "device"), (proto.ST_SEQ, "journal seq"), (proto.ST_COUNTER, "counter"),
    (proto.ST_BALANCE, "balance"), (proto.ST_PREV, "chain head"), (proto.ST_PENDING, "pending"),
    (proto.ST_LOADS, "vouchers applied"), (proto.ST_DIGEST, "journal digest"),
    (proto.ST_PURSES, "purses"),
]
BOOKS_KINDS = {
    "overspend": "the wallet's account could not cover this payment: judged against the "
                 "issuer-signed vouchers the ledger holds for it",
    "balance": "the balance the card signed is no count of its vouchers minus what it spent: "
               "judged against the issuer-signed vouchers",
}


@dataclass
class Proof:
    """One envelope: its fields, body hash and whether its signature is the certified key's."""

    label: str
    fields: list[tuple[str, str]] = field(default_factory=list)
    body: dict[Any, Any] = field(default_factory=dict)
    body_bytes: bytes = b""
    hash: str = ""
    signature_ok: bool = False
    error: str = ""


@dataclass
class Verdict:
    proven: bool
    summary: str
    checks: list[tuple[str, bool]]


def _show(value: Any) -> str:
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, list):
        return "[" + ", ".join(_show(v) for v in value) + "]"
    return str(value)


def open_proof(label: str, env: bytes, tag: bytes, key: bytes | None,
               names: list[tuple[int, str]]) -> Proof:
    p = Proof(label)
    try:
        body_bytes, sig = cbor2.loads(env)
        body = cbor2.loads(body_bytes)
        if not isinstance(body, dict) or not isinstance(sig, bytes):
            raise ValueError("not an envelope")
    except (ValueError, TypeError, cbor2.CBORDecodeError) as e:
        p.error = f"undecodable envelope: {e}"
        return p
    p.body, p.body_bytes = body, body_bytes
    p.hash = hashlib.sha256(body_bytes).hexdigest()
    known = {k for k, _ in names}
    p.fields = [(n, _show(body[k])) for k, n in names if k in body]
    p.fields += [(f"field {k}", _show(v)) for k, v in sorted(body.items(), key=str)
                 if k not in known]
    if key is not None:
        try:
            VerifyKey(key).verify(tag + body_bytes, sig)
            p.signature_ok = True
        except (BadSignatureError, ValueError, TypeError):
            p.signature_ok = False
    return p


def certified_key(cert: bytes, issuer_pk: bytes, wallet: bytes) -> tuple[bytes | None, str]:
    """The device key its certificate names, when the issuer signed that certificate for this
    device id; else (None, why)."""
    try:
        body = proto.verify_cert(cert, {proto.key_id(issuer_pk): issuer_pk},
                                 cbor2.loads(cbor2.loads(cert)[0]).get(proto.CERT_KIND))
    except Exception as e:  # ApduError or a decode error: the certificate is not valid
        return None, f"certificate not valid under the issuer key ({e!r})"
    if body.get(proto.CERT_ID) != wallet:
        return None, "certificate is for another device"
    return bytes(body[proto.CERT_KEY]), ""


def judge(case: dict[str, Any], cert: bytes, issuer_pk: bytes) -> tuple[Proof, Proof, Verdict]:
    """Decode and judge one fraud case row (raw bytes: proof_a, proof_b, evidence)."""
    wallet: bytes = case["wallet"]
    kind: str = case["kind"]
    key, why = certified_key(cert, issuer_pk, wallet)
    checks: list[tuple[str, bool]] = [("wallet certificate signed by the issuer", key is not None)]
    if kind == "rollback":
        a = open_proof("status a (lower seq)", case["proof_a"], proto.TAG_STATUS, key,
                       STATUS_FIELDS)
        b = open_proof("status b (higher seq)", case["proof_b"], proto.TAG_STATUS, key,
                       STATUS_FIELDS)
    else:
        a = open_proof("payment a", case["proof_a"], proto.TAG_PAYMENT, key, PAY_FIELDS)
        b = open_proof("payment b", case["proof_b"], proto.TAG_PAYMENT, key, PAY_FIELDS)
    checks += [("signature a by the certified key", a.signature_ok),
               ("signature b by the certified key", b.signature_ok)]
    if kind != "rollback":
        checks.append(("both bodies name this wallet as payer",
                       a.body.get(proto.PAY_WALLET) == wallet
                       and b.body.get(proto.PAY_WALLET) == wallet))
    signed = all(ok for _, ok in checks)
    claim, books = _claim(kind, case, a, b, key)
    if claim is not None:
        checks.append(claim)
    proven = signed and (claim is None or claim[1])
    if not signed:
        summary = "NOT PROVEN: " + (why or "a signature does not verify under the certified key")
    elif books is not None:
        summary = f"signed by the card; {books}"
    elif proven:
        summary = f"PROVEN from the signed bodies: {claim[0] if claim else kind}"
    else:
        summary = f"NOT PROVEN: the bodies do not show {claim[0] if claim else kind}"
    return a, b, Verdict(proven, summary, checks)


def _claim(kind: str, case: dict[str, Any], a: Proof, b: Proof,
           key: bytes | None) -> tuple[tuple[str, bool] | None, str | None]:
    """(the kind's own check, or None), (the books-based explanation, or None)."""
    ab, bb = a.body, b.body
    if kind == "counter_conflict":
        return ("two different bodies for one counter",
                ab.get(proto.PAY_COUNTER) == bb.get(proto.PAY_COUNTER) == case["counter"]
                and a.body_bytes != b.body_bytes), None
    if kind == "fork":
        return ("two different bodies naming the same prev",
                ab.get(proto.PAY_PREV) == bb.get(proto.PAY_PREV)
                and a.body_bytes != b.body_bytes), None
    if kind == "chain_break":
        if a.body_bytes == b.body_bytes:
            return ("counter 1 whose prev is not 32 zero bytes",
                    bb.get(proto.PAY_COUNTER) == 1 and bb.get(proto.PAY_PREV) != ZERO32), None
        ca, cb = ab.get(proto.PAY_COUNTER), bb.get(proto.PAY_COUNTER)
        return ("b follows a but its prev is not SHA-256(body a)",
                isinstance(ca, int) and cb == ca + 1
                and bb.get(proto.PAY_PREV) != hashlib.sha256(a.body_bytes).digest()), None
    if kind == "rollback":
        ok = key is not None and case.get("evidence") is not None and chain.verify_rollback(
            key, case["proof_a"], case["proof_b"], case["evidence"])
        return ("two device-signed statuses that no single honest journal explains "
                "(chain evidence)", bool(ok)), None
    if kind in BOOKS_KINDS:
        return None, BOOKS_KINDS[kind]
    if kind.startswith("purse_"):
        return None, (f"earmarked value its programme's rule does not allow ({kind}): judged "
                      "against the programme's rule")
    return None, f"case kind {kind}: judged by the ledger's rules"
