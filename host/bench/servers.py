"""`tapcash bench servers`: several `tapcash ledger serve` processes on one PostgreSQL, over HTTP.

The deployment of docs/LEDGER.md "Several ledger servers on one PostgreSQL": N server processes
(default one per core) on different ports against one database, client threads spreading signed
wallet batches over them as a load balancer would. Batches are generated, and encoded as the
JSON bodies LedgerClient.ingest sends, before the clock starts (the load client moves bytes over
kept-alive http.client connections: about 1 us of CPU a payment, where LedgerClient took 7-8);
raw PyNaCl verify is measured in this process on the same messages, on a sample before and after
the uploads. The figure of merit is ingest / (cores x one core's raw verify): 1.0 would be every
core verifying signatures all the time. Every process of the run is metered (host/bench/
proccpu.py): the servers, their PostgreSQL backends, PostgreSQL's background processes and this
client, in us of CPU per payment, which says what rate the machine's cores allow. Afterwards every
batch is sent once more (a retried upload, answered from its stored bytes) and the books are
checked against what this process recomputes from the records it signed: the invariant holds,
every payment is posted exactly once, the terminal's account holds what was paid and every
wallet's what it has left.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import click

from tapcash.firmware.core import cbor, ed25519, proto

from . import proccpu, report
from .ingest import Fleet, _database, raw_verify_cpu_us, raw_verify_rate

SPREAD = ("ingest_per_s", "verify_per_s", "x_one_core", "ratio", "reingest_per_s")
# us of CPU per payment, by process kind, over the fresh uploads (host/bench/proccpu.py)
KINDS = ("server", "postgresql", "postgresql background", "client")
CPU = ("verify_us", *(f"cpu_us:{k}" for k in KINDS), "cpu_us:total", "cpu_us:others",
       "cpu_us:idle",
       "bound_ratio", "bound_ratio_servers")


def start(db_url: str, key: Path, token: str, n: int, verify_procs: int = 0, workers: int = 1,
          pool: int = 4, quiet: bool = True) -> list[tuple[subprocess.Popen, str]]:
    """`n` `tapcash ledger serve` processes on one database, each in its own process group, up
    and answering /v1/health: [(process, url)]. quiet: no access log, warnings only, stdout
    dropped (else uvicorn's defaults, on this process's terminal)."""
    from tapcash.host.ledger.loopback import free_port

    out = []
    for _ in range(n):
        port = free_port()
        proc = subprocess.Popen(
            [sys.executable, "-c", "from tapcash.host.cli import main; main()", "ledger",
             "serve", "--db", db_url, "--issuer-key", str(key), "--token", token,
             "--port", str(port), "--pool", str(pool), "--verify-procs", str(verify_procs),
             "--workers", str(workers),
             *(["--no-access-log", "--log-level", "warning"] if quiet else [])],
            start_new_session=True, stdout=subprocess.DEVNULL if quiet else None)
        out.append((proc, f"http://127.0.0.1:{port}"))
    import httpx

    deadline = time.monotonic() + 90
    for proc, url in out:
        while True:
            try:
                if httpx.get(url + "/v1/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                stop(out)
                raise click.ClickException("a ledger server did not start")
            time.sleep(0.1)
    return out


def stop(servers: list[tuple[subprocess.Popen, str]]) -> None:
    """SIGTERM every server's process group, then wait for each."""
    for proc, _url in servers:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
    for proc, _url in servers:
        proc.wait(30)


def bodies(pending: list[tuple[bytes, list, bytes]]) -> list[bytes]:
    """Each batch as the JSON body of its POST /v1/ingest (what LedgerClient.ingest sends), built
    before the clock starts: the load client then only moves bytes, as a load balancer does."""
    return [json.dumps({"device": wid.hex(),
                        "records": [{"seq": s, "record": base64.b64encode(r).decode()}
                                    for s, r in records],
                        "status": base64.b64encode(status).decode()},
                       separators=(",", ":")).encode()
            for wid, records, status in pending]


def upload(urls: list[str], batches: list[bytes], clients: int,
           timeout_s: float = 600) -> tuple[float, list[dict[str, Any]]]:
    """(seconds, answers in batch order) to POST every body from `clients` threads, thread i on
    server i mod N over one kept-alive http.client connection each; the answers are parsed
    after the clock stops. Anything but 200 stops every thread and is raised."""
    import http.client
    from urllib.parse import urlsplit

    todo = list(enumerate(batches))
    todo.reverse()
    answers: list[bytes] = [b""] * len(batches)
    lock = threading.Lock()
    errors: list[str] = []

    def worker(url: str) -> None:
        u = urlsplit(url)
        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=timeout_s)
        headers = {"Content-Type": "application/json"}
        try:
            while True:
                with lock:
                    if not todo or errors:
                        return
                    i, body = todo.pop()
                conn.request("POST", "/v1/ingest", body, headers)
                resp = conn.getresponse()
                answers[i] = resp.read()
                if resp.status != 200:
                    errors.append(f"{url}: batch {i}: {resp.status} {answers[i][:300]!r}")
                    return
        except (OSError, http.client.HTTPException) as e:
            errors.append(f"{url}: {e!r}")
        finally:
            conn.close()

    threads = [threading.Thread(target=worker, args=(urls[i % len(urls)],))
               for i in range(clients)]
    t = time.perf_counter()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    elapsed = time.perf_counter() - t
    if errors:
        raise click.ClickException(errors[0])
    return elapsed, [json.loads(a) for a in answers]


def expected_books(fleet: Fleet, pending: list[tuple[bytes, list, bytes]]) -> dict[str, Any]:
    """What the books must hold after `pending`, recomputed here from the signed records the
    bench made (not read from the ledger): every payment's (wallet, counter, hash), the value
    paid to the terminal and each wallet's balance (loaded minus what it signed away)."""
    pays = set()
    paid: dict[str, int] = {}
    for wid, records, _status in pending:
        for _seq, rec in records:
            body_bytes, _sig = cbor.decode(cbor.decode(rec)[proto.REC_SIGNED])
            body = cbor.decode(body_bytes)
            pays.add((wid.hex(), body[proto.PAY_COUNTER], proto.body_hash(body_bytes).hex()))
            paid[wid.hex()] = paid.get(wid.hex(), 0) + body[proto.PAY_AMOUNT]
    return {"payments": pays, "paid": paid, "total": sum(paid.values()),
            "loaded": {w["id"].hex(): w["loaded"] for w in fleet.wallets}}


def check_books(books: dict[str, Any], want: dict[str, Any]) -> None:
    """The books equal `want` (expected_books): every payment posted once, to the terminal's
    merchant account, which holds exactly what was paid, and each wallet's what it has left."""
    got = {(w, c, h) for w, c, h, _st, _cr in books["payments"]}
    if len(books["payments"]) != len(want["payments"]) or got != want["payments"]:
        raise click.ClickException(f"payments: {len(books['payments'])} in the books, "
                                   f"{len(want['payments'])} sent, {len(got ^ want['payments'])} "
                                   "differ")
    if any(st != "posted" for _w, _c, _h, st, _cr in books["payments"]):
        raise click.ClickException("a payment is not posted")
    bal = books["balances"]
    credited = {cr for *_r, cr in books["payments"]}
    if len(credited) != 1:
        raise click.ClickException(f"payments credited to {sorted(credited)}, not one terminal")
    (merchant,) = credited
    if not merchant.startswith("merchant:") or bal.get(merchant) != want["total"]:
        raise click.ClickException(f"{merchant} holds {bal.get(merchant)}, "
                                   f"{want['total']} was paid")
    for wid, loaded in want["loaded"].items():
        left = loaded - want["paid"].get(wid, 0)
        if bal.get(f"wallet:{wid}") != left:
            raise click.ClickException(f"wallet {wid}: {bal.get(f'wallet:{wid}')} in the books, "
                                       f"{left} left")


def run(db_url: str, servers: int, clients: int, entries: int, batch: int,
        wallets: int, verify_procs: int = 0) -> dict[str, Any]:
    from tapcash.host.issuer import Issuer
    from tapcash.host.ledger.client import LedgerClient
    from tapcash.host.ledger.db import Database
    from tapcash.host.ledger.migrations import migrate

    issuer = Issuer.generate()
    app_name = "tapcash_bench_servers_" + os.urandom(4).hex()
    server_url = db_url + ("&" if "?" in db_url else "?") + f"application_name={app_name}"
    with tempfile.TemporaryDirectory() as tmp:
        key = Path(tmp) / "issuer.key"
        issuer.save(key)
        migrate(Database(db_url, pool_size=1))
        token = os.urandom(16).hex()
        procs = start(server_url, key, token, servers, verify_procs)
        urls = [u for _p, u in procs]
        try:
            with LedgerClient(urls[0], token, timeout=300) as lc:
                fleet = Fleet(lc, issuer, wallets)
                for w in fleet.wallets:
                    w["loaded"] = w["balance"]
                pending = list(fleet.batches(entries, batch))
            want = expected_books(fleet, pending)
            sent = bodies(pending)
            pks = {w["id"]: ed25519.public_key(w["seed"]) for w in fleet.wallets}
            sample = pending[: max(2, len(pending) // 5)]
            half = len(sample) // 2

            def verify_s(part: list) -> float:
                return sum(len(r) / raw_verify_rate(r, pks[w]) for w, r, _s in part)

            v_s = verify_s(sample[:half])
            me = os.getpid()
            meter = proccpu.Meter({
                "server": lambda: [p for proc, _u in procs for p in proccpu.group(proc.pid)],
                "postgresql": lambda: proccpu.pg_pids(db_url, app_name)[0],
                "postgresql background": lambda: proccpu.pg_pids(db_url, app_name)[1],
                "client": lambda: [me]})
            meter.start()
            elapsed, answers = upload(urls, sent, clients)
            cpu = meter.stop()
            # a PostgreSQL on another machine: its backends' CPU is not metered here
            metered = bool(proccpu.pg_pids(db_url, app_name)[0])
            v_s += verify_s(sample[half:])
            verify_rate = sum(len(r) for _w, r, _s in sample) / v_s
            verify_us = sum(raw_verify_cpu_us(r, pks[w]) for w, r, _s in sample) / len(sample)
            again, answers2 = upload(urls, sent, clients)
            accepted = sum(a["accepted"] for a in answers)
            if accepted != entries or any(a["accepted"] for a in answers2):
                raise click.ClickException(f"{accepted} of {entries} payments accepted, then "
                                           f"{sum(a['accepted'] for a in answers2)} re-sent")
            with LedgerClient(urls[-1], token, timeout=300) as lc:
                inv = lc.invariant()
                if not inv["ok"]:
                    raise click.ClickException(f"invariant: {inv}")
                check_books(lc.books(), want)
        finally:
            stop(procs)
    cores = os.cpu_count() or 1
    rate = entries / elapsed
    out = {"ingest_per_s": rate, "verify_per_s": verify_rate,
           "x_one_core": rate / verify_rate, "ratio": rate / (cores * verify_rate),
           "reingest_per_s": entries / again}
    if not metered:
        return out
    us = {k: v / entries * 1e6 for k, v in cpu.items()}
    total = sum(us.values())
    return {**out, "verify_us": verify_us,
            **{f"cpu_us:{k}": v for k, v in us.items()}, "cpu_us:total": total,
            # the cores' time the run's processes did not use, over the metered span: other
            # processes' work (/proc/stat's busy time less the run's) and idle time
            "cpu_us:others": max(0.0, meter.busy_s / entries * 1e6 - total),
            "cpu_us:idle": max(0.0, (cores * meter.wall_s - meter.busy_s) / entries * 1e6),
            # the best rate on these cores given the CPU each payment takes, all of it here /
            # only the servers' (PostgreSQL and the clients on other machines)
            "bound_ratio": verify_us / total, "bound_ratio_servers": verify_us / us["server"]}


def uvicorn_stack() -> str:
    """The event loop and HTTP parser uvicorn picks in the servers (its "auto": uvloop and
    httptools when they are installed, as the project's dependencies install them)."""
    from importlib.util import find_spec

    loop = "uvloop" if find_spec("uvloop") else "asyncio"
    return f"{loop} + {'httptools' if find_spec('httptools') else 'h11'}"


def section(db: str = "", servers: int = 0, clients: int = 0, entries: int = 20000,
            batch: int = 1000, wallets: int = 20, repeat: int = 3,
            quick: bool = False, verify_procs: int = 0) -> dict[str, Any]:
    cores = os.cpu_count() or 1
    if quick:
        entries, batch, repeat = 2000, 250, 1
    servers = servers or cores
    clients = clients or 2 * servers
    opts = {"servers": (servers, cores), "clients": (clients, 2 * servers),
            "entries": (entries, 20000), "batch": (batch, 1000), "wallets": (wallets, 20),
            "repeat": (repeat, 3), "verify-procs": (verify_procs, 0)}
    cmd = "tapcash bench servers" + "".join(f" --{k} {v}" for k, (v, d) in opts.items()
                                            if v != d)
    if db:
        cmd += f" --db {db}"
    sec = report.new_section("servers", cmd)
    sec["title"] = "Several ledger servers on one PostgreSQL"
    sec.update(servers=servers, clients=clients, cores=cores, entries=entries, batch=batch,
               wallets=wallets, verify_procs=verify_procs, uvicorn=uvicorn_stack())
    runs = []
    for _ in range(repeat):
        with _database(db or "postgresql") as url:
            if url is None:
                break  # no PostgreSQL here
            runs.append(run(url, servers, clients, entries, batch, wallets, verify_procs))
    sec["rows"] = [{"database": "postgresql",
                    **{k: report.spread([r[k] for r in runs],
                                        2 if k in ("ratio", "x_one_core") else 0)
                       for k in SPREAD}}] if runs else []
    metered = [r for r in runs if "verify_us" in r]
    sec["cpu_per_payment"] = {k: report.spread([r[k] for r in metered],
                                                2 if k.startswith("bound") else 1)
                              for k in CPU} if metered else {}
    if runs and not metered:
        report.not_measured(sec, "CPU per payment by process",
                            "the servers' PostgreSQL runs on another machine")
    return report.finish(sec)


def _x(s: dict[str, Any]) -> str:
    return report.fmt_spread(s, fmt=lambda v: f"{v:.2f}")


def cpu_lines(sec: dict[str, Any]) -> list[str]:
    """Where each payment's CPU went, by process kind, and the rates that allows."""
    c, cores = sec.get("cpu_per_payment"), sec["cores"]
    if not c:
        return []
    us = lambda k: report.fmt_spread(c[k], " us", fmt=lambda v: f"{v:.1f}")  # noqa: E731
    verify, server, total = (c[k]["median"] for k in ("verify_us", "cpu_us:server",
                                                      "cpu_us:total"))
    return [
        f"CPU per payment during the fresh uploads, by process kind (utime + stime from "
        f"/proc/PID/stat of every process of the run, before and after; median (min–max) of "
        f"{len(c['verify_us']['runs'])} runs): the servers {us('cpu_us:server')} (of which "
        f"one raw PyNaCl verify is {us('verify_us')} of CPU, measured in the client on the same "
        f"messages), their PostgreSQL backends {us('cpu_us:postgresql')}, PostgreSQL's "
        f"background processes {us('cpu_us:postgresql background')}, the load client "
        f"{us('cpu_us:client')} (pre-built bodies over kept-alive http.client connections): "
        f"{us('cpu_us:total')} in all. Of the rest of the {cores} cores' time per payment, "
        f"{us('cpu_us:others')} went to other processes on the machine and "
        f"{us('cpu_us:idle')} was idle (/proc/stat).",
        "",
        f"What that CPU allows: with everything on these {cores} cores, at most {cores} / "
        f"{total:.1f} us = {cores / total * 1e6:,.0f} payments/s, "
        f"{report.fmt_spread(c['bound_ratio'], fmt=lambda v: f'{v:.2f}')} x cores x one "
        f"core's verify (the verify's CPU over the total); with PostgreSQL and the clients on "
        f"other machines, {cores} / {server:.1f} us = {cores / server * 1e6:,.0f} payments/s, "
        f"{report.fmt_spread(c['bound_ratio_servers'], fmt=lambda v: f'{v:.2f}')}. The 0.7 "
        f"target needs at most 0.43 x {verify:.1f} = {verify * (1 / 0.7 - 1):.1f} us per "
        f"payment beside the signature; it is {total - verify:.1f} us with every process "
        f"counted, {server - verify:.1f} us in the servers alone.",
    ]


def render(sec: dict[str, Any]) -> str:
    helpers = sec.get("verify_procs", 0)
    stack = f", {sec['uvicorn']}" if sec.get("uvicorn") else ""
    out = [f"{sec['servers']} `tapcash ledger serve` processes (one uvicorn worker each{stack}"
           + (f", `--verify-procs {helpers}`" if helpers else "") + ") on "
           f"different ports of a {sec['cores']}-core machine, one PostgreSQL database; "
           f"{sec['clients']} client threads spread {sec['entries']:,} signed payments in "
           f"batches of {sec['batch']:,} from {sec['wallets']} wallets over them. Raw PyNaCl "
           "verify: one core, in the client process, on a sample of the same messages before "
           "and after the uploads. x one core = ingest / raw verify; ratio = ingest / (cores x "
           "raw verify). Re-ingest: every batch sent again, answered from its stored bytes. "
           "Afterwards the books are checked against what the bench recomputes from the records "
           "it signed: the invariant, every payment posted once, the terminal's account holds "
           "what was paid and each wallet's what it had left.", "",
           "| database | ingest | raw PyNaCl verify (one core) | x one core | ratio | "
           "re-ingest |", "|---|---|---|---|---|---|"]
    for r in sec["rows"]:
        out.append(f"| {r['database']} | {report.fmt_spread(r['ingest_per_s'], '/s')} | "
                   f"{report.fmt_spread(r['verify_per_s'], '/s')} | {_x(r['x_one_core'])} | "
                   f"{_x(r['ratio'])} | {report.fmt_spread(r['reingest_per_s'], '/s')} |")
    if not sec["rows"]:
        out.append("| postgresql | not reachable | | | | |")
    cpu = cpu_lines(sec)
    return "\n".join(out + ([""] + cpu if cpu else [])) + "\n"


@click.command()
@click.option("--db", default="", help="PostgreSQL URL (default: a fresh schema in "
              "postgresql://postgres@127.0.0.1/test, dropped after)")
@click.option("--servers", default=0, type=click.IntRange(0, 64),
              help="ledger server processes [default: one per core]")
@click.option("--clients", default=0, type=click.IntRange(0, 256),
              help="uploading threads [default: 2 per server]")
@click.option("--entries", default=20000, show_default=True, type=click.IntRange(1))
@click.option("--batch", default=1000, show_default=True, type=click.IntRange(1, 20000))
@click.option("--wallets", default=20, show_default=True, type=click.IntRange(1))
@click.option("--repeat", default=3, show_default=True, type=click.IntRange(1))
@click.option("--verify-procs", default=0, show_default=True, type=click.IntRange(0, 64),
              help="each server's signature helper processes (tapcash ledger serve "
              "--verify-procs)")
@click.option("--json", "as_json", is_flag=True, help="print the section as JSON")
def command(db: str, servers: int, clients: int, entries: int, batch: int, wallets: int,
            repeat: int, verify_procs: int, as_json: bool) -> None:
    """Several `tapcash ledger serve` processes on one PostgreSQL, over HTTP."""
    sec = section(db, servers, clients, entries, batch, wallets, repeat,
                  verify_procs=verify_procs)
    if as_json:
        click.echo(json.dumps(sec, indent=2))
        return
    if not sec["rows"]:
        raise click.ClickException("PostgreSQL is not reachable (give --db)")
    r = sec["rows"][0]
    click.echo(f"{sec['servers']} servers ({verify_procs} signature helpers each, "
               f"{sec['uvicorn']}), "
               f"{sec['clients']} clients, {sec['cores']} cores, "
               f"{entries} payments in batches of {batch}; median (min-max) of {repeat} runs")
    click.echo(f"ingest {report.fmt_spread(r['ingest_per_s'], '/s')}   raw PyNaCl verify (one "
               f"core) {report.fmt_spread(r['verify_per_s'], '/s')}   x one core "
               f"{_x(r['x_one_core'])}   ratio (/ cores) {_x(r['ratio'])}   re-ingest "
               f"{report.fmt_spread(r['reingest_per_s'], '/s')}")
    for line in cpu_lines(sec):
        click.echo(line)
    report.echo_provenance(sec)
