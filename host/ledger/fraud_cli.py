"""`tapcash ledger fraud list|show`: the fraud cases over the HTTP API, and one case with both
signed proofs decoded side by side and judged again from the signed bytes (the console's
judge, host/ledger/proofs.py: the certificate under the issuer key, both signatures
under the certified key, then the kind's own claim)."""

from __future__ import annotations

import base64
from typing import Any

import click

from tapcash.host.output import Col, echo_json, iso, jsonable, money, pairs, render, table
from tapcash.host.output import format_options as formats

from .columns import FRAUD
from .remote import call, connect_options, fail

PROOF_KEYS = ("proof_a", "proof_b", "evidence")


@click.group()
def fraud() -> None:
    """Fraud cases: list them, show one with both proofs decoded."""


@fraud.command("list")
@connect_options
@formats
def fraud_list(url: str, token: str, fmt: str) -> None:
    """Every fraud case: kind, device, counter, loss, when and through which device."""
    cases = call(url, token, lambda lc: lc.report("fraud"))
    render(cases, FRAUD, fmt, title="fraud cases")


def _fetch(url: str, token: str, number: int) -> tuple[dict[str, Any], bytes, bytes]:
    """(the case row, the device's certificate, the issuer public key)."""

    def run(lc: Any) -> tuple[dict[str, Any], bytes, bytes]:
        for c in lc.report("fraud"):
            if c["case"] == number:
                dev = lc.device(bytes.fromhex(c["wallet"]))
                return c, base64.b64decode(dev["cert"]), bytes.fromhex(lc.issuer()["public_key"])
        fail(f"no fraud case {number}")

    return call(url, token, run)


def _decoded(p: Any) -> dict[str, Any]:
    return {
        "fields": dict(p.fields),
        "hash": p.hash,
        "signature_ok": p.signature_ok,
        "error": p.error or None,
    }


@fraud.command("show")
@click.argument("number", type=click.IntRange(min=1), metavar="CASE")
@connect_options
@click.option(
    "--json", "as_json", is_flag=True, help="the case, both proofs decoded and the verdict as JSON"
)
def fraud_show(number: int, url: str, token: str, as_json: bool) -> None:
    """One case: both signed proofs decoded side by side, differing fields marked, and the
    verdict judged again from the signed bytes."""
    from .proofs import judge

    case, cert, issuer_pk = _fetch(url, token, number)
    raw = dict(case, wallet=bytes.fromhex(case["wallet"]))
    for k in PROOF_KEYS:
        raw[k] = base64.b64decode(case[k]) if case.get(k) else None
    a, b, verdict = judge(raw, cert, issuer_pk)
    if as_json:
        echo_json(
            jsonable(case)
            | {
                "a": _decoded(a),
                "b": _decoded(b),
                "verdict": {
                    "proven": verdict.proven,
                    "summary": verdict.summary,
                    "checks": [{"check": c, "ok": ok} for c, ok in verdict.checks],
                },
            }
        )
        return
    pairs(
        [
            ("kind", case["kind"], "text"),
            ("device", case["wallet"], "text"),
            ("counter", case["counter"], "int"),
            ("amount b", case["amount_b"], "money"),
            ("b credited to", case["credited_b"] or "nobody", "text"),
            ("loss", case["loss"], "money"),
            ("detected", case["detected_at"], "time"),
            ("via", case["via"], "text"),
        ],
        title=f"fraud case {number}",
    )
    fa, fb = dict(a.fields), dict(b.fields)
    names = [n for n, _ in a.fields] + [n for n, _ in b.fields if n not in fa]
    rows = [
        {
            "field": ("* " if fa.get(n) != fb.get(n) else "  ") + n,
            "a": _show(n, fa.get(n)),
            "b": _show(n, fb.get(n)),
        }
        for n in names
    ]
    rows += [
        {"field": "  body sha-256", "a": a.hash, "b": b.hash},
        {"field": "  signature", "a": _sig(a), "b": _sig(b)},
    ]
    table(rows, [Col("field", "field (* differs)"), Col("a", a.label), Col("b", b.label)])
    for check, ok in verdict.checks:
        click.echo(f"  [{'ok' if ok else 'FAILED'}] {check}")
    click.echo(verdict.summary)


def _show(name: str, value: str | None) -> str:
    """A decoded field as a table shows it: amounts in major units, times ISO 8601."""
    if value is None:
        return ""
    if value.lstrip("-").isdigit() and name in ("amount", "balance", "purse balance", "earmarked"):
        return money(int(value))
    if value.isdigit() and name == "time":
        return iso(int(value)) or "0"
    return value


def _sig(p: Any) -> str:
    if p.error:
        return p.error
    return "valid (certified key)" if p.signature_ok else "DOES NOT VERIFY"
