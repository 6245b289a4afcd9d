"""`tapcash pcsc ...`: PC/SC readers, a simulated wallet card behind vpcd, the desktop POS.

    tapcash pcsc readers                       # readers pcscd knows, with the card in each
    tapcash pcsc serve-card --wallet 1         # card 1 of ./tapcash-pcsc in vpcd until Ctrl-C
    tapcash pcsc pay 12.50 --reader 0          # the desktop POS takes 12.50 from the tapped card
    tapcash pcsc bench                         # APDU / payment times through pcscd + vpcd

Amounts are minor units (cents). `serve-card` and `pay` share a work folder (`--workdir`,
default ./tapcash-pcsc, env TAPCASH_PCSC_WORKDIR) holding the issuer key, the POS and the
simulated cards, all made on first use (see tapcash.host.pcsc.workdir). A card from another
issuer is declined by this POS (`cert_invalid`) unless `--issuer-key` names that issuer.
Needs pcscd (Debian: pcscd, and vsmartcard-vpcd for the virtual reader) and pyscard.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import click

from tapcash.firmware.core.units import money
from tapcash.host.output import AMOUNT, echo_json

if TYPE_CHECKING:
    from tapcash.host.issuer import Issuer

workdir_option = click.option(
    "--workdir",
    type=click.Path(file_okay=False, path_type=Path),
    default="tapcash-pcsc",
    show_default=True,
    envvar="TAPCASH_PCSC_WORKDIR",
    help="folder with the issuer key, the POS and the simulated cards (made on first use)",
)
issuer_option = click.option(
    "--issuer-key",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    envvar="TAPCASH_ISSUER_KEY",
    help="issuer key file to use instead of WORKDIR/issuer.key",
)


def _fail(message: str) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(2)


def _issuer(workdir: Path, issuer_key: Path | None) -> Issuer:
    """The folder's issuer, or a one-line refusal (exit 2) naming a key file that is not one."""
    from .workdir import load_issuer

    try:
        return load_issuer(workdir, issuer_key)
    except (OSError, ValueError, KeyError) as e:
        where = issuer_key or workdir / "issuer.key"
        _fail(f"{where}: not a readable issuer key file ({e})")
        raise AssertionError from e  # _fail exits


@click.group()
def pcsc() -> None:
    """PC/SC: list readers, serve a simulated wallet card (vpcd), take a payment."""


@pcsc.command()
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
def readers(as_json: bool) -> None:
    """List the PC/SC readers and the ATR of the card in each."""
    from .reader_link import ReaderError, reader_states

    try:
        states = reader_states()
    except ReaderError as e:
        _fail(str(e))
    if as_json:
        out = [{"index": i, "reader": n, "card": p, "atr": a.hex()}
               for i, (n, p, a) in enumerate(states)]
        echo_json(out)
        return
    if not states:
        click.echo("no readers")
    for i, (name, present, atr) in enumerate(states):
        card = f"card {atr.hex(' ').upper()}" if present else "no card"
        click.echo(f"{i}: {name}  [{card}]")


@pcsc.command("serve-card")
@workdir_option
@issuer_option
@click.option("--wallet", "number", type=click.IntRange(1), default=1, show_default=True,
              help="which simulated card of the work folder (WORKDIR/wallets/N)")
@click.option("--balance", type=AMOUNT, default="500.00", show_default=True,
              help="major units loaded when the card is made (first use only)")
@click.option("--host", default="127.0.0.1", show_default=True, help="where vpcd listens")
@click.option("--port", type=click.IntRange(1, 65535), default=35963, show_default=True,
              help="vpcd port: 35963 is reader 'Virtual PCD 00 00', 35964 the second one")
@click.option("-v", "--verbose", is_flag=True, help="print every vpcd event and APDU count")
def serve_card(workdir: Path, issuer_key: Path | None, number: int, balance: int, host: str,
               port: int, verbose: bool) -> None:
    """Run a simulated wallet card in the vpcd reader until Ctrl-C.

    The card connects to vpcd (pcscd with vsmartcard-vpcd) and stays in the reader; if vpcd
    goes away it keeps trying to reconnect. Its state is in WORKDIR/wallets/N: payments made
    with it are kept across runs.
    """
    from .vpcd_card import ATR, VpcdCard
    from .workdir import open_wallet, wallet_summary

    issuer = _issuer(workdir, issuer_key)
    wallet, created = open_wallet(workdir, issuer, number, balance)
    wid, counter, bal = wallet_summary(wallet)
    made = "new card, " if created else ""
    click.echo(f"wallet {wid.hex()} ({made}balance {money(bal)}, {counter} payments) "
               f"from {workdir / 'wallets' / str(number)}")
    click.echo(f"ATR {ATR.hex(' ').upper()}; connecting to vpcd at {host}:{port} (Ctrl-C ends)")

    def event(what: str) -> None:
        if what in ("inserted", "disconnected") or verbose:
            click.echo(f"  {time.strftime('%H:%M:%S')} {what}")

    card = VpcdCard(wallet, host=host, port=port, on_event=event).start()
    last = [(counter, bal)]

    def report() -> None:
        with card.lock:
            _wid, now_counter, now_bal = wallet_summary(wallet)
        if (now_counter, now_bal) != last[0]:
            click.echo(f"  payment {now_counter} signed, balance {money(now_bal)}")
            last[0] = (now_counter, now_bal)

    try:
        while card.error is None:
            time.sleep(0.5)
            report()
    except KeyboardInterrupt:
        pass
    finally:
        card.stop()
    report()  # a payment signed since the last look is still reported
    if card.error is not None:
        _fail(f"card stopped: {card.error!r}")
    click.echo(f"stopped after {card.apdus} APDUs")


@pcsc.command()
@click.argument("amount", type=AMOUNT)
@click.option("--reader", default=None,
              help="reader index (see `tapcash pcsc readers`) or part of its name; "
                   "default: the first reader")
@workdir_option
@issuer_option
@click.option("--pin", default=None, help="the cardholder's PIN, for amounts above the "
              "card's no-CVM limit")
@click.option("--wait", "wait_s", type=click.FloatRange(0), default=30.0, show_default=True,
              help="seconds to wait for a card")
@click.option("--retap/--no-retap", default=True, show_default=True,
              help="when the card leaves too early, ask for it again and complete the payment")
@click.option("--exclusive", is_flag=True, help="hold the card exclusively during the tap")
@click.option("--json", "as_json", is_flag=True, help="print the result as JSON")
def pay(amount: int, reader: str | None, workdir: Path, issuer_key: Path | None,
        pin: str | None, wait_s: float, retap: bool, exclusive: bool, as_json: bool) -> None:
    """Take a payment of AMOUNT (major units: 12.50) from the card on a PC/SC reader.

    The POS is WORKDIR/pos (made on first use, certified by the folder's issuer). Exit status
    0 when approved, 1 when declined, torn or no card came.
    """
    from tapcash.firmware.core.hal import LinkError

    from .reader_link import PcscLink, ReaderError, resolve_reader
    from .workdir import open_pos, refresh_hotlist

    issuer = _issuer(workdir, issuer_key)
    pos, created = open_pos(workdir, issuer)
    say = (lambda *_a, **_k: None) if as_json else click.echo
    if created:
        say(f"new POS {pos.pos_id.hex()} in {workdir / 'pos'}")
    version = refresh_hotlist(pos, issuer)
    if version is not None:
        say(f"POS hot list was stale: applied a fresh empty one (version {version})")
    try:
        link = PcscLink(resolve_reader(reader), exclusive=exclusive)
    except ReaderError as e:
        _fail(str(e))
    pos.hal.link = link
    result = None
    started = 0.0
    try:
        for attempt in range(2 if retap else 1):
            say(f"{'tap again' if attempt else 'tap a card'} on {link.reader} "
                f"(waiting {wait_s:g} s)")
            if not link.wait_for_card(wait_s):
                break
            started = time.perf_counter()
            result = pos.take_payment(amount, pin.encode() if pin else None)
            link.disconnect()
            if result.status != "torn":
                break
            say("card removed before the payment completed")
            link.wait_for_removal(wait_s)
    except LinkError as e:  # the reader vanished while waiting
        _fail(str(e))
    finally:
        link.close()
    elapsed_ms = (time.perf_counter() - started) * 1000 if result is not None else 0.0
    _report(result, amount, elapsed_ms, as_json)
    sys.exit(0 if result is not None and result.approved else 1)


def _report(result, amount: int, elapsed_ms: float, as_json: bool) -> None:
    if as_json:
        if result is None:
            echo_json({"status": "no_card", "amount": amount})
            return
        echo_json({
            "status": result.status, "reason": result.reason, "amount": result.amount,
            "sw": f"{result.sw:04X}", "wallet": result.wallet.hex() if result.wallet else None,
            "counter": result.counter, "balance": result.balance, "seq": result.seq,
            "recovered": result.recovered, "ms": round(elapsed_ms, 1),
        })
        return
    if result is None:
        click.echo("no card")
        return
    if result.approved:
        what = "recovered the torn payment of" if result.recovered else "approved"
        click.echo(f"{what} {money(result.amount)} from wallet {result.wallet.hex()} "
                   f"(payment {result.counter}, card balance {money(result.balance)}, "
                   f"POS journal seq {result.seq}, {elapsed_ms:.0f} ms)")
    else:
        sw = f", SW {result.sw:04X}" if result.sw else ""
        click.echo(f"{result.status}: {result.reason}{sw}")


@pcsc.command("bench")
@click.option("--reader", default=None, help="vpcd reader (default: the first 'Virtual PCD')")
@click.option("--port", type=click.IntRange(1, 65535), default=35963, show_default=True,
              help="vpcd port of that reader")
@click.option("--apdus", type=click.IntRange(1), default=200, show_default=True)
@click.option("--payments", type=click.IntRange(1, 30), default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="print the figures as JSON")
def bench_cmd(reader: str | None, port: int, apdus: int, payments: int, as_json: bool) -> None:
    """Median APDU round trip and payment time through pcscd + vpcd, with and without
    TCP_NODELAY / TCP_QUICKACK on the card's socket (needs a running pcscd with vpcd)."""
    from tapcash.host.bench import report

    from .bench import run
    from .reader_link import ReaderError

    cmd = f"tapcash pcsc bench --apdus {apdus} --payments {payments}" + (
        f" --port {port}" if port != 35963 else "") + (f" --reader '{reader}'" if reader else "")
    head = report.new_section("pcsc", cmd)
    try:
        out = run(reader, port, apdus, payments)
    except ReaderError as e:
        _fail(str(e))
    if as_json:
        echo_json(out)
        return
    click.echo(f"reader {out['reader']}; the card answering in process: "
               f"{out['in_process_apdu_ms']:.3f} ms per GET INFO")
    click.echo("NODELAY QUICKACK  APDU median (max) ms  payment ms  tap ms  samples")
    for r in out["rows"]:
        click.echo(f"{'on' if r['nodelay'] else 'off':>7} {'on' if r['quickack'] else 'off':>8}"
                   f"  {r['apdu_ms']:>9.3f} ({r['apdu_ms_max']:.1f})"
                   f"  {r['pay_ms']:>10.1f}  {r['tap_ms']:>6.1f}  {r['apdus']}/{r['payments']}")
    click.echo("(one run: `tapcash bench pcsc` repeats it, median (min-max) of the runs)")
    report.echo_provenance(report.finish(head))
