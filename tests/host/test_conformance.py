"""`tapcash conformance card|pos` (issue #14): the protocol's checks pass against our own card
and terminal, and name the check a broken implementation fails. In process here (the apps'
`process`), over the sync frames on a pseudo-terminal for the POS; over PC/SC with vpcd in
tests/host/test_pcsc_conformance.py."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tapcash.firmware.core import cbor, proto
from tapcash.host.conformance.checks import CARD_CHECKS, POS_CHECKS, Session, run
from tapcash.sim.device import provision as pv
from tapcash.sim.device.serial_pty import SerialDevice

TAPCASH = str(Path(sys.executable).parent / "tapcash")


def _card(balance: int = 5000):
    app, _flash = pv.make_wallet(pv.issuer_from_seed(3), 1, seed=3, balance=balance)
    return app


def _statuses(outcomes) -> dict[str, str]:
    return {o.name: o.status for o in outcomes}


def test_our_card_passes_every_check() -> None:
    app = _card()
    out = run(CARD_CHECKS, Session(app.process))
    assert _statuses(out) == {name: "pass" for name, _fn in CARD_CHECKS}, out
    assert app.state is not None  # it paid 0.01 to the conformance payee
    assert (
        cbor.decode(app.process(proto.build_command(0x80, 0xCA, 0, 0))[:-2])[proto.INFO_COUNTER]
        == 1
    )


def test_our_pos_passes_every_check() -> None:
    pair = pv.make_pair(3)
    assert pair.pos.take_payment(1234).approved  # a journal with a record to check
    out = run(POS_CHECKS, Session(pair.pos.process))
    assert _statuses(out) == {name: "pass" for name, _fn in POS_CHECKS}, out


class _Broken:
    """Our card with one defect, as another implementation might have it."""

    def __init__(self, app, defect: str) -> None:
        self.app = app
        self.defect = defect

    def power_on(self) -> object:
        return self.app.power_on()

    def process(self, apdu: bytes) -> bytes:
        resp = self.app.process(apdu)
        if self.defect == "unknown-ins-ok" and apdu[1] == 0x7E:
            return b"\x90\x00"
        if self.defect == "cert-as-array" and apdu[:2] in (b"\x00\xa4", b"\x80\xca"):
            info = cbor.decode(resp[:-2])
            if proto.INFO_CERT in info:
                info[proto.INFO_CERT] = cbor.decode(info[proto.INFO_CERT])
            return cbor.encode(info) + resp[-2:]
        if self.defect == "resigns-retry" and apdu[1] == proto.INS_PAY and resp[-2:] == b"\x90\x00":
            self.seen = getattr(self, "seen", 0) + 1
            if self.seen == 2:  # the idempotent retry answered with other bytes
                env = cbor.decode(resp[:-2])
                return cbor.encode([env[0], bytes(64)]) + resp[-2:]
        return resp


@pytest.mark.parametrize(
    ("defect", "check", "says"),
    [
        ("unknown-ins-ok", "routing", "INS 0x7E under CLA 80: expected 6D00, got 9000"),
        ("cert-as-array", "select-info", "the certificate as a byte string"),
        ("resigns-retry", "payment", "identical envelope"),
    ],
)
def test_a_broken_card_fails_the_check_that_names_its_defect(defect, check, says) -> None:
    out = run(CARD_CHECKS, Session(_Broken(_card(), defect).process))
    failed = [o for o in out if o.status == "FAIL"]
    assert [o.name for o in failed] == [check], out
    assert says in failed[0].detail


def test_a_blank_card_is_skipped_with_the_reason() -> None:
    from tapcash.firmware.core.hal import Hal
    from tapcash.firmware.wallet.app import WalletApp
    from tapcash.sim.device.flash import SimFlash
    from tapcash.sim.device.hal import SeededRng

    app = WalletApp(Hal(flash=SimFlash(), rng=SeededRng(1)))
    out = run(CARD_CHECKS, Session(app.process))
    assert out[0].status == "skip" and "not personalised" in out[0].detail
    assert {o.status for o in out[1:]} == {"not run"}


def test_the_command_checks_a_terminal_on_a_serial_port() -> None:
    pair = pv.make_pair(5)
    assert pair.pos.take_payment(700).approved
    with SerialDevice(pair.pos) as dev:
        r = subprocess.run(
            [TAPCASH, "conformance", "pos", "--port", dev.path, "--json"],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    assert r.returncode == 0, r.stdout + r.stderr
    doc = json.loads(r.stdout)
    assert doc["passed"] and all(c["status"] == "pass" for c in doc["checks"])


def test_the_command_says_what_is_wrong_with_its_options() -> None:
    r = subprocess.run(
        [TAPCASH, "conformance", "card"], capture_output=True, text=True, timeout=60, check=False
    )
    assert r.returncode == 2 and "exactly one of --reader" in r.stderr
    assert "Traceback" not in r.stderr
    r = subprocess.run(
        [TAPCASH, "conformance", "pos", "--port", "/dev/no-such-port"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert r.returncode == 1 and "/dev/no-such-port" in r.stderr and "Traceback" not in r.stderr


def test_the_command_checks_a_card_on_a_serial_port() -> None:
    # a board's wallet speaking the sync frames (sim/device/serial_pty.py is one on a pty)
    app = _card()
    with SerialDevice(app) as dev:
        r = subprocess.run(
            [TAPCASH, "conformance", "card", "--port", dev.path],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "card: 8/8 checks passed: conforms" in r.stdout
