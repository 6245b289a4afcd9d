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



def test_a_piped_report_keeps_one_line_per_sentence(tmp_path: Path):
    done = subprocess.run(
        [sys.executable, "-c", CLI, "sim", "run", "smoke", "--out", str(tmp_path), "--no-plots"],
        capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL,
    )
    lines = done.stdout.splitlines()
    fraud = [line for line in lines if line.startswith("Fraud:")]
    assert len(fraud) == 1 and "fraud loss" in fraud[0], done.stdout
    assert any(len(line) > 80 for line in lines)  # not cut at a terminal's width
