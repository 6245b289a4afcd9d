"""`tapcash conformance card|pos`: run the protocol's checks against a device you built.

A card is reached through a PC/SC reader (`--reader`, a name or its index in `tapcash pcsc
readers`) or a serial port speaking the sync frames (`--port`); a terminal through its serial
side (`--port`, or `--reader` for one that presents itself as a card). Exit status 0 when every
check passed, 1 when one failed, 2 when the device could not be checked at all.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import click

from .checks import CARD_CHECKS, POS_CHECKS, Outcome, Session, run


@contextmanager
def _link(reader: str | None, port: str | None, baud: int) -> Iterator[Callable[[bytes], bytes]]:
    if (reader is None) == (port is None):
        raise click.UsageError("give exactly one of --reader (PC/SC) or --port (serial)")
    if reader is not None:
        from tapcash.host.pcsc.reader_link import PcscLink, ReaderError, resolve_reader

        try:
            name = resolve_reader(int(reader) if reader.isdigit() else reader)
            link = PcscLink(name)
            if not link.wait_for_card(5.0):
                raise click.ClickException(f"no card in reader {name!r}")
        except ReaderError as e:
            raise click.ClickException(str(e)) from None
        try:
            yield link.transceive
        finally:
            link.close()
    else:
        from tapcash.host.device.errors import ToolError
        from tapcash.host.device.links import FrameLink

        try:
            flink = FrameLink(str(port), baud)
        except (OSError, ToolError) as e:
            raise click.ClickException(f"{port}: {e}") from None
        try:
            yield flink.transceive
        finally:
            flink.close()


def _report(kind: str, outcomes: list[Outcome], as_json: bool, notes: list[str]) -> int:
    failed = [o for o in outcomes if o.status == "FAIL"]
    unusable = outcomes and outcomes[0].status in ("FAIL", "skip")
    if as_json:
        click.echo(
            json.dumps(
                {
                    "device": kind,
                    "passed": not failed and not unusable,
                    "checks": [o.__dict__ for o in outcomes],
                    "notes": notes,
                }
            )
        )
    else:
        for o in outcomes:
            click.echo(f"{o.status:<7} {o.name:<17} {o.doc}")
            if o.detail:
                click.echo(f"{'':<26}-> {o.detail}")
        for n in notes:
            click.echo(f"note: {n}")
        n_pass = sum(o.status == "pass" for o in outcomes)
        verdict = "conforms" if not failed and not unusable else "does NOT conform"
        click.echo(
            f"{kind}: {n_pass}/{len(outcomes)} checks passed: {verdict} to "
            "docs/PROTOCOL.md version 2"
        )
    if unusable:
        return 2
    return 1 if failed else 0


def _run(
    kind: str, checks: Any, reader: str | None, port: str | None, baud: int, as_json: bool
) -> None:
    from tapcash.firmware.core.hal import LinkError
    from tapcash.host.device.errors import ToolError

    with _link(reader, port, baud) as transceive:
        s = Session(transceive)
        try:
            outcomes = run(checks, s)
        except (LinkError, ToolError, OSError) as e:
            raise click.ClickException(f"the link failed during the checks: {e}") from None
    sys.exit(_report(kind, outcomes, as_json, s.facts.get("notes", [])))


_opts = [
    click.option("--reader", default=None, help="PC/SC reader: name (or a unique part) or index"),
    click.option("--port", default=None, help="serial port of a device speaking the sync frames"),
    click.option("--baud", default=115200, show_default=True, help="serial line speed"),
    click.option("--json", "as_json", is_flag=True, help="one JSON object instead of the table"),
]


def _with_opts(fn: Callable[..., Any]) -> Callable[..., Any]:
    for opt in reversed(_opts):
        fn = opt(fn)
    return fn


@click.group()
def conformance() -> None:
    """Run the protocol's checks (docs/PROTOCOL.md) against a card or terminal over PC/SC or a
    serial port."""


@conformance.command()
@_with_opts
def card(reader: str | None, port: str | None, baud: int, as_json: bool) -> None:
    """Check a wallet card: INFO, routing, PAY refusals, a payment of 0.01 (signature, fields,
    idempotent retry), EXPORT and its signed status, ACK refusals."""
    _run("card", CARD_CHECKS, reader, port, baud, as_json)


@conformance.command()
@_with_opts
def pos(reader: str | None, port: str | None, baud: int, as_json: bool) -> None:
    """Check a terminal's serial side: INFO, routing, EXPORT (receipts, signed status), ACK and
    APPLY refusals."""
    _run("pos", POS_CHECKS, reader, port, baud, as_json)
