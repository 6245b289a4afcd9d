"""docs/PROTOCOL.md's examples, generated from the code so that spec and code cannot drift.

Every example block of the spec is produced here by the real firmware (a wallet and a POS from
`sim.provision.make_pair` with a fixed seed: fixed issuer key, device keys, challenges and
clock; Ed25519 is deterministic, so the bytes are too). In the doc a block is

    <!-- example: NAME -->
    ```text
    ...
    ```

`tests/host/test_spec_examples.py` regenerates every block and fails on any difference, on a block
the doc lacks and on a block the generator does not know. `tapcash spec examples --write`
rewrites the blocks on purpose (review the diff); it never adds a missing one (the text around
a block is the spec's to write).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tapcash.firmware.core import cbor, proto

SEED = 14  # issue #14
DEFAULT_DOC = Path(__file__).resolve().parents[1] / "docs" / "PROTOCOL.md"
BLOCK = re.compile(r"<!-- example: ([a-z0-9-]+) -->\n```text\n(.*?)```\n", re.S)
MARKER = re.compile(r"<!-- example: ([a-z0-9-]+) -->")
WIDTH = 32  # bytes per hex line


class SpecError(Exception):
    """The doc's example blocks and the code's disagree (a one-line reason)."""


# ---- notation --------------------------------------------------------------------------------
def _names(prefix: str, skip: tuple[str, ...] = ()) -> dict[int, str]:
    out: dict[int, str] = {}
    for k, v in vars(proto).items():
        if k.startswith(prefix) and isinstance(v, int) and k not in skip:
            out.setdefault(v, k[len(prefix) :].lower())
    return out


FIELDS: dict[str, dict[int, str]] = {
    "cert": _names("CERT_"),
    "limits": _names("LIM_"),
    "payment": _names("PAY_"),
    "receipt": _names("RCPT_"),
    "voucher": _names("VCH_"),
    "update": _names("UPD_"),
    "hotlist": _names("HOT_"),
    "ack": _names("ACK_"),
    "status": _names("ST_"),
    "rule": _names("RULE_"),
    "info": _names("INFO_"),
    "request": _names("REQ_"),
    "record": _names("REC_"),
    "perso": _names("PF_"),
}


def diag(
    obj: Any,
    names: dict[int, str] | None = None,
    sub: dict[int, str] | None = None,
    indent: str = "",
) -> str:
    """CBOR diagnostic notation (RFC 8949 §8) with field names as /comments/; byte strings
    longer than 40 bytes are abbreviated (the hex dump next to it has every byte)."""
    if isinstance(obj, bool):
        return "true" if obj else "false"
    if isinstance(obj, int):
        return str(obj)
    if isinstance(obj, bytes):
        if len(obj) > 40:
            return f"h'{obj[:8].hex()}…'"
        return f"h'{obj.hex()}'"
    if isinstance(obj, str):
        return '"' + obj + '"'
    if isinstance(obj, list):
        return "[" + ", ".join(diag(x, indent=indent) for x in obj) + "]"
    if isinstance(obj, dict):
        inner = indent + "  "
        parts = []
        for k in sorted(obj, key=lambda k: cbor.encode(k)):
            v = obj[k]
            value = diag(v, sub if k == proto.CERT_LIMITS and sub else None, indent=inner)
            notes = [n for n in ((names or {}).get(k),) if n]
            if isinstance(v, bytes) and len(v) > 40:
                notes.append(f"{len(v)} bytes")
            parts.append(f"{k}: {value}" + (f" / {', '.join(notes)} /" if notes else ""))
        return "{\n" + inner + (",\n" + inner).join(parts) + "\n" + indent + "}"
    return repr(obj)


def hexdump(data: bytes, indent: str = "  ") -> str:
    return "\n".join(indent + data[i : i + WIDTH].hex() for i in range(0, len(data), WIDTH))


def signed(title: str, tag: bytes, env: bytes, kind: str) -> str:
    """One signed object: its body in diagnostic notation, the bytes signed, the envelope."""
    body_bytes, body, sig = proto.open_envelope(env)
    sub = FIELDS["limits"] if kind == "cert" else None
    return (
        "\n".join(
            [
                f"{title}: tag {tag[:-1].decode()}\\0",
                diag(body, FIELDS[kind], sub),
                f"body ({len(body_bytes)} bytes):",
                hexdump(body_bytes),
                "signature = Ed25519(key, tag || body):",
                hexdump(sig),
                f"envelope [body, sig] ({len(env)} bytes):",
                hexdump(env),
                f"hash = SHA-256(body): {hashlib.sha256(body_bytes).hexdigest()}",
            ]
        )
        + "\n"
    )


# ---- the run the examples come from -----------------------------------------------------------
class World:
    """One seeded wallet and POS, a payment without and one with a PIN, a transfer to a second
    wallet, an export and an ack: every signed object of the spec, made by the firmware."""

    def __init__(self) -> None:
        from tapcash.sim.device import provision as pv
        from tapcash.sim.nfc.field import DirectLink

        self.pv = pv
        self.pair = pair = pv.make_pair(SEED, balance=20_000)
        self.issuer = pair.issuer
        r = pair.pos.take_payment(1234)
        assert r.approved, r
        self.payment = list(pair.link.transcript)
        pair.link.clear_records()
        pair.link.tap()
        r = pair.pos.take_payment(7000, pin=pv.PIN)
        assert r.approved, r
        self.payment_pin = list(pair.link.transcript)
        self.pos_records, self.pos_status = pv.export_raw(pair.pos)
        info = cbor.decode(pv.call(pair.pos, proto.INS_GET_INFO))
        self.pos_cert = info[proto.INFO_CERT]
        self.wallet_cert = pv.select(pair.wallet)[proto.INFO_CERT]
        # a transfer: wallet 1 pays 5.00 to wallet 2 through a reader holding both cards
        rx, _flash = pv.make_wallet(self.issuer, 2, seed=SEED, clock=pair.clock)
        self.payer_link, self.receiver_link = DirectLink(pair.wallet), DirectLink(rx)
        pv.transfer(self.payer_link, self.receiver_link, 500, time=pair.clock.now())
        self.records, self.status = pv.export_raw(pair.wallet)
        upto = self.records[-1][0]
        self.ack = pv.ack_for(self.issuer, pair.wallet, pair.wallet_id, upto, pair.clock.now())


def _transcript(pairs: list[tuple[bytes, bytes]], names: list[str]) -> str:
    out, total = [], 0
    for (c, r), name in zip(pairs, names, strict=True):
        total += len(c) + len(r)
        out.append(f"> {name} ({len(c)} bytes)")
        out.append(hexdump(c))
        out.append(f"< {len(r) - 2} bytes + SW {r[-2:].hex()}")
        out.append(hexdump(r))
    out.append(f"{len(pairs)} round trips, {total} bytes on air (commands + responses)")
    return "\n".join(out) + "\n"


def _block_payment(w: World) -> str:
    head = f"seed {SEED}: sim.device.provision.make_pair({SEED}, balance=20000);"
    head += " pos.take_payment(1234)\n"
    return head + _transcript(w.payment, ["SELECT", "PAY", "RECEIPT"])


def _block_payment_pin(w: World) -> str:
    (sc, sr), (pc, pr), (rc, rr) = w.payment_pin
    req = cbor.decode(proto.parse_command(pc)[4])
    lines = [
        "the next tap: pos.take_payment(7000, pin=b'1234') (above the no-CVM limit)",
        "PAY request " + diag(req, FIELDS["request"]).replace("\n", "\n  "),
        f"SELECT {len(sc)} + INFO {len(sr)}, PAY {len(pc)} + {len(pr)}, RECEIPT {len(rc)} + "
        f"{len(rr)} = {sum(len(c) + len(r) for c, r in w.payment_pin)} bytes on air",
    ]
    return "\n".join(lines) + "\n"


def _block_info(w: World) -> str:
    info = cbor.decode(w.payment[0][1][:-2])
    return "INFO of the first tap " + diag(info, FIELDS["info"]) + "\n"


def _block_transfer(w: World) -> str:
    rx = w.receiver_link.transcript
    px = w.payer_link.transcript
    pairs = [rx[0], rx[1], px[0], px[1], rx[2]]
    names = [
        "receiver: SELECT",
        "receiver: GET CHALLENGE",
        "payer: SELECT",
        "payer: PAY (kind 2)",
        "receiver: RECEIVE (extended length: Lc 00 hi lo)",
    ]
    return "transfer of 5.00 from wallet 1 to wallet 2 (pending until synced)\n" + _transcript(
        pairs, names
    )


def _block_chain(w: World) -> str:
    seq, raw = w.pos_records[0]
    d1 = proto.journal_link(bytes(32), seq, raw)
    rec = cbor.decode(raw)
    return (
        "\n".join(
            [
                f"POS journal record {seq} " + diag(rec, FIELDS["record"]),
                f"record bytes ({len(raw)}):",
                hexdump(raw),
                "d(0) = 32 zero bytes",
                f'd({seq}) = SHA-256("tapcash/journal/v1\\0" || d(0) || {seq:08x} || '
                "SHA-256(record)):",
                "  " + d1.hex(),
            ]
        )
        + "\n"
    )


def _block_sizes(_w: World) -> str:
    """Bytes on air of a payment by amount (the integers' CBOR lengths change with it), and
    what a PIN and a card that has paid before add."""
    from tapcash.sim.device import provision as pv

    rows = [
        "first payment of a card holding 500.00 (no PIN up to the no-CVM limit 50.00):",
        "amount  balance after  SELECT+INFO  PAY  RECEIPT  total",
    ]
    pay_len: dict[int, int] = {}
    for amount in (1, 24, 255, 1234, 5000, 5001, 20000):
        pair = pv.make_pair(SEED, balance=50_000)
        pin = pv.PIN if amount > proto.DEFAULT_LIMITS[proto.LIM_NO_CVM] else None
        r = pair.pos.take_payment(amount, pin=pin)
        assert r.approved, r
        (sc, sr), (pc, pr), (rc, rr) = pair.link.transcript
        pay_len[amount] = len(pc)
        rows.append(
            f"{amount:>6}  {50_000 - amount:>13}  {len(sc) + len(sr):>11}  "
            f"{len(pc) + len(pr):>3}  {len(rc) + len(rr):>7}  "
            f"{pair.link.bytes_on_air:>5}" + ("  with PIN 1234" if pin else "")
        )
    pair = pv.make_pair(SEED, balance=50_000)
    assert pair.pos.take_payment(1234).approved
    first_info = len(pair.link.transcript[0][1])
    pair.link.tap()
    assert pair.pos.take_payment(1234).approved
    again_info = len(pair.link.transcript[-3][1])
    rows += [
        f"a 4-digit PIN adds {pay_len[5001] - pay_len[5000]} bytes to the PAY command "
        "(field 5: 1 + 1 + 4)",
        f"from its second payment on, INFO carries the last challenge: "
        f"+{again_info - first_info} bytes",
    ]
    return "\n".join(rows) + "\n"


def _signed_block(attr: Callable[[World], bytes], title: str, tag: bytes, kind: str):
    return lambda w: signed(title, tag, attr(w), kind)


def _payment_env(w: World) -> bytes:
    return w.payment[1][1][:-2]


def _receipt_env(w: World) -> bytes:
    return proto.parse_command(w.payment[2][0])[4]


def _voucher(w: World) -> bytes:
    return w.issuer.voucher(w.pair.wallet_id, 2, 2500)


def _update(w: World) -> bytes:
    return w.issuer.update(
        w.pair.wallet_id, 1, {proto.UPD_SYNCED_COUNTER: 2, proto.UPD_SYNCED_SPENT: 8234}
    )


def _hotlist(w: World) -> bytes:
    return w.issuer.hotlist(2, w.pv.T0, [w.pv.device_id("wallet", 9)])


def _rule(w: World) -> bytes:
    return w.issuer.rule(
        w.pv.device_id("program", 1),
        kind=proto.PROG_SUBSIDY,
        categories=[4111],
        valid_from=w.pv.T0,
        expires=w.pv.T0 + 30 * 86_400,
        cap=500,
        funder="city-transport",
    )


GENERATORS: dict[str, Callable[[World], str]] = {
    "payment-transcript": _block_payment,
    "payment-pin": _block_payment_pin,
    "info": _block_info,
    "bytes-on-air": _block_sizes,
    "transfer-transcript": _block_transfer,
    "journal-chain": _block_chain,
    "cert-wallet": _signed_block(
        lambda w: w.wallet_cert, "wallet certificate", proto.TAG_CERT, "cert"
    ),
    "cert-pos": _signed_block(lambda w: w.pos_cert, "POS certificate", proto.TAG_CERT, "cert"),
    "payment": _signed_block(
        _payment_env, "payment (the PAY answer of the transcript)", proto.TAG_PAYMENT, "payment"
    ),
    "receipt": _signed_block(
        _receipt_env, "receipt (the RECEIPT data of the transcript)", proto.TAG_RECEIPT, "receipt"
    ),
    "voucher": _signed_block(
        _voucher, "voucher 2: a top-up of 25.00", proto.TAG_VOUCHER, "voucher"
    ),
    "update": _signed_block(
        _update, "update 1: synced up to counter 2", proto.TAG_UPDATE, "update"
    ),
    "hotlist": _signed_block(_hotlist, "hot list version 2", proto.TAG_HOTLIST, "hotlist"),
    "ack": _signed_block(lambda w: w.ack, "ack of the wallet's journal", proto.TAG_ACK, "ack"),
    "status": _signed_block(
        lambda w: w.status, "wallet status (last EXPORT page)", proto.TAG_STATUS, "status"
    ),
    "rule": _signed_block(_rule, "purse rule: a transport subsidy", proto.TAG_RULE, "rule"),
}


def generate() -> dict[str, str]:
    """Every example block, freshly made by the code."""
    w = World()
    return {name: gen(w) for name, gen in GENERATORS.items()}


# ---- the doc -------------------------------------------------------------------------------------
def blocks(doc: str) -> dict[str, str]:
    """The example blocks of a doc by name; SpecError on a marker without its block or a name
    used twice."""
    found: dict[str, str] = {}
    for m in BLOCK.finditer(doc):
        if m.group(1) in found:
            raise SpecError(f"example {m.group(1)!r} appears twice")
        found[m.group(1)] = m.group(2)
    for name in MARKER.findall(doc):
        if name not in found:
            raise SpecError(f"example {name!r}: marker without a ```text block right after it")
    return found


def differences(doc: str, fresh: dict[str, str]) -> list[str]:
    """What differs between the doc's blocks and the fresh ones (empty: in step)."""
    have = blocks(doc)
    out = [
        f"example {n!r} is missing from the doc (add its marker and block)"
        for n in fresh
        if n not in have
    ]
    out += [
        f"example {n!r} in the doc is not generated by the code" for n in have if n not in fresh
    ]
    out += [
        f"example {n!r} differs from what the code produces"
        for n in fresh
        if n in have and have[n] != fresh[n]
    ]
    return out


def rewrite(doc: str, fresh: dict[str, str]) -> str:
    """The doc with every existing block replaced by the fresh one (missing ones are not
    added: SpecError)."""
    have = blocks(doc)
    missing = [n for n in fresh if n not in have]
    if missing:
        raise SpecError(
            "no place in the doc for example(s) "
            + ", ".join(missing)
            + ": add a `<!-- example: NAME -->` marker and an empty ```text block"
        )

    def sub(m: re.Match[str]) -> str:
        name = m.group(1)
        body = fresh.get(name, m.group(2))
        return f"<!-- example: {name} -->\n```text\n{body}```\n"

    return BLOCK.sub(sub, doc)


def command_main(doc: Path, write: bool) -> int:
    """`tapcash spec examples`: 0 when the doc is in step (or was rewritten), 1 otherwise."""
    import click

    try:
        text = doc.read_text(encoding="utf-8")
    except OSError as e:
        raise click.ClickException(f"{doc}: {e.strerror}") from None
    fresh = generate()
    try:
        if write:
            new = rewrite(text, fresh)
            if new != text:
                doc.write_text(new, encoding="utf-8")
                click.echo(f"{doc}: examples rewritten from the code (review the diff)")
            else:
                click.echo(f"{doc}: examples already match the code")
            return 0
        diffs = differences(text, fresh)
    except SpecError as e:
        raise click.ClickException(str(e)) from None
    for d in diffs:
        click.echo(d, err=True)
    if diffs:
        click.echo("run `tapcash spec examples --write` to regenerate them on purpose", err=True)
        return 1
    click.echo(f"{doc}: {len(fresh)} examples match the code")
    return 0
