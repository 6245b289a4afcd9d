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
import os
import resource
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import click

from tapcash.firmware.core import cbor, ed25519, proto

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
    the value before first_seq), and the new payment chain head."""
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
                                 "prev": bytes(32), "journal": bytes(32)})

    def batches(self, entries: int, batch: int) -> Iterator[tuple[bytes, list, bytes]]:
        done = 0
        i = 0
        while done < entries:
            w = self.wallets[i % len(self.wallets)]
            i += 1
            n = min(batch, entries - done)
            records, status, w["prev"] = synthetic_wallet_log(
                w["seed"], w["id"], self.pos_id, w["counter"] + 1, n, w["prev"], w["seq"] + 1,
                journal=w["journal"])
            w["journal"] = cbor.decode(cbor.decode(status)[0])[proto.ST_DIGEST]
            w["counter"] += n
            w["seq"] += n
            done += n
            yield w["id"], records, status


def raw_verify_rate(records: list[tuple[int, bytes]], pk: bytes) -> float:
    """Raw PyNaCl verifies per second over the payments of `records` (decoded beforehand)."""
    from nacl.bindings import crypto_sign_open

    msgs = []
    for _seq, rec in records:
        body_bytes, sig = cbor.decode(cbor.decode(rec)[proto.REC_SIGNED])
        msgs.append(sig + proto.TAG_PAYMENT + body_bytes)
    t = time.perf_counter()
    for m in msgs:
        crypto_sign_open(m, pk)
    return len(msgs) / (time.perf_counter() - t)


def run(db_url: str, entries: int, batch: int, wallets: int) -> dict:
    from tapcash.host.issuer import Issuer
    from tapcash.host.ledger.db import Database
    from tapcash.host.ledger.ingest import ingest
    from tapcash.host.ledger.migrations import migrate
    from tapcash.host.ledger.service import Ledger

    db = Database(db_url, pool_size=2)
    migrate(db)
    issuer = Issuer.generate()
    ledger = Ledger(db, issuer)
    fleet = Fleet(ledger, issuer, wallets)
    pks = {w["id"]: ed25519.public_key(w["seed"]) for w in fleet.wallets}
    ingest_s = 0.0
    verify_s = 0.0
    done = 0
    for wid, records, status in fleet.batches(entries, batch):
        body = [{"seq": s, "record": base64.b64encode(r).decode()} for s, r in records]
        st = base64.b64encode(status).decode()
        # Alternate which is measured first, so neither gets a warmer cache.
        rate = raw_verify_rate(records, pks[wid])
        verify_s += len(records) / rate
        t = time.perf_counter()
        res = ingest(ledger, wid, body, st)
        ingest_s += time.perf_counter() - t
        assert res["accepted"] == len(records), res
        done += len(records)
    inv = ledger.invariant()
    assert inv["ok"], inv
    db.close()
    return {
        "entries": done,
        "ingest_per_s": done / ingest_s,
        "verify_per_s": done / verify_s,
        "ratio": (done / ingest_s) / (done / verify_s),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def run_http(db_url: str, entries: int, batch: int, wallets: int, workers: int,
             clients: int) -> dict:
    """Upload pre-generated batches over HTTP to `tapcash ledger serve --workers N` (a
    subprocess) from `clients` threads; raw verify measured in this process."""
    import signal
    import socket
    import subprocess
    import sys
    import threading

    import httpx

    from tapcash.host.issuer import Issuer
    from tapcash.host.ledger.client import LedgerClient

    issuer = Issuer.generate()
    tmp = tempfile.TemporaryDirectory()
    key = Path(tmp.name) / "issuer.key"
    issuer.save(key)
    with socket.socket() as sk:
        sk.bind(("127.0.0.1", 0))
        port = sk.getsockname()[1]
    token = os.urandom(16).hex()
    proc = subprocess.Popen(
        [sys.executable, "-c", "from tapcash.host.cli import main; main()", "ledger", "serve",
         "--db", db_url, "--issuer-key", str(key), "--token", token, "--port", str(port),
         "--workers", str(workers)], start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(url + "/v1/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                raise click.ClickException("ledger server did not start")
            time.sleep(0.1)
        with LedgerClient(url, token, timeout=300) as lc:
            fleet = Fleet(lc, issuer, wallets)
            pending = list(fleet.batches(entries, batch))
            verify_s = sum(len(r) / raw_verify_rate(r, ed25519.public_key(
                next(w["seed"] for w in fleet.wallets if w["id"] == wid)))
                for wid, r, _s in pending[: max(1, len(pending) // 4)])
            verify_rate = sum(len(r) for _w, r, _s in pending[: max(1, len(pending) // 4)]) \
                / verify_s
        lock = threading.Lock()
        errors: list[BaseException] = []

        def worker() -> None:
            with LedgerClient(url, token, timeout=300) as c:
                while True:
                    with lock:
                        if not pending:
                            return
                        wid, records, status = pending.pop(0)
                    try:
                        c.ingest(wid, records, status)
                    except BaseException as e:  # noqa: BLE001 - reported
                        errors.append(e)
                        return

        t = time.perf_counter()
        threads = [threading.Thread(target=worker) for _ in range(clients)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        elapsed = time.perf_counter() - t
        if errors:
            raise errors[0]
        with LedgerClient(url, token) as lc:
            inv = lc.invariant()
            assert inv["ok"], inv
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)
        tmp.cleanup()
    rate = entries / elapsed
    return {"entries": entries, "ingest_per_s": rate, "verify_per_s": verify_rate,
            "ratio": rate / verify_rate,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


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
def ingest_command(db_urls: tuple[str, ...], entries: int, batch: int, wallets: int,
                   http_workers: int, clients: int) -> None:
    """Ledger ingest throughput (verify + dedup + post) as a ratio to raw PyNaCl verify."""
    targets: list[tuple[str, str, object]] = []
    tmp = tempfile.TemporaryDirectory()
    if db_urls:
        targets = [(u.split(":", 1)[0], u, None) for u in db_urls]
    else:
        targets.append(("sqlite", str(Path(tmp.name) / "bench.db"), None))
        pg = _pg_schema()
        if pg is not None:
            targets.append(("postgresql", pg[0], pg[1]))
    how = (f"HTTP, {http_workers} uvicorn worker(s), {clients} client thread(s)" if http_workers
           else "one worker (in-process, no HTTP)")
    click.echo(f"ingest benchmark: {entries} signed payments, batches of {batch}, "
               f"{wallets} wallets, {how}")
    try:
        for name, url, _drop in targets:
            if http_workers:
                r = run_http(url, entries, batch, wallets, http_workers, clients)
            else:
                r = run(url, entries, batch, wallets)
            click.echo(f"{name:11s} ingest {r['ingest_per_s']:9.0f}/s   raw PyNaCl verify "
                       f"{r['verify_per_s']:9.0f}/s   ratio {r['ratio']:.2f}   "
                       f"peak RSS {r['peak_rss_mb']:.0f} MB")
    finally:
        for _name, _url, drop in targets:
            if drop is not None:
                drop()  # type: ignore[operator]
        tmp.cleanup()


def _pg_schema() -> tuple[str, object] | None:
    try:
        import psycopg

        admin = "postgresql://postgres@127.0.0.1:5432/test"
        schema = "tapcash_bench_" + os.urandom(4).hex()
        with psycopg.connect(admin, autocommit=True, connect_timeout=3) as c:
            c.execute(f"CREATE SCHEMA {schema}")
    except Exception:  # noqa: BLE001 - no PostgreSQL here: bench SQLite only
        return None

    def drop() -> None:
        with psycopg.connect(admin, autocommit=True) as c:
            c.execute(f"DROP SCHEMA {schema} CASCADE")

    return f"{admin}?options=-csearch_path%3D{schema}", drop
