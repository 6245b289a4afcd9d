"""`tapcash conformance card|pos` over PC/SC (issue #14 "Done when"): our wallet served as the card
in a vpcd reader of a REAL pcscd (tests/support/pcsc_fixtures.py), checked by the command a third
party runs; a broken card in the same reader fails, and the report names the check. The terminal's
reader side: `conformance pos --as-card` serves the kit's cards in vpcd and our desktop POS
(`tapcash pcsc pay`) takes its payments through pcscd; a POS that skips the payment's signature
check fails `forged-payment`. The POS tests use the second vpcd reader when there is one (fewer
clashes with the card tests on the first)."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from click.testing import CliRunner
from pcsc_fixtures import pcscd_fixture, serve, stop  # noqa: F401 - registers the fixture
from test_conformance import _Broken, _card

from tapcash.host.cli import cli
from tapcash.host.issuer import Issuer

TAPCASH = str(Path(sys.executable).parent / "tapcash")


def _check(reader: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [TAPCASH, "conformance", "card", "--reader", reader, "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_our_card_conforms_over_pcsc(pcscd) -> None:
    card, link = serve(_card(), pcscd)
    try:
        link.close()  # the command opens its own connection
        r = _check(pcscd.readers[0])
    finally:
        stop(card, link)
    assert r.returncode == 0, r.stdout + r.stderr
    doc = json.loads(r.stdout)
    assert doc["passed"] and {c["status"] for c in doc["checks"]} == {"pass"}, doc


def test_a_broken_card_over_pcsc_is_named(pcscd) -> None:
    card, link = serve(_Broken(_card(), "unknown-ins-ok"), pcscd)
    try:
        link.close()
        r = subprocess.run(
            [TAPCASH, "conformance", "card", "--reader", pcscd.readers[0]],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    finally:
        stop(card, link)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "FAIL    routing" in r.stdout and "expected 6D00, got 9000" in r.stdout
    assert "does NOT conform" in r.stdout


# ---- the terminal's reader side: the kit is the card --------------------------------------------
def _pos_reader(pcscd) -> tuple[str, int]:
    i = 1 if len(pcscd.readers) > 1 else 0
    return pcscd.readers[i], pcscd.ports[i]


def _kit(issuer_key: Path, port: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [TAPCASH, "conformance", "pos", "--as-card", "--issuer-key", str(issuer_key),
         "--vpcd-port", str(port), "--wait", "60", "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def _settled(results: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The taps that reached a card: a sale started while the kit was taking the last card out
    fails on the link before any command (torn, link) or finds no card; the POS then asks for
    the card again, as a cashier would."""
    return [(st, why) for st, why in results if st not in ("torn", "no_card")]


SETTLED = [
    ("approved", "ok"),
    ("approved", "recovered"),  # the tear after the commit, completed on the re-tap
    ("declined", "bad_payment"),
    ("declined", "funds"),
    ("declined", "cert_invalid"),
]
KIT_CHECKS = ("select", "pay-request", "receipt", "tear-recovery", "forged-payment",
              "card-refusal", "untrusted-card")


def test_our_pos_conforms_as_card_over_pcsc(pcscd, tmp_path: Path) -> None:
    """`tapcash pcsc pay` (our desktop POS, through pcscd) against the kit's five cards until the
    kit is done: approved, recovered after the tear, then declined bad_payment, funds and
    cert_invalid; the kit passes every check (the card paid once in the torn tap)."""
    reader, port = _pos_reader(pcscd)
    Issuer.generate().save(tmp_path / "issuer.key")
    kit = _kit(tmp_path / "issuer.key", port)
    results: list[tuple[str, str]] = []
    docs = []
    try:
        for _sale in range(20):
            if kit.poll() is not None:
                break
            r = subprocess.run(
                [TAPCASH, "pcsc", "pay", "1.00", "--reader", reader, "--workdir", str(tmp_path),
                 "--wait", "10", "--json"],
                capture_output=True, text=True, timeout=120, check=False,
            )
            doc = json.loads(r.stdout)
            docs.append(doc)
            results.append((doc["status"], doc.get("reason", "")))
        out, err = kit.communicate(timeout=120)
    finally:
        if kit.poll() is None:
            kit.kill()
            kit.wait()
    assert _settled(results) == SETTLED, docs
    recovered = next(d for d in docs if d.get("reason") == "recovered")
    assert recovered["counter"] == 2 and recovered["balance"] == 50_000 - 200, recovered
    assert kit.returncode == 0, out + err
    doc = json.loads(out)
    assert doc["passed"], doc
    assert [(c["name"], c["status"]) for c in doc["checks"]] == [
        (n, "pass") for n in KIT_CHECKS
    ], doc


def test_a_pos_that_skips_the_signature_check_fails(pcscd, tmp_path: Path, monkeypatch) -> None:
    """Our POS in process with its payment signature check removed: it journals the forged
    payment and sends a RECEIPT, and the kit names `forged-payment`, nothing else."""
    from tapcash.firmware.core import envelope
    from tapcash.host.conformance.as_card import Kit, run_kit
    from tapcash.host.pcsc.reader_link import PcscLink
    from tapcash.host.pcsc.workdir import load_issuer, open_pos, refresh_hotlist

    reader, port = _pos_reader(pcscd)
    issuer = load_issuer(tmp_path)
    pos, _new = open_pos(tmp_path, issuer)
    refresh_hotlist(pos, issuer)
    kit = Kit(issuer, host="127.0.0.1", port=port, say=lambda _m: None, wait_s=60, idle_s=3)
    box: dict = {}
    thread = threading.Thread(target=lambda: box.update(res=run_kit(kit)), daemon=True)
    thread.start()
    monkeypatch.setattr(envelope, "sig_ok", lambda *_a: True)
    link = PcscLink(reader)
    pos.hal.link = link
    results: list[tuple[str, str]] = []
    try:
        while thread.is_alive() and len(results) < 40:
            if not link.wait_for_card(2):
                continue
            r = pos.take_payment(100)
            link.disconnect()
            results.append((r.status, r.reason))
            link.wait_for_removal(10)  # one card per sale
    finally:
        thread.join(120)
        link.close()
    assert _settled(results)[:3] == [
        ("approved", "ok"), ("approved", "recovered"), ("approved", "ok")  # the forged one
    ], results
    status = {o.name: (o.status, o.detail) for o in box["res"].outcomes}
    assert status["forged-payment"] == ("FAIL", "1 RECEIPT sent for a forged payment"), status
    assert {n for n, (st, _d) in status.items() if st != "pass"} == {"forged-payment"}, status


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--as-card"], "--as-card needs --issuer-key"),
        (["--as-card", "--issuer-key", "KEY", "--reader", "0"], "no --reader or --port"),
        (["--issuer-key", "KEY", "--port", "/dev/null"], "--issuer-key goes with --as-card"),
    ],
)
def test_as_card_bad_options_are_named(tmp_path: Path, args: list[str], message: str) -> None:
    key = tmp_path / "issuer.key"
    Issuer.generate().save(key)
    r = CliRunner().invoke(
        cli, ["conformance", "pos", *[str(key) if a == "KEY" else a for a in args]]
    )
    assert r.exit_code == 2 and message in r.output, r.output


def test_as_card_bad_key_file_changes_nothing(tmp_path: Path) -> None:
    key = tmp_path / "issuer.key"
    key.write_text("not a key\n")
    r = CliRunner().invoke(cli, ["conformance", "pos", "--as-card", "--issuer-key", str(key)])
    assert r.exit_code == 1 and "not an issuer key file" in r.output, r.output
    assert key.read_text() == "not a key\n"


def test_as_card_with_no_terminal_exits_2(pcscd, tmp_path: Path) -> None:
    """Nobody takes a payment: the kit says so (select skipped, the rest not run) and exits 2."""
    _reader, port = _pos_reader(pcscd)
    Issuer.generate().save(tmp_path / "issuer.key")
    r = subprocess.run(
        [TAPCASH, "conformance", "pos", "--as-card", "--issuer-key", str(tmp_path / "issuer.key"),
         "--vpcd-port", str(port), "--wait", "2", "--json"],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert r.returncode == 2, r.stdout + r.stderr
    doc = json.loads(r.stdout)
    assert not doc["passed"]
    assert [c["status"] for c in doc["checks"]] == ["skip"] + ["not run"] * 6, doc
    assert "no terminal in 2 s" in doc["checks"][0]["detail"]
