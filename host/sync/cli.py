"""`tapcash sync`: the command line around session.sync_device / flush_outbox."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import click

from tapcash.host.device.errors import (
    EXIT_LEDGER,
    EXIT_OK,
    EXIT_SPOOLED,
    SYNC_EXIT,
    ToolError,
    exit_code,
)
from tapcash.host.output import echo_json, money

from .commands import EXPORT_PAGE_RECORDS
from .outbox import Outbox, default_dir
from .transport import DEFAULT_BAUD, DEFAULT_RETRIES, DEFAULT_TIMEOUT_S


class RichProgress:
    """A progress bar on stderr for the export, and one line per stage."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

        self.console = Console(stderr=True)
        self.bar = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            console=self.console,
            transient=True,
        )
        self.task: Any = None

    def stage(self, text: str) -> None:
        if self.task is not None:
            self.bar.stop()
            self.task = None
        self.console.print(f"[dim]{text}...[/dim]")

    def export_total(self, total: int) -> None:
        if total > 0:
            self.bar.start()
            self.task = self.bar.add_task("records", total=total)

    def exported(self, count: int) -> None:
        if self.task is not None:
            self.bar.update(self.task, completed=count)

    def close(self) -> None:
        if self.task is not None:
            self.bar.stop()
            self.task = None


def _emit(as_json: bool, payload: dict[str, Any], text: str, *, err: bool = False) -> None:
    if as_json:
        echo_json(payload)
    else:
        click.echo(text, err=err)


def _describe(res: Any) -> str:
    lines = [f"{res.kind} {res.device} on {res.port}: {res.message}"]
    if res.exported:
        lines.append(f"  exported {res.exported} records (seq {res.first_seq}..{res.last_seq})")
    else:
        lines.append("  no new records")
    if res.ack_upto is not None:
        lr = res.ledger_result
        lines.append(
            f"  ledger: {lr.get('accepted', 0)} accepted, {lr.get('duplicates', 0)} already "
            f"known, {lr.get('conflicts', 0)} conflicts, {lr.get('refused', 0)} refused; "
            f"acknowledged up to seq {res.ack_upto}"
        )
    if res.updates_applied > 1:
        lines.append(f"  updates: {res.updates_applied} applied")
    elif res.update:
        lines.append(f"  update {res.update}")
    if res.vouchers_loaded or res.vouchers_already:
        lines.append(
            f"  vouchers: {res.vouchers_loaded} loaded, {res.vouchers_already} already loaded"
        )
    st = res.status
    if "balance" in st:
        lines.append(f"  device: counter {st.get('counter')}, balance {money(st.get('balance'))}"
                     + "".join(f", purse {p['program']} {money(p['balance'])}"
                               for p in st.get("purses", [])))
    if res.flush:
        f = res.flush
        n, left = f["uploaded"], f["left"]
        kept = f"; {left} kept there, not acknowledged in full by the ledger" if left else ""
        lines.append(f"  outbox: {n} spooled batch{'es' if n != 1 else ''} uploaded{kept}")
    if res.spooled:
        lines.append(f"  batch kept in {res.spooled}")
    for w in res.warnings:
        lines.append(f"  warning: {w}")
    return "\n".join(lines)


@click.command()
@click.option("--port", "-p", help="serial port of the device (/dev/ttyUSB0, /dev/pts/N)")
@click.option(
    "--ledger",
    envvar="TAPCASH_LEDGER_URL",
    help="ledger base URL (env TAPCASH_LEDGER_URL); without it the batch is only spooled",
)
@click.option(
    "--token",
    envvar="TAPCASH_LEDGER_TOKEN",
    help="operator token (env TAPCASH_LEDGER_TOKEN), optional: uploads are signed by the "
    "devices; one given is checked first and a wrong one stops the sync (exit 6)",
)
@click.option(
    "--outbox",
    type=click.Path(file_okay=False, path_type=Path),
    help="outbox folder (default $TAPCASH_OUTBOX or ~/.local/share/tapcash/outbox)",
)
@click.option("--flush", is_flag=True, help="upload the batches waiting in the outbox")
@click.option("--json", "as_json", is_flag=True, help="print one JSON summary on stdout")
@click.option("--baud", type=int, default=DEFAULT_BAUD, show_default=True)
@click.option(
    "--timeout",
    "timeout_s",
    type=float,
    default=DEFAULT_TIMEOUT_S,
    show_default=True,
    help="seconds to wait for each answer before resending",
)
@click.option("--retries", type=int, default=DEFAULT_RETRIES, show_default=True)
@click.option("--page-records", type=int, default=EXPORT_PAGE_RECORDS, hidden=True)
def sync(
    port: str | None,
    ledger: str | None,
    token: str | None,
    outbox: Path | None,
    flush: bool,
    as_json: bool,
    baud: int,
    timeout_s: float,
    retries: int,
    page_records: int,
) -> None:
    """Sync a device with the ledger over a serial line.

    Exports the device's journal, keeps it in the local outbox, uploads it, hands the ledger's
    update and vouchers to the device and then its acknowledgement (the device prunes only
    then). Safe to interrupt and rerun at any point; a later sync (or --flush) uploads what
    an unreachable ledger left in the outbox.

    \b
    Exit codes (host/device/errors.py):
      0  synced
      3  port unusable: no such port, busy, permission denied
      4  device: not a tapcash device, line lost mid-sync
      5  ledger unreachable (or none given): the batch waits in the outbox
      6  the ledger refused a batch, or the --token given (checked before anything else)
    """
    if not port and not flush:
        raise click.UsageError("give --port (sync a device) and/or --flush (upload the outbox)")
    if flush and not port and not ledger:
        raise click.UsageError("--flush needs --ledger (or TAPCASH_LEDGER_URL)")
    box = Outbox(outbox or default_dir())
    from .ledger_link import LedgerLink

    link = LedgerLink(ledger, token) if ledger else None
    try:
        if link is not None and token:
            link.check_token()  # before the device is touched: a wrong token changes nothing
        code = _run(port, link, box, flush, as_json, baud, timeout_s, retries, page_records)
    except ToolError as e:
        code = exit_code(e, SYNC_EXIT)
        _emit(
            as_json,
            {"ok": False, "exit_code": code, "error": e.message, "kind": type(e).__name__},
            f"error: {e.message}",
            err=True,
        )
    except KeyboardInterrupt:
        _emit(
            as_json,
            {"ok": False, "exit_code": 130, "error": "interrupted"},
            "interrupted: nothing is lost, run tapcash sync again",
            err=True,
        )
        code = 130
    finally:
        if link is not None:
            link.close()
    sys.exit(code)


def _run(
    port: str | None,
    link: Any,
    box: Outbox,
    flush: bool,
    as_json: bool,
    baud: int,
    timeout_s: float,
    retries: int,
    page_records: int = EXPORT_PAGE_RECORDS,
) -> int:
    from .session import flush_outbox, sync_device

    if not port:
        fl = flush_outbox(link, box)
        payload = {
            "ok": fl.unreachable is None and not fl.refused,
            "flush": {k: v for k, v in vars(fl).items() if k != "replies"},
        }
        if fl.unreachable:
            code = EXIT_SPOOLED
            text = f"{fl.unreachable}; {fl.left} batches wait in {box.root}"
        else:
            code = EXIT_LEDGER if fl.refused else EXIT_OK
            text = f"uploaded {fl.uploaded} batches, {fl.left} left in {box.root}"
            text += "".join(f"\n  refused: {r}" for r in fl.refused)
        payload["exit_code"] = code
        _emit(as_json, payload, text, err=code != EXIT_OK)
        return code

    from .transport import SerialTransport

    progress = None
    if not as_json and sys.stderr.isatty() and not os.environ.get("TAPCASH_NO_PROGRESS"):
        progress = RichProgress()
    transport = SerialTransport(port, baud, timeout_s=timeout_s, retries=retries)
    try:
        res = sync_device(
            transport, ledger=link, outbox=box, progress=progress, page_records=page_records
        )
    finally:
        transport.close()
        if progress is not None:
            progress.close()
    code = EXIT_OK if res.outcome == "synced" else EXIT_SPOOLED
    payload = res.to_json()
    payload["ok"] = code == EXIT_OK
    payload["exit_code"] = code
    _emit(as_json, payload, _describe(res), err=code != EXIT_OK)
    return code
