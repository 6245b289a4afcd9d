"""The house rules the brief sets, checked on every run so a landing cannot break them quietly:
host code is ruff-clean; firmware is MicroPython-first (no dataclasses, no run-time typing, no
__future__, no f-string `=`, no `machine` outside the hardware layer)."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FIRMWARE = sorted((ROOT / "firmware").rglob("*.py"))
BANNED_IN_FIRMWARE = [
    (re.compile(r"^\s*(from dataclasses|import dataclasses)", re.M), "dataclasses"),
    (re.compile(r"^(from typing|import typing)", re.M), "run-time typing (use TYPE_CHECKING)"),
    (re.compile(r"^from __future__", re.M), "__future__"),
    (re.compile(r"\{[^{}]*=\}"), "f-string '=' specifier"),
]
MACHINE_IMPORT = re.compile(r"^\s*(import machine|from machine )", re.M)


def test_ruff_is_clean() -> None:
    ruff = shutil.which("ruff") or str(Path(sys.executable).with_name("ruff"))
    done = subprocess.run([ruff, "check", "--no-cache", str(ROOT)], capture_output=True,
                          text=True, cwd=ROOT)
    assert done.returncode == 0, done.stdout[-4000:]


@pytest.mark.parametrize("source", FIRMWARE, ids=lambda p: str(p.relative_to(ROOT)))
def test_firmware_is_micropython_first(source: Path) -> None:
    text = source.read_text()
    for pattern, what in BANNED_IN_FIRMWARE:
        assert not pattern.search(text), f"{source.name} uses {what}"
    if "hal" not in source.relative_to(ROOT / "firmware").parts:
        assert not MACHINE_IMPORT.search(text), f"{source.name} imports machine outside hal/"
