"""`tapcash issuer ...`: the issuer's key and the objects it signs offline.

    tapcash issuer init issuer.key                       # new key, file 0600, prints the key id
    tapcash issuer certify wallet --issuer-key issuer.key --id ID --public-key PK \\
        [--limit payment_max=200.00]
    tapcash issuer certify pos --issuer-key issuer.key --id ID --public-key PK --merchant MID
    tapcash issuer voucher --issuer-key issuer.key --wallet ID --number N --amount 12.50
    tapcash issuer payroll salaries.csv --ledger URL --token T --payer ACME --reference 2026-11

Envelopes are printed as hex (or written with --out). Vouchers for real wallets should come from
the ledger (`tapcash ledger` / the load API), which numbers them and debits an online account;
`issuer voucher` is for test benches and pilots without a ledger.
"""

from __future__ import annotations

import time
from pathlib import Path

import click

from tapcash.firmware.core import proto

from .device.errors import InputError
from .device.provision import LIMIT_NAMES, parse_settings
from .issuer import CERT_DAYS, DAY_S, Issuer, KeyFileError, load_key_file
from .output import AMOUNT


def _id(text: str) -> bytes:
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        raise click.BadParameter("expected 16 hex digits") from None
    if len(raw) != 8:
        raise click.BadParameter("expected 16 hex digits")
    return raw


def _emit(data: bytes, out: str | None) -> None:
    if out:
        Path(out).write_bytes(data)
        click.echo(f"wrote {len(data)} bytes to {out}")
    else:
        click.echo(data.hex())


def _load(key_path: str) -> Issuer:
    """The key file, or one line on stderr and exit 2 (never a traceback)."""
    try:
        return load_key_file(key_path)
    except KeyFileError as e:
        click.echo(f"error: {e}", err=True)
        raise click.exceptions.Exit(2) from None


# `--issuer-key` as in `provision`, `ledger serve` and `pcsc`; `--key` is kept as an alias.
key_option = click.option("--issuer-key", "--key", "key_path", required=True,
                          type=click.Path(exists=True), envvar="TAPCASH_ISSUER_KEY",
                          help="issuer key file")


@click.group()
def issuer() -> None:
    """Issuer root key: device certificates, vouchers, payroll."""


@issuer.command()
@click.argument("path", type=click.Path())
@click.option("--force", is_flag=True, help="overwrite an existing key file")
def init(path: str, force: bool) -> None:
    """Generate an issuer key; the file is written owner-only (0600) with its key id."""
    iss = Issuer.generate()
    try:
        iss.save(Path(path), exist_ok=force)
    except FileExistsError:
        raise click.ClickException(f"{path} exists (use --force to replace it)") from None
    click.echo(f"key id {iss.key_id.hex()}")
    click.echo(f"public key {iss.public_key.hex()}")


@issuer.command()
@key_option
def show(key_path: str) -> None:
    """Print the key id and public key of a key file."""
    iss = _load(key_path)
    click.echo(f"key id {iss.key_id.hex()}")
    click.echo(f"public key {iss.public_key.hex()}")


@issuer.command()
@click.argument("kind", type=click.Choice(["wallet", "pos"]))
@key_option
@click.option("--id", "dev_id", required=True, help="device id, 16 hex digits")
@click.option("--public-key", required=True, help="device public key, 64 hex digits")
@click.option("--merchant", help="POS: merchant id, 16 hex digits")
@click.option("--category", type=int, default=0, help="POS: merchant category code")
@click.option("--expires-days", "--days", "days", type=click.IntRange(min=1),
              default=CERT_DAYS, show_default=True, help="certificate lifetime in days")
@click.option("--serial", type=int, default=1, show_default=True)
@click.option("--limit", "limits", multiple=True,
              help="wallet limit NAME=VALUE (money in major units), as `tapcash provision` "
              "takes them: "
              + ", ".join(sorted(LIMIT_NAMES)))
@click.option("--out", help="write the envelope to this file instead of printing hex")
def certify(kind: str, key_path: str, dev_id: str, public_key: str, merchant: str | None,
            category: int, days: int, serial: int, limits: tuple[str, ...],
            out: str | None) -> None:
    """Sign a device certificate."""
    iss = _load(key_path)
    pk = bytes.fromhex(public_key)
    if len(pk) != 32:
        raise click.BadParameter("expected 64 hex digits", param_hint="--public-key")
    expires = int(time.time()) + days * DAY_S
    if kind == "wallet":
        try:
            lim = parse_settings(limits, LIMIT_NAMES, "--limit")
        except InputError as e:
            raise click.BadParameter(str(e), param_hint="--limit") from None
        env = iss.certify_wallet(_id(dev_id), pk, expires=expires, limits=lim, serial=serial)
    else:
        if not merchant:
            raise click.BadParameter("required for a POS", param_hint="--merchant")
        env = iss.certify_pos(_id(dev_id), pk, _id(merchant), expires=expires,
                              category=category, serial=serial)
    _emit(env, out)


@issuer.command()
@key_option
@click.option("--wallet", required=True, help="wallet id, 16 hex digits")
@click.option("--number", type=int, required=True, help="the wallet's next voucher number")
@click.option("--amount", type=AMOUNT, required=True, help="major units: 12.50")
@click.option("--source", type=click.Choice(["topup", "transfer", "payroll"]), default="topup")
@click.option("--ref", default="", help="free reference")
@click.option("--out", help="write the envelope to this file instead of printing hex")
def voucher(key_path: str, wallet: str, number: int, amount: int, source: str, ref: str,
            out: str | None) -> None:
    """Sign one voucher (offline: no online account is debited)."""
    if number <= 0:
        raise click.BadParameter("must be positive", param_hint="--number")
    src = {"topup": proto.VSRC_TOPUP, "transfer": proto.VSRC_TRANSFER,
           "payroll": proto.VSRC_PAYROLL}[source]
    env = _load(key_path).voucher(_id(wallet), number, amount, source=src,
                                              ref=ref.encode())
    _emit(env, out)


@issuer.command()
@click.argument("csv_file", type=click.File("r"))
@click.option("--ledger", "url", required=True, envvar="TAPCASH_LEDGER_URL",
              help="ledger base URL")
@click.option("--token", required=True, envvar="TAPCASH_LEDGER_TOKEN", help="operator token")
@click.option("--payer", required=True, help="owner account that pays")
@click.option("--reference", required=True, help="unique batch reference")
def payroll(csv_file, url: str, token: str, payer: str, reference: str) -> None:  # noqa: ANN001
    """Load every wallet of a CSV (wallet id hex, amount) through the ledger: all or nothing."""
    from .ledger.remote import call
    from .output import money

    text = csv_file.read()
    res = call(url, token, lambda lc: lc.payroll(payer, text, reference))
    click.echo(f"payroll {res['reference']}: {len(res['vouchers'])} wallets, total "
               f"{money(res['total'])}, payer balance {money(res['payer_balance'])}")
