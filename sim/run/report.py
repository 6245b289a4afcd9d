"""The reconciliation report of a run: what happened, whether the books balance, and why.

    summary = summarize(log)                 # a JSON-able dict; same seed -> same dict
    write_outputs(summary, log, out_dir)     # report.json, payments.csv, *.png
    text = render_text(summary)              # the lines `tapcash sim run` / `demo` print

Checks (all must hold for `ok`). None takes the ledger's word: the oracle (sim/run/oracle.py)
recomputes what the ledger should say from what it saw the cards sign and what we deposited.
- invariant: the ledger's own books invariant (postings add up, none negative) AND value
  issued recomputed: what the ledger says is backed equals the deposits we made, its load
  vouchers are exactly the loads we asked for, every release voucher names a transfer a card
  signed (and at most one of conflicting bodies is released);
- no_payment_lost: every payment a POS approved is in the ledger (posted, or one side of a
  fraud case with its body as proof);
- double_spends_caught: every (wallet, counter) that two approved payments share is a fraud
  case naming that counter and one of those bodies, whose two envelopes we verified from the
  signed bodies alone (PyNaCl, the wallet's certified key, a real conflict);
- attacks_caught: every injected attack whose evidence reached the ledger is matched, by
  counter, to a verified case (oracle), and no invariant of the oracle failed after any sync;
- wallet_balances: every honest wallet's card balance equals its ledger account and what the
  oracle says it holds (what it was given minus what its card signed); attacked wallets are
  reported apart (a rolled-back card shows an old, higher balance);
- merchants_credited: each merchant is credited exactly the bodies the ledger says it credited
  it, at the amounts the cards signed; every honest payment to a POS and every payment a POS
  approved is among them; the ledger credits nothing no card signed.

Everything under "wall" is wall-clock time: it is reported but excluded from determinism.
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from tapcash.firmware.core import proto
from tapcash.sim.run.log import RunLog

HOUR_S = 3600


def _pct(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    v = sorted(values)
    return v[min(len(v) - 1, int(q * (len(v) - 1) + 0.5))]


def money(cents: int) -> str:
    sign = "-" if cents < 0 else ""
    cents = abs(int(cents))
    return f"{sign}{cents // 100:,}.{cents % 100:02d}"


HELD_KINDS = (("wallet", "wallets"), ("merchant", "merchants"), ("staged", "staged"),
              ("purse", "purses"), ("program", "programme accounts"), ("owner", "owners"))


def _held_by(by_kind: dict[str, int]) -> str:
    """What holds the value issued, by account kind: the parts add up to `held` (purses and
    programme accounts named only when a run has them)."""
    parts = [f"{label} {money(by_kind.get(k, 0))}" for k, label in HELD_KINDS
             if k in ("wallet", "merchant", "staged") or by_kind.get(k, 0)]
    known = {k for k, _label in HELD_KINDS}
    parts += [f"{k} {money(v)}" for k, v in sorted(by_kind.items()) if k not in known and v]
    return ", ".join(parts)


def summarize(log: RunLog) -> dict[str, Any]:
    sc = log.scenario
    pays = log.payments
    approved = [p for p in pays if p.status == "approved"]
    declined = Counter(p.reason for p in pays if p.status == "declined")
    in_field = [p.in_field_ms for p in approved]

    # double spends: one (wallet, counter), several approved bodies
    bodies: dict[tuple[str, int], set[str]] = defaultdict(set)
    for p in approved:
        bodies[(p.wallet, p.counter)].add(p.hash)
    double = sorted(k for k, v in bodies.items() if len(v) > 1)

    led = log.ledger
    books = led.get("books", {})
    fraud = led.get("fraud", [])
    inv = led.get("invariant", {})
    balances = books.get("balances", {})
    ledger_hashes = {row[2] for row in books.get("payments", [])}
    proof_hashes = set()
    for case in fraud:
        for k in ("proof_a", "proof_b"):
            proof_hashes.add(_env_hash(case.get(k, "")))
    lost = [
        {"pos": p.pos, "wallet": p.wallet, "counter": p.counter, "amount": p.amount}
        for p in approved
        if p.hash not in ledger_hashes and p.hash not in proof_hashes
    ]
    oracle = log.oracle
    # a double spend is caught by a case we verified, naming its counter and one of its bodies
    case_bodies: list[tuple[str, set[int], set[str]]] = []
    for case in fraud:
        if not case.get("proof_verified"):
            continue
        counters, hashes = set(), set()
        for k in ("proof_a", "proof_b"):
            got = _env_counter_hash(case.get(k, ""))
            if got:
                counters.add(got[0])
                hashes.add(got[1])
        case_bodies.append((case["wallet"], counters, hashes))
    uncaught = []
    for w, c in double:
        if not any(cw == w and c in cs and bodies[(w, c)] & hs for cw, cs, hs in case_bodies):
            uncaught.append({"wallet": w, "counter": c})
    revoked = set(books.get("revoked", []))

    # wallets: device vs ledger
    mismatches, honest, fraud_wallets = [], 0, []
    attacked = {a["wallet"] for a in log.attacks}
    attacker_ids = {w.hex() for w in oracle.attacker_wallets} if oracle else set()
    good_vouchers = [v for v in books.get("vouchers", [])]
    device_total = ledger_total = 0
    for name, st in sorted(log.wallets.items(), key=lambda kv: _num(kv[0])):
        if "clone" in name:
            continue
        wid = st["id"]
        acct = balances.get(f"wallet:{wid}")
        if "error" in st or acct is None:
            mismatches.append({"wallet": name, "problem": st.get("error", "not at the ledger")})
            continue
        dev_bal = int(st["balance"])
        if wid in revoked or name in attacked or wid in attacker_ids:
            fraud_wallets.append(
                {"wallet": name, "device": dev_bal, "ledger": acct, "revoked": wid in revoked}
            )
            continue
        honest += 1
        device_total += dev_bal
        ledger_total += acct
        model = oracle.model(bytes.fromhex(wid), good_vouchers) if oracle else acct
        if dev_bal != acct or (led and model != acct):
            mismatches.append({"wallet": name, "device": dev_bal, "ledger": acct,
                               "oracle": model})

    merchants = led.get("merchants", [])
    credited = sum(int(m.get("credited", 0)) for m in merchants)
    approved_value = sum(p.amount for p in approved)
    merchant_problems = _merchant_problems(log, books, fraud, merchants) if led else []
    violations = [v.line() for v in oracle.violations] if oracle else []
    attack_rows = [
        {"id": a.id, "kind": a.kind, "wallet": a.wallet.hex(), "expect": a.expect,
         "counters": sorted(a.counters), "bodies": len(a.hashes), "loss_bound": a.bound,
         "reached_ledger_at_sync": a.reached_at, "caught_at_sync": a.caught_at, "case": a.case,
         "note": a.note}
        for a in (oracle.attacks if oracle else [])
    ]

    payments = {
        "attempted": len(pays),
        "approved": len(approved),
        "approved_value": approved_value,
        "declined": dict(sorted(declined.items())),
        "torn": sum(1 for p in pays if p.status == "torn"),
        "recovered_on_retap": sum(1 for p in approved if p.recovered),
        "power_cut_during_payment": sum(1 for p in pays if p.status == "power_cut"),
        "by_hour": _by_hour(approved, sc.end),
    }
    nfc = {
        "model": f"ISO 14443-4 type A, {sc.nfc.kbps} kbit/s, compute x{sc.nfc.scale:g}"
        + (" (measured)" if sc.nfc.measured else ""),
        "in_field_ms_p50": round(_pct(in_field, 0.5), 1),
        "in_field_ms_p95": round(_pct(in_field, 0.95), 1),
        "in_field_ms_max": round(max(in_field, default=0.0), 1),
        "bytes_on_air_p50": int(_pct([float(p.bytes_on_air) for p in approved], 0.5)),
        "under_500_ms": sum(1 for x in in_field if x <= 500.0),
    }
    lags = [p.at_ledger - p.t for p in approved if p.at_ledger is not None]
    syncs = Counter(s["outcome"] for s in log.syncs)
    issued_bad = [v for v in violations if v.split(":", 1)[0] in ("issued", "vouchers",
                                                                   "release")]
    checks = {
        "invariant": bool(inv.get("ok")) and not issued_bad,
        "no_payment_lost": not lost,
        "double_spends_caught": not uncaught,
        "attacks_caught": not [v for v in violations if v not in issued_bad],
        "wallet_balances": not mismatches,
        "merchants_credited": not merchant_problems,
    }
    attacks = []
    for a in log.attacks:
        tagged = [p for p in pays if p.tag == a["tag"]]
        attacks.append(
            {
                **a,
                "payments": len(tagged),
                "accepted_offline": sum(1 for p in tagged if p.status == "approved"),
                "refused_by_pos": sorted({p.reason for p in tagged if p.status == "declined"}),
            }
        )
    summary: dict[str, Any] = {
        "scenario": {
            "name": sc.name,
            "source": sc.source,
            "seed": log.seed,
            "runtime": log.runtime,
            "wallets": sc.wallets.count,
            "pos": sc.pos.count,
            "days": sc.days,
        },
        "payments": payments,
        "nfc": nfc,
        "transfers": {
            "attempted": len(log.transfers),
            "done": sum(1 for t in log.transfers if t["ok"]),
            "value": sum(t["amount"] for t in log.transfers if t["ok"]),
        },
        "loads": {
            "first_loads": log.issued_initial,
            "later": sum(ld["total"] for ld in log.loads),
            "events": len(log.loads),
        },
        "syncs": {
            "total": len(log.syncs),
            "by_outcome": dict(sorted(syncs.items())),
            "over_serial_pty": sum(1 for s in log.syncs if s.get("serial")),
            "lag_s_p50": int(_pct([float(x) for x in lags], 0.5)),
            "lag_s_max": max(lags, default=0),
        },
        "faults": log.faults,
        "attacks": attacks,
        "fraud": {
            "double_spends_accepted_offline": len(double),
            "cases": [
                {k: c[k] for k in ("case", "wallet", "kind", "counter", "loss", "detected_at")}
                | {"proof_verified": bool(c.get("proof_verified")),
                   "proof": c.get("proof_why", "")}
                for c in fraud
            ],
            "uncaught": uncaught,
            "revoked": sorted(revoked),
            "fraud_loss": int(inv.get("fraud_loss", 0)),
        },
        "ledger": {
            "issued": int(inv.get("issued", 0)),
            "backed": int(inv.get("backed", 0)),
            "held": int(inv.get("held", 0)),
            "by_kind": inv.get("by_kind", {}),
            "merchants_credited": credited,
            "merchant_problems": merchant_problems,
            "refused_payments": len(led.get("refused", [])),
        },
        "adversary": {
            "attacks": attack_rows,
            "loss_bound": oracle.bound() if oracle else 0,
            "violations": violations,
            "oracle_syncs": oracle.syncs if oracle else 0,
        },
        "balances": {
            "honest_wallets": honest,
            "device_total": device_total,
            "ledger_total": ledger_total,
            "mismatches": mismatches,
            "fraud_wallets": fraud_wallets,
        },
        "lost_payments": lost,
        "checks": checks,
        "ok": all(checks.values()),
        "transcripts": _digest(log.digests),
    }
    if sc.programs:  # earmarked purses: each programme's flow, from the ledger's books
        progs = led.get("programs", [])
        summary["programmes"] = [
            {k: pr[k] for k in ("program", "kind", "state", "funder", "funded", "spent",
                                "released", "refunded", "outstanding", "refused_payments",
                                "purses", "balanced", "by_merchant")}
            for pr in progs
        ]
        summary["payments"]["from_purses"] = sum(1 for p in approved if p.earmarked)
        summary["payments"]["from_purses_value"] = sum(p.earmarked for p in approved)
        checks["programmes_balanced"] = bool(progs) and all(pr["balanced"] for pr in progs)
        summary["ok"] = all(checks.values())
    summary["wall"] = dict(log.wall)
    if log.wall.get("day_s"):
        summary["wall"]["payments_per_s"] = round(len(pays) / log.wall["day_s"], 1)
    return summary


def deterministic_part(summary: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in summary.items() if k != "wall"}


def _num(name: str) -> int:
    tail = name.rsplit("-", 1)[-1]
    return int(tail) if tail.isdigit() else 10**9


def _env_counter_hash(b64: str) -> tuple[int, str] | None:
    import base64

    import cbor2

    try:
        body_bytes = cbor2.loads(base64.b64decode(b64))[0]
        return int(cbor2.loads(body_bytes)[1]), hashlib.sha256(body_bytes).hexdigest()
    except Exception:
        return None


def _merchant_problems(log: RunLog, books: dict[str, Any], fraud: list[dict[str, Any]],
                       merchants: list[dict[str, Any]]) -> list[str]:
    """Merchants are credited exactly: the sum, at the amounts the cards signed, of the bodies
    the ledger says it credited each merchant; every honest payment to a POS and every
    payment a POS approved among them; nothing credited that no card signed."""
    import base64

    oracle = log.oracle
    if oracle is None:
        return []
    out: list[str] = []
    credited_to: dict[str, str] = {}  # body hash hex -> account
    for _w, _c, h, _status, acct in books.get("payments", []):
        if acct:
            credited_to[h] = acct
    for case in fraud:
        if case.get("credited_b"):
            got = _env_counter_hash(case.get("proof_b", ""))
            if got:
                credited_to[got[1]] = case["credited_b"]
    expect: dict[str, int] = defaultdict(int)
    for h, acct in credited_to.items():
        s = oracle.signed.get(bytes.fromhex(h))
        if s is None:
            body = next((c for c in fraud if _env_counter_hash(c.get("proof_b", "")) and
                         _env_counter_hash(c["proof_b"])[1] == h), None)  # type: ignore[index]
            if body is None:
                out.append(f"the ledger credited {acct} with body {h[:16]}, which no card "
                           f"signed")
                continue
            from tapcash.sim.run.oracle import Signed

            s = Signed.verify(base64.b64decode(body["proof_b"]), oracle.certs)
            if s is None:
                out.append(f"the ledger credited {acct} with an unsigned body {h[:16]}")
                continue
        if acct.startswith("merchant:"):
            expect[acct.split(":", 1)[1]] += s.amount
    for m in merchants:
        got = int(m.get("credited", 0))
        if got != expect.get(m["merchant"], 0):
            out.append(f"merchant {m['merchant']}: credited {got}, the bodies the ledger "
                       f"credited it add up to {expect.get(m['merchant'], 0)}")
    approved = {p.hash for p in log.payments if p.status == "approved"}
    for h, s in oracle.signed.items():
        if s.kind != 1 or s.payee not in oracle.certs.merchant:
            continue
        if not oracle.honest(s.wallet) and h.hex() not in approved:
            continue  # an attacker's body no POS approved: nobody is owed it
        lim = oracle.certs.limits.get(s.wallet, {})
        if not oracle.honest(s.wallet) and s.counter > oracle.synced.get(s.wallet, 0) + lim.get(
                proto.LIM_OFFLINE_COUNT, 10) and credited_to.get(h.hex()) is None:
            continue  # beyond the guarantee (LEDGER.md rule 3: synced counter + offline count)
        if not oracle.honest(s.wallet) and oracle.purse_refusal(s) is not None:
            continue  # earmarked value its rule does not allow: a colluding POS's own risk
        want = "merchant:" + oracle.certs.merchant[s.payee].hex()
        if credited_to.get(h.hex()) != want:
            who = "honest" if oracle.honest(s.wallet) else "approved attacker"
            out.append(f"{who} payment {s.wallet.hex()}:{s.counter} of {s.amount} to "
                       f"{s.payee.hex()} credited to {credited_to.get(h.hex())}, not {want}")
    return out


def _env_hash(b64: str) -> str:
    import base64

    from tapcash.firmware.core import cbor

    try:
        env = cbor.decode(base64.b64decode(b64))
        return hashlib.sha256(env[0]).hexdigest()
    except Exception:
        return ""


def _digest(digests: dict[str, str]) -> dict[str, Any]:
    h = hashlib.sha256()
    for name in sorted(digests):
        h.update(f"{name}={digests[name]}\n".encode())
    return {"devices": sum(1 for k in digests if not k.startswith("field:")), "all": h.hexdigest()}


def _by_hour(approved: list[Any], end_s: int) -> list[int]:
    hours = [0] * max(1, end_s // HOUR_S)
    for p in approved:
        hours[min(len(hours) - 1, p.t // HOUR_S)] += 1
    return hours


# ---- text -------------------------------------------------------------------------------------
def render_text(s: dict[str, Any]) -> list[str]:
    sc, pay, nfc, fr, led, bal = (
        s["scenario"], s["payments"], s["nfc"], s["fraud"], s["ledger"], s["balances"]
    )
    out = [
        f"Scenario {sc['name']} (seed {sc['seed']}, {sc['runtime']}): "
        f"{sc['wallets']} wallets, {sc['pos']} POS, {sc['days']} day(s)",
        f"Payments: {pay['approved']} of {pay['attempted']} approved offline, "
        f"{money(pay['approved_value'])} in value; declined: "
        + (", ".join(f"{k} {v}" for k, v in pay["declined"].items()) or "none"),
        f"Faults: {pay['torn']} torn tap(s), {pay['recovered_on_retap']} completed on re-tap; "
        f"{pay['power_cut_during_payment']} power cut(s) during a payment",
        f"Card in field: p50 {nfc['in_field_ms_p50']} ms, p95 {nfc['in_field_ms_p95']} ms, "
        f"max {nfc['in_field_ms_max']} ms ({nfc['model']}); "
        f"{nfc['bytes_on_air_p50']} bytes on air",
        f"Transfers: {s['transfers']['done']} of {s['transfers']['attempted']} "
        f"({money(s['transfers']['value'])}); loads: {money(s['loads']['first_loads'])} first, "
        f"{money(s['loads']['later'])} later (payroll / top-ups)",
        f"Syncs: {s['syncs']['total']} ({s['syncs']['over_serial_pty']} over a serial pty); "
        f"payment to ledger lag p50 {s['syncs']['lag_s_p50'] // 60} min",
    ]
    for a in s["attacks"]:
        refused = ", ".join(a["refused_by_pos"]) or "none"
        out.append(
            f"Attack {a['tag']} on {a['wallet']}: {a['accepted_offline']} of {a['payments']} "
            f"payments accepted offline, refused by a POS: {refused}"
        )
    out.append(
        f"Fraud: {fr['double_spends_accepted_offline']} double spend(s) accepted offline, "
        f"{sum(1 for c in fr['cases'] if c['proof_verified'])} fraud case(s) with verified proof, "
        f"{len(fr['uncaught'])} uncaught; {len(fr['revoked'])} wallet(s) revoked; "
        f"fraud loss {money(fr['fraud_loss'])}"
    )
    out.append(
        f"Ledger: issued {money(led['issued'])} = held {money(led['held'])} "
        f"({_held_by(led['by_kind'])}); merchants credited {money(led['merchants_credited'])}"
    )
    out.append(
        f"Wallets: {bal['honest_wallets']} honest wallets hold {money(bal['device_total'])} on "
        f"their cards, the ledger says {money(bal['ledger_total'])}; "
        f"{len(bal['mismatches'])} mismatch(es)"
    )
    for fw in bal["fraud_wallets"]:
        state = "revoked" if fw["revoked"] else "NOT revoked (no conflicting payment yet)"
        out.append(
            f"Attacked {fw['wallet']}: card shows {money(fw['device'])}, ledger holds "
            f"{money(fw['ledger'])}; {state}"
        )
    pays = s["payments"]
    if "programmes" in s:
        out.append(f"Earmarked purses paid part of {pays['from_purses']} payment(s), "
                   f"{money(pays['from_purses_value'])} in value")
    for pr in s.get("programmes", []):
        used = "released" if pr["kind"] == "prepaid" else "spent"
        out.append(
            f"Programme {pr['program']} ({pr['kind']}, {pr['state']}, {pr['purses']} purses, "
            f"funder {pr['funder']}): funded {money(pr['funded'])} = {used} "
            f"{money(pr['spent'] + pr['released'])} + refunded {money(pr['refunded'])} + "
            f"outstanding {money(pr['outstanding'])}"
            + ("" if pr["balanced"] else "  NOT BALANCED")
            + (f"; {pr['refused_payments']} refused" if pr["refused_payments"] else "")
        )
        for m in pr["by_merchant"]:
            out.append(f"  merchant {m['merchant']} (category {m['category']}): "
                       f"{m['payments']} payment(s), {money(m['amount'])}")
    adv = s.get("adversary", {})
    for a in adv.get("attacks", []):
        if a["expect"] == "fraud":
            state = (f"caught at sync #{a['caught_at_sync']} (case {a['case']})"
                     if a["caught_at_sync"] is not None else
                     "at the ledger, NOT caught" if a["reached_ledger_at_sync"] is not None
                     else "not at the ledger yet")
        else:
            state = "harmless expected"
        out.append(f"Adversary {a['id']} on {a['wallet'] or '-'}: counters {a['counters']}, "
                   f"{state}; bound {money(a['loss_bound'])}" + (f"; {a['note']}" if a["note"]
                                                                 else ""))
    for v in adv.get("violations", []):
        out.append(f"ORACLE: {v}")
    for m in s["ledger"].get("merchant_problems", []):
        out.append(f"MERCHANT: {m}")
    failed = [k for k, v in s["checks"].items() if not v]
    out.append(
        "The books balance: every payment accounted for, every double spend caught with proof."
        if s["ok"]
        else "The books do NOT balance: failed checks: " + ", ".join(failed)
    )
    return out


# ---- files -------------------------------------------------------------------------------------
def write_outputs(
    summary: dict[str, Any], log: RunLog, out_dir: Path, plots: bool = True
) -> list[Path]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    p = out / "report.json"
    p.write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    written.append(p)
    p = out / "payments.csv"
    with p.open("w", newline="") as f:
        w = csv.writer(f)
        cols = ["t", "pos", "card", "amount", "status", "reason", "wallet", "counter", "hash",
                "recovered", "in_field_ms", "bytes_on_air", "torn", "tag", "at_ledger"]
        w.writerow(cols)
        for pay in log.payments:
            w.writerow([getattr(pay, c) for c in cols])
    written.append(p)
    if plots:
        from tapcash.sim.run.plots import write_plots

        written += write_plots(log, out)
    return written
