"""`tapcash sim ui`: the command (Textual is imported only when it runs)."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from pathlib import Path

import click

MAX_CARDS = 4  # keys a, b, c, d tap them


def parse_card(text: str, index: int) -> tuple[str, str, int]:
    """'Ana=150.00' -> ('A', 'Ana', 15000): label, holder, first load in minor units."""
    holder, sep, amount = text.partition("=")
    holder = holder.strip()
    if not sep or not holder:
        raise click.BadParameter(f"{text!r}: expected NAME=AMOUNT, e.g. Ana=150.00")
    try:
        value = Decimal(amount.strip())
    except InvalidOperation:
        raise click.BadParameter(f"{text!r}: {amount!r} is not an amount") from None
    cents = value * 100
    if value < 0 or cents != cents.to_integral_value():
        raise click.BadParameter(f"{text!r}: amount must be >= 0 with at most 2 decimals")
    return "ABCD"[index], holder, int(cents)


def _spec(card_spec: type, text: str, index: int) -> object:
    """'Ana=150.00' or 'Ana=150.00+40.00' (a 40.00 earmarked purse) -> a CardSpec."""
    from tapcash.sim.device.provision import PIN

    main, plus, purse = text.partition("+")
    label, holder, cents = parse_card(main, index)
    extra = parse_card("x=" + purse, index)[2] if plus else 0
    return card_spec(label, holder, cents, PIN, extra)


@click.command("ui")
@click.option("--card", "cards", multiple=True, metavar="NAME=AMOUNT[+PURSE]",
              help="a card wallet and its first load; +PURSE adds an earmarked purse prepaid "
                   "at the POS's merchant (repeat, up to 4; default: Ana=150.00 Ben=80.00 "
                   "Caro=25.00)")
@click.option("--seed", type=int, default=0, show_default=True,
              help="seeds the device keys, challenges and the tear button")
@click.option("--ledger/--no-ledger", default=True, show_default=True,
              help="run the real ledger service on loopback so that Sync works")
@click.option("--workdir", type=click.Path(path_type=Path), default=None,
              help="folder for the ledger database and the sync outbox "
                   "(default: a temporary folder, removed at exit)")
def ui_command(cards: tuple[str, ...], seed: int, ledger: bool, workdir: Path | None) -> None:
    """Run a checkout by hand in the terminal: type an amount on the POS keypad, tap a card,
    enter its PIN when asked, tear a tap and re-tap, sync with the ledger. The POS and the
    cards run the unchanged firmware over a virtual NFC field."""
    from .app import CheckoutApp
    from .checkout import DEFAULT_CARDS, CardSpec

    if len(cards) > MAX_CARDS:
        raise click.BadParameter(f"at most {MAX_CARDS} cards", param_hint="--card")
    specs = tuple(_spec(CardSpec, c, i) for i, c in enumerate(cards)) if cards else DEFAULT_CARDS
    CheckoutApp(cards=specs, seed=seed, ledger=ledger, workdir=workdir).run()
