"""A Click group whose sub-commands are imported only when one of them runs.

`tapcash --help` must not pay for FastAPI, uvicorn, matplotlib or Textual: each sub-command is
named here by "module:attribute" plus its one-line help, and its module is imported when the
command is looked up to run (or to show its own --help). tests/host/test_cli_lazy.py checks that the
one-line help written here is the command's own, so the listing cannot drift from the code.
"""

from __future__ import annotations

from importlib import import_module
from typing import NamedTuple

import click
from click.utils import make_default_short_help


class Lazy(NamedTuple):
    """Where a sub-command lives and what `--help` lists for it."""

    target: str  # "package.module:attribute"
    short_help: str  # the first sentence of the command's help, as Click would list it


class LazyGroup(click.Group):
    """A group of eagerly added commands plus `lazy` ones, imported on first use."""

    def __init__(self, *args: object, lazy: dict[str, Lazy] | None = None, **kwargs: object):
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.lazy: dict[str, Lazy] = dict(lazy or {})

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.lazy and cmd_name not in self.commands:
            self.add_command(load(self.lazy[cmd_name].target), cmd_name)
        return super().get_command(ctx, cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # Click's own listing looks every command up (imports it) for its short help; this
        # one writes the same rows from the table for the commands not imported yet.
        rows: list[tuple[str, click.Command | str]] = []
        for name in self.list_commands(ctx):
            cmd = self.commands.get(name)
            if cmd is None:
                rows.append((name, self.lazy[name].short_help))
            elif not cmd.hidden:
                rows.append((name, cmd))
        if not rows:
            return
        limit = formatter.width - 6 - max(len(name) for name, _ in rows)
        with formatter.section("Commands"):
            formatter.write_dl([
                (name, make_default_short_help(it, limit) if isinstance(it, str)
                 else it.get_short_help_str(limit))
                for name, it in rows
            ])


def load(target: str) -> click.Command:
    module_name, _, attr = target.partition(":")
    command = getattr(import_module(module_name), attr)
    if not isinstance(command, click.Command):
        raise TypeError(f"{target} is not a click command")
    return command
