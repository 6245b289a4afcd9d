"""Shared fixtures of every area (tests/firmware, host, ledger, sim each have a conftest.py of
their own; the importable scaffolding, ledger_world, sync_world, ..., is tests/support/).

`mpvm` is one real MicroPython 1.27 VM (WebAssembly under Node.js) for the whole session,
with firmware/ installed as .py under /firmware; `mpvm_compiled` is a second one with the
firmware compiled to .mpy by mpy-cross. The first use installs the pinned npm package
(see tapcash.sim.vm.mpvm.ensure_vm_installed); without node/npm these fixtures error out,
failing the tests that need them.
"""

from collections.abc import Iterator

import pytest

from tapcash.sim.vm.mpvm import MicroPythonVM, ensure_vm_installed
from tapcash.sim.vm.repl_pty import ReplBoard


def _vm(compiled: bool) -> Iterator[MicroPythonVM]:
    ensure_vm_installed()
    with MicroPythonVM() as vm:
        vm.install_firmware(compiled=compiled)
        yield vm


@pytest.fixture(scope="session")
def mpvm() -> Iterator[MicroPythonVM]:
    yield from _vm(compiled=False)


@pytest.fixture(scope="session")
def mpvm_compiled() -> Iterator[MicroPythonVM]:
    yield from _vm(compiled=True)



@pytest.fixture
def board() -> Iterator[ReplBoard]:
    """A bare simulated MicroPython board (the real VM's REPL on a pseudo-terminal)."""
    with ReplBoard() as b:
        yield b
    assert b.error is None, b.error


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--schemathesis-examples", type=int, default=12,
                     help="examples per API operation in tests/ledger/test_ledger_schemathesis.py "
                          "(default 12; a sweep: 200)")
