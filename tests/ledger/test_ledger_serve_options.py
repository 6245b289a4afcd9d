"""`tapcash ledger serve --verify-procs N` starts N signature helper processes in each worker
(host/ledger/verify.py) and the batches they check are ingested as inline; a bad value is a
usage error (exit 2). Structure only (processes and counts), never time: the figures are
`tapcash bench ingest` / `tapcash bench servers` (docs/LEDGER.md §8)."""

from __future__ import annotations

import gc
import os
import subprocess
from pathlib import Path

import pytest
from cli_run import TAPCASH
from ledger_process import LedgerServe
from ledger_world import TOKEN

from tapcash.firmware.core import ed25519
from tapcash.host.bench.ingest import NO_LIMITS, synthetic_wallet_log
from tapcash.host.issuer import Issuer
from tapcash.host.ledger.client import LedgerClient
from tapcash.host.ledger.env import ENV_DB, ENV_KEY, ENV_TOKEN

HELPER = b"tapcash.host.ledger.verify"


def _children() -> dict[int, list[int]]:
    out: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            stat = Path(f"/proc/{name}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        out.setdefault(ppid, []).append(int(name))
    return out


def _helpers(root: int) -> int:
    """Signature helper processes among `root`'s descendants."""
    kids, todo, found = _children(), [root], 0
    while todo:
        pid = todo.pop()
        for child in kids.get(pid, []):
            todo.append(child)
            try:
                found += HELPER in Path(f"/proc/{child}/cmdline").read_bytes()
            except OSError:
                pass
    return found


def test_verify_procs_starts_helpers_that_check_the_batch(tmp_path: Path) -> None:
    issuer = Issuer.generate()
    key = tmp_path / "issuer.key"
    issuer.save(key)
    server = LedgerServe(str(tmp_path / "ledger.db"), key, TOKEN, tmp_path / "serve.log",
                         args=["--verify-procs", "2"])
    try:
        assert _helpers(server.proc.pid) == 0  # started at the first batch that needs them
        with LedgerClient(server.url, TOKEN, timeout=120) as c:
            pseed, pid = os.urandom(32), os.urandom(8)
            c.register(issuer.certify_pos(pid, ed25519.public_key(pseed), os.urandom(8),
                                          expires=2**40))
            wseed, wid = os.urandom(32), os.urandom(8)
            c.deposit("alice", 10**6)
            c.register(issuer.certify_wallet(wid, ed25519.public_key(wseed), expires=2**40,
                                             limits=NO_LIMITS), "alice")
            c.load(wid, 10**6)
            recs, st, _ = synthetic_wallet_log(wseed, wid, pid, 1, 200, bytes(32), 1,
                                               start_balance=10**6)
            res = c.ingest(wid, recs, st)
            assert (res.accepted, res.upto) == (200, 200)
        assert _helpers(server.proc.pid) == 2
        assert "1 worker(s), 8 database connection(s) and 2 signature helper(s) each" in \
            (tmp_path / "serve.log").read_text()
    finally:
        server.stop()


def test_a_bad_verify_procs_is_a_usage_error(tmp_path: Path) -> None:
    key = tmp_path / "issuer.key"
    Issuer.generate().save(key)
    done = subprocess.run([*TAPCASH, "ledger", "serve", "--db", str(tmp_path / "l.db"),
                           "--issuer-key", str(key), "--token", TOKEN, "--verify-procs", "65"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "--verify-procs" in done.stderr and "0<=x<=64" in done.stderr


def test_a_served_worker_freezes_its_startup_heap_and_collects_young_objects_rarely(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The worker app (uvicorn --factory app_from_env) tunes its garbage collector: the app's
    startup objects frozen, young collections every GC_THRESHOLD[0] allocations (docs/LEDGER.md
    §8; what it saves is measured by `tapcash bench servers`, never here)."""
    from tapcash.host.ledger import app as app_mod
    from tapcash.host.ledger.db import Database
    from tapcash.host.ledger.migrations import migrate

    db = tmp_path / "ledger.db"
    migrate(Database(str(db)))
    key = tmp_path / "issuer.key"
    Issuer.generate().save(key)
    for name, value in ((ENV_DB, str(db)), (ENV_KEY, str(key)), (ENV_TOKEN, TOKEN)):
        monkeypatch.setenv(name, value)
    before = gc.get_threshold()
    try:
        app = app_mod.app_from_env()
        assert gc.get_threshold() == app_mod.GC_THRESHOLD and gc.get_freeze_count() > 0
        app.state.ledger.db.close()
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
