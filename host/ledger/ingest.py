"""Ingest one batch of a device's exported journal: verify, dedup, detect fraud, post, ack.

Two phases. `prepare` decodes and verifies every signature outside any transaction (the CPU
work, parallel across workers). `apply` then runs as ONE transaction: the batch is stored and
posted whole or not at all, so a ledger killed mid-ingest keeps nothing of it.

Reconciliation rules (docs/LEDGER.md has the prose):

* A payment is identified by (wallet, counter). The same body bytes again is a replay and
  changes nothing. Another body for a stored (wallet, counter) is a `counter_conflict`; a new
  body naming the same `prev` as a stored payment of another counter is a `fork`; two stored
  neighbours c, c+1 where c+1's prev is not SHA-256(body c) is a `chain_break`. Each is a fraud
  case holding both wallet-signed envelopes; the wallet is revoked and a new hot list signed.
* A payment is posted once, from whichever journal brings it first (POS, payer, or receiver).
  It is credited to the payee (merchant of the POS, or the receiver's staged account) when it
  is within the rules: payee registered, amount <= the payer's payment max, counter <= the
  highest synced counter the ledger issued the payer + its offline count limit, main purse,
  and not signed after the payer's revocation + the hot-list max age (no rule-abiding POS could
  take it).
  The debit comes from the payer's wallet account; what the wallet account cannot cover (only
  possible with a cloned or rolled-back card) comes from issuer:loss and is the fraud loss.
* A transfer received offline is released when the receiver's own journal shows it: the staged
  value moves to the receiver's wallet account and the receiver gets a voucher of source 2.
"""

from __future__ import annotations

import binascii
import os
import time
from binascii import a2b_base64
from dataclasses import dataclass, field
from typing import Any

from tapcash.firmware.core import ed25519, proto
from tapcash.firmware.core.runtime import sha256

from . import chain, programs
from . import postings as P
from .codec import (
    MONEY_MAX,
    b64d,
    b64e,
    decode_cbor,
    env_bytes,
    field_bytes,
    field_int,
    flat_map,
    open_env,
    payment_record,
    split_envelope,
)
from .db import Tx
from .errors import LedgerError
from .service import DEVICE_COLS, Ledger, device_dict, get_device, need_device
from .verify import MIN_INLINE, Pending, first_bad

ZERO32 = bytes(32)
PAYMENT_COLUMNS = ("wallet", "counter", "hash", "prev", "envelope", "amount", "payee", "kind",
                   "time", "status", "credited", "via", "at")
MAX_RECORDS = 20000  # per batch; the device exports far fewer
FAULT_PAUSE_ENV = "TAPCASH_LEDGER_FAULT_PAUSE"  # test hook: see apply()
AUDIT_CHUNK = 256  # payments read at a time by the balance audit of a wallet's chain


def _verify(pk: bytes, tag: bytes, body_bytes: bytes, sig: bytes) -> bool:
    return ed25519.verify(pk, tag + body_bytes, sig)  # PyNaCl on CPython


@dataclass(slots=True)
class Pay:
    """One wallet-signed payment (or transfer) found in a journal."""

    wallet: bytes
    counter: int
    amount: int
    payee: bytes
    kind: int
    prev: bytes
    purse: int
    time: int
    hash: bytes
    envelope: bytes
    via: str  # "pos", "payer" or "receiver": the journal that brought it
    program: bytes | None = None  # earmarked part: the programme of the purse that paid it
    earmarked: int = 0  # earmarked part: the amount (the main purse paid the rest)
    balance: int = -1  # signed balance field (8); -1 when absent or not a uint
    proven_time: int = 0  # POS-signed receipt time (POS journal only); 0 = not proven


@dataclass(slots=True)
class Batch:
    device: dict[str, Any]
    seqs: list[int]
    status_env: bytes
    status: dict
    pays: list[Pay] = field(default_factory=list)
    receipts: list[tuple[bytes, int, bytes, int, bytes, bytes]] = field(default_factory=list)
    transfers_in: list[Pay] = field(default_factory=list)
    loads: list[int] = field(default_factory=list)
    rhashes: dict[int, bytes] = field(default_factory=dict)  # seq -> SHA-256(record bytes)
    # records kept as evidence instead of refusing the batch: (seq, record, type, reason)
    set_aside: list[tuple[int, bytes, int | None, str]] = field(default_factory=list)
    # signatures being checked in helper processes, and what each one is (verify.py)
    pending: tuple[Pending, list[str]] | None = None
    # (payments, set aside) of the same batch stored and acked whole before (prepare's digest)
    acked: tuple[int, int] | None = None


def signatures_ok(pending: tuple[Pending, list[str]] | None) -> None:
    """Wait for signatures checked elsewhere: the 400 of the first bad one, as inline."""
    if pending is None:
        return
    bad = pending[0].bad()
    if bad >= 0:
        raise LedgerError(400, f"{pending[1][bad]}: bad signature")


def _balance_field(body: dict) -> int:
    """The signed balance field, or -1 when it is missing or not a uint (never a 400: a body
    with a bad balance is evidence against its signer, not a reason to refuse a batch)."""
    v = body.get(proto.PAY_BALANCE)
    if not isinstance(v, int) or isinstance(v, bool) or v < 0:
        return -1
    return v


def _fast_payment(body: dict, body_bytes: bytes, env: bytes, via: str) -> Pay | None:
    """The Pay of a body read by codec.flat_map (only uints and byte strings) whose fields
    all pass parse_payment's checks; None otherwise (parse_payment then words the error)."""
    g = body.get
    wallet, counter, amount, payee = g(proto.PAY_WALLET), g(proto.PAY_COUNTER), \
        g(proto.PAY_AMOUNT), g(proto.PAY_PAYEE)
    challenge, prev, kind = g(proto.PAY_CHALLENGE), g(proto.PAY_PREV), g(proto.PAY_KIND)
    purse, ptime = g(proto.PAY_PURSE, 0), g(proto.PAY_TIME, 0)
    if not (type(wallet) is bytes and len(wallet) == 8 and type(payee) is bytes
            and len(payee) == 8 and type(prev) is bytes and len(prev) == 32
            and type(challenge) is bytes and len(challenge) == 16
            and type(counter) is int and 1 <= counter <= MONEY_MAX
            and type(amount) is int and 1 <= amount <= MONEY_MAX
            and (kind == 1 or kind == 2) and type(kind) is int
            and type(purse) is int and purse <= MONEY_MAX
            and type(ptime) is int and ptime <= MONEY_MAX
            and proto.PAY_PROGRAM not in body and not purse):
        return None
    bal = g(proto.PAY_BALANCE)
    return Pay(wallet, counter, amount, payee, kind, prev, 0, ptime, sha256(body_bytes).digest(),
               env, via, None, 0, bal if type(bal) is int else -1)


def parse_payment(env: bytes, what: str, via: str) -> tuple[Pay, bytes, bytes]:
    parts = split_envelope(env)
    if parts is not None:
        fbody = flat_map(parts[0])
        if fbody is not None:
            fast = _fast_payment(fbody, parts[0], env, via)
            if fast is not None:
                return fast, parts[0], parts[1]
    body_bytes, body, sig = open_env(env, what)
    pay = Pay(
        wallet=field_bytes(body, proto.PAY_WALLET, what, 8),
        counter=field_int(body, proto.PAY_COUNTER, what, 1),
        amount=field_int(body, proto.PAY_AMOUNT, what, 1),
        payee=field_bytes(body, proto.PAY_PAYEE, what, 8),
        kind=field_int(body, proto.PAY_KIND, what, 1, 2),
        prev=field_bytes(body, proto.PAY_PREV, what, 32),
        purse=field_int(body, proto.PAY_PURSE, what, 0) if proto.PAY_PURSE in body else 0,
        time=field_int(body, proto.PAY_TIME, what, 0) if proto.PAY_TIME in body else 0,
        hash=sha256(body_bytes).digest(),
        envelope=env,
        via=via,
        balance=_balance_field(body),
    )
    field_bytes(body, proto.PAY_CHALLENGE, what, 16)
    if proto.PAY_PROGRAM in body or pay.purse:
        # Earmarked part (PROTOCOL.md §2.2). Malformed fields do not reject the batch (the
        # payment is signed: it is kept and refused as "unknown purse", programs.judge).
        prog, earmarked = body.get(proto.PAY_PROGRAM), body.get(proto.PAY_EARMARKED)
        if (isinstance(prog, bytes) and len(prog) == 8 and type(earmarked) is int
                and 1 <= earmarked <= pay.amount):
            pay.program, pay.earmarked = prog, earmarked
    return pay, body_bytes, sig


def _first(x: tuple[int, dict]) -> int:
    return x[0]


def prepare(ledger: Ledger, device_id: bytes, records: list[Any], status_b64: str,
            deferred: list[tuple[Pending, list[str]]] | None = None,
            status_key: bytes | None = None, digest: bytes | None = None) -> Batch:
    """Decode and verify a batch. Raises LedgerError (4xx) on anything malformed or unsigned.
    With a verifier (Ledger.verifier) the payment and receipt signatures are only sent off:
    `batch.pending` (also appended to `deferred`) must be settled by `signatures_ok`.
    `status_key`: the device key the caller already checked this status's signature with
    (auth.authenticate_device); while it is still the device's key, it is not checked again.
    `digest` (batch_digest): when the ledger stored and acked these very bytes whole, nothing
    is decoded: the Batch returned only has `acked` (ingest answers it with `_again`).

    Everything read before the write transaction is read in ONE read transaction (one
    snapshot): whether the batch was acked whole, the device, the signers' keys the cache
    lacks, the envelopes already stored, the certificates POS records name. Each read
    transaction cost a server ~160 us of CPU (and PostgreSQL about as much) per batch. The
    signatures are checked after it (no snapshot or pooled connection held meanwhile)."""
    if not isinstance(records, list) or len(records) > MAX_RECORDS:
        raise LedgerError(400, f"records: a list of at most {MAX_RECORDS}")
    with ledger.db.transaction(write=False) as tx:
        if digest is not None:
            acked = _acked_whole(tx, device_id, digest)
            if acked is not None:
                return Batch(device={"id": device_id}, seqs=[], status_env=b"", status={},
                             acked=acked)
        batch, checks, soft, cert_named, seen = _decode(ledger, tx, device_id, records,
                                                        status_b64, status_key)
        signers = {c[0] for c in checks} | {c[1] for c in soft}
        keys = ledger.device_keys(tx, signers)  # from the cache when it holds them all
        stored = _stored_envelopes(tx, batch.pays)
        known = (_cert_hashes(tx, {w for _s, w, _h in cert_named}) if cert_named
                 else {})
    for seq, pos, rb, rsig, row in soft:
        k = keys.get(pos)
        if k is None or k[0] != proto.KIND_POS:
            reason = f"receipt from {pos.hex()}, not a registered POS"
        elif not _verify(k[1], proto.TAG_RECEIPT, rb, rsig):
            reason = "receipt: bad signature (not signed by the POS it names)"
        else:
            batch.receipts.append(row)
            continue
        batch.set_aside.append((seq, seen[seq], proto.RT_RECEIPT, reason))
    todo: list[tuple[bytes, bytes, bytes]] = []
    whats: list[str] = []
    for signer, tag, body_bytes, sig, what, env in checks:
        k = keys.get(signer)
        if k is None:
            raise LedgerError(422, f"{what}: unknown device {signer.hex()} (register it first)")
        if stored and env and (signer, env) in stored:
            continue  # these exact signed bytes are stored: verified when they were stored
        todo.append((k[1], tag + body_bytes, sig))
        whats.append(what)
    if ledger.verifier is not None and len(todo) >= MIN_INLINE:
        # Checked in helper processes while the batch's transaction runs (host/ledger/verify.py)
        batch.pending = (ledger.verifier.start(todo), whats)
        if deferred is not None:
            deferred.append(batch.pending)
    else:
        bad = first_bad(todo)
        if bad >= 0:
            raise LedgerError(400, f"{whats[bad]}: bad signature")
    for pay in batch.pays:
        if keys[pay.wallet][0] != proto.KIND_WALLET:
            raise LedgerError(400, f"payment signer {pay.wallet.hex()} is not a wallet")
    if cert_named:
        for seq, wallet, h in cert_named:
            if h not in known.get(wallet, ()):
                # The payment stands (the wallet signed it, under its registered key); the POS
                # judged it under a certificate the ledger never registered or renewed for
                # that wallet: kept as evidence for the operator, never a blocked sync.
                batch.set_aside.append((seq, seen[seq], proto.RT_PAYMENT,
                                        f"certificate hash {h.hex()[:16]}... names no "
                                        f"certificate of wallet {wallet.hex()} (payment kept)"))
    return batch


def _decode(ledger: Ledger, tx: Tx, device_id: bytes, records: list[Any], status_b64: str,
            status_key: bytes | None
            ) -> tuple[Batch, list[tuple[bytes, bytes, bytes, bytes, str, bytes]],
                       list[tuple[int, bytes, bytes, bytes, tuple]],
                       list[tuple[int, bytes, bytes]], dict[int, bytes]]:
    """prepare's decoding, in its read transaction: the batch, the signatures to check, the
    wallet receipts to check softly, the certificate hashes POS records name, seq -> bytes."""
    dev = need_device(tx, device_id)
    status_env = b64d(status_b64, "status")
    sb, status, ssig = open_env(status_env, "status")
    if (status_key is None or bytes(dev["pubkey"]) != status_key) and not _verify(
            dev["pubkey"], proto.TAG_STATUS, sb, ssig):
        raise LedgerError(400, "status: bad signature (not signed by this device)")
    if status.get(proto.ST_DEVICE) != device_id:
        raise LedgerError(400, "status: for another device")
    last_seq = field_int(status, proto.ST_SEQ, "status", 0)
    field_bytes(status, proto.ST_DIGEST, "status", 32)

    is_pos = dev["kind"] == proto.KIND_POS
    batch = Batch(device=dev, seqs=[], status_env=status_env, status=status)
    decoded: list[tuple[int, dict | tuple[Pay, bytes, bytes]]] = []
    seen: dict[int, bytes] = {}
    rhashes = batch.rhashes
    # A wallet's payment records in the firmware's own layout are read whole, once, straight
    # into a Pay (codec.payment_record); anything else is decoded the general way below.
    whole = None if is_pos else payment_record
    for i, item in enumerate(records):
        if type(item) is not dict:
            raise LedgerError(400, f"records[{i}]: expected {{seq, record}}")
        seq = item.get("seq")
        if type(seq) is not int or not 1 <= seq <= last_seq:
            raise LedgerError(400, f"records[{i}]: seq must be in [1, status seq {last_seq}]")
        text = item.get("record")
        try:
            raw = a2b_base64(text, strict_mode=True)  # type: ignore[arg-type]
        except (binascii.Error, ValueError, TypeError):
            raw = b64d(text, f"records[{i}]")  # its error, worded
        if seq in seen:
            if seen[seq] != raw:
                raise LedgerError(400, f"records[{i}]: seq {seq} twice with different content")
            continue
        seen[seq] = raw
        rhashes[seq] = sha256(raw).digest()
        if whole is not None:
            got = whole(raw)
            if got is not None:
                env, pb, psig, f = got
                # parse_payment's bounds (the pattern fixed the rest: sizes, kind 1|2, purse 0)
                if 1 <= f[1] <= MONEY_MAX and 1 <= f[2] <= MONEY_MAX and f[6] <= MONEY_MAX:
                    decoded.append((seq, (Pay(f[0], f[1], f[2], f[3], f[8], f[5], 0, f[6],
                                              sha256(pb).digest(), env, "payer", None, 0, f[7]),
                                          pb, psig)))
                    continue
        rec = flat_map(raw)  # the shape of every record but a transfer's (its certificate)
        if rec is None:
            rec = decode_cbor(raw, f"record {seq}")
            if not isinstance(rec, dict):
                raise LedgerError(400, f"record {seq}: not a map")
        decoded.append((seq, rec))
    decoded.sort(key=_first)
    batch.seqs = [s for s, _ in decoded]

    # Signatures to check, grouped by signer: (signer id, tag, body bytes, sig, what).
    checks: list[tuple[bytes, bytes, bytes, bytes, str, bytes]] = []
    # Wallet receipts: the card cannot check a POS signature, so a rogue reader can put
    # anything there. A bad one is set aside, never a reason to refuse the batch.
    soft: list[tuple[int, bytes, bytes, bytes, tuple]] = []
    # POS records: (seq, payer, hash of the certificate the POS accepted the payment under)
    cert_named: list[tuple[int, bytes, bytes]] = []
    for seq, rec in decoded:
        if type(rec) is tuple:  # a wallet's own payment, read whole (as RT_PAYMENT below)
            pay, pb, psig = rec
            if pay.wallet != device_id:
                raise LedgerError(400, f"record {seq}: payment signed by another wallet")
            checks.append((pay.wallet, proto.TAG_PAYMENT, pb, psig, f"record {seq} payment",
                           pay.envelope))
            batch.pays.append(pay)
            continue
        what = f"record {seq}"
        rtype = rec.get(proto.REC_TYPE)
        if rtype == proto.RT_PAYMENT:
            env = env_bytes(rec.get(proto.REC_SIGNED), what + " payment")
            pay, pb, psig = parse_payment(env, what + " payment", "pos" if is_pos else "payer")
            checks.append((pay.wallet, proto.TAG_PAYMENT, pb, psig, what + " payment", env))
            if is_pos:
                if pay.payee != device_id or pay.kind != proto.PAYKIND_POS:
                    raise LedgerError(400, f"{what}: payment not made to this POS")
                renv = env_bytes(rec.get(proto.REC_RECEIPT), what + " receipt")
                rb, rbody, rsig = open_env(renv, what + " receipt")
                rwhat = what + " receipt"
                # Strict types (bool is not int): field_int refuses True where 1 is meant.
                if (field_bytes(rbody, proto.RCPT_POS, rwhat, 8) != device_id
                        or field_bytes(rbody, proto.RCPT_WALLET, rwhat, 8) != pay.wallet
                        or field_int(rbody, proto.RCPT_COUNTER, rwhat, 1) != pay.counter
                        or field_int(rbody, proto.RCPT_AMOUNT, rwhat, 1) != pay.amount
                        or field_bytes(rbody, proto.RCPT_PAYMENT_HASH, rwhat, 32) != pay.hash):
                    raise LedgerError(400, f"{what}: receipt does not match the payment")
                rseq = field_int(rbody, proto.RCPT_SEQ, rwhat, 0)
                # The POS's own clock, under the POS's signature: the only time of a payment
                # the ledger can trust (the body's time is whatever the payer signed).
                if proto.RCPT_TIME in rbody:
                    pay.proven_time = field_int(rbody, proto.RCPT_TIME, rwhat, 0)
                checks.append((device_id, proto.TAG_RECEIPT, rb, rsig, what + " receipt", b""))
                batch.receipts.append((device_id, rseq, pay.wallet, pay.counter, pay.hash, renv))
                cert_hash = rec.get(proto.REC_CERT_HASH)
                if not isinstance(cert_hash, bytes) or len(cert_hash) != 32:
                    raise LedgerError(400, f"{what}: certificate hash (field 4) missing or not "
                                      "32 bytes")
                cert_named.append((seq, pay.wallet, cert_hash))
            elif pay.wallet != device_id:
                raise LedgerError(400, f"{what}: payment signed by another wallet")
            batch.pays.append(pay)
        elif is_pos:
            raise LedgerError(400, f"{what}: record type {rtype!r} not valid in a POS journal")
        elif rtype == proto.RT_TRANSFER_IN:
            env = env_bytes(rec.get(proto.REC_SIGNED), what + " transfer")
            pay, pb, psig = parse_payment(env, what + " transfer", "receiver")
            if pay.payee != device_id or pay.kind != proto.PAYKIND_TRANSFER:
                raise LedgerError(400, f"{what}: transfer not made to this wallet")
            checks.append((pay.wallet, proto.TAG_PAYMENT, pb, psig, what + " transfer", env))
            batch.pays.append(pay)
            batch.transfers_in.append(pay)
        elif rtype == proto.RT_LOAD:
            env = env_bytes(rec.get(proto.REC_SIGNED), what + " voucher")
            vb, vbody, vsig = open_env(env, what + " voucher")
            if not _verify(ledger.issuer.public_key, proto.TAG_VOUCHER, vb, vsig):
                raise LedgerError(400, f"{what} voucher: bad signature")
            if vbody.get(proto.VCH_WALLET) != device_id:
                raise LedgerError(400, f"{what}: voucher for another wallet")
            batch.loads.append(field_int(vbody, proto.VCH_NUMBER, what + " voucher", 1))
        elif rtype == proto.RT_RECEIPT:
            try:
                renv = env_bytes(rec.get(proto.REC_RECEIPT), what + " receipt")
                rb, rbody, rsig = open_env(renv, what + " receipt")
                pos = field_bytes(rbody, proto.RCPT_POS, what + " receipt", 8)
                if rbody.get(proto.RCPT_WALLET) != device_id:
                    raise LedgerError(400, f"{what}: receipt for another wallet")
                row = (pos, field_int(rbody, proto.RCPT_SEQ, what + " receipt", 0), device_id,
                       field_int(rbody, proto.RCPT_COUNTER, what + " receipt", 1),
                       field_bytes(rbody, proto.RCPT_PAYMENT_HASH, what + " receipt", 32), renv)
            except LedgerError as e:
                batch.set_aside.append((seq, seen[seq], rtype, str(e.detail)))
                continue
            except Exception as e:  # noqa: BLE001 - whatever a reader put there, never a 500
                batch.set_aside.append((seq, seen[seq], rtype, f"receipt: unreadable ({e})"))
                continue
            soft.append((seq, pos, rb, rsig, row))
        else:
            raise LedgerError(400, f"{what}: unknown record type {rtype!r}")
    return batch, checks, soft, cert_named, seen

def _cert_hashes(tx: Tx, wallets: set[bytes]) -> dict[bytes, set[bytes]]:
    """Body hashes of each wallet's certificates: the registered one and those renewed away."""
    out: dict[bytes, set[bytes]] = {}
    ids = sorted(wallets)
    for i in range(0, len(ids), 500):
        cond, params = tx.in_list("id", ids[i : i + 500])
        for dev, cert in tx.all(f"SELECT id, cert FROM devices WHERE {cond}", params):
            body = proto.open_envelope(bytes(cert))[0]
            out.setdefault(bytes(dev), set()).add(proto.body_hash(body))
        cond, params = tx.in_list("device", ids[i : i + 500])
        for dev, h in tx.all(f"SELECT device, hash FROM cert_hashes WHERE {cond}", params):
            out.setdefault(bytes(dev), set()).add(bytes(h))
    return out


def _stored_envelopes(tx: Tx, pays: list[Pay]) -> set[tuple[bytes, bytes]]:
    """(wallet, envelope) of the batch's payments the ledger already stores byte for byte (a
    payment brought by both the wallet and the POS, a batch sent twice): one range query per
    wallet. Only verified envelopes are ever stored, so these need no signature check."""
    ranges: dict[bytes, list[int]] = {}
    for p in pays:
        r = ranges.setdefault(p.wallet, [p.counter, p.counter])
        r[0] = min(r[0], p.counter)
        r[1] = max(r[1], p.counter)
    out: set[tuple[bytes, bytes]] = set()
    for w, (lo, hi) in ranges.items():
        for (env,) in tx.all("SELECT envelope FROM payments WHERE wallet = ? AND counter "
                             "BETWEEN ? AND ?", (w, lo, hi)):
            out.add((w, bytes(env)))
    return out


# ---- apply -------------------------------------------------------------------------------
_ROW = tuple[int, bytes, bytes, str]  # counter, hash, prev, status
AFTER_REVOCATION = "refused:after revocation"


def _existing(tx: Tx, pays: list[Pay]) -> tuple[dict[tuple[bytes, int], _ROW],
                                                 dict[tuple[bytes, bytes], _ROW]]:
    """Stored payments at each (wallet, counter +-1) and at each (wallet, prev) of the batch."""
    by_counter: dict[tuple[bytes, int], _ROW] = {}
    by_prev: dict[tuple[bytes, bytes], _ROW] = {}
    ranges: dict[bytes, list[int]] = {}
    for p in pays:
        r = ranges.setdefault(p.wallet, [p.counter, p.counter])
        r[0] = min(r[0], p.counter)
        r[1] = max(r[1], p.counter)
    for w, (lo, hi) in ranges.items():
        for c, h, pv, st in tx.all("SELECT counter, hash, prev, status FROM payments "
                                   "WHERE wallet = ? AND counter BETWEEN ? AND ?",
                                   (w, lo - 1, hi + 1)):
            by_counter[(w, int(c))] = (int(c), bytes(h), bytes(pv), str(st))
    # Forks: same prev, other counter. Honest chains make these lookups empty.
    prevs: dict[bytes, set[bytes]] = {}
    for p in pays:
        prevs.setdefault(p.wallet, set()).add(p.prev)
    for w, ps in prevs.items():
        pl = sorted(ps)
        for i in range(0, len(pl), 500):
            cond, params = tx.in_list("prev", pl[i : i + 500])
            for c, h, pv, st in tx.all(f"SELECT counter, hash, prev, status FROM payments "
                                       f"WHERE wallet = ? AND {cond}", [w, *params]):
                by_prev[(w, bytes(pv))] = (int(c), bytes(h), bytes(pv), str(st))
    return by_counter, by_prev


class _Apply:
    def __init__(self, ledger: Ledger, tx: Tx, batch: Batch, digest: bytes | None = None
                 ) -> None:
        self.digest = digest  # batch_digest: recorded when the ack covers the whole batch
        self.ledger = ledger
        self.tx = tx
        self.batch = batch
        self.now = ledger.now()
        self.book = P.Book(tx, self.now)
        self.result: dict[str, Any] = {"accepted": 0, "duplicates": 0, "conflicts": 0,
                                       "refused": 0, "released": 0, "loss": 0,
                                       "set_aside": 0, "rollback": False}
        self.revoked: set[bytes] = set()
        self.rules: dict[tuple[bytes, bytes, int], tuple[str | None, int, int, int]] = {}
        self.devices: dict[bytes, dict[str, Any] | None] = {}
        # (wallet, counter, payee) credited in this batch (rows not yet inserted)
        self.credited_payees: set[tuple[bytes, int, bytes]] = set()
        self.srcs: dict[bytes, str] = {}  # wallet id -> its account's name
        # (wallet, counter, hash) of the payments rows this batch stored refused for their payee
        self.unknown_payee: set[tuple[bytes, int, bytes]] = set()
        # wallet -> counter -> (counter, amount, hash, credited): the payments rows this batch
        # inserted, as the audit and the update read them back (`_chain_rows`, wallet_synced)
        self.inserted: dict[bytes, dict[int, tuple[int, int, bytes, str | None]]] = {}

    def prefetch(self, ids: set[bytes]) -> None:
        """The devices rows of `ids` this batch has not read yet, in one query a chunk (the
        payers and payees of a batch: one query, not one per device)."""
        want = sorted(i for i in ids if i not in self.devices)
        for i in range(0, len(want), 500):
            chunk = want[i : i + 500]
            cond, params = self.tx.in_list("id", chunk)
            for row in self.tx.all(f"SELECT {DEVICE_COLS} FROM devices WHERE {cond}", params):
                d = device_dict(row)
                self.devices[d["id"]] = d
            for dev_id in chunk:
                self.devices.setdefault(dev_id, None)

    def device(self, dev_id: bytes) -> dict[str, Any] | None:
        if dev_id not in self.devices:
            self.devices[dev_id] = get_device(self.tx, dev_id)
        return self.devices[dev_id]

    # -- the rules of the issuer's guarantee
    def credit_account(self, pay: Pay) -> tuple[str | None, str]:
        """(account to credit, status) for a valid wallet-signed payment."""
        key = (pay.wallet, pay.payee, pay.kind)
        rule = self.rules.get(key)
        if rule is None:
            rule = self.rules[key] = self._rule(pay)
        dst, pmax, revoked_at, max_counter = rule
        if dst is None:
            return None, "refused:unknown payee"
        if pay.amount > pmax:
            return None, "refused:over payment max"
        if pay.counter > max_counter:
            return None, "refused:over offline count"
        if revoked_at:
            # The body's time is what the payer signed (0, or anything, with an extracted key);
            # only a POS's signed receipt proves when a payment was taken. A transfer has no
            # such proof (the receiver may collude): nothing new from a revoked payer is
            # credited to a wallet. Bodies the ledger held before the revocation are not new.
            if pay.kind == proto.PAYKIND_TRANSFER:
                return None, AFTER_REVOCATION
            if not pay.proven_time or pay.proven_time > revoked_at + self.ledger.hotlist_max_age_s:
                return None, AFTER_REVOCATION
        if pay.program is not None or pay.purse != 0:
            why = programs.judge(self, pay, self.device(pay.payee))
            if why is not None:
                return None, "refused:" + why
        return dst, "posted"

    def _rule(self, pay: Pay) -> tuple[str | None, int, int, int]:
        """(payee account, payment max, revocation time, highest counter an honest card could
        sign) for a payer, payee and kind."""
        payer = self.device(pay.wallet)
        assert payer is not None
        payee = self.device(pay.payee)
        dst = None
        if pay.kind == proto.PAYKIND_POS:
            if payee is not None and payee["kind"] == proto.KIND_POS:
                dst = P.merchant_acct(payee["merchant"])
        elif payee is not None and payee["kind"] == proto.KIND_WALLET:
            dst = P.staged_acct(pay.payee)
        lim = payer["limits"]
        pmax = lim.get(proto.LIM_PAYMENT_MAX, proto.DEFAULT_LIMITS[proto.LIM_PAYMENT_MAX])
        # An honest card pays counter c only while c - its synced counter <= the offline count
        # limit, and its synced counter is at most the highest the ledger ever issued it (a
        # revoked wallet is issued none: its allowance ends with the revocation).
        max_counter = payer["synced_counter"] + lim.get(
            proto.LIM_OFFLINE_COUNT, proto.DEFAULT_LIMITS[proto.LIM_OFFLINE_COUNT])
        return dst, pmax, (payer["revoked_at"] or 1) if payer["revoked"] else 0, max_counter

    def post(self, pay: Pay, ref: str, evidence: bool = False, run: bool = False
             ) -> tuple[str | None, str, int]:
        """Credit the payee for a payment; returns (credited account, status, loss).

        `run`: a new (wallet, counter) whose `payments` row this batch inserts: when the wallet
        covers it in full, its posting joins the run of the wallet's previous counter to the
        same payee (postings.Book.pay: one posting `W:lo-hi` for the run).

        `evidence`: the body is part of a double-spend proof (another body for its counter, a
        fork, a broken chain). A POS that followed the rules took it in good faith, so a
        merchant is still guaranteed it, once per POS and counter; a receiving wallet is not:
        of conflicting bodies for one (payer, counter) at most one is ever credited to a wallet
        (staged receipt exists for exactly this). A transfer is never guaranteed either: what
        the payer's books cannot cover is refused (and is an overspend case)."""
        dst, status = self.credit_account(pay)
        if dst is not None and evidence:
            if pay.kind == proto.PAYKIND_TRANSFER:
                dst, status = None, "refused:conflict"
            elif self.payee_took(pay):
                dst, status = None, "refused:counter taken twice by one POS"
        src = self.srcs.get(pay.wallet)
        if src is None:
            src = self.srcs[pay.wallet] = P.wallet_acct(pay.wallet)
        if dst is not None and pay.kind == proto.PAYKIND_TRANSFER:
            if self.book.balance(src) + self.staged_spend(pay.wallet) < pay.amount:
                dst, status = None, "refused:overspend"
        if pay.program is not None:
            programs.record(self, pay, self.device(pay.payee), status)
        if dst is None:
            self.result["refused"] += 1
            if status.startswith("refused:purse_"):
                # Earmarked value its rule does not allow: only a tampered card signs that.
                self.fraud(status[8:], pay.wallet, pay.counter, pay.envelope, pay, None, 0)
            return None, status, 0
        self.credited_payees.add((pay.wallet, pay.counter, pay.payee))
        main = pay.amount
        loss = 0
        if pay.program is not None:
            main -= pay.earmarked
            loss = programs.post(self, pay, dst, ref)
            self.result["loss"] += loss
            if not main:
                return dst, status, loss
        have = self.book.balance(src)
        covered = min(have, main)
        loss_main = main - covered
        loss += loss_main
        if covered:
            if run and not loss_main and pay.program is None:
                self.book.pay(src, dst, covered, src[7:], pay.counter)
                return dst, status, loss
            self.book.move(src, dst, covered, "payment", ref)
        if loss_main:
            self.book.move(P.LOSS, dst, loss_main, "guarantee", ref)
            self.result["loss"] += loss_main
        return dst, status, loss

    def staged_spend(self, wallet: bytes) -> int:
        """The payer certificate's re-spendable staged value (limit 6, default 0): an honest card
        may spend that much received value before the ledger has seen (or released) it, so a
        shortfall up to it is guaranteed as before and is no overspend."""
        d = self.device(wallet)
        return int(d["limits"].get(proto.LIM_STAGED_SPEND, 0)) if d is not None else 0

    def payee_took(self, pay: Pay) -> bool:
        """This POS was already credited a body for the payer's counter. A POS takes a counter
        of a wallet once (its last-counter table); the issuer guarantees it once, so a POS that
        forgot a wallet (table eviction) bears that risk itself and the loss stays bounded."""
        if (pay.wallet, pay.counter, pay.payee) in self.credited_payees:
            return True
        row = self.tx.one("SELECT payee, credited FROM payments WHERE wallet = ? AND counter = ?",
                          (pay.wallet, pay.counter))
        if row is not None and bytes(row[0]) == pay.payee and row[1] is not None:
            return True
        for (proof,) in self.tx.all(
                "SELECT proof_b FROM fraud_cases WHERE wallet = ? AND counter = ? AND "
                "kind = 'counter_conflict' AND credited_b IS NOT NULL", (pay.wallet, pay.counter)):
            other, _b, _s = parse_payment(bytes(proof), "stored proof", "")
            if other.payee == pay.payee:
                return True
        return False

    def fraud(self, kind: str, wallet: bytes, counter: int, env_a: bytes, b: Pay,
              credited: str | None, loss: int) -> None:
        self.tx.execute(
            "INSERT INTO fraud_cases (wallet, kind, counter, proof_a, proof_b, hash_b, amount_b, "
            "credited_b, loss, detected_at, via) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (wallet, kind, counter, env_a, b.envelope, b.hash, b.amount, credited, loss,
             self.now, self.batch.device["id"]),
        )
        self.result["conflicts"] += 1
        if self.ledger.revoke_in(self.tx, wallet, f"fraud: {kind} at counter {counter}"):
            self.revoked.add(wallet)
            d = self.device(wallet)
            if d is not None:
                d.update(revoked=True, revoked_at=self.now)
            self.rules.clear()

    def envelope_of(self, wallet: bytes, counter: int) -> bytes:
        return bytes(self.tx.scalar("SELECT envelope FROM payments WHERE wallet = ? AND "
                                    "counter = ?", (wallet, counter)))

    def case_exists(self, wallet: bytes, kind: str, hash_b: bytes) -> bool:
        return self.case_credit(wallet, kind, hash_b) is not None

    def case_credit(self, wallet: bytes, kind: str, hash_b: bytes) -> tuple[str | None] | None:
        """(credited_b,) of the stored case for this body, None when there is none."""
        return self.tx.one("SELECT credited_b FROM fraud_cases WHERE wallet = ? AND kind = ? AND "
                           "hash_b = ?", (wallet, kind, hash_b))

    # -- payments
    def payments(self) -> None:
        # Dedup inside the batch, then process in (wallet, counter) order: deterministic.
        uniq: dict[tuple[bytes, int, bytes], Pay] = {}
        for p in self.batch.pays:
            q = uniq.setdefault((p.wallet, p.counter, p.hash), p)
            if p.proven_time and not q.proven_time:
                uniq[(p.wallet, p.counter, p.hash)] = p  # the copy with the POS's proof
        pays = sorted(uniq.values(), key=lambda p: (p.wallet, p.counter, p.hash))
        if not pays:
            return
        by_counter, by_prev = _existing(self.tx, pays)
        self.prefetch({p.wallet for p in pays} | {p.payee for p in pays})
        # the accounts the batch moves value between, in one query (not one per payee)
        accts = {P.wallet_acct(p.wallet) for p in pays}
        for p in pays:
            d = self.devices.get(p.payee)
            if d is not None and p.kind == proto.PAYKIND_POS and d["kind"] == proto.KIND_POS:
                accts.add(P.merchant_acct(d["merchant"]))
            elif d is not None and p.kind == proto.PAYKIND_TRANSFER:
                accts.add(P.staged_acct(p.payee))
        self.book.preload(accts)
        new_rows = []
        envs: dict[tuple[bytes, int], bytes] = {}

        def env_at(wallet: bytes, counter: int) -> bytes:
            return envs.get((wallet, counter)) or self.envelope_of(wallet, counter)

        hexes: dict[bytes, str] = {}
        for p in pays:
            key = (p.wallet, p.counter)
            whex = hexes.get(p.wallet)
            if whex is None:
                whex = hexes[p.wallet] = p.wallet.hex()
            first_ref = f"{whex}:{p.counter}"
            have = by_counter.get(key)
            if have is not None:
                if have[1] == p.hash:
                    if have[3] == AFTER_REVOCATION and p.proven_time:
                        self.upgrade_payment(p, first_ref)
                    self.result["duplicates"] += 1
                    continue
                # Another body for a stored (wallet, counter): a double spend.
                ref = f"{first_ref}:{p.hash.hex()[:16]}"
                case = self.case_credit(p.wallet, "counter_conflict", p.hash)
                if case is not None:
                    if case[0] is None and p.proven_time:
                        self.upgrade_case(p, ref)
                    self.result["duplicates"] += 1
                    continue
                credited, _status, loss = self.post(p, ref, evidence=True)
                self.fraud("counter_conflict", p.wallet, p.counter, env_at(*key), p, credited,
                           loss)
                continue
            # New (wallet, counter): first the evidence it brings, then the credit.
            cases: list[tuple[str, int, bytes, Pay]] = []  # kind, counter, proof a, body b
            fork = by_prev.get((p.wallet, p.prev))
            if fork is not None and fork[0] != p.counter:
                cases.append(("fork", p.counter, env_at(p.wallet, fork[0]), p))
            if p.counter == 1 and p.prev != ZERO32:
                cases.append(("chain_break", 1, p.envelope, p))
            below = by_counter.get((p.wallet, p.counter - 1))
            if below is not None and below[1] != p.prev:
                cases.append(("chain_break", p.counter, env_at(p.wallet, p.counter - 1), p))
            above = by_counter.get((p.wallet, p.counter + 1))
            if above is not None and above[2] != p.hash:
                b = Pay(p.wallet, p.counter + 1, 0, b"", 0, above[2], 0, 0, above[1],
                        env_at(p.wallet, p.counter + 1), "")
                cases.append(("chain_break", p.counter + 1, p.envelope, b))
            credited, status, loss = self.post(p, first_ref, evidence=bool(cases),
                                               run=not cases)
            new_rows.append((p.wallet, p.counter, p.hash, p.prev, p.envelope, p.amount, p.payee,
                             p.kind, p.time, status, credited, p.via, self.now))
            by_counter[key] = (p.counter, p.hash, p.prev, status)
            envs[key] = p.envelope
            if status == "posted":
                self.result["accepted"] += 1
            elif status == "refused:unknown payee":
                self.unknown_payee.add((p.wallet, p.counter, p.hash))
            if fork is None or fork[0] == p.counter:
                by_prev[(p.wallet, p.prev)] = (p.counter, p.hash, p.prev, status)
            for kind, counter, env_a, b in cases:
                mine = b is p
                self.fraud(kind, p.wallet, counter, env_a, b, credited if mine else None,
                           loss if mine else 0)
            if (not cases and ((loss and loss > self.staged_spend(p.wallet))
                               or status == "refused:overspend")
                    and (payer := self.device(p.wallet)) is not None
                    and not payer["revoked"]):
                # A clean chain spending more than the books hold: only a card whose flash
                # was rewritten (or whose key was extracted) can sign it. (Once the wallet is
                # revoked, its detection is done: later shortfalls are that fraud's loss.)
                prev_env = (env_at(p.wallet, p.counter - 1)
                            if (p.wallet, p.counter - 1) in by_counter else p.envelope)
                self.fraud("overspend", p.wallet, p.counter, prev_env, p, credited, loss)
        self.tx.insert_many("payments", PAYMENT_COLUMNS, new_rows)
        ins = self.inserted
        for r in new_rows:
            got = ins.get(r[0])
            if got is None:
                got = ins[r[0]] = {}
            got[r[1]] = (r[1], r[5], r[2], r[10])

    def upgrade_payment(self, p: Pay, ref: str) -> None:
        """A body refused for want of a time proof, now brought by its POS with a signed
        receipt: judged again by the POS's time."""
        credited, status, loss = self.post(p, ref)
        if credited is not None:
            self.tx.execute("UPDATE payments SET status = ?, credited = ? WHERE wallet = ? AND "
                            "counter = ?", (status, credited, p.wallet, p.counter))
            self.result["accepted"] += 1

    def upgrade_case(self, p: Pay, ref: str) -> None:
        credited, _status, loss = self.post(p, ref, evidence=True)
        if credited is not None:
            self.tx.execute("UPDATE fraud_cases SET credited_b = ?, loss = ? WHERE wallet = ? "
                            "AND kind = 'counter_conflict' AND hash_b = ?",
                            (credited, loss, p.wallet, p.hash))

    # -- the books against the signed balance fields
    def audit_chains(self) -> None:
        """For each payer of the batch that is not revoked: walk its chain from the last synced
        counter while the ledger holds every counter. At counter c the card's cumulative spend
        is known exactly (spent_c), and an honest card signs balance_c = (the vouchers it had
        applied, always a prefix: vouchers apply in order) - spent_c. A body whose balance
        field is negative-or-missing, or for which balance_c + spent_c is not a prefix sum of
        the wallet's main-purse vouchers (with re-spendable staged value: exceeds them all +
        staged), is a `balance` case: the card's books disagree with the ledger's.

        The walk resumes where the last one stopped (`chain_audits`), so a batch reads the
        payments after it, not the whole chain since the last sync (a wallet paying many POS
        offline would make every POS upload re-read all of them)."""
        mem = {(p.wallet, p.counter, p.hash): p for p in self.batch.pays}
        for w in sorted({p.wallet for p in self.batch.pays}):
            d = self.device(w)
            if d is None or d["revoked"]:
                continue
            self.audit_chain(d, mem)

    def _chain_rows(self, w: bytes, after: int) -> list[tuple]:
        """The stored payments of w after counter `after`, in order, up to AUDIT_CHUNK; or,
        when this batch inserted counter after + 1, the run of counters from there it
        inserted (rows the transaction holds: the same values, not read back). The walk
        asks again after either (`_walk`), so whatever follows comes from the database."""
        mine = self.inserted.get(w)
        if mine is not None and after + 1 in mine:
            out = []
            c = after + 1
            while c in mine:
                out.append(mine[c])
                c += 1
            return out
        return self.tx.all("SELECT counter, amount, hash, credited FROM payments WHERE "
                           f"wallet = ? AND counter > ? ORDER BY counter LIMIT {AUDIT_CHUNK}",
                           (w, after))

    def audit_chain(self, d: dict[str, Any], mem: dict[tuple[bytes, int, bytes], Pay]) -> None:
        """Walk one wallet's chain (audit_chains). Where the last walk of this wallet got to
        (`chain_audits`: counter upto, main-purse spent there, the highest balance + spent it
        passed) stands while nothing it was judged by changed: the same synced counter and
        spent, the same kind of check (exact, purses), and the prefix sums only grew (vouchers
        are only ever added) or, with staged value, still cover the highest balance + spent
        passed. Otherwise the walk starts again from the synced counter, as it always did."""
        w = d["id"]
        synced = d["synced_counter"]
        st = self.tx.one("SELECT synced, base, mode, upto, spent, need FROM chain_audits "
                         "WHERE wallet = ?", (w,))
        resume = st is not None and int(st[0]) == synced and int(st[3]) > synced
        rows = self._chain_rows(w, int(st[3]) if resume else synced)
        if not resume and (not rows or int(rows[0][0]) != synced + 1):
            return  # no chain after the synced counter: nothing to check
        exact = not d["limits"].get(proto.LIM_STAGED_SPEND, 0)
        sums = {0}
        total = 0
        purses = False
        for amount, source in self.tx.all("SELECT amount, source FROM vouchers WHERE "
                                          "wallet = ? ORDER BY number", (w,)):
            if int(source) == proto.VSRC_PROGRAM:  # an earmarked purse load, not the main
                purses = True
            else:
                total += int(amount)
            sums.add(total)
        if not exact:
            total += self.book.balance(P.staged_acct(w)) + self.staged_spend(w)
        # Main-purse spend at the synced counter: the synced spent less the earmarked parts.
        c, spent = synced, d["synced_spent"]
        if purses:
            spent -= int(self.tx.scalar("SELECT COALESCE(SUM(earmarked), 0) FROM purse_payments "
                                        "WHERE wallet = ? AND counter <= ?", (w, c), default=0))
        base, mode, need = spent, int(exact) | int(purses) << 1, -1
        if resume and st is not None:
            if (int(st[1]) == base and int(st[2]) == mode
                    and (exact or int(st[5]) <= total)):
                c, spent, need = int(st[3]), int(st[4]), int(st[5])
            else:
                resume = False
                rows = self._chain_rows(w, synced)
        start = c
        c, spent, need = self._walk(d, rows, mem, sums, total, exact, c, spent, need)
        if c != start:
            self.tx.execute(
                "INSERT INTO chain_audits (wallet, synced, base, mode, upto, spent, need) "
                "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (wallet) DO UPDATE SET "
                "synced = excluded.synced, base = excluded.base, mode = excluded.mode, "
                "upto = excluded.upto, spent = excluded.spent, need = excluded.need",
                (w, synced, base, mode, c, spent, need))

    def _walk(self, d: dict[str, Any], rows: list[tuple],
              mem: dict[tuple[bytes, int, bytes], Pay], sums: set[int], total: int, exact: bool,
              c: int, spent: int, need: int) -> tuple[int, int, int]:
        """The walk from counter c (main-purse spent there): (the last counter that passed,
        spent there, the highest balance + spent passed). Stops at a gap, at malformed
        earmarked fields, or at the first body that fails (a `balance` case, once)."""
        w = d["id"]
        while rows:
            for counter, amount, h, credited in rows:
                counter = int(counter)
                if counter != c + 1:
                    return c, spent, need
                p = mem.get((w, counter, bytes(h)))
                if p is None:
                    p = parse_payment(self.envelope_of(w, counter),
                                      f"payment {w.hex()}:{counter}", "")[0]
                if p.purse != 0 and p.program is None:
                    return c, spent, need  # malformed earmarked fields ('unknown purse')
                # the main purse paid the amount less its earmarked part (the purse's own
                # books are programs.py's)
                at = spent + int(amount) - p.earmarked
                bal = p.balance
                if bal >= 0 and ((bal + at) in sums if exact else bal + at <= total):
                    c, spent, need = counter, at, max(need, bal + at)
                    continue
                if self.case_credit(w, "balance", p.hash) is None:
                    env_a = self.envelope_of(w, counter - 1) if counter > 1 else p.envelope
                    self.fraud("balance", w, counter, env_a, p, credited, 0)
                return c, spent, need
            if len(rows) < AUDIT_CHUNK and not self._in_memory(w, c - len(rows)):
                break
            rows = self._chain_rows(w, c)
        return c, spent, need

    def _in_memory(self, w: bytes, before: int) -> bool:
        """The rows the walk just passed came from this batch's own (`_chain_rows`): the
        database may hold more after them."""
        mine = self.inserted.get(w)
        return mine is not None and before + 1 in mine

    def receipts(self) -> None:
        rows = self.batch.receipts
        if not rows:
            return
        sql = ("INSERT INTO receipts (pos, seq, wallet, counter, hash, envelope) "
               "VALUES (?, ?, ?, ?, ?, ?)")
        sql = self.tx.ignoring_conflict(sql, "(pos, seq)")
        self.tx.executemany(sql, rows)

    def releases(self) -> None:
        """Staged transfers shown by the receiver's own journal become spendable (a voucher of
        source 2). Only the body stored first for its (payer, counter) can have been credited
        to the receiver (conflicting bodies never are), so at most one body per (payer,
        counter) is ever released. Once the payer is revoked, only a transfer at or below the
        payer's last synced counter is released: the ledger held that chain before the
        revocation, so the body provably predates it (a body's time proves nothing)."""
        dev = self.batch.device
        for pay in self.batch.transfers_in:
            ref = "transfer:" + pay.hash.hex()
            if self.tx.one("SELECT 1 FROM vouchers WHERE source = ? AND ref = ?",
                           (proto.VSRC_TRANSFER, ref)):
                continue
            credited = self.tx.scalar(
                "SELECT credited FROM payments WHERE wallet = ? AND counter = ? AND hash = ?",
                (pay.wallet, pay.counter, pay.hash))
            if credited != P.staged_acct(dev["id"]):
                continue  # refused or conflicting: nothing staged to release
            payer = need_device(self.tx, pay.wallet)
            if payer["revoked"] and pay.counter > payer["synced_counter"]:
                continue  # not provably signed before the revocation: stays staged (reported)
            d = need_device(self.tx, dev["id"])
            if d["revoked"]:
                continue  # a revoked wallet gets no voucher: the value stays staged (reported)
            self.ledger._issue_voucher(self.tx, self.book, d, P.staged_acct(dev["id"]),
                                       pay.amount, proto.VSRC_TRANSFER, ref, check_cap=False)
            self.result["released"] += 1

    def refunds(self) -> None:
        """A payment to a payee that is no registered device (a rogue reader's PAY below the
        no-CVM limit) is refused and credits nobody; the value never left the payer's account,
        but it left the card. When the payer's own journal shows it, the payer gets it back as
        a voucher (source 1, ref `refund:<payment hash>`), once, with no posting: the account
        already holds it, the card applies it like any top-up. A revoked payer gets none."""
        dev = self.batch.device
        if dev["kind"] != proto.KIND_WALLET:
            return
        mine = [p for p in self.batch.pays if p.via == "payer" and p.wallet == dev["id"]]
        if not mine:
            return
        # The bodies refused for their payee: those this batch stored it knows; for the rest
        # one query (not one per payment).
        fresh = self.inserted.get(dev["id"], {})
        unknown = {(c, h) for w, c, h in self.unknown_payee if w == dev["id"]}
        rest = [p for p in mine if p.counter not in fresh]
        if rest:
            unknown |= {(int(c), bytes(h)) for c, h in self.tx.all(
                "SELECT counter, hash FROM payments WHERE wallet = ? AND counter BETWEEN ? AND ? "
                "AND status = ?", (dev["id"], min(p.counter for p in rest),
                                   max(p.counter for p in rest), "refused:unknown payee"))}
        for pay in mine:
            if (pay.counter, pay.hash) not in unknown:
                continue
            ref = "refund:" + pay.hash.hex()
            if self.tx.one("SELECT 1 FROM vouchers WHERE wallet = ? AND ref = ?",
                           (pay.wallet, ref)):
                continue
            d = need_device(self.tx, dev["id"])
            if d["revoked"]:
                continue
            number = int(d["next_voucher"])
            env = self.ledger.issuer.voucher(d["id"], number, pay.amount,
                                             source=proto.VSRC_TOPUP, ref=ref.encode())
            self.tx.execute("UPDATE devices SET next_voucher = ? WHERE id = ?",
                            (number + 1, d["id"]))
            self.tx.execute("INSERT INTO vouchers (wallet, number, amount, source, ref, envelope, "
                            "at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                            (d["id"], number, pay.amount, proto.VSRC_TOPUP, ref, env, self.now))

    def loads_and_status(self) -> dict[str, Any]:
        dev = need_device(self.tx, self.batch.device["id"])
        status = self.batch.status
        if dev["kind"] == proto.KIND_WALLET:
            applied = max([dev["vouchers_applied"], *self.batch.loads])
            st_loads = status.get(proto.ST_LOADS)
            if isinstance(st_loads, int) and not isinstance(st_loads, bool):
                applied = max(applied, st_loads)
            applied = min(applied, dev["next_voucher"] - 1)
            if applied > dev["vouchers_applied"]:
                self.tx.execute("UPDATE vouchers SET applied = 1 WHERE wallet = ? AND number <= ? "
                                "AND applied = 0", (dev["id"], applied))
                dev["vouchers_applied"] = applied
        self.tx.execute("UPDATE devices SET last_status = ?, vouchers_applied = ? WHERE id = ?",
                        (self.batch.status_env, dev["vouchers_applied"], dev["id"]))
        return dev

    def set_aside(self, dev: dict[str, Any], upto: int) -> None:
        """Keep the bad records the ack covers: those the chain proved the device journaled.
        A bad record the chain does not cover may be the host's own making: not the device's
        evidence, and the device still holds the genuine one."""
        rows = [(dev["id"], seq, raw, rtype, reason[:200], self.now)
                for seq, raw, rtype, reason in self.batch.set_aside if seq <= upto]
        if not rows:
            return
        sql = ("INSERT INTO set_aside (device, seq, record, type, reason, at) "
               "VALUES (?, ?, ?, ?, ?, ?)")
        sql = self.tx.ignoring_conflict(sql, "(device, seq)")
        self.tx.executemany(sql, rows)
        self.result["set_aside"] = len(rows)

    def settle_chain(self, dev: dict[str, Any]) -> chain.Settled:
        """What the ack covers (host/ledger/chain.py); a rollback becomes a fraud case."""
        b = self.batch
        res = chain.settle(self.tx, dev, b.status_env, b.status, b.rhashes)
        if res.rollback is None:
            chain.store(self.tx, dev, b.status_env, res)
            return res
        rb = res.rollback
        pair = sha256(rb["proof_a"] + rb["proof_b"]).digest()
        if not self.case_exists(dev["id"], "rollback", pair):
            self.tx.execute(
                "INSERT INTO fraud_cases (wallet, kind, counter, proof_a, proof_b, hash_b, "
                "amount_b, credited_b, loss, detected_at, via, evidence) "
                "VALUES (?, ?, ?, ?, ?, ?, 0, NULL, 0, ?, ?, ?)",
                (dev["id"], "rollback", rb["seq"], rb["proof_a"], rb["proof_b"], pair, self.now,
                 dev["id"], rb["evidence"]))
            self.result["conflicts"] += 1
        self.result["rollback"] = True
        if self.ledger.revoke_in(self.tx, dev["id"], f"fraud: rollback at journal seq "
                                                     f"{rb['seq']}"):
            self.revoked.add(dev["id"])
            dev.update(revoked=True, revoked_at=self.now)
        return res

    def remember(self, dev: dict[str, Any]) -> None:
        """Every record of the batch is held and acked: the same bytes again need no work."""
        sql = ("INSERT INTO ingested_batches (device, digest, seq, payments, set_aside, at) "
               "VALUES (?, ?, ?, ?, ?, ?)")
        sql = self.tx.ignoring_conflict(sql, "(device, digest)")
        uniq = {(p.wallet, p.counter, p.hash) for p in self.batch.pays}
        self.tx.execute(sql, (dev["id"], self.digest, self.batch.status[proto.ST_SEQ], len(uniq),
                              self.result["set_aside"], self.now))

    def run(self) -> dict[str, Any]:
        b = self.batch
        locks = {b.device["id"]}
        for p in b.pays:
            locks.add(p.wallet)
            if p.kind == proto.PAYKIND_TRANSFER:
                locks.add(p.payee)
            if p.program is not None:  # with the wallets', in one order (programs.post)
                locks.add(programs.program_key(p.program))
        self.tx.lock(locks)
        self.payments()
        self.audit_chains()
        self.receipts()
        self.releases()
        self.refunds()
        programs.after_payments(self)
        signatures_ok(b.pending)  # before any balance is touched (hot account rows)
        self.book.flush()
        dev = self.loads_and_status()
        settled = self.settle_chain(dev)  # never above the status's seq
        upto = settled.upto
        self.set_aside(dev, upto)
        if self.revoked:
            self.ledger._publish_hotlist(self.tx)
        if not dev["revoked"] and (dev["kind"] == proto.KIND_POS or dev["id"] not in self.revoked):
            self.ledger.mint_update(self.tx, dev, known=self.inserted.get(dev["id"]))
        pause = os.environ.get(FAULT_PAUSE_ENV)
        if pause:  # fault injection for the kill-mid-ingest test: all rows written, no commit
            open(pause, "w").close()
            time.sleep(60)
        if self.digest is not None and settled.rollback is None and upto == b.status[proto.ST_SEQ]:
            self.remember(dev)
        pending = self.ledger.pending_in(self.tx, dev)
        ack = self.ledger.issuer.ack(dev["id"], upto, self.now, settled.digest)
        self.result.update(
            device=dev["id"].hex(),
            upto=upto,
            ack=b64e(ack),
            ack_note=settled.note,
            revoked=sorted(w.hex() for w in self.revoked),
            hotlist_version=self.ledger._hotlist_version(self.tx),
            vouchers=pending["vouchers"],
            update=pending["update"],
            updates=pending["updates"],
            update_number=pending["update_number"],
        )
        return self.result


# ---- a batch sent again ----------------------------------------------------------------
def batch_digest(device_id: bytes, records: list[Any], status_b64: str) -> bytes | None:
    """SHA-256 over the batch exactly as uploaded (device, status, every [seq, record] in
    order), or None when it is not of the expected shape (prepare then refuses it)."""
    if not isinstance(status_b64, str) or not isinstance(records, list):
        return None
    try:
        text = "\n".join([f"{item['seq']}:{item['record']}" for item in records
                          if type(item["seq"]) is int and type(item["record"]) is str])
    except (TypeError, KeyError):
        return None
    # One ':' and one line per record: no record text can pass for two (base64 has neither).
    if records and (text.count("\n") + 1 != len(records) or text.count(":") != len(records)):
        return None
    try:
        h = sha256(b"tapcash/batch/v1\0" + device_id)
        h.update(status_b64.encode("ascii"))
        h.update(b"\0")
        h.update(text.encode("ascii"))
    except UnicodeEncodeError:
        return None
    return h.digest()


def _acked_whole(tx: Tx, device_id: bytes, digest: bytes) -> tuple[int, int] | None:
    row = tx.one("SELECT payments, set_aside FROM ingested_batches WHERE device = ? AND "
                 "digest = ?", (device_id, digest))
    return None if row is None else (int(row[0]), int(row[1]))


def _again(ledger: Ledger, tx: Tx, device_id: bytes, status_b64: str,
           counts: tuple[int, int]) -> dict[str, Any]:
    """A batch whose exact bytes the ledger stored and acked whole before: every record is
    held, so there is nothing to decode, verify, dedup or post. The answer is the one the
    batch would get again: the device's state, its pending vouchers and updates (a POS gets a
    fresh hot list), an ack for the status's seq (checked against the held chain as ever)."""
    status_env = b64d(status_b64, "status")
    _sb, status, _sig = open_env(status_env, "status")  # verified when it was stored
    batch = Batch(device=need_device(tx, device_id), seqs=[], status_env=status_env,
                  status=status)
    ap = _Apply(ledger, tx, batch)
    ap.digest = None  # already stored
    res = ap.run()
    res["duplicates"], res["set_aside"] = counts
    return res


def ingest(ledger: Ledger, device_id: bytes, records: list[Any], status_b64: str,
           status_key: bytes | None = None) -> dict:
    """Ingest one batch (the module docstring). `status_key`: see prepare."""
    digest = batch_digest(device_id, records, status_b64)
    deferred: list[tuple[Pending, list[str]]] = []
    try:
        batch = prepare(ledger, device_id, records, status_b64, deferred, status_key, digest)
        counts = batch.acked
        if counts is not None:
            return ledger.db.write(lambda tx: _again(ledger, tx, device_id, status_b64, counts))
        return ledger.db.write(lambda tx: _Apply(ledger, tx, batch, digest).run())
    except Exception:
        # Whatever else went wrong, a bad signature is the answer, as when checked first.
        for pending in deferred:
            signatures_ok(pending)
        raise
