"""Tests of the host tools (host/device, host/sync, host/pcsc, the CLI, the benches' reporting):
the real commands, mostly as subprocesses, against simulated boards on pseudo-terminals, a real
pcscd, and the ledger on loopback (tests/support/sync_world.py)."""

from collections.abc import Iterator
from pathlib import Path

import pytest
import sync_world as sw


@pytest.fixture
def scn(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[sw.Scenario]:
    """The sync scenario (sync_world.prepared) seeded by the module's SEED."""
    s = sw.prepared(tmp_path, request.module.SEED)
    yield s
    s.close()
