"""`tapcash bench pcsc`: APDU round trip and payment time through pcscd + vpcd, repeated
(the measurement is host/pcsc/bench.py, also `tapcash pcsc bench`). Needs a running pcscd with
vsmartcard-vpcd; without one the section says why it was not measured."""

from __future__ import annotations

import json
from typing import Any

import click

from . import report

_SPREAD = ("apdu_ms", "pay_ms", "tap_ms")


def section(repeat: int = 3, apdus: int = 200, payments: int = 20,
            quick: bool = False) -> dict[str, Any]:
    from tapcash.host.pcsc.bench import run
    from tapcash.host.pcsc.reader_link import ReaderError

    if quick:
        repeat, apdus, payments = 1, 20, 2
    opts = {"repeat": (repeat, 3), "apdus": (apdus, 200), "payments": (payments, 20)}
    cmd = "tapcash bench pcsc" + "".join(f" --{k} {v}" for k, (v, d) in opts.items() if v != d)
    sec = report.new_section("pcsc", cmd)
    sec["title"] = "PC/SC"
    try:
        runs = [run(None, apdus=apdus, payments=payments, reverse=bool(i % 2))
                for i in range(repeat)]  # the settings' order alternates run by run
    except ReaderError as e:
        sec["skipped"] = str(e)
        sec["rows"] = []
        return report.finish(sec)
    rows = []
    for i, first in enumerate(runs[0]["rows"]):
        row = {"nodelay": first["nodelay"], "quickack": first["quickack"]}
        row.update({k: report.spread([r["rows"][i][k] for r in runs], 3) for k in _SPREAD})
        rows.append(row)
    sec["rows"] = rows
    sec["in_process_apdu_ms"] = report.spread([r["in_process_apdu_ms"] for r in runs], 3)
    return report.finish(sec)


def _ms(s: dict[str, Any]) -> str:
    return report.fmt_spread(s, " ms", fmt=lambda v: f"{v:.3f}" if v < 1 else f"{v:.1f}")


def render(sec: dict[str, Any]) -> str:
    if sec.get("skipped"):
        return f"Not measured in this run: {sec['skipped']}\n"
    out = ["A simulated wallet served in a vpcd reader, driven through pcscd with pyscard; "
           f"GET INFO answered in process: {_ms(sec['in_process_apdu_ms'])}. The settings are "
           "measured in turn, in the reverse order every other run.", "",
           "| TCP_NODELAY | TCP_QUICKACK | APDU round trip | payment | tap |",
           "|---|---|---|---|---|"]
    for r in sec["rows"]:
        out.append(f"| {'on' if r['nodelay'] else 'off'} | {'on' if r['quickack'] else 'off'} "
                   f"| {_ms(r['apdu_ms'])} | {_ms(r['pay_ms'])} | {_ms(r['tap_ms'])} |")
    return "\n".join(out) + "\n"


@click.command()
@click.option("--repeat", default=3, show_default=True, help="whole runs (min/median/max)")
@click.option("--apdus", type=click.IntRange(1), default=200, show_default=True)
@click.option("--payments", type=click.IntRange(1, 30), default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="print the section as JSON")
def command(repeat: int, apdus: int, payments: int, as_json: bool) -> None:
    """PC/SC APDU round trip and payment time through pcscd + vpcd (needs pcscd)."""
    sec = section(repeat, apdus, payments)
    if as_json:
        click.echo(json.dumps(sec, indent=2))
        return
    if sec.get("skipped"):
        raise click.ClickException(sec["skipped"])
    click.echo(render(sec).rstrip())
    report.echo_provenance(sec)
