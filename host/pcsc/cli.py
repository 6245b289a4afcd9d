"""`tapcash pcsc ...`: PC/SC readers, a simulated wallet card behind vpcd, the desktop POS."""

from __future__ import annotations

import click


@click.group()
def pcsc() -> None:
    """PC/SC: list readers, serve a simulated wallet card (vpcd), take a payment."""
