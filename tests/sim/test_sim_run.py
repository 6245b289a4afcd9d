"""Whole simulated runs: devices, fields, the ledger on loopback and the sync tool.

- determinism: same seed, same report (wall-clock figures aside), and a different seed
  gives a different run;
- the same run with every device in its own process, and inside the real MicroPython VM
  (Ed25519 by the host or the firmware's pure code), produces byte-identical APDU transcripts
  (every device, every field) and the same report.
"""

import json

import pytest

from tapcash.sim.run.report import deterministic_part, summarize, write_outputs
from tapcash.sim.run.runner import ScenarioRun
from tapcash.sim.scenario import builtin_scenario


def _run(tmp_path, name, **kw):
    sc = builtin_scenario("smoke")
    log = ScenarioRun(sc, tmp_path / name, **kw).run()
    return log, summarize(log)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    return _run(tmp_path_factory.mktemp("ref"), "a")


def _comparable(summary):
    d = deterministic_part(summary)
    d = json.loads(json.dumps(d))
    d["scenario"].pop("runtime")
    return d


def test_smoke_run_balances(reference):
    log, s = reference
    assert s["ok"], s["checks"]
    pay = s["payments"]
    assert pay["approved"] > 20
    assert pay["torn"] == 2 and pay["recovered_on_retap"] >= 1
    assert s["fraud"]["double_spends_accepted_offline"] >= 1
    assert s["fraud"]["uncaught"] == []
    assert all(c["proof_verified"] for c in s["fraud"]["cases"])
    assert log.wallets["wallet-5"]["id"] in s["fraud"]["revoked"]  # the cloned card
    assert s["syncs"]["over_serial_pty"] == 1
    assert s["ledger"]["issued"] == s["ledger"]["held"]
    assert any(f["kind"] == "power_lost" and f["device"] == "pos-2" for f in s["faults"])


def test_same_seed_same_report(tmp_path, reference):
    _log, again = _run(tmp_path, "b")
    assert _comparable(again) == _comparable(reference[1])


def test_other_seed_other_run(tmp_path, reference):
    _log, other = _run(tmp_path, "c", seed=12)
    assert other["ok"], other["checks"]
    assert other["transcripts"] != reference[1]["transcripts"]


def test_process_per_device_gives_identical_transcripts(tmp_path, reference):
    log, s = _run(tmp_path, "p", isolation="process")
    assert log.digests == reference[0].digests
    assert _comparable(s) == _comparable(reference[1])


@pytest.mark.parametrize("crypto", ["host", "pure"])
def test_micropython_vm_gives_identical_transcripts(tmp_path, reference, crypto):
    """In the VM with the host's libsodium (the default) and with the firmware's own pure
    Ed25519 (as on a board): the same bytes on every field either way."""
    log, s = _run(tmp_path, "mp", runtime="micropython", crypto=crypto)
    assert log.runtime == "micropython"
    assert log.digests == reference[0].digests
    assert _comparable(s) == _comparable(reference[1])


def test_outputs_written(tmp_path, reference):
    log, s = reference
    files = write_outputs(s, log, tmp_path)
    names = {p.name for p in files}
    assert {"report.json", "payments.csv", "payments.png", "exposure.png", "fraud.png",
            "sync_lag.png"} <= names
    for p in files:
        if p.suffix == ".png":
            assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 5000
    data = json.loads((tmp_path / "report.json").read_text())
    assert data["ok"] is True
    rows = (tmp_path / "payments.csv").read_text().splitlines()
    assert len(rows) == s["payments"]["attempted"] + 1
