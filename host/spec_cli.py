"""`tapcash spec`: the protocol spec's generated parts (docs/PROTOCOL.md)."""

from __future__ import annotations

import sys
from pathlib import Path

import click


@click.group()
def spec() -> None:
    """The protocol spec (docs/PROTOCOL.md): check or regenerate its examples from the code."""


@spec.command()
@click.option(
    "--doc",
    type=click.Path(path_type=Path),
    default=None,
    help="the spec to check [default: docs/PROTOCOL.md of this checkout]",
)
@click.option("--write", is_flag=True, help="rewrite the doc's example blocks from the code")
def examples(doc: Path | None, write: bool) -> None:
    """Compare the spec's example blocks (transcripts in hex, every signed object) with what
    the code generates now; --write replaces them (review the diff)."""
    from .spec_examples import DEFAULT_DOC, command_main

    sys.exit(command_main(doc or DEFAULT_DOC, write))
