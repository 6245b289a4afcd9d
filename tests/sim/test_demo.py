"""`tapcash demo` end to end, as a user runs it: the real CLI entry point in a subprocess."""

import json
import subprocess
import sys


def test_demo_end_to_end(tmp_path):
    work = tmp_path / "tapcash-demo"
    proc = subprocess.run(
        [sys.executable, "-c", "from tapcash.host.cli import main; main()", "demo",
         "--workdir", str(work)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = " ".join(proc.stdout.split())  # rich wraps long lines
    assert "The books balance" in out
    assert "Attack clone-1 on wallet-7" in out

    s = json.loads((work / "report.json").read_text())
    assert s["ok"] is True
    assert s["scenario"]["wallets"] == 50 and s["scenario"]["pos"] == 5
    assert all(s["checks"].values())
    pay = s["payments"]
    assert pay["approved"] > 250
    assert pay["torn"] >= 1 and pay["recovered_on_retap"] >= 1
    assert pay["power_cut_during_payment"] == 1
    fraud = s["fraud"]
    assert fraud["double_spends_accepted_offline"] == 2  # the clone and the rollback
    assert fraud["uncaught"] == []
    assert len(fraud["revoked"]) == 2
    assert all(c["proof_verified"] for c in fraud["cases"])
    assert s["syncs"]["over_serial_pty"] == 3
    assert 0 < s["nfc"]["in_field_ms_p50"] < 500
    assert s["ledger"]["issued"] == s["ledger"]["held"] > 0
    for name in ("payments.png", "exposure.png", "fraud.png", "sync_lag.png"):
        assert (work / name).read_bytes()[:4] == b"\x89PNG"
    assert (work / "ledger.db").is_file()
    assert any((work / "flash" / "wallet-1").iterdir())  # device flash as files in the run folder
