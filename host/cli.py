"""The `tapcash` command: one entry point, one small module per sub-command."""

from __future__ import annotations

import sys
from importlib.metadata import version

import click

from .bench import bench
from .boards_cli import boards
from .device.cli import deploy, flash, provision
from .issuer_cli import issuer
from .ledger.cli import ledger
from .pcsc.cli import pcsc
from .sim_cli import demo, sim
from .sync.cli import sync


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(version("tapcash"), prog_name="tapcash")
def cli() -> None:
    """Offline tap-to-pay digital cash: wallets, POS terminals, sync and ledger."""


@cli.command()
def selftest() -> None:
    """Sign, verify and round-trip CBOR with the firmware core on this machine."""
    from .selftest import run_selftest

    click.echo(f"tapcash {version('tapcash')} firmware core self-test")
    if not run_selftest():
        click.echo("self-test FAILED", err=True)
        sys.exit(1)
    click.echo("self-test passed")


cli.add_command(bench)
cli.add_command(boards)
cli.add_command(ledger)
cli.add_command(issuer)
cli.add_command(sync)
cli.add_command(sim)
cli.add_command(demo)
cli.add_command(flash)
cli.add_command(deploy)
cli.add_command(provision)
cli.add_command(pcsc)


def main() -> None:
    cli()
