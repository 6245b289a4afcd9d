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
from pathlib import Path
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
@click.option(
    "--as-card",
    is_flag=True,
    help="check the terminal's reader side: the kit is the card, served in a vpcd reader",
)
@click.option(
    "--issuer-key",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    envvar="TAPCASH_ISSUER_KEY",
    help="--as-card: key file of an issuer the terminal trusts (certifies the kit's cards)",
)
@click.option("--vpcd-host", default="127.0.0.1", show_default=True, help="--as-card: vpcd host")
@click.option(
    "--vpcd-port",
    type=click.IntRange(1, 65535),
    default=35963,
    show_default=True,
    help="--as-card: vpcd port (35963 is reader 'Virtual PCD 00 00', 35964 the second)",
)
@click.option(
    "--wait",
    "wait_s",
    type=click.FloatRange(1),
    default=120.0,
    show_default=True,
    help="--as-card: seconds to wait for the terminal at each tap",
)
@click.option(
    "--idle",
    "idle_s",
    type=click.FloatRange(0.5),
    default=3.0,
    show_default=True,
    help="--as-card: a tap ends this many seconds after the terminal's last command (or at its "
    "reset / power off)",
)
def pos(
    reader: str | None,
    port: str | None,
    baud: int,
    as_json: bool,
    as_card: bool,
    issuer_key: Path | None,
    vpcd_host: str,
    vpcd_port: int,
    wait_s: float,
    idle_s: float,
) -> None:
    """Check a terminal. Its serial side (--port, or --reader): INFO, routing, EXPORT (receipts,
    signed status), ACK and APPLY refusals. Its reader side (--as-card): the kit serves cards in
    a vpcd reader and you take five payments on the terminal (a clean one, a tear after the
    card's commit and its re-tap, a forged payment, a card refusal, an untrusted card)."""
    if not as_card:
        if issuer_key is not None:
            raise click.UsageError("--issuer-key goes with --as-card")
        _run("pos", POS_CHECKS, reader, port, baud, as_json)
        return
    if reader is not None or port is not None:
        raise click.UsageError(
            "--as-card serves the card in vpcd (--vpcd-host/--vpcd-port): no --reader or --port"
        )
    if issuer_key is None:
        raise click.UsageError(
            "--as-card needs --issuer-key: the kit's cards must be certified by an issuer the "
            "terminal trusts"
        )
    from tapcash.host.issuer import Issuer

    from .as_card import Kit, run_kit

    try:
        issuer = Issuer.load(issuer_key)
    except (ValueError, KeyError, OSError) as e:
        raise click.ClickException(f"{issuer_key}: not an issuer key file ({e})") from None
    say = (lambda _m: None) if as_json else click.echo
    kit = Kit(issuer, host=vpcd_host, port=vpcd_port, say=say, wait_s=wait_s, idle_s=idle_s)
    say(f"serving the kit's cards in vpcd at {vpcd_host}:{vpcd_port}; PIN 1234 if asked")
    try:
        res = run_kit(kit)
    except KeyboardInterrupt:
        click.echo("interrupted: the checks were not finished", err=True)
        sys.exit(130)
    sys.exit(_report("pos (reader side)", res.outcomes, as_json, res.notes))
