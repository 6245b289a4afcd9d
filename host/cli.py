"""The `tapcash` command: one entry point, one small module per sub-command.

Sub-commands are imported only when they run (host/lazy_group.py), so `tapcash --help` and
`tapcash --version` do not load FastAPI, uvicorn, matplotlib or Textual. A new sub-command is one
row in COMMANDS: its name, "module:attribute" and the first sentence of its help
(tests/host/test_cli_lazy.py checks that sentence against the command's own help).
"""

from __future__ import annotations

import sys
from importlib.metadata import version

import click

from .lazy_group import Lazy, LazyGroup

COMMANDS: dict[str, Lazy] = {
    "bench": Lazy("tapcash.host.bench:bench",
                  "Measure speed and memory (medians over repeated runs)."),
    "boards": Lazy("tapcash.host.boards_cli:boards", "List board profiles (or `check` one)."),
    "demo": Lazy("tapcash.host.sim_cli:demo",
                 "One simulated day: 50 card wallets and 5 POS terminals paying offline, a torn "
                 "tap, a power cut, a cloned card and a rolled-back card; then every device syncs "
                 "through the sync tool to the ledger and the books are checked."),
    "conformance": Lazy("tapcash.host.conformance.cli:conformance",
                        "Run the protocol's checks (docs/PROTOCOL.md) against a card or terminal "
                        "over PC/SC or a serial port."),
    "deploy": Lazy("tapcash.host.device.cli:deploy",
                   "Compile the firmware with mpy-cross and copy it, /board.json and /main.py to a "
                   "board running MicroPython (mpremote); then import it on the board to check."),
    "flash": Lazy("tapcash.host.device.cli:flash",
                  "Erase the board and write a stock MicroPython image with esptool (with a "
                  "ROMFS partition in its partition table when asked)."),
    "issuer": Lazy("tapcash.host.issuer_cli:issuer",
                   "Issuer root key: device certificates, vouchers, payroll."),
    "ledger": Lazy("tapcash.host.ledger.cli:ledger",
                   "The online ledger service (HTTP, SQLite or PostgreSQL)."),
    "pcsc": Lazy("tapcash.host.pcsc.cli:pcsc",
                 "PC/SC: list readers, serve a simulated wallet card (vpcd), take a payment."),
    "provision": Lazy("tapcash.host.device.cli:provision",
                      "Personalise a blank device: it makes its key (PERSO KEYGEN), the issuer "
                      "certifies it here, PERSO FINISH installs certificate, issuer key, PIN/PUK, "
                      "limits or config."),
    "sim": Lazy("tapcash.host.sim_cli:sim",
                "Simulate wallets and POS terminals: scenarios, faults, attacks, reconciliation."),
    "spec": Lazy("tapcash.host.spec_cli:spec",
                 "The protocol spec (docs/PROTOCOL.md): check or regenerate its examples from the "
                 "code."),
    "sync": Lazy("tapcash.host.sync.cli:sync", "Sync a device with the ledger over a serial line."),
}


@click.group(cls=LazyGroup, lazy=COMMANDS, context_settings={"help_option_names": ["-h", "--help"]})
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


def main() -> None:
    """Run the CLI; Ctrl-C anywhere exits 130 (the shell's convention), not Click's 'Aborted!' 1."""
    try:
        code = cli.main(standalone_mode=False)
    except (click.exceptions.Abort, KeyboardInterrupt):
        click.echo("interrupted", err=True)
        sys.exit(130)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except BrokenPipeError:  # `tapcash ... | head`: the reader left, nothing more to say
        sys.stderr.close()
        sys.exit(1)
    if isinstance(code, int) and not isinstance(code, bool) and code:
        sys.exit(code)  # ctx.exit(n): Click returns n instead of exiting
