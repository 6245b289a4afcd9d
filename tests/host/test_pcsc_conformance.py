"""`tapcash conformance card` over PC/SC (issue #14 "Done when"): our wallet served as the card in
a vpcd reader of a REAL pcscd (tests/support/pcsc_fixtures.py), checked by the command a third party
runs; a broken card in the same reader fails, and the report names the check."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from pcsc_fixtures import pcscd_fixture, serve, stop  # noqa: F401 - registers the fixture
from test_conformance import _Broken, _card

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
