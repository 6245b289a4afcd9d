"""Programmes: earmarked purses in the books (docs/LEDGER.md §6, PROTOCOL.md §2.9, §4.2).

A programme is one funder's subsidy or prepaid package, bound by one issuer-signed purse rule.

Accounts: `program:<id>` (the funder's programme account: funding passes through it, refunds
return to it and are held there until the programme's settling window has passed, then go back
to the funder), `purse:<id>:<wallet>` (one per purse: value loaded onto that card and not yet
seen spent). Postings:

    fund       owner:F -> program:P                  (kind program_fund, per bulk load)
    load       program:P -> purse:P:W                (purse_load, with a voucher for the card)
    spend      purse:P:W -> merchant:M               (purse_spend: subsidy; purse_release:
                                                      prepaid package, released per use)
    refund     purse:P:W -> program:P                (purse_refund: expiry or cancellation)
    reopen     program:P -> purse:P:W                (purse_reopen: a payment made before the
                                                      card learnt of the refund)
    return     program:P -> owner:F                  (program_return: what the programme account
                                                      holds, once the programme has ended and
                                                      its settling window has passed: sweep)
    late       issuer:loss -> purse:P:W              (purse_late: a payment signed before the
                                                      card learnt of the refund, arriving after
                                                      its value went back to the funder; at most
                                                      what this purse had refunded)
    shortfall  issuer:loss -> merchant:M             (purse_guarantee: a cloned card spending
                                                      a purse twice, as for the main purse)

Per programme: funded (loads) = spent + refunded (refunds - reopens - late) + outstanding (purse
balances), and refunded + late = returned (to the funder) + held (the programme account's
balance), checked by `check` from the postings and the stored balances.

The rule is applied by the firmware's own `core/purse.py`, the code the card and the POS run.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any

from tapcash.firmware.core import proto
from tapcash.firmware.core import purse as purse_rule
from tapcash.host.output import money

from . import once
from . import postings as P
from .codec import b64e, parse_load_csv
from .db import Tx
from .errors import LedgerError
from .service import HOTLIST_MAX_AGE_S, get_device, owner_key

if TYPE_CHECKING:
    from .ingest import Pay, _Apply
    from .service import Ledger

KINDS = {"subsidy": proto.PROG_SUBSIDY, "prepaid": proto.PROG_PREPAID}
KIND_NAMES = {v: k for k, v in KINDS.items()}
SPEND_KIND = {proto.PROG_SUBSIDY: "purse_spend", proto.PROG_PREPAID: "purse_release"}
PROGRAM_COLS = ("id, name, funder, kind, rule, valid_from, expires, cancelled_at, created_at, "
                "return_window")
_NAMES = [c.strip() for c in PROGRAM_COLS.split(",")]


def program_acct(pid: bytes) -> str:
    return "program:" + pid.hex()


def purse_acct(pid: bytes, wid: bytes) -> str:
    return f"purse:{pid.hex()}:{wid.hex()}"


def program_id(name: str) -> bytes:
    """A programme's id: derived from its name (8 bytes), so a pilot team names, not numbers."""
    return hashlib.sha256(b"tapcash/program\x00" + name.encode()).digest()[:8]


def program_key(pid: bytes) -> bytes:
    """Advisory lock key of a programme."""
    return hashlib.sha256(b"program:" + pid).digest()[:8]


def _row(row: tuple) -> dict[str, Any]:
    d = dict(zip(_NAMES, row, strict=True))
    d["id"] = bytes(d["id"])
    d["rule"] = bytes(d["rule"])
    d["body"] = proto.open_envelope(d["rule"])[1]
    return d


def get_program(tx: Tx, ref: str | bytes) -> dict[str, Any] | None:
    """A programme by id (bytes, or 16 hex digits) or by name."""
    if isinstance(ref, bytes):
        row = tx.one(f"SELECT {PROGRAM_COLS} FROM programs WHERE id = ?", (ref,))
    else:
        row = tx.one(f"SELECT {PROGRAM_COLS} FROM programs WHERE name = ?", (ref,))
        if row is None and len(ref) == 16:
            try:
                row = tx.one(f"SELECT {PROGRAM_COLS} FROM programs WHERE id = ?",
                             (bytes.fromhex(ref),))
            except ValueError:
                row = None
    return _row(row) if row else None


def need_program(tx: Tx, ref: str | bytes) -> dict[str, Any]:
    p = get_program(tx, ref)
    if p is None:
        shown = ref.hex() if isinstance(ref, bytes) else ref
        raise LedgerError(404, f"unknown programme {shown}")
    return p


def public_program(p: dict[str, Any], now: int) -> dict[str, Any]:
    b = p["body"]
    state = "cancelled" if p["cancelled_at"] else "expired" if now > p["expires"] else "active"
    return {
        "id": p["id"].hex(), "name": p["name"], "funder": p["funder"],
        "kind": KIND_NAMES[p["kind"]], "state": state,
        "valid_from": p["valid_from"], "expires": p["expires"],
        "merchants": [m.hex() for m in b.get(proto.RULE_MERCHANTS, [])],
        "categories": list(b.get(proto.RULE_CATEGORIES, [])),
        "cap": b.get(proto.RULE_CAP, 0), "unit": b.get(proto.RULE_UNIT, 0),
        "rule": b64e(p["rule"]), "cancelled_at": p["cancelled_at"],
    }


def _closed(p: dict[str, Any], now: int) -> bool:
    return bool(p["cancelled_at"]) or now > p["expires"]


def ended_at(p: dict[str, Any]) -> int:
    """When the programme ended: its cancellation, or its expiry when earlier (or never
    cancelled)."""
    c = p["cancelled_at"]
    return min(int(c), p["expires"]) if c else p["expires"]


def return_window(p: dict[str, Any]) -> int:
    """The programme's settling window: the hot-list age (`hotlist_max_age_s`: a POS that takes
    payments syncs within it, uploading what it took before the end) of the ledger that created
    it, recorded with it (`programs.return_window`), so the server, its sweep and the CLI on
    the database all state one `returns_at`; the default age for a programme made before."""
    w = p.get("return_window")
    return HOTLIST_MAX_AGE_S if w is None else int(w)


def returns_at(p: dict[str, Any]) -> int:
    """When the programme account's value goes back to the funder (docs/LEDGER.md §6): the
    end plus the programme's settling window (`return_window`)."""
    return ended_at(p) + return_window(p)


def _return(tx: Tx, book: P.Book, p: dict[str, Any], now: int) -> int:
    """Return what the programme account holds to the funder's account once the settling
    window has passed (the programme key locked by the caller); the amount returned. Once:
    nothing refills the account after that (its purses are closed, loads refused, and a late
    payment is covered by issuer:loss, `post`)."""
    if now < returns_at(p):
        return 0
    prog = program_acct(p["id"])
    bal = book.balance(prog)
    if bal <= 0:
        return 0
    book.move(prog, P.owner_acct(p["funder"]), bal, "program_return", p["id"].hex())
    return bal


# ---- operator operations --------------------------------------------------------------
def create(
    ledger: Ledger, name: str, funder: str, kind: str, *, expires: int,
    merchants: list[bytes] | None = None, categories: list[int] | None = None,
    valid_from: int | None = None, cap: int = 0, unit: int = 0,
) -> dict[str, Any]:
    """Create a programme and sign its rule. 400 for a bad rule, 404 unknown funder, 409 when
    a programme of that name exists (with another rule)."""
    if not name or len(name) > 64 or not all(c.isalnum() or c in "-_." for c in name):
        raise LedgerError(400, "name: 1-64 characters of letters, digits and -_.")
    if kind not in KINDS:
        raise LedgerError(400, f"kind: one of {', '.join(KINDS)}")
    now = ledger.now()
    start = now if valid_from is None else valid_from
    if expires <= now or expires < start:
        raise LedgerError(400, "expires: must be in the future and not before valid_from")
    for m in merchants or []:
        if not isinstance(m, bytes) or len(m) != 8:
            raise LedgerError(400, "merchants: 8-byte merchant ids (16 hex digits)")
    if not merchants and not categories:
        raise LedgerError(400, "a programme names at least one merchant or category")
    if any(not isinstance(c, int) or isinstance(c, bool) or c < 0 for c in categories or []):
        raise LedgerError(400, "categories: non-negative integers")
    if cap < 0 or unit < 0:
        raise LedgerError(400, "cap, unit: non-negative integers")
    pid = program_id(name)
    rule = ledger.issuer.rule(pid, kind=KINDS[kind], expires=expires, merchants=merchants,
                              categories=categories, valid_from=start, cap=cap, unit=unit,
                              funder=funder)
    purse_rule.check_rule(proto.open_envelope(rule)[1])

    def tx_fn(tx: Tx) -> dict[str, Any]:
        tx.lock([program_key(pid), owner_key(funder)])
        if tx.one("SELECT 1 FROM owners WHERE name = ?", (funder,)) is None:
            raise LedgerError(404, f"unknown owner {funder} (the funder deposits first)")
        old = get_program(tx, pid)
        if old is not None:
            raise LedgerError(409, f"programme {name} exists")
        tx.execute(f"INSERT INTO programs ({PROGRAM_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                   (pid, name, funder, KINDS[kind], rule, start, expires, None, now,
                    ledger.hotlist_max_age_s))
        P.create_accounts(tx, [program_acct(pid)])
        return public_program(need_program(tx, pid), now)

    return ledger.db.write(tx_fn)


def load(ledger: Ledger, program: str, csv_text: str, reference: str) -> dict[str, Any]:
    """Load purses in bulk (CSV `wallet id hex, amount`), all lines or none: the funder pays
    into the programme account (refunded value there first), each line becomes a voucher for
    the card and a posting into its purse account."""
    if not reference or len(reference) > 64:
        raise LedgerError(400, "reference: 1-64 characters, unique per programme load")
    lines = parse_load_csv(csv_text, "programme load", once_per_wallet=True)

    def tx_fn(tx: Tx) -> dict[str, Any]:
        p = need_program(tx, program)
        pid = p["id"]
        tx.lock([program_key(pid), owner_key(p["funder"])] + [w for _, w, _ in lines]
                + once.lock_keys("program_load", "", reference))  # unique across programmes
        p = need_program(tx, program)  # as a cancel that held the lock left it
        now = ledger.now()
        if _closed(p, now):
            raise LedgerError(409, f"programme {p['name']} is cancelled or expired")
        made = tx.one("SELECT pr.name FROM program_loads pl JOIN programs pr ON pr.id = "
                      "pl.program WHERE pl.reference = ?", (reference,))
        if made:
            where = "" if made[0] == p["name"] else (
                f" (for programme {made[0]}: a reference is unique across programmes)")
            raise LedgerError(409, f"programme load {reference} was already made{where}")
        book = P.Book(tx, now)
        total = sum(a for _, _, a in lines)
        prog, funder = program_acct(pid), P.owner_acct(p["funder"])
        need = total - book.balance(prog)
        if need > 0:
            if book.balance(funder) < need:
                raise LedgerError(409, f"{funder}: insufficient funds: the load needs "
                                       f"{money(need)} more, {money(book.balance(funder))} "
                                       f"there")
            book.move(funder, prog, need, "program_fund", f"{pid.hex()}:{reference}")
        out, errs = [], []
        unit = int(p["body"].get(proto.RULE_UNIT, 0) or 0)
        for lineno, wid, amount in lines:
            if unit and amount % unit:  # the card pays whole units: the rest could never be
                errs.append({"line": lineno, "error": f"{money(amount)} is not a whole number "
                                                      f"of units of {money(unit)}"})
                continue
            w = get_device(tx, wid)
            if w is None or w["kind"] != proto.KIND_WALLET:
                errs.append({"line": lineno, "error": f"unknown wallet {wid.hex()}"})
                continue
            if w["revoked"]:
                errs.append({"line": lineno, "error": f"wallet {wid.hex()} is revoked"})
                continue
            row = tx.one("SELECT closed_at FROM purses WHERE program = ? AND wallet = ?",
                         (pid, wid))
            if row is not None and row[0] is not None:
                errs.append({"line": lineno, "error": f"wallet {wid.hex()}: purse closed"})
                continue
            held = _open_purses(tx, wid, pid, now) if row is None else 0
            if held >= proto.MAX_PURSES:  # the card would refuse it (6919), holding back
                errs.append({"line": lineno, "error": (  # every voucher after it
                    f"wallet {wid.hex()} holds {held} open purses, as many as a card holds: "
                    f"none is free for this programme")})
                continue
            number = int(tx.scalar("SELECT next_voucher FROM devices WHERE id = ?", (wid,)))
            ref = f"program:{pid.hex()}:{reference}:{lineno}"
            env = ledger.issuer.purse_voucher(wid, number, amount, p["rule"], ref=ref.encode())
            tx.execute("UPDATE devices SET next_voucher = ? WHERE id = ?", (number + 1, wid))
            tx.execute("INSERT INTO vouchers (wallet, number, amount, source, ref, envelope, at) "
                       "VALUES (?, ?, ?, ?, ?, ?, ?)",
                       (wid, number, amount, proto.VSRC_PROGRAM, ref, env, now))
            acct = purse_acct(pid, wid)
            if row is None:
                tx.execute("INSERT INTO purses (program, wallet, loaded) VALUES (?, ?, 0)",
                           (pid, wid))
                P.create_accounts(tx, [acct])
            tx.execute("UPDATE purses SET loaded = loaded + ? WHERE program = ? AND wallet = ?",
                       (amount, pid, wid))
            book.move(prog, acct, amount, "purse_load", f"{wid.hex()}:{number}")
            out.append({"line": lineno, "wallet": wid.hex(), "number": number,
                        "amount": amount, "voucher": b64e(env)})
        if errs:
            raise LedgerError(409, {"error": "programme load refused: nothing was loaded",
                                    "lines": errs})
        tx.execute("INSERT INTO program_loads (reference, program, lines, total, at) "
                   "VALUES (?, ?, ?, ?, ?)", (reference, pid, len(lines), total, now))
        book.flush()
        return {"program": p["name"], "reference": reference, "total": total,
                "vouchers": out, "funder_balance": book.balance(funder)}

    return ledger.db.write(tx_fn)


def _open_purses(tx: Tx, wallet: bytes, other_than: bytes, now: int) -> int:
    """The wallet's purses of other programmes still open and active: a purse of a closed
    (expired, cancelled) programme is cleared from the card at its sync, before the vouchers
    that sync loads, so its slot is free for them."""
    return int(tx.scalar(
        "SELECT COUNT(*) FROM purses pu JOIN programs pr ON pr.id = pu.program WHERE "
        "pu.wallet = ? AND pu.program <> ? AND pu.closed_at IS NULL AND pr.cancelled_at IS NULL "
        "AND pr.expires >= ?", (wallet, other_than, now), default=0) or 0)


def _close_purses(tx: Tx, book: P.Book, p: dict[str, Any], now: int,
                  wallet: bytes | None = None) -> tuple[int, int]:
    """Refund the open purses of a closed programme (of one wallet, or all) to the programme
    account; returns (purses closed, amount refunded)."""
    pid = p["id"]
    sql = "SELECT wallet FROM purses WHERE program = ? AND closed_at IS NULL"
    args: tuple = (pid,)
    if wallet is not None:
        sql += " AND wallet = ?"
        args = (pid, wallet)
    n = amount = 0
    for (wid,) in tx.all(sql, args):
        wid = bytes(wid)
        acct = purse_acct(pid, wid)
        bal = book.balance(acct)
        if bal:
            book.move(acct, program_acct(pid), bal, "purse_refund", f"{pid.hex()}:{wid.hex()}")
        tx.execute("UPDATE purses SET closed_at = ? WHERE program = ? AND wallet = ?",
                   (now, pid, wid))
        n += 1
        amount += bal
    return n, amount


def cancel(ledger: Ledger, program: str) -> dict[str, Any]:
    """Cancel a programme: every purse's value goes back to the programme account now, the
    cards' purses are cleared at their next sync; the programme account's value goes back to
    the funder when the settling window has passed (at once for a programme that had expired
    longer ago than that; else at a sweep). Idempotent."""
    def tx_fn(tx: Tx) -> dict[str, Any]:
        p = need_program(tx, program)
        tx.lock([program_key(p["id"])])
        p = need_program(tx, program)  # as a cancel that held the lock left it
        now = ledger.now()
        if not p["cancelled_at"]:
            tx.execute("UPDATE programs SET cancelled_at = ? WHERE id = ?", (now, p["id"]))
            p["cancelled_at"] = now
        book = P.Book(tx, now)
        n, amount = _close_purses(tx, book, p, now)
        back = _return(tx, book, p, now)
        book.flush()
        return {"program": p["name"], "cancelled_at": p["cancelled_at"], "closed": n,
                "refunded": amount, "returned": back,
                "returns_at": returns_at(p)}

    return ledger.db.write(tx_fn)


def sweep(ledger: Ledger) -> dict[str, Any]:
    """Refund the purses of every expired programme (the books at expiry; run it daily), and
    return the programme account's value to the funder of every programme ended longer ago
    than its settling window (`returns_at`)."""

    def tx_fn(tx: Tx) -> dict[str, Any]:
        now = ledger.now()
        book = P.Book(tx, now)
        closed = refunded = returned = 0
        ended = sorted(bytes(r[0]) for r in tx.all(
            "SELECT id FROM programs WHERE cancelled_at IS NOT NULL OR expires < ?", (now,)))
        for pid in ended:  # one order, so concurrent sweeps take the locks alike
            tx.lock([program_key(pid)])
            p = need_program(tx, pid)
            if not _closed(p, now):
                continue
            n, a = _close_purses(tx, book, p, now)
            closed += n
            refunded += a
            returned += _return(tx, book, p, now)
        book.flush()
        return {"closed": closed, "refunded": refunded, "returned": returned}

    return ledger.db.write(tx_fn)


# ---- ingest: payments with an earmarked part ---------------------------------------------
class _View:
    """What one ingest transaction has read about programmes and payees (cached)."""

    def __init__(self, tx: Tx) -> None:
        self.tx = tx
        self.programs: dict[bytes, dict[str, Any] | None] = {}
        self.purses: dict[tuple[bytes, bytes], tuple | None] = {}
        self.locked: set[bytes] = set()  # programme keys this transaction holds (post)

    def program(self, pid: bytes) -> dict[str, Any] | None:
        if pid not in self.programs:
            self.programs[pid] = get_program(self.tx, pid)
        return self.programs[pid]

    def purse(self, pid: bytes, wid: bytes) -> tuple | None:
        """(loaded, closed_at, cleared_counter) of a purse, or None when never loaded."""
        key = (pid, wid)
        if key not in self.purses:
            self.purses[key] = self.tx.one(
                "SELECT loaded, closed_at, cleared_counter FROM purses WHERE program = ? AND "
                "wallet = ?", (pid, wid))
        return self.purses[key]


def _view(ap: _Apply) -> _View:
    v = ap.__dict__.get("_programs")
    if v is None:
        v = ap.__dict__["_programs"] = _View(ap.tx)
    return v


def judge(ap: _Apply, pay: Pay, payee: dict[str, Any] | None) -> str | None:
    """None when the earmarked part of a payment follows its programme's rule; else the
    reason it does not: the payment is then refused, and for purse_rule / purse_expired (only
    a tampered card signs those) a case is opened."""
    v = _view(ap)
    if pay.program is None:
        return "unknown purse"  # purse != 0 without a well-formed earmarked part: no proof
    if pay.purse < 1 or pay.kind != proto.PAYKIND_POS:
        return "purse_rule"
    p = v.program(pay.program)
    if p is None or v.purse(pay.program, pay.wallet) is None:
        return "purse_rule"  # no such programme, or never loaded onto this card
    rule = p["body"]
    if payee is None or payee["kind"] != proto.KIND_POS:
        return "purse_rule"
    category = proto.open_envelope(payee["cert"])[1].get(proto.CERT_CATEGORY, 0)
    if not purse_rule.share_ok(rule, pay.earmarked, pay.amount):
        return "purse_rule"
    t = pay.time
    allowed_time = purse_rule.allows(rule, payee["merchant"], category, t)
    allowed_any_time = purse_rule.allows(rule, payee["merchant"], category,
                                         rule[proto.RULE_EXPIRES])
    if not allowed_any_time:
        return "purse_rule"  # a merchant or category the rule never allows
    if not allowed_time:
        return "purse_expired"  # signed with a time outside the rule's window
    row = v.purse(pay.program, pay.wallet)
    if row is not None and row[2] is not None and pay.counter > int(row[2]):
        return "purse_expired"  # signed after the card had cleared the purse
    return None


def post(ap: _Apply, pay: Pay, dst: str, ref: str) -> int:
    """Post the earmarked part of a payment within its rule: from the purse account, reopened
    from the programme account when the purse was refunded meanwhile, or from issuer:loss
    (`purse_late`) for what of this purse's refund went back to the funder since; any rest from
    issuer:loss (a card spending a purse twice). Returns the loss."""
    v = _view(ap)
    assert pay.program is not None
    p = v.program(pay.program)
    assert p is not None
    book = ap.book
    acct = purse_acct(pay.program, pay.wallet)
    prog = program_acct(pay.program)
    if pay.program not in v.locked:
        # serialized with a sweep or cancel refunding this purse and returning the programme
        # account (they read both under this lock): both are read here first after it (the
        # ingest took it already with the wallets' locks, _Apply.run: no deadlock with a load)
        ap.tx.lock([program_key(pay.program)])
        v.locked.add(pay.program)
    short = pay.earmarked - book.balance(acct)
    if short > 0:
        refunded = _net_refunded(ap, pay.program, pay.wallet)
        if refunded > 0:
            reopen = min(short, refunded, book.balance(prog))
            if reopen > 0:
                book.move(prog, acct, reopen, "purse_reopen", ref)
                short -= reopen
            # the rest of this purse's refund went back to the funder: the honest late
            # payment is credited all the same, the issuer covering it
            late = min(short, refunded - max(reopen, 0))
            if late > 0:
                book.move(P.LOSS, acct, late, "purse_late", ref)
                short -= late
    covered = pay.earmarked - max(short, 0)
    if covered:
        book.move(acct, dst, covered, SPEND_KIND[p["kind"]], ref)
    loss = max(short, 0)
    if loss:
        book.move(P.LOSS, dst, loss, "purse_guarantee", ref)
    return loss


def _net_refunded(ap: _Apply, pid: bytes, wid: bytes) -> int:
    """Refunds of this purse not yet reopened nor covered late (postings, plus this
    batch's)."""
    tx = ap.tx
    acct, prog = purse_acct(pid, wid), program_acct(pid)
    total = "SELECT COALESCE(SUM(amount), 0) FROM postings WHERE src = ? AND dst = ? AND kind = ?"
    out = int(tx.scalar(total, (acct, prog, "purse_refund"), default=0))
    back = int(tx.scalar(total, (prog, acct, "purse_reopen"), default=0))
    back += int(tx.scalar(total, (P.LOSS, acct, "purse_late"), default=0))
    for src, dst, amount, kind, _ref, _at in ap.book._rows:
        if (src, dst, kind) == (acct, prog, "purse_refund"):
            out += amount
        elif (src, dst, kind) in ((prog, acct, "purse_reopen"), (P.LOSS, acct, "purse_late")):
            back += amount
    return out - back


def record(ap: _Apply, pay: Pay, payee: dict[str, Any] | None, status: str) -> None:
    """Keep the earmarked part for the programme reports."""
    if pay.program is None:
        return
    merchant = payee["merchant"] if payee and payee["kind"] == proto.KIND_POS else None
    category = (proto.open_envelope(payee["cert"])[1].get(proto.CERT_CATEGORY, 0)
                if merchant else None)
    sql = ("INSERT INTO purse_payments (wallet, counter, hash, program, earmarked, merchant, "
           "category, status, at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)")
    sql = ap.tx.ignoring_conflict(sql)
    ap.tx.execute(sql, (pay.wallet, pay.counter, pay.hash, pay.program, pay.earmarked,
                        merchant, category, status, ap.now))


def after_payments(ap: _Apply) -> None:
    """At a wallet's ingest: close (refund) its purses of closed programmes, so this sync's
    update clears them on the card; note the purses the card no longer holds (its status)."""
    dev = ap.batch.device
    if dev["kind"] != proto.KIND_WALLET:
        return
    tx = ap.tx
    rows = tx.all("SELECT program, closed_at, clear_update, cleared_counter FROM purses "
                  "WHERE wallet = ?", (dev["id"],))
    if not rows:
        return
    held = set()
    for item in ap.batch.status.get(proto.ST_PURSES) or []:
        if isinstance(item, list) and item and isinstance(item[0], bytes):
            held.add(item[0])
    counter = ap.batch.status.get(proto.ST_COUNTER)
    applied = ap.batch.status.get(proto.ST_LOADS)
    v = _view(ap)
    for pid, closed_at, clear_update, cleared in rows:
        pid = bytes(pid)
        p = v.program(pid)
        if p is None:
            continue
        if closed_at is None and _closed(p, ap.now):
            tx.lock([program_key(pid)])  # not closed twice with a concurrent sweep's
            _close_purses(tx, ap.book, p, ap.now, dev["id"])
        if clear_update is None or cleared is not None:
            continue
        if pid in held:  # cleared, yet on the card: it LOADed the purse's voucher after the
            # clear (the sync APPLYs updates first) or has not applied it: send it again
            tx.execute("UPDATE purses SET clear_update = NULL WHERE program = ? AND wallet = ?",
                       (pid, dev["id"]))
        elif (isinstance(counter, int) and isinstance(applied, int)
              and applied >= _last_purse_voucher(tx, pid, dev["id"])):
            # gone after the card loaded it (not merely not loaded yet)
            tx.execute("UPDATE purses SET cleared_counter = ? WHERE program = ? AND wallet = ?",
                       (counter, pid, dev["id"]))


def _last_purse_voucher(tx: Tx, pid: bytes, wallet: bytes) -> int:
    """The number of the wallet's last voucher loading this purse (programme loads' refs)."""
    return int(tx.scalar("SELECT COALESCE(MAX(number), 0) FROM vouchers WHERE wallet = ? AND "
                         "source = ? AND ref LIKE ?",
                         (wallet, proto.VSRC_PROGRAM, f"program:{pid.hex()}:%"), default=0) or 0)


def clear_list(tx: Tx, wallet: bytes) -> tuple[list[bytes], bool]:
    """(programme ids to clear on this card, True when one of them was never sent): every
    closed purse the card has not yet shown gone. Absolute, like the synced counter."""
    rows = tx.all("SELECT program, clear_update FROM purses WHERE wallet = ? AND closed_at IS "
                  "NOT NULL AND cleared_counter IS NULL", (wallet,))
    return sorted(bytes(r[0]) for r in rows), any(r[1] is None for r in rows)


def cleared_in(tx: Tx, wallet: bytes, pids: list[bytes], number: int) -> None:
    for pid in pids:
        tx.execute("UPDATE purses SET clear_update = ? WHERE program = ? AND wallet = ? AND "
                   "clear_update IS NULL", (number, pid, wallet))


# ---- reports and the per-programme check -------------------------------------------------
def _sums(tx: Tx, pid: bytes) -> dict[str, int]:
    prefix = f"purse:{pid.hex()}:"
    prog = program_acct(pid)
    out = {"funded": 0, "spent": 0, "released": 0, "refunds": 0, "reopened": 0,
           "guaranteed": 0, "late": 0, "returned": 0, "paid_in": 0}
    for kind, total in tx.all(
        "SELECT kind, COALESCE(SUM(amount), 0) FROM postings WHERE (src LIKE ? OR dst LIKE ? OR "
        "src = ? OR dst = ?) GROUP BY kind", (prefix + "%", prefix + "%", prog, prog)):
        total = int(total)
        if kind == "purse_load":
            out["funded"] += total
        elif kind == "purse_spend":
            out["spent"] += total
        elif kind == "purse_release":
            out["released"] += total
        elif kind == "purse_refund":
            out["refunds"] += total
        elif kind == "purse_reopen":
            out["reopened"] += total
        elif kind == "purse_late":
            out["late"] += total
    # the programme account's side by the accounts each posting joins, whatever its kind:
    # what came in from outside its purses (funding), what left for outside them (returns)
    for src, total in tx.all(
        "SELECT src, COALESCE(SUM(amount), 0) FROM postings WHERE (src = ? AND dst NOT LIKE ?) "
        "OR (dst = ? AND src NOT LIKE ?) GROUP BY src", (prog, prefix + "%", prog, prefix + "%")):
        out["returned" if src == prog else "paid_in"] += int(total)
    out["guaranteed"] = _guaranteed(tx, pid)
    out["outstanding"] = int(tx.scalar("SELECT COALESCE(SUM(balance), 0) FROM accounts WHERE "
                                       "name LIKE ?", (prefix + "%",), default=0))
    out["program_account"] = int(tx.scalar("SELECT balance FROM accounts WHERE name = ?",
                                           (prog,), default=0) or 0)
    # refunds not reopened for a payment nor covered late (the report's and check's "refunded")
    out["refunded"] = out["refunds"] - out["reopened"] - out["late"]
    return out


def _guaranteed(tx: Tx, pid: bytes) -> int:
    """What issuer:loss paid merchants beyond this programme's purses (`purse_guarantee`,
    posted under the payment's ref: `wallet:counter`, or with the body's hash for a second body
    of one counter), whether or not the purse covered part of that payment."""
    refs = set()
    for w, c, h, stored in tx.all(
            "SELECT pp.wallet, pp.counter, pp.hash, p.hash FROM purse_payments pp LEFT JOIN "
            "payments p ON p.wallet = pp.wallet AND p.counter = pp.counter WHERE pp.program = ?",
            (pid,)):
        first = f"{bytes(w).hex()}:{int(c)}"
        refs.add(first if stored is not None and bytes(stored) == bytes(h)
                 else f"{first}:{bytes(h).hex()[:16]}")
    return sum(int(a) for r, a in tx.all(
        "SELECT ref, amount FROM postings WHERE kind = 'purse_guarantee'") if r in refs)


def books_time(tx: Tx) -> int:
    """The latest time the ledger stamped in these books (its clock when it last wrote them:
    postings, programmes created or cancelled, purses closed at expiry); 0 when empty."""
    t = 0
    for sql in ("SELECT MAX(at) FROM postings", "SELECT MAX(created_at) FROM programs",
                "SELECT MAX(cancelled_at) FROM programs", "SELECT MAX(closed_at) FROM purses"):
        v = tx.scalar(sql)
        if v is not None and int(v) > t:
            t = int(v)
    return t


def ledger_time(tx: Tx, wall: int) -> int:
    """The time of the ledger that wrote these books, as a report judges a programme's state
    by it: the wall clock `wall`, or the books' latest stamp when that is later. A ledger never
    stamps a time its clock has not reached, so on a live ledger this is the wall clock; on a
    simulated one (its clock ahead: `tapcash sim run` starts in 2027) it is the simulation's
    last moment, the clock its sweep refunded expired purses by."""
    return max(wall, books_time(tx))


def report(tx: Tx, now: int, program: str | None = None) -> list[dict[str, Any]]:
    """Per programme: funded, spent (subsidy) / released (prepaid) by merchant and category,
    refunded (returned to the funder, held in the programme account), outstanding, refused,
    purses; `check` says whether the books balance for it; `returns_at` by the programme's
    own settling window (`return_window`), whoever reads the database.
    The state (active, expired, cancelled) is judged at `now` (ledger_time for a database
    read outside its ledger), which each row gives as `as_of`."""
    if program is not None:
        progs = [need_program(tx, program)]
    else:
        progs = [_row(r) for r in tx.all(f"SELECT {PROGRAM_COLS} FROM programs ORDER BY name")]
    out = []
    for p in progs:
        s = _sums(tx, p["id"])
        by = []
        for merchant, category, n, total in tx.all(
            "SELECT merchant, category, COUNT(*), SUM(earmarked) FROM purse_payments WHERE "
            "program = ? AND status = 'posted' GROUP BY merchant, category ORDER BY merchant, "
            "category", (p["id"],)):
            by.append({"merchant": bytes(merchant).hex(), "category": int(category),
                       "payments": int(n), "amount": int(total)})
        refused = tx.one("SELECT COUNT(*), COALESCE(SUM(earmarked), 0) FROM purse_payments "
                         "WHERE program = ? AND status <> 'posted'", (p["id"],))
        purses = tx.one("SELECT COUNT(*), COUNT(closed_at), COUNT(cleared_counter) FROM purses "
                        "WHERE program = ?", (p["id"],))
        pub = public_program(p, now)
        refunded = s["refunded"]
        used = s["spent"] + s["released"]
        ended = pub["state"] != "active"
        out.append({
            "program": p["name"], "id": pub["id"], "kind": pub["kind"], "state": pub["state"],
            "as_of": now, "funder": p["funder"], "expires": p["expires"],
            "funded": s["funded"], "spent": s["spent"], "released": s["released"],
            "refunded": refunded, "outstanding": s["outstanding"],
            "returned": s["returned"], "held": s["program_account"],
            "late_after_return": s["late"],
            "returns_at": returns_at(p) if ended else None,
            "return_window": return_window(p),
            "guaranteed_beyond_purse": s["guaranteed"],
            "programme_account": s["program_account"],
            "by_merchant": by,
            "refused_payments": int(refused[0]), "refused_amount": int(refused[1]),
            "purses": int(purses[0]), "purses_closed": int(purses[1]),
            "purses_cleared_on_card": int(purses[2]),
            "balanced": (s["funded"] == used + refunded + s["outstanding"]
                         and _split_ok(s)),
        })
    return out


def _split_ok(s: dict[str, int]) -> bool:
    """refunded + late (+ funding not loaded) = returned + held: the programme account's side,
    `returned` and `paid_in` by the accounts postings join, `held` its stored balance."""
    return (s["refunded"] + s["late"] + s["paid_in"] - s["funded"]
            == s["returned"] + s["program_account"])


def _payment_envelope(tx: Tx, ref: str) -> bytes | None:
    """The wallet-signed payment a posting ref names: `wallet:counter` (the first body) or
    `wallet:counter:hash prefix` (a conflicting body, kept in its fraud case)."""
    parts = ref.split(":")
    try:
        wid, counter = bytes.fromhex(parts[0]), int(parts[1])
    except (ValueError, IndexError):
        return None
    if len(parts) == 2:
        env = tx.scalar("SELECT envelope FROM payments WHERE wallet = ? AND counter = ?",
                        (wid, counter))
        return bytes(env) if env is not None else None
    for hash_b, proof_b in tx.all("SELECT hash_b, proof_b FROM fraud_cases WHERE wallet = ? "
                                  "AND counter = ?", (wid, counter)):
        if bytes(hash_b).hex().startswith(parts[2]):
            return bytes(proof_b)
    return None


def check(tx: Tx) -> dict[str, Any]:
    """The books per programme: funded = spent + refunded + outstanding (from the postings and
    the stored purse balances), no purse posting to a merchant its rule does not allow, and no
    closed purse holding value. `ok` False names what is wrong."""
    problems: list[dict[str, Any]] = []
    books: list[dict[str, Any]] = []
    programs = [_row(r) for r in tx.all(f"SELECT {PROGRAM_COLS} FROM programs ORDER BY name")]
    for p in programs:
        pid = p["id"]
        s = _sums(tx, pid)
        used = s["spent"] + s["released"]
        refunded = s["refunded"]
        books.append({"program": p["name"], "kind": KIND_NAMES[p["kind"]],
                      "funded": s["funded"], "used": used,
                      "refunded": refunded, "outstanding": s["outstanding"],
                      "returned": s["returned"], "held": s["program_account"],
                      "late": s["late"]})
        if s["funded"] != used + refunded + s["outstanding"]:
            problems.append({"program": p["name"], "error": "funded != spent + refunded + "
                             "outstanding", "funded": s["funded"], "spent": used,
                             "refunded": refunded, "outstanding": s["outstanding"]})
        if not _split_ok(s):
            problems.append({"program": p["name"], "error": "refunded + late != returned + "
                             "held", "refunded": refunded, "late": s["late"],
                             "returned": s["returned"], "held": s["program_account"]})
        # value leaving the programme account for outside its purses: only a return, to the
        # funder's account, after the programme ended
        funder = P.owner_acct(p["funder"])
        for dst, kind, amount, at in tx.all(
                "SELECT dst, kind, amount, at FROM postings WHERE src = ? AND dst NOT LIKE ?",
                (program_acct(pid), f"purse:{pid.hex()}:%")):
            if dst != funder or kind != "program_return" or int(at) < ended_at(p):
                problems.append({"program": p["name"], "error": "programme value returned "
                                 "other than to its funder after its end", "dst": dst,
                                 "kind": kind, "amount": int(amount), "at": int(at)})
        rule = p["body"]
        prefix = f"purse:{pid.hex()}:"
        # every purse posting to a merchant: that payment's payee allowed by the rule
        for dst, ref in tx.all("SELECT dst, ref FROM postings WHERE src LIKE ? AND kind IN "
                               "('purse_spend', 'purse_release')", (prefix + "%",)):
            ok = False
            env = _payment_envelope(tx, ref)
            if env is not None:
                payee = proto.open_envelope(env)[1].get(proto.PAY_PAYEE)
                row = tx.one("SELECT merchant, cert FROM devices WHERE id = ?", (payee,))
                if row is not None and dst == P.merchant_acct(bytes(row[0])):
                    cat = proto.open_envelope(bytes(row[1]))[1].get(proto.CERT_CATEGORY, 0)
                    ok = purse_rule.allows(rule, bytes(row[0]), cat, rule[proto.RULE_EXPIRES])
            if not ok:
                problems.append({"program": p["name"], "error": "purse value credited to a "
                                 "payee the rule does not allow", "posting": ref, "dst": dst})
        for (wid,) in tx.all("SELECT wallet FROM purses WHERE program = ? AND closed_at IS NOT "
                             "NULL", (pid,)):
            bal = int(tx.scalar("SELECT balance FROM accounts WHERE name = ?",
                                (purse_acct(pid, bytes(wid)),), default=0) or 0)
            if bal:  # a late payment reopens a closed purse and spends it in one transaction
                problems.append({"program": p["name"], "error": "closed purse holds value",
                                 "wallet": bytes(wid).hex(), "balance": bal})
    return {"ok": not problems, "programs": len(programs), "problems": problems, "books": books}
