"""`tapcash sync` end to end: the real CLI, a real pseudo-terminal with pyserial, simulated
wallet and POS devices (WalletApp / PosApp on SimFlash) that paid each other through the
in-process NFC link, and the real ledger under uvicorn on loopback."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import subprocess
import sys
import threading
import tty
from pathlib import Path
from typing import Any

import pytest
import serial
import sync_world as sw
from click.testing import CliRunner

from tapcash.firmware.core import cbor, frame
from tapcash.host.cli import cli
from tapcash.host.device.errors import EXIT_DEVICE, EXIT_LEDGER, EXIT_PORT, EXIT_SPOOLED
from tapcash.host.ledger.loopback import free_port
from tapcash.host.sync.outbox import Batch, Outbox
from tapcash.sim.device.serial_pty import Faults, SerialDevice

SEED = 23


def run_cli(*args: str) -> tuple[int, Any, str]:
    """Invoke `tapcash sync ...` in-process; returns (exit code, parsed JSON or None, stderr)."""
    res = CliRunner().invoke(cli, ["sync", *args], catch_exceptions=False)
    doc = None
    if "--json" in args and res.stdout.strip():
        doc = json.loads(res.stdout)
    return res.exit_code, doc, res.stderr


def sync_args(port: str, scn: sw.Scenario, *extra: str, ledger: str | None = None) -> list[str]:
    return [
        "--port",
        port,
        "--ledger",
        ledger or scn.server.url,
        "--outbox",
        str(scn.outbox_dir),
        "--json",
        "--timeout",
        "0.3",
        *extra,
    ]


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Both devices of the scenario synced once over a clean line."""
    s = sw.prepared(tmp_path_factory.mktemp("ref"), SEED)
    try:
        for app in (s.world.wallet(), s.world.terminal()):
            with SerialDevice(app) as dev:
                code, doc, err = run_cli(*sync_args(dev.path, s))
                assert code == 0, err
        return sw.snapshot(s)
    finally:
        s.close()


# ---- the normal path ------------------------------------------------------------------------


def test_two_devices_json_and_each_payment_counted_once(
    scn: sw.Scenario, reference: dict[str, Any]
) -> None:
    with SerialDevice(scn.world.wallet()) as dev:
        code, w, _ = run_cli(*sync_args(dev.path, scn))
    assert code == 0 and w["ok"] and w["outcome"] == "synced" and w["kind"] == "wallet"
    assert w["device"] == sw.W1.hex() and w["exit_code"] == 0
    assert w["ledger_result"]["accepted"] == len(sw.PAYMENTS)
    assert w["update"] == "applied" and w["vouchers_loaded"] == 1 and w["rounds"] == 2
    assert w["status"]["balance"] == 30000 - sum(sw.PAYMENTS) + 5000
    assert w["status"]["counter"] == len(sw.PAYMENTS)
    assert w["spooled"] is None

    with SerialDevice(scn.world.terminal()) as dev:
        code, p, _ = run_cli(*sync_args(dev.path, scn))
    assert code == 0 and p["kind"] == "pos" and p["device"] == sw.P1.hex()
    assert p["exported"] == len(sw.PAYMENTS)
    # the POS brings the same three payments: all already known, none credited twice
    assert p["ledger_result"]["accepted"] == 0
    assert p["ledger_result"]["duplicates"] == len(sw.PAYMENTS)
    books = scn.client.books()
    merchants = {k: v for k, v in books["balances"].items() if k.startswith("merchant:")}
    assert list(merchants.values()) == [sum(sw.PAYMENTS)]
    assert len(books["payments"]) == len(sw.PAYMENTS)
    assert sw.snapshot(scn) == reference

    # a second sync right away: nothing new, nothing changes
    with SerialDevice(scn.world.wallet()) as dev:
        code, again, _ = run_cli(*sync_args(dev.path, scn))
    assert code == 0 and again["exported"] == 0 and again["vouchers_loaded"] == 0
    assert sw.snapshot(scn) == reference


def test_a_renewed_certificate_and_the_newer_update_both_reach_the_wallet(
    scn: sw.Scenario,
) -> None:
    """The renewal's update carries the certificate; the sync mints a newer one (synced
    counter) that does not repeat it. The sync tool applies both, oldest first."""
    from tapcash.firmware.core import proto

    renewed = scn.client.renew(sw.W1, limits={proto.LIM_PAYMENT_MAX: 3000})
    with SerialDevice(scn.world.wallet()) as dev:
        code, w, err = run_cli(*sync_args(dev.path, scn))
    assert code == 0, err
    assert w["updates_applied"] == 2 and w["update"] == "applied"
    info = sw.device_state(scn.world.wallet())["info"]
    cert_body = cbor.decode(cbor.decode(info[proto.INFO_CERT])[0])
    assert cert_body[proto.CERT_SERIAL] == renewed["serial"] == 2
    assert cert_body[proto.CERT_LIMITS][proto.LIM_PAYMENT_MAX] == 3000
    assert info[proto.INFO_COUNTER] == len(sw.PAYMENTS)
    assert not scn.world.pay(1, 1, 4000).approved  # the renewed limit holds offline

    # the next sync: both answer "already applied" (6916), nothing is applied twice
    with SerialDevice(scn.world.wallet()) as dev:
        code, again, err = run_cli(*sync_args(dev.path, scn))
    assert code == 0, err
    assert again["updates_applied"] == 0
    scn.client.renew(sw.W1)
    assert scn.world.pay(1, 1, 100).approved
    with SerialDevice(scn.world.wallet()) as dev:
        human = [a for a in sync_args(dev.path, scn) if a != "--json"]
        res = CliRunner().invoke(cli, ["sync", *human])
    assert res.exit_code == 0, res.output
    assert "updates: 2 applied" in res.stdout


def test_a_killed_syncs_half_written_batch_is_swept_by_the_next(
    scn: sw.Scenario, reference: dict[str, Any]
) -> None:
    """A sync killed while writing its first batch leaves only a temporary file (no batch is
    complete, so there is nothing to flush): the next sync sweeps it all the same."""
    scn.outbox_dir.mkdir(parents=True, exist_ok=True)
    half = scn.outbox_dir / f".tmp-{os.getpid()}-{sw.W1.hex()}-1-3.batch.part"
    half.write_bytes(b"half a batch")
    for app in (scn.world.wallet(), scn.world.terminal()):
        with SerialDevice(app) as dev:
            code, _doc, err = run_cli(*sync_args(dev.path, scn))
            assert code == 0, err
    assert not half.exists()
    assert sw.snapshot(scn) == reference


def test_human_output(scn: sw.Scenario) -> None:
    with SerialDevice(scn.world.wallet()) as dev:
        res = CliRunner().invoke(
            cli, ["sync", "--port", dev.path, "--ledger", scn.server.url, "--outbox",
                  str(scn.outbox_dir)],
        )  # fmt: skip
    assert res.exit_code == 0, res.output
    assert f"wallet {sw.W1.hex()} on {dev.path}: synced" in res.stdout
    assert "3 accepted" in res.stdout and "vouchers: 1 loaded" in res.stdout


def test_noisy_lossy_line_still_converges(scn: sw.Scenario, reference: dict[str, Any]) -> None:
    """REPL chatter before every answer, a request lost, answers corrupted: the host resends,
    the device answers resent requests from its replay cache, the result is the same."""
    faults = Faults(drop={2}, corrupt={3, 6}, noise=b"I (4711) tapcash: log line TC\r\n>>> ")
    with SerialDevice(scn.world.wallet(), faults) as dev:
        code, w, err = run_cli(*sync_args(dev.path, scn))
        replays = dev.server.replays
    assert code == 0, err
    # (at least: a loaded machine may add a timeout resend, answered from the cache as well)
    assert w["link"]["resends"] >= 3
    assert replays >= 2  # the requests whose answers were corrupted were not run again
    with SerialDevice(scn.world.terminal(), Faults(corrupt={1, 2, 3})) as dev:
        code, _p, err = run_cli(*sync_args(dev.path, scn))
    assert code == 0, err
    assert sw.snapshot(scn) == reference


def test_long_journal_progress_and_small_pages(scn: sw.Scenario) -> None:
    """The POS exports in pages of one record (hidden --page-records), every page in order."""
    with SerialDevice(scn.world.terminal()) as dev:
        code, p, _ = run_cli(*sync_args(dev.path, scn, "--page-records", "1"))
    assert code == 0 and p["exported"] == 3 and p["link"]["requests"] == 1 + 3 + 2
    assert (p["first_seq"], p["last_seq"]) == (1, 3)


def test_a_wrong_token_stops_the_sync_before_the_device_is_touched(
    scn: sw.Scenario, reference: dict[str, Any]
) -> None:
    """Found: `tapcash sync --token wrong` synced without a word (uploads are authenticated by
    the devices' signatures, so the token meant nothing). A token given is now checked first:
    a wrong one is one line and exit 6, and neither the device nor the ledger sees anything."""
    before = sw.device_state(scn.world.wallet())
    books = scn.client.books()
    with SerialDevice(scn.world.wallet()) as dev:
        code, doc, _ = run_cli(*sync_args(dev.path, scn, "--token", "wrong"))
        assert dev.frames_in == 0  # not one request reached the device
        human = [a for a in sync_args(dev.path, scn, "--token", "wrong") if a != "--json"]
        res = CliRunner().invoke(cli, ["sync", *human])
        assert dev.frames_in == 0
    assert code == EXIT_LEDGER and doc["ok"] is False and "token is wrong" in doc["error"]
    assert res.exit_code == EXIT_LEDGER and "Traceback" not in res.output
    (line,) = res.stderr.strip().splitlines()
    assert line.startswith("error: ") and "token is wrong" in line and "required" not in line
    assert sw.device_state(scn.world.wallet()) == before and scn.client.books() == books
    # --flush checks it as well; an unreachable ledger is no verdict on it (the batch spools)
    code, doc, _ = run_cli(
        "--flush",
        "--ledger",
        scn.server.url,
        "--outbox",
        str(scn.outbox_dir),
        "--token",
        "wrong",
        "--json",
    )
    assert code == EXIT_LEDGER and "token is wrong" in doc["error"]
    dead = f"http://127.0.0.1:{free_port()}"
    with SerialDevice(scn.world.wallet()) as dev:
        code, doc, _ = run_cli(*sync_args(dev.path, scn, "--token", "wrong", ledger=dead))
    assert code == EXIT_SPOOLED and doc["outcome"] == "spooled"
    # the operator token, or none at all: synced as ever
    for app, token in ((scn.world.wallet(), scn.server.token), (scn.world.terminal(), None)):
        with SerialDevice(app) as dev:
            extra = ("--token", token) if token else ()
            code, doc, err = run_cli(*sync_args(dev.path, scn, *extra))
        assert code == 0, err
    assert sw.snapshot(scn) == reference


# ---- ledger unreachable: outbox, flush ------------------------------------------------------


def test_ledger_unreachable_spools_then_flush(scn: sw.Scenario, reference: dict[str, Any]) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    with SerialDevice(scn.world.wallet()) as dev:
        code, w, _ = run_cli(*sync_args(dev.path, scn, ledger=dead))
    assert code == EXIT_SPOOLED and w["ok"] is False and w["outcome"] == "spooled"
    assert "unreachable" in w["message"] and w["exported"] == 6
    box = Outbox(scn.outbox_dir)
    (path,) = box.paths()
    assert w["spooled"] == str(path)
    batch = box.load(path)
    assert batch.device == sw.W1 and [s for s, _ in batch.records] == list(range(2, 8))
    # the device pruned nothing: its journal still holds the six records
    assert len(sw.device_state(scn.world.wallet())["records"]) == 6

    # --flush against a dead ledger: still there, exit 5
    code, f, _ = run_cli("--flush", "--ledger", dead, "--outbox", str(scn.outbox_dir), "--json")
    assert code == EXIT_SPOOLED and f["flush"]["left"] == 1
    # --flush when the ledger is back: uploaded, and the entry goes (the ledger acked it all)
    code, f, _ = run_cli(
        "--flush", "--ledger", scn.server.url, "--outbox", str(scn.outbox_dir), "--json"
    )
    assert code == 0 and f["flush"]["uploaded"] == 1 and f["flush"]["left"] == 0
    assert len(scn.client.books()["payments"]) == len(sw.PAYMENTS)
    # the device learns it at its next sync; then everything is as if nothing had happened
    for app in (scn.world.wallet(), scn.world.terminal()):
        with SerialDevice(app) as dev:
            code, _doc, err = run_cli(*sync_args(dev.path, scn))
            assert code == 0, err
    assert sw.snapshot(scn) == reference


def test_any_later_sync_uploads_the_outbox_first(
    scn: sw.Scenario, reference: dict[str, Any]
) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    with SerialDevice(scn.world.terminal()) as dev:  # the POS batch waits in the outbox
        code, _p, _ = run_cli(*sync_args(dev.path, scn, ledger=dead))
    assert code == EXIT_SPOOLED
    with SerialDevice(scn.world.wallet()) as dev:  # a sync of another device flushes it
        code, w, _ = run_cli(*sync_args(dev.path, scn))
    assert code == 0 and w["flush"]["uploaded"] == 1 and w["flush"]["left"] == 0
    with SerialDevice(scn.world.terminal()) as dev:
        code, _p, _ = run_cli(*sync_args(dev.path, scn))
    assert code == 0
    assert sw.snapshot(scn) == reference


def test_no_ledger_only_spools(scn: sw.Scenario) -> None:
    with SerialDevice(scn.world.terminal()) as dev:
        res = CliRunner().invoke(
            cli, ["sync", "--port", dev.path, "--outbox", str(scn.outbox_dir), "--json"],
            env={"TAPCASH_LEDGER_URL": None},
        )  # fmt: skip
    assert res.exit_code == EXIT_SPOOLED
    doc = json.loads(res.stdout)
    assert doc["outcome"] == "spooled" and doc["ledger"] is None and doc["exported"] == 3
    assert "no ledger" in doc["message"]
    assert len(Outbox(scn.outbox_dir).paths()) == 1


def test_ledger_refuses_a_tampered_batch(scn: sw.Scenario) -> None:
    """A batch the ledger refuses (its device-signed status altered on disk) stays in the
    outbox and is reported."""
    with SerialDevice(scn.world.terminal()) as dev:
        run_cli(*sync_args(dev.path, scn, ledger=f"http://127.0.0.1:{free_port()}"))
    box = Outbox(scn.outbox_dir)
    (path,) = box.paths()
    batch = box.load(path)
    batch.status = batch.status[:-1] + bytes([batch.status[-1] ^ 1])  # the signature's last byte
    path.write_bytes(batch.encode())
    code, f, _ = run_cli(
        "--flush", "--ledger", scn.server.url, "--outbox", str(scn.outbox_dir), "--json"
    )
    assert code == EXIT_LEDGER and f["ok"] is False
    assert len(f["flush"]["refused"]) == 1 and f["flush"]["left"] == 1
    assert scn.client.books()["payments"] == []  # nothing of it was taken


# ---- errors -----------------------------------------------------------------------------------


def test_no_such_port(tmp_path: Path) -> None:
    code, doc, _ = run_cli("--port", str(tmp_path / "ttyUSB9"), "--json")
    assert code == EXIT_PORT and doc["ok"] is False and "no such port" in doc["error"]
    res = CliRunner().invoke(cli, ["sync", "--port", str(tmp_path / "ttyUSB9")])
    assert res.exit_code == EXIT_PORT
    assert "error: no such port" in res.stderr


def test_usage_errors() -> None:
    res = CliRunner().invoke(cli, ["sync"])
    assert res.exit_code == 2 and "--port" in res.stderr
    res = CliRunner().invoke(cli, ["sync", "--flush"], env={"TAPCASH_LEDGER_URL": None})
    assert res.exit_code == 2 and "--ledger" in res.stderr


def test_port_busy(scn: sw.Scenario) -> None:
    with SerialDevice(scn.world.wallet()) as dev:
        other = serial.Serial(dev.path, exclusive=True)  # another program holds the port
        try:
            code, doc, _ = run_cli(*sync_args(dev.path, scn))
        finally:
            other.close()
    assert code == EXIT_PORT and "busy" in doc["error"]


def _silent_pty(echo: bool) -> tuple[int, int, str, threading.Thread | None]:
    """A pty with nobody answering frames: silent, or echoing everything like a REPL prompt."""
    master, slave = pty.openpty()
    tty.setraw(slave)
    path = os.ttyname(slave)
    thread = None
    if echo:

        def run() -> None:
            try:
                os.write(master, b"MicroPython v1.27.0 on 2026-11-01; ESP32\r\n>>> ")
                while True:
                    data = os.read(master, 4096)
                    if not data:
                        return
                    os.write(master, data)
            except OSError:
                return

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
    return master, slave, path, thread


@pytest.mark.parametrize("echo", [False, True], ids=["silent", "repl-echo"])
def test_not_a_tapcash_device(tmp_path: Path, echo: bool) -> None:
    master, slave, path, thread = _silent_pty(echo)
    try:
        code, doc, _ = run_cli(
            "--port", path, "--outbox", str(tmp_path), "--json", "--timeout", "0.2",
            "--retries", "1",
        )  # fmt: skip
    finally:
        os.close(master)
        os.close(slave)
        if thread is not None:
            thread.join(5)
    assert code == EXIT_DEVICE and doc["kind"] == "NotADevice"
    assert "no tapcash device answers" in doc["error"]


def test_line_lost_mid_sync(scn: sw.Scenario) -> None:
    with SerialDevice(scn.world.wallet(), Faults(close_after_request=2)) as dev:
        code, doc, _ = run_cli(*sync_args(dev.path, scn))
    assert code == EXIT_DEVICE and doc["kind"] == "LinkLost"


@pytest.mark.skipif(not hasattr(os, "setuid"), reason="POSIX only")
def test_permission_denied(tmp_path: Path) -> None:
    master, slave, path, _ = _silent_pty(False)
    script = (  # everything imported first: the unprivileged user may not read site-packages
        "import os, sys\n"
        "from tapcash.host.cli import main\n"
        "import tapcash.host.sync.session, tapcash.host.sync.ledger_link\n"
        "if os.getuid() == 0:\n"
        "    os.setgid(65534); os.setuid(65534)\n"
        "sys.argv = ['tapcash', 'sync', '--port', sys.argv[1], '--json', '--outbox', sys.argv[2]]\n"
        "main()\n"
    )
    try:
        if os.getuid() != 0:
            os.chmod(path, 0)
        outbox = tmp_path / "box"
        outbox.mkdir(mode=0o777)
        os.chmod(outbox, 0o777)
        done = subprocess.run(
            [sys.executable, "-c", script, path, str(outbox)],
            capture_output=True,
            timeout=60,
            check=False,
            cwd=tmp_path,
        )
    finally:
        os.close(master)
        os.close(slave)
    if done.returncode not in (EXIT_PORT,) and b"ModuleNotFoundError" in done.stderr:
        pytest.skip("the unprivileged user cannot import the package from here")
    assert done.returncode == EXIT_PORT, done.stderr
    doc = json.loads(done.stdout)
    assert "permission denied" in doc["error"]


# ---- outbox ---------------------------------------------------------------------------------


def test_outbox_atomic_and_ordered(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "box")
    assert box.paths() == [] and list(box) == []
    b2 = Batch(b"\x02" * 8, 2, b"cert", [(5, b"\xa0"), (6, b"\xa1\x00\x01")], b"st", 7)
    b1 = Batch(b"\x02" * 8, 2, b"cert", [(1, b"\xa0")], b"st", 5)
    other = Batch(b"\x01" * 8, 1, b"c", [(3, b"\xa0")], b"s", 6)
    for b in (b2, other, b1):
        box.put(b)
    assert [p.name for p in box.paths(b"\x02" * 8)] == [b1.name(), b2.name()]
    assert [b.device for _p, b in box] == [other.device, b1.device, b2.device]
    assert box.load(box.root / b2.name()) == b2
    # a writer killed mid-write leaves a temporary file: never listed, swept later
    (box.root / f".tmp-999999999-{b2.name()}.part").write_bytes(b"half")
    (box.root / f".tmp-999999999-{b1.name()}").write_bytes(b"half")
    # a dead writer's pid may be reused by a live process: its file is swept all the same
    (box.root / f".tmp-{os.getpid()}-{other.name()}.part").write_bytes(b"half")
    # a writer in flight holds the lock on its file: left alone
    in_flight = box.root / f".tmp-1-{b1.name()}.part"
    fd = os.open(in_flight, os.O_WRONLY | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    assert len(box.paths()) == 3
    try:
        assert box.sweep_temporaries() == 3
        assert in_flight.exists()
    finally:
        os.close(fd)
    assert box.sweep_temporaries() == 1 and not in_flight.exists()
    box.remove(box.root / b1.name())
    box.remove(box.root / b1.name())  # twice is fine
    assert len(box.paths()) == 2
    assert oct((box.root / b2.name()).stat().st_mode & 0o777) == "0o600"


def test_outbox_rejects_garbage(tmp_path: Path) -> None:
    box = Outbox(tmp_path)
    p = tmp_path / ("00" * 8 + "-1-1.batch")
    p.write_bytes(b"\xa1\x61x\x01")
    with pytest.raises((ValueError, KeyError)):
        box.load(p)


def test_frames_per_second_smoke(scn: sw.Scenario) -> None:
    """Not a timing assertion: many GET INFO round trips over the pty all come back right."""
    from tapcash.firmware.core import proto
    from tapcash.host.sync.transport import SerialTransport

    with SerialDevice(scn.world.terminal()) as dev, SerialTransport(dev.path) as t:
        for _ in range(200):
            resp = t.transceive(proto.build_command(0x80, proto.INS_GET_INFO, 0, 0, b""))
            assert resp[-2:] == b"\x90\x00"
        assert t.stats.requests == 200
    assert frame.MAX_FRAME == 4096
