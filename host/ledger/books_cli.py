"""`tapcash ledger statement WALLET` and `tapcash ledger hotlist`: one wallet's books and the
signed hot list, over the HTTP API, in the operator CLI's one format (host/output.py). The hot
list's issuer signature is checked here, with the firmware's own envelope code, against the
issuer key the ledger publishes."""

from __future__ import annotations

from typing import Any

import click

from tapcash.host.output import Col, echo_json, iso, pairs, render
from tapcash.host.output import format_options as formats

from .remote import call, connect_options, device_id, fail

LINES = [
    Col("posting", "posting", "int"),
    Col("at", "at", "time"),
    Col("kind", "kind"),
    Col("counterparty", "counterparty"),
    Col("amount", "amount", "money"),
    Col("balance", "balance", "money"),
    Col("ref", "reference"),
]


@click.command()
@click.argument("wallet_hex", metavar="WALLET")
@connect_options
@formats
def statement(wallet_hex: str, url: str, token: str, fmt: str) -> None:
    """One wallet's books: postings with running balance, what is staged, vouchers not yet
    applied, and what the card should show against what it last reported."""
    wid = device_id(wallet_hex, "wallet")
    st = call(url, token, lambda lc: lc.wallet_statement(wid))
    if fmt != "table":
        render(st["lines"], LINES, fmt, doc=st)
        return
    rep = st.get("reported") or {}
    pairs(
        [
            ("owner", st["owner"] or "none", "text"),
            ("revoked", st["revoked"], "text"),
            ("ledger balance", st["balance"], "money"),
            ("staged (not yet released)", st["staged"], "money"),
            ("vouchers not yet applied", st["vouchers_unapplied"], "money"),
            ("the card should show", st["expected_device_balance"], "money"),
            ("the card last reported", rep.get("balance"), "money"),
            (
                "at counter / journal seq",
                f"{rep.get('counter')} / {rep.get('seq')}" if rep else None,
                "text",
            ),
        ],
        title=f"wallet {st['wallet']}",
    )
    render(st["lines"], LINES, fmt)


@click.command()
@click.option(
    "--url",
    "url",
    envvar="TAPCASH_LEDGER_URL",
    default="http://127.0.0.1:8700",
    show_default=True,
    help="ledger base URL (env TAPCASH_LEDGER_URL)",
)
@click.option("--json", "as_json", is_flag=True, help="the hot list as JSON (ISO 8601 times)")
def hotlist(url: str, as_json: bool) -> None:
    """The signed hot list every POS applies: version, when issued, the revoked devices; the
    issuer's signature checked against the key the ledger publishes."""
    from tapcash.firmware.core import proto

    h, issuer = call(url, "", lambda lc: (lc.hotlist(), lc.issuer()))
    try:
        body = proto.verify_envelope(
            proto.TAG_HOTLIST, h.envelope, bytes.fromhex(issuer["public_key"])
        )
    except Exception as e:  # ApduError or a decode error: not a hot list the issuer signed
        fail(f"the hot list does not verify under the issuer key {issuer['key_id']}: {e!r}")
    signed = sorted(bytes(d).hex() for d in body.get(proto.HOT_REVOKED, []))
    if signed != sorted(d.hex() for d in h.revoked):
        fail("the hot list's signed body and the ledger's answer name different devices")
    doc: dict[str, Any] = {
        "version": h.version,
        "issued": iso(h.issued),
        "revoked": signed,
        "signature": f"valid (issuer key {issuer['key_id']})",
    }
    if as_json:
        echo_json(doc)
        return
    pairs(
        [
            ("version", h.version, "int"),
            ("issued", h.issued, "time"),
            ("signature", doc["signature"], "text"),
            ("revoked", ", ".join(signed) or "none", "text"),
        ],
        title="hot list",
    )
