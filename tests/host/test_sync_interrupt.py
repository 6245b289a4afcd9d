"""A sync interrupted after EVERY frame converges when run again: same ledger books, same device
state, nothing counted twice, empty outbox.

Real pieces only: WalletApp / PosApp on SimFlash served on a pseudo-terminal, pyserial on the
host side, the ledger's FastAPI app under uvicorn on loopback with SQLite. Interruptions:
  - the device closes the line after running frame k, before its answer leaves;
  - the device closes the line after answering frame k;
  - the host process (`tapcash sync` in a subprocess) is killed when frame k arrives (the device
    still runs it: its answer is left in the line for the next session to ignore), or right
    after the device answered frame k (the host dies somewhere in its own work: outbox write,
    ledger upload);
  - the host dies after the ledger committed the batch but before its answer arrived.
The reference is the same scenario synced without faults.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
import sync_world as sw

from tapcash.host.device.errors import LinkLost
from tapcash.host.sync.ledger_link import LedgerLink
from tapcash.host.sync.outbox import Outbox
from tapcash.sim.device.serial_pty import Faults, SerialDevice

SEED = 11
PAGE = 2  # records per EXPORT page: the wallet's 6 records take 3 EXPORT frames
# frames of an uninterrupted sync: SELECT, EXPORT x3, APPLY, LOAD, ACK, then a second round for
# the LOAD record: EXPORT, ACK (wallet); SELECT, EXPORT x2, APPLY (hot list), ACK (POS)
WALLET_FRAMES = 9
POS_FRAMES = 5


def _full_sync(scn: sw.Scenario) -> tuple[Any, Any]:
    outbox = Outbox(scn.outbox_dir)
    with LedgerLink(scn.server.url, scn.server.token) as link:
        w = sw.pty_sync(scn.world.wallet(), link, outbox, page_records=PAGE)
        p = sw.pty_sync(scn.world.terminal(), link, outbox, page_records=PAGE)
    return w, p


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    scn = sw.prepared(tmp_path_factory.mktemp("reference"), SEED)
    try:
        w, p = _full_sync(scn)
        assert w.outcome == p.outcome == "synced"
        assert w.link["requests"] == WALLET_FRAMES and p.link["requests"] == POS_FRAMES
        assert w.ledger_result["accepted"] == len(sw.PAYMENTS)
        assert p.ledger_result["duplicates"] == len(sw.PAYMENTS)
        snap = sw.snapshot(scn)
    finally:
        scn.close()
    # the books count each payment once, the merchant got exactly their sum
    merchant = [v for k, v in snap["books"]["balances"].items() if k.startswith("merchant:")]
    assert merchant == [sum(sw.PAYMENTS)]
    # both journals are empty: the wallet's LOAD record went in a second round
    assert snap["pos"]["records"] == [] and snap["wallet"]["records"] == []
    assert snap["books"]["acked"] == {sw.W1.hex(): 8, sw.P1.hex(): 3}
    return snap


def _converge(scn: sw.Scenario, which: str) -> dict[str, Any]:
    """Plug the interrupted device back in (a new app on the same flash) and sync both devices
    again without faults; return the snapshot."""
    if which == "wallet":
        scn.world.reboot_wallet()
    else:
        scn.world.reboot_pos()
    w, p = _full_sync(scn)
    assert w.outcome == "synced" and p.outcome == "synced"
    return sw.snapshot(scn)


def _interrupted_device(scn: sw.Scenario, which: str, faults: Faults) -> tuple[Any, int]:
    """Sync the wallet (and then the POS) with `faults` on device `which`. Returns the outcome
    of the faulty sync (result or exception) and how many frames the device saw."""
    outbox = Outbox(scn.outbox_dir)
    with LedgerLink(scn.server.url, scn.server.token) as link:
        if which == "pos":
            sw.pty_sync(scn.world.wallet(), link, outbox, page_records=PAGE)
        app = scn.world.wallet() if which == "wallet" else scn.world.terminal()
        from tapcash.host.sync.session import sync_device
        from tapcash.host.sync.transport import SerialTransport

        with SerialDevice(app, faults) as dev:
            try:
                with SerialTransport(dev.path, timeout_s=0.5) as t:
                    out: Any = sync_device(t, ledger=link, outbox=outbox, page_records=PAGE)
            except LinkLost as e:
                out = e
            return out, dev.frames_in


CASES = [("wallet", k) for k in range(1, WALLET_FRAMES + 1)] + [
    ("pos", k) for k in range(1, POS_FRAMES + 1)
]


@pytest.mark.parametrize("mode", ["close_after_request", "close_after_answer"])
@pytest.mark.parametrize(("which", "k"), CASES)
def test_line_closed_after_every_frame_converges(
    tmp_path: Path, reference: dict[str, Any], which: str, k: int, mode: str
) -> None:
    scn = sw.prepared(tmp_path, SEED)
    try:
        out, seen = _interrupted_device(scn, which, Faults(**{mode: k}))
        last = k == (WALLET_FRAMES if which == "wallet" else POS_FRAMES)
        if last and mode == "close_after_answer":
            # the host had nothing left to send; whether it read the answer before the hangup
            # dropped it is a race, and either way the sync is complete on the device
            assert isinstance(out, LinkLost) or out.outcome == "synced"
        else:
            assert isinstance(out, LinkLost), out  # every frame of the sync is a chance to fail
        assert seen == k
        assert _converge(scn, which) == reference
    finally:
        scn.close()


def _host_cmd(port: str, scn: sw.Scenario) -> list[str]:
    return [
        sys.executable,
        "-c",
        "from tapcash.host.cli import main; main()",
        "sync",
        "--port",
        port,
        "--ledger",
        scn.server.url,
        "--outbox",
        str(scn.outbox_dir),
        "--json",
        "--timeout",
        "0.5",
        "--page-records",
        str(PAGE),
    ]


@pytest.mark.parametrize("when", ["before_request", "after_answer"])
@pytest.mark.parametrize("k", range(1, WALLET_FRAMES + 1))
def test_host_killed_at_every_frame_converges(
    tmp_path: Path, reference: dict[str, Any], k: int, when: str
) -> None:
    scn = sw.prepared(tmp_path, SEED)
    try:
        holder: dict[str, subprocess.Popen[bytes]] = {}
        killed = threading.Event()

        def kill(n: int) -> None:
            if n == k:
                proc = holder["proc"]
                proc.kill()
                proc.wait()
                killed.set()

        dev = SerialDevice(scn.world.wallet(), Faults(**{when: kill}))
        with dev:
            env = dict(os.environ, TAPCASH_NO_PROGRESS="1")
            holder["proc"] = proc = subprocess.Popen(
                _host_cmd(dev.path, scn), stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
            )
            proc.communicate(timeout=60)
            assert killed.is_set(), f"the host finished before frame {k}"
            assert proc.returncode == -9
            # the same board, still powered, same line: the next sync takes over from here
            outbox = Outbox(scn.outbox_dir)
            from tapcash.host.sync.session import sync_device
            from tapcash.host.sync.transport import SerialTransport

            with LedgerLink(scn.server.url, scn.server.token) as link:
                with SerialTransport(dev.path, timeout_s=0.5) as t:
                    res = sync_device(t, ledger=link, outbox=outbox, page_records=PAGE)
                assert res.outcome == "synced"
                p = sw.pty_sync(scn.world.terminal(), link, outbox, page_records=PAGE)
                assert p.outcome == "synced"
        assert sw.snapshot(scn) == reference
    finally:
        scn.close()


class DiesAfterCommit:
    """The real ledger link, but the host "dies" right after the ledger committed the batch,
    before it could read the answer (a crash or power cut at the worst moment)."""

    def __init__(self, link: LedgerLink) -> None:
        self.link = link
        self.url = link.url

    def submit(self, batch: Any) -> Any:
        self.link.submit(batch)
        raise KeyboardInterrupt


def test_host_dies_after_ledger_commit_converges(tmp_path: Path, reference: dict[str, Any]) -> None:
    from tapcash.host.sync.session import sync_device
    from tapcash.host.sync.transport import SerialTransport

    scn = sw.prepared(tmp_path, SEED)
    try:
        outbox = Outbox(scn.outbox_dir)
        with LedgerLink(scn.server.url, scn.server.token) as link:
            with SerialDevice(scn.world.wallet()) as dev:
                with (
                    SerialTransport(dev.path, timeout_s=0.5) as t,
                    pytest.raises(KeyboardInterrupt),
                ):
                    sync_device(t, ledger=DiesAfterCommit(link), outbox=outbox, page_records=PAGE)
        # the ledger holds the payments; the device still holds its journal; the outbox too
        assert len(outbox.paths()) == 1
        assert scn.client.device(sw.W1)["acked_upto"] == 7  # stored, not yet acked to the card
        assert _converge(scn, "wallet") == reference
    finally:
        scn.close()


def test_rerun_through_the_cli_after_a_lost_line(tmp_path: Path) -> None:
    """A rerun through the real CLI after an interruption prints one JSON document."""
    scn = sw.prepared(tmp_path, SEED)
    try:
        # frame 5 is APPLY: the batch is spooled and uploaded, the update applied, its answer lost
        out, _seen = _interrupted_device(scn, "wallet", Faults(close_after_request=5))
        assert isinstance(out, LinkLost)
        scn.world.reboot_wallet()
        with SerialDevice(scn.world.wallet()) as dev:
            env = dict(os.environ, TAPCASH_NO_PROGRESS="1")
            done = subprocess.run(
                _host_cmd(dev.path, scn), capture_output=True, env=env, timeout=60, check=False
            )
        assert done.returncode == 0, done.stderr
        doc = json.loads(done.stdout)
        assert doc["ok"] is True and doc["outcome"] == "synced" and doc["exit_code"] == 0
        assert doc["exported"] == 7 and doc["rounds"] == 2  # 6 records, then the LOAD record
        assert doc["flush"]["uploaded"] == 1  # the batch spooled before the line closed
        assert doc["ledger_result"]["accepted"] == 0  # all three payments were in already
        assert doc["ledger_result"]["duplicates"] == len(sw.PAYMENTS)
        assert doc["update"] == "already applied" and doc["vouchers_loaded"] == 1
        assert doc["status"]["balance"] == 30000 - sum(sw.PAYMENTS) + 5000
        assert doc["spooled"] is None and not list(scn.outbox_dir.glob("*.batch"))
    finally:
        scn.close()
