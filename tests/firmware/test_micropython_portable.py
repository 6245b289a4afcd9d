"""Run every portable test (tests/firmware/portable/test_*.py) again inside real MicroPython.

Test names are read with ast (nothing is imported on the host), one pytest case per
function, so a failure names the module and function and shows the VM's traceback.
"""

from pathlib import Path

import pytest

from tapcash.sim.vm.mpvm import MicroPythonVM, portable_test_names

PORTABLE_DIR = Path(__file__).resolve().parent / "portable"


def _cases() -> list:
    cases = []
    for path in sorted(PORTABLE_DIR.glob("test_*.py")):
        for name in portable_test_names(path):
            cases.append(pytest.param(path, name, id=f"{path.stem}::{name}"))
    return cases


@pytest.mark.parametrize(("path", "name"), _cases())
def test_portable_in_micropython(mpvm: MicroPythonVM, path: Path, name: str) -> None:
    result = mpvm.run_portable_test(path, name)
    if not result.ok:
        output = f"\n--- printed ---\n{result.output}" if result.output else ""
        pytest.fail(
            f"{path.name}::{name} failed in MicroPython:\n{result.traceback}{output}",
            pytrace=False,
        )
