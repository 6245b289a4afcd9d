"""`tapcash flash`, `tapcash deploy`, `tapcash provision`: from a bare ESP32 to a personalised
wallet or POS.

    tapcash flash --port /dev/ttyUSB0 --firmware ESP32_GENERIC-20251209-v1.27.0.bin
    tapcash deploy --port /dev/ttyUSB0 --board devkitc-pn532-wallet --role wallet
    tapcash provision --port /dev/ttyUSB0 --role wallet --issuer-key issuer.key --pin 1234 \\
        --puk 12345678 --limit payment_max=200.00 [--ledger URL --token T]

Errors are one line on stderr (no traceback) and an exit code (host/device/errors.py,
DEVICE_TOOL_EXIT): 1 a tool failed, 3 port, 4 device, 5 input file, 6 ledger.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from tapcash.host.issuer import CERT_DAYS
from tapcash.host.output import echo_json

from .errors import DEVICE_TOOL_EXIT, InputError, LedgerError, ToolError, exit_code

port_option = click.option(
    "--port",
    "-p",
    envvar="TAPCASH_PORT",
    help="serial port of the board (/dev/ttyUSB0, /dev/ttyACM0; env TAPCASH_PORT)",
)


@contextmanager
def _errors() -> Iterator[None]:
    try:
        yield
    except ToolError as e:
        click.echo(f"error: {e.message}", err=True)
        sys.exit(exit_code(e, DEVICE_TOOL_EXIT))
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)


# --- flash -------------------------------------------------------------------------------


class FlashAddress(click.ParamType):
    """0x1000, 4096 or 0o10000: a non-negative flash address."""

    name = "ADDRESS"

    def convert(self, value: Any, param: Any, ctx: Any) -> int:
        if isinstance(value, int):
            return value
        try:
            address = int(str(value), 0)
        except ValueError:
            self.fail(f"{value!r} is not an address (e.g. 0x1000)", param, ctx)
        if address < 0:
            self.fail("an address is not negative", param, ctx)
        return address


@click.command()
@port_option
@click.option(
    "--firmware",
    "image",
    required=True,
    type=click.Path(path_type=Path),
    help="MicroPython .bin for the board (micropython.org/download)",
)
@click.option(
    "--chip",
    default="esp32",
    show_default=True,
    type=click.Choice(["esp32", "esp32s2", "esp32s3", "esp32c3", "esp32c2", "esp32c6", "esp32h2"]),
)
@click.option(
    "--baud",
    type=int,
    default=460800,
    show_default=True,
    help="baud rate for writing (the connection starts at 115200)",
)
@click.option(
    "--offset",
    type=FlashAddress(),
    default=None,
    help="flash address of the image (default: 0x1000 on esp32/esp32s2, else 0)",
)
@click.option(
    "--connect-attempts",
    type=int,
    default=None,
    help="esptool connection attempts (default: esptool's, 7)",
)
@click.option(
    "--board",
    "-b",
    help="board profile: its memory.partitions picks the layout when --partitions is not given",
)
@click.option(
    "--partitions",
    type=click.Choice(["stock", "romfs"]),
    default=None,
    help="stock: the image's own partition table; romfs: add a ROMFS partition for "
    "tapcash deploy --romfs (default: the board profile's, else stock)",
)
@click.option(
    "--romfs-kb",
    type=click.IntRange(min=4),
    default=256,
    show_default=True,
    help="size of the ROMFS partition, taken from the filesystem partition",
)
@click.option(
    "--save-image",
    type=click.Path(path_type=Path, dir_okay=False),
    help="write the image (with its partition table) to this file instead of a board",
)
@click.option("--quiet", "-q", is_flag=True, help="do not show esptool's progress")
def flash(
    port: str | None,
    image: Path,
    chip: str,
    baud: int,
    offset: int | None,
    connect_attempts: int | None,
    board: str | None,
    partitions: str | None,
    romfs_kb: int,
    save_image: Path | None,
    quiet: bool,
) -> None:
    """Erase the board and write a stock MicroPython image with esptool (with a ROMFS
    partition in its partition table when asked)."""
    from .flash import flash as do_flash

    with _errors():
        if partitions is None:
            partitions = _profile_partitions(board) if board else "stock"
        echo = None if quiet else (lambda line: click.echo(line, err=True))
        info = do_flash(
            port,
            image,
            chip,
            baud,
            offset,
            connect_attempts,
            echo=echo,
            partitions=partitions,
            romfs_kb=romfs_kb,
            save_image=save_image,
        )
        if info.layout is not None:
            romfs = info.layout.romfs
            said = "added" if info.layout.changed else "already in the image's table"
            click.echo(f"ROMFS partition {said}: {romfs.describe()}", err=True)
            for p in info.layout.after:
                click.echo(f"  {p.describe()}", err=True)
        if save_image is not None:
            click.echo(f"wrote {save_image} ({info.size} bytes); no board was touched")
            return
        click.echo(
            f"flashed {info.path.name} ({info.size} bytes) to {port}: MicroPython should "
            "now answer at 115200 baud (tapcash deploy next)"
        )


def _profile_partitions(board: str) -> str:
    from tapcash.boards.profile import ProfileError, board_memory, load_profile

    from .errors import BoardError

    try:
        return board_memory(load_profile(board)).partitions
    except ProfileError as e:
        raise BoardError(str(e)) from None


# --- deploy ------------------------------------------------------------------------------


@click.command()
@port_option
@click.option(
    "--board",
    "-b",
    required=True,
    help="board profile: a built-in name (tapcash boards) or a JSON file",
)
@click.option("--role", required=True, type=click.Choice(["wallet", "pos"]))
@click.option(
    "--option",
    "-o",
    "options",
    multiple=True,
    help="profile option to apply, e.g. nfc_spi (repeatable)",
)
@click.option("--no-compile", is_flag=True, help="copy .py sources instead of .mpy")
@click.option(
    "--romfs/--no-romfs",
    default=None,
    help="put the compiled firmware in the board's ROMFS partition (runs in place: far less "
    "heap) or as .mpy files on its filesystem (default: ROMFS where the board has a ROMFS "
    "partition or its profile's memory.partitions says romfs)",
)
@click.option("--json", "as_json", is_flag=True, help="print one JSON summary on stdout")
def deploy(
    port: str | None,
    board: str,
    role: str,
    options: tuple[str, ...],
    no_compile: bool,
    romfs: bool | None,
    as_json: bool,
) -> None:
    """Compile the firmware with mpy-cross and copy it, /board.json and /main.py to a board
    running MicroPython (mpremote); then import it on the board to check."""
    from .deploy import deploy as do_deploy

    with _errors():
        res = do_deploy(
            port,
            board,
            role,
            list(options),
            compile=not no_compile,
            romfs=romfs,
            echo=None if as_json else (lambda s: click.echo(s, err=True)),
        )
    if as_json:
        echo_json(
            {
                "port": res.port,
                "board": res.board,
                "role": res.role,
                "options": res.options,
                "device": res.device.describe(),
                "compiled": res.compiled,
                "form": res.form,
                "romfs_bytes": res.romfs_bytes,
                "files": res.files,
                "bytes": res.total_bytes,
                "source_bytes": res.source_bytes,
                "modules": res.modules,
                "warnings": res.warnings,
                "copy_s": round(res.copy_s, 3),
            }
        )
        return
    click.echo(
        f"deployed {res.board} as {res.role} to {res.port}: {len(res.files)} files, "
        f"{res.total_bytes} bytes ({res.form})"
    )
    for name, where in sorted(res.modules.items()):
        click.echo(f"  import {name}: ok ({where})")
    click.echo(
        "reset the board (EN button, or mpremote reset) to start the firmware; then "
        "tapcash provision"
    )


# --- provision ---------------------------------------------------------------------------


@click.command()
@port_option
@click.option("--role", required=True, type=click.Choice(["wallet", "pos"]))
@click.option(
    "--issuer-key",
    required=True,
    type=click.Path(path_type=Path),
    envvar="TAPCASH_ISSUER_KEY",
    help="issuer key file (tapcash issuer init)",
)
@click.option("--id", "dev_id", help="device id, 16 hex digits (default: random)")
@click.option("--merchant", help="POS: merchant id, 16 hex digits")
@click.option(
    "--category", type=int, default=0, show_default=True, help="POS: merchant category code"
)
@click.option("--pin", help="wallet PIN, 4-8 digits (asked when not given)")
@click.option("--puk", help="wallet PUK, 8-16 digits (asked when not given)")
@click.option(
    "--limit",
    "limits",
    multiple=True,
    metavar="NAME=VALUE",
    help="wallet certificate limit: balance_max, payment_max, offline_count, "
    "offline_amount, no_cvm, staged_spend (repeatable; money in major units: payment_max=200.00)",
)
@click.option(
    "--config",
    "configs",
    multiple=True,
    metavar="NAME=VALUE",
    help="POS config: floor, velocity_count, velocity_amount, torn_max, ... (repeatable)",
)
@click.option(
    "--expires-days",
    type=click.IntRange(min=1),
    default=CERT_DAYS,
    show_default=True,
    help="certificate lifetime in days",
)
@click.option("--ledger", envvar="TAPCASH_LEDGER_URL", help="register the device with this ledger")
@click.option("--token", envvar="TAPCASH_LEDGER_TOKEN", help="ledger operator token")
@click.option("--owner", help="ledger owner account of the wallet")
@click.option(
    "--via",
    type=click.Choice(["frames", "repl"]),
    default="frames",
    show_default=True,
    help="frames: the firmware's sync protocol (running firmware); repl: exec on the "
    "board's MicroPython REPL (firmware deployed, main loop not running)",
)
@click.option("--baud", type=int, default=115200, show_default=True)
@click.option(
    "--cert-out",
    type=click.Path(path_type=Path),
    help="also write the certificate envelope (CBOR) to this file",
)
@click.option("--json", "as_json", is_flag=True, help="print one JSON summary on stdout")
def provision(
    port: str | None,
    role: str,
    issuer_key: Path,
    dev_id: str | None,
    merchant: str | None,
    category: int,
    pin: str | None,
    puk: str | None,
    limits: tuple[str, ...],
    configs: tuple[str, ...],
    expires_days: int,
    ledger: str | None,
    token: str | None,
    owner: str | None,
    via: str,
    baud: int,
    cert_out: Path | None,
    as_json: bool,
) -> None:
    """Personalise a blank device: it makes its key (PERSO KEYGEN), the issuer certifies it
    here, PERSO FINISH installs certificate, issuer key, PIN/PUK, limits or config. The private
    key never leaves the device."""
    import time

    from . import provision as pv
    from .ports import require_port

    with _errors():
        issuer = _load_issuer(issuer_key)
        device_id = pv.parse_id(dev_id, "--id")
        merchant_id = pv.parse_id(merchant, "--merchant")
        lim = pv.parse_settings(limits, pv.LIMIT_NAMES, "--limit")
        cfg = pv.parse_settings(configs, pv.CONFIG_NAMES, "--config")
        pin_b = puk_b = None
        if role == "wallet":
            if configs:
                raise InputError("--config is for a POS; a wallet takes --limit")
            pin = pin if pin is not None else _ask("PIN (4-8 digits)")
            puk = puk if puk is not None else _ask("PUK (8-16 digits)")
            pin_b = pv.check_secret(pin, "PIN", 4, 8)
            puk_b = pv.check_secret(puk, "PUK", 8, 16)
        else:
            if limits:
                raise InputError("--limit is for a wallet; a POS takes --config")
            if merchant_id is None:
                raise InputError("a POS needs --merchant (16 hex digits)")
        if ledger and not token:
            raise InputError("--ledger needs --token (or TAPCASH_LEDGER_TOKEN)")
        hotlist = _ledger_preflight(ledger, token, issuer) if ledger else None
        port = require_port(port)
        now = int(time.time())
        say = None if as_json else (lambda s: click.echo(s, err=True))
        with _open_link(via, port, baud) as link:
            res = pv.provision(
                link,
                role,
                issuer,
                device_id=device_id,
                merchant=merchant_id,
                pin=pin_b,
                puk=puk_b,
                limits=lim,
                config=cfg,
                expires=now + expires_days * 86400,
                category=category,
                hotlist=hotlist,
                now=now,
                say=say,
            )
        if cert_out is not None:
            cert_out.write_bytes(res.cert)
        if not as_json:
            click.echo(f"provisioned {role} {res.device_id.hex()} on {port}")
            click.echo(f"  public key {res.public_key.hex()} (private key stays on the device)")
            click.echo(
                f"  certificate by issuer {res.issuer_key_id.hex()}, expires "
                f"{time.strftime('%Y-%m-%d', time.gmtime(res.expires))}"
            )
            if res.merchant:
                click.echo(f"  merchant {res.merchant.hex()}")
        if ledger:
            try:
                res.registered = _register(ledger, token, res.cert, owner)
            except LedgerError as e:
                if as_json:
                    echo_json(res.as_json())
                raise LedgerError(
                    f"{e.message}; the device IS provisioned: register its certificate later "
                    "(--cert-out, ledger API /v1/devices)"
                ) from None
            if not as_json:
                click.echo(f"  registered with {ledger}")
        if as_json:
            echo_json(res.as_json())


def _ask(what: str) -> str:
    if not sys.stdin.isatty():
        raise InputError(f"no {what.split()[0]} given (--{what.split()[0].lower()})")
    return str(click.prompt(what, hide_input=True, confirmation_prompt=True))


def _load_issuer(path: Path) -> Any:
    from tapcash.host.issuer import Issuer

    try:
        return Issuer.load(path)
    except FileNotFoundError:
        raise InputError(f"issuer key not found: {path} (tapcash issuer init {path})") from None
    except PermissionError:
        raise InputError(f"cannot read the issuer key {path}: permission denied") from None
    except (ValueError, KeyError, OSError) as e:
        raise InputError(f"{path} is not an issuer key file: {e}") from None


@contextmanager
def _open_link(via: str, port: str, baud: int) -> Iterator[Any]:
    from .links import FrameLink, ReplLink

    link = FrameLink(port, baud) if via == "frames" else ReplLink(port, baud)
    try:
        yield link
    finally:
        link.close()


def _ledger_preflight(url: str, token: str | None, issuer: Any) -> bytes | None:
    """Before touching the device: the ledger answers and trusts this issuer key. Returns its
    current hot list envelope (for a POS), or None when none is published yet."""
    import httpx

    from tapcash.host.ledger.client import LedgerClient, LedgerHTTPError

    try:
        with LedgerClient(url, token=token, timeout=15.0) as lc:
            info = lc.issuer()
            if info.get("key_id") != issuer.key_id.hex():
                raise LedgerError(
                    f"the ledger at {url} trusts issuer key {info.get('key_id')}, not "
                    f"{issuer.key_id.hex()}: wrong --issuer-key or ledger"
                )
            try:
                return lc.hotlist().envelope
            except LedgerHTTPError:
                return None
    except httpx.HTTPError as e:
        raise LedgerError(f"the ledger at {url} cannot be reached: {e}") from None
    except LedgerHTTPError as e:
        raise LedgerError(f"the ledger at {url} answered {e}") from None


def _register(url: str, token: str | None, cert: bytes, owner: str | None) -> dict[str, Any]:
    import httpx

    from tapcash.host.ledger.client import LedgerClient, LedgerHTTPError

    try:
        with LedgerClient(url, token=token, timeout=15.0) as lc:
            return dict(lc.register(cert, owner=owner))
    except httpx.HTTPError as e:
        raise LedgerError(f"the ledger at {url} cannot be reached: {e}") from None
    except LedgerHTTPError as e:
        raise LedgerError(f"the ledger at {url} refused the registration: {e}") from None
