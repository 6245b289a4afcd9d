"""`tapcash bench sim`: simulated payments per second, end to end through the firmware.

One payment here is the whole NFC flow of docs/PROTOCOL.md §4 between two simulated
devices running the unchanged firmware: the POS app's take_payment over the virtual field
(`sim.field`, air-time model and transcript hash on), the wallet app powered up by the tap
(state and journal read from its flash), SELECT / PAY / RECEIPT, every flash commit and
journal append on SimFlash, every signature and verification (PyNaCl on CPython, pure
Python in the MicroPython VM). Provisioning (key generation, certificates, first load) is
timed apart; syncing to the ledger is `tapcash bench ingest`'s subject.

Rows:
- cpython: --wallets x --pos (default 10,000 x 1,000), --payments payments (default 30,000)
  spread uniformly over the fleet, all devices in this process;
- micropython: a smaller fleet (--mp-wallets x --mp-pos, --mp-payments) with every device
  inside the real MicroPython VM (one VM for the wallets, one for the terminals).

`--calibrate` instead measures the card's and the reader's compute per command inside the
MicroPython VM (wall time around each call, host round trip included): the source of the
defaults in `sim.field.DEFAULT_CARD_MS` / `DEFAULT_READER_MS`. Figures only, no assertions.
"""

from __future__ import annotations

import gc
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import click

INS_NAMES = {0xA4: "select", 0x50: "pay", 0x52: "receipt"}


def bench_scenario(wallets: int, pos: int, payments: int, *, measured: bool = False) -> Any:
    from tapcash.sim.scenario import parse_scenario

    return parse_scenario(
        {
            "scenario": {"name": "bench", "flash": "memory", "seed": 1},
            "wallets": {
                "count": wallets,
                "balance": 100000,
                # wide limits: the benchmark measures payments, not refusals
                "limits": {"offline_count": 1000, "offline_amount": 10**9,
                           "balance_max": 10**9},
            },
            "pos": {"count": pos, "config": {"hotlist_max_payments": 10**7,
                                             "velocity_count": 10**6,
                                             "velocity_amount": 2**32 - 1}},
            "payments": {
                "count": payments,
                "arrival": "uniform",
                "amount": {"dist": "lognormal", "median": 500, "sigma": 0.7, "min": 10,
                           "max": 4900},
            },
            "sync": {"pos_every_hours": 0, "wallet_share": 0.0, "final": False},
            "nfc": {"measured": measured},
        },
        "bench",
    )


def run_bench(wallets: int, pos: int, payments: int, runtime: str,
              measured: bool = False, barrier: Any = None, seed: int = 1) -> dict[str, Any]:
    """Provision the fleet, then time the payments (after `barrier`, when sharded)."""
    from dataclasses import replace

    from tapcash.sim.runner import ScenarioRun
    from tapcash.sim.scenario import build_schedule

    sc = replace(bench_scenario(wallets, pos, payments, measured=measured), seed=seed)
    with tempfile.TemporaryDirectory(prefix="tapcash-bench-sim-") as tmp:
        run = ScenarioRun(sc, Path(tmp), runtime=runtime, ledger=False)
        try:
            t0 = time.perf_counter()
            run.provision()
            t_prov = time.perf_counter() - t0
            events = build_schedule(sc)
            gc.collect()
            if barrier is not None:
                barrier.wait()
            t1, c1 = time.perf_counter(), time.process_time()
            for ev in events:
                run.clock.set(sc.start + ev.t)
                run.dispatch(ev)
            wall, cpu = time.perf_counter() - t1, time.process_time() - c1
            pays = run.log.payments
            approved = [p for p in pays if p.status == "approved"]
            per_ins: dict[int, list[float]] = {}
            for f in run.fields.values():
                for ins, (n, card, reader) in f.per_ins.items():
                    acc = per_ins.setdefault(ins, [0, 0.0, 0.0])
                    acc[0] += n
                    acc[1] += card
                    acc[2] += reader
        finally:
            run.close()
    in_field = [p.in_field_ms for p in approved]
    return {
        "runtime": runtime,
        "wallets": wallets,
        "pos": pos,
        "payments": len(pays),
        "approved": len(approved),
        "wall_s": round(wall, 3),
        "provision_s": round(t_prov, 2),
        "devices_per_s": round((wallets + pos) / t_prov, 1),
        "payments_per_s": round(len(pays) / wall, 1),
        "payments_per_cpu_s": round(len(pays) / cpu, 1) if cpu else 0.0,
        "in_field_ms_p50": round(statistics.median(in_field), 1) if in_field else 0.0,
        "per_ins_ms": {
            INS_NAMES.get(ins, f"{ins:02X}"): {
                "card": round(card / n / 1000, 3) if n else 0.0,
                "reader_after": round(reader / n / 1000, 3) if n else 0.0,
            }
            for ins, (n, card, reader) in sorted(per_ins.items())
        },
    }


def _shard(args: tuple[int, int, int, int], barrier: Any, results: Any) -> None:
    wallets, pos, payments, seed = args
    results.put(run_bench(wallets, pos, payments, "cpython", barrier=barrier, seed=seed))


def run_sharded(wallets: int, pos: int, payments: int, shards: int) -> dict[str, Any]:
    """The fleet split into `shards` independent districts (wallets pay only at terminals of
    their own district), one process each, their payment phases started together."""
    import multiprocessing as mp

    ctx = mp.get_context("fork")
    barrier = ctx.Barrier(shards)
    results = ctx.Queue()
    workers = [
        ctx.Process(target=_shard, args=((wallets // shards, pos // shards,
                                          payments // shards, 1 + i), barrier, results))
        for i in range(shards)
    ]
    for w in workers:
        w.start()
    procs = [results.get() for _ in workers]
    for w in workers:
        w.join()
    wall = max(r["wall_s"] for r in procs)
    total = sum(r["payments"] for r in procs)
    row = dict(procs[0])
    row.update(
        runtime=f"cpython x{shards}",
        wallets=sum(r["wallets"] for r in procs),
        pos=sum(r["pos"] for r in procs),
        payments=total,
        approved=sum(r["approved"] for r in procs),
        wall_s=wall,
        payments_per_s=round(total / wall, 1),
        payments_per_cpu_s=round(sum(r["payments_per_cpu_s"] for r in procs) / shards, 1),
        provision_s=max(r["provision_s"] for r in procs),
    )
    row["devices_per_s"] = round((row["wallets"] + row["pos"]) / row["provision_s"], 1)
    return row


@click.command()
@click.option("--wallets", default=10_000, show_default=True)
@click.option("--pos", "pos_count", default=1_000, show_default=True)
@click.option("--payments", default=30_000, show_default=True)
@click.option("--mp-wallets", default=100, show_default=True)
@click.option("--mp-pos", default=10, show_default=True)
@click.option("--mp-payments", default=300, show_default=True)
@click.option("--runtime", type=click.Choice(["both", "cpython", "micropython"]),
              default="both", show_default=True)
@click.option("--shards", default=1, show_default=True,
              help="CPython: split the fleet into this many districts, one process each")
@click.option("--calibrate", is_flag=True,
              help="measure card/reader compute per command in the MicroPython VM")
@click.option("--json", "as_json", is_flag=True)
def sim_command(wallets: int, pos_count: int, payments: int, mp_wallets: int, mp_pos: int,
                mp_payments: int, runtime: str, shards: int, calibrate: bool,
                as_json: bool) -> None:
    """Simulated payments per second, end to end through the firmware (CPython, MicroPython)."""
    rows = []
    if calibrate:
        rows.append(run_bench(mp_wallets, mp_pos, mp_payments, "micropython", measured=True))
    else:
        if runtime in ("both", "cpython"):
            rows.append(run_bench(wallets, pos_count, payments, "cpython"))
            if shards > 1:
                rows.append(run_sharded(wallets, pos_count, payments, shards))
        if runtime in ("both", "micropython"):
            rows.append(run_bench(mp_wallets, mp_pos, mp_payments, "micropython"))
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for r in rows:
        click.echo(
            f"{r['runtime']:<12} {r['wallets']:>6} wallets x {r['pos']:>5} POS: "
            f"{r['payments']} payments ({r['approved']} approved), "
            f"{r['payments_per_s']:.0f}/s wall, {r['payments_per_cpu_s']:.0f}/s per CPU s; "
            f"provisioning {r['provision_s']} s ({r['devices_per_s']:.0f} devices/s); "
            f"card in field p50 {r['in_field_ms_p50']} ms"
        )
        if calibrate:
            for name, v in r["per_ins_ms"].items():
                click.echo(
                    f"  {name:<8} card {v['card']:.3f} ms, reader after {v['reader_after']:.3f} ms"
                )
