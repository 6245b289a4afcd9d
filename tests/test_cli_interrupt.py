"""Ctrl-C during long work: exit 130 (the shell's convention, not Click's 'Aborted!' 1), and
say what was left behind. A real `tapcash sim run` in its own process gets a real SIGINT."""

import signal
import subprocess
import sys
import time
from pathlib import Path

CLI = "from tapcash.host.cli import main; main()"


def test_ctrl_c_in_a_scenario_run_exits_130_and_names_the_half_written_folder(tmp_path: Path):
    out = tmp_path / "run"
    proc = subprocess.Popen(
        [sys.executable, "-c", CLI, "sim", "run", "district", "--out", str(out), "--no-plots"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        # the run has started once it lays out its folder (personalising 320 devices follows)
        while not (out / "flash").exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr and "Aborted!" not in stderr
    assert "interrupted during personalising" in stderr
    assert f"the run folder {out} is incomplete (no report.json)" in stderr
    assert not (out / "report.json").exists()

