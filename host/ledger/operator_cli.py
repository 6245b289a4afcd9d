"""`tapcash ledger owner|device|deposit|load|payroll|...`: the operator's day over the ledger's
HTTP API (host/ledger/client.py), so they run wherever the operator token is, not only on the
database host. Tables by default, `--json` / `--csv` for scripts (host/output.py: amounts typed
and shown in major units, minor units in JSON and CSV, ISO 8601 times); a refusal is one line
and a non-zero exit (host/ledger/remote.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from tapcash.host.output import AMOUNT, echo_json, jsonable, money, pairs, render
from tapcash.host.output import format_options as formats

from . import columns as C
from .remote import call, connect_options, device_id, fail

json_option = click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="print the ledger's answer as JSON (minor units, ISO 8601 times)",
)


# ---- owners ----------------------------------------------------------------------------------
@click.group()
def owner() -> None:
    """Owners' online accounts: open one, list them, show one."""


@owner.command("add")
@click.argument("name")
@connect_options
@json_option
def owner_add(name: str, url: str, token: str, as_json: bool) -> None:
    """Open an owner's online account (an employer, a family, the issuing desk)."""
    out = call(url, token, lambda lc: lc.add_owner(name))
    if as_json:
        echo_json(jsonable(out))
    else:
        click.echo(
            f"owner {out['owner']} "
            + ("opened" if out["created"] else "exists already")
            + f": balance {money(out['balance'])}, {len(out['wallets'])} wallets"
        )


@owner.command("list")
@connect_options
@formats
def owner_list(url: str, token: str, fmt: str) -> None:
    """Every owner: online balance, wallets, when the account was opened."""
    render(call(url, token, lambda lc: lc.owners()), C.OWNERS, fmt, title="owners")


@owner.command("show")
@click.argument("name")
@connect_options
@json_option
def owner_show(name: str, url: str, token: str, as_json: bool) -> None:
    """One owner: online balance and wallet ids."""
    out = call(url, token, lambda lc: lc.owner(name))
    if as_json:
        echo_json(jsonable(out))
        return
    pairs(
        [
            ("owner", out["owner"], "text"),
            ("balance", out["balance"], "money"),
            ("wallets", ", ".join(out["wallets"]) or "none", "text"),
        ]
    )


# ---- devices ---------------------------------------------------------------------------------
@click.group()
def device() -> None:
    """Devices: register a certificate, list them, show one, renew one."""


def _read_cert(path: Path) -> bytes:
    """A certificate envelope as `tapcash issuer certify --out` writes it (bytes) or prints it
    (hex)."""
    data = path.read_bytes()
    try:
        return bytes.fromhex(data.decode("ascii").strip())
    except (UnicodeDecodeError, ValueError):
        return data


@device.command("register")
@click.argument("cert_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--owner", "owner_name", default=None, help="wallets: the owner's account")
@connect_options
@json_option
def device_register(
    cert_file: Path, owner_name: str | None, url: str, token: str, as_json: bool
) -> None:
    """Register a device from its issuer-signed certificate (file: bytes or hex)."""
    cert = _read_cert(cert_file)
    out = call(url, token, lambda lc: lc.register(cert, owner_name))
    if as_json:
        echo_json(jsonable(out))
    else:
        who = f", owner {out['owner']}" if out.get("owner") else ""
        click.echo(f"registered {out['kind']} {out['id']}{who}")


@device.command("list")
@click.option("--kind", type=click.Choice(["wallet", "pos"]), default=None)
@connect_options
@formats
def device_list(kind: str | None, url: str, token: str, fmt: str) -> None:
    """Every registered device (or every wallet / POS)."""
    render(call(url, token, lambda lc: lc.devices(kind)), C.DEVICES, fmt, title="devices")


@device.command("show")
@click.argument("device_hex", metavar="DEVICE")
@connect_options
@json_option
def device_show(device_hex: str, url: str, token: str, as_json: bool) -> None:
    """One device: certificate, owner, revocation, sync state."""
    did = device_id(device_hex)
    d = call(url, token, lambda lc: lc.device(did))
    if as_json:
        echo_json(jsonable(d))
        return
    skip = {"cert", "public_key", "limits"}
    kinds = {"expires": "time", "revoked_at": "time", "registered_at": "time"}
    items = [(k, v, kinds.get(k, "text")) for k, v in d.items() if k not in skip]
    items.append(("public key", d["public_key"], "text"))
    if d.get("limits"):
        items.append(("limits", ", ".join(f"{k}={v}" for k, v in d["limits"].items()), "text"))
    pairs(items, title=f"{d['kind']} {d['id']}")


@device.command("renew")
@click.argument("device_hex", metavar="DEVICE")
@click.option(
    "--expires-days",
    type=click.IntRange(min=1),
    default=None,
    help="new certificate lifetime in days (default: the ledger's, two years)",
)
@click.option(
    "--limit",
    "limits",
    multiple=True,
    metavar="NAME=VALUE",
    help="wallets: a new certificate limit, as `tapcash provision` takes them",
)
@connect_options
@json_option
def device_renew(
    device_hex: str,
    expires_days: int | None,
    limits: tuple[str, ...],
    url: str,
    token: str,
    as_json: bool,
) -> None:
    """Issue a device a new certificate (expiry, limits): it installs it at its next sync."""
    import time

    from tapcash.host.device.errors import InputError
    from tapcash.host.device.provision import LIMIT_NAMES, parse_settings

    did = device_id(device_hex)
    try:
        lim = parse_settings(limits, LIMIT_NAMES, "--limit") if limits else None
    except InputError as e:
        raise click.BadParameter(str(e), param_hint="--limit") from None
    expires = int(time.time()) + expires_days * 86400 if expires_days else None

    def run(lc: Any) -> dict[str, Any]:
        return lc.renew(did, expires, lim) | {"expires": lc.device(did)["expires"]}

    out = call(url, token, run)
    if as_json:
        echo_json(jsonable(out))
    else:
        click.echo(
            f"renewed {out['device']}: certificate serial {out['serial']}, expires "
            f"{jsonable(out)['expires']}; the device installs it at its next sync"
        )


# ---- money in --------------------------------------------------------------------------------
@click.command()
@click.argument("owner_name", metavar="OWNER")
@click.argument("amount", type=AMOUNT)
@click.option("--reference", default="", help="your reference (bank transfer id, ...): "
              "applied at most once (the same deposit again is answered as the first time)")
@connect_options
@json_option
def deposit(
    owner_name: str, amount: int, reference: str, url: str, token: str, as_json: bool
) -> None:
    """Credit AMOUNT (major units: 500, 12.50) to an owner's online account; opens it if new."""
    out = call(url, token, lambda lc: lc.deposit(owner_name, amount, reference))
    if as_json:
        echo_json(jsonable(out | {"amount": amount}))
    elif out.get("replayed"):
        click.echo(f"already applied: reference {reference} deposited {money(amount)} to "
                   f"{out['owner']} (balance then {money(out['balance'])}); nothing deposited now")
    else:
        click.echo(f"deposited {money(amount)} to {out['owner']}: balance {money(out['balance'])}")


@click.command()
@click.argument("wallet_hex", metavar="WALLET")
@click.argument("amount", type=AMOUNT)
@click.option("--owner", "owner_name", default=None, help="payer (default: the wallet's owner)")
@click.option("--reference", default="", help="your reference: applied at most once (the "
              "same load again is answered as the first time)")
@connect_options
@json_option
def load(
    wallet_hex: str,
    amount: int,
    owner_name: str | None,
    reference: str,
    url: str,
    token: str,
    as_json: bool,
) -> None:
    """Top up a wallet by AMOUNT (major units) from an owner's account: the card applies the
    voucher at its next sync."""
    wid = device_id(wallet_hex, "wallet")
    out = call(url, token, lambda lc: lc.top_up(wid, amount, reference, owner_name))
    if as_json:
        echo_json(jsonable(out))
    elif out.get("replayed"):
        click.echo(
            f"already applied: reference {reference} is voucher {out['number']} for wallet "
            f"{out['wallet']}: {money(out['amount'])} (payer balance then "
            f"{money(out['owner_balance'])}); nothing loaded now"
        )
    else:
        click.echo(
            f"voucher {out['number']} for wallet {out['wallet']}: {money(out['amount'])}"
            f"; payer balance {money(out['owner_balance'])}"
        )


@click.command()
@click.argument("csv_file", type=click.File("r"))
@click.option("--payer", required=True, help="owner account that pays")
@click.option("--reference", required=True, help="unique per payroll: a second run is refused")
@connect_options
@formats
def payroll(csv_file: Any, payer: str, reference: str, url: str, token: str, fmt: str) -> None:
    """Load every wallet of a CSV of `wallet id hex,amount in minor units` lines from one owner:
    all lines or none (a bad line is named, nothing is posted)."""
    try:
        text = csv_file.read()
    except UnicodeDecodeError:
        fail(f"{csv_file.name}: not UTF-8 text", 2)
    out = call(url, token, lambda lc: lc.payroll(payer, text, reference))
    render(
        out["vouchers"],
        C.PAYROLL,
        fmt,
        doc=out,
        title=f"payroll {out['reference']} from {out['payer']}",
    )
    if fmt == "table":
        click.echo(
            f"{len(out['vouchers'])} wallets, total {money(out['total'])}; "
            f"{out['payer']} balance {money(out['payer_balance'])}"
        )


# ---- merchants -------------------------------------------------------------------------------
@click.command()
@connect_options
@formats
def merchants(url: str, token: str, fmt: str) -> None:
    """Per merchant: payments, credited, settled, owed (what the next settlement pays)."""
    render(call(url, token, lambda lc: lc.report("merchants")), C.MERCHANTS, fmt, title="merchants")


@click.command()
@click.argument("merchant_ids", nargs=-1, metavar="[MERCHANT]...")
@click.option("--all", "every", is_flag=True, help="every merchant owed something")
@click.option("--reference", default="", help="payout reference (bank batch id, ...), per "
              "merchant: a merchant settled under it is not paid again")
@connect_options
@formats
def settle(
    merchant_ids: tuple[str, ...], every: bool, reference: str, url: str, token: str, fmt: str
) -> None:
    """Pay out what the ledger owes each MERCHANT (or --all): its whole balance."""
    if bool(merchant_ids) == every:
        raise click.UsageError("name the merchants to settle, or --all")
    ids = [device_id(m, "merchant") for m in merchant_ids]

    def run(lc: Any) -> list[dict[str, Any]]:
        todo = ids or [
            bytes.fromhex(r["merchant"]) for r in lc.report("merchants") if r["owed"] > 0
        ]
        return [lc.settle(m, reference) for m in todo]

    done = call(url, token, run)
    again = [r for r in done if r.get("replayed")]
    rows = [r for r in done if r["settlement"] is not None and not r.get("replayed")]
    render(rows, C.SETTLEMENTS[:4], fmt, doc=done, title="settled")
    if fmt == "table":
        for r in again:
            click.echo(f"already applied: reference {reference} is settlement "
                       f"{r['settlement']} of merchant {r['merchant']}: {money(r['amount'])}; "
                       "nothing paid now")
        click.echo(
            f"{len(rows)} settlements, total {money(sum(r['amount'] for r in rows))}"
            + (f"; {idle} merchants owed nothing" if (idle := len(done) - len(rows) - len(again))
               else "")
        )


@click.command()
@connect_options
@formats
def settlements(url: str, token: str, fmt: str) -> None:
    """Every settlement paid out."""
    render(
        call(url, token, lambda lc: lc.report("settlements")),
        C.SETTLEMENTS,
        fmt,
        title="settlements",
    )


# ---- revocation ------------------------------------------------------------------------------
@click.command()
@click.argument("device_hex", metavar="DEVICE")
@click.option("--reason", default="operator", show_default=True)
@connect_options
@json_option
def revoke(device_hex: str, reason: str, url: str, token: str, as_json: bool) -> None:
    """Put a device on the hot list: every POS refuses it after its next sync."""
    did = device_id(device_hex)
    out = call(url, token, lambda lc: lc.revoke(did, reason))
    if as_json:
        echo_json(out)
    elif out["changed"]:
        click.echo(f"revoked {out['device']}: hot list version {out['hotlist_version']}")
    else:
        click.echo(
            f"{out['device']} was revoked already (hot list version {out['hotlist_version']})"
        )


@click.command()
@click.argument("device_hex", metavar="DEVICE")
@click.option("--reason", default="operator", show_default=True)
@click.option("--force", is_flag=True, help="even a wallet with fraud cases")
@connect_options
@json_option
def reinstate(
    device_hex: str, reason: str, force: bool, url: str, token: str, as_json: bool
) -> None:
    """Take a device off the hot list (a wallet with fraud cases only with --force)."""
    did = device_id(device_hex)
    out = call(url, token, lambda lc: lc.reinstate(did, reason, force))
    if as_json:
        echo_json(out)
    elif out["changed"]:
        click.echo(f"reinstated {out['device']}: hot list version {out['hotlist_version']}")
    else:
        click.echo(f"{out['device']} was not revoked (hot list version {out['hotlist_version']})")
