"""What an ack may cover: each device's journal hash chain, and rollback evidence.

A device's signed status closes every export with `digest`, the journal chain value at its last
seq (`proto.journal_link` over the records as journaled). The ledger keeps, per device, the
chain it holds: for each journal seq up to `devices.acked_upto` the record's SHA-256 and the
chain value there (one row per batch acked, `journal_blocks`: seqs lo..hi, their hashes and
chain values packed 32 bytes each; `journal_links`, one row per seq, holds what ledgers before
schema step 12 stored), and the status that took the chain there (`devices.top_status`).
Ingest then decides (`settle`), inside the batch's transaction:

* status seq s at or below the held top t: the status's digest must be the held chain value at
  s. Then the ledger holds exactly those records: ack s. Otherwise the device signed a journal
  history other than the one it signed before: a **rollback** (flash written back, journal
  rewritten), whatever the host uploaded.
* s above t: the batch must carry every record from some held seq p (p <= t) up to s. Chained
  from the held value at p, they must give the status's digest, or they are not what the device
  journaled (a host substituted or dropped one): the ack stays at t and says why. When they do
  give it, the batch's chain must agree with the held one on p+1..t, or it is a rollback; when
  it agrees, the held chain grows to s and the ack covers s.
* along one chain a wallet's counter and vouchers applied never go down: a status later on the
  chain with a lower counter (or an earlier one with a higher counter) is a rollback of the
  card's state without its journal.

A rollback is a fraud case of kind `rollback` against the device (revoked, new hot list), its
ack covers nothing, and its proof is self-contained: `proof_a` is the status with the lower
seq, `proof_b` the one with the higher seq (both signed by the device), and `evidence` is
CBOR `{0: lower seq, 1: chain value at the lower seq on proof_b's chain, 2: [record SHA-256 of
each seq after it up to proof_b's seq]}`. `verify_rollback` checks one from those bytes and the
device key alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import cbor2

from tapcash.firmware.core import cbor, proto
from tapcash.firmware.core.runtime import sha256

from .db import Tx

ZERO32 = bytes(32)

EV_SEQ = 0
EV_LINK = 1
EV_PATH = 2


@dataclass
class Settled:
    """The outcome for one batch: what the ack covers and why."""

    upto: int
    digest: bytes
    note: str | None = None  # why the ack does not reach the status's seq
    rollback: dict[str, Any] | None = None  # {proof_a, proof_b, evidence, seq}
    new_links: list[tuple[int, bytes, bytes]] = field(default_factory=list)
    pending: list[tuple[int, bytes]] = field(default_factory=list)  # unverified, kept for later
    clear_pending: bool = True  # False: settle found no journal_pending row up to upto


def chain(start: bytes, first_seq: int, rhashes: list[bytes]) -> list[bytes]:
    """Chain values at first_seq, first_seq + 1, ... from `start` (the value before
    first_seq) over record hashes."""
    out = []
    d = start
    tagged = sha256(proto.TAG_JOURNAL)  # copied per link: the tag is hashed once
    for seq, rh in enumerate(rhashes, first_seq):
        h = tagged.copy()
        h.update(d + seq.to_bytes(4, "big") + rh)
        d = h.digest()
        out.append(d)
    return out


def records_digest(records: list[tuple[int, bytes]], start: bytes = ZERO32) -> bytes:
    """The journal chain value after `records` [(seq, record bytes)], from `start` (the value
    before the first of them): what a device's status signs as ST_DIGEST."""
    d = start
    for seq, rec in records:
        d = proto.journal_link(d, seq, rec)
    return d


def _held(tx: Tx, device: bytes, lo: int, hi: int) -> dict[int, tuple[bytes, bytes]]:
    """seq -> (record hash, chain value) of the held chain for lo <= seq <= hi."""
    if hi < max(lo, 1):  # journal seqs start at 1 (seq 0 is the empty chain: _link_at)
        return {}
    out = {int(s): (bytes(r), bytes(lk)) for s, r, lk in tx.all(
        "SELECT seq, rhash, link FROM journal_links WHERE device = ? AND seq BETWEEN ? AND ?",
        (device, lo, hi))}
    # the blocks that reach lo or past it (keyed by their last seq), up to the first past hi
    for b_lo, b_hi, rhashes, links in tx.all(
            "SELECT lo, hi, rhashes, links FROM journal_blocks WHERE device = ? AND hi >= ? "
            "AND lo <= ? ORDER BY hi", (device, lo, hi)):
        b_lo, rh, lk = int(b_lo), bytes(rhashes), bytes(links)
        for seq in range(max(lo, b_lo), min(hi, int(b_hi)) + 1):
            i = (seq - b_lo) * 32
            out[seq] = (rh[i : i + 32], lk[i : i + 32])
    return out


def held_hashes(tx: Tx, device: bytes) -> dict[int, bytes]:
    """seq -> record hash of every journal record the ledger holds for a device."""
    top = tx.scalar("SELECT acked_upto FROM devices WHERE id = ?", (device,))
    return {k: v[0] for k, v in _held(tx, device, 1, int(top or 0)).items()}


def _link_at(held: dict[int, tuple[bytes, bytes]], seq: int) -> bytes | None:
    if seq == 0:
        return ZERO32
    row = held.get(seq)
    return None if row is None else row[1]


def _status(env: bytes | None) -> dict[int, Any]:
    if not env:
        return {}
    _b, body, _s = proto.open_envelope(env)
    return body


def _regressed(lower: dict[int, Any], higher: dict[int, Any]) -> bool:
    """A wallet's counter or vouchers applied went down from the lower-seq status to the
    higher-seq one on the same journal chain."""
    for k in (proto.ST_COUNTER, proto.ST_LOADS):
        a, b = lower.get(k), higher.get(k)
        if type(a) is int and type(b) is int and b < a:
            return True
    return False


def _evidence(seq: int, link: bytes, path: list[bytes]) -> bytes:
    return cbor.encode({EV_SEQ: seq, EV_LINK: link, EV_PATH: path})


def settle(tx: Tx, dev: dict[str, Any], status_env: bytes, status: dict[int, Any],
           rhashes: dict[int, bytes]) -> Settled:
    """Decide what the ack for this batch covers (see the module docstring). Writes nothing:
    the caller stores `new_links` and the rollback case."""
    device = dev["id"]
    s = status[proto.ST_SEQ]
    d = status[proto.ST_DIGEST]
    t = dev["acked_upto"] or 0
    top_env = dev.get("top_status")
    top = _status(top_env)
    if s <= t:
        if top_env is None:
            return Settled(0, ZERO32, "the device's journal is empty")
        held = _held(tx, device, s, t)
        at_s = _link_at(held, s)
        if at_s is None:
            return Settled(0, ZERO32, f"the ledger holds no journal chain at seq {s}")
        path = [held[k][0] for k in range(s + 1, t + 1)]
        if at_s != d:
            return Settled(0, ZERO32, "journal history differs from the one the device signed "
                           "before: rollback", {"proof_a": status_env, "proof_b": top_env,
                                                "evidence": _evidence(s, at_s, path), "seq": s})
        if s < t and _regressed(status, top):
            return Settled(0, ZERO32, "device state went back along its own journal: rollback",
                           {"proof_a": status_env, "proof_b": top_env,
                            "evidence": _evidence(s, at_s, path), "seq": s})
        return Settled(s, d)
    held_t = _held(tx, device, t, t)
    at_t = _link_at(held_t, t)
    if at_t is None:
        return Settled(0, ZERO32, f"the ledger holds no journal chain at seq {t}")
    # Records of an earlier upload of this export that could not be verified yet (a split or
    # reordered upload); this batch's own records take precedence over them.
    later = [(k, r) for k, r in rhashes.items() if k > t]
    merged = {int(k): bytes(r) for k, r in tx.all(
        "SELECT seq, rhash FROM journal_pending WHERE device = ? AND seq > ? AND seq <= ?",
        (device, t, s))}
    # journal_pending only ever holds seqs above acked_upto (store deletes those it acks):
    # with none in (t, s] there is nothing for store to delete.
    clear = bool(merged)
    merged.update(rhashes)
    rhashes = merged
    batch_seqs = [k for k in sorted(rhashes) if k <= s]
    first = batch_seqs[0] if batch_seqs else s + 1
    p = min(first - 1, t)
    missing = [k for k in range(p + 1, s + 1) if k not in rhashes]
    if first - 1 > t or missing:
        gap = t + 1 if first - 1 > t else missing[0]
        return Settled(t, at_t, f"journal records from seq {gap} are missing from the upload: "
                       f"the ack stays at {t}", pending=later)
    held = held_t if p == t else _held(tx, device, p, t)  # p == t: a batch from t + 1
    start = _link_at(held, p)
    if start is None:
        return Settled(t, at_t, f"the ledger holds no journal chain at seq {p}")
    hashes = [rhashes[k] for k in range(p + 1, s + 1)]
    links = chain(start, p + 1, hashes)
    if links[-1] != d:
        return Settled(t, at_t, "the records uploaded are not the ones the device journaled "
                       "(their chain does not give the signed status's digest): the ack stays "
                       f"at {t}", pending=later)
    mine_t = links[t - p - 1] if t > p else start
    path = hashes[t - p:]
    for k in range(p + 1, t + 1):
        if held.get(k, (b"", b""))[1] != links[k - p - 1]:
            return Settled(0, ZERO32, "journal history differs from the one the device signed "
                           "before: rollback", {"proof_a": top_env, "proof_b": status_env,
                                                "evidence": _evidence(t, mine_t, path), "seq": t})
    if _regressed(top, status):
        return Settled(0, ZERO32, "device state went back along its own journal: rollback",
                       {"proof_a": top_env, "proof_b": status_env,
                        "evidence": _evidence(t, mine_t, path), "seq": t})
    new = [(k, rhashes[k], links[k - p - 1]) for k in range(t + 1, s + 1)]
    return Settled(s, d, None, None, new, clear_pending=clear)


def store(tx: Tx, dev: dict[str, Any], status_env: bytes, res: Settled) -> None:
    """Grow the held chain by `res.new_links` and make this status its top; keep unverified
    record hashes for a later upload of the rest."""
    if res.pending:
        tx.executemany("DELETE FROM journal_pending WHERE device = ? AND seq = ?",
                       [(dev["id"], k) for k, _r in res.pending])
        tx.executemany("INSERT INTO journal_pending (device, seq, rhash) VALUES (?, ?, ?)",
                       [(dev["id"], k, r) for k, r in res.pending])
    if not res.new_links:
        return
    if res.clear_pending:
        tx.execute("DELETE FROM journal_pending WHERE device = ? AND seq <= ?",
                   (dev["id"], res.upto))
    new = res.new_links  # seqs t+1..s, in order (settle)
    tx.execute("INSERT INTO journal_blocks (device, lo, hi, rhashes, links) "
               "VALUES (?, ?, ?, ?, ?)",
               (dev["id"], new[0][0], new[-1][0], b"".join([rh for _k, rh, _lk in new]),
                b"".join([lk for _k, _rh, lk in new])))
    tx.execute("UPDATE devices SET acked_upto = ?, top_status = ? WHERE id = ?",
               (res.upto, status_env, dev["id"]))
    dev["acked_upto"] = res.upto
    dev["top_status"] = status_env


def verify_rollback(public_key: bytes, proof_a: bytes, proof_b: bytes, evidence: bytes) -> bool:
    """True when the two statuses, both signed by `public_key`, cannot lie on one honest
    journal: proof_b's chain, walked back to proof_a's seq, differs from proof_a's digest, or
    agrees with it while the wallet counter or vouchers applied went down. Uses nothing but
    the bytes given (PyNaCl for the signatures)."""
    from nacl.exceptions import BadSignatureError
    from nacl.signing import VerifyKey

    bodies = []
    for env in (proof_a, proof_b):
        try:
            body_bytes, sig = cbor2.loads(env)
            VerifyKey(public_key).verify(proto.TAG_STATUS + body_bytes, sig)
            bodies.append(cbor2.loads(body_bytes))
        except (BadSignatureError, ValueError, TypeError, cbor2.CBORDecodeError):
            return False
    a, b = bodies
    if a.get(proto.ST_DEVICE) != b.get(proto.ST_DEVICE):
        return False
    try:
        ev = cbor2.loads(evidence)
        seq, link, path = ev[EV_SEQ], ev[EV_LINK], ev[EV_PATH]
    except (ValueError, TypeError, KeyError, cbor2.CBORDecodeError):
        return False
    if seq != a.get(proto.ST_SEQ) or seq + len(path) != b.get(proto.ST_SEQ):
        return False
    top = chain(link, seq + 1, path)[-1] if path else link
    if top != b.get(proto.ST_DIGEST):
        return False
    return link != a.get(proto.ST_DIGEST) or _regressed(a, b)
