"""What each console page shows, read in one transaction from the ledger's own tables.

The figures come from the same functions as `tapcash ledger report` / `check` and the JSON API
(host/ledger/reports.py, invariant.check, programs.report), so page and report cannot
disagree; the page adds only decoding (certificates, proofs, hot lists) and layout.
"""

from __future__ import annotations

from typing import Any

import cbor2

from tapcash.firmware.core import proto
from tapcash.host import output

from .. import programs, proofs, reports
from ..db import Tx
from ..errors import LedgerError
from ..invariant import check as check_books
from ..invariant import violations
from ..service import Ledger, get_device, public_device

LIMIT_NAMES = {proto.LIM_BALANCE_MAX: "balance max", proto.LIM_PAYMENT_MAX: "payment max",
               proto.LIM_OFFLINE_COUNT: "offline payments", proto.LIM_OFFLINE_AMOUNT:
               "offline amount", proto.LIM_NO_CVM: "no-CVM limit",
               proto.LIM_STAGED_SPEND: "re-spendable staged"}
ROWS_MAX = 500  # rows of one table on a page (the newest); the CSV reports have them all


def overview(ledger: Ledger) -> dict[str, Any]:
    def read(tx: Tx) -> dict[str, Any]:
        inv = check_books(tx)  # the check of `tapcash ledger check`, programmes included
        held: dict[str, int] = {}
        for kind, total in tx.all("SELECT kind, COALESCE(SUM(balance), 0) FROM accounts "
                                  "WHERE kind <> 'issuer' GROUP BY kind ORDER BY kind"):
            held[kind] = int(total)
        counts = {
            "wallets": tx.scalar("SELECT COUNT(*) FROM devices WHERE kind = ?",
                                 (proto.KIND_WALLET,)),
            "pos": tx.scalar("SELECT COUNT(*) FROM devices WHERE kind = ?", (proto.KIND_POS,)),
            "revoked": tx.scalar("SELECT COUNT(*) FROM devices WHERE revoked = 1"),
            "payments": tx.scalar("SELECT COUNT(*) FROM payments WHERE status = 'posted'"),
            "refused": tx.scalar("SELECT COUNT(*) FROM payments WHERE status <> 'posted'"),
            "fraud_cases": tx.scalar("SELECT COUNT(*) FROM fraud_cases"),
            "settlements": tx.scalar("SELECT COUNT(*) FROM settlements"),
        }
        version, issued, _env = ledger.hotlist_in(tx)
        merchants = reports.merchants(tx)
        return {"inv": inv, "violations": violations(inv, output.money), "held": held,
                "counts": {k: int(v or 0) for k, v in counts.items()},
                "hotlist": {"version": version, "issued": issued},
                "owed": sum(m["owed"] for m in merchants),
                "settled": sum(m["settled"] for m in merchants)}

    return ledger.db.read(read)


def merchants(ledger: Ledger) -> dict[str, Any]:
    def read(tx: Tx) -> dict[str, Any]:
        rows = reports.merchants(tx)
        terminals: dict[str, list[str]] = {}
        for dev_id, merchant in tx.all("SELECT id, merchant FROM devices WHERE kind = ? "
                                       "ORDER BY id", (proto.KIND_POS,)):
            terminals.setdefault(bytes(merchant).hex(), []).append(bytes(dev_id).hex())
        for r in rows:
            r["terminals"] = terminals.get(r["merchant"], [])
        return {"merchants": rows, "settlements": reports.settlements(tx)[-ROWS_MAX:]}

    return ledger.db.read(read)


def fraud_list(ledger: Ledger) -> list[dict[str, Any]]:
    return ledger.db.read(reports.fraud_cases)


def fraud_case(ledger: Ledger, case_id: int) -> dict[str, Any]:
    def read(tx: Tx) -> dict[str, Any]:
        row = tx.one("SELECT id, wallet, kind, counter, proof_a, proof_b, amount_b, credited_b, "
                     "loss, detected_at, via, evidence FROM fraud_cases WHERE id = ?", (case_id,))
        if row is None:
            raise LedgerError(404, f"no fraud case {case_id}")
        names = ("case", "wallet", "kind", "counter", "proof_a", "proof_b", "amount_b",
                 "credited_b", "loss", "detected_at", "via", "evidence")
        case = dict(zip(names, row, strict=True))
        for k in ("wallet", "proof_a", "proof_b", "via", "evidence"):
            if case[k] is not None:
                case[k] = bytes(case[k])
        dev = get_device(tx, case["wallet"])
        cert = dev["cert"] if dev else b""
        a, b, verdict = proofs.judge(case, cert, ledger.issuer.public_key)
        # Fields that differ between the two bodies are marked on the page.
        fa, fb = dict(a.fields), dict(b.fields)
        differ = {k for k in set(fa) | set(fb) if fa.get(k) != fb.get(k)}
        return {"case": case, "a": a, "b": b, "verdict": verdict, "differ": differ,
                "device": dev}

    return ledger.db.read(read)


def hotlist(ledger: Ledger) -> dict[str, Any]:
    def read(tx: Tx) -> dict[str, Any]:
        version, issued, env = ledger.hotlist_in(tx)
        body_bytes, sig = cbor2.loads(env)
        body = cbor2.loads(body_bytes)
        sig_ok = proofs.open_proof("hot list", env, proto.TAG_HOTLIST, ledger.issuer.public_key,
                                   []).signature_ok
        listed = [bytes(d).hex() for d in body.get(proto.HOT_REVOKED, [])]
        revoked = []
        for dev_id, kind, owner, at, reason in tx.all(
                "SELECT id, kind, owner, revoked_at, revoke_reason FROM devices WHERE revoked = 1 "
                "ORDER BY revoked_at, id"):
            hexid = bytes(dev_id).hex()
            revoked.append({"device": hexid, "kind": _kind(kind), "owner": owner,
                            "revoked_at": int(at or 0), "reason": reason or "",
                            "listed": hexid in listed})
        history = [{"version": int(v), "issued": int(i)} for v, i in tx.all(
            "SELECT version, issued FROM hotlists ORDER BY version DESC LIMIT 20")]
        return {"version": version, "issued": issued, "listed": listed, "signature_ok": sig_ok,
                "signed_version": body.get(proto.HOT_VERSION), "revoked": revoked,
                "history": history}

    return ledger.db.read(read)


def _kind(kind: int) -> str:
    return "wallet" if kind == proto.KIND_WALLET else "pos"


def devices(ledger: Ledger) -> list[dict[str, Any]]:
    return ledger.db.read(lambda tx: reports.devices(tx))


def device(ledger: Ledger, dev_id: bytes) -> dict[str, Any]:
    def read(tx: Tx) -> dict[str, Any]:
        d = get_device(tx, dev_id)
        if d is None:
            raise LedgerError(404, f"unknown device {dev_id.hex()}")
        pub = public_device(d)
        cert_body = cbor2.loads(cbor2.loads(d["cert"])[0])
        out: dict[str, Any] = {"device": pub, "cert": _cert_rows(cert_body),
                               "registered_at": int(d["registered_at"])}
        cases = [c for c in reports.fraud_cases(tx) if c["wallet"] == pub["id"]]
        out["cases"] = cases
        if d["kind"] == proto.KIND_WALLET:
            out["statement"] = reports.wallet_statement(tx, dev_id)
            out["statement"]["lines"] = out["statement"]["lines"][-ROWS_MAX:]
            out["payments"] = [
                {"counter": int(c), "amount": int(a), "payee": bytes(p).hex(),
                 "kind": "transfer" if k == proto.PAYKIND_TRANSFER else "pos", "time": int(t),
                 "status": s, "credited": cr, "via": v}
                for c, a, p, k, t, s, cr, v in tx.all(
                    "SELECT counter, amount, payee, kind, time, status, credited, via FROM "
                    "payments WHERE wallet = ? ORDER BY counter DESC LIMIT ?", (dev_id, ROWS_MAX))]
            out["vouchers"] = [
                {"number": int(n), "amount": int(a), "source": int(s), "ref": r,
                 "applied": bool(ap)}
                for n, a, s, r, ap in tx.all(
                    "SELECT number, amount, source, ref, applied FROM vouchers WHERE wallet = ? "
                    "ORDER BY number DESC LIMIT ?", (dev_id, ROWS_MAX))]
        else:
            out["taken"] = [
                {"wallet": bytes(w).hex(), "counter": int(c), "amount": int(a), "time": int(t),
                 "status": s}
                for w, c, a, t, s in tx.all(
                    "SELECT wallet, counter, amount, time, status FROM payments WHERE payee = ? "
                    "ORDER BY time DESC, wallet, counter LIMIT ?", (dev_id, ROWS_MAX))]
            out["taken_total"] = int(tx.scalar(
                "SELECT COALESCE(SUM(amount), 0) FROM payments WHERE payee = ? AND "
                "status = 'posted'", (dev_id,), default=0) or 0)
        out["updates"] = [
            {"number": int(n), "has_cert": bool(hc), "at": int(at)}
            for n, hc, at in tx.all("SELECT number, has_cert, at FROM updates WHERE device = ? "
                                    "ORDER BY number DESC LIMIT 50", (dev_id,))]
        return out

    return ledger.db.read(read)


def _cert_rows(body: dict[Any, Any]) -> list[tuple[str, str]]:
    names = {proto.CERT_KIND: "kind", proto.CERT_ID: "id", proto.CERT_KEY: "public key",
             proto.CERT_ISSUER: "issuer key id", proto.CERT_EXPIRES: "expires",
             proto.CERT_MERCHANT: "merchant", proto.CERT_SERIAL: "serial",
             proto.CERT_CATEGORY: "merchant category"}
    rows = []
    for k, v in sorted(body.items(), key=str):
        if k == proto.CERT_LIMITS and isinstance(v, dict):
            for lk, lv in sorted(v.items(), key=str):
                rows.append((f"limit: {LIMIT_NAMES.get(lk, lk)}", str(lv)))
        elif k == proto.CERT_KIND:
            rows.append(("kind", _kind(v)))
        else:
            rows.append((names.get(k, f"field {k}"), v.hex() if isinstance(v, bytes) else str(v)))
    return rows


def payroll(ledger: Ledger) -> dict[str, Any]:
    def read(tx: Tx) -> dict[str, Any]:
        batches = [{"reference": r, "payer": p, "lines": int(n), "total": int(t), "at": int(a)}
                   for r, p, n, t, a in tx.all("SELECT reference, payer, lines, total, at FROM "
                                               "payroll_batches ORDER BY at DESC, reference "
                                               "LIMIT ?", (ROWS_MAX,))]
        return {"batches": batches, "owners": reports.owners(tx)}

    return ledger.db.read(read)


def programmes(ledger: Ledger) -> list[dict[str, Any]]:
    return ledger.db.read(lambda tx: programs.report(tx, ledger.now()))
