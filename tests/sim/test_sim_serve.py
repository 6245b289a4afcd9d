"""`tapcash sim serve` and `tapcash sim board`: simulated devices on pseudo-terminals, driven by
the real tools in their own processes (tapcash sync over pyserial, mpremote), as a board on a
USB serial adapter would be."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tapcash.host.ledger.client import LedgerClient

CLI = "from tapcash.host.cli import main; main()"

TINY = """
[scenario]
name = "tiny"
seed = 5
flash = "memory"

[wallets]
count = 2
balance = 10000

[pos]
count = 1

[payments]
count = 4
arrival = "uniform"
amount = { dist = "uniform", min = 100, max = 900 }

[sync]
pos_every_hours = 0
wallet_share = 0.0
"""


def start(*args: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TAPCASH_")}
    return subprocess.Popen(
        [sys.executable, "-c", CLI, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        env=env,
    )


def stop(proc: subprocess.Popen[str]) -> tuple[int, str]:
    """Ctrl-C, as a person at the terminal would; returns (exit code, stderr)."""
    proc.send_signal(signal.SIGINT)
    try:
        _out, err = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        _out, err = proc.communicate()
        raise AssertionError("did not stop on Ctrl-C: " + err) from None
    return proc.returncode, err


def tapcash_sync(port: str, served: dict[str, Any]) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-c", CLI, "sync", "--port", port, "--ledger", served["ledger"]["url"],
         "--token", served["ledger"]["token"], "--outbox", served["outbox"], "--json"],
        capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.mark.parametrize("runtime", ["cpython", "micropython"])
def test_serve_puts_every_device_on_a_pty_for_tapcash_sync(tmp_path: Path, runtime: str) -> None:
    scenario = tmp_path / "tiny.toml"
    scenario.write_text(TINY)
    proc = start("sim", "serve", str(scenario), "--runtime", runtime, "--out",
                 str(tmp_path / "run"), "--json")  # fmt: skip
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line, proc.stderr.read() if proc.stderr else ""
        served = json.loads(line)
        devices = {d["name"]: d for d in served["devices"]}
        assert set(devices) == {"pos-1", "wallet-1", "wallet-2"}
        assert all(d["port"].startswith("/dev/pts/") for d in devices.values())

        pos = tapcash_sync(devices["pos-1"]["port"], served)
        assert pos["outcome"] == "synced" and pos["kind"] == "pos"
        assert pos["device"] == devices["pos-1"]["id"]
        assert pos["exported"] == 4 and pos["ledger_result"]["accepted"] == 4
        paid = 0
        for name in ("wallet-1", "wallet-2"):
            w = tapcash_sync(devices[name]["port"], served)
            assert w["outcome"] == "synced" and w["device"] == devices[name]["id"]
            assert w["ledger_result"]["accepted"] == 0  # the POS brought them first
            paid += 10000 - w["status"]["balance"]
        with LedgerClient(served["ledger"]["url"], served["ledger"]["token"]) as lc:
            books = lc.books()
        credited = sum(v for k, v in books["balances"].items() if k.startswith("merchant:"))
        assert paid > 0 and credited == paid  # what left the cards is what the merchant got
        # the same port answers again: a second sync has nothing new
        again = tapcash_sync(devices["pos-1"]["port"], served)
        assert again["exported"] == 0
    finally:
        code, err = stop(proc)
    assert code == 0 and "stopped" in err and "Traceback" not in err


def test_serve_refuses_an_unknown_scenario(tmp_path: Path) -> None:
    proc = start("sim", "serve", "no-such-scenario", "--out", str(tmp_path / "run"))
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1 and "no-such-scenario" in err and "Traceback" not in err


def test_board_is_a_micropython_repl_for_mpremote(tmp_path: Path) -> None:
    proc = start("sim", "board", "--flash", str(tmp_path / "flash"))
    try:
        assert proc.stdout is not None
        port = proc.stdout.readline().strip()
        assert port.startswith("/dev/pts/")

        def mpremote(*args: str) -> str:
            done = subprocess.run(
                [sys.executable, "-m", "mpremote", "connect", port, *args],
                capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
            )  # fmt: skip
            assert done.returncode == 0, done.stderr
            return done.stdout

        assert mpremote("exec", "print(6 * 7)").strip() == "42"
        mpremote("exec", "open('/note.txt', 'w').write('kept')")
        assert "note.txt" in mpremote("fs", "ls", ":")
    finally:
        code, err = stop(proc)
    assert code == 0, err
    assert (tmp_path / "flash" / "note.txt").read_text() == "kept"  # --flash keeps the files


def test_serve_raises_the_open_file_limit_or_says_why_not() -> None:
    # each served device holds a pty pair and a pipe: a district is more than a default 1024
    code = (
        "import resource\n"
        "from tapcash.sim.run.serve import TooManyDevices, _enough_files\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (300, 5000))\n"
        "_enough_files(500)\n"
        "print(resource.getrlimit(resource.RLIMIT_NOFILE)[0])\n"
        "try:\n"
        "    _enough_files(2000)\n"
        "except TooManyDevices as e:\n"
        "    print(e)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=True)  # fmt: skip
    raised, refused = done.stdout.splitlines()
    assert int(raised) >= 500 * 4
    assert refused.startswith("2000 devices need about") and "allows 5000" in refused
