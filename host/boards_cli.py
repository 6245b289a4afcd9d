"""`tapcash boards`: list the board profiles and validate one."""

from __future__ import annotations

import sys

import click
from rich.console import Console
from rich.table import Table

from tapcash.boards.profile import ProfileError, apply_option, list_profiles, load_profile, validate


@click.group(invoke_without_command=True)
@click.pass_context
def boards(ctx: click.Context) -> None:
    """List board profiles (or `check` one)."""
    if ctx.invoked_subcommand is not None:
        return
    table = Table(title="board profiles")
    table.add_column("name", no_wrap=True)
    for column in ("roles", "peripherals", "options", "check"):
        table.add_column(column)
    for profile in list_profiles():
        result = validate(profile)
        table.add_row(
            profile["name"],
            ", ".join(profile.get("roles", [])),
            ", ".join(profile.get("peripherals", {})),
            ", ".join(profile.get("options", {})) or "-",
            "ok" if not result.errors else f"{len(result.errors)} error(s)",
        )
    Console().print(table)


@boards.command("check")
@click.argument("profile")
@click.option("--role", type=click.Choice(["wallet", "pos"]), help="check for this role only")
@click.option("--option", "option", help="apply a profile option first (e.g. nfc_spi)")
def check_command(profile: str, role: str | None, option: str | None) -> None:
    """Validate PROFILE (a built-in name or a JSON file): pins, buses, role peripherals."""
    try:
        data = load_profile(profile)
        if option:
            data = apply_option(data, option)
    except ProfileError as exc:
        raise click.ClickException(str(exc)) from None
    result = validate(data, role)
    for warning in result.warnings:
        click.echo(f"warning: {warning}")
    for error in result.errors:
        click.echo(f"error: {error}", err=True)
    if result.errors:
        click.echo(f"{data.get('name', profile)}: {len(result.errors)} error(s)", err=True)
        sys.exit(1)
    click.echo(f"{data.get('name', profile)}: ok")
