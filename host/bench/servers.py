"""`tapcash bench servers`: several `tapcash ledger serve` processes on one PostgreSQL, over HTTP.

The deployment of docs/LEDGER.md "Several ledger servers on one PostgreSQL": N server processes
(default one per core) on different ports against one database, client threads spreading signed
wallet batches over them as a load balancer would. Batches are generated before the clock
starts; raw PyNaCl verify is measured in this process on the same messages, on a sample before
and after the uploads. The figure of merit is ingest / (cores x one core's raw verify): 1.0 would
be every core verifying signatures all the time. Afterwards every batch is sent once more (a
retried upload, answered from its stored bytes) and the books are checked: the invariant holds
and every payment is posted exactly once.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import click

from tapcash.firmware.core import ed25519

from . import report
from .ingest import Fleet, _database, raw_verify_rate, upload

SPREAD = ("ingest_per_s", "verify_per_s", "x_one_core", "ratio", "reingest_per_s")


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


def run(db_url: str, servers: int, clients: int, entries: int, batch: int,
        wallets: int, verify_procs: int = 0) -> dict[str, Any]:
    from tapcash.host.issuer import Issuer
    from tapcash.host.ledger.client import LedgerClient
    from tapcash.host.ledger.db import Database
    from tapcash.host.ledger.migrations import migrate

    issuer = Issuer.generate()
    with tempfile.TemporaryDirectory() as tmp:
        key = Path(tmp) / "issuer.key"
        issuer.save(key)
        migrate(Database(db_url, pool_size=1))
        token = os.urandom(16).hex()
        procs = start(db_url, key, token, servers, verify_procs)
        urls = [u for _p, u in procs]
        try:
            with LedgerClient(urls[0], token, timeout=300) as lc:
                fleet = Fleet(lc, issuer, wallets)
                pending = list(fleet.batches(entries, batch))
            pks = {w["id"]: ed25519.public_key(w["seed"]) for w in fleet.wallets}
            sample = pending[: max(2, len(pending) // 5)]
            half = len(sample) // 2

            def verify_s(part: list) -> float:
                return sum(len(r) / raw_verify_rate(r, pks[w]) for w, r, _s in part)

            v_s = verify_s(sample[:half])
            elapsed = upload(urls, token, pending, clients)
            v_s += verify_s(sample[half:])
            verify_rate = sum(len(r) for _w, r, _s in sample) / v_s
            again = upload(urls, token, pending, clients)
            with LedgerClient(urls[-1], token, timeout=300) as lc:
                inv = lc.invariant()
                assert inv["ok"], inv
                pays = lc.books()["payments"]
                assert len(pays) == entries and all(p[3] == "posted" for p in pays)
        finally:
            stop(procs)
    cores = os.cpu_count() or 1
    rate = entries / elapsed
    return {"ingest_per_s": rate, "verify_per_s": verify_rate,
            "x_one_core": rate / verify_rate, "ratio": rate / (cores * verify_rate),
            "reingest_per_s": entries / again}


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
               wallets=wallets, verify_procs=verify_procs)
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
    return report.finish(sec)


def _x(s: dict[str, Any]) -> str:
    return report.fmt_spread(s, fmt=lambda v: f"{v:.2f}")


def render(sec: dict[str, Any]) -> str:
    helpers = sec.get("verify_procs", 0)
    out = [f"{sec['servers']} `tapcash ledger serve` processes (one uvicorn worker each"
           + (f", `--verify-procs {helpers}`" if helpers else "") + ") on "
           f"different ports of a {sec['cores']}-core machine, one PostgreSQL database; "
           f"{sec['clients']} client threads spread {sec['entries']:,} signed payments in "
           f"batches of {sec['batch']:,} from {sec['wallets']} wallets over them. Raw PyNaCl "
           "verify: one core, in the client process, on a sample of the same messages before "
           "and after the uploads. x one core = ingest / raw verify; ratio = ingest / (cores x "
           "raw verify). Re-ingest: every batch sent again, answered from its stored bytes. "
           "Afterwards the books are checked: invariant, every payment posted once.", "",
           "| database | ingest | raw PyNaCl verify (one core) | x one core | ratio | "
           "re-ingest |", "|---|---|---|---|---|---|"]
    for r in sec["rows"]:
        out.append(f"| {r['database']} | {report.fmt_spread(r['ingest_per_s'], '/s')} | "
                   f"{report.fmt_spread(r['verify_per_s'], '/s')} | {_x(r['x_one_core'])} | "
                   f"{_x(r['ratio'])} | {report.fmt_spread(r['reingest_per_s'], '/s')} |")
    if not sec["rows"]:
        out.append("| postgresql | not reachable | | | | |")
    return "\n".join(out) + "\n"


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
    click.echo(f"{sec['servers']} servers ({verify_procs} signature helpers each), "
               f"{sec['clients']} clients, {sec['cores']} cores, "
               f"{entries} payments in batches of {batch}; median (min-max) of {repeat} runs")
    click.echo(f"ingest {report.fmt_spread(r['ingest_per_s'], '/s')}   raw PyNaCl verify (one "
               f"core) {report.fmt_spread(r['verify_per_s'], '/s')}   x one core "
               f"{_x(r['x_one_core'])}   ratio (/ cores) {_x(r['ratio'])}   re-ingest "
               f"{report.fmt_spread(r['reingest_per_s'], '/s')}")
    report.echo_provenance(sec)
