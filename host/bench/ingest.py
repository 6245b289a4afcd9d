"""`tapcash bench ingest`: ledger ingest throughput (verify + dedup + post) vs raw PyNaCl verify.

Wallet journals of signed payments are generated batch by batch (signed with the firmware's
`proto.seal` under issuer-made certificates), ingested in-process through the same code path as
`POST /v1/ingest` minus HTTP (base64 + CBOR decode, signature checks, dedup, postings, one
transaction per batch), and discarded: memory stays bounded whatever `--entries` is. Raw PyNaCl
verify throughput is measured in the same run on the same messages; the ratio is the figure of
merit (1.0 = the ledger costs nothing beyond the signature check).
"""

from __future__ import annotations

import base64
import json
import os
import resource
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from tapcash.firmware.core import cbor, ed25519, proto

from . import report

BIG = 10**15
# Limits so high that no synthetic payment is refused (the wallets never sync in between).
NO_LIMITS = {proto.LIM_BALANCE_MAX: BIG, proto.LIM_PAYMENT_MAX: BIG,
             proto.LIM_OFFLINE_COUNT: BIG, proto.LIM_OFFLINE_AMOUNT: BIG}


def synthetic_wallet_log(
    seed: bytes, wallet_id: bytes, payee: bytes, first_counter: int, n: int, prev: bytes,
    first_seq: int, amount: int = 1, start_balance: int = BIG, journal: bytes = bytes(32),
) -> tuple[list[tuple[int, bytes]], bytes, bytes]:
    """n signed payments of one wallet as its journal records [(seq, CBOR record)], the
    wallet-signed status closing the export (its journal digest chained on from `journal`,
    the value before first_seq), and the new payment chain head. `start_balance` is the card's
    balance before the first of them (the ledger checks every signed balance field against
    its books)."""
    from tapcash.host.ledger.chain import records_digest

    records = []
    balance = start_balance
    for i in range(n):
        counter = first_counter + i
        balance -= amount
        body = {
            proto.PAY_WALLET: wallet_id, proto.PAY_COUNTER: counter, proto.PAY_AMOUNT: amount,
            proto.PAY_PAYEE: payee, proto.PAY_CHALLENGE: counter.to_bytes(16, "big"),
            proto.PAY_PREV: prev, proto.PAY_PURSE: 0, proto.PAY_TIME: 0,
            proto.PAY_BALANCE: balance, proto.PAY_KIND: proto.PAYKIND_POS,
        }
        body_bytes = cbor.encode(body)
        env = cbor.encode([body_bytes, ed25519.sign(seed, proto.TAG_PAYMENT + body_bytes)])
        prev = proto.body_hash(body_bytes)
        records.append((first_seq + i, cbor.encode({proto.REC_TYPE: proto.RT_PAYMENT,
                                                     proto.REC_SIGNED: env})))
    last = first_seq + n - 1
    status = proto.seal(proto.TAG_STATUS, {
        proto.ST_DEVICE: wallet_id, proto.ST_SEQ: last, proto.ST_COUNTER: first_counter + n - 1,
        proto.ST_BALANCE: balance, proto.ST_PREV: prev, proto.ST_PENDING: 0, proto.ST_LOADS: 1,
        proto.ST_DIGEST: records_digest(records, journal),
    }, seed)
    return records, status, prev


class SyntheticPos:
    """A registered POS that takes payments and journals them as a POS does (payment, its own
    signed receipt, the payer certificate's hash); `batch` is the upload of what it took since
    the last one."""

    def __init__(self, ledger, issuer, wallet_cert: bytes) -> None:  # noqa: ANN001
        self.seed, self.id = os.urandom(32), os.urandom(8)
        ledger.register(issuer.certify_pos(self.id, ed25519.public_key(self.seed),
                                           os.urandom(8), expires=2**40))
        self.cert_hash = proto.body_hash(proto.open_envelope(wallet_cert)[0])
        self.seq, self.journal = 0, bytes(32)

    def batch(self, payments: list[bytes]) -> tuple[list[dict], str]:
        """(records, status) in the wire form of POST /v1/ingest for these payment envelopes."""
        from tapcash.host.ledger.chain import records_digest

        records = []
        for env in payments:
            self.seq += 1
            pb = cbor.decode(env)[0]
            body = cbor.decode(pb)
            receipt = proto.seal(proto.TAG_RECEIPT, {
                proto.RCPT_POS: self.id, proto.RCPT_WALLET: body[proto.PAY_WALLET],
                proto.RCPT_COUNTER: body[proto.PAY_COUNTER],
                proto.RCPT_AMOUNT: body[proto.PAY_AMOUNT],
                proto.RCPT_PAYMENT_HASH: proto.body_hash(pb), proto.RCPT_SEQ: self.seq},
                self.seed)
            records.append((self.seq, cbor.encode({
                proto.REC_TYPE: proto.RT_PAYMENT, proto.REC_SIGNED: env,
                proto.REC_RECEIPT: receipt, proto.REC_CERT_HASH: self.cert_hash})))
        self.journal = records_digest(records, self.journal)
        status = proto.seal(proto.TAG_STATUS, {proto.ST_DEVICE: self.id, proto.ST_SEQ: self.seq,
                                               proto.ST_DIGEST: self.journal}, self.seed)
        return ([{"seq": s, "record": base64.b64encode(r).decode()} for s, r in records],
                base64.b64encode(status).decode())


OFFLINE_LOAD = 10**9


class OfflineWallet:
    """One registered, loaded wallet that never syncs, and the POS it pays in turn."""

    def __init__(self, ledger, issuer, pos: int = 2) -> None:  # noqa: ANN001
        ledger.deposit("bench", BIG)
        self.seed, self.id = os.urandom(32), os.urandom(8)
        cert = issuer.certify_wallet(self.id, ed25519.public_key(self.seed), expires=2**40,
                                     limits=NO_LIMITS)
        ledger.register(cert, "bench")
        ledger.load(self.id, OFFLINE_LOAD, owner="bench")
        self.pos = [SyntheticPos(ledger, issuer, cert) for _ in range(pos)]
        self.counter, self.prev = 1, bytes(32)

    def pay(self, payee: bytes, n: int, balance_off: int = 0) -> list[bytes]:
        """n payment envelopes to `payee`; `balance_off` added to every signed balance field
        (0: the books' own)."""
        records, _st, self.prev = synthetic_wallet_log(
            self.seed, self.id, payee, self.counter, n, self.prev, 1,
            start_balance=OFFLINE_LOAD - self.counter + 1 + balance_off)
        self.counter += n
        return [cbor.decode(r)[proto.REC_SIGNED] for _s, r in records]


def run_offline(db_url: str, uploads: int, batch: int) -> dict[str, Any]:
    """A wallet that never syncs pays two POS in turn; each POS uploads `batch` of its
    payments at a time, `uploads` in all. Seconds per upload, in order."""
    from tapcash.host.issuer import Issuer
    from tapcash.host.ledger.db import Database
    from tapcash.host.ledger.ingest import ingest
    from tapcash.host.ledger.migrations import migrate
    from tapcash.host.ledger.service import Ledger

    db = Database(db_url)
    try:
        migrate(db)
        issuer = Issuer.generate()
        ledger = Ledger(db, issuer)
        w = OfflineWallet(ledger, issuer)
        times = []
        for i in range(uploads):
            pos = w.pos[i % 2]
            body, st = pos.batch(w.pay(pos.id, batch))
            t = time.perf_counter()
            res = ingest(ledger, pos.id, body, st)
            times.append(time.perf_counter() - t)
            if res["accepted"] != batch:
                raise RuntimeError(f"upload {i}: {res['accepted']} of {batch} accepted")
        return {"upload_s": times}
    finally:
        db.close()


class Fleet:
    """Wallets registered with a ledger (a Ledger, or a LedgerClient: same calls), loaded,
    each with its chain state."""

    def __init__(self, ledger, issuer, wallets: int) -> None:  # noqa: ANN001
        self.ledger = ledger
        self.pos_id = os.urandom(8)
        pos_seed = os.urandom(32)
        ledger.register(issuer.certify_pos(self.pos_id, ed25519.public_key(pos_seed),
                                           os.urandom(8), expires=2**40))
        lim = NO_LIMITS
        ledger.deposit("bench", BIG)
        self.wallets = []
        for _ in range(wallets):
            seed, wid = os.urandom(32), os.urandom(8)
            ledger.register(issuer.certify_wallet(wid, ed25519.public_key(seed), expires=2**40,
                                                  limits=lim), "bench")
            ledger.load(wid, BIG // (wallets + 1), owner="bench")
            self.wallets.append({"seed": seed, "id": wid, "counter": 0, "seq": 0,
                                 "prev": bytes(32), "journal": bytes(32),
                                 "balance": BIG // (wallets + 1)})

    def batches(self, entries: int, batch: int) -> Iterator[tuple[bytes, list, bytes]]:
        done = 0
        i = 0
        while done < entries:
            w = self.wallets[i % len(self.wallets)]
            i += 1
            n = min(batch, entries - done)
            records, status, w["prev"] = synthetic_wallet_log(
                w["seed"], w["id"], self.pos_id, w["counter"] + 1, n, w["prev"], w["seq"] + 1,
                journal=w["journal"], start_balance=w["balance"])
            w["journal"] = cbor.decode(cbor.decode(status)[0])[proto.ST_DIGEST]
            w["counter"] += n
            w["balance"] -= n
            w["seq"] += n
            done += n
            yield w["id"], records, status


def _signed_messages(records: list[tuple[int, bytes]]) -> list[bytes]:
    """signature || tag || body of each payment of `records`: what crypto_sign_open takes."""
    msgs = []
    for _seq, rec in records:
        body_bytes, sig = cbor.decode(cbor.decode(rec)[proto.REC_SIGNED])
        msgs.append(sig + proto.TAG_PAYMENT + body_bytes)
    return msgs


def raw_verify_rate(records: list[tuple[int, bytes]], pk: bytes) -> float:
    """Raw PyNaCl verifies per second over the payments of `records` (decoded beforehand)."""
    from nacl.bindings import crypto_sign_open

    msgs = _signed_messages(records)
    t = time.perf_counter()
    for m in msgs:
        crypto_sign_open(m, pk)
    return len(msgs) / (time.perf_counter() - t)


# `--profile`: where one payment's CPU goes, in the ingesting process (process CPU time, so a
# busy machine slows the parts but does not add to them) and, on PostgreSQL, in the server
# process serving the ledger's connection (/proc/<pid>/schedstat: the same machine). Timers
# wrap the ledger's functions for a run of its own, after the plain runs; signatures inline.
PARTS = ("signatures", "decode and checks", "apply: SQL", "apply: Python", "digest, commit, rest",
         "server")
PART_NOTES = {
    "signatures": "the batch's signature checks (libsodium), the status's included",
    "decode and checks": "base64, CBOR, hashes, field checks, the reads before the transaction",
    "apply: SQL": "the transaction's statements, client side (SQLite: all of it)",
    "apply: Python": "dedup, fraud rules, postings, the journal chain, the ack",
    "digest, commit, rest": "the batch digest (re-ingest check), BEGIN/COMMIT, the rest",
    "server": "PostgreSQL's backend for the ledger's connection",
}


class _Profiler:
    """Process CPU per part of each ingest call, while installed (`with`)."""

    def __init__(self, db: Any) -> None:
        self.db = db
        self.batches: list[dict[str, float]] = []
        self._cur: dict[str, float] = {}
        self._in_apply = False
        self._undo: list[tuple[Any, str, Any]] = []
        self._pid: int | None = None

    def _patch(self, obj: Any, name: str, part: str, gate: str = "") -> None:
        real = getattr(obj, name)
        prof = self

        def timed(*a: Any, **k: Any) -> Any:
            if gate == "apply" and not prof._in_apply:
                return real(*a, **k)
            t = time.process_time()
            try:
                return real(*a, **k)
            finally:
                prof._cur[part] = prof._cur.get(part, 0.0) + time.process_time() - t

        self._undo.append((obj, name, real))
        setattr(obj, name, timed)

    def _server_s(self) -> float:
        if self._pid is None:
            return 0.0
        try:
            with open(f"/proc/{self._pid}/schedstat") as f:
                return int(f.read().split()[0]) / 1e9
        except OSError:  # another machine's server: not measured
            return 0.0

    def __enter__(self) -> _Profiler:
        from tapcash.host.ledger import db as dbm
        from tapcash.host.ledger import ingest as im

        if self.db.dialect == "postgresql":  # the pool's one connection (pool_size=1)
            self._pid = self.db.read(lambda tx: tx.conn.info.backend_pid)
        self._patch(im, "_verify", "signatures")
        self._patch(im, "first_bad", "signatures")
        self._patch(im, "prepare", "prepare")
        self._patch(im._Apply, "run", "apply")
        for name in ("execute", "executemany", "insert_many"):
            self._patch(dbm.Tx, name, "apply: SQL", gate="apply")
        real_run = im._Apply.run
        prof = self

        def run(ap: Any) -> Any:
            prof._in_apply = True
            try:
                return real_run(ap)
            finally:
                prof._in_apply = False

        self._undo.append((im._Apply, "run", real_run))
        im._Apply.run = run
        return self

    def __exit__(self, *exc: Any) -> None:
        for obj, name, real in reversed(self._undo):
            setattr(obj, name, real)

    def ingest(self, fn: Any, n: int) -> Any:
        """fn() (one ingest of n payments) timed; its split kept, in us per payment."""
        self._cur = {}
        s0, t0 = self._server_s(), time.process_time()
        try:
            return fn()
        finally:
            total = time.process_time() - t0
            c = self._cur
            sig = c.get("signatures", 0.0)
            sql = c.get("apply: SQL", 0.0)
            parts = {"signatures": sig, "decode and checks": c.get("prepare", 0.0) - sig,
                     "apply: SQL": sql, "apply: Python": c.get("apply", 0.0) - sql}
            parts["digest, commit, rest"] = total - sum(parts.values())
            if self._pid is not None:
                parts["server"] = self._server_s() - s0
            self.batches.append({k: v / n * 1e6 for k, v in parts.items()})


def raw_verify_cpu_us(records: list[tuple[int, bytes]], pk: bytes) -> float:
    """Process CPU of one raw PyNaCl verify (us), over the payments of `records`."""
    from nacl.bindings import crypto_sign_open

    msgs = _signed_messages(records)
    t = time.process_time()
    for m in msgs:
        crypto_sign_open(m, pk)
    return (time.process_time() - t) / len(msgs) * 1e6


def run_profile(db_url: str, entries: int, batch: int, wallets: int) -> dict[str, Any]:
    """One in-process run (signatures inline) under the profiler: per batch, us of CPU per
    payment in each part, and the raw PyNaCl verify's CPU on the same messages."""
    from tapcash.host.issuer import Issuer
    from tapcash.host.ledger.db import Database
    from tapcash.host.ledger.ingest import ingest
    from tapcash.host.ledger.migrations import migrate
    from tapcash.host.ledger.service import Ledger

    db = Database(db_url, pool_size=1)
    migrate(db)
    issuer = Issuer.generate()
    ledger = Ledger(db, issuer)
    fleet = Fleet(ledger, issuer, wallets)
    pks = {w["id"]: ed25519.public_key(w["seed"]) for w in fleet.wallets}
    raw: list[float] = []
    try:
        with _Profiler(db) as prof:
            for wid, records, status in fleet.batches(entries, batch):
                body = [{"seq": s, "record": base64.b64encode(r).decode()} for s, r in records]
                st = base64.b64encode(status).decode()
                res = prof.ingest(lambda b=body, w=wid, s=st: ingest(ledger, w, b, s),
                                  len(records))
                assert res["accepted"] == len(records), res
                raw.append(raw_verify_cpu_us(records, pks[wid]))
    finally:
        db.close()
    return {"batches": prof.batches, "raw_verify_us": raw}


def run(db_url: str, entries: int, batch: int, wallets: int, verify_procs: int = 0) -> dict:
    from tapcash.host.issuer import Issuer
    from tapcash.host.ledger.db import Database
    from tapcash.host.ledger.ingest import ingest
    from tapcash.host.ledger.migrations import migrate
    from tapcash.host.ledger.service import Ledger

    # One thread ingests, so one connection: the SQLite page cache (64 MB per connection,
    # host/ledger/db.py) is what bounds this process's memory, whatever --entries is.
    db = Database(db_url, pool_size=1)
    migrate(db)
    issuer = Issuer.generate()
    ledger = Ledger(db, issuer, verify_procs=verify_procs)
    fleet = Fleet(ledger, issuer, wallets)
    pks = {w["id"]: ed25519.public_key(w["seed"]) for w in fleet.wallets}
    if ledger.verifier is not None:  # start the helpers before the clock runs
        ledger.verifier.start([(pks[fleet.wallets[0]["id"]], b"", bytes(64))]).bad()
    report.reset_peak_rss()  # this run's peak, not the runs' before it
    ingest_s = 0.0
    verify_s = 0.0
    reingest_s = 0.0
    done = 0
    for k, (wid, records, status) in enumerate(fleet.batches(entries, batch)):
        body = [{"seq": s, "record": base64.b64encode(r).decode()} for s, r in records]
        st = base64.b64encode(status).decode()
        # Alternate which is measured first, so neither gets a warmer cache.
        if k % 2:
            verify_s += len(records) / raw_verify_rate(records, pks[wid])
        t = time.perf_counter()
        res = ingest(ledger, wid, body, st)
        ingest_s += time.perf_counter() - t
        if not k % 2:
            verify_s += len(records) / raw_verify_rate(records, pks[wid])
        assert res["accepted"] == len(records), res
        # The same batch again (a retried upload): recognised by its bytes, nothing decoded.
        t = time.perf_counter()
        again = ingest(ledger, wid, body, st)
        reingest_s += time.perf_counter() - t
        assert again["accepted"] == 0 and again["duplicates"] == len(records), again
        done += len(records)
    # the high-water mark of the ingest itself (the invariant check below sorts every posting)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    inv = ledger.invariant()
    assert inv["ok"], inv
    db.close()
    if ledger.verifier is not None:
        ledger.verifier.close()
    return {
        "verify_procs": verify_procs,
        "entries": done,
        "ingest_per_s": done / ingest_s,
        "verify_per_s": done / verify_s,
        "ratio": (done / ingest_s) / (done / verify_s),
        "reingest_per_s": done / reingest_s,
        "reingest_x": ingest_s / reingest_s,
        "peak_rss_mb": peak_mb,
    }


def run_http(db_url: str, entries: int, batch: int, wallets: int, workers: int,
             clients: int) -> dict:
    """Upload pre-generated batches over HTTP to `tapcash ledger serve --workers N` (a
    subprocess) from `clients` threads; raw verify measured in this process."""
    from tapcash.host.issuer import Issuer
    from tapcash.host.ledger.client import LedgerClient

    from . import servers

    issuer = Issuer.generate()
    tmp = tempfile.TemporaryDirectory()
    key = Path(tmp.name) / "issuer.key"
    issuer.save(key)
    token = os.urandom(16).hex()
    try:
        procs = servers.start(db_url, key, token, 1, workers=workers, pool=8, quiet=False)
    except BaseException:
        tmp.cleanup()
        raise
    url = procs[0][1]
    try:
        with LedgerClient(url, token, timeout=300) as lc:
            fleet = Fleet(lc, issuer, wallets)
            report.reset_peak_rss()  # this run's peak, not the runs' before it
            pending = list(fleet.batches(entries, batch))
            sample = pending[: max(1, len(pending) // 4)]
            pks = {w["id"]: ed25519.public_key(w["seed"]) for w in fleet.wallets}

            def verify_s() -> float:  # raw verify of the sample: seconds
                return sum(len(r) / raw_verify_rate(r, pks[wid]) for wid, r, _s in sample)

            before = verify_s()
        elapsed = upload([url], token, pending, clients, timeout_s=300)
        # raw verify before and after the uploads: both sides see the load of the run
        verify_rate = 2 * sum(len(r) for _w, r, _s in sample) / (before + verify_s())
        with LedgerClient(url, token) as lc:
            inv = lc.invariant()
            assert inv["ok"], inv
    finally:
        servers.stop(procs)
        tmp.cleanup()
    rate = entries / elapsed
    return {"entries": entries, "ingest_per_s": rate, "verify_per_s": verify_rate,
            "ratio": rate / verify_rate,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def upload(urls: list[str], token: str, pending: list[tuple[bytes, list, bytes]],
           clients: int, timeout_s: float = 600) -> float:
    """Seconds to upload every batch from `clients` threads, thread i on server i mod N; the
    first error stops the others and is raised."""
    from tapcash.host.ledger.client import LedgerClient

    todo = list(pending)
    lock = threading.Lock()
    errors: list[BaseException] = []

    def worker(url: str) -> None:
        with LedgerClient(url, token, timeout=timeout_s) as c:
            while True:
                with lock:
                    if not todo or errors:
                        return
                    wid, records, status = todo.pop(0)
                try:
                    c.ingest(wid, records, status)
                except BaseException as e:  # noqa: BLE001 - reported
                    errors.append(e)
                    return

    t = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(urls[i % len(urls)],))
               for i in range(clients)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    if errors:
        raise errors[0]
    return time.perf_counter() - t



SPREAD = ("ingest_per_s", "verify_per_s", "ratio", "reingest_per_s", "reingest_x",
          "peak_rss_mb")


def section(db_urls: tuple[str, ...] = (), entries: int = 20000, batch: int = 1000,
            wallets: int = 20, http_workers: int = 0, clients: int = 2, repeat: int = 3,
            quick: bool = False, verify_procs: str = "0,1", profile: bool = True
            ) -> dict[str, Any]:
    """`repeat` runs per database (a fresh database or schema each), min/median/max; with
    `profile` (in-process only), one more run per database under the profiler."""
    if quick:
        entries, batch, repeat = 2000, 500, 1
    profile = profile and not http_workers
    opts = {"entries": (entries, 20000), "batch": (batch, 1000), "wallets": (wallets, 20),
            "http": (http_workers, 0), "clients": (clients, 2), "repeat": (repeat, 3),
            "verify-procs": (verify_procs, "0,1")}
    procs_list = [int(p) for p in verify_procs.split(",")] if not http_workers else [0]
    cmd = "tapcash bench ingest" + "".join(f" --{k} {v}" for k, (v, d) in opts.items() if v != d)
    if profile:
        cmd += " --profile"
    cmd += "".join(f" --db {u}" for u in db_urls)
    sec = report.new_section("ingest", cmd)
    sec["title"] = "Ledger ingest"
    sec["how"] = (f"HTTP, {http_workers} uvicorn worker(s), {clients} client thread(s)"
                  if http_workers else "one worker (in-process, no HTTP)")
    sec.update(entries=entries, batch=batch, wallets=wallets, rss_per_run=True)
    rows = []
    names = [u.split(":", 1)[0] for u in db_urls] or ["sqlite", "postgresql"]
    for i, name in enumerate(names):
        for procs in procs_list:
            runs = []
            for _ in range(repeat):
                with _database(db_urls[i] if db_urls else name) as url:
                    if url is None:
                        report.not_measured(sec, name, NO_PG + "".join(f" ({e})" for e in PG_ERROR))
                        break  # no PostgreSQL here
                    if http_workers:
                        runs.append(run_http(url, entries, batch, wallets, http_workers, clients))
                    else:
                        runs.append(run(url, entries, batch, wallets, procs))
            if runs:
                row: dict[str, Any] = {"database": name, "verify_procs": procs}
                row.update({k: report.spread([r[k] for r in runs],
                                             2 if k in ("ratio", "reingest_x") else 0)
                            for k in SPREAD if k in runs[0]})
                rows.append(row)
    sec["rows"] = rows
    if profile:
        sec["profile"] = []
        for i, name in enumerate(names):
            with _database(db_urls[i] if db_urls else name) as url:
                if url is None:
                    report.not_measured(sec, name, NO_PG + "".join(f" ({e})" for e in PG_ERROR))
                    continue
                got = run_profile(url, entries, batch, wallets)
            prow: dict[str, Any] = {"database": name}
            prow.update({part: report.spread([b[part] for b in got["batches"]])
                         for part in PARTS if part in got["batches"][0]})
            totals = [sum(b.values()) for b in got["batches"]]
            prow["total"] = report.spread(totals)
            prow["raw_verify"] = report.spread(got["raw_verify_us"])
            # the ratio one core could reach: raw verify over all the CPU a payment costs
            prow["bound"] = report.spread([v / t for v, t in zip(got["raw_verify_us"], totals,
                                                                 strict=True)], 2)
            sec["profile"].append(prow)
    return report.finish(sec)


@contextmanager
def _database(what: str) -> Iterator[str | None]:
    """A fresh database for one run: a temporary SQLite file, a fresh PostgreSQL schema
    (None when PostgreSQL is not reachable), or the URL given."""
    if what == "sqlite":
        with tempfile.TemporaryDirectory() as tmp:
            yield str(Path(tmp) / "bench.db")
    elif what == "postgresql":
        pg = _pg_schema()
        if pg is None:
            yield None
            return
        try:
            yield pg[0]
        finally:
            pg[1]()  # type: ignore[operator]
    else:
        yield what


def _fmt_rate(s: dict[str, Any]) -> str:
    return report.fmt_spread(s, "/s")


def _procs(n: int) -> str:
    return "inline" if not n else f"{n} helper" + ("s" if n > 1 else "")


def render(sec: dict[str, Any]) -> str:
    out = [f"{sec['entries']:,} signed payments in batches of {sec['batch']:,} from "
           f"{sec['wallets']} wallets, {sec['how']}; raw PyNaCl verify measured in the same run "
           + ("in the client process on a quarter of the same messages, before and after the "
              "uploads. " if sec["how"].startswith("HTTP") else "on the same messages, "
              "alternately before and after each batch. ") + "Re-ingest: each "
           "batch uploaded again right after it (in-process runs), recognised by a digest of "
           "its bytes before any record is decoded or verified; x = its rate over the fresh "
           "rate. Peak RSS: the process's high-water mark " + (
               "over the run's ingest." if sec.get("rss_per_run") else "up to the end of the "
               "run (the runs and setup before it included: measured before it was reset per "
               "run)."), "",
           "Signatures: *inline* checks them in the ingesting thread, before the transaction; "
           "*N helper(s)* sends them to N helper processes (`verify_procs`, host/ledger/verify.py) "
           "while the batch's transaction runs, which waits for their answer before it touches a "
           "balance: the ratio then says how close ingest comes to the signature limit when the "
           "rest of the work is done on another core.", "",
           "| database | signatures | ingest | raw PyNaCl verify | ratio | re-ingest | "
           "re-ingest x | peak RSS |",
           "|---|---|---|---|---|---|---|---|"]
    for r in sec["rows"]:
        re_rate = _fmt_rate(r["reingest_per_s"]) if "reingest_per_s" in r else "-"
        re_x = (report.fmt_spread(r["reingest_x"], fmt=lambda v: f"{v:.1f}")
                if "reingest_x" in r else "-")
        out.append(f"| {r['database']} | {_procs(r.get('verify_procs', 0))} | "
                   f"{_fmt_rate(r['ingest_per_s'])} | "
                   f"{_fmt_rate(r['verify_per_s'])} | "
                   f"{report.fmt_spread(r['ratio'], fmt=lambda v: f'{v:.2f}')} | "
                   f"{re_rate} | {re_x} | "
                   f"{report.fmt_spread(r['peak_rss_mb'], ' MB')} |")
    if sec.get("profile"):
        out += ["", "Where a payment's CPU goes (`--profile`: one more run per database, "
                "signatures inline, timers around the ledger's functions; us of CPU per "
                "payment, median (min-max) over the batches). *bound*: raw PyNaCl verify's "
                "CPU over the total, the ratio one core could reach with all of it on the "
                "same core (the in-process runs above).", "",
                "| part | what | " + " | ".join(p["database"] for p in sec["profile"]) + " |",
                "|---|---|" + "---|" * len(sec["profile"])]
        for part in (*PARTS, "total", "raw_verify", "bound"):
            label = {"raw_verify": "raw PyNaCl verify"}.get(part, part)
            note = {**PART_NOTES, "total": "all of the above",
                    "raw_verify": "one check, same messages",
                    "bound": "raw verify / total"}[part]
            cells = []
            for p in sec["profile"]:
                if part not in p:
                    cells.append("-")
                elif part == "bound":
                    cells.append(report.fmt_spread(p[part], fmt=lambda v: f"{v:.2f}"))
                else:
                    cells.append(report.fmt_spread(p[part], " us", fmt=lambda v: f"{v:.1f}"))
            out.append(f"| {label} | {note} | " + " | ".join(cells) + " |")
    return "\n".join(out) + "\n"


@click.command()
@click.option("--db", "db_urls", multiple=True,
              help="database URL(s); default: a temporary SQLite file, plus PostgreSQL at "
              "postgresql://postgres@127.0.0.1/test when reachable (fresh schema, dropped)")
@click.option("--entries", default=20000, show_default=True, help="signed payments to ingest")
@click.option("--batch", default=1000, show_default=True, help="payments per uploaded batch")
@click.option("--wallets", default=20, show_default=True)
@click.option("--http", "http_workers", type=int, default=0,
              help="instead of in-process: upload over HTTP to `tapcash ledger serve` with this "
              "many uvicorn workers (batches pre-generated; RSS is the client's)")
@click.option("--clients", default=2, show_default=True, help="--http: concurrent uploaders")
@click.option("--repeat", default=3, show_default=True, help="runs per database")
@click.option("--verify-procs", default="0,1", show_default=True,
              help="in-process runs: signature helper processes (0 = inline), comma-separated: "
              "one row each")
@click.option("--profile", is_flag=True,
              help="in-process: one more run per database under timers: where a payment's CPU "
              "goes (signatures, decode, SQL, Python; the PostgreSQL server's share)")
@click.option("--offline-uploads", default=0, help="instead: one wallet that never syncs pays "
              "two POS in turn, each uploads --batch of its payments at a time, this many uploads "
              "in all; ms per upload, the first 5 against the last 5 (an upload's cost must not "
              "grow with the payments since the wallet's last sync)")
@click.option("--json", "as_json", is_flag=True, help="print the section as JSON")
def command(db_urls: tuple[str, ...], entries: int, batch: int, wallets: int,
            http_workers: int, clients: int, repeat: int, verify_procs: str,
            profile: bool, offline_uploads: int, as_json: bool) -> None:
    """Ledger ingest throughput (verify + dedup + post) as a ratio to raw PyNaCl verify."""
    if offline_uploads:
        offline(db_urls, offline_uploads, batch, repeat)
        return
    try:
        procs = [int(p) for p in verify_procs.split(",")]
    except ValueError:
        raise click.BadParameter("a comma-separated list of numbers",
                                 param_hint="--verify-procs") from None
    if not procs or any(not 0 <= p <= 64 for p in procs):
        raise click.BadParameter("each 0..64", param_hint="--verify-procs")
    sec = section(db_urls, entries, batch, wallets, http_workers, clients, repeat,
                  verify_procs=",".join(map(str, procs)), profile=profile)
    if as_json:
        click.echo(json.dumps(sec, indent=2))
        return
    click.echo(f"ingest benchmark: {entries} signed payments, batches of {batch}, "
               f"{wallets} wallets, {sec['how']}; median (min-max) of {repeat} runs")
    for r in sec["rows"]:
        click.echo(f"{r['database']:11s} {_procs(r.get('verify_procs', 0)):9s} ingest "
                   f"{_fmt_rate(r['ingest_per_s'])}   raw PyNaCl "
                   f"verify {_fmt_rate(r['verify_per_s'])}   ratio "
                   f"{report.fmt_spread(r['ratio'], fmt=lambda v: f'{v:.2f}')}   "
                   + (f"re-ingest {_fmt_rate(r['reingest_per_s'])} "
                      f"({report.fmt_spread(r['reingest_x'], fmt=lambda v: f'{v:.1f}')}x)   "
                      if "reingest_per_s" in r else "")
                   + f"peak RSS "
                   f"{report.fmt_spread(r['peak_rss_mb'], ' MB')}")
    for p in sec.get("profile", []):
        click.echo(f"{p['database']:11s} CPU per payment: " + ", ".join(
            f"{part} {p[part]['median']:.1f}" for part in PARTS if part in p)
            + f"; total {p['total']['median']:.1f} us, raw verify {p['raw_verify']['median']:.1f}"
            f" us: bound {p['bound']['median']:.2f}")
    report.echo_provenance(sec)


ingest_command = command  # the name it had


def offline(db_urls: tuple[str, ...], uploads: int, batch: int, repeat: int) -> None:
    """tapcash bench ingest --offline-uploads: see run_offline."""
    if uploads < 10:
        raise click.BadParameter("at least 10", param_hint="--offline-uploads")
    cmd = (f"tapcash bench ingest --offline-uploads {uploads} --batch {batch} --repeat {repeat}"
           + "".join(f" --db {u}" for u in db_urls))
    sec = report.new_section("ingest-offline", cmd)
    click.echo(f"one wallet, never synced, pays 2 POS in turn; {uploads} POS uploads of {batch} "
               f"payments; ms per upload, median (min-max) over the first 5 and the last 5 of "
               f"{repeat} run(s)")
    names = [u.split(":", 1)[0] for u in db_urls] or ["sqlite", "postgresql"]
    for i, name in enumerate(names):
        first: list[float] = []
        last: list[float] = []
        for _ in range(repeat):
            with _database(db_urls[i] if db_urls else name) as url:
                if url is None:
                    break  # no PostgreSQL here
                times = run_offline(url, uploads, batch)["upload_s"]
            first += [t * 1e3 for t in times[:5]]
            last += [t * 1e3 for t in times[-5:]]
        if first:
            a, b = report.spread(first), report.spread(last)
            click.echo(f"{name:11s} uploads 1-5 {report.fmt_spread(a, ' ms')}   uploads "
                       f"{uploads - 4}-{uploads} {report.fmt_spread(b, ' ms')}   last/first "
                       f"{b['median'] / a['median']:.2f}")
    report.echo_provenance(report.finish(sec))


NO_PG = "no PostgreSQL reachable at 127.0.0.1:5432 (database test)"
PG_ERROR: list[str] = []  # why, the last time it was not: the section names it


def _pg_schema() -> tuple[str, object] | None:
    try:
        import psycopg

        admin = "postgresql://postgres@127.0.0.1:5432/test"
        schema = "tapcash_bench_" + os.urandom(4).hex()
        with psycopg.connect(admin, autocommit=True, connect_timeout=3) as c:
            c.execute(f"CREATE SCHEMA {schema}")
    except Exception as e:  # noqa: BLE001 - no PostgreSQL here: bench SQLite only
        PG_ERROR[:] = [f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e) else ''}"]
        return None

    def drop() -> None:
        with psycopg.connect(admin, autocommit=True) as c:
            c.execute(f"DROP SCHEMA {schema} CASCADE")

    return f"{admin}?options=-csearch_path%3D{schema}", drop
