"""`tapcash bench sync`: the sync tool over a real pseudo-terminal with pyserial.

    tapcash bench sync [--records 100 --records 500] [--baud 115200] [--repeat 3] [--json]

Measures, on this machine:
  - framed round trips per second (GET INFO, and 4 KB answers) with the device simulator;
  - a full `tapcash sync` of a POS holding N journal records (payments from N/10 wallets)
    against the real ledger on loopback (host/ledger/loopback.py, SQLite);
  - with --baud, the device side paces its output like a UART at that rate.
Each figure is a median with min and max over --repeat runs (a fresh POS and ledger each run).
The device runs in CPython here: on an ESP32 add the firmware's own time per EXPORT page
(a status signature, ~0.5 s) and per record read from flash. Nothing here asserts a time.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Any

import click

from . import report

DEFAULT_RECORDS = (100, 500, 1000)
PER_WALLET = 10  # payments per wallet: the default offline-payments limit


def _round_trips(baud: int | None, scale: int = 1, reverse: bool = False) -> list[dict[str, Any]]:
    """[{"what", "n", "per_s"}] for the two framed exchanges, one run, after a few of each
    (warm-up); with `reverse` the second is measured first (runs alternate the order)."""
    from tapcash.firmware.core import proto
    from tapcash.host.sync.transport import SerialTransport
    from tapcash.sim.device.serial_pty import SerialDevice

    class Echo:
        def process(self, apdu: bytes) -> bytes:
            if apdu[1] == proto.INS_GET_INFO:
                return bytes(40) + b"\x90\x00"
            return bytes(4000) + b"\x90\x00"

    rows = []
    exchanges = (
        ("GET INFO (50 B answer)", proto.build_command(0x80, 0xCA, 0, 0), 2000),
        ("4 KB answer", proto.build_command(0x80, 0x60, 0, 0, b"\xa0"), 300),
    )
    with SerialDevice(Echo(), line_baud=baud) as dev, SerialTransport(dev.path) as t:
        for _label, apdu, _n in exchanges:
            for _ in range(3):
                t.transceive(apdu)
        for label, apdu, n in exchanges[::-1] if reverse else exchanges:
            n = max(5, n // scale if baud is None else n // 100 // scale)
            t0 = time.perf_counter()
            for _ in range(n):
                t.transceive(apdu)
            dt = time.perf_counter() - t0
            rows.append({"what": label, "n": n, "per_s": n / dt})
    return rows[::-1] if reverse else rows


def _pos_sync(n_records: int, baud: int | None) -> dict[str, Any]:
    """One full sync of a POS holding `n_records` payments: seconds, frames, bytes in."""
    from tapcash.firmware.core import cbor, proto
    from tapcash.host.ledger.loopback import LoopbackLedger
    from tapcash.host.sync.ledger_link import LedgerLink
    from tapcash.host.sync.outbox import Outbox
    from tapcash.host.sync.session import sync_device
    from tapcash.host.sync.transport import SerialTransport
    from tapcash.sim.device import provision as pv
    from tapcash.sim.device.hal import SimClock
    from tapcash.sim.device.serial_pty import SerialDevice
    from tapcash.sim.nfc.field import DirectLink

    root = Path(tempfile.mkdtemp(prefix="tapcash-bench-"))
    issuer = pv.issuer_from_seed(99)
    clock = SimClock(pv.T0)
    link = DirectLink(None)
    pos, _ = pv.make_pos(issuer, 1, clock, link, seed=99)
    with (
        LoopbackLedger.on_sqlite(root / "ledger.db", issuer, log_level="error") as server,
        server.client() as lc,
    ):
        lc.deposit("bench", 10**9, "bench")
        info = cbor.decode(pos.process(proto.build_command(0x80, 0xCA, 0, 0))[:-2])
        lc.register(info[proto.INFO_CERT])
        made = 0
        n = 0
        while made < n_records:
            n += 1
            wallet, _ = pv.make_wallet(issuer, n, seed=99, clock=clock)
            lc.register(cbor.decode(pv.call(wallet, proto.INS_SELECT, proto.AID, cla=0, p1=4))[
                proto.INFO_CERT
            ], owner="bench")  # fmt: skip
            pv.call(wallet, proto.INS_LOAD, lc.load(pv.device_id("wallet", n), 20_000, "b"))
            for _ in range(min(PER_WALLET, n_records - made)):
                link.tap(wallet)
                r = pos.take_payment(100)
                link.remove()
                assert r.approved, r
                made += 1
        with LedgerLink(server.url, server.token) as ll, SerialDevice(pos, line_baud=baud) as dev:
            with SerialTransport(dev.path, timeout_s=30) as t:
                t0 = time.perf_counter()
                res = sync_device(t, ledger=ll, outbox=Outbox(root / "outbox"))
                dt = time.perf_counter() - t0
    assert res.outcome == "synced" and res.exported == n_records, res
    return {"sync_s": dt, "frames": res.link["requests"], "kib_in": res.link["bytes_in"] / 1024}


def section(
    records: tuple[int, ...] = DEFAULT_RECORDS,
    baud: int | None = None,
    repeat: int = 3,
    quick: bool = False,
) -> dict[str, Any]:
    if quick:
        records, repeat = (20,), 1
    opts = "".join(f" --records {n}" for n in records) if records != DEFAULT_RECORDS else ""
    opts += f" --baud {baud}" if baud else ""
    opts += f" --repeat {repeat}" if repeat != 3 else ""
    sec = report.new_section("sync", "tapcash bench sync" + opts)
    sec["title"] = "Sync over a serial line"
    sec["line"] = f"at {baud} baud" if baud else "unpaced pty"
    sec["alternated"] = True  # the round trips' order, run by run (older sections: not)
    trips = [_round_trips(baud, scale=10 if quick else 1, reverse=bool(i % 2))
             for i in range(repeat)]
    sec["round_trips"] = [
        {
            "what": first["what"],
            "n": first["n"],
            "per_s": report.spread([run[i]["per_s"] for run in trips], 0),
            "ms": report.spread([1e3 / run[i]["per_s"] for run in trips], 3),
        }
        for i, first in enumerate(trips[0])
    ]
    rows = []
    for n in records:
        runs = [_pos_sync(n, baud) for _ in range(repeat)]
        rows.append(
            {
                "records": n,
                "sync_s": report.spread([r["sync_s"] for r in runs], 2),
                "records_per_s": report.spread([n / r["sync_s"] for r in runs], 0),
                "frames": runs[0]["frames"],
                "kib_from_device": round(runs[0]["kib_in"]),
            }
        )
    sec["rows"] = rows
    return report.finish(sec)


def _two(v: float) -> str:
    return f"{v:.2f}"


def render(sec: dict[str, Any]) -> str:
    out = [
        f"Framed round trips over a pseudo-terminal ({sec['line']}), the device simulator "
        "answering" + (" (after a warm-up; the two in the reverse order every other run)"
                       if sec.get("alternated") else "") + ":",
        "",
        "| exchange | round trips/s | each |",
        "|---|---|---|",
    ]
    for r in sec["round_trips"]:
        out.append(
            f"| {r['what']} | {report.fmt_spread(r['per_s'], '/s')} | "
            f"{report.fmt_spread(r['ms'], ' ms', fmt=lambda v: f'{v:.2f}')} |"
        )
    out += [
        "",
        f"A full `tapcash sync` of a POS against the loopback ledger ({sec['line']}): "
        "export, upload, ACK.",
        "",
        "| records | sync | records/s | frames | from the device |",
        "|---|---|---|---|---|",
    ]
    for r in sec["rows"]:
        out.append(
            f"| {r['records']} | {report.fmt_spread(r['sync_s'], ' s', fmt=_two)} | "
            f"{report.fmt_spread(r['records_per_s'], '/s')} | {r['frames']} | "
            f"{r['kib_from_device']} KiB |"
        )
    return "\n".join(out) + "\n"


@click.command()
@click.option(
    "--records",
    type=click.IntRange(1),
    multiple=True,
    help="journal records on the POS (repeatable) [default: 100 500 1000]",
)
@click.option(
    "--baud",
    type=click.IntRange(300),
    default=None,
    help="pace the device's output like a UART at this rate",
)
@click.option(
    "--repeat",
    type=click.IntRange(1),
    default=3,
    show_default=True,
    help="runs per figure (min/median/max)",
)
@click.option("--json", "as_json", is_flag=True, help="print the section as JSON")
def command(records: tuple[int, ...], baud: int | None, repeat: int, as_json: bool) -> None:
    """Sync tool over a pseudo-terminal: framed round trips and a full POS sync."""
    sec = section(records or DEFAULT_RECORDS, baud, repeat)
    if as_json:
        click.echo(json.dumps(sec, indent=2))
        return
    click.echo(render(sec).rstrip())
    report.echo_provenance(sec)
