"""Reports: merchant settlement, wallet statement, fraud cases, refused payments, the books.

Every report is a list of flat rows (JSON) that also renders as CSV."""

from __future__ import annotations

import csv
import io
from typing import Any

from tapcash.firmware.core import proto

from . import postings as P
from .codec import b64e
from .db import Tx
from .errors import LedgerError
from .service import DEVICE_COLS, device_dict, need_device, public_device


def to_csv(rows: list[dict[str, Any]], columns: list[str] | None = None) -> str:
    out = io.StringIO()
    cols = columns or (list(rows[0].keys()) if rows else [])
    w = csv.DictWriter(out, fieldnames=cols, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow(r)
    return out.getvalue()


def merchants(tx: Tx) -> list[dict[str, Any]]:
    counts = {acct: int(n) for acct, n in tx.all(
        "SELECT credited, COUNT(*) FROM payments WHERE status = 'posted' GROUP BY credited")}
    rows = []
    for name, bal in tx.all("SELECT name, balance FROM accounts WHERE kind = 'merchant' "
                            "ORDER BY name"):
        credited = P.sum_amount(tx, "postings", "dst = ?", (name,))
        settled = P.sum_amount(tx, "settlements", "merchant = ?",
                               (bytes.fromhex(name.split(":", 1)[1]),))
        guaranteed = P.sum_amount(tx, "postings", "dst = ? AND kind = 'guarantee'", (name,))
        rows.append({"merchant": name.split(":", 1)[1], "credited": credited,
                     "settled": settled, "owed": int(bal), "of_which_guaranteed": guaranteed,
                     "payments": counts.get(name, 0)})
    return rows


def settlements(tx: Tx) -> list[dict[str, Any]]:
    return [
        {"settlement": int(i), "merchant": bytes(m).hex(), "amount": int(a), "reference": r,
         "at": int(t)}
        for i, m, a, r, t in tx.all("SELECT id, merchant, amount, reference, at FROM settlements "
                                    "ORDER BY id")
    ]


def _runs_expanded(tx: Tx, wid: bytes, acct: str, rows: list[tuple]) -> list[tuple]:
    """The statement's postings with each run of payments (one posting `W:lo-hi` for the
    wallet's counters lo..hi: postings.Book.pay) shown as its payments, one line each (ref
    `W:c`, the posting's id), from their `payments` rows."""
    out = []  # in the order of `rows`, a run's payments by counter
    for pid, src, dst, amount, kind, ref, at in rows:
        run = P.parse_run(ref) if kind == "payment" and src == acct else None
        if run is None or run[1] == run[2]:
            out.append((pid, src, dst, amount, kind, ref, at))
            continue
        for c, a in tx.all("SELECT counter, amount FROM payments WHERE wallet = ? AND counter "
                           "BETWEEN ? AND ? ORDER BY counter", (wid, run[1], run[2])):
            out.append((pid, src, dst, int(a), kind, P.run_ref(run[0], int(c), int(c)), at))
    return out


def wallet_statement(tx: Tx, wid: bytes) -> dict[str, Any]:
    d = need_device(tx, wid, proto.KIND_WALLET)
    acct, staged = P.wallet_acct(wid), P.staged_acct(wid)
    lines = []
    running = 0
    # Into the wallet: by dst. Out of it: only payments, whose refs start with the wallet id
    # (found through the (kind, ref) index).
    rows = tx.all("SELECT id, src, dst, amount, kind, ref, at FROM postings WHERE dst = ?",
                  (acct,))
    rows += tx.all("SELECT id, src, dst, amount, kind, ref, at FROM postings WHERE "
                   "kind = 'payment' AND ref >= ? AND ref < ? AND src = ?",
                   (wid.hex() + ":", wid.hex() + ";", acct))
    for pid, src, dst, amount, kind, ref, at in _runs_expanded(tx, wid, acct, sorted(rows)):
        delta = int(amount) if dst == acct else -int(amount)
        running += delta
        lines.append({"posting": int(pid), "kind": kind, "ref": ref,
                      "counterparty": src if dst == acct else dst, "amount": delta,
                      "balance": running, "at": int(at)})
    bal = int(tx.scalar("SELECT balance FROM accounts WHERE name = ?", (acct,), default=0))
    staged_bal = int(tx.scalar("SELECT balance FROM accounts WHERE name = ?", (staged,),
                               default=0))
    unapplied = P.sum_amount(tx, "vouchers", "wallet = ? AND number > ?",
                             (wid, d["vouchers_applied"]))
    reported = None
    if d["last_status"]:
        _b, st, _s = proto.open_envelope(d["last_status"])
        reported = {"seq": st.get(proto.ST_SEQ), "counter": st.get(proto.ST_COUNTER),
                    "balance": st.get(proto.ST_BALANCE), "pending": st.get(proto.ST_PENDING),
                    "vouchers_applied": st.get(proto.ST_LOADS)}
    return {
        "wallet": wid.hex(),
        "owner": d["owner"],
        "revoked": d["revoked"],
        "balance": bal,
        "staged": staged_bal,
        "vouchers_unapplied": unapplied,
        "expected_device_balance": bal - unapplied,
        "reported": reported,
        "lines": lines,
    }


def fraud_cases(tx: Tx) -> list[dict[str, Any]]:
    """Double-spend proofs (two wallet-signed payments) and rollback reports (kind
    `rollback`: `wallet` is the device, `counter` the journal seq compared, proof_a / proof_b
    the device-signed statuses of the lower / higher seq, `evidence` the chain path:
    host/ledger/chain.py, `verify_rollback`)."""
    return [
        {"case": int(i), "wallet": bytes(w).hex(), "kind": k, "counter": int(c),
         "proof_a": b64e(bytes(a)), "proof_b": b64e(bytes(b)), "amount_b": int(am),
         "credited_b": cr, "loss": int(loss), "detected_at": int(at), "via": bytes(via).hex(),
         "evidence": b64e(bytes(ev)) if ev is not None else None}
        for i, w, k, c, a, b, am, cr, loss, at, via, ev in tx.all(
            "SELECT id, wallet, kind, counter, proof_a, proof_b, amount_b, credited_b, loss, "
            "detected_at, via, evidence FROM fraud_cases ORDER BY id")
    ]


def set_aside(tx: Tx) -> list[dict[str, Any]]:
    """Journal records kept as evidence instead of refusing their batch (a wallet receipt a
    rogue reader signed, or one from a POS the ledger does not know)."""
    return [
        {"device": bytes(d).hex(), "seq": int(s), "type": None if t is None else int(t),
         "reason": r, "record": b64e(bytes(rec)), "at": int(at)}
        for d, s, t, r, rec, at in tx.all(
            "SELECT device, seq, type, reason, record, at FROM set_aside ORDER BY device, seq")
    ]


def refused(tx: Tx) -> list[dict[str, Any]]:
    return [
        {"wallet": bytes(w).hex(), "counter": int(c), "amount": int(a), "payee": bytes(p).hex(),
         "status": s, "envelope": b64e(bytes(e))}
        for w, c, a, p, s, e in tx.all(
            "SELECT wallet, counter, amount, payee, status, envelope FROM payments "
            "WHERE status <> 'posted' ORDER BY wallet, counter")
    ]


def accounts(tx: Tx) -> list[dict[str, Any]]:
    return [{"account": n, "kind": k, "balance": int(b)}
            for n, k, b in tx.all("SELECT name, kind, balance FROM accounts ORDER BY name")]


def books(tx: Tx) -> dict[str, Any]:
    """A canonical dump of the ledger's content, independent of arrival order and timing:
    two ledgers fed the same journals in any order, split or repeated, dump equal."""
    payments = sorted(
        [bytes(w).hex(), int(c), bytes(h).hex(), s, cr]
        for w, c, h, s, cr in tx.all("SELECT wallet, counter, hash, status, credited "
                                     "FROM payments")
    )
    cases = sorted(
        [bytes(w).hex(), k, int(c), sorted([bytes(a).hex(), bytes(b).hex()])]
        for w, k, c, a, b in tx.all("SELECT wallet, kind, counter, proof_a, proof_b "
                                    "FROM fraud_cases")
    )
    vouchers = sorted(
        [bytes(w).hex(), int(a), int(s), r, int(ap)]
        for w, a, s, r, ap in tx.all("SELECT wallet, amount, source, ref, applied FROM vouchers")
    )
    revoked = sorted(bytes(r[0]).hex() for r in tx.all("SELECT id FROM devices WHERE revoked = 1"))
    aside = sorted([bytes(d).hex(), int(s), bytes(rec).hex()]
                   for d, s, rec in tx.all("SELECT device, seq, record FROM set_aside"))
    return {
        "balances": {a["account"]: a["balance"] for a in accounts(tx)},
        "payments": payments,
        "fraud_cases": cases,
        "vouchers": vouchers,
        "revoked": revoked,
        "set_aside": aside,
        "acked": {bytes(i).hex(): int(a or 0)
                  for i, a in tx.all("SELECT id, acked_upto FROM devices ORDER BY id")},
    }


def devices(tx: Tx, kind: str | None = None) -> list[dict[str, Any]]:
    where, params = "", ()
    if kind is not None:
        where, params = " WHERE kind = ?", (proto.KIND_WALLET if kind == "wallet"
                                            else proto.KIND_POS,)
    out = []
    for row in tx.all(f"SELECT {DEVICE_COLS} FROM devices{where} ORDER BY id", params):
        d = device_dict(row)
        out.append(public_device(d) | {"registered_at": int(d["registered_at"])})
    return out


def owners(tx: Tx) -> list[dict[str, Any]]:
    counts = {o: int(n) for o, n in tx.all("SELECT owner, COUNT(*) FROM devices "
                                           "WHERE owner IS NOT NULL GROUP BY owner")}
    return [{"owner": n, "balance": int(b), "wallets": counts.get(n, 0), "created_at": int(t)}
            for n, b, t in tx.all("SELECT o.name, a.balance, o.created_at FROM owners o "
                                  "JOIN accounts a ON a.name = 'owner:' || o.name "
                                  "ORDER BY o.name")]


REPORTS = {
    "merchants": merchants,
    "settlements": settlements,
    "fraud": fraud_cases,
    "refused": refused,
    "set_aside": set_aside,
    "accounts": accounts,
}


def report(tx: Tx, name: str) -> list[dict[str, Any]]:
    fn = REPORTS.get(name)
    if fn is None:
        raise LedgerError(404, f"no report {name}")
    return fn(tx)
