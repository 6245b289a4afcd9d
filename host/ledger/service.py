"""The ledger's operations other than ingest: devices, owners, loads, payroll, revocation,
renewal, hot lists, pending updates and merchant settlement. Each is one transaction."""

from __future__ import annotations

import hashlib
import json
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from tapcash.firmware.core import proto
from tapcash.host.issuer import Issuer

from . import once
from . import postings as P
from .codec import b64e, check_amount, env_bytes, parse_load_csv
from .db import Database, Tx
from .errors import LedgerError
from .migrations import LATEST, current_version

HOTLIST_MAX_AGE_S = proto.DEFAULT_POS_CONFIG[proto.CFG_HOT_MAX_AGE_S]
HOTLIST_LOCK = b"hotlist\x00"
# A POS sync always leaves the POS with a hot list signed at most this long ago (a new version
# is signed when the latest is older), so neither its age (7 days) nor its payment count
# (2,000 per version) can keep a POS that syncs stale; at most one version per interval.
HOTLIST_REFRESH_S = 60
SYNCED_CHUNK = 1024  # payments read at a time by wallet_synced


def owner_key(name: str) -> bytes:
    """Advisory lock key of an owner account."""
    return hashlib.sha256(b"owner:" + name.encode()).digest()[:8]


def merchant_key(mid: bytes) -> bytes:
    return hashlib.sha256(b"merchant:" + mid).digest()[:8]

DEVICE_COLS = (
    "id, kind, pubkey, cert, serial, expires, merchant, owner, limits, revoked, revoked_at, "
    "revoke_reason, renewed, next_voucher, vouchers_applied, next_update, synced_counter, "
    "synced_spent, "
    "upd_hotlist, upd_serial, acked_upto, last_status, registered_at, top_status"
)
_DEVICE_NAMES = [c.strip() for c in DEVICE_COLS.split(",")]


def device_dict(row: tuple) -> dict[str, Any]:
    d = dict(zip(_DEVICE_NAMES, row, strict=True))
    for k in ("id", "pubkey", "cert", "merchant", "last_status", "top_status"):
        if d[k] is not None:
            d[k] = bytes(d[k])
    d["limits"] = {int(k): int(v) for k, v in json.loads(d["limits"] or "{}").items()}
    d["revoked"] = bool(d["revoked"])
    d["renewed"] = bool(d["renewed"])
    d["acked_upto"] = d["acked_upto"] or 0
    return d


def get_device(tx: Tx, device_id: bytes) -> dict[str, Any] | None:
    row = tx.one(f"SELECT {DEVICE_COLS} FROM devices WHERE id = ?", (device_id,))
    return device_dict(row) if row else None


def need_device(tx: Tx, device_id: bytes, kind: int | None = None) -> dict[str, Any]:
    d = get_device(tx, device_id)
    if d is None:
        raise LedgerError(404, f"unknown device {device_id.hex()}")
    if kind is not None and d["kind"] != kind:
        what = "wallet" if kind == proto.KIND_WALLET else "POS"
        raise LedgerError(400, f"device {device_id.hex()} is not a {what}")
    return d


def public_device(d: dict[str, Any]) -> dict[str, Any]:
    out = {
        "id": d["id"].hex(),
        "kind": "wallet" if d["kind"] == proto.KIND_WALLET else "pos",
        "public_key": d["pubkey"].hex(),
        "cert": b64e(d["cert"]),
        "serial": d["serial"],
        "expires": d["expires"],
        "revoked": d["revoked"],
        "revoked_at": d["revoked_at"],
        "revoke_reason": d["revoke_reason"],
        "acked_upto": d["acked_upto"] or 0,
        "next_update": d["next_update"],
    }
    if d["kind"] == proto.KIND_WALLET:
        out.update(
            owner=d["owner"],
            limits={str(k): v for k, v in sorted(d["limits"].items())},
            next_voucher=d["next_voucher"],
            vouchers_applied=d["vouchers_applied"],
            synced_counter=d["synced_counter"],
        )
    else:
        out["merchant"] = d["merchant"].hex()
    return out


class Ledger:
    """The service object behind the HTTP routes. Thread-safe: every call is a transaction."""

    def __init__(
        self,
        db: Database,
        issuer: Issuer,
        *,
        clock: Callable[[], float] = time.time,
        hotlist_max_age_s: int = HOTLIST_MAX_AGE_S,
        verify_procs: int | None = None,
    ) -> None:
        from .verify import Verifier, procs_from_env

        procs = procs_from_env() if verify_procs is None else verify_procs
        # Signature checks in helper processes alongside each batch's transaction (verify.py)
        self.verifier = Verifier(procs) if procs else None
        self.db = db
        self.issuer = issuer
        self.clock = clock
        self.hotlist_max_age_s = hotlist_max_age_s
        self._keys: dict[bytes, tuple[int, bytes]] = {}  # device id -> (kind, public key)
        self._keys_lock = threading.Lock()
        have = db.read(current_version)
        if have != LATEST:
            raise LedgerError(500, f"database schema is version {have}, code needs {LATEST}: "
                                   "run `tapcash ledger migrate`")
        if db.read(lambda tx: tx.scalar("SELECT COUNT(*) FROM hotlists")) == 0:
            db.write(lambda tx: self._publish_hotlist(tx, only_if_empty=True))

    def now(self) -> int:
        return int(self.clock())

    # ---- device keys (immutable per device id: renewal keeps the key) ------------------
    def device_keys(self, tx: Tx, ids: set[bytes]) -> dict[bytes, tuple[int, bytes]]:
        out: dict[bytes, tuple[int, bytes]] = {}
        missing = []
        for i in ids:
            k = self._keys.get(i)
            if k is None:
                missing.append(i)
            else:
                out[i] = k
        for n in range(0, len(missing), 500):
            chunk = missing[n : n + 500]
            marks = ",".join("?" * len(chunk))
            for dev, kind, pk in tx.all(
                f"SELECT id, kind, pubkey FROM devices WHERE id IN ({marks})", chunk
            ):
                out[bytes(dev)] = (int(kind), bytes(pk))
        with self._keys_lock:
            for i, k in out.items():
                self._keys[i] = k
        return out

    def keys_of(self, ids: set[bytes]) -> dict[bytes, tuple[int, bytes]]:
        """device_keys outside a transaction: from the cache alone when it holds every id (no
        database round trip: one read transaction cost a server about 95 us of CPU and
        PostgreSQL 65), else one read."""
        keys = self._keys
        if all(i in keys for i in ids):
            return {i: keys[i] for i in ids}
        return self.db.read(lambda tx: self.device_keys(tx, ids))

    def device_key(self, device_id: bytes) -> tuple[int, bytes] | None:
        """(kind, public key) of a registered device, None for an unknown id (keys_of)."""
        return self.keys_of({device_id}).get(device_id)

    # ---- registration ------------------------------------------------------------------
    def register(self, cert_env: bytes, owner: str | None = None) -> dict[str, Any]:
        try:
            _b, body, _s = proto.open_envelope(cert_env)
        except proto.ApduError:
            raise LedgerError(400, "cert: malformed envelope") from None
        kind = body.get(proto.CERT_KIND)
        if kind not in (proto.KIND_WALLET, proto.KIND_POS):
            raise LedgerError(400, "cert: unknown device kind")
        try:
            body = proto.verify_cert(cert_env, self.issuer.trusted_keys, kind, self.now())
        except proto.ApduError as e:
            reason = {proto.SW_BAD_SIGNATURE: "bad signature or unknown issuer key",
                      proto.SW_EXPIRED: "expired"}.get(e.sw, "malformed certificate")
            raise LedgerError(400, f"cert: {reason}") from None
        dev = body[proto.CERT_ID]
        if kind == proto.KIND_POS:
            merchant = body.get(proto.CERT_MERCHANT)
            if not isinstance(merchant, bytes) or len(merchant) != 8:
                raise LedgerError(400, "cert: POS certificate without an 8-byte merchant id")
            if owner is not None:
                raise LedgerError(400, "owner: only wallets have an owner")
        else:
            merchant = None
        limits = body.get(proto.CERT_LIMITS) or {}
        serial = body.get(proto.CERT_SERIAL, 1)

        def tx_fn(tx: Tx) -> dict[str, Any]:
            tx.lock([dev])
            old = get_device(tx, dev)
            if old is not None:
                if old["cert"] == cert_env and old["owner"] == owner:
                    return public_device(old)  # idempotent
                raise LedgerError(409, f"device {dev.hex()} is already registered")
            if owner is not None:
                self._ensure_owner(tx, owner)
            tx.execute(
                "INSERT INTO devices (id, kind, pubkey, cert, serial, expires, merchant, owner, "
                "limits, registered_at, upd_serial) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (dev, kind, body[proto.CERT_KEY], cert_env, serial, body[proto.CERT_EXPIRES],
                 merchant, owner, json.dumps({str(k): v for k, v in limits.items()}),
                 self.now(), serial),
            )
            if kind == proto.KIND_WALLET:
                P.create_accounts(tx, [P.wallet_acct(dev), P.staged_acct(dev)])
            else:
                P.create_accounts(tx, [P.merchant_acct(merchant)])
            d = get_device(tx, dev)
            assert d is not None
            return public_device(d)

        return self.db.write(tx_fn)

    def device(self, device_id: bytes) -> dict[str, Any]:
        return self.db.read(lambda tx: public_device(need_device(tx, device_id)))

    # ---- owners ------------------------------------------------------------------------
    @staticmethod
    def _check_owner_name(name: str) -> None:
        if not name or len(name) > 64 or not all(c.isalnum() or c in "-_.@" for c in name):
            raise LedgerError(400, "owner: 1-64 characters of letters, digits and -_.@")

    def _ensure_owner(self, tx: Tx, name: str) -> None:
        self._check_owner_name(name)
        if tx.one("SELECT 1 FROM owners WHERE name = ?", (name,)) is None:
            sql = "INSERT INTO owners (name, created_at) VALUES (?, ?)"
            tx.execute(tx.ignoring_conflict(sql, "(name)"), (name, self.now()))
            P.create_accounts(tx, [P.owner_acct(name)])

    def add_owner(self, owner: str) -> dict[str, Any]:
        """Open an owner's online account (balance 0); an existing one is left as it is."""
        self._check_owner_name(owner)

        def tx_fn(tx: Tx) -> dict[str, Any]:
            tx.lock([owner_key(owner)])
            created = tx.one("SELECT 1 FROM owners WHERE name = ?", (owner,)) is None
            self._ensure_owner(tx, owner)
            return {"owner": owner, "created": created}

        return self.db.write(tx_fn) | self.owner(owner)

    def deposit(self, owner: str, amount: int, reference: str = "") -> dict[str, Any]:
        """Credit an owner's account; a reference is applied once (once.py: the same deposit
        again gets the first answer, another deposit under it a 409)."""
        check_amount(amount)
        self._check_owner_name(owner)
        request = {"owner": owner, "amount": amount}

        def tx_fn(tx: Tx) -> dict[str, Any]:
            tx.lock([owner_key(owner)] + once.lock_keys("deposit", "", reference))
            first = once.replay(tx, "deposit", "", reference, request)
            if first is not None:
                return first
            self._ensure_owner(tx, owner)
            book = P.Book(tx, self.now())
            ref = f"{owner}:{uuid.uuid4().hex}:{reference}"
            book.move(P.FLOAT, P.owner_acct(owner), amount, "deposit", ref)
            book.flush()
            answer = {"owner": owner, "balance": book.balance(P.owner_acct(owner)), "ref": ref}
            return once.record(tx, "deposit", "", reference, request, answer, self.now())

        return self.db.write(tx_fn)

    def owner(self, owner: str) -> dict[str, Any]:
        self._check_owner_name(owner)

        def tx_fn(tx: Tx) -> dict[str, Any]:
            bal = tx.scalar("SELECT balance FROM accounts WHERE name = ?", (P.owner_acct(owner),))
            if bal is None:
                raise LedgerError(404, f"unknown owner {owner}")
            wallets = [bytes(r[0]).hex() for r in
                       tx.all("SELECT id FROM devices WHERE owner = ? ORDER BY id", (owner,))]
            return {"owner": owner, "balance": int(bal), "wallets": wallets}

        return self.db.read(tx_fn)

    # ---- loads (vouchers) --------------------------------------------------------------
    def _issue_voucher(
        self, tx: Tx, book: P.Book, wallet: dict[str, Any], src: str, amount: int,
        source: int, ref: str, check_cap: bool = True,
    ) -> tuple[int, bytes]:
        wid = wallet["id"]
        if wallet["revoked"]:
            raise LedgerError(409, f"wallet {wid.hex()} is revoked")
        if check_cap:
            cap = wallet["limits"].get(proto.LIM_BALANCE_MAX,
                                       proto.DEFAULT_LIMITS[proto.LIM_BALANCE_MAX])
            if book.balance(P.wallet_acct(wid)) + amount > cap:
                raise LedgerError(409, f"wallet {wid.hex()}: load would exceed its balance "
                                       f"maximum {cap}")
        if book.balance(src) < amount and src not in P.CONTRA:
            raise LedgerError(409, f"{src}: insufficient funds")
        number = int(tx.scalar("SELECT next_voucher FROM devices WHERE id = ?", (wid,)))
        env = self.issuer.voucher(wid, number, amount, source=source, ref=ref.encode())
        tx.execute("UPDATE devices SET next_voucher = ? WHERE id = ?", (number + 1, wid))
        tx.execute(
            "INSERT INTO vouchers (wallet, number, amount, source, ref, envelope, at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (wid, number, amount, source, ref, env, self.now()),
        )
        kind = {proto.VSRC_TOPUP: "load", proto.VSRC_TRANSFER: "release",
                proto.VSRC_PAYROLL: "payroll"}[source]
        book.move(src, P.wallet_acct(wid), amount, kind, f"{wid.hex()}:{number}")
        return number, env

    def load(self, wallet_id: bytes, amount: int, reference: str = "",
             owner: str | None = None) -> dict[str, Any]:
        """A top-up voucher for a wallet from an owner's account. A reference is per wallet
        (many cards loaded under one label are a load each) and applied once: the same load
        again gets the same voucher, another under it a 409 (once.py)."""
        check_amount(amount)
        scope = wallet_id.hex()

        def tx_fn(tx: Tx) -> dict[str, Any]:
            w = need_device(tx, wallet_id, proto.KIND_WALLET)
            payer = owner or w["owner"]
            tx.lock([wallet_id] + ([owner_key(payer)] if payer else [])
                    + once.lock_keys("load", scope, reference))
            w = need_device(tx, wallet_id, proto.KIND_WALLET)
            if payer is None:
                raise LedgerError(409, f"wallet {wallet_id.hex()} has no owner: name the payer")
            request = {"wallet": wallet_id.hex(), "amount": amount, "owner": payer}
            first = once.replay(tx, "load", scope, reference, request)
            if first is not None:
                return first
            if tx.one("SELECT 1 FROM owners WHERE name = ?", (payer,)) is None:
                raise LedgerError(404, f"unknown owner {payer}")
            book = P.Book(tx, self.now())
            ref = f"topup:{wallet_id.hex()}:{w['next_voucher']}:{reference}"
            number, env = self._issue_voucher(tx, book, w, P.owner_acct(payer), amount,
                                              proto.VSRC_TOPUP, ref)
            book.flush()
            answer = {"wallet": wallet_id.hex(), "number": number, "amount": amount,
                      "voucher": b64e(env), "owner_balance": book.balance(P.owner_acct(payer))}
            return once.record(tx, "load", scope, reference, request, answer, self.now())

        return self.db.write(tx_fn)

    def payroll(self, payer: str, csv_text: str, reference: str) -> dict[str, Any]:
        """Load many wallets from one owner account: all lines or none."""
        if not reference or len(reference) > 64:
            raise LedgerError(400, "reference: 1-64 characters, unique per payroll batch")
        lines = parse_load_csv(csv_text, "payroll", refuse_bare_cr=True)

        def tx_fn(tx: Tx) -> dict[str, Any]:
            # the reference's lock too: two payers' batches under one reference are one
            # after the other (the second a 409, not the primary key's failure)
            tx.lock([w for _, w, _ in lines] + [owner_key(payer)]
                    + once.lock_keys("payroll", "", reference))
            if tx.one("SELECT 1 FROM owners WHERE name = ?", (payer,)) is None:
                raise LedgerError(404, f"unknown owner {payer}")
            if tx.one("SELECT 1 FROM payroll_batches WHERE reference = ?", (reference,)):
                raise LedgerError(409, f"payroll {reference} was already paid")
            book = P.Book(tx, self.now())
            out, errs = [], []
            for lineno, wid, amount in lines:
                w = get_device(tx, wid)
                if w is None or w["kind"] != proto.KIND_WALLET:
                    errs.append({"line": lineno, "error": f"unknown wallet {wid.hex()}"})
                    continue
                try:
                    number, env = self._issue_voucher(
                        tx, book, w, P.owner_acct(payer), amount, proto.VSRC_PAYROLL,
                        f"payroll:{reference}:{lineno}")
                except LedgerError as e:
                    errs.append({"line": lineno, "error": str(e.detail)})
                    continue
                out.append({"line": lineno, "wallet": wid.hex(), "number": number,
                            "amount": amount, "voucher": b64e(env)})
            if errs:
                raise LedgerError(409, {"error": "payroll refused: nothing was loaded",
                                        "lines": errs})
            total = sum(a for _, _, a in lines)
            tx.execute("INSERT INTO payroll_batches (reference, payer, lines, total, at) "
                       "VALUES (?, ?, ?, ?, ?)", (reference, payer, len(lines), total, self.now()))
            book.flush()
            return {"reference": reference, "payer": payer, "total": total, "vouchers": out,
                    "payer_balance": book.balance(P.owner_acct(payer))}

        return self.db.write(tx_fn)

    # ---- revocation and hot lists ------------------------------------------------------
    def _publish_hotlist(self, tx: Tx, only_if_empty: bool = False) -> int:
        tx.lock([HOTLIST_LOCK])
        version = int(tx.scalar("SELECT COALESCE(MAX(version), 0) FROM hotlists", default=0))
        if only_if_empty and version:
            return version
        revoked = [bytes(r[0]) for r in tx.all("SELECT id FROM devices WHERE revoked = 1")]
        issued = self.now()
        env = self.issuer.hotlist(version + 1, issued, revoked)
        tx.execute("INSERT INTO hotlists (version, issued, envelope) VALUES (?, ?, ?)",
                   (version + 1, issued, env))
        return version + 1

    def revoke_in(self, tx: Tx, device_id: bytes, reason: str) -> bool:
        """Mark a device revoked (inside a transaction). True when it was not yet."""
        cur = tx.execute("UPDATE devices SET revoked = 1, revoked_at = ?, revoke_reason = ? "
                         "WHERE id = ? AND revoked = 0", (self.now(), reason[:200], device_id))
        return cur.rowcount == 1

    def revoke(self, device_id: bytes, reason: str) -> dict[str, Any]:
        def tx_fn(tx: Tx) -> dict[str, Any]:
            tx.lock([device_id])
            need_device(tx, device_id)
            changed = self.revoke_in(tx, device_id, reason or "operator")
            version = self._publish_hotlist(tx) if changed else self._hotlist_version(tx)
            return {"device": device_id.hex(), "revoked": True, "changed": changed,
                    "hotlist_version": version}

        return self.db.write(tx_fn)

    def reinstate(self, device_id: bytes, reason: str, force: bool = False) -> dict[str, Any]:
        """Take a revoked device off the hot list (a new version is signed). A wallet with fraud
        cases stays revoked unless `force`: the operator then takes the risk knowingly."""
        def tx_fn(tx: Tx) -> dict[str, Any]:
            tx.lock([device_id])
            need_device(tx, device_id)
            if not force and tx.one("SELECT 1 FROM fraud_cases WHERE wallet = ?", (device_id,)):
                raise LedgerError(409, f"device {device_id.hex()} has fraud cases: reinstate "
                                       "it only knowingly (force)")
            cur = tx.execute("UPDATE devices SET revoked = 0, revoked_at = NULL, "
                             "revoke_reason = ? WHERE id = ? AND revoked = 1",
                             ("reinstated: " + (reason or "operator")[:180], device_id))
            changed = cur.rowcount == 1
            version = self._publish_hotlist(tx) if changed else self._hotlist_version(tx)
            return {"device": device_id.hex(), "revoked": False, "changed": changed,
                    "hotlist_version": version}

        return self.db.write(tx_fn)

    @staticmethod
    def _hotlist_version(tx: Tx) -> int:
        return int(tx.scalar("SELECT COALESCE(MAX(version), 0) FROM hotlists", default=0))

    def hotlist_in(self, tx: Tx) -> tuple[int, int, bytes]:
        row = tx.one("SELECT version, issued, envelope FROM hotlists "
                     "ORDER BY version DESC LIMIT 1")
        if row is None:
            raise LedgerError(503, "no hot list published yet")
        return int(row[0]), int(row[1]), bytes(row[2])

    def hotlist(self) -> dict[str, Any]:
        version, issued, env = self.db.read(self.hotlist_in)
        _b, body, _s = proto.open_envelope(env)
        return {"version": version, "issued": issued,
                "revoked": [d.hex() for d in body[proto.HOT_REVOKED]], "envelope": b64e(env)}

    # ---- renewal -----------------------------------------------------------------------
    def renew(self, device_id: bytes, expires: int | None = None,
              limits: dict[int, int] | None = None) -> dict[str, Any]:
        def tx_fn(tx: Tx) -> dict[str, Any]:
            tx.lock([device_id])
            d = need_device(tx, device_id)
            if d["revoked"]:
                raise LedgerError(409, f"device {device_id.hex()} is revoked")
            exp = expires if expires is not None else self.now() + 2 * 365 * 24 * 3600
            if exp <= self.now():
                raise LedgerError(400, "expires: must be in the future")
            serial = d["serial"] + 1
            if d["kind"] == proto.KIND_WALLET:
                merged = dict(d["limits"])
                for k, v in (limits or {}).items():
                    if k not in proto.DEFAULT_LIMITS or not isinstance(v, int) or v < 0:
                        raise LedgerError(400, f"limits: unknown limit {k} or bad value")
                    merged[k] = v
                cert = self.issuer.certify_wallet(device_id, d["pubkey"], expires=exp,
                                                  limits=merged, serial=serial)
            else:
                if limits:
                    raise LedgerError(400, "limits: only wallets have limits")
                merged = {}
                _b, old, _s = proto.open_envelope(d["cert"])
                cert = self.issuer.certify_pos(device_id, d["pubkey"], d["merchant"],
                                               expires=exp,
                                               category=old.get(proto.CERT_CATEGORY, 0),
                                               serial=serial)
            old_hash = proto.body_hash(proto.open_envelope(d["cert"])[0])
            tx.execute("INSERT INTO cert_hashes (device, hash, serial) VALUES (?, ?, ?)",
                       (device_id, old_hash, d["serial"]))  # a POS may still name the old one
            tx.execute("UPDATE devices SET cert = ?, serial = ?, expires = ?, limits = ?, "
                       "renewed = 1 WHERE id = ?",
                       (cert, serial, exp, json.dumps({str(k): v for k, v in merged.items()}),
                        device_id))
            d = need_device(tx, device_id)
            update = self.mint_update(tx, d, force=True)
            return {"device": device_id.hex(), "serial": serial, "cert": b64e(cert),
                    "update": b64e(update) if update else None}

        return self.db.write(tx_fn)

    # ---- updates -----------------------------------------------------------------------
    def wallet_synced(self, tx: Tx, d: dict[str, Any],
                      known: dict[int, tuple[int, int, bytes, str | None]] | None = None
                      ) -> tuple[int, int]:
        """(c, spent): the ledger holds every payment 1..c of this wallet (c >= the last synced
        counter), and their amounts add up to spent (the wallet's cumulative spent at c).
        `known`: counter -> (counter, amount, ...) of payments rows the caller's transaction
        inserted (ingest's batch): the run of them from the synced counter on is not read
        back; the database answers from where it ends."""
        c, spent = d["synced_counter"], d["synced_spent"]
        if known:
            while c + 1 in known:
                c += 1
                spent += known[c][1]
        while True:  # a chunk at a time: past a gap, nothing more is read
            rows = tx.all("SELECT counter, amount FROM payments WHERE wallet = ? AND counter > ? "
                          f"ORDER BY counter LIMIT {SYNCED_CHUNK}", (d["id"], c))
            for counter, amount in rows:
                if int(counter) != c + 1:
                    return c, spent
                c += 1
                spent += int(amount)
            if len(rows) < SYNCED_CHUNK:
                return c, spent

    def mint_update(self, tx: Tx, d: dict[str, Any], force: bool = False,
                    known: dict[int, tuple[int, int, bytes, str | None]] | None = None
                    ) -> bytes | None:
        """Sign a new update for the device when it has something new to carry: a newer hot
        list for a POS (re-signed first when the latest is older than HOTLIST_REFRESH_S, so a
        POS that syncs is always fresh), a higher synced counter for a wallet, a renewed
        certificate (`force`).
        Synced counter and hot list are absolute, so a later update supersedes an earlier one;
        a renewed certificate travels only in the update minted for the renewal (devices refuse
        a certificate whose serial they already have), so pending lists every update from the
        last certificate-bearing one on.
        `known`: the payments rows the caller's transaction inserted (wallet_synced)."""
        if d["revoked"]:
            return None
        fields: dict[int, object] = {}
        fresh = force
        if force and d["renewed"]:
            fields[proto.UPD_CERT] = d["cert"]
        synced, spent = d["synced_counter"], d["synced_spent"]
        hot_version = d["upd_hotlist"]
        clear: list[bytes] = []
        if d["kind"] == proto.KIND_WALLET:
            from . import programs

            synced, spent = self.wallet_synced(tx, d, known)
            if synced > d["synced_counter"]:
                fresh = True
            if synced:
                fields[proto.UPD_SYNCED_COUNTER] = synced
                fields[proto.UPD_SYNCED_SPENT] = spent
            clear, new_clear = programs.clear_list(tx, d["id"])
            if clear:  # every closed purse the card has not shown gone: absolute
                fields[proto.UPD_PURSE_CLEAR] = clear
                fresh = fresh or new_clear
        else:
            hot_version, issued, hot_env = self.hotlist_in(tx)
            if issued + HOTLIST_REFRESH_S <= self.now():
                self._publish_hotlist(tx)
                hot_version, issued, hot_env = self.hotlist_in(tx)
            if hot_version > d["upd_hotlist"]:
                fresh = True
            fields[proto.UPD_HOTLIST] = hot_env
        if not fresh:
            return None
        number = d["next_update"]
        env = self.issuer.update(d["id"], number, fields)
        tx.execute("INSERT INTO updates (device, number, envelope, has_cert, at) "
                   "VALUES (?, ?, ?, ?, ?)",
                   (d["id"], number, env, int(proto.UPD_CERT in fields), self.now()))
        tx.execute("UPDATE devices SET next_update = ?, synced_counter = ?, synced_spent = ?, "
                   "upd_hotlist = ?, upd_serial = ? WHERE id = ?",
                   (number + 1, synced, spent, hot_version, d["serial"], d["id"]))
        d.update(next_update=number + 1, synced_counter=synced, synced_spent=spent,
                 upd_hotlist=hot_version, upd_serial=d["serial"])
        if clear:
            from . import programs

            programs.cleared_in(tx, d["id"], clear, number)
        return env

    def pending(self, device_id: bytes) -> dict[str, Any]:
        """What waits for a device (`pending_in`). Read only, except for a wallet holding a
        purse closed (expired, cancelled) since its last update: a card with nothing to upload
        is only asked this, so the clearing update is minted here (docs/LEDGER.md §6)."""
        from . import programs

        def needs_clear(tx: Tx) -> bool:
            d = need_device(tx, device_id)
            return (d["kind"] == proto.KIND_WALLET and not d["revoked"]
                    and programs.clear_list(tx, device_id)[1])

        def mint(tx: Tx) -> dict[str, Any]:
            tx.lock([device_id])
            d = need_device(tx, device_id)
            if d["kind"] == proto.KIND_WALLET and not d["revoked"]:
                self.mint_update(tx, d)
            return self.pending_in(tx, d)

        if self.db.read(needs_clear):
            return self.db.write(mint)
        return self.db.read(lambda tx: self.pending_in(tx, need_device(tx, device_id)))

    def pending_in(self, tx: Tx, d: dict[str, Any]) -> dict[str, Any]:
        vouchers = []
        if d["kind"] == proto.KIND_WALLET:
            vouchers = [
                {"number": int(n), "amount": int(a), "source": int(s), "voucher": b64e(bytes(e))}
                for n, a, s, e in tx.all(
                    "SELECT number, amount, source, envelope FROM vouchers WHERE wallet = ? "
                    "AND number > ? ORDER BY number", (d["id"], d["vouchers_applied"]))
            ]
        # From the last update carrying a certificate (else the last one) on, in one query
        # (every upload asks: not three).
        rows = tx.all(
            "SELECT number, envelope FROM updates WHERE device = ? AND number >= COALESCE("
            "(SELECT MAX(number) FROM updates WHERE device = ? AND has_cert = 1), "
            "(SELECT MAX(number) FROM updates WHERE device = ?)) ORDER BY number",
            (d["id"], d["id"], d["id"]))
        last = int(rows[-1][0]) if rows else 0
        updates = [b64e(bytes(e)) for _n, e in rows]
        return {
            "device": d["id"].hex(),
            "vouchers": vouchers,
            "updates": updates,
            "update": updates[-1] if updates else None,
            "update_number": last,
        }

    # ---- merchants ---------------------------------------------------------------------
    def settle(self, merchant: bytes, reference: str = "") -> dict[str, Any]:
        """Pay out a merchant's whole balance (it leaves the system through issuer:float).
        A reference is per merchant (`settle --all` pays each under one) and applied once: a
        settlement made under it is answered again, nothing more is paid (once.py); a call
        that paid nothing leaves the reference unused."""
        scope = merchant.hex()
        request = {"merchant": scope}

        def tx_fn(tx: Tx) -> dict[str, Any]:
            tx.lock([merchant_key(merchant)] + once.lock_keys("settle", scope, reference))
            acct = P.merchant_acct(merchant)
            book = P.Book(tx, self.now())
            if not book.exists(acct):
                raise LedgerError(404, f"unknown merchant {merchant.hex()}")
            first = once.replay(tx, "settle", scope, reference, request)
            if first is not None:
                return first
            amount = book.balance(acct)
            sid = None
            if amount > 0:
                cur = tx.execute("INSERT INTO settlements (merchant, amount, reference, at) "
                                 "VALUES (?, ?, ?, ?) RETURNING id",
                                 (merchant, amount, reference, self.now()))
                sid = int(cur.fetchone()[0])
                book.move(acct, P.FLOAT, amount, "settle", f"settlement:{sid}")
                book.flush()
            answer = {"merchant": merchant.hex(), "amount": amount, "settlement": sid,
                      "reference": reference}
            if sid is None:
                return answer | {"replayed": False}
            return once.record(tx, "settle", scope, reference, request, answer, self.now())

        return self.db.write(tx_fn)

    def invariant(self) -> dict[str, Any]:
        """The books' invariant, and per programme funded = spent + refunded + outstanding
        (host/ledger/invariant.py: the same check as `tapcash ledger check`)."""
        from .invariant import check

        return self.db.read(check)

    def issuer_info(self) -> dict[str, Any]:
        return {"key_id": self.issuer.key_id.hex(), "public_key": self.issuer.public_key.hex()}


def cert_of(value: object) -> bytes:
    return env_bytes(value, "cert")
